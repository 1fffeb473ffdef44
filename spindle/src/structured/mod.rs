//! Structured concurrency on spindle's runtimes: the runtime-neutral parts come from
//! [`spindle_core::structured`]; this module adds what needs the runtime.
//!
//! # Contract
//!
//! - [`Runtime`] is the [`Spawn`] implementation scopes and task groups use: it spawns on the
//!   current spindle runtime (panicking outside one, like [`spawn`](crate::spawn)) and records
//!   the scope or group (`TaskMeta::group`) and the task that owns it (`TaskMeta::parent`: the
//!   task polling the scope, or the task that created the group), so task dumps show
//!   task → scope/group → task.
//! - [`scope!`](crate::scope) is `spindle_core::scope!` with [`Runtime`] as the spawner, so
//!   `s.spawn_task(..)` runs `'static` children in parallel on the current runtime.
//! - [`TaskGroup`] is the core group with [`Runtime`] as its spawner.
//! - [`with_deadline`] and [`with_timeout`] put spindle's timers under the core deadline logic.
//! - Building a runtime installs the detach hook ([`set_detach_hook`]): the `'static` cleanups of a
//!   scope future dropped before it finished (`Scope::defer_static`) are spawned as a detached
//!   task on the runtime current on the dropping thread, and dropped if they have not finished
//!   within the deadline the scope gives ([`DROPPED_SCOPE_CLEANUP_DEADLINE`]) on spindle's timer.
//!   Outside a spindle runtime the hook gives them back (the scope drops them, with the
//!   debug-mode warning).
//!
//! The guide ([`crate::guide_cancellation`]) explains how the pieces fit.
//!
//! ```
//! use std::time::Duration;
//! spindle::block_on(async {
//!     let group = spindle::TaskGroup::<u32, ()>::new();
//!     for i in 0..4 {
//!         group.spawn(async move { Ok(i) });
//!     }
//!     let mut v = group.join_all().await.unwrap();
//!     v.sort();
//!     assert_eq!(v, [0, 1, 2, 3]);
//!     let r = spindle::structured::with_timeout(Duration::from_millis(1), Duration::ZERO, std::future::pending::<()>()).await;
//!     assert!(r.is_err());
//! });
//! ```

use std::future::Future;
use std::time::Duration;

pub use spindle_core::structured::*;
use spindle_core::task::{GroupRef, JoinHandle, TaskId, TaskMeta};

use crate::rt::context;
use crate::time::{sleep_until, Instant, Sleep};

/// Spawns the tasks of scopes and groups on the current spindle runtime, recording the scope or
/// group (`TaskMeta::group`) and its owning task (`TaskMeta::parent`).
///
/// ```
/// use spindle::structured::{Runtime, Spawn, SpawnMeta};
/// use spindle::task::{GroupKind, GroupRef, TaskId};
/// spindle::block_on(async {
///     let (tx, rx) = spindle::sync::oneshot::channel();
///     let group = GroupRef { id: TaskId::next(), kind: GroupKind::Scope };
///     let meta = SpawnMeta { parent: None, group, location: std::panic::Location::caller() };
///     Runtime.spawn(async move { tx.send(5).unwrap() }, meta);
///     assert_eq!(rx.await.unwrap(), 5);
/// });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Runtime;

impl Runtime {
    /// Spawns `future` on the current spindle runtime with the structure `meta` records (its
    /// owning task as `TaskMeta::parent`, its scope or group as `TaskMeta::group`) and returns
    /// its handle; what [`Spawn::spawn`] does, for spawners that wrap this one and want the
    /// handle (to observe or abort the task).
    ///
    /// # Panics
    /// Outside a spindle runtime.
    ///
    /// ```
    /// use spindle::structured::{Runtime, SpawnMeta};
    /// use spindle::task::{GroupKind, GroupRef, TaskId};
    /// spindle::block_on(async {
    ///     let group = GroupRef { id: TaskId::next(), kind: GroupKind::TaskGroup };
    ///     let meta = SpawnMeta { parent: None, group, location: std::panic::Location::caller() };
    ///     let h = Runtime.spawn_with_meta(async { 5 }, meta);
    ///     assert_eq!(h.header_ref().meta().group, Some(group));
    ///     assert_eq!(h.await.unwrap(), 5);
    /// });
    /// ```
    pub fn spawn_with_meta<F>(&self, future: F, meta: SpawnMeta) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let meta = TaskMeta {
            name: None,
            location: meta.location,
            parent: meta.parent,
            group: Some(meta.group),
            local: false,
        };
        context::with_scheduler(|s| match s {
            Some(s) => s.spawn(future, meta),
            None => panic!(
                "spindle: a scope or task group spawned a task outside a spindle runtime; run it inside \
                 one, or give it a spawner for your executor (`scope!(on spawner, ..)`, \
                 `TaskGroup::with_spawner`)"
            ),
        })
    }
}

