//! `Handle::dump` / `Runtime::dump` on every flavour: the task tree (plain children, a task
//! group's tasks under the group under its owner), names, spawn locations and states, taken
//! while the workers run; a task dumping itself sees itself running.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::each_flavor;
use spindle::runtime::{Dump, TaskState};
use spindle::sync::Semaphore;
use spindle::task::GroupKind;

/// Dumps until `done` says the dump is the awaited one (every task there and settled), or fails
/// after 10 s.
fn dump_until(rt: &spindle::runtime::Runtime, done: impl Fn(&Dump) -> bool) -> Dump {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = rt.dump();
        if done(&d) {
            return d;
        }
        assert!(Instant::now() < deadline, "the tasks never settled; last dump:\n{d}");
        // Through `block_on`, which also runs a current-thread runtime's tasks.
        rt.block_on(spindle::time::sleep(Duration::from_millis(1)));
    }
}

#[test]
fn dump_shows_the_task_tree_names_locations_and_states() {
    each_flavor(|rt| {
        // Closed while the test holds its three permits (an empty semaphore would refuse the
        // waits outright: spindle fails a request for more permits than exist).
        let gate = Arc::new(Semaphore::new(3));
        let closed = gate.clone().try_acquire_many_owned(3).unwrap();
        let g = gate.clone();
        let work = async move {
            let g1 = g.clone();
            let child = spindle::task::Builder::new()
                .name("child")
                .spawn(async move {
                    let _p = g1.acquire().await.unwrap();
                })
                .unwrap();
            let group = spindle::TaskGroup::<(), ()>::new();
            for _ in 0..2 {
                let g2 = g.clone();
                group.spawn(async move {
                    let _p = g2.acquire().await.unwrap();
                    Ok(())
                });
            }
            child.await.unwrap();
            group.join_all().await.unwrap();
        };
        let root_line = line!() + 1;
        let root = spindle::task::Builder::new().name("root").spawn_on(work, rt.handle()).unwrap();

        let d = dump_until(rt, |d| d.len() == 4 && d.tasks().iter().all(|t| t.state() == TaskState::Idle));
        let text = d.to_string();
        let r = d.task(root.id()).expect("root is in the dump");
        assert_eq!((r.name(), r.parent(), r.group()), (Some("root"), None, None), "{text}");
        assert_eq!((r.location().file(), r.location().line()), (file!(), root_line), "{text}");
        let child = d.children(root.id()).next().expect("root's plain child");
        assert_eq!(child.name(), Some("child"), "{text}");
        assert_eq!(d.children(root.id()).count(), 1, "{text}");
        let members: Vec<_> = d.tasks().iter().filter(|t| t.group().is_some()).collect();
        assert_eq!(members.len(), 2, "{text}");
        let gref = members[0].group().unwrap();
        assert_eq!(gref.kind, GroupKind::TaskGroup);
        assert!(members.iter().all(|t| t.parent() == Some(root.id()) && t.group() == Some(gref)), "{text}");
        assert!(d.tasks().iter().all(|t| !t.is_cancelled() && !t.is_local()), "{text}");

        // The printed tree: the root, its child, then the group with its two tasks under it.
        let (rid, cid, gid) = (root.id().as_u64(), child.id().as_u64(), gref.id.as_u64());
        let (m0, m1) = (members[0].id().as_u64(), members[1].id().as_u64());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "4 tasks", "{text}");
        assert!(
            lines[1].starts_with(&format!("task {rid} \"root\" idle, spawned at {}:{root_line}:", file!())),
            "{text}"
        );
        assert!(lines[2].starts_with(&format!("├── task {cid} \"child\" idle, spawned at ")), "{text}");
        assert_eq!(lines[3], format!("└── task group {gid}"), "{text}");
        assert!(lines[4].starts_with(&format!("    ├── task {m0} idle, spawned at ")), "{text}");
        assert!(lines[5].starts_with(&format!("    └── task {m1} idle, spawned at ")), "{text}");
        assert_eq!(lines.len(), 6, "{text}");

        // A task that dumps sees itself running.
        let me = rt
            .block_on(rt.spawn(async {
                let id = spindle::task::try_id().unwrap();
                spindle::runtime::Handle::current().dump().task(id).map(|t| t.state())
            }))
            .unwrap();
        assert_eq!(me, Some(TaskState::Running));

        // Poll counts: a task that yields 10 times and then waits has been polled 11 times.
        let (release, gate) = spindle::sync::oneshot::channel::<()>();
        let yielder = rt.spawn(async move {
            for _ in 0..10 {
                spindle::task::yield_now().await;
            }
            gate.await.unwrap();
        });
        let d = dump_until(rt, |d| {
            d.task(yielder.id()).is_some_and(|t| t.poll_count() == 11 && t.state() == TaskState::Idle)
        });
        let line =
            d.to_string().lines().find(|l| l.contains(&format!("task {} ", yielder.id().as_u64()))).unwrap().to_owned();
        assert!(line.ends_with(", polled 11 times"), "{line}");
        release.send(()).unwrap();
        rt.block_on(yielder).unwrap();

        drop(closed);
        rt.block_on(root).unwrap();
        let d = dump_until(rt, |d| d.is_empty());
        assert_eq!(d.to_string(), "0 tasks\n");
    });
}

