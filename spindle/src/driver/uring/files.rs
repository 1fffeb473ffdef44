//! Registered files: a ring's sparse table of sockets its ops name by slot instead of by fd.
//!
//! An op naming a plain fd makes the kernel look the fd up and take a reference on its file
//! (`fget`/`fput`) every time it is issued; an op naming a slot of the ring's registered-file
//! table skips both. Measured on echo over io_uring: the lookup was ~100 ns of a 2.7 us round
//! trip (four ops).
//!
//! # Contract
//!
//! - The table is created on the first [`Reactor::install_file`] (a sparse registration of
//!   [`slots`] entries: at most [`MAX_SLOTS`], and no more than `RLIMIT_NOFILE` allows); if the
//!   kernel refuses it, or is older than 6.13 ([`supported`]), the ring never uses registered
//!   files and every op names fds.
//! - [`Reactor::install_file`] gives a slot to an fd: it queues an `IORING_OP_FILES_UPDATE` into
//!   the SQ, ahead of the op that asked for it. The kernel issues SQEs in order and this update
//!   completes at issue, so every later SQE sees the slot filled. It only installs when the
//!   calling thread may push into the SQ directly (a pinned ring's owner, any thread on a shared
//!   ring) and the SQ has room: an entry handed over to the owner could be overtaken by ops
//!   pushed directly. Otherwise (table full, ring shut down, no room) it says `None` and the op
//!   names the fd, which always works.
//! - The slot holds a reference to the file: closing the fd no longer closes the socket. The
//!   socket's owner (`net::socket::PollSocket`) therefore calls [`Reactor::release_file`] when it
//!   is dropped, which is after its last op completed (an orphaned op keeps the socket alive).
//!   The release is an update to `-1`, pushed from any thread (so that the peer sees the close
//!   promptly, the caller submits it at once if its thread queued it and does not drive the ring
//!   right now: [`Reactor::flush_submissions`]); the slot returns to the free list only on its
//!   completion, so a later install of the same slot can never be overtaken by it.
//! - [`Reactor::shutdown`] unregisters the whole table when it may enter the ring and nothing is
//!   in flight: the files of sockets still alive after their runtime are then released when their
//!   fds close, and their releases are not queued any more.
//! - If an install fails (only `ENOMEM` can make it), ops naming the slot fail with `EBADF`:
//!   they are submitted again naming the fd ([`super::op::OpFd::fall_back`]), and the ring
//!   installs nothing more.
//! - The kernel reads an install's fd from memory when it issues the update, so each slot has a
//!   home for its fd here, in chunks that never move while the table lives.

use std::os::fd::RawFd;

use io_uring::{opcode, squeue};

use super::{Reactor, TAG_FILE, TAG_SHIFT};

/// The most slots a ring's table has (the kernel allocates 8 bytes of table per slot).
pub(crate) const MAX_SLOTS: u32 = 8192;

/// Slots per chunk of fd homes.
const CHUNK: usize = 256;

/// A `user_data` bit of a file-table update's completion: set for a release, clear for an install.
const RELEASE_BIT: u64 = 1 << 32;

/// What a release writes into its slot: no file.
static NO_FILE: RawFd = -1;

