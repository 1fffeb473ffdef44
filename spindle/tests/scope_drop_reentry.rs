//! Dropping a `scope!` future while user destructors inside it call back into the scope: a
//! not-yet-run cleanup whose destructor defers another cleanup, whose destructor spawns a child.
//! Everything such destructors add must be dropped before the scope's memory is freed (it once
//! was dropped inside the freed scope's own destructor: a use after free).
//!
//! This binary's allocator keeps freed blocks and fills them with 0xA5 while a test runs, so a
//! use after free reads the pattern deterministically (an `Arc` count of 0xA5A5.. aborts) instead
//! of reading whatever the allocator put there. Its one test runs alone in the binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Waker};

struct PoisonOnFree;
static POISON: AtomicBool = AtomicBool::new(false);

// SAFETY: forwards to `System`; while `POISON` is on, freed blocks are overwritten and never
// handed back (so never reused), which is sound for any caller.
unsafe impl GlobalAlloc for PoisonOnFree {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's layout contract is `System`'s.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if POISON.load(SeqCst) {
            // SAFETY: `p` is a live block of `l.size()` bytes the caller gives up.
            unsafe { std::ptr::write_bytes(p, 0xA5, l.size()) };
        } else {
            // SAFETY: `p` came from `System.alloc` with `l`.
            unsafe { System.dealloc(p, l) }
        }
    }
}

#[global_allocator]
static ALLOC: PoisonOnFree = PoisonOnFree;

struct OnDrop<F: FnMut()>(F);
impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// Counts the drops of the children spawned from destructors.
struct Counted<'a>(&'a AtomicUsize);
impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

#[test]
fn destructors_that_spawn_or_defer_on_a_dropped_scope_are_run_before_it_is_freed() {
    POISON.store(true, SeqCst);
    let dropped = AtomicUsize::new(0);
    let data = vec![1u8, 2, 3];
    {
        let (data, dropped) = (&data, &dropped);
        let mut fut = Box::pin(spindle::scope!(|s| async move {
            // Dropped with the body: spawns a child on the scope being dropped.
            let _in_body = OnDrop(move || {
                let c = Counted(dropped);
                drop(s.spawn(async move {
                    let _c = c;
                    std::future::pending::<usize>().await + data.len()
                }));
            });
            // A cleanup that never runs; its destructor defers another, whose destructor spawns.
            let g1 = OnDrop(move || {
                let g2 = OnDrop(move || {
                    let c = Counted(dropped);
                    drop(s.spawn(async move {
                        let _c = c;
                        std::future::pending::<usize>().await + data.len()
                    }));
                });
                s.defer(async move {
                    let _g2 = &g2;
                });
            });
            s.defer(async move {
                let _g1 = &g1;
            });
            std::future::pending::<()>().await
        }));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        drop(fut);
    }
    POISON.store(false, SeqCst);
    // Both children spawned from destructors were dropped (cancelled), not leaked.
    assert_eq!(dropped.load(SeqCst), 2);
}
