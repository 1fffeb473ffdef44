//! # spindle
//!
//! An async runtime for Rust: a work-stealing multi-thread runtime and a current-thread runtime,
//! a blocking pool, tasks with names, spawn locations and parents, and the runtime-neutral core
//! ([`spindle_core`]) they are built on.
//!
//! ```
//! #[spindle::main]
//! async fn main() {
//!     let handles: Vec<_> = (0..10u64).map(|i| spindle::spawn(async move { i * i })).collect();
//!     let mut sum = 0;
//!     for h in handles {
//!         sum += h.await.unwrap();
//!     }
//!     assert_eq!(sum, 285);
//! }
//! ```
//!
//! Layout (each folder opens with its contract):
//! - [`runtime`]: the executors (multi-thread, current-thread, per-core), the blocking pool,
//!   task dumps and metrics;
//! - [`task`]: spawn, join, yield, the task builder, [`JoinSet`](task::JoinSet);
//! - [`time`]: timer wheels, sleep, timeout, interval, virtual time;
//! - [`net`], [`fs`], [`process`], [`signal`]: I/O on io_uring or epoll, with owned-buffer
//!   (`_owned`) and slice methods, pipes and FIFOs;
//! - [`io`]: buffers, the owned-buffer traits, readiness ([`Interest`](io::Interest),
//!   [`Ready`](io::Ready)) and [`AsyncFd`](io::unix::AsyncFd) for fds of other libraries;
//! - [`structured`] and [`TaskGroup`], [`future`], [`stream`]: scopes whose tasks borrow, task
//!   groups, cancellation and deadlines, `race`/`join`/`merge`;
//! - [`sync`]: runtime-neutral locks, semaphores and channels (from [`spindle_core`]).
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub(crate) mod driver;
/// Test-only access to the readiness protocol for the loom models; only built with `--cfg loom`.
#[cfg(loom)]
#[doc(hidden)]
pub use driver::registration::__loom as __loom_readiness;
pub mod fs;
pub mod io;
pub mod net;
pub mod process;
mod rt;
pub mod signal;
pub mod structured;
pub mod task;
pub mod time;

/// Runtimes and their builder.
pub mod runtime {
    pub use crate::rt::{
        current_core, Builder, Dump, EnterGuard, Handle, IoDriver, LongPoll, Runtime, RuntimeFlavor, RuntimeMetrics,
        TaskInfo, TaskState, TryCurrentError,
    };
    // For spindle-bench's raw io_uring loop, which pins its threads as the per-core runtime does.
    #[doc(hidden)]
    pub use crate::rt::per_core::{allowed_cpus, pin_current_thread};
}

pub use spindle_core;
pub use spindle_core::sync;
pub use task::{spawn, spawn_blocking, spawn_local};

// Structured concurrency (DESIGN.md section 7): `spindle::scope!` is exported at the crate root
// by `structured`.
pub use spindle_core::structured::CancelToken;
pub use structured::TaskGroup;

/// Future combinators that never leave a half-done future behind: `race` drops its losers at
/// once, `join`/`try_join` poll only woken branches.
pub mod future {
    pub use spindle_core::structured::{join, race, try_join};
}

/// Stream combinators: `merge` (per-branch wakers) and the `repeat` streams that replace
/// `select!` loops.
pub mod stream {
    pub use spindle_core::structured::{merge, repeat, repeat_with};
}

/// The guide: cancellation and structured concurrency in spindle.
#[doc = include_str!("guide/cancellation.md")]
pub mod guide_cancellation {}

#[cfg(feature = "macros")]
pub use spindle_macros::{main, test};

/// Runs a future to completion on a fresh current-thread runtime, which is dropped afterwards
/// (tasks spawned inside and still running are cancelled).
///
/// # Panics
/// If called from inside a runtime (a task or another `block_on`): blocking there would stall it.
///
/// ```
/// let v = spindle::block_on(async {
///     let h = spindle::spawn(async { 20 });
///     h.await.unwrap() + 1
/// });
/// assert_eq!(v, 21);
/// ```
#[track_caller]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let rt = runtime::Builder::new_current_thread().build().expect("spindle: cannot build a current-thread runtime");
    rt.block_on(future)
}
