//! Rows for structured concurrency (issue 6): spindle's `scope!`, `TaskGroup` and `join` against
//! tokio's `JoinSet`, futures' `FuturesUnordered` and futures-concurrency's `Join`.
//!
//! As in `sync_rows.rs`, the entrants are implementations, each on the executor it needs: the
//! runtime-neutral ones (spindle's scope and join, `FuturesUnordered`, futures-concurrency) on
//! spindle multi-thread (2 workers), `JoinSet` on tokio multi-thread (2 workers, where it must
//! run). Every workload returns a checksum.

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use futures::stream::{FuturesUnordered, StreamExt};

use crate::rt::{Rt, Tokio};
use crate::rt_spindle::Spindle;
use crate::workloads::{tri, Kind, Spec};

/// A structured-concurrency workload and its sizes.
#[derive(Clone, Copy, Debug)]
pub enum StructKind {
    /// One task holds `n` children that borrow a local counter (no `Arc`), each adding its index.
    ScopeMany { n: usize },
    /// `n` `'static` tasks in a group (each returns its index), joined one result at a time.
    TaskGroupMany { n: usize },
    /// `n` futures in one join; `rounds` rounds each wake 1% of them (a different 1%), each woken
    /// future counts the wake and waits again; then all are released.
    JoinManyWoken { n: usize, rounds: usize },
}

/// The structured rows (full or `--quick` sizes).
pub fn specs(quick: bool) -> Vec<Spec> {
    let q = |full: usize, small: usize| if quick { small } else { full };
    let mut v = Vec::new();
    let n = q(10_000, 2_000);
    v.push(Spec {
        name: "scope_many",
        op: "one borrowed child (spawn + poll + complete) in a scope / FuturesUnordered / join / JoinSet ('static)",
        ops: n as u64,
        target: Some(0.7),
        check: "sum of child indices 0..N",
        expect: tri(n),
        kind: Kind::Struct(StructKind::ScopeMany { n }),
    });
    let n = q(10_000, 2_000);
    v.push(Spec {
        name: "taskgroup_many",
        op: "one 'static task spawned in a group and joined (TaskGroup / JoinSet / FuturesUnordered of handles)",
        ops: n as u64,
        target: Some(0.7),
        check: "sum of task outputs 0..N",
        expect: tri(n),
        kind: Kind::Struct(StructKind::TaskGroupMany { n }),
    });
    let (n, rounds) = (q(100_000, 10_000), q(50, 10));
    let woken = (n / 100) * rounds;
    v.push(Spec {
        name: "join_many_woken",
        op: "one wake of one future among N held by one join (1% woken per round)",
        ops: woken as u64,
        target: Some(0.7),
        check: "wakes observed + N (each future's final release)",
        expect: (woken + n) as u64,
        kind: Kind::Struct(StructKind::JoinManyWoken { n, rounds }),
    });
    v
}

