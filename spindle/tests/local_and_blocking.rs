//! `spawn_local` (!Send tasks pinned to their thread) and `spawn_blocking` on every flavour.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::{bounded, each_flavor, panic_message};
use futures::channel::oneshot;
use spindle::runtime::Builder;
use spindle::task;

#[test]
fn spawn_local_runs_not_send_futures_on_their_thread() {
    each_flavor(|rt| {
        // On the multi-thread runtime, local tasks are spawned from a task on a worker.
        let ok = rt.block_on(async {
            spindle::spawn(async {
                let home = std::thread::current().id();
                let mut hs = Vec::new();
                for i in 0..100 {
                    hs.push(spindle::spawn_local(async move {
                        // Held across an await: this future is !Send.
                        let counter = Rc::new(Cell::new(i));
                        task::yield_now().await;
                        counter.set(counter.get() + 1);
                        (counter.get(), std::thread::current().id())
                    }));
                }
                let mut sum = 0;
                for h in hs {
                    let (v, thread) = h.await.unwrap();
                    assert_eq!(thread, home);
                    sum += v;
                }
                sum == (1..=100).sum::<i32>()
            })
            .await
            .unwrap()
        });
        assert!(ok);
    });
}

#[test]
fn local_task_woken_from_another_thread_stays_home() {
    each_flavor(|rt| {
        rt.block_on(async {
            spindle::spawn(async {
                for i in 0..50 {
                    // This task may move between workers while it waits; its local task may not.
                    let home = std::thread::current().id();
                    let (tx, rx) = oneshot::channel();
                    let not_send = Rc::new(i);
                    let h = spindle::spawn_local(async move {
                        let v = rx.await.unwrap();
                        (*not_send + v, std::thread::current().id())
                    });
                    std::thread::spawn(move || tx.send(1).unwrap());
                    let (v, thread) = h.await.unwrap();
                    assert_eq!(v, i + 1);
                    assert_eq!(thread, home);
                }
            })
            .await
            .unwrap();
        });
    });
}

#[test]
fn spawn_local_from_block_on_on_current_thread() {
    let rt = Builder::new_current_thread().build().unwrap();
    let v = rt.block_on(async {
        let rc = Rc::new(41);
        spindle::spawn_local(async move { *rc + 1 }).await.unwrap()
    });
    assert_eq!(v, 42);
}

#[test]
fn spawn_local_outside_a_worker_panics_with_message() {
    let rt = Builder::new_multi_thread().worker_threads(1).build().unwrap();
    let p = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async { drop(spindle::spawn_local(async {})) })
    }))
    .unwrap_err();
    assert!(panic_message(&*p).contains("spawn_local must be called from a task"), "{}", panic_message(&*p));
    let p = std::panic::catch_unwind(|| spindle::spawn_local(async {})).unwrap_err();
    assert!(panic_message(&*p).contains("no spindle runtime"));
}

#[test]
fn spawn_local_on_a_thread_that_does_not_drive_a_current_thread_runtime_panics() {
    // Thread A drives the runtime (in block_on); thread B enters it and tries to spawn a `!Send`
    // task, which A would poll: refused, with a message, and nothing is bound to B.
    let rt = Arc::new(Builder::new_current_thread().build().unwrap());
    let (driving_tx, driving_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let rt2 = rt.clone();
    let driver = std::thread::spawn(move || {
        rt2.block_on(async move {
            driving_tx.send(()).unwrap();
            done_rx.await.unwrap();
            // The driving thread itself may still spawn local tasks.
            spindle::spawn_local(async { 5 }).await.unwrap()
        })
    });
    driving_rx.recv().unwrap();
    let refused = {
        let _guard = rt.enter();
        std::panic::catch_unwind(|| drop(spindle::spawn_local(async {}))).map_err(|p| panic_message(&*p))
    };
    let message = refused.expect_err("spawn_local off the driving thread");
    assert!(message.contains("must be called on the thread that drives this runtime"), "{message}");
    done_tx.send(()).unwrap();
    assert_eq!(driver.join().unwrap(), 5);
}

#[test]
fn local_tasks_are_dropped_on_their_thread_at_shutdown() {
    struct RecordDropThread(Arc<std::sync::Mutex<Option<std::thread::ThreadId>>>);
    impl Drop for RecordDropThread {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = Some(std::thread::current().id());
        }
    }
    let rt = Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let dropped_on = Arc::new(std::sync::Mutex::new(None));
    let d2 = dropped_on.clone();
    let home = rt.block_on(async move {
        spindle::spawn(async move {
            let rec = RecordDropThread(d2);
            // The local task's home is the worker that spawns it (this task may move later).
            let home = std::thread::current().id();
            drop(spindle::spawn_local(async move {
                let _rec = rec;
                let _not_send = Rc::new(());
                std::future::pending::<()>().await;
            }));
            task::yield_now().await;
            home
        })
        .await
        .unwrap()
    });
    drop(rt);
    assert_eq!(*dropped_on.lock().unwrap(), Some(home));
}

