//! Which worker serves the two ends of an in-process loopback TCP connection on a multi-thread
//! runtime: one worker, picked when either end is first used.
//!
//! # Why
//!
//! Over loopback the kernel does the receiving socket's TCP work in the sender's system call.
//! When the two ends of a connection are served by different workers, every message is sent on
//! one core, processed into the peer's socket there, and read on the other core: socket state
//! and buffers bounce between the cores' caches, and every wakeup crosses them. Measured on echo
//! over two workers (64 connections, client and server in one process), ns per round trip:
//! epoll 3247 -> 2122, io_uring 2849 -> 2002, with each connection's ends on one worker.
//! Where the ends are created says nothing about where they will be used (a task often connects
//! many streams and hands each to a task of its own, and accepted connections are spread over the
//! workers), so the ends are placed when one of them is first used.
//!
//! # Contract
//!
//! - Each multi-thread runtime owns one [`Pairs`]: ends of loopback connections whose other end
//!   has not been seen, by the connecting socket's local address (the accepted socket's peer
//!   address). A connecting end joins once its local port is bound (epoll: after the `connect`
//!   syscall; io_uring: once the connect op completed), an accepted end when accepted; whichever
//!   comes second finds the first's [`Placement`], and both are then *matched*. Entries are weak:
//!   a connection with another process is never matched, and its entry dies with its socket (dead
//!   entries are pruned as the map grows).
//! - An accepted end waits in the map only while a loopback connect of this runtime is in flight
//!   ([`Pairs::connect_started`] to its [`ConnectInFlight::join`] or drop, counted under the map's
//!   lock). Its peer's connect was started before the kernel could queue the connection for
//!   accept, so a peer in this runtime has either joined already (and is found) or is still
//!   counted. With no connect in flight the peer is another process's, and the accepted end gets
//!   no placement at all: a server whose loopback clients are other processes (a local proxy or
//!   load generator) keeps no entry and no [`Placement`] per connection (about 95 heap bytes).
//! - The placement picks a reactor once, when either end first asks: for a matched pair or an
//!   accepted end, the runtime's workers' reactors in turn (as for accepted connections); for a
//!   connecting end still alone, the worker it is used on (as for any connected socket). Outside
//!   the runtime's threads, the reactor the asking end was registered with.
//! - Who asks: on epoll, both ends' registrations arm their readiness watch lazily, on the
//!   placement's reactor. On io_uring, the owned-buffer ops of a matched end go to the
//!   placement's ring (other sockets' ops go to the ring of the thread polling them, when it
//!   runs for the socket's runtime: `driver::uring_reactor_near`); a task
//!   follows the ring its op completes on, so both ends' tasks settle on that worker (an op
//!   submitted from another thread is handed over to the ring's owner, once per migration).
//! - Only a hint: a wrong or missed match costs speed, never correctness. Ports are reused only
//!   once their socket is closed, so a live entry found by a peer address is that peer's.
//! - The trade-off: two ends that each do much work per message (more than the cross-core cost
//!   of a message, a few microseconds) no longer run on two cores at once. Work stealing still
//!   moves a task away when its worker is busy, but the task's next wake brings it back.

use spindle_core::loom::unmodelled::{AtomicBool, Ordering::Relaxed};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::Reactor;

/// Which end of a connection a socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Connecting,
    Accepted,
}

impl End {
    fn other(self) -> End {
        match self {
            End::Connecting => End::Accepted,
            End::Accepted => End::Connecting,
        }
    }
}

/// How a registration is placed: as one end of a loopback pair (the [`Placement`] both ends
/// share), or, for a socket created outside the cores of the per-core runtime whose address is
/// `runtime`, by its first user: its readiness is watched by the reactor of the core that first
/// waits on it, or by the one it was registered with if that wait is not on one of the
/// runtime's cores. Without it, such a socket stays with the core it was dealt to at creation,
/// and every event of a task on another core crosses cores. A first-user placement has nothing
/// to share, so it is kept inline (it was a 64-byte allocation per socket).
pub(crate) enum Placed {
    Pair(Arc<Placement>),
    FirstUser { runtime: usize },
}

