//! 10,000 TCP connections open at the same time over loopback, client and server both spindle, on
//! every runtime flavour.
//!
//! A listener on 127.0.0.1:0 accepts while client tasks connect; each client sends a 16-byte
//! message and checks the server's answer, then holds its connection until every connection of the
//! run has exchanged its message (so all of them are alive at once: the test checks the process
//! has at least 2 x N more fds open at that point). Then all clients close, every server task sees
//! end of stream, and the process's open fd count (/proc/self/fd) must come back to where it was.
//!
//! File descriptors: with both ends in this process, N connections need 2 x N fds. The test raises
//! RLIMIT_NOFILE's soft limit to the hard limit; the in-process runs (every flavour) use N = what
//! fits (on a machine whose hard limit is exactly 20,000: about 9,950). The full 10,000 run puts
//! the clients in a child process (this test binary again, also on spindle), so each process
//! needs only N fds: [`ten_thousand_connections_client_in_a_child_process`].
//!
//! Pacing: the listener's backlog is spindle's (1024); a connection beyond a full accept queue
//! waits out SYN retransmits (1 s, then 3 s, ...), so at most [`WINDOW`] connections are between
//! `connect` and a completed exchange at any time. Clients and the accept loop run concurrently.
//!
//! Bounded in time: each flavour's run is under a [`PER_FLAVOUR`] `timeout`, and a watchdog thread
//! fails the whole test binary if it is still running after [`WATCHDOG`] (a runtime so broken that
//! its timers never fire must fail the test, not hang it). In a debug build one flavour takes about
//! 0.4-1.4 s here (2 cores; both backends), so every flavour runs the full count.
//!
//! Its own test binary, because it raises RLIMIT_NOFILE and needs most of the fds.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{each_flavor, open_fds, open_sockets, serial};
use futures::channel::{mpsc, oneshot};
use futures::future::FutureExt;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use spindle::net::{TcpListener, TcpStream};

/// Connections wanted.
const WANT: usize = 10_000;
/// Connections between `connect` and a completed exchange at once (below the accept backlog).
const WINDOW: usize = 512;
/// Bound on one flavour's run.
const PER_FLAVOUR: Duration = Duration::from_secs(60);
/// Bound on the whole test binary.
const WATCHDOG: Duration = Duration::from_secs(150);
/// Bytes per message.
const MSG: usize = 16;

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
fn raise_nofile() -> usize {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, live rlimit for the kernel to fill.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: `raised` is a valid rlimit; raising the soft limit up to the hard one is allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    lim.rlim_cur.min(usize::MAX as libc::rlim_t) as usize
}

/// What the server answers to `m`.
fn answer(m: &[u8; MSG]) -> [u8; MSG] {
    let mut a = *m;
    for b in &mut a {
        *b = !*b;
    }
    a
}

