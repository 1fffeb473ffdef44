//! Buffers that I/O operations own while they are in flight: [`IoBuf`], [`IoBufMut`], [`Slice`].
//!
//! # Contract
//!
//! What this module owns: the two buffer traits every owned-buffer operation of spindle takes
//! (`read_owned`, `write_all_owned`, `read_at_owned`, `send_to_owned`, ...), their implementations
//! for the standard buffer types (and `bytes::Bytes`/`BytesMut` under the `bytes` feature), and
//! [`Slice`], a sub-range of a buffer that gives the whole buffer back.
//!
//! Why owned buffers: with completion I/O (io_uring) the kernel reads from or writes into the
//! memory *after* the call that submitted the operation returned, possibly after the future that
//! awaited it was dropped. A borrowed `&mut [u8]` cannot promise that: dropping the future ends the
//! borrow while the kernel may still write. So an operation takes the buffer by value, keeps it
//! (in the driver, if the future is dropped) until the kernel is done with it, and hands it back
//! with the result: `let (res, buf) = stream.read_owned(buf).await;`.
//!
//! Invariants an implementation promises (the traits are `unsafe` to implement for this reason):
//! - **Stable pointer.** [`IoBuf::stable_ptr`] (and [`IoBufMut::stable_mut_ptr`]) point at the
//!   same memory for as long as the buffer value exists and is not accessed through `&mut` methods
//!   other than this trait's, *even if the value is moved*. A `Vec<u8>` qualifies (its bytes live
//!   on the heap; moving the `Vec` moves three words, not the bytes); a `[u8; N]` does not (its
//!   bytes move with it), and neither does `&mut [u8]` (the pointer is stable, but the borrow ends
//!   when the future holding it is dropped, while the kernel may still write).
//! - **Valid lengths.** `bytes_init() <= bytes_total()`; the first `bytes_init()` bytes are
//!   initialized; all `bytes_total()` bytes are allocated and may be written (for `IoBufMut`).
//! - **`'static` and `Send`.** A buffer may outlive the task that submitted it (an orphaned
//!   operation keeps it until the kernel completes) and may be dropped by another thread (the
//!   driver of the worker that reaps the completion).
//!
//! ```
//! use spindle_core::buf::{IoBuf, IoBufMut};
//! let mut v = Vec::with_capacity(16);
//! v.extend_from_slice(b"abc");
//! assert_eq!((v.bytes_init(), v.bytes_total()), (3, 16));
//! // What an I/O operation does after the kernel wrote 5 bytes at the start:
//! // SAFETY: the 5 bytes were written through `stable_mut_ptr`; 5 <= bytes_total().
//! unsafe {
//!     v.stable_mut_ptr().copy_from_nonoverlapping(b"hello".as_ptr(), 5);
//!     v.set_init(5);
//! }
//! assert_eq!(v, b"hello");
//! ```

mod slice;

pub use slice::Slice;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::{Bound, RangeBounds};

