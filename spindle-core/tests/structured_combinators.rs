//! `race`, `join`, `try_join`, `merge`, `repeat`: per-branch wakers, losers dropped at once,
//! fair start, cancellation reaching every branch; on spindle's runtimes and tokio's.

#![cfg(not(loom))]

mod structured_support;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use spindle_core::structured::{join, merge, race, repeat, repeat_with, try_join, with_token, CancelToken};
use structured_support::{on_every_runtime, Drops, Gate};

#[test]
fn race_drops_losers_at_once() {
    on_every_runtime("race", |rt| async move {
        let drops = Drops::default();
        let g = drops.guard();
        let loser = async move {
            let _g = g;
            std::future::pending::<u32>().await
        };
        let winner = async move {
            rt.yield_now().await;
            1
        };
        assert_eq!(race((loser, winner)).await, 1);
        assert_eq!(drops.count(), 1, "the loser was dropped before race returned");
        let v: Vec<_> = (0..50u32)
            .map(|i| {
                Box::pin(async move {
                    if i == 42 {
                        i
                    } else {
                        std::future::pending().await
                    }
                })
            })
            .collect();
        assert_eq!(race(v).await, 42);
        assert_eq!(race([std::future::ready(3), std::future::ready(3)]).await, 3);
    });
}

#[test]
fn race_start_is_fair() {
    on_every_runtime("fair", |_rt| async move {
        let mut wins = [0u32; 3];
        for _ in 0..300 {
            let i = race((async { 0 }, async { 1 }, async { 2 })).await;
            wins[i] += 1;
        }
        assert!(wins.iter().all(|&w| w > 0), "every position wins sometimes: {wins:?}");
    });
}

#[test]
fn join_tuples_arrays_vecs() {
    on_every_runtime("join", |rt| async move {
        let (a, b, c) = join((
            async { 1 },
            async move {
                rt.yield_now().await;
                "b"
            },
            async { 3.0 },
        ))
        .await;
        assert_eq!((a, b, c), (1, "b", 3.0));
        assert_eq!(join([1, 2, 3].map(|i| async move { i })).await, [1, 2, 3]);
        let v = join(
            (0..1000u64)
                .map(|i| async move {
                    rt.yield_now().await;
                    i
                })
                .collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(v.iter().sum::<u64>(), 499_500);
        assert_eq!(v[10], 10, "outputs stay in input order");
    });
}

#[test]
fn join_polls_only_woken_branches() {
    on_every_runtime("join o(woken)", |_rt| async move {
        let gates: Vec<Gate> = (0..1000).map(|_| Gate::new()).collect();
        let polls: Vec<_> = gates.iter().map(|g| g.polls.clone()).collect();
        let openers: Vec<_> = gates.iter().map(|g| g.opener()).collect();
        let j = join(gates);
        let opener = async move {
            for o in openers {
                o.open();
            }
        };
        join((j, opener)).await;
        let total: usize = polls.iter().map(|p| p.load(SeqCst)).sum();
        assert!(total <= 2 * 1000 + 10, "each branch polled about twice, got {total} polls");
    });
}

#[test]
fn try_join_short_circuits_and_drops_the_rest() {
    on_every_runtime("try_join", |rt| async move {
        assert_eq!(try_join((async { Ok::<_, ()>(1) }, async { Ok(2) })).await, Ok((1, 2)));
        let drops = Drops::default();
        let g = drops.guard();
        let slow = async move {
            let _g = g;
            std::future::pending::<Result<u8, &str>>().await
        };
        let fail = async move {
            rt.yield_now().await;
            Err::<u8, &str>("bad")
        };
        assert_eq!(try_join((slow, fail)).await, Err("bad"));
        assert_eq!(drops.count(), 1);
        let all: Result<Vec<u8>, ()> =
            try_join(vec![1u8, 2].into_iter().map(|i| async move { Ok(i) }).collect::<Vec<_>>()).await;
        assert_eq!(all, Ok(vec![1, 2]));
        assert_eq!(try_join([1u8].map(|i| async move { Ok::<u8, ()>(i) })).await, Ok([1]));
    });
}

#[test]
fn merge_and_repeat() {
    on_every_runtime("merge", |rt| async move {
        let (tx_a, mut rx_a) = spindle::sync::mpsc::unbounded_channel::<u32>();
        let (tx_b, mut rx_b) = spindle::sync::mpsc::unbounded_channel::<u32>();
        let producer = async move {
            for i in 0..100 {
                tx_a.send(i).unwrap();
                tx_b.send(1000 + i).unwrap();
                if i % 10 == 0 {
                    rt.yield_now().await;
                }
            }
        };
        let consumer = async {
            let a = repeat_with(&mut rx_a, |rx| async move { ((0, rx.recv().await), rx) });
            let b = repeat_with(&mut rx_b, |rx| async move { ((1, rx.recv().await), rx) });
            let mut events = merge((a, b));
            let (mut n, mut closed) = (0, [false; 2]);
            while let Some((branch, ev)) = events.next().await {
                match ev {
                    Some(_) => n += 1,
                    None => {
                        closed[branch] = true;
                        if closed == [true; 2] {
                            break;
                        }
                    }
                }
            }
            n
        };
        let (_, n) = join((producer, consumer)).await;
        // Each closed branch may report `None` more than once (repeat restarts the op); every
        // message arrives exactly once.
        assert_eq!(n, 200);
        let mut counter = 0;
        let mut m = merge(vec![repeat(|| async { 1 })]);
        while let Some(x) = m.next().await {
            counter += x;
            if counter == 5 {
                break;
            }
        }
        let mut s = merge([futures::stream::iter(0..3), futures::stream::iter(3..6)]);
        let mut all = Vec::new();
        while let Some(x) = s.next().await {
            all.push(x);
        }
        all.sort();
        assert_eq!(all, [0, 1, 2, 3, 4, 5]);
    });
}

#[test]
fn cancellation_polls_every_branch() {
    on_every_runtime("cancel branches", |_rt| async move {
        let t = CancelToken::new();
        let t2 = t.clone();
        let (tx, mut rx) = spindle::sync::mpsc::unbounded_channel::<u8>();
        let r = with_token(
            t,
            join((
                spindle::time::sleep(Duration::from_secs(3600)),
                async {
                    rx.recv().await;
                },
                async move {
                    spindle::time::sleep(Duration::from_millis(2)).await;
                    t2.cancel();
                },
            )),
        )
        .await;
        drop(tx);
        let _ = r;
    });
}
