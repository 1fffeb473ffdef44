//! oneshot and mpsc: delivery, ordering, close and drop semantics, permits, cancel safety, block
//! reuse, and bounded stress runs on spindle's and tokio's runtimes.

// Needs tokio and spindle, which are not built under `--cfg loom`.
#![cfg(not(loom))]

mod sync_support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use spindle_core::sync::mpsc::error::{TryRecvError, TrySendError};
use spindle_core::sync::{mpsc, oneshot};
use sync_support::*;

const LIMIT: Duration = Duration::from_secs(60);

/// Counts live instances, to check that channels drop what they hold.
#[derive(Debug)]
struct Tracked(Arc<AtomicUsize>);

impl Tracked {
    fn new(live: &Arc<AtomicUsize>) -> Tracked {
        live.fetch_add(1, SeqCst);
        Tracked(live.clone())
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// oneshot

#[test]
fn oneshot_send_recv_and_errors() {
    let (tx, rx) = oneshot::channel();
    let mut rx = Probe::new(rx);
    rx.pending();
    tx.send(5).unwrap();
    assert_eq!(rx.wakes(), 1);
    assert_eq!(rx.ready(), Ok(5));

    let (tx, rx) = oneshot::channel::<u8>();
    let mut rx = Probe::new(rx);
    rx.pending();
    drop(tx);
    assert_eq!(rx.wakes(), 1);
    assert!(rx.ready().is_err());

    let (tx, rx) = oneshot::channel();
    drop(rx);
    assert!(tx.is_closed());
    assert_eq!(tx.send(String::from("back")), Err(String::from("back")));

    let (tx, mut rx) = oneshot::channel();
    assert_eq!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty));
    rx.close();
    assert_eq!(tx.send(1), Err(1));
    assert_eq!(rx.try_recv(), Err(oneshot::error::TryRecvError::Closed));
}

#[test]
fn oneshot_sender_closed_wakes_on_receiver_drop() {
    let (mut tx, rx) = oneshot::channel::<u8>();
    {
        let mut closed = Probe::new(tx.closed());
        closed.pending();
        drop(rx);
        assert_eq!(closed.wakes(), 1);
        closed.ready();
    }
    assert!(tx.is_closed());
}

#[test]
fn oneshot_cancelled_receive_keeps_the_value() {
    let (tx, mut rx) = oneshot::channel();
    {
        let mut p = Probe::new(&mut rx);
        p.pending();
    } // the pending receive is dropped
    tx.send(3).unwrap();
    assert_eq!(rx.try_recv(), Ok(3));
}

#[test]
fn oneshot_drops_unreceived_value() {
    let live = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = oneshot::channel();
    tx.send(Tracked::new(&live)).unwrap();
    assert_eq!(live.load(SeqCst), 1);
    drop(rx);
    assert_eq!(live.load(SeqCst), 0);
}

#[test]
fn oneshot_blocking_recv_from_thread() {
    within("oneshot_blocking", LIMIT, || {
        for i in 0..200 {
            let (tx, rx) = oneshot::channel();
            let t = std::thread::spawn(move || tx.send(i).unwrap());
            assert_eq!(rx.blocking_recv(), Ok(i));
            t.join().unwrap();
        }
    });
}

#[test]
fn oneshot_ping_pong_every_runtime() {
    on_every_runtime("oneshot_ping_pong", LIMIT, |rt| async move {
        let mut sum = 0u64;
        for i in 0..2000u64 {
            let (tx, rx) = oneshot::channel();
            let (tx2, rx2) = oneshot::channel();
            let t = rt.spawn(async move {
                let v = rx.await.unwrap();
                tx2.send(v + 1).unwrap();
            });
            tx.send(i).unwrap();
            sum += rx2.await.unwrap();
            t.await;
        }
        assert_eq!(sum, (1..=2000).sum::<u64>());
    });
}

// ---------------------------------------------------------------------------------------------
// mpsc: semantics

