//! Loom models of the structured-concurrency wake paths, driving the real `scope!` and `join` /
//! `merge`: the scope's per-child wakers (child state word `QUEUED`/`COMPLETE`, the lock-free
//! ready stack, the `polling` flag that skips parent wakes, cell reference counts) and the
//! per-branch wake set of the combinators (a push onto a non-empty ready stack skips the parent
//! wake), and a `TaskGroup` whose tasks finish on other threads while its joiner waits.
//!
//! Every model runs the scope (or combinator) on the main loom thread with a waker that unparks
//! it, and wakes children from other loom threads. A lost wake leaves the main thread parked
//! forever, which loom reports as a deadlock; a cell freed while a waker still used it, or a
//! stage touched by two threads at once, is a loom failure; each child counts its polls, and a
//! model asserts a child was polled at most once per wake it received plus once at its start
//! (no double enqueue).
//!
//! Run with:
//!   RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/work/target-h4-loom \
//!     cargo test -p spindle-core --release --test loom_structured
#![cfg(loom)]

mod sync_loom;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::sync::Mutex;
use loom::thread;
use spindle_core::structured::join;
use sync_loom::{block_on, model};

/// A latch that opens after `needed` calls to [`Latch::hit`], each of which wakes the last waker
/// its future registered (a waker is kept, not taken, so every hit wakes).
struct Latch {
    hits: AtomicUsize,
    polls: AtomicUsize,
    waker: Mutex<Option<Waker>>,
    needed: usize,
}

impl Latch {
    fn new(needed: usize) -> Arc<Latch> {
        Arc::new(Latch { hits: AtomicUsize::new(0), polls: AtomicUsize::new(0), waker: Mutex::new(None), needed })
    }

    fn hit(&self) {
        self.hits.fetch_add(1, SeqCst);
        if let Some(w) = &*self.waker.lock().unwrap() {
            w.wake_by_ref();
        }
    }

    /// Waits until opened; returns how many polls that took.
    fn wait(self: &Arc<Self>) -> Wait {
        Wait(self.clone())
    }

    fn polls(&self) -> usize {
        self.polls.load(SeqCst)
    }
}

struct Wait(Arc<Latch>);

impl Future for Wait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let l = &self.0;
        l.polls.fetch_add(1, SeqCst);
        *l.waker.lock().unwrap() = Some(cx.waker().clone());
        if l.hits.load(SeqCst) >= l.needed {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        // Release the child's waker (and its reference on the cell) with the future, as real
        // leaf futures do.
        self.0.waker.lock().unwrap().take();
    }
}

/// Two children of one scope, each woken once from its own thread, concurrently with the scope
/// draining its ready stack and deciding whether to wake its own task: neither wake is lost and
/// each child is polled at most twice (its first poll and one per wake).
#[test]
fn scope_two_children_woken_from_two_threads() {
    model(3, || {
        let (a, b) = (Latch::new(1), Latch::new(1));
        let (a2, b2) = (a.clone(), b.clone());
        let ta = thread::spawn(move || a2.hit());
        let tb = thread::spawn(move || b2.hit());
        block_on(spindle_core::scope!(|s| async {
            s.spawn(a.wait());
            s.spawn(b.wait());
        }));
        ta.join().unwrap();
        tb.join().unwrap();
        assert!(a.polls() <= 2 && b.polls() <= 2, "polled {} and {} times", a.polls(), b.polls());
    });
}

/// One child woken twice, from two threads at once (the same waker, cloned by each): the wakes
/// may coalesce (the child is queued at most once) but the last one is never lost, and the child
/// is polled at most three times.
#[test]
fn scope_same_child_woken_twice_concurrently() {
    model(3, || {
        let a = Latch::new(2);
        let (a1, a2) = (a.clone(), a.clone());
        let t1 = thread::spawn(move || a1.hit());
        let t2 = thread::spawn(move || a2.hit());
        block_on(spindle_core::scope!(|s| async {
            s.spawn(a.wait());
        }));
        t1.join().unwrap();
        t2.join().unwrap();
        assert!(a.polls() <= 3, "polled {} times", a.polls());
    });
}

