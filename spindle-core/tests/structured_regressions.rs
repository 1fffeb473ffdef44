//! The three classic failures of unstructured async code, each first written the naive way
//! (asserting that it fails, bounded in time), then the structured way (asserting it does not):
//!
//! 1. a `select!` loop that loses a half-read message when another branch wins;
//! 2. `.buffered(n).for_each(slow)`, whose buffered futures are not polled while the consumer is
//!    busy, so their timeouts fire although the work was quick;
//! 3. a `&mut fut` branch of `select!` that holds a lock, and a handler that waits for the same
//!    lock while `fut` is not being polled: a deadlock.
//!
//! Each runs on spindle's runtimes and tokio's.

#![cfg(not(loom))]

mod structured_support;

use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use spindle::sync::{mpsc, Mutex, Semaphore};
use spindle::time::{sleep, timeout};
use spindle_core::structured::{join, merge, repeat_with};
use structured_support::on_every_runtime;

/// A frame arrives in two chunks: a header (its length) and a body.
async fn read_frame(rx: &mut mpsc::UnboundedReceiver<u32>, header_seen: &AtomicBool) -> Option<(u32, u32)> {
    let header = rx.recv().await?;
    header_seen.store(true, SeqCst);
    let body = rx.recv().await?;
    Some((header, body))
}

/// Sends `frames` frames (header `100 + i`, body `i`); between the two chunks of each frame, once
/// the reader has taken the header, it sends a tick on the other channel and lets it be handled.
async fn frame_producer(
    frames: u32,
    data: mpsc::UnboundedSender<u32>,
    ticks: mpsc::UnboundedSender<()>,
    header_seen: Arc<AtomicBool>,
    ticks_handled: Arc<AtomicUsize>,
) {
    for i in 0..frames {
        header_seen.store(false, SeqCst);
        data.send(100 + i).unwrap();
        while !header_seen.load(SeqCst) {
            sleep(Duration::from_millis(1)).await;
        }
        let before = ticks_handled.load(SeqCst);
        ticks.send(()).unwrap();
        while ticks_handled.load(SeqCst) == before {
            sleep(Duration::from_millis(1)).await;
        }
        data.send(i).unwrap();
    }
}

#[test]
fn lossy_select_loop_naive_loses_data() {
    on_every_runtime("naive select! loop", |_rt| async move {
        let (data_tx, mut data_rx) = mpsc::unbounded_channel();
        let (tick_tx, mut tick_rx) = mpsc::unbounded_channel();
        let header_seen = Arc::new(AtomicBool::new(false));
        let ticks_handled = Arc::new(AtomicUsize::new(0));
        let producer = frame_producer(5, data_tx, tick_tx, header_seen.clone(), ticks_handled.clone());
        let consumer = async {
            let mut frames = Vec::new();
            // Bounded: the producer may stall once frames are corrupted.
            let _ = timeout(Duration::from_millis(500), async {
                loop {
                    tokio::select! {
                        f = read_frame(&mut data_rx, &header_seen) => match f {
                            Some(f) => frames.push(f),
                            None => break,
                        },
                        Some(()) = tick_rx.recv() => { ticks_handled.fetch_add(1, SeqCst); }
                    }
                }
            })
            .await;
            frames
        };
        let (_, frames) = join((timeout(Duration::from_secs(1), producer), consumer)).await;
        // The tick won while `read_frame` held a header: the header was dropped with it, so the
        // next "frame" pairs a body with the following header (or nothing arrives at all).
        let intact = frames.iter().filter(|(h, b)| *h == 100 + *b).count();
        assert!(intact < 5, "the naive loop lost or corrupted frames: {frames:?}");
    });
}

#[test]
fn lossy_select_loop_structured_keeps_every_frame() {
    on_every_runtime("merge + repeat_with", |_rt| async move {
        let (data_tx, mut data_rx) = mpsc::unbounded_channel();
        let (tick_tx, mut tick_rx) = mpsc::unbounded_channel();
        let header_seen = Arc::new(AtomicBool::new(false));
        let ticks_handled = Arc::new(AtomicUsize::new(0));
        let producer = frame_producer(5, data_tx, tick_tx, header_seen.clone(), ticks_handled.clone());
        let consumer = async {
            enum Ev {
                Frame(Option<(u32, u32)>),
                Tick(Option<()>),
            }
            let hs = &header_seen;
            let frames_src = repeat_with(&mut data_rx, |rx| async move { (Ev::Frame(read_frame(rx, hs).await), rx) });
            let ticks_src = repeat_with(&mut tick_rx, |rx| async move { (Ev::Tick(rx.recv().await), rx) });
            let mut events = merge((frames_src, ticks_src));
            let mut frames = Vec::new();
            while let Some(ev) = events.next().await {
                match ev {
                    Ev::Frame(Some(f)) => frames.push(f),
                    Ev::Frame(None) => break,
                    Ev::Tick(Some(())) => {
                        ticks_handled.fetch_add(1, SeqCst);
                    }
                    Ev::Tick(None) => {}
                }
            }
            frames
        };
        let (p, frames) = join((timeout(Duration::from_secs(10), producer), consumer)).await;
        assert!(p.is_ok());
        assert_eq!(frames, (0..5).map(|i| (100 + i, i)).collect::<Vec<_>>(), "no frame lost or torn");
        assert_eq!(ticks_handled.load(SeqCst), 5);
    });
}

