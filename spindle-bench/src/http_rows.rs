//! The `http_hello` row (shared/PERF.md): hyper's HTTP/1.1 server answering "Hello, world!" under a
//! load generator, on spindle (io_uring and epoll, both flavours) and on tokio (both flavours).
//!
//! The server is written once ([`serve`], generic over [`Rt`] and [`HttpNet`]): a listener on
//! 127.0.0.1:0, one task per accepted connection running `hyper::server::conn::http1` (keep-alive,
//! a timer configured: spindle's `HyperTimer` or hyper-util's `TokioTimer`, so both pay for the same
//! header-read timeout), and a service answering every request with 200 and the body [`BODY`].
//! Spindle serves from its own `TcpStream` (it implements `hyper::rt::Read`/`Write`); tokio from
//! `hyper_util::rt::TokioIo<tokio::net::TcpStream>`, hyper's own tokio adapter.
//!
//! Entrants and processes: spindle runs in the I/O rows' child processes (one per backend,
//! `io_rows.rs`), told `http <mt|ct|pc>` over the pipe: the child starts the server (on the
//! per-core runtime, a listener per core: [`serve_per_core`]), replies with its address, serves
//! until the parent sends `stop`, then replies with the CPU time its process used meanwhile and
//! the number of requests its service answered. tokio serves in this process.
//! The load generator is always a process of its own, started from this one, the same for every
//! entrant: so every server talks to its client across processes (a client in the server's
//! process would switch between threads of one address space with tokio, and between processes
//! with spindle, a bias in tokio's favour on a 2-core machine where client and server share
//! cores), and every server process's CPU time is the server's alone.
//!
//! - `wrk` when it is on `PATH`: `wrk -t2 -c64 -dNs` as a child process. Its "Requests/sec" is the
//!   rate; a run whose output has a "Socket errors" or "Non-2xx or 3xx responses" line, or that
//!   exits non-zero, fails the check (and is reported, not timed). wrk does not read bodies, so
//!   after it one request on a fresh connection is checked by status and body, and the server's
//!   own count of answered requests must cover wrk's. wrk takes whole seconds, so `--quick` runs it
//!   for 1 s.
//! - otherwise the built-in generator, in a child process of this binary (`spindle-bench
//!   --http-load <addr> <window ms>`, [`load_main`]): 2 threads, each a tokio current-thread
//!   runtime driving 32 keep-alive connections that
//!   each send `GET /` and wait for the whole response before the next (wrk's model). Every response
//!   is parsed (httparse) and checked: status 200 and exactly [`BODY`]. Connections are opened
//!   before the clock starts; the rate is responses completed / time from start until the last
//!   connection finished its final exchange after the window closed.
//!
//! What a sample is: runs last a fixed time, so the harness's per-run sample is normalized per
//! request (the spec's `ops` is 1): wall ns = 1e9 / requests per second, CPU ns = the server
//! process's CPU time during the run / requests (for tokio this process's, where the other
//! entrants' runtimes sit parked meanwhile).
//!
//! Check: 1 when the run completed at least one request and saw no error of any kind (I/O error,
//! bad status or body, wrk error line, the server answering fewer requests than the client counted),
//! else 0; the reasons are kept and printed with the row.
//!
//! Target (PERF.md): spindle's requests/s >= 1.1x tokio + hyper's (the faster tokio flavour, by
//! median requests/s), judged per spindle entrant on the median of per-round ratios.

use std::convert::Infallible;
use std::future::Future;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::future::Either;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};

use crate::rt::Rt;
use crate::workloads::{Kind, Spec};
use crate::{median, sys, Sample, WorkResult};

/// The response body every server sends and every checked response must carry.
pub const BODY: &[u8] = b"Hello, world!";

/// The request of the built-in generator and of the check after a wrk run (wrk's is the same plus
/// its own `Host`).
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// Load generator threads (wrk `-t`, the built-in's client threads): one per core of the 2-core
/// machine, as PERF.md's `wrk -t2`.
const THREADS: usize = 2;

