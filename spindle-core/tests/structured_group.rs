//! `TaskGroup`: fail-fast and supervisor modes, every error reported, join_next per completion,
//! drop aborts, `run` bodies cancelled by failures; on spindle's runtimes and tokio's.

#![cfg(not(loom))]

mod structured_support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use spindle_core::structured::{cancel_requested, Mode, TaskError, TaskGroup};
use structured_support::{on_every_runtime, AnySpawn, Drops, Rt};

type Group<T, E> = TaskGroup<T, E, AnySpawn>;

#[test]
fn join_next_gives_every_result_in_completion_order() {
    on_every_runtime("join_next", |rt| async move {
        let mut g = Group::<u64, ()>::with_spawner(AnySpawn(rt));
        for i in 0..1000u64 {
            g.spawn(async move { Ok(i) });
        }
        assert!(g.len() <= 1000);
        let mut sum = 0;
        let mut n = 0;
        while let Some(r) = g.join_next().await {
            sum += r.unwrap();
            n += 1;
        }
        assert_eq!((n, sum), (1000, 499_500));
        assert!(g.is_empty());
    });
}

#[test]
fn fail_fast_cancels_siblings_and_reports_every_error() {
    on_every_runtime("fail-fast", |rt| async move {
        let saw_cancel = Arc::new(AtomicUsize::new(0));
        let g = Group::<(), String>::with_spawner(AnySpawn(rt));
        for _ in 0..3 {
            let saw = saw_cancel.clone();
            g.spawn(async move {
                // Soft-cancelled by the failure below: spindle's sleep returns early.
                spindle::time::sleep(Duration::from_secs(3600)).await;
                if cancel_requested() {
                    saw.fetch_add(1, SeqCst);
                }
                Err("sibling saw the cancel".to_string())
            });
        }
        g.spawn(async move {
            rt.yield_now().await;
            Err("first failure".to_string())
        });
        g.spawn(async { panic!("and a panic") });
        let err = g.join_all().await.unwrap_err();
        assert_eq!(saw_cancel.load(SeqCst), 3);
        assert_eq!(err.errors.len(), 5, "every failure is reported");
        assert_eq!(err.errors.iter().filter(|e| e.is_panic()).count(), 1);
    });
}

#[test]
fn supervisor_cancels_nothing() {
    on_every_runtime("supervisor", |rt| async move {
        let mut g = Group::<u32, &'static str>::supervisor_with_spawner(AnySpawn(rt));
        assert_eq!(g.mode(), Mode::Supervisor);
        g.spawn(async { Err("one") });
        g.spawn(async move {
            rt.sleep(Duration::from_millis(5)).await;
            assert!(!cancel_requested());
            Ok(7)
        });
        let mut oks = 0;
        let mut errs = 0;
        while let Some(r) = g.join_next().await {
            match r {
                Ok(7) => oks += 1,
                Err(TaskError::Failed("one")) => errs += 1,
                _ => panic!("unexpected"),
            }
        }
        assert_eq!((oks, errs), (1, 1));
    });
}

#[test]
fn run_body_is_cancelled_by_a_failure() {
    on_every_runtime("run", |rt| async move {
        let g = Group::<(), &'static str>::with_spawner(AnySpawn(rt));
        let r = g
            .run(async {
                g.spawn(async { Err("boom") });
                spindle::time::sleep(Duration::from_secs(3600)).await;
                cancel_requested()
            })
            .await;
        assert_eq!(r.unwrap_err().errors.len(), 1);
        let g = Group::<u8, ()>::with_spawner(AnySpawn(rt));
        let (out, vals) = g
            .run(async {
                g.spawn(async { Ok(1) });
                "body"
            })
            .await
            .unwrap();
        assert_eq!((out, vals), ("body", vec![1]));
    });
}

#[test]
fn dropping_the_group_aborts_its_tasks() {
    on_every_runtime("drop", |rt| async move {
        let drops = Drops::default();
        let g = Group::<(), ()>::with_spawner(AnySpawn(rt));
        for _ in 0..10 {
            let guard = drops.guard();
            g.spawn(async move {
                let _g = guard;
                std::future::pending::<()>().await;
                Ok(())
            });
        }
        rt.sleep(Duration::from_millis(2)).await;
        drop(g);
        for _ in 0..500 {
            if drops.count() == 10 {
                break;
            }
            rt.sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(drops.count(), 10, "no task is left running detached");
    });
}

#[test]
fn abort_gives_aborted_results() {
    on_every_runtime("abort", |rt| async move {
        let g = Group::<(), ()>::with_spawner(AnySpawn(rt));
        for _ in 0..4 {
            g.spawn(async move {
                std::future::pending::<()>().await;
                Ok(())
            });
        }
        rt.yield_now().await;
        g.abort();
        let errs = g.join_all().await.unwrap_err().errors;
        assert_eq!(errs.len(), 4);
        assert!(errs.iter().all(|e| matches!(e, TaskError::Aborted)));
    });
}

#[test]
fn group_tasks_record_the_group_as_parent() {
    spindle::block_on(async {
        let g = spindle::TaskGroup::<Option<spindle::task::TaskId>, ()>::new();
        let gid = g.id();
        // The task sees its own id; its header records the group and the group's owner
        // (checked in spindle/tests/structured_tree.rs); here: the group id is distinct from
        // every task id.
        g.spawn(async { Ok(spindle::task::try_id()) });
        let ids = g.join_all().await.unwrap();
        assert!(ids[0].is_some());
        assert_ne!(ids[0], Some(gid));
    });
}

#[test]
fn nested_group_inside_scope_is_cancelled_with_it() {
    for rt in Rt::ALL {
        structured_support::within("nested", Duration::from_secs(30), || {
            rt.block_on(async move {
                let saw = Arc::new(AtomicUsize::new(0));
                let s2 = saw.clone();
                spindle_core::scope!(|s| async {
                    let g = Group::<(), ()>::with_spawner(AnySpawn(rt));
                    let saw = s2.clone();
                    g.spawn(async move {
                        spindle::time::sleep(Duration::from_secs(3600)).await;
                        saw.fetch_add(cancel_requested() as usize, SeqCst);
                        Ok(())
                    });
                    rt.sleep(Duration::from_millis(2)).await;
                    s.cancel(); // the group's token is a child of the scope's
                    g.join_all().await.unwrap();
                })
                .await;
                assert_eq!(saw.load(SeqCst), 1);
            })
        });
    }
}

/// `join_next` yields once before it sleeps (to wake to a batch of results); the yield is
/// remembered by the group, so a caller that makes a fresh `JoinNext` for every poll does not
/// spin while a task is still running.
#[test]
fn join_next_made_afresh_for_every_poll_does_not_spin() {
    spindle::block_on(async {
        let mut g = spindle::TaskGroup::<u8, ()>::new();
        g.spawn(async {
            spindle::time::sleep(Duration::from_millis(20)).await;
            Ok(1)
        });
        let mut polls = 0;
        let r = std::future::poll_fn(|cx| {
            polls += 1;
            std::future::Future::poll(std::pin::Pin::new(&mut g.join_next()), cx)
        })
        .await;
        assert_eq!(r.unwrap().unwrap(), 1);
        assert!(polls <= 4, "polled {polls} times while one task slept");
    });
}
