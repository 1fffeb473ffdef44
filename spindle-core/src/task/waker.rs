//! Wakers point straight at the task header: cloning adds a reference, waking moves the task to
//! its scheduler, nothing allocates.

use core::ptr::NonNull;
use core::task::{RawWaker, RawWakerVTable, Waker};

use super::raw::Header;
use super::state::ToNotified;

static WAKER_VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake_by_val, wake_by_ref, drop_waker);

/// A waker for `ptr` that does not own a reference.
///
/// # Safety
/// The caller must keep a reference to the task alive for as long as the waker is used, and must
/// not drop the returned waker (wrap it in `ManuallyDrop`); clones made from it own references.
pub(crate) unsafe fn waker_ref(ptr: NonNull<Header>) -> Waker {
    // SAFETY: the vtable functions uphold the `RawWaker` contract for live task headers, and the
    // caller guarantees the task outlives this waker.
    unsafe { Waker::from_raw(RawWaker::new(ptr.as_ptr() as *const (), &WAKER_VTABLE)) }
}

/// # Safety: `data` is a live task header on which the caller holds a reference.
unsafe fn header<'a>(data: *const ()) -> &'a Header {
    // SAFETY: wakers are only built from live task headers (see `waker_ref` and `clone`).
    unsafe { &*(data as *const Header) }
}

unsafe fn clone(data: *const ()) -> RawWaker {
    // SAFETY: the waker being cloned holds (or borrows) a reference, so the header is live.
    unsafe { header(data) }.state.ref_inc();
    RawWaker::new(data, &WAKER_VTABLE)
}

unsafe fn wake_by_val(data: *const ()) {
    // SAFETY: this waker owns a reference, so the header is live.
    let h = unsafe { header(data) };
    // SAFETY: `data` is non-null: it came from a `NonNull<Header>`.
    let ptr = unsafe { NonNull::new_unchecked(data as *mut Header) };
    match h.state.transition_to_notified_by_val() {
        // SAFETY: our reference became the queue reference the scheduler takes over.
        ToNotified::Submit => unsafe { (h.vtable.schedule)(ptr) },
        ToNotified::DoNothing => {}
        // SAFETY: we dropped the last reference.
        ToNotified::Dealloc => unsafe { (h.vtable.dealloc)(ptr) },
    }
}

unsafe fn wake_by_ref(data: *const ()) {
    // SAFETY: the waker holds or borrows a reference, so the header is live.
    let h = unsafe { header(data) };
    match h.state.transition_to_notified_by_ref() {
        // SAFETY: the transition added the queue reference the scheduler takes over.
        ToNotified::Submit => unsafe { (h.vtable.schedule)(NonNull::new_unchecked(data as *mut Header)) },
        ToNotified::DoNothing | ToNotified::Dealloc => {}
    }
}

unsafe fn drop_waker(data: *const ()) {
    // SAFETY: the waker owns a reference, so the header is live until we drop it.
    let h = unsafe { header(data) };
    if h.state.ref_dec() {
        // SAFETY: that was the last reference.
        unsafe { (h.vtable.dealloc)(NonNull::new_unchecked(data as *mut Header)) };
    }
}
