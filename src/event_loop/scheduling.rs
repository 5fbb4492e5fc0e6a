//! `loop.call_soon`, `call_later` and `call_at`: handles made and queued
//! on the ready queue or the timer heap, entered by vectorcall without
//! pyo3's argument parsing.
//!
//! They are the loop methods asyncio calls most: every task step and every
//! future's done callback is a `call_soon`, most from C (`_asyncio`'s Task
//! and Future), and every `sleep`, `timeout` and `wait_for` a `call_at` or
//! `call_later`. Declared in `#[pymethods]`, their `*args` would be copied
//! into a new tuple on every call and their keywords matched by the general
//! parser. Here the positional arguments are read from the vectorcall
//! array as they are (none or one make no tuple: `handles::Args`), and a
//! keyword is matched against the interned `context` first. The signatures
//! and the error messages are those the pyo3 methods had, which name the
//! class as asyncio's do (`BaseEventLoop.call_soon() ...`);
//! tests/test_bad_input.py and tests/test_scheduling.py check them.

use super::{LoopCore, Ready};
use crate::handles::{Args, Handle, TimerHandle};
use crate::parked::Parked;
use crate::queued::Queued;
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyFloat, PyInt, PyString, PyTuple, PyType};

/// A method definition CPython keeps a pointer to for the type's lifetime.
struct MethodDef(ffi::PyMethodDef);

// SAFETY: the definitions are never written after their static
// initialisers, and their pointers are to static C strings and functions.
unsafe impl Sync for MethodDef {}

/// A `METH_FASTCALL | METH_KEYWORDS` method behind pyo3's trampoline,
/// which holds panics back from Python and turns an `Err` into the raised
/// exception. The first line of `doc` is the `__text_signature__` that
/// `inspect` and stubtest read.
macro_rules! method {
    ($name:literal, $body:ident, $doc:literal) => {
        (
            // The name without its NUL, for `setattr`.
            match $name.to_str() {
                Ok(name) => name,
                Err(_) => panic!("method names are ASCII"),
            },
            MethodDef(ffi::PyMethodDef {
                ml_name: $name.as_ptr(),
                ml_meth: ffi::PyMethodDefPointer {
                    PyCFunctionFastWithKeywords: pyo3::impl_::trampoline::get_trampoline_function!(
                        fastcall_cfunction_with_keywords,
                        $body
                    ),
                },
                ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
                ml_doc: $doc.as_ptr(),
            }),
        )
    };
}

static METHODS: [(&str, MethodDef); 3] = [
    method!(
        c"call_soon",
        call_soon,
        c"call_soon($self, callback, *args, context=None)\n--\n\n\
Arrange for `callback(*args)` to be called soon, in `context` (a copy of \
the current context by default). Returns a Handle."
    ),
    method!(
        c"call_later",
        call_later,
        c"call_later($self, delay, callback, *args, context=None)\n--\n\n\
Arrange for `callback(*args)` to be called `delay` seconds from now, in \
`context` (a copy of the current context by default). Returns a TimerHandle."
    ),
    method!(
        c"call_at",
        call_at,
        c"call_at($self, when, callback, *args, context=None)\n--\n\n\
Arrange for `callback(*args)` to be called at `when`, a time of the loop's \
clock, in `context` (a copy of the current context by default). Returns a \
TimerHandle."
    ),
];

/// Puts the methods on the loop's class, in place of ones declared in Rust.
pub(crate) fn install(class: &Bound<'_, PyType>) -> PyResult<()> {
    let py = class.py();
    for (name, def) in &METHODS {
        // SAFETY: the GIL is held; `class` is a live type object; the
        // method definition is static, so it outlives the descriptor, and
        // CPython only reads it (the pointer is mutable in the signature
        // alone).
        let descr = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyDescr_NewMethod(class.as_type_ptr(), std::ptr::addr_of!(def.0).cast_mut()),
            )?
        };
        class.setattr(*name, descr)?;
    }
    Ok(())
}

/// The first `context` keyword name seen that is not our interned one:
/// `_asyncio`'s Tasks and Futures pass their own string object (on 3.11 a
/// static one, not the interpreter's interned copy), and comparing
/// addresses is cheaper than comparing text.
static SEEN_CONTEXT_NAME: PyOnceLock<Py<PyString>> = PyOnceLock::new();

/// A vectorcall's arguments, read as `method(self, <leading>, callback,
/// *args, context=None)` declares them.
struct Parsed<'py, const K: usize> {
    /// `self`, the loop.
    loop_: Bound<'py, LoopCore>,
    /// The positional-or-keyword parameters, `callback` last.
    leading: [Bound<'py, PyAny>; K],
    args: Args,
    /// None when not given or given as None.
    context: Option<Py<PyAny>>,
}

