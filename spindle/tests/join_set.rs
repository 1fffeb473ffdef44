//! `spindle::task::JoinSet` on every flavour: results in the order tasks finish, nothing lost to
//! a `join_next` dropped while waiting, slots reused while stale wakes are about, aborts and the
//! drop that aborts, detaching, panics, the spawn variants, and a joiner on another worker than
//! the tasks.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, each_flavor, panic_message, DropFlag};
use spindle::sync::oneshot;
use spindle::task::JoinSet;
use spindle::time::{sleep, timeout};

#[test]
fn results_come_in_the_order_tasks_finish() {
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let mut set = JoinSet::new();
            let mut gates = Vec::new();
            for i in 0..5u32 {
                let (tx, rx) = oneshot::channel::<()>();
                gates.push(tx);
                set.spawn(async move {
                    rx.await.unwrap();
                    i
                });
            }
            // Released in the order 3, 0, 4, 1, 2; each joined before the next is released.
            let mut gates: Vec<Option<_>> = gates.into_iter().map(Some).collect();
            for i in [3usize, 0, 4, 1, 2] {
                gates[i].take().unwrap().send(()).unwrap();
                assert_eq!(set.join_next().await.unwrap().unwrap(), i as u32);
            }
            assert!(set.is_empty());
            assert!(set.join_next().await.is_none());
        });
    });
}

#[test]
fn many_tasks_with_slots_reused_lose_and_repeat_nothing() {
    each_flavor(|rt| {
        bounded(rt, 60, async {
            let mut set = JoinSet::new();
            let mut expected = 0u64;
            let mut got = 0u64;
            let mut joined = 0usize;
            // Spawning while joining reuses the slots of joined tasks while the wakes of earlier
            // polls may still be on their way.
            for round in 0..20u64 {
                for i in 0..100u64 {
                    let v = round * 1000 + i;
                    expected += v;
                    set.spawn(async move {
                        if v % 3 == 0 {
                            spindle::task::yield_now().await;
                        }
                        if v % 7 == 0 {
                            sleep(Duration::from_micros(200)).await;
                        }
                        v
                    });
                }
                for _ in 0..50 {
                    got += set.join_next().await.unwrap().unwrap();
                    joined += 1;
                }
            }
            while let Some(r) = set.join_next().await {
                got += r.unwrap();
                joined += 1;
            }
            assert_eq!(joined, 2000);
            assert_eq!(got, expected);
        });
    });
}

#[test]
fn a_join_next_dropped_while_waiting_loses_no_result() {
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let mut set = JoinSet::new();
            let (tx, rx) = oneshot::channel::<()>();
            set.spawn(async move {
                rx.await.unwrap();
                "done"
            });
            assert!(timeout(Duration::from_millis(20), set.join_next()).await.is_err());
            tx.send(()).unwrap();
            // Let it finish with no joiner waiting.
            sleep(Duration::from_millis(20)).await;
            assert_eq!(set.join_next().await.unwrap().unwrap(), "done");
        });
    });
}

#[test]
fn aborts_shutdown_and_the_drop_that_aborts() {
    each_flavor(|rt| {
        bounded(rt, 30, async {
            // abort_all: every task is joined as cancelled, except one that had finished.
            let mut set = JoinSet::new();
            let done = set.spawn(async { 1 });
            while !done.is_finished() {
                spindle::task::yield_now().await;
            }
            for _ in 0..3 {
                set.spawn(std::future::pending::<i32>());
            }
            set.abort_all();
            let (mut ok, mut cancelled) = (0, 0);
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(v) => ok += v,
                    Err(e) => {
                        assert!(e.is_cancelled(), "{e}");
                        cancelled += 1
                    }
                }
            }
            assert_eq!((ok, cancelled), (1, 3));

            // shutdown: aborted and waited for.
            let dropped = Arc::new(AtomicUsize::new(0));
            let mut set = JoinSet::new();
            for _ in 0..4 {
                let flag = DropFlag(dropped.clone());
                set.spawn(async move {
                    let _flag = flag;
                    std::future::pending::<()>().await
                });
            }
            set.shutdown().await;
            assert!(set.is_empty());
            assert_eq!(dropped.load(Ordering::SeqCst), 4, "shutdown returned before every task ended");

            // Dropping the set aborts its tasks.
            let dropped = Arc::new(AtomicUsize::new(0));
            let mut set = JoinSet::new();
            let mut aborts = Vec::new();
            for _ in 0..4 {
                let flag = DropFlag(dropped.clone());
                aborts.push(set.spawn(async move {
                    let _flag = flag;
                    std::future::pending::<()>().await
                }));
            }
            drop(set);
            while !aborts.iter().all(|a| a.is_finished()) {
                sleep(Duration::from_millis(1)).await;
            }
            assert_eq!(dropped.load(Ordering::SeqCst), 4);
        });
    });
}

