//! `spindle::net::unix::pipe` on every flavour (and, through CI, both drivers): a transfer much
//! bigger than the pipe buffer with the two ends in different tasks, end of stream and broken
//! pipe, readiness waits shared by several tasks, reads dropped while waiting, FIFOs opened by
//! path (and the errors of a missing reader, a missing path, a regular file, a wrong direction),
//! the conversions back to plain fds, and no fd left open. The tests count fds, so they take
//! turns.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{bounded, each_flavor, open_fds, serial};
use futures::{AsyncReadExt, AsyncWriteExt};
use spindle::io::Interest;
use spindle::net::unix::pipe::{self, OpenOptions, Receiver, Sender};
use spindle::time::{sleep, timeout};

/// A fresh FIFO in a directory of its own (removed by the returned guard).
struct Fifo {
    dir: PathBuf,
    path: PathBuf,
}

impl Fifo {
    fn new(name: &str) -> Fifo {
        let dir = std::env::temp_dir().join(format!("spindle-pipe-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fifo");
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
        Fifo { dir, path }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Bytes no two offsets of which repeat within a pipe buffer, so a lost or repeated chunk shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i / 251) as u8).collect()
}

#[test]
fn a_transfer_bigger_than_the_pipe_buffer_arrives_whole_and_ends() {
    let _s = serial();
    let before = open_fds();
    each_flavor(|rt| {
        let data = pattern(4 << 20);
        let got = bounded(rt, 60, async {
            let (mut tx, mut rx) = pipe::pipe().unwrap();
            let sent = data.clone();
            let writer = spindle::spawn(async move {
                // Uneven chunks, so writes straddle the pipe's page boundaries.
                for chunk in sent.chunks(7001) {
                    tx.write_all(chunk).await.unwrap();
                }
            });
            let mut got = Vec::new();
            rx.read_to_end(&mut got).await.unwrap();
            writer.await.unwrap();
            got
        });
        assert_eq!(got.len(), data.len());
        assert!(got == data, "the bytes differ");
    });
    assert_eq!(open_fds(), before, "a pipe end leaked");
}

#[test]
fn a_write_without_a_reader_is_a_broken_pipe_and_a_read_without_writers_ends() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let (mut tx, rx) = pipe::pipe().unwrap();
            drop(rx);
            let e = tx.write_all(b"nobody listens").await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::BrokenPipe);
            // No reader left: a closed write side, as tokio reports it.
            let r = tx.ready(Interest::WRITABLE).await.unwrap();
            assert!(r.is_write_closed() && r.is_writable(), "{r:?}");

            let (tx, mut rx) = pipe::pipe().unwrap();
            tx.try_write(b"last words").unwrap();
            drop(tx);
            // What was written before the close is still read, then end of stream, again and again.
            let mut got = Vec::new();
            rx.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"last words");
            let mut buf = [0u8; 8];
            assert_eq!(rx.read(&mut buf).await.unwrap(), 0);
            assert!(rx.ready(Interest::READABLE).await.unwrap().is_read_closed());
        });
    });
}

#[test]
fn a_full_pipe_makes_writers_wait_until_the_reader_drains_it() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let (tx, rx) = pipe::pipe().unwrap();
            // Fill the pipe buffer.
            let chunk = [7u8; 4096];
            let mut filled = 0;
            loop {
                match tx.try_write(&chunk) {
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
            assert!(filled >= 4096, "the pipe took {filled} bytes");
            // Three tasks wait for room at once (`&self` waits share the end).
            let tx = std::sync::Arc::new(tx);
            let waiters: Vec<_> = (0..3)
                .map(|_| {
                    let tx = tx.clone();
                    spindle::spawn(async move { tx.writable().await.unwrap() })
                })
                .collect();
            sleep(Duration::from_millis(20)).await;
            assert!(waiters.iter().all(|w| !w.is_finished()), "a writer saw room in a full pipe");
            // Drain it: every waiter wakes.
            let mut rx = rx;
            let mut buf = vec![0u8; filled];
            rx.read_exact(&mut buf).await.unwrap();
            for w in waiters {
                timeout(Duration::from_secs(10), w).await.expect("a waiter was not woken").unwrap();
            }
            assert!(buf.iter().all(|&b| b == 7));
        });
    });
}

#[test]
fn a_read_dropped_while_waiting_loses_nothing() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let (tx, mut rx) = pipe::pipe().unwrap();
            for round in 0..50u8 {
                let mut buf = [0u8; 16];
                // The read waits (nothing written yet) and is dropped by the timeout.
                assert!(timeout(Duration::from_millis(1), rx.read(&mut buf)).await.is_err());
                tx.try_write(&[round; 3]).unwrap();
                let n = rx.read(&mut buf).await.unwrap();
                assert_eq!(&buf[..n], &[round; 3], "round {round}");
            }
        });
    });
}

