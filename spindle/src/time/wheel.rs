//! The hierarchical timer wheel and its entries, and the lock-guarded shard a worker owns.
//!
//! # Contract
//!
//! - A [`Wheel`] has `LEVELS` levels of 64 slots; level `L` slots span `64^L` ms. An entry with
//!   deadline `d` sits at the level of the highest 6-bit group in which `d` differs from `elapsed`
//!   (the last processed tick), so everything in lower levels expires before anything in higher
//!   ones, and finding the next expiration is a scan of at most `LEVELS` bitmaps. Inserting and
//!   removing are O(1) (intrusive doubly linked slot lists). Deadlines past the last level's
//!   span go to an overflow list that is re-examined when the top level wraps.
//! - An [`Entry`] lives inside its `Sleep` (pinned). Its links, deadline and waker are guarded by
//!   the lock of the [`Shard`] it is registered in; its `state` is atomic so the owner can see
//!   `FIRED` without locking. An entry is registered in at most one shard; whoever drops or resets
//!   it takes that shard's lock and unlinks it, so the wheel never points at freed memory.
//! - The wheel finds an entry by its address, so a registered entry must not move: its `Sleep` is
//!   dropped where it was pinned (`Pin`'s drop guarantee, which executors must keep: a task cell
//!   that moved its future out to drop it once made a `Sleep` unlink a stale copy of itself while
//!   the wheel kept pointing into the cell). Debug builds check in `unlink` that the neighbours
//!   and the slot head point back at the entry being removed.
//! - Firing happens under the shard lock (unlink, take the waker, then mark `FIRED` as the last
//!   access); wakers are called after the lock is released. A fired entry is its owner's alone:
//!   dropping or resetting it takes no lock.

use std::marker::PhantomPinned;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::Waker;

use spindle_core::loom::{AtomicBool, AtomicU64, AtomicU8, Ordering::*};
use spindle_core::spin::{SpinGuard, SpinLock};

use super::clock::{Clock, Tick};
use crate::rt::park::Unparker;

const LEVELS: usize = 7; // 64^7 ms ≈ 139 years
const SLOTS: usize = 64;

/// A cell whose contents the shard lock guards. Every access goes through a closure around the
/// loom shim's cell, so under `--cfg loom` the model sees each read and write (and flags one that
/// is not ordered by the lock); in normal builds the closures inline to plain loads and stores.
struct LockedCell<T>(spindle_core::loom::UnsafeCell<T>);

impl<T> LockedCell<T> {
    fn new(v: T) -> Self {
        LockedCell(spindle_core::loom::UnsafeCell::new(v))
    }

    /// Reads the contents.
    ///
    /// # Safety
    /// The caller holds the shard lock (or owns an idle entry).
    #[inline(always)]
    unsafe fn get(&self) -> T
    where
        T: Copy,
    {
        // SAFETY: exclusive or lock-ordered access per the caller's contract.
        self.0.with(|p| unsafe { *p })
    }

    /// Overwrites the contents (the old value is `Copy`, nothing to drop).
    ///
    /// # Safety
    /// As [`LockedCell::get`].
    #[inline(always)]
    unsafe fn set(&self, v: T)
    where
        T: Copy,
    {
        // SAFETY: as in `get`.
        self.0.with_mut(|p| unsafe { *p = v })
    }

    /// Runs `f` on the contents.
    ///
    /// # Safety
    /// As [`LockedCell::get`]; `f` must not reach this cell again.
    #[inline(always)]
    unsafe fn with_mut<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: as in `get`; the `&mut` lives only for the closure.
        self.0.with_mut(|p| f(unsafe { &mut *p }))
    }
}

/// Entry state: not in any wheel.
pub(crate) const IDLE: u8 = 0;
/// In a wheel, waiting for its deadline.
pub(crate) const WAITING: u8 = 1;
/// Fired (deadline reached); no longer in a wheel.
pub(crate) const FIRED: u8 = 2;

