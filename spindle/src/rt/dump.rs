//! [`Dump`]: a snapshot of a runtime's live tasks, printed as the task tree.
//!
//! # Contract
//!
//! - Taken from the runtime's task registry ([`Handle::dump`](super::Handle::dump)), one
//!   registry shard at a time, reading only what a task header holds for everyone: the id, the
//!   spawn metadata (name, location, parent, scope or group; fixed at spawn) and the state word.
//!   Workers keep running meanwhile; no task is polled, stopped or touched, and no lock is held
//!   while a task is polled. A shard's lock is held while its tasks are copied (spawns hashed to
//!   it wait that long).
//! - It is a snapshot, not an atomic one: a task that spawns or finishes while the dump runs may
//!   be in it or not, and states are each read at their own moment.
//! - The tree: a task's children are the tasks it spawned, and a scope's or task group's tasks
//!   hang under the scope or group, which hangs under the task that owns it. Tasks whose parent
//!   is not in the dump (spawned from `block_on` or from outside the runtime, or whose parent
//!   has finished) are roots.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::panic::Location;
use std::time::Duration;

use spindle_core::task::{GroupKind, GroupRef, Header, TaskId};

/// What a task was doing when the dump read its state word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskState {
    /// Waiting for a wake (not queued, not running).
    Idle,
    /// Woken and queued to run.
    Scheduled,
    /// Being polled by a thread right now.
    Running,
    /// Finished; its output (or its panic or cancellation) waits for its `JoinHandle`, or its
    /// registry entry is about to be released.
    Complete,
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskState::Idle => "idle",
            TaskState::Scheduled => "scheduled",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
        })
    }
}

/// One task in a [`Dump`].
///
/// ```
/// let rt = spindle::runtime::Builder::new_current_thread().build().unwrap();
/// let h = spindle::task::Builder::new().name("waiter").spawn_on(std::future::pending::<()>(), rt.handle()).unwrap();
/// let dump = rt.handle().dump();
/// let t = dump.task(h.id()).unwrap();
/// assert_eq!(t.name(), Some("waiter"));
/// assert_eq!(t.location().file(), file!());
/// ```
#[derive(Debug, Clone)]
pub struct TaskInfo {
    id: TaskId,
    name: Option<String>,
    location: &'static Location<'static>,
    parent: Option<TaskId>,
    group: Option<GroupRef>,
    state: TaskState,
    cancelled: bool,
    local: bool,
    polls: u32,
    busy: Duration,
}

impl TaskInfo {
    fn of(h: &Header) -> TaskInfo {
        let meta = h.meta();
        let s = h.state();
        let state = if s.is_complete() {
            TaskState::Complete
        } else if s.is_running() {
            TaskState::Running
        } else if s.is_notified() {
            TaskState::Scheduled
        } else {
            TaskState::Idle
        };
        TaskInfo {
            id: h.id(),
            name: meta.name.as_deref().map(str::to_owned),
            location: meta.location,
            parent: meta.parent,
            group: meta.group,
            state,
            cancelled: s.is_cancelled(),
            local: meta.local,
            polls: h.poll_count(),
            busy: Duration::ZERO,
        }
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The name given with [`task::Builder`](crate::task::Builder), if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Where it was spawned.
    pub fn location(&self) -> &'static Location<'static> {
        self.location
    }

    /// The task that spawned it, or that owns the scope or group it belongs to (`None` when it
    /// was spawned outside any task).
    pub fn parent(&self) -> Option<TaskId> {
        self.parent
    }

    /// The scope or task group it belongs to, if any.
    pub fn group(&self) -> Option<GroupRef> {
        self.group
    }

    /// What it was doing when the dump read it.
    pub fn state(&self) -> TaskState {
        self.state
    }

    /// Whether it was asked to stop (aborted, or its runtime is shutting down).
    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }

    /// Whether it is pinned to one thread (`spawn_local`).
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// How many times it has been polled (wrapping at `u32::MAX`): a task polled far more often
    /// than its work calls for is busy-looping or woken in vain.
    pub fn poll_count(&self) -> u32 {
        self.polls
    }

    /// How long its polls took in all, when the runtime records it
    /// ([`Builder::record_task_busy_time`](super::Builder::record_task_busy_time)); zero
    /// otherwise. Time spent waiting (for
    /// I/O, a timer, a lock) is not in it, only time spent running.
    ///
    /// ```
    /// let rt = spindle::runtime::Builder::new_current_thread().record_task_busy_time(true).build().unwrap();
    /// let h = rt.spawn(async {
    ///     std::thread::sleep(std::time::Duration::from_millis(3));
    ///     std::future::pending::<()>().await
    /// });
    /// rt.block_on(spindle::task::yield_now()); // polls it once
    /// assert!(rt.dump().task(h.id()).unwrap().busy() >= std::time::Duration::from_millis(3));
    /// ```
    pub fn busy(&self) -> Duration {
        self.busy
    }
}

