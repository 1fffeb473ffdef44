//! Shutdown drops every task (destructors run), waits for blocking work, and never leaks.
//! `.ci/run` also runs this file under valgrind's leak checker.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{flavors, DropFlag};
use futures::channel::oneshot;
use spindle::runtime::Builder;

#[test]
fn dropping_runtime_drops_every_pending_task() {
    for (name, rt) in flavors() {
        let drops = Arc::new(AtomicUsize::new(0));
        // Idle tasks waiting on each other (a cycle through wakers held in channels), tasks never
        // polled, and a detached running one.
        let mut keep = Vec::new();
        for _ in 0..100 {
            let (tx, rx) = oneshot::channel::<()>();
            let (tx2, rx2) = oneshot::channel::<()>();
            let f1 = DropFlag(drops.clone());
            let f2 = DropFlag(drops.clone());
            keep.push(rt.spawn(async move {
                let _f = f1;
                let _tx2 = tx2;
                let _ = rx.await;
            }));
            drop(rt.spawn(async move {
                let _f = f2;
                let _tx = tx;
                let _ = rx2.await;
            }));
        }
        rt.block_on(async {
            for _ in 0..10 {
                spindle::task::yield_now().await;
            }
        });
        drop(rt);
        assert_eq!(drops.load(SeqCst), 200, "flavour {name}");
        for h in keep {
            assert!(h.is_finished(), "flavour {name}");
        }
    }
}

#[test]
fn join_handles_of_dropped_runtime_report_cancelled() {
    for (name, rt) in flavors() {
        let h = rt.spawn(std::future::pending::<()>());
        drop(rt);
        let err = spindle::block_on(h).unwrap_err();
        assert!(err.is_cancelled(), "flavour {name}: {err:?}");
    }
}

#[test]
fn spawn_during_shutdown_is_cancelled_not_lost() {
    // A destructor that spawns while the runtime is being dropped: the new task is refused and
    // completes as cancelled, its future dropped.
    struct SpawnOnDrop(Arc<AtomicUsize>);
    impl Drop for SpawnOnDrop {
        fn drop(&mut self) {
            let f = DropFlag(self.0.clone());
            if let Ok(h) = spindle::task::Builder::new().spawn(async move {
                let _f = f;
            }) {
                drop(h);
            }
        }
    }
    for (name, rt) in flavors() {
        let drops = Arc::new(AtomicUsize::new(0));
        let s = SpawnOnDrop(drops.clone());
        rt.spawn(async move {
            let _s = s;
            std::future::pending::<()>().await;
        });
        drop(rt);
        assert_eq!(drops.load(SeqCst), 1, "flavour {name}");
    }
}

#[test]
fn shutdown_waits_for_blocking_jobs() {
    let rt = Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (s, d) = (started.clone(), done.clone());
    rt.spawn_blocking(move || {
        s.fetch_add(1, SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        d.fetch_add(1, SeqCst);
    });
    // Running, not just queued: shutdown cancels queued jobs that never started (as tokio's
    // does). A fixed 5 ms sleep here was not always enough on a busy host (CI failed once).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while started.load(SeqCst) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(started.load(SeqCst), 1, "the blocking job never started");
    drop(rt);
    assert_eq!(done.load(SeqCst), 1);
}

#[test]
fn shutdown_timeout_bounds_the_wait() {
    let rt = Builder::new_current_thread().build().unwrap();
    let (started_tx, started) = std::sync::mpsc::channel::<()>();
    rt.spawn_blocking(move || {
        started_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(1500))
    });
    // Running, not just queued (a queued job is cancelled, and then nothing is waited for).
    started.recv_timeout(Duration::from_secs(10)).expect("the blocking job never started");
    let t = Instant::now();
    rt.shutdown_timeout(Duration::from_millis(50));
    assert!(t.elapsed() < Duration::from_millis(1000), "waited {:?}", t.elapsed());
}

#[test]
fn queued_blocking_jobs_are_cancelled_at_shutdown() {
    let rt = Builder::new_current_thread().max_blocking_threads(1).build().unwrap();
    let (started_tx, started) = std::sync::mpsc::channel::<()>();
    let (release_tx, release) = std::sync::mpsc::channel::<()>();
    // The first job runs until the queued one's closure is dropped, as its cancellation does
    // (bounded, should it never be): the queued job cannot get the one thread first, however
    // late the shutdown comes.
    let first = rt.spawn_blocking(move || {
        started_tx.send(()).unwrap();
        let _ = release.recv_timeout(Duration::from_secs(10));
    });
    let queued = rt.spawn_blocking(move || {
        drop(release_tx);
        1
    });
    // And the first one must be running, not queued: after a fixed 10 ms sleep here, a pool
    // thread slow to start could leave both queued, and shutdown would cancel both.
    started.recv_timeout(Duration::from_secs(10)).expect("the first blocking job never started");
    rt.shutdown_timeout(Duration::from_secs(5));
    assert!(spindle::block_on(first).is_ok());
    assert!(spindle::block_on(queued).unwrap_err().is_cancelled());
}

#[test]
fn runtime_dropped_inside_its_own_task_does_not_deadlock() {
    let rt = Arc::new(std::sync::Mutex::new(Some(Builder::new_multi_thread().worker_threads(2).build().unwrap())));
    let rt2 = rt.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = rt.lock().unwrap().as_ref().unwrap().handle().clone();
    handle.spawn(async move {
        let taken = rt2.lock().unwrap().take();
        drop(taken);
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("runtime drop inside its task deadlocked");
}

#[test]
fn many_runtimes_created_and_dropped() {
    for i in 0..50 {
        let rt = if i % 2 == 0 {
            Builder::new_current_thread().build().unwrap()
        } else {
            Builder::new_multi_thread().worker_threads(2).build().unwrap()
        };
        let v = rt.block_on(async { spindle::spawn(async { 1 }).await.unwrap() });
        assert_eq!(v, 1);
    }
}

/// Dropping a runtime inside one of its own blocking closures returns (the pool's shutdown
/// waited for every pool thread, the dropping one included: forever).
#[test]
fn a_runtime_dropped_inside_its_own_blocking_closure_does_not_wait_for_itself() {
    for (name, rt) in flavors() {
        let h = rt.handle().clone();
        let (tx, rx) = std::sync::mpsc::channel();
        h.spawn_blocking(move || {
            drop(rt);
            tx.send(()).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{name}: drop(rt) inside its blocking closure never returned"));
    }
}
