//! `#[spindle::main]` and `#[spindle::test]`: the expanded code runs on the runtime it asks for,
//! keeps the function's return type and attributes, and mistakes are compile errors (`ui`).
#![cfg(feature = "macros")]

use std::collections::HashSet;
use std::error::Error;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

/// Spawns `n` tasks that each block their thread until all `n` are running at once (or a
/// timeout passes). Returns whether they all met: only possible with `n` threads running tasks.
async fn n_tasks_run_in_parallel(n: usize) -> bool {
    let arrived = Arc::new((Mutex::new(0usize), Condvar::new()));
    let mut handles = Vec::new();
    for _ in 0..n {
        let arrived = Arc::clone(&arrived);
        handles.push(spindle::spawn(async move {
            let (count, all_here) = &*arrived;
            let mut count = count.lock().unwrap();
            *count += 1;
            all_here.notify_all();
            let (count, _) = all_here.wait_timeout_while(count, Duration::from_secs(10), |c| *c < n).unwrap();
            *count >= n
        }));
    }
    let mut all_met = true;
    for handle in handles {
        all_met &= handle.await.expect("task failed");
    }
    all_met
}

/// The distinct threads that ran `tasks` spawned tasks.
async fn threads_running(tasks: usize) -> HashSet<ThreadId> {
    let mut handles = Vec::new();
    for _ in 0..tasks {
        handles.push(spindle::spawn(async {
            // Long enough that tasks spread over the workers that exist.
            thread::sleep(Duration::from_millis(1));
            thread::current().id()
        }));
    }
    let mut threads = HashSet::new();
    for handle in handles {
        threads.insert(handle.await.expect("task failed"));
    }
    threads
}

#[spindle::test]
async fn default_flavor_is_current_thread() {
    // On the current-thread runtime the test's own thread runs every task.
    let here = thread::current().id();
    let there = spindle::spawn(async { thread::current().id() }).await.unwrap();
    assert_eq!(here, there);
}

#[spindle::test(flavor = "current_thread")]
async fn explicit_current_thread() {
    let here = thread::current().id();
    assert_eq!(threads_running(8).await, HashSet::from([here]));
}

#[spindle::test(flavor = "multi_thread")]
async fn multi_thread_runs_tasks_in_parallel() {
    assert!(n_tasks_run_in_parallel(2).await);
}

#[spindle::test(flavor = "multi_thread", worker_threads = 3)]
async fn worker_threads_sets_the_number_of_workers() {
    // At least 3 threads run tasks at once...
    assert!(n_tasks_run_in_parallel(3).await);
    // ...and no more than 3 workers run tasks (the test's own thread, which blocks on this
    // body, is not counted).
    let here = thread::current().id();
    let mut workers = threads_running(64).await;
    workers.remove(&here);
    assert!(workers.len() <= 3, "{} worker threads ran tasks", workers.len());
}

#[spindle::test(flavor = "per_core", worker_threads = 2)]
async fn per_core_flavor_runs_tasks_on_its_cores() {
    use spindle::runtime::{current_core, Handle, RuntimeFlavor};
    let handle = Handle::current();
    assert_eq!(handle.runtime_flavor(), RuntimeFlavor::PerCore);
    assert_eq!(handle.metrics().num_workers(), 2);
    // The body runs on the test's thread, not on a core; tasks run on the cores.
    assert_eq!(current_core(), None);
    assert_eq!(handle.spawn_on(1, async { current_core() }).await.unwrap(), Some(1));
    assert!(spindle::spawn(async { current_core() }).await.unwrap().is_some());
}

// Option order does not matter; `worker_threads = 1` is the smallest allowed.
#[spindle::test(worker_threads = 1, flavor = "multi_thread")]
async fn one_worker() {
    let here = thread::current().id();
    let mut workers = threads_running(16).await;
    workers.remove(&here);
    assert!(workers.len() <= 1, "{} worker threads ran tasks", workers.len());
}

#[spindle::test]
async fn returning_ok_passes() -> Result<(), Box<dyn Error>> {
    // `?` works in the body, with the error type taken from the return type.
    let n: u32 = "42".parse()?;
    let m = spindle::spawn(async move { n + 1 }).await?;
    assert_eq!(m, 43);
    Ok(())
}

#[spindle::test(flavor = "multi_thread")]
async fn returning_ok_passes_multi_thread() -> Result<(), std::num::ParseIntError> {
    assert_eq!("7".parse::<i32>()?, 7);
    Ok(())
}

/// `#[spindle::main]` works on any `async fn`, not only `main`: here one returning an error
/// early, called by the test below (a test returning `Err` cannot be checked from inside).
#[spindle::main]
async fn main_like(input: &'static str) -> Result<u32, Box<dyn Error>> {
    let n: u32 = input.parse()?;
    if n == 0 {
        return Err("zero".into());
    }
    Ok(spindle::spawn(async move { n * 2 }).await?)
}

