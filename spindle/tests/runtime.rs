//! Runtime behaviour on every flavour: spawning, joining, aborting, panics, budget, misuse.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::{each_flavor, panic_message, DropFlag};
use futures::channel::oneshot;
use spindle::runtime::{Builder, Handle};
use spindle::task::{self, JoinHandle};

#[test]
fn spawn_many_and_join() {
    each_flavor(|rt| {
        let sum = rt.block_on(async {
            let handles: Vec<JoinHandle<u64>> = (0..10_000u64).map(|i| spindle::spawn(async move { i })).collect();
            let mut sum = 0;
            for h in handles {
                sum += h.await.unwrap();
            }
            sum
        });
        assert_eq!(sum, (0..10_000u64).sum());
    });
}

#[test]
fn nested_spawns_and_chains() {
    each_flavor(|rt| {
        fn chain(n: u32, done: oneshot::Sender<u32>) {
            if n == 0 {
                let _ = done.send(7);
            } else {
                spindle::spawn(async move { chain(n - 1, done) });
            }
        }
        let v = rt.block_on(async {
            let (tx, rx) = oneshot::channel();
            spindle::spawn(async move { chain(2_000, tx) });
            rx.await.unwrap()
        });
        assert_eq!(v, 7);
    });
}

#[test]
fn ping_pong_between_tasks() {
    each_flavor(|rt| {
        rt.block_on(async {
            for _ in 0..500 {
                let (tx1, rx1) = oneshot::channel::<u32>();
                let (tx2, rx2) = oneshot::channel::<u32>();
                let pong = spindle::spawn(async move {
                    let v = rx1.await.unwrap();
                    tx2.send(v + 1).unwrap();
                });
                tx1.send(1).unwrap();
                assert_eq!(rx2.await.unwrap(), 2);
                pong.await.unwrap();
            }
        });
    });
}

#[test]
fn abort_pending_task_drops_its_future() {
    each_flavor(|rt| {
        let drops = Arc::new(AtomicUsize::new(0));
        let flag = DropFlag(drops.clone());
        let err = rt.block_on(async move {
            let h = spindle::spawn(async move {
                let _flag = flag;
                std::future::pending::<()>().await;
            });
            task::yield_now().await;
            h.abort();
            h.await.unwrap_err()
        });
        assert!(err.is_cancelled(), "{err:?}");
        assert!(!err.is_panic());
        assert_eq!(drops.load(SeqCst), 1);
        assert!(err.to_string().contains("cancelled"), "{err}");
    });
}

/// An `AbortHandle` aborts a detached task (its `JoinHandle` dropped) from another thread, its
/// clones agree on the task's state, and the last one dropped (after the task is gone) frees the
/// cell: the future was dropped exactly once, on abort, not by the handle.
#[test]
fn abort_handle_aborts_a_detached_task_from_another_thread() {
    each_flavor(|rt| {
        let drops = Arc::new(AtomicUsize::new(0));
        let flag = DropFlag(drops.clone());
        let h = rt.spawn(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        });
        let abort = h.abort_handle();
        let id = h.id();
        drop(h); // detached
        let other = abort.clone();
        assert_eq!(other.id(), id);
        assert!(!abort.is_finished());
        std::thread::spawn(move || other.abort()).join().unwrap();
        rt.block_on(async {
            while !abort.is_finished() {
                task::yield_now().await;
            }
        });
        assert_eq!(drops.load(SeqCst), 1);
        assert!(format!("{abort:?}").contains("AbortHandle"));
        drop(abort);
        assert_eq!(drops.load(SeqCst), 1);
    });
}

/// Aborting through an `AbortHandle` after the task completed changes nothing: the `JoinHandle`
/// still gets the output, and the handle outlives the awaited `JoinHandle`.
#[test]
fn abort_handle_after_completion_and_after_join() {
    each_flavor(|rt| {
        let abort = rt.block_on(async {
            let h = spindle::spawn(async { 7 });
            let abort = h.abort_handle();
            while !abort.is_finished() {
                task::yield_now().await;
            }
            abort.abort();
            assert_eq!(h.await.unwrap(), 7);
            abort
        });
        abort.abort();
        assert!(abort.is_finished());
    });
}