/// A snapshot of a runtime's live tasks, from [`Handle::dump`](super::Handle::dump) or
/// [`Runtime::dump`](super::Runtime::dump): a list of [`TaskInfo`], ordered by id, and, printed
/// with `{}`, the task tree.
///
/// Taking it reads the runtime's task registry, one shard at a time, while the workers keep
/// running: no task is polled, stopped or touched, and no lock is held while one is polled. It
/// is a snapshot but not an atomic one: a task that starts or finishes meanwhile may be in it
/// or not. A task's children are the tasks it spawned; the tasks of a scope or task group hang
/// under that scope or group, which hangs under the task owning it. Tasks spawned from outside
/// any task (`block_on`, another thread), or whose parent has finished, are roots.
///
/// ```
/// let rt = spindle::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
/// let (tx, rx) = spindle::sync::oneshot::channel::<()>();
/// let parent = spindle::task::Builder::new().name("parent").spawn_on(
///     async move {
///         let child = spindle::task::Builder::new().name("child").spawn(async move { rx.await.ok() }).unwrap();
///         child.await.unwrap();
///     },
///     rt.handle(),
/// )
/// .unwrap();
/// // Wait until both tasks are there.
/// while rt.metrics().num_alive_tasks() < 2 {
///     std::thread::yield_now();
/// }
/// let dump = rt.handle().dump();
/// let text = dump.to_string();
/// assert!(text.contains("\"parent\""), "{text}");
/// assert!(text.contains("└── task"), "{text}");
/// let child = dump.tasks().iter().find(|t| t.name() == Some("child")).unwrap();
/// assert_eq!(child.parent(), Some(parent.id()));
/// tx.send(()).unwrap();
/// rt.block_on(parent).unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct Dump {
    tasks: Vec<TaskInfo>,
}

impl Dump {
    /// Takes a dump through `for_each` (a scheduler's walk over its registry).
    pub(crate) fn collect(for_each: impl FnOnce(&mut dyn FnMut(&Header))) -> Dump {
        let mut tasks = Vec::new();
        for_each(&mut |h: &Header| tasks.push(TaskInfo::of(h)));
        tasks.sort_by_key(|t| t.id.as_u64());
        Dump { tasks }
    }

    /// Fills in each task's time in polls from the runtime's record (task id to nanoseconds).
    pub(crate) fn set_busy(&mut self, ns: &std::collections::HashMap<u64, u64>) {
        for t in &mut self.tasks {
            t.busy = Duration::from_nanos(ns.get(&t.id.as_u64()).copied().unwrap_or(0));
        }
    }

    /// Every task in the dump, ordered by id (spawn order).
    pub fn tasks(&self) -> &[TaskInfo] {
        &self.tasks
    }

    /// The task with id `id`, if it is in the dump.
    pub fn task(&self, id: TaskId) -> Option<&TaskInfo> {
        self.tasks.binary_search_by_key(&id.as_u64(), |t| t.id.as_u64()).ok().map(|i| &self.tasks[i])
    }

    /// The tasks `id` spawned directly (not through a scope or group), by id.
    pub fn children(&self, id: TaskId) -> impl Iterator<Item = &TaskInfo> {
        self.tasks.iter().filter(move |t| t.parent == Some(id) && t.group.is_none())
    }

    /// The number of tasks in the dump.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether the dump holds no task.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

/// A node of the printed tree.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Task(u64),
    Group(u64),
}