/// A timer registration. Fields other than `state` are guarded by the shard lock.
pub(crate) struct Entry {
    pub(crate) state: AtomicU8,
    deadline: LockedCell<Tick>,
    prev: LockedCell<Option<NonNull<Entry>>>,
    next: LockedCell<Option<NonNull<Entry>>>,
    waker: LockedCell<Option<Waker>>,
    _pin: PhantomPinned,
}

// SAFETY: all non-atomic fields are only touched under the lock of the shard the entry is in (or
// by the owner while it is `IDLE`, when no shard can reach it).
unsafe impl Send for Entry {}
// SAFETY: as above.
unsafe impl Sync for Entry {}

impl Entry {
    /// Under loom: checks, with a tracked access, the claim that a fired entry is its owner's
    /// alone (the firer's accesses all happen before its `FIRED` store) and has no waker.
    #[cfg(loom)]
    pub(crate) fn assert_fired_and_owned(&self) {
        // SAFETY: exclusive per the claim, which loom checks.
        assert!(unsafe { self.waker.with_mut(|w| w.is_none()) }, "a fired entry kept a waker");
    }

    pub(crate) fn new() -> Entry {
        Entry {
            state: AtomicU8::new(IDLE),
            deadline: LockedCell::new(0),
            prev: LockedCell::new(None),
            next: LockedCell::new(None),
            waker: LockedCell::new(None),
            _pin: PhantomPinned,
        }
    }
}

/// The wheel proper. Only reached through `Shard::lock`.
pub(crate) struct Wheel {
    elapsed: Tick,
    slots: [[Option<NonNull<Entry>>; SLOTS]; LEVELS],
    occupied: [u64; LEVELS],
    /// Entries beyond the top level's span.
    overflow: Option<NonNull<Entry>>,
    len: usize,
}

// SAFETY: the wheel holds pointers to entries that are `Sync`; it is only used under the lock.
unsafe impl Send for Wheel {}

fn level_for(elapsed: Tick, deadline: Tick) -> usize {
    let masked = (elapsed ^ deadline) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros() as usize;
    significant / 6
}

fn slot_for(deadline: Tick, level: usize) -> usize {
    ((deadline >> (level * 6)) & (SLOTS as u64 - 1)) as usize
}

