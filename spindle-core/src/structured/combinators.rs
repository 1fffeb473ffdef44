//! `race`, `join` and `try_join` over tuples, arrays and `Vec`s of futures.
//!
//! All three keep every branch in place and poll only the branches that were woken, each with its
//! own waker ([`WakeSet`]): O(woken) per poll, whatever the number of branches. When the current
//! cancellation token is cancelled they poll every branch once, so the leaf futures inside can
//! observe it.
//!
//! The branch traits ([`RaceBranches`], [`JoinBranches`], [`TryJoinBranches`]) are implemented
//! here for tuples (up to 12), arrays and `Vec`s; they are public only because they appear in
//! signatures.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::current::cancel_requested;
use super::wake_set::WakeSet;
use crate::loom::unmodelled::{AtomicUsize, Ordering::Relaxed};

/// Rotates the first branch polled by successive races, so no position always wins ties.
static FAIR_START: AtomicUsize = AtomicUsize::new(0);

/// A future that is running, finished (holding its output) or emptied.
#[derive(Debug)]
pub enum MaybeDone<F: Future> {
    /// Still running.
    Future(F),
    /// Finished; the output waits to be taken.
    Done(F::Output),
    /// The output was taken.
    Gone,
}

impl<F: Future> MaybeDone<F> {
    /// Polls the future if it is still running: `Ready` exactly once, in the poll where it
    /// finishes (later polls of a finished branch, after a spurious wake, are `Pending`).
    fn poll_done(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: the future is structurally pinned; it is only dropped in place (by `set`).
        let this = unsafe { self.get_unchecked_mut() };
        match this {
            MaybeDone::Future(f) => {
                // SAFETY: as above.
                match unsafe { Pin::new_unchecked(f) }.poll(cx) {
                    Poll::Ready(v) => {
                        // Dropping the finished future in place is allowed by the pin contract.
                        *this = MaybeDone::Done(v);
                        Poll::Ready(())
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            MaybeDone::Done(_) | MaybeDone::Gone => Poll::Pending,
        }
    }

    /// Takes the output.
    fn take(self: Pin<&mut Self>) -> F::Output {
        // SAFETY: only `Done` is moved out of, and it holds no pinned future.
        let this = unsafe { self.get_unchecked_mut() };
        match core::mem::replace(this, MaybeDone::Gone) {
            MaybeDone::Done(v) => v,
            _ => panic!("spindle: a joined branch's output was taken before it finished"),
        }
    }

    fn done_mut(self: Pin<&mut Self>) -> Option<&mut F::Output> {
        // SAFETY: we hand out the output, which is not pinned, and leave the variant in place.
        match unsafe { self.get_unchecked_mut() } {
            MaybeDone::Done(v) => Some(v),
            _ => None,
        }
    }
}

/// A `Result`-like output, for `try_join`.
pub trait IntoResult {
    /// The success value.
    type Ok;
    /// The error.
    type Err;
    /// Converts into a `Result`.
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
    /// Whether it is an error.
    fn is_err(&self) -> bool;
}

impl<T, E> IntoResult for Result<T, E> {
    type Ok = T;
    type Err = E;
    fn into_result(self) -> Result<T, E> {
        self
    }
    fn is_err(&self) -> bool {
        Result::is_err(self)
    }
}

/// Branches that race: every branch has the same output.
pub trait RaceBranches {
    /// The output of each branch.
    type Output;
    /// Number of branches.
    fn count(&self) -> usize;
    /// Polls branch `i`.
    fn poll_at(self: Pin<&mut Self>, i: usize, cx: &mut Context<'_>) -> Poll<Self::Output>;
}

/// Branches that are joined.
pub trait JoinBranches {
    /// All outputs together.
    type Output;
    /// Number of branches.
    fn count(&self) -> usize;
    /// Polls branch `i`; `Ready` when it has finished.
    fn poll_at(self: Pin<&mut Self>, i: usize, cx: &mut Context<'_>) -> Poll<()>;
    /// Takes every output (all branches finished).
    fn take_all(self: Pin<&mut Self>) -> Self::Output;
}

/// Branches that are joined until the first error.
pub trait TryJoinBranches {
    /// All success values together.
    type Output;
    /// The common error type.
    type Error;
    /// Number of branches.
    fn count(&self) -> usize;
    /// Polls branch `i`; `Ready(Ok)` when it succeeded, `Ready(Err)` when it failed.
    fn poll_at(self: Pin<&mut Self>, i: usize, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>>;
    /// Takes every success value (all branches succeeded).
    fn take_all(self: Pin<&mut Self>) -> Self::Output;
}

/// Converts a tuple, array or `Vec` of futures into race branches.
pub trait IntoRace {
    /// The branches.
    type Branches: RaceBranches;
    /// Converts.
    fn into_branches(self) -> Self::Branches;
}

/// Converts a tuple, array or `Vec` of futures into join branches.
pub trait IntoJoin {
    /// The branches.
    type Branches: JoinBranches;
    /// Converts.
    fn into_branches(self) -> Self::Branches;
}

/// Converts a tuple, array or `Vec` of fallible futures into try-join branches.
pub trait IntoTryJoin {
    /// The branches.
    type Branches: TryJoinBranches;
    /// Converts.
    fn into_branches(self) -> Self::Branches;
}

/// Drives branches through a [`WakeSet`]: the shared part of race, join and try_join.
struct Driver {
    set: Option<WakeSet>,
    cancel_seen: bool,
}

impl Driver {
    fn new() -> Driver {
        Driver { set: None, cancel_seen: false }
    }

    /// Registers the parent waker and returns the set, making it on first use.
    fn prepare(&mut self, n: usize, first: usize, cx: &mut Context<'_>) -> &mut WakeSet {
        let set = self.set.get_or_insert_with(|| WakeSet::new_from(n, first));
        set.register(cx.waker());
        if !self.cancel_seen && cancel_requested() {
            // Poll every branch once so the leaf futures inside see the cancellation.
            self.cancel_seen = true;
            set.wake_all();
        }
        set
    }
}

/// Runs the branches concurrently; the first to finish wins and the others are dropped at once
/// (before `race` returns). Branches are polled only when woken; the first poll starts at a
/// rotating position, so no branch always wins ties.
///
/// Works on tuples (up to 12), arrays and `Vec`s of futures with the same output.
///
/// # Cancel safety
/// Dropping a `Race` drops every branch. The branches that lose are dropped as soon as one
/// wins: use `race` where dropping a loser loses nothing (or keep the loser alive yourself, e.g.
/// by racing `&mut fut` — which is also how `select!` loops lose data; prefer `merge`).
///
/// ```
/// use std::time::Duration;
/// use spindle_core::structured::race;
/// spindle::block_on(async {
///     let fast = async { "fast" };
///     let slow = async {
///         spindle::time::sleep(Duration::from_secs(3600)).await;
///         "slow"
///     };
///     assert_eq!(race((slow, fast)).await, "fast");
///     let branches = (0..3).map(|i| async move { if i == 2 { i } else { std::future::pending().await } });
///     let winner = race(branches.collect::<Vec<_>>()).await;
///     assert_eq!(winner, 2);
/// });
/// ```
pub fn race<R: IntoRace>(branches: R) -> Race<R::Branches> {
    Race { branches: Some(branches.into_branches()), driver: Driver::new() }
}

pin_project_lite::pin_project! {
    /// The future of [`race`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Race<B> {
        #[pin]
        branches: Option<B>,
        driver: Driver,
    }
}

impl<B: RaceBranches> Future for Race<B> {
    type Output = B::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<B::Output> {
        let mut this = self.project();
        let n = this.branches.as_ref().as_pin_ref().expect("spindle: Race polled after it completed").count();
        let first = if this.driver.set.is_none() && n > 0 { FAIR_START.fetch_add(1, Relaxed) % n } else { 0 };
        let set = this.driver.prepare(n, first, cx);
        let mut out = None;
        {
            let mut branches = this.branches.as_mut().as_pin_mut().expect("checked above");
            set.drain(|i, w| match branches.as_mut().poll_at(i, &mut Context::from_waker(w)) {
                Poll::Ready(v) => {
                    out = Some(v);
                    false
                }
                Poll::Pending => true,
            });
        }
        match out {
            Some(v) => {
                // Losers are dropped now, in place.
                this.branches.set(None);
                Poll::Ready(v)
            }
            None => Poll::Pending,
        }
    }
}

/// Runs the futures concurrently and returns all their outputs (a tuple for a tuple, an array
/// for an array, a `Vec` for a `Vec`). Only woken branches are polled.
///
/// # Cancel safety
/// Dropping a `Join` drops every unfinished branch and every output already produced.
///
/// ```
/// use spindle_core::structured::join;
/// spindle::block_on(async {
///     let (a, b) = join((async { 1 }, async { "two" })).await;
///     assert_eq!((a, b), (1, "two"));
///     let v = join((0..100).map(|i| async move { i * 2 }).collect::<Vec<_>>()).await;
///     assert_eq!(v[99], 198);
///     let arr = join([1, 2].map(|i| async move { i })).await;
///     assert_eq!(arr, [1, 2]);
/// });
/// ```
pub fn join<J: IntoJoin>(branches: J) -> Join<J::Branches> {
    Join { branches: branches.into_branches(), driver: Driver::new(), left: None, done: false }
}

pin_project_lite::pin_project! {
    /// The future of [`join`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Join<B> {
        #[pin]
        branches: B,
        driver: Driver,
        left: Option<usize>,
        done: bool,
    }
}

impl<B: JoinBranches> Future for Join<B> {
    type Output = B::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<B::Output> {
        let mut this = self.project();
        assert!(!*this.done, "spindle: Join polled after it completed");
        let n = this.branches.count();
        let left = this.left.get_or_insert(n);
        let set = this.driver.prepare(n, 0, cx);
        let mut branches = this.branches.as_mut();
        set.drain(|i, w| {
            if branches.as_mut().poll_at(i, &mut Context::from_waker(w)).is_ready() {
                *left -= 1;
            }
            true
        });
        if *left == 0 {
            *this.done = true;
            Poll::Ready(this.branches.take_all())
        } else {
            Poll::Pending
        }
    }
}

/// Runs fallible futures concurrently: all success values, or the first error (the other
/// branches are then dropped at once). Only woken branches are polled.
///
/// # Cancel safety
/// Dropping a `TryJoin` drops every unfinished branch and every value already produced.
///
/// ```
/// use spindle_core::structured::try_join;
/// spindle::block_on(async {
///     let ok = try_join((async { Ok::<_, &str>(1) }, async { Ok(2) })).await;
///     assert_eq!(ok, Ok((1, 2)));
///     let err = try_join(vec![
///         Box::pin(async { Err::<i32, _>("boom") }) as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>,
///         Box::pin(std::future::pending()),
///     ])
///     .await;
///     assert_eq!(err, Err("boom"));
/// });
/// ```
pub fn try_join<J: IntoTryJoin>(branches: J) -> TryJoin<J::Branches> {
    TryJoin { branches: Some(branches.into_branches()), driver: Driver::new(), left: None }
}

pin_project_lite::pin_project! {
    /// The future of [`try_join`].
    #[must_use = "futures do nothing unless polled"]
    pub struct TryJoin<B> {
        #[pin]
        branches: Option<B>,
        driver: Driver,
        left: Option<usize>,
    }
}

impl<B: TryJoinBranches> Future for TryJoin<B> {
    type Output = Result<B::Output, B::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let n = this.branches.as_ref().as_pin_ref().expect("spindle: TryJoin polled after it completed").count();
        let left = this.left.get_or_insert(n);
        let set = this.driver.prepare(n, 0, cx);
        let mut err = None;
        {
            let mut branches = this.branches.as_mut().as_pin_mut().expect("checked above");
            set.drain(|i, w| match branches.as_mut().poll_at(i, &mut Context::from_waker(w)) {
                Poll::Ready(Ok(())) => {
                    *left -= 1;
                    true
                }
                Poll::Ready(Err(e)) => {
                    err = Some(e);
                    false
                }
                Poll::Pending => true,
            });
        }
        if let Some(e) = err {
            this.branches.set(None);
            return Poll::Ready(Err(e));
        }
        if *left == 0 {
            let out = this.branches.as_mut().as_pin_mut().expect("checked above").take_all();
            this.branches.set(None);
            Poll::Ready(Ok(out))
        } else {
            Poll::Pending
        }
    }
}

/// Polls a fallible `MaybeDone`, turning an error output into `Err` (and emptying the slot).
fn poll_try<F>(m: Pin<&mut MaybeDone<F>>, cx: &mut Context<'_>) -> Poll<Result<(), <F::Output as IntoResult>::Err>>
where
    F: Future,
    F::Output: IntoResult,
{
    let mut m = m;
    if m.as_mut().poll_done(cx).is_pending() {
        return Poll::Pending;
    }
    if m.as_mut().done_mut().is_some_and(|v| v.is_err()) {
        return match m.take().into_result() {
            Err(e) => Poll::Ready(Err(e)),
            Ok(_) => unreachable!("checked is_err"),
        };
    }
    Poll::Ready(Ok(()))
}

fn take_ok<F>(m: Pin<&mut MaybeDone<F>>) -> <F::Output as IntoResult>::Ok
where
    F: Future,
    F::Output: IntoResult,
{
    match m.take().into_result() {
        Ok(v) => v,
        Err(_) => unreachable!("spindle: an error output survived try_join"),
    }
}

// ---------------------------------------------------------------------------------------------
// Arrays and Vecs: the branches live in one boxed slice that is never reallocated.

/// Race branches stored in a boxed slice.
pub struct SliceRace<F>(Pin<Box<[F]>>);

impl<F: Future> RaceBranches for SliceRace<F> {
    type Output = F::Output;
    fn count(&self) -> usize {
        self.0.len()
    }
    fn poll_at(mut self: Pin<&mut Self>, i: usize, cx: &mut Context<'_>) -> Poll<F::Output> {
        // The slice is pinned inside its own box, whatever happens to `self`.
        self.0.as_mut().get_mut_pinned(i).poll(cx)
    }
}

/// Join branches stored in a boxed slice; `N` is the array length (0 for a `Vec`).
pub struct SliceJoin<F: Future, const N: usize>(Pin<Box<[MaybeDone<F>]>>);

impl<F: Future, const N: usize> JoinBranches for SliceJoin<F, N>
where
    [F::Output; N]: FromVec<F::Output>,
{
    type Output = <[F::Output; N] as FromVec<F::Output>>::Out;
    fn count(&self) -> usize {
        self.0.len()
    }
    fn poll_at(mut self: Pin<&mut Self>, i: usize, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().get_mut_pinned(i).poll_done(cx)
    }
    fn take_all(mut self: Pin<&mut Self>) -> Self::Output {
        let n = self.0.len();
        let v: Vec<F::Output> = (0..n).map(|i| self.0.as_mut().get_mut_pinned(i).take()).collect();
        <[F::Output; N]>::from_vec(v)
    }
}

/// Try-join branches stored in a boxed slice; `N` is the array length (0 for a `Vec`).
pub struct SliceTryJoin<F: Future, const N: usize>(Pin<Box<[MaybeDone<F>]>>);

impl<F: Future, const N: usize> TryJoinBranches for SliceTryJoin<F, N>
where
    F::Output: IntoResult,
    [<F::Output as IntoResult>::Ok; N]: FromVec<<F::Output as IntoResult>::Ok>,
{
    type Output = <[<F::Output as IntoResult>::Ok; N] as FromVec<<F::Output as IntoResult>::Ok>>::Out;
    type Error = <F::Output as IntoResult>::Err;
    fn count(&self) -> usize {
        self.0.len()
    }
    fn poll_at(mut self: Pin<&mut Self>, i: usize, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        poll_try(self.0.as_mut().get_mut_pinned(i), cx)
    }
    fn take_all(mut self: Pin<&mut Self>) -> Self::Output {
        let n = self.0.len();
        let v: Vec<_> = (0..n).map(|i| take_ok(self.0.as_mut().get_mut_pinned(i))).collect();
        <[<F::Output as IntoResult>::Ok; N]>::from_vec(v)
    }
}

/// Pinned indexing into a pinned boxed slice.
trait PinnedSlice<'a, T> {
    fn get_mut_pinned(self, i: usize) -> Pin<&'a mut T>;
}

impl<'a, T> PinnedSlice<'a, T> for Pin<&'a mut [T]> {
    fn get_mut_pinned(self, i: usize) -> Pin<&'a mut T> {
        // SAFETY: the elements of a pinned slice are pinned; we never move them.
        unsafe { self.map_unchecked_mut(|s| &mut s[i]) }
    }
}

/// Builds the output array of an array join from the collected outputs.
pub trait FromVec<T> {
    /// The collection.
    type Out;
    /// Converts.
    fn from_vec(v: Vec<T>) -> Self::Out;
}

impl<T, const N: usize> FromVec<T> for [T; N] {
    type Out = [T; N];
    fn from_vec(v: Vec<T>) -> [T; N] {
        match <[T; N]>::try_from(v) {
            Ok(a) => a,
            Err(_) => unreachable!("spindle: array join produced the wrong number of outputs"),
        }
    }
}

/// Join branches for a `Vec`.
pub struct VecJoin<F: Future>(Pin<Box<[MaybeDone<F>]>>);

impl<F: Future> JoinBranches for VecJoin<F> {
    type Output = Vec<F::Output>;
    fn count(&self) -> usize {
        self.0.len()
    }
    fn poll_at(mut self: Pin<&mut Self>, i: usize, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().get_mut_pinned(i).poll_done(cx)
    }
    fn take_all(mut self: Pin<&mut Self>) -> Vec<F::Output> {
        let n = self.0.len();
        (0..n).map(|i| self.0.as_mut().get_mut_pinned(i).take()).collect()
    }
}

/// Try-join branches for a `Vec`.
pub struct VecTryJoin<F: Future>(Pin<Box<[MaybeDone<F>]>>);

impl<F: Future> TryJoinBranches for VecTryJoin<F>
where
    F::Output: IntoResult,
{
    type Output = Vec<<F::Output as IntoResult>::Ok>;
    type Error = <F::Output as IntoResult>::Err;
    fn count(&self) -> usize {
        self.0.len()
    }
    fn poll_at(mut self: Pin<&mut Self>, i: usize, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        poll_try(self.0.as_mut().get_mut_pinned(i), cx)
    }
    fn take_all(mut self: Pin<&mut Self>) -> Self::Output {
        let n = self.0.len();
        (0..n).map(|i| take_ok(self.0.as_mut().get_mut_pinned(i))).collect()
    }
}

fn boxed<T>(it: impl IntoIterator<Item = T>) -> Pin<Box<[T]>> {
    Box::into_pin(it.into_iter().collect::<Vec<T>>().into_boxed_slice())
}

impl<F: Future> IntoRace for Vec<F> {
    type Branches = SliceRace<F>;
    fn into_branches(self) -> SliceRace<F> {
        SliceRace(boxed(self))
    }
}

impl<F: Future, const N: usize> IntoRace for [F; N] {
    type Branches = SliceRace<F>;
    fn into_branches(self) -> SliceRace<F> {
        SliceRace(boxed(self))
    }
}

impl<F: Future> IntoJoin for Vec<F> {
    type Branches = VecJoin<F>;
    fn into_branches(self) -> VecJoin<F> {
        VecJoin(boxed(self.into_iter().map(MaybeDone::Future)))
    }
}

impl<F: Future, const N: usize> IntoJoin for [F; N] {
    type Branches = SliceJoin<F, N>;
    fn into_branches(self) -> SliceJoin<F, N> {
        SliceJoin(boxed(self.into_iter().map(MaybeDone::Future)))
    }
}

impl<F: Future> IntoTryJoin for Vec<F>
where
    F::Output: IntoResult,
{
    type Branches = VecTryJoin<F>;
    fn into_branches(self) -> VecTryJoin<F> {
        VecTryJoin(boxed(self.into_iter().map(MaybeDone::Future)))
    }
}

impl<F: Future, const N: usize> IntoTryJoin for [F; N]
where
    F::Output: IntoResult,
{
    type Branches = SliceTryJoin<F, N>;
    fn into_branches(self) -> SliceTryJoin<F, N> {
        SliceTryJoin(boxed(self.into_iter().map(MaybeDone::Future)))
    }
}

// ---------------------------------------------------------------------------------------------
// Tuples: the branches live inline; each arm of the generated `match` polls one field.

macro_rules! tuples {
    ($( ($($F:ident $i:tt),+) )+) => { $(
        impl<T, $($F: Future<Output = T>),+> IntoRace for ($($F,)+) {
            type Branches = ($($F,)+);
            fn into_branches(self) -> Self::Branches {
                self
            }
        }

        impl<T, $($F: Future<Output = T>),+> RaceBranches for ($($F,)+) {
            type Output = T;
            fn count(&self) -> usize {
                count!($($F)+)
            }
            fn poll_at(self: Pin<&mut Self>, i: usize, cx: &mut Context<'_>) -> Poll<T> {
                // SAFETY: the fields are structurally pinned: never moved while pinned.
                let this = unsafe { self.get_unchecked_mut() };
                match i {
                    // SAFETY: as above.
                    $( $i => unsafe { Pin::new_unchecked(&mut this.$i) }.poll(cx), )+
                    _ => unreachable!("branch index out of range"),
                }
            }
        }

        impl<$($F: Future),+> IntoJoin for ($($F,)+) {
            type Branches = ($(MaybeDone<$F>,)+);
            fn into_branches(self) -> Self::Branches {
                ($(MaybeDone::Future(self.$i),)+)
            }
        }

        impl<$($F: Future),+> JoinBranches for ($(MaybeDone<$F>,)+) {
            type Output = ($($F::Output,)+);
            fn count(&self) -> usize {
                count!($($F)+)
            }
            fn poll_at(self: Pin<&mut Self>, i: usize, cx: &mut Context<'_>) -> Poll<()> {
                // SAFETY: the fields are structurally pinned: never moved while pinned.
                let this = unsafe { self.get_unchecked_mut() };
                match i {
                    // SAFETY: as above.
                    $( $i => unsafe { Pin::new_unchecked(&mut this.$i) }.poll_done(cx), )+
                    _ => unreachable!("branch index out of range"),
                }
            }
            fn take_all(self: Pin<&mut Self>) -> Self::Output {
                // SAFETY: as above; `take` only moves the (unpinned) output.
                let this = unsafe { self.get_unchecked_mut() };
                // SAFETY: as above.
                ($( unsafe { Pin::new_unchecked(&mut this.$i) }.take(), )+)
            }
        }

        impl<Err, $($F),+> IntoTryJoin for ($($F,)+)
        where
            $($F: Future, $F::Output: IntoResult<Err = Err>,)+
        {
            type Branches = ($(MaybeDone<$F>,)+);
            fn into_branches(self) -> Self::Branches {
                ($(MaybeDone::Future(self.$i),)+)
            }
        }

        impl<Err, $($F),+> TryJoinBranches for ($(MaybeDone<$F>,)+)
        where
            $($F: Future, $F::Output: IntoResult<Err = Err>,)+
        {
            type Output = ($(<$F::Output as IntoResult>::Ok,)+);
            type Error = Err;
            fn count(&self) -> usize {
                count!($($F)+)
            }
            fn poll_at(self: Pin<&mut Self>, i: usize, cx: &mut Context<'_>) -> Poll<Result<(), Err>> {
                // SAFETY: the fields are structurally pinned: never moved while pinned.
                let this = unsafe { self.get_unchecked_mut() };
                match i {
                    // SAFETY: as above.
                    $( $i => poll_try(unsafe { Pin::new_unchecked(&mut this.$i) }, cx), )+
                    _ => unreachable!("branch index out of range"),
                }
            }
            fn take_all(self: Pin<&mut Self>) -> Self::Output {
                // SAFETY: as above; only outputs are moved.
                let this = unsafe { self.get_unchecked_mut() };
                // SAFETY: as above.
                ($( take_ok(unsafe { Pin::new_unchecked(&mut this.$i) }), )+)
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
