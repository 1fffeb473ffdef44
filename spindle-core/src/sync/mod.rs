//! Synchronisation primitives and channels for async code, runtime-neutral (`no_std` + `alloc`).
//!
//! # Contract
//!
//! What this module owns: async locks ([`Mutex`], [`RwLock`]), [`Semaphore`], [`Notify`],
//! [`Barrier`], [`OnceCell`], the channels [`oneshot`], [`mpsc`], [`broadcast`] and [`watch`], and
//! the shared machinery under them. Everything here works on any executor (spindle's runtimes, tokio's, a
//! hand-rolled `block_on`, an embedded executor): the only thing asked of an executor is a
//! `Waker`. Leaf futures spend the cooperative budget through [`crate::coop::poll_proceed`], so a
//! task looping on an always-ready lock still yields on spindle's runtimes.
//!
//! Names and semantics follow `tokio::sync`, so code moves over by changing the import.
//!
//! Invariants every primitive keeps:
//! - **Waiting never allocates.** A waiting future embeds its own wait-list node ([`list`]),
//!   linked into the primitive's list while it waits and unlinked (under the same lock) when it
//!   completes or is dropped. The futures are `!Unpin` for that reason.
//! - **Fair where documented.** The locks and the semaphore serve waiters in FIFO order and never
//!   let a newcomer barge past a queued waiter (see `batch`).
//! - **Cancel safety is documented on every async method**, and dropping a pending future never
//!   loses a permit or a wakeup: whatever was handed to a future that is then dropped is passed on
//!   to the next waiter.
//! - **No user code under a lock.** Locks guard only wait lists and counters; wakers are
//!   collected under the lock and woken after it is released ([`wake_list`]).
//! - Atomics and cells come from [`crate::loom`], so the concurrent paths are model-checked
//!   (`spindle-core/tests/loom_sync_*.rs`).
//!
//! Feature `std` makes the wait-list lock std's `Mutex` (it sleeps instead of spinning when
//! contended), adds `std::error::Error` impls, and adds the `blocking_*` methods that park the
//! calling thread. Without `std`, the wait-list lock is a small spin lock.

/// The `Arc` that channel halves share: loom's under loom, so the model sees that the last drop
/// synchronises with every earlier one (with std's, loom would report the channel's destructor
/// as racing with the other half's last use).
#[cfg(not(loom))]
pub(crate) use alloc::sync::Arc as Shared;
#[cfg(loom)]
pub(crate) use loom::sync::Arc as Shared;

pub(crate) mod atomic_waker;
mod barrier;
mod batch;
pub mod broadcast;
mod list;
pub(crate) mod lock;
pub mod mpsc;
mod mutex;
mod notify;
mod once_cell;
pub mod oneshot;
#[cfg(all(feature = "std", not(loom)))]
mod park;
mod rwlock;
mod semaphore;
pub(crate) mod wake_list;
pub mod watch;

pub use barrier::{Barrier, BarrierWait, BarrierWaitResult};
pub use mutex::{MappedMutexGuard, Mutex, MutexGuard, OwnedMutexGuard, TryLockError};
pub use notify::{Notified, Notify};
pub use once_cell::{OnceCell, SetError};
pub use rwlock::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::{AcquireError, OwnedSemaphorePermit, Semaphore, SemaphorePermit, TryAcquireError};
