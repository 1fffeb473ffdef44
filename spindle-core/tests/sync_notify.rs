//! Notify, Barrier and OnceCell: semantics (tokio's permit rules for Notify), cancel safety, and
//! bounded stress runs on spindle's and tokio's runtimes.

// Needs tokio and spindle, which are not built under `--cfg loom`.
#![cfg(not(loom))]

mod sync_support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use spindle_core::sync::{Barrier, Notify, OnceCell, SetError};
use sync_support::*;

const LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Notify

#[test]
fn notify_one_stores_a_single_permit() {
    let n = Notify::new();
    n.notify_one();
    n.notify_one();
    let mut a = Probe::new(n.notified());
    a.ready();
    let mut b = Probe::new(n.notified());
    b.pending(); // only one permit was stored
    n.notify_one();
    assert_eq!(b.wakes(), 1);
    b.ready();
}

#[test]
fn notify_one_wakes_oldest_and_notify_last_newest() {
    let n = Notify::new();
    let mut a = Probe::new(n.notified());
    let mut b = Probe::new(n.notified());
    let mut c = Probe::new(n.notified());
    a.pending();
    b.pending();
    c.pending();
    n.notify_one();
    assert_eq!((a.wakes(), b.wakes(), c.wakes()), (1, 0, 0));
    n.notify_last();
    assert_eq!((b.wakes(), c.wakes()), (0, 1));
    c.ready();
    a.ready();
    b.pending();
    n.notify_one();
    b.ready();
}

#[test]
fn notify_waiters_completes_futures_created_before_and_stores_no_permit() {
    let n = Notify::new();
    let mut polled = Probe::new(n.notified());
    polled.pending();
    let mut unpolled = Probe::new(n.notified()); // created, never polled before the call
    n.notify_waiters();
    assert_eq!(polled.wakes(), 1);
    polled.ready();
    unpolled.ready();
    let mut later = Probe::new(n.notified());
    later.pending(); // no permit stored
    drop(later);
    // A stored permit survives notify_waiters.
    n.notify_one();
    n.notify_waiters();
    Probe::new(n.notified()).ready();
}

#[test]
fn notified_enable_takes_a_place_in_line() {
    let n = Notify::new();
    let mut a = Probe::new(n.notified());
    assert!(!a.fut.as_mut().enable());
    let mut b = Probe::new(n.notified());
    b.pending();
    n.notify_one();
    a.ready(); // enabled earlier, so it was picked
    b.pending();
}

#[test]
fn notify_cancelled_waiter_passes_notification_on() {
    let n = Notify::new();
    let mut a = Probe::new(n.notified());
    let mut b = Probe::new(n.notified());
    a.pending();
    b.pending();
    n.notify_one(); // picks `a`
    drop(a); // never observed it: `b` must get it
    assert_eq!(b.wakes(), 1);
    b.ready();
    // With nobody else waiting, a dropped notification becomes the stored permit.
    let mut c = Probe::new(n.notified());
    c.pending();
    n.notify_one();
    drop(c);
    Probe::new(n.notified()).ready();
    // A cancelled waiter that was never notified changes nothing.
    let mut d = Probe::new(n.notified());
    d.pending();
    drop(d);
    let mut e = Probe::new(n.notified());
    e.pending();
    n.notify_one();
    e.ready();
}

#[test]
fn notify_many_waiters_woken_in_batches() {
    let n = Notify::new();
    let mut probes: Vec<_> = (0..100).map(|_| Probe::new(n.notified())).collect();
    for p in &mut probes {
        p.pending();
    }
    // Drop some in the middle: they must unlink cleanly.
    probes.drain(40..50);
    n.notify_waiters();
    for p in &mut probes {
        assert_eq!(p.wakes(), 1);
        p.ready();
    }
}

#[test]
fn notify_ping_pong_every_runtime() {
    on_every_runtime("notify_ping_pong", LIMIT, |rt| async move {
        let ping = Arc::new(Notify::new());
        let pong = Arc::new(Notify::new());
        let (ping2, pong2) = (ping.clone(), pong.clone());
        let t = rt.spawn(async move {
            for _ in 0..2000 {
                ping2.notified().await;
                pong2.notify_one();
            }
        });
        for _ in 0..2000 {
            ping.notify_one();
            pong.notified().await;
        }
        t.await;
    });
}

#[test]
fn notify_waiters_stress_every_runtime() {
    on_every_runtime("notify_waiters_stress", LIMIT, |rt| async move {
        let n = Arc::new(Notify::new());
        let woken = Arc::new(AtomicUsize::new(0));
        for _round in 0..20 {
            let ready = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..20)
                .map(|_| {
                    let (n, woken, ready) = (n.clone(), woken.clone(), ready.clone());
                    rt.spawn(async move {
                        let fut = n.notified();
                        ready.fetch_add(1, SeqCst); // created before notify_waiters runs
                        fut.await;
                        woken.fetch_add(1, SeqCst);
                    })
                })
                .collect();
            while ready.load(SeqCst) < 20 {
                rt.yield_now().await;
            }
            n.notify_waiters();
            for t in tasks {
                t.await;
            }
        }
        assert_eq!(woken.load(SeqCst), 400);
    });
}

