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
//! The context a handle copied for itself (`context=None`, the common
//! case) goes off the GC's lists with it, as only the handle holds it: each
//! of the three rules covers it too (the hook puts back the context of a
//! shared handle, or a context someone reached on its own; the loop's
//! traverse looks through it to what it refers to; the loop puts it back
//! before letting go of its handle, always, since CPython frees a context
//! assuming it is on the GC's lists). `get_context()` puts it back before
//! handing it out.
//!
//! Timer handles follow other rules (parked.rs): most are held by their
//! caller (`asyncio.sleep`, `timeout`, `wait_for` keep theirs to cancel
//! it), so the first rule would put them back at once. A handle the loop
//! did not make (`_add_callback`, a reader's handle) is left as it is.

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
    pub fn adopt(py: Python<'_>, handle: Py<Handle>) -> Self {
        // SAFETY: the GIL is held (the token). `PyObject_GC_UnTrack`
        // accepts an untracked object, and pyo3 makes every pyclass a GC
        // type. The loop adopts only handles it makes, of its own class,
        // whose tp_dealloc (pyo3's) untracks with the same tolerant call,
        // so one may be freed untracked.
        unsafe { ffi::PyObject_GC_UnTrack(handle.as_ptr().cast()) };
        if let Some(context) = handle.get().copied_context(py) {
            // SAFETY: as above; a Context is a GC type. Its tp_dealloc
            // unlinks it from the GC's lists without checking that it is
            // on them, so it must be tracked again before it can be freed:
            // this handle holds it, and the loop tracks it again before it
            // lets go of the handle (`release`, `Drop`).
            unsafe { ffi::PyObject_GC_UnTrack(context.as_ptr().cast()) };
        }
        Self(ManuallyDrop::new(handle))
    }

    /// Queues a handle someone else made or still uses, left as it is.
    pub fn plain(handle: Py<Handle>) -> Self {
        Self(ManuallyDrop::new(handle))
    }

    /// For the loop's traverse: the handle, or, while only the loop holds
    /// it and it is off the GC's lists, what the handle refers to.
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        traverse_loops(&self.0, visit)
    }

    /// Puts the handle (and its context) back on the GC's lists if someone
    /// besides the loop holds it.
    pub fn track_if_shared(&self, py: Python<'_>) {
        track_if_shared(py, &self.0);
    }

    /// What `Drop` does, where the caller has the GIL's token.
    pub fn release(self, py: Python<'_>) {
        let_go(py, self.into_handle());
    }

    /// The loop's reference, out of the wrapper without its `Drop`.
    fn into_handle(self) -> Py<Handle> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so the reference
        // is moved out exactly once.
        unsafe { ManuallyDrop::take(&mut this.0) }
    }

    /// After the handle ran: emptied and pushed to `emptied` for reuse if
    /// the loop alone holds it (recycled.rs), else let go of as `Drop`
    /// does. What an emptied handle held is handed back, to be dropped.
    pub fn release_for_reuse(
        self,
        py: Python<'_>,
        emptied: &mut Vec<Py<Handle>>,
    ) -> Option<crate::recycled::Emptied> {
        let handle = self.into_handle();
        match crate::recycled::empty_if_alone(py, &handle) {
            Some(held) => {
                emptied.push(handle);
                Some(held)
            }
            None => {
                let_go(py, handle);
                None
            }
        }
    }
}

/// For the loop's traverse, of a handle it queued or keeps for reuse
/// (recycled.rs): while the loop alone holds it, off the GC's lists, what
/// the handle refers to, reported as the loop's; else the handle.
pub(crate) fn traverse_loops(
    handle: &Py<Handle>,
    visit: &PyVisit<'_>,
) -> Result<(), PyTraverseError> {
    let ptr = handle.as_ptr();
    // SAFETY: `ptr` is live (the loop's reference), and whoever traverses
    // the loop holds the GIL. Both calls only read.
    let only_ours = unsafe { ffi::Py_REFCNT(ptr) == 1 && ffi::PyObject_GC_IsTracked(ptr) == 0 };
    if only_ours {
        handle.get().traverse_fields(visit, true)
    } else {
        visit.call(handle)
    }
}

/// The loop's last use of a queued handle: whatever it kept off the GC's
/// lists goes back on them (the handle if shared; its own context always,
/// since dropping the handle may free it), then the reference is dropped.
#[inline]
fn let_go(py: Python<'_>, handle: Py<Handle>) {
    track_if_shared(py, &handle);
    if let Some(context) = handle.get().copied_context(py) {
        track(py, context.as_unbound());
    }
    drop(handle.into_bound(py));
}

