//! Cached imports, interned names, and the raw FFI the loop needs.
//!
//! asyncio objects the hot paths call (Future, Task, the formatting helpers
//! its error messages use) are imported once per interpreter and reused.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

/// The asyncio internals ferroloop reuses so its messages match asyncio's.
pub struct Asyncio {
    /// `asyncio.futures` and `asyncio.tasks`: their `Future` and `Task` are
    /// looked up at each call, as asyncio's `create_future`/`create_task`
    /// do, so that a replaced class (the pure-Python ones some tests
    /// install) is the one used.
    futures: Py<PyModule>,
    tasks: Py<PyModule>,
    /// `BaseEventLoop.create_task`: the task-factory path, whose naming rules
    /// differ between Python versions.
    pub base_create_task: Py<PyAny>,
    pub format_callback_source: Py<PyAny>,
    /// 3.13 added a `debug` keyword to the formatting helpers.
    pub format_takes_debug: bool,
    pub format_handle: Py<PyAny>,
    pub logger: Py<PyAny>,
    pub extract_stack: Py<PyAny>,
    pub getframe: Py<PyAny>,
    /// `events._ThreadSafeHandle` (3.14+): what `call_soon_threadsafe`
    /// returns there, a handle whose cancel() waits for a running callback.
    pub threadsafe_handle: Option<Py<PyAny>>,
}

static ASYNCIO: PyOnceLock<Asyncio> = PyOnceLock::new();

impl Asyncio {
    /// `futures.Future`, as it is now.
    pub fn future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        module_attr(self.futures.bind(py), pyo3::intern!(py, "Future"))
    }

    /// `tasks.Task`, as it is now.
    pub fn task<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        module_attr(self.tasks.bind(py), pyo3::intern!(py, "Task"))
    }
}

/// `module.name`. For a plain module (of the exact module type, so no
/// descriptor of a subclass can intercept the name) that has it in its
/// `__dict__`, that is what the dict holds, read without the generic
/// attribute lookup (about 150 instructions per `create_future`, by
/// callgrind); otherwise, and for a module `__getattr__`, a real getattr.
fn module_attr<'py>(
    module: &Bound<'py, PyModule>,
    name: &Bound<'py, pyo3::types::PyString>,
) -> PyResult<Bound<'py, PyAny>> {
    use pyo3::types::PyDictMethods;
    use pyo3::PyTypeInfo;
    if module.get_type().is(PyModule::type_object(module.py())) {
        if let Some(value) = module.dict().get_item(name)? {
            return Ok(value);
        }
    }
    module.getattr(name)
}

pub fn asyncio(py: Python<'_>) -> PyResult<&'static Asyncio> {
    ASYNCIO.get_or_try_init(py, || {
        let base = py.import("asyncio.base_events")?;
        let helpers = py.import("asyncio.format_helpers")?;
        let sys = py.import("sys")?;
        Ok(Asyncio {
            futures: py.import("asyncio.futures")?.unbind(),
            tasks: py.import("asyncio.tasks")?.unbind(),
            base_create_task: base
                .getattr("BaseEventLoop")?
                .getattr("create_task")?
                .unbind(),
            format_callback_source: helpers.getattr("_format_callback_source")?.unbind(),
            format_takes_debug: py.version_info() >= (3, 13),
            format_handle: base.getattr("_format_handle")?.unbind(),
            logger: py.import("asyncio.log")?.getattr("logger")?.unbind(),
            extract_stack: helpers.getattr("extract_stack")?.unbind(),
            getframe: sys.getattr("_getframe")?.unbind(),
            threadsafe_handle: py
                .import("asyncio.events")?
                .getattr("_ThreadSafeHandle")
                .ok()
                .map(Bound::unbind),
        })
    })
}

/// `format_helpers._format_callback_source(callback, args)`.
pub fn format_callback_source<'py>(
    py: Python<'py>,
    callback: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
    debug: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let a = asyncio(py)?;
    let f = a.format_callback_source.bind(py);
    if a.format_takes_debug {
        let kw = PyDict::new(py);
        kw.set_item(pyo3::intern!(py, "debug"), debug)?;
        f.call((callback, args), Some(&kw))
    } else {
        f.call1((callback, args))
    }
}

/// The current stack, as asyncio's debug mode records it for a handle.
pub fn extract_stack(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let a = asyncio(py)?;
    let frame = a.getframe.bind(py).call1((0,))?;
    Ok(a.extract_stack.bind(py).call1((frame,))?.unbind())
}