/// The table's bookkeeping; lives in the slab, under the slab lock (an install's slot and SQE go
/// in under one lock, like an op's).
#[derive(Default)]
pub(super) struct FileTable {
    state: TableState,
    /// Slots never used yet start here.
    next: u32,
    /// Released slots.
    free: Vec<u32>,
    /// Slots given out and not yet released (a statistic for tests).
    in_use: u32,
    /// Where each slot's install reads its fd (`homes[slot / CHUNK][slot % CHUNK]`). Boxed
    /// chunks: an install queued in the SQ points into one, which must not move when the vector
    /// grows.
    #[allow(clippy::vec_box)]
    homes: Vec<Box<[RawFd; CHUNK]>>,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum TableState {
    /// Not registered yet (no install asked for a slot).
    #[default]
    Unset,
    /// Registered with this many slots.
    Ready(u32),
    /// The kernel refused the table (or is too old, see [`supported`]), or an install failed:
    /// no more installs; the slots given out are still released.
    Off,
    /// Unregistered (shutdown): the kernel released every slot's file; nothing to release.
    Gone,
}

/// Whether this kernel releases a slot's file as soon as the requests that used it are done:
/// Linux 6.13 and later. Before, a file taken out of the table was freed only once every request
/// issued while it was in were done, in order, so one receive pending on an idle connection
/// would keep every socket closed after it from closing (the peer would never see the end).
pub(crate) fn supported() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        // SAFETY: `utsname` is plain bytes; zeroed is a valid value for `uname` to fill.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: `u` is a valid `utsname` for the call to fill.
        if unsafe { libc::uname(&mut u) } != 0 {
            return false;
        }
        let release: String = u.release.iter().take_while(|&&c| c != 0).map(|&c| c as u8 as char).collect();
        kernel_at_least(&release, (6, 13))
    })
}

/// Whether a kernel release string (`6.18.0-1-amd64`) is at least `min` (major, minor).
pub(crate) fn kernel_at_least(release: &str, min: (u32, u32)) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    match (major, minor) {
        (Some(major), Some(minor)) => (major, minor) >= min,
        _ => false,
    }
}

/// How many slots a new table gets: [`MAX_SLOTS`], or fewer if `RLIMIT_NOFILE` is lower (the
/// kernel refuses a table larger than it).
pub(crate) fn slots() -> u32 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid `rlimit` for the call to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    lim.rlim_cur.min(MAX_SLOTS as libc::rlim_t) as u32
}

fn file_key(slot: u32, release: bool) -> u64 {
    (TAG_FILE << TAG_SHIFT) | if release { RELEASE_BIT } else { 0 } | slot as u64
}

/// What [`Reactor::install_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileInstall {
    /// The fd has this slot.
    Slot(u32),
    /// Not from this thread, or not at this moment: a pinned ring installs only for its owner,
    /// and the update needs room in the SQ. Another op (on the owner's thread) may ask again.
    NotNow,
    /// This ring gives it none: no table (unsupported, or shut down), or the table is full.
    Never,
}

impl FileInstall {
    /// The slot, if one was given.
    pub(crate) fn slot(self) -> Option<u32> {
        match self {
            FileInstall::Slot(s) => Some(s),
            FileInstall::NotNow | FileInstall::Never => None,
        }
    }
}

impl Reactor {
    /// Gives `fd` a slot in this ring's registered-file table, for the ops this thread submits
    /// next on this ring to name (see the module contract); otherwise the ops name the fd, and
    /// [`FileInstall`] says whether asking again later may help. The caller must
    /// [`release_file`](Self::release_file) a slot it got when `fd`'s owner closes it.
    pub(crate) fn install_file(&self, fd: RawFd) -> FileInstall {
        self.install_file_within(fd, None)
    }