impl Placed {
    /// The reactor to arm the readiness watch on, `fallback` being the one the registration was
    /// made on: decided now (first user) or by the pair's first asker.
    pub(crate) fn watch_reactor(&self, fallback: &Arc<Reactor>) -> Arc<Reactor> {
        match self {
            Placed::Pair(p) => p.reactor(fallback).clone(),
            Placed::FirstUser { runtime } => crate::rt::core_reactor_of(*runtime).unwrap_or_else(|| fallback.clone()),
        }
    }

    /// The pair's placement once both ends are known to be in this runtime.
    pub(crate) fn matched_pair(&self) -> Option<&Placement> {
        match self {
            Placed::Pair(p) if p.is_matched() => Some(p),
            _ => None,
        }
    }
}

/// The reactor the two ends of one connection share (see the module contract).
pub(crate) struct Placement {
    reactor: OnceLock<Arc<Reactor>>,
    /// The end that made this placement (the other end, if it comes, joins it).
    end: End,
    /// Both ends are this runtime's.
    matched: AtomicBool,
    /// The [`Pairs::id`] of the runtime's pairs: which runtime's worker may decide (an identity
    /// only, never dereferenced).
    runtime: usize,
}

impl Placement {
    /// The reactor both ends register with: decided by the first caller (see the contract),
    /// `fallback` being the reactor the caller's registration was made on.
    pub(crate) fn reactor(&self, fallback: &Arc<Reactor>) -> &Arc<Reactor> {
        self.reactor.get_or_init(|| {
            // A connection in the runtime, or an accepted one (whose peer may still join): the
            // workers' reactors in turn, as for accepted connections. A connecting end whose
            // peer is elsewhere: where its user runs, as for any connected socket.
            let spread = self.end == End::Accepted || self.is_matched();
            crate::rt::placement_reactor(self.runtime, spread).unwrap_or_else(|| fallback.clone())
        })
    }

    /// Whether both ends are known to be in this runtime.
    pub(crate) fn is_matched(&self) -> bool {
        self.matched.load(Relaxed)
    }
}

/// One runtime's connection ends awaiting their other ends (see the module contract).
#[derive(Default)]
pub(crate) struct Pairs {
    /// Shared with the [`ConnectInFlight`] guards, which may outlive a borrow of the runtime.
    waiting: Arc<Mutex<PairsInner>>,
}

#[derive(Default)]
struct PairsInner {
    /// Loopback connects of this runtime started and not yet joined or given up: while there is
    /// none, an accepted end's peer cannot be in this runtime.
    connects_in_flight: usize,
    /// By the connecting end's local address (the accepted end's peer address), packed by
    /// [`pair_key`] with the waiting end in the top bit ([`end_key`]): 16-byte entries instead of
    /// 40 (an accepted end waits here while a connect is in flight and its peer has not shown up).
    by_client_addr: HashMap<u64, Weak<Placement>>,
    /// Prune dead entries when the map reaches this size (twice the live count at the last
    /// prune, at least 64): amortized O(1) per entry.
    prune_at: usize,
}

impl Pairs {
    /// The identity of these pairs (and of their runtime) that [`Placement::runtime`] records.
    pub(crate) fn id(&self) -> usize {
        id_of(&self.waiting)
    }

    /// Counts a loopback connect as in flight until the returned guard joins or is dropped: call
    /// it before the connect is issued (see the module contract).
    pub(crate) fn connect_started(&self) -> ConnectInFlight {
        lock(&self.waiting).connects_in_flight += 1;
        ConnectInFlight { waiting: Some(self.waiting.clone()) }
    }

