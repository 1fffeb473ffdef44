//! Loom models of broadcast (send vs waiting receivers, close, lagging) and watch (change vs
//! `changed`, close), including the lock-free `notify_waiters` fast path both rely on.
//!
//! Run with:
//!   RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/work/target-loom \
//!     cargo test -p spindle-core --release --test loom_sync_broadcast_watch
#![cfg(loom)]

mod sync_loom;

use loom::thread;
use spindle_core::sync::broadcast::error::RecvError;
use spindle_core::sync::{broadcast, watch};
use sync_loom::*;

/// A send on another thread races the receiver's check-then-wait: the value is received.
#[test]
fn broadcast_send_races_recv() {
    model(3, || {
        let (tx, mut rx) = broadcast::channel(2);
        let t = thread::spawn(move || {
            tx.send(1).unwrap();
        });
        assert_eq!(block_on(rx.recv()), Ok(1));
        t.join().unwrap();
    });
}

/// Two receivers on two threads; the sender sends one value and goes away: each receiver gets the
/// value, then `Closed`.
#[test]
fn broadcast_two_receivers_and_close() {
    model(2, || {
        let (tx, mut rx1) = broadcast::channel(2);
        let mut rx2 = tx.subscribe();
        let t = thread::spawn(move || block_on(async { (rx2.recv().await, rx2.recv().await) }));
        tx.send(7).unwrap();
        drop(tx);
        let mine = block_on(async { (rx1.recv().await, rx1.recv().await) });
        assert_eq!(mine, (Ok(7), Err(RecvError::Closed)));
        assert_eq!(t.join().unwrap(), (Ok(7), Err(RecvError::Closed)));
    });
}

/// Capacity 1, two sends racing a receiver: it sees both values, or a lag of one then the second;
/// never a stale or repeated value.
#[test]
fn broadcast_lag_race() {
    model(3, || {
        let (tx, mut rx) = broadcast::channel(1);
        let t = thread::spawn(move || {
            tx.send(1).unwrap();
            tx.send(2).unwrap();
        });
        let first = block_on(rx.recv());
        t.join().unwrap();
        match first {
            Ok(1) => assert_eq!(rx.try_recv(), Ok(2)),
            Err(RecvError::Lagged(1)) | Ok(2) => {
                if first != Ok(2) {
                    assert_eq!(rx.try_recv(), Ok(2));
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    });
}

/// A change on another thread races `changed`: it completes and the new value is visible.
#[test]
fn watch_send_races_changed() {
    model(3, || {
        let (tx, mut rx) = watch::channel(0);
        let t = thread::spawn(move || {
            tx.send(1).unwrap();
            tx
        });
        block_on(rx.changed()).unwrap();
        assert_eq!(*rx.borrow_and_update(), 1);
        drop(t.join().unwrap());
    });
}

/// The sender modifies then drops while the receiver waits: the receiver sees the change, then
/// the close; it never hangs.
#[test]
fn watch_change_then_close() {
    model(3, || {
        let (tx, mut rx) = watch::channel(0);
        let t = thread::spawn(move || {
            tx.send_modify(|v| *v = 5);
            drop(tx);
        });
        let first = block_on(rx.changed());
        assert_eq!(first, Ok(()));
        assert_eq!(*rx.borrow(), 5);
        assert!(block_on(rx.changed()).is_err());
        t.join().unwrap();
    });
}
