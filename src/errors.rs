//! The one place errors are classified and turned into what Python sees:
//! Rust errors into Python exceptions, and what the loop reports into
//! asyncio's exception-handler contexts.

use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyRuntimeError, PySystemExit};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::io;

/// `RuntimeError('Event loop is closed')`, as `BaseEventLoop._check_closed`.
pub fn loop_closed() -> PyErr {
    PyRuntimeError::new_err("Event loop is closed")
}

/// A failed system call (`SysError::Os`), as Python raises it.
pub fn sys_error(e: rustix::io::Errno) -> PyErr {
    os_error(e.into())
}

/// An OS error as Python raises it: `OSError(errno, strerror)`, which Python
/// turns into the matching subclass (EPERM -> PermissionError, ...), with
/// `.errno` set.
pub fn os_error(err: io::Error) -> PyErr {
    match err.raw_os_error() {
        Some(code) => {
            let msg = io::Error::from_raw_os_error(code).to_string();
            // Rust appends " (os error N)"; Python's strerror does not.
            let msg = match msg.rfind(" (os error") {
                Some(i) => msg[..i].to_string(),
                None => msg,
            };
            PyOSError::new_err((code, msg))
        }
        None => PyOSError::new_err(err.to_string()),
    }
}

/// What the loop lets propagate instead of reporting it, as asyncio's
/// `except (SystemExit, KeyboardInterrupt): raise` clauses do everywhere a
/// callback, a protocol or a transport error is otherwise handled.
pub fn stops_loop(py: Python<'_>, e: &PyErr) -> bool {
    e.is_instance_of::<PySystemExit>(py) || e.is_instance_of::<PyKeyboardInterrupt>(py)
}

/// The context dict of `loop.call_exception_handler(context)`, made with
/// asyncio's keys: `message` first, then what the call site knows
/// (`exception`, `handle`, `transport`, `protocol`, `socket`, ...).
pub struct HandlerContext<'py>(Bound<'py, PyDict>);

impl<'py> HandlerContext<'py> {
    pub fn new(py: Python<'py>, message: &str) -> PyResult<Self> {
        use PyDictMethods;
        let ctx = PyDict::new(py);
        ctx.set_item("message", message)?;
        Ok(Self(ctx))
    }

    pub fn with(self, key: &str, value: impl IntoPyObject<'py>) -> PyResult<Self> {
        use PyDictMethods;
        self.0.set_item(key, value)?;
        Ok(self)
    }

    /// The exception, as the value asyncio's handler finds under `exception`.
    pub fn exception(self, err: PyErr) -> PyResult<Self> {
        let value = err.into_value(self.0.py());
        self.with("exception", value)
    }

    /// `loop.call_exception_handler(context)`: through the loop's Python
    /// method, so a subclass's or a test's replacement is honoured.
    pub fn send(self, loop_: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = loop_.py();
        loop_.call_method1(pyo3::intern!(py, "call_exception_handler"), (self.0,))?;
        Ok(())
    }
}