// ---------------------------------------------------------------------------------------------
// Barrier

#[test]
fn barrier_releases_each_generation_with_one_leader() {
    on_every_runtime("barrier_generations", LIMIT, |rt| async move {
        let b = Arc::new(Barrier::new(5));
        let leaders = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let (b, leaders) = (b.clone(), leaders.clone());
                rt.spawn(async move {
                    for _ in 0..50 {
                        if b.wait().await.is_leader() {
                            leaders.fetch_add(1, SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        assert_eq!(leaders.load(SeqCst), 50);
    });
}

#[test]
fn barrier_cancelled_wait_withdraws_its_arrival() {
    let b = Barrier::new(2);
    let mut a = Probe::new(b.wait());
    a.pending();
    drop(a); // withdrawn: the barrier still waits for two
    let mut c = Probe::new(b.wait());
    c.pending();
    let mut d = Probe::new(b.wait());
    assert!(d.ready().is_leader());
    assert_eq!(c.wakes(), 1);
    assert!(!c.ready().is_leader());
    // Zero behaves as one.
    assert!(Probe::new(Barrier::new(0).wait()).ready().is_leader());
}

#[test]
fn barrier_waiter_released_but_dropped_loses_nothing() {
    let b = Barrier::new(3);
    let mut a = Probe::new(b.wait());
    let mut c = Probe::new(b.wait());
    a.pending();
    c.pending();
    assert!(Probe::new(b.wait()).ready().is_leader());
    drop(a); // released, never observed: fine
    c.ready();
    // The next generation counts from zero.
    let mut x = Probe::new(b.wait());
    let mut y = Probe::new(b.wait());
    x.pending();
    y.pending();
    assert!(Probe::new(b.wait()).ready().is_leader());
    x.ready();
    y.ready();
}

// ---------------------------------------------------------------------------------------------
// OnceCell

#[test]
fn once_cell_set_and_errors() {
    let cell = OnceCell::new();
    assert!(cell.get().is_none());
    cell.set(1).unwrap();
    match cell.set(2) {
        Err(SetError::AlreadyInitializedError(2)) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(cell.get(), Some(&1));
    let mut cell = cell;
    assert_eq!(cell.take(), Some(1));
    assert!(cell.get().is_none());
    // While an initialiser runs, `set` says so.
    let cell = OnceCell::<u32>::new();
    let mut init = Probe::new(cell.get_or_init(std::future::pending));
    init.pending();
    assert!(cell.set(3).unwrap_err().is_initializing_err());
    drop(init); // cancelled initialiser: the cell stays empty and usable
    cell.set(3).unwrap();
    assert_eq!(cell.get(), Some(&3));
}

#[test]
fn once_cell_runs_one_initialiser_and_recovers_from_cancel() {
    let cell = OnceCell::<u32>::new();
    let mut first = Probe::new(cell.get_or_init(std::future::pending));
    first.pending();
    let mut second = Probe::new(cell.get_or_init(|| async { 7 }));
    second.pending(); // waits for the first initialiser
    drop(first); // cancelled: the second gets its turn
    assert_eq!(second.wakes(), 1);
    assert_eq!(*second.ready(), 7);
    let mut third = Probe::new(cell.get_or_try_init(|| async { Err::<u32, ()>(()) }));
    assert_eq!(third.ready(), Ok(&7));
}

#[test]
fn once_cell_concurrent_init_every_runtime() {
    on_every_runtime("once_cell_init", LIMIT, |rt| async move {
        for _ in 0..50 {
            let cell = Arc::new(OnceCell::new());
            let inits = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..8)
                .map(|i| {
                    let (cell, inits) = (cell.clone(), inits.clone());
                    rt.spawn(async move {
                        *cell
                            .get_or_init(|| async move {
                                inits.fetch_add(1, SeqCst);
                                rt.yield_now().await;
                                i
                            })
                            .await
                    })
                })
                .collect();
            let mut seen = Vec::new();
            for t in tasks {
                seen.push(t.await);
            }
            assert_eq!(inits.load(SeqCst), 1);
            assert!(seen.iter().all(|&v| v == seen[0]));
        }
    });
}

/// A `notify_last` notification dropped unobserved moves on to the newest waiter left (the pick
/// it was made with, as in tokio); `notify_one`'s moves on to the oldest.
#[test]
fn an_unobserved_notification_moves_on_with_the_pick_it_was_made_with() {
    let n = Notify::new();
    let mut a = Probe::new(n.notified());
    let mut b = Probe::new(n.notified());
    let mut c = Probe::new(n.notified());
    a.pending();
    b.pending();
    c.pending();
    n.notify_last(); // picks c
    drop(c);
    assert_eq!((a.wakes(), b.wakes()), (0, 1), "notify_last's notification went to the oldest waiter");
    b.ready();
    n.notify_one(); // picks a, the only waiter left
    drop(a); // nobody to pass it on to: it becomes the stored permit
    let mut d = Probe::new(n.notified());
    d.ready();
}
