//! The scheduling workloads, each written once, generic over [`Rt`].
//!
//! Every workload returns a checksum that the harness compares with [`Spec::expect`], so a runtime that
//! drops, duplicates or never runs tasks fails loudly instead of reporting a fast time. Where a channel is
//! not what is measured, every runtime uses the same one (`futures::channel::{oneshot, mpsc}`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::channel::{mpsc, oneshot};
use futures::StreamExt;

use crate::rt::Rt;

/// What a workload does, with its sizes.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// Spawn `n` tasks from inside the runtime, then await every handle.
    SpawnLocal { n: usize },
    /// Spawn `n` tasks from a std thread outside the runtime through the handle; a task joins them.
    SpawnRemote { n: usize },
    /// `tasks` tasks, each yielding `yields` times.
    YieldMany { tasks: usize, yields: usize },
    /// `pairs` pinger tasks, each spawning a ponger and exchanging a ping and a pong over oneshots.
    PingPong { pairs: usize },
    /// Each task spawns the next, `depth` deep; the last signals a oneshot.
    ChainedSpawn { depth: usize },
    /// One client sends `n` requests over an mpsc to a server task, awaiting each oneshot reply.
    RequestReply { n: usize },
    /// A std thread wakes a task `n` times through oneshots.
    WakeFromOutside { n: usize },
    /// `tasks` tasks, each doing `batches` batches of `per_batch` `spawn_blocking` calls, joined per batch.
    SpawnBlocking { tasks: usize, batches: usize, per_batch: usize },
    /// A sync-primitive row: its entrants are primitives on one executor (`sync_rows.rs`).
    Sync(crate::sync_rows::SyncKind, crate::sync_rows::Exec),
    /// A structured-concurrency row: its entrants are implementations (`struct_rows.rs`).
    Struct(crate::struct_rows::StructKind),
    /// A timer row: its entrants are runtimes with their own timers (`timer_rows.rs`).
    Timer(crate::timer_rows::TimerKind),
    /// A TCP row: its entrants are runtimes with their own sockets, and a raw io_uring loop (`io_rows.rs`).
    Io(crate::io_rows::IoKind),
}

/// A workload row.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Row name, as in PERF.md (`--only` matches it).
    pub name: &'static str,
    /// What one op is.
    pub op: &'static str,
    /// Ops per run (the divisor for ns/op).
    pub ops: u64,
    /// PERF.md target: spindle's ns/op at most this times the best peer's.
    pub target: Option<f64>,
    /// What the checksum is.
    pub check: &'static str,
    /// The checksum every runtime must produce.
    pub expect: u64,
    /// The workload and its sizes.
    pub kind: Kind,
}

/// 0 + 1 + ... + (n - 1): the expected sum of `n` task indices.
pub(crate) fn tri(n: usize) -> u64 {
    let n = n as u64;
    n * n.saturating_sub(1) / 2
}