/// Keep-alive connections in flight (wrk `-c`), split evenly over the threads.
const CONNS: usize = 64;

// The built-in generator gives each thread `CONNS / THREADS` connections, as wrk does.
const _: () = assert!(CONNS / THREADS * THREADS == CONNS);

/// The `http_hello` row's sizes.
#[derive(Clone, Copy, Debug)]
pub struct HttpKind {
    /// How long the load generator runs per run.
    pub window: Duration,
    /// Rounds for this row when it differs from `--rounds` (`--quick`: 1).
    pub rounds: Option<usize>,
}

/// The row (full: 1 s per entrant per run and 3 rounds, so the row stays near 30 s of the
/// bench's 5-minute budget; `--quick`: 0.3 s and one round).
pub fn spec(quick: bool) -> Spec {
    let kind = if quick {
        HttpKind { window: Duration::from_millis(300), rounds: Some(1) }
    } else {
        HttpKind { window: Duration::from_secs(1), rounds: Some(3) }
    };
    Spec {
        name: "http_hello",
        op: "one keep-alive HTTP/1.1 GET / answered 200 \"Hello, world!\" by hyper's http1 server (samples per \
             request: wall ns = 1e9 / (requests/s), cpu = server process CPU / requests)",
        ops: 1,
        // The harness's generic target is "<= x the best peer's ns/op"; this row's (>= 1.1x tokio's
        // requests/s) is judged in `report`.
        target: None,
        check: "1 = > 0 requests, every response checked right, no errors",
        expect: 1,
        kind: Kind::Io(crate::io_rows::IoKind::Http(kind)),
    }
}

// ---------------------------------------------------------------------------------------------------------
// The server, written once.

/// A runtime's TCP listener and hyper glue.
pub trait HttpNet: 'static {
    /// The listener.
    type Listener: Send + 'static;
    /// An accepted connection as hyper's I/O.
    type Io: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static;
    /// Binds 127.0.0.1:0.
    fn listen() -> impl Future<Output = (Self::Listener, SocketAddr)> + Send;
    /// Accepts one connection (with `TCP_NODELAY`, as servers set it).
    fn accept(l: &Self::Listener) -> impl Future<Output = std::io::Result<Self::Io>> + Send + '_;
    /// The runtime's timer for hyper's header-read and keep-alive timers.
    fn timer() -> impl hyper::rt::Timer + Send + Sync + 'static;
}

/// spindle: its own `TcpStream` is hyper's I/O (feature `hyper`), its `HyperTimer` the timer.
pub struct SpindleHttp;

impl HttpNet for SpindleHttp {
    type Listener = spindle::net::TcpListener;
    type Io = spindle::net::TcpStream;

    async fn listen() -> (Self::Listener, SocketAddr) {
        let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.expect("spindle bind");
        let a = l.local_addr().unwrap();
        (l, a)
    }

    async fn accept(l: &Self::Listener) -> std::io::Result<Self::Io> {
        let (s, _) = l.accept().await?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    fn timer() -> impl hyper::rt::Timer + Send + Sync + 'static {
        spindle::io::hyper::HyperTimer::new()
    }
}

/// tokio: hyper-util's `TokioIo` around `tokio::net::TcpStream`, its `TokioTimer` the timer.
pub struct TokioHttp;

impl HttpNet for TokioHttp {
    type Listener = tokio::net::TcpListener;
    type Io = hyper_util::rt::TokioIo<tokio::net::TcpStream>;

    async fn listen() -> (Self::Listener, SocketAddr) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("tokio bind");
        let a = l.local_addr().unwrap();
        (l, a)
    }

    async fn accept(l: &Self::Listener) -> std::io::Result<Self::Io> {
        let (s, _) = l.accept().await?;
        s.set_nodelay(true)?;
        Ok(hyper_util::rt::TokioIo::new(s))
    }

    fn timer() -> impl hyper::rt::Timer + Send + Sync + 'static {
        hyper_util::rt::TokioTimer::new()
    }
}

