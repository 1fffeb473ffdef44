//! `accept` when the process is out of file descriptors (EMFILE): a clear error, a back-off so
//! an accept loop never spins, the runtime keeps serving, and accepting resumes once fds are
//! free. Its own test binary, because it lowers the process's RLIMIT_NOFILE.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::each_flavor;
use spindle::net::{TcpListener, TcpStream};
use spindle::time::Instant;

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0)
}

fn get_limit() -> libc::rlimit {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid pointer to a live rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim
}

fn set_soft_limit(cur: u64) {
    let lim = libc::rlimit { rlim_cur: cur, rlim_max: get_limit().rlim_max };
    // SAFETY: valid pointer to a live rlimit; lowering (or restoring) the soft limit is allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

/// Opens `/dev/null` until the process hits EMFILE; the files hold every free fd number.
fn exhaust_fds() -> Vec<std::fs::File> {
    let mut fillers = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => fillers.push(f),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => return fillers,
            Err(e) => panic!("unexpected error filling fds: {e}"),
        }
    }
}

/// The tests of this binary change the process's fd limit: one at a time.
static LIMIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn accept_under_emfile_backs_off_and_recovers() {
    let _one = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    let original = get_limit().rlim_cur;
    each_flavor(|rt| {
        rt.block_on(async {
            spindle::time::timeout(Duration::from_secs(30), async {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                // A client whose connection waits in the listener's backlog.
                let mut client = std::net::TcpStream::connect(addr).unwrap();
                client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();

                // A task that must keep running while the listener is starved.
                let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let t2 = ticks.clone();
                let ticker = spindle::spawn(async move {
                    for _ in 0..20 {
                        spindle::time::sleep(Duration::from_millis(10)).await;
                        t2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                });

                // Use up every fd under a lowered limit.
                set_soft_limit(open_fds() + 16);
                let fillers = exhaust_fds();

                let e = listener.accept().await.unwrap_err();
                assert!(e.to_string().contains("Too many open files"), "{e}");
                assert!(e.to_string().contains("waits"), "{e}");

                // A naive loop that retries at once does not spin: the listener backs off.
                let start = Instant::now();
                let mut attempts = 0;
                while start.elapsed() < Duration::from_millis(300) {
                    let r = spindle::time::timeout(Duration::from_millis(300), listener.accept()).await;
                    if let Ok(r) = r {
                        assert!(r.is_err());
                    }
                    attempts += 1;
                }
                assert!(attempts <= 12, "{attempts} accept attempts in 300 ms: the loop spins");

                // Free the fds: the connection that waited is accepted and served.
                drop(fillers);
                set_soft_limit(original);
                let (s, _) = spindle::time::timeout(Duration::from_secs(5), listener.accept())
                    .await
                    .expect("accept resumes after fds are freed")
                    .unwrap();
                let client_task = spindle::spawn_blocking(move || {
                    client.write_all(b"hi").unwrap();
                    let mut buf = [0u8; 2];
                    client.read_exact(&mut buf).unwrap();
                    buf
                });
                let mut s: TcpStream = s;
                use futures::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 2];
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(&buf).await.unwrap();
                assert_eq!(&client_task.await.unwrap(), b"hi");
                ticker.await.unwrap();
                assert_eq!(ticks.load(std::sync::atomic::Ordering::SeqCst), 20);
                // Connecting while out of fds is an error too, not a panic.
                set_soft_limit(open_fds() + 16);
                let fillers = exhaust_fds();
                let e = TcpStream::connect(addr).await.unwrap_err();
                drop(fillers);
                assert!(e.to_string().contains("Too many open files"), "{e}");
                set_soft_limit(original);
            })
            .await
            .expect("the EMFILE test timed out");
        });
        set_soft_limit(original);
    });
}

/// A datagram from an unnamed sender is received with no new fd: out of fds, `recv_from` used to
/// fail after taking the datagram off the socket (it made a socket to name the sender), so the
/// datagram was lost.
#[test]
fn unix_recv_from_an_unnamed_sender_needs_no_fd() {
    let _one = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    let original = get_limit().rlim_cur;
    each_flavor(|rt| {
        rt.block_on(async {
            let path = std::env::temp_dir().join(format!("spindle-test-emfile-{}.sock", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let server = spindle::net::UnixDatagram::bind(&path).unwrap();
            let client = spindle::net::UnixDatagram::unbound().unwrap();
            client.send_to(b"precious", &path).await.unwrap();
            set_soft_limit(open_fds() + 16);
            let fillers = exhaust_fds();
            let mut buf = [0u8; 16];
            let r = spindle::time::timeout(Duration::from_secs(10), server.recv_from(&mut buf)).await;
            drop(fillers);
            set_soft_limit(original);
            let _ = std::fs::remove_file(&path);
            let (n, from) = r.expect("recv_from timed out").expect("recv_from failed out of fds");
            assert_eq!(&buf[..n], b"precious");
            assert!(from.is_unnamed());
        })
    });
}
