//! Loom models of the task cell: state word transitions, wakers, `JoinHandle`, abort, shutdown.
//!
//! Run with:
//!   cd /work/main && RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/work/target-loom \
//!     cargo test -p spindle-core --release --test loom_task
//! (`LOOM_MAX_PREEMPTIONS=N` overrides the preemption bound of 3 used here.)
#![cfg(loom)]

mod support;

use std::task::Poll;

use loom::thread;
use support::*;

/// The test's own waker for a join handle, and its counter.
fn join_waker() -> (loom::sync::Arc<WakeCounter>, std::task::Waker) {
    let c = WakeCounter::new();
    let w = counting_waker(&c);
    (c, w)
}

/// Awaits a finished task's handle: it must be ready now.
fn expect_ready<T>(jh: &mut spindle_core::task::JoinHandle<T>) -> Result<T, spindle_core::task::JoinError> {
    let (c, w) = join_waker();
    let r = match poll_join(jh, &w) {
        Poll::Ready(r) => r,
        Poll::Pending => panic!("the task finished but its JoinHandle is pending"),
    };
    drop(w);
    assert_eq!(c.wakes(), 0);
    r
}

/// A wake from another thread races with the task's poll: the task returns `Pending` once
/// (registering its waker), another thread fires the event and wakes it (by value or by
/// reference) and also works the run queue, so the wake can land before, during or after the
/// first poll. The task must be polled exactly twice, never concurrently, and complete once.
fn wake_races_with_poll(by_ref: bool, detach: bool) {
    model(move || {
        let rt = Rt::new();
        let counters = Counters::new();
        let signal = Signal::new();
        let mut jh = Some(rt.spawn(Tracked::new(WaitSignal::new(&signal, 7), &counters)));
        if detach {
            // A detached task: its output is dropped by the runtime, and the last reference
            // may be the waker dropped on the other thread.
            drop(jh.take());
        }

        let t = {
            let rt = rt.clone();
            let signal = signal.clone();
            thread::spawn(move || {
                signal.fire(by_ref);
                rt.run_all();
            })
        };
        rt.run_all();
        t.join().unwrap();
        rt.run_all();

        assert_eq!(counters.polls(), 2, "one Pending poll, then one Ready poll");
        assert_eq!(counters.fut_drops(), 1);
        if let Some(mut jh) = jh {
            assert!(jh.is_finished());
            let out = expect_ready(&mut jh).expect("task completed normally");
            assert_eq!(out.value, 7);
            assert_eq!(counters.out_drops(), 0);
            drop(out);
            drop(jh);
        }
        assert_eq!(counters.out_drops(), 1, "output dropped exactly once");
        rt.assert_quiescent();
    });
}

#[test]
fn wake_by_val_races_with_poll() {
    wake_races_with_poll(false, false);
}

#[test]
fn wake_by_ref_races_with_poll() {
    wake_races_with_poll(true, false);
}

#[test]
fn wake_races_with_poll_detached() {
    wake_races_with_poll(false, true);
}

/// The `JoinHandle` is polled (twice, with two different wakers, so both the set and the
/// replace paths of the join-waker protocol run) while another thread runs the task to
/// completion. No wake-up may be lost: if the last poll returned `Pending`, the waker given to it
/// must be woken exactly once. The output is read exactly once.
#[test]
fn join_handle_poll_races_completion() {
    model(|| {
        let rt = Rt::new();
        let counters = Counters::new();
        let mut jh = rt.spawn(Tracked::new(Ready(3), &counters));
        let t = {
            let rt = rt.clone();
            thread::spawn(move || {
                rt.run_all();
            })
        };

        let (ca, wa) = join_waker();
        let (cb, wb) = join_waker();
        let mut out = None;
        let mut pending_on_b = false;
        match poll_join(&mut jh, &wa) {
            Poll::Ready(r) => out = Some(r),
            Poll::Pending => match poll_join(&mut jh, &wb) {
                Poll::Ready(r) => out = Some(r),
                Poll::Pending => pending_on_b = true,
            },
        }
        t.join().unwrap();
        assert!(jh.is_finished());

        if pending_on_b {
            assert_eq!(cb.wakes(), 1, "lost wake-up: the last registered join waker was not woken");
            assert_eq!(ca.wakes(), 0, "a replaced join waker was woken");
            out = Some(expect_ready(&mut jh));
        } else {
            assert_eq!(cb.wakes(), 0);
        }
        assert!(ca.wakes() <= 1);
        let out = out.unwrap().expect("task completed normally");
        assert_eq!(out.value, 3);
        drop(out);
        drop(jh);
        drop((wa, wb));

        assert_eq!(counters.polls(), 1);
        assert_eq!(counters.fut_drops(), 1);
        assert_eq!(counters.out_drops(), 1);
        rt.assert_quiescent();
        // The join waker clone stored in the cell was released with it.
        assert_eq!(loom::sync::Arc::strong_count(&ca), 1);
        assert_eq!(loom::sync::Arc::strong_count(&cb), 1);
    });
}