/// A buffer an I/O operation can read from (a write's source), owned by the operation while it
/// is in flight.
///
/// # Safety
///
/// Implementors promise, for every value `b` of the type:
/// - `b.stable_ptr()` points to an allocation of at least `b.bytes_total()` bytes whose first
///   `b.bytes_init()` bytes are initialized, and `b.bytes_init() <= b.bytes_total()`.
/// - The pointer stays valid and returns the same address while `b` is alive, **including after
///   `b` is moved** (an in-flight operation moves the buffer into the driver, and the kernel keeps
///   using the address it was given), as long as `b` is only accessed through this trait and
///   [`IoBufMut`]. Heap-backed buffers (`Vec<u8>`, `Box<[u8]>`, `bytes::Bytes`) and `'static`
///   data qualify; inline arrays and borrowed slices (`&mut [u8]`, `&'a [u8]` for a non-`'static`
///   `'a`) do not.
/// - Dropping `b` on any thread is sound (`Send`), and `b` borrows nothing (`'static`).
///
/// ```
/// use spindle_core::buf::IoBuf;
/// let b: &'static [u8] = b"hello";
/// assert_eq!((b.bytes_init(), b.bytes_total()), (5, 5));
/// let s = b.slice(1..4);
/// assert_eq!(&s[..], b"ell");
/// assert_eq!(s.into_inner(), b"hello");
/// ```
pub unsafe trait IoBuf: Unpin + Send + 'static {
    /// A pointer to the first byte, stable across moves of `self` (see the trait's safety contract).
    ///
    /// ```
    /// use spindle_core::buf::IoBuf;
    /// let v = vec![1u8, 2, 3];
    /// let p = v.stable_ptr();
    /// let moved = v; // moving the Vec does not move its bytes
    /// assert_eq!(moved.stable_ptr(), p);
    /// ```
    fn stable_ptr(&self) -> *const u8;

    /// Number of initialized bytes (what a write sends): `len()` for a `Vec`.
    ///
    /// ```
    /// use spindle_core::buf::IoBuf;
    /// assert_eq!(vec![0u8; 7].bytes_init(), 7);
    /// ```
    fn bytes_init(&self) -> usize;

    /// Total number of bytes of the allocation (what a read may fill): `capacity()` for a `Vec`.
    ///
    /// ```
    /// use spindle_core::buf::IoBuf;
    /// assert_eq!(Vec::<u8>::with_capacity(64).bytes_total(), 64);
    /// ```
    fn bytes_total(&self) -> usize;

    /// A view of `range` of this buffer (positions up to [`bytes_total`](IoBuf::bytes_total)) that an
    /// operation can take instead of the whole buffer; [`Slice::into_inner`] gives the buffer back.
    ///
    /// Use it to write part of a buffer, or to read into the free tail of one
    /// (`buf.slice(buf.len()..)` appends).
    ///
    /// # Panics
    /// If the range's start is after its end, or its end is past `bytes_total()` (like indexing a
    /// slice out of bounds).
    ///
    /// ```
    /// use spindle_core::buf::IoBuf;
    /// let s = b"hello world".to_vec().slice(6..);
    /// assert_eq!((s.begin(), s.end()), (6, 11));
    /// assert_eq!(&s[..], b"world");
    /// ```
    #[track_caller]
    fn slice(self, range: impl RangeBounds<usize>) -> Slice<Self>
    where
        Self: Sized,
    {
        let total = self.bytes_total();
        let begin = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n.checked_add(1).expect("spindle: slice start overflows usize"),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n.checked_add(1).expect("spindle: slice end overflows usize"),
            Bound::Excluded(&n) => n,
            Bound::Unbounded => total,
        };
        assert!(begin <= end, "spindle: slice index starts at {begin} but ends at {end}");
        assert!(end <= total, "spindle: slice end {end} is past the buffer's capacity {total}");
        Slice::new(self, begin, end)
    }
}

/// A buffer an I/O operation can write into (a read's destination).
///
/// # Safety
///
/// Everything [`IoBuf`] promises, and: `stable_mut_ptr()` returns the same address as
/// `stable_ptr()`, valid for writes of `bytes_total()` bytes while the buffer is alive (moves
/// included), and `set_init(n)` for `n <= bytes_total()` makes `bytes_init()` report what the
/// method documents (for the types here: exactly `n`, except for [`Slice`]).
///
/// ```
/// use spindle_core::buf::{IoBuf, IoBufMut};
/// let mut v: Vec<u8> = Vec::with_capacity(4);
/// // SAFETY: two bytes are written through the stable pointer before they are marked initialized.
/// unsafe {
///     v.stable_mut_ptr().write(b'o');
///     v.stable_mut_ptr().add(1).write(b'k');
///     v.set_init(2);
/// }
/// assert_eq!(v, b"ok");
/// ```
pub unsafe trait IoBufMut: IoBuf {
    /// A mutable pointer to the first byte, stable across moves (see [`IoBuf`]'s contract).
    ///
    /// ```
    /// use spindle_core::buf::{IoBuf, IoBufMut};
    /// let mut v = vec![0u8; 2];
    /// assert_eq!(v.stable_mut_ptr() as *const u8, v.stable_ptr());
    /// ```
    fn stable_mut_ptr(&mut self) -> *mut u8;

    /// Records that the first `n` bytes are initialized: after a read of `n` bytes into the start
    /// of the buffer, the buffer holds exactly those bytes (a `Vec`'s length becomes `n`; buffers
    /// with a fixed length, like `Box<[u8]>`, are always fully initialized and keep it).
    ///
    /// # Safety
    /// `n <= bytes_total()`, and the first `n` bytes have been initialized (written through
    /// [`stable_mut_ptr`](IoBufMut::stable_mut_ptr) or already initialized).
    ///
    /// ```
    /// use spindle_core::buf::{IoBuf, IoBufMut};
    /// let mut v = b"hello".to_vec();
    /// // SAFETY: 2 <= 5 bytes, all initialized.
    /// unsafe { v.set_init(2) };
    /// assert_eq!(v, b"he");
    /// ```
    unsafe fn set_init(&mut self, n: usize);
}

// SAFETY: a Vec's bytes live in a heap allocation (or a dangling, never-dereferenced pointer for
// capacity 0) that moving the Vec does not move; `len <= capacity`, the first `len` initialized.
unsafe impl IoBuf for Vec<u8> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

