//! A tour of spindle's runtime: spawning, joining, aborting, panics, blocking work, local tasks.
//!
//! Run with `cargo run --release --example tour`.

use std::rc::Rc;
use std::time::Instant;

use spindle::runtime::Builder;
use spindle::task;

fn fib(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

#[spindle::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // 1. Spawn many tasks and join them.
    let start = Instant::now();
    let handles: Vec<_> = (0..100_000u64).map(|i| spindle::spawn(async move { i % 7 })).collect();
    let mut sum = 0;
    for h in handles {
        sum += h.await.expect("task failed");
    }
    println!("100k tasks spawned and joined in {:?} (sum {sum})", start.elapsed());

    // 2. Named tasks remember who spawned them, and where.
    let h = task::Builder::new().name("greeter").spawn(async { "hello from a named task" }).unwrap();
    let meta = h.header_ref().meta().clone();
    let id = h.id();
    println!(
        "{} (task {id} '{}', spawned at {})",
        h.await.unwrap(),
        meta.name.as_deref().unwrap_or("?"),
        meta.location
    );

    // 3. A panicking task becomes an error; the runtime keeps serving.
    let err = spindle::spawn(async { panic!("something went wrong") }).await.unwrap_err();
    println!("caught: {err}");

    // 4. Abort a task that would never finish.
    let forever = spindle::spawn(std::future::pending::<()>());
    forever.abort();
    println!("aborted task cancelled: {}", forever.await.unwrap_err().is_cancelled());

    // 5. CPU-heavy or blocking work goes to the blocking pool.
    let f = spindle::spawn_blocking(|| fib(30)).await.unwrap();
    println!("fib(30) = {f}, computed on the blocking pool");

    // 6. !Send futures stay on their worker with spawn_local.
    let local = spindle::spawn(async {
        let h = spindle::spawn_local(async {
            let shared = Rc::new(21);
            task::yield_now().await; // an Rc held across an await: this future is !Send
            *shared * 2
        });
        h.await.unwrap()
    })
    .await
    .unwrap();
    println!("spawn_local computed {local} with an Rc");

    // 7. A current-thread runtime, built the way tokio users build one.
    let v = std::thread::spawn(|| {
        let rt = Builder::new_current_thread().build().unwrap();
        rt.block_on(async { spindle::spawn(async { 1 + 1 }).await.unwrap() })
    })
    .join()
    .unwrap();
    println!("current-thread runtime says 1 + 1 = {v}");
}