/// A join set's tasks (spawned directly, through `build_task`, and as local tasks) hang under a
/// "join set" node under the task that owns the set; a task only inserted into it does not.
#[test]
fn a_join_sets_tasks_hang_under_the_set_under_its_owner() {
    each_flavor(|rt| {
        let (ids_tx, ids_rx) = spindle::sync::oneshot::channel();
        let (release, gate) = spindle::sync::watch::channel(false);
        let owner = rt.spawn(async move {
            let mut set = spindle::task::JoinSet::new();
            let mut members = Vec::new();
            for i in 0..3 {
                let mut gate = gate.clone();
                let wait = async move {
                    let _ = gate.wait_for(|open| *open).await;
                };
                members.push(match i {
                    0 => set.spawn(wait),
                    1 => set.build_task().name("built").spawn(wait).unwrap(),
                    _ => set.spawn_local(wait),
                });
            }
            let mut gate2 = gate.clone();
            let outsider = set.insert(spindle::spawn(async move {
                let _ = gate2.wait_for(|open| *open).await;
            }));
            let me = spindle::task::try_id().unwrap();
            ids_tx.send((me, set.id(), members.iter().map(|a| a.id()).collect::<Vec<_>>(), outsider.id())).unwrap();
            while set.join_next().await.is_some() {}
        });
        let (me, set_id, members, outsider) = rt.block_on(ids_rx).unwrap();
        let d = dump_until(rt, |d| d.len() == 5 && d.tasks().iter().all(|t| t.state() == TaskState::Idle));
        let text = d.to_string();
        for id in &members {
            let t = d.task(*id).unwrap();
            assert_eq!(t.parent(), Some(me), "{text}");
            assert_eq!(t.group().map(|g| (g.id, g.kind)), Some((set_id, GroupKind::JoinSet)), "{text}");
        }
        assert_eq!(d.task(members[1]).unwrap().name(), Some("built"));
        assert!(d.task(members[2]).unwrap().is_local(), "{text}");
        assert_eq!(d.task(outsider).unwrap().group(), None, "{text}");
        // The printed tree: the owner, the inserted task as its plain child, then the set with
        // its three tasks under it.
        let lines: Vec<&str> = text.lines().collect();
        let (m, o) = (members.iter().map(|id| id.as_u64()).collect::<Vec<_>>(), outsider.as_u64());
        assert_eq!(lines[0], "5 tasks", "{text}");
        assert!(lines[1].starts_with(&format!("task {} idle", me.as_u64())), "{text}");
        assert!(lines[2].starts_with(&format!("├── task {o} idle")), "{text}");
        assert_eq!(lines[3], format!("└── join set {}", set_id.as_u64()), "{text}");
        assert!(lines[4].starts_with(&format!("    ├── task {} idle", m[0])), "{text}");
        assert!(lines[5].starts_with(&format!("    ├── task {} \"built\" idle", m[1])), "{text}");
        assert!(lines[6].starts_with(&format!("    └── task {} idle (local)", m[2])), "{text}");
        assert_eq!(lines.len(), 7, "{text}");
        release.send(true).unwrap();
        rt.block_on(owner).unwrap();
    });
}