/// Parses the arguments of one of the methods above, with pyo3's messages.
///
/// # Safety
/// Called from one of the methods above, by CPython's method descriptor
/// under the vectorcall protocol: `slf` is a live instance of the loop's
/// class or a subclass (the descriptor checked its type); `args` holds the
/// positional arguments followed by one value per name in `kwnames` (a
/// tuple of str, or NULL), all alive for the call.
unsafe fn parse<'py, const K: usize>(
    py: Python<'py>,
    slf: *mut ffi::PyObject,
    method: &str,
    names: [&str; K],
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Parsed<'py, K>> {
    // SAFETY: the caller's contract: a live instance of the loop's class.
    let loop_ = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<LoopCore>() };
    // SAFETY: only masks the flag bit off the count.
    let nargs = unsafe { ffi::PyVectorcall_NARGS(nargsf as usize) } as usize;
    let kwnames = if kwnames.is_null() {
        None
    } else {
        // SAFETY: the caller's contract: a live tuple, borrowed for the call.
        Some(unsafe { Bound::from_borrowed_ptr(py, kwnames).cast_into_unchecked::<PyTuple>() })
    };
    let nkw = kwnames.as_ref().map_or(0, |n| n.len());
    let values: &[*mut ffi::PyObject] = if nargs + nkw == 0 {
        &[]
    } else {
        // SAFETY: the vectorcall protocol: `args` points to nargs + nkw
        // live object pointers.
        unsafe { std::slice::from_raw_parts(args, nargs + nkw) }
    };
    // SAFETY: each pointer is a live object for the call (above).
    let arg = |i: usize| unsafe { Bound::from_borrowed_ptr(py, values[i]) };

    let mut leading: [Option<Bound<'py, PyAny>>; K] =
        std::array::from_fn(|i| (i < nargs).then(|| arg(i)));
    let mut context = None;
    if let Some(kwnames) = &kwnames {
        let interned = pyo3::intern!(py, "context");
        let seen = SEEN_CONTEXT_NAME.get(py);
        for (i, name) in kwnames.iter().enumerate() {
            let value = arg(nargs + i);
            // Most calls pass `context=` by the string object itself that
            // the caller passed before: ours, or `_asyncio`'s own.
            if name.is(interned) || seen.is_some_and(|s| name.is(s)) {
                context = Some(value);
                continue;
            }
            let name = name.cast_into::<PyString>()?;
            let text = name.to_str()?;
            if text == "context" {
                if seen.is_none() {
                    // Kept, so the object cannot go and its address be
                    // another string's.
                    let _first = SEEN_CONTEXT_NAME.set(py, name.clone().unbind());
                }
                context = Some(value);
                continue;
            }
            let name = text;
            let Some(slot) = names.iter().position(|n| *n == name) else {
                return Err(PyTypeError::new_err(format!(
                    "BaseEventLoop.{method}() got an unexpected keyword argument '{name}'"
                )));
            };
            if leading[slot].is_some() {
                return Err(PyTypeError::new_err(format!(
                    "BaseEventLoop.{method}() got multiple values for argument '{name}'"
                )));
            }
            leading[slot] = Some(value);
        }
    }
    if leading.iter().any(Option::is_none) {
        let missing: Vec<String> = names
            .iter()
            .zip(&leading)
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| format!("'{n}'"))
            .collect();
        let count = match missing.len() {
            1 => "1 required positional argument".to_string(),
            n => format!("{n} required positional arguments"),
        };
        return Err(PyTypeError::new_err(format!(
            "BaseEventLoop.{method}() missing {count}: {}",
            missing.join(" and ")
        )));
    }
    // Every slot is filled (checked above): the None is never used.
    let leading = leading.map(|v| v.unwrap_or_else(|| py.None().into_bound(py)));
    let args = match nargs.saturating_sub(K) {
        0 => Args::Zero,
        1 => Args::One(arg(K).unbind()),
        _ => Args::Many(PyTuple::new(py, (K..nargs).map(arg))?.unbind()),
    };
    let context = context.filter(|c| !c.is_none()).map(Bound::unbind);
    Ok(Parsed {
        loop_,
        leading,
        args,
        context,
    })
}

/// `call_soon(callback, *args, context=None)`.
///
/// # Safety
/// Called by CPython's method descriptor only, under the vectorcall
/// protocol: `slf` is an instance of the class the descriptor was made
/// for (checked by the descriptor), and the arguments are as [`parse`]
/// requires.
unsafe fn call_soon(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: the caller's contract.
    let p = unsafe { parse(py, slf, "call_soon", ["callback"], args, nargsf, kwnames) }?;
    let [callback] = &p.leading;
    let handle = LoopCore::call_soon_with(&p.loop_, callback, p.args, p.context)?;
    Ok(handle.into_ptr())
}

