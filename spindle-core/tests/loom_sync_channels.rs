//! Loom models of oneshot (send/receive/close/drop races) and mpsc (the lock-free block queue
//! across block boundaries, reuse of released blocks, closing from either side, capacity hand-over
//! to waiting senders). Under loom a block holds 2 slots, so a few messages cross blocks.
//!
//! Run with:
//!   RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/work/target-loom \
//!     cargo test -p spindle-core --release --test loom_sync_channels
#![cfg(loom)]

mod sync_loom;

use std::pin::pin;
use std::sync::Arc;

use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;
use spindle_core::sync::{mpsc, oneshot};
use sync_loom::*;

/// Counts drops, to check a value is dropped exactly once whatever the race.
struct Dropped(Arc<AtomicUsize>);
impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

#[test]
fn oneshot_send_races_receive() {
    model(3, || {
        let (tx, rx) = oneshot::channel();
        let t = thread::spawn(move || tx.send(1).unwrap());
        assert_eq!(block_on(rx), Ok(1));
        t.join().unwrap();
    });
}

#[test]
fn oneshot_sender_drop_races_receive() {
    model(3, || {
        let (tx, rx) = oneshot::channel::<u8>();
        let t = thread::spawn(move || drop(tx));
        assert!(block_on(rx).is_err());
        t.join().unwrap();
    });
}

/// The receiver is dropped while the value is sent: the send either succeeds (and the value is
/// dropped by the receiver side) or fails with the value back; it is dropped exactly once.
#[test]
fn oneshot_receiver_drop_races_send() {
    model(3, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = oneshot::channel();
        let d = drops.clone();
        let t = thread::spawn(move || match tx.send(Dropped(d)) {
            Ok(()) => true,
            Err(v) => {
                drop(v);
                false
            }
        });
        drop(rx);
        t.join().unwrap();
        assert_eq!(drops.load(SeqCst), 1);
    });
}

/// A receive polled once (waker registered) then re-polled with another waker while the sender
/// completes: the value is received.
#[test]
fn oneshot_rx_reregisters_while_sending() {
    model(3, || {
        let (tx, rx) = oneshot::channel();
        let t = thread::spawn(move || tx.send(7).unwrap());
        let mut rx = pin!(rx);
        if let std::task::Poll::Ready(v) = poll_once(rx.as_mut()) {
            assert_eq!(v, Ok(7));
        } else {
            assert_eq!(block_on(rx), Ok(7));
        }
        t.join().unwrap();
    });
}

#[test]
fn oneshot_closed_races_receiver_drop() {
    model(3, || {
        let (mut tx, rx) = oneshot::channel::<u8>();
        let t = thread::spawn(move || drop(rx));
        block_on(tx.closed());
        t.join().unwrap();
    });
}

/// One message races the receiver's decision to park: the receiver either sees the message when it
/// looks again after announcing itself parked, or the sender sees the announcement and wakes it
/// (the store-buffering pattern closed by the two fences in `RxNotify`).
#[test]
fn mpsc_send_races_receiver_park() {
    model(3, || {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let t = thread::spawn(move || {
            tx.send(1).unwrap();
            // Keep the channel open: only the wake from `send` can end the receiver's wait.
            tx
        });
        assert_eq!(block_on(rx.recv()), Some(1));
        drop(t.join().unwrap());
    });
}

/// Two senders on two threads, three messages across two blocks, then both drop: the receiver
/// gets every message once, per-sender in order, then `None`.
#[test]
fn mpsc_unbounded_two_senders_cross_blocks() {
    // Three threads: a preemption bound of 2 keeps it around ten seconds.
    model(2, || {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let tx2 = tx.clone();
        let a = thread::spawn(move || {
            tx.send(10).unwrap();
            tx.send(11).unwrap();
        });
        let b = thread::spawn(move || tx2.send(20).unwrap());
        let got = block_on(async {
            let mut got = Vec::new();
            while let Some(v) = rx.recv().await {
                got.push(v);
            }
            got
        });
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(got.len(), 3);
        let tens: Vec<_> = got.iter().filter(|v| **v < 20).collect();
        assert_eq!(tens, [&10, &11]);
    });
}