/// The `JoinHandle` is dropped (right away, through the fast path, or after registering a join
/// waker) while another thread completes the task. The output must be dropped exactly once,
/// by whichever side is last to care, and the stored join waker must be released.
fn join_handle_drop_races_completion(poll_first: bool) {
    model(move || {
        let rt = Rt::new();
        let counters = Counters::new();
        let mut jh = rt.spawn(Tracked::new(YieldOnce::new(5), &counters));
        let t = {
            let rt = rt.clone();
            thread::spawn(move || {
                rt.run_all();
            })
        };
        let (c, w) = join_waker();
        let mut early = None;
        if poll_first {
            if let Poll::Ready(r) = poll_join(&mut jh, &w) {
                early = Some(r.expect("task completed normally"));
            }
        }
        drop(jh);
        t.join().unwrap();
        rt.run_all();

        if let Some(out) = early {
            assert_eq!(out.value, 5);
            assert_eq!(counters.out_drops(), 0);
            drop(out);
        }
        assert_eq!(counters.polls(), 2);
        assert_eq!(counters.fut_drops(), 1);
        assert_eq!(counters.out_drops(), 1, "output dropped exactly once");
        rt.assert_quiescent();
        drop(w);
        assert!(c.wakes() <= 1);
        assert_eq!(loom::sync::Arc::strong_count(&c), 1, "join waker leaked");
    });
}

#[test]
fn join_handle_drop_races_completion_fast() {
    join_handle_drop_races_completion(false);
}

#[test]
fn join_handle_drop_after_poll_races_completion() {
    join_handle_drop_races_completion(true);
}

/// `abort()` from another thread races with the task's polls (it yields once, then is ready).
/// The outcome is either the output or a cancellation error, the future is dropped exactly once
/// (by a worker, never by the aborting thread while it is polled), and nothing leaks.
#[test]
fn abort_races_with_poll() {
    model(|| {
        let rt = Rt::new();
        let counters = Counters::new();
        let mut jh = rt.spawn(Tracked::new(YieldOnce::new(9), &counters));
        let t = {
            let rt = rt.clone();
            thread::spawn(move || {
                rt.run_all();
            })
        };
        jh.abort();
        rt.run_all();
        t.join().unwrap();
        rt.run_all();

        assert!(jh.is_finished());
        assert_eq!(counters.fut_drops(), 1, "future dropped exactly once");
        assert!(counters.polls() <= 2);
        match expect_ready(&mut jh) {
            Ok(out) => {
                assert_eq!(counters.polls(), 2);
                assert_eq!(out.value, 9);
                drop(out);
                assert_eq!(counters.out_drops(), 1);
            }
            Err(e) => {
                assert!(e.is_cancelled(), "unexpected error {e:?}");
                assert_eq!(e.id(), Some(jh.id()));
                assert_eq!(counters.out_drops(), 0);
            }
        }
        drop(jh);
        rt.assert_quiescent();
    });
}

/// `abort()` of a task that never finishes on its own: whatever the interleaving with the
/// worker, the handle must end with a cancellation error and the future dropped once.
#[test]
fn abort_pending_forever() {
    model(|| {
        let rt = Rt::new();
        let counters = Counters::new();
        let mut jh = rt.spawn(Tracked::new(Forever, &counters));
        let t = {
            let rt = rt.clone();
            thread::spawn(move || {
                rt.run_all();
            })
        };
        jh.abort();
        t.join().unwrap();
        rt.run_all();

        assert!(counters.polls() <= 1);
        assert_eq!(counters.fut_drops(), 1);
        let e = expect_ready(&mut jh).expect_err("aborted");
        assert!(e.is_cancelled());
        drop(jh);
        rt.assert_quiescent();
    });
}

/// Runtime shutdown races with a wake from another thread (which also works the queue, so the
/// shutdown may also find the task running). The task ends exactly once, either with its output
/// or cancelled; its future is dropped exactly once; queue entries left behind are released.
#[test]
fn shutdown_races_with_wake() {
    model(|| {
        let rt = Rt::new();
        let counters = Counters::new();
        let signal = Signal::new();
        let mut jh = rt.spawn(Tracked::new(WaitSignal::new(&signal, 11), &counters));
        // First poll: registers the waker and goes idle.
        assert_eq!(rt.run_all(), 1);
        let t = {
            let rt = rt.clone();
            let signal = signal.clone();
            thread::spawn(move || {
                signal.fire(false);
                rt.run_all();
            })
        };
        rt.shutdown();
        t.join().unwrap();
        rt.run_all();

        assert!(jh.is_finished());
        assert_eq!(counters.fut_drops(), 1, "future dropped exactly once");
        match expect_ready(&mut jh) {
            Ok(out) => {
                assert_eq!(out.value, 11);
                assert_eq!(counters.polls(), 2);
            }
            Err(e) => {
                assert!(e.is_cancelled(), "unexpected error {e:?}");
                assert_eq!(counters.out_drops(), 0);
            }
        }
        drop(jh);
        rt.assert_quiescent();
        assert!(counters.out_drops() <= 1);
    });
}

