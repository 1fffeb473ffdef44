//! Small loops of spindle-bench's scheduling and timer workloads, for instruction-count profiling
//! of one runtime's hot path:
//!
//! ```sh
//! cargo build --release --example prof
//! valgrind --tool=callgrind ./target/release/examples/prof ct 100000 spawn   # or: mt
//! callgrind_annotate callgrind.out.*
//! ```
//!
//! The third argument picks the loop (default `spawn`):
//! - `spawn`: N tasks spawned with `spindle::spawn` from a task, then N joined (the `spawn_local`
//!   row, named for spawning from inside the runtime);
//! - `rr`: a client task sends each request over spindle's unbounded mpsc and awaits a oneshot
//!   reply from a server task (the scheduler's wake and poll paths plus the channels);
//! - `yield`: 200 tasks, each yielding N / 200 times (yield_many);
//! - `sleep`: one task creates a 1 s sleep, polls it once and drops it, N times, yielding every
//!   100 (timer_churn_sleep).
//!
//! A fourth argument sets the number of rounds (default 3; more for `perf record`). `W=n` in the
//! environment sets the multi-thread runtime's workers (default 2; `W=1` shows its per-task costs
//! without stealing). Under valgrind, run `mt` with `SPINDLE_DRIVER=epoll`: valgrind 3.19
//! keeps its one-thread-at-a-time lock while a thread waits in `io_uring_enter`, so the worker
//! waiting in its ring stops the thread that would wake it (seen in `/proc/<pid>/task/*/wchan`:
//! `io_cqring_wait` beside a thread waiting for valgrind's lock).
//!
//! Prints ns per op for each round (wall time is noisy; use spindle-bench for comparisons and
//! callgrind for where the instructions go).

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use spindle::runtime::Builder;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or("ct".into());
    let n: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(100_000);
    let workload = std::env::args().nth(3).unwrap_or("spawn".into());
    let rounds: usize = std::env::args().nth(4).map(|s| s.parse().unwrap()).unwrap_or(3);
    let rt = if mode == "ct" {
        Builder::new_current_thread().build().unwrap()
    } else {
        Builder::new_multi_thread()
            .worker_threads(std::env::var("W").map(|s| s.parse().unwrap()).unwrap_or(2))
            .build()
            .unwrap()
    };
    for _ in 0..rounds {
        let t = std::time::Instant::now();
        let s = rt.block_on(async {
            let w = workload.clone();
            spindle::spawn(async move {
                match w.as_str() {
                    "spawn" => spawn_join(n).await,
                    "rr" => request_reply(n).await,
                    "yield" => yield_many(n).await,
                    "sleep" => sleep_churn(n).await,
                    other => panic!("unknown workload {other:?}: spawn, rr, yield or sleep"),
                }
            })
            .await
            .unwrap()
        });
        eprintln!("{mode} {workload}: {:.1} ns/op ({s})", t.elapsed().as_nanos() as f64 / n as f64);
    }
}

async fn spawn_join(n: usize) -> u64 {
    let mut hs = Vec::with_capacity(n);
    for i in 0..n {
        hs.push(spindle::spawn(async move { i as u64 }));
    }
    let mut s = 0;
    for h in hs {
        s += h.await.unwrap();
    }
    s
}

async fn request_reply(n: usize) -> u64 {
    let (tx, mut rx) = spindle::sync::mpsc::unbounded_channel::<(u64, spindle::sync::oneshot::Sender<u64>)>();
    let server = spindle::spawn(async move {
        while let Some((x, reply)) = rx.recv().await {
            let _ = reply.send(2 * x + 1);
        }
    });
    let mut sum = 0;
    for i in 0..n as u64 {
        let (otx, orx) = spindle::sync::oneshot::channel();
        tx.send((i, otx)).unwrap();
        sum += orx.await.unwrap();
    }
    drop(tx);
    server.await.unwrap();
    sum
}

async fn yield_many(n: usize) -> u64 {
    let per_task = n / 200;
    let hs: Vec<_> = (0..200)
        .map(|_| {
            spindle::spawn(async move {
                for _ in 0..per_task {
                    spindle::task::yield_now().await;
                }
                per_task as u64
            })
        })
        .collect();
    let mut s = 0;
    for h in hs {
        s += h.await.unwrap();
    }
    s
}

async fn sleep_churn(n: usize) -> u64 {
    let mut pending = 0;
    for i in 0..n {
        let mut sleep = pin!(spindle::time::sleep(Duration::from_secs(1)));
        let first = std::future::poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx))).await;
        if first.is_pending() {
            pending += 1;
        }
        if i % 100 == 99 {
            spindle::task::yield_now().await;
        }
    }
    pending
}