/// Every peer is held to the target (at most 0.7x), which is "0.7x the best peer".
pub fn peer_targets(kind: StructKind) -> &'static [(&'static str, f64)] {
    match kind {
        StructKind::ScopeMany { .. } | StructKind::JoinManyWoken { .. } => {
            &[("FuturesUnordered", 0.7), ("futures-concurrency", 0.7), ("tokio-JoinSet", 0.7)]
        }
        StructKind::TaskGroupMany { .. } => &[("tokio-JoinSet", 0.7), ("FuturesUnordered", 0.7)],
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Imp {
    Spindle,
    FuturesUnordered,
    FuturesConcurrency,
    JoinSet,
}

impl Imp {
    fn label(self) -> &'static str {
        match self {
            Imp::Spindle => "spindle",
            Imp::FuturesUnordered => "FuturesUnordered",
            Imp::FuturesConcurrency => "futures-concurrency",
            Imp::JoinSet => "tokio-JoinSet",
        }
    }
}

/// One entrant of a structured row.
pub struct Entrant {
    imp: Imp,
}

static SPINDLE_MT: OnceLock<Spindle> = OnceLock::new();
static TOKIO_MT: OnceLock<Tokio> = OnceLock::new();

/// The entrants of a row, spindle's first (flagged `true`).
pub fn entrants(kind: StructKind) -> Vec<(Box<dyn crate::Bench>, bool)> {
    let imps: &[Imp] = match kind {
        StructKind::ScopeMany { .. } | StructKind::JoinManyWoken { .. } => {
            &[Imp::Spindle, Imp::FuturesUnordered, Imp::FuturesConcurrency, Imp::JoinSet]
        }
        StructKind::TaskGroupMany { .. } => &[Imp::Spindle, Imp::JoinSet, Imp::FuturesUnordered],
    };
    imps.iter().map(|&imp| (Box::new(Entrant { imp }) as Box<dyn crate::Bench>, imp == Imp::Spindle)).collect()
}

impl crate::Bench for Entrant {
    fn label(&self) -> &'static str {
        self.imp.label()
    }

    fn once(&self, kind: Kind) -> u64 {
        let Kind::Struct(k) = kind else { unreachable!("structured entrants only run structured rows") };
        let sp = || SPINDLE_MT.get_or_init(|| Spindle::multi_thread(2));
        let tk = || TOKIO_MT.get_or_init(|| Tokio::multi_thread(2));
        match (k, self.imp) {
            (StructKind::ScopeMany { n }, Imp::Spindle) => sp().run(scope_many_spindle(n)),
            (StructKind::ScopeMany { n }, Imp::FuturesUnordered) => sp().run(scope_many_fu(n)),
            (StructKind::ScopeMany { n }, Imp::FuturesConcurrency) => sp().run(scope_many_fc(n)),
            (StructKind::ScopeMany { n }, Imp::JoinSet) => tk().run(scope_many_joinset(n)),
            (StructKind::TaskGroupMany { n }, Imp::Spindle) => sp().run(group_spindle(n)),
            (StructKind::TaskGroupMany { n }, Imp::JoinSet) => tk().run(group_joinset(n)),
            (StructKind::TaskGroupMany { n }, Imp::FuturesUnordered) => sp().run(group_fu(n)),
            (StructKind::JoinManyWoken { n, rounds }, imp) => {
                let run = |r: &dyn Fn(Arc<Board>) -> u64| r(Board::new(n, rounds));
                match imp {
                    Imp::Spindle => run(&|b| sp().run(woken_spindle(b))),
                    Imp::FuturesUnordered => run(&|b| sp().run(woken_fu(b))),
                    Imp::FuturesConcurrency => run(&|b| sp().run(woken_fc(b))),
                    Imp::JoinSet => run(&|b| tk().run(woken_joinset(b))),
                }
            }
            _ => unreachable!("no such entrant for this row"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// scope_many: children borrow a counter that lives in the parent task (the JoinSet entrant needs
// an `Arc`, since its tasks are 'static).

async fn scope_many_spindle(n: usize) -> u64 {
    let sum = AtomicU64::new(0);
    spindle::scope!(|s| async {
        for i in 0..n as u64 {
            let sum = &sum;
            s.spawn(async move {
                sum.fetch_add(i, Ordering::Relaxed);
            });
        }
    })
    .await;
    sum.into_inner()
}

async fn scope_many_fu(n: usize) -> u64 {
    let sum = AtomicU64::new(0);
    let mut set = FuturesUnordered::new();
    for i in 0..n as u64 {
        let sum = &sum;
        set.push(async move {
            sum.fetch_add(i, Ordering::Relaxed);
        });
    }
    while set.next().await.is_some() {}
    drop(set);
    sum.into_inner()
}

async fn scope_many_fc(n: usize) -> u64 {
    use futures_concurrency::future::Join;
    let sum = AtomicU64::new(0);
    let futs: Vec<_> = (0..n as u64)
        .map(|i| {
            let sum = &sum;
            async move {
                sum.fetch_add(i, Ordering::Relaxed);
            }
        })
        .collect();
    futs.join().await;
    sum.load(Ordering::Relaxed)
}

async fn scope_many_joinset(n: usize) -> u64 {
    let sum = Arc::new(AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n as u64 {
        let sum = sum.clone();
        set.spawn(async move {
            sum.fetch_add(i, Ordering::Relaxed);
        });
    }
    while set.join_next().await.is_some() {}
    sum.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// taskgroup_many

async fn group_spindle(n: usize) -> u64 {
    let mut g = spindle::TaskGroup::<u64, ()>::new();
    for i in 0..n as u64 {
        g.spawn(async move { Ok(i) });
    }
    let mut sum = 0;
    while let Some(r) = g.join_next().await {
        sum += r.expect("task failed");
    }
    sum
}

async fn group_joinset(n: usize) -> u64 {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n as u64 {
        set.spawn(async move { i });
    }
    let mut sum = 0;
    while let Some(r) = set.join_next().await {
        sum += r.expect("task failed");
    }
    sum
}

async fn group_fu(n: usize) -> u64 {
    let mut set: FuturesUnordered<_> = (0..n as u64).map(|i| spindle::spawn(async move { i })).collect();
    let mut sum = 0;
    while let Some(r) = set.next().await {
        sum += r.expect("task failed");
    }
    sum
}

// ---------------------------------------------------------------------------------------------
// join_many_woken: a board of `n` slots; the driver bumps a slot's round and wakes its future.

/// Shared state: per slot the round it was released for and the waker of the future waiting.
pub struct Board {
    rounds: usize,
    slots: Vec<Slot>,
    /// Wakes observed by the futures.
    seen: AtomicU64,
    /// Futures that have handled the current batch (the driver waits for the whole batch).
    handled: AtomicU64,
    driver: Mutex<Option<Waker>>,
}

struct Slot {
    round: AtomicU32,
    waker: Mutex<Option<Waker>>,
}

/// `u32::MAX` in a slot's round: the future is released for good.
const DONE: u32 = u32::MAX;

impl Board {
    fn new(n: usize, rounds: usize) -> Arc<Board> {
        Arc::new(Board {
            rounds,
            slots: (0..n).map(|_| Slot { round: AtomicU32::new(0), waker: Mutex::new(None) }).collect(),
            seen: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            driver: Mutex::new(None),
        })
    }

    fn release(&self, i: usize, round: u32) {
        let s = &self.slots[i];
        s.round.store(round, Ordering::Release);
        if let Some(w) = s.waker.lock().unwrap().take() {
            w.wake();
        }
    }

    fn handled_one(&self) {
        self.handled.fetch_add(1, Ordering::AcqRel);
        if let Some(w) = self.driver.lock().unwrap().take() {
            w.wake();
        }
    }
}

/// Future `i`: waits for each release of its slot, counts it, until released for good.
fn waiter(board: Arc<Board>, i: usize) -> impl Future<Output = ()> + Send {
    let mut last = 0u32;
    std::future::poll_fn(move |cx: &mut Context<'_>| loop {
        let s = &board.slots[i];
        let r = s.round.load(Ordering::Acquire);
        if r != last {
            last = r;
            board.seen.fetch_add(1, Ordering::Relaxed);
            board.handled_one();
            if r == DONE {
                return Poll::Ready(());
            }
            continue;
        }
        *s.waker.lock().unwrap() = Some(cx.waker().clone());
        if s.round.load(Ordering::Acquire) == last {
            return Poll::Pending;
        }
    })
}

/// Waits until `target` futures have handled their release.
fn handled_at_least(board: &Board, target: u64) -> impl Future<Output = ()> + Send + '_ {
    std::future::poll_fn(move |cx| {
        if board.handled.load(Ordering::Acquire) >= target {
            return Poll::Ready(());
        }
        *board.driver.lock().unwrap() = Some(cx.waker().clone());
        if board.handled.load(Ordering::Acquire) >= target {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

/// Releases 1% of the slots per round (a different 1% each round), waiting for each batch, then
/// releases everything for good.
async fn drive(board: Arc<Board>) {
    let n = board.slots.len();
    let per = (n / 100).max(1);
    let mut target = 0u64;
    for round in 0..board.rounds {
        for k in 0..per {
            // Spread the batch over the whole set, shifting each round.
            let i = (k * 100 + round * 7) % n;
            board.release(i, round as u32 + 1);
        }
        target += per as u64;
        handled_at_least(&board, target).await;
    }
    for i in 0..n {
        board.release(i, DONE);
    }
}

async fn woken_spindle(board: Arc<Board>) -> u64 {
    let futs: Vec<_> = (0..board.slots.len()).map(|i| waiter(board.clone(), i)).collect();
    spindle::future::join((spindle::future::join(futs), drive(board.clone()))).await;
    board.seen.load(Ordering::Relaxed)
}

async fn woken_fu(board: Arc<Board>) -> u64 {
    let mut set: FuturesUnordered<_> = (0..board.slots.len()).map(|i| waiter(board.clone(), i)).collect();
    let all = async move { while set.next().await.is_some() {} };
    futures::future::join(all, drive(board.clone())).await;
    board.seen.load(Ordering::Relaxed)
}

async fn woken_fc(board: Arc<Board>) -> u64 {
    use futures_concurrency::future::Join;
    let futs: Vec<_> = (0..board.slots.len()).map(|i| waiter(board.clone(), i)).collect();
    (futs.join(), drive(board.clone())).join().await;
    board.seen.load(Ordering::Relaxed)
}

async fn woken_joinset(board: Arc<Board>) -> u64 {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..board.slots.len() {
        set.spawn(waiter(board.clone(), i));
    }
    let all = async move { while set.join_next().await.is_some() {} };
    futures::future::join(all, drive(board.clone())).await;
    board.seen.load(Ordering::Relaxed)
}
