//! `scope!`: borrowing children, per-child wakers, panics, cancellation, defer, spawn_task, drop
//! and `mem::forget`, on spindle's two runtimes and tokio's two.

#![cfg(not(loom))]

mod structured_support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spindle_core::structured::{cancel_requested, AsyncClose};
use structured_support::{on_every_runtime, AnySpawn, Drops, Gate, Rt};

#[test]
fn children_borrow_and_body_output() {
    on_every_runtime("borrow", |rt| async move {
        let data: Vec<u64> = (0..100).collect();
        let mut outs = [0u64; 10];
        let total = spindle_core::scope!(|s| async {
            for (i, o) in outs.iter_mut().enumerate() {
                let data = &data;
                s.spawn(async move {
                    rt.yield_now().await;
                    *o = data[i * 10..(i + 1) * 10].iter().sum();
                });
            }
            let h = s.spawn(async { data.len() });
            h.await.unwrap()
        })
        .await;
        assert_eq!(total, 100);
        assert_eq!(outs.iter().sum::<u64>(), 4950);
    });
}

#[test]
fn only_woken_children_are_polled() {
    on_every_runtime("o(woken)", |_rt| async move {
        let gates: Vec<Gate> = (0..200).map(|_| Gate::new()).collect();
        let polls: Vec<_> = gates.iter().map(|g| g.polls.clone()).collect();
        let openers: Vec<_> = gates.iter().map(|g| g.opener()).collect();
        spindle_core::scope!(|s| async {
            for g in gates {
                s.spawn(g);
            }
            // Let every child be polled once.
            spindle_core::structured::join((async {},)).await;
            s.spawn(async {
                // Open one gate at a time; every other gate must not be polled again.
                for o in &openers {
                    o.open();
                }
            });
        })
        .await;
        // Each gate: first poll, then the poll after its own wake (at most one spurious extra).
        for p in polls {
            assert!(p.load(SeqCst) <= 3, "a child was polled {} times", p.load(SeqCst));
        }
    });
}

#[test]
fn nested_scopes_and_send_inside_multithread_spawn() {
    on_every_runtime("nested", |rt| async move {
        let h = tokio_or_spindle_spawn(rt, async move {
            let v = [1, 2, 3];
            spindle_core::scope!(|outer| async {
                let a = outer.spawn(async {
                    spindle_core::scope!(|inner| async { inner.spawn(async { v.iter().sum::<i32>() }).await.unwrap() })
                        .await
                });
                a.await.unwrap()
            })
            .await
        });
        assert_eq!(h.await, 6);
    });
}

fn tokio_or_spindle_spawn<F>(rt: Rt, f: F) -> std::pin::Pin<Box<dyn std::future::Future<Output = F::Output> + Send>>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    if rt.is_spindle() {
        let h = spindle::spawn(f);
        Box::pin(async move { h.await.unwrap() })
    } else {
        let h = tokio::spawn(f);
        Box::pin(async move { h.await.unwrap() })
    }
}

#[test]
fn child_panic_cancels_siblings_and_is_reraised_after_they_finish() {
    on_every_runtime("panic", |rt| async move {
        let finished = Arc::new(AtomicUsize::new(0));
        let f2 = finished.clone();
        let r = tokio_or_spindle_spawn(rt, async move {
            let f3 = f2.clone();
            let out = std::panic::AssertUnwindSafe(spindle_core::scope!(|s| async {
                s.spawn(async move {
                    // Soft-cancelled by the sibling's panic: the sleep ends early.
                    rt.sleep(Duration::from_secs(3600)).await;
                    assert!(cancel_requested() || !rt.is_spindle());
                    f3.fetch_add(1, SeqCst);
                });
                s.spawn(async {
                    rt.yield_now().await;
                    panic!("child failed");
                });
            }));
            futures::FutureExt::catch_unwind(out).await.is_err()
        });
        if rt.is_spindle() {
            assert!(r.await, "the scope re-raises the child's panic");
            assert_eq!(finished.load(SeqCst), 1, "the sibling finished before the panic was re-raised");
        } else {
            // tokio's sleep does not observe spindle's tokens: the sibling sleeps; just drop it.
            drop(r);
        }
    });
}

