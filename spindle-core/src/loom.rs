//! The one place that imports atomics and interior-mutability cells.
//!
//! Every lock-free structure in spindle goes through this module so that building with
//! `RUSTFLAGS="--cfg loom"` swaps them for [`loom`](https://docs.rs/loom)'s model-checked versions.
//! Atomics that loom must not replace come from [`unmodelled`]: those in `static`s (loom's cannot
//! be `const`-constructed; only counters with no ordering duties live there) and futex words the
//! kernel reads (the OS parker, which loom cannot model anyway).

#[cfg(not(loom))]
pub use core::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Atomics outside the loom model: `static` counters, futex words, and words in memory shared
/// with the kernel (the tail of an io_uring provided-buffer ring is an `AtomicU16`).
pub mod unmodelled {
    /// For thread-local state (the current cancellation token), which loom has no model of.
    pub use core::cell::Cell;
    pub use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering};
}

/// Hint for spin loops (a no-op that yields to the model under loom).
#[inline]
pub fn spin_loop() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// An `UnsafeCell` whose accesses loom can track.
///
/// Accessors take closures so the loom version can record each read and write.
#[cfg(not(loom))]
#[derive(Debug)]
pub struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    #[inline]
    pub const fn new(value: T) -> Self {
        UnsafeCell(core::cell::UnsafeCell::new(value))
    }

    /// Gives `f` a shared raw pointer to the contents.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Gives `f` a mutable raw pointer to the contents.
    #[inline]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(loom)]
pub use loom::cell::UnsafeCell;
