//! `RuntimeMetrics` on every flavour: task polls, parks, busy time, steals, forced budget yields,
//! queue depths (shared, per worker, blocking pool), and the range check on worker indices.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::each_flavor;
use spindle::runtime::{Builder, Runtime, RuntimeFlavor, RuntimeMetrics};

/// Awaits every task, failing on any error.
async fn join_all<T>(tasks: Vec<spindle::task::JoinHandle<T>>) {
    for t in tasks {
        t.await.unwrap();
    }
}

fn sum(m: &RuntimeMetrics, f: impl Fn(&RuntimeMetrics, usize) -> u64) -> u64 {
    (0..m.num_workers()).map(|w| f(m, w)).sum()
}

fn total_busy(m: &RuntimeMetrics) -> Duration {
    (0..m.num_workers()).map(|w| m.worker_total_busy_duration(w)).sum()
}

/// Retries `check` (through `block_on`, which also drives a current-thread runtime) until it
/// holds, or fails after 10 s with `what`.
fn eventually(rt: &Runtime, what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        rt.block_on(spindle::time::sleep(Duration::from_millis(1)));
    }
}

#[test]
fn polls_parks_and_busy_time_are_counted() {
    each_flavor(|rt| {
        let m = rt.metrics();
        // Every worker parked (which adds its busy time so far): busy time counted from here on
        // is spent after `started`.
        rt.block_on(spindle::time::sleep(Duration::from_millis(20)));
        let started = Instant::now();
        let (polls0, parks0, busy0) =
            (sum(&m, |m, w| m.worker_poll_count(w)), sum(&m, |m, w| m.worker_park_count(w)), total_busy(&m));
        rt.block_on(async {
            let tasks: Vec<_> = (0..20)
                .map(|_| {
                    spindle::spawn(async {
                        for _ in 0..5 {
                            spindle::task::yield_now().await;
                        }
                    })
                })
                .collect();
            join_all(tasks).await;
            // 20 ms of work in one poll: some worker is busy for at least that long.
            spindle::spawn(async {
                let until = Instant::now() + Duration::from_millis(20);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            })
            .await
            .unwrap();
        });
        // Idle for a while: every worker parks, which also adds its busy time.
        rt.block_on(spindle::time::sleep(Duration::from_millis(20)));
        // 20 tasks x 6 polls (one per yield, one to finish) and the spinning task.
        let polls = sum(&m, |m, w| m.worker_poll_count(w)) - polls0;
        assert_eq!(polls, 121);
        // A worker counts its park when it goes idle, which can be after the joins returned and
        // after that sleep too (its thread descheduled meanwhile).
        eventually(rt, "a park is counted", || sum(&m, |m, w| m.worker_park_count(w)) > parks0);
        eventually(rt, "the spinning worker's busy time is added", || {
            total_busy(&m) - busy0 >= Duration::from_millis(20)
        });
        let busy = total_busy(&m) - busy0;
        let bound = started.elapsed() * m.num_workers() as u32;
        assert!(busy <= bound, "busy {busy:?} is more than the workers could have been busy ({bound:?})");
    })
}

#[test]
fn steals_are_counted_on_the_multi_thread_runtime() {
    let rt = Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let m = rt.metrics();
    rt.block_on(async {
        spindle::spawn(async {
            // 64 tasks queued on this worker, each blocking its thread for 1 ms: the other
            // worker, woken by the spawns, steals some.
            let ran = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..64)
                .map(|_| {
                    let ran = ran.clone();
                    spindle::spawn(async move {
                        ran.fetch_add(1, SeqCst);
                        std::thread::sleep(Duration::from_millis(1))
                    })
                })
                .collect();
            // This worker stays busy until one has run, which only a steal can do: left free, it
            // runs all 64 itself if the other worker is not scheduled within those 64 ms.
            let deadline = Instant::now() + Duration::from_secs(10);
            while ran.load(SeqCst) == 0 && Instant::now() < deadline {
                std::thread::yield_now();
            }
            join_all(tasks).await;
        })
        .await
        .unwrap();
    });
    let ops = sum(&m, |m, w| m.worker_steal_operations(w));
    let stolen = sum(&m, |m, w| m.worker_steal_count(w));
    assert!(ops >= 1, "no steal counted");
    assert!(stolen >= ops, "{stolen} tasks stolen in {ops} steals");

    // The other flavours never steal.
    for rt in
        [Builder::new_current_thread().build().unwrap(), Builder::new_per_core().worker_threads(2).build().unwrap()]
    {
        rt.block_on(async {
            let tasks: Vec<_> =
                (0..16).map(|_| spindle::spawn(async { std::thread::sleep(Duration::from_millis(1)) })).collect();
            join_all(tasks).await;
        });
        let m = rt.metrics();
        assert_eq!(sum(&m, |m, w| m.worker_steal_operations(w) + m.worker_steal_count(w)), 0);
    }
}

