//! Loom models of the per-worker bounded queue: owner push/pop racing with half-steals.
//!
//! Run with:
//!   cd /work/main && RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/work/target-loom \
//!     cargo test -p spindle-core --release --test loom_local_queue
//! (`LOOM_MAX_PREEMPTIONS=N` overrides the preemption bound of 3 used here.)
//!
//! The capacity is fixed at 256, so the overflow path is checked by a plain unit test in
//! `src/queue/local.rs`, plus one model here that pre-fills the queue before other threads exist.
#![cfg(loom)]

mod support;

use loom::thread;
use spindle_core::queue::local::{self, Local, CAPACITY};
use support::{model, model_with};

fn push(q: &mut Local<usize>, v: usize) {
    q.push_back(v, |_| panic!("unexpected overflow"));
}

fn drain(q: &mut Local<usize>, into: &mut Vec<usize>) {
    while let Some(v) = q.pop() {
        into.push(v);
    }
}

/// A steal returns the newest entry it moved, and the others come out of the stealer's queue
/// oldest first: `[newest, oldest, ..]`.
fn assert_steal_order(stolen: &[usize]) {
    if let Some((newest, rest)) = stolen.split_first() {
        assert!(rest.windows(2).all(|w| w[0] < w[1]), "stolen entries out of order: {stolen:?}");
        assert!(rest.iter().all(|v| v < newest), "steal did not return its newest entry: {stolen:?}");
    }
}

/// Every value in `0..n` seen exactly once.
fn assert_exactly_once(mut seen: Vec<usize>, n: usize) {
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>(), "values lost or duplicated");
}

/// The owner pushes while a stealer steals half into its own queue and the owner pops.
#[test]
fn steal_races_with_push_and_pop() {
    model(|| {
        let (mut q, stealer) = local::new::<usize>();
        push(&mut q, 0);
        push(&mut q, 1);
        let th = thread::spawn(move || {
            let (mut dst, _) = local::new::<usize>();
            let mut got = Vec::new();
            if let Some(v) = stealer.steal_into(&mut dst) {
                got.push(v);
            }
            drain(&mut dst, &mut got);
            got
        });
        push(&mut q, 2);
        let mut seen = Vec::new();
        if let Some(v) = q.pop() {
            seen.push(v);
        }
        push(&mut q, 3);
        drain(&mut q, &mut seen);
        // The owner's own pops come out in push order.
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "owner pops out of order: {seen:?}");
        let stolen = th.join().unwrap();
        assert_steal_order(&stolen);
        seen.extend(stolen);
        assert_exactly_once(seen, 4);
        assert!(q.is_empty());
    });
}

/// The owner pushes into an empty queue while a stealer steals: a stolen entry must have been
/// fully written (published by the owner's tail store) before the stealer reads it.
#[test]
fn steal_races_with_push_on_empty() {
    model(|| {
        let (mut q, stealer) = local::new::<usize>();
        let th = thread::spawn(move || {
            let (mut dst, _) = local::new::<usize>();
            let mut got = Vec::new();
            for _ in 0..2 {
                if let Some(v) = stealer.steal_into(&mut dst) {
                    got.push(v);
                }
            }
            drain(&mut dst, &mut got);
            got
        });
        push(&mut q, 0);
        push(&mut q, 1);
        let mut seen = th.join().unwrap();
        drain(&mut q, &mut seen);
        assert_exactly_once(seen, 2);
    });
}

/// Two stealers race each other (one of them gives up while the other copies) and the owner's pops.
#[test]
fn two_stealers_and_owner_pop() {
    model(|| {
        let (mut q, stealer) = local::new::<usize>();
        for v in 0..4 {
            push(&mut q, v);
        }
        let spawn_stealer = |s: local::Stealer<usize>| {
            thread::spawn(move || {
                let (mut dst, _) = local::new::<usize>();
                let mut got = Vec::new();
                if let Some(v) = s.steal_into(&mut dst) {
                    got.push(v);
                }
                drain(&mut dst, &mut got);
                got
            })
        };
        let t1 = spawn_stealer(stealer.clone());
        let t2 = spawn_stealer(stealer);
        let mut seen = Vec::new();
        drain(&mut q, &mut seen);
        for t in [t1, t2] {
            let stolen = t.join().unwrap();
            assert_steal_order(&stolen);
            seen.extend(stolen);
        }
        drain(&mut q, &mut seen);
        assert_exactly_once(seen, 4);
    });
}