#[inline]
fn track_if_shared(py: Python<'_>, handle: &Py<Handle>) {
    // More references than `ours`: held by someone else too.
    let shared = |ptr: *mut ffi::PyObject, ours: isize| {
        // SAFETY: the GIL is held (the token); `ptr` is live (a reference
        // the caller holds, or one the handle holds), and this only reads
        // its count.
        unsafe { ffi::Py_REFCNT(ptr) > ours }
    };
    // A new reference: the handle's and this one are ours.
    let context = handle.get().copied_context(py);
    // A shared handle may outlive the loop's reference, and whoever holds
    // it reaches its context; a context shared on its own (through
    // `gc.get_referents`) may be dropped after the handle.
    if shared(handle.as_ptr(), 1) {
        track(py, handle);
        if let Some(context) = &context {
            track(py, context.as_unbound());
        }
    } else if let Some(context) = context.filter(|c| shared(c.as_ptr(), 2)) {
        track(py, context.as_unbound());
    }
}

/// Puts `obj` back on the GC's lists if it is off them.
pub(crate) fn track<T>(_py: Python<'_>, obj: &Py<T>) {
    let ptr = obj.as_ptr();
    // SAFETY: the GIL is held (the token) and `ptr` is live (the caller's
    // reference). `PyObject_GC_Track` wants an object of a GC type (it
    // writes the header only those have: checked first, though only
    // handles and copied contexts are passed) that is untracked (checked:
    // it aborts on a tracked one) and complete, which they are once they
    // exist.
    unsafe {
        if ffi::PyObject_IS_GC(ptr) != 0 && ffi::PyObject_GC_IsTracked(ptr) == 0 {
            ffi::PyObject_GC_Track(ptr.cast());
        }
    }
}

/// Whether `obj`, a GC type, is on the GC's lists.
pub(crate) fn is_tracked<T>(obj: &Py<T>) -> bool {
    // SAFETY: only reads the object's GC header; `obj` is live (the
    // caller's reference), and whoever calls this holds the GIL (the
    // loop's traverse, or code with a token).
    unsafe { ffi::PyObject_GC_IsTracked(obj.as_ptr()) != 0 }
}

/// For the loop's traverse: visits what `obj` refers to, through its
/// type's own traverse, for an object kept off the GC's lists (a queued
/// handle's copied context) whose references count as the loop's.
pub(crate) fn traverse_untracked<T>(
    obj: &Py<T>,
    visit: &PyVisit<'_>,
) -> Result<(), PyTraverseError> {
    struct Forward<'a, 'b> {
        visit: &'a PyVisit<'b>,
        failed: Option<PyTraverseError>,
    }
    unsafe extern "C" fn forward(
        obj: *mut ffi::PyObject,
        arg: *mut std::ffi::c_void,
    ) -> std::ffi::c_int {
        // SAFETY: `arg` is the `Forward` below, alive and not otherwise
        // borrowed for the duration of the traverse call that passes it.
        let fwd = unsafe { &mut *arg.cast::<Forward<'_, '_>>() };
        if obj.is_null() {
            return 0;
        }
        // SAFETY: `Py<T>` is `repr(transparent)` over a non-null object
        // pointer (checked above), so a reference to the pointer is a
        // reference to a `Py`; it is only lent to the visit, never dropped.
        let as_py = unsafe { &*(&obj as *const *mut ffi::PyObject).cast::<Py<PyAny>>() };
        match fwd.visit.call(as_py) {
            Ok(()) => 0,
            Err(e) => {
                fwd.failed = Some(e);
                1
            }
        }
    }
    let ptr = obj.as_ptr();
    // SAFETY: `ptr` is live (the caller's reference) and the GC's caller
    // holds the GIL; reading its type's slot only reads.
    let Some(traverse) = (unsafe { (*ffi::Py_TYPE(ptr)).tp_traverse }) else {
        return Ok(());
    };
    let mut fwd = Forward {
        visit,
        failed: None,
    };
    // SAFETY: the type's own traverse on its own live instance, with a
    // visitproc that forwards to ours and the argument it expects.
    unsafe { traverse(ptr, forward, (&mut fwd as *mut Forward<'_, '_>).cast()) };
    match fwd.failed {
        Some(e) => Err(e),
        None => Ok(()),
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
        Python::attach(|py| let_go(py, handle));
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