#[test]
fn several_tasks_wait_for_readability_at_once() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let (tx, rx) = pipe::pipe().unwrap();
            let rx = std::sync::Arc::new(rx);
            let waiters: Vec<_> = (0..4)
                .map(|_| {
                    let rx = rx.clone();
                    spindle::spawn(async move { rx.readable().await.unwrap() })
                })
                .collect();
            sleep(Duration::from_millis(20)).await;
            assert!(waiters.iter().all(|w| !w.is_finished()), "a reader saw data in an empty pipe");
            tx.try_write(b"!").unwrap();
            for w in waiters {
                timeout(Duration::from_secs(10), w).await.expect("a waiter was not woken").unwrap();
            }
            let mut buf = [0u8; 2];
            assert_eq!(rx.try_read(&mut buf).unwrap(), 1);
            // Drained: the next try reports WouldBlock, and a wait sleeps again.
            assert_eq!(rx.try_read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
            assert!(timeout(Duration::from_millis(20), rx.readable()).await.is_err());
        });
    });
}

#[test]
fn fifos_open_by_path_in_either_order_and_carry_data() {
    let _s = serial();
    let before = open_fds();
    each_flavor(|rt| {
        let fifo = Fifo::new("roundtrip");
        bounded(rt, 30, async {
            // The receiver first (a write-only open needs a reader), then the sender.
            let mut rx = OpenOptions::new().open_receiver(fifo.path()).unwrap();
            let mut tx = OpenOptions::new().open_sender(fifo.path()).unwrap();
            tx.write_all(b"through the fifo").await.unwrap();
            drop(tx);
            let mut got = String::new();
            rx.read_to_string(&mut got).await.unwrap();
            assert_eq!(got, "through the fifo");

            // read_write: the sender opens with no reader; a reader opened later gets the bytes.
            let tx = OpenOptions::new().read_write(true).open_sender(fifo.path()).unwrap();
            tx.try_write(b"early").unwrap();
            let mut rx = OpenOptions::new().open_receiver(fifo.path()).unwrap();
            let mut buf = [0u8; 5];
            rx.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"early");
        });
    });
    assert_eq!(open_fds(), before, "a FIFO end leaked");
}

#[test]
fn opening_fifos_fails_clearly() {
    let _s = serial();
    each_flavor(|rt| {
        let fifo = Fifo::new("errors");
        let _enter = rt.enter();
        // No reader: ENXIO, with the path and the way out in the message.
        let e = OpenOptions::new().open_sender(fifo.path()).unwrap_err();
        assert_eq!(spindle::io::raw_os_error(&e), Some(libc::ENXIO), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&fifo.path().display().to_string()) && msg.contains("read_write"), "{msg}");
        // Missing path.
        let missing = fifo.path().with_file_name("missing");
        let e = OpenOptions::new().open_receiver(&missing).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("missing"), "{e}");
        // A regular file is not a FIFO, unless unchecked.
        let file = fifo.path().with_file_name("regular");
        std::fs::write(&file, b"x").unwrap();
        let e = OpenOptions::new().open_receiver(&file).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        // Unchecked, it is taken where the backend can watch it (io_uring polls a regular file
        // as always ready); epoll refuses regular files (EPERM), when the end is made or, if its
        // watch is armed lazily (made outside a per-core runtime's cores), at its first wait.
        let read = OpenOptions::new().unchecked(true).open_receiver(&file).and_then(|mut rx| {
            let mut buf = [0u8; 4];
            bounded(rt, 10, async { rx.read(&mut buf).await })
        });
        match read {
            Ok(n) => assert_eq!(n, 1),
            Err(e) => assert_eq!(spindle::io::raw_os_error(&e), Some(libc::EPERM), "{e}"),
        }
        // An end made from a file opened the other way round is refused.
        let rx_file = std::fs::OpenOptions::new().read(true).custom_flags_nonblocking().open(fifo.path()).unwrap();
        let e = Sender::from_file(rx_file).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("writing"), "{e}");
    });
}

/// `O_NONBLOCK` on a std open (a read-only FIFO open would otherwise wait for a writer).
trait NonBlockingOpen {
    fn custom_flags_nonblocking(&mut self) -> &mut Self;
}

impl NonBlockingOpen for std::fs::OpenOptions {
    fn custom_flags_nonblocking(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::custom_flags(self, libc::O_NONBLOCK)
    }
}

