//! Rows for spindle's own sync primitives and channels against tokio's, flume, async-channel,
//! async-lock and futures' (shared/PERF.md: "Spindle's own channels ... get their own rows").
//!
//! Here the entrants are primitives, not runtimes: every entrant of a row runs the same workload on
//! the same executor (spindle multi-thread with 2 workers, or tokio's for the `_on_tokio` rows), so
//! only the primitive differs. Each workload is written once, generic over a small trait per kind
//! of primitive, and returns a checksum.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::rt::{Rt, Tokio};
use crate::rt_spindle::Spindle;
use crate::workloads::{tri, Kind, Spec};

/// A sync-primitive workload and its sizes.
#[derive(Clone, Copy, Debug)]
pub enum SyncKind {
    /// `producers` tasks each send `per` messages into a bounded channel of capacity `cap`; the
    /// root task receives them all.
    MpscContended { producers: usize, per: usize, cap: usize },
    /// As above, unbounded.
    MpscUnbounded { producers: usize, per: usize },
    /// A client task sends `n` requests (over one futures unbounded channel, the same for every
    /// entrant) to a server task, each carrying the entrant's oneshot for the reply.
    RequestReply { n: usize },
    /// `tasks` tasks each acquire and release a semaphore of `permits` permits `per` times.
    SemaphoreContended { tasks: usize, per: usize, permits: usize },
    /// `tasks` tasks each lock a mutex `per` times to increment a counter.
    MutexContended { tasks: usize, per: usize },
}

/// Which executor a row runs its entrants on.
#[derive(Clone, Copy, Debug)]
pub enum Exec {
    SpindleMt,
    TokioMt,
}

/// The sync rows (full or `--quick` sizes).
pub fn specs(quick: bool) -> Vec<Spec> {
    let q = |full: usize, small: usize| if quick { small } else { full };
    let mut v = Vec::new();
    let (producers, per, cap) = (5, q(20_000, 2_000), 100);
    for (name, exec) in [("mpsc_contended", Exec::SpindleMt), ("mpsc_contended_on_tokio", Exec::TokioMt)] {
        v.push(Spec {
            name,
            op: "one message through a bounded channel (capacity 100), 5 producer tasks -> 1 consumer",
            ops: (producers * per) as u64,
            target: Some(1.0),
            check: "sum of all messages 0..N",
            expect: tri(producers * per),
            kind: Kind::Sync(SyncKind::MpscContended { producers, per, cap }, exec),
        });
    }
    let (producers, per) = (5, q(20_000, 2_000));
    v.push(Spec {
        name: "mpsc_unbounded",
        op: "one message through an unbounded channel, 5 producer tasks -> 1 consumer",
        ops: (producers * per) as u64,
        target: Some(1.0),
        check: "sum of all messages 0..N",
        expect: tri(producers * per),
        kind: Kind::Sync(SyncKind::MpscUnbounded { producers, per }, Exec::SpindleMt),
    });
    let n = q(20_000, 2_000);
    v.push(Spec {
        name: "request_reply_oneshot",
        op: "one request (futures unbounded mpsc, same for all) + reply on the entrant's oneshot",
        ops: n as u64,
        target: Some(0.75),
        check: "sum of replies (2i+1) = N^2",
        expect: (n as u64) * (n as u64),
        kind: Kind::Sync(SyncKind::RequestReply { n }, Exec::SpindleMt),
    });
    let (tasks, per, permits) = (16, q(5_000, 500), 2);
    v.push(Spec {
        name: "semaphore_contended",
        op: "one acquire + release of a 2-permit semaphore, 16 tasks (every 32nd holds across a yield)",
        ops: (tasks * per) as u64,
        target: Some(1.0),
        check: "acquisitions counted under the permit",
        expect: (tasks * per) as u64,
        kind: Kind::Sync(SyncKind::SemaphoreContended { tasks, per, permits }, Exec::SpindleMt),
    });
    let (tasks, per) = (16, q(5_000, 500));
    for (name, exec) in [("mutex_contended", Exec::SpindleMt), ("mutex_contended_on_tokio", Exec::TokioMt)] {
        v.push(Spec {
            name,
            op: "one lock + increment + unlock, 16 tasks (every 32nd holds across a yield)",
            ops: (tasks * per) as u64,
            target: Some(1.0),
            check: "counter value",
            expect: (tasks * per) as u64,
            kind: Kind::Sync(SyncKind::MutexContended { tasks, per }, exec),
        });
    }
    v
}

