//! The raw io_uring echo loop: the reference the I/O rows measure spindle against (shared/PERF.md:
//! "a raw io_uring loop (the practical limit)").
//!
//! One thread, one ring, no runtime (`raw-uring`; `raw-uring-2t` runs two such threads, each with
//! its own ring and its own half of the connections, the reference for two-worker runtimes): both
//! ends of every connection are driven from the same ring with `IORING_OP_SEND` / `IORING_OP_RECV`
//! on the sockets, registered in the ring's file table (no file lookup per op), every receive with
//! `IORING_RECVSEND_POLL_FIRST` (in this workload each one waits for the peer, so trying it before
//! waiting only finds nothing: about 4% of the round trip), and the loop makes one `io_uring_enter`
//! (`submit_and_wait(1)`) per batch: it submits every SQE the previous batch of completions
//! produced and sleeps until at least one more completion arrives. Nothing here allocates or wakes
//! a thread per message, so what is left is the kernel's loopback TCP work plus one ring round trip
//! per batch: the most any runtime can get out of io_uring on this workload.
//!
//! The ring is created with `SINGLE_ISSUER | DEFER_TASKRUN` when the kernel allows it (completion
//! work then runs inside our `io_uring_enter` instead of interrupting the thread), else plainly.
//! With two threads, each is pinned to one of the CPUs this process may use, as the per-core
//! runtime pins its cores (`spindle-pc` is measured against `raw-uring-2t`); same medians as
//! unpinned on this machine, with fewer slow outliers.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

use io_uring::{opcode, squeue, types, IoUring};

use crate::io_rows::{message, Outcome, MSG};
use crate::{sys, syscount};

/// What a completion is for (the low 2 bits of `user_data`; the connection index is above).
const CLIENT_SEND: u64 = 0;
const CLIENT_RECV: u64 = 1;
const SERVER_RECV: u64 = 2;
const SERVER_SEND: u64 = 3;

/// One connection: both of its sockets and their buffers (at stable heap addresses while the ring
/// may use them: the `Vec<Conn>` is never resized once the loop starts).
struct Conn {
    /// The connection's number over all threads (what its messages are made from).
    index: usize,
    client: TcpStream,
    server: TcpStream,
    /// The sockets' indices in the ring's registered file table.
    client_fixed: types::Fixed,
    server_fixed: types::Fixed,
    /// The message the client sent in the current round trip, and how much of it is sent.
    tx: [u8; MSG],
    tx_off: usize,
    /// The echo received so far.
    rx: [u8; MSG],
    rx_off: usize,
    /// Round trips completed.
    done: usize,
    /// The server's buffer: what it received and how much of that it has sent back.
    sbuf: [u8; MSG],
    slen: usize,
    soff: usize,
}

fn ring(entries: u32) -> IoUring {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(entries)
        .or_else(|_| IoUring::new(entries))
        .expect("create an io_uring (the raw loop needs io_uring)")
}

/// Pushes `e`, submitting first if the submission queue is full.
fn push(ring: &mut IoUring, e: squeue::Entry) {
    loop {
        // SAFETY: every entry built in this file points into a `Conn` of `conns`, which is neither
        // moved nor dropped until every operation on it has completed (see `serve`).
        if unsafe { ring.submission().push(&e) }.is_ok() {
            return;
        }
        ring.submit().expect("io_uring submit");
    }
}

/// `IORING_RECVSEND_POLL_FIRST`.
const POLL_FIRST: u16 = 1;

fn recv(fd: types::Fixed, buf: *mut u8, len: usize, data: u64) -> squeue::Entry {
    opcode::Recv::new(fd, buf, len as u32).ioprio(POLL_FIRST).build().user_data(data)
}

fn send(fd: types::Fixed, buf: *const u8, len: usize, data: u64) -> squeue::Entry {
    opcode::Send::new(fd, buf, len as u32).build().user_data(data)
}

/// `conns` loopback connections, `rts` round trips of [`MSG`] bytes each, driven by `threads`
/// threads with a ring each, every thread serving both ends of its share of the connections (the
/// practical limit for that many cores: no thread ever touches another's sockets). Timed (and
/// syscalls counted, with `count`) from the moment every thread has its ring set up to the last
/// server seeing end of stream; connection and ring setup are outside.
pub fn echo(conns: usize, rts: usize, count: bool, threads: usize) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    let threads = threads.clamp(1, conns.max(1));
    let mut shares: Vec<Vec<Conn>> = (0..threads).map(|_| Vec::new()).collect();
    for index in 0..conns {
        let client = TcpStream::connect(addr).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        client.set_nodelay(true).unwrap();
        server.set_nodelay(true).unwrap();
        let share = &mut shares[index % threads];
        let j = share.len() as u32;
        share.push(Conn {
            index,
            client,
            server,
            client_fixed: types::Fixed(2 * j),
            server_fixed: types::Fixed(2 * j + 1),
            tx: [0; MSG],
            tx_off: 0,
            rx: [0; MSG],
            rx_off: 0,
            done: 0,
            sbuf: [0; MSG],
            slen: 0,
            soff: 0,
        });
    }
    // Every thread sets its ring up (outside the measurement), then all start together.
    let ready = std::sync::Barrier::new(threads + 1);
    let go = std::sync::Barrier::new(threads + 1);
    let (wall, cpu, syscalls, total) = std::thread::scope(|scope| {
        let cpus = if threads > 1 { spindle::runtime::allowed_cpus() } else { Vec::new() };
        let handles: Vec<_> = shares
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let (ready, go) = (&ready, &go);
                let cpu = (!cpus.is_empty()).then(|| cpus[i % cpus.len()]);
                scope.spawn(move || {
                    if let Some(cpu) = cpu {
                        spindle::runtime::pin_current_thread(cpu);
                    }
                    serve(c, rts, ready, go)
                })
            })
            .collect();
        ready.wait();
        let counter = if count { Some(syscount::Counter::start()) } else { None };
        let c0 = sys::process_cpu_ns();
        let t0 = Instant::now();
        go.wait();
        let total: u64 = handles.into_iter().map(|h| h.join().expect("raw loop thread")).sum();
        let wall = t0.elapsed().as_nanos() as u64;
        let cpu = sys::process_cpu_ns().saturating_sub(c0);
        (wall, cpu, counter.map(|c| c.and_then(|c| c.stop())), total)
    });
    Outcome { wall_ns: wall, cpu_ns: cpu, check: total, syscalls }
}

