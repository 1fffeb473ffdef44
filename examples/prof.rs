//! A spawn+join loop for instruction-count profiling of the scheduler hot path:
//!
//! ```sh
//! cargo build --release --example prof
//! valgrind --tool=callgrind ./target/release/examples/prof ct 100000   # or: mt
//! callgrind_annotate callgrind.out.*
//! ```
//!
//! Prints ns per spawn+join for three rounds (wall time is noisy; use spindle-bench for
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
