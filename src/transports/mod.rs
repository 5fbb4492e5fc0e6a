//! Native transports: Rust reads and writes the socket, keeps the write
//! buffer and decides when to call the protocol.
//!
//! Each transport is a Rust core plus a thin Python object deriving from
//! `asyncio.Transport` (python/ferroloop/_transports.py), because asyncio's
//! classes have a C layout a Rust class cannot share, and libraries check
//! `isinstance(t, asyncio.Transport)`. The protocol only ever sees the
//! Python object; the core calls the protocol directly.

pub mod datagram;
pub mod flow;
pub mod pipes;
pub mod stream;
pub mod write_buffer;

use crate::py;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Reports an error with no caller to the loop's exception handler, with
/// asyncio's context keys.
pub fn report(
    loop_: &Bound<'_, PyAny>,
    message: &str,
    exc: &Bound<'_, PyAny>,
    transport: Option<&Py<PyAny>>,
    protocol: Option<&Py<PyAny>>,
) -> PyResult<()> {
    let py = loop_.py();
    let ctx = PyDict::new(py);
    ctx.set_item("message", message)?;
    ctx.set_item("exception", exc)?;
    if let Some(t) = transport {
        ctx.set_item("transport", t)?;
    }
    if let Some(p) = protocol {
        ctx.set_item("protocol", p)?;
    }
    loop_.call_method1(pyo3::intern!(py, "call_exception_handler"), (ctx,))?;
    Ok(())
}

/// `logger.debug(*args)` on asyncio's logger (debug mode only).
pub fn log_debug<'py>(py: Python<'py>, args: impl pyo3::call::PyCallArgs<'py>) -> PyResult<()> {
    let a = py::asyncio(py)?;
    a.logger
        .bind(py)
        .call_method1(pyo3::intern!(py, "debug"), args)
        .map(drop)
}
