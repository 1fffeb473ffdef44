//! Loom models of Notify (permit vs waiter races, notify_waiters vs registration, cancellation
//! forwarding), Barrier (arrivals racing the leader) and OnceCell (racing initialisers).
//!
//! Run with:
//!   RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/work/target-loom \
//!     cargo test -p spindle-core --release --test loom_sync_notify
#![cfg(loom)]

mod sync_loom;

use std::pin::pin;
use std::sync::Arc;

use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;
use spindle_core::sync::{Barrier, Notify, OnceCell};
use sync_loom::*;

/// `notify_one` from another thread races the waiter's registration: the waiter always
/// completes (either it consumes the stored permit or it is woken).
#[test]
fn notify_one_races_notified() {
    model(3, || {
        let n = Arc::new(Notify::new());
        let n2 = n.clone();
        let t = thread::spawn(move || n2.notify_one());
        block_on(n.notified());
        t.join().unwrap();
    });
}

/// `notify_waiters` races a waiter that created its `Notified` before the call was made visible
/// to it through a flag: when the flag says "created before", the waiter must complete.
#[test]
fn notify_waiters_races_registration() {
    model(3, || {
        let n = Arc::new(Notify::new());
        let created = Arc::new(AtomicUsize::new(0));
        let (n2, created2) = (n.clone(), created.clone());
        let t = thread::spawn(move || {
            let fut = n2.notified();
            created2.store(1, SeqCst);
            block_on(fut);
        });
        while created.load(SeqCst) == 0 {
            thread::yield_now();
        }
        n.notify_waiters();
        t.join().unwrap();
    });
}

/// A waiter picked by `notify_one` is dropped before it observes the notification, racing with
/// the pick: the notification is never lost (another waiter gets it, or it is stored).
#[test]
fn notify_cancelled_waiter_forwards() {
    model(3, || {
        let n = Arc::new(Notify::new());
        let n2 = n.clone();
        let t = thread::spawn(move || {
            let mut fut = pin!(n2.notified());
            // Ready means it consumed the notification; otherwise it is dropped while queued,
            // maybe already picked by notify_one.
            poll_once(fut.as_mut()).is_ready()
        });
        n.notify_one();
        let consumed = t.join().unwrap();
        if !consumed {
            // The dropped waiter must have passed the notification on (as the stored permit).
            block_on(n.notified());
        }
    });
}

/// Two registered waiters, two `notify_one`s from two threads racing each other: both waiters
/// complete (each notification picks a distinct waiter; none is lost or doubled).
#[test]
fn notify_two_waiters_two_notifiers() {
    model(3, || {
        let n = Arc::new(Notify::new());
        let mut a = pin!(n.notified());
        let mut b = pin!(n.notified());
        assert!(!a.as_mut().enable());
        assert!(!b.as_mut().enable());
        let ths: Vec<_> = (0..2)
            .map(|_| {
                let n = n.clone();
                thread::spawn(move || n.notify_one())
            })
            .collect();
        block_on(a);
        block_on(b);
        for t in ths {
            t.join().unwrap();
        }
    });
}

/// Three arrivals at a barrier of three, on three threads: all are released, one leads.
#[test]
fn barrier_three_threads() {
    model(3, || {
        let b = Arc::new(Barrier::new(3));
        let leaders = Arc::new(AtomicUsize::new(0));
        let ths: Vec<_> = (0..2)
            .map(|_| {
                let (b, leaders) = (b.clone(), leaders.clone());
                thread::spawn(move || {
                    if block_on(b.wait()).is_leader() {
                        leaders.fetch_add(1, SeqCst);
                    }
                })
            })
            .collect();
        if block_on(b.wait()).is_leader() {
            leaders.fetch_add(1, SeqCst);
        }
        for t in ths {
            t.join().unwrap();
        }
        assert_eq!(leaders.load(SeqCst), 1);
    });
}

/// Two arrivals at a barrier of two, each polled once and dropped, racing: whichever way it
/// went (one led and released the other, or one withdrew), the barrier is left consistent and
/// two fresh arrivals complete a generation.
#[test]
fn barrier_cancel_races_release() {
    model(3, || {
        let b = Arc::new(Barrier::new(2));
        let b2 = b.clone();
        let t = thread::spawn(move || {
            let mut fut = pin!(b2.wait());
            let _ = poll_once(fut.as_mut());
        });
        {
            let mut mine = pin!(b.wait());
            let _ = poll_once(mine.as_mut());
        }
        t.join().unwrap();
        let b3 = b.clone();
        let other = thread::spawn(move || block_on(b3.wait()).is_leader());
        let me = block_on(b.wait()).is_leader();
        assert!(me ^ other.join().unwrap());
    });
}

/// Two threads race to initialise: exactly one initialiser runs, both see its value.
#[test]
fn once_cell_racing_init() {
    model(3, || {
        let cell = Arc::new(OnceCell::new());
        let inits = Arc::new(AtomicUsize::new(0));
        let (cell2, inits2) = (cell.clone(), inits.clone());
        let t = thread::spawn(move || {
            *block_on(cell2.get_or_init(|| async {
                inits2.fetch_add(1, SeqCst);
                1
            }))
        });
        let mine = *block_on(cell.get_or_init(|| async {
            inits.fetch_add(1, SeqCst);
            2
        }));
        let theirs = t.join().unwrap();
        assert_eq!(mine, theirs);
        assert_eq!(inits.load(SeqCst), 1);
    });
}
