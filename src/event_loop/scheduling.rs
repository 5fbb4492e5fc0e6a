//! `loop.call_soon`, `call_later` and `call_at`, entered by vectorcall
//! without pyo3's argument parsing.
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

use super::LoopCore;
use crate::handles::Args;
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple, PyType};

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

/// A vectorcall's arguments, read as `method(self, <leading>, callback,
/// *args, context=None)` declares them.
struct Parsed<'py, const K: usize> {
    /// The positional-or-keyword parameters, `callback` last.
    leading: [Bound<'py, PyAny>; K],
    args: Args,
    /// None when not given or given as None.
    context: Option<Py<PyAny>>,
}

/// Parses the arguments of one of the methods above, with pyo3's messages.
///
/// # Safety
/// The vectorcall protocol's contract: `args` holds the positional
/// arguments followed by one value per name in `kwnames` (a tuple of str,
/// or NULL), all alive for the call.
unsafe fn parse<'py, const K: usize>(
    py: Python<'py>,
    method: &str,
    names: [&str; K],
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Parsed<'py, K>> {
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
        for (i, name) in kwnames.iter().enumerate() {
            let value = arg(nargs + i);
            if name.is(interned) {
                context = Some(value);
                continue;
            }
            let name = name.cast_into::<PyString>()?;
            let name = name.to_str()?;
            if name == "context" {
                context = Some(value);
                continue;
            }
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
    // SAFETY: the caller's contract: `slf` is a live instance of the
    // loop's class or a subclass (the descriptor checked its type).
    let slf = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<LoopCore>() };
    // SAFETY: the caller's contract.
    let p = unsafe { parse(py, "call_soon", ["callback"], args, nargsf, kwnames) }?;
    let [callback] = &p.leading;
    let handle = LoopCore::call_soon_with(&slf, callback, p.args, p.context)?;
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
    // SAFETY: the caller's contract: `slf` is a live instance of the
    // loop's class or a subclass (the descriptor checked its type).
    let slf = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<LoopCore>() };
    // SAFETY: the caller's contract.
    let p = unsafe {
        parse(
            py,
            "call_later",
            ["delay", "callback"],
            args,
            nargsf,
            kwnames,
        )
    }?;
    let [delay, callback] = &p.leading;
    let timer = LoopCore::call_later_with(&slf, delay, callback, p.args, p.context)?;
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
    // SAFETY: the caller's contract: `slf` is a live instance of the
    // loop's class or a subclass (the descriptor checked its type).
    let slf = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<LoopCore>() };
    // SAFETY: the caller's contract.
    let p = unsafe { parse(py, "call_at", ["when", "callback"], args, nargsf, kwnames) }?;
    let [when, callback] = &p.leading;
    let timer = LoopCore::call_at_with(&slf, when, callback, p.args, p.context)?;
    Ok(timer.into_ptr())
}
