//! Mutex, RwLock and Semaphore: semantics, FIFO fairness, cancel safety, and bounded stress runs on
//! spindle's and tokio's runtimes (runtime neutrality).

// Needs tokio and spindle, which are not built under `--cfg loom`.
#![cfg(not(loom))]

mod sync_support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use spindle_core::sync::{
    Mutex, MutexGuard, OwnedMutexGuard, OwnedRwLockWriteGuard, RwLock, RwLockWriteGuard, Semaphore, TryAcquireError,
};
use sync_support::*;

const LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Mutex

#[test]
fn mutex_lock_try_lock_and_guards() {
    let m = Mutex::new(vec![1]);
    let mut p = Probe::new(m.lock());
    let mut g = p.ready();
    g.push(2);
    assert!(m.try_lock().is_err());
    assert_eq!(format!("{m:?}"), "Mutex { data: <locked> }");
    drop(g);
    drop(p);
    let g = m.try_lock().unwrap();
    let mut last = MutexGuard::map(g, |v| v.last_mut().unwrap());
    *last = 20;
    drop(last);
    assert_eq!(*m.try_lock().unwrap(), vec![1, 20]);
    assert_eq!(format!("{m:?}"), "Mutex { data: [1, 20] }");
    assert_eq!(m.into_inner(), vec![1, 20]);
}

#[test]
fn mutex_owned_guard_moves_across_tasks() {
    on_every_runtime("mutex_owned", LIMIT, |rt| async move {
        let m = Arc::new(Mutex::new(0u32));
        let g = m.clone().lock_owned().await;
        let t = rt.spawn(async move {
            let mut g = g;
            *g += 5;
        });
        t.await;
        assert_eq!(*m.lock().await, 5);
        assert!(m.clone().try_lock_owned().is_ok());
    });
}

#[test]
fn mutex_is_fifo() {
    let m = Mutex::new(());
    let g = m.try_lock().unwrap();
    let mut a = Probe::new(m.lock());
    let mut b = Probe::new(m.lock());
    let mut c = Probe::new(m.lock());
    a.pending();
    b.pending();
    c.pending();
    drop(g);
    // Only the oldest waiter was woken and got the lock; a newcomer cannot barge.
    assert_eq!((a.wakes(), b.wakes(), c.wakes()), (1, 0, 0));
    assert!(m.try_lock().is_err());
    c.pending();
    b.pending();
    let ga = a.ready();
    drop(ga);
    assert_eq!((b.wakes(), c.wakes()), (1, 0));
    c.pending();
    drop(b.ready());
    drop(c.ready());
    assert!(m.try_lock().is_ok());
}

#[test]
fn mutex_cancelled_lock_passes_the_lock_on() {
    let m = Mutex::new(0);
    let g = m.try_lock().unwrap();
    let mut a = Probe::new(m.lock());
    let mut b = Probe::new(m.lock());
    let mut c = Probe::new(m.lock());
    a.pending();
    b.pending();
    c.pending();
    // Cancel a waiter that was not granted anything: nothing changes for the others.
    drop(b);
    drop(g);
    assert_eq!(a.wakes(), 1);
    // `a` was handed the lock but is dropped before observing it: the lock moves on to `c`.
    drop(a);
    assert_eq!(c.wakes(), 1, "the lock handed to a cancelled waiter must wake the next one");
    *c.ready() += 1;
    drop(c);
    assert_eq!(*m.try_lock().unwrap(), 1);
}

#[test]
fn mutex_blocking_lock_from_threads() {
    let m = Arc::new(Mutex::new(0u64));
    within("blocking_lock", LIMIT, || {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        *m.blocking_lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    });
    assert_eq!(*m.blocking_lock(), 4000);
}