#[test]
fn detached_tasks_run_on() {
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let mut set = JoinSet::new();
            let mut rxs = Vec::new();
            for i in 0..3 {
                let (tx, rx) = oneshot::channel();
                rxs.push(rx);
                set.spawn(async move {
                    sleep(Duration::from_millis(5)).await;
                    tx.send(i).unwrap();
                });
            }
            set.detach_all();
            assert!(set.is_empty());
            assert!(set.join_next().await.is_none());
            drop(set);
            for (i, rx) in rxs.into_iter().enumerate() {
                assert_eq!(rx.await.unwrap(), i);
            }
        });
    });
}

#[test]
fn panics_are_joined_as_errors_and_resumed_by_join_all() {
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let mut set = JoinSet::new();
            set.spawn(async { panic!("task blew up") });
            let e = set.join_next().await.unwrap().unwrap_err();
            assert!(e.is_panic());
            assert_eq!(panic_message(&*e.into_panic()), "task blew up");

            // join_all resumes the panic in the joiner, and the tasks left are aborted.
            let dropped = Arc::new(AtomicUsize::new(0));
            let flag = DropFlag(dropped.clone());
            let joiner = spindle::spawn(async move {
                let mut set = JoinSet::new();
                set.spawn(async move {
                    let _flag = flag;
                    std::future::pending::<()>().await
                });
                set.spawn(async {
                    sleep(Duration::from_millis(5)).await;
                    panic!("second task blew up")
                });
                set.join_all().await
            });
            let e = joiner.await.unwrap_err();
            assert_eq!(panic_message(&*e.into_panic()), "second task blew up");
            while dropped.load(Ordering::SeqCst) == 0 {
                sleep(Duration::from_millis(1)).await;
            }
        });
    });
}

#[test]
fn every_kind_of_spawn_and_try_join_next() {
    each_flavor(|rt| {
        let handle = rt.handle().clone();
        // From a task, so spawn_local runs on a worker on every flavour.
        let r = bounded(rt, 30, async move {
            spindle::spawn(async move {
                let mut set = JoinSet::new();
                set.spawn(async { 1u64 });
                let local = std::rc::Rc::new(2u64); // !Send: only spawn_local takes it
                set.spawn_local(async move { *local });
                set.spawn_blocking(|| 4u64);
                set.spawn_on(async { 8u64 }, &handle);
                set.build_task().name("named").spawn(async { 16u64 }).unwrap();
                set.insert(spindle::spawn(async { 32u64 }));
                set.extend([async { 64u64 }]);
                assert_eq!(set.len(), 7);
                let mut sum = 0;
                while let Some(r) = set.join_next_with_id().await {
                    let (_id, v) = r.unwrap();
                    sum += v;
                }
                // try_join_next: nothing finished yet, then the finished task.
                let abort = set.spawn(async { 128u64 });
                let first = set.try_join_next();
                while !abort.is_finished() {
                    spindle::task::yield_now().await;
                }
                sum + first.map_or_else(|| set.try_join_next().unwrap().unwrap(), |r| r.unwrap())
            })
            .await
            .unwrap()
        });
        assert_eq!(r, 255);

        // Outside any runtime: spawn_on fills a set that a runtime then joins, and build_task
        // reports the missing runtime as an error.
        let mut set = JoinSet::new();
        set.spawn_on(async { 5 }, rt.handle());
        assert!(set.build_task().spawn(async { 6 }).is_err());
        assert_eq!(bounded(rt, 10, set.join_next()).unwrap().unwrap(), 5);
        let set: JoinSet<u8> = rt.block_on(async { (0..3).map(|i| async move { i }).collect() });
        let mut v = bounded(rt, 10, set.join_all());
        v.sort();
        assert_eq!(v, [0, 1, 2]);
    });
}

