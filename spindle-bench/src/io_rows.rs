//! The TCP rows (shared/PERF.md: `echo`, `echo_1conn`): loopback echo on spindle (on io_uring and on
//! epoll), tokio, smol and a raw io_uring loop. `http_hello` (hyper under a load generator) shares
//! their spindle child processes and summary; its server, generators and table are in
//! [`crate::http_rows`].
//!
//! - `echo`: 64 connections, each doing 3000 round trips of a 64-byte message: the client sends 64
//!   B, waits for the 64 B echo, checks it and repeats; the server echoes what it reads. Clients and
//!   servers are tasks of the same runtime in the same process, all 64 connections in flight.
//!   Reported as round trips per second and ns per round trip.
//! - `echo_1conn`: the same with one connection and 20k round trips (latency: µs per round trip).
//!
//! What is timed: connections are set up first (bind, connect, accept, `TCP_NODELAY` on both ends),
//! outside the measurement; the clock starts just before the 2 x N echo tasks are spawned and stops
//! when every client finished and every server saw end of stream. Every message is checked, and the
//! checksum is the number of intact round trips (the servers' echoed byte count must match too).
//!
//! Entrants:
//! - `spindle-{mt,ct,pc}/{uring,epoll}`: spindle, 2 workers, current-thread, or per-core with 2
//!   cores, with its owned-buffer API (`read_owned`, `write_all_owned`, `read_exact_owned` on
//!   `spindle::net::TcpStream`). The per-core runtime runs the workload the thread-per-core way,
//!   as `raw-uring-2t` does: each core sets up and serves its share of the connections (both
//!   ends on that core; connection `i` on core `i % 2`), see [`run_echo_per_core`]; both pin
//!   their two threads to the CPUs (the other entrants' threads are not pinned). In
//!   `http_hello` each core accepts on a listener of its own on the same port
//!   ([`crate::http_rows::serve_per_core`]).
//!   Spindle picks its I/O backend once per process from `SPINDLE_DRIVER`, so these run in two child
//!   processes of this binary (`spindle-bench --io-child`, one with `SPINDLE_DRIVER=uring`, one with
//!   `epoll`), kept for the whole row and told what to run over a pipe; the child times itself
//!   (wall and its own CPU time) and replies. Between runs the child is idle (its workers parked).
//! - `tokio-{mt,ct}`: tokio with its I/O driver (mio, epoll), `tokio::net`, `read_exact`/`write_all`.
//! - `smol-{mt,1t}`: `async-executor` on 2 threads / the caller's, every thread in
//!   `async_io::block_on` (as `smol` runs them), `async_io::Async<std::net::TcpStream>`.
//! - `raw-uring`, `raw-uring-2t`: [`crate::raw_uring`], one thread and one ring, or two threads
//!   with a ring and half the connections each: the references, never a "peer". Each entrant is
//!   compared with the one on as many threads as it runs on (the `-mt` entrants, on two workers,
//!   with `raw-uring-2t`): a runtime using two cores beside a loop using one says nothing about how
//!   close it is to the limit.
//!
//! Syscalls per round trip: after the timed rounds each entrant runs once more, untimed (spindle
//! on io_uring in `echo`, whose count a target judges, three times: the median is reported and
//! the target line gives the range), with a kernel counter of the
//! `raw_syscalls:sys_enter` tracepoint on every thread of its process (see [`crate::syscount`]:
//! `perf_event_open`, what `perf stat -e raw_syscalls:sys_enter` does, but only around the
//! measured section; `strace -c` would slow every syscall by orders of magnitude).
//! Everything the process does from the start to the end of the measured section is counted,
//! including spawning the tasks and closing the sockets, divided by the round trips. In-process
//! entrants share the process with the other (idle, parked) peer runtimes and the bench's watchdog
//! thread, which add a handful of syscalls per run (noise well below 0.01 per round trip at full
//! size). `--quick` counts too (tiny extra runs); where the counter cannot be
//! opened the column says `n/a` and why.
//!
//! Targets (PERF.md, judged on `echo` only, per spindle row, on medians of per-round ratios):
//! io_uring: >= 1.3x the best peer's round trips/s, >= 0.9x the raw loop's (on as many threads),
//! <= 0.1 syscalls per round trip; epoll: >= 1.0x tokio's (the faster tokio flavour). Beside the
//! best-peer verdict the line gives the raw loop's own multiple of the best peer: the ceiling on
//! this host (on a host where loopback TCP is slow in the kernel, even the raw loop stays under
//! 1.3x, and the verdict is a MISS no runtime could turn into a met).

use std::future::Future;
use std::io::{BufRead, BufReader, Write as _};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::rt::{Rt, Smol, Tokio};
use crate::rt_spindle::Spindle;
use crate::workloads::{Kind, Spec};
use crate::{median, sys, syscount, Sample, WorkResult};

/// Bytes per message.
pub const MSG: usize = 64;

/// The argument that makes this binary a spindle child (see the module docs).
pub const CHILD_ARG: &str = "--io-child";

/// An I/O workload and its sizes.
#[derive(Clone, Copy, Debug)]
pub enum IoKind {
    /// `conns` connections x `rts` round trips; `latency` rows print µs per round trip.
    Echo { conns: usize, rts: usize, latency: bool },
    /// `http_hello`: hyper HTTP/1.1 under a load generator (http_rows.rs).
    Http(crate::http_rows::HttpKind),
}

/// Measured rounds of the echo rows when `--rounds` is not given: PERF.md's minimum. The rows'
/// sizes are fixed (PERF.md), so their time is the kernel's: where a loopback round trip costs
/// 9-10 us, one round of `echo` (twelve entrants x 192,000 round trips) takes about 20 s, and
/// with nine rounds the full run took 340 s, past PERF.md's five minutes.
pub const ECHO_ROUNDS: usize = 7;