// SAFETY: the pointer is the heap allocation's, valid for `capacity()` writes; `set_init` sets
// the length, which the caller guarantees is initialized and within capacity.
unsafe impl IoBufMut for Vec<u8> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, n: usize) {
        debug_assert!(n <= self.capacity());
        // SAFETY: the caller guarantees `n <= capacity` and that the first `n` bytes are initialized.
        unsafe { self.set_len(n) }
    }
}

// SAFETY: a boxed slice's bytes are on the heap, fully initialized, and do not move with the box.
unsafe impl IoBuf for Box<[u8]> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: same allocation, writable through the unique box; it is always fully initialized, so
// `set_init` has nothing to record.
unsafe impl IoBufMut for Box<[u8]> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, _n: usize) {}
}

// SAFETY: `'static` data never moves or is freed; a shared reference is Send and fully initialized.
unsafe impl IoBuf for &'static [u8] {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: as for `&'static [u8]`: the str's bytes are `'static` and initialized.
unsafe impl IoBuf for &'static str {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

// SAFETY: a String is a Vec<u8> inside: heap bytes that do not move with it. Only `IoBuf` (no
// writes), so its UTF-8 invariant is never at risk.
unsafe impl IoBuf for String {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

#[cfg(feature = "bytes")]
// SAFETY: `Bytes` points at heap or `'static` memory shared by reference count; moving the handle
// does not move the bytes, which are immutable and fully initialized.
unsafe impl IoBuf for bytes::Bytes {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.len()
    }
}

#[cfg(feature = "bytes")]
// SAFETY: `BytesMut` owns a unique view of a heap allocation that does not move with the handle;
// `len <= capacity` and the first `len` bytes are initialized.
unsafe impl IoBuf for bytes::BytesMut {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
}

#[cfg(feature = "bytes")]
// SAFETY: the view is unique, so writing through it is sound; `set_init` sets the length, which the
// caller guarantees is within capacity and initialized.
unsafe impl IoBufMut for bytes::BytesMut {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, n: usize) {
        debug_assert!(n <= self.capacity());
        // SAFETY: the caller guarantees `n <= capacity` and that the first `n` bytes are initialized.
        unsafe { self.set_len(n) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn vec_lengths_and_set_init() {
        let mut v = Vec::with_capacity(8);
        v.push(1u8);
        assert_eq!((v.bytes_init(), v.bytes_total()), (1, v.capacity()));
        // SAFETY: 3 bytes written before being marked initialized.
        unsafe {
            core::ptr::copy_nonoverlapping([7u8, 8, 9].as_ptr(), v.stable_mut_ptr(), 3);
            v.set_init(3);
        }
        assert_eq!(v, [7, 8, 9]);
    }

    #[test]
    fn boxed_and_static() {
        let mut b: Box<[u8]> = vec![1u8, 2, 3].into_boxed_slice();
        assert_eq!((b.bytes_init(), b.bytes_total()), (3, 3));
        // SAFETY: a box is always fully initialized.
        unsafe { b.set_init(1) };
        assert_eq!(b.bytes_init(), 3);
        let s: &'static str = "hey";
        assert_eq!(s.slice(1..).len(), 2);
        assert_eq!(String::from("abc").bytes_init(), 3);
    }

    #[test]
    fn stable_across_moves() {
        let v = vec![0u8; 100];
        let p = v.stable_ptr();
        let b = alloc::boxed::Box::new(v);
        assert_eq!(b.stable_ptr(), p);
    }

    #[test]
    #[should_panic(expected = "past the buffer's capacity")]
    fn slice_out_of_bounds_panics() {
        let _ = vec![0u8; 3].slice(..4);
    }

    #[test]
    #[should_panic(expected = "starts at 2 but ends at 1")]
    fn slice_reversed_panics() {
        #[allow(clippy::reversed_empty_ranges)]
        let _ = vec![0u8; 3].slice(2..1);
    }

    #[cfg(feature = "bytes")]
    #[test]
    fn bytes_types() {
        let mut m = bytes::BytesMut::with_capacity(10);
        m.extend_from_slice(b"ab");
        assert_eq!((m.bytes_init(), m.bytes_total() >= 10), (2, true));
        // SAFETY: 1 <= capacity and initialized.
        unsafe { m.set_init(1) };
        assert_eq!(&m[..], b"a");
        let b = bytes::Bytes::from_static(b"xyz");
        // `Bytes` has an inherent `slice` (returning `Bytes`); the trait's is reached by path.
        assert_eq!(&IoBuf::slice(b, 1..)[..], b"yz");
    }
}