    /// The placement of an accepted socket whose peer (the connecting end) has the address
    /// `client`: the connecting end's, if that one is waiting (then both are matched); else, while
    /// a connect of this runtime is in flight, a new one the connecting end may join; else none
    /// (the peer is another process's).
    pub(crate) fn join_accepted(&self, client: SocketAddr) -> Option<Arc<Placement>> {
        lock(&self.waiting).join(pair_key(&client), End::Accepted, self.id())
    }

    /// Entries held (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.waiting).by_client_addr.len()
    }

    /// Connects counted in flight (tests).
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        lock(&self.waiting).connects_in_flight
    }
}

impl PairsInner {
    /// `end` of the connection keyed `client` joins: the other end's placement if it waits,
    /// else a new waiting one, except for an accepted end while no connect is in flight.
    fn join(&mut self, client: u64, end: End, runtime: usize) -> Option<Arc<Placement>> {
        // Each end waits under a key of its own, so a lookup only ever upgrades the other end's
        // entry, which it returns: no `Arc<Placement>` is dropped under the lock (the last one
        // can hold the last reference to a reactor, whose drop may run arbitrary code).
        let theirs = end_key(client, end.other());
        if let Some(other) = self.by_client_addr.get(&theirs).and_then(Weak::upgrade) {
            self.by_client_addr.remove(&theirs);
            other.matched.store(true, Relaxed);
            return Some(other);
        }
        if end == End::Accepted && self.connects_in_flight == 0 {
            return None;
        }
        if self.by_client_addr.len() >= self.prune_at.max(64) {
            self.by_client_addr.retain(|_, p| p.strong_count() > 0);
            self.prune_at = 2 * self.by_client_addr.len();
        }
        let p = Arc::new(Placement { reactor: OnceLock::new(), end, matched: AtomicBool::new(false), runtime });
        self.by_client_addr.insert(end_key(client, end), Arc::downgrade(&p));
        Some(p)
    }
}

/// The map key of `end` of the connection whose connecting end's address is `client` (a
/// [`pair_key`], which leaves the top bit clear).
fn end_key(client: u64, end: End) -> u64 {
    match end {
        End::Connecting => client,
        End::Accepted => client | 1 << 63,
    }
}

/// [`Pairs::id`] of the pairs whose map is `waiting` (the guards hold the map, not the pairs).
fn id_of(waiting: &Arc<Mutex<PairsInner>>) -> usize {
    Arc::as_ptr(waiting) as usize
}

/// The map's lock; a panic elsewhere while it was held left nothing half-done that matters (the
/// map is only a hint), so a poisoned lock is used as it is.
fn lock(m: &Mutex<PairsInner>) -> std::sync::MutexGuard<'_, PairsInner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A loopback connect counted in flight by [`Pairs::connect_started`]: joins as the connecting
/// end once connected, or stops being counted when dropped (a failed or cancelled connect).
pub(crate) struct ConnectInFlight {
    /// The runtime's map; taken by [`join`](Self::join), so that a joined guard's drop counts
    /// nothing.
    waiting: Option<Arc<Mutex<PairsInner>>>,
}

impl ConnectInFlight {
    /// The connecting end (local address `local`) joins; in the same critical section its
    /// connect stops being counted, so an accepted end finds it or sees it counted.
    pub(crate) fn join(mut self, local: SocketAddr) -> Arc<Placement> {
        let waiting = self.waiting.take().expect("a guard joins once");
        let runtime = id_of(&waiting);
        let mut w = lock(&waiting);
        let placed = w.join(pair_key(&local), End::Connecting, runtime);
        w.connects_in_flight -= 1;
        drop(w);
        placed.expect("a connecting end always gets a placement")
    }
}

impl Drop for ConnectInFlight {
    fn drop(&mut self) {
        if let Some(waiting) = &self.waiting {
            lock(waiting).connects_in_flight -= 1;
        }
    }
}

