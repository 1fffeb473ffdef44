//! `#[spindle::main]` and `#[spindle::test]`: run an `async fn` on a spindle runtime.
//!
//! Use these through the `spindle` crate (feature `macros`, on by default), as
//! `#[spindle::main]` and `#[spindle::test]`; this crate is an implementation detail.
//!
//! Both attributes turn an `async fn` into a plain `fn` with the same name, attributes, visibility
//! and return type, whose body builds a runtime and blocks on the original body:
//!
//! ```text
//! #[spindle::main]
//! async fn main() -> T { body }
//!
//! // becomes, roughly:
//! fn main() -> T {
//!     let body = async move { body };
//!     ::spindle::runtime::Builder::new_multi_thread()
//!         .build()
//!         .expect("spindle: failed to build the runtime")
//!         .block_on(body)
//! }
//! ```
//!
//! # Options
//!
//! Both attributes take the same comma-separated options, each at most once:
//!
//! | option | values | default |
//! |---|---|---|
//! | `flavor` | `"multi_thread"`, `"current_thread"` or `"per_core"` | `"multi_thread"` for `main`, `"current_thread"` for `test` |
//! | `worker_threads` | an integer ≥ 1; only with the multi-thread and per-core flavors | one worker (core) per CPU |
//! | `start_paused` | `true` or `false`: start the runtime's clock paused (virtual time); not per-core | `false` |
//! | `crate` | a path to the spindle crate, as a string | `"::spindle"` |
//!
//! Anything else (an unknown option, a repeated one, a value of the wrong kind, a non-`async`
//! function, parameters on `main` or a test) is a compile error pointing at the offending tokens.
//!
//! ```
//! #[spindle::main(flavor = "multi_thread", worker_threads = 2)]
//! async fn main() {
//!     println!("running on two workers");
//! }
//! ```
//!
//! With `start_paused = true` the runtime starts with its clock paused (see `spindle::time`):
//! time only moves when every task is idle, and then jumps straight to the next timer, so a test
//! of an hour-long timeout finishes at once and always sees the same durations. It works with
//! the current-thread and multi-thread flavors (the per-core runtime has no virtual time).
//!
//! ```
//! use std::time::Duration;
//! use spindle::time::{sleep, Instant};
//!
//! #[spindle::main(flavor = "current_thread", start_paused = true)]
//! async fn main() {
//!     let start = Instant::now();
//!     sleep(Duration::from_secs(3600)).await; // returns immediately
//!     assert_eq!(start.elapsed(), Duration::from_secs(3600));
//! }
//! ```
//!
//! # Contract with `spindle`
//!
//! The expansion uses only
//! `<crate>::runtime::Builder::{new_current_thread, new_multi_thread, new_per_core}`,
//! `Builder::bind_to_driving_thread(true)` (current-thread flavor: the runtime is only ever driven
//! by the thread the function runs on), `Builder::worker_threads(usize)`,
//! `Builder::start_paused(bool)` (only when the option is given), `Builder::build() ->
//! std::io::Result<Runtime>` and `Runtime::block_on(future) -> Output`.

mod entry;

use proc_macro::TokenStream;

