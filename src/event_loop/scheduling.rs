//! `loop.call_soon`, entered by vectorcall without pyo3's argument parsing.
//!
//! It is the loop method asyncio calls most: every task step and every
//! future's done callback is a `call_soon`, most from C (`_asyncio`'s Task
//! and Future). Declared in `#[pymethods]`, its `*args` would be copied
//! into a new tuple on every call and its keyword matched by the general
//! parser. Here the positional arguments are read from the vectorcall
//! array as they are (none or one make no tuple: `handles::Args`), and the
//! keyword is matched against the interned name first. The signature and
//! the error messages are those the pyo3 method had, which name the class
//! as asyncio's do (`BaseEventLoop.call_soon() ...`); tests/test_bad_input.py
//! checks them.

use super::LoopCore;
use crate::handles::Args;
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple, PyType};

/// A method definition CPython keeps a pointer to for the type's lifetime.
struct MethodDef(ffi::PyMethodDef);

// SAFETY: the definition is never written after its static initialiser,
// and its pointers are to static C strings and a function.
unsafe impl Sync for MethodDef {}

static CALL_SOON: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"call_soon".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionFastWithKeywords: pyo3::impl_::trampoline::get_trampoline_function!(
            fastcall_cfunction_with_keywords,
            call_soon
        ),
    },
    ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    // The first line is the `__text_signature__` that `inspect` and
    // stubtest read.
    ml_doc: c"call_soon($self, callback, *args, context=None)\n--\n\n\
Arrange for `callback(*args)` to be called soon, in `context` (a copy of \
the current context by default). Returns a Handle."
        .as_ptr(),
});

/// Puts the method on the loop's class, in place of one declared in Rust.
pub(crate) fn install(class: &Bound<'_, PyType>) -> PyResult<()> {
    let py = class.py();
    // SAFETY: the GIL is held; `class` is a live type object; the method
    // definition is static, so it outlives the descriptor, and CPython
    // only reads it (the pointer is mutable in the signature alone).
    let descr = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyDescr_NewMethod(
                class.as_type_ptr(),
                std::ptr::addr_of!(CALL_SOON.0).cast_mut(),
            ),
        )?
    };
    class.setattr("call_soon", descr)
}

const NAME: &str = "BaseEventLoop.call_soon";

/// The method's body, behind pyo3's trampoline (which holds panics back
/// from Python and turns an `Err` into the raised exception).
///
/// # Safety
/// Called by CPython's method descriptor only, under the vectorcall
/// protocol: `slf` is an instance of the class the descriptor was made
/// for (checked by the descriptor), `args` holds the positional arguments
/// followed by one value per name in `kwnames` (a tuple of str, or NULL),
/// all alive for the call.
unsafe fn call_soon(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: the caller's contract: `slf` is a live object.
    let slf = unsafe { Bound::from_borrowed_ptr(py, slf) };
    let slf = slf.cast::<LoopCore>()?;
    // SAFETY: only masks the flag bit off the count.
    let nargs = unsafe { ffi::PyVectorcall_NARGS(nargsf as usize) } as usize;
    let names = if kwnames.is_null() {
        None
    } else {
        // SAFETY: the caller's contract: a live tuple, borrowed for the call.
        Some(unsafe { Bound::from_borrowed_ptr(py, kwnames).cast_into_unchecked::<PyTuple>() })
    };
    let nkw = names.as_ref().map_or(0, |n| n.len());
    let values: &[*mut ffi::PyObject] = if nargs + nkw == 0 {
        &[]
    } else {
        // SAFETY: the vectorcall protocol: `args` points to nargs + nkw
        // live object pointers.
        unsafe { std::slice::from_raw_parts(args, nargs + nkw) }
    };
    // SAFETY: each pointer is a live object for the call (above).
    let arg = |i: usize| unsafe { Bound::from_borrowed_ptr(py, values[i]) };

    let mut callback = (nargs > 0).then(|| arg(0));
    let mut context = None;
    if let Some(names) = &names {
        let interned = pyo3::intern!(py, "context");
        for (i, name) in names.iter().enumerate() {
            let value = arg(nargs + i);
            if name.is(interned) {
                context = Some(value);
                continue;
            }
            let name = name.cast_into::<PyString>()?;
            match name.to_str()? {
                "context" => context = Some(value),
                "callback" if callback.is_none() => callback = Some(value),
                "callback" => {
                    return Err(PyTypeError::new_err(format!(
                        "{NAME}() got multiple values for argument 'callback'"
                    )))
                }
                other => {
                    return Err(PyTypeError::new_err(format!(
                        "{NAME}() got an unexpected keyword argument '{other}'"
                    )))
                }
            }
        }
    }
    let Some(callback) = callback else {
        return Err(PyTypeError::new_err(format!(
            "{NAME}() missing 1 required positional argument: 'callback'"
        )));
    };
    let args = match nargs.saturating_sub(1) {
        0 => Args::Zero,
        1 => Args::One(arg(1).unbind()),
        _ => Args::Many(PyTuple::new(py, (1..nargs).map(arg))?.unbind()),
    };
    let context = context.filter(|c| !c.is_none()).map(Bound::unbind);
    let handle = LoopCore::call_soon_with(slf, &callback, args, context)?;
    Ok(handle.into_ptr())
}
