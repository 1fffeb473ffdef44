//! The per-core runtime's own promises: a task stays on its core, spawns from outside go to the
//! cores in turn, `spawn_local` works on a core, I/O on a core uses that core's driver, tasks are
//! dropped on their own core at shutdown, and misuse fails with a clear message. (The whole
//! test suite also runs on a two-core per-core runtime through `common::flavors`.)

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use common::{bounded, panic_message};
use spindle::io::{AsyncReadOwned, AsyncWriteOwned, IoBuf};
use spindle::net::{TcpListener, TcpSocket, TcpStream};
use spindle::runtime::{current_core, Builder, Runtime, RuntimeFlavor};

fn per_core(n: usize) -> Runtime {
    Builder::new_per_core().worker_threads(n).build().unwrap()
}

fn here() -> (Option<usize>, ThreadId) {
    (current_core(), std::thread::current().id())
}

#[test]
fn a_task_and_everything_it_spawns_stay_on_its_core() {
    let rt = per_core(2);
    assert_eq!(rt.handle().runtime_flavor(), RuntimeFlavor::PerCore);
    assert_eq!(rt.handle().metrics().num_workers(), 2);
    for core in 0..2 {
        let seen = rt
            .block_on(rt.handle().spawn_on(core, async move {
                let mut seen = vec![here()];
                for _ in 0..50 {
                    // A chain of spawns and yields, each looking at where it runs.
                    let child = spindle::spawn(async {
                        spindle::task::yield_now().await;
                        here()
                    });
                    seen.push(child.await.unwrap());
                    let local = spindle::spawn_local(async { here() });
                    seen.push(local.await.unwrap());
                }
                assert_eq!(spindle::runtime::Handle::current().runtime_flavor(), RuntimeFlavor::PerCore);
                seen
            }))
            .unwrap();
        assert_eq!(seen.len(), 101);
        assert!(seen.iter().all(|s| *s == seen[0]), "core {core}: tasks moved: {seen:?}");
        assert_eq!(seen[0].0, Some(core));
        assert_ne!(seen[0].1, std::thread::current().id(), "cores run on their own threads");
    }
}

