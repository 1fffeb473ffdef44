//! Loom models of the timer shard's cross-thread races (issue 3): registering, cancelling
//! (deregistering on drop), replacing the waker and firing (`Shard::process`) on different threads,
//! and the owner's park decision (`prepare_park` against a registration from another thread, which
//! must unpark an owner about to sleep past its deadline; the real parker is a futex the model
//! cannot see, so the shard counts the unparks it asks for under `--cfg loom`).
//!
//! The models drive the real `Sleep` future (poll, drop) against one shard on a paused clock
//! (`spindle::time::__loom`, built only with `--cfg loom`). The entry's links, deadline and waker
//! are loom cells, so any access not ordered by the shard lock is reported. To check that nothing
//! touches an entry after its deregistration returned, a cancelled sleep's memory is at once
//! overwritten with a fresh, never-polled sleep (the "poison"): its cells are created after the
//! deregistration, so a later access from the firing thread is a causality violation, and its
//! state must still be idle at the end.
//!
//! The last model runs the sleep inside a real task cell (`spindle_core::task`, with a queue-and-
//! registry scheduler of its own) and aborts it while the shard fires, so the sleep is dropped by
//! the cell's cancellation path; it checks the pin guarantee the wheel relies on (the sleep is
//! dropped at the address where it was polled and registered).
//!
//! At most two threads contend for the shard's spin lock at any moment: with three, loom's
//! scheduler keeps alternating between the two spinning threads and never runs the holder
//! (tokio-rs/loom#53), so such a model exceeds its branch budget without finding anything.
//!
//! Run with:
//!   RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/work/target-loom \
//!     cargo test -p spindle --release --test loom_timer
#![cfg(loom)]

use std::collections::VecDeque;
use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::sync::Mutex;
use loom::thread;
use spindle::time::__loom::Timers;
use spindle::time::{sleep_until, Instant, Sleep};
use spindle_core::task::{self as raw_task, JoinHandle, Notified, Schedule, Task, TaskId, TaskMeta};

const TICK: Duration = Duration::from_millis(1);

/// Preemption bound. The explored interleavings stop growing at about 10 for every model here, so
/// this bound makes them exhaustive; the whole file runs in well under a second in release mode.
const BOUND: usize = 12;

