//! Timers on every runtime flavour: sleep, timeout, interval, reset, cross-thread use, virtual time.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use common::{bounded, each_flavor, each_flavor_with_virtual_time, panic_message};
use spindle::runtime::Builder;
use spindle::time::{
    advance, interval, interval_at, pause, sleep, sleep_until, timeout, try_interval, Instant, MissedTickBehavior,
};

fn real_now() -> std::time::Instant {
    std::time::Instant::now()
}

#[test]
fn sleep_waits_at_least_its_duration() {
    each_flavor(|rt| {
        rt.block_on(async {
            for ms in [1u64, 5, 20] {
                let t = real_now();
                sleep(Duration::from_millis(ms)).await;
                assert!(t.elapsed() >= Duration::from_millis(ms), "{ms} ms sleep took {:?}", t.elapsed());
            }
            // And inside spawned tasks (registered on a worker's wheel).
            let t = real_now();
            let hs: Vec<_> = (0..50).map(|i| spindle::spawn(sleep(Duration::from_millis(5 + i % 5)))).collect();
            for h in hs {
                h.await.unwrap();
            }
            assert!(t.elapsed() >= Duration::from_millis(9));
        });
    });
}

/// A timer belongs to the runtime whose thread polls it, even where another runtime is entered:
/// a current-thread runtime's `block_on` that enters an idle current-thread runtime (so `spawn`
/// goes there) still has its sleeps fired by its own parks, and reads its own (paused) clock.
#[test]
fn a_sleep_polled_by_a_driving_thread_uses_that_runtimes_timers_and_clock() {
    let (tx, rx) = std::sync::mpsc::channel();
    // On a thread of its own: were the sleep in the other runtime's wheel, nobody would fire it
    // (nothing drives that runtime), and the test fails below instead of hanging.
    std::thread::spawn(move || {
        let driven = Builder::new_current_thread().start_paused(true).build().unwrap();
        let other = Builder::new_current_thread().build().unwrap();
        let slept = driven.block_on(async {
            let _entered = other.enter();
            let t = Instant::now();
            // Virtual time: the driven runtime auto-advances to the deadline.
            sleep(Duration::from_secs(60)).await;
            t.elapsed()
        });
        let _ = tx.send(slept);
    });
    let slept = rx.recv_timeout(Duration::from_secs(20)).expect("the sleep never fired");
    assert_eq!(slept, Duration::from_secs(60), "not the driven runtime's paused clock");
}

/// `advance` fires the timers of the clock it moved: on a thread driving a paused runtime with
/// another runtime entered, a due sleep is fired before `advance` returns.
#[test]
fn advance_on_a_driving_thread_fires_that_runtimes_due_timers() {
    let driven = Builder::new_current_thread().start_paused(true).build().unwrap();
    let other = Builder::new_current_thread().build().unwrap();
    driven.block_on(async {
        let _entered = other.enter();
        let mut s = std::pin::pin!(sleep(Duration::from_secs(60)));
        let first = std::future::poll_fn(|cx| Poll::Ready(s.as_mut().poll(cx))).await;
        assert!(first.is_pending());
        advance(Duration::from_secs(61)).await;
        let after = std::future::poll_fn(|cx| Poll::Ready(s.as_mut().poll(cx))).await;
        assert!(after.is_ready(), "advance did not fire the due sleep");
    });
}

/// A per-core core may not pause its runtime's clock, also with another runtime's handle entered
/// (the clock `pause` would stop is the core's).
#[test]
fn a_per_core_core_cannot_pause_with_another_runtime_entered() {
    let rt = Builder::new_per_core().worker_threads(1).build().unwrap();
    let other = Builder::new_current_thread().build().unwrap();
    let h = other.handle().clone();
    let refused = rt
        .block_on(rt.handle().spawn_on(0, async move {
            let _entered = h.enter();
            std::panic::catch_unwind(spindle::time::pause).is_err()
        }))
        .unwrap();
    assert!(refused, "a core paused the per-core runtime's clock");
}

#[test]
fn past_deadlines_complete_at_once() {
    each_flavor(|rt| {
        rt.block_on(async {
            sleep(Duration::ZERO).await;
            sleep_until(Instant::now() - Duration::from_secs(10)).await;
        });
    });
}