/// In debug mode asyncio drops the frame of the loop method that made a
/// handle or task (`call_soon_threadsafe`, `create_task`) from the
/// `_source_traceback` it recorded; this does the same for `obj`.
pub fn drop_own_frame(obj: &Bound<'_, PyAny>) -> PyResult<()> {
    let tb = obj.getattr(pyo3::intern!(obj.py(), "_source_traceback"))?;
    if tb.is_truthy()? {
        tb.del_item(-1)?;
    }
    Ok(())
}

/// `contextvars.copy_context()`.
pub fn copy_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // SAFETY: called with the GIL held (we have `py`); returns a new
    // reference or NULL with an exception set, which from_owned_ptr_or_err
    // turns into a PyErr.
    unsafe { Ok(Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent())?.unbind()) }
}

/// Runs `f` inside `ctx`, as `Context.run` does, without building the
/// argument tuple `Context.run(callback, *args)` would need.
pub fn run_in_context<'py, R>(
    ctx: &Bound<'py, PyAny>,
    f: impl FnOnce() -> PyResult<R>,
) -> PyResult<R> {
    let py = ctx.py();
    if !is_context(ctx) {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "an instance of Context was expected, got {}",
            ctx.get_type().name()?
        )));
    }
    // SAFETY: `ctx` is a live contextvars.Context (checked above) and we hold
    // the GIL; PyContext_Enter returns -1 with an exception set when the
    // context is already entered.
    if unsafe { ffi::PyContext_Enter(ctx.as_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    let result = f();
    // SAFETY: we entered `ctx` just above on this thread, so exiting it is
    // balanced; it can only fail if the context stack was corrupted by
    // someone else, which we report.
    if unsafe { ffi::PyContext_Exit(ctx.as_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    result
}

/// `err`, given the innermost Python frame as its traceback when it has
/// none. An exception raised by C code that Rust called directly (a callback
/// that is not callable, a builtin's error) has no frame of its own, so its
/// log would lack the `Traceback (most recent call last):` lines asyncio
/// prints (asyncio's always show `Handle._run`). The frame added is the one
/// that ran the loop, which is where the callback was called from.
pub fn with_calling_frame(py: Python<'_>, err: PyErr) -> PyErr {
    if err.traceback(py).is_some() {
        return err;
    }
    err.restore(py);
    // SAFETY: we hold the GIL and an exception is set (restored just above).
    // PyEval_GetFrame returns a borrowed frame or NULL; PyTraceBack_Here only
    // reads it, and on failure leaves a (chained) exception set, which the
    // fetch below takes either way.
    unsafe {
        let frame = ffi::PyEval_GetFrame();
        if !frame.is_null() {
            ffi::PyTraceBack_Here(frame);
        }
    }
    PyErr::fetch(py)
}

/// `object.__setattr__(obj, name, value)`, or `object.__delattr__(obj,
/// name)` when `value` is None: for a class that defines `__setattr__` to
/// watch a name and otherwise stores as Python would.
pub fn generic_setattr(
    obj: &Bound<'_, PyAny>,
    name: &Bound<'_, pyo3::types::PyString>,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let value = value.map_or(std::ptr::null_mut(), |v| v.as_ptr());
    // SAFETY: we hold the GIL; `obj` and `name` (a str, as the type
    // requires) are live for the call, and `value` is either live or NULL,
    // which PyObject_GenericSetAttr documents as a deletion. It returns -1
    // with an exception set on failure.
    if unsafe { ffi::PyObject_GenericSetAttr(obj.as_ptr(), name.as_ptr(), value) } < 0 {
        return Err(PyErr::fetch(obj.py()));
    }
    Ok(())
}

pub fn is_context(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: PyContext_CheckExact only reads the object's type pointer; the
    // object is alive for the borrow.
    unsafe { ffi::PyContext_CheckExact(obj.as_ptr()) != 0 }
}

/// Keyword names for [`vectorcall`]: a tuple of interned `str`, made once
/// from string literals, so that it holds only `str` by construction (the
/// vectorcall protocol's requirement).
pub struct KwNames {
    names: &'static [&'static str],
    tuple: PyOnceLock<Py<PyTuple>>,
}

impl KwNames {
    pub const fn new(names: &'static [&'static str]) -> Self {
        Self {
            names,
            tuple: PyOnceLock::new(),
        }
    }

    fn tuple<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyTuple>> {
        let t = self.tuple.get_or_try_init(py, || {
            let items = self
                .names
                .iter()
                .map(|n| pyo3::types::PyString::intern(py, n));
            PyTuple::new(py, items).map(Bound::unbind)
        })?;
        Ok(t.bind(py))
    }
}

/// `callable(*positional, **dict(zip(kwnames, keyword_values)))` through
/// vectorcall, so the hot constructors (Future, Task) build no argument
/// tuple or dict. `args` is the positional values then one value per name.
pub fn vectorcall<'py>(
    callable: &Bound<'py, PyAny>,
    args: &[&Bound<'py, PyAny>],
    kwnames: Option<&KwNames>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = callable.py();
    let nkw = kwnames.map_or(0, |k| k.names.len());
    let Some(npos) = args.len().checked_sub(nkw) else {
        return Err(pyo3::exceptions::PySystemError::new_err(
            "vectorcall: fewer values than keyword names",
        ));
    };
    let names = match kwnames {
        Some(k) => k.tuple(py)?.as_ptr(),
        None => std::ptr::null_mut(),
    };
    let ptrs: Vec<*mut ffi::PyObject> = args.iter().map(|a| a.as_ptr()).collect();
    // SAFETY: every pointer in `ptrs` is a live object borrowed for the call;
    // `npos` positional arguments are followed by exactly one value per
    // keyword name (checked above) in `names`, a tuple of str (`KwNames`) or
    // NULL, which is the vectorcall protocol; we hold the GIL. The result is
    // a new reference or NULL with an exception set.
    unsafe {
        let res = ffi::PyObject_Vectorcall(callable.as_ptr(), ptrs.as_ptr(), npos, names);
        Bound::from_owned_ptr_or_err(py, res)
    }
}

/// A cell only touched while attached to the interpreter, for the few
/// fields of frozen pyclasses that change after creation (a handle drops
/// its callback when cancelled, as asyncio's does, so that whatever the
/// callback references is freed without waiting for the handle).
///
/// All access goes through methods that take a `Python` token, i.e. with the
/// GIL held, which serialises them on the GIL-enabled builds ferroloop
/// supports; and no reference into the cell outlives a method call, so a
/// finalizer that runs while a replaced value is dropped sees a consistent
/// cell.
pub struct GilCell<T>(std::cell::UnsafeCell<T>);

// SAFETY: see the type's documentation: every access holds the GIL and
// returns no borrow of the contents, so there is never concurrent or
// overlapping access. T: Send because the value may be dropped on whichever
// thread holds the GIL.
unsafe impl<T: Send> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    pub fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// A copy of the contents: new references, made by increfs, which run
    /// no Python code (the [`CloneRef`] bound is what guarantees it).
    pub fn get(&self, py: Python<'_>) -> T
    where
        T: CloneRef,
    {
        // SAFETY: the GIL is held (`py`), so no other thread is inside any
        // method of this cell; `CloneRef::clone_ref` only increfs (its
        // implementations are below and the trait is sealed), so no Python
        // code runs that could re-enter the cell while the shared borrow,
        // which ends with this statement, lasts.
        unsafe { &*self.0.get() }.clone_ref(py)
    }

    /// Swaps the contents; the old value is returned, to be dropped by the
    /// caller after this call (dropping may run Python finalizers).
    pub fn replace(&self, _py: Python<'_>, value: T) -> T {
        // SAFETY: as in `map`: the GIL is held, nothing else is borrowing
        // the contents, and the exclusive borrow ends before we return.
        unsafe { std::mem::replace(&mut *self.0.get(), value) }
    }

    /// The contents during garbage-collection traversal, which CPython runs
    /// with the GIL held and without running Python code. The `PyVisit`
    /// exists only inside a `__traverse__`, which is what confines the
    /// borrow to one.
    pub fn in_traverse<'a>(&'a self, _visit: &'a pyo3::gc::PyVisit<'_>) -> &'a T {
        // SAFETY: tp_traverse is called by the collector with the GIL held
        // and runs no Python code, so the cell cannot change while the
        // returned borrow (scoped to the traversal) is in use.
        unsafe { &*self.0.get() }
    }

    /// The contents in a `tp_traverse` of our own (handles.rs), which has
    /// no `PyVisit` to show for it.
    ///
    /// # Safety
    /// Called only inside a `tp_traverse` that the collector called, and
    /// the borrow not kept past it.
    pub unsafe fn during_gc(&self) -> &T {
        // SAFETY: as in `in_traverse`, by the caller's contract.
        unsafe { &*self.0.get() }
    }
}