#[test]
fn spawn_blocking_returns_and_catches_panics() {
    each_flavor(|rt| {
        rt.block_on(async {
            assert_eq!(spindle::spawn_blocking(|| 6 * 7).await.unwrap(), 42);
            let err = spindle::spawn_blocking(|| -> u32 { panic!("blocking boom") }).await.unwrap_err();
            assert!(err.is_panic());
            assert!(err.to_string().contains("blocking boom"));
            // Named blocking jobs.
            let h = task::Builder::new().name("io").spawn_blocking(|| 1).unwrap();
            assert_eq!(h.header_ref().meta().name.as_deref(), Some("io"));
            assert_eq!(h.await.unwrap(), 1);
        });
    });
}

#[test]
fn spawn_blocking_grows_the_pool_for_concurrent_jobs() {
    // Eight jobs that all wait for each other can only finish if eight threads run at once: the
    // first burst starts threads; the later ones find them idle and must wake all eight (wakeups
    // are chained, one in flight at a time, so this also checks the chain reaches every job).
    // The jobs meet with a deadline, so a pool that cannot run eight at once fails the test
    // instead of leaving seven jobs blocked for good (which a runtime drop would wait for).
    each_flavor(|rt| {
        bounded(rt, 60, async {
            for _burst in 0..3 {
                let meeting = Arc::new((Mutex::new(0usize), Condvar::new()));
                let hs: Vec<_> = (0..8)
                    .map(|_| {
                        let m = meeting.clone();
                        spindle::spawn_blocking(move || {
                            let (count, cv) = &*m;
                            let mut n = count.lock().unwrap();
                            *n += 1;
                            cv.notify_all();
                            let (n, _) = cv.wait_timeout_while(n, Duration::from_secs(10), |n| *n < 8).unwrap();
                            *n >= 8
                        })
                    })
                    .collect();
                for h in hs {
                    assert!(h.await.unwrap(), "eight blocking jobs did not run at once");
                }
            }
        });
    });
}

#[test]
fn blocking_pool_limit_queues_jobs() {
    let rt = Builder::new_current_thread().max_blocking_threads(2).build().unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let hs: Vec<_> = (0..16)
            .map(|_| {
                let (r, m) = (running.clone(), max_seen.clone());
                spindle::spawn_blocking(move || {
                    let now = r.fetch_add(1, SeqCst) + 1;
                    m.fetch_max(now, SeqCst);
                    std::thread::sleep(Duration::from_millis(2));
                    r.fetch_sub(1, SeqCst);
                })
            })
            .collect();
        for h in hs {
            h.await.unwrap();
        }
    });
    assert!(max_seen.load(SeqCst) <= 2, "{} jobs ran at once", max_seen.load(SeqCst));
}