/// Rounds for a row whose count is not the run's default (`given`: `--rounds`): the echo rows
/// [`ECHO_ROUNDS`] unless `--rounds` says otherwise; `http_hello` its own count (its runs last a
/// fixed time; under `--quick` one round, as the smoke test only needs it to work).
pub fn rounds(kind: Kind, given: Option<usize>) -> Option<usize> {
    match kind {
        Kind::Io(IoKind::Http(h)) => h.rounds,
        Kind::Io(IoKind::Echo { .. }) => Some(given.unwrap_or(ECHO_ROUNDS)),
        _ => None,
    }
}

/// The warm-up round's version of `spec`: an echo row's at an eighth of its round trips (at least
/// one per connection), any other row as it is. A warm-up run only has to start threads, fault in
/// code and buffers and open the connections; at full size each echo warm-up round took as long
/// as a measured one (17 s on a host with slow loopback TCP), and the full run went past PERF.md's
/// five minutes.
pub fn warm_up(spec: &Spec) -> Spec {
    let mut w = spec.clone();
    if let Kind::Io(IoKind::Echo { conns, rts, latency }) = spec.kind {
        let rts = (rts / 8).max(1);
        w.ops = (conns * rts) as u64;
        w.expect = w.ops;
        w.kind = Kind::Io(IoKind::Echo { conns, rts, latency });
    }
    w
}

/// The message a client sends on connection `conn` in round trip `round` (differs between
/// connections and rounds, so a misrouted or stale echo fails the check).
pub fn message(conn: usize, round: usize) -> [u8; MSG] {
    let mut m = [0u8; MSG];
    for (k, b) in m.iter_mut().enumerate() {
        *b = (conn.wrapping_mul(131) ^ round.wrapping_mul(31) ^ k.wrapping_mul(7)) as u8;
    }
    m
}

/// One run: its own timing, checksum, and (when counted) the syscalls of the measured section.
pub struct Outcome {
    pub wall_ns: u64,
    pub cpu_ns: u64,
    pub check: u64,
    pub syscalls: Option<Result<u64, String>>,
}

/// The I/O rows (full or `--quick` sizes).
pub fn specs(quick: bool) -> Vec<Spec> {
    let q = |full: usize, small: usize| if quick { small } else { full };
    let mut v = Vec::new();
    let (conns, rts) = (q(64, 4), q(3000, 300));
    v.push(Spec {
        name: "echo",
        op: "one 64 B round trip over loopback TCP (client send, server echo, client receive; all connections in flight)",
        ops: (conns * rts) as u64,
        target: None,
        check: "round trips echoed intact",
        expect: (conns * rts) as u64,
        kind: Kind::Io(IoKind::Echo { conns, rts, latency: false }),
    });
    let rts = q(20_000, 500);
    v.push(Spec {
        name: "echo_1conn",
        op: "one 64 B round trip over loopback TCP on a single connection (latency)",
        ops: rts as u64,
        target: None,
        check: "round trips echoed intact",
        expect: rts as u64,
        kind: Kind::Io(IoKind::Echo { conns: 1, rts, latency: true }),
    });
    v.push(crate::http_rows::spec(quick));
    v
}

// ---------------------------------------------------------------------------------------------------------
// The workload, written once over a small TCP trait.

/// The TCP types of one runtime.
pub(crate) trait Net: 'static {
    type Listener: Send + Sync + 'static;
    type Stream: Send + 'static;
    fn listen() -> impl Future<Output = (Self::Listener, SocketAddr)> + Send;
    fn accept(l: &Self::Listener) -> impl Future<Output = Self::Stream> + Send + '_;
    fn connect(addr: SocketAddr) -> impl Future<Output = Self::Stream> + Send;
    /// `rts` round trips; returns how many came back intact.
    fn client(s: Self::Stream, conn: usize, rts: usize) -> impl Future<Output = u64> + Send + 'static;
    /// Echoes until end of stream; returns the bytes echoed.
    fn server(s: Self::Stream) -> impl Future<Output = u64> + Send + 'static;
    /// An idle connection's server (the `memory` row, mem_rows.rs): reads into a 64-byte array
    /// until end of stream, as a user of the runtime writes it; returns the bytes read.
    fn idle(s: Self::Stream) -> impl Future<Output = std::io::Result<usize>> + Send + 'static;
}

/// `conns` connections over loopback, made from a task of runtime `R`: their client ends and
/// their server ends (accepted by a task of its own, spawned with `R::spawn`).
async fn connected<R: Rt, N: Net>(conns: usize) -> (Vec<N::Stream>, Vec<N::Stream>) {
    let (l, addr) = N::listen().await;
    let acceptor = R::spawn(async move {
        let mut v = Vec::with_capacity(conns);
        for _ in 0..conns {
            v.push(N::accept(&l).await);
        }
        v
    });
    let mut clients = Vec::with_capacity(conns);
    for _ in 0..conns {
        clients.push(N::connect(addr).await);
    }
    (clients, acceptor.await)
}

