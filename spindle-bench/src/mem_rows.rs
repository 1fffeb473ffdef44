//! The `memory` row (shared/PERF.md): heap bytes per idle task and per idle TCP connection, on
//! spindle (every flavour, both I/O backends), tokio and smol.
//!
//! What is measured is the heap in use (glibc's `mallinfo2`: bytes in allocated chunks, their
//! headers included, plus mmapped blocks, over every arena) just before and just after the idle
//! items exist, divided by their count. Kernel memory (socket buffers, the io_uring and epoll
//! instances' own accounting) is not in it, and is the same kind of cost for every entrant.
//!
//! - **Idle task**: [`TASKS`] tasks, spawned and detached, each counting itself as started and
//!   then waiting on a shared gate (a runtime-neutral one, written here, whose waker list is
//!   allocated before the first measurement, so the list itself is not counted, only the waker
//!   each task gives it, which is the same pointer-pair for everyone). Measured once every task
//!   has started. Then the gate opens and every task must finish. Checks: none finished before
//!   the measurement, all did after.
//! - **Idle connection**: [`CONNS`] loopback connections accepted by a task of the runtime
//!   (`Rt::run`: on the per-core runtime, a core, as its servers accept), each served by a task
//!   of its own that reads into a 64-byte array in its state (`read(&mut buf)`, the code a tokio
//!   or smol user writes: spindle's streams implement `futures_io::AsyncRead`) and waits, since
//!   the client sends nothing. The client ends are plain blocking `std::net::TcpStream`s opened
//!   by a thread of this process, held in a vector allocated before the first measurement. Then
//!   the clients close. Checks: no read returned before the measurement, every read then sees
//!   end of stream, none fails, nothing is read. Both ends are in this process, so the count
//!   fits RLIMIT_NOFILE (raised to its hard limit): 9,000 connections, 18,000 fds, where PERF.md
//!   names 10,000 (the cost per connection is what is compared). The clients are not the
//!   runtime's, as a server's clients are another program's: on spindle's multi-thread runtime
//!   an accepted loopback connection carries what pairs it with its other end (a placement and a
//!   map entry, about 95 bytes: `driver::placement`) only while a loopback connect of the same
//!   runtime is in flight, so none here.
//!
//! Each entrant is measured [`ROUNDS`] times on a fresh runtime, and the median is reported. The
//! target (PERF.md): at most tokio's bytes (the better of its two flavours).

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::io_rows::{Net, SmolNet, SpindleNet, TokioNet};
use crate::rt::{Rt, Smol, Tokio};
use crate::rt_spindle::Spindle;

/// The row's name (`--only memory`).
pub const ROW: &str = "memory";
/// Idle tasks per measurement.
const TASKS: usize = 100_000;
/// Idle connections per measurement.
const CONNS: usize = 9_000;
/// Measurements per entrant (full mode); the median is reported.
const ROUNDS: usize = 3;
/// How long a measurement may take before it is failed (a runtime that never runs its tasks).
const LIMIT: Duration = Duration::from_secs(60);

/// Bytes of the heap in use (see the module docs).
fn heap_in_use() -> usize {
    // SAFETY: `mallinfo2` only reads the allocator's statistics; no arguments.
    let m = unsafe { libc::mallinfo2() };
    m.uordblks + m.hblkhd
}

/// A gate every idle task waits on (see the module docs): closed until [`Gate::open`].
struct Gate {
    state: Mutex<(bool, Vec<Waker>)>,
}

impl Gate {
    fn new(waiters: usize) -> Arc<Gate> {
        // Room for a spurious poll per task (see `wait`), so the list never grows while measured.
        Arc::new(Gate { state: Mutex::new((false, Vec::with_capacity(2 * waiters))) })
    }

    fn open(&self) {
        let wakers = {
            let mut s = self.state.lock().unwrap();
            s.0 = true;
            std::mem::take(&mut s.1)
        };
        for w in wakers {
            w.wake();
        }
    }

