//! A spawn+join loop for instruction-count profiling of the scheduler hot path:
//!
//! ```sh
//! cargo build --release --example prof
//! valgrind --tool=callgrind ./target/release/examples/prof ct 100000   # or: mt
//! callgrind_annotate callgrind.out.*
//! ```
//!
//! With a third argument `rr` (`prof ct 100000 rr`) it runs a request/reply loop instead: a client
//! task sends each request over spindle's unbounded mpsc and awaits a oneshot reply from a server
//! task (the scheduler's wake and poll paths plus the channels).
//!
//! Prints ns per spawn+join (or per round trip) for three rounds (wall time is noisy; use spindle-bench for
//! comparisons and callgrind for where the instructions go).

use spindle::runtime::Builder;
fn main() {
    let mode = std::env::args().nth(1).unwrap_or("ct".into());
    let n: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(100_000);
    let rt = if mode == "ct" {
        Builder::new_current_thread().build().unwrap()
    } else {
        Builder::new_multi_thread().worker_threads(2).build().unwrap()
    };
    if std::env::args().nth(3).as_deref() == Some("rr") {
        // request_reply: a client task and a server task, one mpsc request + oneshot reply each.
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let s = rt.block_on(async move {
                spindle::spawn(async move {
                    let (tx, mut rx) =
                        spindle::sync::mpsc::unbounded_channel::<(u64, spindle::sync::oneshot::Sender<u64>)>();
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
                })
                .await
                .unwrap()
            });
            eprintln!("{mode} rr: {:.1} ns/op ({s})", t.elapsed().as_nanos() as f64 / n as f64);
        }
        return;
    }
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let s = rt.block_on(async move {
            spindle::spawn(async move {
                let mut hs = Vec::with_capacity(n);
                for i in 0..n {
                    hs.push(spindle::spawn(async move { i as u64 }));
                }
                let mut s = 0;
                for h in hs {
                    s += h.await.unwrap();
                }
                s
            })
            .await
            .unwrap()
        });
        eprintln!("{mode}: {:.1} ns/op ({s})", t.elapsed().as_nanos() as f64 / n as f64);
    }
}