/// Shutdown races with a detached task that another thread polls; also checks the output of a
/// task completing during shutdown is dropped by the runtime exactly once.
#[test]
fn shutdown_races_with_poll_detached() {
    model(|| {
        let rt = Rt::new();
        let counters = Counters::new();
        drop(rt.spawn(Tracked::new(YieldOnce::new(1), &counters)));
        let t = {
            let rt = rt.clone();
            thread::spawn(move || {
                rt.run_all();
            })
        };
        rt.shutdown();
        t.join().unwrap();
        rt.run_all();

        assert_eq!(counters.fut_drops(), 1);
        assert!(counters.out_drops() <= 1);
        assert_eq!(counters.out_drops(), usize::from(counters.polls() == 2));
        rt.assert_quiescent();
    });
}

/// Everything at once on one task: a wake and a worker on one thread, a second worker, and the
/// joiner polling its handle, aborting, and polling again. The outcome is the output or a
/// cancellation, the future is polled without overlap and dropped once, the last registered join
/// waker is woken if the handle was left pending, and nothing leaks.
#[test]
fn wake_abort_join_two_workers() {
    model(|| {
        let rt = Rt::new();
        let counters = Counters::new();
        let signal = Signal::new();
        let mut jh = rt.spawn(Tracked::new(WaitSignal::new(&signal, 13), &counters));
        let t1 = {
            let (rt, signal) = (rt.clone(), signal.clone());
            thread::spawn(move || {
                signal.fire(false);
                rt.run_all();
            })
        };
        let t2 = {
            let rt = rt.clone();
            thread::spawn(move || {
                rt.run_all();
            })
        };
        let (ca, wa) = join_waker();
        let mut result = None;
        if let Poll::Ready(r) = poll_join(&mut jh, &wa) {
            result = Some(r);
        }
        jh.abort();
        let (cb, wb) = join_waker();
        let mut pending_on_b = false;
        if result.is_none() {
            match poll_join(&mut jh, &wb) {
                Poll::Ready(r) => result = Some(r),
                Poll::Pending => pending_on_b = true,
            }
        }
        t1.join().unwrap();
        t2.join().unwrap();
        rt.run_all();

        assert!(jh.is_finished());
        assert_eq!(counters.fut_drops(), 1);
        if pending_on_b {
            assert_eq!(cb.wakes(), 1, "lost join wake-up");
            result = Some(expect_ready(&mut jh));
        }
        match result.unwrap() {
            Ok(out) => {
                assert_eq!(out.value, 13);
                assert_eq!(counters.polls(), 2);
            }
            Err(e) => assert!(e.is_cancelled(), "unexpected error {e:?}"),
        }
        drop(jh);
        drop((wa, wb));
        rt.assert_quiescent();
        assert!(counters.out_drops() <= 1);
        assert_eq!(loom::sync::Arc::strong_count(&ca), 1);
        assert_eq!(loom::sync::Arc::strong_count(&cb), 1);
    });
}

/// Shutdown on one thread races with `abort()` and a worker on two others.
#[test]
fn shutdown_races_abort_and_poll() {
    model(|| {
        let rt = Rt::new();
        let counters = Counters::new();
        let jh = loom::sync::Arc::new(rt.spawn(Tracked::new(YieldOnce::new(4), &counters)));
        let t1 = {
            let rt = rt.clone();
            thread::spawn(move || {
                rt.run_all();
            })
        };
        let t2 = {
            let jh = jh.clone();
            thread::spawn(move || jh.abort())
        };
        rt.shutdown();
        t1.join().unwrap();
        t2.join().unwrap();
        rt.run_all();

        assert_eq!(counters.fut_drops(), 1);
        let mut jh = loom::sync::Arc::try_unwrap(jh).unwrap();
        match expect_ready(&mut jh) {
            Ok(out) => assert_eq!(out.value, 4),
            Err(e) => assert!(e.is_cancelled(), "unexpected error {e:?}"),
        }
        drop(jh);
        rt.assert_quiescent();
        assert!(counters.out_drops() <= 1);
    });
}

/// Shutdown races with a poll that returns `Pending` without being woken: the shutdown finds
/// the task running, so it only marks it cancelled and the poller must drop the future when it
/// goes idle (otherwise the future would outlive the runtime, dropped by whoever drops the last
/// reference).
#[test]
fn shutdown_races_with_pending_poll() {
    model(|| {
        let rt = Rt::new();
        let counters = Counters::new();
        let mut jh = rt.spawn(Tracked::new(Forever, &counters));
        let t = {
            let rt = rt.clone();
            thread::spawn(move || {
                rt.run_all();
            })
        };
        rt.shutdown();
        t.join().unwrap();
        assert_eq!(counters.fut_drops(), 1, "shutdown must drop the future before it returns or the poll ends");
        rt.run_all();

        assert!(counters.polls() <= 1);
        let e = expect_ready(&mut jh).expect_err("cancelled by shutdown");
        assert!(e.is_cancelled());
        drop(jh);
        rt.assert_quiescent();
    });
}
