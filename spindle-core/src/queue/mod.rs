//! Run queues for executors.
//!
//! # Contract
//!
//! - [`local`]: a bounded ring of [`local::CAPACITY`] entries per worker. Only its owner pushes and
//!   pops (FIFO); any other worker may steal half of it at once. When full, the owner moves half to
//!   the overflow queue it is given. No locks; the head word packs the steal cursor and the real
//!   head so a steal in progress is visible to the owner.
//! - [`inject`]: a multi-producer queue of tasks linked through their headers (no allocation per
//!   push). Producers push with one compare-and-swap and never block; consumers take a try-lock and
//!   simply skip when another consumer holds it (their `len` check stays correct for parking).
//!
//! Both are model-checked under loom (`spindle-core/tests/loom_*.rs`).

pub mod inject;
#[cfg(target_has_atomic = "64")]
pub mod local;