#[test]
fn main_keeps_the_return_type_and_early_returns() {
    assert_eq!(main_like("21").unwrap(), 42);
    assert_eq!(main_like("0").unwrap_err().to_string(), "zero");
    assert!(main_like("x").unwrap_err().is::<std::num::ParseIntError>());
}

#[spindle::main(flavor = "current_thread")]
async fn current_thread_main() -> ThreadId {
    spindle::spawn(async { thread::current().id() }).await.unwrap()
}

#[test]
fn main_with_current_thread_flavor_runs_on_the_calling_thread() {
    assert_eq!(current_thread_main(), thread::current().id());
}

#[spindle::test]
#[should_panic(expected = "boom in a current-thread test")]
async fn should_panic_current_thread() {
    spindle::spawn(async {}).await.unwrap();
    panic!("boom in a current-thread test");
}

#[spindle::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "boom in a multi-thread test")]
async fn should_panic_multi_thread() {
    spindle::spawn(async {}).await.unwrap();
    panic!("boom in a multi-thread test");
}

#[spindle::test]
async fn body_is_async_move_and_keeps_inner_attributes() {
    #![allow(clippy::redundant_clone)]
    let owned = String::from("moved into the body");
    let len = spindle::spawn(async { 5 }).await.unwrap();
    assert_eq!(owned.clone().len(), "moved into the body".len());
    assert_eq!(len, 5);
}

/// Sleeps for an hour on the runtime's clock and checks that exactly an hour of virtual time
/// passed while (much) less than that passed in real time: only true if the clock started paused.
async fn sleep_an_hour_in_virtual_time() {
    let real_start = std::time::Instant::now();
    let start = spindle::time::Instant::now();
    spindle::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(spindle::time::Instant::now() - start, Duration::from_secs(3600));
    let real = real_start.elapsed();
    assert!(real < Duration::from_secs(5), "an hour of virtual time took {real:?} of real time");
}

#[spindle::test(start_paused = true)]
async fn start_paused_current_thread() {
    sleep_an_hour_in_virtual_time().await;
}

#[spindle::test(flavor = "multi_thread", worker_threads = 2, start_paused = true)]
async fn start_paused_multi_thread() {
    sleep_an_hour_in_virtual_time().await;
}

// `start_paused = false` is the default: the clock follows real time.
#[spindle::test(start_paused = false)]
async fn start_paused_false_keeps_real_time() {
    let real_start = std::time::Instant::now();
    let start = spindle::time::Instant::now();
    spindle::time::sleep(Duration::from_millis(20)).await;
    assert!(real_start.elapsed() >= Duration::from_millis(20));
    assert!(spindle::time::Instant::now() - start >= Duration::from_millis(20));
}

#[spindle::main(flavor = "multi_thread", start_paused = true)]
async fn paused_main() -> Duration {
    let start = spindle::time::Instant::now();
    spindle::spawn(spindle::time::sleep(Duration::from_secs(60))).await.unwrap();
    spindle::time::Instant::now() - start
}

#[test]
fn main_with_start_paused() {
    let real_start = std::time::Instant::now();
    assert_eq!(paused_main(), Duration::from_secs(60));
    assert!(real_start.elapsed() < Duration::from_secs(5));
}

/// The `crate` option: spindle reached through another path (as a crate re-exporting it would).
mod reexport {
    pub use ::spindle::runtime;
}

#[spindle::test(crate = "crate::reexport")]
async fn crate_option_renames_the_spindle_path() {
    assert_eq!(spindle::spawn(async { 1 }).await.unwrap(), 1);
}

/// Compile-fail cases in `tests/ui/`; `TRYBUILD=overwrite` regenerates the `.stderr` files.
#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}

// The attributes written by a `macro_rules!` whose caller supplies the statements (a test-matrix
// macro): the generated `runtime` binding resolved with the statements' hygiene and was not found.
macro_rules! async_test {
    ($name:ident, $($body:tt)*) => {
        #[spindle::test]
        async fn $name() { $($body)* }
    };
}
async_test!(a_test_generated_by_a_macro_rules_caller, let x = 1; assert_eq!(x, 1););

macro_rules! async_main {
    ($name:ident, $($body:tt)*) => {
        #[spindle::main(flavor = "current_thread")]
        async fn $name() -> u32 { $($body)* }
    };
}
async_main!(main_generated_by_a_macro_rules_caller, 40 + 2);

#[test]
fn a_main_generated_by_a_macro_rules_caller_runs() {
    assert_eq!(main_generated_by_a_macro_rules_caller(), 42);
}
