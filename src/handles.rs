//! Handles: what `call_soon`, `call_later` and `add_reader` return.
//!
//! A handle is immutable once created but for its cancelled flag, so both
//! classes are frozen pyclasses: the loop reads them without borrow checks,
//! and `cancel()` may come from any thread. Unlike asyncio, a cancelled
//! handle keeps its callback until the loop drops the handle (at once for the
//! ready queue, at the next purge for timers); the `repr` hides it as
//! asyncio's does.

use crate::errors::{stops_loop, HandlerContext};
use crate::event_loop::LoopCore;
use crate::py::{self, GilCell};
use pyo3::ffi;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::types::{PyString, PyTuple};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

pub(crate) type Target = (Py<PyAny>, Args);

/// A callback's arguments, kept as they came for the counts `call_soon`
/// sees most (none: a task step; one: a future's done callback), so those
/// make no tuple; `_args` and reprs build one when asked.
pub enum Args {
    Zero,
    One(Py<PyAny>),
    Many(Py<PyTuple>),
}

impl Args {
    pub fn from_tuple(args: &Bound<'_, PyTuple>) -> PyResult<Self> {
        Ok(match args.len() {
            0 => Args::Zero,
            1 => Args::One(args.get_item(0)?.unbind()),
            _ => Args::Many(args.clone().unbind()),
        })
    }

    pub fn to_tuple<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        match self {
            Args::Zero => Ok(PyTuple::empty(py)),
            Args::One(a) => PyTuple::new(py, [a.bind(py)]),
            Args::Many(t) => Ok(t.bind(py).clone()),
        }
    }

    /// Drops the references, the GIL held (see `recycled::Emptied`).
    pub fn release(self, py: Python<'_>) {
        match self {
            Args::Zero => {}
            Args::One(a) => drop(a.into_bound(py)),
            Args::Many(t) => drop(t.into_bound(py)),
        }
    }

    /// `callback(*args)`, without a tuple for none or one.
    fn call<'py>(&self, callback: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = callback.py();
        match self {
            Args::Zero => callback.call0(),
            Args::One(a) => callback.call1((a.bind(py),)),
            Args::Many(t) => callback.call1(t.bind(py)),
        }
    }
}

#[pyclass(module = "ferroloop._ferroloop", subclass, frozen, weakref)]
pub struct Handle {
    /// The callback and its arguments; None once cancelled.
    target: GilCell<Option<Target>>,
    /// A cell, as the loop may reuse the handle (recycled.rs).
    context: GilCell<Py<PyAny>>,
    /// The context is a copy made for this handle (`context=None`), which
    /// no one else holds unless handed out: the loop may keep it off the
    /// GC's lists while it queues the handle (queued.rs) or, for a timer,
    /// while it runs and holds it in its heap (parked.rs).
    copied_context: AtomicBool,
    loop_: Py<PyAny>,
    cancelled: AtomicBool,
    source_traceback: Option<Py<PyAny>>,
    /// In debug mode, the repr taken at cancel time (asyncio keeps it so a
    /// slow-callback warning can still name the callback).
    saved_repr: OnceLock<Py<PyString>>,
}

impl Handle {
    /// `context=None` means the caller's current context, as in asyncio.
    pub fn new(
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Args,
        context: Option<Py<PyAny>>,
        loop_: Py<PyAny>,
        debug: bool,
    ) -> PyResult<Self> {
        let copied_context = context.is_none();
        let context = match context {
            Some(c) => c,
            None => py::copy_context(py)?,
        };
        let source_traceback = if debug {
            Some(py::extract_stack(py)?)
        } else {
            None
        };
        Ok(Self::made(
            callback,
            args,
            context,
            copied_context,
            loop_,
            source_traceback,
        ))
    }

    /// A handle of the parts `new` works out.
    pub(crate) fn made(
        callback: Py<PyAny>,
        args: Args,
        context: Py<PyAny>,
        copied_context: bool,
        loop_: Py<PyAny>,
        source_traceback: Option<Py<PyAny>>,
    ) -> Self {
        Self {
            target: GilCell::new(Some((callback, args))),
            context: GilCell::new(context),
            copied_context: AtomicBool::new(copied_context),
            loop_,
            cancelled: AtomicBool::new(false),
            source_traceback,
            saved_repr: OnceLock::new(),
        }
    }

