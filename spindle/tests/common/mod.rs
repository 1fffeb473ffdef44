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

/// Runs `body` on every flavour, naming the flavour on failure.
pub fn each_flavor(body: impl Fn(&Runtime)) {
    for (name, rt) in flavors() {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&rt)));
        if let Err(e) = r {
            eprintln!("test failed on flavour {name}");
            std::panic::resume_unwind(e);
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

/// Runs `body` on `rt`, failing (not hanging) after `secs` seconds.
pub fn bounded<F: std::future::Future>(rt: &Runtime, secs: u64, body: F) -> F::Output {
    rt.block_on(async move {
        spindle::time::timeout(std::time::Duration::from_secs(secs), body).await.expect("test body timed out")
    })
}
