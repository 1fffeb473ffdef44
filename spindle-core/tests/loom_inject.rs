//! Loom models of the intrusive multi-producer inject queue.
//!
//! Run with:
//!   cd /work/main && RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/work/target-loom \
//!     cargo test -p spindle-core --release --test loom_inject
//! (`LOOM_MAX_PREEMPTIONS=N` overrides the preemption bound of 3 used here.)
#![cfg(loom)]

mod support;

use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;
use spindle_core::queue::inject::Inject;
use spindle_core::task::{self, Notified, Schedule, Task, TaskId, TaskMeta};
use support::{model, poll_join, Counters, Forever, Signal, Tracked, WaitSignal, YieldOnce};

/// A scheduler for tasks that only travel through the queue and are never run.
struct NoSched;

impl Schedule for NoSched {
    fn schedule(&self, _: Notified<Self>) {
        unreachable!("queued test tasks are never woken");
    }
    fn release(&self, _: &Task<Self>) -> Option<Task<Self>> {
        None
    }
}

/// Makes a task and keeps only its queue entry (registry reference and join handle dropped), so
/// dropping the entry frees the cell and drops its (never polled) future.
fn entry(counters: &Arc<Counters>) -> Notified<NoSched> {
    let (task, notified, join) =
        task::new_task(Tracked::new(Forever, counters), NoSched, TaskId::next(), TaskMeta::here());
    drop(join);
    drop(task);
    notified
}

/// A popped entry's task id and its place in the global pop order.
type Popped = (u64, usize);

fn consume(q: &Inject<NoSched>, order: &AtomicUsize, n: usize, out: &mut Vec<(Popped, Notified<NoSched>)>) {
    q.pop_n(n, |t| {
        // `pop_n` calls us under its consumer lock, so this numbering is the queue's pop order.
        let seq = order.fetch_add(1, SeqCst);
        out.push(((t.header().id().as_u64(), seq), t));
    });
}

/// Two producers (one pushing a single task, one a batch of two) race two consumers calling
/// `pop_n`. Every task is popped exactly once, each producer's tasks come out in push order,
/// `len()` never loses a task and returns to 0, and every cell is freed once.
#[test]
fn two_producers_two_consumers() {
    model(|| {
        let q = Arc::new(Inject::<NoSched>::new());
        let order = Arc::new(AtomicUsize::new(0));
        let counters = Counters::new();
        // Producer tasks, made before the threads start so ids are known: p1 = [a], p2 = [b, c].
        let a = entry(&counters);
        let b = entry(&counters);
        let c = entry(&counters);
        let (ida, idb, idc) = (a.header().id().as_u64(), b.header().id().as_u64(), c.header().id().as_u64());

        let p1 = {
            let q = q.clone();
            thread::spawn(move || q.push(a))
        };
        let p2 = {
            let q = q.clone();
            thread::spawn(move || q.push_batch([b, c].into_iter()))
        };
        let c1 = {
            let (q, order) = (q.clone(), order.clone());
            thread::spawn(move || {
                let mut got = Vec::new();
                consume(&q, &order, 2, &mut got);
                got
            })
        };
        let mut got = Vec::new();
        consume(&q, &order, 1, &mut got);
        consume(&q, &order, 2, &mut got);

        p1.join().unwrap();
        p2.join().unwrap();
        got.extend(c1.join().unwrap());
        // Producers are done: whatever is left is there for the taking.
        assert!(q.len() <= 3);
        consume(&q, &order, 3, &mut got);
        assert_eq!(q.len(), 0, "len must return to 0");
        assert!(q.is_empty());
        assert!(q.pop().is_none());

        let mut ids: Vec<u64> = got.iter().map(|((id, _), _)| *id).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![ida, idb, idc], "each task popped exactly once");
        let seq_of = |id: u64| got.iter().find(|((i, _), _)| *i == id).unwrap().0 .1;
        assert!(seq_of(idb) < seq_of(idc), "a batch must come out in the order it was given");

        assert_eq!(counters.fut_drops(), 0);
        drop(got);
        assert_eq!(counters.fut_drops(), 3, "every cell freed exactly once");
    });
}