/// The joiner on one worker, the tasks finishing on the others (multi-thread flavours) or woken
/// from another thread: every result arrives.
#[test]
fn a_joiner_is_woken_by_tasks_finishing_elsewhere() {
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let mut set = JoinSet::new();
            let mut gates = Vec::new();
            for i in 0..200u32 {
                let (tx, rx) = oneshot::channel::<()>();
                gates.push(tx);
                set.spawn(async move {
                    rx.await.unwrap();
                    i
                });
            }
            let opener = std::thread::spawn(move || {
                for tx in gates {
                    tx.send(()).unwrap();
                    std::thread::yield_now();
                }
            });
            let mut sum = 0;
            while let Some(r) = set.join_next().await {
                sum += r.unwrap();
            }
            opener.join().unwrap();
            assert_eq!(sum, (0..200).sum::<u32>());
        });
    });
}

/// Tasks spawned on a runtime that is dropped while the set, outside it, still holds them:
/// joined from another executor, each gives a result (the finished one its output, the others
/// cancelled), and nothing hangs.
#[test]
fn a_runtime_dropped_under_a_set_leaves_a_result_for_each_task() {
    let rt = spindle::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let mut set = JoinSet::new();
    let done = set.spawn_on(async { 1u32 }, rt.handle());
    while !done.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    for _ in 0..4 {
        set.spawn_on(std::future::pending::<u32>(), rt.handle());
    }
    drop(rt);
    let other = spindle::runtime::Builder::new_current_thread().build().unwrap();
    let (mut ok, mut cancelled) = (0, 0);
    bounded(&other, 10, async {
        while let Some(r) = set.join_next().await {
            match r {
                Ok(v) => ok += v,
                Err(e) => {
                    assert!(e.is_cancelled(), "{e}");
                    cancelled += 1;
                }
            }
        }
    });
    assert_eq!((ok, cancelled), (1, 4));
}

/// The task owning a set is dropped by runtime shutdown: the set's drop aborts its tasks, on
/// every flavour.
#[test]
fn a_set_dropped_by_shutdown_aborts_its_tasks() {
    for (name, rt) in common::flavors() {
        let dropped = Arc::new(AtomicUsize::new(0));
        let (started_tx, started_rx) = oneshot::channel();
        let d = dropped.clone();
        rt.spawn(async move {
            let mut set = JoinSet::new();
            for _ in 0..8 {
                let flag = DropFlag(d.clone());
                set.spawn(async move {
                    let _flag = flag;
                    std::future::pending::<()>().await
                });
            }
            started_tx.send(()).unwrap();
            set.join_next().await;
        });
        bounded(&rt, 10, started_rx).unwrap();
        drop(rt);
        assert_eq!(dropped.load(Ordering::SeqCst), 8, "{name}");
    }
}

/// The joiner on one runtime, the tasks on another, many sets.
#[test]
fn a_joiner_on_one_runtime_joins_tasks_on_another() {
    let tasks = spindle::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let joiner = spindle::runtime::Builder::new_current_thread().build().unwrap();
    let h = tasks.handle().clone();
    bounded(&joiner, 60, async move {
        for round in 0..50u64 {
            let mut set = JoinSet::new();
            for i in 0..50u64 {
                set.spawn_on(
                    async move {
                        if i % 2 == 0 {
                            spindle::task::yield_now().await;
                        }
                        i + round
                    },
                    &h,
                );
            }
            let mut sum = 0;
            while let Some(r) = set.join_next().await {
                sum += r.unwrap();
            }
            assert_eq!(sum, (0..50).sum::<u64>() + 50 * round);
        }
    });
}