/// Extra targets against named peers (PERF.md), besides the best-peer target in the spec.
pub fn peer_targets(kind: SyncKind) -> &'static [(&'static str, f64)] {
    match kind {
        SyncKind::MpscContended { .. } => &[("tokio", 0.7), ("flume", 1.0)],
        _ => &[],
    }
}

/// The primitive an entrant uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Imp {
    Spindle,
    Tokio,
    Flume,
    AsyncChannel,
    AsyncLock,
    Futures,
}

impl Imp {
    fn label(self) -> &'static str {
        match self {
            Imp::Spindle => "spindle",
            Imp::Tokio => "tokio",
            Imp::Flume => "flume",
            Imp::AsyncChannel => "async-channel",
            Imp::AsyncLock => "async-lock",
            Imp::Futures => "futures",
        }
    }
}

/// One entrant of a sync row: a primitive on the row's executor.
pub struct Entrant {
    imp: Imp,
    exec: Exec,
}

static SPINDLE_MT: OnceLock<Spindle> = OnceLock::new();
static TOKIO_MT: OnceLock<Tokio> = OnceLock::new();

/// The entrants of a row, spindle's first (flagged `true`).
pub fn entrants(kind: SyncKind, exec: Exec) -> Vec<(Box<dyn crate::Bench>, bool)> {
    let imps: &[Imp] = match kind {
        SyncKind::MpscContended { .. } | SyncKind::MpscUnbounded { .. } => {
            &[Imp::Spindle, Imp::Tokio, Imp::Flume, Imp::AsyncChannel]
        }
        SyncKind::RequestReply { .. } => &[Imp::Spindle, Imp::Tokio, Imp::Futures, Imp::Flume],
        SyncKind::SemaphoreContended { .. } => &[Imp::Spindle, Imp::Tokio, Imp::AsyncLock],
        SyncKind::MutexContended { .. } => &[Imp::Spindle, Imp::Tokio, Imp::AsyncLock, Imp::Futures],
    };
    imps.iter().map(|&imp| (Box::new(Entrant { imp, exec }) as Box<dyn crate::Bench>, imp == Imp::Spindle)).collect()
}

impl crate::Bench for Entrant {
    fn label(&self) -> &'static str {
        self.imp.label()
    }

    fn once(&self, kind: Kind) -> u64 {
        let Kind::Sync(k, _) = kind else { unreachable!("sync entrants only run sync rows") };
        match self.exec {
            Exec::SpindleMt => run(SPINDLE_MT.get_or_init(|| Spindle::multi_thread(2)), k, self.imp),
            Exec::TokioMt => run(TOKIO_MT.get_or_init(|| Tokio::multi_thread(2)), k, self.imp),
        }
    }
}

