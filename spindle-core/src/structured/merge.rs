//! `stream::merge` and the `repeat` streams that replace `select!` loops.
//!
//! A `select!` in a loop creates each branch's future anew on every iteration and drops the ones
//! that lost, half-done: a half-read frame, a message taken from a channel but not yet returned.
//! The replacement keeps every in-flight operation alive between iterations: turn each event
//! source into a stream ([`repeat`] for "do this op again and again", [`repeat_with`] when the op
//! needs `&mut` state), [`merge`] them, and loop over the merged stream. A branch's current
//! future is only ever polled or kept; it is dropped only with the whole `Merge`.
//!
//! `Merge` polls only the branches that were woken, each with its own waker, and serves them in
//! wake order (after yielding an item from a branch it queues that branch behind the others).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use futures_core::Stream;

use super::current::cancel_requested;
use super::wake_set::WakeSet;

/// Streams merged by [`merge`]: every branch yields the same item type.
pub trait MergeBranches {
    /// The item type.
    type Item;
    /// Number of branches.
    fn count(&self) -> usize;
    /// Polls branch `i` for its next item.
    fn poll_next_at(self: Pin<&mut Self>, i: usize, cx: &mut Context<'_>) -> Poll<Option<Self::Item>>;
}

/// Converts a tuple (up to 12), array or `Vec` of streams into merge branches.
pub trait IntoMerge {
    /// The branches.
    type Branches: MergeBranches;
    /// Converts.
    fn into_branches(self) -> Self::Branches;
}

/// Merges streams into one that yields each item as soon as any stream has it; it ends when
/// every stream has ended. Only woken streams are polled (per-branch wakers).
///
/// # Cancel safety
/// Cancel safe as a whole: `next()` takes nothing out of a branch until it returns it, and the
/// branches' in-flight futures stay inside the `Merge` between calls. Dropping the `Merge` drops
/// every branch.
///
/// ```
/// use spindle_core::structured::{merge, repeat};
/// use spindle::sync::mpsc;
/// spindle::block_on(async {
///     let (tx_a, mut rx_a) = mpsc::unbounded_channel::<u32>();
///     let (tx_b, mut rx_b) = mpsc::unbounded_channel::<u32>();
///     tx_a.send(1).unwrap();
///     tx_b.send(10).unwrap();
///     drop((tx_a, tx_b));
///     let a = spindle_core::structured::repeat_with(&mut rx_a, |rx| async move { (rx.recv().await, rx) });
///     let b = spindle_core::structured::repeat_with(&mut rx_b, |rx| async move { (rx.recv().await, rx) });
///     let mut events = merge((a, b));
///     let mut sum = 0;
///     while let Some(Some(v)) = events.next().await {
///         sum += v;
///         if sum == 11 {
///             break;
///         }
///     }
///     assert_eq!(sum, 11);
///     # let _ = repeat(|| async { 1 });
/// });
/// ```
pub fn merge<M: IntoMerge>(streams: M) -> Merge<M::Branches> {
    let branches = Box::pin(streams.into_branches());
    let n = branches.count();
    Merge { branches, set: None, ended: alloc::vec![false; n], live: n, cancel_seen: false }
}

/// The stream of [`merge`].
#[must_use = "streams do nothing unless polled"]
pub struct Merge<B> {
    branches: Pin<Box<B>>,
    set: Option<WakeSet>,
    ended: Vec<bool>,
    live: usize,
    cancel_seen: bool,
}

impl<B: MergeBranches> Merge<B> {
    /// The next item, or `None` once every stream has ended.
    ///
    /// ```
    /// use spindle_core::structured::merge;
    /// spindle::block_on(async {
    ///     let mut m = merge(vec![futures::stream::iter(vec![1, 2]), futures::stream::iter(vec![3])]);
    ///     let mut all = Vec::new();
    ///     while let Some(x) = m.next().await {
    ///         all.push(x);
    ///     }
    ///     all.sort();
    ///     assert_eq!(all, [1, 2, 3]);
    /// });
    /// ```
    // An async `next`, as `StreamExt::next`, not an iterator's.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Next<'_, B> {
        Next { merge: self }
    }