impl Spawn for Runtime {
    fn spawn<F>(&self, future: F, meta: SpawnMeta)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.spawn_with_meta(future, meta));
    }

    fn current_task(&self) -> Option<TaskId> {
        context::current_task()
    }
}

/// The detach hook spindle installs when a runtime is built (see the module docs): runs a dropped
/// scope's `'static` cleanups as a detached task on the current runtime, within `deadline`.
pub(crate) fn detach_hook(
    cleanup: BoxFuture<'static, ()>,
    deadline: Duration,
    scope: GroupRef,
) -> Result<(), BoxFuture<'static, ()>> {
    context::with_scheduler(|s| match s {
        Some(s) => {
            let meta = TaskMeta {
                name: None,
                location: std::panic::Location::caller(),
                parent: context::current_task(),
                group: Some(scope),
                local: false,
            };
            drop(s.spawn(
                async move {
                    let _ = crate::time::timeout(deadline, cleanup).await;
                },
                meta,
            ));
            Ok(())
        }
        None => Err(cleanup),
    })
}

/// A [`TaskGroup`](spindle_core::structured::TaskGroup) of `'static` tasks on the current spindle
/// runtime: tasks return `Result<T, E>`; see the core type for the semantics.
///
/// ```
/// spindle::block_on(async {
///     let g = spindle::TaskGroup::<u8, &str>::new();
///     g.spawn(async { Ok(1) });
///     assert_eq!(g.join_all().await.unwrap(), [1]);
/// });
/// ```
pub type TaskGroup<T, E> = spindle_core::structured::TaskGroup<T, E, Runtime>;

/// The future of [`with_deadline`] and [`with_timeout`].
pub type Deadline<F> = WithDeadline<F, Sleep, Sleep>;

/// Runs `future` with a deadline: at `at` its token is cancelled (soft: spindle's leaf futures
/// inside it return early, so it can wind down and return), and if it has not finished `grace`
/// later it is dropped (hard) and the result is `Err(DeadlineExceeded)`.
///
/// ```
/// use std::time::Duration;
/// use spindle::time::{sleep, Instant};
/// spindle::block_on(async {
///     let at = Instant::now() + Duration::from_millis(5);
///     let r = spindle::structured::with_deadline(at, Duration::from_secs(1), async {
///         sleep(Duration::from_secs(3600)).await; // returns at the deadline
///         "cleaned up"
///     })
///     .await;
///     assert_eq!(r, Ok("cleaned up"));
/// });
/// ```
pub fn with_deadline<F: Future>(at: Instant, grace: Duration, future: F) -> Deadline<F> {
    with_deadline_on(sleep_until(at), sleep_until(at.saturating_add(grace)), future)
}

/// [`with_deadline`] at `duration` from now.
///
/// ```
/// use std::time::Duration;
/// spindle::block_on(async {
///     let r = spindle::structured::with_timeout(Duration::from_millis(2), Duration::ZERO, std::future::pending::<()>()).await;
///     assert_eq!(r, Err(spindle::structured::DeadlineExceeded));
/// });
/// ```
pub fn with_timeout<F: Future>(duration: Duration, grace: Duration, future: F) -> Deadline<F> {
    with_deadline(Instant::now().saturating_add(duration), grace, future)
}

/// Opens a scope whose `s.spawn_task(..)` runs on the current spindle runtime: see
/// [`spindle_core::scope!`] and [`spindle_core::structured`] for the semantics.
///
/// ```
/// spindle::block_on(async {
///     let words = ["a", "bb", "ccc"];
///     let lens = spindle::scope!(|s| async {
///         let hs: Vec<_> = words.iter().map(|w| s.spawn(async move { w.len() })).collect();
///         let mut total = 0;
///         for h in hs {
///             total += h.await.unwrap();
///         }
///         total
///     })
///     .await;
///     assert_eq!(lens, 6);
/// });
/// ```
#[macro_export]
macro_rules! scope {
    (on $spawner:expr, |$s:ident| $body:expr) => {
        $crate::spindle_core::scope!(on $spawner, |$s| $body)
    };
    (|$s:ident| $body:expr) => {
        $crate::spindle_core::scope!(on $crate::structured::Runtime, |$s| $body)
    };
}