impl Wheel {
    pub(crate) fn new(elapsed: Tick) -> Wheel {
        Wheel { elapsed, slots: [[None; SLOTS]; LEVELS], occupied: [0; LEVELS], overflow: None, len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Inserts an entry whose deadline is after `elapsed`.
    ///
    /// # Safety
    /// `e` is live, pinned, not in any wheel, and stays alive until removed (under this lock).
    unsafe fn link(&mut self, e: NonNull<Entry>) {
        // SAFETY: guarded by the shard lock per the contract.
        let deadline = unsafe { e.as_ref().deadline.get() };
        debug_assert!(deadline > self.elapsed);
        let level = level_for(self.elapsed, deadline);
        let head = if level >= LEVELS {
            &mut self.overflow
        } else {
            let slot = slot_for(deadline, level);
            self.occupied[level] |= 1 << slot;
            &mut self.slots[level][slot]
        };
        // SAFETY: `e` and the old head are live entries guarded by this lock.
        unsafe {
            e.as_ref().prev.set(None);
            e.as_ref().next.set(*head);
            if let Some(h) = *head {
                h.as_ref().prev.set(Some(e));
            }
        }
        *head = Some(e);
        self.len += 1;
    }

    /// Removes a linked entry.
    ///
    /// # Safety
    /// `e` is linked in this wheel.
    unsafe fn unlink(&mut self, e: NonNull<Entry>) {
        // SAFETY: `e` and its neighbours are live and guarded by this lock.
        unsafe {
            let r = e.as_ref();
            let (prev, next) = (r.prev.get(), r.next.get());
            // The list must point back at `e` itself: an entry that moved after it was linked
            // (its future dropped somewhere other than where it was pinned) unlinks a copy
            // whose links may be stale, while the list keeps pointing at the old place.
            const MOVED: &str = "spindle: a timer entry moved while registered (pinned future not dropped in place)";
            match prev {
                Some(p) => {
                    debug_assert_eq!(p.as_ref().next.get(), Some(e), "{MOVED}");
                    p.as_ref().next.set(next)
                }
                None => {
                    let deadline = r.deadline.get();
                    let level = level_for(self.elapsed, deadline);
                    if level >= LEVELS {
                        debug_assert_eq!(self.overflow, Some(e), "{MOVED}");
                        self.overflow = next;
                    } else {
                        let slot = slot_for(deadline, level);
                        debug_assert_eq!(self.slots[level][slot], Some(e), "{MOVED}");
                        self.slots[level][slot] = next;
                        if next.is_none() {
                            self.occupied[level] &= !(1 << slot);
                        }
                    }
                }
            }
            if let Some(n) = next {
                debug_assert_eq!(n.as_ref().prev.get(), Some(e), "{MOVED}");
                n.as_ref().prev.set(prev);
            }
            r.prev.set(None);
            r.next.set(None);
        }
        self.len -= 1;
    }

    /// The earliest tick at which something in the wheel may be due (a slot's start), if any.
    pub(crate) fn next_expiration(&self) -> Option<Tick> {
        for level in 0..LEVELS {
            let occ = self.occupied[level];
            if occ == 0 {
                continue;
            }
            let shift = level * 6;
            let cur = ((self.elapsed >> shift) & 63) as u32;
            // Slots behind the current position are empty by construction (they would belong
            // to the next rotation and thus to a higher level).
            let ahead = occ.rotate_right(cur);
            let dist = ahead.trailing_zeros() as u64;
            let level_span = 1u64 << shift;
            let base = (self.elapsed >> shift) << shift;
            let start = base + dist * level_span;
            return Some(start.max(self.elapsed));
        }
        if self.overflow.is_some() {
            // Re-examine overflow entries when the top level would wrap.
            let top = 6 * LEVELS as u32;
            let span = if top >= 64 { u64::MAX } else { 1u64 << top };
            return Some((self.elapsed / span + 1).saturating_mul(span));
        }
        None
    }

    /// Advances to `now`, moving entries that are due into `fired` (up to `limit`, so the caller
    /// can wake them outside the lock and come back). Returns whether everything due was taken.
    fn advance(&mut self, now: Tick, fired: &mut Vec<Waker>, limit: usize) -> bool {
        while let Some(t) = self.next_expiration() {
            if t > now {
                break;
            }
            if fired.len() >= limit {
                return false;
            }
            // Take the whole list at `t` and re-sort it relative to the new `elapsed`.
            let list = self.take_slot_at(t);
            self.elapsed = self.elapsed.max(t);
            let mut cur = list;
            while let Some(e) = cur {
                // SAFETY: entries on a taken list are live (their owners unlink under this lock,
                // which we hold) and now belong to nobody's slot.
                unsafe {
                    let r = e.as_ref();
                    cur = r.next.get();
                    r.prev.set(None);
                    r.next.set(None);
                    self.len -= 1;
                    if r.deadline.get() <= now {
                        if let Some(w) = r.waker.with_mut(Option::take) {
                            fired.push(w);
                        }
                        // The last access to the entry: from here its owner may reset or free it
                        // without the lock.
                        r.state.store(FIRED, Release);
                    } else {
                        self.link(e);
                    }
                }
            }
        }
        self.elapsed = self.elapsed.max(now);
        true
    }

    /// Takes the waker of every linked entry (they stay linked and waiting).
    fn take_wakers(&mut self, out: &mut Vec<Waker>) {
        let heads = self.slots.iter().flatten().chain(std::iter::once(&self.overflow));
        for head in heads {
            let mut cur = *head;
            while let Some(e) = cur {
                // SAFETY: linked entries are live and guarded by the lock our `&mut self` implies.
                unsafe {
                    let r = e.as_ref();
                    cur = r.next.get();
                    out.extend(r.waker.with_mut(Option::take));
                }
            }
        }
    }

    /// Detaches the list that `next_expiration` reported at tick `t`.
    fn take_slot_at(&mut self, t: Tick) -> Option<NonNull<Entry>> {
        for level in 0..LEVELS {
            if self.occupied[level] == 0 {
                continue;
            }
            let slot = slot_for(t, level);
            self.occupied[level] &= !(1 << slot);
            return self.slots[level][slot].take();
        }
        self.overflow.take()
    }
}

/// Wakes `w`, containing a panic from it: a waker is user code, and a panic in its `wake` or drop
/// must not unwind into the worker firing timers (it would die with the runtime's timers locked
/// out of its loop).
fn wake_contained(w: Waker) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || w.wake()));
}