/// `call_later(delay, callback, *args, context=None)`.
///
/// # Safety
/// As for [`call_soon`].
unsafe fn call_later(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: the caller's contract.
    let p = unsafe {
        parse(
            py,
            slf,
            "call_later",
            ["delay", "callback"],
            args,
            nargsf,
            kwnames,
        )
    }?;
    let [delay, callback] = &p.leading;
    let timer = LoopCore::call_later_with(&p.loop_, delay, callback, p.args, p.context)?;
    Ok(timer.into_ptr())
}

/// `call_at(when, callback, *args, context=None)`.
///
/// # Safety
/// As for [`call_soon`].
unsafe fn call_at(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: the caller's contract.
    let p = unsafe {
        parse(
            py,
            slf,
            "call_at",
            ["when", "callback"],
            args,
            nargsf,
            kwnames,
        )
    }?;
    let [when, callback] = &p.leading;
    let timer = LoopCore::call_at_with(&p.loop_, when, callback, p.args, p.context)?;
    Ok(timer.into_ptr())
}

impl LoopCore {
    /// asyncio's debug-mode checks before a callback is scheduled: the
    /// calling thread (unless threadsafe) and the callback's type.
    fn debug_checks(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        method: &str,
        check_thread: bool,
    ) -> PyResult<()> {
        if check_thread {
            slf.call_method0(pyo3::intern!(slf.py(), "_check_thread"))?;
        }
        slf.call_method1(
            pyo3::intern!(slf.py(), "_check_callback"),
            (callback, method),
        )?;
        Ok(())
    }

    pub(super) fn make_handle(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        args: Args,
        context: Option<Py<PyAny>>,
        debug: bool,
    ) -> PyResult<Handle> {
        let py = slf.py();
        Handle::new(
            py,
            callback.clone().unbind(),
            args,
            context,
            slf.clone().into_any().unbind(),
            debug,
        )
    }

    /// What `call_soon` and `call_soon_threadsafe` check before they
    /// queue: the loop is open, and in debug mode [`Self::debug_checks`].
    /// Returns whether the loop is in debug mode. (`call_at` does the same
    /// in the borrow that also reads its timer counter.)
    pub(super) fn checked_for_soon(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        method: &str,
        check_thread: bool,
    ) -> PyResult<bool> {
        let debug = {
            let this = slf.try_borrow()?;
            this.check_closed()?;
            this.debug
        };
        if debug {
            Self::debug_checks(slf, callback, method, check_thread)?;
        }
        Ok(debug)
    }

    /// `call_soon(callback, *args, context=context)`, its arguments parsed
    /// (scheduling.rs). Outside debug mode, one borrow of the loop checks
    /// it is open and queues a handle it kept for reuse (recycled.rs), if
    /// it has one: each borrow is an atomic read-modify-write, and this is
    /// the method asyncio calls most. The context is copied before the
    /// borrow: copying allocates, and so may run a collection whose hook
    /// borrows the loop. So is a new handle made.
    pub(crate) fn call_soon_with(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        args: Args,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let given = context.is_some();
        let context = match context {
            Some(c) => c,
            None => crate::py::copy_context(py)?,
        };
        let mut this = slf.try_borrow_mut()?;
        this.check_closed()?;
        if this.debug {
            // asyncio checks the thread and the callback first, and its
            // handle keeps the stack it was made from.
            drop(this);
            Self::debug_checks(slf, callback, "call_soon", true)?;
            let context = given.then_some(context);
            return Self::push_soon(slf, callback, args, context, true);
        }
        let callback = callback.clone().unbind();
        if let Some(handle) = this.recycled.pop() {
            handle.get().refill(py, callback, args, context, !given);
            Self::queue_made(slf, this, &handle)?;
            return Ok(handle);
        }
        drop(this);
        let loop_ = slf.clone().into_any().unbind();
        let handle = Handle::made(callback, args, context, !given, loop_, None);
        let handle = Py::new(py, handle)?;
        Self::queue_made(slf, slf.try_borrow_mut()?, &handle)?;
        Ok(handle)
    }

    /// `call_soon` without the checks: queue and return a new handle.
    pub(crate) fn push_soon(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        args: Args,
        context: Option<Py<PyAny>>,
        debug: bool,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let handle = Py::new(py, Self::make_handle(slf, callback, args, context, debug)?)?;
        Self::queue_made(slf, slf.try_borrow_mut()?, &handle)?;
        Ok(handle)
    }