/// Runs `f` under loom with the given preemption bound (unless `LOOM_MAX_PREEMPTIONS` is set) and
/// prints how many interleavings were explored.
fn model(bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(bound);
    }
    let iterations = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let it = iterations.clone();
    let start = std::time::Instant::now();
    b.check(move || {
        it.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    eprintln!(
        "loom: {} interleavings explored in {:.2?}",
        iterations.load(std::sync::atomic::Ordering::Relaxed),
        start.elapsed()
    );
}

/// A waker that counts its wakes (loom atomic, so the count is ordered like real wakes).
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn counter() -> (Arc<Counter>, Waker) {
    let c = Arc::new(Counter(AtomicUsize::new(0)));
    (c.clone(), Waker::from(c))
}

fn wakes(c: &Counter) -> usize {
    c.0.load(SeqCst)
}

/// A heap slot holding a pinned `Sleep` that can be moved between threads (the box moves, the
/// sleep does not), cancelled in place and then poisoned (see the module docs).
struct Slot {
    mem: Box<MaybeUninit<Sleep>>,
    poisoned: bool,
}

impl Slot {
    fn new(deadline: Instant) -> Slot {
        let mut mem = Box::new(MaybeUninit::uninit());
        mem.write(sleep_until(deadline));
        Slot { mem, poisoned: false }
    }

    fn sleep(&self) -> &Sleep {
        // SAFETY: the slot always holds an initialised sleep.
        unsafe { self.mem.assume_init_ref() }
    }

    fn poll(&mut self, waker: &Waker) -> Poll<()> {
        assert!(!self.poisoned, "the poison is never polled");
        // SAFETY: the sleep lives in the box until dropped in place; it never moves.
        let s = unsafe { Pin::new_unchecked(self.mem.assume_init_mut()) };
        s.poll(&mut Context::from_waker(waker))
    }

    /// Drops the sleep in place (deregistering it), then writes a never-polled sleep over it.
    fn cancel_and_poison(&mut self) {
        let deadline = self.sleep().deadline();
        // SAFETY: initialised; not used again before being overwritten.
        unsafe { self.mem.assume_init_drop() };
        self.mem.write(sleep_until(deadline));
        self.poisoned = true;
    }

    /// After the model's threads joined: nothing fired or linked the poison.
    fn check_poison(&self) {
        assert!(self.poisoned);
        assert!(!self.sleep().is_elapsed(), "a cancelled entry was fired after its deregistration returned");
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // SAFETY: initialised (the sleep or the poison).
        unsafe { self.mem.assume_init_drop() };
    }
}

/// The firing side: what a worker does when its timer comes due.
fn fire(timers: &Timers) {
    timers.advance(TICK);
    timers.process();
}

/// (a) The owner registers a sleep (first poll) and drops it while another thread advances the
/// clock and processes the shard. The waker fires at most once (never if the poll already saw
/// the deadline), the cancelled entry is never touched after its drop returned, and the shard
/// ends empty.
#[test]
fn register_and_cancel_race_fire() {
    model(BOUND, || {
        let timers = Arc::new(Timers::new());
        let deadline = timers.now() + TICK;
        let t = timers.clone();
        let firer = thread::spawn(move || fire(&t));

        let (count, waker) = counter();
        let mut slot = Slot::new(deadline);
        let first = slot.poll(&waker);
        slot.cancel_and_poison();

        firer.join().unwrap();
        assert!(wakes(&count) <= 1, "woken twice");
        if first.is_ready() {
            assert_eq!(wakes(&count), 0, "a sleep that completed at its first poll keeps no waker");
        }
        slot.check_poison();
        assert!(timers.is_empty(), "a cancelled sleep stayed linked");
    });
}

/// (a') As (a) with three threads: the sleep is registered on one thread, handed over and dropped
/// on a second, while a third fires.
#[test]
fn register_on_one_thread_cancel_on_another_race_fire() {
    model(BOUND, || {
        let timers = Arc::new(Timers::new());
        let deadline = timers.now() + TICK;
        let t = timers.clone();
        let firer = thread::spawn(move || fire(&t));

        let (count, waker) = counter();
        let mut slot = Slot::new(deadline);
        let first = slot.poll(&waker);
        let canceller = thread::spawn(move || {
            slot.cancel_and_poison();
            slot
        });

        let slot = canceller.join().unwrap();
        firer.join().unwrap();
        assert!(wakes(&count) <= 1, "woken twice");
        if first.is_ready() {
            assert_eq!(wakes(&count), 0);
        }
        slot.check_poison();
        assert!(timers.is_empty());
    });
}

/// (a'') Registration races the fire and the sleep is kept: either the first poll saw the deadline
/// (no wake needed), or the waker is woken exactly once and the next poll is ready.
#[test]
fn register_races_fire_no_lost_wakeup() {
    model(BOUND, || {
        let timers = Arc::new(Timers::new());
        let deadline = timers.now() + TICK;
        let t = timers.clone();
        let firer = thread::spawn(move || fire(&t));

        let (count, waker) = counter();
        let mut slot = Slot::new(deadline);
        let first = slot.poll(&waker);

        firer.join().unwrap();
        if first.is_pending() {
            assert_eq!(wakes(&count), 1, "registered before the fire but never woken");
        } else {
            assert_eq!(wakes(&count), 0);
        }
        assert!(slot.poll(&waker).is_ready());
        drop(slot);
        assert!(timers.is_empty());
    });
}

/// (b) `update_waker` (a second poll with a new waker) races the fire: no wakeup is lost. If the
/// second poll returned `Pending`, the new waker is woken; the old one is woken only if the fire
/// came first, and then the second poll is ready.
#[test]
fn update_waker_races_fire() {
    model(BOUND, || {
        let timers = Arc::new(Timers::new());
        let deadline = timers.now() + TICK;
        let (count1, waker1) = counter();
        let (count2, waker2) = counter();
        let mut slot = Slot::new(deadline);
        assert!(slot.poll(&waker1).is_pending(), "registered before the clock moves");

        let t = timers.clone();
        let firer = thread::spawn(move || fire(&t));
        let second = slot.poll(&waker2);
        firer.join().unwrap();

        let (w1, w2) = (wakes(&count1), wakes(&count2));
        assert_eq!(w1 + w2, 1, "exactly one wake for one fire (old {w1}, new {w2})");
        if second.is_pending() {
            assert_eq!(w2, 1, "lost wakeup: the new waker was not woken");
        }
        assert!(slot.poll(&waker2).is_ready());
        drop(slot);
        assert!(timers.is_empty());
    });
}

/// (c) Two sleeps on the same slot list (same deadline); one is cancelled on another thread while
/// the shard fires. The survivor fires exactly once, the cancelled one at most once and never
/// after its drop returned, and the list stays consistent (the shard ends empty). Run once
/// cancelling the list's head (the later registration) and once its tail.
#[test]
fn cancel_one_of_two_on_a_slot_while_the_other_fires() {
    for cancel_head in [true, false] {
        model(BOUND, move || {
            let timers = Arc::new(Timers::new());
            let deadline = timers.now() + TICK;
            let (count_tail, waker_tail) = counter();
            let (count_head, waker_head) = counter();
            let mut tail = Slot::new(deadline);
            let mut head = Slot::new(deadline);
            assert!(tail.poll(&waker_tail).is_pending());
            assert!(head.poll(&waker_head).is_pending());
            assert_eq!(timers.len(), 2);

            let ((mut doomed, doomed_count), (mut kept, kept_count, kept_waker)) = if cancel_head {
                ((head, count_head), (tail, count_tail, waker_tail))
            } else {
                ((tail, count_tail), (head, count_head, waker_head))
            };
            let canceller = thread::spawn(move || {
                doomed.cancel_and_poison();
                doomed
            });
            let t = timers.clone();
            let firer = thread::spawn(move || fire(&t));

            let doomed = canceller.join().unwrap();
            firer.join().unwrap();
            assert_eq!(wakes(&kept_count), 1, "the surviving sleep fired exactly once");
            assert!(wakes(&doomed_count) <= 1);
            doomed.check_poison();
            assert!(kept.poll(&kept_waker).is_ready());
            assert!(timers.is_empty());
            drop(kept);
            assert!(timers.is_empty());
        });
    }
}

/// (d) `Sleep::reset` (deregister, new deadline, re-register at the next poll) races the fire of
/// the old deadline: the old registration wakes at most once (a spurious wake is allowed), the
/// re-armed sleep is pending and linked under its new deadline, and the shard ends empty after
/// the drop.
#[test]
fn reset_races_fire() {
    model(BOUND, || {
        let timers = Arc::new(Timers::new());
        let deadline = timers.now() + TICK;
        let (count, waker) = counter();
        let mut slot = Slot::new(deadline);
        assert!(slot.poll(&waker).is_pending());

        let t = timers.clone();
        let firer = thread::spawn(move || fire(&t));
        // SAFETY: the sleep stays in the slot; `reset` only needs it pinned.
        let pinned = unsafe { Pin::new_unchecked(slot.mem.assume_init_mut()) };
        pinned.reset(deadline + 4 * TICK);
        assert!(slot.poll(&waker).is_pending(), "the new deadline is not due");
        firer.join().unwrap();

        assert!(wakes(&count) <= 1);
        assert!(!slot.sleep().is_elapsed());
        assert_eq!(timers.len(), 1, "the re-armed sleep is linked");
        drop(slot);
        assert!(timers.is_empty());
    });
}

/// A one-task runtime for the model below: a run queue and a registry holding the task.
#[derive(Clone)]
struct OneTask(Arc<OneTaskShared>);

struct OneTaskShared {
    queue: Mutex<VecDeque<Notified<OneTask>>>,
    registry: Mutex<Option<Task<OneTask>>>,
}

impl Schedule for OneTask {
    fn schedule(&self, task: Notified<Self>) {
        self.0.queue.lock().unwrap().push_back(task);
    }

    fn release(&self, _task: &Task<Self>) -> Option<Task<Self>> {
        self.0.registry.lock().unwrap().take()
    }
}

impl OneTask {
    fn spawn<F: Future + Send + 'static>(fut: F) -> (OneTask, JoinHandle<F::Output>)
    where
        F::Output: Send,
    {
        let rt = OneTask(Arc::new(OneTaskShared { queue: Mutex::new(VecDeque::new()), registry: Mutex::new(None) }));
        let (task, notified, join) = raw_task::new_task(fut, rt.clone(), TaskId::next(), TaskMeta::here());
        *rt.0.registry.lock().unwrap() = Some(task);
        rt.schedule(notified);
        (rt, join)
    }

    fn run_all(&self) {
        loop {
            // The guard is a temporary: the queue is unlocked while the task runs.
            let next = self.0.queue.lock().unwrap().pop_front();
            match next {
                Some(t) => t.run(),
                None => return,
            }
        }
    }
}

/// A sleep that records where it was polled (pinned) and whether it was dropped there.
struct PinChecked {
    sleep: Sleep,
    /// Address of `sleep` at its last poll (0: never polled).
    polled_at: usize,
    /// Set by the destructor: 1 dropped where polled (or never polled), 2 moved after pinning.
    verdict: Arc<AtomicUsize>,
}

impl Future for PinChecked {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: `sleep` is structurally pinned and never moved; `polled_at` is a plain field.
        let this = unsafe { self.get_unchecked_mut() };
        this.polled_at = &this.sleep as *const Sleep as usize;
        // SAFETY: as above.
        unsafe { Pin::new_unchecked(&mut this.sleep) }.poll(cx)
    }
}