fn run_echo<R: Rt, N: Net>(rt: &R, conns: usize, rts: usize, count: bool) -> Outcome {
    let (clients, servers) = rt.run(connected::<R, N>(conns));
    let counter = if count { Some(syscount::Counter::start()) } else { None };
    let c0 = sys::process_cpu_ns();
    let t0 = Instant::now();
    let check = rt.run(async move {
        let servers: Vec<_> = servers.into_iter().map(|s| R::spawn(N::server(s))).collect();
        let clients: Vec<_> = clients.into_iter().enumerate().map(|(i, s)| R::spawn(N::client(s, i, rts))).collect();
        let mut intact = 0;
        for c in clients {
            intact += c.await;
        }
        let mut echoed = 0;
        for s in servers {
            echoed += s.await;
        }
        if echoed == (conns * rts * MSG) as u64 {
            intact
        } else {
            0
        }
    });
    let wall_ns = t0.elapsed().as_nanos() as u64;
    let cpu_ns = sys::process_cpu_ns().saturating_sub(c0);
    let syscalls = counter.map(|c| c.and_then(|c| c.stop()));
    Outcome { wall_ns, cpu_ns, check, syscalls }
}

/// `echo` on a per-core runtime, the thread-per-core way: each core sets up its share of the
/// connections (a listener of its own, connection `i` on core `i % cores`, both ends created on
/// the core, so their I/O is that core's), then, timed, runs their client and server tasks (spawned
/// from a task on the core, so they stay there). What is timed and checked is what [`run_echo`]
/// times and checks.
fn run_echo_per_core(rt: &spindle::runtime::Runtime, conns: usize, rts: usize, count: bool) -> Outcome {
    type Stream = <SpindleNet as Net>::Stream;
    let cores = rt.metrics().num_workers();
    let share = move |core: usize| (core..conns).step_by(cores).collect::<Vec<usize>>();
    let setups: Vec<_> = (0..cores)
        .map(|core| {
            rt.handle().spawn_on(core, async move {
                let n = share(core).len();
                if n == 0 {
                    return (Vec::new(), Vec::new());
                }
                // `Spindle`'s spawn is `spindle::spawn`: on a core, onto that core.
                connected::<Spindle, SpindleNet>(n).await
            })
        })
        .collect();
    let ends: Vec<(Vec<Stream>, Vec<Stream>)> = rt.block_on(async {
        let mut v = Vec::with_capacity(cores);
        for s in setups {
            v.push(s.await.expect("spindle per-core setup"));
        }
        v
    });
    let counter = if count { Some(syscount::Counter::start()) } else { None };
    let c0 = sys::process_cpu_ns();
    let t0 = Instant::now();
    let runs: Vec<_> = ends
        .into_iter()
        .enumerate()
        .map(|(core, (clients, servers))| {
            rt.handle().spawn_on(core, async move {
                let servers: Vec<_> = servers.into_iter().map(|s| spindle::spawn(SpindleNet::server(s))).collect();
                let clients: Vec<_> = clients
                    .into_iter()
                    .zip(share(core))
                    .map(|(s, i)| spindle::spawn(SpindleNet::client(s, i, rts)))
                    .collect();
                let (mut intact, mut echoed) = (0, 0);
                for c in clients {
                    intact += c.await.expect("spindle client");
                }
                for s in servers {
                    echoed += s.await.expect("spindle server");
                }
                (intact, echoed)
            })
        })
        .collect();
    let (intact, echoed) = rt.block_on(async {
        let (mut intact, mut echoed) = (0, 0);
        for r in runs {
            let (i, e) = r.await.expect("spindle per-core run");
            intact += i;
            echoed += e;
        }
        (intact, echoed)
    });
    let wall_ns = t0.elapsed().as_nanos() as u64;
    let cpu_ns = sys::process_cpu_ns().saturating_sub(c0);
    let syscalls = counter.map(|c| c.and_then(|c| c.stop()));
    let check = if echoed == (conns * rts * MSG) as u64 { intact } else { 0 };
    Outcome { wall_ns, cpu_ns, check, syscalls }
}

pub(crate) struct SpindleNet;

/// A connection's buffer for spindle's owned-buffer I/O: the message's 64 bytes on cache lines
/// of their own. Owned buffers live on the heap, and 64-byte boxes from the allocator put several
/// connections' buffers on one line; with connections served by two workers, the kernel's copies
/// and the tasks' reads on both cores take that line from each other (measured: 7-8% of the
/// round trip on the multi-thread runtime). tokio's and smol's entrants keep their 64-byte arrays
/// inside the task, which the allocator does not pack with other tasks' buffers (tokio aligns its
/// task cells to 128 bytes).
struct LineBuf(Box<Lines>);

#[repr(align(128))]
struct Lines([u8; MSG]);

impl LineBuf {
    fn new() -> LineBuf {
        LineBuf(Box::new(Lines([0; MSG])))
    }
}

impl std::ops::Deref for LineBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0 .0
    }
}

impl std::ops::DerefMut for LineBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0 .0
    }
}

// SAFETY: the bytes live in the box's heap allocation, which moving the `LineBuf` does not move;
// all `MSG` of them are always initialized.
unsafe impl spindle::io::IoBuf for LineBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.0 .0.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        MSG
    }
    fn bytes_total(&self) -> usize {
        MSG
    }
}

// SAFETY: the pointer is the heap array's, valid for `MSG` writes; the array is always fully
// initialized, so `set_init` has nothing to record.
unsafe impl spindle::io::IoBufMut for LineBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.0 .0.as_mut_ptr()
    }
    unsafe fn set_init(&mut self, _n: usize) {}
}

impl Net for SpindleNet {
    type Listener = spindle::net::TcpListener;
    type Stream = spindle::net::TcpStream;

