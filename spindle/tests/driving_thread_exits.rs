//! A current-thread runtime may be driven by different threads over its life (`block_on` from one
//! thread, later from another). On io_uring the kernel completes with `ECANCELED` requests whose
//! submitting thread has exited (seen here for an owned read's `RECV`, which then failed with
//! "Operation canceled", and for a registration's multishot poll at its next event, after which
//! reads spun); the runtime must not let that surface as errors, spinning or hangs: readiness
//! registrations and owned-buffer ops armed while an exited thread drove the runtime keep working.

mod common;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures::AsyncReadExt as _;
use spindle::io::AsyncReadOwned as _;
use spindle::runtime::Builder;

/// CPU time used by the calling thread so far.
fn thread_cpu() -> Duration {
    // SAFETY: `timespec` is plain data; all-zero is valid, and clock_gettime writes into it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

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
    // Thread 1 is gone; this thread drives the runtime now. Data comes while it waits: the event
    // must reach it through the registration thread 1 armed.
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
    let b = writer.join().unwrap();
    // That event reached the poll after its thread had exited, and the kernel completed the poll
    // with `ECANCELED` instead. With nothing more written, the next read must wait, without
    // using the CPU, and time out. Before the driver re-armed such a poll, the cancel was taken
    // for an error: the socket looked closed and the read spun on `EAGAIN` inside one poll (so
    // not even the timeout could fire); a rescue thread writes after a few seconds in that case,
    // so the bug shows as a failed assertion rather than a hang.
    let (stop_rescue, rescue_rx) = std::sync::mpsc::channel::<()>();
    let rescue = std::thread::spawn(move || {
        let mut b = b;
        if rescue_rx.recv_timeout(Duration::from_secs(3)).is_err() {
            b.write_all(b"late").unwrap();
        }
        b
    });
    let cpu0 = thread_cpu();
    let waited = rt.block_on(async {
        let mut buf = [0u8; 4];
        spindle::time::timeout(Duration::from_millis(300), a.read(&mut buf)).await.map(|r| r.map(|n| buf[..n].to_vec()))
    });
    let spent = thread_cpu() - cpu0;
    let _ = stop_rescue.send(());
    drop(rescue.join().unwrap());
    assert!(waited.is_err(), "with nothing written the read must wait, got {waited:?}");
    assert!(spent < Duration::from_millis(150), "the 300 ms wait for readiness used {spent:?} of CPU: it spun");
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