    /// `self._loop.get_debug()`, read directly when the loop is ours.
    fn loop_debug(&self, py: Python<'_>) -> PyResult<bool> {
        let loop_ = self.loop_.bind(py);
        if let Ok(core) = loop_.cast::<LoopCore>() {
            if let Ok(core) = core.try_borrow() {
                return Ok(core.debug_enabled());
            }
        }
        loop_
            .call_method0(pyo3::intern!(py, "get_debug"))?
            .is_truthy()
    }

    /// `handle.cancel()` from Rust.
    pub fn cancel_native(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().mark_cancelled(slf.as_any()).map(drop)
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Marks the handle cancelled; returns false if it already was.
    fn mark_cancelled(&self, slf: &Bound<'_, PyAny>) -> PyResult<bool> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let py = slf.py();
        // asyncio sets the flag first, so the saved repr says 'cancelled'.
        self.cancelled.store(true, Ordering::Relaxed);
        if self.loop_debug(py)? {
            let r = slf.repr()?.unbind();
            let _already = self.saved_repr.set(r);
        }
        let released = self.target.replace(py, None);
        drop(released);
        Ok(true)
    }

    /// Runs the callback in its context. Errors go to the loop's exception
    /// handler; only SystemExit and KeyboardInterrupt (and a failing
    /// exception handler) come back, to stop the loop, as in asyncio.
    pub fn run(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let Some((cb, args)) = this.target(py) else {
            return Ok(());
        };
        // `Bound`s, and `args.release`, below: dropping a `Py` checks that
        // the thread is attached (a thread-local read), for each reference.
        let cb = &cb.into_bound(py);
        let context = this.context.get(py).into_bound(py);
        let context = &context;
        let result = if py::is_context(context) {
            py::run_in_context(context, || args.call(cb))
        } else {
            // asyncio's `self._context.run(callback, *args)` is duck-typed:
            // any object with a `run` (or an AttributeError, reported below).
            let call: Vec<Bound<'_, PyAny>> = std::iter::once(cb.clone())
                .chain(args.to_tuple(py)?.iter())
                .collect();
            context.call_method1(pyo3::intern!(py, "run"), PyTuple::new(py, call)?)
        };
        let outcome = match result {
            Ok(_) => Ok(()),
            Err(err) => this.report(slf.as_any(), err, cb, &args.to_tuple(py)?),
        };
        args.release(py);
        outcome
    }

    /// New references to the callback and its arguments, unless cancelled.
    fn target(&self, py: Python<'_>) -> Option<Target> {
        self.target.get(py)
    }

    fn report(
        &self,
        slf: &Bound<'_, PyAny>,
        err: PyErr,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        let py = slf.py();
        if stops_loop(py, &err) {
            return Err(err);
        }
        let loop_ = self.loop_.bind(py);
        let debug = loop_
            .call_method0(pyo3::intern!(py, "get_debug"))?
            .is_truthy()?;
        let cb = py::format_callback_source(py, callback, args, debug)?;
        let err = py::with_calling_frame(py, err);
        let mut ctx = HandlerContext::new(py, &format!("Exception in callback {cb}"))?
            .exception(err)?
            .with("handle", slf)?;
        if let Some(tb) = self.non_empty_traceback(py) {
            ctx = ctx.with("source_traceback", tb)?;
        }
        ctx.send(loop_)
    }

    fn non_empty_traceback<'py>(&self, py: Python<'py>) -> Option<&Bound<'py, PyAny>> {
        self.source_traceback
            .as_ref()
            .map(|t| t.bind(py))
            .filter(|t| t.is_truthy().unwrap_or(false))
    }

    /// asyncio's `Handle._repr_info()`, with `when=` spliced in for timers.
    fn repr_info(
        &self,
        py: Python<'_>,
        class: &str,
        when: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<String> {
        let mut info = vec![class.to_string()];
        let cancelled = self.is_cancelled();
        if cancelled {
            info.push("cancelled".into());
        }
        if let Some(w) = when {
            info.push(format!("when={}", w.str()?));
        }
        // asyncio shows no callback when there is none (`call_soon(None)`).
        if let Some((cb, args)) = self.target(py).filter(|(cb, _)| !cb.is_none(py)) {
            let debug = self.loop_debug(py)?;
            let src = py::format_callback_source(py, cb.bind(py), &args.to_tuple(py)?, debug)?;
            info.push(src.to_string());
        }
        if let Some(tb) = self.non_empty_traceback(py) {
            let frame = tb.get_item(-1)?;
            info.push(format!(
                "created at {}:{}",
                frame.get_item(0)?,
                frame.get_item(1)?
            ));
        }
        Ok(format!("<{}>", info.join(" ")))
    }
}

