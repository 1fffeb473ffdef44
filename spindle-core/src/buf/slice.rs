//! [`Slice`]: a range of an owned buffer.

use core::ops::{Deref, DerefMut};

use super::{IoBuf, IoBufMut};

/// A range `begin..end` of an owned buffer, made by [`IoBuf::slice`]. It is itself an [`IoBuf`]
/// (and an [`IoBufMut`] when the buffer is), so an operation can read into or write from part of a
/// buffer; [`into_inner`](Slice::into_inner) gives the whole buffer back.
///
/// Positions are relative to `begin`: the slice's `bytes_total()` is `end - begin`, and its
/// `bytes_init()` is how many of its bytes are initialized in the underlying buffer.
/// Dereferencing gives the initialized part of the range.
///
/// ```
/// use spindle_core::buf::{IoBuf, IoBufMut};
/// let mut buf = Vec::with_capacity(16);
/// buf.extend_from_slice(b"ab");
/// // Append: a read into the free tail of `buf`.
/// let mut tail = buf.slice(2..);
/// assert_eq!(tail.bytes_init(), 0);
/// // SAFETY: 2 bytes written through the stable pointer before being marked initialized.
/// unsafe {
///     tail.stable_mut_ptr().copy_from_nonoverlapping(b"cd".as_ptr(), 2);
///     tail.set_init(2);
/// }
/// assert_eq!(&tail[..], b"cd");
/// assert_eq!(tail.into_inner(), b"abcd");
/// ```
#[derive(Debug)]
pub struct Slice<T> {
    buf: T,
    begin: usize,
    end: usize,
}

impl<T: IoBuf> Slice<T> {
    /// Invariant (checked by `IoBuf::slice`): `begin <= end <= buf.bytes_total()`.
    pub(super) fn new(buf: T, begin: usize, end: usize) -> Slice<T> {
        debug_assert!(begin <= end && end <= buf.bytes_total());
        Slice { buf, begin, end }
    }
}

impl<T> Slice<T> {
    /// Offset of the range's start in the buffer.
    ///
    /// ```
    /// use spindle_core::buf::IoBuf;
    /// assert_eq!(vec![0u8; 8].slice(3..5).begin(), 3);
    /// ```
    pub fn begin(&self) -> usize {
        self.begin
    }

    /// Offset of the range's end (exclusive) in the buffer.
    ///
    /// ```
    /// use spindle_core::buf::IoBuf;
    /// assert_eq!(vec![0u8; 8].slice(3..5).end(), 5);
    /// ```
    pub fn end(&self) -> usize {
        self.end
    }

    /// The whole underlying buffer.
    ///
    /// ```
    /// use spindle_core::buf::IoBuf;
    /// assert_eq!(vec![1u8, 2, 3].slice(1..).get_ref().len(), 3);
    /// ```
    pub fn get_ref(&self) -> &T {
        &self.buf
    }

    /// The whole underlying buffer, mutably. Changing its capacity or moving its bytes while the
    /// slice is in an operation is impossible (the operation owns the slice); changing its length so
    /// that the range is past its capacity is allowed and makes the slice report fewer bytes.
    ///
    /// ```
    /// use spindle_core::buf::IoBuf;
    /// let mut s = vec![1u8, 2, 3].slice(1..);
    /// s.get_mut()[1] = 9;
    /// assert_eq!(&s[..], &[9, 3]);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.buf
    }

    /// Gives the whole buffer back.
    ///
    /// ```
    /// use spindle_core::buf::IoBuf;
    /// let v = b"abc".to_vec();
    /// assert_eq!(v.slice(..1).into_inner(), b"abc");
    /// ```
    pub fn into_inner(self) -> T {
        self.buf
    }
}

impl<T: IoBuf> Slice<T> {
    /// `(begin, end)` clamped to the buffer's current capacity (only `get_mut` can shrink it).
    fn bounds(&self) -> (usize, usize) {
        let total = self.buf.bytes_total();
        (self.begin.min(total), self.end.min(total))
    }
}

impl<T: IoBuf> Deref for Slice<T> {
    type Target = [u8];

    /// The initialized part of the range.
    fn deref(&self) -> &[u8] {
        let (begin, _) = self.bounds();
        let len = self.bytes_init();
        // SAFETY: by `IoBuf`'s contract the buffer's first `bytes_init()` bytes are initialized and
        // `begin + len <= bytes_init()` (see `bytes_init` below); the shared borrow of `self` keeps
        // the buffer alive and unmodified for the returned lifetime.
        unsafe { core::slice::from_raw_parts(self.buf.stable_ptr().add(begin), len) }
    }
}

