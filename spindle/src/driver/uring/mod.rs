//! The io_uring reactor: one ring per worker, readiness through multishot polls, and completion
//! ops with owned buffers.
//!
//! # Ring
//!
//! SQ of [`SQ_ENTRIES`], CQ four times that, `dontfork`, overflow-safe (the kernel keeps
//! overflowed CQEs with `NODROP`; a submit that fails with `EBUSY` leaves the entries queued, the
//! waiting thread reaps and submits again). Two modes:
//!
//! - **pinned** ([`Reactor::new_pinned`]): for a ring one thread drives for its whole life (a
//!   multi-thread worker, when `rt::multi_thread::PINNED_RINGS` is on, as it is; a current-thread
//!   runtime built with `bind_to_driving_thread`).
//!   `SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN | TASKRUN_FLAG`, created disabled and enabled
//!   by the first thread that waits on it, which becomes the owner. With `DEFER_TASKRUN`
//!   completions are posted only when the owner enters the kernel with `GETEVENTS`: its
//!   maintenance poll does so when the kernel flags pending task work. Only the
//!   owner touches the SQ: other threads (a task dropping an op after being stolen, a socket
//!   registered from outside the runtime) push entries to a mutex-protected `pending` list and
//!   wake the owner, which moves them to the SQ before it waits. A wake never submits on the ring.
//! - **shared** ([`Reactor::new`]): for a ring whose driving thread may change (an unbound
//!   current-thread runtime is driven by whichever thread calls `block_on`), and for multi-thread
//!   workers when `PINNED_RINGS` is off. No task-run deferral (a completion's task work must be
//!   able to interrupt whichever thread submitted it), so any thread may submit,
//!   under the slab lock (one spin lock guards the op slots and the SQ producer side, so an op's
//!   slot and SQE go in with one lock).
//!
//! In both modes entries pushed by the thread that last waited are submitted by its next wait
//! (one `io_uring_enter` per park for a whole batch) or by its next [`Reactor::maintain`] (the
//! non-blocking poll a busy thread makes between tasks: no syscall unless entries are queued,
//! task work is pending or the CQ overflowed; completions already in the CQ are reaped without
//! one; on a pinned ring the enter that submits also has the kernel post the completions it
//! deferred, including those the submissions themselves caused); [`Reactor::reap_completions`],
//! the poll of a worker out of local work, does not enter the kernel just to submit: its park
//! will, with its wait); other threads submit at once (shared) or hand over (pinned). Waking: an
//! eventfd watched by a multishot poll on the ring; `wake` writes it from any thread. Parking:
//! `io_uring_enter(GETEVENTS)` for one completion with the extended-argument timeout.
//!
//! # Registered files
//!
//! Sockets' owned-buffer reads and sends name the socket by a slot of the ring's sparse
//! registered-file table when it has one there, which spares the kernel an fd lookup per op; the
//! slot is installed by an update queued ahead of the socket's first op and released when the
//! socket is dropped (see [`files`] for the ordering and lifetime rules).
//!
//! # `user_data`
//!
//! Two tag bits: slab entries (index in the low 32 bits, a 30-bit generation above), the wake
//! poll, and requests whose completions are ignored (cancels, including the `ASYNC_CANCEL` that
//! ends a registration's poll: unlike `POLL_REMOVE` it cannot fail with `EALREADY` against the
//! poll's own wakeup and leave it armed), and updates of the registered-file table (slot in the
//! low bits, see [`files`]). A completion whose generation does not match its slot is stale and
//! ignored.
//!
//! # Op lifecycle
//!
//! One slab slot per op: `Idle` (the [`op::Op`] future holds its resources, nothing submitted)
//! `-> Queued` (first poll: resources boxed into the slot, the SQE pushed) `-> InFlight{waker}`
//! (submitted) `-> Done` (final CQE: result stored, waker woken; the future takes the resources
//! back). A *movable* op (its SQE points only into heap storage its data owns, e.g. a buffer:
//! [`op::OpData::MOVABLE`]) skips the box: the future keeps the data, untouched, while in flight.
//! Dropping the future while queued or in flight (on any thread) makes it `Orphaned`: a movable
//! op's data is boxed into the slot then, an `ASYNC_CANCEL` is pushed, and the slot keeps owning
//! the buffer — and closes any fd the kernel returns — until the final CQE; only then is the slot
//! freed, after the op's orphan hook ([`op::OpData::orphaned_completion`]) saw the result. Multishot requests (the
//! registration polls) live until a CQE without `F_MORE`. [`op::Op::cancel`] requests
//! cancellation and waits for the final CQE, returning the resources and the result (partial
//! transfers included). When the runtime is dropped, [`Reactor::shutdown`] marks the reactor
//! shut down (new ops and readiness waits on it fail), cancels the ops still in flight and reaps
//! them, which releases the sockets orphaned ops keep open. Teardown (`Drop`) cancels everything
//! still in flight and reaps until it all completed; past a deadline (or when it cannot reap, a
//! pinned ring dropped off its owner) it leaks the remaining resources rather than free memory
//! the kernel may still write.

pub(crate) mod bufring;
pub(crate) mod files;
pub(crate) mod op;
pub(crate) mod sink;

use std::any::Any;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use spindle_core::cache_padded::CachePadded;
use spindle_core::loom::unmodelled::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use spindle_core::spin::{SpinGuard, SpinLock};

use super::registration::{ScheduledIo, ERROR, READABLE, READ_CLOSED, WRITABLE, WRITE_CLOSED};

/// Submission queue size per ring.
pub(crate) const SQ_ENTRIES: u32 = 256;
/// Completion queue size per ring (4x the SQ: multishot polls post many CQEs per SQE).
pub(crate) const CQ_ENTRIES: u32 = SQ_ENTRIES * 4;

const TAG_SHIFT: u32 = 62;
const TAG_SLOT: u64 = 0;
const TAG_WAKE: u64 = 1;
const TAG_IGNORE: u64 = 2;
/// Registered-file table updates (see [`files`]).
const TAG_FILE: u64 = 3;
const GEN_MASK: u32 = (1 << 30) - 1;
const WAKE_KEY: u64 = TAG_WAKE << TAG_SHIFT;
const IGNORE_KEY: u64 = TAG_IGNORE << TAG_SHIFT;