#[test]
fn abort_after_completion_keeps_output() {
    each_flavor(|rt| {
        rt.block_on(async {
            let h = spindle::spawn(async { 5 });
            while !h.is_finished() {
                task::yield_now().await;
            }
            h.abort();
            assert_eq!(h.await.unwrap(), 5);
        });
    });
}

#[test]
fn abort_from_another_thread() {
    each_flavor(|rt| {
        let h = rt.spawn(std::future::pending::<()>());
        // JoinHandle<()> is Sync: abort through a reference from another thread.
        let h_ref = &h;
        std::thread::scope(|s| s.spawn(move || h_ref.abort()).join().unwrap());
        assert!(rt.block_on(h).unwrap_err().is_cancelled());
    });
}

#[test]
fn panicking_task_becomes_join_error_and_runtime_survives() {
    each_flavor(|rt| {
        let err = rt.block_on(async {
            let h = spindle::spawn(async {
                if true {
                    panic!("boom {}", 42);
                }
            });
            h.await.unwrap_err()
        });
        assert!(err.is_panic());
        assert!(err.to_string().contains("boom 42"), "{err}");
        assert_eq!(panic_message(&*err.into_panic()), "boom 42");
        // Still serving.
        assert_eq!(rt.block_on(async { spindle::spawn(async { 1 }).await.unwrap() }), 1);
    });
}

#[test]
fn panic_in_destructor_of_cancelled_future_is_contained() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("drop panic");
        }
    }
    each_flavor(|rt| {
        let err = rt.block_on(async {
            let (started_tx, started_rx) = oneshot::channel();
            let h = spindle::spawn(async move {
                let _p = PanicOnDrop;
                started_tx.send(()).unwrap();
                std::future::pending::<()>().await;
            });
            // Abort only once the value that panics on drop exists inside the running future.
            started_rx.await.unwrap();
            h.abort();
            h.await.unwrap_err()
        });
        assert!(err.is_panic(), "{err:?}");
        assert_eq!(rt.block_on(async { spindle::spawn(async { 3 }).await.unwrap() }), 3);
    });
}

#[test]
fn panic_in_output_destructor_of_detached_task_is_contained() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("output drop panic");
        }
    }
    each_flavor(|rt| {
        rt.block_on(async {
            drop(spindle::spawn(async { PanicOnDrop }));
            for _ in 0..10 {
                task::yield_now().await;
            }
        });
        assert_eq!(rt.block_on(async { spindle::spawn(async { 4 }).await.unwrap() }), 4);
    });
}

#[test]
fn dropping_join_handle_detaches() {
    each_flavor(|rt| {
        let (tx, rx) = mpsc::channel();
        rt.block_on(async move {
            let h = spindle::spawn(async move {
                task::yield_now().await;
                tx.send(99).unwrap();
            });
            drop(h);
        });
        // The task keeps running on its own (on current-thread it needs the runtime driven again).
        let v = rt.block_on(async move {
            loop {
                if let Ok(v) = rx.try_recv() {
                    return v;
                }
                task::yield_now().await;
            }
        });
        assert_eq!(v, 99);
    });
}

#[test]
fn ids_are_unique_and_reported() {
    each_flavor(|rt| {
        rt.block_on(async {
            let hs: Vec<_> = (0..100).map(|_| spindle::spawn(async { task::try_id().unwrap() })).collect();
            let mut ids = std::collections::HashSet::new();
            for h in hs {
                let id = h.id();
                assert_eq!(h.await.unwrap(), id);
                assert!(ids.insert(id));
            }
        });
    });
}

#[test]
fn task_metadata_name_location_parent() {
    each_flavor(|rt| {
        rt.block_on(async {
            let outer = task::Builder::new()
                .name("outer")
                .spawn(async {
                    let me = task::try_id().unwrap();
                    let inner = spindle::spawn(async {});
                    let meta = inner.header_ref().meta().clone();
                    inner.await.unwrap();
                    (me, meta)
                })
                .unwrap();
            let outer_meta = outer.header_ref().meta().clone();
            let (outer_id, inner_meta) = outer.await.unwrap();
            assert_eq!(outer_meta.name.as_deref(), Some("outer"));
            assert!(outer_meta.location.file().ends_with("runtime.rs"), "{:?}", outer_meta.location);
            assert_eq!(inner_meta.parent, Some(outer_id));
            assert!(inner_meta.location.file().ends_with("runtime.rs"));
            assert!(inner_meta.name.is_none());
        });
    });
}