/// A consumer drains while a producer pushes, and `len()` is never below the number of tasks a
/// consumer could still find: after the producer is done and a consumer saw `len() == 0`, there
/// is nothing left to pop.
#[test]
fn len_never_underreports() {
    model(|| {
        let q = Arc::new(Inject::<NoSched>::new());
        let counters = Counters::new();
        let a = entry(&counters);
        let b = entry(&counters);
        let p = {
            let q = q.clone();
            thread::spawn(move || {
                q.push(a);
                q.push(b);
            })
        };
        let mut got = Vec::new();
        for _ in 0..2 {
            if let Some(t) = q.pop() {
                got.push(t);
            }
        }
        p.join().unwrap();
        assert_eq!(q.len(), 2 - got.len());
        while let Some(t) = q.pop() {
            got.push(t);
        }
        assert_eq!(got.len(), 2);
        assert_eq!(q.len(), 0);
        // Single producer: FIFO.
        assert!(got[0].header().id() < got[1].header().id());
        drop(got);
        assert_eq!(counters.fut_drops(), 2);
    });
}

/// Dropping the queue releases the entries still in it (both in the consumer's private list and
/// in the producers' stack).
#[test]
fn drop_releases_queued_tasks() {
    model(|| {
        let q = Arc::new(Inject::<NoSched>::new());
        let counters = Counters::new();
        q.push_batch([entry(&counters), entry(&counters)].into_iter());
        let p = {
            let (q, e) = (q.clone(), entry(&counters));
            thread::spawn(move || q.push(e))
        };
        let first = q.pop().expect("the batch was pushed before");
        p.join().unwrap();
        assert_eq!(q.len(), 2);
        drop(first);
        drop(q);
        assert_eq!(counters.fut_drops(), 3);
    });
}

/// A scheduler whose run queue is an inject queue (as a multi-thread runtime's global queue is).
/// It keeps no registry: the test holds the registry references itself.
struct InjectSched {
    queue: Arc<Inject<InjectSched>>,
}

impl Schedule for InjectSched {
    fn schedule(&self, task: Notified<Self>) {
        self.queue.push(task);
    }
    fn release(&self, _: &Task<Self>) -> Option<Task<Self>> {
        None
    }
}

/// Pops and runs up to `n` tasks, running each outside the consumer lock.
fn work(q: &Inject<InjectSched>, n: usize) {
    for _ in 0..n {
        let mut batch = Vec::new();
        q.pop_n(1, |t| batch.push(t));
        for t in batch {
            t.run();
        }
    }
}

/// Tasks travel through the inject queue repeatedly: one yields (re-pushing itself from inside
/// its poll), one is woken from a third thread, and two workers pop and run them. A task's
/// `queue_next` link is reused on every trip, so a consumer must be done with it before the task
/// can be pushed again. Both tasks complete exactly once and the queue ends empty.
#[test]
fn inject_as_run_queue() {
    model(|| {
        let q = Arc::new(Inject::<InjectSched>::new());
        let ca = Counters::new();
        let cb = Counters::new();
        let signal = Signal::new();
        let sched = || InjectSched { queue: q.clone() };
        let (ta, na, mut ja) =
            task::new_task(Tracked::new(YieldOnce::new(1), &ca), sched(), TaskId::next(), TaskMeta::here());
        let (tb, nb, mut jb) =
            task::new_task(Tracked::new(WaitSignal::new(&signal, 2), &cb), sched(), TaskId::next(), TaskMeta::here());
        q.push_batch([na, nb].into_iter());

        let fire = {
            let signal = signal.clone();
            thread::spawn(move || signal.fire(false))
        };
        let worker = {
            let q = q.clone();
            thread::spawn(move || work(&q, 2))
        };
        work(&q, 2);
        fire.join().unwrap();
        worker.join().unwrap();
        // Finish whatever is left (no other thread runs now).
        while let Some(t) = q.pop() {
            t.run();
        }
        assert_eq!(q.len(), 0);

        assert_eq!(ca.polls(), 2);
        assert_eq!(cb.polls(), 2);
        let w = std::task::Waker::noop();
        match (poll_join(&mut ja, w), poll_join(&mut jb, w)) {
            (std::task::Poll::Ready(Ok(a)), std::task::Poll::Ready(Ok(b))) => {
                assert_eq!((a.value, b.value), (1, 2));
            }
            _ => panic!("both tasks must have completed"),
        }
        assert_eq!(ca.out_drops() + cb.out_drops(), 2);
        drop((ja, jb, ta, tb));
        assert_eq!(ca.fut_drops() + cb.fut_drops(), 2);
        assert!(q.is_empty());
    });
}