/// Serves one connection until the client closes it; returns how many requests it answered.
async fn serve_conn<N: HttpNet>(io: N::Io) -> u64 {
    // Per connection, so that counting costs no shared cache line between workers.
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let hello = hyper::service::service_fn(move |_req: Request<Incoming>| {
        c.fetch_add(1, Ordering::Relaxed);
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BODY)))) }
    });
    // An error here is a client closing mid-exchange as a run ends (wrk stops mid-request); what the
    // client saw is checked on its side, and the answered count still holds.
    let _ =
        hyper::server::conn::http1::Builder::new().timer(N::timer()).keep_alive(true).serve_connection(io, hello).await;
    count.load(Ordering::Relaxed)
}

/// Runs the server on `rt` until `stop` fires (or its sender is dropped): binds, passes the address
/// to `on_addr`, accepts and serves connections; after `stop`, stops accepting and waits for every
/// connection to end (the load generator has closed them by then). Returns the requests answered.
pub fn serve<R: Rt, N: HttpNet>(
    rt: &R,
    on_addr: impl FnOnce(SocketAddr) + Send + 'static,
    stop: oneshot::Receiver<()>,
) -> u64 {
    // As a task (`run`), so the acceptor spawns from a worker like the echo row's, and a
    // multi-thread runtime serves from its workers only.
    rt.run(async move {
        let (l, addr) = N::listen().await;
        on_addr(addr);
        accept_until::<R, N>(l, async {
            let _ = stop.await;
        })
        .await
    })
}

/// Accepts on `l`, serving each connection in a task of its own (`R::spawn`), until `stop`
/// completes; then stops accepting and waits for every connection to end. Returns the requests
/// answered.
async fn accept_until<R: Rt, N: HttpNet>(l: N::Listener, stop: impl Future<Output = ()>) -> u64 {
    let mut stop = pin!(stop);
    let mut conns = Vec::new();
    loop {
        match futures::future::select(pin!(N::accept(&l)), stop.as_mut()).await {
            Either::Left((Ok(io), _)) => conns.push(R::spawn(serve_conn::<N>(io))),
            // Transient accept errors (a client that reset before it was accepted) are not the
            // server's to fail on; the client side sees and reports what went wrong.
            Either::Left((Err(_), _)) => {}
            Either::Right(_) => break,
        }
    }
    drop(l);
    let mut served = 0;
    for c in conns {
        served += c.await;
    }
    served
}

/// [`serve`] on a per-core runtime, the thread-per-core way: each core accepts on a listener of
/// its own (`SO_REUSEPORT`, all on one port, the kernel dealing connections out to them) and
/// serves the connections it accepts on itself. Returns the requests answered.
pub fn serve_per_core(
    rt: &spindle::runtime::Runtime,
    on_addr: impl FnOnce(SocketAddr) + Send + 'static,
    stop: oneshot::Receiver<()>,
) -> u64 {
    let stopping = spindle::CancelToken::new();
    let mut addr: Option<SocketAddr> = None;
    let mut cores = Vec::new();
    for core in 0..rt.metrics().num_workers() {
        let (bound_tx, bound_rx) = oneshot::channel();
        let stopping = stopping.clone();
        let want = addr;
        cores.push(rt.handle().spawn_on(core, async move {
            let sock = spindle::net::TcpSocket::new_v4().expect("spindle socket");
            sock.set_reuseaddr(true).unwrap();
            sock.set_reuseport(true).unwrap();
            sock.bind(want.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))).expect("spindle bind");
            let l = sock.listen(1024).expect("spindle listen");
            // Said once listening, so no connection of the load comes before every core listens.
            let _ = bound_tx.send(l.local_addr().unwrap());
            // `Spindle`'s spawn is `spindle::spawn`: on a core, onto that core.
            accept_until::<crate::rt_spindle::Spindle, SpindleHttp>(l, stopping.cancelled()).await
        }));
        // The next core binds the port this one got.
        addr = Some(rt.block_on(bound_rx).expect("a core's listener"));
    }
    on_addr(addr.expect("at least one core"));
    rt.block_on(async move {
        let _ = stop.await;
        stopping.cancel();
        let mut served = 0;
        for c in cores {
            served += c.await.expect("spindle per-core server");
        }
        served
    })
}

