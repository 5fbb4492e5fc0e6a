//! `call_soon` handles the loop reuses.
//!
//! Most handles are dropped by their caller at once: every task step and
//! future callback that C Tasks and Futures schedule returns a handle that
//! `_asyncio` decrefs before the loop runs it. Making a handle object and
//! freeing it again (the allocator, pyo3's initialiser and deallocator,
//! the GC header) was about a sixth of the instructions of a `call_soon`
//! chain hop (callgrind). So a handle that only the loop still holds when
//! it has run is emptied and kept, and the next `call_soon` fills it in
//! place of a new one.
//!
//! Reuse cannot be seen: only a handle no one else holds is kept (one
//! reference, no weak reference), so no one can reach it again; its class
//! has no `__dict__` that could hold something; it must be of the exact
//! class (not a subclass, whose instances might carry more) and made
//! outside debug mode (no traceback, no saved repr), so that everything
//! but its callback, arguments and context is as a new one's would be.
//! An emptied handle still refers to its loop: the loop's traverse looks
//! through the handles it keeps (while they are off the GC's lists and
//! its own alone), so an unclosed loop with handles kept is still found to
//! be garbage.

use crate::handles::Handle;
use pyo3::ffi;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::PyTypeInfo;

/// At most this many emptied handles wait per loop: enough for the
/// callbacks of one busy iteration, little memory when idle. Below the
/// default gen-0 threshold (700): with 1,024 kept, 1,000 `sleep(0)` tasks
/// started eight times the young collections in one measured run.
pub(crate) const KEPT: usize = 512;

/// The emptied handles a loop keeps.
#[derive(Default)]
pub(crate) struct Recycled(Vec<Py<Handle>>);

impl Recycled {
    pub fn pop(&mut self) -> Option<Py<Handle>> {
        self.0.pop()
    }

    /// How many more handles the loop may keep.
    pub fn room(&self) -> usize {
        KEPT.saturating_sub(self.0.len())
    }

    /// Keeps handles emptied by [`empty_if_alone`], no more than
    /// [`room`](Self::room) said.
    pub fn keep(&mut self, emptied: Vec<Py<Handle>>) {
        self.0.extend(emptied);
    }

    pub fn clear(&mut self) -> Vec<Py<Handle>> {
        std::mem::take(&mut self.0)
    }

    /// For the loop's traverse (`queued::traverse_loops`).
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.0
            .iter()
            .try_for_each(|h| crate::queued::traverse_loops(h, visit))
    }
}

/// Empties `handle` for reuse if no one else can reach it. What it held
/// is handed back, for the caller to drop at once, as asyncio drops a
/// handle that has run (dropping may run Python code, which must not find
/// the loop borrowed); its context is back on the GC's lists first, as the
/// loop kept a copied one off them (queued.rs).
pub(crate) fn empty_if_alone(py: Python<'_>, handle: &Py<Handle>) -> Option<Emptied> {
    let ptr = handle.as_ptr();
    // SAFETY: the GIL is held (the token); `ptr` is live (the caller's
    // reference). Only the count, the type and the weak-reference list
    // (at the offset the type gives) are read.
    let alone = unsafe {
        ffi::Py_REFCNT(ptr) == 1
            && ffi::Py_TYPE(ptr) == Handle::type_object_raw(py)
            && no_weak_references(ptr)
    };
    if !alone || !handle.get().is_plain() {
        return None;
    }
    let (target, context) = handle.get().empty(py);
    crate::queued::track(py, &context);
    Some(Emptied(target, context))
}

/// What an emptied handle held: its callback and arguments (unless it was
/// cancelled) and its context.
pub(crate) struct Emptied(Option<crate::handles::Target>, Py<PyAny>);

impl Emptied {
    /// Drops what the handle held. As `Bound`s: dropping one needs no
    /// check that the thread is attached, as dropping a `Py` does.
    pub fn release(self, py: Python<'_>) {
        let Emptied(target, context) = self;
        if let Some((callback, args)) = target {
            drop(callback.into_bound(py));
            args.release(py);
        }
        drop(context.into_bound(py));
    }
}

/// # Safety
/// The GIL is held and `ptr` is a live object whose type has weak
/// reference support (a `Handle`: pyo3's `weakref` option).
unsafe fn no_weak_references(ptr: *mut ffi::PyObject) -> bool {
    // SAFETY: the caller's contract: the type's offset locates the list
    // head inside the object.
    unsafe {
        let offset = (*ffi::Py_TYPE(ptr)).tp_weaklistoffset;
        offset > 0 && (*ptr.cast::<u8>().offset(offset).cast::<*mut ffi::PyObject>()).is_null()
    }
}