/// A message whose send finished before `try_recv` is never missed, even while another sender
/// that claimed an earlier slot has not written it yet (`try_recv` then waits for that write, as
/// tokio's does, instead of saying `Empty`).
#[test]
fn mpsc_try_recv_sees_a_finished_send_behind_a_slow_one() {
    model(3, || {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let tx2 = tx.clone();
        let slow = thread::spawn(move || tx.send(10).unwrap());
        let done = thread::spawn(move || tx2.send(20).unwrap());
        done.join().unwrap();
        let first = rx.try_recv().expect("a finished send is visible to try_recv");
        slow.join().unwrap();
        let second = rx.try_recv().unwrap();
        let mut got = [first, second];
        got.sort();
        assert_eq!(got, [10, 20]);
    });
}

/// One sender sends three messages across two blocks while the receiver drains concurrently: the
/// first block is released by the sender that moves the tail past it, reclaimed by the receiver
/// once it has read past the release point, and appended again for reuse.
#[test]
fn mpsc_block_release_and_reuse() {
    model_with(3, 20_000, || {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let t = thread::spawn(move || {
            for i in 0..3 {
                tx.send(i).unwrap();
            }
        });
        let got = block_on(async {
            let mut got = Vec::new();
            while let Some(v) = rx.recv().await {
                got.push(v);
            }
            got
        });
        t.join().unwrap();
        assert_eq!(got, [0, 1, 2]);
    });
}

/// Capacity 1: the sender's second send waits for the receiver to take the first; capacity is
/// handed over without a lost wakeup on either side.
#[test]
fn mpsc_bounded_backpressure() {
    model(3, || {
        let (tx, mut rx) = mpsc::channel(1);
        let t = thread::spawn(move || {
            block_on(async {
                tx.send(1).await.unwrap();
                tx.send(2).await.unwrap();
            })
        });
        let got = block_on(async { (rx.recv().await, rx.recv().await, rx.recv().await) });
        t.join().unwrap();
        assert_eq!(got, (Some(1), Some(2), None));
    });
}

/// The receiver is dropped while a sender waits for capacity: the sender wakes with its message
/// back, and the queued message is dropped exactly once.
#[test]
fn mpsc_receiver_drop_races_waiting_sender() {
    model(3, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel(1);
        tx.try_send(Dropped(drops.clone())).unwrap();
        let d = drops.clone();
        let t = thread::spawn(move || {
            let r = block_on(tx.send(Dropped(d)));
            assert!(r.is_err());
        });
        drop(rx);
        t.join().unwrap();
        assert_eq!(drops.load(SeqCst), 2);
    });
}

/// The receiver closes while a permit is outstanding on another thread that may send or give it
/// back: `recv` returns the message if it was sent, then `None` (never hangs).
#[test]
fn mpsc_close_races_permit() {
    model(3, || {
        let (tx, mut rx) = mpsc::channel(1);
        let t = thread::spawn(move || {
            // Fails if the close came first; otherwise the permit is used.
            if let Ok(p) = tx.try_reserve() {
                p.send(1);
            }
        });
        rx.close();
        let got = block_on(async {
            let mut got = Vec::new();
            while let Some(v) = rx.recv().await {
                got.push(v);
            }
            got
        });
        t.join().unwrap();
        // The reservation may have come before or after the close.
        assert!(got.is_empty() || got == [1]);
    });
}

/// The receiver closes an unbounded channel while a send races it (the send counts its message
/// before it sees the close, then takes the count back): `recv` ends with the message or without
/// it, but never waits forever for a count that is gone.
#[test]
fn mpsc_unbounded_close_races_send() {
    model(3, || {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let t = thread::spawn(move || {
            let sent = tx.send(1).is_ok();
            (sent, tx)
        });
        rx.close();
        let got = block_on(rx.recv());
        let (sent, tx) = t.join().unwrap();
        assert_eq!(got.is_some(), sent);
        drop(tx);
    });
}