/// The message of client `i`.
fn message(i: usize) -> [u8; MSG] {
    let mut m = [0u8; MSG];
    m[..8].copy_from_slice(&(i as u64).to_le_bytes());
    m[8..].copy_from_slice(&(i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    m
}

/// The server side of one connection: answers one message, counts it in `served`, then waits
/// for end of stream; returns whether the stream ended cleanly.
async fn serve_one(mut s: TcpStream, served: Arc<AtomicUsize>) -> bool {
    let mut m = [0u8; MSG];
    s.read_exact(&mut m).await.expect("server read");
    s.write_all(&answer(&m)).await.expect("server write");
    served.fetch_add(1, Ordering::Relaxed);
    let mut rest = [0u8; 1];
    s.read(&mut rest).await.expect("server read to end") == 0
}

/// One run with `n` connections; returns the fd count seen while all were open.
async fn run(n: usize, base_fds: usize) -> usize {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));

    // Accept loop: one server task per connection; it answers one message, then waits for end of
    // stream and returns whether the exchange was right.
    let acceptor = {
        let served = served.clone();
        spindle::spawn(async move {
            let mut servers = Vec::with_capacity(n);
            for _ in 0..n {
                let (s, _) = listener.accept().await.expect("accept");
                let served = served.clone();
                servers.push(spindle::spawn(serve_one(s, served)));
            }
            drop(listener);
            let mut clean = 0;
            for s in servers {
                clean += usize::from(s.await.unwrap());
            }
            clean
        })
    };

    // Clients, at most WINDOW between connect and a finished exchange; each then holds its
    // connection until `release` fires.
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release = release_rx.shared();
    let (done_tx, mut done_rx) = mpsc::unbounded::<usize>();
    let mut clients = Vec::with_capacity(n);
    let mut exchanged = 0;
    for i in 0..n {
        while i - exchanged >= WINDOW {
            exchanged += 1;
            done_rx.next().await.expect("a client finished its exchange");
        }
        let (done_tx, release) = (done_tx.clone(), release.clone());
        clients.push(spindle::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("client {i}: connect: {e}"));
            let m = message(i);
            s.write_all(&m).await.expect("client write");
            let mut a = [0u8; MSG];
            s.read_exact(&mut a).await.expect("client read");
            let _ = done_tx.unbounded_send(i);
            let _ = release.await;
            drop(s);
            a == answer(&m)
        }));
    }
    while exchanged < n {
        exchanged += 1;
        done_rx.next().await.expect("a client finished its exchange");
    }

    // Every connection is open now: both ends of each are held by a task.
    let fds_all_open = open_fds();
    // Sockets, not all fds: fds of an earlier runtime still being closed (its rings, eventfds)
    // may have been counted in `base_fds` and be gone now; both ends of each of our `n`
    // connections are sockets this process holds at this moment, whatever else closes.
    let sockets_all_open = open_sockets();
    assert!(
        sockets_all_open >= 2 * n,
        "{n} connections should hold {} sockets at once; open: {sockets_all_open} (all fds: {fds_all_open}, before: \
         {base_fds})",
        2 * n
    );

    release_tx.send(()).unwrap();
    let mut ok = 0;
    for c in clients {
        ok += usize::from(c.await.unwrap());
    }
    assert_eq!(ok, n, "clients that got the right answer");
    assert_eq!(acceptor.await.unwrap(), n, "servers that saw a clean end of stream");
    // Checked only with every server task joined: a server counts its answer after writing it,
    // so a client (on another worker) can have read it before it was counted.
    assert_eq!(served.load(Ordering::Relaxed), n, "every server answered");
    fds_all_open
}

#[test]
fn ten_thousand_connections_open_at_once() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return; // we are the client process of the cross-process test: only `client_child` acts
    }
    let _serial = serial();
    let watchdog_start = Instant::now();
    std::thread::spawn(move || {
        std::thread::sleep(WATCHDOG);
        eprintln!("net_10k: still running after {:?}: failing instead of hanging", watchdog_start.elapsed());
        std::process::exit(101);
    });

    let limit = raise_nofile();
    each_flavor(|rt| {
        let base = open_fds();
        let base_sockets = open_sockets();
        // Room for the runtime's own fds, the listener and what the harness opens meanwhile.
        let spare = 64;
        let fit = limit.saturating_sub(base + spare) / 2;
        let n = WANT.min(fit);
        if n < WANT {
            eprintln!(
                "net_10k: RLIMIT_NOFILE is {limit} (hard limit) with {base} fds open: room for {n} connections \
                 (2 fds each, both ends in this process), not {WANT}"
            );
        }
        assert!(n >= 1000, "too few fds for a meaningful test: limit {limit}, {base} open");
        let t0 = Instant::now();
        let peak = rt
            .block_on(spindle::time::timeout(PER_FLAVOUR, run(n, base)))
            .unwrap_or_else(|_| panic!("{n} connections did not finish within {PER_FLAVOUR:?}"));
        let took = t0.elapsed();
        // Closing may finish a moment after the tasks end (a backend can close asynchronously).
        // Sockets, not all fds, as above: an fd open before that is not ours (a fresh-clone CI
        // run once saw one fewer fd after than before) must not fail the count.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut now = open_sockets();
        while now != base_sockets && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            now = open_sockets();
        }
        let h = rt.handle();
        eprintln!(
            "net_10k: {n} connections on {:?} ({} workers), {}, in {took:?} (fds: {base} before, {peak} all open, \
             sockets {base_sockets} before, {now} after)",
            h.runtime_flavor(),
            h.metrics().num_workers(),
            h.io_driver()
        );
        assert_eq!(
            now, base_sockets,
            "open sockets after every connection closed (all fds before: {base}, peak: {peak})"
        );
    });
}

/// Environment variable that makes [`client_child`] act: `<server address> <connections>`.
const CHILD_ENV: &str = "SPINDLE_NET_10K_CLIENT";
/// Line the child prints once all its connections have exchanged their message.
const CHILD_READY: &str = "net_10k child: all connections open";