/// One worker's timers: the wheel behind a spin lock, plus what cross-thread registrations
/// need to wake the owner when they add an earlier deadline.
pub(crate) struct Shard {
    wheel: SpinLock<Wheel>,
    pub(crate) clock: Arc<Clock>,
    /// Wakes the thread that processes this shard.
    unparker: Unparker,
    /// The tick the owner parks until (`u64::MAX`: no timer, or not parked on one). Written and
    /// read under the wheel lock.
    park_until: AtomicU64,
    /// Set when the runtime owning this shard dropped its tasks: nobody fires this shard any
    /// more, so a sleep still waiting here (polled elsewhere since) moves to the shard of the
    /// thread that polls it next.
    closed: AtomicBool,
    /// Under loom: unparks `register` asked for (the real parker is a futex the model cannot
    /// see), so a model can check that an owner about to sleep past a new deadline is woken.
    #[cfg(loom)]
    pub(crate) unparks: spindle_core::loom::AtomicUsize,
}

/// What [`Shard::update_waker`] found.
#[must_use]
pub(crate) enum Updated {
    /// Still waiting, with the new waker.
    Waiting,
    /// The timer fired.
    Fired,
    /// The shard was closed (its runtime is gone): the entry must move.
    Closed,
}

pub(crate) enum Registered {
    /// The deadline already passed: the timer fired at once.
    Fired,
    /// Waiting in the wheel.
    Waiting,
    /// Not registered: the shard is closed (nobody would fire it); the entry stays idle.
    Closed,
}

