//! `CancelToken`, the current token, `with_token`, `shield`, `checkpoint`, `or_cancelled` and
//! deadlines; on spindle's runtimes and tokio's.

#![cfg(not(loom))]

mod structured_support;

use std::time::Duration;

use spindle_core::structured::{
    cancel_requested, checkpoint, or_cancelled, shield, with_deadline_on, with_token, CancelToken, Cancelled,
    DeadlineExceeded,
};
use structured_support::on_every_runtime;

#[test]
fn token_hierarchy() {
    let root = CancelToken::new();
    let a = root.child();
    let b = a.child();
    let c = root.child();
    a.cancel();
    assert!(a.is_cancelled() && b.is_cancelled());
    assert!(!root.is_cancelled() && !c.is_cancelled());
    root.cancel();
    assert!(c.is_cancelled());
    // A child of a cancelled token starts cancelled.
    assert!(root.child().is_cancelled());
    // Many short-lived children do not accumulate.
    let r = CancelToken::new();
    for _ in 0..10_000 {
        let _ = r.child();
    }
}

#[test]
fn cancelled_future_completes_on_cancel_from_another_thread() {
    on_every_runtime("cancelled", |_rt| async move {
        let t = CancelToken::new();
        let t2 = t.child();
        let th = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(2));
            t.cancel();
        });
        t2.cancelled().await;
        th.join().unwrap();
    });
}

#[test]
fn with_token_makes_it_current_and_wakes_leaves() {
    on_every_runtime("with_token", |_rt| async move {
        let t = CancelToken::new();
        let t2 = t.clone();
        let th = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(3));
            t2.cancel();
        });
        let (_tx, mut rx) = spindle::sync::mpsc::unbounded_channel::<u8>();
        let r = with_token(t.clone(), async {
            assert!(!cancel_requested());
            spindle::time::sleep(Duration::from_secs(3600)).await;
            assert!(cancel_requested());
            rx.recv().await
        })
        .await;
        assert_eq!(r, None);
        assert!(!cancel_requested(), "not current outside");
        th.join().unwrap();
    });
}

#[test]
fn shield_hides_outer_cancellation() {
    on_every_runtime("shield", |_rt| async move {
        let t = CancelToken::new();
        t.cancel();
        let slept = with_token(t, async {
            shield(async {
                let start = std::time::Instant::now();
                spindle::time::sleep(Duration::from_millis(3)).await;
                start.elapsed() >= Duration::from_millis(3)
            })
            .await
        })
        .await;
        assert!(slept, "the shielded sleep ran to its end");
    });
}

#[test]
fn checkpoint_and_or_cancelled() {
    on_every_runtime("checkpoint", |_rt| async move {
        assert_eq!(checkpoint().await, Ok(()));
        let t = CancelToken::new();
        let r = with_token(t.clone(), async {
            let mut n = 0u64;
            loop {
                checkpoint().await?;
                n += 1;
                if n == 10_000 {
                    t.cancel();
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), Cancelled>(())
        })
        .await;
        assert_eq!(r, Err(Cancelled));
        let t = CancelToken::new();
        t.cancel();
        assert_eq!(with_token(t, or_cancelled(std::future::pending::<()>())).await, Err(Cancelled));
    });
}

#[test]
fn deadline_soft_then_hard() {
    on_every_runtime("deadline", |_rt| async move {
        use spindle::time::sleep;
        // Soft: the future winds down and returns its value.
        let r = with_deadline_on(sleep(Duration::from_millis(2)), sleep(Duration::from_secs(3600)), async {
            sleep(Duration::from_secs(3600)).await;
            cancel_requested()
        })
        .await;
        assert_eq!(r, Ok(true));
        // Hard: a future that ignores the soft cancel is dropped after the grace period.
        let r = with_deadline_on(
            sleep(Duration::from_millis(1)),
            sleep(Duration::from_millis(3)),
            std::future::pending::<()>(),
        )
        .await;
        assert_eq!(r, Err(DeadlineExceeded));
        // spindle's wrappers.
        let r = spindle::structured::with_timeout(Duration::from_millis(1), Duration::from_millis(1), async {
            spindle::time::sleep(Duration::from_secs(3600)).await;
            5
        })
        .await;
        assert_eq!(r, Ok(5));
    });
}

#[test]
fn outer_cancel_does_not_fire_deadline_timers_early() {
    on_every_runtime("deadline under cancel", |_rt| async move {
        let t = CancelToken::new();
        t.cancel();
        // The outer token is cancelled: the inner future sees it (child token), but the grace
        // timer is shielded, so the future may finish its wind-down.
        let r = with_token(
            t,
            spindle::structured::with_timeout(Duration::from_secs(3600), Duration::from_secs(3600), async {
                assert!(cancel_requested());
                shield(spindle::time::sleep(Duration::from_millis(2))).await;
                "wound down"
            }),
        )
        .await;
        assert_eq!(r, Ok("wound down"));
    });
}

#[test]
fn broadcast_and_watch_observe_cancellation() {
    use spindle::sync::{broadcast, watch};
    use std::sync::Mutex;
    on_every_runtime("broadcast/watch cancel", |rt| async move {
        let (btx, mut brx) = broadcast::channel::<u32>(4);
        let (wtx, mut wrx) = watch::channel(0u32);
        let mut wrx2 = wtx.subscribe();
        let seen = Mutex::new(Vec::new());
        spindle_core::scope!(|s| async {
            s.spawn(async {
                assert_eq!(brx.recv().await, Err(broadcast::error::RecvError::Closed));
                seen.lock().unwrap().push("broadcast");
            });
            s.spawn(async {
                assert!(wrx.changed().await.is_err());
                seen.lock().unwrap().push("changed");
            });
            s.spawn(async {
                assert!(wrx2.wait_for(|v| *v == 99).await.is_err());
                seen.lock().unwrap().push("wait_for");
            });
            rt.yield_now().await;
            rt.sleep(Duration::from_millis(5)).await;
            s.cancel();
        })
        .await;
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, ["broadcast", "changed", "wait_for"]);
        // Nothing was taken or marked seen, and the receivers still work outside the scope.
        assert!(!brx.is_closed());
        btx.send(7).unwrap();
        assert_eq!(brx.recv().await, Ok(7));
        wtx.send(3).unwrap();
        wrx.changed().await.unwrap();
        assert_eq!(*wrx.borrow_and_update(), 3);
    });
}