#[test]
fn spawn_from_other_threads_through_handle() {
    each_flavor(|rt| {
        let handle = rt.handle().clone();
        let joins: Vec<_> = (0..4)
            .map(|t| {
                let handle = handle.clone();
                std::thread::spawn(move || {
                    (0..500).map(|i| handle.spawn(async move { t * 1000 + i })).collect::<Vec<_>>()
                })
            })
            .collect();
        let handles: Vec<_> = joins.into_iter().flat_map(|j| j.join().unwrap()).collect();
        let sum: u64 = rt.block_on(async move {
            let mut s = 0u64;
            for h in handles {
                s += h.await.unwrap() as u64;
            }
            s
        });
        let expect: u64 = (0..4u64).flat_map(|t| (0..500u64).map(move |i| t * 1000 + i)).sum();
        assert_eq!(sum, expect);
    });
}

#[test]
fn wake_from_outside_thread() {
    each_flavor(|rt| {
        rt.block_on(async {
            for i in 0..200 {
                let (tx, rx) = oneshot::channel();
                let t = std::thread::spawn(move || tx.send(i).unwrap());
                let h = spindle::spawn(async move { rx.await.unwrap() });
                assert_eq!(h.await.unwrap(), i);
                t.join().unwrap();
            }
        });
    });
}

/// The order tasks run in on one worker: `(runtime name, runtime)` for the flavours whose order is
/// deterministic (a second worker could steal).
fn one_worker_runtimes() -> Vec<(&'static str, spindle::runtime::Runtime)> {
    vec![
        ("current_thread", Builder::new_current_thread().build().unwrap()),
        ("multi_thread(1)", Builder::new_multi_thread().worker_threads(1).build().unwrap()),
    ]
}

#[test]
fn a_finished_tasks_joiner_runs_after_the_tasks_queued_before_it() {
    // A joiner woken by its child's completion goes to the back of the queue on every flavour (on
    // the multi-thread runtime not to the LIFO slot: a fan-in would find its next child unfinished).
    for (name, rt) in one_worker_runtimes() {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let l = log.clone();
        rt.block_on(rt.spawn(async move {
            let push = |l: &Arc<std::sync::Mutex<Vec<&'static str>>>, what| l.lock().unwrap().push(what);
            let (l1, l2) = (l.clone(), l.clone());
            let child = spindle::spawn(async move { push(&l1, "child") });
            let queued = spindle::spawn(async move { push(&l2, "queued after the child") });
            child.await.unwrap();
            push(&l, "joiner");
            queued.await.unwrap();
        }))
        .unwrap();
        assert_eq!(*log.lock().unwrap(), ["child", "queued after the child", "joiner"], "on {name}");
    }
}

#[test]
fn a_task_woken_by_a_message_runs_before_the_queue_on_a_worker() {
    // The multi-thread runtime's LIFO slot: a receiver woken by a running task runs next, before
    // tasks queued earlier (the current-thread runtime queues it at the back).
    for (name, rt) in one_worker_runtimes() {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let l = log.clone();
        rt.block_on(rt.spawn(async move {
            let (tx, rx) = oneshot::channel::<()>();
            let (l1, l2) = (l.clone(), l.clone());
            let receiver = spindle::spawn(async move {
                rx.await.unwrap();
                l1.lock().unwrap().push("receiver");
            });
            // Let the receiver start waiting.
            task::yield_now().await;
            let queued = spindle::spawn(async move { l2.lock().unwrap().push("queued before the wake") });
            tx.send(()).unwrap();
            receiver.await.unwrap();
            queued.await.unwrap();
        }))
        .unwrap();
        let expect: &[&str] = if name == "current_thread" {
            &["queued before the wake", "receiver"]
        } else {
            &["receiver", "queued before the wake"]
        };
        assert_eq!(*log.lock().unwrap(), expect, "on {name}");
    }
}