// ---------------------------------------------------------------------------------------------------------
// Load generators.

/// The load generator of this run of the bench.
pub enum Generator {
    /// wrk at this path; its version line.
    Wrk(PathBuf, String),
    /// The built-in one (wrk is not on `PATH`).
    Builtin,
}

/// Finds the generator once: `wrk` on `PATH`, else the built-in one.
pub fn generator() -> &'static Generator {
    static G: OnceLock<Generator> = OnceLock::new();
    G.get_or_init(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let found = std::env::split_paths(&path).map(|d| d.join("wrk")).find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        });
        match found {
            Some(p) => {
                // `wrk -v` prints its version line first (then its usage).
                let version = std::process::Command::new(&p)
                    .arg("-v")
                    .output()
                    .map(|o| {
                        let mut all = o.stdout;
                        all.extend(o.stderr);
                        let first = String::from_utf8_lossy(&all).lines().next().unwrap_or("").to_string();
                        // "wrk 4.1.0 [epoll] Copyright (C) ...": the version, not the notice.
                        first.split(" Copyright").next().unwrap_or("").trim().to_string()
                    })
                    .unwrap_or_default();
                Generator::Wrk(p, version)
            }
            None => Generator::Builtin,
        }
    })
}

/// wrk's `-d`: whole seconds only (it parses an integer), so at least 1.
fn wrk_secs(window: Duration) -> u64 {
    window.as_secs_f64().ceil().max(1.0) as u64
}

/// The generator, as the row's header line says it.
pub fn generator_line(window: Duration) -> String {
    match generator() {
        Generator::Wrk(p, v) => format!(
            "wrk ({v}; {}): wrk -t{THREADS} -c{CONNS} -d{}s per run, then one request checked by status and body",
            p.display(),
            wrk_secs(window)
        ),
        Generator::Builtin => format!(
            "built-in (wrk not on PATH; spindle-bench {LOAD_ARG}, a process of its own): {THREADS} threads \
             (a tokio current-thread client runtime each) x {} keep-alive connections, {:.1} s per run, every \
             response's status and body checked",
            CONNS / THREADS,
            window.as_secs_f64()
        ),
    }
}

/// What a load run measured.
pub struct Load {
    /// Complete, checked responses.
    pub requests: u64,
    /// Their rate.
    pub per_sec: f64,
}

/// Runs the load generator against `addr` for `window`. `Err`: what went wrong (a failed check).
pub fn load(addr: SocketAddr, window: Duration) -> Result<Load, String> {
    match generator() {
        Generator::Wrk(path, _) => wrk(path, addr, window),
        Generator::Builtin => builtin_child(addr, window),
    }
}

/// The argument that makes this binary the built-in load generator.
pub const LOAD_ARG: &str = "--http-load";