#[test]
fn huge_durations_saturate_instead_of_panicking() {
    each_flavor(|rt| {
        rt.block_on(async {
            let r = timeout(Duration::from_millis(2), sleep(Duration::MAX)).await;
            assert!(r.is_err());
            let far = Instant::now() + Duration::MAX;
            assert!(far > Instant::now());
            let r = timeout(Duration::MAX, async { 3 }).await;
            assert_eq!(r, Ok(3));
        });
    });
}

#[test]
fn timeout_ready_pending_and_busy_futures() {
    /// A future that wakes itself on every poll and never finishes: keeps the worker busy.
    struct Busy;
    impl Future for Busy {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    each_flavor(|rt| {
        rt.block_on(async {
            assert_eq!(timeout(Duration::ZERO, async { 1 }).await, Ok(1));
            let e = timeout(Duration::from_millis(3), std::future::pending::<()>()).await.unwrap_err();
            assert_eq!(e.to_string(), "deadline has elapsed");
            let io: std::io::Error = e.into();
            assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
            let t = real_now();
            assert!(timeout(Duration::from_millis(10), Busy).await.is_err());
            assert!(t.elapsed() >= Duration::from_millis(10));
            // Busy inside a spawned task too.
            let h = spindle::spawn(timeout(Duration::from_millis(10), Busy));
            assert!(h.await.unwrap().is_err());
        });
    });
}

#[test]
fn reset_moves_deadline_both_ways() {
    each_flavor(|rt| {
        rt.block_on(async {
            let mut s = Box::pin(sleep(Duration::from_secs(3600)));
            // Register it first, then pull it in.
            assert!(futures::poll!(s.as_mut()).is_pending());
            let t = real_now();
            s.as_mut().reset(Instant::now() + Duration::from_millis(5));
            s.as_mut().await;
            assert!(t.elapsed() >= Duration::from_millis(5) && t.elapsed() < Duration::from_secs(60));
            assert!(s.is_elapsed());
            // Re-arm a completed sleep for later.
            s.as_mut().reset(Instant::now() + Duration::from_millis(5));
            assert!(!s.is_elapsed());
            s.as_mut().await;
        });
    });
}

#[test]
fn sleeps_polled_and_dropped_on_other_threads() {
    each_flavor(|rt| {
        rt.block_on(async {
            for _ in 0..200 {
                // Register on a runtime thread, then drop it on a plain thread (cancel from anywhere).
                let mut s = Box::pin(sleep(Duration::from_millis(50)));
                assert!(futures::poll!(s.as_mut()).is_pending());
                std::thread::spawn(move || drop(s)).join().unwrap();
            }
            // Register in one task, finish awaiting it in another task.
            let mut s = Box::pin(sleep(Duration::from_millis(5)));
            assert!(futures::poll!(s.as_mut()).is_pending());
            spindle::spawn(s).await.unwrap();
            // Register on a plain thread's executor (fallback timer thread), await on the runtime.
            let mut s = Box::pin(sleep(Duration::from_millis(5)));
            let s = std::thread::spawn(move || {
                let w = futures::task::noop_waker();
                assert!(s.as_mut().poll(&mut Context::from_waker(&w)).is_pending());
                s
            })
            .join()
            .unwrap();
            s.await;
        });
    });
}

#[test]
fn timer_storm_all_fire_and_cancel() {
    each_flavor(|rt| {
        let fired = Arc::new(AtomicUsize::new(0));
        let f = fired.clone();
        rt.block_on(async move {
            let hs: Vec<_> = (0..10_000u64)
                .map(|i| {
                    let f = f.clone();
                    spindle::spawn(async move {
                        let d = Duration::from_millis(1 + i % 20);
                        if i % 3 == 0 {
                            // Cancelled halfway: a timeout that the inner future beats.
                            let _ = timeout(Duration::from_secs(60), sleep(d)).await;
                        } else {
                            sleep(d).await;
                        }
                        f.fetch_add(1, SeqCst);
                    })
                })
                .collect();
            for h in hs {
                h.await.unwrap();
            }
        });
        assert_eq!(fired.load(SeqCst), 10_000);
    });
}

/// A future that checks the pin guarantee timers rely on: it is dropped at the address where it
/// was first polled (a `Sleep` deregisters its entry by its own address, so a task that moved
/// its future out to drop it would leave the wheel pointing into the task's cell).
struct DroppedWherePinned<F> {
    inner: F,
    /// The address of `inner` at the last poll (0 before the first).
    pinned_at: Arc<AtomicUsize>,
    dropped_at: Arc<AtomicUsize>,
}

impl<F: Future> Future for DroppedWherePinned<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `inner` is structurally pinned and never moved; `pinned_at` is a plain field.
        let this = unsafe { self.get_unchecked_mut() };
        this.pinned_at.store(&this.inner as *const F as usize, SeqCst);
        // SAFETY: as above.
        unsafe { Pin::new_unchecked(&mut this.inner) }.poll(cx)
    }
}

