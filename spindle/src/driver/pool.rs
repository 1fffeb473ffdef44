//! Runtime-owned receive buffers: [`BufPool`] and the [`PooledBuf`] it hands out.
//!
//! A pool is [`POOL_BUFS`] buffers of [`POOL_BUF_SIZE`] bytes in one anonymous mapping, backed
//! either by
//!
//! - **a provided-buffer ring** (io_uring, [`super::uring::bufring`]): the kernel picks a free
//!   buffer when data arrives for a `RECV` with buffer select and names it in the CQE; one pool
//!   per io_uring reactor (per worker), or
//! - **a userspace free list** (epoll, or io_uring without provided-buffer rings): a receive takes
//!   a buffer from the list, `recv`s into it, and puts it back at once if nothing came. One pool
//!   per thread that receives (a worker, the fallback reactor's users).
//!
//! Either way a received buffer is a [`PooledBuf`] owning its bytes until dropped; dropping it
//! (on any thread) gives the buffer back to its own pool — into the ring with a tail bump, or onto
//! the free list — and wakes receivers waiting for a free buffer.
//!
//! **Exhaustion.** The pool does not grow: a pool whose buffers are all held reports `ENOBUFS`
//! (`io::ErrorKind::OutOfMemory` with a message saying how to recover) to the receive that hit
//! it, once; the next receive on that socket waits until a buffer comes back. Memory therefore
//! stays bounded by what the application holds, and a slow consumer shows up as an error instead
//! of unbounded growth.

use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use spindle_core::loom::unmodelled::{AtomicUsize, Ordering::*};

use super::uring::bufring::BufRing;
use super::waiters::{WaitKey, WaitList};

/// Buffers per pool (a power of two: the provided-buffer ring's size).
pub(crate) const POOL_BUFS: u16 = 256;
/// Bytes per buffer.
pub(crate) const POOL_BUF_SIZE: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A private anonymous mapping (page-aligned), unmapped on drop.
pub(crate) struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a region is plain memory with no thread affinity; who may access which bytes when is
// decided by its owners (the pool's buffer-ownership rules, see the module docs).
unsafe impl Send for Region {}
// SAFETY: as above; `&Region` only hands out the raw pointer.
unsafe impl Sync for Region {}

impl Region {
    /// Maps `len` zeroed bytes.
    pub(crate) fn new(len: usize) -> io::Result<Region> {
        // SAFETY: an anonymous private mapping at an address of the kernel's choice touches no
        // existing memory; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("spindle: cannot map {len} bytes for a buffer pool: {e}")));
        }
        Ok(Region { ptr: NonNull::new(p.cast()).expect("mmap returned null"), len })
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and nothing uses it any more (its owner is being dropped,
        // which the pool only allows once no request can touch it).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

enum Backing {
    /// Free buffer ids (userspace pool).
    List(Mutex<Vec<u16>>),
    /// A provided-buffer ring the kernel picks from.
    Ring(BufRing),
}

/// A pool of fixed-size receive buffers (see the module docs). Shared through `Arc`: the reactor
/// (or thread) it belongs to, every op that may pick from it and every [`PooledBuf`] hold one.
#[doc(hidden)]
pub struct BufPool {
    mem: Region,
    backing: Backing,
    /// Buffers not handed out (in the ring or on the free list).
    available: AtomicUsize,
    /// Receivers waiting for a buffer to come back (they leave when they give up).
    waiters: WaitList,
}

/// A snapshot of a pool's counters (for tests and diagnostics).
///
/// ```
/// # spindle::block_on(async {
/// # use futures::AsyncWriteExt;
/// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// # let mut c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
/// # let (s, _) = l.accept().await.unwrap();
/// c.write_all(b"hi").await.unwrap();
/// let buf = s.recv_pooled().await.unwrap();
/// let stats = buf.pool_stats().unwrap();
/// assert!(stats.available < stats.total); // `buf` is out
/// # });
/// ```
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers in the pool.
    pub total: usize,
    /// Buffers free (not held by a `PooledBuf` or queued for a socket).
    pub available: usize,
    /// Bytes per buffer.
    pub buf_size: usize,
    /// Whether the kernel picks the buffers (io_uring provided-buffer ring).
    pub kernel_ring: bool,
}

impl fmt::Debug for BufPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufPool").field("stats", &self.stats()).finish()
    }
}