impl Drop for PinChecked {
    fn drop(&mut self) {
        let here = &self.sleep as *const Sleep as usize;
        let in_place = self.polled_at == 0 || self.polled_at == here;
        self.verdict.store(if in_place { 1 } else { 2 }, SeqCst);
    }
}

/// (e) A task whose sleep is registered is aborted while another thread fires the shard: the
/// task cell drops the future on its cancellation path, racing the fire (which may also wake the
/// task, so it may complete instead). The sleep must be dropped where it was pinned, since its
/// entry unlinks itself by that address: a cell that moved the future out to drop it (as it once
/// did) had the sleep deregister a stack copy whose links the firer could have changed meanwhile,
/// while the wheel still pointed into the cell's memory, which the cell then overwrote. The task
/// ends cancelled or completed (never panicked) and the shard ends empty.
#[test]
fn abort_a_task_with_a_registered_sleep_while_the_shard_fires() {
    model(BOUND, || {
        let timers = Arc::new(Timers::new());
        let verdict = Arc::new(AtomicUsize::new(0));
        let fut = PinChecked { sleep: sleep_until(timers.now() + TICK), polled_at: 0, verdict: verdict.clone() };
        let (rt, mut join) = OneTask::spawn(fut);
        rt.run_all();
        assert_eq!(timers.len(), 1, "the first poll registered the sleep");

        let t = timers.clone();
        let firer = thread::spawn(move || fire(&t));
        join.abort();
        rt.run_all();
        firer.join().unwrap();
        rt.run_all();

        assert_eq!(verdict.load(SeqCst), 1, "the task cell moved the pinned future out to drop it");
        assert!(timers.is_empty(), "the dropped sleep stayed linked");
        let out = Pin::new(&mut join).poll(&mut Context::from_waker(Waker::noop()));
        match out {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => assert!(e.is_cancelled(), "the task failed: {e:?}"),
            Poll::Pending => panic!("the aborted task did not finish"),
        }
    });
}