    fn wait(&self) -> impl Future<Output = ()> + Send + '_ {
        std::future::poll_fn(move |cx: &mut Context<'_>| {
            let mut s = self.state.lock().unwrap();
            if s.0 {
                return Poll::Ready(());
            }
            // No search for this task's earlier waker: with 100,000 waiters that search made
            // the row quadratic (seconds per measurement). A task polled again while closed (a
            // spurious wake) is listed twice and woken twice, which is harmless; past one such
            // poll per task on average the list would grow, and the growth would show in the
            // bytes per task (nothing wakes these tasks, so none is polled again here).
            s.1.push(cx.waker().clone());
            Poll::Pending
        })
    }
}

/// Waits (yielding to the runtime) until `count` reaches `n`; `false` past [`LIMIT`].
async fn until<R: Rt>(count: &AtomicUsize, n: usize) -> bool {
    let t0 = Instant::now();
    let mut seen = count.load(Ordering::Acquire);
    while seen < n {
        if t0.elapsed() > LIMIT {
            return false;
        }
        R::yield_now().await;
        let now = count.load(Ordering::Acquire);
        if now == seen {
            // No progress from this thread's turn: the work is on other threads (multi-thread
            // runtimes); do not spin hot meanwhile.
            std::thread::sleep(Duration::from_micros(200));
        }
        seen = now;
    }
    true
}

/// One idle-task measurement on `rt`: bytes per task, or why it failed.
fn idle_tasks<R: Rt>(rt: &R, n: usize) -> Result<f64, String> {
    rt.block_on(async move {
        let gate = Gate::new(n);
        let started = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let before = heap_in_use();
        for _ in 0..n {
            let (gate, started, finished) = (gate.clone(), started.clone(), finished.clone());
            R::spawn_detached(async move {
                started.fetch_add(1, Ordering::AcqRel);
                gate.wait().await;
                finished.fetch_add(1, Ordering::AcqRel);
            });
        }
        if !until::<R>(&started, n).await {
            return Err(format!("only {} of {n} tasks started", started.load(Ordering::Acquire)));
        }
        let after = heap_in_use();
        if finished.load(Ordering::Acquire) != 0 {
            return Err("a task finished before the measurement: it was not idle".to_string());
        }
        gate.open();
        if !until::<R>(&finished, n).await {
            return Err(format!("only {} of {n} tasks finished", finished.load(Ordering::Acquire)));
        }
        Ok(after.saturating_sub(before) as f64 / n as f64)
    })
}

/// An idle connection's task on a `futures_io::AsyncRead` stream (spindle's, smol's): reads
/// into a 64-byte array until end of stream (or an error); returns the bytes read.
pub(crate) async fn read_to_end_of_stream<S: futures_lite::AsyncRead + Unpin>(mut s: S) -> std::io::Result<usize> {
    use futures_lite::AsyncReadExt;
    let mut buf = [0u8; 64];
    let mut total = 0;
    loop {
        match s.read(&mut buf).await? {
            0 => return Ok(total),
            n => total += n,
        }
    }
}

