//! The TLS layer's dealings outside the state machine: the loop (its
//! debug flag, call_soon/call_later of its own methods, logging), the
//! application protocol (set once per kind, notified) and the waiter,
//! and sslproto's `_fatal_error`.

use super::state::{names, State};
use super::TlsProtocol;
use crate::transports::{log_debug, report, stops_loop};
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

impl TlsProtocol {
    pub(super) fn loop_any<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.loop_.bind(py).clone().into_any()
    }

    pub(super) fn debug(&self, py: Python<'_>) -> bool {
        self.loop_
            .bind(py)
            .try_borrow()
            .map(|l| l.debug_enabled())
            .unwrap_or(false)
    }

    pub(super) fn state(slf: &Bound<'_, Self>) -> PyResult<State> {
        Ok(slf.try_borrow()?.state)
    }

    /// `_set_state`: only the transitions sslproto allows.
    pub(super) fn set_state(slf: &Bound<'_, Self>, new: State) -> PyResult<()> {
        let mut t = slf.try_borrow_mut()?;
        if !t.state.can_become(new) {
            return Err(PyRuntimeError::new_err(format!(
                "cannot switch state from SSLProtocolState.{} to SSLProtocolState.{}",
                t.state.name(),
                new.name()
            )));
        }
        t.state = new;
        Ok(())
    }

    /// Sets the application's protocol, of the kind [`app_is_buffered`]
    /// found; returns the one it replaces, to be dropped once the core is
    /// not borrowed.
    pub(super) fn set_app_protocol(
        &mut self,
        protocol: &Bound<'_, PyAny>,
        buffered: bool,
    ) -> Option<Py<PyAny>> {
        self.app_buffered = buffered;
        self.app_protocol.replace(protocol.clone().unbind())
    }

    /// Whether the application's protocol is a BufferedProtocol, as
    /// sslproto decides it (`hasattr`, `isinstance`: Python that may use
    /// this protocol, so never asked with the core borrowed).
    pub(super) fn app_is_buffered(protocol: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = protocol.py();
        Ok(protocol.hasattr(pyo3::intern!(py, "get_buffer"))?
            && protocol.is_instance(names(py)?.buffered_protocol.bind(py))?)
    }

    pub(super) fn transport(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.transport.as_ref().map(|t| t.clone_ref(py))
    }

    pub(super) fn app_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.app_protocol.as_ref().map(|p| p.clone_ref(py))
    }

    /// `_wakeup_waiter(exc)`.
    pub(super) fn wakeup_waiter(
        slf: &Bound<'_, Self>,
        exc: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let Some(waiter) = slf.try_borrow_mut()?.waiter.take() else {
            return Ok(());
        };
        let waiter = waiter.bind(py);
        if !waiter
            .call_method0(pyo3::intern!(py, "cancelled"))?
            .is_truthy()?
        {
            match exc {
                Some(e) => waiter.call_method1(pyo3::intern!(py, "set_exception"), (e,))?,
                None => waiter.call_method1(pyo3::intern!(py, "set_result"), (py.None(),))?,
            };
        }
        Ok(())
    }

    /// Marks the application's transport closed (its `_closed`), so that
    /// its finalizer does not warn.
    pub(super) fn mark_app_transport_closed(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let face = slf
            .try_borrow()?
            .app_transport
            .as_ref()
            .map(|t| t.clone_ref(py));
        if let Some(face) = face {
            face.bind(py).setattr(pyo3::intern!(py, "_closed"), true)?;
        }
        Ok(())
    }

    /// `_fatal_error`: the socket transport is closed with `exc`; an
    /// `OSError` is only logged (debug mode), anything but a cancellation
    /// goes to the exception handler.
    pub(super) fn fatal_error(
        slf: &Bound<'_, Self>,
        exc: &Bound<'_, PyAny>,
        message: &str,
    ) -> PyResult<()> {
        let py = slf.py();
        let transport = slf.try_borrow()?.transport(py);
        if let Some(t) = transport {
            t.bind(py)
                .call_method1(pyo3::intern!(py, "_force_close"), (exc,))?;
        }
        if exc.is_instance_of::<PyOSError>() {
            if slf.try_borrow()?.debug(py) {
                let kw = PyDict::new(py);
                kw.set_item("exc_info", exc)?;
                crate::py::asyncio(py)?.logger.bind(py).call_method(
                    pyo3::intern!(py, "debug"),
                    ("%r: %s", slf, message),
                    Some(&kw),
                )?;
            }
        } else if !exc.is_instance(names(py)?.cancelled_error.bind(py))? {
            let (loop_, transport) = {
                let t = slf.try_borrow()?;
                (t.loop_any(py), t.transport(py))
            };
            let me = slf.clone().into_any().unbind();
            report(&loop_, message, exc, transport.as_ref(), Some(&me))?;
        }
        Ok(())
    }

    /// `try: ... except Exception as ex: self._fatal_error(ex, message)`.
    pub(super) fn fatal_on_exception(
        slf: &Bound<'_, Self>,
        res: PyResult<()>,
        message: &str,
    ) -> PyResult<()> {
        match res {
            Ok(()) => Ok(()),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyException>(slf.py()) => {
                let exc = e.into_value(slf.py()).into_bound(slf.py()).into_any();
                Self::fatal_error(slf, &exc, message)
            }
            Err(e) => Err(e),
        }
    }

    /// Calls `protocol.<method>()` for write flow control; a failure goes to
    /// the exception handler, as sslproto's `_control_app_writing` does.
    pub(super) fn notify_app(slf: &Bound<'_, Self>, method: &str) -> PyResult<()> {
        let py = slf.py();
        // After connection_lost() asyncio has let go of the app protocol
        // and calls the method on None all the same: the AttributeError is
        // reported as the method's failure.
        let p = slf
            .try_borrow()?
            .app_protocol(py)
            .unwrap_or_else(|| py.None());
        if let Err(e) = p.bind(py).call_method0(method) {
            if stops_loop(py, &e) {
                return Err(e);
            }
            let (loop_, face) = {
                let t = slf.try_borrow()?;
                (
                    t.loop_any(py),
                    t.app_transport
                        .as_ref()
                        .map_or_else(|| py.None(), |f| f.clone_ref(py)),
                )
            };
            let exc = e.into_value(py).into_bound(py).into_any();
            let me = slf.clone().into_any().unbind();
            report(
                &loop_,
                &format!("protocol.{method}() failed"),
                &exc,
                Some(&face),
                Some(&me),
            )?;
        }
        Ok(())
    }

    /// `loop.call_soon(self.<method>)`.
    pub(super) fn call_soon_own(
        slf: &Bound<'_, Self>,
        method: &Bound<'_, PyString>,
    ) -> PyResult<()> {
        let py = slf.py();
        let loop_ = slf.try_borrow()?.loop_any(py);
        loop_.call_method1(pyo3::intern!(py, "call_soon"), (slf.getattr(method)?,))?;
        Ok(())
    }

    /// `loop.call_later(timeout, self.<method>)`, for the handshake and
    /// shutdown timeouts; returns the handle.
    pub(super) fn call_later_own(
        slf: &Bound<'_, Self>,
        timeout: Py<PyAny>,
        method: &Bound<'_, PyString>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let loop_ = slf.try_borrow()?.loop_any(py);
        let handle = loop_.call_method1(
            pyo3::intern!(py, "call_later"),
            (timeout, slf.getattr(method)?),
        )?;
        Ok(handle.unbind())
    }

    pub(super) fn log(slf: &Bound<'_, Self>, format: &str) -> PyResult<()> {
        log_debug(slf.py(), (format, slf))
    }
}