#[test]
fn yield_now_lets_others_run() {
    // On a single thread, a task that yields in a loop must let another task make progress.
    let rt = Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let flag = Arc::new(AtomicBool::new(false));
        let f2 = flag.clone();
        let spinner = spindle::spawn(async move {
            let mut n = 0u64;
            while !f2.load(SeqCst) {
                task::yield_now().await;
                n += 1;
            }
            n
        });
        let setter = spindle::spawn(async move { flag.store(true, SeqCst) });
        setter.await.unwrap();
        assert!(spinner.await.unwrap() < 100);
    });
}

#[test]
fn cooperative_budget_forces_yield() {
    // A task that only ever polls ready budgeted resources still yields after its budget.
    let rt = Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let flag = Arc::new(AtomicBool::new(false));
        let f2 = flag.clone();
        let busy = spindle::spawn(async move {
            for _ in 0..10_000 {
                task::consume_budget().await;
                if f2.load(SeqCst) {
                    return true;
                }
            }
            false
        });
        let other = spindle::spawn(async move { flag.store(true, SeqCst) });
        assert!(busy.await.unwrap(), "the busy task never gave the other task a turn");
        other.await.unwrap();
    });
}

#[test]
fn spawn_outside_runtime_panics_with_fix() {
    let p = std::panic::catch_unwind(|| spindle::spawn(async {})).unwrap_err();
    let msg = panic_message(&*p);
    assert!(msg.contains("no spindle runtime"), "{msg}");
    assert!(msg.contains("Handle"), "{msg}");
    assert!(task::Builder::new().spawn(async {}).is_err());
    assert!(Handle::try_current().is_err());
    assert!(Handle::try_current().unwrap_err().to_string().contains("no spindle runtime"));
}

#[test]
fn block_on_inside_runtime_panics_instead_of_deadlocking() {
    each_flavor(|rt| {
        let err = rt.block_on(async { spindle::spawn(async { spindle::block_on(async {}) }).await.unwrap_err() });
        assert!(err.is_panic());
        assert!(err.to_string().contains("cannot block_on inside a runtime"), "{err}");
        // Also directly inside block_on's own future.
        let p = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(async { spindle::block_on(async {}) })
        }));
        assert!(panic_message(&*p.unwrap_err()).contains("cannot block_on inside a runtime"));
        // The runtime still works after that.
        assert_eq!(rt.block_on(async { 1 }), 1);
    });
}

#[test]
fn handle_current_inside() {
    each_flavor(|rt| {
        let h = rt.block_on(async { Handle::current() });
        assert_eq!(rt.block_on(h.spawn(async { 2 })).unwrap(), 2);
        let h2 = rt.block_on(async { spindle::spawn(async { Handle::try_current().is_ok() }).await.unwrap() });
        assert!(h2);
    });
}

#[test]
fn enter_guard_allows_spawn() {
    each_flavor(|rt| {
        let h = {
            let _g = rt.enter();
            spindle::spawn(async { 8 })
        };
        assert!(Handle::try_current().is_err());
        assert_eq!(rt.block_on(h).unwrap(), 8);
    });
}

#[test]
fn metrics_count_alive_tasks() {
    each_flavor(|rt| {
        let (tx, rx) = oneshot::channel::<()>();
        let h = rt.spawn(async move { rx.await.ok() });
        assert_eq!(rt.handle().metrics().num_alive_tasks(), 1);
        tx.send(()).unwrap();
        rt.block_on(h).unwrap();
        // The task leaves the registry at completion, before its joiner is woken (a joiner polled
        // spuriously in between could see it a moment earlier, hence the bounded wait).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while rt.handle().metrics().num_alive_tasks() != 0 {
            assert!(std::time::Instant::now() < deadline, "task never left the registry");
            std::thread::yield_now();
        }
    });
}

#[test]
fn stress_many_tasks_with_yields() {
    let rt = Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let total = rt.block_on(async {
        let counter = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..100_000)
            .map(|i| {
                let c = counter.clone();
                spindle::spawn(async move {
                    if i % 7 == 0 {
                        task::yield_now().await;
                    }
                    c.fetch_add(1, SeqCst);
                })
            })
            .collect();
        for h in hs {
            h.await.unwrap();
        }
        counter.load(SeqCst)
    });
    assert_eq!(total, 100_000);
}

#[test]
fn worker_threads_are_named() {
    let rt = Builder::new_multi_thread().worker_threads(2).thread_name("named-w").build().unwrap();
    let name =
        rt.block_on(async { spindle::spawn(async { std::thread::current().name().map(String::from) }).await.unwrap() });
    assert_eq!(name.as_deref(), Some("named-w"));
    let _ = Duration::ZERO;
}