    /// Puts a handle the loop just made at the end of its ready queue.
    fn queue_made<'py>(
        slf: &Bound<'py, Self>,
        mut this: PyRefMut<'py, Self>,
        handle: &Py<Handle>,
    ) -> PyResult<()> {
        let py = slf.py();
        let watched = match this.gc_watched {
            Some(watched) => watched,
            None => {
                // Once per loop; `watch` calls into Python, so unborrowed.
                drop(this);
                let watched = crate::queued::watch(slf)?;
                this = slf.try_borrow_mut()?;
                this.gc_watched = Some(watched);
                watched
            }
        };
        let queued = if watched {
            let len = this.ready.len();
            this.first_unchecked.get_or_insert(len);
            Queued::adopt(py, handle.clone_ref(py))
        } else {
            Queued::plain(handle.clone_ref(py))
        };
        this.ready.push_back(Ready::Native(queued));
        Ok(())
    }

    /// `call_later(delay, callback, *args, context=context)`, its
    /// arguments parsed (scheduling.rs).
    pub(crate) fn call_later_with(
        slf: &Bound<'_, Self>,
        delay: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: Args,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        // asyncio's `self.time() + delay`: a float or int adds in Rust; any
        // other delay (or a replaced `time`) adds as Python would, so a str
        // or a Decimal fails with the TypeError of `+`.
        if delay.is_none() {
            return Err(PyTypeError::new_err("delay must not be None"));
        }
        let plain =
            delay.is_exact_instance_of::<PyFloat>() || delay.is_exact_instance_of::<PyInt>();
        let (replaced, now) = {
            let this = slf.try_borrow()?;
            (this.time_replaced(), this.clock_now())
        };
        if plain && !replaced {
            let when = now + delay.extract::<f64>()?;
            return Self::schedule_at(slf, when, None, callback, args, context);
        }
        let py = slf.py();
        let now = if replaced {
            slf.call_method0(pyo3::intern!(py, "time"))?
        } else {
            PyFloat::new(py, now).into_any()
        };
        let when = now.add(delay)?;
        let (secs, given) = deadline(&when)?;
        Self::schedule_at(slf, secs, given, callback, args, context)
    }

    /// `call_at(when, callback, *args, context=context)`, its arguments
    /// parsed (scheduling.rs).
    pub(crate) fn call_at_with(
        slf: &Bound<'_, Self>,
        when: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: Args,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        let (secs, given) = deadline(when)?;
        Self::schedule_at(slf, secs, given, callback, args, context)
    }

    fn schedule_at(
        slf: &Bound<'_, Self>,
        when: f64,
        given: Option<Py<PyAny>>,
        callback: &Bound<'_, PyAny>,
        args: Args,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        let py = slf.py();
        let (debug, counter) = {
            let this = slf.try_borrow()?;
            this.check_closed()?;
            (this.debug, this.cancelled_timers.clone())
        };
        if debug {
            Self::debug_checks(slf, callback, "call_at", true)?;
        }
        let base = Self::make_handle(slf, callback, args, context, debug)?;
        let init =
            PyClassInitializer::from(base).add_subclass(TimerHandle::new(when, given, counter));
        let timer = Py::new(py, init)?;
        let mut this = slf.try_borrow_mut()?;
        let parked = Parked::new(py, timer.clone_ref(py), this.in_run);
        this.timers.push(when, parked);
        this.stats.timers_scheduled += 1;
        Ok(timer)
    }
}

/// A deadline as the heap orders it, and the object itself when it is not
/// a float: asyncio's handle keeps that as its `when()`.
fn deadline(when: &Bound<'_, PyAny>) -> PyResult<(f64, Option<Py<PyAny>>)> {
    let secs = seconds(when, "when cannot be None")?;
    let given = (!when.is_exact_instance_of::<PyFloat>()).then(|| when.clone().unbind());
    Ok((secs, given))
}

/// `float(x)` for a delay or deadline; None gets asyncio's own message.
fn seconds(value: &Bound<'_, PyAny>, none_msg: &str) -> PyResult<f64> {
    if value.is_none() {
        return Err(PyTypeError::new_err(none_msg.to_string()));
    }
    match value.extract::<f64>() {
        Ok(secs) => Ok(secs),
        // asyncio keeps any int as the deadline (`call_at(10**400)`); one
        // beyond a float's range orders as the infinity of its sign.
        Err(e)
            if value.is_instance_of::<PyInt>()
                && e.is_instance_of::<pyo3::exceptions::PyOverflowError>(value.py()) =>
        {
            Ok(if value.lt(0)? {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            })
        }
        Err(e) => Err(e),
    }
}
