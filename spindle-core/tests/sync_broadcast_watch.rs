//! broadcast and watch: delivery, lagging, close semantics, cancel safety, and bounded stress runs
//! on spindle's and tokio's runtimes.

// Needs tokio and spindle, which are not built under `--cfg loom`.
#![cfg(not(loom))]

mod sync_support;

use std::time::Duration;

use spindle_core::sync::broadcast::error::{RecvError, TryRecvError};
use spindle_core::sync::{broadcast, watch};
use sync_support::*;

const LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// broadcast

#[test]
fn broadcast_every_receiver_gets_every_value() {
    let (tx, mut a) = broadcast::channel(8);
    let mut b = tx.subscribe();
    assert_eq!(tx.send(1), Ok(2));
    assert_eq!(tx.send(2), Ok(2));
    assert_eq!((a.try_recv(), a.try_recv(), a.try_recv()), (Ok(1), Ok(2), Err(TryRecvError::Empty)));
    assert_eq!((b.try_recv(), b.try_recv()), (Ok(1), Ok(2)));
    let mut late = tx.subscribe(); // sees only what comes after
    tx.send(3).unwrap();
    assert_eq!(late.try_recv(), Ok(3));
    let mut re = late.resubscribe();
    assert_eq!(re.try_recv(), Err(TryRecvError::Empty));
    drop((a, b, late, re));
    assert_eq!(tx.send(4).unwrap_err().into_inner(), 4);
}

#[test]
fn broadcast_lagging_receiver_gets_lagged_then_continues() {
    let (tx, mut rx) = broadcast::channel(3); // rounded up to 4
    for i in 0..10 {
        tx.send(i).unwrap();
    }
    assert_eq!(rx.len(), 4);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Lagged(6)));
    for i in 6..10 {
        assert_eq!(rx.try_recv(), Ok(i));
    }
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    for i in 10..15 {
        tx.send(i).unwrap();
    }
    assert_eq!(Probe::new(rx.recv()).ready(), Err(RecvError::Lagged(1)));
    assert_eq!(Probe::new(rx.recv()).ready(), Ok(11));
}

#[test]
fn broadcast_close_delivers_the_rest_then_closed() {
    let (tx, mut rx) = broadcast::channel(4);
    let tx2 = tx.clone();
    tx.send(1).unwrap();
    drop(tx);
    assert!(!rx.is_closed());
    tx2.send(2).unwrap();
    let mut pending = Probe::new(rx.recv());
    assert_eq!(pending.ready(), Ok(1));
    drop(pending);
    let mut p = Probe::new(rx.recv());
    assert_eq!(p.ready(), Ok(2));
    drop(p);
    let mut p = Probe::new(rx.recv());
    p.pending();
    drop(tx2);
    assert_eq!(p.wakes(), 1);
    assert_eq!(p.ready(), Err(RecvError::Closed));
}

#[test]
fn broadcast_cancelled_recv_loses_nothing() {
    let (tx, mut rx) = broadcast::channel(4);
    {
        let mut p = Probe::new(rx.recv());
        p.pending();
    }
    tx.send("v").unwrap();
    assert_eq!(rx.try_recv(), Ok("v"));
}

#[test]
fn broadcast_len_counts_unread_and_closed_waits_for_receivers() {
    let (tx, rx) = broadcast::channel(8);
    let mut rx2 = tx.subscribe();
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    assert_eq!(tx.len(), 2);
    rx2.try_recv().unwrap();
    assert_eq!(tx.len(), 2); // `rx` has not read them
    drop(rx);
    assert_eq!(tx.len(), 1);
    let mut closed = Probe::new(tx.closed());
    closed.pending();
    drop(rx2);
    assert_eq!(closed.wakes(), 1);
    closed.ready();
    assert!(tx.is_empty());
}

#[test]
fn broadcast_blocking_recv() {
    within("broadcast_blocking", LIMIT, || {
        let (tx, mut rx) = broadcast::channel(4);
        let t = std::thread::spawn(move || {
            for i in 0..100 {
                while tx.len() >= 3 {
                    std::thread::yield_now();
                }
                tx.send(i).unwrap();
            }
        });
        let mut got = Vec::new();
        loop {
            match rx.blocking_recv() {
                Ok(v) => got.push(v),
                Err(RecvError::Closed) => break,
                Err(RecvError::Lagged(n)) => panic!("lagged by {n}"),
            }
        }
        t.join().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    });
}

