//! The one place Rust errors become Python exceptions.

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::PyErr;
use std::io;

/// `RuntimeError('Event loop is closed')`, as `BaseEventLoop._check_closed`.
pub fn loop_closed() -> PyErr {
    PyRuntimeError::new_err("Event loop is closed")
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