/// Values whose copy runs no Python code: references (a copy is an
/// incref) and combinations of them. Sealed: an implementation that ran
/// Python code would break [`GilCell::get`]'s safety.
pub trait CloneRef: sealed::Sealed {
    fn clone_ref(&self, py: Python<'_>) -> Self;
}

mod sealed {
    pub trait Sealed {}
    impl<T> Sealed for pyo3::Py<T> {}
    impl<T: Sealed> Sealed for Option<T> {}
    impl<A: Sealed, B: Sealed> Sealed for (A, B) {}
    impl Sealed for crate::handles::Args {}
}

impl<T> CloneRef for Py<T> {
    fn clone_ref(&self, py: Python<'_>) -> Self {
        Py::clone_ref(self, py)
    }
}

impl<T: CloneRef> CloneRef for Option<T> {
    fn clone_ref(&self, py: Python<'_>) -> Self {
        self.as_ref().map(|v| v.clone_ref(py))
    }
}

impl<A: CloneRef, B: CloneRef> CloneRef for (A, B) {
    fn clone_ref(&self, py: Python<'_>) -> Self {
        (self.0.clone_ref(py), self.1.clone_ref(py))
    }
}

impl CloneRef for crate::handles::Args {
    fn clone_ref(&self, py: Python<'_>) -> Self {
        use crate::handles::Args;
        match self {
            Args::Zero => Args::Zero,
            Args::One(a) => Args::One(a.clone_ref(py)),
            Args::Many(t) => Args::Many(t.clone_ref(py)),
        }
    }
}

/// A writable, C-contiguous byte buffer exported by a Python object (what
/// `socket.recv_into` accepts), e.g. a BufferedProtocol's `get_buffer()`.
pub struct WritableBuffer(pyo3::buffer::PyBuffer<u8>);

/// A byte view of any buffer: `memoryview(obj).cast('B')` when its items
/// are not bytes (an `array('i')`, say), as the socket module accepts them.
fn byte_buffer(obj: &Bound<'_, PyAny>) -> PyResult<pyo3::buffer::PyBuffer<u8>> {
    match pyo3::buffer::PyBuffer::<u8>::get(obj) {
        Ok(b) => Ok(b),
        Err(_) => {
            let view = pyo3::types::PyMemoryView::from(obj)?;
            pyo3::buffer::PyBuffer::<u8>::get(
                &view.call_method1(pyo3::intern!(obj.py(), "cast"), ("B",))?,
            )
        }
    }
}

/// A memoryview whose items are not laid out one after another (`mv[::2]`):
/// what `socket.send`, `os.write` and a bytearray refuse.
pub fn is_non_contiguous_view(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    if !obj.is_instance_of::<pyo3::types::PyMemoryView>() {
        return Ok(false);
    }
    Ok(!obj
        .getattr(pyo3::intern!(obj.py(), "c_contiguous"))?
        .is_truthy()?)
}

/// The BufferError that `socket.send` raises for such a view.
pub fn non_contiguous_error() -> PyErr {
    pyo3::exceptions::PyBufferError::new_err("memoryview: underlying buffer is not C-contiguous")
}

/// A copy of the bytes of any bytes-like object.
pub fn buffer_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    byte_buffer(obj)?.to_vec(obj.py())
}