#[test]
fn broadcast_and_watch_ready_values_win_over_cancellation() {
    use spindle::sync::{broadcast, watch};
    on_every_runtime("broadcast/watch ready under cancel", |_rt| async move {
        let (btx, mut brx) = broadcast::channel::<u32>(4);
        let (wtx, mut wrx) = watch::channel(0u32);
        btx.send(1).unwrap();
        wtx.send(1).unwrap();
        let t = CancelToken::new();
        t.cancel();
        let (b, w, b2, w2) = with_token(t, async {
            let b = brx.recv().await;
            let w = wrx.changed().await;
            // Now there is nothing: the cancelled waits end at once.
            (b, w, brx.recv().await, wrx.changed().await)
        })
        .await;
        assert_eq!(b, Ok(1));
        assert_eq!(w, Ok(()));
        assert_eq!(b2, Err(broadcast::error::RecvError::Closed));
        assert!(w2.is_err());
        // The same waits outside the token still wait, and get the next value.
        btx.send(2).unwrap();
        assert_eq!(brx.recv().await, Ok(2));
    });
}

#[test]
fn broadcast_and_watch_observe_a_task_group_cancel() {
    use spindle::sync::{broadcast, watch};
    on_every_runtime("broadcast/watch in a group", |rt| async move {
        let (btx, _) = broadcast::channel::<u32>(4);
        let (wtx, _) = watch::channel(0u32);
        let group = spindle_core::structured::TaskGroup::<(), (), _>::with_spawner(structured_support::AnySpawn(rt));
        let mut brx = btx.subscribe();
        group.spawn(async move {
            assert!(brx.recv().await.is_err());
            Ok(())
        });
        let mut wrx = wtx.subscribe();
        group.spawn(async move {
            assert!(wrx.changed().await.is_err());
            Ok(())
        });
        rt.sleep(Duration::from_millis(5)).await;
        group.cancel();
        group.join_all().await.unwrap();
        drop((btx, wtx));
    });
}

#[test]
fn a_scope_built_before_its_wrapper_polls_it_is_still_linked() {
    // The scope future is built outside `with_token` / the deadline (as arguments), before they
    // make their token current: its token is made at its first poll, under theirs.
    on_every_runtime("scope linked at first poll", |_rt| async move {
        let t = CancelToken::new();
        t.cancel();
        let saw = with_token(
            t,
            spindle_core::scope!(|s| async {
                let h = s.spawn(async { cancel_requested() });
                h.await.unwrap()
            }),
        )
        .await;
        assert!(saw, "the outer cancellation reaches the scope's children");
        let r = spindle::structured::with_timeout(
            Duration::from_millis(2),
            Duration::from_secs(3600),
            spindle::scope!(|s| async {
                s.spawn(spindle::time::sleep(Duration::from_secs(3600))); // ends at the deadline
                "wound down"
            }),
        )
        .await;
        assert_eq!(r, Ok("wound down"));
    });
}