/// The rows, full or `--quick` sizes.
pub fn specs(quick: bool) -> Vec<Spec> {
    let q = |full: usize, small: usize| if quick { small } else { full };
    let mut v = Vec::new();
    for (name, n) in [("spawn_local_10k", q(10_000, 2_000)), ("spawn_local_100k", q(100_000, 10_000))] {
        v.push(Spec {
            name,
            op: "spawn + join of one task, from inside the runtime (N spawned, then N awaited)",
            ops: n as u64,
            target: Some(0.6),
            check: "sum of task outputs 0..N",
            expect: tri(n),
            kind: Kind::SpawnLocal { n },
        });
    }
    let n = q(100_000, 10_000);
    v.push(Spec {
        name: "spawn_remote",
        op: "spawn of one task from a std thread through the handle + its join (by a runtime task)",
        ops: n as u64,
        target: Some(0.6),
        check: "sum of task outputs 0..N",
        expect: tri(n),
        kind: Kind::SpawnRemote { n },
    });
    let (tasks, yields) = (200, q(1000, 100));
    v.push(Spec {
        name: "yield_many",
        op: "one yield_now (200 tasks in flight)",
        ops: (tasks * yields) as u64,
        target: Some(0.75),
        check: "total yields completed",
        expect: (tasks * yields) as u64,
        kind: Kind::YieldMany { tasks, yields },
    });
    let pairs = q(10_000, 1_000);
    v.push(Spec {
        name: "ping_pong",
        op: "one pair: pinger spawn + ponger spawn + 2 oneshot wakes (all pairs in flight)",
        ops: pairs as u64,
        target: Some(0.75),
        check: "sum of pongs (i+1)",
        expect: tri(pairs + 1),
        kind: Kind::PingPong { pairs },
    });
    let depth = q(10_000, 1_000);
    v.push(Spec {
        name: "chained_spawn",
        op: "one spawn in a chain where each task spawns the next",
        ops: depth as u64,
        target: Some(0.6),
        check: "chain length",
        expect: depth as u64,
        kind: Kind::ChainedSpawn { depth },
    });
    let n = q(20_000, 2_000);
    v.push(Spec {
        name: "request_reply",
        op: "one request (mpsc) + reply (oneshot) round trip, client task <-> server task",
        ops: n as u64,
        target: Some(0.75),
        check: "sum of replies (2i+1) = N^2, server count",
        expect: (n as u64) * (n as u64),
        kind: Kind::RequestReply { n },
    });
    let n = q(10_000, 1_000);
    v.push(Spec {
        name: "wake_from_outside",
        op: "one wake of a task by a std thread (oneshot send; task hands the next sender back over a std channel)",
        ops: n as u64,
        target: None,
        check: "sum of values 0..N",
        expect: tri(n),
        kind: Kind::WakeFromOutside { n },
    });
    let (tasks, batches, per_batch) = (2, q(100, 10), 16);
    v.push(Spec {
        name: "spawn_blocking",
        op: "one spawn_blocking call + join (2 tasks x batches of 16 joined per batch)",
        ops: (tasks * batches * per_batch) as u64,
        target: None,
        check: "sum of closure outputs",
        expect: (tasks * batches) as u64 * tri(per_batch),
        kind: Kind::SpawnBlocking { tasks, batches, per_batch },
    });
    v
}

/// Runs one workload once on `rt`; returns its checksum.
pub fn run<R: Rt>(rt: &R, kind: Kind) -> u64 {
    match kind {
        Kind::SpawnLocal { n } => rt.run(spawn_local::<R>(n)),
        Kind::SpawnRemote { n } => spawn_remote(rt, n),
        Kind::YieldMany { tasks, yields } => rt.run(yield_many::<R>(tasks, yields)),
        Kind::PingPong { pairs } => rt.run(ping_pong::<R>(pairs)),
        Kind::ChainedSpawn { depth } => rt.run(chained_spawn::<R>(depth)),
        Kind::RequestReply { n } => rt.run(request_reply::<R>(n)),
        Kind::WakeFromOutside { n } => wake_from_outside(rt, n),
        Kind::SpawnBlocking { tasks, batches, per_batch } => rt.run(spawn_blocking::<R>(tasks, batches, per_batch)),
        Kind::Sync(..) => unreachable!("sync rows run on their primitive entrants (sync_rows.rs)"),
        Kind::Struct(..) => unreachable!("structured rows run on their entrants (struct_rows.rs)"),
        Kind::Timer(..) => unreachable!("timer rows run on their entrants (timer_rows.rs)"),
        Kind::Io(..) => unreachable!("I/O rows run on their entrants (io_rows.rs)"),
    }
}

async fn spawn_local<R: Rt>(n: usize) -> u64 {
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        handles.push(R::spawn(async move { i as u64 }));
    }
    let mut sum = 0;
    for h in handles {
        sum += h.await;
    }
    sum
}

fn spawn_remote<R: Rt>(rt: &R, n: usize) -> u64 {
    std::thread::scope(|s| {
        let (tx, rx) = oneshot::channel::<Vec<R::Join<u64>>>();
        s.spawn(move || {
            let handles: Vec<_> = (0..n).map(|i| rt.spawn_remote(async move { i as u64 })).collect();
            let _ = tx.send(handles);
        });
        rt.run(async move {
            let handles = rx.await.expect("spawner thread died");
            let mut sum = 0;
            for h in handles {
                sum += h.await;
            }
            sum
        })
    })
}

