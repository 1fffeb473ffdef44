//! The task tree recorded in task headers: tasks started by scopes (`spawn_task`) and task groups
//! record their scope/group (`TaskMeta::group`) and the task that owns it (`TaskMeta::parent`), so
//! a dump can walk task → group/scope → task. Nested groups and scopes on the multi-thread runtime.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use spindle::structured::{Runtime, Spawn, SpawnMeta};
use spindle::task::{GroupKind, GroupRef, TaskId, TaskMeta};
use spindle_core::structured::TaskGroup;

/// spindle's spawner, keeping each task's header record (read from its join handle).
#[derive(Clone, Default)]
struct Recording(Arc<Mutex<HashMap<TaskId, TaskMeta>>>);

impl Spawn for Recording {
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, future: F, meta: SpawnMeta) {
        let h = Runtime.spawn_with_meta(future, meta);
        self.0.lock().unwrap().insert(h.id(), h.header_ref().meta().clone());
    }

    fn current_task(&self) -> Option<TaskId> {
        Runtime.current_task()
    }
}

fn me() -> TaskId {
    spindle::task::try_id().expect("inside a task")
}

#[test]
fn nested_groups_and_scopes_record_the_parent_chain() {
    let rt = spindle::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let rec = Recording::default();
    // Each task reports its own id under a name; each scope/group reports its id.
    let ids: Arc<Mutex<HashMap<&'static str, TaskId>>> = Arc::default();
    let plain: Arc<Mutex<Option<TaskMeta>>> = Arc::default();
    let (r2, i2, p2) = (rec.clone(), ids.clone(), plain.clone());
    let root = rt.spawn(async move {
        let (rec, ids, plain) = (r2, i2, p2);
        ids.lock().unwrap().insert("root", me());
        assert_eq!(spindle::task::parent_id(), None, "spawned from outside any task");
        let g1 = TaskGroup::<(), (), _>::with_spawner(rec.clone());
        assert_eq!(g1.owner(), Some(me()));
        ids.lock().unwrap().insert("g1", g1.id());
        let (rec_a, ids_a) = (rec.clone(), ids.clone());
        g1.spawn(async move {
            ids_a.lock().unwrap().insert("a", me());
            ids_a.lock().unwrap().insert("a.parent_id()", spindle::task::parent_id().unwrap());
            // A plain spawn from inside a group task: parent A, no group.
            let d = spindle::spawn(async {});
            *plain.lock().unwrap() = Some(d.header_ref().meta().clone());
            d.await.unwrap();
            let (rec_b, ids_b) = (rec_a.clone(), ids_a.clone());
            spindle::scope!(on rec_a.clone(), |s| async move {
                ids_a.lock().unwrap().insert("s1", s.id());
                s.spawn_task(async move {
                    ids_b.lock().unwrap().insert("b", me());
                    ids_b.lock().unwrap().insert("b.parent_id()", spindle::task::parent_id().unwrap());
                    let g2 = TaskGroup::<(), (), _>::with_spawner(rec_b.clone());
                    ids_b.lock().unwrap().insert("g2", g2.id());
                    let ids_c = ids_b.clone();
                    g2.spawn(async move {
                        ids_c.lock().unwrap().insert("c", me());
                        ids_c.lock().unwrap().insert("c.parent_id()", spindle::task::parent_id().unwrap());
                        Ok(())
                    });
                    g2.join_all().await.unwrap();
                })
                .await
                .unwrap();
            })
            .await;
            Ok(())
        });
        g1.join_all().await.unwrap();
    });
    rt.block_on(root).unwrap();

    let ids = ids.lock().unwrap().clone();
    let metas = rec.0.lock().unwrap().clone();
    let meta = |name: &str| metas.get(&ids[name]).unwrap_or_else(|| panic!("{name} was not spawned by a group/scope"));
    let group = |name: &str, kind| Some(GroupRef { id: ids[name], kind });

    // a: member of group g1, created by the root task.
    assert_eq!(meta("a").group, group("g1", GroupKind::TaskGroup));
    assert_eq!(meta("a").parent, Some(ids["root"]));
    // b: spawn_task child of scope s1, which task a polls.
    assert_eq!(meta("b").group, group("s1", GroupKind::Scope));
    assert_eq!(meta("b").parent, Some(ids["a"]));
    // c: member of group g2, created by task b.
    assert_eq!(meta("c").group, group("g2", GroupKind::TaskGroup));
    assert_eq!(meta("c").parent, Some(ids["b"]));
    // The running task sees the same parent (`task::parent_id`).
    assert_eq!(ids["a.parent_id()"], ids["root"]);
    assert_eq!(ids["b.parent_id()"], ids["a"]);
    assert_eq!(ids["c.parent_id()"], ids["b"]);
    // A plain spawn inside a: parent a, no group.
    let d = plain.lock().unwrap().clone().unwrap();
    assert_eq!(d.parent, Some(ids["a"]));
    assert_eq!(d.group, None);

    // A dump walks up from c: c -> g2 -> b -> s1 -> a -> g1 -> root.
    let mut chain = Vec::new();
    let mut t = ids["c"];
    while let Some(m) = metas.get(&t) {
        let g = m.group.expect("group members only");
        chain.push((t, g.id));
        t = m.parent.expect("owned by a task");
    }
    assert_eq!(
        chain,
        [(ids["c"], ids["g2"]), (ids["b"], ids["s1"]), (ids["a"], ids["g1"])],
        "walk from c up through its groups"
    );
    assert_eq!(t, ids["root"]);
    // Scope and group ids are drawn from the task-id counter: never a task's id.
    let tasks = ["root", "a", "b", "c"].map(|n| ids[n]);
    for g in ["g1", "s1", "g2"] {
        assert!(!tasks.contains(&ids[g]));
    }
}

#[test]
fn spindle_spawners_record_the_owner() {
    // The default spawner of `spindle::TaskGroup` / `spindle::scope!` is `Runtime`, which knows
    // the current task.
    let rt = spindle::runtime::Builder::new_current_thread().build().unwrap();
    let h = rt.spawn(async {
        let g = spindle::TaskGroup::<(), ()>::new();
        assert_eq!(g.owner(), spindle::task::try_id());
        assert!(Runtime.current_task().is_some());
    });
    rt.block_on(h).unwrap();
    // Outside any task (block_on's own future), there is no owner.
    rt.block_on(async {
        assert_eq!(spindle::TaskGroup::<(), ()>::new().owner(), None);
    });
}