    fn poll_next_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<B::Item>> {
        if self.live == 0 {
            return Poll::Ready(None);
        }
        let n = self.ended.len();
        let set = self.set.get_or_insert_with(|| WakeSet::new_from(n, 0));
        set.register(cx.waker());
        if !self.cancel_seen && cancel_requested() {
            self.cancel_seen = true;
            set.wake_all();
        }
        let (branches, ended, live) = (&mut self.branches, &mut self.ended, &mut self.live);
        let mut out = None;
        set.drain(|i, w| {
            if ended[i] {
                return true;
            }
            match branches.as_mut().poll_next_at(i, &mut Context::from_waker(w)) {
                Poll::Ready(Some(item)) => {
                    // It may have more: queue it again, behind the branches already woken.
                    w.wake_by_ref();
                    out = Some(item);
                    false
                }
                Poll::Ready(None) => {
                    ended[i] = true;
                    *live -= 1;
                    true
                }
                Poll::Pending => true,
            }
        });
        match out {
            Some(item) => Poll::Ready(Some(item)),
            None if self.live == 0 => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

impl<B: MergeBranches> Stream for Merge<B> {
    type Item = B::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<B::Item>> {
        self.get_mut().poll_next_item(cx)
    }
}

impl<B> Unpin for Merge<B> {}

/// The future of [`Merge::next`].
#[must_use = "futures do nothing unless polled"]
pub struct Next<'a, B> {
    merge: &'a mut Merge<B>,
}

impl<B: MergeBranches> Future for Next<'_, B> {
    type Output = Option<B::Item>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.merge.poll_next_item(cx)
    }
}

/// Merge branches in a boxed slice (arrays and `Vec`s).
pub struct SliceMerge<S>(Pin<Box<[S]>>);

impl<S: Stream> MergeBranches for SliceMerge<S> {
    type Item = S::Item;
    fn count(&self) -> usize {
        self.0.len()
    }
    fn poll_next_at(mut self: Pin<&mut Self>, i: usize, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        // SAFETY: the elements of the pinned slice are pinned; we never move them.
        unsafe { self.0.as_mut().map_unchecked_mut(|s| &mut s[i]) }.poll_next(cx)
    }
}

impl<S: Stream> IntoMerge for Vec<S> {
    type Branches = SliceMerge<S>;
    fn into_branches(self) -> SliceMerge<S> {
        SliceMerge(Box::into_pin(self.into_boxed_slice()))
    }
}

impl<S: Stream, const N: usize> IntoMerge for [S; N] {
    type Branches = SliceMerge<S>;
    fn into_branches(self) -> SliceMerge<S> {
        SliceMerge(Box::into_pin(Vec::from(self).into_boxed_slice()))
    }
}

macro_rules! tuples {
    ($( ($($S:ident $i:tt),+) )+) => { $(
        impl<T, $($S: Stream<Item = T>),+> IntoMerge for ($($S,)+) {
            type Branches = ($($S,)+);
            fn into_branches(self) -> Self::Branches {
                self
            }
        }

        impl<T, $($S: Stream<Item = T>),+> MergeBranches for ($($S,)+) {
            type Item = T;
            fn count(&self) -> usize {
                count!($($S)+)
            }
            fn poll_next_at(self: Pin<&mut Self>, i: usize, cx: &mut Context<'_>) -> Poll<Option<T>> {
                // SAFETY: the fields are structurally pinned: never moved while pinned.
                let this = unsafe { self.get_unchecked_mut() };
                match i {
                    // SAFETY: as above.
                    $( $i => unsafe { Pin::new_unchecked(&mut this.$i) }.poll_next(cx), )+
                    _ => unreachable!("branch index out of range"),
                }
            }
        }
    )+ };
}

