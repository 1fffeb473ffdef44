//! Counting the system calls a process makes during a section of code, without `strace`.
//!
//! `strace` stops the process at every syscall (tens of microseconds each), which changes what is
//! measured. Instead this opens one kernel counter per thread of the process for the tracepoint
//! `raw_syscalls:sys_enter` (what `perf stat -e raw_syscalls:sys_enter` counts) with
//! `perf_event_open`, and reads the counters before and after the section. Each counter has
//! `inherit` set, so threads a counted thread creates during the section are counted too. The kernel
//! only touches the counter on syscall entry (a few tens of ns each); still, the I/O rows count in a
//! separate run, never in a timed one.
//!
//! Needs a kernel with tracepoints and permission to use them (root, CAP_PERFMON, or
//! `perf_event_paranoid` <= 1), and tracefs mounted (mounted here if it is not and we may); otherwise
//! [`Counter::start`] says why and the rows print `n/a`.

use std::fs;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// `PERF_TYPE_TRACEPOINT` from `<linux/perf_event.h>`.
const PERF_TYPE_TRACEPOINT: u32 = 2;
/// `perf_event_attr.inherit` (bit 1 of the flag word).
const ATTR_INHERIT: u64 = 1 << 1;
/// `PERF_FLAG_FD_CLOEXEC`.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// The first 64 bytes of `struct perf_event_attr` (`PERF_ATTR_SIZE_VER0`): all a counting
/// tracepoint event needs; the kernel accepts this size and zero-extends the rest.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

/// Where tracefs lives on current kernels; `/sys/kernel/debug/tracing` is the older place.
const TRACEFS_DIRS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The tracepoint id of `raw_syscalls:sys_enter` (tracefs, wherever it is mounted).
///
/// A freshly booted machine may have the tracefs mount point but nothing mounted on it (seen here:
/// `/sys/kernel/tracing` empty until `perf` mounted it). `perf` then mounts tracefs itself; so does
/// this, at most once per process, only when the event's file is missing and nothing is mounted
/// there yet, and it says so on stderr (the mount outlives the process, as perf's does).
fn tracepoint_id() -> io::Result<u64> {
    static MOUNTED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    match read_tracepoint_id() {
        Err(first) if first.kind() == io::ErrorKind::NotFound => {
            match MOUNTED.get_or_init(|| mount_tracefs().map_err(|e| e.to_string())) {
                Ok(()) => read_tracepoint_id(),
                Err(e) => Err(io::Error::new(first.kind(), format!("{first}; mounting tracefs: {e}"))),
            }
        }
        r => r,
    }
}

fn read_tracepoint_id() -> io::Result<u64> {
    let mut last = None;
    for dir in TRACEFS_DIRS {
        match fs::read_to_string(format!("{dir}/events/raw_syscalls/sys_enter/id")) {
            Ok(s) => return s.trim().parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap())
}

/// `TRACEFS_MAGIC` from `<linux/magic.h>`: `statfs`'s type of a tracefs mount.
const TRACEFS_MAGIC: i64 = 0x7472_6163;

/// Mounts tracefs on its usual mount point, as `perf` does when it finds it unmounted; an error
/// if tracefs is mounted there already (the event is then missing from the kernel, and mounting
/// again would not help).
fn mount_tracefs() -> io::Result<()> {
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL in a constant");
    let (source, target, kind) = (c("nodev"), c(TRACEFS_DIRS[0]), c("tracefs"));
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `target` is NUL-terminated and outlives the call; `st` is writable memory of the
    // struct's size, which the call fills on success.
    if unsafe { libc::statfs(target.as_ptr(), st.as_mut_ptr()) } == 0 {
        // SAFETY: the call succeeded, so it initialized the struct.
        let st = unsafe { st.assume_init() };
        // `f_type`'s integer type differs between architectures.
        #[allow(clippy::unnecessary_cast)]
        if st.f_type as i64 == TRACEFS_MAGIC {
            return Err(io::Error::new(io::ErrorKind::NotFound, "tracefs is mounted but has no such event"));
        }
    }
    // SAFETY: every pointer is a NUL-terminated string that outlives the call; `data` may be null.
    let r = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), kind.as_ptr(), 0, std::ptr::null()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    eprintln!("spindle-bench: mounted tracefs on {} for the syscall counter (as perf does)", TRACEFS_DIRS[0]);
    Ok(())
}

fn read_counter(fd: &OwnedFd) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    let mut v = 0u64;
    // SAFETY: `v` is a valid 8-byte out-buffer for the call; the fd is a perf counter we own, which
    // reads as one u64 (no read_format flags).
    let n = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    if n != 8 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// Counters on every thread of this process, from [`Counter::start`] to [`Counter::stop`].
pub struct Counter {
    fds: Vec<OwnedFd>,
    start: Vec<u64>,
}

impl Counter {
    /// Opens a counter on every current thread of the process and reads the starting values.
    pub fn start() -> Result<Counter, String> {
        let id = tracepoint_id().map_err(|e| format!("tracepoint raw_syscalls:sys_enter: {e}"))?;
        let attr = PerfEventAttr {
            kind: PERF_TYPE_TRACEPOINT,
            size: std::mem::size_of::<PerfEventAttr>() as u32,
            config: id,
            sample_period: 0,
            flags: ATTR_INHERIT,
            ..Default::default()
        };
        let mut fds = Vec::new();
        let tasks = fs::read_dir("/proc/self/task").map_err(|e| format!("/proc/self/task: {e}"))?;
        for t in tasks {
            let Ok(t) = t else { continue };
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<libc::pid_t>().ok()) else { continue };
            // SAFETY: `attr` is a valid, initialized perf_event_attr of the size it declares and
            // outlives the call; the other arguments are plain integers.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_perf_event_open,
                    &attr as *const PerfEventAttr,
                    tid,
                    -1 as libc::c_int,
                    -1 as libc::c_int,
                    PERF_FLAG_FD_CLOEXEC,
                )
            };
            if fd < 0 {
                let e = io::Error::last_os_error();
                // The thread may have exited since the directory was listed: skip it.
                if e.raw_os_error() == Some(libc::ESRCH) {
                    continue;
                }
                return Err(format!("perf_event_open(raw_syscalls:sys_enter, tid {tid}): {e}"));
            }
            // SAFETY: `fd` is a fresh descriptor returned by perf_event_open that nothing else owns.
            fds.push(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) });
        }
        let start = fds.iter().map(read_counter).collect::<io::Result<Vec<_>>>().map_err(|e| format!("read: {e}"))?;
        Ok(Counter { fds, start })
    }

    /// Syscalls made by the counted threads (and threads they created) since `start`.
    pub fn stop(self) -> Result<u64, String> {
        let mut total = 0;
        for (fd, s) in self.fds.iter().zip(&self.start) {
            total += read_counter(fd).map_err(|e| format!("read: {e}"))?.saturating_sub(*s);
        }
        Ok(total)
    }
}