#[test]
fn spawns_from_outside_the_cores_are_dealt_out_in_turn() {
    let rt = per_core(2);
    let cores = rt.block_on(async {
        assert_eq!(current_core(), None, "block_on runs on the caller's thread, no core");
        let mut joins = Vec::new();
        for i in 0..8 {
            joins.push(spindle::spawn(async { current_core().unwrap() }));
            // I/O and timers made here (placed on the cores in turn) do not shift where spawns go.
            if i % 3 == 0 {
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let _c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
                spindle::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let mut cores = Vec::new();
        for j in joins {
            cores.push(j.await.unwrap());
        }
        cores
    });
    assert_eq!(cores, [0, 1, 0, 1, 0, 1, 0, 1], "8 spawns over 2 cores, in turn");
    // The same from a plain thread through a handle.
    let handle = rt.handle().clone();
    let joins = std::thread::spawn(move || (0..4).map(|_| handle.spawn(async { current_core() })).collect::<Vec<_>>())
        .join()
        .unwrap();
    let cores: Vec<_> = joins.into_iter().map(|j| rt.block_on(j).unwrap().unwrap()).collect();
    assert_eq!(cores, [0, 1, 0, 1]);
}

#[test]
fn a_core_handle_on_another_thread_neither_runs_local_tasks_there_nor_counts_as_the_core() {
    let rt = per_core(2);
    let core_handle = rt.block_on(rt.handle().spawn_on(1, async { spindle::runtime::Handle::current() })).unwrap();
    assert_eq!(core_handle.runtime_flavor(), RuntimeFlavor::PerCore);
    let on_foreign_thread = std::thread::spawn(move || {
        let _guard = core_handle.enter();
        let core = current_core();
        // Spawns through the core's handle go to that core...
        let sent = core_handle.spawn(async { current_core() });
        // ...but a `!Send` task cannot be bound to this thread: core 1's thread would poll it.
        let local = std::panic::catch_unwind(|| drop(spindle::spawn_local(async {}))).map_err(|p| panic_message(&*p));
        (core, sent, local)
    })
    .join()
    .unwrap();
    assert_eq!(on_foreign_thread.0, None, "entering a core's handle does not make a thread a core");
    assert_eq!(rt.block_on(on_foreign_thread.1).unwrap(), Some(1));
    let message = on_foreign_thread.2.expect_err("spawn_local from a thread that does not drive the core");
    assert!(message.contains("must be called on the thread that drives this runtime"), "{message}");
    // The core's own thread still spawns local tasks (the refusal bound nothing).
    let local = rt.block_on(rt.handle().spawn_on(1, async { spindle::spawn_local(async { current_core() }).await }));
    assert_eq!(local.unwrap().unwrap(), Some(1));
}

#[test]
fn a_core_that_enters_another_runtimes_handle_is_still_that_core() {
    let rt = per_core(2);
    let other = Builder::new_current_thread().build().unwrap();
    let h = other.handle().clone();
    let core = rt
        .block_on(rt.handle().spawn_on(1, async move {
            let _entered = h.enter();
            current_core()
        }))
        .unwrap();
    assert_eq!(core, Some(1), "entering another handle on a core hid which core it is");
}

#[test]
fn an_op_in_flight_on_one_core_held_by_another_is_cancelled_at_shutdown_not_leaked() {
    // A buffer that says when it is freed.
    struct Flagged(Vec<u8>, Arc<AtomicUsize>);
    impl Drop for Flagged {
        fn drop(&mut self) {
            self.1.fetch_add(1, SeqCst);
        }
    }
    // SAFETY: the bytes are the vector's heap allocation, which moving `Flagged` does not move.
    unsafe impl spindle::io::IoBuf for Flagged {
        fn stable_ptr(&self) -> *const u8 {
            self.0.as_ptr()
        }
        fn bytes_init(&self) -> usize {
            self.0.len()
        }
        fn bytes_total(&self) -> usize {
            self.0.capacity()
        }
    }
    // SAFETY: as above; `set_init` only records what the kernel wrote.
    unsafe impl spindle::io::IoBufMut for Flagged {
        fn stable_mut_ptr(&mut self) -> *mut u8 {
            self.0.as_mut_ptr()
        }
        unsafe fn set_init(&mut self, n: usize) {
            // SAFETY: the caller promises `n` bytes are initialized, within the capacity.
            unsafe { self.0.set_len(n) }
        }
    }
    // Held next to the read and declared after it, so dropped before it (locals drop in reverse
    // order), slowly: the read's future is dropped 200 ms into the shutdown, long after core 0
    // finished dropping its own tasks.
    struct SlowDrop;
    impl Drop for SlowDrop {
        fn drop(&mut self) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    let freed = Arc::new(AtomicUsize::new(0));
    let rt = per_core(2);
    let (fut_tx, fut_rx) = futures::channel::oneshot::channel();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (peer_tx, peer_rx) = std::sync::mpsc::channel();
    let freed2 = freed.clone();
    // Core 0: a read that will never complete (the peer never writes), polled once here, so its
    // op is in flight on core 0's ring; then the future goes to core 1.
    rt.handle().spawn_on(0, async move {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        // The peer stays open (in the test's thread) until the end: only a cancellation ends
        // the read.
        peer_tx.send(peer).unwrap();
        let mut read = Box::pin(async move { s.read_owned(Flagged(Vec::with_capacity(64), freed2)).await });
        assert!(futures::poll!(read.as_mut()).is_pending());
        let _ = fut_tx.send(read);
        std::future::pending::<()>().await;
    });
    // Core 1: holds it until the runtime drops it.
    rt.handle().spawn_on(1, async move {
        let read = fut_rx.await.unwrap();
        let _read = read;
        let _slow = SlowDrop;
        held_tx.send(()).unwrap();
        std::future::pending::<()>().await;
    });
    held_rx.recv_timeout(Duration::from_secs(10)).expect("core 1 holds the read");
    let peer = peer_rx.recv().unwrap();
    assert_eq!(freed.load(SeqCst), 0);
    drop(rt);
    assert_eq!(freed.load(SeqCst), 1, "the read's buffer was freed once its op was reaped, not leaked");
    drop(peer);
}

#[test]
fn misuse_fails_with_clear_messages() {
    let rt = per_core(2);
    let p = rt.block_on(async {
        std::panic::catch_unwind(|| drop(spindle::spawn_local(async {}))).expect_err("spawn_local outside a core")
    });
    assert!(panic_message(&*p).contains("from a task running on one of its cores"), "{}", panic_message(&*p));
    let p = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(rt.handle().spawn_on(2, async {}))))
        .expect_err("no core 2");
    assert!(panic_message(&*p).contains("2 cores"), "{}", panic_message(&*p));
    // A panicking task is caught on its core, which keeps serving.
    let r = rt.block_on(rt.handle().spawn_on(0, async { panic!("boom") }));
    assert!(r.unwrap_err().is_panic());
    assert_eq!(rt.block_on(rt.handle().spawn_on(0, async { current_core() })).unwrap(), Some(0));
}

#[test]
fn each_core_serves_its_own_connections_on_its_own_driver() {
    let rt = per_core(2);
    let joins: Vec<_> = (0..2)
        .map(|core| {
            rt.handle().spawn_on(core, async move {
                let me = here();
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let server = spindle::spawn_local(async move {
                    let (mut s, _) = listener.accept().await.unwrap();
                    let mut buf = vec![0u8; 16];
                    loop {
                        let (res, b) = s.read_owned(buf).await;
                        let n = res.unwrap();
                        if n == 0 {
                            return here();
                        }
                        let (res, b) = s.write_all_owned(b[..n].to_vec()).await;
                        res.unwrap();
                        buf = vec![0u8; 16];
                        drop(b);
                    }
                });
                let mut c = TcpStream::connect(addr).await.unwrap();
                for i in 0..200u32 {
                    let (res, _) = c.write_all_owned(i.to_le_bytes().to_vec()).await;
                    res.unwrap();
                    let (res, back) = c.read_exact_owned(Vec::with_capacity(4)).await;
                    res.unwrap();
                    assert_eq!(back, i.to_le_bytes());
                    assert_eq!(here(), me, "the client moved");
                }
                AsyncWriteOwned::shutdown(&mut c).await.unwrap();
                assert_eq!(server.await.unwrap(), me, "the server ran elsewhere");
                me.0
            })
        })
        .collect();
    let cores = bounded(&rt, 20, async {
        let mut v = Vec::new();
        for j in joins {
            v.push(j.await.unwrap());
        }
        v
    });
    assert_eq!(cores, [Some(0), Some(1)]);
}

#[test]
fn a_listener_per_core_on_one_port_serves_each_connection_on_its_core() {
    let rt = per_core(2);
    let (tx, rx) = std::sync::mpsc::channel();
    // Each core binds its own SO_REUSEPORT listener on the same port (the first picks it).
    let port = Arc::new(Mutex::new(None::<std::net::SocketAddr>));
    let served = Arc::new(Mutex::new(Vec::new()));
    let mut acceptors = Vec::new();
    for core in 0..2 {
        let (port, served, tx) = (port.clone(), served.clone(), tx.clone());
        acceptors.push(rt.handle().spawn_on(core, async move {
            let sock = TcpSocket::new_v4().unwrap();
            sock.set_reuseport(true).unwrap();
            let addr = {
                let mut p = port.lock().unwrap();
                sock.bind(p.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap())).unwrap();
                *p.get_or_insert(sock.local_addr().unwrap())
            };
            let listener = sock.listen(128).unwrap();
            tx.send(addr).unwrap();
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let served = served.clone();
                spindle::spawn_local(async move {
                    let (res, b) = s.read_owned(vec![0u8; 4]).await;
                    let n = res.unwrap();
                    let (res, _) = s.write_all_owned(b.slice(..n)).await;
                    res.unwrap();
                    served.lock().unwrap().push((core, current_core()));
                });
            }
        }));
    }
    // With a deadline: an acceptor that failed to bind would otherwise leave these waits blocked
    // (the test keeps a sender alive).
    let addr = rx.recv_timeout(Duration::from_secs(10)).expect("the first listener never bound");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).expect("the second listener never bound"),
        addr,
        "both listeners on one port"
    );
    bounded(&rt, 20, async move {
        for i in 0..64u32 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let (res, _) = c.write_all_owned(i.to_le_bytes().to_vec()).await;
            res.unwrap();
            let (res, back) = c.read_exact_owned(Vec::with_capacity(4)).await;
            res.unwrap();
            assert_eq!(back, i.to_le_bytes());
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while served.lock().unwrap().len() < 64 {
        assert!(std::time::Instant::now() < deadline, "not every connection was served");
        std::thread::sleep(Duration::from_millis(1));
    }
    let served = served.lock().unwrap().clone();
    assert!(served.iter().all(|(accepted_on, ran_on)| Some(*accepted_on) == *ran_on), "{served:?}");
    let on_zero = served.iter().filter(|(c, _)| *c == 0).count();
    assert!(
        on_zero > 0 && on_zero < 64,
        "the kernel spreads connections over both listeners: {on_zero} of 64 on core 0"
    );
    for a in acceptors {
        a.abort();
    }
}

#[test]
fn shutdown_drops_each_task_on_its_own_core() {
    struct Recorder(Arc<Mutex<Vec<ThreadId>>>, Rc<Cell<u8>>);
    impl Drop for Recorder {
        fn drop(&mut self) {
            self.1.set(1);
            self.0.lock().unwrap().push(std::thread::current().id());
        }
    }
    let rt = per_core(2);
    let dropped_on = Arc::new(Mutex::new(Vec::new()));
    let started = Arc::new(AtomicUsize::new(0));
    let mut core_threads = Vec::new();
    for core in 0..2 {
        let (dropped_on, started) = (dropped_on.clone(), started.clone());
        let thread = rt.block_on(rt.handle().spawn_on(core, async move {
            // A `!Send` task parked forever: only its core may drop it.
            spindle::spawn_local(async move {
                let r = Recorder(dropped_on, Rc::new(Cell::new(0)));
                started.fetch_add(1, SeqCst);
                std::future::pending::<()>().await;
                drop(r);
            });
            std::thread::current().id()
        }));
        core_threads.push(thread.unwrap());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while started.load(SeqCst) < 2 {
        assert!(std::time::Instant::now() < deadline, "the local tasks did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(rt.handle().metrics().num_alive_tasks(), 2);
    drop(rt);
    let mut dropped_on = dropped_on.lock().unwrap().clone();
    dropped_on.sort_by_key(|t| format!("{t:?}"));
    core_threads.sort_by_key(|t| format!("{t:?}"));
    assert_eq!(dropped_on, core_threads, "each task dropped on its core's thread");
}

#[test]
fn runtime_dropped_inside_its_own_task_does_not_deadlock() {
    let rt = Arc::new(Mutex::new(Some(per_core(2))));
    let rt2 = rt.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = rt.lock().unwrap().as_ref().unwrap().handle().clone();
    handle.spawn_on(1, async move {
        let taken = rt2.lock().unwrap().take();
        drop(taken);
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("runtime drop inside its task deadlocked");
}