/// A child completes while another thread holds a clone of its waker and wakes it late: the
/// wake after completion (and after the scope finished and freed its slab) queues nothing and
/// touches only the cell's reference-counted header; the last reference frees the cell.
#[test]
fn scope_wake_after_child_completion() {
    model(3, || {
        let stash: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
        let go = Latch::new(1);
        let (stash2, go2) = (stash.clone(), go.clone());
        let t = thread::spawn(move || {
            go2.hit();
            // Wake (and drop) the finished child's waker, racing the scope's completion.
            let w = stash2.lock().unwrap().take();
            if let Some(w) = w {
                w.wake();
            }
        });
        let out = block_on(spindle_core::scope!(|s| async {
            let stash = stash.clone();
            let h = s.spawn(async move {
                std::future::poll_fn(|cx| {
                    *stash.lock().unwrap() = Some(cx.waker().clone());
                    Poll::Ready(())
                })
                .await;
                7
            });
            // The body waits for the other thread, so the finished child's waker is live while
            // the scope goes on.
            go.wait().await;
            h.await.unwrap()
        }));
        assert_eq!(out, 7);
        t.join().unwrap();
        // If the thread ran before the child stashed its waker, drop it here.
        drop(stash.lock().unwrap().take());
    });
}

/// A child's waker is woken from another thread while the scope future is being dropped (the
/// scope's ready stack closes, the child's future is dropped): the wake pushes nothing after the
/// close, and the cell outlives the waker.
#[test]
fn scope_wake_races_scope_drop() {
    model(3, || {
        let a = Latch::new(1);
        let a2 = a.clone();
        let mut scope = Box::pin(spindle_core::scope!(|s| async {
            s.spawn(a.wait());
            std::future::pending::<()>().await
        }));
        assert!(sync_loom::poll_once(scope.as_mut()).is_pending());
        // The child registered its waker in its first poll; the thread wakes it while we drop.
        let w = a.waker.lock().unwrap().clone().expect("the child was polled");
        let t = thread::spawn(move || {
            a2.hits.fetch_add(1, SeqCst);
            w.wake();
        });
        drop(scope);
        t.join().unwrap();
        assert!(a.waker.lock().unwrap().is_none(), "the child's future was dropped with the scope");
    });
}

/// `join` of two branches, each woken from its own thread: the per-branch wake set loses no
/// wake, and each branch is polled at most once per wake plus its first poll.
#[test]
fn join_branches_woken_concurrently() {
    model(3, || {
        let (a, b) = (Latch::new(1), Latch::new(1));
        let (a2, b2) = (a.clone(), b.clone());
        let ta = thread::spawn(move || a2.hit());
        let tb = thread::spawn(move || b2.hit());
        block_on(join((a.wait(), b.wait())));
        ta.join().unwrap();
        tb.join().unwrap();
        assert!(a.polls() <= 2 && b.polls() <= 2, "polled {} and {} times", a.polls(), b.polls());
    });
}

/// Two branches woken one after the other from one thread while the join polls on another: the
/// second wake may land on the non-empty ready stack and skip the parent wake, which the first
/// push's wake must cover (a lost wake deadlocks the model).
#[test]
fn join_burst_of_wakes_from_one_thread() {
    model(3, || {
        let (a, b) = (Latch::new(1), Latch::new(1));
        let (a2, b2) = (a.clone(), b.clone());
        let t = thread::spawn(move || {
            a2.hit();
            b2.hit();
        });
        block_on(join((a.wait(), b.wait())));
        t.join().unwrap();
        assert!(a.polls() <= 2 && b.polls() <= 2, "polled {} and {} times", a.polls(), b.polls());
    });
}

/// A spawner that runs each task to completion on a loom thread of its own.
#[derive(Clone, Default)]
struct Threads(Arc<Mutex<Vec<thread::JoinHandle<()>>>>);