/// A chain of 3,000 tasks, each awaiting the next, prints in space linear in its length and
/// without recursion: the printing thread here has a 128 KiB stack. Lines past
/// the drawn depth say their depth.
#[test]
fn a_deep_chain_of_tasks_prints_without_recursion() {
    const DEPTH: usize = 3000;
    fn chain(n: usize, gate: Arc<Semaphore>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            if n == 0 {
                let _p = gate.acquire().await.unwrap();
            } else {
                spindle::spawn(chain(n - 1, gate)).await.unwrap();
            }
        })
    }
    let rt = spindle::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let gate = Arc::new(Semaphore::new(1));
    let closed = gate.clone().try_acquire_many_owned(1).unwrap();
    let top = rt.spawn(chain(DEPTH - 1, gate));
    let d = dump_until(&rt, |d| d.len() == DEPTH);
    let text = std::thread::Builder::new().stack_size(128 * 1024).spawn(move || d.to_string()).unwrap().join().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), DEPTH + 1);
    assert!(lines[DEPTH].contains(&format!("[depth {}] └── task ", DEPTH - 1)), "{}", lines[DEPTH]);
    assert!(text.len() < DEPTH * 300, "{} bytes", text.len());
    drop(closed);
    rt.block_on(top).unwrap();
}

/// With `record_task_busy_time`, each task's polls add up in its dump entry (and line): a task
/// whose polls run 3 ms each shows at least their sum, a task that only waits shows less; without
/// it nothing is timed.
#[test]
fn busy_time_is_recorded_per_task_when_asked() {
    use spindle::runtime::Builder;
    let timed = [
        Builder::new_current_thread().record_task_busy_time(true).build().unwrap(),
        Builder::new_multi_thread().worker_threads(2).record_task_busy_time(true).build().unwrap(),
        Builder::new_per_core().worker_threads(2).record_task_busy_time(true).build().unwrap(),
    ];
    for rt in &timed {
        let hog = spindle::task::Builder::new()
            .name("hog")
            .spawn_on(
                async {
                    for _ in 0..3 {
                        std::thread::sleep(Duration::from_millis(3)); // stands in for computing
                        spindle::task::yield_now().await;
                    }
                    std::future::pending::<()>().await
                },
                rt.handle(),
            )
            .unwrap();
        let waiter = spindle::task::Builder::new()
            .name("waiter")
            .spawn_on(
                async {
                    spindle::time::sleep(Duration::from_millis(30)).await;
                    std::future::pending::<()>().await
                },
                rt.handle(),
            )
            .unwrap();
        // A poll's time is added just after it returns, when the task may already be running
        // again on another worker: wait for the sum, not only for the poll count.
        let d = dump_until(rt, |d| {
            d.task(hog.id()).is_some_and(|t| t.poll_count() >= 4 && t.busy() >= Duration::from_millis(9))
                && d.task(waiter.id()).is_some_and(|t| t.poll_count() >= 2)
        });
        let (h, w) = (d.task(hog.id()).unwrap(), d.task(waiter.id()).unwrap());
        assert!(h.busy() >= Duration::from_millis(9), "{:?}\n{d}", h.busy());
        assert!(w.busy() < h.busy(), "waiter {:?} vs hog {:?}", w.busy(), h.busy());
        assert!(d.to_string().contains(", busy "), "{d}");
        hog.abort();
        waiter.abort();
    }
    // Off by default: no task is timed.
    each_flavor(|rt| {
        let t = rt.spawn(async { std::thread::sleep(Duration::from_millis(2)) });
        let idle = rt.spawn(std::future::pending::<()>());
        rt.block_on(t).unwrap();
        let d = dump_until(rt, |d| d.task(idle.id()).is_some_and(|t| t.poll_count() >= 1));
        assert!(d.tasks().iter().all(|t| t.busy().is_zero()), "{d}");
        assert!(!d.to_string().contains(", busy "), "{d}");
        idle.abort();
    });
}