    fn idle(s: Self::Stream) -> impl Future<Output = std::io::Result<usize>> + Send + 'static {
        crate::mem_rows::read_to_end_of_stream(s)
    }

    async fn listen() -> (Self::Listener, SocketAddr) {
        let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.expect("spindle bind");
        let a = l.local_addr().unwrap();
        (l, a)
    }

    async fn accept(l: &Self::Listener) -> Self::Stream {
        let (s, _) = l.accept().await.expect("spindle accept");
        s.set_nodelay(true).unwrap();
        s
    }

    async fn connect(addr: SocketAddr) -> Self::Stream {
        let s = spindle::net::TcpStream::connect(addr).await.expect("spindle connect");
        s.set_nodelay(true).unwrap();
        s
    }

    async fn client(mut s: Self::Stream, conn: usize, rts: usize) -> u64 {
        use spindle::io::{AsyncReadOwned, AsyncWriteOwned};
        let mut tx = LineBuf::new();
        let mut rx = LineBuf::new();
        let mut intact = 0;
        for r in 0..rts {
            tx.copy_from_slice(&message(conn, r));
            let (res, b) = s.write_all_owned(tx).await;
            res.expect("spindle write_all_owned");
            tx = b;
            let (res, b) = s.read_exact_owned(rx).await;
            res.expect("spindle read_exact_owned");
            rx = b;
            intact += u64::from(*rx == *tx);
        }
        intact
    }

    async fn server(mut s: Self::Stream) -> u64 {
        use spindle::io::{AsyncReadOwned, AsyncWriteOwned, IoBuf};
        let mut buf = LineBuf::new();
        let mut echoed = 0;
        loop {
            let (res, b) = s.read_owned(buf).await;
            let n = res.expect("spindle read_owned");
            if n == 0 {
                return echoed;
            }
            let (res, b) = s.write_all_owned(b.slice(..n)).await;
            res.expect("spindle write_all_owned");
            buf = b.into_inner();
            echoed += n as u64;
        }
    }
}

pub(crate) struct TokioNet;

impl Net for TokioNet {
    type Listener = tokio::net::TcpListener;
    type Stream = tokio::net::TcpStream;

    async fn idle(mut s: Self::Stream) -> std::io::Result<usize> {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 64];
        let mut total = 0;
        loop {
            match s.read(&mut buf).await? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    async fn listen() -> (Self::Listener, SocketAddr) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("tokio bind");
        let a = l.local_addr().unwrap();
        (l, a)
    }

    async fn accept(l: &Self::Listener) -> Self::Stream {
        let (s, _) = l.accept().await.expect("tokio accept");
        s.set_nodelay(true).unwrap();
        s
    }

    async fn connect(addr: SocketAddr) -> Self::Stream {
        let s = tokio::net::TcpStream::connect(addr).await.expect("tokio connect");
        s.set_nodelay(true).unwrap();
        s
    }

    async fn client(mut s: Self::Stream, conn: usize, rts: usize) -> u64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut rx = [0u8; MSG];
        let mut intact = 0;
        for r in 0..rts {
            let tx = message(conn, r);
            s.write_all(&tx).await.expect("tokio write_all");
            s.read_exact(&mut rx).await.expect("tokio read_exact");
            intact += u64::from(rx == tx);
        }
        intact
    }

    async fn server(mut s: Self::Stream) -> u64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = [0u8; MSG];
        let mut echoed = 0;
        loop {
            let n = s.read(&mut buf).await.expect("tokio read");
            if n == 0 {
                return echoed;
            }
            s.write_all(&buf[..n]).await.expect("tokio write_all");
            echoed += n as u64;
        }
    }
}

pub(crate) struct SmolNet;

impl Net for SmolNet {
    type Listener = async_io::Async<std::net::TcpListener>;
    type Stream = async_io::Async<std::net::TcpStream>;

    fn idle(s: Self::Stream) -> impl Future<Output = std::io::Result<usize>> + Send + 'static {
        crate::mem_rows::read_to_end_of_stream(s)
    }

    async fn listen() -> (Self::Listener, SocketAddr) {
        let l = async_io::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0)).expect("async-io bind");
        let a = l.get_ref().local_addr().unwrap();
        (l, a)
    }

    async fn accept(l: &Self::Listener) -> Self::Stream {
        let (s, _) = l.accept().await.expect("async-io accept");
        s.get_ref().set_nodelay(true).unwrap();
        s
    }

    async fn connect(addr: SocketAddr) -> Self::Stream {
        let s = async_io::Async::<std::net::TcpStream>::connect(addr).await.expect("async-io connect");
        s.get_ref().set_nodelay(true).unwrap();
        s
    }

    async fn client(mut s: Self::Stream, conn: usize, rts: usize) -> u64 {
        use futures_lite::{AsyncReadExt, AsyncWriteExt};
        let mut rx = [0u8; MSG];
        let mut intact = 0;
        for r in 0..rts {
            let tx = message(conn, r);
            s.write_all(&tx).await.expect("async-io write_all");
            s.read_exact(&mut rx).await.expect("async-io read_exact");
            intact += u64::from(rx == tx);
        }
        intact
    }

    async fn server(mut s: Self::Stream) -> u64 {
        use futures_lite::{AsyncReadExt, AsyncWriteExt};
        let mut buf = [0u8; MSG];
        let mut echoed = 0;
        loop {
            let n = s.read(&mut buf).await.expect("async-io read");
            if n == 0 {
                return echoed;
            }
            s.write_all(&buf[..n]).await.expect("async-io write_all");
            echoed += n as u64;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Entrants.

fn echo_sizes(kind: Kind) -> (usize, usize) {
    match kind {
        Kind::Io(IoKind::Echo { conns, rts, .. }) => (conns, rts),
        _ => unreachable!("I/O entrants only run I/O rows"),
    }
}

/// A peer runtime in this process.
struct InProc<R, N> {
    rt: R,
    net: PhantomData<fn() -> N>,
}

impl<R: Rt, N: Net> crate::Bench for InProc<R, N> {
    fn label(&self) -> &'static str {
        self.rt.name()
    }
    fn once(&self, kind: Kind) -> u64 {
        self.once_timed(kind).unwrap().1
    }
    fn once_timed(&self, kind: Kind) -> Option<(Sample, u64)> {
        let (conns, rts) = echo_sizes(kind);
        let o = run_echo::<R, N>(&self.rt, conns, rts, false);
        Some((Sample { wall_ns: o.wall_ns, cpu_ns: o.cpu_ns }, o.check))
    }
    fn syscalls(&self, kind: Kind) -> Option<Result<u64, String>> {
        let (conns, rts) = echo_sizes(kind);
        run_echo::<R, N>(&self.rt, conns, rts, true).syscalls
    }
}

/// The raw io_uring loop on `threads` threads (1 or 2).
struct Raw {
    threads: usize,
}

impl crate::Bench for Raw {
    fn label(&self) -> &'static str {
        if self.threads == 1 {
            "raw-uring"
        } else {
            "raw-uring-2t"
        }
    }
    fn once(&self, kind: Kind) -> u64 {
        self.once_timed(kind).unwrap().1
    }
    fn once_timed(&self, kind: Kind) -> Option<(Sample, u64)> {
        let (conns, rts) = echo_sizes(kind);
        let o = crate::raw_uring::echo(conns, rts, false, self.threads);
        Some((Sample { wall_ns: o.wall_ns, cpu_ns: o.cpu_ns }, o.check))
    }
    fn syscalls(&self, kind: Kind) -> Option<Result<u64, String>> {
        let (conns, rts) = echo_sizes(kind);
        crate::raw_uring::echo(conns, rts, true, self.threads).syscalls
    }
    fn reference(&self) -> bool {
        true
    }
}

