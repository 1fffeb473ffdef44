//! Loom models of the fair semaphore under Mutex, RwLock and Semaphore: hand-over of permits to
//! waiters, partial grants, cancellation of queued and granted acquires, close.
//!
//! Run with:
//!   RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/work/target-loom \
//!     cargo test -p spindle-core --release --test loom_sync_locks
#![cfg(loom)]

mod sync_loom;

use std::pin::pin;

use std::sync::Arc;

use loom::thread;
use spindle_core::sync::{Mutex, RwLock, Semaphore};
use sync_loom::*;

/// Two threads and the main thread increment under the mutex; no update is lost and every
/// waiter is woken (a lost wakeup shows as a loom deadlock).
#[test]
fn mutex_contended_increments() {
    model(3, || {
        let m = Arc::new(Mutex::new(0));
        let ths: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || block_on(async { *m.lock().await += 1 }))
            })
            .collect();
        block_on(async { *m.lock().await += 1 });
        for t in ths {
            t.join().unwrap();
        }
        assert_eq!(*m.try_lock().unwrap(), 3);
    });
}

/// A lock future polled once (queued) and dropped while the holder unlocks concurrently: whether
/// the lock was handed to it or not, it ends up free, and a third waiter gets it.
#[test]
fn mutex_cancelled_waiter_races_unlock() {
    model(3, || {
        let m = Arc::new(Mutex::new(()));
        let g = m.clone().try_lock_owned().unwrap();
        let m2 = m.clone();
        let t = thread::spawn(move || {
            let mut fut = pin!(m2.lock());
            let _ = poll_once(fut.as_mut());
            // dropped here: queued, or already granted
        });
        drop(g);
        t.join().unwrap();
        // Another waiter must get the lock (and the mutex is free afterwards).
        block_on(async { drop(m.lock().await) });
        assert!(m.try_lock().is_ok());
    });
}

/// A waiter for 2 permits gets them from two releases on different threads (partial grant then
/// completion), while a third thread's acquire of 1 queues behind it.
#[test]
fn semaphore_partial_grants() {
    model(3, || {
        let s = Arc::new(Semaphore::new(2));
        let mut a = s.clone().try_acquire_many_owned(2).unwrap();
        let b = a.split(1).unwrap();
        let t1 = thread::spawn(move || drop(a));
        let t2 = thread::spawn(move || drop(b));
        block_on(async {
            let p = s.acquire_many(2).await.unwrap();
            assert_eq!(p.num_permits(), 2);
        });
        t1.join().unwrap();
        t2.join().unwrap();
        assert_eq!(s.available_permits(), 2);
    });
}

/// A queued `acquire_many` partially granted and then cancelled, racing a release: every permit
/// is accounted for at the end.
#[test]
fn semaphore_cancel_partial_races_release() {
    model(3, || {
        let s = Arc::new(Semaphore::new(2));
        let mut held = s.try_acquire_many(2).unwrap();
        let one = held.split(1).unwrap();
        let s2 = s.clone();
        let t = thread::spawn(move || {
            let mut fut = pin!(s2.acquire_many(2));
            let _ = poll_once(fut.as_mut());
            // dropped: maybe queued with 0 or 1 granted, maybe fully granted
        });
        drop(one);
        drop(held);
        t.join().unwrap();
        assert_eq!(s.available_permits(), 2);
    });
}

/// `close` races a waiting acquire: the waiter wakes with an error (no deadlock), no permits lost.
#[test]
fn semaphore_close_races_acquire() {
    model(3, || {
        let s = Arc::new(Semaphore::new(1));
        let held = s.try_acquire().unwrap();
        let s2 = s.clone();
        let t = thread::spawn(move || block_on(async { s2.acquire().await.map(|p| p.forget()).is_ok() }));
        s.close();
        let got = t.join().unwrap();
        drop(held);
        // The only permit is held until after close, so the waiter can only fail.
        assert!(!got);
        assert_eq!(s.available_permits(), 1);
    });
}

/// A reader and a writer race; the writer's update is seen whole, and both finish.
#[test]
fn rwlock_reader_writer() {
    model(3, || {
        let l = Arc::new(RwLock::new((0, 0)));
        let l2 = l.clone();
        let w = thread::spawn(move || {
            block_on(async {
                let mut g = l2.write().await;
                g.0 += 1;
                g.1 += 1;
            })
        });
        block_on(async {
            let g = l.read().await;
            assert_eq!(g.0, g.1);
        });
        w.join().unwrap();
        assert_eq!(*l.try_read().unwrap(), (1, 1));
    });
}