impl Shard {
    pub(crate) fn new(clock: Arc<Clock>, unparker: Unparker) -> Shard {
        let now = clock.now_tick();
        Shard {
            wheel: SpinLock::new(Wheel::new(now)),
            clock,
            unparker,
            park_until: AtomicU64::new(u64::MAX),
            closed: AtomicBool::new(false),
            #[cfg(loom)]
            unparks: spindle_core::loom::AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> SpinGuard<'_, Wheel> {
        self.wheel.lock(crate::rt::park::spin_relax)
    }

    /// Registers (or re-registers) `e` for `deadline` with `waker`. A deadline the wheel has
    /// already passed fires at once; with `check_clock`, so does one the clock has passed (the
    /// caller passes `false` when it knows the deadline is still ahead of the clock, which saves
    /// a clock read; were it wrong, the entry would fire at the next `process`, never early).
    ///
    /// # Safety
    /// `e` is pinned, `IDLE` (in no wheel), and its owner will call `deregister` on this shard
    /// before freeing or moving it.
    #[inline]
    pub(crate) unsafe fn register(
        &self,
        e: NonNull<Entry>,
        deadline: Tick,
        waker: &Waker,
        check_clock: bool,
    ) -> Registered {
        let mut wheel = self.lock();
        // Read under the lock: `process` skips an empty wheel without reading the clock (its
        // `elapsed` then lags), so a registration racing it must see the clock as it is once
        // `process` is done, or a deadline passed meanwhile would wait for the next `process`.
        let due = check_clock && {
            let now = self.clock.now_tick();
            if wheel.len() == 0 {
                // What a `process` just before this would have done (no entry to move).
                wheel.elapsed = wheel.elapsed.max(now);
            }
            deadline <= now
        };
        // SAFETY: the entry is idle, so only its owner (us) touches it until it is linked.
        let r = unsafe { e.as_ref() };
        if due || deadline <= wheel.elapsed {
            r.state.store(FIRED, Release);
            return Registered::Fired;
        }
        if self.closed.load(Relaxed) {
            // Closed since the caller picked this shard (its runtime shut down meanwhile).
            return Registered::Closed;
        }
        // SAFETY: idle entry: its fields are ours until linked; then guarded by the lock we hold.
        unsafe {
            r.deadline.set(deadline);
            r.waker.with_mut(|w| *w = Some(waker.clone()));
            r.state.store(WAITING, Release);
            wheel.link(e);
        }
        let wake_owner = deadline < self.park_until.load(Relaxed);
        drop(wheel);
        if wake_owner {
            // The owner sleeps past this deadline (or is another thread's business): wake it so
            // it re-computes its timeout.
            // Relaxed: the real unpark adds no ordering the models could lean on (the model
            // reads the count after joining the thread).
            #[cfg(loom)]
            self.unparks.fetch_add(1, Relaxed);
            self.unparker.unpark();
        }
        Registered::Waiting
    }

    /// Replaces the waker of a waiting entry. `Fired` if it fired meanwhile; `Closed` (waker not
    /// stored) if the shard was closed, checked under the lock, so a `close` racing with this
    /// call either took the waker stored here or is seen here.
    ///
    /// # Safety
    /// `e` was registered in this shard.
    pub(crate) unsafe fn update_waker(&self, e: NonNull<Entry>, waker: &Waker) -> Updated {
        let _wheel = self.lock();
        // SAFETY: guarded by the lock; the entry is live (its owner calls us).
        let r = unsafe { e.as_ref() };
        if r.state.load(Acquire) != WAITING {
            return Updated::Fired;
        }
        if self.closed.load(Relaxed) {
            return Updated::Closed;
        }
        // SAFETY: as above.
        unsafe {
            r.waker.with_mut(|slot| {
                if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    *slot = Some(waker.clone());
                }
            })
        };
        Updated::Waiting
    }

    /// Unlinks `e` if it is still waiting; leaves it `IDLE`.
    ///
    /// # Safety
    /// `e` was registered in this shard (it may have fired since).
    pub(crate) unsafe fn deregister(&self, e: NonNull<Entry>) {
        let mut wheel = self.lock();
        // SAFETY: the entry is live (its owner calls us); state changes happen under this lock.
        let r = unsafe { e.as_ref() };
        if r.state.load(Acquire) == WAITING {
            // SAFETY: WAITING under the lock means it is linked in this wheel.
            unsafe { wheel.unlink(e) };
        }
        // SAFETY: unlinked or fired: nobody else reaches the waker now.
        let w = unsafe { r.waker.with_mut(Option::take) };
        r.state.store(IDLE, Release);
        drop(wheel);
        drop(w);
    }

    /// Marks the shard as no longer driven (its runtime is gone) and wakes every entry still
    /// waiting in it, so their owners poll again and move to a driven shard (see `Sleep`).
    pub(crate) fn close(&self) {
        let mut wakers = Vec::new();
        {
            let mut wheel = self.lock();
            self.closed.store(true, Release);
            wheel.take_wakers(&mut wakers);
        }
        for w in wakers {
            wake_contained(w);
        }
    }

    /// Whether [`close`](Self::close) was called.
    #[cfg(test)]
    fn is_closed(&self) -> bool {
        self.closed.load(Acquire)
    }