#[test]
fn join_handles_work_from_another_executor_without_budget_livelock() {
    // Outside a spindle poll the budget is unconstrained: a foreign executor polling many ready
    // join handles must not be told to yield forever.
    let rt = Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let hs: Vec<_> = (0..1000).map(|i| rt.spawn(async move { i })).collect();
    let sum: i32 = futures::executor::block_on(async {
        let mut s = 0;
        for h in hs {
            s += h.await.unwrap();
        }
        s
    });
    assert_eq!(sum, (0..1000).sum());
}

/// A current-thread runtime bound to its driving thread (`bind_to_driving_thread`): driven by a
/// thread that dropped a read in flight and then exited, spawned into from another thread, it
/// refuses `block_on` on another thread with a clear message, and is dropped there (with a
/// stream of it still open) without hanging.
#[test]
fn bound_current_thread_runtime_dropped_on_another_thread() {
    use spindle::io::AsyncReadOwned;
    let rt = Arc::new(Builder::new_current_thread().bind_to_driving_thread(true).build().unwrap());
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let owner = {
        let rt = rt.clone();
        std::thread::spawn(move || {
            rt.block_on(async move {
                let mut s = spindle::net::TcpStream::connect(addr).await.unwrap();
                // A read that never completes, dropped in flight when the timeout ends.
                let read = s.read_owned(vec![0u8; 16]);
                let _ = spindle::time::timeout(Duration::from_millis(20), read).await;
                started_tx.send(()).unwrap();
                // Keep driving until told to stop, so another thread's block_on meets a driven runtime.
                let _ = spindle::task::spawn_blocking(move || release_rx.recv()).await;
                s
            })
        })
    };
    // Sent once the connect finished, so the accept after it returns at once (a failed owner
    // fails the wait instead of leaving the accept blocked for good).
    started_rx.recv_timeout(Duration::from_secs(20)).expect("the owner thread never connected");
    let (_peer, _) = l.accept().unwrap();
    // Spawning from another thread while the owner drives.
    let handle = rt.handle().clone();
    let spawned = handle.spawn(async { 5 });
    release_tx.send(()).unwrap();
    let stream = owner.join().unwrap();
    // The owner is gone: block_on here may not drive the runtime.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(async {})));
    let msg = panic_message(&*r.expect_err("block_on on another thread must panic"));
    assert!(msg.contains("bind_to_driving_thread"), "{msg}");
    drop(spawned);
    drop(stream);
    drop(rt);
}

/// A waker that panics: in `wake` (`on_wake`) or in its last drop (`on_drop`).
fn panicking_waker(woken: Arc<std::sync::atomic::AtomicUsize>, on_wake: bool) -> std::task::Waker {
    use std::sync::atomic::Ordering::SeqCst;
    use std::task::{RawWaker, RawWakerVTable};
    type Count = std::sync::atomic::AtomicUsize;
    unsafe fn clone(p: *const ()) -> RawWaker {
        // SAFETY: `p` came from `Arc::into_raw` of a `Count`; one more strong count for the clone.
        unsafe { Arc::increment_strong_count(p as *const Count) };
        RawWaker::new(p, vtable(p))
    }
    fn vtable(_: *const ()) -> &'static RawWakerVTable {
        &WAKE_PANICS
    }
    unsafe fn wake(p: *const ()) {
        // SAFETY: as in `clone`; `wake` consumes this waker's count.
        unsafe {
            wake_by_ref(p);
            drop_waker(p);
        }
    }
    unsafe fn wake_by_ref(p: *const ()) {
        // SAFETY: the count is alive while this waker is.
        let count = unsafe { &*(p as *const Count) };
        let n = count.fetch_add(1, SeqCst);
        // Bit 62 set: this waker panics on wake, else on its last drop.
        if n & (1 << 62) != 0 {
            panic!("waker panics on wake");
        }
    }
    unsafe fn drop_waker(p: *const ()) {
        // SAFETY: as in `clone`.
        let a = unsafe { Arc::from_raw(p as *const Count) };
        let panics_on_drop = a.load(SeqCst) & (1 << 62) == 0 && a.load(SeqCst) > 0 && Arc::strong_count(&a) > 1;
        drop(a);
        if panics_on_drop {
            panic!("waker panics on drop");
        }
    }
    static WAKE_PANICS: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);
    if on_wake {
        woken.fetch_add(1 << 62, SeqCst);
    }
    // SAFETY: the vtable's functions keep the `Arc` counts balanced as described above.
    unsafe { std::task::Waker::from_raw(RawWaker::new(Arc::into_raw(woken) as *const (), &WAKE_PANICS)) }
}