fn run<R: Rt>(rt: &R, kind: SyncKind, imp: Imp) -> u64 {
    match kind {
        SyncKind::MpscContended { producers, per, cap } => match imp {
            Imp::Spindle => rt.run(mpsc_contended::<R, SpindleChan>(producers, per, cap)),
            Imp::Tokio => rt.run(mpsc_contended::<R, TokioChan>(producers, per, cap)),
            Imp::Flume => rt.run(mpsc_contended::<R, FlumeChan>(producers, per, cap)),
            Imp::AsyncChannel => rt.run(mpsc_contended::<R, AsyncChan>(producers, per, cap)),
            _ => unreachable!(),
        },
        SyncKind::MpscUnbounded { producers, per } => match imp {
            Imp::Spindle => rt.run(mpsc_unbounded::<R, SpindleChan>(producers, per)),
            Imp::Tokio => rt.run(mpsc_unbounded::<R, TokioChan>(producers, per)),
            Imp::Flume => rt.run(mpsc_unbounded::<R, FlumeChan>(producers, per)),
            Imp::AsyncChannel => rt.run(mpsc_unbounded::<R, AsyncChan>(producers, per)),
            _ => unreachable!(),
        },
        SyncKind::RequestReply { n } => match imp {
            Imp::Spindle => rt.run(request_reply::<R, SpindleChan>(n)),
            Imp::Tokio => rt.run(request_reply::<R, TokioChan>(n)),
            Imp::Futures => rt.run(request_reply::<R, FuturesPrims>(n)),
            Imp::Flume => rt.run(request_reply::<R, FlumeChan>(n)),
            _ => unreachable!(),
        },
        SyncKind::SemaphoreContended { tasks, per, permits } => match imp {
            Imp::Spindle => rt.run(semaphore_contended::<R, SpindleChan>(tasks, per, permits)),
            Imp::Tokio => rt.run(semaphore_contended::<R, TokioChan>(tasks, per, permits)),
            Imp::AsyncLock => rt.run(semaphore_contended::<R, AsyncLockPrims>(tasks, per, permits)),
            _ => unreachable!(),
        },
        SyncKind::MutexContended { tasks, per } => match imp {
            Imp::Spindle => rt.run(mutex_contended::<R, SpindleChan>(tasks, per)),
            Imp::Tokio => rt.run(mutex_contended::<R, TokioChan>(tasks, per)),
            Imp::AsyncLock => rt.run(mutex_contended::<R, AsyncLockPrims>(tasks, per)),
            Imp::Futures => rt.run(mutex_contended::<R, FuturesPrims>(tasks, per)),
            _ => unreachable!(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// The primitive traits, one implementation per library.

/// A bounded MPSC channel of `u64`.
trait Bounded: 'static {
    type Tx: Clone + Send + Sync + 'static;
    type Rx: Send + 'static;
    fn bounded(cap: usize) -> (Self::Tx, Self::Rx);
    fn send(tx: &Self::Tx, v: u64) -> impl Future<Output = ()> + Send + '_;
    fn recv(rx: &mut Self::Rx) -> impl Future<Output = Option<u64>> + Send + '_;
}

/// An unbounded MPSC channel of `u64`.
trait Unbounded: 'static {
    type UTx: Clone + Send + Sync + 'static;
    type URx: Send + 'static;
    fn unbounded() -> (Self::UTx, Self::URx);
    fn usend(tx: &Self::UTx, v: u64);
    fn urecv(rx: &mut Self::URx) -> impl Future<Output = Option<u64>> + Send + '_;
}

/// A oneshot channel of `u64`.
trait Oneshot: 'static {
    type OTx: Send + 'static;
    type ORx: Send + 'static;
    fn oneshot() -> (Self::OTx, Self::ORx);
    fn osend(tx: Self::OTx, v: u64);
    fn orecv(rx: Self::ORx) -> impl Future<Output = u64> + Send;
}

/// An async counting semaphore.
trait Sem: 'static {
    type S: Send + Sync + 'static;
    fn sem(permits: usize) -> Self::S;
    /// Acquires one permit, runs `f` while holding it (it may await), releases.
    fn with_permit<'a, F: Future<Output = ()> + Send + 'a>(
        s: &'a Self::S,
        f: F,
    ) -> impl Future<Output = ()> + Send + 'a;
}

/// An async mutex around a `u64`.
trait Lock: 'static {
    type M: Send + Sync + 'static;
    fn mutex() -> Self::M;
    /// Locks, adds one, and (if `hold`) yields while holding the lock.
    fn bump<R: Rt>(m: &Self::M, hold: bool) -> impl Future<Output = ()> + Send + '_;
    fn value(m: &Self::M) -> impl Future<Output = u64> + Send + '_;
}

struct SpindleChan;
struct TokioChan;
struct FlumeChan;
struct AsyncChan;
struct FuturesPrims;
struct AsyncLockPrims;

impl Bounded for SpindleChan {
    type Tx = spindle::sync::mpsc::Sender<u64>;
    type Rx = spindle::sync::mpsc::Receiver<u64>;
    fn bounded(cap: usize) -> (Self::Tx, Self::Rx) {
        spindle::sync::mpsc::channel(cap)
    }
    async fn send(tx: &Self::Tx, v: u64) {
        tx.send(v).await.expect("receiver gone")
    }
    async fn recv(rx: &mut Self::Rx) -> Option<u64> {
        rx.recv().await
    }
}