/// Runs the built-in generator as `spindle-bench --http-load <addr> <window ms>`; its reply is
/// `ok <requests> <requests/s>` or `err <why>`.
fn builtin_child(addr: SocketAddr, window: Duration) -> Result<Load, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out = std::process::Command::new(exe)
        .arg(LOAD_ARG)
        .arg(addr.to_string())
        .arg(window.as_millis().to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("running the built-in generator: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let reply = text.trim();
    if let Some(e) = reply.strip_prefix("err ") {
        return Err(e.to_string());
    }
    let mut f = reply.strip_prefix("ok ").unwrap_or("").split(' ');
    match (f.next().and_then(|n| n.parse().ok()), f.next().and_then(|r| r.parse().ok())) {
        (Some(requests), Some(per_sec)) if out.status.success() => Ok(Load { requests, per_sec }),
        _ => Err(format!("built-in generator failed ({}): {reply:?}", out.status)),
    }
}

/// `spindle-bench --http-load <addr> <window ms>`: the built-in generator's process.
pub fn load_main() -> std::process::ExitCode {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes integer arguments only; the kernel kills this process
    // if the bench dies, so a dead bench leaves no load behind.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let args: Vec<String> = std::env::args().skip(2).collect();
    let (Some(addr), Some(ms)) =
        (args.first().and_then(|a| a.parse().ok()), args.get(1).and_then(|m| m.parse::<u64>().ok()))
    else {
        println!("err usage: spindle-bench {LOAD_ARG} <addr> <window ms>");
        return std::process::ExitCode::from(2);
    };
    match builtin(addr, Duration::from_millis(ms)) {
        Ok(l) => println!("ok {} {}", l.requests, l.per_sec),
        Err(e) => println!("err {}", e.replace('\n', " ")),
    }
    std::process::ExitCode::SUCCESS
}

/// One wrk run against `addr` (see the module docs), then one request checked by hand.
fn wrk(path: &PathBuf, addr: SocketAddr, window: Duration) -> Result<Load, String> {
    let out = std::process::Command::new(path)
        .arg(format!("-t{THREADS}"))
        .arg(format!("-c{CONNS}"))
        .arg(format!("-d{}s", wrk_secs(window)))
        .args(["--timeout", "5s"])
        .arg(format!("http://{addr}/"))
        .output()
        .map_err(|e| format!("running wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let flat = || text.lines().map(str::trim).collect::<Vec<_>>().join(" | ");
    if !out.status.success() {
        return Err(format!(
            "wrk exited with {}: {} {}",
            out.status,
            flat(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // wrk prints these lines only when their counts are not zero.
    if let Some(l) = text.lines().map(str::trim).find(|l| l.starts_with("Socket errors") || l.starts_with("Non-2xx")) {
        return Err(format!("wrk: {l}"));
    }
    let per_sec = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk's output: {}", flat()))?;
    // "  123456 requests in 3.00s, 15.00MB read"
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in ").and_then(|(n, _)| n.trim().parse::<u64>().ok()))
        .ok_or_else(|| format!("no request count in wrk's output: {}", flat()))?;
    // wrk does not read bodies: check one exchange by hand.
    check_one(addr)?;
    Ok(Load { requests, per_sec })
}

/// One request on a fresh blocking connection, its response checked by status and body.
fn check_one(addr: SocketAddr) -> Result<(), String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("check request: connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.write_all(REQUEST).map_err(|e| format!("check request: write: {e}"))?;
    let mut buf = [0u8; 4096];
    let mut len = 0;
    loop {
        if let Some(used) = parse_response(&buf[..len])? {
            return if used == len { Ok(()) } else { Err("check request: bytes after the response".into()) };
        }
        if len == buf.len() {
            return Err("check request: response too long".into());
        }
        match s.read(&mut buf[len..]) {
            Ok(0) => return Err("check request: connection closed mid-response".into()),
            Ok(n) => len += n,
            Err(e) => return Err(format!("check request: read: {e}")),
        }
    }
}

/// Parses and checks one response at the start of `buf`: `Ok(None)` if incomplete, `Ok(Some(n))`
/// when its `n` bytes are a 200 with exactly [`BODY`], `Err` otherwise.
fn parse_response(buf: &[u8]) -> Result<Option<usize>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad response: {e}")),
    };
    if resp.code != Some(200) {
        return Err(format!("status {:?}, expected 200", resp.code));
    }
    let len = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
        .ok_or("response without a Content-Length")?;
    if buf.len() < head + len {
        return Ok(None);
    }
    if &buf[head..head + len] != BODY {
        return Err(format!(
            "body {:?}, expected {:?}",
            String::from_utf8_lossy(&buf[head..head + len]),
            "Hello, world!"
        ));
    }
    Ok(Some(head + len))
}

/// The built-in generator: see the module docs.
fn builtin(addr: SocketAddr, window: Duration) -> Result<Load, String> {
    // The threads open their connections, meet here, then run the window; the clock starts at the
    // meeting so connection setup is not timed.
    let start = Arc::new(Barrier::new(THREADS + 1));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let start = start.clone();
            let conns = CONNS / THREADS;
            std::thread::Builder::new()
                .name("http-load".into())
                .spawn(move || client_thread(addr, conns, window, &start))
                .expect("spawn load thread")
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    let (mut requests, mut end, mut errors) = (0, t0, Vec::new());
    for t in threads {
        let r = t.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        requests += r.requests;
        end = end.max(r.end);
        errors.extend(r.error);
    }
    if let Some(e) = errors.first() {
        return Err(format!("built-in generator: {e} ({} connection(s) failed)", errors.len()));
    }
    let secs = end.duration_since(t0).as_secs_f64();
    Ok(Load { requests, per_sec: requests as f64 / secs })
}

/// What one client thread did.
struct ThreadLoad {
    /// Complete, checked responses over its connections.
    requests: u64,
    /// When its last connection finished.
    end: Instant,
    /// The first error of each failed connection.
    error: Vec<String>,
}

/// One generator thread: opens `conns` connections on a client runtime of its own, meets the others
/// at `start`, then runs them for `window`.
fn client_thread(addr: SocketAddr, conns: usize, window: Duration, start: &Barrier) -> ThreadLoad {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("build client runtime");
    let streams: Vec<std::io::Result<tokio::net::TcpStream>> = rt.block_on(async {
        let mut v = Vec::with_capacity(conns);
        for _ in 0..conns {
            let s = tokio::net::TcpStream::connect(addr).await;
            v.push(s.and_then(|s| s.set_nodelay(true).map(|_| s)));
        }
        v
    });
    // Always meet the others, even after a failed connect, or the coordinator would wait forever.
    start.wait();
    let deadline = Instant::now() + window;
    let results: Vec<Result<u64, String>> = rt.block_on(async {
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|s| {
                tokio::spawn(async move {
                    match s {
                        Ok(s) => client_conn(s, deadline).await,
                        Err(e) => Err(format!("connect: {e}")),
                    }
                })
            })
            .collect();
        let mut v = Vec::with_capacity(tasks.len());
        for t in tasks {
            v.push(t.await.unwrap_or_else(|e| Err(format!("client task failed: {e}"))));
        }
        v
    });
    let end = Instant::now();
    let mut out = ThreadLoad { requests: 0, end, error: Vec::new() };
    for r in results {
        match r {
            Ok(n) => out.requests += n,
            Err(e) => out.error.push(e),
        }
    }
    out
}

/// One keep-alive connection: request, whole response checked, repeat until `deadline`; returns
/// the responses completed (all of them right, or an error).
async fn client_conn(mut s: tokio::net::TcpStream, deadline: Instant) -> Result<u64, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 4096];
    let mut done = 0;
    while Instant::now() < deadline {
        s.write_all(REQUEST).await.map_err(|e| format!("write: {e}"))?;
        let mut len = 0;
        loop {
            if let Some(used) = parse_response(&buf[..len])? {
                // One request in flight at a time: nothing may follow its response.
                if used != len {
                    return Err("bytes after the response".into());
                }
                break;
            }
            if len == buf.len() {
                return Err("response too long".into());
            }
            match s.read(&mut buf[len..]).await {
                Ok(0) => return Err("connection closed mid-response".into()),
                Ok(n) => len += n,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        done += 1;
    }
    Ok(done)
}

// ---------------------------------------------------------------------------------------------------------
// Runs and their record.

/// What an entrant's runs left besides their samples: requests per run and failures.
#[derive(Default)]
pub struct HttpLog {
    /// Requests completed per run, in run order (the warm-up first).
    requests: Mutex<Vec<f64>>,
    /// Why runs failed their check.
    errors: Mutex<Vec<String>>,
}

impl HttpLog {
    /// Turns one run into the harness's sample and check, and records it.
    pub fn record(&self, load: Result<Load, String>, server_cpu_ns: u64, served: u64) -> (Sample, u64) {
        let load = load.and_then(|l| match l.requests {
            0 => Err("no request completed".into()),
            n if served < n => Err(format!("the server answered {served} requests, the client counted {n}")),
            _ => Ok(l),
        });
        match load {
            Ok(l) => {
                self.requests.lock().unwrap().push(l.requests as f64);
                let wall_ns = (1e9 / l.per_sec).round() as u64;
                (Sample { wall_ns, cpu_ns: server_cpu_ns / l.requests }, 1)
            }
            Err(e) => {
                self.requests.lock().unwrap().push(0.0);
                self.errors.lock().unwrap().push(e);
                // A failed run's times are never shown; keep them finite.
                (Sample { wall_ns: 1, cpu_ns: 1 }, 0)
            }
        }
    }

    /// Requests per run (warm-up first).
    pub fn requests(&self) -> Vec<f64> {
        self.requests.lock().unwrap().clone()
    }

    /// Why runs failed.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }
}

/// A tokio entrant: the server in this process, the generator started from a thread of its own.
pub struct InProc<R, N> {
    /// The tokio runtime serving.
    rt: R,
    /// Requests per run and failures.
    log: HttpLog,
    /// Which sockets and timer (the runtime's own).
    net: std::marker::PhantomData<fn() -> N>,
}

impl<R: Rt, N: HttpNet> InProc<R, N> {
    /// An entrant serving on `rt`.
    pub fn new(rt: R) -> Self {
        InProc { rt, log: HttpLog::default(), net: std::marker::PhantomData }
    }
}

impl<R: Rt, N: HttpNet> crate::Bench for InProc<R, N> {
    fn label(&self) -> &'static str {
        self.rt.name()
    }
    fn once(&self, kind: Kind) -> u64 {
        self.once_timed(kind).unwrap().1
    }
    fn once_timed(&self, kind: Kind) -> Option<(Sample, u64)> {
        let window = window(kind);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        // The generator must run beside the server: tokio's current-thread runtime serves only
        // while this thread is inside `block_on`.
        let gen = std::thread::Builder::new()
            .name("http-gen".into())
            .spawn(move || {
                let addr = addr_rx.recv().expect("server address");
                let r = load(addr, window);
                let _ = stop_tx.send(());
                r
            })
            .expect("spawn generator thread");
        let c0 = sys::process_cpu_ns();
        let served = serve::<R, N>(&self.rt, move |a| addr_tx.send(a).expect("send address"), stop_rx);
        let cpu = sys::process_cpu_ns().saturating_sub(c0);
        let load = gen.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        Some(self.log.record(load, cpu, served))
    }
    fn extra(&self) -> Vec<f64> {
        self.log.requests()
    }
    fn failures(&self) -> Vec<String> {
        self.log.errors()
    }
}

/// The row's window of `kind`.
pub fn window(kind: Kind) -> Duration {
    match kind {
        Kind::Io(crate::io_rows::IoKind::Http(h)) => h.window,
        _ => unreachable!("http entrants only run http_hello"),
    }
}

/// The child's side of `http <mt|ct>` (`pc`: [`child_serve_per_core`]): serves on `rt` until
/// the parent's next line (`stop`), then replies `<cpu ns> <requests answered>`. The first reply,
/// `addr <ip:port>`, is sent once bound.
pub fn child_serve<R: Rt>(rt: &R, say: fn(&str)) {
    child_serve_with(say, |on_addr, stop| serve::<R, SpindleHttp>(rt, on_addr, stop))
}

/// [`child_serve`] on a per-core runtime ([`serve_per_core`]).
pub fn child_serve_per_core(rt: &spindle::runtime::Runtime, say: fn(&str)) {
    child_serve_with(say, |on_addr, stop| serve_per_core(rt, on_addr, stop))
}

fn child_serve_with(
    say: fn(&str),
    serve: impl FnOnce(Box<dyn FnOnce(SocketAddr) + Send>, oneshot::Receiver<()>) -> u64,
) {
    let (stop_tx, stop_rx) = oneshot::channel();
    // The parent's `stop` comes on stdin while this thread is inside the runtime.
    let waiter = std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        let _ = stop_tx.send(());
        line
    });
    let c0 = sys::process_cpu_ns();
    let served = serve(Box::new(move |a| say(&format!("addr {a}"))), stop_rx);
    let cpu = sys::process_cpu_ns().saturating_sub(c0);
    let line = waiter.join().expect("stdin thread");
    if line.trim() != "stop" {
        // The parent is gone or confused: nothing to reply to.
        std::process::exit(if line.is_empty() { 0 } else { 2 });
    }
    say(&format!("{cpu} {served}"));
}

// ---------------------------------------------------------------------------------------------------------
// Reporting.

/// Prints the row's table and target lines; returns the summary lines.
pub fn report(w: &WorkResult, runtimes: &[(Box<dyn crate::Bench>, bool)]) -> Vec<String> {
    let s = &w.spec;
    let Kind::Io(crate::io_rows::IoKind::Http(h)) = s.kind else { unreachable!() };
    println!("   load generator: {}", generator_line(h.window));
    if let Some(n) = h.rounds {
        println!("   rounds: 1 warm-up + {n} for this row (its runs last a fixed time)");
    }
    println!("   op = {}", s.op);
    crate::print_checks(w, "entrant");
    for (i, (b, _)) in runtimes.iter().enumerate() {
        // Each distinct reason once, with how many runs gave it (a broken server fails alike every run).
        let mut seen: Vec<(String, usize)> = Vec::new();
        for e in b.failures() {
            match seen.iter_mut().find(|(s, _)| *s == e) {
                Some((_, n)) => *n += 1,
                None => seen.push((e, 1)),
            }
        }
        for (e, n) in seen.iter().take(3) {
            println!("   error on {} ({n} run(s)): {e}", w.rts[i].name);
        }
    }
    let ok = |i: usize| w.rts[i].checks_ok && !w.rts[i].samples.is_empty();
    // The faster tokio flavour by median requests/s (lowest median ns per request).
    let tokio = (0..w.rts.len())
        .filter(|&i| w.rts[i].name.starts_with("tokio") && ok(i))
        .min_by(|&a, &b| w.med_ns(a).partial_cmp(&w.med_ns(b)).unwrap());
    println!(
        "   {:<17} {:>9} {:>17} {:>9} {:>12} {:>8} {:>10}   vs best tokio (req/s)",
        "entrant", "req/s", "min..max req/s", "us/req", "cpu us/req", "cpu/wall", "req/run"
    );
    for (i, r) in w.rts.iter().enumerate() {
        if !ok(i) {
            println!("   {:<17} CHECK FAILED", r.name);
            continue;
        }
        let mut ns = r.ns_per_op(1);
        let med = median(&mut ns);
        let (fast, slow) = (ns[0], ns[ns.len() - 1]);
        let cpu = median(&mut r.cpu_per_op(1));
        let mut reqs = runtimes[i].0.extra();
        if reqs.len() > 1 {
            reqs.remove(0); // the warm-up run
        }
        let vs = if r.spindle {
            tokio.map(|t| format!("{:.2}x vs {}", crate::io_rows::speedup(w, i, t), w.rts[t].name)).unwrap_or_default()
        } else if Some(i) == tokio {
            "* best tokio".into()
        } else {
            String::new()
        };
        println!(
            "   {:<17} {:>9.0} {:>17} {:>9.2} {:>12.2} {:>8.2} {:>10.0}   {}",
            r.name,
            1e9 / med,
            format!("{:.0}..{:.0}", 1e9 / slow, 1e9 / fast),
            med / 1000.0,
            cpu / 1000.0,
            cpu / med,
            median(&mut reqs),
            vs
        );
    }
    let mut summary = Vec::new();
    for i in (0..w.rts.len()).filter(|&i| w.rts[i].spindle) {
        let verdict = if !ok(i) {
            "CHECK FAILED".to_string()
        } else if let Some(t) = tokio {
            let x = crate::io_rows::speedup(w, i, t);
            format!("{x:.2}x {} req/s (>= 1.1x: {})", w.rts[t].name, crate::io_rows::verdict(x >= 1.1))
        } else {
            "no tokio entrant passed its check: n/a".to_string()
        };
        let line = format!("   {:<11} {:<17} {}", s.name, w.rts[i].name, verdict);
        println!("   target {}", line.trim_start());
        summary.push(line);
    }
    summary
}