async fn yield_many<R: Rt>(tasks: usize, yields: usize) -> u64 {
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            R::spawn(async move {
                let mut done = 0u64;
                for _ in 0..yields {
                    R::yield_now().await;
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut sum = 0;
    for h in handles {
        sum += h.await;
    }
    sum
}

async fn ping_pong<R: Rt>(pairs: usize) -> u64 {
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let done_tx = Arc::new(Mutex::new(Some(done_tx)));
    let remaining = Arc::new(AtomicUsize::new(pairs));
    let pongs = Arc::new(AtomicU64::new(0));
    for i in 0..pairs as u64 {
        let (done_tx, remaining, pongs) = (done_tx.clone(), remaining.clone(), pongs.clone());
        R::spawn_detached(async move {
            let (ping_tx, ping_rx) = oneshot::channel::<u64>();
            let (pong_tx, pong_rx) = oneshot::channel::<u64>();
            R::spawn_detached(async move {
                let v = ping_rx.await.expect("ping lost");
                pong_tx.send(v + 1).expect("pinger gone");
            });
            ping_tx.send(i).expect("ponger gone");
            let v = pong_rx.await.expect("pong lost");
            pongs.fetch_add(v, Ordering::Relaxed);
            if remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                let tx = done_tx.lock().unwrap().take().expect("done twice");
                let _ = tx.send(());
            }
        });
    }
    done_rx.await.expect("ping_pong never finished");
    pongs.load(Ordering::Acquire)
}

fn chain<R: Rt>(left: usize, count: u64, done: oneshot::Sender<u64>) {
    if left == 0 {
        let _ = done.send(count);
    } else {
        R::spawn_detached(async move { chain::<R>(left - 1, count + 1, done) });
    }
}

async fn chained_spawn<R: Rt>(depth: usize) -> u64 {
    let (tx, rx) = oneshot::channel();
    chain::<R>(depth, 0, tx);
    rx.await.expect("chain broken")
}

async fn request_reply<R: Rt>(n: usize) -> u64 {
    let (req_tx, mut req_rx) = mpsc::unbounded::<(u64, oneshot::Sender<u64>)>();
    let server = R::spawn(async move {
        let mut served = 0u64;
        while let Some((x, reply)) = req_rx.next().await {
            let _ = reply.send(2 * x + 1);
            served += 1;
        }
        served
    });
    let mut sum = 0;
    for i in 0..n as u64 {
        let (tx, rx) = oneshot::channel();
        req_tx.unbounded_send((i, tx)).expect("server gone");
        sum += rx.await.expect("no reply");
    }
    drop(req_tx);
    let served = server.await;
    if served != n as u64 {
        return u64::MAX; // fails the check
    }
    sum
}

fn wake_from_outside<R: Rt>(rt: &R, n: usize) -> u64 {
    std::thread::scope(|s| {
        let (sync_tx, sync_rx) = std::sync::mpsc::channel::<oneshot::Sender<u64>>();
        s.spawn(move || {
            let mut i = 0u64;
            while let Ok(tx) = sync_rx.recv() {
                let _ = tx.send(i);
                i += 1;
            }
        });
        rt.run(async move {
            let mut sum = 0;
            for _ in 0..n {
                let (tx, rx) = oneshot::channel();
                sync_tx.send(tx).expect("waker thread gone");
                sum += rx.await.expect("waker dropped the sender");
            }
            sum
        })
    })
}

async fn blocking_batches<R: Rt>(batches: usize, per_batch: usize) -> u64 {
    let mut sum = 0;
    let mut handles = Vec::with_capacity(per_batch);
    for _ in 0..batches {
        handles.extend((0..per_batch as u64).map(|i| R::spawn_blocking(move || i)));
        for h in handles.drain(..) {
            sum += h.await;
        }
    }
    sum
}

async fn spawn_blocking<R: Rt>(tasks: usize, batches: usize, per_batch: usize) -> u64 {
    let handles: Vec<_> = (0..tasks).map(|_| R::spawn(blocking_batches::<R>(batches, per_batch))).collect();
    let mut sum = 0;
    for h in handles {
        sum += h.await;
    }
    sum
}
