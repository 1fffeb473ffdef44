//! Loom models of the readiness protocol both I/O backends share (`driver::registration`): a
//! reader polls for readiness (storing its waker), tries its syscall and, on `WouldBlock`, clears
//! the readiness it saw; the reactor records events (`set_ready`) and wakes the stored waker. The
//! claim under test: an event is never lost. A reader that ends `Pending` has its waker woken by
//! an event that came after its last look, and a clear never removes readiness that an event
//! recorded after the look it clears (the event tick), nor a hang-up.
//!
//! The models drive the real `ScheduledIo` (through `spindle::__loom_readiness`, built only with
//! `--cfg loom`), whose readiness word and waker-slot locks are loom atomics.
//!
//! Each model yields right after spawning the reactor thread. Without it, loom never ran the
//! event before the reader's first look in these models (checked by printing what the reader saw:
//! always the older event), so the orders where the reader sees the new event first went
//! untested. With it, both orders are explored; each model fails when the code it guards is
//! broken (the tick check in `clear_ready`, the second look after storing the waker, the mask
//! that keeps a hang-up).
//!
//! Run with:
//!   RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/work/target-loom \
//!     cargo test -p spindle --release --test loom_readiness
#![cfg(loom)]

use std::sync::Arc;
use std::task::{Poll, Wake, Waker};

use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;
use spindle::__loom_readiness::{Readiness, READABLE, READ_CLOSED};

/// Preemption bound. The models are small (two threads, a handful of atomic operations each);
/// a larger bound explores no more interleavings.
const BOUND: usize = 4;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(BOUND);
    }
    b.check(f);
}

/// A waker that counts its wakes (a loom atomic, so the count is ordered like a real wake).
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

/// A reader's first poll races the first event: it sees the event or is woken by it.
#[test]
fn a_poll_racing_an_event_sees_it_or_is_woken() {
    model(|| {
        let r = Readiness::new();
        let reactor = r.clone();
        let event = thread::spawn(move || reactor.set_ready(READABLE));
        thread::yield_now();
        let (count, waker) = counter();
        let polled = r.poll_read(&waker);
        event.join().unwrap();
        if polled.is_pending() {
            assert_eq!(count.0.load(SeqCst), 1, "pending, and the event woke nobody");
        }
    });
}

/// The reader saw readiness, its syscall said `WouldBlock`, and it clears what it saw and polls
/// again, while a new event arrives. If the look it cleared was of the old event, the new one is
/// not lost: the second poll sees it, or it finds the waker the second poll stored and wakes it.
/// (A clear that ignored the event tick would erase an event recorded between the look and the
/// clear: the second poll would then wait, and nothing would wake it.) If the look already saw the
/// new event, the reader's syscall is the one that found nothing, and waiting is right.
#[test]
fn a_clear_after_would_block_never_erases_a_newer_event() {
    model(|| {
        let r = Readiness::new();
        r.set_ready(READABLE); // data was there once
        let (count, waker) = counter();
        let Poll::Ready(old) = r.poll_read(&waker) else { panic!("readiness was set before the poll") };
        let reactor = r.clone();
        let event = thread::spawn(move || reactor.set_ready(READABLE));
        thread::yield_now();
        let Poll::Ready(seen) = r.poll_read(&waker) else { panic!("readiness is only cleared below") };
        r.clear_read(seen); // the syscall said WouldBlock
        let second = r.poll_read(&waker);
        event.join().unwrap();
        if second.is_pending() && seen.same_event_as(&old) {
            assert_eq!(count.0.load(SeqCst), 1, "the new event was lost: pending, and nobody woken");
        }
    });
}

/// A hang-up is not cleared by a reader's `WouldBlock` clear: once the peer closed, every later
/// poll is ready (reads then return end of stream).
#[test]
fn a_closed_state_survives_a_racing_clear() {
    model(|| {
        let r = Readiness::new();
        r.set_ready(READABLE);
        let reactor = r.clone();
        let event = thread::spawn(move || reactor.set_ready(READ_CLOSED));
        thread::yield_now();
        let (_count, waker) = counter();
        let Poll::Ready(seen) = r.poll_read(&waker) else { panic!("readiness was set before the poll") };
        r.clear_read(seen);
        event.join().unwrap();
        assert!(r.poll_read(&waker).is_ready(), "the hang-up was cleared");
    });
}