#[pymethods]
impl Handle {
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().mark_cancelled(slf.as_any())?;
        Ok(())
    }

    fn cancelled(&self) -> bool {
        self.is_cancelled()
    }

    fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
        self.shared_context(py)
    }

    #[pyo3(name = "_run")]
    fn py_run(slf: &Bound<'_, Self>) -> PyResult<()> {
        Handle::run(slf)
    }

    #[getter(_callback)]
    fn callback_attr(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.target(py).map(|t| t.0)
    }

    #[getter(_args)]
    fn args_attr<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        self.target(py).map(|t| t.1.to_tuple(py)).transpose()
    }

    #[getter(_cancelled)]
    fn cancelled_attr(&self) -> bool {
        self.is_cancelled()
    }

    #[getter(_loop)]
    fn loop_attr(&self, py: Python<'_>) -> Py<PyAny> {
        self.loop_.clone_ref(py)
    }

    #[getter(_context)]
    fn context_attr(&self, py: Python<'_>) -> Py<PyAny> {
        self.shared_context(py)
    }

    #[getter(_source_traceback)]
    fn source_traceback_attr(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.source_traceback.as_ref().map(|t| t.clone_ref(py))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        let this = slf.get();
        if let Some(r) = this.saved_repr.get() {
            return Ok(r.bind(py).to_string());
        }
        let class = slf.get_type().name()?.to_string();
        this.repr_info(py, &class, None)
    }

    // The GC's traverse is `traverse` below, put in the type's slot.
}

impl Handle {
    /// What the handle refers to, for its traverse (`through_context`
    /// false) and for the loop's while the loop alone holds it (queued.rs):
    /// then a copied context the loop keeps off the GC's lists is looked
    /// through, so what it refers to is seen as the loop's too.
    #[inline]
    pub(crate) fn traverse_fields(
        &self,
        visit: &PyVisit<'_>,
        through_context: bool,
    ) -> Result<(), PyTraverseError> {
        let target = self.target.in_traverse(visit);
        let context = self.context.in_traverse(visit);
        self.visit_refs(
            target,
            context,
            |obj| visit.call(obj),
            |context| {
                let copied = self.copied_context.load(Ordering::Relaxed);
                if through_context && copied && !crate::queued::is_tracked(context) {
                    crate::queued::traverse_untracked(context, visit)
                } else {
                    visit.call(context)
                }
            },
        )
    }

    /// Each object the handle refers to, given its `target` as the
    /// traverse in progress reads it: `context` gets the context, `visit`
    /// the others.
    #[inline]
    fn visit_refs<'a, E>(
        &self,
        target: &Option<Target>,
        context_ref: &'a Py<PyAny>,
        mut visit: impl FnMut(&Py<PyAny>) -> Result<(), E>,
        context: impl FnOnce(&'a Py<PyAny>) -> Result<(), E>,
    ) -> Result<(), E> {
        if let Some((cb, args)) = target {
            visit(cb)?;
            match args {
                Args::Zero => {}
                Args::One(a) => visit(a)?,
                Args::Many(t) => visit(t.as_any())?,
            }
        }
        context(context_ref)?;
        visit(&self.loop_)?;
        if let Some(tb) = &self.source_traceback {
            visit(tb)?;
        }
        Ok(())
    }