/// Runs `async fn main` on a spindle runtime.
///
/// The function keeps its name, attributes, visibility and return type (anything `main` may
/// return, such as `Result<(), Box<dyn Error>>`); it loses `async` and gains a body that builds a
/// runtime and blocks on the original body, run as `async move { body }`. The runtime is the
/// multi-thread one unless another `flavor` is given. Building it panics with
/// `spindle: failed to build the runtime` if the operating system refuses (threads, I/O driver).
///
/// Options (see the [crate documentation](crate) for the table):
/// - `flavor = "multi_thread"` (default), `flavor = "current_thread"` or `flavor = "per_core"`
///   (see `spindle::runtime::Builder::new_per_core`: the body runs on the calling thread and
///   hands work to the cores with `Handle::spawn_on` or `spindle::spawn`);
/// - `worker_threads = N`, `N ≥ 1`, only with the multi-thread and per-core flavors (default:
///   one per CPU);
/// - `start_paused = true` or `false` (default): start the runtime's clock paused (virtual time),
///   with the current-thread or multi-thread flavor;
/// - `crate = "path"`, where to find spindle if it is not `::spindle` (e.g. re-exported).
///
/// The function must be `async`. `main` takes no parameters; on any other function the attribute
/// makes a blocking wrapper, whose parameters are moved into the body.
///
/// # Examples
///
/// The common case: a multi-thread runtime with one worker per CPU.
///
/// ```
/// #[spindle::main]
/// async fn main() {
///     println!("hello from spindle");
/// }
/// ```
///
/// Returning a `Result`, on a single-threaded runtime:
///
/// ```
/// use std::error::Error;
///
/// #[spindle::main(flavor = "current_thread")]
/// async fn main() -> Result<(), Box<dyn Error>> {
///     let n: u32 = "42".parse()?;
///     assert_eq!(n, 42);
///     Ok(())
/// }
/// ```
///
/// A fixed number of workers:
///
/// ```
/// #[spindle::main(worker_threads = 4)]
/// async fn main() {
///     // ...
/// }
/// ```
///
/// A per-core runtime, one task per core:
///
/// ```
/// #[spindle::main(flavor = "per_core", worker_threads = 2)]
/// async fn main() {
///     let handle = spindle::runtime::Handle::current();
///     let cores: Vec<_> = (0..2).map(|c| handle.spawn_on(c, async { spindle::runtime::current_core() })).collect();
///     for (c, join) in cores.into_iter().enumerate() {
///         assert_eq!(join.await.unwrap(), Some(c));
///     }
/// }
/// ```
///
/// A blocking wrapper around an `async fn` (each call builds its own runtime):
///
/// ```
/// #[spindle::main(flavor = "current_thread")]
/// async fn double(n: u32) -> u32 {
///     n * 2
/// }
///
/// fn main() {
///     assert_eq!(double(21), 42);
/// }
/// ```
///
/// Using spindle through a crate (here a module) that re-exports it:
///
/// ```
/// mod my_runtime {
///     pub use ::spindle::{main, runtime};
/// }
///
/// #[my_runtime::main(crate = "my_runtime")]
/// async fn main() {}
/// ```
///
/// Mistakes are compile errors:
///
/// ```compile_fail
/// #[spindle::main(flavor = "current_thread", worker_threads = 2)]
/// async fn main() {}
/// ```
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::expand(entry::Kind::Main, args.into(), item.into()).into()
}

/// Runs an `async fn` test on a fresh spindle runtime.
///
/// Like [`macro@main`], but the runtime is the current-thread one unless another
/// `flavor` is given, and the function is marked `#[test]`. Every other
/// attribute is kept, so `#[should_panic]`, `#[ignore]` and doc comments work as on a plain
/// test; do not add `#[test]` yourself. The test may return anything a `#[test]` may, such as
/// `Result<(), E>` with `E: Debug`.
///
/// Each test gets its own runtime, built when the test starts and shut down when it ends.
///
/// Options (see the [crate documentation](crate) for the table):
/// - `flavor = "current_thread"` (default), `flavor = "multi_thread"` or `flavor = "per_core"`;
/// - `worker_threads = N`, `N ≥ 1`, only with `flavor = "multi_thread"` or `"per_core"`;
/// - `start_paused = true` or `false` (default): start the runtime's clock paused, so that sleeps
///   and timeouts complete as soon as every task is idle, with exact, repeatable durations;
/// - `crate = "path"`, where to find spindle if it is not `::spindle`.
///
/// The function must be `async` and take no parameters.
///
/// # Examples
///
/// (The tests below are compiled but not run here: a doc example is not built as a test
/// harness. In a `tests/` file or a `#[cfg(test)]` module they run with `cargo test`.)
///
/// ```no_run
/// #[spindle::test]
/// async fn adds() {
///     let sum = async { 1 + 1 }.await;
///     assert_eq!(sum, 2);
/// }
///
/// #[spindle::test(flavor = "multi_thread", worker_threads = 2)]
/// async fn on_two_workers() -> Result<(), std::num::ParseIntError> {
///     assert_eq!("7".parse::<i32>()?, 7);
///     Ok(())
/// }
///
/// #[spindle::test]
/// #[should_panic(expected = "boom")]
/// async fn panics() {
///     panic!("boom");
/// }
///
/// // Virtual time: the hour passes at once.
/// #[spindle::test(start_paused = true)]
/// async fn times_out_after_an_hour() {
///     use std::time::Duration;
///     let never = std::future::pending::<()>();
///     let result = spindle::time::timeout(Duration::from_secs(3600), never).await;
///     assert!(result.is_err());
/// }
/// # fn main() {}
/// ```
///
/// A test function cannot take parameters:
///
/// ```compile_fail
/// #[spindle::test]
/// async fn with_input(n: u32) {}
/// # fn main() {}
/// ```
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::expand(entry::Kind::Test, args.into(), item.into()).into()
}