#[test]
fn cancel_reaches_spindle_leaf_futures() {
    on_every_runtime("cancel", |rt| async move {
        // Nobody sends on `rx`; `full` has no room and nobody receives from it.
        let (_tx, mut rx) = spindle::sync::mpsc::channel::<u32>(1);
        let (full, _keep) = spindle::sync::mpsc::channel::<u32>(1);
        full.try_send(0).unwrap();
        let (_otx, orx) = spindle::sync::oneshot::channel::<u32>();
        let seen = Mutex::new(Vec::new());
        spindle_core::scope!(|s| async {
            s.spawn(async {
                spindle::time::sleep(Duration::from_secs(3600)).await;
                seen.lock().unwrap().push("sleep");
            });
            s.spawn(async {
                assert_eq!(rx.recv().await, None);
                seen.lock().unwrap().push("recv");
            });
            s.spawn(async {
                assert!(orx.await.is_err());
                seen.lock().unwrap().push("oneshot");
            });
            s.spawn(async {
                // Waits for capacity until the cancel; the message comes back.
                assert_eq!(full.send(2).await.unwrap_err().0, 2);
                seen.lock().unwrap().push("send");
            });
            rt.yield_now().await;
            rt.sleep(Duration::from_millis(5)).await;
            s.cancel();
        })
        .await;
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, ["oneshot", "recv", "send", "sleep"]);
    });
}

#[test]
fn defer_runs_last_in_first_out_and_shielded() {
    on_every_runtime("defer", |_rt| async move {
        let log = Mutex::new(Vec::new());
        spindle_core::scope!(|s| async {
            s.defer(async {
                // Shielded: the scope was cancelled, but this sleep runs to its end.
                assert!(!cancel_requested());
                spindle::time::sleep(Duration::from_millis(2)).await;
                log.lock().unwrap().push("d1");
            });
            s.defer(async { log.lock().unwrap().push("d2") });
            s.spawn(async { log.lock().unwrap().push("child") });
            s.cancel();
        })
        .await;
        assert_eq!(*log.lock().unwrap(), ["child", "d2", "d1"]);
    });
}

struct Conn<'a>(&'a AtomicUsize);

impl AsyncClose for Conn<'_> {
    type Error = ();
    async fn close(self) -> Result<(), ()> {
        self.0.fetch_add(1, SeqCst);
        Ok(())
    }
}

#[test]
fn close_on_exit_closes() {
    on_every_runtime("close", |_rt| async move {
        let closed = AtomicUsize::new(0);
        spindle_core::scope!(|s| async {
            s.close_on_exit(Conn(&closed));
            s.close_on_exit(Conn(&closed));
        })
        .await;
        assert_eq!(closed.load(SeqCst), 2);
    });
}

#[test]
fn spawn_task_runs_in_parallel_and_is_joined() {
    on_every_runtime("spawn_task", |rt| async move {
        let counter = Arc::new(AtomicUsize::new(0));
        let c = counter.clone();
        let sum = spindle_core::scope!(on AnySpawn(rt), |s| async {
            let hs: Vec<_> = (0..20u64)
                .map(|i| {
                    let c = c.clone();
                    s.spawn_task(async move {
                        c.fetch_add(1, SeqCst);
                        i
                    })
                })
                .collect();
            // One more, not awaited by the body: the scope still joins it.
            let c = c.clone();
            s.spawn_task(async move {
                std::thread::sleep(Duration::from_millis(5));
                c.fetch_add(1, SeqCst);
            });
            let mut sum = 0;
            for h in hs {
                sum += h.await.unwrap();
            }
            sum
        })
        .await;
        assert_eq!(sum, 190);
        assert_eq!(counter.load(SeqCst), 21);
    });
}