/// `IORING_ENTER_GETEVENTS`.
const ENTER_GETEVENTS: u32 = 1;

/// How long teardown waits for in-flight ops to complete before leaking their resources.
const TEARDOWN_DEADLINE: Duration = Duration::from_secs(2);

fn slot_key(index: u32, generation: u32) -> u64 {
    (TAG_SLOT << TAG_SHIFT) | (((generation & GEN_MASK) as u64) << 32) | index as u64
}

fn io_err(context: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("spindle: {context}: {e}"))
}

/// A small per-thread number, to know whether the caller is a ring's waiting thread.
fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! { static TOKEN: u64 = NEXT.fetch_add(1, Relaxed); }
    TOKEN.with(|t| *t)
}

fn builder(pinned: bool, coop: bool) -> io_uring::Builder {
    let mut b = IoUring::builder();
    b.setup_cqsize(CQ_ENTRIES).dontfork();
    if pinned {
        b.setup_single_issuer().setup_defer_taskrun().setup_r_disabled();
    }
    if coop {
        b.setup_coop_taskrun().setup_taskrun_flag();
    }
    b
}

/// Checks once per process that io_uring is usable: not disabled by sysctl, rings with the flags
/// we use can be set up, the features we rely on are there, and every opcode we submit is
/// supported.
pub(crate) fn probe() -> io::Result<()> {
    static PROBE: OnceLock<Result<(), (io::ErrorKind, String)>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            probe_once().map_err(|e| (e.kind(), e.to_string())).inspect_err(|(_, m)| {
                if std::env::var_os("SPINDLE_DRIVER_DEBUG").is_some() {
                    eprintln!("spindle: io_uring probe failed: {m}");
                }
            })
        })
        .clone()
        .map_err(|(kind, msg)| io::Error::new(kind, msg))
}

fn probe_once() -> io::Result<()> {
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if s.trim() == "2" {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "io_uring is disabled (/proc/sys/kernel/io_uring_disabled = 2)",
            ));
        }
    }
    // The pinned flags need 6.1; the shared ring needs 5.19 for COOP_TASKRUN (only the pinned
    // mode uses it) and 5.13 for multishot polls. Probe the strictest ring we create.
    let ring = builder(false, false).build(8).map_err(|e| io_err("io_uring_setup", e))?;
    builder(true, true).build(8).map_err(|e| io_err("io_uring_setup(SINGLE_ISSUER|DEFER_TASKRUN)", e))?;
    let p = ring.params();
    if !p.is_feature_ext_arg() || !p.is_feature_nodrop() || !p.is_feature_resource_tagging() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring lacks EXT_ARG, NODROP or 5.13 features (multishot poll)",
        ));
    }
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(|e| io_err("IORING_REGISTER_PROBE", e))?;
    let ops: [(u8, &str); 14] = [
        (opcode::PollAdd::CODE, "POLL_ADD"),
        (opcode::PollRemove::CODE, "POLL_REMOVE"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        (opcode::Read::CODE, "READ"),
        (opcode::Write::CODE, "WRITE"),
        (opcode::Readv::CODE, "READV"),
        (opcode::Recv::CODE, "RECV"),
        (opcode::Send::CODE, "SEND"),
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::RecvMsg::CODE, "RECVMSG"),
        (opcode::Accept::CODE, "ACCEPT"),
        (opcode::Connect::CODE, "CONNECT"),
        (opcode::Timeout::CODE, "TIMEOUT"),
        (opcode::Nop::CODE, "NOP"),
    ];
    for (code, name) in ops {
        if !probe.is_supported(code) {
            return Err(io::Error::new(io::ErrorKind::Unsupported, format!("io_uring opcode {name} unsupported")));
        }
    }
    Ok(())
}

/// One slab entry: one cache line (an op's submission writes it, its completion and final poll
/// read it; see [`Orphan`] for what keeps it at 64 bytes).
#[repr(align(64))]
struct Entry {
    generation: u32,
    state: State,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 64, "a slab entry grew past one cache line");

enum State {
    Free,
    /// A registration's multishot poll. `live` is false once the registration was dropped (a
    /// `POLL_REMOVE` is on its way; the slot is freed by the final CQE).
    Poll {
        io: Arc<ScheduledIo>,
        fd: RawFd,
        live: bool,
    },
    Op(OpSlot),
    /// A request whose completions go to a sink (see [`sink`]); may be multishot.
    Sink(sink::SinkSlot),
}

/// A finished op as [`Reactor::poll_op`] hands it back: the final CQE's result and flags, and
/// the resources if the slot held them (not for movable ops, whose future keeps them).
pub(crate) type OpOutcome = (i32, u32, Option<Box<dyn Any + Send>>);

/// The kernel-facing half of an op: owns its resources until the final CQE.
struct OpSlot {
    waker: Option<Waker>,
    /// The op's resources (buffer, iovecs, socket address). The kernel may read or write them
    /// until `result` is set.
    data: Option<Box<dyn Any + Send>>,
    /// The final CQE (result, flags).
    result: Option<(i32, u32)>,
    /// Set when the future was dropped: free on the final CQE. Declared after `data`: the
    /// keeper in it is dropped after the data.
    orphan: Option<Box<Orphan>>,
}

/// What an op's slot needs once its future was dropped. Boxed, and made only then: every op's
/// slot is written at submission and read at completion, and these fields made it 80 bytes
/// instead of 64 (one cache line).
struct Orphan {
    /// The result is an fd the slot must close if nobody takes it.
    returns_fd: bool,
    /// Called with the data and the final result (see [`op::OpData::orphaned_completion`]).
    hook: Option<op::OrphanHook>,
    /// What the data borrowed (see [`op::OpData::detach`]); only held, to be dropped after it.
    _keeper: Option<op::Keeper>,
}

impl OpSlot {
    /// The future is gone and the final result is in: hand the data to the op's orphan hook
    /// (called outside the slab lock: hooks lock and wake).
    fn finish_orphaned(&mut self) {
        let hook = self.orphan.as_ref().and_then(|o| o.hook);
        if let (Some(hook), Some((res, _)), Some(data)) = (hook, self.result, self.data.as_mut()) {
            hook(&mut **data, res);
        }
    }
}