/// Whether `addr` is a loopback address: only a connection to one can have both ends in this
/// process.
pub(crate) fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// A loopback address as one number: distinct addresses give distinct keys (an IPv4 address and
/// port in the low 48 bits; IPv6's one loopback address `::1` and port with bit 48 set; the top
/// bit is left for [`end_key`]). Only
/// loopback addresses reach the map (both ends check), so no two live ends share a key.
fn pair_key(addr: &SocketAddr) -> u64 {
    match addr {
        SocketAddr::V4(a) => (u64::from(u32::from(*a.ip())) << 16) | u64::from(a.port()),
        SocketAddr::V6(a) => (1 << 48) | (u64::from(a.ip().segments()[7]) << 16) | u64::from(a.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A connect counted in flight, joined at once as the connecting end of `port`.
    fn connecting(pairs: &Pairs, port: u16) -> Arc<Placement> {
        pairs.connect_started().join(addr(port))
    }

    #[test]
    fn the_two_ends_share_a_placement_whichever_comes_first() {
        let pairs = Pairs::default();
        // Connecting end first.
        let p = connecting(&pairs, 40000);
        assert_eq!(p.runtime, pairs.id());
        assert!(!p.is_matched());
        let q = pairs.join_accepted(addr(40000)).expect("the waiting connecting end");
        assert!(Arc::ptr_eq(&p, &q));
        assert!(p.is_matched());
        // Accepted end first, while its connect is in flight.
        let connect = pairs.connect_started();
        let p = pairs.join_accepted(addr(40001)).expect("a connect is in flight");
        assert!(!p.is_matched());
        let q = connect.join(addr(40001));
        assert!(Arc::ptr_eq(&p, &q));
        assert!(p.is_matched());
        assert_eq!(pairs.len(), 0, "a matched entry is taken");
        assert_eq!(pairs.in_flight(), 0);
        assert_eq!(Arc::strong_count(&pairs.waiting), 1, "joined guards let go of the map");
        // Same end twice (the first one's socket is still open): no match.
        let p = connecting(&pairs, 40002);
        let q = connecting(&pairs, 40002);
        assert!(!Arc::ptr_eq(&p, &q));
        assert!(!q.is_matched());
    }

    #[test]
    fn an_accepted_end_waits_only_while_a_connect_is_in_flight() {
        let pairs = Pairs::default();
        assert!(pairs.join_accepted(addr(40000)).is_none(), "no connect of this runtime: another process's peer");
        assert_eq!(pairs.len(), 0);
        let connect = pairs.connect_started();
        let waiting = pairs.join_accepted(addr(40001)).unwrap();
        // The connect fails or is cancelled: no longer counted.
        drop(connect);
        assert_eq!(pairs.in_flight(), 0);
        assert_eq!(Arc::strong_count(&pairs.waiting), 1, "dropped guards let go of the map");
        assert!(pairs.join_accepted(addr(40002)).is_none());
        // An end already waiting stays joinable while its socket lives.
        let q = connecting(&pairs, 40001);
        assert!(Arc::ptr_eq(&waiting, &q) && q.is_matched());
    }

    #[test]
    fn entries_of_closed_sockets_are_not_matched_and_are_pruned() {
        let pairs = Pairs::default();
        drop(connecting(&pairs, 40000));
        let _connect = pairs.connect_started();
        assert!(!pairs.join_accepted(addr(40000)).unwrap().is_matched(), "the connecting socket is gone");
        let live: Vec<_> = (0..10).map(|i| connecting(&pairs, 41000 + i)).collect();
        for i in 0..1000 {
            drop(pairs.join_accepted(addr(42000 + i)));
        }
        assert!(pairs.len() < 200, "dead entries pile up: {}", pairs.len());
        for i in 0..10 {
            let q = pairs.join_accepted(addr(41000 + i)).unwrap();
            assert!(Arc::ptr_eq(&live[i as usize], &q), "live entries survive pruning");
        }
    }
}