    /// Fires every due timer (waking outside the lock). Returns how many fired.
    pub(crate) fn process(&self) -> usize {
        let mut fired = Vec::new();
        let mut total = 0;
        loop {
            let mut wheel = self.lock();
            if wheel.len() == 0 {
                // Nothing can be due: no clock read. Runtimes call this on every park and
                // maintenance pass, and with no timer pending the read was all it did (about 3%
                // of a one-connection echo round trip on the current-thread runtime). `elapsed`
                // is then left behind: `register` with `check_clock` brings it up to date; an
                // unchecked registration may link an entry already due, which the next
                // `process` fires (a paused clock's park does not wait for it: `until_tick`).
                return total;
            }
            let now = self.clock.now_tick();
            let done = wheel.advance(now, &mut fired, 64);
            drop(wheel);
            total += fired.len();
            for w in fired.drain(..) {
                wake_contained(w);
            }
            if done {
                return total;
            }
        }
    }

    /// Whether a timer is due now (cheap check for maintenance passes).
    pub(crate) fn has_due(&self) -> bool {
        let next = match self.wheel.try_lock() {
            Some(w) => w.next_expiration(),
            None => return false,
        };
        next.is_some_and(|t| t <= self.clock.now_tick())
    }

    /// The owner is about to park: records and returns the tick to wake at.
    pub(crate) fn prepare_park(&self) -> Option<Tick> {
        let wheel = self.lock();
        let next = wheel.next_expiration();
        self.park_until.store(next.unwrap_or(u64::MAX), Relaxed);
        next
    }

    /// The owner woke up: cross-thread registrations need not wake it until it parks again.
    pub(crate) fn unparked(&self) {
        let _wheel = self.lock();
        self.park_until.store(0, Relaxed);
    }

    /// The earliest pending deadline.
    pub(crate) fn next_expiration(&self) -> Option<Tick> {
        self.lock().next_expiration()
    }

    /// Number of registered timers.
    #[allow(dead_code)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Duration;

    struct CountWake(AtomicUsize);
    impl Wake for CountWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn level_and_slot_math() {
        assert_eq!(level_for(0, 1), 0);
        assert_eq!(level_for(0, 63), 0);
        assert_eq!(level_for(0, 64), 1);
        assert_eq!(level_for(100, 4095), 1);
        assert_eq!(level_for(0, 4096), 2);
        assert_eq!(level_for(0, u64::MAX), 10);
    }

