//! A current-thread runtime may be driven by different threads over its life (`block_on` from one
//! thread, later from another). On io_uring the kernel cancels requests a thread submitted when
//! that thread exits (seen here for an owned read's `RECV`, which then failed with "Operation
//! canceled" before the driver resubmitted such ops); the runtime must not let that surface as
//! errors or hangs: readiness registrations and owned-buffer ops armed while an exited thread
//! drove the runtime keep working.

mod common;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures::AsyncReadExt as _;
use spindle::io::AsyncReadOwned as _;
use spindle::runtime::Builder;

#[test]
fn readiness_armed_by_a_thread_that_exited_still_works() {
    let rt = Arc::new(Builder::new_current_thread().build().unwrap());
    let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    // Thread 1 drives the runtime: the stream's readiness is armed there (nothing to read yet).
    let rt1 = rt.clone();
    let mut a = std::thread::spawn(move || {
        rt1.block_on(async move {
            let mut s = spindle::net::UnixStream::from_std(a).unwrap();
            let mut buf = [0u8; 4];
            let r = spindle::time::timeout(Duration::from_millis(30), s.read(&mut buf)).await;
            assert!(r.is_err(), "nothing was written yet");
            s
        })
    })
    .join()
    .unwrap();
    // Thread 1 is gone; this thread drives the runtime now, and waits for readiness before the
    // data comes (so it must arrive through the registration armed by the exited thread).
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        b.write_all(b"ping").unwrap();
        b
    });
    let got = rt.block_on(async {
        let mut buf = [0u8; 4];
        let n = spindle::time::timeout(Duration::from_secs(5), a.read(&mut buf))
            .await
            .expect("the read hung: readiness armed by the exited thread never came")
            .expect("read");
        buf[..n].to_vec()
    });
    assert_eq!(got, b"ping");
    drop(writer.join().unwrap());
}

#[test]
fn owned_read_submitted_by_a_thread_that_exited_still_completes() {
    let rt = Arc::new(Builder::new_current_thread().build().unwrap());
    let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    // Thread 1 drives the runtime while a task submits an owned read, then leaves it pending.
    let rt1 = rt.clone();
    let reader = std::thread::spawn(move || {
        let h = rt1.spawn(async move {
            let mut s = spindle::net::UnixStream::from_std(a).unwrap();
            let (res, buf) = s.read_owned(Vec::with_capacity(16)).await;
            res.map(|n| buf[..n].to_vec())
        });
        // The task runs (and submits its read) while this thread drives the runtime.
        rt1.block_on(spindle::time::sleep(Duration::from_millis(30)));
        h
    })
    .join()
    .unwrap();
    b.write_all(b"pong").unwrap();
    let got = rt.block_on(async {
        spindle::time::timeout(Duration::from_secs(5), reader).await.expect("the read hung").unwrap()
    });
    assert_eq!(got.expect("the read failed"), b"pong");
}
