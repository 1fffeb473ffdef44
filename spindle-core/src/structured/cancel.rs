//! [`CancelToken`]: hierarchical cancellation, and the futures that make a token current.
//!
//! # State word
//!
//! A token node's state is one bit, [`CANCELLED`], set once and never cleared. Cancelling a node
//! sets it, wakes the node's `cancelled()` waiters (a [`Notify`]), runs the node's hook (scopes
//! and groups use it to wake the futures they poll) and then does the same for every live
//! child, iteratively (no recursion, so deep trees cannot overflow the stack).
//!
//! Children are kept as `Weak` references in the parent's slab, under the parent's lock; a
//! child removes itself when its last handle drops. A child created under a cancelled parent
//! starts cancelled (checked under the parent's lock, so it cannot miss a concurrent cancel).

use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::current;
use crate::loom::{AtomicUsize, Ordering::*};
use crate::sync::atomic_waker::AtomicWaker;
use crate::sync::lock::Lock;
use crate::sync::Notify;

/// The token was cancelled (set once, never cleared).
pub(crate) const CANCELLED: usize = 1 << 0;

/// Something to run when a token node is cancelled (a scope or group waking what it polls).
pub(crate) trait CancelHook: Send + Sync + 'static {
    /// Called once, on the cancelling thread, after the node's bit is set. Must not block.
    fn on_cancel(&self);
}

pub(crate) struct Node {
    state: AtomicUsize,
    waiters: Notify,
    children: Lock<Slab>,
    /// The parent and our key in its slab.
    parent: Option<(Arc<Node>, usize)>,
    hook: Option<Weak<dyn CancelHook>>,
}

/// Children by key; freed keys are reused.
struct Slab {
    entries: Vec<Option<Weak<Node>>>,
    free: Vec<usize>,
}

impl Node {
    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.state.load(Acquire) & CANCELLED != 0
    }

    fn root(hook: Option<Weak<dyn CancelHook>>) -> Arc<Node> {
        Arc::new(Node {
            state: AtomicUsize::new(0),
            waiters: Notify::new(),
            children: Lock::new(Slab { entries: Vec::new(), free: Vec::new() }),
            parent: None,
            hook,
        })
    }

    fn child(parent: &Arc<Node>, hook: Option<Weak<dyn CancelHook>>) -> Arc<Node> {
        let mut slab = parent.children.lock();
        let key = slab.free.pop().unwrap_or(slab.entries.len());
        let node = Arc::new(Node {
            // Read under the lock: a cancel that set the bit before we took the lock is seen
            // here; one that sets it later takes the lock after us and finds us in the slab.
            state: AtomicUsize::new(parent.state.load(Acquire) & CANCELLED),
            waiters: Notify::new(),
            children: Lock::new(Slab { entries: Vec::new(), free: Vec::new() }),
            parent: Some((parent.clone(), key)),
            hook,
        });
        let weak = Some(Arc::downgrade(&node));
        if key == slab.entries.len() {
            slab.entries.push(weak);
        } else {
            slab.entries[key] = weak;
        }
        node
    }

    fn cancel(self: &Arc<Node>) {
        let mut stack: Vec<Arc<Node>> = Vec::new();
        let mut next = Some(self.clone());
        while let Some(node) = next.take().or_else(|| stack.pop()) {
            if node.state.fetch_or(CANCELLED, AcqRel) & CANCELLED != 0 {
                continue;
            }
            node.waiters.notify_waiters();
            if let Some(hook) = node.hook.as_ref().and_then(Weak::upgrade) {
                hook.on_cancel();
            }
            let slab = node.children.lock();
            stack.extend(slab.entries.iter().flatten().filter_map(Weak::upgrade));
            drop(slab);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some((parent, key)) = &self.parent {
            let mut slab = parent.children.lock();
            slab.entries[*key] = None;
            slab.free.push(*key);
        }
    }
}

/// A hierarchical cancellation token.
///
/// Clones share one token. [`child`](Self::child) makes a token that is cancelled when its parent
/// is (but cancelling a child leaves the parent alone). Cancellation is *soft*: it is a request
/// that code observes at its next await, through [`cancelled`](Self::cancelled),
/// [`checkpoint`](super::checkpoint) or, when the token is *current*, spindle's own leaf futures
/// (timers complete, channel receives end, bounded sends give the message back). Scopes, task
/// groups and deadlines make their token current while they poll; [`with_token`] does it for any
/// future.
///
/// ```
/// use spindle_core::structured::CancelToken;
/// let parent = CancelToken::new();
/// let child = parent.child();
/// parent.cancel();
/// assert!(child.is_cancelled());
/// spindle::block_on(child.cancelled()); // completes at once
/// ```
#[derive(Clone)]
pub struct CancelToken {
    pub(crate) node: Arc<Node>,
}

impl CancelToken {
    /// A new root token, not cancelled.
    ///
    /// ```
    /// let t = spindle_core::structured::CancelToken::new();
    /// assert!(!t.is_cancelled());
    /// ```
    pub fn new() -> CancelToken {
        CancelToken { node: Node::root(None) }
    }