tuples! {
    (A 0)
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
    (A 0, B 1, C 2, D 3, E 4)
    (A 0, B 1, C 2, D 3, E 4, F 5)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11)
}

/// An endless stream of the outputs of `op()`, run one after another: the next op starts only
/// when the stream is polled after the previous output was taken, and an op in flight is kept
/// (never dropped and restarted) between polls.
///
/// ```
/// use spindle_core::structured::repeat;
/// spindle::block_on(async {
///     let mut n = 0;
///     let counter = std::sync::atomic::AtomicU32::new(0);
///     let mut ticks = spindle_core::structured::merge((repeat(|| async {
///         counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
///     }),));
///     while let Some(i) = ticks.next().await {
///         n += i;
///         if i == 3 {
///             break;
///         }
///     }
///     assert_eq!(n, 6);
/// });
/// ```
pub fn repeat<F, Fut>(op: F) -> Repeat<F, Fut>
where
    F: FnMut() -> Fut,
    Fut: Future,
{
    Repeat { op, fut: None }
}

pin_project_lite::pin_project! {
    /// The stream of [`repeat`].
    #[must_use = "streams do nothing unless polled"]
    pub struct Repeat<F, Fut> {
        op: F,
        #[pin]
        fut: Option<Fut>,
    }
}

impl<F, Fut> Stream for Repeat<F, Fut>
where
    F: FnMut() -> Fut,
    Fut: Future,
{
    type Item = Fut::Output;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Fut::Output>> {
        let mut this = self.project();
        if this.fut.is_none() {
            this.fut.set(Some((this.op)()));
        }
        let out = match this.fut.as_mut().as_pin_mut() {
            Some(f) => core::task::ready!(f.poll(cx)),
            None => unreachable!("just set"),
        };
        this.fut.set(None);
        Poll::Ready(Some(out))
    }
}

/// Like [`repeat`], for ops that need `&mut` state (a receiver, a reader): the op takes the state
/// and gives it back with its output. The state lives inside the op while it runs, so an op in
/// flight is never dropped between polls, and nothing it has read is lost.
///
/// ```
/// use spindle_core::structured::{merge, repeat_with};
/// use spindle::sync::mpsc;
/// spindle::block_on(async {
///     let (tx, mut rx) = mpsc::unbounded_channel::<u8>();
///     tx.send(5).unwrap();
///     drop(tx);
///     let mut s = merge((repeat_with(&mut rx, |rx| async move { (rx.recv().await, rx) }),));
///     assert_eq!(s.next().await, Some(Some(5)));
///     assert_eq!(s.next().await, Some(None)); // the channel closed; the repeat itself never ends
/// });
/// ```
pub fn repeat_with<S, F, Fut, T>(state: S, op: F) -> RepeatWith<S, F, Fut>
where
    F: FnMut(S) -> Fut,
    Fut: Future<Output = (T, S)>,
{
    RepeatWith { state: Some(state), op, fut: None }
}

pin_project_lite::pin_project! {
    /// The stream of [`repeat_with`].
    #[must_use = "streams do nothing unless polled"]
    pub struct RepeatWith<S, F, Fut> {
        state: Option<S>,
        op: F,
        #[pin]
        fut: Option<Fut>,
    }
}

impl<S, F, Fut, T> Stream for RepeatWith<S, F, Fut>
where
    F: FnMut(S) -> Fut,
    Fut: Future<Output = (T, S)>,
{
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut this = self.project();
        if this.fut.is_none() {
            let state = this.state.take().expect("spindle: RepeatWith lost its state (an op panicked)");
            this.fut.set(Some((this.op)(state)));
        }
        let (out, state) = match this.fut.as_mut().as_pin_mut() {
            Some(f) => core::task::ready!(f.poll(cx)),
            None => unreachable!("just set"),
        };
        this.fut.set(None);
        *this.state = Some(state);
        Poll::Ready(Some(out))
    }
}