#[test]
fn broadcast_fan_out_every_runtime() {
    on_every_runtime("broadcast_fan_out", LIMIT, |rt| async move {
        let (tx, _) = broadcast::channel::<u64>(64);
        let n = 3000u64;
        let receivers: Vec<_> = (0..4)
            .map(|_| {
                let mut rx = tx.subscribe();
                rt.spawn(async move {
                    // Every value is either received or counted as missed, in order.
                    let (mut seen, mut missed, mut last) = (0u64, 0u64, None::<u64>);
                    loop {
                        match rx.recv().await {
                            Ok(v) => {
                                assert!(last.is_none_or(|l| v > l), "out of order");
                                last = Some(v);
                                seen += 1;
                            }
                            Err(RecvError::Lagged(k)) => missed += k,
                            Err(RecvError::Closed) => break,
                        }
                    }
                    (seen, missed)
                })
            })
            .collect();
        for i in 0..n {
            tx.send(i).unwrap();
            if i % 16 == 0 {
                rt.yield_now().await;
            }
        }
        drop(tx);
        for r in receivers {
            let (seen, missed) = r.await;
            assert_eq!(seen + missed, n);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// watch

#[test]
fn watch_borrow_changed_and_marks() {
    let (tx, mut rx) = watch::channel(0);
    assert_eq!(*rx.borrow(), 0);
    assert_eq!(rx.has_changed(), Ok(false));
    let mut ch = Probe::new(rx.changed());
    ch.pending();
    tx.send(1).unwrap();
    assert_eq!(ch.wakes(), 1);
    assert_eq!(ch.ready(), Ok(()));
    drop(ch);
    assert_eq!(rx.has_changed(), Ok(false)); // `changed` marked it seen
    tx.send_modify(|v| *v += 1);
    let r = rx.borrow();
    assert!(r.has_changed());
    assert_eq!(*r, 2);
    drop(r);
    assert!(rx.borrow_and_update().has_changed());
    assert!(!rx.borrow_and_update().has_changed());
    rx.mark_changed();
    assert_eq!(Probe::new(rx.changed()).ready(), Ok(()));
    tx.send(3).unwrap();
    rx.mark_unchanged();
    Probe::new(rx.changed()).pending();
    assert!(!tx.send_if_modified(|_| false));
    assert_eq!(rx.has_changed(), Ok(false));
    assert_eq!(tx.send_replace(4), 3);
}

#[test]
fn watch_close_and_send_errors() {
    let (tx, mut rx) = watch::channel(0);
    let tx2 = tx.clone();
    assert_eq!(tx.sender_count(), 2);
    drop(tx);
    tx2.send(1).unwrap();
    drop(tx2);
    // The unseen change is still delivered, then the close.
    assert_eq!(Probe::new(rx.changed()).ready(), Ok(()));
    assert!(Probe::new(rx.changed()).ready().is_err());
    assert!(rx.has_changed().is_err());

    let (tx, rx) = watch::channel(0);
    let rx2 = rx.clone();
    assert_eq!(tx.receiver_count(), 2);
    drop(rx);
    let mut closed = Probe::new(tx.closed());
    closed.pending();
    drop(rx2);
    assert_eq!(closed.wakes(), 1);
    closed.ready();
    assert_eq!(tx.send(5).unwrap_err().0, 5);
    assert_eq!(*tx.borrow(), 0, "a failed send leaves the value");
    tx.send_replace(6);
    assert_eq!(*tx.subscribe().borrow(), 6);
}

#[test]
fn watch_cancelled_changed_loses_nothing() {
    let (tx, mut rx) = watch::channel(0);
    {
        let mut ch = Probe::new(rx.changed());
        ch.pending();
    }
    tx.send(1).unwrap();
    assert_eq!(rx.has_changed(), Ok(true));
    assert_eq!(Probe::new(rx.changed()).ready(), Ok(()));
}

#[test]
fn watch_wait_for() {
    let (tx, mut rx) = watch::channel(0);
    let mut w = Probe::new(rx.wait_for(|v| *v >= 2));
    w.pending();
    tx.send(1).unwrap();
    w.pending();
    tx.send(2).unwrap();
    assert_eq!(*w.ready().unwrap(), 2);
    drop(w);
    drop(tx);
    assert!(Probe::new(rx.wait_for(|v| *v > 2)).ready().is_err());
    assert_eq!(*Probe::new(rx.wait_for(|v| *v == 2)).ready().unwrap(), 2);
}

#[test]
fn watch_latest_value_every_runtime() {
    on_every_runtime("watch_latest", LIMIT, |rt| async move {
        let (tx, rx) = watch::channel(0u64);
        let n = 2000u64;
        let watchers: Vec<_> = (0..4)
            .map(|_| {
                let mut rx = rx.clone();
                rt.spawn(async move {
                    let mut last = 0;
                    while rx.changed().await.is_ok() {
                        let v = *rx.borrow_and_update();
                        assert!(v >= last, "went backwards");
                        last = v;
                    }
                    last
                })
            })
            .collect();
        drop(rx);
        for i in 1..=n {
            tx.send(i).unwrap();
            if i % 8 == 0 {
                rt.yield_now().await;
            }
        }
        drop(tx);
        for w in watchers {
            assert_eq!(w.await, n, "the final value must be seen");
        }
    });
}
