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
//! The models yield right after spawning the reactor thread. Without the yield, loom never ran
//! the event before the reader's next look in two of them (checked by printing what the reader
//! saw): the hang-up model then passed with a clear that removes the hang-up, and the clear model
//! never tested its new-event-first branch. After the yield loom still explores the main-first
//! orders (the reactor's first step is a load; it can be preempted before its compare-and-swap),
//! and every model fails when the code it guards is broken: the second look after storing the
//! waker, the tick check in `clear_ready`, the direction mask of a clear, the `will_wake` reuse of
//! a stored waker, and the waking of both directions by one event.
//!
//! Run with:
//!   RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/work/target-loom \
//!     cargo test -p spindle --release --test loom_readiness
#![cfg(loom)]

use std::sync::Arc;
use std::task::{Poll, Wake, Waker};

use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;
use spindle::__loom_readiness::{Readiness, READABLE, READ_CLOSED, WRITABLE};

/// Runs `f` under loom with no preemption bound (unless `LOOM_MAX_PREEMPTIONS` sets one): the
/// models are small enough to explore exhaustively (the whole file takes well under a second).
fn model(f: impl Fn() + Sync + Send + 'static) {
    loom::model::Builder::new().check(f);
}

/// A waker that counts its wakes (a loom atomic, so the count is ordered like a real wake).
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// A fresh counting waker and its counter.
fn counter() -> (Arc<Counter>, Waker) {
    let c = Arc::new(Counter(AtomicUsize::new(0)));
    (c.clone(), Waker::from(c))
}

/// A reader's poll races the first event: it sees the event or its waker is woken. Run twice: a
/// first poll, and the poll of a task that moved (to another worker, say) and polls again with a
/// new waker, which must replace the stored one (keeping a stored waker that would not wake the
/// new one would leave the task asleep).
#[test]
fn a_poll_racing_an_event_sees_it_or_is_woken() {
    for moved in [false, true] {
        model(move || {
            let r = Readiness::new();
            let (_old_count, old_waker) = counter();
            if moved {
                assert!(r.poll_read(&old_waker).is_pending());
            }
            let reactor = r.clone();
            let event = thread::spawn(move || reactor.set_ready(READABLE));
            thread::yield_now();
            let (count, waker) = counter();
            let polled = r.poll_read(&waker);
            event.join().unwrap();
            if polled.is_pending() {
                assert_eq!(count.0.load(SeqCst), 1, "pending, and the event did not wake this poll's waker");
            }
        });
    }
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

/// A reader and a writer wait while one event makes the socket readable and writable, and the
/// reader clears an older read readiness. Each side that ends `Pending` is woken by its own
/// waker, and the read clear never removes write readiness.
#[test]
fn one_event_wakes_both_directions_and_a_read_clear_keeps_writable() {
    model(|| {
        let r = Readiness::new();
        r.set_ready(READABLE);
        let (read_count, read_waker) = counter();
        let Poll::Ready(old) = r.poll_read(&read_waker) else { panic!("readable before the race") };
        let (write_count, write_waker) = counter();
        let writer_polled = r.poll_write(&write_waker);
        assert!(writer_polled.is_pending(), "not writable before the event");
        let reactor = r.clone();
        let event = thread::spawn(move || reactor.set_ready(READABLE | WRITABLE));
        thread::yield_now();
        r.clear_read(old);
        let reader = r.poll_read(&read_waker);
        event.join().unwrap();
        if reader.is_pending() {
            assert_eq!(read_count.0.load(SeqCst), 1, "the reader waits and the event did not wake it");
        }
        assert_eq!(write_count.0.load(SeqCst), 1, "the writer waited and the event did not wake it");
        let Poll::Ready(w) = r.poll_write(&write_waker) else { panic!("a read clear removed write readiness") };
        r.clear_write(w);
        assert!(r.poll_read(&read_waker).is_ready(), "a write clear removed read readiness");
    });
}
