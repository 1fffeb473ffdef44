//! Rows for spindle's timers (shared/PERF.md: `timer_churn`, `timer_fire`) against tokio's and
//! async-io's.
//!
//! Here each entrant is a runtime with its own timers: spindle multi-thread (2 workers) and
//! current-thread with `spindle::time`; tokio multi-thread (2 workers) and current-thread with its
//! time driver and `tokio::time`; smol's executors (`async-executor` on 2 threads and on the
//! caller's thread, every thread in `async_io::block_on` as `smol` runs them) with
//! `async_io::Timer`. The entrants keep the labels and order of the scheduling rows, so the
//! summary's columns line up. Each workload is written once, generic over [`Rt`] and [`Timers`],
//! and returns a checksum.
//!
//! - `timer_churn_sleep`: one task creates a 1 s sleep, polls it once (registering it) and drops it
//!   (cancelling it), N times. It yields every 100 sleeps so no runtime's cooperative budget (128
//!   polls on spindle and tokio) turns a poll into a no-op.
//! - `timer_churn_timeout`: one task awaits `timeout(1 s, ready(i))` N times: the timer is created
//!   and dropped, never registered. async-io has no `timeout`; its entrant creates the `Timer` up
//!   front and races it with `futures_lite::future::or`, as the `smol-timeout` crate does.
//! - `timer_fire`: N tasks each sleep 1 ms, measured from just before the sleep is created to just
//!   after it completes (std `Instant`). The checksum counts sleeps that lasted at least 1 ms (no
//!   timer may fire early); the median lateness (elapsed - 1 ms) per run is printed beside the
//!   table, against PERF.md's "within one tick (1 ms) of 1 ms".

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::{Mutex, OnceLock};
use std::task::Poll;
use std::time::Duration;

use crate::rt::{Rt, Smol, Tokio};
use crate::rt_spindle::Spindle;
use crate::workloads::{tri, Kind, Spec};

/// A timer workload and its sizes.
#[derive(Clone, Copy, Debug)]
pub enum TimerKind {
    /// `n` sleeps, each polled once then dropped, in one task.
    ChurnSleep { n: usize },
    /// `n` `timeout`s around a ready future, in one task.
    ChurnTimeout { n: usize },
    /// `n` tasks each sleeping `ms` milliseconds, all in flight together.
    Fire { n: usize, ms: u64 },
}

/// The timer rows (full or `--quick` sizes).
pub fn specs(quick: bool) -> Vec<Spec> {
    let q = |full: usize, small: usize| if quick { small } else { full };
    let mut v = Vec::new();
    let n = q(200_000, 20_000);
    v.push(Spec {
        name: "timer_churn_sleep",
        op: "create a 1 s sleep, poll it once (register), drop it (cancel); one task, a yield every 100",
        ops: n as u64,
        target: Some(0.5),
        check: "polls that returned Pending",
        expect: n as u64,
        kind: Kind::Timer(TimerKind::ChurnSleep { n }),
    });
    v.push(Spec {
        name: "timer_churn_timeout",
        op: "await timeout(1 s, ready(i)) (timer created and dropped, never registered); one task",
        ops: n as u64,
        target: Some(0.5),
        check: "sum of outputs 0..N",
        expect: tri(n),
        kind: Kind::Timer(TimerKind::ChurnTimeout { n }),
    });
    let n = q(10_000, 1_000);
    v.push(Spec {
        name: "timer_fire",
        op: "spawn a task that sleeps 1 ms and returns how long it slept (all N in flight); N awaited",
        ops: n as u64,
        target: None,
        check: "sleeps that lasted >= 1 ms",
        expect: n as u64,
        kind: Kind::Timer(TimerKind::Fire { n, ms: 1 }),
    });
    v
}

/// One runtime with its timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    SpindleMt,
    SpindleCt,
    TokioMt,
    TokioCt,
    SmolMt,
    Smol1t,
}

