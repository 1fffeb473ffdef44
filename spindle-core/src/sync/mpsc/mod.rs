//! Multi-producer, single-consumer channels: [`channel`] (bounded, with backpressure) and
//! [`unbounded_channel`].
//!
//! # Contract
//!
//! - Messages from one sender arrive in the order it sent them; messages from different senders
//!   arrive in the order their sends claimed a slot.
//! - Bounded: a send waits while the channel is full; waiting senders are served in FIFO order
//!   (capacity freed by the receiver goes to the oldest waiter). [`Sender::reserve`] takes the
//!   capacity first, so a message is never built or lost for want of room.
//! - Sending never locks: a slot is claimed with one atomic add in a list of 32-slot blocks that
//!   are reused ([`list`](self) module docs). The receiver never locks either, except to hand
//!   freed capacity to waiting senders.
//! - Drop semantics: when every sender is gone the receiver gets the remaining messages, then
//!   `None`. When the receiver is dropped or [`closed`](Receiver::close), every send fails and gives
//!   the message back ([`error::SendError`]), senders waiting for capacity wake with that error, and
//!   `closed()` futures complete; messages still queued are dropped with the receiver.
//! - `blocking_send`/`blocking_recv` (feature `std`) park the calling thread: for sync code.
//! - Cancel safety is documented on every async method.
//!
//! ```
//! use spindle::sync::mpsc;
//!
//! spindle::block_on(async {
//!     let (tx, mut rx) = mpsc::channel(16);
//!     let workers: Vec<_> = (0..4u64)
//!         .map(|w| {
//!             let tx = tx.clone();
//!             spindle::spawn(async move { tx.send(w * 10).await.unwrap() })
//!         })
//!         .collect();
//!     drop(tx);
//!     let mut sum = 0;
//!     while let Some(v) = rx.recv().await {
//!         sum += v;
//!     }
//!     assert_eq!(sum, 60);
//!     for w in workers {
//!         w.await.unwrap();
//!     }
//! });
//! ```

mod bounded;
mod chan;
pub mod error;
mod list;
mod unbounded;

pub use bounded::{channel, OwnedPermit, Permit, PermitIterator, Receiver, Sender};
pub use unbounded::{unbounded_channel, UnboundedReceiver, UnboundedSender};