    #[test]
    fn fires_in_deadline_order_across_levels() {
        let clock = Arc::new(Clock::new(true));
        let park = crate::rt::park::Driver::new().unwrap();
        let shard = Shard::new(clock.clone(), park.unparker());
        let counter = Arc::new(CountWake(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let deadlines = [1u64, 2, 63, 64, 65, 4095, 4096, 300_000, 86_400_000 * 400];
        let entries: Vec<_> = deadlines.iter().map(|_| Box::pin(Entry::new())).collect();
        for (e, d) in entries.iter().zip(deadlines) {
            let p = NonNull::from(&**e);
            // SAFETY: pinned boxes, deregistered below before being dropped.
            assert!(matches!(unsafe { shard.register(p, clock.now_tick() + d, &waker, true) }, Registered::Waiting));
        }
        let start = clock.now_tick();
        for (i, d) in deadlines.iter().enumerate() {
            assert!(clock.advance_to_tick(start + d - 1));
            shard.process();
            assert_eq!(counter.0.load(Ordering::SeqCst), i, "fired early before {d}");
            assert!(clock.advance_to_tick(start + d));
            shard.process();
            assert_eq!(counter.0.load(Ordering::SeqCst), i + 1, "not fired at {d}");
        }
        for e in &entries {
            assert_eq!(e.state.load(Ordering::SeqCst), FIRED);
            // SAFETY: registered in this shard.
            unsafe { shard.deregister(NonNull::from(&**e)) };
        }
        assert_eq!(shard.len(), 0);
    }

    /// An empty shard is not processed, so its elapsed time lags the clock; an unchecked
    /// registration (a sleep created at least 1 ms ahead) first polled after a paused clock passed
    /// its deadline is linked, not fired. The park the owner then makes must not wait for it:
    /// a paused clock never reaches a tick by waiting, so its timeout is zero, and the process
    /// after the park fires it.
    #[test]
    fn a_due_entry_linked_into_a_lagging_empty_wheel_does_not_park_a_paused_owner() {
        let clock = Arc::new(Clock::new(true));
        let park = crate::rt::park::Driver::new().unwrap();
        let shard = Shard::new(clock.clone(), park.unparker());
        let counter = Arc::new(CountWake(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let start = clock.now_tick();
        assert!(clock.advance_to_tick(start + 20));
        assert_eq!(shard.process(), 0);
        let e = Box::pin(Entry::new());
        let p = NonNull::from(&*e);
        // SAFETY: pinned box, deregistered below before being dropped.
        let r = unsafe { shard.register(p, start + 10, &waker, false) };
        assert!(matches!(r, Registered::Waiting), "the lagging wheel links it (the case under test)");
        let next = shard.prepare_park().expect("a linked entry has an expiration");
        assert_eq!(clock.until_tick(next), Some(Duration::ZERO), "a paused owner would park for good");
        shard.unparked();
        assert_eq!(shard.process(), 1);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        // SAFETY: registered in this shard.
        unsafe { shard.deregister(p) };
    }

    /// Closing wakes every waiting entry, and a shard closed after its caller picked it refuses
    /// both a new registration and a waker update (checked under the lock, so a `close` racing
    /// with either cannot leave a waker nobody will ever call).
    #[test]
    fn a_closed_shard_wakes_its_waiters_and_takes_no_new_ones() {
        let clock = Arc::new(Clock::new(true));
        let park = crate::rt::park::Driver::new().unwrap();
        let shard = Shard::new(clock.clone(), park.unparker());
        let counter = Arc::new(CountWake(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let far = clock.now_tick() + 100_000;
        let waiting = Box::pin(Entry::new());
        let w = NonNull::from(&*waiting);
        // SAFETY: pinned, deregistered before drop.
        assert!(matches!(unsafe { shard.register(w, far, &waker, true) }, Registered::Waiting));
        shard.close();
        assert!(shard.is_closed());
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "close wakes the waiting entry");
        // SAFETY: registered in this shard.
        assert!(matches!(unsafe { shard.update_waker(w, &waker) }, Updated::Closed));
        let late = Box::pin(Entry::new());
        // SAFETY: pinned; refused, so never linked.
        assert!(matches!(unsafe { shard.register(NonNull::from(&*late), far, &waker, true) }, Registered::Closed));
        assert_eq!(late.state.load(Ordering::SeqCst), IDLE);
        // SAFETY: registered in this shard.
        unsafe { shard.deregister(w) };
    }

    #[test]
    fn deregister_removes_waiting_entries() {
        let clock = Arc::new(Clock::new(true));
        let park = crate::rt::park::Driver::new().unwrap();
        let shard = Shard::new(clock.clone(), park.unparker());
        let counter = Arc::new(CountWake(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let es: Vec<_> = (0..100).map(|_| Box::pin(Entry::new())).collect();
        for (i, e) in es.iter().enumerate() {
            // SAFETY: pinned, deregistered before drop.
            let _ = unsafe { shard.register(NonNull::from(&**e), clock.now_tick() + 10 + i as u64 * 37, &waker, true) };
        }
        for e in es.iter().step_by(2) {
            // SAFETY: registered here.
            unsafe { shard.deregister(NonNull::from(&**e)) };
        }
        assert_eq!(shard.len(), 50);
        clock.advance(std::time::Duration::from_secs(10));
        assert_eq!(shard.process(), 50);
        assert_eq!(counter.0.load(Ordering::SeqCst), 50);
        for e in &es {
            // SAFETY: registered here (or already idle: a no-op).
            unsafe { shard.deregister(NonNull::from(&**e)) };
        }
    }
}