impl<T: IoBufMut> DerefMut for Slice<T> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let (begin, _) = self.bounds();
        let len = self.bytes_init();
        // SAFETY: as in `deref`, and the unique borrow of `self` (which owns the buffer) makes the
        // access exclusive; `IoBufMut` promises the memory is writable.
        unsafe { core::slice::from_raw_parts_mut(self.buf.stable_mut_ptr().add(begin), len) }
    }
}

// SAFETY: the pointer is the buffer's stable pointer offset by `begin <= bytes_total()` (clamped),
// so it stays in (or one past) the same allocation and is as stable as the buffer's; the slice's
// initialized bytes are the buffer's initialized bytes inside the range, and its total is the
// range's length, both within the allocation.
unsafe impl<T: IoBuf> IoBuf for Slice<T> {
    fn stable_ptr(&self) -> *const u8 {
        let (begin, _) = self.bounds();
        // SAFETY: `begin <= bytes_total()`, so the offset stays within (or one past) the allocation.
        unsafe { self.buf.stable_ptr().add(begin) }
    }
    fn bytes_init(&self) -> usize {
        let (begin, end) = self.bounds();
        self.buf.bytes_init().clamp(begin, end) - begin
    }
    fn bytes_total(&self) -> usize {
        let (begin, end) = self.bounds();
        end - begin
    }
}

// SAFETY: writes go to the buffer's own writable allocation inside the range. `set_init` only ever
// raises the buffer's initialized length, and only when the bytes before the range's start are
// already initialized, so no uninitialized byte is ever reported as initialized.
unsafe impl<T: IoBufMut> IoBufMut for Slice<T> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        let (begin, _) = self.bounds();
        // SAFETY: `begin <= bytes_total()`, so the offset stays within (or one past) the allocation.
        unsafe { self.buf.stable_mut_ptr().add(begin) }
    }

    /// Records that the range's first `n` bytes are initialized. Unlike a whole `Vec`, a slice never
    /// shrinks its buffer: the buffer's initialized length becomes `begin + n` if that is larger.
    /// If the range starts past the buffer's initialized bytes (a gap that nothing initialized), the
    /// buffer's length cannot cover the new bytes without covering the gap, and is left unchanged.
    unsafe fn set_init(&mut self, n: usize) {
        let (begin, end) = self.bounds();
        debug_assert!(n <= end - begin);
        let init = self.buf.bytes_init();
        if begin <= init && begin + n > init {
            // SAFETY: bytes `..init` were initialized, bytes `begin..begin + n` were initialized by the
            // caller (its contract), and `begin <= init`, so `..begin + n` all are; within capacity.
            unsafe { self.buf.set_init(begin + n) }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::buf::{IoBuf, IoBufMut};
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn slice_of_initialized_middle() {
        let s = b"0123456789".to_vec().slice(2..5);
        assert_eq!((s.bytes_init(), s.bytes_total()), (3, 3));
        assert_eq!(&s[..], b"234");
    }

    #[test]
    fn slice_partly_initialized() {
        let mut v = Vec::with_capacity(10);
        v.extend_from_slice(b"abc");
        let s = v.slice(1..6);
        assert_eq!((s.bytes_init(), s.bytes_total()), (2, 5));
        assert_eq!(&s[..], b"bc");
    }

    #[test]
    fn set_init_never_shrinks_and_respects_gaps() {
        let mut s = b"abcdef".to_vec().slice(1..3);
        // SAFETY: within the range, already initialized.
        unsafe { s.set_init(1) };
        assert_eq!(s.into_inner(), b"abcdef");

        let mut v = Vec::with_capacity(10);
        v.push(b'a');
        let mut gap = v.slice(4..);
        // SAFETY: writes 2 bytes at the range start before marking them.
        unsafe {
            gap.stable_mut_ptr().write_bytes(b'z', 2);
            gap.set_init(2);
        }
        // Bytes 1..4 were never initialized, so the Vec cannot claim 6 bytes.
        assert_eq!(gap.into_inner(), b"a");
    }

    #[test]
    fn nested_slices_and_deref_mut() {
        let mut s = vec![0u8; 8].slice(2..6).slice(1..3);
        s[0] = 7;
        assert_eq!(s.begin(), 1);
        let inner = s.into_inner().into_inner();
        assert_eq!(inner[3], 7);
    }

    #[test]
    fn shrunk_buffer_clamps() {
        let mut s = vec![1u8; 8].slice(4..8);
        *s.get_mut() = Vec::new();
        assert_eq!((s.bytes_init(), s.bytes_total(), s.len()), (0, 0, 0));
    }
}
