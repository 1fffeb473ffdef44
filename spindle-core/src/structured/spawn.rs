//! [`Spawn`]: how runtime-neutral structured code starts `'static` tasks on a runtime.
//!
//! Scopes (`spawn_task`) and task groups are written against this trait; `spindle` implements it
//! for its runtimes (`spindle::structured::Runtime`), and a user of another executor implements it
//! in a few lines (the tests do it for tokio). The structured code wraps each task itself (to make
//! its token current, catch panics and report completion), so a spawner only has to run a
//! `Future<Output = ()>` to completion and may drop the join handle.

use core::future::Future;
use core::panic::Location;

use crate::task::{GroupRef, TaskId};

/// What a spawner should record about a task it starts (as `TaskMeta::parent` and
/// `TaskMeta::group`, so task-tree dumps show task → scope/group → task).
#[derive(Debug, Clone, Copy)]
pub struct SpawnMeta {
    /// The task that owns the scope or group ([`Spawn::current_task`] where the scope spawned the
    /// task, or where the group was created); `None` outside any task or on a spawner that does
    /// not know tasks.
    pub parent: Option<TaskId>,
    /// The scope or task group the task belongs to.
    pub group: GroupRef,
    /// Where the task was spawned.
    pub location: &'static Location<'static>,
}

/// Starts `'static` tasks on a runtime, for scopes and task groups.
///
/// ```
/// use std::future::Future;
/// use spindle_core::structured::{Spawn, SpawnMeta};
/// #[derive(Clone, Copy, Default)]
/// struct Tokio;
/// impl Spawn for Tokio {
///     fn spawn<F: Future<Output = ()> + Send + 'static>(&self, future: F, _meta: SpawnMeta) {
///         tokio::spawn(future);
///     }
/// }
/// ```
pub trait Spawn: Send + Sync {
    /// Starts `future` as a task; it must be polled to completion (or dropped at runtime shutdown).
    ///
    /// # Panics
    /// May panic if there is no runtime to spawn on.
    fn spawn<F>(&self, future: F, meta: SpawnMeta)
    where
        F: Future<Output = ()> + Send + 'static;

    /// The id of the task being polled on this thread, if the runtime knows it: scopes and groups
    /// record it as the owner (parent) of the tasks they start. The default knows nothing.
    ///
    /// ```
    /// use spindle_core::structured::Spawn;
    /// spindle::block_on(async {
    ///     let id = spindle::spawn(async { spindle::structured::Runtime.current_task() }).await.unwrap();
    ///     assert!(id.is_some());
    /// });
    /// ```
    fn current_task(&self) -> Option<TaskId> {
        None
    }
}

/// The spawner of scopes made with `spindle_core::scope!` without `on`: it has no runtime, so
/// such scopes offer only borrowed children (`s.spawn`), not `s.spawn_task`.
///
/// ```
/// let _ = spindle_core::structured::NoSpawn;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSpawn;

impl<S: Spawn> Spawn for &S {
    fn spawn<F>(&self, future: F, meta: SpawnMeta)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        (**self).spawn(future, meta)
    }

    fn current_task(&self) -> Option<TaskId> {
        (**self).current_task()
    }
}
