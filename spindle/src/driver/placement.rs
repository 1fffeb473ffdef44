//! Where the two ends of an in-process loopback TCP connection watch readiness on a multi-thread
//! runtime on epoll: on one worker, the worker of whichever end first waits.
//!
//! # Why
//!
//! Over loopback the kernel does the receiving socket's TCP work in the sender's system call.
//! When the two ends of a connection are registered with different workers, every message is
//! sent on one core, processed into the peer's socket there, and read on the other core: socket
//! state and buffers bounce between the cores' caches, and every wakeup crosses them. Measured on
//! echo over two epoll workers (64 connections, client and server in one process): 3.5 us per
//! round trip with the ends on different workers, 2.1 us with each connection's ends on one.
//! Where the ends are created says nothing about where they will be used (a task often connects
//! many streams and hands each to a task of its own, and accepted connections are spread over the
//! workers), so the two ends are placed when one of them is first waited on.
//!
//! # Contract
//!
//! - Each multi-thread runtime owns one [`Pairs`]: connecting ends whose accepted end has not
//!   been seen yet, by the connecting socket's local address (which is the accepted socket's peer
//!   address). The connecting end enters itself right after its `connect` syscall; the accepting
//!   end takes the entry. Entries are weak: a connection to another process's listener is never
//!   accepted here, and its entry dies with its socket (dead entries are pruned as the map grows).
//! - Both ends share one [`Placement`]; their registrations are armed lazily and ask it for their
//!   reactor: the first asks decides (the worker it runs on, if that is one of this runtime's;
//!   else the reactor the registration was made on), the second follows. Tasks follow their
//!   sockets (a registration's events are dispatched by its reactor's worker, which wakes the
//!   task onto its own queue), so the two tasks then meet on that worker.
//! - Only a performance hint: a missed match (the accept ran before the connect entered itself,
//!   or the ends live in different runtimes) leaves the usual placement; a wrong one costs speed,
//!   never correctness. Ports are only reused once their socket is closed, so an entry found by
//!   a peer address is that peer's.
//! - Only epoll: on io_uring a socket's owned-buffer ops run on the ring of the thread that polls
//!   them, not on its registration's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::Reactor;

/// The reactor the two ends of one connection share (see the module contract).
pub(crate) struct Placement {
    reactor: OnceLock<Arc<Reactor>>,
    /// The accepted end was found: both ends are this runtime's.
    matched: AtomicBool,
    /// The address of the runtime's [`Pairs`]: which runtime's worker may decide (an identity
    /// only, never dereferenced).
    runtime: usize,
}

impl Placement {
    /// The reactor both ends register with: decided by the first caller (see the contract),
    /// `fallback` being the reactor the caller's registration was made on.
    pub(crate) fn reactor(&self, fallback: &Arc<Reactor>) -> Arc<Reactor> {
        self.reactor
            .get_or_init(|| {
                let spread = self.matched.load(Relaxed);
                crate::rt::placement_reactor(self.runtime, spread).unwrap_or_else(|| fallback.clone())
            })
            .clone()
    }
}

/// One runtime's connecting ends awaiting their accepted ends (see the module contract).
#[derive(Default)]
pub(crate) struct Pairs {
    waiting: Mutex<PairsInner>,
}

#[derive(Default)]
struct PairsInner {
    by_local_addr: HashMap<SocketAddr, Weak<Placement>>,
    /// Prune dead entries when the map reaches this size (twice the live count at the last
    /// prune, at least 64): amortized O(1) per entry.
    prune_at: usize,
}

impl Pairs {
    fn id(&self) -> usize {
        self as *const Pairs as usize
    }

    /// A connecting socket bound to `local` (its connect syscall made): its placement, shared
    /// with the accepted end if this runtime accepts it.
    pub(crate) fn connecting(&self, local: SocketAddr) -> Arc<Placement> {
        let p = Arc::new(Placement { reactor: OnceLock::new(), matched: AtomicBool::new(false), runtime: self.id() });
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if w.by_local_addr.len() >= w.prune_at.max(64) {
            w.by_local_addr.retain(|_, p| p.strong_count() > 0);
            w.prune_at = 2 * w.by_local_addr.len();
        }
        w.by_local_addr.insert(local, Arc::downgrade(&p));
        p
    }

    /// An accepted socket whose peer is `peer`: the placement of its connecting end, if that is
    /// a socket of this runtime that is still open.
    pub(crate) fn accepted(&self, peer: SocketAddr) -> Option<Arc<Placement>> {
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let p = w.by_local_addr.remove(&peer)?.upgrade()?;
        p.matched.store(true, Relaxed);
        Some(p)
    }

    /// Whether `placement` came from these pairs (tests).
    #[cfg(test)]
    pub(crate) fn owns(&self, placement: &Placement) -> bool {
        placement.runtime == self.id()
    }

    /// Entries held (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.waiting.lock().unwrap().by_local_addr.len()
    }
}

/// Whether `addr` is a loopback address: only a connection to one can have both ends in this
/// process.
pub(crate) fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn accepted_end_gets_the_connecting_ends_placement_once() {
        let pairs = Pairs::default();
        let p = pairs.connecting(addr(40000));
        assert!(pairs.owns(&p));
        let q = pairs.accepted(addr(40000)).expect("the connecting end is waiting");
        assert!(Arc::ptr_eq(&p, &q));
        assert!(pairs.accepted(addr(40000)).is_none(), "an entry is taken once");
        assert!(pairs.accepted(addr(40001)).is_none());
    }

    #[test]
    fn entries_of_closed_sockets_are_not_matched_and_are_pruned() {
        let pairs = Pairs::default();
        drop(pairs.connecting(addr(40000)));
        assert!(pairs.accepted(addr(40000)).is_none(), "the connecting socket is gone");
        let live: Vec<_> = (0..10).map(|i| pairs.connecting(addr(41000 + i))).collect();
        for i in 0..1000 {
            drop(pairs.connecting(addr(42000 + i)));
        }
        assert!(pairs.len() < 200, "dead entries pile up: {}", pairs.len());
        for i in 0..10 {
            let q = pairs.accepted(addr(41000 + i)).expect("live entries survive pruning");
            assert!(Arc::ptr_eq(&live[i as usize], &q));
        }
    }
}