impl BufPool {
    fn alloc(backing: Backing) -> io::Result<BufPool> {
        Ok(BufPool {
            mem: Region::new(POOL_BUFS as usize * POOL_BUF_SIZE)?,
            backing,
            available: AtomicUsize::new(POOL_BUFS as usize),
            waiters: WaitList::default(),
        })
    }

    /// A userspace pool with every buffer free.
    pub(crate) fn new_list() -> io::Result<Arc<BufPool>> {
        Ok(Arc::new(BufPool::alloc(Backing::List(Mutex::new((0..POOL_BUFS).rev().collect())))?))
    }

    /// A pool backed by `ring`, with every buffer published in it (not yet registered).
    pub(crate) fn with_ring(ring: BufRing) -> io::Result<Arc<BufPool>> {
        let pool = Arc::new(BufPool::alloc(Backing::Ring(ring))?);
        let ring = pool.ring().expect("ring-backed");
        for bid in 0..POOL_BUFS {
            // SAFETY: each buffer is published once, and nothing else uses the fresh mapping.
            unsafe { ring.push(bid, pool.buf_ptr(bid), POOL_BUF_SIZE as u32) };
        }
        Ok(pool)
    }

    /// The provided-buffer ring, for a kernel-backed pool.
    pub(crate) fn ring(&self) -> Option<&BufRing> {
        match &self.backing {
            Backing::Ring(r) => Some(r),
            Backing::List(_) => None,
        }
    }

    fn buf_ptr(&self, bid: u16) -> *mut u8 {
        debug_assert!(bid < POOL_BUFS);
        // SAFETY: `bid < POOL_BUFS`, so the offset is inside the mapping.
        unsafe { self.mem.ptr().add(bid as usize * POOL_BUF_SIZE) }
    }

    /// The counters.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # use futures::AsyncWriteExt;
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// # let mut c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// # let (s, _) = l.accept().await.unwrap();
    /// c.write_all(b"hi").await.unwrap();
    /// let buf = s.recv_pooled().await.unwrap();
    /// let pool = buf.pool().unwrap();
    /// drop(buf); // back to the pool
    /// let stats = pool.stats();
    /// assert_eq!(stats.available, stats.total);
    /// # });
    /// ```
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            total: POOL_BUFS as usize,
            available: self.available.load(Acquire),
            buf_size: POOL_BUF_SIZE,
            kernel_ring: self.ring().is_some(),
        }
    }

    /// Buffers free right now.
    pub(crate) fn available(&self) -> usize {
        self.available.load(Acquire)
    }

    /// Takes a free buffer (userspace pool): an empty `PooledBuf` to receive into.
    pub(crate) fn try_take(self: &Arc<Self>) -> Option<PooledBuf> {
        let Backing::List(free) = &self.backing else { return None };
        let bid = lock(free).pop()?;
        self.available.fetch_sub(1, AcqRel);
        Some(PooledBuf { pool: Some(self.clone()), bid, len: 0 })
    }

    /// The buffer a CQE named (kernel-backed pool), holding its first `len` bytes.
    pub(crate) fn from_kernel(self: &Arc<Self>, bid: u16, len: usize) -> io::Result<PooledBuf> {
        if self.ring().is_none() || bid >= POOL_BUFS || len > POOL_BUF_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("spindle: the kernel reported buffer {bid} with {len} bytes, not a buffer of this pool"),
            ));
        }
        self.available.fetch_sub(1, AcqRel);
        Ok(PooledBuf { pool: Some(self.clone()), bid, len })
    }

    fn recycle(&self, bid: u16) {
        match &self.backing {
            Backing::List(free) => lock(free).push(bid),
            // SAFETY: the buffer's `PooledBuf` is being dropped, so nobody uses its memory any
            // more, and it is not in the ring (it left it when its CQE named it).
            Backing::Ring(r) => unsafe { r.push(bid, self.buf_ptr(bid), POOL_BUF_SIZE as u32) },
        }
        self.available.fetch_add(1, AcqRel);
        self.waiters.wake_all();
    }

    /// Ready once a buffer is free; otherwise wakes `cx` when one comes back. `wait` is the
    /// calling future's place among the waiters: it must [`leave_wait`](Self::leave_wait) when
    /// it gives up.
    pub(crate) fn poll_available(&self, cx: &mut Context<'_>, wait: &mut WaitKey) -> Poll<()> {
        if self.available() > 0 {
            return Poll::Ready(());
        }
        self.waiters.join(wait, cx.waker());
        // A buffer may have come back (and found no waiter) meanwhile.
        if self.available() > 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Callers waiting for a buffer (tests).
    #[cfg(test)]
    pub(crate) fn waiters_len(&self) -> usize {
        self.waiters.len()
    }

    /// Takes a waiter's entry (see [`poll_available`](Self::poll_available)) out of the list.
    pub(crate) fn leave_wait(&self, wait: &mut WaitKey) {
        self.waiters.leave(wait);
    }

    /// The error a receive reports when every buffer is held.
    pub(crate) fn exhausted_error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!(
                "spindle: receive buffer pool exhausted (ENOBUFS): all {POOL_BUFS} buffers of {POOL_BUF_SIZE} bytes \
                 are held by PooledBufs or queued for sockets; drop received buffers to return them \
                 (the next receive waits until one is back)"
            ),
        )
    }
}