impl<F> Drop for DroppedWherePinned<F> {
    fn drop(&mut self) {
        let (here, pinned) = (&self.inner as *const F as usize, self.pinned_at.load(SeqCst));
        let ok = pinned == 0 || pinned == here;
        self.dropped_at.store(if ok { 1 } else { 2 }, SeqCst);
    }
}

#[test]
fn aborted_task_drops_its_registered_timeout_in_place() {
    each_flavor(|rt| {
        rt.block_on(async {
            // 0: not dropped; 1: dropped where it was pinned; 2: moved after being pinned.
            let dropped = Arc::new(AtomicUsize::new(0));
            let fut = DroppedWherePinned {
                inner: timeout(Duration::from_secs(3600), std::future::pending::<()>()),
                pinned_at: Arc::new(AtomicUsize::new(0)),
                dropped_at: dropped.clone(),
            };
            let pinned_at = fut.pinned_at.clone();
            let h = spindle::spawn(async move {
                let _ = fut.await;
            });
            // Wait until its timeout is registered in a wheel (its first poll).
            while pinned_at.load(SeqCst) == 0 {
                sleep(Duration::from_millis(1)).await;
            }
            h.abort();
            assert!(h.await.unwrap_err().is_cancelled());
            assert_eq!(dropped.load(SeqCst), 1, "the task moved its pinned future out to drop it");
        });
    });
}

/// Regression (memory safety): many timeouts on a two-worker runtime while the spawner aborts a
/// random half of their tasks, so `Sleep`s are dropped by the task cell on one worker while the
/// wheels fire on both (and each worker also fires the other's due timers). The task cell used to
/// move the aborted future out of the cell to drop it, so the `Sleep` deregistered a stack copy
/// with stale links while the wheel kept pointing into the cell: corrupted slot lists, double
/// waker drops. Under AddressSanitizer (debug build) this failed 34 of 100 runs before the fix
/// (crashes on a garbage link in `Wheel::advance`, use-after-frees, hangs) and 0 of 150 after.
#[test]
fn timeout_abort_storm_on_two_workers() {
    let rt = Builder::new_multi_thread().worker_threads(2).build().unwrap();
    rt.block_on(async {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut coin = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % 2 == 0
        };
        for round in 0..10u64 {
            let hs: Vec<_> = (0..3000u64)
                .map(|i| {
                    let d = Duration::from_micros((i * 7 + round * 131) % 4000);
                    spindle::spawn(async move {
                        if i % 4 == 0 {
                            let mut s = Box::pin(sleep(d));
                            (&mut s).await;
                            // Re-armed after firing: the lock-free reset of a fired entry.
                            s.as_mut().reset(Instant::now() + d);
                            let _ = timeout(d, std::future::pending::<()>()).await;
                            s.await;
                        } else {
                            let _ = timeout(d, std::future::pending::<()>()).await;
                        }
                    })
                })
                .collect();
            for (i, h) in hs.iter().enumerate() {
                if coin() {
                    h.abort();
                }
                if i % 64 == 0 {
                    spindle::task::yield_now().await;
                }
            }
            for h in hs {
                match h.await {
                    Ok(()) => {}
                    Err(e) => assert!(e.is_cancelled(), "a storm task failed: {e:?}"),
                }
            }
        }
    });
}

#[test]
fn interval_ticks_and_missed_tick_behaviours() {
    for behavior in [MissedTickBehavior::Burst, MissedTickBehavior::Delay, MissedTickBehavior::Skip] {
        let rt = Builder::new_current_thread().start_paused(true).build().unwrap();
        rt.block_on(async move {
            let start = Instant::now();
            let p = Duration::from_millis(10);
            let mut iv = interval(p);
            iv.set_missed_tick_behavior(behavior);
            assert_eq!(iv.tick().await, start); // immediate first tick
            assert_eq!(iv.tick().await, start + p);
            // Miss 3.5 periods of ticks.
            advance(Duration::from_millis(35)).await;
            let now = Instant::now();
            assert_eq!(now, start + Duration::from_millis(45));
            let late = iv.tick().await;
            assert_eq!(late, start + 2 * p, "{behavior:?}: the missed tick is returned first");
            let next = iv.tick().await;
            match behavior {
                // Catch up back to back: 30 ms is due at once.
                MissedTickBehavior::Burst => assert_eq!(next, start + 3 * p),
                // Restart from the late tick's time: now + period.
                MissedTickBehavior::Delay => assert_eq!(next, now + p),
                // Skip to the next tick on the original schedule after now: 50 ms.
                MissedTickBehavior::Skip => assert_eq!(next, start + 5 * p),
            }
        });
    }
}

