//! `Builder::io_driver`: a runtime can force its I/O driver whatever the process chose
//! (`SPINDLE_DRIVER` or the probe), reports it, and serves sockets on it; runtimes on different
//! drivers live side by side in one process.

use std::time::Duration;

use spindle::io::{AsyncReadOwned, AsyncWriteOwned};
use spindle::net::{TcpListener, TcpStream, UnixStream};
use spindle::runtime::{Builder, IoDriver, Runtime};

/// Whether io_uring works on this machine (containers often refuse it).
fn uring_usable() -> bool {
    Builder::new_current_thread().io_driver(IoDriver::Uring).build().is_ok()
}

fn runtimes(driver: IoDriver) -> Vec<Runtime> {
    vec![
        Builder::new_current_thread().io_driver(driver).build().unwrap(),
        Builder::new_multi_thread().worker_threads(2).io_driver(driver).build().unwrap(),
    ]
}

/// A TCP echo with owned buffers and a Unix pair round trip, bounded in time.
fn serve_and_echo(rt: &Runtime) {
    rt.block_on(async {
        spindle::time::timeout(Duration::from_secs(20), async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = spindle::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let (n, buf) = s.read_owned(vec![0u8; 64]).await;
                let n = n.unwrap();
                let (r, _) = s.write_all_owned(buf[..n].to_vec()).await;
                r.unwrap();
            });
            let mut c = TcpStream::connect(addr).await.unwrap();
            let (r, _) = c.write_all_owned(b"forced driver".to_vec()).await;
            r.unwrap();
            let (n, buf) = c.read_owned(vec![0u8; 64]).await;
            assert_eq!(&buf[..n.unwrap()], b"forced driver");
            server.await.unwrap();

            let (mut a, mut b) = UnixStream::pair().unwrap();
            let (r, _) = a.write_all_owned(b"unix".to_vec()).await;
            r.unwrap();
            let (n, buf) = b.read_owned(vec![0u8; 8]).await;
            assert_eq!(&buf[..n.unwrap()], b"unix");
        })
        .await
        .expect("echo timed out")
    });
}

#[test]
fn forced_epoll_reports_and_serves() {
    for rt in runtimes(IoDriver::Epoll) {
        assert_eq!(rt.handle().io_driver(), "epoll");
        serve_and_echo(&rt);
    }
}

#[test]
fn forced_uring_reports_and_serves_or_fails_clearly() {
    if !uring_usable() {
        let err = Builder::new_current_thread().io_driver(IoDriver::Uring).build().unwrap_err();
        assert!(err.to_string().contains("io_uring"), "unclear error: {err}");
        return;
    }
    for rt in runtimes(IoDriver::Uring) {
        assert_eq!(rt.handle().io_driver(), "io_uring");
        serve_and_echo(&rt);
    }
}

#[test]
fn auto_follows_the_process_choice() {
    let rt = Builder::new_current_thread().build().unwrap();
    let expected = match std::env::var("SPINDLE_DRIVER").as_deref() {
        Ok("epoll") => "epoll",
        Ok("uring") | Ok("io_uring") => "io_uring",
        _ => {
            if uring_usable() {
                "io_uring"
            } else {
                "epoll"
            }
        }
    };
    assert_eq!(rt.handle().io_driver(), expected);
    serve_and_echo(&rt);
}

#[test]
fn runtimes_on_both_drivers_side_by_side() {
    if !uring_usable() {
        return;
    }
    let epoll = Builder::new_multi_thread().worker_threads(1).io_driver(IoDriver::Epoll).build().unwrap();
    let uring = Builder::new_multi_thread().worker_threads(1).io_driver(IoDriver::Uring).build().unwrap();
    // A listener on the epoll runtime, a client on the io_uring one.
    let listener = epoll.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = epoll.spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let (n, buf) = s.read_owned(vec![0u8; 16]).await;
        buf[..n.unwrap()].to_vec()
    });
    uring.block_on(async {
        let mut c = TcpStream::connect(addr).await.unwrap();
        let (r, _) = c.write_all_owned(b"across".to_vec()).await;
        r.unwrap();
    });
    assert_eq!(epoll.block_on(server).unwrap(), b"across");
}