#[test]
fn spawn_task_panic_is_reraised() {
    for rt in [Rt::SpindleMulti, Rt::TokioCurrent] {
        let r = rt.block_on(async move {
            let f = std::panic::AssertUnwindSafe(spindle_core::scope!(on AnySpawn(rt), |s| async {
                s.spawn_task(async { panic!("task failed") });
            }));
            futures::FutureExt::catch_unwind(f).await.is_err()
        });
        assert!(r);
    }
}

#[test]
fn dropping_a_scope_drops_children_and_aborts_tasks() {
    on_every_runtime("drop", |rt| async move {
        let drops = Drops::default();
        let task_drops = Drops::default();
        let (d, td) = (drops.clone(), task_drops.clone());
        let borrowed = String::from("kept alive");
        {
            let mut fut = Box::pin(spindle_core::scope!(on AnySpawn(rt), |s| async {
                for _ in 0..5 {
                    let g = d.guard();
                    let b = &borrowed;
                    s.spawn(async move {
                        let _g = g;
                        std::future::pending::<()>().await;
                        let _ = b.len();
                    });
                }
                let g = td.guard();
                s.spawn_task(async move {
                    let _g = g;
                    std::future::pending::<()>().await;
                });
                std::future::pending::<()>().await;
            }));
            // Poll a few times, then drop it mid-way.
            let _ = futures::poll!(fut.as_mut());
            rt.yield_now().await;
            let _ = futures::poll!(fut.as_mut());
        }
        assert_eq!(drops.count(), 5, "every borrowed child was dropped with the scope");
        for _ in 0..200 {
            if task_drops.count() == 1 {
                break;
            }
            rt.sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(task_drops.count(), 1, "the spawn_task child was aborted");
        drop(borrowed);
    });
}

#[test]
fn forgetting_a_scope_leaks_children_but_never_touches_freed_data() {
    // The scope future is leaked after a poll; the data its children borrow is then freed.
    // Nothing may touch it afterwards (run under valgrind/miri to see a violation), and wakers
    // the children left in a Notify stay safe to use.
    let notify = Arc::new(spindle::sync::Notify::new());
    let n2 = notify.clone();
    spindle::block_on(async move {
        let data = vec![1u8; 64];
        let fut = Box::pin(spindle_core::scope!(|s| async {
            let d = &data;
            let n = &n2;
            s.spawn(async move {
                n.notified().await;
                assert_eq!(d[0], 1);
            });
            std::future::pending::<()>().await;
        }));
        let mut fut = fut;
        let _ = futures::poll!(fut.as_mut());
        std::mem::forget(fut);
        drop(data);
    });
    // The child's waker is in the Notify's list; waking it touches only the cell header.
    notify.notify_waiters();
}

#[test]
fn scope_child_recorded_parent_is_the_scope() {
    // spawn_task records the scope as the task's parent: observe it with a spawner that checks
    // the meta before handing the task to spindle.
    #[derive(Clone, Copy)]
    struct Check(spindle_core::task::TaskId);
    impl spindle_core::structured::Spawn for Check {
        fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(
            &self,
            f: F,
            meta: spindle_core::structured::SpawnMeta,
        ) {
            assert_eq!(meta.group.kind, spindle_core::task::GroupKind::Scope);
            assert_ne!(meta.group.id, self.0);
            // The task polling the scope (spindle's current task) owns it.
            assert_eq!(meta.parent, spindle::task::try_id());
            spindle::structured::Runtime.spawn(f, meta)
        }
        fn current_task(&self) -> Option<spindle_core::task::TaskId> {
            spindle::structured::Runtime.current_task()
        }
    }
    let rt = spindle::runtime::Builder::new_current_thread().build().unwrap();
    let h = rt.spawn(async {
        let other = spindle_core::task::TaskId::next();
        spindle_core::scope!(on Check(other), |s| async {
            assert_ne!(s.id(), other);
            s.spawn_task(async {}).await.unwrap();
        })
        .await;
    });
    rt.block_on(h).unwrap();
}

/// A future that must not move once polled (as intrusive timer entries and wait-list nodes):
/// it records its address at its first poll and checks it when dropped.
struct PinnedProbe {
    at: Option<usize>,
    moved: Arc<AtomicUsize>,
    _pin: std::marker::PhantomPinned,
}

impl std::future::Future for PinnedProbe {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, _cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        // SAFETY: only `at` is written; nothing is moved.
        let this = unsafe { self.get_unchecked_mut() };
        this.at = Some(this as *mut PinnedProbe as usize);
        std::task::Poll::Pending
    }
}