#[test]
fn ends_convert_to_plain_fds_and_back() {
    let _s = serial();
    let before = open_fds();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let (tx, rx) = pipe::pipe().unwrap();
            // The write end back to a blocking fd, used by std on another thread.
            let fd = tx.into_blocking_fd().unwrap();
            // SAFETY: F_GETFL on an fd we own.
            assert_eq!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) } & libc::O_NONBLOCK, 0);
            let writer = std::thread::spawn(move || {
                let mut f = std::fs::File::from(fd);
                f.write_all(b"from a std thread").unwrap();
            });
            let mut rx = rx;
            let mut got = String::new();
            rx.read_to_string(&mut got).await.unwrap();
            writer.join().unwrap();
            assert_eq!(got, "from a std thread");
            // The read end as a non-blocking fd, taken over again.
            let fd = rx.into_nonblocking_fd().unwrap();
            // SAFETY: F_GETFL on an fd we own.
            assert_ne!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) } & libc::O_NONBLOCK, 0);
            let rx = Receiver::from_owned_fd(fd).unwrap();
            let mut buf = [0u8; 1];
            assert_eq!(rx.try_read(&mut buf).unwrap(), 0, "the writer is gone: end of stream");

            // A blocking std reader fed through a spindle Sender. Its result comes back through a
            // channel awaited with a timeout (the runtime keeps turning meanwhile), and the
            // thread is joined only once it has answered.
            let (tx, rx) = pipe::pipe().unwrap();
            let mut f = std::fs::File::from(rx.into_blocking_fd().unwrap());
            let (got_tx, got_rx) = spindle::sync::oneshot::channel();
            let reader = std::thread::spawn(move || {
                let mut s = String::new();
                f.read_to_string(&mut s).unwrap();
                let _ = got_tx.send(s);
            });
            let mut tx = tx;
            tx.write_all(b"to a std thread").await.unwrap();
            drop(tx);
            let got = timeout(Duration::from_secs(10), got_rx).await.expect("the std reader saw no end of stream");
            assert_eq!(got.unwrap(), "to a std thread");
            reader.join().unwrap();
        });
    });
    assert_eq!(open_fds(), before, "an fd leaked");
}

/// Waits (blocking the thread, as a caller that joins a std thread would) up to 10 s for
/// `fd` to report `POLLHUP` or `POLLIN`; returns the events seen.
fn block_for_hangup(fd: std::os::fd::RawFd) -> i16 {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, 10_000) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    p.revents
}

/// Dropping an end whose readiness watch is armed closes it at once, not at the runtime's next
/// turn: a thread that then blocks (joining a std thread that reads to end of stream) must not
/// wait for a close only its own runtime could finish. On io_uring the watch's poll holds a
/// reference to the file until the cancel's deferred work runs, so the drop runs it.
#[test]
fn dropping_a_watched_end_closes_it_even_if_the_thread_then_blocks() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let (tx, rx) = pipe::pipe().unwrap();
            let rx = rx.into_blocking_fd().unwrap();
            let mut tx = tx;
            tx.write_all(b"x").await.unwrap();
            // Let the runtime collect what the kernel has for it (the watch's first event), so
            // the drop below is the next thing its ring sees.
            sleep(Duration::from_millis(5)).await;
            drop(tx);
            let mut rx = std::fs::File::from(rx);
            let mut byte = [0u8; 1];
            assert_eq!(rx.read(&mut byte).unwrap(), 1);
            let seen = block_for_hangup(rx.as_raw_fd());
            assert_ne!(seen & libc::POLLHUP, 0, "the reader saw no hang-up (revents {seen:#x})");
        });
    });
}

#[test]
fn an_end_of_a_shut_down_runtime_fails_instead_of_hanging() {
    let _s = serial();
    let rt = spindle::runtime::Builder::new_current_thread().build().unwrap();
    let (tx, mut rx) = {
        let _g = rt.enter();
        pipe::pipe().unwrap()
    };
    drop(rt);
    let other = spindle::runtime::Builder::new_current_thread().build().unwrap();
    let e = bounded(&other, 10, async { rx.read(&mut [0u8; 4]).await.unwrap_err() });
    assert!(e.to_string().contains("shut down"), "{e}");
    drop(tx);
}

