//! [`CachePadded`]: keeps a hot field on its own cache line(s), so threads hammering it do not slow
//! down threads reading its neighbours (false sharing).

use core::ops::Deref;

/// `T`, aligned (and so padded) to 128 bytes: two 64-byte lines, because x86's adjacent-line
/// prefetcher pulls lines in pairs.
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), repr(align(128)))]
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), repr(align(64)))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> Deref for CachePadded<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}