#[derive(Default)]
struct Slab {
    entries: Vec<Entry>,
    free: Vec<u32>,
    /// Op and poll slots awaiting their final CQE.
    in_flight: usize,
    /// Ops submitted over the reactor's life (a statistic: tests check that I/O really goes
    /// through the ring). Counted under the slab lock the submission takes anyway.
    ops_submitted: u64,
    /// The registered-file table's slots (see [`files`]).
    files: files::FileTable,
}

impl Slab {
    fn alloc(&mut self, state: State) -> (u32, u32) {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                if self.entries.len() == self.entries.capacity() {
                    // Grow by a quarter, not double: every idle connection's readiness watch is
                    // a 64-byte entry here, and doubling left up to half the slab unused (at
                    // 9,000 connections, 16,384 entries: 116 bytes per connection instead of
                    // 64-80). Growing is rare (a copy of the entries) and never on a hot path.
                    self.entries.reserve_exact((self.entries.len() / 4).max(64));
                }
                self.entries.push(Entry { generation: 0, state: State::Free });
                (self.entries.len() - 1) as u32
            }
        };
        let e = &mut self.entries[index as usize];
        e.generation = e.generation.wrapping_add(1) & GEN_MASK;
        e.state = state;
        self.in_flight += 1;
        (index, e.generation)
    }

    fn get(&mut self, index: u32, generation: u32) -> Option<&mut Entry> {
        self.entries.get_mut(index as usize).filter(|e| e.generation == generation & GEN_MASK)
    }

    /// Frees a slot whose final CQE arrived; returns its state for the caller to drop outside
    /// the lock.
    fn release(&mut self, index: u32) -> State {
        let e = &mut self.entries[index as usize];
        self.free.push(index);
        self.in_flight -= 1;
        std::mem::replace(&mut e.state, State::Free)
    }
}

/// A CQE copied out of the ring.
#[derive(Clone, Copy)]
struct Cqe {
    user_data: u64,
    result: i32,
    flags: u32,
}

