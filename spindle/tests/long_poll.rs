//! `Builder::on_long_poll` on every flavour: a poll that never returns until it is reported is
//! reported while it runs (by the watchdog), with the task's name and spawn location; a long
//! poll that returns is reported once; short polls are not reported.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spindle::runtime::{Builder, LongPoll, Runtime};

const THRESHOLD: Duration = Duration::from_millis(30);

/// Every flavour, built with reports of polls longer than `threshold` sent to the returned
/// channel.
fn flavors(threshold: Duration) -> Vec<(&'static str, Runtime, mpsc::Receiver<LongPoll>)> {
    let mut out = Vec::new();
    fn with_workers(mut b: Builder, n: usize) -> Builder {
        b.worker_threads(n);
        b
    }
    let builders: Vec<(&'static str, Builder)> = vec![
        ("current_thread", Builder::new_current_thread()),
        ("multi_thread(1)", with_workers(Builder::new_multi_thread(), 1)),
        ("multi_thread(2)", with_workers(Builder::new_multi_thread(), 2)),
        ("multi_thread(4)", with_workers(Builder::new_multi_thread(), 4)),
        ("per_core(2)", with_workers(Builder::new_per_core(), 2)),
    ];
    for (name, mut builder) in builders {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let rt = builder
            .on_long_poll(threshold, move |p| {
                let _ = tx.lock().unwrap().send(p.clone());
            })
            .build()
            .unwrap();
        out.push((name, rt, rx));
    }
    out
}

#[test]
fn a_blocking_poll_is_reported_while_it_runs_and_once() {
    for (flavor, rt, reports) in flavors(THRESHOLD) {
        // The task blocks its thread until the test has seen the report: only a watchdog looking
        // at the running poll can make it.
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let spawn_line = line!() + 3;
        let h = spindle::task::Builder::new()
            .name("blocker")
            .spawn_on(
                async move { release_rx.lock().unwrap().recv_timeout(Duration::from_secs(20)).is_ok() },
                rt.handle(),
            )
            .unwrap();
        let id = h.id();
        // Another thread drives the runtime (a current-thread runtime runs tasks only there).
        let (p, released) = std::thread::scope(|s| {
            let driver = s.spawn(|| rt.block_on(h));
            let p = reports.recv_timeout(Duration::from_secs(10));
            release_tx.send(()).unwrap();
            let released = driver.join().unwrap().unwrap();
            (p.unwrap_or_else(|_| panic!("{flavor}: no report")), released)
        });
        assert!(released, "{flavor}: the task was never released");
        assert!(!p.is_finished(), "{flavor}: {p}");
        assert_eq!(p.task_id(), id, "{flavor}: {p}");
        assert_eq!(p.name(), Some("blocker"), "{flavor}: {p}");
        assert_eq!((p.location().file(), p.location().line()), (file!(), spawn_line), "{flavor}: {p}");
        assert!(p.elapsed() >= THRESHOLD, "{flavor}: {p}");
        assert!(p.to_string().contains("\"blocker\""), "{flavor}: {p}");
        // Reported once, not again when it returned.
        std::thread::sleep(THRESHOLD * 2);
        assert!(reports.try_recv().is_err(), "{flavor}: reported twice");
    }
}

#[test]
fn short_polls_are_not_reported_and_a_long_one_is() {
    // Long enough that a worker descheduled in a short poll on a loaded machine is not reported.
    const THRESHOLD: Duration = Duration::from_millis(250);
    for (flavor, rt, reports) in flavors(THRESHOLD) {
        let busy = rt.spawn(async {
            for _ in 0..2000 {
                spindle::task::yield_now().await;
            }
        });
        rt.block_on(busy).unwrap();
        std::thread::sleep(THRESHOLD * 2);
        assert!(reports.try_recv().is_err(), "{flavor}: a short poll was reported");

        let long = rt.spawn(async { std::thread::sleep(THRESHOLD * 3) });
        rt.block_on(long).unwrap();
        let p = reports.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("{flavor}: no report"));
        assert!(p.elapsed() >= THRESHOLD, "{flavor}: {p}");
        assert_eq!(p.name(), None, "{flavor}: {p}");
        std::thread::sleep(THRESHOLD * 2);
        assert!(reports.try_recv().is_err(), "{flavor}: reported twice");
    }
}

/// On a per-core runtime the report names the core that polled.
#[test]
fn the_report_names_the_core() {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let rt = Builder::new_per_core()
        .worker_threads(2)
        .on_long_poll(THRESHOLD, move |p| {
            let _ = tx.lock().unwrap().send(p.worker());
        })
        .build()
        .unwrap();
    rt.block_on(rt.handle().spawn_on(1, async { std::thread::sleep(THRESHOLD * 3) })).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 1);
}