/// Tasks released together while the joiner keeps dropping its `join_next` mid-wait: every
/// result arrives once.
#[test]
fn completions_racing_dropped_join_nexts_lose_nothing() {
    each_flavor(|rt| {
        bounded(rt, 60, async {
            for _ in 0..300 {
                let mut set = JoinSet::new();
                let (tx, rx) = spindle::sync::watch::channel(false);
                for _ in 0..3 {
                    let mut rx = rx.clone();
                    set.spawn(async move {
                        let _ = rx.wait_for(|v| *v).await;
                    });
                }
                // Every entry polled once (its waker with the task), then released.
                assert!(set.try_join_next().is_none());
                tx.send(true).unwrap();
                let mut n = 0;
                while n < 3 {
                    match timeout(Duration::from_micros(50), set.join_next()).await {
                        Ok(Some(r)) => {
                            r.unwrap();
                            n += 1;
                        }
                        Ok(None) => panic!("the set emptied before its three results"),
                        Err(_) => {}
                    }
                }
                assert!(set.is_empty());
            }
        });
    });
}

#[test]
#[should_panic(expected = "already awaited to completion")]
fn inserting_a_handle_already_joined_panics_at_once() {
    let rt = spindle::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let mut h = spindle::spawn(async { 1 });
        assert_eq!((&mut h).await.unwrap(), 1);
        JoinSet::new().insert(h);
    });
}

/// Errors name their task, and a joiner taking many finished results lets the other tasks of
/// its worker run in between (one budget unit per result).
#[test]
fn errors_carry_the_task_id_and_joining_spends_budget() {
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let mut set = JoinSet::<()>::new();
            let panicking = set.spawn(async { panic!("boom") }).id();
            let aborted = set.spawn(std::future::pending());
            aborted.abort();
            let mut ids = Vec::new();
            while let Some(r) = set.join_next_with_id().await {
                ids.push(r.unwrap_err().id().unwrap());
            }
            ids.sort();
            let mut want = vec![panicking, aborted.id()];
            want.sort();
            assert_eq!(ids, want);

            // The joiner and a ticker both local to one worker (one queue): the set's 2000
            // results are ready before the joiner starts, so only the budget makes it yield to
            // the ticker.
            let ticks = Arc::new(AtomicUsize::new(0));
            let (seen_tx, seen_rx) = oneshot::channel();
            let t = ticks.clone();
            let joiner = async move {
                let mut set = JoinSet::new();
                let mut last = None;
                for i in 0..2000u32 {
                    last = Some(set.spawn_local(async move { i }));
                }
                while !last.as_ref().unwrap().is_finished() {
                    spindle::task::yield_now().await;
                }
                let ticker = spindle::spawn_local({
                    let t = t.clone();
                    async move {
                        loop {
                            t.fetch_add(1, Ordering::SeqCst);
                            spindle::task::yield_now().await;
                        }
                    }
                });
                spindle::task::yield_now().await;
                let at_start = t.load(Ordering::SeqCst);
                let mut n = 0;
                while let Some(r) = set.join_next().await {
                    r.unwrap();
                    n += 1;
                }
                ticker.abort();
                seen_tx.send((n, t.load(Ordering::SeqCst) - at_start)).unwrap();
            };
            spindle::spawn(async move { spindle::spawn_local(joiner).await.unwrap() });
            let (n, ticks_while_joining) = seen_rx.await.unwrap();
            assert_eq!(n, 2000);
            assert!(ticks_while_joining > 0, "the joiner never yielded while taking 2000 results");
        });
    });
}