/// A child process running spindle on one backend (both flavours).
struct ChildProc {
    /// Its stdin (taken on drop: end of file tells the child to exit) and stdout.
    io: Mutex<(Option<ChildStdin>, BufReader<ChildStdout>)>,
    child: Child,
}

impl ChildProc {
    /// Starts `spindle-bench --io-child` with `SPINDLE_DRIVER=driver` and checks which backend its
    /// runtimes really use.
    fn start(driver: &str, expect: &str) -> Result<ChildProc, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(exe)
            .arg(CHILD_ARG)
            .env("SPINDLE_DRIVER", driver)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn child: {e}"))?;
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        if line.trim().strip_prefix("ready ") != Some(expect) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "child with SPINDLE_DRIVER={driver} did not start on {expect} (said {:?})",
                line.trim()
            ));
        }
        Ok(ChildProc { io: Mutex::new((Some(stdin), stdout)), child })
    }

    /// Sends one command, returns the reply line.
    fn ask(&self, cmd: &str) -> String {
        let mut io = self.io.lock().unwrap();
        let stdin = io.0.as_mut().expect("child stdin");
        writeln!(stdin, "{cmd}").and_then(|_| stdin.flush()).expect("write to the spindle child");
        let mut line = String::new();
        io.1.read_line(&mut line).expect("read from the spindle child");
        if line.is_empty() {
            panic!("the spindle child exited during {cmd:?} (see its output above)");
        }
        line.trim_end().to_string()
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        // End of file on its stdin ends the child; give it a moment, then make sure.
        drop(self.io.get_mut().unwrap().0.take());
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// spindle in a child: `flavor` is `mt` or `ct`.
struct InChild {
    proc: Arc<ChildProc>,
    flavor: &'static str,
    label: &'static str,
    /// Requests per run and failures of `http_hello` runs.
    http: crate::http_rows::HttpLog,
}

impl InChild {
    /// One `http_hello` run: the child serves (`http <flavor>`, reply `addr <ip:port>`), this
    /// process runs the load generator, then `stop` (reply `<cpu ns> <requests answered>`).
    fn run_http(&self, kind: Kind) -> (Sample, u64) {
        let reply = self.proc.ask(&format!("http {}", self.flavor));
        let addr: SocketAddr = reply
            .strip_prefix("addr ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("bad reply to http: {reply:?}"));
        let load = crate::http_rows::load(addr, crate::http_rows::window(kind));
        let reply = self.proc.ask("stop");
        let (cpu, served) = reply
            .split_once(' ')
            .and_then(|(c, s)| Some((c.parse::<u64>().ok()?, s.parse::<u64>().ok()?)))
            .unwrap_or_else(|| panic!("bad reply to stop: {reply:?}"));
        self.http.record(load, cpu, served)
    }

    fn run(&self, kind: Kind, count: bool) -> Outcome {
        let (conns, rts) = echo_sizes(kind);
        let reply = self.proc.ask(&format!("echo {} {conns} {rts} {}", self.flavor, u8::from(count)));
        let mut it = reply.splitn(4, ' ');
        let mut num = || it.next().and_then(|s| s.parse::<u64>().ok()).unwrap_or_else(|| panic!("bad reply {reply:?}"));
        let (wall_ns, cpu_ns, check) = (num(), num(), num());
        let rest = reply.splitn(4, ' ').nth(3).unwrap_or("-");
        let syscalls = if rest == "-" {
            None
        } else {
            Some(rest.parse::<u64>().map_err(|_| rest.strip_prefix("err:").unwrap_or(rest).to_string()))
        };
        Outcome { wall_ns, cpu_ns, check, syscalls }
    }
}

impl crate::Bench for InChild {
    fn label(&self) -> &'static str {
        self.label
    }
    fn once(&self, kind: Kind) -> u64 {
        self.once_timed(kind).unwrap().1
    }
    fn once_timed(&self, kind: Kind) -> Option<(Sample, u64)> {
        if let Kind::Io(IoKind::Http(_)) = kind {
            return Some(self.run_http(kind));
        }
        let o = self.run(kind, false);
        Some((Sample { wall_ns: o.wall_ns, cpu_ns: o.cpu_ns }, o.check))
    }
    fn syscalls(&self, kind: Kind) -> Option<Result<u64, String>> {
        // Not counted for http_hello (PERF.md asks it of echo only); its client, the other
        // half of every exchange, is another process, which this counter does not see.
        if let Kind::Io(IoKind::Http(_)) = kind {
            return None;
        }
        self.run(kind, true).syscalls
    }
    fn extra(&self) -> Vec<f64> {
        self.http.requests()
    }
    fn failures(&self) -> Vec<String> {
        self.http.errors()
    }
}

/// The entrants of an I/O row: spindle on io_uring and on epoll (in children), the peers, the raw
/// loop; for `http_hello`, spindle and tokio with hyper only (PERF.md's target is against tokio +
/// hyper, and there is no raw HTTP reference).
pub fn entrants(kind: Kind) -> Vec<(Box<dyn crate::Bench>, bool)> {
    let http = matches!(kind, Kind::Io(IoKind::Http(_)));
    let mut v: Vec<(Box<dyn crate::Bench>, bool)> = Vec::new();
    for (driver, name, labels) in [
        ("uring", "io_uring", ["spindle-mt/uring", "spindle-ct/uring", "spindle-pc/uring"]),
        ("epoll", "epoll", ["spindle-mt/epoll", "spindle-ct/epoll", "spindle-pc/epoll"]),
    ] {
        match ChildProc::start(driver, name) {
            Ok(p) => {
                let p = Arc::new(p);
                for (flavor, label) in ["mt", "ct", "pc"].into_iter().zip(labels) {
                    let http = crate::http_rows::HttpLog::default();
                    v.push((Box::new(InChild { proc: p.clone(), flavor, label, http }), true));
                }
            }
            Err(e) => println!("\n   spindle on {name} left out: {e}"),
        }
    }
    if http {
        use crate::http_rows::{InProc as Http, TokioHttp};
        // hyper's timers on tokio need its time driver too.
        v.push((Box::new(Http::<_, TokioHttp>::new(Tokio::multi_thread_io_timed(2))), false));
        v.push((Box::new(Http::<_, TokioHttp>::new(Tokio::current_thread_io_timed())), false));
        return v;
    }
    v.push((Box::new(InProc::<_, TokioNet> { rt: Tokio::multi_thread_io(2), net: PhantomData }), false));
    v.push((Box::new(InProc::<_, TokioNet> { rt: Tokio::current_thread_io(), net: PhantomData }), false));
    v.push((Box::new(InProc::<_, SmolNet> { rt: Smol::multi_thread_io(2), net: PhantomData }), false));
    v.push((Box::new(InProc::<_, SmolNet> { rt: Smol::single_thread_io(), net: PhantomData }), false));
    if io_uring::IoUring::new(8).is_ok() {
        v.push((Box::new(Raw { threads: 1 }), false));
        if matches!(kind, Kind::Io(IoKind::Echo { conns, .. }) if conns > 1) {
            // (One connection cannot be shared out.)
            v.push((Box::new(Raw { threads: 2 }), false));
        }
    } else {
        println!("\n   raw-uring left out: io_uring is not usable here");
    }
    v
}

/// `spindle-bench --io-child`: builds spindle's three runtimes on the backend `SPINDLE_DRIVER`
/// chose, says `ready <backend>`, then serves commands until its stdin closes:
/// - `echo <mt|ct|pc|raw|raw-2t|tokio-mt|tokio-ct> <conns> <rts> <count 0|1>` (`raw`: the raw
///   io_uring loop, `raw-2t` on two threads; `tokio-*`: tokio on 2 workers or 1 thread; these
///   for profiling one entrant alone):
///   replies `<wall ns> <cpu ns> <check> <syscalls | - | err:why>`;
/// - `http <mt|ct|pc>`: starts the http_hello server, replies `addr <ip:port>`, serves until the next
///   line (`stop`), then replies `<cpu ns> <requests answered>` ([`crate::http_rows::child_serve`]).
pub fn child_main() -> ExitCode {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes integer arguments only; it makes the kernel kill this
    // process if the bench dies (a hung or aborted bench must not leave children behind).
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let mt = Spindle::multi_thread(2);
    let ct = Spindle::current_thread();
    let pc = Spindle::per_core(2);
    // One line at a time, taking no lock across commands: during `http` another thread reads
    // the `stop` line while this one is inside the runtime.
    fn say(line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    say(&format!("ready {}", mt.io_driver()));
    loop {
        let mut line = String::new();
        if !matches!(std::io::stdin().read_line(&mut line), Ok(n) if n > 0) {
            break;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let (conns, rts, count) = match f.as_slice() {
            ["echo", _, c, r, k] => (c.parse().unwrap(), r.parse().unwrap(), *k == "1"),
            ["http", "mt"] => {
                crate::http_rows::child_serve(&mt, say);
                continue;
            }
            ["http", "ct"] => {
                crate::http_rows::child_serve(&ct, say);
                continue;
            }
            ["http", "pc"] => {
                crate::http_rows::child_serve_per_core(pc.runtime(), say);
                continue;
            }
            _ => panic!("io child: bad command {line:?}"),
        };
        let o = if f[1] == "mt" {
            run_echo::<_, SpindleNet>(&mt, conns, rts, count)
        } else if f[1] == "pc" {
            run_echo_per_core(pc.runtime(), conns, rts, count)
        } else if f[1] == "raw" || f[1] == "raw-2t" {
            crate::raw_uring::echo(conns, rts, count, if f[1] == "raw" { 1 } else { 2 })
        } else if f[1] == "tokio-mt" {
            run_echo::<_, TokioNet>(&crate::rt::Tokio::multi_thread_io(2), conns, rts, count)
        } else if f[1] == "tokio-ct" {
            run_echo::<_, TokioNet>(&crate::rt::Tokio::current_thread_io(), conns, rts, count)
        } else {
            run_echo::<_, SpindleNet>(&ct, conns, rts, count)
        };
        let sys = match o.syscalls {
            None => "-".to_string(),
            Some(Ok(n)) => n.to_string(),
            Some(Err(e)) => format!("err:{e}"),
        };
        say(&format!("{} {} {} {}", o.wall_ns, o.cpu_ns, o.check, sys.replace('\n', " ")));
    }
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------------------------------
// Reporting.

/// The header's `io:` line.
pub fn io_note() -> String {
    let uring = match io_uring::IoUring::new(8) {
        Ok(_) => "io_uring usable".to_string(),
        Err(e) => format!("io_uring NOT usable ({e})"),
    };
    format!(
        "{uring}; TCP rows: spindle on io_uring and on epoll (child processes, SPINDLE_DRIVER), tokio and smol \
         on epoll, raw io_uring loop (one and two threads); other rows: spindle's default backend"
    )
}

/// Summary lines of the I/O rows, printed with the run's summary.
static SUMMARY: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Syscalls per op by (row, entrant), for the JSON output.
static SYSCALLS: Mutex<Vec<(&'static str, &'static str, f64)>> = Mutex::new(Vec::new());

/// The counted syscalls per op of `entrant` in I/O row `row`, if counted.
pub fn syscalls_per_op(row: &str, entrant: &str) -> Option<f64> {
    SYSCALLS.lock().unwrap().iter().find(|(r, e, _)| *r == row && *e == entrant).map(|t| t.2)
}

/// Median over rounds of `peer wall / who wall`: how many times `who`'s round trips/s `peer`'s is.
pub(crate) fn speedup(w: &WorkResult, who: usize, peer: usize) -> f64 {
    let mut v: Vec<f64> =
        w.rts[who].samples.iter().zip(&w.rts[peer].samples).map(|(a, b)| b.wall_ns as f64 / a.wall_ns as f64).collect();
    median(&mut v)
}

/// "met" or "MISS".
pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISS"
    }
}

/// Counted (untimed) runs of an entrant whose count a target judges (spindle on io_uring, in
/// `echo`): their median is reported, as the timed columns report medians. One run was a single
/// sample of a quantity that varied from 0.07 to 0.15 per round trip between runs of spindle's
/// multi-thread runtime on a noisy host (a worker preempted by the host makes its sibling take
/// its tasks, whose I/O then goes back to the preempted worker's ring through its wake eventfd).
/// Every other entrant's count is shown for comparison only and gets one run: the extra runs of
/// all twelve entrants made `echo` a quarter longer, and the full run went past PERF.md's five
/// minutes on a host with slow loopback TCP.
const COUNTED_RUNS: usize = 3;

/// An entrant's syscalls per op over the counted runs.
struct Counted {
    median: f64,
    lo: f64,
    hi: f64,
}

/// Runs the syscall-counting runs of every entrant, prints the row's table and target checks.
pub fn report(w: &WorkResult, runtimes: &[(Box<dyn crate::Bench>, bool)]) {
    let s = &w.spec;
    let latency = match s.kind {
        Kind::Io(IoKind::Echo { latency, .. }) => latency,
        Kind::Io(IoKind::Http(_)) => {
            let lines = crate::http_rows::report(w, runtimes);
            SUMMARY.lock().unwrap().extend(lines);
            return;
        }
        _ => unreachable!(),
    };
    let ops = s.ops as f64;
    // Per entrant: the median of its counts, with their range.
    let counted: Vec<Option<Result<Counted, String>>> = runtimes
        .iter()
        .map(|(b, spindle)| {
            let judged = *spindle && !latency && b.label().ends_with("/uring");
            let runs = if judged { COUNTED_RUNS } else { 1 };
            let mut per_op = Vec::with_capacity(runs);
            for _ in 0..runs {
                let limit = Instant::now() + std::time::Duration::from_secs(90);
                *crate::WATCH.lock().unwrap() = Some((limit, format!("{} (syscall count) on {}", s.name, b.label())));
                let r = b.syscalls(s.kind);
                *crate::WATCH.lock().unwrap() = None;
                match r? {
                    Ok(n) => per_op.push(n as f64 / ops),
                    Err(e) => return Some(Err(e)),
                }
            }
            let median = median(&mut per_op);
            Some(Ok(Counted { median, lo: per_op[0], hi: per_op[per_op.len() - 1] }))
        })
        .collect();
    for (i, c) in counted.iter().enumerate() {
        if let Some(Ok(c)) = c {
            SYSCALLS.lock().unwrap().push((s.name, w.rts[i].name, c.median));
        }
    }
    println!("   op = {}; {} round trips/run", s.op, s.ops);
    crate::print_checks(w, "entrant");
    let best = w.best_peer();
    // Each entrant is compared with the raw loop on as many threads as it runs on: the
    // two-worker and two-core runtimes with `raw-uring-2t` (where a row has one), the others
    // with `raw-uring`.
    let raw_for = |i: usize| {
        let find = |name: &str| w.rts.iter().position(|r| r.reference && r.checks_ok && r.name == name);
        let two = w.rts[i].name.contains("-mt") || w.rts[i].name.contains("-pc");
        two.then(|| find("raw-uring-2t")).flatten().or_else(|| find("raw-uring"))
    };
    let unit = if latency { "us/rt" } else { "ns/rt" };
    let scale = if latency { 1000.0 } else { 1.0 };
    println!(
        "   {:<17} {:>10} {:>9} {:>19} {:>10} {:>8} {:>11}   vs best peer (rt/s)   vs raw",
        "entrant",
        "rt/s",
        unit,
        "min..max",
        format!("cpu {unit}"),
        "cpu/wall",
        "syscalls/rt"
    );
    for (i, r) in w.rts.iter().enumerate() {
        let mut ns = r.ns_per_op(s.ops);
        let med = median(&mut ns);
        let (lo, hi) = (ns[0], ns[ns.len() - 1]);
        let cpu = median(&mut r.cpu_per_op(s.ops));
        let sc = match &counted[i] {
            Some(Ok(c)) => format!("{:.3}", c.median),
            Some(Err(_)) | None => "n/a".into(),
        };
        let vs_best = if r.spindle {
            best.map(|b| format!("{:.2}x vs {}", speedup(w, i, b), w.rts[b].name)).unwrap_or_default()
        } else if Some(i) == best {
            "* best peer".into()
        } else {
            String::new()
        };
        let vs_raw = match raw_for(i) {
            Some(x) if !r.reference => format!("{:.2}x {}", speedup(w, i, x), w.rts[x].name),
            _ => String::new(),
        };
        println!(
            "   {:<17} {:>10.0} {:>9} {:>19} {:>10} {:>8.2} {:>11}   {:<20}  {}{}",
            r.name,
            1e9 / med,
            fmt(med / scale),
            format!("{}..{}", fmt(lo / scale), fmt(hi / scale)),
            fmt(cpu / scale),
            cpu / med,
            sc,
            vs_best,
            vs_raw,
            if r.checks_ok { "" } else { "  CHECK FAILED" }
        );
    }
    for (i, r) in counted.iter().enumerate() {
        if let Some(Err(e)) = r {
            println!("   syscalls of {}: n/a: {e}", w.rts[i].name);
        }
    }
    // Targets: PERF.md names them for `echo` only.
    let mut summary = SUMMARY.lock().unwrap();
    if latency {
        println!("   targets: none in PERF.md for this row (physical limit: ~23 us per blocking round trip)");
        for i in (0..w.rts.len()).filter(|&i| w.rts[i].spindle && w.rts[i].checks_ok) {
            let us = median(&mut w.rts[i].ns_per_op(s.ops)) / 1000.0;
            let vs = best.map(|b| format!(", {:.2}x best peer's rt/s", speedup(w, i, b))).unwrap_or_default();
            summary.push(format!("   {:<11} {:<17} {:.1} us/rt{vs} (no target)", s.name, w.rts[i].name, us));
        }
        return;
    }
    // The raw io_uring loop is the practical limit of the io_uring rows (PERF.md): where it does
    // not reach a target's multiple of the peer itself (a host whose loopback TCP costs much more
    // than the runtimes' user-space work), no runtime can, and the verdict says so. (There is no
    // raw epoll loop, so the epoll rows get no such line.)
    let ceiling = |raw: Option<usize>, peer: usize, target: f64| match raw {
        Some(raw) => {
            let c = speedup(w, raw, peer);
            let above =
                if c < target { format!(", so {target:.1}x is above this host's limit") } else { String::new() };
            format!("; {} itself: {c:.2}x{above}", w.rts[raw].name)
        }
        None => String::new(),
    };
    let tokio = (0..w.rts.len())
        .filter(|&i| w.rts[i].name.starts_with("tokio") && w.rts[i].checks_ok)
        .min_by(|&a, &b| w.med_ns(a).partial_cmp(&w.med_ns(b)).unwrap());
    for i in (0..w.rts.len()).filter(|&i| w.rts[i].spindle) {
        let r = &w.rts[i];
        let mut parts = Vec::new();
        if !r.checks_ok {
            parts.push("CHECK FAILED".to_string());
        } else if r.name.ends_with("/uring") {
            if let Some(b) = best {
                let x = speedup(w, i, b);
                let ceiling = ceiling(raw_for(i), b, 1.3);
                parts.push(format!("{x:.2}x best peer {} (>= 1.3x: {}{ceiling})", w.rts[b].name, verdict(x >= 1.3)));
            }
            match raw_for(i) {
                Some(x) => {
                    let name = w.rts[x].name;
                    let x = speedup(w, i, x);
                    parts.push(format!("{x:.2}x {name} (>= 0.9x: {})", verdict(x >= 0.9)));
                }
                None => parts.push("raw-uring n/a".into()),
            }
            match &counted[i] {
                Some(Ok(c)) => parts.push(format!(
                    "{:.3} syscalls/rt, median of {COUNTED_RUNS} counted runs {:.3}..{:.3} (<= 0.1: {})",
                    c.median,
                    c.lo,
                    c.hi,
                    verdict(c.median <= 0.1)
                )),
                _ => parts.push("syscalls/rt n/a".into()),
            }
        } else if let Some(t) = tokio {
            let x = speedup(w, i, t);
            parts.push(format!("{x:.2}x {} (>= 1.0x: {})", w.rts[t].name, verdict(x >= 1.0)));
        }
        let line = format!("   {:<11} {:<17} {}", s.name, r.name, parts.join("; "));
        println!("   target {}", line.trim_start());
        summary.push(line);
    }
}

/// The I/O rows' lines for the run's summary.
pub fn print_summary() {
    let lines = SUMMARY.lock().unwrap();
    if lines.is_empty() {
        return;
    }
    println!(
        "\n== summary of I/O rows: spindle's round trips/s (http_hello: requests/s) as a multiple of the peer's \
         (> 1 is faster), PERF.md targets"
    );
    for l in lines.iter() {
        println!("{l}");
    }
}

fn fmt(x: f64) -> String {
    crate::fmt_ns(x)
}
