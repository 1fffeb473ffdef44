//! The runtime-neutral core of spindle: `#![no_std]` + `alloc`, no OS calls.
//!
//! What lives here:
//! - [`task`]: the task cell, its state machine, allocation-free wakers, `JoinHandle`/`JoinError`,
//!   the [`task::Schedule`] trait any executor implements to drive tasks, and the task registry list.
//! - [`queue`]: the run queues a work-stealing executor needs (a bounded per-worker queue that other
//!   workers steal half of, and an intrusive multi-producer inject queue with no lock on push).
//! - [`loom`]: the only module that imports atomics and cells, so the lock-free parts run under
//!   loom's model checker with `RUSTFLAGS="--cfg loom"`.
//!
//! Feature `std` (default) adds panic catching around polls and destructors of user futures.
//!
//! ```
//! use spindle_core::task::TaskId;
//! let a = TaskId::next();
//! let b = TaskId::next();
//! assert_ne!(a, b);
//! ```
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;
#[cfg(any(feature = "std", test, loom))]
extern crate std;

pub mod buf;
pub mod cache_padded;
pub mod coop;
pub mod loom;
pub mod queue;
pub mod spin;
pub mod structured;
pub mod sync;
pub mod task;