#[test]
fn interval_zero_is_a_clear_error() {
    assert!(try_interval(Duration::ZERO).is_err());
    assert_eq!(try_interval(Duration::ZERO).unwrap_err().to_string(), "an interval's period must be greater than zero");
    let p = std::panic::catch_unwind(|| interval(Duration::ZERO)).unwrap_err();
    assert!(panic_message(&*p).contains("period must be greater than zero"));
}

#[test]
fn interval_at_and_reset() {
    each_flavor_with_virtual_time(|rt| {
        rt.block_on(async {
            pause();
            let start = Instant::now() + Duration::from_secs(5);
            let mut iv = interval_at(start, Duration::from_secs(1));
            assert_eq!(iv.tick().await, start);
            iv.reset();
            let t = Instant::now();
            assert_eq!(iv.tick().await, t + Duration::from_secs(1));
            iv.reset_immediately();
            iv.tick().await;
            assert_eq!(Instant::now(), t + Duration::from_secs(1));
        });
    });
}

#[test]
fn virtual_time_one_hour_runs_at_once_on_every_flavour() {
    for paused_at_start in [true, false] {
        for (name, rt) in [
            ("current_thread", Builder::new_current_thread().start_paused(paused_at_start).build().unwrap()),
            (
                "multi_thread(2)",
                Builder::new_multi_thread().worker_threads(2).start_paused(paused_at_start).build().unwrap(),
            ),
        ] {
            let real = real_now();
            rt.block_on(async {
                if !paused_at_start {
                    pause();
                }
                let t = Instant::now();
                sleep(Duration::from_secs(3600)).await;
                assert_eq!(t.elapsed(), Duration::from_secs(3600), "{name}");
                // A timeout of an hour around something that never finishes, inside a task.
                let h = spindle::spawn(timeout(Duration::from_secs(3600), std::future::pending::<()>()));
                assert!(h.await.unwrap().is_err(), "{name}");
                assert_eq!(t.elapsed(), Duration::from_secs(7200), "{name}");
                // Many tasks sleeping different virtual durations finish in deadline order.
                let order = Arc::new(std::sync::Mutex::new(Vec::new()));
                let hs: Vec<_> = [5u64, 1, 4, 2, 3]
                    .into_iter()
                    .map(|m| {
                        let order = order.clone();
                        spindle::spawn(async move {
                            sleep(Duration::from_secs(m * 60)).await;
                            order.lock().unwrap().push(m);
                        })
                    })
                    .collect();
                for h in hs {
                    h.await.unwrap();
                }
                assert_eq!(*order.lock().unwrap(), vec![1, 2, 3, 4, 5], "{name}");
            });
            assert!(real.elapsed() < Duration::from_secs(10), "{name}: virtual time took {:?}", real.elapsed());
        }
    }
}

#[test]
fn advance_fires_due_timers_deterministically() {
    each_flavor_with_virtual_time(|rt| {
        rt.block_on(async {
            pause();
            let fired = Arc::new(AtomicUsize::new(0));
            let f = fired.clone();
            let h = spindle::spawn(async move {
                sleep(Duration::from_secs(10)).await;
                f.fetch_add(1, SeqCst);
            });
            // Let the task register its timer (auto-advance would otherwise not be needed).
            spindle::task::yield_now().await;
            advance(Duration::from_secs(9)).await;
            assert_eq!(fired.load(SeqCst), 0);
            advance(Duration::from_secs(1)).await;
            h.await.unwrap();
            assert_eq!(fired.load(SeqCst), 1);
            spindle::time::resume();
        });
    });
}