impl Which {
    fn label(self) -> &'static str {
        match self {
            Which::SpindleMt => "spindle-mt",
            Which::SpindleCt => "spindle-ct",
            Which::TokioMt => "tokio-mt",
            Which::TokioCt => "tokio-ct",
            Which::SmolMt => "smol-mt",
            Which::Smol1t => "smol-1t",
        }
    }
}

/// One entrant of a timer row; remembers `timer_fire`'s median lateness of each run.
pub struct Entrant {
    which: Which,
    lateness_ms: Mutex<Vec<f64>>,
}

static SPINDLE_MT: OnceLock<Spindle> = OnceLock::new();
static SPINDLE_CT: OnceLock<Spindle> = OnceLock::new();
static TOKIO_MT: OnceLock<Tokio> = OnceLock::new();
static TOKIO_CT: OnceLock<Tokio> = OnceLock::new();
static SMOL_MT: OnceLock<Smol> = OnceLock::new();
static SMOL_1T: OnceLock<Smol> = OnceLock::new();

/// The entrants of a timer row, spindle's first (flagged `true`).
pub fn entrants() -> Vec<(Box<dyn crate::Bench>, bool)> {
    [Which::SpindleMt, Which::SpindleCt, Which::TokioMt, Which::TokioCt, Which::SmolMt, Which::Smol1t]
        .into_iter()
        .map(|which| {
            let spindle = matches!(which, Which::SpindleMt | Which::SpindleCt);
            (Box::new(Entrant { which, lateness_ms: Mutex::new(Vec::new()) }) as Box<dyn crate::Bench>, spindle)
        })
        .collect()
}

impl crate::Bench for Entrant {
    fn label(&self) -> &'static str {
        self.which.label()
    }

    fn once(&self, kind: Kind) -> u64 {
        let Kind::Timer(k) = kind else { unreachable!("timer entrants only run timer rows") };
        let (check, late) = match self.which {
            Which::SpindleMt => run::<_, SpindleTime>(SPINDLE_MT.get_or_init(|| Spindle::multi_thread(2)), k),
            Which::SpindleCt => run::<_, SpindleTime>(SPINDLE_CT.get_or_init(Spindle::current_thread), k),
            Which::TokioMt => run::<_, TokioTime>(TOKIO_MT.get_or_init(|| Tokio::multi_thread_timed(2)), k),
            Which::TokioCt => run::<_, TokioTime>(TOKIO_CT.get_or_init(Tokio::current_thread_timed), k),
            Which::SmolMt => run::<_, AsyncIoTime>(SMOL_MT.get_or_init(|| Smol::multi_thread_io(2)), k),
            Which::Smol1t => run::<_, AsyncIoTime>(SMOL_1T.get_or_init(Smol::single_thread_io), k),
        };
        if let Some(l) = late {
            self.lateness_ms.lock().unwrap().push(l);
        }
        check
    }

    fn extra(&self) -> Vec<f64> {
        self.lateness_ms.lock().unwrap().clone()
    }
}

/// Prints `timer_fire`'s lateness line: per runtime, the median over the measured rounds of each
/// run's median lateness (`extra()` holds one value per run, the warm-up first).
pub fn print_lateness(kind: TimerKind, entrants: &[(Box<dyn crate::Bench>, bool)]) {
    let TimerKind::Fire { ms, .. } = kind else { return };
    let mut line = format!("   median lateness (ms after {ms} ms; median over rounds of each run's median):");
    let mut verdicts = String::new();
    for (b, spindle) in entrants {
        let mut v = b.extra();
        if v.len() > 1 {
            v.remove(0); // the warm-up round
        }
        let m = crate::median(&mut v);
        line.push_str(&format!(" {} {:.3};", b.label(), m));
        if *spindle {
            let ok = m <= 1.0;
            verdicts.push_str(&format!(
                " {} {:.3} ms ({})",
                b.label(),
                m,
                if ok { "met: within one 1 ms tick" } else { "MISS: more than one tick late" }
            ));
        }
    }
    line.pop();
    println!("{line}");
    println!("   target (PERF.md: fires within one tick of {ms} ms):{verdicts}");
}