/// Worker B steals from A into its queue while worker C steals from B: the entries B copies
/// into its own buffer must not be visible to C before B publishes its tail.
#[test]
fn chained_steal() {
    model(|| {
        let (mut a, a_stealer) = local::new::<usize>();
        for v in 0..4 {
            push(&mut a, v);
        }
        let (mut b, b_stealer) = local::new::<usize>();
        let tc = thread::spawn(move || {
            let (mut c, _) = local::new::<usize>();
            let mut got = Vec::new();
            if let Some(v) = b_stealer.steal_into(&mut c) {
                got.push(v);
            }
            drain(&mut c, &mut got);
            got
        });
        let tb = thread::spawn(move || {
            let mut got = Vec::new();
            if let Some(v) = a_stealer.steal_into(&mut b) {
                got.push(v);
            }
            drain(&mut b, &mut got);
            got
        });
        let mut seen = tb.join().unwrap();
        seen.extend(tc.join().unwrap());
        drain(&mut a, &mut seen);
        assert_exactly_once(seen, 4);
    });
}

/// The owner's push overflows a full queue (filled before the stealer exists, so the fill is a
/// single path) while a stealer takes half of it: the pushed value and every entry end up
/// exactly once in the overflow, the stealer's queue or the owner's queue.
#[test]
fn overflow_races_with_steal() {
    // Filling 256 entries takes ~800 branch points, past loom's default budget of 1000.
    model_with(3, Some(20_000), || {
        let (mut q, stealer) = local::new::<usize>();
        for v in 0..CAPACITY {
            push(&mut q, v);
        }
        let th = thread::spawn(move || {
            let (mut dst, _) = local::new::<usize>();
            let mut got = Vec::new();
            if let Some(v) = stealer.steal_into(&mut dst) {
                got.push(v);
            }
            drain(&mut dst, &mut got);
            got
        });
        let mut overflowed = Vec::new();
        q.push_back(CAPACITY, |o| overflowed.extend(o));
        // Overflow (if the stealer did not make room first) hands out entries oldest first and
        // the new value last: either half the queue plus the value, or just the value while a
        // steal is in progress.
        if !overflowed.is_empty() {
            assert!(overflowed.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(overflowed.last(), Some(&CAPACITY));
            assert!(overflowed.len() == 1 || overflowed.len() == CAPACITY / 2 + 1);
        }
        let mut seen = overflowed;
        let stolen = th.join().unwrap();
        assert_steal_order(&stolen);
        seen.extend(stolen);
        drain(&mut q, &mut seen);
        assert_exactly_once(seen, CAPACITY + 1);
    });
}

/// A full queue, two stealers and the owner popping then pushing: while one stealer still copies
/// its half, the other must back off and the owner's pop must keep the steal head where it is
/// (the steal head trails), so the owner cannot reuse the slots being copied; its pushes either
/// fit or overflow, and nothing is lost or duplicated.
#[test]
fn full_queue_two_stealers_and_push() {
    model_with(3, Some(20_000), || {
        let (mut q, stealer) = local::new::<usize>();
        for v in 0..CAPACITY {
            push(&mut q, v);
        }
        let spawn_stealer = |s: local::Stealer<usize>| {
            thread::spawn(move || {
                let (mut dst, _) = local::new::<usize>();
                let mut got = Vec::new();
                if let Some(v) = s.steal_into(&mut dst) {
                    got.push(v);
                }
                drain(&mut dst, &mut got);
                got
            })
        };
        let t1 = spawn_stealer(stealer.clone());
        let t2 = spawn_stealer(stealer);
        let mut seen: Vec<usize> = q.pop().into_iter().collect();
        for v in CAPACITY..CAPACITY + 2 {
            q.push_back(v, |o| seen.extend(o));
        }
        for t in [t1, t2] {
            let stolen = t.join().unwrap();
            assert_steal_order(&stolen);
            seen.extend(stolen);
        }
        drain(&mut q, &mut seen);
        assert_exactly_once(seen, CAPACITY + 2);
    });
}
