//! `AsyncFd::new` outside any runtime, as the first user of the fallback reactor, with the
//! process out of fds: making that reactor fails (a panic). The caller's fd must survive the
//! unwinding, to be closed once, by the caller's own value: an fd-owning value made for the
//! registration before it succeeded used to close it first (and the caller's value then closed
//! the number again, by then perhaps another file's). Its own test binary: the fallback reactor
//! must not exist yet.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

/// Owns an fd; on drop records whether it was still open (a close by someone else before).
struct Probe {
    fd: RawFd,
    was_open_at_drop: Arc<AtomicBool>,
}

impl AsRawFd for Probe {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // SAFETY: F_GETFD on a number: no effect besides the answer.
        let open = unsafe { libc::fcntl(self.fd, libc::F_GETFD) } != -1;
        self.was_open_at_drop.store(open, SeqCst);
        // SAFETY: our fd (if still open).
        unsafe { libc::close(self.fd) };
    }
}

#[test]
fn a_panicking_registration_leaves_the_callers_fd_open() {
    // SAFETY: plain syscalls.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    assert!(fd >= 0);
    let was_open = Arc::new(AtomicBool::new(true));
    let probe = Probe { fd, was_open_at_drop: was_open.clone() };
    // Exhaust the fd table (low limit so it is quick).
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid out pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let low = libc::rlimit { rlim_cur: 512.min(lim.rlim_max), rlim_max: lim.rlim_max };
    // SAFETY: valid pointer.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) };
    let mut filler = Vec::new();
    loop {
        // SAFETY: dup of an open fd.
        let d = unsafe { libc::dup(0) };
        if d < 0 {
            break;
        }
        filler.push(d);
    }
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| spindle::io::unix::AsyncFd::new(probe).map(drop)));
    for d in filler {
        // SAFETY: our dups.
        unsafe { libc::close(d) };
    }
    // SAFETY: restore.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    // Whether it panicked (no fd for the reactor) or failed or even succeeded, the caller's
    // value found its fd open when it was dropped.
    drop(r);
    assert!(was_open.load(SeqCst), "the caller's fd was closed before the caller's value closed it");
}