    /// [`install_file`](Self::install_file) with a table of `cap` slots if this creates it
    /// (tests use small tables to fill them), else of [`slots`].
    pub(crate) fn install_file_within(&self, fd: RawFd, cap: Option<u32>) -> FileInstall {
        if self.is_shut_down() {
            return FileInstall::Never;
        }
        let waiter = self.on_waiter_thread();
        if self.pinned && !waiter {
            return FileInstall::NotNow;
        }
        let slot = {
            let mut slab = self.lock_slab();
            let t = &mut slab.files;
            let cap = match t.state {
                TableState::Ready(cap) => cap,
                TableState::Off | TableState::Gone => return FileInstall::Never,
                TableState::Unset => {
                    // Once per ring, under the lock: other threads installing wait for it.
                    let cap = cap.unwrap_or_else(slots);
                    if cap == 0 || !supported() || self.ring.submitter().register_files_sparse(cap).is_err() {
                        t.state = TableState::Off;
                        return FileInstall::Never;
                    }
                    t.state = TableState::Ready(cap);
                    cap
                }
            };
            // Room for the update, so it goes into the SQ now, ahead of the op (see the contract).
            // SAFETY: we hold the slab lock: the only SubmissionQueue view.
            if unsafe { self.ring.submission_shared() }.is_full() {
                return FileInstall::NotNow;
            }
            let slot = match t.free.pop() {
                Some(s) => s,
                None if t.next < cap => {
                    t.next += 1;
                    t.next - 1
                }
                None => return FileInstall::Never,
            };
            let (chunk, at) = (slot as usize / CHUNK, slot as usize % CHUNK);
            while t.homes.len() <= chunk {
                t.homes.push(Box::new([-1; CHUNK]));
            }
            t.homes[chunk][at] = fd;
            t.in_use += 1;
            let home: *const RawFd = &t.homes[chunk][at];
            // Success posts no completion; a failure does (see `file_update_done`).
            let entry = opcode::FilesUpdate::new(home, 1)
                .offset(slot as i32)
                .build()
                .flags(squeue::Flags::SKIP_SUCCESS)
                .user_data(file_key(slot, false));
            let left = self.push_locked(&mut slab, std::slice::from_ref(&entry));
            debug_assert_eq!(left, 0, "the SQ had room");
            slot
        };
        self.pushed(waiter, &[]);
        FileInstall::Slot(slot)
    }

    /// Empties `slot` (its socket is being closed): from any thread, after the socket's last op
    /// on this ring completed. The slot is reused once the kernel confirms.
    pub(crate) fn release_file(&self, slot: u32) {
        if self.lock_slab().files.state == TableState::Gone {
            return; // released with the table
        }
        let entry = opcode::FilesUpdate::new(&NO_FILE, 1).offset(slot as i32).build().user_data(file_key(slot, true));
        // From the ring's waiting thread this is submitted with its next wait or maintenance
        // poll, which comes soon while it drives the ring, and when it stops driving it (a
        // current-thread `block_on` returning) by `flush_submissions`; other threads submit or
        // hand over at once. No syscall of its own per closed socket.
        self.push(&[entry]);
    }

    /// A file-table update completed (`user_data` tagged `TAG_FILE`); the caller holds the slab
    /// lock. Installs complete only when they failed.
    pub(super) fn file_update_done(t: &mut FileTable, user_data: u64, result: i32) {
        let slot = user_data as u32;
        if user_data & RELEASE_BIT != 0 {
            // Also after a failure: the only one is the table being gone (unregistered at
            // shutdown), and then no install uses the slot again.
            t.free.push(slot);
            t.in_use = t.in_use.saturating_sub(1);
        } else if result < 0 {
            // The kernel could not fill the slot (only `ENOMEM` is possible for a live fd and a
            // slot inside the table): ops naming it fail with `EBADF`. Stop installing on this
            // ring; the socket's owner still releases the slot as usual.
            eprintln!(
                "spindle: io_uring registered-file update failed ({}); this ring's sockets use plain fds from now on",
                std::io::Error::from_raw_os_error(-result)
            );
            if t.state != TableState::Gone {
                t.state = TableState::Off;
            }
        }
    }

    /// Unregisters the table (shutdown, on a thread that may enter the ring): files the slots
    /// held are released, and no install happens any more.
    pub(super) fn unregister_files(&self) {
        let registered = {
            let mut slab = self.lock_slab();
            let was = matches!(slab.files.state, TableState::Ready(_) | TableState::Off);
            if was {
                slab.files.state = TableState::Gone;
            }
            was
        };
        if registered {
            let _ = self.ring.submitter().unregister_files();
        }
    }

    /// Slots given out and not yet released (tests).
    #[cfg(test)]
    pub(crate) fn files_in_use(&self) -> u32 {
        self.lock_slab().files.in_use
    }
}