/// A receiver with `n` messages (0..n) waiting; its sender is gone.
fn preloaded(n: i32) -> spindle::sync::mpsc::UnboundedReceiver<i32> {
    let (tx, rx) = spindle::sync::mpsc::unbounded_channel();
    for i in 0..n {
        tx.send(i).unwrap();
    }
    rx
}

/// Runs `body` as a task on `rt` and returns the budget-forced yields counted meanwhile.
fn forced_yields_in_task(
    rt: &spindle::runtime::Runtime,
    body: impl std::future::Future<Output = ()> + Send + 'static,
) -> u64 {
    let m = rt.metrics();
    let before = m.budget_forced_yield_count();
    rt.block_on(rt.spawn(body)).unwrap();
    m.budget_forced_yield_count() - before
}

/// Tries `tries` receives on `rx` within one poll; how many found a message (each spends a unit
/// of the task's budget, so this shows where the budget cuts).
async fn receives_in_one_poll(rx: &mut spindle::sync::mpsc::UnboundedReceiver<i32>, tries: usize) -> usize {
    let mut received = 0;
    std::future::poll_fn(|cx| {
        for _ in 0..tries {
            if rx.poll_recv(cx).is_ready() {
                received += 1;
            }
        }
        std::task::Poll::Ready(())
    })
    .await;
    received
}

#[test]
fn forced_budget_yields_are_counted() {
    each_flavor(|rt| {
        let forced = forced_yields_in_task(rt, async {
            let mut rx = preloaded(1000);
            // Every `recv` finds a message ready: only the budget (128 per poll) makes the task
            // yield, about every 128 messages.
            for i in 0..1000 {
                assert_eq!(rx.recv().await, Some(i));
            }
        });
        assert!(forced >= 7, "{forced} forced yields for 1,000 ready receives");

        // One poll refused many times counts once.
        let forced = forced_yields_in_task(rt, async {
            let received = receives_in_one_poll(&mut preloaded(200), 200).await;
            assert_eq!(received, 128, "the budget admits 128 receives per poll");
        });
        assert_eq!(forced, 1);
    })
}

/// `task::unconstrained`: the same poll that the budget cuts at 128 receives takes all 200,
/// no forced yield is counted, and the budget is back (cutting again) after it.
#[test]
fn unconstrained_futures_spend_no_budget() {
    each_flavor(|rt| {
        let forced = forced_yields_in_task(rt, async {
            let mut rx = preloaded(400);
            let received = spindle::task::unconstrained(receives_in_one_poll(&mut rx, 200)).await;
            assert_eq!(received, 200, "unconstrained, every ready receive goes through");
            // Outside it, in the same poll, the budget applies again.
            let after = receives_in_one_poll(&mut rx, 200).await;
            assert_eq!(after, 128, "the budget is back after the unconstrained future");
        });
        assert_eq!(forced, 1, "only the constrained poll was cut");
    })
}

#[test]
fn queue_depths_are_reported() {
    each_flavor(|rt| {
        let m = rt.metrics();
        let deepest = Arc::new(AtomicUsize::new(0));
        let d = deepest.clone();
        rt.block_on(async move {
            spindle::spawn(async move {
                // 100 children queued at once; each records the deepest worker queue it sees.
                let tasks: Vec<_> = (0..100)
                    .map(|_| {
                        let d = d.clone();
                        spindle::spawn(async move {
                            let m = spindle::runtime::Handle::current().metrics();
                            let deepest = (0..m.num_workers()).map(|w| m.worker_local_queue_depth(w)).max().unwrap();
                            d.fetch_max(deepest, SeqCst);
                        })
                    })
                    .collect();
                join_all(tasks).await;
            })
            .await
            .unwrap();
        });
        // With idle workers to steal them, the children may each be taken the moment it is
        // queued; elsewhere they wait behind the parent.
        let stealing = rt.handle().runtime_flavor() == RuntimeFlavor::MultiThread && m.num_workers() > 1;
        if !stealing {
            assert!(deepest.load(SeqCst) > 0, "no queued task seen");
        }
        // All done and parked: nothing queued anywhere.
        eventually(rt, "the queues read empty", || (0..m.num_workers()).all(|w| m.worker_local_queue_depth(w) == 0));
        assert_eq!(m.global_queue_depth(), 0);
    })
}

