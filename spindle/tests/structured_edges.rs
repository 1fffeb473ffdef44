//! Edges of scopes and task groups on spindle's runtimes: what a dropped scope's `'static` tasks,
//! a cleanup's children and a group whose tasks were dropped by their runtime must do.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use spindle::runtime::Builder;
use spindle::time::{sleep, timeout, Instant};

/// Wakes itself and returns `Pending` once.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Dropping a scope aborts its `spawn_task` tasks, also one whose joiner child was spawned but
/// not polled yet (the joiner's abort guard only came into being at its first poll).
#[test]
fn a_dropped_scope_aborts_a_spawn_task_whose_joiner_never_ran() {
    let rt = Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let finished = Arc::new(AtomicBool::new(false));
        let f = finished.clone();
        let mut scope = Box::pin(spindle::scope!(|s| async move {
            // Three self-wakes: `spawn_task` runs in the scope's last batch of this poll, so its
            // joiner child waits for the next poll, which never comes.
            for _ in 0..3 {
                YieldOnce(false).await;
            }
            let _h = s.spawn_task(async move {
                sleep(Duration::from_millis(20)).await;
                f.store(true, SeqCst);
            });
            std::future::pending::<()>().await
        }));
        assert!(futures::poll!(scope.as_mut()).is_pending());
        drop(scope);
        sleep(Duration::from_millis(100)).await;
        assert!(!finished.load(SeqCst), "the spawn_task task of a dropped scope ran on, detached");
    });
}

/// Cleanups run shielded from the scope's cancellation, and so do the children a cleanup spawns
/// to do its work (they used to see the cancelled token: their sleeps returned at once).
#[test]
fn children_spawned_by_a_deferred_cleanup_are_shielded() {
    let rt = Builder::new_current_thread().start_paused(true).build().unwrap();
    rt.block_on(async {
        let slept = spindle::scope!(|s| async move {
            let out = Arc::new(AtomicBool::new(false));
            let o = out.clone();
            s.defer(async move {
                let start = Instant::now();
                s.spawn(sleep(Duration::from_millis(10))).await.unwrap();
                o.store(Instant::now() >= start + Duration::from_millis(10), SeqCst);
            });
            s.cancel();
            out
        })
        .await;
        assert!(slept.load(SeqCst), "a child spawned by a shielded cleanup saw the scope's cancellation");
    });
}

/// A group's task dropped by its runtime (shutdown) before it finished is reported as aborted;
/// `join_all` used to wait for it forever.
#[test]
fn a_group_whose_task_its_runtime_dropped_joins_with_that_task_aborted() {
    let rt1 = Builder::new_multi_thread().worker_threads(1).build().unwrap();
    let g = rt1.block_on(async {
        let g = spindle::TaskGroup::<(), ()>::new();
        g.spawn(std::future::pending());
        g.spawn(async { Ok(()) });
        g
    });
    // Let the finished one finish: it leaves the runtime's tasks after its result is in the
    // group. (A fixed 50 ms sleep here could leave it unpolled on a loaded machine, and then
    // dropped with the runtime it was reported as aborted too.)
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rt1.metrics().num_alive_tasks() > 1 {
        assert!(std::time::Instant::now() < deadline, "the group's finishing task never finished");
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(rt1);
    let rt2 = Builder::new_current_thread().build().unwrap();
    let r = rt2.block_on(timeout(Duration::from_secs(10), g.join_all()));
    let err = r.expect("join_all never returned after the group's task was dropped").unwrap_err();
    assert_eq!(err.errors.len(), 1);
    assert!(matches!(err.errors[0], spindle_core::structured::TaskError::Aborted), "{:?}", err.errors[0]);
}