    /// The context this handle made for itself, if it made one.
    /// A new reference, as a `Bound`: dropping one needs no check that
    /// the thread is attached, as dropping a `Py` does.
    pub(crate) fn copied_context<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.copied_context
            .load(Ordering::Relaxed)
            .then(|| self.context.get(py).into_bound(py))
    }

    /// The context, for whoever asks: back on the GC's lists first, as it
    /// may now be held beyond the loop's view (queued.rs).
    fn shared_context(&self, py: Python<'_>) -> Py<PyAny> {
        if let Some(context) = self.copied_context(py) {
            crate::queued::track(py, context.as_unbound());
        }
        self.context.get(py)
    }

    /// Whether the loop may keep this handle for reuse (recycled.rs): it
    /// was made outside debug mode (no traceback, no repr saved), so
    /// nothing but its callback, arguments and context differ from a new
    /// one's.
    pub(crate) fn is_plain(&self) -> bool {
        self.source_traceback.is_none() && self.saved_repr.get().is_none()
    }

    /// Empties a handle the loop keeps for reuse; what it held is handed
    /// back, to be dropped by the caller (dropping may run Python code).
    pub(crate) fn empty(&self, py: Python<'_>) -> (Option<Target>, Py<PyAny>) {
        let target = self.target.replace(py, None);
        let context = self.context.replace(py, py.None());
        self.copied_context.store(false, Ordering::Relaxed);
        (target, context)
    }

    /// Fills an emptied handle as `made` fills a new one (no traceback:
    /// only a plain handle is reused).
    pub(crate) fn refill(
        &self,
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Args,
        context: Py<PyAny>,
        copied_context: bool,
    ) {
        // Both cells held only None (`empty`): nothing is dropped here.
        let _none = self.target.replace(py, Some((callback, args)));
        let _none = self.context.replace(py, context);
        self.copied_context.store(copied_context, Ordering::Relaxed);
        self.cancelled.store(false, Ordering::Relaxed);
    }
}

/// A handle with a deadline: what `call_later` and `call_at` return.
#[pyclass(module = "ferroloop._ferroloop", extends = Handle, frozen)]
pub struct TimerHandle {
    when: f64,
    /// The deadline object `call_at` was given when it was not a float
    /// (an int, a Decimal, a Fraction): asyncio's handle keeps it as its
    /// `when()`, its repr and its hash, and orders by it; the heap orders
    /// by `when`, its float value.
    given: Option<Py<PyAny>>,
    /// True while the handle sits in the loop's timer heap.
    scheduled: AtomicBool,
    /// The loop's count of cancelled timers still in its heap, which drives
    /// the purge rule.
    cancelled_in_heap: Arc<AtomicUsize>,
}

impl TimerHandle {
    pub fn new(when: f64, given: Option<Py<PyAny>>, cancelled_in_heap: Arc<AtomicUsize>) -> Self {
        Self {
            when,
            given,
            scheduled: AtomicBool::new(true),
            cancelled_in_heap,
        }
    }

    /// Called when the loop takes the handle out of its heap.
    pub fn unschedule(&self) {
        self.scheduled.store(false, Ordering::Relaxed);
    }
}

#[pymethods]
impl TimerHandle {
    fn when<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.deadline(py)
    }

    #[getter(_when)]
    fn when_attr<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.deadline(py)
    }

    #[getter(_scheduled)]
    fn scheduled_attr(&self) -> bool {
        self.scheduled.load(Ordering::Relaxed)
    }

    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        let base = slf.as_super();
        if base.get().mark_cancelled(slf.as_any())? && slf.get().scheduled.load(Ordering::Relaxed) {
            slf.get().cancelled_in_heap.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        let base = slf.as_super().get();
        if let Some(r) = base.saved_repr.get() {
            return Ok(r.bind(py).to_string());
        }
        let class = slf.get_type().name()?.to_string();
        base.repr_info(py, &class, Some(&slf.get().deadline(py)))
    }

    /// asyncio's `hash(self._when)`: equal handles (0.0 and -0.0 too)
    /// hash equally. A NaN float hashes by its identity in CPython; the
    /// handle's stands in for it.
    fn __hash__(slf: &Bound<'_, Self>) -> PyResult<isize> {
        if let Some(given) = &slf.get().given {
            return given.bind(slf.py()).hash();
        }
        let when = slf.get().when;
        if when.is_nan() {
            return Ok((slf.as_ptr() as usize).rotate_right(4) as isize);
        }
        pyo3::types::PyFloat::new(slf.py(), when).hash()
    }

    fn __richcmp__(
        slf: &Bound<'_, Self>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let Ok(other) = other.cast::<TimerHandle>() else {
            return Ok(py.NotImplemented());
        };
        let (a, b) = (slf.get().when, other.get().when);
        let result = match op {
            CompareOp::Lt => a < b,
            CompareOp::Le => a < b || Self::same(slf, other)?,
            CompareOp::Gt => a > b,
            CompareOp::Ge => a > b || Self::same(slf, other)?,
            CompareOp::Eq => Self::same(slf, other)?,
            CompareOp::Ne => !Self::same(slf, other)?,
        };
        Ok(pyo3::types::PyBool::new(py, result)
            .to_owned()
            .into_any()
            .unbind())
    }
}