impl Bounded for TokioChan {
    type Tx = tokio::sync::mpsc::Sender<u64>;
    type Rx = tokio::sync::mpsc::Receiver<u64>;
    fn bounded(cap: usize) -> (Self::Tx, Self::Rx) {
        tokio::sync::mpsc::channel(cap)
    }
    async fn send(tx: &Self::Tx, v: u64) {
        tx.send(v).await.expect("receiver gone")
    }
    async fn recv(rx: &mut Self::Rx) -> Option<u64> {
        rx.recv().await
    }
}

impl Bounded for FlumeChan {
    type Tx = flume::Sender<u64>;
    type Rx = flume::Receiver<u64>;
    fn bounded(cap: usize) -> (Self::Tx, Self::Rx) {
        flume::bounded(cap)
    }
    async fn send(tx: &Self::Tx, v: u64) {
        tx.send_async(v).await.expect("receiver gone")
    }
    async fn recv(rx: &mut Self::Rx) -> Option<u64> {
        rx.recv_async().await.ok()
    }
}

impl Bounded for AsyncChan {
    type Tx = async_channel::Sender<u64>;
    type Rx = async_channel::Receiver<u64>;
    fn bounded(cap: usize) -> (Self::Tx, Self::Rx) {
        async_channel::bounded(cap)
    }
    async fn send(tx: &Self::Tx, v: u64) {
        tx.send(v).await.expect("receiver gone")
    }
    async fn recv(rx: &mut Self::Rx) -> Option<u64> {
        rx.recv().await.ok()
    }
}

impl Unbounded for SpindleChan {
    type UTx = spindle::sync::mpsc::UnboundedSender<u64>;
    type URx = spindle::sync::mpsc::UnboundedReceiver<u64>;
    fn unbounded() -> (Self::UTx, Self::URx) {
        spindle::sync::mpsc::unbounded_channel()
    }
    fn usend(tx: &Self::UTx, v: u64) {
        tx.send(v).expect("receiver gone")
    }
    async fn urecv(rx: &mut Self::URx) -> Option<u64> {
        rx.recv().await
    }
}

impl Unbounded for TokioChan {
    type UTx = tokio::sync::mpsc::UnboundedSender<u64>;
    type URx = tokio::sync::mpsc::UnboundedReceiver<u64>;
    fn unbounded() -> (Self::UTx, Self::URx) {
        tokio::sync::mpsc::unbounded_channel()
    }
    fn usend(tx: &Self::UTx, v: u64) {
        tx.send(v).expect("receiver gone")
    }
    async fn urecv(rx: &mut Self::URx) -> Option<u64> {
        rx.recv().await
    }
}

impl Unbounded for FlumeChan {
    type UTx = flume::Sender<u64>;
    type URx = flume::Receiver<u64>;
    fn unbounded() -> (Self::UTx, Self::URx) {
        flume::unbounded()
    }
    fn usend(tx: &Self::UTx, v: u64) {
        tx.send(v).expect("receiver gone")
    }
    async fn urecv(rx: &mut Self::URx) -> Option<u64> {
        rx.recv_async().await.ok()
    }
}

impl Unbounded for AsyncChan {
    type UTx = async_channel::Sender<u64>;
    type URx = async_channel::Receiver<u64>;
    fn unbounded() -> (Self::UTx, Self::URx) {
        async_channel::unbounded()
    }
    fn usend(tx: &Self::UTx, v: u64) {
        tx.try_send(v).expect("receiver gone")
    }
    async fn urecv(rx: &mut Self::URx) -> Option<u64> {
        rx.recv().await.ok()
    }
}

impl Oneshot for SpindleChan {
    type OTx = spindle::sync::oneshot::Sender<u64>;
    type ORx = spindle::sync::oneshot::Receiver<u64>;
    fn oneshot() -> (Self::OTx, Self::ORx) {
        spindle::sync::oneshot::channel()
    }
    fn osend(tx: Self::OTx, v: u64) {
        let _ = tx.send(v);
    }
    async fn orecv(rx: Self::ORx) -> u64 {
        rx.await.expect("no reply")
    }
}