/// The C `tp_name` of `obj`'s type, as CPython's argument errors print it
/// (`bytes`, a class's `__name__`, `mmap.mmap`).
pub fn type_tp_name(obj: &Bound<'_, PyAny>) -> String {
    // SAFETY: `obj` is a live object, so its type is too, and every type's
    // `tp_name` is a NUL-terminated string that lives as long as the type.
    let name = unsafe { std::ffi::CStr::from_ptr((*pyo3::ffi::Py_TYPE(obj.as_ptr())).tp_name) };
    name.to_string_lossy().into_owned()
}

/// `repr(type(obj).__name__)`, as asyncio's type errors quote it.
pub fn type_name_repr(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(obj.get_type().name()?.repr()?.to_string())
}

impl WritableBuffer {
    pub fn new(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let view = byte_buffer(obj)?;
        if view.readonly() || !view.is_c_contiguous() {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "recv_into() argument 1 must be read-write bytes-like object, not {}",
                type_tp_name(obj)
            )));
        }
        Ok(Self(view))
    }

    /// The bytes, for a syscall to fill. The caller runs no Python code while
    /// it holds the slice.
    pub fn as_mut_slice(&mut self, _py: Python<'_>) -> &mut [u8] {
        // SAFETY: the export is writable and C-contiguous (checked in `new`),
        // `len_bytes` bytes long, and stays valid while `self.0` lives (the
        // exporter cannot resize an exported buffer); the GIL is held and the
        // caller runs no Python code while the exclusive borrow lasts.
        unsafe { std::slice::from_raw_parts_mut(self.0.buf_ptr().cast::<u8>(), self.0.len_bytes()) }
    }
}
