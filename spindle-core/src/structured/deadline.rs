//! The logic of `with_deadline`, generic over the runtime's timers (`spindle` supplies them).

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::cancel::{with_child_token, WithToken};
use super::current;

/// The error of a deadline whose grace period ran out: the future was dropped.
///
/// ```
/// assert_eq!(spindle_core::structured::DeadlineExceeded.to_string(), "deadline exceeded");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeadlineExceeded;

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl core::error::Error for DeadlineExceeded {}

/// Runs `future` under a child token of the one current where it is first polled; when `soft` completes the token is
/// cancelled (the future's spindle leaf futures return early and it can wind down), and when
/// `hard` completes after that the future is dropped and the result is `Err(DeadlineExceeded)`.
///
/// The timers are polled shielded (no token current), so an outer cancellation cancels the
/// future through the token tree but does not fire the timers early.
///
/// ```
/// use std::time::Duration;
/// use spindle::time::sleep;
/// use spindle_core::structured::with_deadline_on;
/// spindle::block_on(async {
///     let r = with_deadline_on(sleep(Duration::from_millis(5)), sleep(Duration::from_millis(10)), async {
///         sleep(Duration::from_secs(3600)).await; // returns early at the soft deadline
///         "wound down"
///     })
///     .await;
///     assert_eq!(r, Ok("wound down"));
/// });
/// ```
pub fn with_deadline_on<F, S, H>(soft: S, hard: H, future: F) -> WithDeadline<F, S, H>
where
    F: Future,
    S: Future<Output = ()>,
    H: Future<Output = ()>,
{
    WithDeadline { future: Some(with_child_token(future)), soft, hard, soft_fired: false }
}

pin_project_lite::pin_project! {
    /// The future of [`with_deadline_on`] (and `spindle::structured::with_deadline`).
    #[must_use = "futures do nothing unless polled"]
    pub struct WithDeadline<F, S, H> {
        #[pin]
        future: Option<WithToken<F>>,
        #[pin]
        soft: S,
        #[pin]
        hard: H,
        soft_fired: bool,
    }
}

impl<F, S, H> Future for WithDeadline<F, S, H>
where
    F: Future,
    S: Future<Output = ()>,
    H: Future<Output = ()>,
{
    type Output = Result<F::Output, DeadlineExceeded>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut fut = this.future.as_mut().as_pin_mut().expect("spindle: WithDeadline polled after it completed");
        if !*this.soft_fired {
            let fired = {
                let _shield = current::enter(core::ptr::null());
                this.soft.poll(cx).is_ready()
            };
            if fired {
                *this.soft_fired = true;
                // The future runs under `with_child_token`, which makes its token at its first
                // poll: make sure that happened (this poll's), then cancel it.
                if fut.token().is_none() {
                    if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                        this.future.set(None);
                        return Poll::Ready(Ok(v));
                    }
                }
                if let Some(t) = fut.token() {
                    t.cancel();
                }
            }
        }
        if let Poll::Ready(v) = fut.poll(cx) {
            this.future.set(None);
            return Poll::Ready(Ok(v));
        }
        if *this.soft_fired {
            let fired = {
                let _shield = current::enter(core::ptr::null());
                this.hard.poll(cx).is_ready()
            };
            if fired {
                this.future.set(None);
                return Poll::Ready(Err(DeadlineExceeded));
            }
        }
        Poll::Pending
    }
}