    /// A child of the current token (see [`cancel_requested`](super::cancel_requested)), or a
    /// new root token if none is current. Scopes and groups build their tokens this way.
    ///
    /// ```
    /// use spindle_core::structured::{with_token, CancelToken};
    /// let outer = CancelToken::new();
    /// let inner = spindle::block_on(with_token(outer.clone(), async { CancelToken::child_of_current() }));
    /// outer.cancel();
    /// assert!(inner.is_cancelled());
    /// ```
    pub fn child_of_current() -> CancelToken {
        CancelToken { node: Self::node_under_current(None) }
    }

    pub(crate) fn node_under_current(hook: Option<Weak<dyn CancelHook>>) -> Arc<Node> {
        let cur = current::get();
        if cur.is_null() {
            Node::root(hook)
        } else {
            // SAFETY: a current pointer is kept alive by whoever made it current, for as long as
            // it is current; we take a new strong reference before that ends. Current nodes are
            // always owned by an `Arc` (`CancelToken`s and scopes hold them only that way).
            let parent = unsafe {
                Arc::increment_strong_count(cur);
                Arc::from_raw(cur)
            };
            Node::child(&parent, hook)
        }
    }

    pub(crate) fn with_hook(parent: Option<&CancelToken>, hook: Weak<dyn CancelHook>) -> CancelToken {
        let node = match parent {
            Some(p) => Node::child(&p.node, Some(hook)),
            None => Self::node_under_current(Some(hook)),
        };
        CancelToken { node }
    }

    /// A child token: cancelled whenever this one is, and cancellable on its own.
    ///
    /// ```
    /// let parent = spindle_core::structured::CancelToken::new();
    /// let child = parent.child();
    /// child.cancel();
    /// assert!(!parent.is_cancelled());
    /// ```
    pub fn child(&self) -> CancelToken {
        CancelToken { node: Node::child(&self.node, None) }
    }

    /// Cancels this token and all its descendants. Idempotent.
    ///
    /// ```
    /// let t = spindle_core::structured::CancelToken::new();
    /// t.cancel();
    /// t.cancel();
    /// assert!(t.is_cancelled());
    /// ```
    pub fn cancel(&self) {
        self.node.cancel();
    }

    /// Whether the token was cancelled.
    ///
    /// ```
    /// let t = spindle_core::structured::CancelToken::new();
    /// assert!(!t.is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.node.is_cancelled()
    }

    /// Completes once the token is cancelled.
    ///
    /// # Cancel safety
    /// Cancel safe: it consumes nothing.
    ///
    /// ```
    /// use std::sync::Arc;
    /// spindle::block_on(async {
    ///     let t = spindle_core::structured::CancelToken::new();
    ///     let t2 = t.clone();
    ///     let h = spindle::spawn(async move { t2.cancelled().await; 7 });
    ///     t.cancel();
    ///     assert_eq!(h.await.unwrap(), 7);
    /// });
    /// ```
    pub async fn cancelled(&self) {
        loop {
            // Created before the check: a cancel in between still completes it.
            let notified = self.node.waiters.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// Whether two handles are the same token.
    ///
    /// ```
    /// let t = spindle_core::structured::CancelToken::new();
    /// assert!(t.same_token(&t.clone()));
    /// assert!(!t.same_token(&t.child()));
    /// ```
    pub fn same_token(&self, other: &CancelToken) -> bool {
        Arc::ptr_eq(&self.node, &other.node)
    }

    pub(crate) fn as_ptr(&self) -> *const Node {
        Arc::as_ptr(&self.node)
    }
}

impl Default for CancelToken {
    fn default() -> Self {
        CancelToken::new()
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelToken").field("cancelled", &self.is_cancelled()).finish()
    }
}

/// The error of a wait that was cut short by cancellation.
///
/// ```
/// let e = spindle_core::structured::Cancelled;
/// assert_eq!(e.to_string(), "operation cancelled");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("operation cancelled")
    }
}

impl core::error::Error for Cancelled {}

/// Polls `future` with `token` current, so spindle's leaf futures inside it observe the token's
/// cancellation at their next await; wakes the future when the token is cancelled.
///
/// ```
/// use std::time::Duration;
/// use spindle_core::structured::{with_token, CancelToken};
/// spindle::block_on(async {
///     let token = CancelToken::new();
///     let t2 = token.clone();
///     spindle::spawn(async move { t2.cancel() });
///     // The hour-long sleep returns early: the token is current while it is polled.
///     with_token(token, spindle::time::sleep(Duration::from_secs(3600))).await;
/// });
/// ```
pub fn with_token<F: Future>(token: CancelToken, future: F) -> WithToken<F> {
    WithToken { future, token: Some(token), watch: None }
}

/// Like [`with_token`] with a fresh child of the token current at the *first poll* (not at
/// construction, so a deadline built as an argument still nests under the scope that polls it).
pub(crate) fn with_child_token<F: Future>(future: F) -> WithToken<F> {
    WithToken { future, token: None, watch: None }
}