/// The client side of the cross-process run (does nothing unless [`CHILD_ENV`] is set): opens
/// the connections, exchanges one message on each (paced by [`WINDOW`]), holds them all, says so
/// on stdout, waits until its stdin closes, then closes everything.
#[test]
fn client_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let mut parts = spec.split(' ');
    let addr: SocketAddr = parts.next().and_then(|a| a.parse().ok()).expect("child: server address");
    let n: usize = parts.next().and_then(|c| c.parse().ok()).expect("child: connection count");
    raise_nofile();
    let rt = spindle::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let streams = rt.block_on(async move {
        let (done_tx, mut done_rx) = mpsc::unbounded::<TcpStream>();
        let mut streams = Vec::with_capacity(n);
        for i in 0..n {
            while i - streams.len() >= WINDOW {
                streams.push(done_rx.next().await.expect("a client finished its exchange"));
            }
            let done_tx = done_tx.clone();
            spindle::spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("client {i}: connect: {e}"));
                let m = message(i);
                s.write_all(&m).await.expect("client write");
                let mut a = [0u8; MSG];
                s.read_exact(&mut a).await.expect("client read");
                assert_eq!(a, answer(&m), "client {i}: wrong answer");
                let _ = done_tx.unbounded_send(s);
            });
        }
        while streams.len() < n {
            streams.push(done_rx.next().await.expect("a client finished its exchange"));
        }
        streams
    });
    println!("{CHILD_READY}");
    std::io::stdout().flush().unwrap();
    // Hold every connection until the parent closes our stdin.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(streams);
    drop(rt);
}

/// The full 10,000: the server (this process, multi-thread runtime with 2 workers) holds 10,000
/// accepted connections at once while a child process holds the 10,000 client ends.
#[test]
fn ten_thousand_connections_client_in_a_child_process() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return; // we are the child: only `client_child` acts
    }
    let _serial = serial();
    let limit = raise_nofile();
    let rt = spindle::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let base = open_fds();
    assert!(limit >= base + WANT + 64, "RLIMIT_NOFILE {limit} leaves no room for {WANT} connections");
    let t0 = Instant::now();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["client_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{addr} {WANT}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the client process");
        let mut child_in = child.stdin.take();
        let child_out = child.stdout.take().unwrap();
        // The child's "ready" line, read on the blocking pool (a pipe read blocks). The test
        // harness may print "test client_child ... " on the same line first. The reader then
        // drains the pipe to its end, so the child never writes into a closed pipe.
        let (ready_tx, ready) = spindle::sync::oneshot::channel::<()>();
        let _reader = spindle::spawn_blocking(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(child_out).lines().map_while(Result::ok) {
                if line.contains(CHILD_READY) {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });

        let served = Arc::new(AtomicUsize::new(0));
        let work = async {
            let mut servers = Vec::with_capacity(WANT);
            for _ in 0..WANT {
                let (s, _) = listener.accept().await.expect("accept");
                let served = served.clone();
                servers.push(spindle::spawn(serve_one(s, served)));
            }
            ready.await.expect("the client process ended without opening its connections");
            let fds_all_open = open_fds();
            assert!(
                fds_all_open >= base + WANT,
                "{WANT} accepted connections should hold {WANT} fds at once; open: {fds_all_open}, before: {base}"
            );
            // Release the clients: they close, every server sees end of stream.
            drop(child_in.take());
            let mut clean = 0;
            for s in servers {
                clean += usize::from(s.await.unwrap());
            }
            assert_eq!(clean, WANT, "servers that saw a clean end of stream");
            // Only now (every server task joined): a server counts its answer after writing it,
            // so the child can have read them all before the last one was counted.
            assert_eq!(served.load(Ordering::Relaxed), WANT, "every server answered");
            fds_all_open
        };
        let peak = spindle::time::timeout(PER_FLAVOUR, work).await;
        drop(child_in);
        let status = spindle::spawn_blocking(move || {
            if peak.is_err() {
                let _ = child.kill();
            }
            child.wait()
        })
        .await
        .unwrap()
        .expect("wait for the client process");
        let peak = peak.unwrap_or_else(|_| panic!("{WANT} connections did not finish within {PER_FLAVOUR:?}"));
        assert!(status.success(), "client process failed: {status}");
        eprintln!(
            "net_10k: {WANT} connections (clients in a child process) on {}, in {:?} (server fds: {base} before, \
             {peak} all open)",
            spindle::runtime::Handle::current().io_driver(),
            t0.elapsed()
        );
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_fds() > base && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(open_fds(), base, "server fds after every connection closed");
}