/// (g) The owner wakes up and computes its next park timeout (`unparked`, then `prepare_park`)
/// while another thread registers a sleep: the owner never sleeps past the new deadline. Either
/// the timeout it computed covers the deadline (the registration came first, under the lock) or
/// the registration asked to unpark it (it came after, and saw the timeout). Run with no other
/// timer (the owner would sleep until unparked) and with a later one pending (it would sleep
/// until that one).
#[test]
fn a_registration_racing_the_owners_park_never_lets_it_sleep_past_the_deadline() {
    for later_timer in [false, true] {
        model(BOUND, move || {
            let timers = Arc::new(Timers::new());
            let (_count, waker) = counter();
            let mut later = Slot::new(timers.now() + 10 * TICK);
            if later_timer {
                assert!(later.poll(&waker).is_pending());
            }
            let before = timers.unparks();
            let t = timers.clone();
            let owner = thread::spawn(move || {
                t.unparked();
                t.prepare_park()
            });

            let deadline = timers.now() + TICK;
            let mut slot = Slot::new(deadline);
            assert!(slot.poll(&waker).is_pending(), "the clock is paused before the deadline");

            let next = owner.join().unwrap();
            let covered = next.is_some_and(|n| n <= timers.deadline_tick(deadline));
            assert!(
                covered || timers.unparks() > before,
                "the owner parks until {next:?}, past the new deadline, and nobody unparks it"
            );
            drop(slot);
            drop(later);
            assert!(timers.is_empty());
        });
    }
}