impl TimerHandle {
    /// What asyncio's `_when` would be: the object given, else the float.
    fn deadline<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        match &self.given {
            Some(given) => given.bind(py).clone(),
            None => pyo3::types::PyFloat::new(py, self.when).into_any(),
        }
    }

    /// asyncio's TimerHandle.__eq__: same deadline, callback, args and state.
    fn same(a: &Bound<'_, Self>, b: &Bound<'_, Self>) -> PyResult<bool> {
        let py = a.py();
        let (ha, hb) = (a.as_super().get(), b.as_super().get());
        if a.get().when != b.get().when || ha.is_cancelled() != hb.is_cancelled() {
            return Ok(false);
        }
        Ok(match (ha.target(py), hb.target(py)) {
            (Some((ca, aa)), Some((cb, ab))) => {
                ca.bind(py).eq(cb.bind(py))? && aa.to_tuple(py)?.eq(ab.to_tuple(py)?)?
            }
            (None, None) => true,
            _ => false,
        })
    }
}

/// Puts [`traverse`] in both handle classes' `tp_traverse` slot, in place
/// of pyo3's, once they exist and before any instance does.
pub(crate) fn install_traverse(py: Python<'_>) {
    for class in [py.get_type::<Handle>(), py.get_type::<TimerHandle>()] {
        // SAFETY: the GIL is held; both are pyo3's heap types, GC types
        // (`Py_TPFLAGS_HAVE_GC`), whose slots pyo3 has filled and no one
        // reads concurrently; no instance exists yet, so none is traversed
        // by one function and then the other. A Python subclass made later
        // gets CPython's traverse, which calls this one as its base's.
        unsafe { (*class.as_type_ptr()).tp_traverse = Some(traverse) };
    }
}

/// The GC's traverse for handles and timer handles. pyo3's, for each
/// object, walks the MRO for a base class's traverse and sets thread-local
/// guards: with many timers held (every `sleep`, `timeout` and `wait_for`
/// holds one), that was most of what a collection spent on them
/// (callgrind, 100k call_later: ~1,000 of ~4,700 instructions each).
///
/// # Safety
/// Called by the collector only, through the slot: `slf` is a live
/// instance of `Handle` or a subclass, the GIL is held and no Python code
/// runs until it returns.
unsafe extern "C" fn traverse(
    slf: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut std::ffi::c_void,
) -> std::ffi::c_int {
    let call = |obj: &Py<PyAny>| -> Result<(), std::ffi::c_int> {
        // SAFETY: the collector's own visit and argument, on a live object.
        match unsafe { visit(obj.as_ptr(), arg) } {
            0 => Ok(()),
            stop => Err(stop),
        }
    };
    // A heap type's instances keep it alive; CPython leaves visiting it to
    // the first heap type's traverse (here, this one: `object` is below).
    // SAFETY: as above; a type is a live object while its instance is.
    let stop = unsafe { visit(ffi::Py_TYPE(slf).cast(), arg) };
    if stop != 0 {
        return stop;
    }
    // SAFETY: the collector holds the GIL; the token only types the
    // borrow below, no Python code runs and nothing is allocated.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: `slf` is live (the collector's).
    let obj = unsafe { pyo3::Borrowed::from_ptr(py, slf) };
    // SAFETY: an instance of Handle (the contract): the slot is only on
    // Handle and its subclasses.
    let handle = unsafe { obj.cast_unchecked::<Handle>() };
    let this = handle.get();
    // SAFETY: inside a traverse, as `during_gc` requires.
    let target = unsafe { this.target.during_gc() };
    // SAFETY: as above.
    let context = unsafe { this.context.during_gc() };
    let mut result = this.visit_refs(target, context, call, call);
    if result.is_ok() {
        if let Ok(timer) = obj.cast::<TimerHandle>() {
            result = timer.get().given.as_ref().map_or(Ok(()), call);
        }
    }
    result.err().unwrap_or(0)
}