/// A request that needs several polls to finish (one short step for even `i`, ten for odd `i`:
/// about 10-20 ms of timers), under a generous time limit.
async fn fetch(i: u32) -> Result<u32, spindle::time::Elapsed> {
    timeout(Duration::from_millis(250), async move {
        for _ in 0..if i % 2 == 0 { 1 } else { 10 } {
            sleep(Duration::from_millis(1)).await;
        }
        i
    })
    .await
}

/// How long the consumer spends on each response (longer than the fetches' time limit).
const SLOW: Duration = Duration::from_millis(400);

#[test]
fn buffered_for_each_naive_starves_its_futures() {
    use futures::StreamExt;
    on_every_runtime("naive buffered(n).for_each(slow)", |_rt| async move {
        let timed_out = &AtomicUsize::new(0);
        futures::stream::iter(0..4u32)
            .map(fetch)
            .buffered(2)
            .for_each(|r| async move {
                if r.is_err() {
                    timed_out.fetch_add(1, SeqCst);
                }
                // Slow processing: while it runs, `buffered` does not poll the other fetches.
                sleep(SLOW).await;
            })
            .await;
        assert!(timed_out.load(SeqCst) > 0, "the buffered fetches starved and timed out");
    });
}

#[test]
fn buffered_for_each_structured_does_not_starve() {
    on_every_runtime("scope + semaphore", |_rt| async move {
        let limit = Semaphore::new(2);
        let timed_out = AtomicUsize::new(0);
        let (tx, mut rx) = mpsc::channel(4);
        spindle::scope!(|s| async {
            // Producer: at most 2 fetches in flight, each a child the scope keeps polling.
            s.spawn(async {
                for i in 0..4u32 {
                    let permit = limit.acquire().await.unwrap();
                    let tx = tx.clone();
                    s.spawn(async move {
                        let r = fetch(i).await;
                        drop(permit);
                        tx.send(r).await.unwrap();
                    });
                }
                drop(tx);
            });
            // Consumer: as slow as before.
            while let Some(r) = rx.recv().await {
                if r.is_err() {
                    timed_out.fetch_add(1, SeqCst);
                }
                sleep(SLOW).await;
            }
        })
        .await;
        assert_eq!(timed_out.load(SeqCst), 0, "every fetch kept being polled");
    });
}

#[test]
fn select_on_mut_fut_naive_deadlocks_on_a_lock() {
    on_every_runtime("naive &mut fut select!", |_rt| async move {
        let lock = Mutex::new(0u32);
        let r = timeout(Duration::from_millis(200), async {
            let mut work = pin!(async {
                let mut g = lock.lock().await;
                sleep(Duration::from_millis(5)).await; // holds the lock across an await
                *g += 1;
            });
            loop {
                tokio::select! {
                    _ = &mut work => break,
                    _ = sleep(Duration::from_millis(1)) => {
                        // `work` holds the lock and is not polled while we wait here.
                        *lock.lock().await += 10;
                    }
                }
            }
        })
        .await;
        assert!(r.is_err(), "the naive loop deadlocked (cut by the 200 ms bound)");
    });
}

#[test]
fn select_on_mut_fut_structured_does_not_deadlock() {
    on_every_runtime("join instead of &mut fut", |_rt| async move {
        let lock = Mutex::new(0u32);
        let done = AtomicBool::new(false);
        let r = timeout(Duration::from_secs(10), async {
            let work = async {
                let mut g = lock.lock().await;
                sleep(Duration::from_millis(5)).await;
                *g += 1;
                drop(g);
                done.store(true, SeqCst);
            };
            let periodic = async {
                while !done.load(SeqCst) {
                    sleep(Duration::from_millis(1)).await;
                    *lock.lock().await += 10;
                }
            };
            // Both are always polled: the lock holder finishes, then the waiter gets the lock.
            join((work, periodic)).await;
        })
        .await;
        assert!(r.is_ok());
        assert_eq!(*lock.lock().await % 10, 1);
    });
}