#[test]
fn virtual_time_is_refused_on_per_core_runtimes() {
    let err = Builder::new_per_core().worker_threads(2).start_paused(true).build().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("per-core"), "{err}");
    let rt = Builder::new_per_core().worker_threads(2).build().unwrap();
    // Refused in `block_on` (outside the cores) and inside a core's task alike.
    let outside = rt.block_on(async { std::panic::catch_unwind(pause).unwrap_err() });
    assert!(panic_message(&*outside).contains("per-core"));
    let on_core = rt.block_on(rt.handle().spawn_on(1, async {
        std::panic::catch_unwind(pause).map_err(|p| panic_message(&*p)).expect_err("pause on a core")
    }));
    assert!(on_core.unwrap().contains("per-core"));
    // The clock still runs: real time passes for timers on the cores.
    let slept = rt.block_on(rt.handle().spawn_on(0, async {
        let t = Instant::now();
        sleep(Duration::from_millis(20)).await;
        t.elapsed()
    }));
    assert!(slept.unwrap() >= Duration::from_millis(20));
}

#[test]
fn advance_without_pause_is_a_clear_error() {
    let rt = Builder::new_current_thread().build().unwrap();
    let p = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(advance(Duration::from_secs(1)))))
        .unwrap_err();
    assert!(panic_message(&*p).contains("requires a paused clock"));
    let p = std::panic::catch_unwind(pause).unwrap_err();
    assert!(panic_message(&*p).contains("inside a spindle runtime"));
}

#[test]
fn timers_work_outside_spindle_runtimes() {
    // A plain executor (futures' block_on) and tokio's runtime use the fallback timer thread.
    let t = real_now();
    futures::executor::block_on(sleep(Duration::from_millis(5)));
    assert!(t.elapsed() >= Duration::from_millis(5));
    let r = futures::executor::block_on(timeout(Duration::from_millis(5), std::future::pending::<()>()));
    assert!(r.is_err());
}

#[test]
fn timers_inside_spindle_block_on() {
    let t = real_now();
    spindle::block_on(async {
        sleep(Duration::from_millis(3)).await;
        spindle::spawn(sleep(Duration::from_millis(3))).await.unwrap();
    });
    assert!(t.elapsed() >= Duration::from_millis(6));
}

#[test]
fn idle_runtime_does_not_spin() {
    // Not a speed test: an idle runtime must sleep in the kernel, not burn a core. Its threads
    // (found by name in /proc, so other tests running in parallel do not count) may use only a
    // small fraction of 300 ms of CPU while one task waits on a far timer.
    fn cpu_ticks_of_threads_named(name: &str) -> u64 {
        let mut total = 0;
        for e in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if comm.trim() != name {
                continue;
            }
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // Fields after the parenthesised name: state is field 3; utime and stime are 14 and 15.
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            total += f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        }
        total
    }
    for (i, flavor) in ["current_thread", "multi_thread"].into_iter().enumerate() {
        let name = format!("idle-probe-{i}");
        let rt = if flavor == "current_thread" {
            Builder::new_current_thread().build().unwrap()
        } else {
            Builder::new_multi_thread().worker_threads(2).thread_name(name.clone()).build().unwrap()
        };
        let h = rt.spawn(sleep(Duration::from_secs(3600)));
        if flavor == "current_thread" {
            // The driving thread is this test's thread: give it the probe's name while it idles.
            let name2 = name.clone();
            let t = std::thread::Builder::new()
                .name(name2)
                .spawn(move || {
                    rt.block_on(sleep(Duration::from_millis(20)));
                    let before = cpu_ticks_of_threads_named(&format!("idle-probe-{i}"));
                    rt.block_on(sleep(Duration::from_millis(300)));
                    let used = cpu_ticks_of_threads_named(&format!("idle-probe-{i}")) - before;
                    h.abort();
                    used
                })
                .unwrap();
            let used = t.join().unwrap();
            assert!(used <= 5, "{flavor}: idle runtime used {used} clock ticks (1/100 s) of CPU in 300 ms");
        } else {
            std::thread::sleep(Duration::from_millis(20));
            let before = cpu_ticks_of_threads_named(&name);
            std::thread::sleep(Duration::from_millis(300));
            let used = cpu_ticks_of_threads_named(&name) - before;
            assert!(used <= 5, "{flavor}: idle runtime used {used} clock ticks (1/100 s) of CPU in 300 ms");
            h.abort();
        }
    }
}