/// One io_uring with its wake eventfd, registrations and ops. See the module docs.
pub(crate) struct Reactor {
    // Layout: what the owner writes on every op or wait (the slab lock, the CQ lock, the
    // unsubmitted flag) and what other threads write when they hand entries over each sit on
    // their own cache lines, apart from the read-mostly fields (the ring's pointers, `pinned`,
    // `waiter`, `shut_down`) that other threads read per op: a socket's reactor lookup reads
    // `shut_down` and the enum tag, which sat next to `unsubmitted` (stored per op).
    ring: IoUring,
    pinned: bool,
    /// Serializes CQ consumers (the waiting thread, teardown); holds the vector completions are
    /// copied into, kept between waits so a batch costs no allocation.
    cq_lock: CachePadded<Mutex<Vec<Cqe>>>,
    /// The op slots, and the right to produce into the SQ (the SQ tail is not shared-writer
    /// safe): one lock, so that submitting an op (a slot plus its SQE) takes it once. A spin
    /// lock: every critical section is a few field writes (taking it is one atomic
    /// read-modify-write, releasing it a plain store), except a push into a full SQ, which
    /// submits under it. Never held while waking, dropping op resources or calling sinks.
    slab: CachePadded<SpinLock<Slab>>,
    /// Entries handed over by threads that may not submit (pinned mode), or that found the SQ full.
    pending: CachePadded<Mutex<Vec<squeue::Entry>>>,
    has_pending: CachePadded<AtomicBool>,
    /// Token of the thread that last waited (pinned: the owner, fixed once set).
    waiter: AtomicU64,
    /// The waiting thread pushed entries that its next wait (or maintenance poll) submits.
    unsubmitted: CachePadded<AtomicBool>,
    eventfd: OwnedFd,
    /// The provided-buffer pool, created on first use (see [`bufring`]).
    bufs: bufring::PoolSlot,
    /// The runtime owning this reactor was shut down: nothing will drive it any more.
    shut_down: AtomicBool,
    /// Teardown removed the wake poll on purpose: its `ECANCELED` is not to be re-armed.
    tearing_down: AtomicBool,
    /// The id of the runtime owning this reactor (see `driver::Reactor::owner`).
    pub(super) owner: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Reactor {
    /// A shared ring: any thread may drive it (current-thread runtimes).
    pub(crate) fn new() -> io::Result<Reactor> {
        Reactor::build(false)
    }

    /// A pinned ring: the first thread that waits on it owns it for good (workers).
    pub(crate) fn new_pinned() -> io::Result<Reactor> {
        Reactor::build(true)
    }

    fn build(pinned: bool) -> io::Result<Reactor> {
        let ring = builder(pinned, pinned).build(SQ_ENTRIES).map_err(|e| io_err("io_uring_setup", e))?;
        super::note_uring_built();
        // SAFETY: a plain syscall; the result is checked and wrapped in an OwnedFd at once.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(io_err("eventfd", io::Error::last_os_error()));
        }
        // SAFETY: `efd` is a fresh fd we own.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        let r = Reactor {
            ring,
            pinned,
            cq_lock: CachePadded(Mutex::new(Vec::new())),
            slab: CachePadded(SpinLock::new(Slab::default())),
            pending: CachePadded(Mutex::new(Vec::new())),
            has_pending: CachePadded(AtomicBool::new(false)),
            waiter: AtomicU64::new(0),
            unsubmitted: CachePadded(AtomicBool::new(false)),
            eventfd,
            bufs: Default::default(),
            shut_down: AtomicBool::new(false),
            tearing_down: AtomicBool::new(false),
            owner: AtomicUsize::new(0),
        };
        if pinned {
            // Submitted by the owner's first wait (the ring is disabled until then).
            lock(&r.pending.0).push(r.wake_poll());
            r.has_pending.store(true, Release);
        } else {
            r.push(&[r.wake_poll()]);
        }
        Ok(r)
    }

    fn wake_poll(&self) -> squeue::Entry {
        opcode::PollAdd::new(types::Fd(self.eventfd.as_raw_fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(WAKE_KEY)
    }

    /// Whether this ring runs in pinned mode.
    pub(crate) fn is_pinned(&self) -> bool {
        self.pinned
    }

    /// Makes a blocked (or the next) `wait` return; any thread. Never touches the ring.
    pub(crate) fn wake(&self) {
        crate::driver::signal_eventfd(&self.eventfd);
    }

    fn on_waiter_thread(&self) -> bool {
        self.waiter.load(Relaxed) == thread_token()
    }

    /// The slab and SQ lock (see the field).
    fn lock_slab(&self) -> SpinGuard<'_, Slab> {
        self.slab.lock(crate::rt::park::spin_relax)
    }

    /// Queues entries: into the SQ when this thread may touch it (submitted at once unless this
    /// is the waiting thread, whose next wait submits the batch), else handed to the waiter.
    ///
    /// Callers guarantee that the memory every entry points to stays valid until its final CQE
    /// (it is owned by a slab slot, or is the reactor's own eventfd).
    fn push(&self, entries: &[squeue::Entry]) {
        let waiter = self.on_waiter_thread();
        if self.pinned && !waiter {
            lock(&self.pending.0).extend_from_slice(entries);
            self.hand_over_pending();
            return;
        }
        let leftover = self.push_locked(&mut self.lock_slab(), entries);
        self.pushed(waiter, &entries[entries.len() - leftover..]);
    }

    /// After entries went into the SQ (by a thread allowed to, `waiter` if it is the waiting
    /// one): the waiter's next wait submits them, any other thread submits now (outside the
    /// lock: the kernel serializes submissions, and others may push meanwhile). `leftover`
    /// (what did not fit) is handed to the waiter.
    fn pushed(&self, waiter: bool, leftover: &[squeue::Entry]) {
        if waiter {
            self.unsubmitted.store(true, Relaxed);
        } else {
            // EBUSY (CQ overflow backlog) leaves the entries in the SQ for the waiter.
            let _ = self.ring.submit();
        }
        if !leftover.is_empty() {
            lock(&self.pending.0).extend_from_slice(leftover);
            self.hand_over_pending();
        }
    }

    /// Entries were added to `pending`: flags them and wakes the waiter, unless they were flagged
    /// already (the waiter was woken for the earlier ones and has not taken them yet; its
    /// `flush_pending` clears the flag before it takes the queue, so it takes these too). A
    /// thread that is not a pinned ring's owner hands over an entry per op; a burst of them (a
    /// worker running tasks it stole, whose sockets are served by this ring) cost one eventfd
    /// write each before: measured, 0.09 writes per echo round trip over two workers.
    fn hand_over_pending(&self) {
        if !self.has_pending.swap(true, AcqRel) {
            self.wake();
        }
    }

    /// Pushes into the SQ (the caller holds the slab lock, proven by `_slab`, and may submit);
    /// returns how many entries at the end did not fit.
    fn push_locked(&self, _slab: &mut Slab, entries: &[squeue::Entry]) -> usize {
        for (i, e) in entries.iter().enumerate() {
            loop {
                // SAFETY: the caller holds the slab lock, so no other SubmissionQueue view of
                // this ring exists while this one lives.
                let mut sq = unsafe { self.ring.submission_shared() };
                // SAFETY: the entry's pointers stay valid until its final CQE (the contract of
                // `push`).
                if unsafe { sq.push(e) }.is_ok() {
                    break;
                }
                drop(sq);
                // Full: submit what is queued to make room.
                match self.ring.submit() {
                    Ok(n) if n > 0 => continue,
                    _ => return entries.len() - i,
                }
            }
        }
        0
    }

    /// Moves handed-over entries into the SQ (waiting thread only); returns whether there were any.
    fn flush_pending(&self) -> bool {
        // A plain load first: the swap would take the line from the threads that read the flag
        // even when there is nothing to take.
        if !self.has_pending.load(Relaxed) || !self.has_pending.swap(false, Acquire) {
            return false;
        }
        let entries = std::mem::take(&mut *lock(&self.pending.0));
        let left = self.push_locked(&mut self.lock_slab(), &entries);
        if left > 0 {
            let mut p = lock(&self.pending.0);
            let mut rest = entries[entries.len() - left..].to_vec();
            rest.append(&mut p);
            *p = rest;
            self.has_pending.store(true, Release);
        }
        true
    }

    /// Waits for completions (or a wake, or the timeout) and dispatches them. Returns whether a
    /// wake was seen. Called by the thread that parks on this reactor.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> bool {
        self.wait_inner(timeout, true, true)
    }

    /// [`wait`](Self::wait); with `submit` false and a zero timeout, the kernel is entered only
    /// when it must be (handed-over entries, task work, CQ overflow), not merely to submit the
    /// entries this thread queued.
    ///
    /// `collect` false: a pinned ring's non-sleeping enter asks for deferred completions only if
    /// the kernel flagged some before it (see [`submit_queued`](Self::submit_queued)).
    fn wait_inner(&self, timeout: Option<Duration>, submit: bool, collect: bool) -> bool {
        let mut cq_guard = lock(&self.cq_lock.0);
        let me = thread_token();
        if self.pinned {
            let owner = self.waiter.load(Relaxed);
            if owner == 0 {
                if let Err(e) = self.ring.submitter().register_enable_rings() {
                    panic!("spindle: cannot enable the io_uring: {e}");
                }
                self.waiter.store(me, Relaxed);
            } else if owner != me {
                // The contract says a pinned ring is driven by one thread; waiting from another
                // would fail in the kernel (EEXIST). Sleep instead of spinning.
                std::thread::sleep(timeout.unwrap_or(Duration::from_millis(10)).min(Duration::from_millis(10)));
                return false;
            }
        } else {
            self.waiter.store(me, Relaxed);
        }
        let flushed = self.flush_pending();
        let mut cqes = std::mem::take(&mut *cq_guard);
        // Something already there (or a zero timeout): do not sleep.
        // SAFETY: we hold `cq_lock`: the only CompletionQueue view.
        let ready = !unsafe { self.ring.completion_shared() }.is_empty();
        let want = if ready || timeout == Some(Duration::ZERO) { 0 } else { 1 };
        // Not sleeping: enter the kernel only for something it must do (completions already in
        // the CQ are reaped without a syscall).
        let enter = want == 1 || flushed || {
            let _g = self.lock_slab();
            // SAFETY: we hold the slab lock: the only SubmissionQueue view.
            let sq = unsafe { self.ring.submission_shared() };
            (submit && !sq.is_empty()) || sq.cq_overflow() || (self.pinned && sq.taskrun())
        };
        if enter {
            // Everything queued so far is submitted below (what an EBUSY leaves is retried by
            // the next wait, which the overflow makes come soon).
            self.unsubmitted.store(false, Relaxed);
        }
        for attempt in 0..2 {
            if !enter {
                break;
            }
            // Not under the slab lock: this may block, and other threads must still be able to
            // push (the kernel serializes submissions; the SQ tail we publish is atomic).
            let r = {
                match timeout {
                    Some(d) if want == 1 => {
                        let ts = types::Timespec::from(d);
                        let args = types::SubmitArgs::new().timespec(&ts);
                        self.ring.submitter().submit_with_args(want, &args)
                    }
                    _ if want == 0 && self.pinned && collect => self.submit_and_post_deferred(),
                    _ => self.ring.submit_and_wait(want),
                }
            };
            match r {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt == 0 => {
                    // CQ overflow backlog: reap, then submit again.
                    self.reap(&mut cqes);
                }
                _ => break,
            }
        }
        self.reap(&mut cqes);
        drop(cq_guard);
        let woken = self.dispatch(&mut cqes);
        // Give the (emptied) vector back for the next wait, unless a nested wait did meanwhile.
        let mut back = lock(&self.cq_lock.0);
        if back.capacity() < cqes.capacity() {
            *back = cqes;
        }
        drop(back);
        // The eventfd's counter is never read back: the multishot poll posts a CQE for wakeups
        // of the eventfd (`wake` writes; writes before the kernel handles the first may make
        // one CQE), not while the counter stays non-zero, so resetting it would cost a `read`
        // per wake for nothing (a re-armed poll reports a non-zero counter once: one spurious
        // wake). At one per wake it never nears its limit.
        if self.has_pending.load(Relaxed) {
            // Handed-over entries that did not fit: make the next wait come back soon.
            self.wake();
        }
        woken
    }

    /// A pinned ring's non-sleeping enter: submits what is queued and, in the same
    /// `io_uring_enter`, has the kernel post the completions it deferred for this ring,
    /// including those the submissions themselves just caused (a send over loopback completes
    /// the peer's receive at once; with both ends on this ring that receive's completion is
    /// deferred task work here). The crate's `submit` asks for deferred work (`GETEVENTS`) only
    /// when the kernel had flagged some *before* the call, so those would wait for one more
    /// enter: measured, on echo over two workers that was 2 in 3 of all `io_uring_enter`s.
    fn submit_and_post_deferred(&self) -> io::Result<usize> {
        let queued = {
            let _g = self.lock_slab();
            // SAFETY: we hold the slab lock: the only SubmissionQueue view.
            unsafe { self.ring.submission_shared() }.len()
        };
        // SAFETY: no argument pointer is passed; the entries submitted point to memory their
        // slots keep valid until their final CQEs (the contract of `push`).
        unsafe { self.ring.submitter().enter::<libc::sigset_t>(queued as u32, 0, ENTER_GETEVENTS, None) }
    }

    /// The non-blocking poll a busy thread makes between tasks (see the driver contract): when
    /// entries wait to be submitted (pushed by this thread, or handed over), the kernel has task
    /// work for us (`IORING_SQ_TASKRUN`, pinned rings), the CQ overflowed or completions wait in
    /// the CQ, one `wait(Some(ZERO))`; otherwise nothing, not even a syscall. Called by the
    /// thread that waits on this reactor. Returns whether anything was dispatched or submitted.
    pub(crate) fn maintain(&self) -> bool {
        self.poll_nonblocking(true, true)
    }

    /// For the owner of a pinned ring about to spin before parking: [`maintain`](Self::maintain),
    /// except that an enter made only to submit does not also collect the completions it causes
    /// (the spin sees them through the `IORING_SQ_TASKRUN` flag and its next look reaps them).
    /// Measured: collecting them here kept the two ends of a one-connection conversation on two
    /// workers (the spinner no longer came to steal the other end), 7 us per round trip instead
    /// of 4 us.
    pub(crate) fn submit_queued(&self) -> bool {
        self.poll_nonblocking(true, false)
    }

    /// Like [`maintain`](Self::maintain), but leaves the entries this thread pushed queued (its
    /// next wait or maintenance poll submits them in one batch): for a worker that ran out of
    /// local work and is about to look elsewhere or park. Dispatches completions already posted
    /// (no syscall), and enters the kernel only when it must anyway (handed-over entries, pending
    /// task work, a CQ overflow), which then submits everything queued as well.
    pub(crate) fn reap_completions(&self) -> bool {
        self.poll_nonblocking(false, true)
    }

    /// For the owner of a pinned ring spinning before it parks: whether the kernel has deferred
    /// completions for it (`IORING_SQ_TASKRUN`; a pinned ring posts them only when its owner
    /// enters the kernel, so they are not in the CQ yet) or the CQ overflowed. No syscall, and no
    /// waiting for the slab lock: while another thread holds it this says `false` (the next
    /// check sees the flag). `false` on shared rings (their completions are not deferred).
    pub(crate) fn has_deferred_completions(&self) -> bool {
        self.pinned && self.sq_flags_pending(false)
    }

    /// See [`crate::driver::Reactor::has_undispatched_events`]: entries handed over for the
    /// owner's next wait or queued by it (over loopback their completions come with that very
    /// submission), deferred completions, or a CQ overflow. A shared ring posts completions to
    /// the CQ and wakes its waiter at once. While another thread holds the slab lock (only ever
    /// briefly, never across a wait) this says `true`.
    pub(crate) fn has_undispatched_events(&self) -> bool {
        self.has_pending.load(Acquire) || self.unsubmitted.load(Relaxed) || self.sq_flags_pending(true)
    }

    /// The SQ flags say the owner has kernel work to collect: deferred completions (pinned rings)
    /// or a CQ overflow. Without waiting for the slab lock: `if_busy` while another thread holds it.
    fn sq_flags_pending(&self, if_busy: bool) -> bool {
        let Some(_g) = self.slab.try_lock() else { return if_busy };
        // SAFETY: we hold the slab lock: the only SubmissionQueue view.
        let sq = unsafe { self.ring.submission_shared() };
        (self.pinned && sq.taskrun()) || sq.cq_overflow()
    }

    /// See [`crate::driver::Reactor::flush_submissions`].
    pub(crate) fn flush_submissions(&self) {
        if self.on_waiter_thread() && self.unsubmitted.swap(false, Relaxed) {
            // EBUSY (CQ overflow backlog) leaves the entries in the SQ for the next wait.
            let _ = self.ring.submit();
        }
    }

    /// Whether entries this thread pushed wait for its next wait or maintenance poll.
    pub(crate) fn has_unsubmitted(&self) -> bool {
        self.unsubmitted.load(Relaxed)
    }

    fn poll_nonblocking(&self, submit_own: bool, collect: bool) -> bool {
        if self.pinned && !self.on_waiter_thread() && self.waiter.load(Relaxed) != 0 {
            return false; // another thread owns this ring
        }
        // Cheapest checks first: this runs every few dozen task polls.
        let needed = self.has_pending.load(Relaxed)
            || (submit_own && self.unsubmitted.load(Relaxed))
            || self.waiter.load(Relaxed) == 0
            || (self.pinned && {
                // Deferred task work (completions not yet posted) only runs when the owner
                // enters the kernel. (A shared ring's task work runs on its own, and a CQ
                // overflow leaves the CQ full, which the check below sees.)
                let _g = self.lock_slab();
                // SAFETY: we hold the slab lock: the only SubmissionQueue view.
                let sq = unsafe { self.ring.submission_shared() };
                sq.taskrun() || sq.cq_overflow()
            })
            || {
                let _c = lock(&self.cq_lock.0);
                // SAFETY: we hold `cq_lock`: the only CompletionQueue view.
                !unsafe { self.ring.completion_shared() }.is_empty()
            };
        if needed {
            self.wait_inner(Some(Duration::ZERO), submit_own, collect);
        }
        needed
    }

    /// Copies every available CQE out (caller holds `cq_lock`).
    fn reap(&self, out: &mut Vec<Cqe>) {
        // SAFETY: the caller holds `cq_lock`: the only CompletionQueue view.
        let mut cq = unsafe { self.ring.completion_shared() };
        loop {
            cq.sync();
            if cq.is_empty() {
                break;
            }
            for c in &mut cq {
                out.push(Cqe { user_data: c.user_data(), result: c.result(), flags: c.flags() });
            }
        }
    }

    /// Dispatches the completions in `cqes`, leaving it empty.
    fn dispatch(&self, cqes: &mut Vec<Cqe>) -> bool {
        let mut woken = false;
        let mut ready: Vec<(Arc<ScheduledIo>, u32)> = Vec::new();
        let mut wakers: Vec<Waker> = Vec::with_capacity(cqes.len());
        let mut released: Vec<State> = Vec::new();
        let mut rearm: Vec<squeue::Entry> = Vec::new();
        let mut sinks: Vec<(Arc<dyn sink::CqeSink>, u64, i32, u32)> = Vec::new();
        {
            let mut slab = self.lock_slab();
            for c in cqes.drain(..) {
                let more = cqueue::more(c.flags);
                match c.user_data >> TAG_SHIFT {
                    TAG_WAKE => {
                        woken = true;
                        // Ended: re-arm, also after an `ECANCELED` teardown did not ask for (the
                        // kernel cancels a thread's requests when it exits, and a current-thread
                        // runtime may outlive the thread that drove it first).
                        if !more && (c.result != -libc::ECANCELED || !self.tearing_down.load(Relaxed)) {
                            rearm.push(self.wake_poll());
                        }
                    }
                    TAG_FILE => Self::file_update_done(&mut slab.files, c.user_data, c.result),
                    TAG_SLOT => {
                        let index = c.user_data as u32;
                        let generation = (c.user_data >> 32) as u32;
                        let Some(entry) = slab.get(index, generation) else { continue };
                        match &mut entry.state {
                            State::Free => {}
                            State::Poll { io, fd, live } => {
                                // A live registration's poll cancelled by nobody here: the kernel
                                // completes a poll with `ECANCELED` at its first event after the
                                // thread that submitted it exited (a current-thread runtime may
                                // outlive the thread that drove it first; see
                                // tests/driving_thread_exits.rs). Not an error of the socket: arm
                                // it again (from this thread).
                                let foreign_cancel = *live && c.result == -libc::ECANCELED;
                                if *live && !foreign_cancel {
                                    if c.result >= 0 {
                                        ready.push((io.clone(), poll_to_ready(c.result as u32)));
                                    } else {
                                        ready.push((io.clone(), ERROR | READ_CLOSED | WRITE_CLOSED));
                                    }
                                }
                                if !more {
                                    if *live && (c.result >= 0 || foreign_cancel) {
                                        // Multishot ended early (e.g. CQ overflow, or the
                                        // cancel above): re-arm.
                                        rearm.push(poll_entry(*fd, c.user_data));
                                    } else {
                                        released.push(slab.release(index));
                                    }
                                }
                            }
                            State::Sink(s) => {
                                sinks.push((s.sink.clone(), c.user_data, c.result, c.flags));
                                if !more {
                                    released.push(slab.release(index));
                                }
                            }
                            State::Op(op) => {
                                if more {
                                    continue; // no multishot ops besides polls yet
                                }
                                op.result = Some((c.result, c.flags));
                                if let Some(orphan) = &op.orphan {
                                    if orphan.returns_fd && c.result >= 0 {
                                        // SAFETY: the kernel returned a new fd that nobody else
                                        // knows of (the op's future is gone).
                                        drop(unsafe { OwnedFd::from_raw_fd(c.result) });
                                    }
                                    released.push(slab.release(index));
                                } else if let Some(w) = op.waker.take() {
                                    wakers.push(w);
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        if !rearm.is_empty() {
            self.push(&rearm);
        }
        // Outside the slab lock: sinks and wakers may submit or drop ops; buffers may have
        // destructors. Sinks get their CQEs before their slots' resources are released.
        for (s, key, result, flags) in sinks {
            s.complete(key, result, flags);
        }
        for state in &mut released {
            if let State::Op(op) = state {
                op.finish_orphaned();
            }
        }
        drop(released);
        for (io, bits) in ready {
            io.set_ready(bits);
        }
        for w in wakers {
            w.wake();
        }
        woken
    }

    /// Starts a multishot poll for `fd` and returns its key.
    pub(crate) fn register(&self, fd: RawFd, io: &Arc<ScheduledIo>) -> io::Result<u64> {
        let (index, generation) = self.lock_slab().alloc(State::Poll { io: io.clone(), fd, live: true });
        let key = slot_key(index, generation);
        self.push(&[poll_entry(fd, key)]);
        if self.is_shut_down() {
            // Registered (lazily, on first use) after `shutdown` woke the live registrations:
            // wake this one's waiters the same way. (Shutdown marks the reactor before it looks
            // at the slab; the slot above was allocated after that look, or it was seen.)
            io.set_ready(ERROR);
        }
        Ok(key)
    }

    /// Cancels a registration's poll; the slot is freed by its final CQE.
    pub(crate) fn deregister(&self, key: u64) {
        {
            let mut slab = self.lock_slab();
            let Some(e) = slab.get(key as u32, (key >> 32) as u32) else { return };
            match &mut e.state {
                State::Poll { live, .. } => *live = false,
                _ => return,
            }
        }
        // ASYNC_CANCEL, not POLL_REMOVE: a POLL_REMOVE that races with the poll's own wakeup
        // (its task work queued, not yet run) fails with EALREADY and leaves the multishot poll
        // armed for good, holding its file reference, so closing the socket would never reach
        // the peer. A cancel marks the poll cancelled and whoever owns it finishes it.
        let remove = opcode::AsyncCancel::new(key).build().user_data(IGNORE_KEY);
        self.push(&[remove]);
        if self.on_waiter_thread() {
            // Submit now so the kernel drops its file reference before the owner closes the fd
            // right after: the peer must see that close even if this thread then blocks (joins
            // a std thread that reads to end of stream). On a pinned ring the cancel finishes
            // the poll in deferred task work, which only an enter with `GETEVENTS` runs: a plain
            // submit left the poll, and the file, alive until this thread's next wait. The
            // completions that enter posts are reaped by the next maintenance poll or wait:
            // `push` left `unsubmitted` set, which also makes `has_undispatched_events` say so.
            let _ = if self.pinned { self.submit_and_post_deferred() } else { self.ring.submit() };
        }
    }

    /// Queues an op: moves `data` into a new slot and pushes `sqe` (built by `make` from the
    /// slot's key). Returns the slot's (index, generation).
    ///
    /// # Safety
    ///
    /// Every pointer in the SQE must point into `data`'s heap allocation (which the slot keeps
    /// at a fixed address until the final CQE) or to memory that outlives the op.
    pub(crate) unsafe fn submit_op(
        &self,
        data: Option<Box<dyn Any + Send>>,
        sqe: squeue::Entry,
        waker: Waker,
    ) -> (u32, u32) {
        let waiter = self.on_waiter_thread();
        // May this thread touch the SQ? Then slot and SQE go in under one lock.
        let direct = !self.pinned || waiter;
        let (index, generation, sqe, leftover) = {
            let mut slab = self.lock_slab();
            slab.ops_submitted += 1;
            let (index, generation) =
                slab.alloc(State::Op(OpSlot { waker: Some(waker), data, result: None, orphan: None }));
            let sqe = sqe.user_data(slot_key(index, generation));
            let leftover = direct && self.push_locked(&mut slab, std::slice::from_ref(&sqe)) > 0;
            (index, generation, sqe, leftover)
        };
        if direct {
            self.pushed(waiter, if leftover { std::slice::from_ref(&sqe) } else { &[] });
        } else {
            self.push(&[sqe]);
        }
        (index, generation)
    }

    /// Polls an op: its final result and resources when done, else stores the waker.
    pub(crate) fn poll_op(&self, index: u32, generation: u32, waker: &Waker) -> Option<OpOutcome> {
        let (done, state) = {
            let mut slab = self.lock_slab();
            let e = slab.get(index, generation).expect("spindle: op slot vanished while its future lives");
            let State::Op(op) = &mut e.state else { unreachable!("op key names a non-op slot") };
            match op.result {
                Some((res, flags)) => {
                    let data = op.data.take();
                    // Done: free the slot (under the same lock).
                    ((res, flags, data), slab.release(index))
                }
                None => {
                    match &op.waker {
                        Some(w) if w.will_wake(waker) => {}
                        _ => op.waker = Some(waker.clone()),
                    }
                    return None;
                }
            }
        };
        // Outside the lock: the slot's leftovers (a stale waker) may run arbitrary drops.
        drop(state);
        Some(done)
    }

    /// Asks the kernel to cancel an op (its final CQE still comes).
    pub(crate) fn cancel_op(&self, index: u32, generation: u32) {
        let cancel = opcode::AsyncCancel::new(slot_key(index, generation)).build().user_data(IGNORE_KEY);
        self.push(&[cancel]);
    }

    /// The op's future was dropped: free now if done, else orphan it and cancel. `kept` is the
    /// data of a movable op, which the future held until now and the slot keeps from here on,
    /// with `keeper` (what the data borrowed: see [`op::OpData::detach`]); `returns_fd` and
    /// `hook` as in [`op::OpData`].
    pub(crate) fn orphan_op(
        &self,
        index: u32,
        generation: u32,
        kept: Option<Box<dyn Any + Send>>,
        keeper: Option<op::Keeper>,
        returns_fd: bool,
        hook: Option<op::OrphanHook>,
    ) {
        let state = {
            let mut slab = self.lock_slab();
            let Some(e) = slab.get(index, generation) else {
                // Cannot happen (a live future's slot is freed only through it); never drop
                // memory the kernel might use, or close its fd, on a broken invariant.
                std::mem::forget((kept, keeper));
                return;
            };
            let State::Op(op) = &mut e.state else {
                std::mem::forget((kept, keeper));
                return;
            };
            if kept.is_some() {
                op.data = kept;
            }
            op.orphan = Some(Box::new(Orphan { returns_fd, hook, _keeper: keeper }));
            match op.result {
                Some((res, _)) => {
                    if returns_fd && res >= 0 {
                        // SAFETY: the kernel returned this fd to the op, whose future is gone.
                        drop(unsafe { OwnedFd::from_raw_fd(res) });
                    }
                    slab.release(index)
                }
                None => {
                    op.waker = None;
                    State::Free
                }
            }
        };
        match state {
            State::Free => self.cancel_op(index, generation),
            State::Op(mut op) => op.finish_orphaned(),
            _ => {}
        }
    }

    /// Number of slots (ops and polls) awaiting a final CQE.
    pub(crate) fn in_flight(&self) -> usize {
        self.lock_slab().in_flight
    }

    /// Ops submitted so far (a statistic for tests).
    #[allow(dead_code)]
    pub(crate) fn ops_submitted(&self) -> u64 {
        self.lock_slab().ops_submitted
    }

    /// Whether [`shutdown`](Self::shutdown) ran.
    #[inline]
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Acquire)
    }

    /// The runtime is gone: marks the reactor shut down (new ops and readiness waits fail with
    /// a clear error), wakes every registration's waiters so they see it, cancels the ops still
    /// in flight and reaps them (up to [`TEARDOWN_DEADLINE`]) when this thread may drive the
    /// ring. Reaping releases what orphaned ops hold (buffers, and the sockets they keep open,
    /// whose registrations hold this reactor: without it those would form a cycle that is never
    /// freed). Called by the thread shutting the runtime down, after its tasks were dropped.
    pub(crate) fn shutdown(&self) {
        self.shut_down.store(true, Release);
        let (ios, cancels): (Vec<Arc<ScheduledIo>>, Vec<squeue::Entry>) = {
            let slab = self.lock_slab();
            let ios = slab
                .entries
                .iter()
                .filter_map(|e| match &e.state {
                    State::Poll { io, live: true, .. } => Some(io.clone()),
                    _ => None,
                })
                .collect();
            let cancels = slab
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| awaits_final_cqe(&e.state))
                .map(|(i, e)| opcode::AsyncCancel::new(slot_key(i as u32, e.generation)).build().user_data(IGNORE_KEY))
                .collect();
            (ios, cancels)
        };
        for io in ios {
            io.set_ready(ERROR);
        }
        if self.pinned && self.waiter.load(Relaxed) != thread_token() {
            // Only the owner may enter a pinned ring (and one never enabled never reached the
            // kernel); what is left in flight stays until the reactor is dropped, which leaks
            // rather than frees memory the kernel may still write.
            return;
        }
        if !cancels.is_empty() {
            self.push(&cancels);
        }
        let deadline = Instant::now() + TEARDOWN_DEADLINE;
        while self.ops_pending() > 0 && Instant::now() < deadline {
            self.wait(Some(Duration::from_millis(10)));
        }
        // Sockets that outlive the runtime keep their slots: release their files with the table.
        // Not with ops still in flight past the deadline: before Linux 6.13 the unregistration
        // waits for them (the table then goes with the ring).
        if self.ops_pending() == 0 {
            self.unregister_files();
        }
    }

    /// Op and sink slots (not polls) whose final CQE has not arrived.
    fn ops_pending(&self) -> usize {
        self.lock_slab().entries.iter().filter(|e| awaits_final_cqe(&e.state)).count()
    }
}

/// An op or sink op whose final CQE has not arrived (a sink slot lives exactly until then).
fn awaits_final_cqe(state: &State) -> bool {
    matches!(state, State::Op(op) if op.result.is_none()) || matches!(state, State::Sink(_))
}

fn poll_entry(fd: RawFd, key: u64) -> squeue::Entry {
    let events = libc::POLLIN | libc::POLLOUT | libc::POLLRDHUP | libc::POLLPRI;
    opcode::PollAdd::new(types::Fd(fd), events as u32).multi(true).build().user_data(key)
}

fn poll_to_ready(events: u32) -> u32 {
    let e = events as libc::c_short;
    let mut bits = 0;
    if e & (libc::POLLIN | libc::POLLPRI) != 0 {
        bits |= READABLE;
    }
    if e & libc::POLLOUT != 0 {
        bits |= WRITABLE;
    }
    if e & (libc::POLLRDHUP | libc::POLLHUP) != 0 {
        bits |= READ_CLOSED;
    }
    if e & libc::POLLHUP != 0 {
        bits |= WRITE_CLOSED;
    }
    if e & libc::POLLERR != 0 {
        bits |= ERROR;
    }
    bits
}

impl Drop for Reactor {
    fn drop(&mut self) {
        // Cancel everything still in flight, then reap until it all completed. Memory the
        // kernel may still touch is freed only after its final CQE; past the deadline it leaks.
        let me = thread_token();
        let owner = self.waiter.load(Relaxed);
        // A pinned ring never enabled never reached the kernel: nothing to wait for.
        let never_enabled = self.pinned && owner == 0;
        let can_reap = !self.pinned || owner == me;
        if can_reap {
            let mut cancels: Vec<squeue::Entry> = {
                let slab = self.lock_slab();
                slab.entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| !matches!(e.state, State::Free))
                    .map(|(i, e)| {
                        opcode::AsyncCancel::new(slot_key(i as u32, e.generation)).build().user_data(IGNORE_KEY)
                    })
                    .collect()
            };
            self.tearing_down.store(true, Relaxed);
            cancels.push(opcode::PollRemove::new(WAKE_KEY).build().user_data(IGNORE_KEY));
            self.waiter.store(me, Relaxed);
            self.push(&cancels);
            let deadline = Instant::now() + TEARDOWN_DEADLINE;
            while self.lock_slab().in_flight > 0 && Instant::now() < deadline {
                self.wait(Some(Duration::from_millis(10)));
            }
        }
        // The buffer pool's ring is unregistered only once nothing can pick from it; else the
        // pool is leaked with the ops (see `bufring`).
        let clean = self.lock_slab().in_flight == 0 || never_enabled;
        self.release_buf_pool(clean);
        let mut slab = self.lock_slab();
        if slab.in_flight > 0 && !never_enabled {
            // Leak what the kernel may still own: never free under the kernel.
            for e in slab.entries.iter_mut() {
                if let State::Op(op) = &mut e.state {
                    if op.result.is_none() {
                        std::mem::forget(op.data.take());
                    }
                }
                if let State::Sink(s) = &mut e.state {
                    std::mem::forget(s.data.take());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
