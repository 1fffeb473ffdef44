//! A list of tasks waiting for one event, which a waiter can leave: the socket's readiness fan-out
//! (`net::socket`), a buffer pool's wait for a free buffer (`driver::pool`) and a socket's wait
//! for its next pooled result (`net::pooled`).
//!
//! # Contract
//!
//! - [`WaitList::wake_all`] takes the whole list and wakes every waker in it, outside the lock.
//!   Each take starts a new *round*.
//! - A waiting future keeps a [`WaitKey`]: its entry's key and the round it joined in. Joining
//!   again ([`WaitList::join`]) in the same round refreshes the entry instead of adding one, so a
//!   future polled many times holds one entry.
//! - A future that gives up (is dropped, or finishes without being woken) calls
//!   [`WaitList::leave`]; an entry from an earlier round is gone already (its key may be another
//!   waiter's now, which is why the round is checked). So a task that waits and gives up (a
//!   `timeout` around the wait) leaves no waker behind: a waker keeps its task's allocation alive.
//! - Wakers are dropped outside the lock: dropping a waker may drop its task, whose future may
//!   leave this very list.

use std::sync::Mutex;
use std::task::Waker;

/// See the module docs.
#[derive(Default)]
pub(crate) struct WaitList {
    waiters: Mutex<Waiters>,
}

#[derive(Default)]
struct Waiters {
    wakers: slab::Slab<Waker>,
    /// How many times the list was taken by [`WaitList::wake_all`].
    round: u64,
}

/// One waiting future's place in a [`WaitList`] (see the module docs).
#[derive(Default, Debug)]
pub(crate) struct WaitKey {
    round: u64,
    key: Option<usize>,
}

impl WaitList {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the list with `waker`, or refreshes `slot`'s entry if it is still there. Callers
    /// look at the condition they wait for again afterwards (or hold a lock that orders them
    /// before its `wake_all`), so an event between their first look and the join is not missed.
    pub(crate) fn join(&self, slot: &mut WaitKey, waker: &Waker) {
        let replaced = {
            let mut w = self.lock();
            let round = w.round;
            match slot.key.filter(|_| slot.round == round).and_then(|k| w.wakers.get_mut(k)) {
                Some(mine) if mine.will_wake(waker) => None,
                Some(mine) => Some(std::mem::replace(mine, waker.clone())),
                None => {
                    *slot = WaitKey { round, key: Some(w.wakers.insert(waker.clone())) };
                    None
                }
            }
        };
        drop(replaced);
    }

    /// Takes `slot`'s entry out of the list, if it is still there.
    pub(crate) fn leave(&self, slot: &mut WaitKey) {
        let Some(key) = slot.key.take() else { return };
        let left = {
            let mut w = self.lock();
            if w.round == slot.round {
                w.wakers.try_remove(key)
            } else {
                None
            }
        };
        drop(left);
    }

    /// Wakes every waiter and empties the list (a new round).
    pub(crate) fn wake_all(&self) {
        let wakers = {
            let mut w = self.lock();
            if w.wakers.is_empty() {
                return;
            }
            w.round = w.round.wrapping_add(1);
            std::mem::take(&mut w.wakers)
        };
        for (_, w) in wakers {
            w.wake();
        }
    }

    /// Entries in the list (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().wakers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn a_waiter_holds_one_entry_and_leaves_it() {
        let list = WaitList::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let (mut a, mut b) = (WaitKey::default(), WaitKey::default());
        for _ in 0..3 {
            list.join(&mut a, &waker);
        }
        list.join(&mut b, &waker);
        assert_eq!(list.len(), 2);
        list.leave(&mut a);
        assert_eq!(list.len(), 1);
        list.wake_all();
        assert_eq!(count.0.load(SeqCst), 1);
        assert_eq!(list.len(), 0);
        // `b`'s entry went with the wake; a new waiter may take its key, and `b` leaving (a stale
        // round) must not remove it.
        let mut c = WaitKey::default();
        list.join(&mut c, &waker);
        list.leave(&mut b);
        assert_eq!(list.len(), 1);
        list.leave(&mut c);
        assert_eq!(list.len(), 0);
    }
}
