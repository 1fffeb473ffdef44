//! A tour of spindle's runtime: spawning, joining, aborting, panics, blocking work, local tasks,
//! and looking inside a running runtime (the task tree and its counters).
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

    // 8. Look inside the running runtime: the live task tree, and the workers' counters.
    let (release, gate) = spindle::sync::watch::channel(false);
    let parent = task::Builder::new()
        .name("parent")
        .spawn(async move {
            let children: Vec<_> = (0..2)
                .map(|i| {
                    let mut gate = gate.clone();
                    task::Builder::new()
                        .name(&format!("child {i}"))
                        .spawn(async move {
                            let _ = gate.wait_for(|open| *open).await;
                        })
                        .unwrap()
                })
                .collect();
            for c in children {
                c.await.unwrap();
            }
        })
        .unwrap();
    while spindle::runtime::Handle::current().dump().len() < 3 {
        task::yield_now().await;
    }
    print!("live tasks: {}", spindle::runtime::Handle::current().dump());
    release.send(true).unwrap();
    parent.await.unwrap();
    let m = spindle::runtime::Handle::current().metrics();
    let total = |f: &dyn Fn(usize) -> u64| (0..m.num_workers()).map(f).sum::<u64>();
    println!(
        "{} workers: {} task polls, {} tasks stolen, {} parks",
        m.num_workers(),
        total(&|w| m.worker_poll_count(w)),
        total(&|w| m.worker_steal_count(w)),
        total(&|w| m.worker_park_count(w)),
    );
}