/// `Delay` restarts the schedule from a late tick even when it is late by less than a period
/// (it only did past a whole period); a tick within `MissedTickBehavior::LATE` is on time.
#[test]
fn interval_delay_restarts_from_a_tick_late_by_less_than_a_period() {
    let rt = Builder::new_current_thread().start_paused(true).build().unwrap();
    rt.block_on(async {
        let start = Instant::now();
        let p = Duration::from_millis(10);
        let mut iv = interval(p);
        iv.set_missed_tick_behavior(MissedTickBehavior::Delay);
        assert_eq!(iv.tick().await, start);
        assert_eq!(iv.tick().await, start + p);
        advance(Duration::from_millis(17)).await; // the 20 ms tick is taken 7 ms late
        let late_at = Instant::now();
        assert_eq!(iv.tick().await, start + 2 * p);
        assert_eq!(iv.tick().await, late_at + p, "the next tick is one period after the late one");
        // On time (late by at most LATE): the schedule stands.
        let on = Instant::now();
        advance(p + Duration::from_millis(3)).await;
        assert_eq!(iv.tick().await, on + p);
        assert_eq!(iv.tick().await, on + 2 * p);
    });
}

/// `resume` continues from the frozen time: it neither jumps ahead by the real time spent paused
/// nor fires a sleep registered while paused early.
#[test]
fn resume_continues_from_the_frozen_time() {
    let rt = Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        pause();
        let frozen = Instant::now();
        let mut s = Box::pin(sleep(Duration::from_millis(200)));
        assert!(futures::poll!(s.as_mut()).is_pending());
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(Instant::now(), frozen);
        spindle::time::resume();
        let jump = Instant::now().duration_since(frozen);
        assert!(jump < Duration::from_millis(100), "resume jumped the clock ahead by {jump:?}");
        let real_start = real_now();
        s.await;
        let waited = real_now() - real_start;
        assert!(waited >= Duration::from_millis(150), "the 200 ms sleep fired after {waited:?} of running time");
    });
}

/// A sleep first polled on a runtime that is then dropped completes when awaited elsewhere (it
/// waited in the dead runtime's timers, which nobody fires, forever).
#[test]
fn a_sleep_outlives_the_runtime_that_first_polled_it() {
    for (name, rt) in common::flavors() {
        let mut s = Box::pin(sleep(Duration::from_millis(20)));
        rt.block_on(async { assert!(futures::poll!(s.as_mut()).is_pending()) });
        drop(rt);
        let rt2 = Builder::new_current_thread().build().unwrap();
        let r = rt2.block_on(timeout(Duration::from_secs(5), s));
        assert!(r.is_ok(), "{name}: the sleep did not complete once its first runtime was dropped");
        // And one awaited with no runtime at all (the fallback timer thread).
        let mut s = Box::pin(sleep(Duration::from_millis(20)));
        let rt = Builder::new_current_thread().build().unwrap();
        rt.block_on(async { assert!(futures::poll!(s.as_mut()).is_pending()) });
        drop(rt);
        futures::executor::block_on(s);
    }
}

/// A sleep waiting on another runtime's timers while that runtime is dropped is woken to move.
#[test]
fn a_sleep_waiting_in_a_runtime_that_is_dropped_meanwhile_still_completes() {
    let rt1 = Builder::new_current_thread().build().unwrap();
    let mut s = Box::pin(sleep(Duration::from_millis(200)));
    rt1.block_on(async { assert!(futures::poll!(s.as_mut()).is_pending()) });
    let rt2 = Builder::new_multi_thread().worker_threads(1).build().unwrap();
    let waiter = rt2.spawn(async move {
        s.await;
    });
    std::thread::sleep(Duration::from_millis(20));
    drop(rt1);
    rt2.block_on(async { timeout(Duration::from_secs(5), waiter).await.expect("sleep never completed").unwrap() });
}

/// A huge `advance` stops where every later sleep can still fire (it saturated at the clock's
/// limit, where no deadline could be reached and the runtime spun).
#[test]
fn sleeps_after_a_huge_advance_still_fire() {
    each_flavor_with_virtual_time(|rt| {
        bounded(rt, 10, async {
            pause();
            advance(Duration::from_secs(u64::MAX)).await;
            sleep(Duration::from_millis(1)).await;
            timeout(Duration::from_secs(1), std::future::pending::<()>()).await.unwrap_err();
        })
    });
}