impl spindle_core::structured::Spawn for Threads {
    fn spawn<F>(&self, future: F, _meta: spindle_core::structured::SpawnMeta)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let t = thread::spawn(move || block_on(future));
        self.0.lock().unwrap().push(t);
    }
}

impl Threads {
    fn join_all(&self) {
        for t in std::mem::take(&mut *self.0.lock().unwrap()) {
            t.join().unwrap();
        }
    }
}

/// A fail-fast `TaskGroup` of two tasks finishing on their own threads (one fails, cancelling
/// the group's token) while the joiner takes results, yields once and sleeps on the group's
/// lock: every result arrives exactly once, `join_next` ends with `None`, no wake is lost.
#[test]
fn group_results_from_two_threads() {
    use spindle_core::structured::{TaskError, TaskGroup};
    // Long executions (three threads, the token's cancel hook), not unbounded ones.
    sync_loom::model_with(2, 20_000, || {
        let threads = Threads::default();
        let mut g = TaskGroup::<u32, &'static str, _>::with_spawner(threads.clone());
        g.spawn(async { Ok(1) });
        g.spawn(async { Err("failed") });
        let (mut oks, mut errs) = (0, 0);
        block_on(async {
            while let Some(r) = g.join_next().await {
                match r {
                    Ok(v) => oks += v,
                    Err(TaskError::Failed("failed")) => errs += 1,
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
        });
        assert_eq!((oks, errs), (1, 1));
        assert!(g.token().is_cancelled(), "the failure cancelled the fail-fast group");
        assert!(g.is_empty());
        drop(g);
        threads.join_all();
    });
}

/// One `join` branch woken twice at once from two threads: the wakes coalesce to at most one
/// queued entry each time, and the last wake is not lost.
#[test]
fn join_same_branch_woken_twice_concurrently() {
    model(3, || {
        let a = Latch::new(2);
        let (a1, a2) = (a.clone(), a.clone());
        let t1 = thread::spawn(move || a1.hit());
        let t2 = thread::spawn(move || a2.hit());
        block_on(join((a.wait(), std::future::ready(()))));
        t1.join().unwrap();
        t2.join().unwrap();
        assert!(a.polls() <= 3, "polled {} times", a.polls());
    });
}

/// A branch waker that outlives the `join` (a leaf kept it) and is woken after the join
/// completed and dropped its wake set: it only touches the reference-counted block, freed by
/// the last waker.
#[test]
fn join_wake_after_completion() {
    model(3, || {
        let stash: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
        let stash2 = stash.clone();
        let t = thread::spawn(move || {
            let w = stash2.lock().unwrap().take();
            if let Some(w) = w {
                w.wake();
            }
        });
        let s = stash.clone();
        let (x, y) = block_on(join((
            std::future::poll_fn(move |cx| {
                *s.lock().unwrap() = Some(cx.waker().clone());
                Poll::Ready(1)
            }),
            std::future::ready(2),
        )));
        assert_eq!((x, y), (1, 2));
        t.join().unwrap();
        drop(stash.lock().unwrap().take());
    });
}

/// The scope's token is cancelled from one thread while another wakes a child: the cancel hook
/// wakes the scope's task, the scope re-queues every child (racing the other thread's wake of the
/// same child), and the child sees the cancellation at its next poll.
#[test]
fn scope_cancel_races_child_wake() {
    use spindle_core::structured::{cancel_requested, with_token, CancelToken};
    model(2, || {
        let a = Latch::new(2); // never opens by hits alone: only the cancel ends the child
        let token = CancelToken::new();
        let (a2, t2) = (a.clone(), token.clone());
        let th = thread::spawn(move || a2.hit());
        let tc = thread::spawn(move || t2.cancel());
        let a3 = a.clone();
        block_on(with_token(
            token,
            spindle_core::scope!(|s| async {
                s.spawn(async move {
                    let mut w = a3.wait();
                    std::future::poll_fn(|cx| {
                        if cancel_requested() {
                            return Poll::Ready(());
                        }
                        Pin::new(&mut w).poll(cx)
                    })
                    .await
                });
            }),
        ));
        th.join().unwrap();
        tc.join().unwrap();
    });
}