pin_project_lite::pin_project! {
    /// The future of [`with_token`].
    #[must_use = "futures do nothing unless polled"]
    pub struct WithToken<F> {
        #[pin]
        future: F,
        // `None` until the first poll for `with_child_token`.
        token: Option<CancelToken>,
        // A child node of `token` whose hook wakes us, created at the first `Pending`; dropping
        // it (with us) unregisters it from the token.
        watch: Option<(Arc<Node>, Arc<WakeOnCancel>)>,
    }
}

/// The hook of a [`WithToken`]'s watch node: wakes the task that last polled it.
pub(crate) struct WakeOnCancel(AtomicWaker);

impl CancelHook for WakeOnCancel {
    fn on_cancel(&self) {
        self.0.wake();
    }
}

impl<F> WithToken<F> {
    /// The token (`None` before the first poll of a deadline's future).
    pub fn token(&self) -> Option<&CancelToken> {
        self.token.as_ref()
    }
}

impl<F: Future> Future for WithToken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let token = this.token.get_or_insert_with(CancelToken::child_of_current);
        let out = {
            let _cur = current::enter(token.as_ptr());
            this.future.poll(cx)
        };
        if out.is_pending() && !token.is_cancelled() {
            let (_, hook) = this.watch.get_or_insert_with(|| {
                let hook = Arc::new(WakeOnCancel(AtomicWaker::new()));
                let weak: Weak<dyn CancelHook> = Arc::downgrade(&hook) as Weak<dyn CancelHook>;
                (Node::child(&token.node, Some(weak)), hook)
            });
            hook.0.register(cx.waker());
            // A cancel between the check above and the registration found no waker: look again.
            if token.is_cancelled() {
                cx.waker().wake_by_ref();
            }
        }
        out
    }
}

/// Polls `future` with no token current, so outer cancellation does not reach the spindle
/// leaf futures inside it: for cleanup that must run to the end. Give it its own time limit
/// (`spindle::structured::with_deadline` or a `timeout`) so it cannot hang its scope.
///
/// Shielding is soft-cancellation only: dropping the shield (a hard cancel) still drops `future`.
///
/// ```
/// use spindle_core::structured::{cancel_requested, shield, with_token, CancelToken};
/// let token = CancelToken::new();
/// token.cancel();
/// let (outer, inner) = spindle::block_on(with_token(token, async {
///     (cancel_requested(), shield(async { cancel_requested() }).await)
/// }));
/// assert!(outer && !inner);
/// ```
pub fn shield<F: Future>(future: F) -> Shield<F> {
    Shield { future }
}

pin_project_lite::pin_project! {
    /// The future of [`shield`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Shield<F> {
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Shield<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _cur = current::enter(core::ptr::null());
        self.project().future.poll(cx)
    }
}

/// A cancellation point for long computations: `Err(Cancelled)` if the current token was
/// cancelled, else spends one unit of the cooperative budget (yielding when it is used up).
///
/// ```
/// use spindle_core::structured::{checkpoint, with_token, CancelToken};
/// spindle::block_on(async {
///     let token = CancelToken::new();
///     let work = with_token(token.clone(), async {
///         for i in 0u64.. {
///             checkpoint().await?; // stops here once cancelled
///             if i == 1000 {
///                 token.cancel();
///             }
///         }
///         Ok::<(), spindle_core::structured::Cancelled>(())
///     });
///     assert!(work.await.is_err());
/// });
/// ```
pub fn checkpoint() -> Checkpoint {
    Checkpoint { _private: () }
}

/// The future of [`checkpoint`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Checkpoint {
    _private: (),
}

impl Future for Checkpoint {
    type Output = Result<(), Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if current::cancel_requested() {
            return Poll::Ready(Err(Cancelled));
        }
        crate::coop::poll_proceed(cx).map(Ok)
    }
}

/// Polls `future`; if it would wait (`Pending`) while the current token is cancelled, the wait
/// ends with `Err(Cancelled)` (the future is dropped with the `OrCancelled`). A future that is
/// ready wins, so nothing ready is lost. This is how leaf waits without an error type of their
/// own (a bounded send's capacity wait) become cancellation points.
///
/// ```
/// use spindle_core::structured::{or_cancelled, with_token, CancelToken, Cancelled};
/// let token = CancelToken::new();
/// token.cancel();
/// let r = spindle::block_on(with_token(token, or_cancelled(std::future::pending::<()>())));
/// assert_eq!(r, Err(Cancelled));
/// ```
pub fn or_cancelled<F: Future>(future: F) -> OrCancelled<F> {
    OrCancelled { future }
}

pin_project_lite::pin_project! {
    /// The future of [`or_cancelled`].
    #[must_use = "futures do nothing unless polled"]
    pub struct OrCancelled<F> {
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for OrCancelled<F> {
    type Output = Result<F::Output, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().future.poll(cx) {
            Poll::Ready(v) => Poll::Ready(Ok(v)),
            Poll::Pending if current::cancel_requested() => Poll::Ready(Err(Cancelled)),
            Poll::Pending => Poll::Pending,
        }
    }
}