/// One thread's loop over its connections `c` (see [`echo`]); returns the round trips echoed
/// intact.
fn serve(mut c: Vec<Conn>, rts: usize, ready: &std::sync::Barrier, go: &std::sync::Barrier) -> u64 {
    let conns = c.len();
    // At most two operations per connection are in flight (one per end), so the queues never fill.
    let mut ring = ring((2 * conns).next_power_of_two().max(8) as u32);
    let fds: Vec<i32> = c.iter().flat_map(|k| [k.client.as_raw_fd(), k.server.as_raw_fd()]).collect();
    ring.submitter().register_files(&fds).expect("io_uring register_files");
    ready.wait();
    go.wait();

    for (i, k) in c.iter_mut().enumerate() {
        let i = i as u64;
        k.tx = message(k.index, 0);
        push(&mut ring, recv(k.server_fixed, k.sbuf.as_mut_ptr(), MSG, i << 2 | SERVER_RECV));
        push(&mut ring, send(k.client_fixed, k.tx.as_ptr(), MSG, i << 2 | CLIENT_SEND));
    }
    let (mut clients_done, mut servers_done, mut total) = (0, 0, 0u64);
    let mut cqes: Vec<(u64, i32)> = Vec::with_capacity(4 * conns);
    while servers_done < conns {
        ring.submit_and_wait(1).expect("io_uring_enter");
        cqes.extend(ring.completion().map(|e| (e.user_data(), e.result())));
        for (data, res) in cqes.drain(..) {
            let i = (data >> 2) as usize;
            let k = &mut c[i];
            assert!(
                res >= 0,
                "raw loop: op {} on connection {i}: {}",
                data & 3,
                std::io::Error::from_raw_os_error(-res)
            );
            let n = res as usize;
            match data & 3 {
                CLIENT_SEND => {
                    k.tx_off += n;
                    let e = if k.tx_off < MSG {
                        send(k.client_fixed, k.tx[k.tx_off..].as_ptr(), MSG - k.tx_off, data)
                    } else {
                        k.rx_off = 0;
                        recv(k.client_fixed, k.rx.as_mut_ptr(), MSG, (i as u64) << 2 | CLIENT_RECV)
                    };
                    push(&mut ring, e);
                }
                CLIENT_RECV => {
                    assert!(n > 0, "raw loop: connection {i} closed by the server");
                    k.rx_off += n;
                    if k.rx_off < MSG {
                        let e = recv(k.client_fixed, k.rx[k.rx_off..].as_mut_ptr(), MSG - k.rx_off, data);
                        push(&mut ring, e);
                        continue;
                    }
                    if k.rx == k.tx {
                        total += 1;
                    }
                    k.done += 1;
                    if k.done < rts {
                        k.tx = message(k.index, k.done);
                        k.tx_off = 0;
                        push(&mut ring, send(k.client_fixed, k.tx.as_ptr(), MSG, (i as u64) << 2 | CLIENT_SEND));
                    } else {
                        // Done: the server's pending receive sees end of stream.
                        k.client.shutdown(Shutdown::Write).expect("shutdown");
                        clients_done += 1;
                    }
                }
                SERVER_RECV => {
                    if n == 0 {
                        servers_done += 1;
                        continue;
                    }
                    k.slen = n;
                    k.soff = 0;
                    push(&mut ring, send(k.server_fixed, k.sbuf.as_ptr(), n, (i as u64) << 2 | SERVER_SEND));
                }
                _ => {
                    k.soff += n;
                    let e = if k.soff < k.slen {
                        send(k.server_fixed, k.sbuf[k.soff..].as_ptr(), k.slen - k.soff, data)
                    } else {
                        recv(k.server_fixed, k.sbuf.as_mut_ptr(), MSG, (i as u64) << 2 | SERVER_RECV)
                    };
                    push(&mut ring, e);
                }
            }
        }
    }
    assert_eq!(clients_done, conns);
    // Every operation has completed (each connection ended with its server's final receive), so the
    // buffers in `c` may go now; the ring goes first anyway.
    drop(ring);
    drop(c);
    total
}