#[test]
fn mutex_stress_every_runtime() {
    on_every_runtime("mutex_stress", LIMIT, |rt| async move {
        let m = Arc::new(Mutex::new((0u64, false)));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let m = m.clone();
                rt.spawn(async move {
                    for i in 0..300 {
                        let mut g = m.lock().await;
                        assert!(!g.1, "two holders at once");
                        g.1 = true;
                        if i % 7 == 0 {
                            rt.yield_now().await; // hold the lock across an await
                        }
                        g.0 += 1;
                        g.1 = false;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        assert_eq!(m.lock().await.0, 16 * 300);
    });
}

/// Lock futures cancelled at random points while others keep locking: nothing is lost and the
/// mutex ends up free.
#[test]
fn mutex_cancellation_storm() {
    on_every_runtime("mutex_cancel_storm", LIMIT, |rt| async move {
        let m = Arc::new(Mutex::new(0u64));
        let done = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8u64)
            .map(|t| {
                let (m, done) = (m.clone(), done.clone());
                rt.spawn(async move {
                    for i in 0..200u64 {
                        if (i + t) % 3 == 0 {
                            // Start a lock and abandon it after one poll.
                            let fut = m.lock();
                            let _ = futures::poll!(Box::pin(fut));
                        } else {
                            let mut g = m.lock().await;
                            *g += 1;
                            if i % 5 == 0 {
                                rt.yield_now().await;
                            }
                            done.fetch_add(1, SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        assert_eq!(*m.lock().await, done.load(SeqCst) as u64);
        assert!(m.try_lock().is_ok());
    });
}

// ---------------------------------------------------------------------------------------------
// RwLock

#[test]
fn rwlock_readers_share_writers_exclude() {
    let l = RwLock::new(1);
    let r1 = l.try_read().unwrap();
    let r2 = l.try_read().unwrap();
    assert!(l.try_write().is_err());
    drop((r1, r2));
    let mut w = l.try_write().unwrap();
    *w = 2;
    assert!(l.try_read().is_err());
    let r = RwLockWriteGuard::downgrade(w);
    assert_eq!(*r, 2);
    assert!(l.try_read().is_ok());
    assert!(l.try_write().is_err());
    drop(r);
    assert_eq!(l.into_inner(), 2);
}

#[test]
fn rwlock_is_writer_preferring_and_fifo() {
    let l = RwLock::new(0);
    let r = l.try_read().unwrap();
    let mut w = Probe::new(l.write());
    w.pending();
    // A writer waits: new readers queue behind it instead of sharing with the current reader.
    assert!(l.try_read().is_err());
    let mut r2 = Probe::new(l.read());
    let mut r3 = Probe::new(l.read());
    r2.pending();
    r3.pending();
    drop(r);
    assert_eq!((w.wakes(), r2.wakes(), r3.wakes()), (1, 0, 0));
    let mut g = w.ready();
    *g = 1;
    drop(g);
    // Both readers queued behind the writer are admitted together.
    assert_eq!((r2.wakes(), r3.wakes()), (1, 1));
    let a = r2.ready();
    let b = r3.ready();
    assert_eq!(*a + *b, 2);
}

#[test]
fn rwlock_cancelled_writer_lets_readers_in() {
    let l = RwLock::new(0);
    let r = l.try_read().unwrap();
    let mut w = Probe::new(l.write());
    w.pending();
    let mut r2 = Probe::new(l.read());
    r2.pending();
    // The writer was partially granted (all reader slots but the one held); cancelling it must
    // hand them on so the reader behind it runs.
    drop(w);
    assert_eq!(r2.wakes(), 1);
    let g2 = r2.ready();
    drop((r, g2));
    assert!(l.try_write().is_ok());
}

#[test]
fn rwlock_owned_and_max_readers() {
    on_every_runtime("rwlock_owned", LIMIT, |rt| async move {
        let l = Arc::new(RwLock::with_max_readers(0u32, 2));
        let a = l.clone().read_owned().await;
        let b = l.clone().read_owned().await;
        assert!(l.clone().try_read_owned().is_err());
        drop((a, b));
        let w = l.clone().write_owned().await;
        let t = rt.spawn(async move {
            let mut w = w;
            *w = 9;
            OwnedRwLockWriteGuard::downgrade(w)
        });
        let r = t.await;
        assert_eq!(*r, 9);
        drop(r);
        assert_eq!(*l.read().await, 9);
    });
}

#[test]
fn rwlock_stress_every_runtime() {
    on_every_runtime("rwlock_stress", LIMIT, |rt| async move {
        let l = Arc::new(RwLock::new((0u64, 0u64)));
        let tasks: Vec<_> = (0..12)
            .map(|t| {
                let l = l.clone();
                rt.spawn(async move {
                    for i in 0..200 {
                        if (t + i) % 4 == 0 {
                            let mut g = l.write().await;
                            g.0 += 1;
                            rt.yield_now().await;
                            g.1 += 1;
                        } else {
                            let g = l.read().await;
                            assert_eq!(g.0, g.1, "a reader saw a half-done write");
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let g = l.read().await;
        assert_eq!(g.0, g.1);
        assert_eq!(g.0, (0..12u64).map(|t| (0..200u64).filter(|i| (t + i) % 4 == 0).count() as u64).sum());
    });
}

// ---------------------------------------------------------------------------------------------
// Semaphore

#[test]
fn semaphore_basics() {
    let s = Semaphore::new(3);
    let a = s.try_acquire_many(2).unwrap();
    assert_eq!(s.available_permits(), 1);
    assert_eq!(s.try_acquire_many(2).unwrap_err(), TryAcquireError::NoPermits);
    let mut b = s.try_acquire().unwrap();
    b.merge(a);
    assert_eq!(b.num_permits(), 3);
    let c = b.split(1).unwrap();
    drop(c);
    assert_eq!(s.available_permits(), 1);
    b.forget();
    assert_eq!(s.available_permits(), 1);
    s.add_permits(4);
    assert_eq!(s.available_permits(), 5);
    assert_eq!(s.forget_permits(2), 2);
    assert_eq!(s.available_permits(), 3);
    s.close();
    assert_eq!(s.try_acquire().unwrap_err(), TryAcquireError::Closed);
}

#[test]
fn semaphore_too_many_errors_instead_of_hanging() {
    let s = Semaphore::new(2);
    let mut p = Probe::new(s.acquire_many(3));
    let err = p.ready().unwrap_err();
    assert!(err.is_too_many() && !err.is_closed());
    assert!(err.to_string().contains("cannot acquire 3 permits"), "{err}");
    // Held permits count: 2 exist even when both are taken.
    let held = s.try_acquire_many(2).unwrap();
    let mut q = Probe::new(s.acquire_many(2));
    q.pending();
    // Forgetting a held permit while a request for 2 waits: that request can never succeed now.
    let mut held = held;
    let one = held.split(1).unwrap();
    one.forget();
    assert_eq!(q.wakes(), 1);
    assert!(q.ready().unwrap_err().is_too_many());
    drop(held);
    assert_eq!(s.available_permits(), 1);
}

#[test]
fn semaphore_fifo_large_request_is_not_overtaken() {
    let s = Semaphore::new(2);
    let mut p = s.try_acquire_many(2).unwrap();
    let mut big = Probe::new(s.acquire_many(2));
    big.pending();
    let mut small = Probe::new(s.acquire());
    small.pending();
    drop(p.split(1).unwrap()); // 1 for `big` (needs 2): it keeps its place
    assert_eq!((big.wakes(), small.wakes()), (0, 0));
    assert!(s.try_acquire().is_err(), "no barging past a queued waiter");
    drop(p); // now `big` has 2
    assert_eq!((big.wakes(), small.wakes()), (1, 0));
    let b = big.ready().unwrap();
    drop(b);
    assert_eq!(small.wakes(), 1);
    let sm = small.ready().unwrap();
    assert_eq!(s.available_permits(), 1);
    drop(sm);
    assert_eq!(s.available_permits(), 2);
}

#[test]
fn semaphore_cancelled_acquire_returns_partial_permits() {
    let s = Semaphore::new(3);
    let held = s.try_acquire_many(3).unwrap();
    let mut big = Probe::new(s.acquire_many(3));
    big.pending();
    let mut small = Probe::new(s.acquire());
    small.pending();
    let mut held = held;
    drop(held.split(2).unwrap()); // `big` now holds 2 of 3
    assert_eq!(s.available_permits(), 0);
    drop(big); // they go to `small`, and the extra becomes available
    assert_eq!(small.wakes(), 1);
    let sm = small.ready().unwrap();
    assert_eq!(s.available_permits(), 1);
    drop((sm, held));
    assert_eq!(s.available_permits(), 3);
}

#[test]
fn semaphore_close_wakes_waiters_with_errors() {
    let s = Semaphore::new(2);
    let _held = s.try_acquire_many(2).unwrap();
    let mut a = Probe::new(s.acquire());
    let mut b = Probe::new(s.acquire_many(1));
    a.pending();
    b.pending();
    s.close();
    assert_eq!((a.wakes(), b.wakes()), (1, 1));
    assert!(a.ready().unwrap_err().is_closed());
    assert!(b.ready().unwrap_err().is_closed());
    assert_eq!(s.acquire_many(0).now_or_never_ready().unwrap_err().to_string(), "semaphore closed");
}

trait NowOrNever: std::future::Future + Sized {
    fn now_or_never_ready(self) -> Self::Output {
        futures::FutureExt::now_or_never(Box::pin(self)).expect("expected Ready")
    }
}
impl<F: std::future::Future> NowOrNever for F {}

#[test]
fn semaphore_stress_every_runtime() {
    on_every_runtime("semaphore_stress", LIMIT, |rt| async move {
        let s = Arc::new(Semaphore::new(3));
        let inside = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..12u32)
            .map(|t| {
                let (s, inside) = (s.clone(), inside.clone());
                rt.spawn(async move {
                    for i in 0..150u32 {
                        let n = 1 + (t + i) % 3;
                        let p = s.clone().acquire_many_owned(n).await.unwrap();
                        let now = inside.fetch_add(n as usize, SeqCst) + n as usize;
                        assert!(now <= 3, "more permits out than exist");
                        if i % 4 == 0 {
                            rt.yield_now().await;
                        }
                        inside.fetch_sub(n as usize, SeqCst);
                        drop(p);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        assert_eq!(s.available_permits(), 3);
    });
}

/// `OwnedMutexGuard<T>` hands out `&T`, so sharing it across threads needs `T: Sync` (the derived
/// impl asked only for `T: Send`, letting two threads mutate a `Cell` through one guard).
#[test]
fn an_owned_mutex_guard_is_sync_only_for_sync_values() {
    use std::cell::Cell;
    use std::marker::PhantomData;
    struct Check<T>(PhantomData<T>);
    trait NotSync {
        const IS_SYNC: bool = false;
    }
    impl<T> NotSync for Check<T> {}
    #[allow(dead_code)]
    impl<T: Sync> Check<T> {
        const IS_SYNC: bool = true;
    }
    // (guard of a `Cell`, owned guard of a `Cell`, owned guard of a `u64`): Sync?
    let sync = [
        Check::<MutexGuard<'static, Cell<u64>>>::IS_SYNC,
        Check::<OwnedMutexGuard<Cell<u64>>>::IS_SYNC,
        Check::<OwnedMutexGuard<u64>>::IS_SYNC,
    ];
    assert_eq!(sync, [false, false, true], "OwnedMutexGuard<Cell<u64>> must not be Sync");
}

/// A panic in `MutexGuard::map`'s closure unwinds the guard, unlocking the mutex.
#[test]
fn a_panic_in_a_guard_map_closure_unlocks_the_mutex() {
    let m = Mutex::new(5u32);
    let g = m.try_lock().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _mapped = MutexGuard::map(g, |_v: &mut u32| -> &mut u32 { panic!("closure panics") });
    }));
    assert!(r.is_err());
    assert!(m.try_lock().is_ok(), "the mutex stayed locked after the guard unwound");
}
