//! An intrusive doubly linked list of waiters: the nodes live inside the (pinned) futures that
//! wait, so waiting never allocates.
//!
//! Every list lives inside a [`Lock`](super::lock::Lock) and every method must be called with that
//! lock held; a node's links are only read or written under the lock of the list it is in. A node
//! removes itself (from its future's `Drop`) under the same lock, which is why the future must be
//! pinned and why it must unlink before its memory goes away.

use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::loom::UnsafeCell;

/// `(prev, next)` neighbours of a node.
type Neighbours<T> = (Option<NonNull<T>>, Option<NonNull<T>>);

/// The links embedded in a node.
pub(crate) struct Links<T> {
    /// Only touched under the owning list's lock.
    cell: UnsafeCell<Neighbours<T>>,
}

impl<T> Links<T> {
    /// Unlinked links.
    #[inline]
    pub(crate) fn new() -> Links<T> {
        Links { cell: UnsafeCell::new((None, None)) }
    }

    /// # Safety
    /// The caller holds the lock of the list the node is (or may be) in.
    #[inline]
    unsafe fn get(&self) -> Neighbours<T> {
        // SAFETY: the caller holds the list lock, so no one writes concurrently.
        self.cell.with(|p| unsafe { *p })
    }

    /// # Safety
    /// As [`get`](Self::get).
    #[inline]
    unsafe fn set_prev(&self, prev: Option<NonNull<T>>) {
        // SAFETY: the caller holds the list lock, so this is the only access.
        self.cell.with_mut(|p| unsafe { (*p).0 = prev })
    }

    /// # Safety
    /// As [`get`](Self::get).
    #[inline]
    unsafe fn set_next(&self, next: Option<NonNull<T>>) {
        // SAFETY: the caller holds the list lock, so this is the only access.
        self.cell.with_mut(|p| unsafe { (*p).1 = next })
    }
}

/// A type that can be a node of a [`List`].
///
/// # Safety
/// `links` must return the same embedded [`Links`] for a node every time, and a node must stay at
/// the same address while it is in a list (its future is pinned).
pub(crate) unsafe trait Node: Sized {
    /// The node's links.
    fn links(&self) -> &Links<Self>;
}

/// A FIFO list of nodes. Pushing puts a node at the back; waking takes from the front.
pub(crate) struct List<T: Node> {
    head: Option<NonNull<T>>,
    tail: Option<NonNull<T>>,
    _nodes: PhantomData<*const T>,
}

// SAFETY: the list only stores pointers to nodes whose owners synchronise through the lock the
// list lives in; moving the list to another thread moves nothing else.
unsafe impl<T: Node> Send for List<T> {}

impl<T: Node> List<T> {
    /// An empty list.
    pub(crate) const fn new() -> List<T> {
        List { head: None, tail: None, _nodes: PhantomData }
    }

    /// Whether the list is empty.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    /// The first node, if any.
    #[inline]
    pub(crate) fn front(&self) -> Option<NonNull<T>> {
        self.head
    }

    /// The node after `node`.
    ///
    /// # Safety
    /// `node` is in a list whose lock the caller holds.
    #[inline]
    pub(crate) unsafe fn next(node: NonNull<T>) -> Option<NonNull<T>> {
        // SAFETY: `node` is live and we hold the lock (caller).
        unsafe { node.as_ref().links().get().1 }
    }

    /// Appends `node`.
    ///
    /// # Safety
    /// `node` is live, pinned, in no list, and stays live until it is removed; the caller holds
    /// the lock this list lives in.
    pub(crate) unsafe fn push_back(&mut self, node: NonNull<T>) {
        // SAFETY: `node` is live (caller).
        let links = unsafe { node.as_ref() }.links();
        // SAFETY: we hold the list lock (caller).
        unsafe {
            links.set_prev(self.tail);
            links.set_next(None);
        }
        match self.tail {
            // SAFETY: `tail` is in this list, so it is live; we hold the list lock.
            Some(tail) => unsafe { tail.as_ref().links().set_next(Some(node)) },
            None => self.head = Some(node),
        }
        self.tail = Some(node);
    }

    /// Removes and returns the first node.
    ///
    /// # Safety
    /// The caller holds the lock this list lives in.
    pub(crate) unsafe fn pop_front(&mut self) -> Option<NonNull<T>> {
        let node = self.head?;
        // SAFETY: `node` is in this list (live), we hold its lock.
        unsafe { self.unlink(node) };
        Some(node)
    }

    /// Removes and returns the last node.
    ///
    /// # Safety
    /// The caller holds the lock this list lives in.
    pub(crate) unsafe fn pop_back(&mut self) -> Option<NonNull<T>> {
        let node = self.tail?;
        // SAFETY: `node` is in this list (live), we hold its lock.
        unsafe { self.unlink(node) };
        Some(node)
    }

    /// Removes `node` if it is in this list; returns whether it was.
    ///
    /// # Safety
    /// `node` is live and is either in this list or in no list; the caller holds the list's lock.
    pub(crate) unsafe fn remove(&mut self, node: NonNull<T>) -> bool {
        // SAFETY: `node` is live and we hold the lock (caller).
        let (prev, _) = unsafe { node.as_ref().links().get() };
        if prev.is_none() && self.head != Some(node) {
            return false;
        }
        // SAFETY: it is in this list.
        unsafe { self.unlink(node) };
        true
    }

    /// Moves every node of `other` to the back of `self`, in order.
    ///
    /// # Safety
    /// The caller holds the lock both lists live in.
    pub(crate) unsafe fn append(&mut self, other: &mut List<T>) {
        let Some(first) = other.head.take() else { return };
        let last = other.tail.take();
        match self.tail {
            Some(tail) => {
                // SAFETY: both nodes are in lists under the lock we hold, so they are live.
                unsafe {
                    tail.as_ref().links().set_next(Some(first));
                    first.as_ref().links().set_prev(Some(tail));
                }
            }
            None => self.head = Some(first),
        }
        self.tail = last;
    }

    /// # Safety
    /// `node` is in this list; the caller holds the lock.
    unsafe fn unlink(&mut self, node: NonNull<T>) {
        // SAFETY: `node` and its neighbours are in this list, so live; we hold the lock.
        unsafe {
            let links = node.as_ref().links();
            let (prev, next) = links.get();
            match prev {
                Some(p) => p.as_ref().links().set_next(next),
                None => self.head = next,
            }
            match next {
                Some(n) => n.as_ref().links().set_prev(prev),
                None => self.tail = prev,
            }
            links.set_prev(None);
            links.set_next(None);
        }
    }
}