thread_local! {
    static LOCAL_POOL: std::cell::OnceCell<Arc<BufPool>> = const { std::cell::OnceCell::new() };
}

/// This thread's userspace pool (created on first use).
pub(crate) fn local_pool() -> io::Result<Arc<BufPool>> {
    LOCAL_POOL.with(|p| {
        if let Some(p) = p.get() {
            return Ok(p.clone());
        }
        let pool = BufPool::new_list()?;
        let _ = p.set(pool.clone());
        Ok(pool)
    })
}

/// A received buffer owned by the runtime's buffer pool: the bytes a pooled receive
/// ([`TcpStream::recv_pooled`](crate::net::TcpStream::recv_pooled),
/// [`recv_stream`](crate::net::TcpStream::recv_stream)) got, in a buffer that goes back to its pool
/// when this value is dropped — on any thread.
///
/// Derefs to `[u8]` (the received bytes; `DerefMut` too, to edit them in place). It implements
/// [`IoBuf`](crate::io::IoBuf), so it can be written out as is (`write_all_owned(buf)`: an echo
/// without a copy). An empty `PooledBuf` from a receive means end of stream. Holding many of them
/// keeps the pool's buffers out: copy out with [`into_vec`](Self::into_vec) what must be kept long.
///
/// ```
/// use spindle::io::AsyncWriteOwned;
/// use spindle::net::{TcpListener, TcpStream};
/// spindle::block_on(async {
///     let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
///     let mut c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
///     let (mut s, _) = l.accept().await.unwrap();
///     let (res, _) = c.write_all_owned(b"ping".to_vec()).await;
///     res.unwrap();
///     let buf = s.recv_pooled().await.unwrap();
///     assert_eq!(&buf[..], b"ping");
///     let (res, _) = s.write_all_owned(buf).await; // echoed from the pool's buffer
///     res.unwrap();
///     let back = c.recv_pooled().await.unwrap();
///     assert_eq!(back.into_vec(), b"ping");
/// });
/// ```
pub struct PooledBuf {
    /// `None` for the empty buffer of end-of-stream (no pool buffer behind it).
    pool: Option<Arc<BufPool>>,
    bid: u16,
    len: usize,
}

impl PooledBuf {
    /// An empty buffer owning nothing (end of stream).
    pub(crate) fn empty() -> PooledBuf {
        PooledBuf { pool: None, bid: 0, len: 0 }
    }

