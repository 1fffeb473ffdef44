//! Shared helpers for integration tests: every test body runs on every runtime flavour.
#![allow(dead_code)]

use spindle::runtime::{Builder, Runtime};

/// The runtime flavours every test runs on: current-thread (any thread may drive it, and bound to
/// the thread that drives it first, as `#[spindle::main]` builds it: on io_uring a single-issuer
/// ring), multi-thread with 1, 2 and 4 workers, and per-core with 2 cores.
pub fn flavors() -> Vec<(&'static str, Runtime)> {
    vec![
        ("current_thread", Builder::new_current_thread().build().unwrap()),
        ("current_thread(bound)", Builder::new_current_thread().bind_to_driving_thread(true).build().unwrap()),
        ("multi_thread(1)", Builder::new_multi_thread().worker_threads(1).build().unwrap()),
        ("multi_thread(2)", Builder::new_multi_thread().worker_threads(2).build().unwrap()),
        ("multi_thread(4)", Builder::new_multi_thread().worker_threads(4).build().unwrap()),
        ("per_core(2)", Builder::new_per_core().worker_threads(2).build().unwrap()),
    ]
}

/// Runs `body` on every flavour, naming the flavour on failure. A flavour whose body and
/// runtime drop take longer than [`FLAVOR_LIMIT`] aborts the process (see [`Watchdog`]); a
/// failed one is shut down with a deadline, so blocking-pool jobs the failure left stuck cannot
/// hold the test up (dropping a runtime waits for them).
pub fn each_flavor(body: impl Fn(&Runtime)) {
    for (name, rt) in flavors() {
        let watchdog = Watchdog::arm(format!("the test body on flavour {name}"), FLAVOR_LIMIT);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&rt)));
        if let Err(e) = r {
            eprintln!("test failed on flavour {name}");
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
            std::panic::resume_unwind(e);
        }
        drop(rt);
        drop(watchdog);
    }
}

/// How long one flavour of an [`each_flavor`] test may take, runtime drop included, before its
/// [`Watchdog`] aborts the process.
pub const FLAVOR_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Aborts the test process with a message naming `what` if it is still armed `limit` after it
/// was armed. It catches what a test's own timers cannot: a thread blocked synchronously (a
/// `join`, a blocking read, a runtime drop waiting for a stuck blocking job), which would
/// otherwise stall the whole run until CI's step timeout. Disarmed when dropped, unwinding
/// included.
pub struct Watchdog {
    done: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    pub fn arm(what: String, limit: std::time::Duration) -> Watchdog {
        let done = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let d = done.clone();
        let thread = std::thread::spawn(move || {
            let (lock, cv) = &*d;
            let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            let (guard, _) = cv.wait_timeout_while(guard, limit, |done| !*done).unwrap_or_else(|e| e.into_inner());
            if !*guard {
                eprintln!(
                    "HANG: {what} is still running after {limit:?} (a thread is blocked where the test's own \
                     timeouts cannot reach it); aborting the test process"
                );
                std::process::abort();
            }
        });
        Watchdog { done, thread: Some(thread) }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, cv) = &*self.done;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `body` on every flavour that has virtual time (all but the per-core runtime, which
/// refuses `time::pause`: see `virtual_time_is_refused_on_per_core_runtimes` in `tests/time.rs`).
pub fn each_flavor_with_virtual_time(body: impl Fn(&Runtime)) {
    each_flavor(|rt| {
        if rt.handle().runtime_flavor() != spindle::runtime::RuntimeFlavor::PerCore {
            body(rt)
        }
    })
}

/// The message of a caught panic payload.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default()
}

/// Sets a flag when dropped (to observe that a future's destructor ran).
pub struct DropFlag(pub std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Serializes the tests of one test binary that must not overlap (they count the process's open
/// fds, drain shared pools or use most of the fd limit). Each test binary has its own lock.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the binary's serial lock (a panicking holder does not poison it for the others).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The process's open file descriptors (entries of /proc/self/fd).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// The number of sockets among this process's open fds.
#[allow(dead_code)] // not every test binary uses every helper
pub fn open_sockets() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return 0 };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// Runs `body` on `rt`, failing (not hanging) after `secs` seconds; a body that blocks its
/// thread so that the timer cannot fire aborts the process 30 s later (see [`Watchdog`]).
pub fn bounded<F: std::future::Future>(rt: &Runtime, secs: u64, body: F) -> F::Output {
    let _watchdog =
        Watchdog::arm(format!("a test body bounded to {secs} s"), std::time::Duration::from_secs(secs + 30));
    rt.block_on(async move {
        spindle::time::timeout(std::time::Duration::from_secs(secs), body).await.expect("test body timed out")
    })
}