#[test]
fn the_shared_queue_holds_tasks_spawned_from_outside_until_a_worker_takes_them() {
    // One worker, blocked: what is spawned from outside waits in the shared queue.
    let rt = Builder::new_multi_thread().worker_threads(1).build().unwrap();
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    let (entered, wait_entered) = std::sync::mpsc::channel::<()>();
    let blocker = rt.spawn(async move {
        entered.send(()).unwrap();
        blocked.recv().unwrap();
    });
    wait_entered.recv().unwrap();
    let tasks: Vec<_> = (0..5).map(|_| rt.spawn(async {})).collect();
    let m = rt.metrics();
    assert_eq!(m.global_queue_depth(), 5);
    release.send(()).unwrap();
    rt.block_on(async {
        blocker.await.unwrap();
        join_all(tasks).await;
    });
    assert_eq!(m.global_queue_depth(), 0);

    // A current-thread runtime is driven only in `block_on`; until then spawns wait.
    let rt = Builder::new_current_thread().build().unwrap();
    let tasks: Vec<_> = (0..4).map(|_| rt.spawn(async {})).collect();
    assert_eq!(rt.metrics().global_queue_depth(), 4);
    rt.block_on(async {
        join_all(tasks).await;
    });
    assert_eq!(rt.metrics().global_queue_depth(), 0);
}

#[test]
fn a_current_thread_runtime_reports_what_its_last_block_on_left_queued() {
    let rt = Builder::new_current_thread().build().unwrap();
    let m = rt.metrics();
    let tasks = rt.block_on(async { (0..10).map(|_| spindle::spawn(async {})).collect::<Vec<_>>() });
    assert_eq!(m.worker_local_queue_depth(0), 10);
    rt.block_on(async {
        join_all(tasks).await;
    });
    assert_eq!(m.worker_local_queue_depth(0), 0);
}

#[test]
fn a_per_core_runtimes_core_handle_answers_for_its_core_after_the_runtime_is_gone() {
    let rt = Builder::new_per_core().worker_threads(2).build().unwrap();
    let core1 = rt.block_on(rt.handle().spawn_on(1, async { spindle::runtime::Handle::current() })).unwrap();
    for core in 0..2 {
        rt.block_on(rt.handle().spawn_on(core, async {})).unwrap();
    }
    let live: Vec<u64> = (0..2).map(|w| core1.metrics().worker_poll_count(w)).collect();
    assert!(live.iter().all(|&n| n >= 1), "{live:?}");
    drop(rt);
    let m = core1.metrics();
    assert_eq!(m.num_workers(), 2);
    assert_eq!(m.worker_poll_count(0), 0, "core 0 is gone: nothing to report");
    assert_eq!(m.worker_poll_count(1), live[1]);
}

#[test]
fn blocking_pool_threads_and_queue_are_reported() {
    let rt = Builder::new_multi_thread().worker_threads(1).max_blocking_threads(1).build().unwrap();
    let m = rt.metrics();
    assert_eq!((m.num_blocking_threads(), m.blocking_queue_depth()), (0, 0));
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    let (entered, wait_entered) = std::sync::mpsc::channel::<()>();
    let first = rt.spawn_blocking(move || {
        entered.send(()).unwrap();
        blocked.recv().unwrap();
    });
    wait_entered.recv().unwrap();
    // The one thread is busy: two more jobs wait for it.
    let more: Vec<_> = (0..2).map(|_| rt.spawn_blocking(|| ())).collect();
    assert_eq!(m.num_blocking_threads(), 1);
    assert_eq!(m.num_idle_blocking_threads(), 0);
    assert_eq!(m.blocking_queue_depth(), 2);
    release.send(()).unwrap();
    rt.block_on(async {
        first.await.unwrap();
        join_all(more).await;
    });
    assert_eq!(m.blocking_queue_depth(), 0);
    eventually(&rt, "the blocking thread goes idle", || m.num_idle_blocking_threads() == 1);
    assert_eq!(m.num_blocking_threads(), 1);
}

#[test]
fn a_worker_index_out_of_range_panics_with_the_number_of_workers() {
    each_flavor(|rt| {
        let m = rt.metrics();
        let n = m.num_workers();
        let expected = if rt.handle().runtime_flavor() == RuntimeFlavor::CurrentThread { 1 } else { n };
        assert_eq!(n, expected);
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.worker_poll_count(n))).unwrap_err();
        let msg = common::panic_message(&*err);
        assert!(
            msg.contains(&format!("worker index {n} out of range")) && msg.contains(&format!("{n} workers")),
            "{msg}"
        );
    })
}