/// A join handle's waker that panics when the task completes does not kill the worker that ran
/// the task (the runtime then ran nothing more, and dropping it hung).
#[test]
fn a_panicking_join_waker_does_not_take_a_worker_down() {
    use spindle::time::timeout;
    use std::future::Future;
    use std::task::Context;
    let rt = Builder::new_multi_thread().worker_threads(1).build().unwrap();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let go_rx = std::sync::Mutex::new(go_rx);
    let mut h = rt.spawn(async move {
        spindle::spawn_blocking(move || go_rx.lock().unwrap().recv().unwrap()).await.unwrap();
        1
    });
    let woken = Arc::new(AtomicUsize::new(0));
    let w = panicking_waker(woken.clone(), true);
    let mut cx = Context::from_waker(&w);
    assert!(std::pin::Pin::new(&mut h).poll(&mut cx).is_pending());
    go_tx.send(()).unwrap();
    let start = std::time::Instant::now();
    while woken.load(SeqCst) & 0xff == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the task never completed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let v = rt.block_on(async { timeout(Duration::from_secs(10), spindle::spawn(async { 2 })).await });
    assert_eq!(v.expect("the worker no longer runs tasks").unwrap(), 2);
    drop(h);
    drop(rt);
}

/// A waker whose drop panics, fired by a timer, does not kill the worker firing timers.
#[test]
fn a_waker_panicking_on_drop_fired_by_a_timer_does_not_take_a_worker_down() {
    use spindle::time::timeout;
    use std::future::Future;
    use std::task::Context;
    let rt = Builder::new_multi_thread().worker_threads(1).build().unwrap();
    let woken = Arc::new(AtomicUsize::new(0));
    {
        let _g = rt.enter();
        let mut s = Box::pin(spindle::time::sleep(Duration::from_millis(20)));
        let w = panicking_waker(woken.clone(), false);
        let mut cx = Context::from_waker(&w);
        assert!(s.as_mut().poll(&mut cx).is_pending());
        let start = std::time::Instant::now();
        while woken.load(SeqCst) == 0 {
            assert!(start.elapsed() < Duration::from_secs(10), "the timer never fired");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::mem::forget(w);
    }
    let v = rt.block_on(async { timeout(Duration::from_secs(10), spindle::spawn(async { 2 })).await });
    assert_eq!(v.expect("the worker no longer runs tasks").unwrap(), 2);
}

/// Enter guards dropped out of order are refused with a clear panic, as in tokio (they left a
/// stale runtime current, or the thread marked as inside a runtime for good).
#[test]
fn enter_guards_dropped_out_of_order_panic_instead_of_corrupting_the_thread() {
    let a = Builder::new_current_thread().build().unwrap();
    let b = Builder::new_current_thread().build().unwrap();
    let msg = std::thread::scope(|s| {
        s.spawn(|| {
            let ga = a.enter();
            let gb = b.enter();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(ga)));
            std::mem::forget(gb);
            r.map(|_| ()).map_err(|p| panic_message(&*p))
        })
        .join()
        .unwrap()
    });
    assert!(msg.unwrap_err().contains("dropped out of order"));
    // A guard that escapes the block_on it was made in.
    let msg = std::thread::scope(|s| {
        s.spawn(|| {
            let bh = b.handle();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                std::mem::forget(a.block_on(async move { bh.enter() }))
            }));
            r.map_err(|p| panic_message(&*p))
        })
        .join()
        .unwrap()
    });
    assert!(msg.unwrap_err().contains("dropped out of order"));
    // In order, everything is restored.
    let ga = a.enter();
    let gb = b.enter();
    drop(gb);
    drop(ga);
    assert!(Handle::try_current().is_err());
    assert_eq!(a.block_on(async { 1 }), 1);
}
