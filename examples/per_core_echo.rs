//! A thread-per-core TCP echo server on spindle's per-core runtime, with a built-in load client.
//!
//! `cargo run --release --example per_core_echo` starts one core per CPU, each with a listener of
//! its own on one shared port (`SO_REUSEPORT`: the kernel deals new connections out to the
//! listeners), runs 64 client connections x 2000 round trips of 64 bytes against it from the same
//! runtime, prints round trips per second and how many connections each core served, and exits.
//! `cargo run --release --example per_core_echo -- --serve 7000` serves on 127.0.0.1:7000 until
//! interrupted.
//!
//! Each core counts what it served in a thread-local `Cell`: a task never leaves its core, so
//! per-core state needs no atomics and no locks.

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Instant;

use spindle::io::{AsyncReadOwned, AsyncWriteOwned, IoBuf};
use spindle::net::{TcpListener, TcpSocket, TcpStream};
use spindle::runtime::{current_core, Handle};

const CONNECTIONS: usize = 64;
const ROUND_TRIPS: usize = 2000;
const MSG: usize = 64;

thread_local! {
    /// Connections this core's thread served to the end.
    static SERVED: Cell<usize> = const { Cell::new(0) };
}

/// A listener on `addr` that shares its port with the other cores' listeners.
fn listener_on(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = TcpSocket::new_v4()?;
    sock.set_reuseaddr(true)?;
    sock.set_reuseport(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

/// One core's server: accepts on its own listener and echoes every connection it accepts, on
/// this core, until the task is aborted.
async fn serve_core(listener: TcpListener) {
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("core {:?}: accept failed: {e}", current_core());
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        spindle::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let (res, b) = stream.read_owned(buf).await;
                match res {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let (res, b) = stream.write_all_owned(b.slice(..n)).await;
                        if res.is_err() {
                            break;
                        }
                        buf = b.into_inner();
                    }
                }
            }
            SERVED.with(|s| s.set(s.get() + 1));
        });
    }
}

/// One client connection: `ROUND_TRIPS` messages, each checked when it comes back.
async fn client(addr: SocketAddr, id: usize) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut tx = vec![0u8; MSG];
    for round in 0..ROUND_TRIPS {
        tx.iter_mut().enumerate().for_each(|(k, b)| *b = (id ^ round ^ k) as u8);
        let (res, sent) = stream.write_all_owned(tx).await;
        res?;
        let (res, back) = stream.read_exact_owned(Vec::with_capacity(MSG)).await;
        res?;
        assert_eq!(back, sent, "echo mismatch");
        tx = sent;
    }
    Ok(())
}

#[spindle::main(flavor = "per_core")]
async fn main() -> std::io::Result<()> {
    let handle = Handle::current();
    let cores = handle.metrics().num_workers();
    let serve_forever = std::env::args().skip_while(|a| a != "--serve").nth(1);
    let mut addr: SocketAddr = match &serve_forever {
        Some(port) => format!("127.0.0.1:{port}").parse().expect("--serve takes a port"),
        None => "127.0.0.1:0".parse().unwrap(),
    };
    // Bind the cores' listeners one after the other: the first picks the port, the others share it.
    let mut servers = Vec::new();
    for core in 0..cores {
        let (bound_tx, bound_rx) = spindle::sync::oneshot::channel();
        let want = addr;
        servers.push(handle.spawn_on(core, async move {
            let listener = match listener_on(want) {
                Ok(l) => l,
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    return;
                }
            };
            let _ = bound_tx.send(listener.local_addr());
            serve_core(listener).await
        }));
        addr = bound_rx.await.expect("the core answers")?;
    }
    if serve_forever.is_some() {
        println!("echo on {addr}, {cores} cores, each accepting on its own listener");
        std::future::pending::<()>().await;
    }
    // The load: each client task is spawned onto the cores in turn and connects from there.
    let start = Instant::now();
    let clients: Vec<_> = (0..CONNECTIONS).map(|id| spindle::spawn(client(addr, id))).collect();
    for c in clients {
        c.await.expect("client task")?;
    }
    let secs = start.elapsed().as_secs_f64();
    let total = CONNECTIONS * ROUND_TRIPS;
    println!(
        "{total} round trips over {CONNECTIONS} connections on {cores} cores in {secs:.2} s: {:.0} round trips/s",
        total as f64 / secs
    );
    // How the kernel dealt the connections out: each core says what it served (a server task
    // counts its connection when it sees the client's end of stream, just after the client
    // finished; wait a little for the last ones).
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut counts = Vec::with_capacity(cores);
        for core in 0..cores {
            counts.push(handle.spawn_on(core, async { SERVED.with(Cell::get) }).await.expect("core task"));
        }
        if counts.iter().sum::<usize>() == CONNECTIONS || Instant::now() > deadline {
            for (core, n) in counts.iter().enumerate() {
                println!("  core {core}: {n} connections");
            }
            break;
        }
        spindle::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for s in servers {
        s.abort();
    }
    Ok(())
}
