//! Deferred cleanups of a scope future dropped before it finished: `defer_static` cleanups are
//! handed to the current spindle runtime (multi-thread and current-thread) and still run, in
//! order, shielded; borrowing `defer` cleanups, and every cleanup where no spindle runtime is
//! current (a plain `futures` executor, tokio), are dropped unrun and reported in debug builds.

#![cfg(not(loom))]

mod structured_support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use spindle_core::structured::{cancel_requested, unclosed_drops, AsyncClose};
use structured_support::{within, Drops, Rt};

/// Polls `f` once (so the body runs and registers its cleanups), then drops it.
async fn poll_once_then_drop<F: Future>(f: F) {
    let mut f = Box::pin(f);
    std::future::poll_fn(|cx| {
        assert!(f.as_mut().poll(cx).is_pending(), "the scope should still be running");
        Poll::Ready(())
    })
    .await;
    drop(f);
}

/// Waits (on the runtime) until `cond` holds; the watchdog turns a hang into a failure.
async fn eventually(mut cond: impl FnMut() -> bool) {
    while !cond() {
        spindle::time::sleep(Duration::from_millis(1)).await;
    }
}

struct Flush(Arc<AtomicUsize>);

impl AsyncClose for Flush {
    type Error = ();
    async fn close(self) -> Result<(), ()> {
        spindle::time::sleep(Duration::from_millis(1)).await;
        self.0.fetch_add(1, SeqCst);
        Ok(())
    }
}

#[test]
fn defer_static_runs_after_the_scope_future_is_dropped() {
    for rt in [Rt::SpindleMulti, Rt::SpindleCurrent] {
        within(&format!("defer_static on {rt:?}"), Duration::from_secs(60), || {
            rt.block_on(async move {
                let log = Arc::new(Mutex::new(Vec::new()));
                let closed = Arc::new(AtomicUsize::new(0));
                let borrowed_ran = AtomicBool::new(false);
                let reported = unclosed_drops();
                let (l1, l2, c) = (log.clone(), log.clone(), closed.clone());
                poll_once_then_drop(spindle_core::scope!(|s| async {
                    s.defer_static(async move {
                        // Runs on the runtime after the drop: it can await spindle's timers,
                        // and no cancellation token is current (shielded).
                        spindle::time::sleep(Duration::from_millis(2)).await;
                        assert!(!cancel_requested());
                        l1.lock().unwrap().push("first deferred");
                    });
                    s.close_on_exit_static(Flush(c));
                    s.defer_static(async move { l2.lock().unwrap().push("last deferred") });
                    // Borrows from outside the scope: cannot outlive the drop.
                    s.defer(async { borrowed_ran.store(true, SeqCst) });
                    s.cancel(); // cleanups are shielded from this
                    std::future::pending::<()>().await
                }))
                .await;
                eventually(|| log.lock().unwrap().len() == 2).await;
                assert_eq!(*log.lock().unwrap(), ["last deferred", "first deferred"]);
                assert_eq!(closed.load(SeqCst), 1);
                assert!(!borrowed_ran.load(SeqCst));
                if cfg!(debug_assertions) {
                    assert!(unclosed_drops() > reported, "the dropped borrowing cleanup is reported");
                }
            })
        });
    }
}

#[test]
fn a_cleanup_already_started_continues_on_the_runtime() {
    for rt in [Rt::SpindleMulti, Rt::SpindleCurrent] {
        within(&format!("started cleanup on {rt:?}"), Duration::from_secs(60), || {
            rt.block_on(async move {
                let log = Arc::new(Mutex::new(Vec::new()));
                let (l1, l2) = (log.clone(), log.clone());
                // The body finishes at once; the scope then starts the last deferred cleanup,
                // which waits on a timer, and the scope future is dropped in the middle of it.
                poll_once_then_drop(spindle_core::scope!(|s| async {
                    s.defer_static(async move { l1.lock().unwrap().push("second") });
                    s.defer_static(async move {
                        l2.lock().unwrap().push("started");
                        spindle::time::sleep(Duration::from_millis(2)).await;
                        l2.lock().unwrap().push("first");
                    });
                }))
                .await;
                assert_eq!(*log.lock().unwrap(), ["started"]);
                eventually(|| log.lock().unwrap().len() == 3).await;
                assert_eq!(*log.lock().unwrap(), ["started", "first", "second"]);
            })
        });
    }
}

#[test]
fn without_a_spindle_runtime_cleanups_are_dropped_and_reported() {
    // Install spindle's hook (building a runtime does), so the fallback is the "no runtime
    // current here" path, not the "no hook" one.
    drop(spindle::runtime::Builder::new_current_thread().build().unwrap());
    let ran = Arc::new(AtomicBool::new(false));
    let drops = Drops::default();
    let check = |what: &str, run: &dyn Fn(Pin<Box<dyn Future<Output = ()> + Send>>)| {
        let before = drops.count();
        let reported = unclosed_drops();
        let (r, g) = (ran.clone(), drops.guard());
        run(Box::pin(poll_once_then_drop(spindle_core::scope!(|s| async move {
            s.defer_static(async move {
                let _g = g;
                r.store(true, SeqCst);
            });
            std::future::pending::<()>().await
        }))));
        assert!(!ran.load(SeqCst), "{what}: no runtime can run it");
        assert_eq!(drops.count(), before + 1, "{what}: the cleanup is dropped at once");
        if cfg!(debug_assertions) {
            assert!(unclosed_drops() > reported, "{what}: and reported");
        }
    };
    within("no runtime", Duration::from_secs(60), || {
        check("futures executor", &|f| std::thread::spawn(move || futures::executor::block_on(f)).join().unwrap());
        check("tokio current-thread", &|f| tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f));
        check("tokio multi-thread", &|f| {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
            rt.block_on(rt.spawn(f)).unwrap()
        });
    });
}
