//! A `call_soon` handle while the loop holds it in its ready queue.
//!
//! The cyclic GC walks every tracked object of a generation on each pass.
//! With 100,000 callbacks pending, walking their handles was a large part
//! of what a `call_soon` cost with the GC on (benches/per_op.py). A handle
//! the loop holds is reachable through the loop, so while it is queued the
//! loop takes it off the GC's lists (`PyObject_GC_UnTrack`): the objects it
//! refers to then count as referred to from outside the GC's view, which
//! keeps them alive, as they must be.
//!
//! Three rules keep every cycle collectable, as it is on asyncio's loop:
//! - Before each collection ([`gc_start`], in `gc.callbacks`), every
//!   handle queued since the previous one that someone besides the loop
//!   holds goes back on the GC's lists. Only a handle no one else holds
//!   stays off them, and nothing hands such a handle out later (the ready
//!   queue is not exposed), so it stays the loop's alone until it runs.
//! - The loop's traverse reports the references of such a handle as its
//!   own ([`Queued::traverse`]): an unclosed loop dropped with callbacks
//!   pending (each refers back to the loop) is still found to be garbage.
//! - When the loop lets go of a handle that someone else still holds, the
//!   handle goes back on the GC's lists (`Drop`): a callback that keeps its
//!   own handle is collected once the handle has run.
//!
//! Timer handles are left as they are: most are held by their caller
//! (`asyncio.sleep`, `timeout`, `wait_for` keep theirs to cancel it), so
//! the first rule would put them back at once. So is a handle the loop did
//! not make (`_add_callback`, a reader's handle).

use crate::event_loop::LoopCore;
use crate::handles::Handle;
use pyo3::ffi;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyWeakrefReference};
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The loop's reference to a queued handle (see the module docs).
pub(crate) struct Queued(ManuallyDrop<Py<Handle>>);

impl Queued {
    /// Queues a handle the loop just made, off the GC's lists. The loop
    /// counts it as not yet checked by [`gc_start`].
    pub fn adopt(_py: Python<'_>, handle: Py<Handle>) -> Self {
        // SAFETY: the GIL is held (the token). `PyObject_GC_UnTrack`
        // accepts an untracked object, and pyo3 makes every pyclass a GC
        // type. The loop adopts only handles it makes, of its own class,
        // whose tp_dealloc (pyo3's) untracks with the same tolerant call,
        // so one may be freed untracked.
        unsafe { ffi::PyObject_GC_UnTrack(handle.as_ptr().cast()) };
        Self(ManuallyDrop::new(handle))
    }

    /// Queues a handle someone else made or still uses, left as it is.
    pub fn plain(handle: Py<Handle>) -> Self {
        Self(ManuallyDrop::new(handle))
    }

    /// For the loop's traverse: the handle, or, while only the loop holds
    /// it and it is off the GC's lists, what the handle refers to.
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        let ptr = self.0.as_ptr();
        // SAFETY: `ptr` is live (our reference), and whoever traverses the
        // loop holds the GIL. Both calls only read.
        let only_ours = unsafe { ffi::Py_REFCNT(ptr) == 1 && ffi::PyObject_GC_IsTracked(ptr) == 0 };
        if only_ours {
            self.0.get().traverse_fields(visit)
        } else {
            visit.call(&*self.0)
        }
    }

    /// Puts the handle back on the GC's lists if someone besides the loop
    /// holds it.
    pub fn track_if_shared(&self, py: Python<'_>) {
        track_if_shared(py, &self.0);
    }

    /// What `Drop` does, where the caller has the GIL's token: the run
    /// loop lets go of every handle it ran this way.
    pub fn release(self, py: Python<'_>) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so the reference
        // is moved out exactly once.
        let handle = unsafe { ManuallyDrop::take(&mut this.0) };
        track_if_shared(py, &handle);
        drop(handle.into_bound(py));
    }
}

fn track_if_shared(_py: Python<'_>, handle: &Py<Handle>) {
    let ptr = handle.as_ptr();
    // SAFETY: the GIL is held (the token) and `ptr` is live (the caller's
    // reference). `PyObject_GC_Track` wants an untracked object whose
    // fields are initialised, which a handle's are once it exists.
    unsafe {
        if ffi::Py_REFCNT(ptr) > 1 && ffi::PyObject_GC_IsTracked(ptr) == 0 {
            ffi::PyObject_GC_Track(ptr.cast());
        }
    }
}

impl Deref for Queued {
    type Target = Py<Handle>;

    fn deref(&self) -> &Py<Handle> {
        &self.0
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        // SAFETY: the reference is moved out here only, once.
        let handle = unsafe { ManuallyDrop::take(&mut self.0) };
        // The loop's queues are only touched with the GIL held, so this
        // attaches for free; it is here for soundness, not for speed.
        Python::attach(|py| {
            track_if_shared(py, &handle);
            drop(handle.into_bound(py));
        });
    }
}

/// The loops that have adopted handles, as weak references: the hook
/// must not keep a dropped loop alive.
static LOOPS: Mutex<Vec<Py<PyWeakrefReference>>> = Mutex::new(Vec::new());
static HOOKED: AtomicBool = AtomicBool::new(false);

/// Registers `loop_` with the hook before its first [`Queued::adopt`], and
/// installs the hook the first time. False if the loop cannot be watched
/// (it takes no weak references): it must then not adopt.
pub(crate) fn watch(loop_: &Bound<'_, LoopCore>) -> PyResult<bool> {
    let py = loop_.py();
    // Everything that allocates (and so may run a collection, and the
    // hook, which takes the lock) happens before the lock is taken.
    let Ok(weak) = PyWeakrefReference::new(loop_) else {
        return Ok(false);
    };
    if !HOOKED.load(Ordering::Relaxed) {
        let hook = pyo3::wrap_pyfunction!(gc_start, py)?;
        py.import("gc")?
            .getattr("callbacks")?
            .call_method1("append", (hook,))?;
        HOOKED.store(true, Ordering::Relaxed);
    }
    lock().push(weak.unbind());
    Ok(true)
}

fn lock() -> std::sync::MutexGuard<'static, Vec<Py<PyWeakrefReference>>> {
    LOOPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// In `gc.callbacks`: before a collection, each watched loop checks the
/// handles it queued since the last one (the first rule of the module
/// docs). Nothing here allocates a Python object, so no collection, and
/// no second call of the hook, can start while the lock is held.
#[pyfunction]
fn gc_start(py: Python<'_>, phase: &str, _info: &Bound<'_, PyDict>) {
    if phase != "start" {
        return;
    }
    lock().retain(|weak| {
        let Ok(Some(loop_)) = weak.bind(py).upgrade_as::<LoopCore>() else {
            return false; // dropped: forget it
        };
        // A loop busy in one of its own methods is reachable from that
        // call, so it cannot be collected now; it is checked next time.
        if let Ok(mut core) = loop_.try_borrow_mut() {
            core.check_queued(|q| q.track_if_shared(py));
        }
        true
    });
}
