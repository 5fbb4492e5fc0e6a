//! A timer handle while the loop holds it in its heap.
//!
//! Every `sleep`, `timeout` and `wait_for` holds a timer handle, and so
//! does the program that keeps what `call_later` returned: the cyclic GC
//! walked each of them (and the context each copied) on every pass that
//! reached their generation. With the GC on, that was about half of what
//! scheduling 100k held timers cost (benches/per_op.py, the timers
//! workload), and the memory it touches is most of that.
//!
//! A timer that a running loop schedules is reachable for as long as it
//! sits in the heap: the loop is reachable from its own `run_forever`
//! call, and the heap from the loop. Nothing in a cycle through the
//! handle can be garbage meanwhile, so the GC need not see the handle:
//! the loop takes it, and the context it copied for itself, off the GC's
//! lists (`PyObject_GC_UnTrack`). An untracked object's references count
//! as coming from outside the GC's view, which keeps what it refers to
//! alive, as it must be; nothing is ever freed early. Two rules make sure
//! nothing that is garbage stays uncollected:
//! - A timer goes back on the GC's lists when it leaves the heap (it runs,
//!   or is dropped cancelled, or the loop closes), before the loop lets go
//!   of it: a cycle through a timer that ran or was cancelled is collected.
//! - When `run_forever` returns, every timer still in the heap goes back
//!   on the GC's lists: a loop that is not running may be dropped, with
//!   its timers, in a cycle, and is then found to be garbage as on
//!   asyncio's loop.
//!
//! A timer scheduled while the loop is not running (or runs only through
//! an overridden `_run_once`) stays on the GC's lists throughout.
//!
//! The copied context is looked after as `queued.rs` does: CPython frees
//! a context assuming it is on the GC's lists, so it goes back on them
//! whenever the handle leaves the heap, and before `get_context()` hands
//! it out.

use crate::handles::TimerHandle;
use crate::queued;
use pyo3::ffi;
use pyo3::prelude::*;
use std::mem::ManuallyDrop;
use std::ops::Deref;

/// The heap's reference to a timer handle (see the module docs).
pub(crate) struct Parked(ManuallyDrop<Py<TimerHandle>>);

impl Parked {
    /// Holds `timer` in the heap; off the GC's lists if `running`, which
    /// the caller says only while its loop runs `run_forever`.
    pub fn new(py: Python<'_>, timer: Py<TimerHandle>, running: bool) -> Self {
        if running {
            // SAFETY: the GIL is held (the token). `PyObject_GC_UnTrack`
            // accepts an untracked object, and pyo3 makes every pyclass a
            // GC type; pyo3's tp_dealloc untracks with the same tolerant
            // call, so a handle may be freed untracked.
            unsafe { ffi::PyObject_GC_UnTrack(timer.as_ptr().cast()) };
            if let Some(context) = timer.bind(py).as_super().get().copied_context(py) {
                // SAFETY: as above; a Context is a GC type. It must be on
                // the GC's lists again before it is freed (its tp_dealloc
                // unlinks it unchecked): the handle holds it until it
                // leaves the heap, when `track` puts it back, and
                // `get_context()` puts it back before handing it out.
                unsafe { ffi::PyObject_GC_UnTrack(context.as_ptr().cast()) };
            }
        }
        Self(ManuallyDrop::new(timer))
    }

    /// Puts the handle and its copied context back on the GC's lists, if
    /// they are off them. The handle stays in the heap.
    pub fn track(&self, py: Python<'_>) {
        queued::track(py, &*self.0);
        if let Some(context) = self.0.bind(py).as_super().get().copied_context(py) {
            queued::track(py, context.as_unbound());
        }
    }

    /// The handle, out of the heap: back on the GC's lists first.
    pub fn release(self, py: Python<'_>) -> Py<TimerHandle> {
        self.track(py);
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so the reference
        // is moved out exactly once.
        unsafe { ManuallyDrop::take(&mut this.0) }
    }
}

impl Deref for Parked {
    type Target = Py<TimerHandle>;

    fn deref(&self) -> &Py<TimerHandle> {
        &self.0
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        // The heap is only touched with the GIL held, so this attaches for
        // free; it is here for soundness, not for speed.
        Python::attach(|py| {
            self.track(py);
            // SAFETY: the reference is moved out here only, once.
            let timer = unsafe { ManuallyDrop::take(&mut self.0) };
            drop(timer.into_bound(py));
        });
    }
}