#[test]
fn mpsc_bounded_order_capacity_and_try_send() {
    let (tx, mut rx) = mpsc::channel(2);
    assert_eq!((tx.capacity(), tx.max_capacity()), (2, 2));
    tx.try_send(1).unwrap();
    tx.try_send(2).unwrap();
    assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
    assert_eq!(rx.len(), 2);
    assert_eq!(rx.try_recv(), Ok(1));
    assert_eq!(tx.capacity(), 1);
    tx.try_send(3).unwrap();
    assert_eq!(rx.try_recv(), Ok(2));
    assert_eq!(rx.try_recv(), Ok(3));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    drop(tx);
    assert!(rx.is_closed());
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[test]
#[should_panic(expected = "buffer > 0")]
fn mpsc_zero_capacity_panics_with_a_message() {
    let _ = mpsc::channel::<u8>(0);
}

#[test]
fn mpsc_send_on_closed_returns_the_value() {
    let (tx, rx) = mpsc::channel(1);
    let mut closed = Probe::new(tx.closed());
    closed.pending();
    drop(rx);
    assert_eq!(closed.wakes(), 1);
    closed.ready();
    assert!(tx.is_closed());
    assert_eq!(Probe::new(tx.send("x")).ready().unwrap_err().0, "x");
    assert_eq!(tx.try_send("y"), Err(TrySendError::Closed("y")));

    let (utx, urx) = mpsc::unbounded_channel();
    drop(urx);
    assert_eq!(utx.send(7).unwrap_err().into_inner(), 7);
}

#[test]
fn mpsc_receiver_drop_wakes_waiting_senders_with_errors() {
    let (tx, rx) = mpsc::channel(1);
    tx.try_send(0).unwrap();
    let mut a = Probe::new(tx.send(1));
    let mut b = Probe::new(tx.send(2));
    a.pending();
    b.pending();
    drop(rx);
    assert_eq!((a.wakes(), b.wakes()), (1, 1));
    assert_eq!(a.ready().unwrap_err().0, 1);
    assert_eq!(b.ready().unwrap_err().0, 2);
}

#[test]
fn mpsc_waiting_senders_are_served_fifo() {
    let (tx, mut rx) = mpsc::channel(1);
    tx.try_send(0).unwrap();
    let mut a = Probe::new(tx.send(1));
    let mut b = Probe::new(tx.send(2));
    let mut c = Probe::new(tx.send(3));
    a.pending();
    b.pending();
    c.pending();
    assert_eq!(rx.try_recv(), Ok(0));
    assert_eq!((a.wakes(), b.wakes(), c.wakes()), (1, 0, 0));
    assert!(tx.try_send(9).is_err(), "no barging past waiting senders");
    c.pending();
    a.ready().unwrap();
    assert_eq!(rx.try_recv(), Ok(1));
    assert_eq!((b.wakes(), c.wakes()), (1, 0));
    b.ready().unwrap();
    assert_eq!(rx.try_recv(), Ok(2));
    c.ready().unwrap();
    assert_eq!(rx.try_recv(), Ok(3));
}

#[test]
fn mpsc_cancelled_send_loses_no_capacity_and_no_wakeup() {
    let (tx, mut rx) = mpsc::channel(1);
    tx.try_send(0).unwrap();
    let mut a = Probe::new(tx.send(1));
    let mut b = Probe::new(tx.send(2));
    a.pending();
    b.pending();
    assert_eq!(rx.try_recv(), Ok(0)); // capacity handed to `a`
    drop(a); // cancelled after the hand-over: its message is not sent, the capacity moves to `b`
    assert_eq!(b.wakes(), 1);
    b.ready().unwrap();
    assert_eq!(rx.try_recv(), Ok(2));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(tx.capacity(), 1);
    // A waiting send cancelled before any hand-over changes nothing.
    tx.try_send(3).unwrap();
    let mut c = Probe::new(tx.send(4));
    c.pending();
    drop(c);
    assert_eq!(rx.try_recv(), Ok(3));
    assert_eq!(tx.capacity(), 1);
}

#[test]
fn mpsc_cancelled_recv_loses_no_message() {
    let (tx, mut rx) = mpsc::channel(4);
    {
        let mut r = Probe::new(rx.recv());
        r.pending();
    }
    tx.try_send(1).unwrap();
    {
        let mut r = Probe::new(rx.recv());
        r.pending_or_value(1);
    }
    tx.try_send(2).unwrap();
    assert_eq!(rx.try_recv(), Ok(2));
}

trait PendingOrValue {
    fn pending_or_value(&mut self, v: i32);
}
impl<F: std::future::Future<Output = Option<i32>>> PendingOrValue for Probe<F> {
    /// The receive was started after the message arrived: it completes with it at once.
    fn pending_or_value(&mut self, v: i32) {
        assert_eq!(self.ready(), Some(v));
    }
}

#[test]
fn mpsc_permits() {
    let (tx, mut rx) = mpsc::channel(3);
    let p = Probe::new(tx.reserve()).ready().unwrap();
    assert_eq!(tx.capacity(), 2);
    drop(p); // unused: the capacity comes back
    assert_eq!(tx.capacity(), 3);
    let mut many = Probe::new(tx.reserve_many(2)).ready().unwrap();
    assert_eq!(many.len(), 2);
    many.next().unwrap().send(10);
    drop(many); // the second permit comes back
    assert_eq!(tx.capacity(), 2);
    assert!(Probe::new(tx.reserve_many(4)).ready().is_err(), "more than the capacity");
    let owned = tx.clone().try_reserve_owned().unwrap();
    let tx2 = owned.send(11);
    assert!(tx2.same_channel(&tx));
    let p = tx.try_reserve().unwrap();
    assert!(tx.try_reserve_many(2).unwrap_err().is_full());
    p.send(12);
    assert_eq!(rx.try_recv(), Ok(10));
    assert_eq!(rx.try_recv(), Ok(11));
    assert_eq!(rx.try_recv(), Ok(12));
}

#[test]
fn mpsc_close_with_outstanding_permit() {
    let (tx, mut rx) = mpsc::channel(2);
    tx.try_send(1).unwrap();
    let permit = tx.try_reserve().unwrap();
    rx.close();
    assert!(tx.try_send(2).unwrap_err().is_closed());
    assert_eq!(rx.try_recv(), Ok(1));
    // A permit is outstanding: the receiver waits for it rather than reporting the end.
    let mut r = Probe::new(rx.recv());
    r.pending();
    drop(permit); // given back unused: the receiver learns the channel is drained
    assert_eq!(r.wakes(), 1);
    assert_eq!(r.ready(), None);
    drop(r);
    // Same with a permit that sends.
    let (tx, mut rx) = mpsc::channel(2);
    let permit = tx.try_reserve().unwrap();
    rx.close();
    let mut r = Probe::new(rx.recv());
    r.pending();
    permit.send(5);
    assert_eq!(r.ready(), Some(5));
    drop(r);
    assert_eq!(Probe::new(rx.recv()).ready(), None);
}

#[test]
fn mpsc_recv_many() {
    let (tx, mut rx) = mpsc::channel(64);
    for i in 0..40 {
        tx.try_send(i).unwrap();
    }
    let mut buf = Vec::new();
    assert_eq!(Probe::new(rx.recv_many(&mut buf, 0)).ready(), 0);
    assert_eq!(Probe::new(rx.recv_many(&mut buf, 25)).ready(), 25);
    assert_eq!(tx.capacity(), 64 - 15);
    assert_eq!(Probe::new(rx.recv_many(&mut buf, 25)).ready(), 15);
    assert_eq!(buf, (0..40).collect::<Vec<_>>());
    let mut p = Probe::new(rx.recv_many(&mut buf, 5));
    p.pending();
    drop(tx);
    assert_eq!(p.ready(), 0);
}

#[test]
fn mpsc_drops_queued_messages() {
    let live = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel(100);
    for _ in 0..70 {
        tx.try_send(Tracked::new(&live)).unwrap();
    }
    let permit = tx.try_reserve().unwrap();
    drop(rx); // queued messages are dropped now
    assert_eq!(live.load(SeqCst), 0);
    permit.send(Tracked::new(&live)); // sent after the receiver went away: dropped with the channel
    assert_eq!(live.load(SeqCst), 1);
    drop(tx);
    assert_eq!(live.load(SeqCst), 0);

    let (utx, mut urx) = mpsc::unbounded_channel();
    for _ in 0..100 {
        utx.send(Tracked::new(&live)).unwrap();
    }
    assert_eq!(urx.len(), 100);
    drop(urx.try_recv().unwrap());
    drop(utx);
    drop(urx);
    assert_eq!(live.load(SeqCst), 0);
}

#[test]
fn mpsc_many_blocks_reused() {
    // Far more messages than fit in the blocks a capacity of 40 needs: blocks are released and
    // reused, and every message arrives in order.
    let (tx, mut rx) = mpsc::channel(40);
    let mut next = 0u64;
    for round in 0..2_000u64 {
        for i in 0..(round % 40 + 1) {
            tx.try_send(round * 100 + i).unwrap();
        }
        for i in 0..(round % 40 + 1) {
            assert_eq!(rx.try_recv(), Ok(round * 100 + i));
            next += 1;
        }
    }
    assert!(next > 30_000);
    let (utx, mut urx) = mpsc::unbounded_channel();
    for i in 0..100_000u32 {
        utx.send(i).unwrap();
    }
    assert_eq!(urx.len(), 100_000);
    for i in 0..100_000u32 {
        assert_eq!(urx.try_recv(), Ok(i));
    }
}

#[test]
fn mpsc_blocking_send_and_recv_between_threads() {
    within("mpsc_blocking", LIMIT, || {
        let (tx, mut rx) = mpsc::channel(4);
        let producers: Vec<_> = (0..3u64)
            .map(|p| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..2000u64 {
                        tx.blocking_send(p * 1_000_000 + i).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let mut last = [None::<u64>; 3];
        let mut n = 0;
        while let Some(v) = rx.blocking_recv() {
            let (p, i) = ((v / 1_000_000) as usize, v % 1_000_000);
            assert!(last[p].is_none_or(|l| l + 1 == i), "per-sender order broken");
            last[p] = Some(i);
            n += 1;
        }
        assert_eq!(n, 6000);
        for p in producers {
            p.join().unwrap();
        }
    });
}

// ---------------------------------------------------------------------------------------------
// mpsc: stress on every runtime

fn check_per_sender_order(received: &[u64], producers: u64, per: u64) {
    let mut last = vec![None::<u64>; producers as usize];
    for &v in received {
        let (p, i) = ((v / 1_000_000) as usize, v % 1_000_000);
        assert!(last[p].is_none_or(|l| l + 1 == i), "per-sender order broken at {v}");
        last[p] = Some(i);
    }
    assert_eq!(received.len() as u64, producers * per);
}

#[test]
fn mpsc_bounded_contended_every_runtime() {
    on_every_runtime("mpsc_bounded_contended", LIMIT, |rt| async move {
        let (tx, mut rx) = mpsc::channel(16);
        let producers = 5u64;
        let per = 3000u64;
        for p in 0..producers {
            let tx = tx.clone();
            drop(rt.spawn(async move {
                for i in 0..per {
                    if i % 3 == 0 {
                        tx.reserve().await.unwrap().send(p * 1_000_000 + i);
                    } else {
                        tx.send(p * 1_000_000 + i).await.unwrap();
                    }
                }
            }));
        }
        drop(tx);
        let mut got = Vec::new();
        let mut buf = Vec::new();
        loop {
            if got.len() % 2 == 0 {
                match rx.recv().await {
                    Some(v) => got.push(v),
                    None => break,
                }
            } else if rx.recv_many(&mut buf, 7).await == 0 {
                break;
            } else {
                got.append(&mut buf);
            }
        }
        check_per_sender_order(&got, producers, per);
    });
}

#[test]
fn mpsc_unbounded_contended_every_runtime() {
    on_every_runtime("mpsc_unbounded_contended", LIMIT, |rt| async move {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let producers = 4u64;
        let per = 5000u64;
        for p in 0..producers {
            let tx = tx.clone();
            drop(rt.spawn(async move {
                for i in 0..per {
                    tx.send(p * 1_000_000 + i).unwrap();
                    if i % 100 == 0 {
                        rt.yield_now().await;
                    }
                }
            }));
        }
        drop(tx);
        let mut got = Vec::new();
        while let Some(v) = rx.recv().await {
            got.push(v);
        }
        check_per_sender_order(&got, producers, per);
    });
}

/// Sends and receives cancelled at random points while traffic flows: no message is duplicated,
/// capacity ends where it started, and everything sent is received.
#[test]
fn mpsc_cancellation_storm_every_runtime() {
    on_every_runtime("mpsc_cancel_storm", LIMIT, |rt| async move {
        let (tx, mut rx) = mpsc::channel(4);
        let sent = Arc::new(AtomicUsize::new(0));
        for p in 0..4u64 {
            let (tx, sent) = (tx.clone(), sent.clone());
            drop(rt.spawn(async move {
                for i in 0..1000u64 {
                    let v = p * 1_000_000 + i;
                    if i % 4 == 0 {
                        // Start a send and abandon it after one poll: it either completed (sent)
                        // or was cancelled (not sent).
                        let mut fut = Box::pin(tx.send(v));
                        if let std::task::Poll::Ready(r) = futures::poll!(fut.as_mut()) {
                            r.unwrap();
                            sent.fetch_add(1, SeqCst);
                        }
                    } else {
                        tx.send(v).await.unwrap();
                        sent.fetch_add(1, SeqCst);
                    }
                }
            }));
        }
        drop(tx);
        let mut got = Vec::new();
        loop {
            // Abandon some receives after one poll, too.
            let mut fut = Box::pin(rx.recv());
            let first = futures::poll!(fut.as_mut());
            let v = match first {
                std::task::Poll::Ready(v) => v,
                std::task::Poll::Pending if got.len() % 3 == 0 => {
                    drop(fut);
                    // Let the producers run before trying again.
                    rt.yield_now().await;
                    continue;
                }
                std::task::Poll::Pending => fut.await,
            };
            match v {
                Some(v) => got.push(v),
                None => break,
            }
        }
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), got.len(), "a message was received twice");
        assert_eq!(got.len(), sent.load(SeqCst));
    });
}

/// A send handed capacity, then cancelled before it saw it, gives the capacity back; a receiver
/// that closed meanwhile and waits for that last permit must be woken (the channel is now closed
/// and idle, so `recv` returns `None`).
#[test]
fn a_cancelled_send_that_was_granted_capacity_wakes_a_closed_receiver() {
    let (tx, mut rx) = mpsc::channel::<u32>(1);
    let permit = tx.try_reserve().unwrap();
    let mut send = Probe::new(tx.send(7));
    send.pending(); // queued for capacity
    drop(permit); // the slot goes to the queued send (granted, not yet observed)
    rx.close();
    let mut recv = Probe::new(rx.recv());
    recv.pending(); // closed, but one permit is still out
    drop(send); // cancelled: the granted permit comes back; closed and idle now
    assert!(recv.wakes() > 0, "the closed receiver waiting for the last permit was not woken");
    assert_eq!(recv.ready(), None);
}

/// The same through `reserve_many`.
#[test]
fn a_cancelled_reserve_many_that_was_granted_capacity_wakes_a_closed_receiver() {
    let (tx, mut rx) = mpsc::channel::<u32>(2);
    let held = tx.try_reserve_many(2).unwrap();
    let mut reserve = Probe::new(tx.reserve_many(2));
    reserve.pending();
    drop(held);
    rx.close();
    let mut recv = Probe::new(rx.recv());
    recv.pending();
    drop(reserve);
    assert!(recv.wakes() > 0, "the closed receiver waiting for the last permits was not woken");
    assert_eq!(recv.ready(), None);
}

/// A request for more permits than any channel can hold is refused, not wrapped around into a
/// small one (`n << 2` would drop the high bits).
#[test]
#[cfg(target_pointer_width = "64")]
fn reserving_an_impossible_number_of_slots_is_refused() {
    let (tx, _rx) = mpsc::channel::<u32>(1);
    for n in [1usize << 62, (1 << 62) + 1, usize::MAX] {
        assert!(tx.try_reserve_many(n).unwrap_err().is_full(), "try_reserve_many({n})");
        let mut fut = Probe::new(tx.reserve_many(n));
        assert!(matches!(fut.poll(), std::task::Poll::Ready(Err(_))), "reserve_many({n})");
    }
    assert_eq!(tx.capacity(), 1);
}
