//! [`CachePadded`]: keeps a hot field on its own cache line(s), so threads hammering it do not slow
//! down threads reading its neighbours (false sharing).

use core::ops::Deref;

/// `T`, aligned (and so padded) to 128 bytes: two 64-byte lines, because x86's adjacent-line
/// prefetcher pulls lines in pairs.
///
/// Wrap a field one thread writes often (a lock word, a flag set per operation) when other
/// threads read the fields around it: without the padding every write takes the line away
/// from the readers.
///
/// ```
/// use core::sync::atomic::{AtomicUsize, Ordering};
/// use spindle_core::cache_padded::CachePadded;
///
/// struct Counters {
///     /// Bumped by one thread all the time.
///     hot: CachePadded<AtomicUsize>,
///     /// Read by the others: not on `hot`'s line.
///     limit: usize,
/// }
/// let c = Counters { hot: CachePadded(AtomicUsize::new(0)), limit: 10 };
/// c.hot.fetch_add(1, Ordering::Relaxed);
/// assert!(c.hot.load(Ordering::Relaxed) < c.limit);
/// assert_eq!(core::mem::align_of_val(&c.hot) % 64, 0);
/// ```
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), repr(align(128)))]
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), repr(align(64)))]
#[derive(Debug, Default)]
pub struct CachePadded<T>(pub T);

impl<T> Deref for CachePadded<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}