#[test]
fn idle_blocking_threads_exit_after_keep_alive() {
    fn threads_named(name: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
            .filter(|c| c.trim() == name)
            .count()
    }
    let rt = Builder::new_current_thread()
        .thread_name("ka-test")
        .thread_keep_alive(Duration::from_millis(50))
        .build()
        .unwrap();
    // One job (queued first, so running once the others ran) holds its thread while the pool's
    // threads are counted: with every job done, a test thread descheduled for the 50 ms
    // keep-alive could find them all gone already.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let holder = rt.spawn_blocking(move || held.recv().unwrap());
    rt.block_on(async {
        let hs: Vec<_> =
            (0..4).map(|_| spindle::spawn_blocking(|| std::thread::sleep(Duration::from_millis(20)))).collect();
        for h in hs {
            h.await.unwrap();
        }
    });
    assert!(threads_named("ka-test") >= 1);
    release.send(()).unwrap();
    rt.block_on(holder).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while threads_named("ka-test") > 0 {
        assert!(std::time::Instant::now() < deadline, "idle blocking threads never exited");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A blocking closure uses spindle resources as often as it wants: its thread has no cooperative
/// budget (after 128 `blocking_recv`s it spun forever, nothing refilling the budget there).
#[test]
fn a_blocking_closure_has_no_cooperative_budget() {
    each_flavor(|rt| {
        let (tx, mut rx) = spindle::sync::mpsc::channel::<u32>(1000);
        for i in 0..300 {
            tx.try_send(i).unwrap();
        }
        drop(tx);
        let n = common::bounded(rt, 20, async move {
            spindle::spawn_blocking(move || {
                let mut n = 0;
                while rx.blocking_recv().is_some() {
                    n += 1;
                }
                n
            })
            .await
            .unwrap()
        });
        assert_eq!(n, 300);
    });
}

/// Inside a blocking closure the runtime is current: `spawn`, `spawn_blocking` and
/// `Handle::current` work there, as in tokio (they panicked: "no spindle runtime").
#[test]
fn a_blocking_closure_runs_with_its_runtime_current() {
    each_flavor(|rt| {
        let v = common::bounded(rt, 20, async {
            spindle::spawn_blocking(|| {
                let h = spindle::spawn(async { 5 });
                let b = spindle::spawn_blocking(|| 6);
                let handle = spindle::runtime::Handle::current();
                handle.block_on(h).unwrap() + handle.block_on(b).unwrap()
            })
            .await
            .unwrap()
        });
        assert_eq!(v, 11);
    });
}

/// `spawn_blocking` (the function and `task::Builder`'s) records its caller's location.
#[test]
fn spawn_blocking_records_its_callers_location() {
    let rt = Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let line = line!() + 1;
        let h = spindle::spawn_blocking(|| ());
        let loc = h.header_ref().meta().location;
        assert_eq!((loc.file(), loc.line()), (file!(), line));
        h.await.unwrap();
        let line = line!() + 1;
        let h = task::Builder::new().name("b").spawn_blocking(|| ()).unwrap();
        let loc = h.header_ref().meta().location;
        assert_eq!((loc.file(), loc.line()), (file!(), line));
        h.await.unwrap();
    });
}

struct SetOnDrop(Arc<AtomicUsize>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// A current-thread runtime that once ran a local task is bound to that thread only while local
/// tasks live: `block_on` elsewhere works once they are gone, and dropping it elsewhere drops its
/// `Send` tasks (it leaked every task, and refused `block_on`, for good).
#[test]
fn a_current_thread_runtime_is_bound_to_its_local_tasks_thread_only_while_they_live() {
    let rt = Builder::new_current_thread().build().unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let d2 = dropped.clone();
    rt.block_on(async move {
        spindle::spawn_local(async {}).await.unwrap();
        let g = SetOnDrop(d2);
        drop(spindle::spawn(async move {
            let _g = g;
            std::future::pending::<()>().await
        }));
        task::yield_now().await;
    });
    let rt = Arc::new(rt);
    let rt2 = rt.clone();
    assert_eq!(std::thread::spawn(move || rt2.block_on(async { 1 })).join().unwrap(), 1);
    let rt = Arc::try_unwrap(rt).ok().unwrap();
    std::thread::spawn(move || drop(rt)).join().unwrap();
    assert_eq!(dropped.load(SeqCst), 1, "the Send task's future was not dropped at shutdown");
}
