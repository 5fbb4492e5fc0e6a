//! The TLS handshake and shutdown, with their timeouts: sslproto's
//! `_start_handshake` to `_on_handshake_complete`, and `_start_shutdown`
//! to `_on_shutdown_complete`.

use super::{is_again, is_ssl_error, names, State, TlsProtocol};
use pyo3::exceptions::{PyConnectionAbortedError, PyConnectionResetError, PyTimeoutError};
use pyo3::prelude::*;

impl TlsProtocol {
    /// `_start_handshake`.
    pub(super) fn start_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (loop_, debug, timeout) = {
            let t = slf.try_borrow()?;
            (
                t.loop_any(py),
                t.debug(py),
                t.handshake_timeout.clone_ref(py),
            )
        };
        if debug {
            Self::log(slf, "%r starts SSL handshake")?;
            let now: f64 = loop_.call_method0(pyo3::intern!(py, "time"))?.extract()?;
            slf.try_borrow_mut()?.handshake_start = Some(now);
        } else {
            slf.try_borrow_mut()?.handshake_start = None;
        }
        Self::set_state(slf, State::DoHandshake)?;
        let handle =
            Self::call_later_own(slf, timeout, pyo3::intern!(py, "_check_handshake_timeout"))?;
        slf.try_borrow_mut()?.handshake_timeout_handle = Some(handle);
        Self::do_handshake(slf)
    }

    pub(super) fn check_handshake_timeout(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if Self::state(slf)? != State::DoHandshake {
            return Ok(());
        }
        let timeout = slf.try_borrow()?.handshake_timeout.clone_ref(py);
        let msg = format!(
            "SSL handshake is taking longer than {} seconds: aborting the connection",
            timeout.bind(py).str()?
        );
        let exc = PyConnectionAbortedError::new_err(msg).into_value(py);
        Self::fatal_error(slf, exc.bind(py).as_any(), "Fatal error on transport")
    }

    /// `_do_handshake`: one step; OpenSSL asks for more data until done.
    pub(super) fn do_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let raw = slf.try_borrow()?.raw.clone_ref(py);
        match raw.bind(py).call_method0(pyo3::intern!(py, "do_handshake")) {
            Ok(_) => Self::on_handshake_complete(slf, None),
            Err(e) if is_again(py, &e)? => Self::process_outgoing(slf),
            Err(e) if is_ssl_error(py, &e)? => Self::on_handshake_complete(slf, Some(e)),
            Err(e) => Err(e),
        }
    }

    /// `_on_handshake_complete(handshake_exc)`.
    pub(super) fn on_handshake_complete(
        slf: &Bound<'_, Self>,
        handshake_exc: Option<PyErr>,
    ) -> PyResult<()> {
        let py = slf.py();
        let handle = slf.try_borrow_mut()?.handshake_timeout_handle.take();
        if let Some(h) = handle {
            h.bind(py).call_method0(pyo3::intern!(py, "cancel"))?;
        }
        let sslobj = slf.try_borrow()?.sslobj.clone_ref(py);
        let sslobj = sslobj.bind(py);
        let peercert = match handshake_exc {
            Some(e) => Err(e),
            None => Self::set_state(slf, State::Wrapped)
                .and_then(|()| sslobj.call_method0(pyo3::intern!(py, "getpeercert"))),
        };
        let peercert = match peercert {
            Ok(p) => p,
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyException>(py) => {
                Self::set_state(slf, State::Unwrapped)?;
                let exc = e.into_value(py).into_bound(py).into_any();
                let msg = if exc.is_instance(names(py)?.certificate_error.bind(py))? {
                    "SSL handshake failed on verifying the certificate"
                } else {
                    "SSL handshake failed"
                };
                Self::fatal_error(slf, &exc, msg)?;
                return Self::wakeup_waiter(slf, Some(&exc));
            }
            Err(e) => return Err(e),
        };
        let (loop_, debug, start, extra) = {
            let t = slf.try_borrow()?;
            (
                t.loop_any(py),
                t.debug(py),
                t.handshake_start,
                t.extra.clone_ref(py),
            )
        };
        if debug {
            let now: f64 = loop_.call_method0(pyo3::intern!(py, "time"))?.extract()?;
            let dt = (now - start.unwrap_or(now)) * 1e3;
            super::log_debug(py, ("%r: SSL handshake took %.1f ms", slf, dt))?;
        }
        let extra = extra.bind(py);
        extra.set_item("peercert", peercert)?;
        extra.set_item("cipher", sslobj.call_method0(pyo3::intern!(py, "cipher"))?)?;
        extra.set_item(
            "compression",
            sslobj.call_method0(pyo3::intern!(py, "compression"))?,
        )?;
        extra.set_item("ssl_object", sslobj)?;
        let connect = {
            let mut t = slf.try_borrow_mut()?;
            if t.app_state == super::AppState::Init {
                t.app_state = super::AppState::ConMade;
                t.app_protocol(py)
            } else {
                None
            }
        };
        if let Some(p) = connect {
            let face = Self::_get_app_transport(slf)?;
            p.bind(py)
                .call_method1(pyo3::intern!(py, "connection_made"), (face,))?;
        }
        Self::wakeup_waiter(slf, None)?;
        Self::do_read(slf)
    }

    /// The socket hit EOF during the handshake: sslproto completes it with
    /// a `ConnectionResetError`.
    pub(super) fn handshake_reset(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::on_handshake_complete(slf, Some(PyConnectionResetError::new_err(())))
    }

    /// `_start_shutdown`: flush, then close_notify, bounded by the shutdown
    /// timeout; during the handshake there is nothing to flush: abort.
    pub(super) fn start_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let state = Self::state(slf)?;
        if matches!(state, State::Flushing | State::Shutdown | State::Unwrapped) {
            return Ok(());
        }
        Self::mark_app_transport_closed(slf)?;
        if state == State::DoHandshake {
            return Self::abort(slf, None);
        }
        Self::set_state(slf, State::Flushing)?;
        Self::start_shutdown_timer(slf)?;
        Self::do_flush(slf)
    }

    /// Schedules `_check_shutdown_timeout` after the shutdown timeout and
    /// keeps its handle, to be cancelled when the shutdown ends.
    fn start_shutdown_timer(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let timeout = slf.try_borrow()?.shutdown_timeout.clone_ref(py);
        let handle =
            Self::call_later_own(slf, timeout, pyo3::intern!(py, "_check_shutdown_timeout"))?;
        slf.try_borrow_mut()?.shutdown_timeout_handle = Some(handle);
        Ok(())
    }

    pub(super) fn check_shutdown_timeout(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if !matches!(Self::state(slf)?, State::Flushing | State::Shutdown) {
            return Ok(());
        }
        let Some(t) = slf.try_borrow()?.transport(py) else {
            return Ok(());
        };
        let exc = PyTimeoutError::new_err("SSL shutdown timed out").into_value(py);
        t.bind(py)
            .call_method1(pyo3::intern!(py, "_force_close"), (exc,))?;
        Ok(())
    }

    /// `_do_flush`: what is left to read goes to the application first.
    pub(super) fn do_flush(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_read(slf)?;
        Self::set_state(slf, State::Shutdown)?;
        Self::do_shutdown(slf)
    }

    /// `_do_shutdown`: send close_notify (unless the peer's EOF came first)
    /// and wait for the peer's.
    pub(super) fn do_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (eof, sslobj) = {
            let t = slf.try_borrow()?;
            (t.eof_received, t.sslobj.clone_ref(py))
        };
        let res = if eof {
            Ok(())
        } else {
            sslobj
                .bind(py)
                .call_method0(pyo3::intern!(py, "unwrap"))
                .map(drop)
        };
        match res {
            Ok(()) => {
                Self::process_outgoing(slf)?;
                Self::call_eof_received(slf)?;
                Self::on_shutdown_complete(slf, None)
            }
            Err(e) if is_again(py, &e)? => Self::process_outgoing(slf),
            Err(e) if is_ssl_error(py, &e)? => Self::on_shutdown_complete(slf, Some(e)),
            Err(e) => Err(e),
        }
    }

    fn on_shutdown_complete(slf: &Bound<'_, Self>, exc: Option<PyErr>) -> PyResult<()> {
        let py = slf.py();
        if exc.is_none() && super::names(py)?.keep_shutdown_timer {
            // 3.14: the timeout stays (or starts, when the peer began the
            // shutdown) until connection_lost.
            if slf.try_borrow()?.shutdown_timeout_handle.is_none() {
                Self::start_shutdown_timer(slf)?;
            }
        } else {
            let handle = slf.try_borrow_mut()?.shutdown_timeout_handle.take();
            if let Some(h) = handle {
                h.bind(py).call_method0(pyo3::intern!(py, "cancel"))?;
            }
        }
        match exc {
            Some(e) => {
                let exc = e.into_value(py).into_bound(py).into_any();
                Self::fatal_error(slf, &exc, "Fatal error on transport")
            }
            None => {
                let (loop_, transport) = {
                    let t = slf.try_borrow()?;
                    (t.loop_any(py), t.transport(py))
                };
                if let Some(t) = transport {
                    loop_.call_method1(
                        pyo3::intern!(py, "call_soon"),
                        (t.bind(py).getattr(pyo3::intern!(py, "close"))?,),
                    )?;
                }
                Ok(())
            }
        }
    }

    /// `_abort(exc)`: the socket transport goes at once — `abort()` up to
    /// 3.12, `_force_close(exc)` from 3.13.
    pub(super) fn abort(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        Self::set_state(slf, State::Unwrapped)?;
        let Some(t) = slf.try_borrow()?.transport(py) else {
            return Ok(());
        };
        let t = t.bind(py);
        if names(py)?.abort_takes_exc {
            t.call_method1(pyo3::intern!(py, "_force_close"), (exc,))?;
        } else {
            t.call_method0(pyo3::intern!(py, "abort"))?;
        }
        Ok(())
    }

    /// `eof_received` from the socket transport.
    pub(super) fn on_eof(slf: &Bound<'_, Self>) -> PyResult<Option<bool>> {
        let py = slf.py();
        slf.try_borrow_mut()?.eof_received = true;
        let res = (|| -> PyResult<Option<bool>> {
            if slf.try_borrow()?.debug(py) {
                Self::log(slf, "%r received EOF")?;
            }
            match Self::state(slf)? {
                State::DoHandshake => Self::handshake_reset(slf)?,
                State::Wrapped => {
                    Self::set_state(slf, State::Flushing)?;
                    if slf.try_borrow()?.app_reading_paused {
                        return Ok(Some(true));
                    }
                    Self::do_flush(slf)?;
                }
                State::Flushing => {
                    Self::do_write(slf)?;
                    Self::set_state(slf, State::Shutdown)?;
                    Self::do_shutdown(slf)?;
                }
                State::Shutdown => Self::do_shutdown(slf)?,
                State::Unwrapped => {}
            }
            Ok(None)
        })();
        match res {
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyException>(py) => {
                let transport = slf.try_borrow()?.transport(py);
                if let Some(t) = transport {
                    t.bind(py).call_method0(pyo3::intern!(py, "close"))?;
                }
                Err(e)
            }
            other => other,
        }
    }
}