#[test]
fn a_fifo_reader_waits_for_its_first_writer_and_for_the_next_one() {
    let _s = serial();
    each_flavor(|rt| {
        let fifo = Fifo::new("reconnect");
        bounded(rt, 30, async {
            let mut rx = OpenOptions::new().open_receiver(fifo.path()).unwrap();
            let mut buf = [0u8; 4];
            // No writer has opened it yet: the read waits (it does not report end of stream,
            // which would make a "reopen at end of stream" loop spin).
            assert!(timeout(Duration::from_millis(30), rx.read(&mut buf)).await.is_err());
            let first = OpenOptions::new().open_sender(fifo.path()).unwrap();
            first.try_write(b"one").unwrap();
            assert_eq!(rx.read(&mut buf).await.unwrap(), 3);
            // The writer leaves: end of stream, seen through the reactor's hang-up event.
            let leave = spindle::spawn(async move {
                sleep(Duration::from_millis(20)).await;
                drop(first)
            });
            assert_eq!(rx.read(&mut buf).await.unwrap(), 0);
            leave.await.unwrap();
            // A new writer: the hang-up is over, and the next read waits for its bytes (it spun
            // inside one poll when the hang-up stayed recorded: on a current-thread runtime the
            // writer task below never ran).
            let tx = OpenOptions::new().open_sender(fifo.path()).unwrap();
            let writer = spindle::spawn(async move {
                sleep(Duration::from_millis(30)).await;
                tx.writable().await.unwrap();
                tx.try_write(b"two").unwrap();
                tx
            });
            let n = rx.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"two");
            drop(writer.await.unwrap());
        });
    });
}

#[test]
fn vectored_calls_take_at_most_iov_max_buffers() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let (mut tx, mut rx) = pipe::pipe().unwrap();
            let one = [1u8];
            let bufs: Vec<std::io::IoSlice<'_>> = (0..2000).map(|_| std::io::IoSlice::new(&one)).collect();
            // The kernel refuses more than 1024 (EINVAL); like std, a partial write instead.
            assert_eq!(tx.try_write_vectored(&bufs).unwrap(), 1024);
            assert_eq!(futures::AsyncWriteExt::write_vectored(&mut tx, &bufs).await.unwrap(), 1024);
            let mut first = vec![[0u8; 1]; 2000];
            let mut slices: Vec<std::io::IoSliceMut<'_>> =
                first.iter_mut().map(|c| std::io::IoSliceMut::new(c)).collect();
            assert_eq!(futures::AsyncReadExt::read_vectored(&mut rx, &mut slices).await.unwrap(), 1024);
            let mut second = vec![[0u8; 1]; 2000];
            let mut slices: Vec<std::io::IoSliceMut<'_>> =
                second.iter_mut().map(|c| std::io::IoSliceMut::new(c)).collect();
            rx.readable().await.unwrap();
            assert_eq!(rx.try_read_vectored(&mut slices).unwrap(), 1024);
        });
    });
}

#[cfg(feature = "tokio-io")]
#[test]
fn the_ends_work_with_tokio_io_util() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let (mut tx, mut rx) = pipe::pipe().unwrap();
            let data = pattern(300_000);
            let sent = data.clone();
            let writer = spindle::spawn(async move {
                AsyncWriteExt::write_all(&mut tx, &sent).await.unwrap();
                AsyncWriteExt::shutdown(&mut tx).await.unwrap();
            });
            let mut got = Vec::new();
            AsyncReadExt::read_to_end(&mut rx, &mut got).await.unwrap();
            writer.await.unwrap();
            assert!(got == data, "the bytes differ");
        });
    });
}

#[test]
fn poll_ready_waits_for_the_direction_and_wakes_its_task() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let (tx, rx) = pipe::pipe().unwrap();
            // Nothing written: pending (the waker is kept), until a write from another task.
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(rx.poll_read_ready(&mut cx).is_pending());
            let tx = std::sync::Arc::new(tx);
            let writer = {
                let tx = tx.clone();
                spindle::spawn(async move {
                    sleep(Duration::from_millis(20)).await;
                    tx.try_write(b"ab").unwrap();
                })
            };
            timeout(Duration::from_secs(10), std::future::poll_fn(|cx| rx.poll_read_ready(cx)))
                .await
                .expect("poll_read_ready was not woken")
                .unwrap();
            writer.await.unwrap();
            assert_eq!(rx.try_read(&mut [0u8; 4]).unwrap(), 2);
            // Drained: pending again (the stale event is waited past, not reported).
            assert!(rx.poll_read_ready(&mut cx).is_pending());

            // Write side: pending while full, ready once the reader drains.
            while tx.try_write(&[0u8; 4096]).is_ok() {}
            assert!(tx.poll_write_ready(&mut cx).is_pending());
            let reader = spindle::spawn(async move {
                sleep(Duration::from_millis(20)).await;
                let mut rx = rx;
                let mut buf = vec![0u8; 1 << 20];
                let _ = rx.read(&mut buf).await.unwrap();
                rx
            });
            timeout(Duration::from_secs(10), std::future::poll_fn(|cx| tx.poll_write_ready(cx)))
                .await
                .expect("poll_write_ready was not woken")
                .unwrap();
            drop(reader.await.unwrap());
        });
    });
}