/// One idle-connection measurement on `rt`: bytes per connection, or why it failed.
fn idle_conns<R: Rt, N: Net>(rt: &R, n: usize) -> Result<f64, String> {
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let accepted = Arc::new(AtomicUsize::new(0));
    let accepted_c = accepted.clone();
    // Allocated here, before the first measurement: the clients' heap is not the server's.
    let mut held: Vec<std::net::TcpStream> = Vec::with_capacity(n);
    // The clients: blocking std sockets on a thread of their own, held until told to close. At
    // most `AHEAD` wait in the listener's accept queue: past its backlog (smol's listener has
    // std's 128) a connect waits out SYN retransmits (1 s, then 3 s, ...).
    const AHEAD: usize = 64;
    let clients = std::thread::spawn(move || -> Result<(), String> {
        let addr = rx.recv().map_err(|_| "no listener address".to_string())?;
        let t0 = Instant::now();
        for i in 0..n {
            while i >= accepted_c.load(Ordering::Acquire) + AHEAD {
                if t0.elapsed() > LIMIT {
                    return Err(format!("the server accepted only {} connections", accepted_c.load(Ordering::Acquire)));
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            let s = std::net::TcpStream::connect(addr).map_err(|e| format!("client connect {i}: {e}"))?;
            held.push(s);
        }
        // Close when told (or past the limit): every server read then sees end of stream.
        let _ = done_rx.recv_timeout(LIMIT);
        drop(held);
        Ok(())
    });
    // The server runs as a task of the runtime (as a server accepts: on a per-core runtime, on
    // a core; from `block_on` outside the cores every socket would carry a first-user placement).
    let measured = rt.run(async move {
        let (listener, addr) = N::listen().await;
        let waiting = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let read_bytes = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let before = heap_in_use();
        tx.send(addr).map_err(|_| "client thread gone".to_string())?;
        for _ in 0..n {
            let s = N::accept(&listener).await;
            accepted.fetch_add(1, Ordering::Release);
            let (waiting, finished, read_bytes, failed) =
                (waiting.clone(), finished.clone(), read_bytes.clone(), failed.clone());
            R::spawn_detached(async move {
                waiting.fetch_add(1, Ordering::AcqRel);
                match N::idle(s).await {
                    Ok(got) => read_bytes.fetch_add(got, Ordering::AcqRel),
                    Err(_) => failed.fetch_add(1, Ordering::AcqRel),
                };
                finished.fetch_add(1, Ordering::AcqRel);
            });
        }
        if !until::<R>(&waiting, n).await {
            return Err(format!("only {} of {n} connection tasks started", waiting.load(Ordering::Acquire)));
        }
        // Every task has polled its read at least once (it counted itself just before), and the
        // accept loop is done: give the runtime a moment to settle whatever the last reads armed.
        for _ in 0..16 {
            R::yield_now().await;
        }
        let after = heap_in_use();
        if finished.load(Ordering::Acquire) != 0 {
            return Err("a connection's read returned before the measurement: it was not idle".to_string());
        }
        drop(listener);
        let _ = done_tx.send(());
        if !until::<R>(&finished, n).await {
            return Err(format!("only {} of {n} connections saw end of stream", finished.load(Ordering::Acquire)));
        }
        if failed.load(Ordering::Acquire) != 0 {
            return Err(format!(
                "{} idle reads failed instead of seeing end of stream",
                failed.load(Ordering::Acquire)
            ));
        }
        if read_bytes.load(Ordering::Acquire) != 0 {
            return Err("an idle connection read bytes nobody sent".to_string());
        }
        Ok(after.saturating_sub(before) as f64 / n as f64)
    });
    let clients = clients.join().map_err(|_| "client thread panicked".to_string())?;
    let bytes = measured?;
    clients?;
    Ok(bytes)
}

/// One entrant's medians: (bytes per idle task, bytes per idle connection), or the failures.
pub struct MemResult {
    pub name: String,
    pub task: Result<f64, String>,
    pub conn: Result<f64, String>,
}

fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn measure<R: Rt, N: Net>(name: String, make: impl Fn() -> R, rounds: usize, tasks: usize, conns: usize) -> MemResult {
    let mut t = Vec::new();
    let mut c = Vec::new();
    let mut task_err = None;
    let mut conn_err = None;
    for _ in 0..rounds {
        // Each step has its own time limits; the watchdog catches a wait that has none (an
        // accept that never returns, a runtime that never shuts down).
        crate::watch(3 * LIMIT, format!("memory/task on {name}"));
        match idle_tasks(&make(), tasks) {
            Ok(b) => t.push(b),
            Err(e) => task_err = Some(e),
        }
        crate::watch(3 * LIMIT, format!("memory/conn on {name}"));
        match idle_conns::<R, N>(&make(), conns) {
            Ok(b) => c.push(b),
            Err(e) => conn_err = Some(e),
        }
        crate::unwatch();
    }
    MemResult {
        name,
        task: match task_err {
            Some(e) => Err(e),
            None => Ok(median_of(t)),
        },
        conn: match conn_err {
            Some(e) => Err(e),
            None => Ok(median_of(c)),
        },
    }
}

/// Raises RLIMIT_NOFILE's soft limit to its hard limit; returns the soft limit now in force.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `getrlimit`/`setrlimit` read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

/// Runs the row and prints its table; returns the entrants whose checks failed.
pub fn run(quick: bool) -> Vec<String> {
    let (rounds, tasks) = if quick { (1, 10_000) } else { (ROUNDS, TASKS) };
    let fds = raise_fd_limit() as usize;
    // Two fds per connection, and room for the runtimes' own (rings, eventfds, epoll instances).
    let conns = (if quick { 1_000 } else { CONNS }).min(fds.saturating_sub(200) / 2);
    println!("\n== memory ... (heap bytes per idle task, {tasks} tasks; per idle TCP connection, {conns} connections; median of {rounds})");
    let _ = std::io::stdout().flush();
    use spindle::runtime::IoDriver;
    let row_start = Instant::now();
    let mut results = Vec::new();
    for (driver, tag) in [(IoDriver::Uring, "uring"), (IoDriver::Epoll, "epoll")] {
        if matches!(driver, IoDriver::Uring)
            && spindle::runtime::Builder::new_current_thread().io_driver(driver).build().is_err()
        {
            println!("   spindle on io_uring: not available here, skipped");
            continue;
        }
        results.push(measure::<Spindle, SpindleNet>(
            format!("spindle-ct/{tag}"),
            || Spindle::current_thread_on(driver),
            rounds,
            tasks,
            conns,
        ));
        results.push(measure::<Spindle, SpindleNet>(
            format!("spindle-mt/{tag}"),
            || Spindle::multi_thread_on(2, driver),
            rounds,
            tasks,
            conns,
        ));
        results.push(measure::<Spindle, SpindleNet>(
            format!("spindle-pc/{tag}"),
            || Spindle::per_core_on(2, driver),
            rounds,
            tasks,
            conns,
        ));
    }
    results.push(measure::<Tokio, TokioNet>("tokio-ct".into(), Tokio::current_thread_io, rounds, tasks, conns));
    results.push(measure::<Tokio, TokioNet>("tokio-mt".into(), || Tokio::multi_thread_io(2), rounds, tasks, conns));
    results.push(measure::<Smol, SmolNet>("smol-1t".into(), Smol::single_thread_io, rounds, tasks, conns));
    results.push(measure::<Smol, SmolNet>("smol-mt".into(), || Smol::multi_thread_io(2), rounds, tasks, conns));
    let failed = report(&results);
    println!("   row time: {:.1} s", row_start.elapsed().as_secs_f64());
    failed
}

fn cell(r: &Result<f64, String>) -> String {
    match r {
        Ok(b) => format!("{b:.0}"),
        Err(_) => "FAILED".into(),
    }
}

/// Prints the table and the target lines; returns the failed entrants.
fn report(results: &[MemResult]) -> Vec<String> {
    println!("   {:<20} {:>12} {:>12}", "entrant", "B/idle task", "B/idle conn");
    for r in results {
        println!("   {:<20} {:>12} {:>12}", r.name, cell(&r.task), cell(&r.conn));
    }
    let mut failed = Vec::new();
    for r in results {
        for (what, res) in [("task", &r.task), ("conn", &r.conn)] {
            if let Err(e) = res {
                println!("   CHECK FAILED memory/{what} on {}: {e}", r.name);
                failed.push(format!("memory/{what} on {}", r.name));
            }
        }
    }
    let best_tokio = |f: fn(&MemResult) -> &Result<f64, String>| {
        results
            .iter()
            .filter(|r| r.name.starts_with("tokio"))
            .filter_map(|r| f(r).as_ref().ok().map(|b| (*b, r.name.clone())))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    };
    for (what, f) in [
        ("idle task", (|r: &MemResult| &r.task) as fn(&MemResult) -> &Result<f64, String>),
        ("idle connection", |r: &MemResult| &r.conn),
    ] {
        let Some((tokio_b, tokio_name)) = best_tokio(f) else { continue };
        for r in results.iter().filter(|r| r.name.starts_with("spindle")) {
            if let Ok(b) = f(r) {
                let verdict = if *b <= tokio_b { "met" } else { "MISS" };
                println!(
                    "   target memory  {:<18} {what}: {b:.0} B vs {tokio_name} {tokio_b:.0} B, {:.2}x (<= 1x: {verdict})",
                    r.name,
                    b / tokio_b
                );
            }
        }
    }
    failed
}