    /// Number of bytes received.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # use futures::AsyncWriteExt;
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// # let mut c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// # let (s, _) = l.accept().await.unwrap();
    /// c.write_all(b"abc").await.unwrap();
    /// let buf = s.recv_pooled().await.unwrap();
    /// assert_eq!(buf.len(), 3);
    /// # });
    /// ```
    #[allow(clippy::len_without_is_empty)] // `is_empty` comes from `[u8]` through Deref
    pub fn len(&self) -> usize {
        self.len
    }

    /// Copies the bytes into a `Vec` and gives the buffer back to its pool at once.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # use futures::AsyncWriteExt;
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// # let mut c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// # let (s, _) = l.accept().await.unwrap();
    /// c.write_all(b"keep me").await.unwrap();
    /// let kept: Vec<u8> = s.recv_pooled().await.unwrap().into_vec();
    /// assert_eq!(kept, b"keep me");
    /// # });
    /// ```
    pub fn into_vec(self) -> Vec<u8> {
        self.to_vec()
    }

    /// The counters of the pool this buffer belongs to (`None` for an end-of-stream buffer).
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # use futures::AsyncWriteExt;
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// # let mut c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// # let (s, _) = l.accept().await.unwrap();
    /// c.write_all(b"hi").await.unwrap();
    /// let buf = s.recv_pooled().await.unwrap();
    /// assert_eq!(buf.pool_stats().unwrap().buf_size, 4096);
    /// # });
    /// ```
    #[doc(hidden)]
    pub fn pool_stats(&self) -> Option<PoolStats> {
        self.pool.as_ref().map(|p| p.stats())
    }

    /// The pool this buffer belongs to (to watch its counters after the buffer is dropped).
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # use futures::AsyncWriteExt;
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// # let mut c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// # let (s, _) = l.accept().await.unwrap();
    /// c.write_all(b"hi").await.unwrap();
    /// let buf = s.recv_pooled().await.unwrap();
    /// let pool = buf.pool().unwrap();
    /// let before = pool.stats().available;
    /// drop(buf);
    /// assert_eq!(pool.stats().available, before + 1);
    /// # });
    /// ```
    #[doc(hidden)]
    pub fn pool(&self) -> Option<Arc<BufPool>> {
        self.pool.clone()
    }

    /// The whole buffer as possibly-uninitialized memory, to receive into (userspace pool).
    pub(crate) fn spare_mut(&mut self) -> &mut [MaybeUninit<u8>] {
        match &self.pool {
            // SAFETY: this value owns buffer `bid` exclusively (it is neither on the free list nor
            // in a ring) and the unique borrow keeps it so for the slice's lifetime.
            Some(p) => unsafe { std::slice::from_raw_parts_mut(p.buf_ptr(self.bid).cast(), POOL_BUF_SIZE) },
            None => &mut [],
        }
    }

    /// Sets how many bytes were received.
    ///
    /// # Safety
    /// The first `n` bytes of the buffer are initialized, and `n` is at most the buffer's size.
    pub(crate) unsafe fn set_len(&mut self, n: usize) {
        self.len = n.min(if self.pool.is_some() { POOL_BUF_SIZE } else { 0 });
    }

    fn ptr(&self) -> *mut u8 {
        match &self.pool {
            Some(p) => p.buf_ptr(self.bid),
            None => NonNull::dangling().as_ptr(),
        }
    }
}

impl Deref for PooledBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes of the buffer were written by the receive that produced
        // this value; the buffer belongs to it alone until it is dropped (the kernel or another
        // receive can only get it back through `recycle`, called from `drop`). An end-of-stream
        // buffer has `len == 0` and a dangling, aligned pointer.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len) }
    }
}

impl DerefMut for PooledBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`; the unique borrow excludes other readers.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.len) }
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for PooledBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBuf").field("len", &self.len).finish_non_exhaustive()
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(p) = self.pool.take() {
            p.recycle(self.bid);
        }
    }
}

// SAFETY: the pointer is the buffer's address inside the pool's mapping, which the `Arc` keeps
// mapped and which does not move with this value; the first `len` bytes are initialized and
// `bytes_total == bytes_init` (a pooled buffer is only written by the receive that fills it).
// It is `Send`, `Unpin` and `'static` (an `Arc`, two integers).
unsafe impl crate::io::IoBuf for PooledBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.len
    }
}
