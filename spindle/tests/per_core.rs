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
        let joins: Vec<_> = (0..8).map(|_| spindle::spawn(async { current_core().unwrap() })).collect();
        let mut cores = Vec::new();
        for j in joins {
            cores.push(j.await.unwrap());
        }
        cores
    });
    let on_zero = cores.iter().filter(|c| **c == 0).count();
    assert_eq!(on_zero, 4, "8 spawns over 2 cores: {cores:?}");
    // The same from a plain thread through a handle.
    let handle = rt.handle().clone();
    let joins = std::thread::spawn(move || (0..4).map(|_| handle.spawn(async { current_core() })).collect::<Vec<_>>())
        .join()
        .unwrap();
    for j in joins {
        assert!(rt.block_on(j).unwrap().is_some());
    }
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
    let addr = rx.recv().unwrap();
    assert_eq!(rx.recv().unwrap(), addr, "both listeners on one port");
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
    while served.lock().unwrap().len() < 64 {
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
    while started.load(SeqCst) < 2 {
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