impl Drop for PinnedProbe {
    fn drop(&mut self) {
        if let Some(at) = self.at {
            if at != self as *mut PinnedProbe as usize {
                self.moved.fetch_add(1, SeqCst);
            }
        }
    }
}

#[test]
fn pending_children_are_dropped_in_place() {
    // Regression: the scope once moved a running child out of its cell to drop it, so a timer
    // entry inside it unlinked itself from the wrong address (tokio's wheel kept a dangling one).
    on_every_runtime("dropped in place", |rt| async move {
        let moved = Arc::new(AtomicUsize::new(0));
        let m = moved.clone();
        let mut scope = Box::pin(spindle_core::scope!(|s| async move {
            s.spawn(PinnedProbe { at: None, moved: m.clone(), _pin: std::marker::PhantomPinned });
            s.spawn(async move {
                // A probe inside a child's own state (as a leaf future is).
                let probe = PinnedProbe { at: None, moved: m, _pin: std::marker::PhantomPinned };
                probe.await
            });
            std::future::pending::<()>().await
        }));
        std::future::poll_fn(|cx| {
            assert!(std::future::Future::poll(scope.as_mut(), cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        rt.yield_now().await;
        drop(scope);
        assert_eq!(moved.load(SeqCst), 0, "a pinned child future was moved before its drop");
    });
}

#[test]
fn spawns_and_handle_drops_from_other_threads_inside_a_poll() {
    // A child runs plain threads inside its poll (`std::thread::scope`) that spawn on the scope
    // and drop or return handles: those spawns take the scope's remote path.
    on_every_runtime("foreign spawns", |_rt| async move {
        let data: Vec<u64> = (0..40).collect();
        let total = AtomicUsize::new(0);
        let (data, total) = (&data, &total);
        let sum = spindle_core::scope!(|s| async move {
            let handles = std::thread::scope(|ts| {
                let threads: Vec<_> = (0..4)
                    .map(|t| {
                        ts.spawn(move || {
                            let mut kept = Vec::new();
                            for i in 0..10 {
                                let h = s.spawn(async move {
                                    total.fetch_add(1, SeqCst);
                                    data[t * 10 + i]
                                });
                                if i % 2 == 0 {
                                    kept.push(h); // returned to the body
                                } // else dropped here, on another thread
                            }
                            kept
                        })
                    })
                    .collect();
                threads.into_iter().flat_map(|t| t.join().unwrap()).collect::<Vec<_>>()
            });
            let mut sum = 0;
            for h in handles {
                sum += h.await.unwrap();
            }
            sum
        })
        .await;
        assert_eq!(total.load(SeqCst), 40, "every child ran");
        assert_eq!(sum, (0..40u64).filter(|v| v % 2 == 0).sum::<u64>());
    });
}

#[test]
fn a_cleanup_may_spawn_and_await_children() {
    on_every_runtime("cleanup spawns", |rt| async move {
        let log = Mutex::new(Vec::new());
        spindle_core::scope!(|s| async {
            s.defer(async {
                let h = s.spawn(async {
                    rt.yield_now().await;
                    5
                });
                let v = h.await.unwrap();
                log.lock().unwrap().push(v);
                s.spawn(async { log.lock().unwrap().push(6) }); // not awaited: still joined
            });
        })
        .await;
        assert_eq!(*log.lock().unwrap(), [5, 6]);
    });
}