impl Oneshot for TokioChan {
    type OTx = tokio::sync::oneshot::Sender<u64>;
    type ORx = tokio::sync::oneshot::Receiver<u64>;
    fn oneshot() -> (Self::OTx, Self::ORx) {
        tokio::sync::oneshot::channel()
    }
    fn osend(tx: Self::OTx, v: u64) {
        let _ = tx.send(v);
    }
    async fn orecv(rx: Self::ORx) -> u64 {
        rx.await.expect("no reply")
    }
}

impl Oneshot for FuturesPrims {
    type OTx = futures::channel::oneshot::Sender<u64>;
    type ORx = futures::channel::oneshot::Receiver<u64>;
    fn oneshot() -> (Self::OTx, Self::ORx) {
        futures::channel::oneshot::channel()
    }
    fn osend(tx: Self::OTx, v: u64) {
        let _ = tx.send(v);
    }
    async fn orecv(rx: Self::ORx) -> u64 {
        rx.await.expect("no reply")
    }
}

/// flume has no oneshot; a `bounded(1)` channel is what its users reach for.
impl Oneshot for FlumeChan {
    type OTx = flume::Sender<u64>;
    type ORx = flume::Receiver<u64>;
    fn oneshot() -> (Self::OTx, Self::ORx) {
        flume::bounded(1)
    }
    fn osend(tx: Self::OTx, v: u64) {
        let _ = tx.try_send(v);
    }
    async fn orecv(rx: Self::ORx) -> u64 {
        rx.recv_async().await.expect("no reply")
    }
}

impl Sem for SpindleChan {
    type S = spindle::sync::Semaphore;
    fn sem(permits: usize) -> Self::S {
        spindle::sync::Semaphore::new(permits)
    }
    async fn with_permit<'a, F: Future<Output = ()> + Send + 'a>(s: &'a Self::S, f: F) {
        let _p = s.acquire().await.expect("closed");
        f.await
    }
}

impl Sem for TokioChan {
    type S = tokio::sync::Semaphore;
    fn sem(permits: usize) -> Self::S {
        tokio::sync::Semaphore::new(permits)
    }
    async fn with_permit<'a, F: Future<Output = ()> + Send + 'a>(s: &'a Self::S, f: F) {
        let _p = s.acquire().await.expect("closed");
        f.await
    }
}

impl Sem for AsyncLockPrims {
    type S = async_lock::Semaphore;
    fn sem(permits: usize) -> Self::S {
        async_lock::Semaphore::new(permits)
    }
    async fn with_permit<'a, F: Future<Output = ()> + Send + 'a>(s: &'a Self::S, f: F) {
        let _p = s.acquire().await;
        f.await
    }
}

impl Lock for SpindleChan {
    type M = spindle::sync::Mutex<u64>;
    fn mutex() -> Self::M {
        spindle::sync::Mutex::new(0)
    }
    async fn bump<R: Rt>(m: &Self::M, hold: bool) {
        let mut g = m.lock().await;
        *g += 1;
        if hold {
            R::yield_now().await;
        }
    }
    async fn value(m: &Self::M) -> u64 {
        *m.lock().await
    }
}

impl Lock for TokioChan {
    type M = tokio::sync::Mutex<u64>;
    fn mutex() -> Self::M {
        tokio::sync::Mutex::new(0)
    }
    async fn bump<R: Rt>(m: &Self::M, hold: bool) {
        let mut g = m.lock().await;
        *g += 1;
        if hold {
            R::yield_now().await;
        }
    }
    async fn value(m: &Self::M) -> u64 {
        *m.lock().await
    }
}

impl Lock for AsyncLockPrims {
    type M = async_lock::Mutex<u64>;
    fn mutex() -> Self::M {
        async_lock::Mutex::new(0)
    }
    async fn bump<R: Rt>(m: &Self::M, hold: bool) {
        let mut g = m.lock().await;
        *g += 1;
        if hold {
            R::yield_now().await;
        }
    }
    async fn value(m: &Self::M) -> u64 {
        *m.lock().await
    }
}