impl fmt::Display for Dump {
    /// The task tree, one task (or scope or group) per line:
    ///
    /// ```text
    /// 3 tasks
    /// task 1 "acceptor" idle, spawned at src/main.rs:10:5
    /// ├── task 2 running, spawned at src/main.rs:14:9
    /// └── task group 5
    ///     └── task 6 "worker" scheduled, spawned at src/main.rs:20:13
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let present: BTreeSet<u64> = self.tasks.iter().map(|t| t.id.as_u64()).collect();
        // Children of each node, in id order; a group's kind by its id.
        let mut children: BTreeMap<Node, BTreeSet<Node>> = BTreeMap::new();
        let mut kinds: BTreeMap<u64, GroupKind> = BTreeMap::new();
        let mut roots: BTreeSet<Node> = BTreeSet::new();
        for t in &self.tasks {
            let me = Node::Task(t.id.as_u64());
            let parent = t.parent.map(|p| p.as_u64()).filter(|p| present.contains(p) && *p != t.id.as_u64());
            match (t.group, parent) {
                (Some(g), parent) => {
                    kinds.insert(g.id.as_u64(), g.kind);
                    let group = Node::Group(g.id.as_u64());
                    children.entry(group).or_default().insert(me);
                    match parent {
                        Some(p) => children.entry(Node::Task(p)).or_default().insert(group),
                        None => roots.insert(group),
                    };
                }
                (None, Some(p)) => {
                    children.entry(Node::Task(p)).or_default().insert(me);
                }
                (None, None) => {
                    roots.insert(me);
                }
            }
        }
        writeln!(f, "{} task{}", self.tasks.len(), if self.tasks.len() == 1 { "" } else { "s" })?;
        let mut printed = BTreeSet::new();
        for root in &roots {
            self.write_tree(f, *root, &children, &kinds, &mut printed)?;
        }
        // Whatever a cycle of parents (which spawning cannot make) would hide.
        for t in &self.tasks {
            let me = Node::Task(t.id.as_u64());
            if !printed.contains(&me) {
                self.write_tree(f, me, &children, &kinds, &mut printed)?;
            }
        }
        Ok(())
    }
}

/// Levels of the tree drawn with indentation; deeper lines say their depth instead, so a long
/// chain of tasks (each spawning and awaiting the next) prints in space linear in its length.
const MAX_DRAWN_DEPTH: usize = 32;

impl Dump {
    /// Writes the subtree under `root`, depth first, with an explicit stack (a chain of tasks
    /// can be deeper than a thread's stack allows recursion).
    fn write_tree(
        &self,
        f: &mut fmt::Formatter<'_>,
        root: Node,
        children: &BTreeMap<Node, BTreeSet<Node>>,
        kinds: &BTreeMap<u64, GroupKind>,
        printed: &mut BTreeSet<Node>,
    ) -> fmt::Result {
        // (node, depth, whether it is its parent's last child), and per drawn level whether
        // the ancestor at that level was a last child (no `│` below it).
        let mut stack = vec![(root, 0usize, true)];
        let mut last_at: Vec<bool> = Vec::new();
        while let Some((node, depth, last)) = stack.pop() {
            if !printed.insert(node) {
                continue;
            }
            if depth > 0 {
                let drawn = depth.min(MAX_DRAWN_DEPTH);
                last_at.truncate(drawn - 1);
                for &l in &last_at {
                    f.write_str(if l { "    " } else { "│   " })?;
                }
                if depth > MAX_DRAWN_DEPTH {
                    write!(f, "[depth {depth}] ")?;
                }
                f.write_str(if last { "└── " } else { "├── " })?;
                if drawn < MAX_DRAWN_DEPTH {
                    last_at.push(last);
                }
            }
            self.write_line(f, node, kinds)?;
            if let Some(kids) = children.get(&node) {
                let kids: Vec<Node> = kids.iter().copied().filter(|k| !printed.contains(k)).collect();
                for (i, kid) in kids.iter().enumerate().rev() {
                    stack.push((*kid, depth + 1, i + 1 == kids.len()));
                }
            }
        }
        Ok(())
    }

    /// One node's line, without its indentation.
    fn write_line(&self, f: &mut fmt::Formatter<'_>, node: Node, kinds: &BTreeMap<u64, GroupKind>) -> fmt::Result {
        match node {
            Node::Task(id) => {
                let t = &self.tasks[self.tasks.binary_search_by_key(&id, |t| t.id.as_u64()).expect("a dumped task")];
                write!(f, "task {id}")?;
                if let Some(name) = &t.name {
                    write!(f, " {name:?}")?;
                }
                write!(f, " {}", t.state)?;
                if t.cancelled {
                    f.write_str(" (cancelled)")?;
                }
                if t.local {
                    f.write_str(" (local)")?;
                }
                write!(
                    f,
                    ", spawned at {}, polled {} time{}",
                    t.location,
                    t.polls,
                    if t.polls == 1 { "" } else { "s" }
                )?;
                if !t.busy.is_zero() {
                    write!(f, ", busy {:?}", t.busy)?;
                }
                writeln!(f)
            }
            Node::Group(id) => {
                let kind = match kinds.get(&id) {
                    Some(GroupKind::Scope) => "scope",
                    Some(GroupKind::JoinSet) => "join set",
                    _ => "task group",
                };
                writeln!(f, "{kind} {id}")
            }
        }
    }
}