/// `Instant - Duration` saturates at the earliest instant instead of returning `self`.
#[test]
fn instant_minus_a_huge_duration_is_the_earliest_instant() {
    let t = Instant::now();
    let a = t - Duration::from_secs(1);
    let b = t - Duration::MAX;
    assert!(b <= a, "t - Duration::MAX ({b:?}) is later than t - 1s ({a:?})");
    assert_eq!(b - Duration::from_nanos(1), b);
}

/// In a cancelled scope `tick()` returns at once (so the loop notices) without consuming the
/// schedule: it used to move the schedule one period ahead per call.
#[test]
fn interval_ticks_in_a_cancelled_scope_return_at_once_and_keep_the_schedule() {
    let rt = Builder::new_current_thread().start_paused(true).build().unwrap();
    rt.block_on(async {
        let start = Instant::now();
        let p = Duration::from_millis(10);
        let mut iv = interval(p);
        assert_eq!(iv.tick().await, start);
        let iv = spindle::scope!(|s| async move {
            s.cancel();
            for _ in 0..5 {
                assert_eq!(iv.tick().await, start + p);
            }
            assert_eq!(Instant::now(), start, "the cancelled ticks did not wait");
            iv
        })
        .await;
        let mut iv = iv;
        assert_eq!(iv.tick().await, start + p);
        assert_eq!(iv.tick().await, start + 2 * p);
    });
}

/// With the clock paused, a runtime that has nothing to run but loopback I/O under way polls its
/// reactor before it jumps to the next timer: a timeout around a request its own server task
/// answers does not fire. (It used to: the runtime jumped the moment its queue emptied, with the
/// reply already in the kernel, and every exchange "timed out" after 5 virtual seconds.)
///
/// Exact on the runtimes with one reactor (current-thread, multi-thread with one worker). With
/// several workers a worker that took events from the kernel but was descheduled before it
/// dispatched them is invisible to the others; they wait `ADVANCE_GRACE` and look twice, which
/// is best effort, so those flavours are not asserted here (see `time::pause`'s docs).
#[test]
fn paused_clock_does_not_jump_while_loopback_io_is_ready() {
    use futures::{AsyncReadExt, AsyncWriteExt};
    use spindle::io::{AsyncReadOwned, AsyncWriteOwned};
    use spindle::net::{TcpListener, TcpStream};
    each_flavor_with_virtual_time(|rt| {
        if rt.metrics().num_workers() > 1 {
            return;
        }
        let real = real_now();
        rt.block_on(async {
            pause();
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = spindle::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 8];
                // Slice reads and writes: the readiness path.
                while s.read_exact(&mut buf).await.is_ok() {
                    s.write_all(&buf).await.unwrap();
                }
            });
            let mut c = TcpStream::connect(addr).await.unwrap();
            let start = Instant::now();
            for i in 0u64..200 {
                let exchange = async {
                    // Owned-buffer ops: on io_uring, completion ops.
                    let (r, _) = c.write_all_owned(i.to_le_bytes().to_vec()).await;
                    r.unwrap();
                    let (r, back) = c.read_exact_owned(vec![0u8; 8]).await;
                    r.unwrap();
                    back
                };
                let back =
                    timeout(Duration::from_secs(5), exchange).await.expect("round trip timed out in virtual time");
                assert_eq!(back, i.to_le_bytes());
            }
            assert_eq!(start.elapsed(), Duration::ZERO, "the clock jumped while I/O was ready");
            drop(c);
            server.await.unwrap();
        });
        assert!(real.elapsed() < Duration::from_secs(20), "took {:?}", real.elapsed());
    });
}

/// The other side of `paused_clock_does_not_jump_while_loopback_io_is_ready`: with I/O in flight
/// that nothing will complete (a read from a silent peer), the paused clock still jumps, so a
/// timeout around it fires at once in real time, on every flavour with virtual time.
#[test]
fn paused_clock_jumps_past_io_that_nothing_completes() {
    use spindle::io::AsyncReadOwned;
    use spindle::net::{TcpListener, TcpStream};
    each_flavor_with_virtual_time(|rt| {
        let real = real_now();
        rt.block_on(async {
            pause();
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut c = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let (_silent, _) = listener.accept().await.unwrap();
            let start = Instant::now();
            let r = timeout(Duration::from_secs(30), c.read_owned(vec![0u8; 8])).await;
            assert!(r.is_err(), "nothing was sent, so the read cannot finish");
            assert!(start.elapsed() >= Duration::from_secs(30));
        });
        assert!(real.elapsed() < Duration::from_secs(10), "took {:?}", real.elapsed());
    });
}