impl Lock for FuturesPrims {
    type M = futures::lock::Mutex<u64>;
    fn mutex() -> Self::M {
        futures::lock::Mutex::new(0)
    }
    async fn bump<R: Rt>(m: &Self::M, hold: bool) {
        let mut g = m.lock().await;
        *g += 1;
        if hold {
            R::yield_now().await;
        }
    }
    async fn value(m: &Self::M) -> u64 {
        *m.lock().await
    }
}

// ---------------------------------------------------------------------------------------------
// The workloads, each written once.

async fn mpsc_contended<R: Rt, C: Bounded>(producers: usize, per: usize, cap: usize) -> u64 {
    let (tx, mut rx) = C::bounded(cap);
    for p in 0..producers {
        let tx = tx.clone();
        R::spawn_detached(async move {
            let base = (p * per) as u64;
            for i in 0..per as u64 {
                C::send(&tx, base + i).await;
            }
        });
    }
    drop(tx);
    let (mut sum, mut n) = (0u64, 0usize);
    while let Some(v) = C::recv(&mut rx).await {
        sum += v;
        n += 1;
    }
    if n != producers * per {
        return u64::MAX; // fails the check
    }
    sum
}

async fn mpsc_unbounded<R: Rt, C: Unbounded>(producers: usize, per: usize) -> u64 {
    let (tx, mut rx) = C::unbounded();
    for p in 0..producers {
        let tx = tx.clone();
        R::spawn_detached(async move {
            let base = (p * per) as u64;
            for i in 0..per as u64 {
                C::usend(&tx, base + i);
                if i % 256 == 255 {
                    // Let the consumer run now and then, as a real producer would.
                    R::yield_now().await;
                }
            }
        });
    }
    drop(tx);
    let (mut sum, mut n) = (0u64, 0usize);
    while let Some(v) = C::urecv(&mut rx).await {
        sum += v;
        n += 1;
    }
    if n != producers * per {
        return u64::MAX;
    }
    sum
}

async fn request_reply<R: Rt, O: Oneshot>(n: usize) -> u64 {
    use futures::StreamExt;
    let (req_tx, mut req_rx) = futures::channel::mpsc::unbounded::<(u64, O::OTx)>();
    let server = R::spawn(async move {
        let mut served = 0u64;
        while let Some((x, reply)) = req_rx.next().await {
            O::osend(reply, 2 * x + 1);
            served += 1;
        }
        served
    });
    let mut sum = 0;
    for i in 0..n as u64 {
        let (tx, rx) = O::oneshot();
        req_tx.unbounded_send((i, tx)).expect("server gone");
        sum += O::orecv(rx).await;
    }
    drop(req_tx);
    if server.await != n as u64 {
        return u64::MAX;
    }
    sum
}

async fn semaphore_contended<R: Rt, S: Sem>(tasks: usize, per: usize, permits: usize) -> u64 {
    let sem = Arc::new(S::sem(permits));
    let inside = Arc::new(AtomicU64::new(0));
    let count = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (sem, inside, count) = (sem.clone(), inside.clone(), count.clone());
            R::spawn(async move {
                for i in 0..per {
                    let (inside, count) = (&inside, &count);
                    S::with_permit(&sem, async move {
                        let now = inside.fetch_add(1, Ordering::Relaxed) + 1;
                        assert!(now <= permits as u64, "semaphore let too many in");
                        count.fetch_add(1, Ordering::Relaxed);
                        if i % 32 == 31 {
                            R::yield_now().await;
                        }
                        inside.fetch_sub(1, Ordering::Relaxed);
                    })
                    .await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await;
    }
    count.load(Ordering::Relaxed)
}

async fn mutex_contended<R: Rt, L: Lock>(tasks: usize, per: usize) -> u64 {
    let m = Arc::new(L::mutex());
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let m = m.clone();
            R::spawn(async move {
                for i in 0..per {
                    L::bump::<R>(&m, i % 32 == 31).await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await;
    }
    L::value(&m).await
}