// ---------------------------------------------------------------------------------------------
// The timers, one implementation per library.

/// A timer library.
trait Timers: 'static {
    /// A sleep of `d`.
    fn sleep(d: Duration) -> impl Future<Output = ()> + Send;
    /// `f` with a time limit of `d` (`Err` on timeout).
    fn timeout<F>(d: Duration, f: F) -> impl Future<Output = Result<F::Output, ()>> + Send
    where
        F: Future + Send,
        F::Output: Send;
}

struct SpindleTime;
struct TokioTime;
struct AsyncIoTime;

impl Timers for SpindleTime {
    fn sleep(d: Duration) -> impl Future<Output = ()> + Send {
        spindle::time::sleep(d)
    }
    async fn timeout<F>(d: Duration, f: F) -> Result<F::Output, ()>
    where
        F: Future + Send,
        F::Output: Send,
    {
        spindle::time::timeout(d, f).await.map_err(|_| ())
    }
}

impl Timers for TokioTime {
    fn sleep(d: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(d)
    }
    async fn timeout<F>(d: Duration, f: F) -> Result<F::Output, ()>
    where
        F: Future + Send,
        F::Output: Send,
    {
        tokio::time::timeout(d, f).await.map_err(|_| ())
    }
}

impl Timers for AsyncIoTime {
    async fn sleep(d: Duration) {
        async_io::Timer::after(d).await;
    }
    async fn timeout<F>(d: Duration, f: F) -> Result<F::Output, ()>
    where
        F: Future + Send,
        F::Output: Send,
    {
        // Created up front like tokio's and spindle's (and `smol-timeout`'s); `or` polls `f` first.
        let timer = async_io::Timer::after(d);
        futures_lite::future::or(async { Ok(f.await) }, async {
            timer.await;
            Err(())
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// The workloads, each written once.

/// Runs one timer workload; returns the checksum and, for `timer_fire`, the run's median lateness
/// in milliseconds.
fn run<R: Rt, T: Timers>(rt: &R, kind: TimerKind) -> (u64, Option<f64>) {
    match kind {
        TimerKind::ChurnSleep { n } => (rt.run(churn_sleep::<R, T>(n)), None),
        TimerKind::ChurnTimeout { n } => (rt.run(churn_timeout::<T>(n)), None),
        TimerKind::Fire { n, ms } => {
            let d = Duration::from_millis(ms);
            let mut slept = rt.run(fire::<R, T>(n, d));
            let not_early = slept.iter().filter(|&&ns| ns >= d.as_nanos() as u64).count() as u64;
            slept.sort_unstable();
            let median_ns = slept[slept.len() / 2] as f64;
            (not_early, Some((median_ns - d.as_nanos() as f64) / 1e6))
        }
    }
}

/// Polls `f` once, with the task's context.
fn poll_once<F: Future>(mut f: Pin<&mut F>) -> impl Future<Output = Poll<F::Output>> + '_ {
    std::future::poll_fn(move |cx| Poll::Ready(f.as_mut().poll(cx)))
}

async fn churn_sleep<R: Rt, T: Timers>(n: usize) -> u64 {
    let mut pending = 0;
    for i in 0..n {
        let sleep = pin!(T::sleep(Duration::from_secs(1)));
        if poll_once(sleep).await.is_pending() {
            pending += 1;
        }
        if i % 100 == 99 {
            R::yield_now().await;
        }
    }
    pending
}

async fn churn_timeout<T: Timers>(n: usize) -> u64 {
    let mut sum = 0;
    for i in 0..n as u64 {
        sum += T::timeout(Duration::from_secs(1), std::future::ready(i)).await.unwrap_or(u64::MAX / 4);
    }
    sum
}

/// Spawns `n` tasks that each sleep `d`; returns how long each slept, in nanoseconds.
async fn fire<R: Rt, T: Timers>(n: usize, d: Duration) -> Vec<u64> {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            R::spawn(async move {
                let t0 = std::time::Instant::now();
                T::sleep(d).await;
                t0.elapsed().as_nanos() as u64
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await);
    }
    out
}
