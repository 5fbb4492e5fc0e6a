//! TLS: asyncio's `SSLProtocol` (sslproto.py), natively.
//!
//! The TLS layer sits between a stream transport and the application's
//! protocol, as asyncio's does: it is the stream transport's protocol, and
//! it hands the application a transport of its own (the Python face
//! `SSLTransport` in python/ferroloop/_transports.py, a subclass of
//! asyncio's `_SSLProtocolTransport`, which forwards to this core). TLS
//! itself is the user's `ssl.SSLContext` driving an `ssl.SSLObject` over
//! two `ssl.MemoryBIO`s: OpenSSL as Python's ssl module configures it, no
//! second TLS library and no helper thread.
//!
//! What is native: the state machine, the write backlog and both flows'
//! control, and the hot path. Under a native stream transport, ciphertext
//! goes from the socket read straight into the incoming BIO (`feed`), the
//! plaintext is read into a scratch buffer and handed over as one `bytes`,
//! and ciphertext out goes to the stream transport's Rust write — no Python
//! frame between the socket and the application.
//!
//! The order of every protocol call, the states, the messages and the
//! exceptions follow sslproto.py line by line (`handshake.rs`: handshake
//! and shutdown; `read.rs`: the incoming flow; `write.rs`: the outgoing
//! flow). One difference, invisible to the application: a read that
//! OpenSSL would answer with `SSLWantReadError` — nothing left in the
//! incoming BIO and nothing buffered in OpenSSL — is not made, as raising
//! that exception costs more than the rest of a small read.
//!
//! Borrow discipline as in the transports: the core is never borrowed
//! while Python code (the application, or OpenSSL's callbacks) runs.

mod app;
mod handshake;
mod read;
mod state;
mod write;

use state::{is_again, is_ssl_error, names, AppState, State};

use super::flow::WaterMarks;
use super::stream::StreamTransport;
use super::{log_debug, stops_loop};
use crate::event_loop::LoopCore;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::collections::VecDeque;

/// sslproto's flow-control rule for both directions: pause once `size`
/// reaches the high mark, resume once it is down to the low one. Returns
/// `Some(true)` to pause, `Some(false)` to resume, after flipping `paused`.
fn flip(paused: &mut bool, marks: &WaterMarks, size: usize) -> Option<bool> {
    if !*paused && marks.at_or_above_high(size) {
        *paused = true;
        Some(true)
    } else if *paused && marks.at_or_below_low(size) {
        *paused = false;
        Some(false)
    } else {
        None
    }
}

/// asyncio's `FLOW_CONTROL_HIGH_WATER_SSL_READ` and `_SSL_WRITE`, in bytes.
const READ_HIGH_WATER: usize = 256 * 1024;
const WRITE_HIGH_WATER: usize = 512 * 1024;

/// `LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

#[pyclass(subclass, module = "ferroloop._ferroloop")]
pub struct TlsProtocol {
    loop_: Py<LoopCore>,
    app_protocol: Option<Py<PyAny>>,
    /// The application protocol is a `BufferedProtocol`.
    app_buffered: bool,
    app_transport: Option<Py<PyAny>>,
    app_transport_created: bool,
    /// The transport under TLS (asyncio's `_transport`).
    transport: Option<Py<PyAny>>,
    /// Its Rust core when it is a native stream transport: ciphertext is
    /// written to it directly.
    lower: Option<Py<StreamTransport>>,
    waiter: Option<Py<PyAny>>,
    sslcontext: Py<PyAny>,
    sslobj: Py<PyAny>,
    /// `sslobj._sslobj` when `sslobj` is a plain `ssl.SSLObject`, whose
    /// methods only forward to it; else `sslobj` itself.
    raw: Py<PyAny>,
    incoming: Py<PyAny>,
    outgoing: Py<PyAny>,
    extra: Py<PyDict>,
    state: State,
    app_state: AppState,
    /// Application data not yet taken by OpenSSL, with each item's `len()`.
    backlog: VecDeque<(Py<PyAny>, usize)>,
    backlog_size: usize,
    conn_lost: u32,
    ssl_writing_paused: bool,
    app_reading_paused: bool,
    ssl_reading_paused: bool,
    eof_received: bool,
    app_writing_paused: bool,
    incoming_marks: WaterMarks,
    outgoing_marks: WaterMarks,
    handshake_timeout: Py<PyAny>,
    shutdown_timeout: Py<PyAny>,
    handshake_timeout_handle: Option<Py<PyAny>>,
    shutdown_timeout_handle: Option<Py<PyAny>>,
    handshake_start: Option<f64>,
    /// What `get_buffer()` lends a transport that is not native (a
    /// memoryview of a bytearray, as asyncio's), made on first use.
    rx_view: Option<Py<PyAny>>,
}

/// A timeout argument: None means asyncio's default; anything else must be
/// a positive number.
fn timeout_arg<'py>(
    py: Python<'py>,
    given: Option<Bound<'py, PyAny>>,
    default: &Py<PyAny>,
    what: &str,
) -> PyResult<Py<PyAny>> {
    match given.filter(|g| !g.is_none()) {
        None => Ok(default.clone_ref(py)),
        Some(g) => {
            if g.le(0)? {
                return Err(PyValueError::new_err(format!(
                    "{what} should be a positive number, got {}",
                    g.str()?
                )));
            }
            Ok(g.unbind())
        }
    }
}

#[pymethods]
impl TlsProtocol {
    #[new]
    #[pyo3(signature = (
        loop_, app_protocol, sslcontext, waiter, server_side = false, server_hostname = None,
        call_connection_made = true, ssl_handshake_timeout = None, ssl_shutdown_timeout = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        loop_: &Bound<'_, LoopCore>,
        app_protocol: &Bound<'_, PyAny>,
        sslcontext: &Bound<'_, PyAny>,
        waiter: Option<Bound<'_, PyAny>>,
        server_side: bool,
        server_hostname: Option<Bound<'_, PyAny>>,
        call_connection_made: bool,
        ssl_handshake_timeout: Option<Bound<'_, PyAny>>,
        ssl_shutdown_timeout: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let py = loop_.py();
        let n = names(py)?;
        let handshake_timeout = timeout_arg(
            py,
            ssl_handshake_timeout,
            &n.handshake_timeout,
            "ssl_handshake_timeout",
        )?;
        let shutdown_timeout = timeout_arg(
            py,
            ssl_shutdown_timeout,
            &n.shutdown_timeout,
            "ssl_shutdown_timeout",
        )?;
        let sslcontext = if sslcontext.is_truthy()? {
            sslcontext.clone()
        } else {
            n.create_context
                .bind(py)
                .call1((server_side, server_hostname.as_ref()))?
        };
        let hostname = match &server_hostname {
            Some(h) if !server_side && h.is_truthy()? => h.clone().into_any(),
            _ => py.None().into_bound(py),
        };
        let extra = PyDict::new(py);
        extra.set_item("sslcontext", &sslcontext)?;
        let incoming = n.memory_bio.bind(py).call0()?;
        let outgoing = n.memory_bio.bind(py).call0()?;
        let kw = PyDict::new(py);
        kw.set_item("server_side", server_side)?;
        kw.set_item("server_hostname", hostname)?;
        let sslobj = sslcontext.call_method(
            pyo3::intern!(py, "wrap_bio"),
            (&incoming, &outgoing),
            Some(&kw),
        )?;
        let raw = if sslobj.get_type().is(n.sslobject.bind(py)) {
            sslobj.getattr(pyo3::intern!(py, "_sslobj"))?
        } else {
            sslobj.clone()
        };
        let mut t = Self {
            loop_: loop_.clone().unbind(),
            app_protocol: None,
            app_buffered: false,
            app_transport: None,
            app_transport_created: false,
            transport: None,
            lower: None,
            waiter: waiter.filter(|w| !w.is_none()).map(Bound::unbind),
            sslcontext: sslcontext.unbind(),
            sslobj: sslobj.unbind(),
            raw: raw.unbind(),
            incoming: incoming.unbind(),
            outgoing: outgoing.unbind(),
            extra: extra.unbind(),
            state: State::Unwrapped,
            app_state: if call_connection_made {
                AppState::Init
            } else {
                AppState::ConMade
            },
            backlog: VecDeque::new(),
            backlog_size: 0,
            conn_lost: 0,
            ssl_writing_paused: false,
            app_reading_paused: false,
            ssl_reading_paused: false,
            eof_received: false,
            app_writing_paused: false,
            incoming_marks: WaterMarks::with_high(READ_HIGH_WATER),
            outgoing_marks: WaterMarks::with_high(WRITE_HIGH_WATER),
            handshake_timeout,
            shutdown_timeout,
            handshake_timeout_handle: None,
            shutdown_timeout_handle: None,
            handshake_start: None,
            rx_view: None,
        };
        t.set_app_protocol(app_protocol, Self::app_is_buffered(app_protocol)?);
        Ok(t)
    }

    /// `_get_app_transport`: the application's transport, made once.
    fn _get_app_transport(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        {
            let t = slf.try_borrow()?;
            if let Some(face) = &t.app_transport {
                return Ok(face.clone_ref(py));
            }
            if t.app_transport_created {
                return Err(PyRuntimeError::new_err(
                    "Creating _SSLProtocolTransport twice",
                ));
            }
        }
        let loop_ = slf.try_borrow()?.loop_any(py);
        let face = names(py)?.face.bind(py).call1((loop_, slf))?.unbind();
        let mut t = slf.try_borrow_mut()?;
        t.app_transport = Some(face.clone_ref(py));
        t.app_transport_created = true;
        Ok(face)
    }

    // --- the socket transport's protocol --------------------------------

    fn connection_made(slf: &Bound<'_, Self>, transport: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let lower = transport
            .getattr_opt(pyo3::intern!(py, "_core"))?
            .and_then(|c| c.cast_into::<StreamTransport>().ok())
            .map(Bound::unbind);
        {
            let mut t = slf.try_borrow_mut()?;
            t.transport = Some(transport.clone().unbind());
            t.lower = lower;
        }
        Self::start_handshake(slf)
    }

    fn connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let (backlog, outgoing) = {
            let mut t = slf.try_borrow_mut()?;
            t.backlog_size = 0;
            t.conn_lost += 1;
            (std::mem::take(&mut t.backlog), t.outgoing.clone_ref(py))
        };
        drop(backlog);
        outgoing.bind(py).call_method0(pyo3::intern!(py, "read"))?;
        Self::mark_app_transport_closed(slf)?;
        let lost_cb = {
            let mut t = slf.try_borrow_mut()?;
            let tell_app = t.state != State::DoHandshake
                && matches!(t.app_state, AppState::ConMade | AppState::Eof);
            if tell_app {
                t.app_state = AppState::ConLost;
                t.app_protocol(py)
            } else {
                None
            }
        };
        if let Some(p) = lost_cb {
            let loop_ = slf.try_borrow()?.loop_any(py);
            loop_.call_method1(
                pyo3::intern!(py, "call_soon"),
                (
                    p.bind(py).getattr(pyo3::intern!(py, "connection_lost"))?,
                    &exc,
                ),
            )?;
        }
        Self::set_state(slf, State::Unwrapped)?;
        let dropped = {
            let mut t = slf.try_borrow_mut()?;
            t.lower = None;
            (
                t.transport.take(),
                t.app_transport.take(),
                t.app_protocol.take(),
            )
        };
        drop(dropped);
        let exc = Some(&exc).filter(|e| !e.is_none());
        Self::wakeup_waiter(slf, exc)?;
        let handles = {
            let mut t = slf.try_borrow_mut()?;
            (
                t.shutdown_timeout_handle.take(),
                t.handshake_timeout_handle.take(),
            )
        };
        for h in [handles.0, handles.1].into_iter().flatten() {
            h.bind(py).call_method0(pyo3::intern!(py, "cancel"))?;
        }
        Ok(())
    }

    #[pyo3(signature = (n))]
    fn get_buffer(slf: &Bound<'_, Self>, n: isize) -> PyResult<Py<PyAny>> {
        let _ = n; // the whole buffer, whatever the hint, as sslproto's
        Self::lend_buffer(slf)
    }

    fn buffer_updated(slf: &Bound<'_, Self>, nbytes: usize) -> PyResult<()> {
        Self::take_lent(slf, nbytes)?;
        Self::on_incoming(slf)
    }

    fn eof_received(slf: &Bound<'_, Self>) -> PyResult<Option<bool>> {
        Self::on_eof(slf)
    }

    /// The socket transport's buffer went over its high-water mark.
    fn pause_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let mut t = slf.try_borrow_mut()?;
        if t.ssl_writing_paused {
            return Err(pyo3::exceptions::PyAssertionError::new_err(()));
        }
        t.ssl_writing_paused = true;
        Ok(())
    }

    /// The socket transport's buffer drained to its low-water mark.
    fn resume_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        {
            let mut t = slf.try_borrow_mut()?;
            if !t.ssl_writing_paused {
                return Err(pyo3::exceptions::PyAssertionError::new_err(()));
            }
            t.ssl_writing_paused = false;
        }
        Self::process_outgoing(slf)
    }

    // --- what the application's transport calls --------------------------

    #[pyo3(signature = (name, default = None))]
    fn _get_extra_info(
        slf: &Bound<'_, Self>,
        name: &Bound<'_, PyAny>,
        default: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let (extra, transport) = {
            let t = slf.try_borrow()?;
            (t.extra.clone_ref(py), t.transport(py))
        };
        if let Some(v) = extra.bind(py).get_item(name)? {
            return Ok(v.unbind());
        }
        let default = default.unwrap_or_else(|| py.None().into_bound(py));
        match transport {
            Some(t) => Ok(t
                .bind(py)
                .call_method1(pyo3::intern!(py, "get_extra_info"), (name, default))?
                .unbind()),
            None => Ok(default.unbind()),
        }
    }

    fn _set_app_protocol(slf: &Bound<'_, Self>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let buffered = Self::app_is_buffered(protocol)?;
        let old = slf.try_borrow_mut()?.set_app_protocol(protocol, buffered);
        drop(old);
        Ok(())
    }

    #[getter]
    fn _app_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.app_protocol(py)
    }

    #[getter]
    fn _app_transport(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.app_transport.as_ref().map(|t| t.clone_ref(py))
    }

    #[getter]
    fn _transport(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.transport(py)
    }

    #[getter]
    fn _sslobj(&self, py: Python<'_>) -> Py<PyAny> {
        self.sslobj.clone_ref(py)
    }

    #[getter]
    fn _sslcontext(&self, py: Python<'_>) -> Py<PyAny> {
        self.sslcontext.clone_ref(py)
    }

    /// The incoming ciphertext's `ssl.MemoryBIO`, as asyncio's: its
    /// `start_tls` hands it what a StreamReader buffered (gh-142352).
    #[getter]
    fn _incoming(&self, py: Python<'_>) -> Py<PyAny> {
        self.incoming.clone_ref(py)
    }

    #[getter]
    fn _app_reading_paused(&self) -> bool {
        self.app_reading_paused
    }

    #[getter]
    fn _app_writing_paused(&self) -> bool {
        self.app_writing_paused
    }

    #[getter]
    fn _ssl_writing_paused(&self) -> bool {
        self.ssl_writing_paused
    }

    #[getter]
    fn _conn_lost(&self) -> u32 {
        self.conn_lost
    }

    #[getter]
    fn _outgoing_low_water(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.outgoing_marks.limits(py)?.0)
    }

    #[getter]
    fn _outgoing_high_water(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.outgoing_marks.limits(py)?.1)
    }

    #[getter]
    fn _incoming_low_water(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.incoming_marks.limits(py)?.0)
    }

    #[getter]
    fn _incoming_high_water(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.incoming_marks.limits(py)?.1)
    }

    #[pyo3(signature = (high = None, low = None))]
    fn _set_write_buffer_limits(
        slf: &Bound<'_, Self>,
        high: Option<&Bound<'_, PyAny>>,
        low: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        // The marks are read (`__index__`, comparisons: Python) unborrowed.
        let marks = WaterMarks::from_args_default(high, low, WRITE_HIGH_WATER)?;
        slf.try_borrow_mut()?.outgoing_marks = marks;
        Ok(())
    }

    #[pyo3(signature = (high = None, low = None))]
    fn _set_read_buffer_limits(
        slf: &Bound<'_, Self>,
        high: Option<&Bound<'_, PyAny>>,
        low: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let marks = WaterMarks::from_args_default(high, low, READ_HIGH_WATER)?;
        slf.try_borrow_mut()?.incoming_marks = marks;
        Ok(())
    }

    fn _get_write_buffer_size(slf: &Bound<'_, Self>) -> PyResult<usize> {
        Self::write_buffer_size(slf)
    }

    fn _get_read_buffer_size(slf: &Bound<'_, Self>) -> PyResult<usize> {
        Self::read_buffer_size(slf)
    }

    fn _control_app_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::control_app_writing(slf)
    }

    fn _control_ssl_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::control_ssl_reading(slf)
    }

    fn _pause_reading(&mut self) {
        self.app_reading_paused = true;
    }

    fn _resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::resume_app_reading(slf)
    }

    /// What `_resume_reading` schedules.
    fn _resume_app_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        match Self::state(slf)? {
            State::Wrapped => Self::do_read(slf),
            State::Flushing => Self::do_flush(slf),
            State::Shutdown => Self::do_shutdown(slf),
            _ => Ok(()),
        }
    }

    fn _do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_read(slf)
    }

    fn _start_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::start_shutdown(slf)
    }

    #[pyo3(signature = (exc = None))]
    fn _abort(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        Self::abort(slf, exc)
    }

    fn _check_handshake_timeout(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::check_handshake_timeout(slf)
    }

    fn _check_shutdown_timeout(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::check_shutdown_timeout(slf)
    }

    /// Whether the socket transport is closing: 3.14's application
    /// transport counts that as closing too.
    fn _is_transport_closing(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let py = slf.py();
        let Some(t) = slf.try_borrow()?.transport(py) else {
            return Ok(false);
        };
        t.bind(py)
            .call_method0(pyo3::intern!(py, "is_closing"))?
            .is_truthy()
    }

    /// The application transport's `write(data)`.
    fn _write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::write_one(slf, data)
    }

    fn _write_appdata(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::write_appdata(slf, list_of_data)
    }

    /// For asyncio's tests: queue data without writing it.
    #[pyo3(name = "_test__append_write_backlog")]
    fn test_append_write_backlog(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let len = data.len()?;
        let mut t = slf.try_borrow_mut()?;
        t.backlog.push_back((data.clone().unbind(), len));
        t.backlog_size += len;
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.app_protocol)?;
        visit.call(&self.app_transport)?;
        visit.call(&self.transport)?;
        visit.call(&self.lower)?;
        visit.call(&self.waiter)?;
        visit.call(&self.sslcontext)?;
        visit.call(&self.sslobj)?;
        visit.call(&self.raw)?;
        visit.call(&self.incoming)?;
        visit.call(&self.outgoing)?;
        visit.call(&self.extra)?;
        for (item, _) in &self.backlog {
            visit.call(item)?;
        }
        visit.call(&self.handshake_timeout)?;
        visit.call(&self.shutdown_timeout)?;
        visit.call(&self.handshake_timeout_handle)?;
        visit.call(&self.shutdown_timeout_handle)?;
        visit.call(&self.rx_view)
    }

    fn __clear__(&mut self) {
        self.app_protocol = None;
        self.app_transport = None;
        self.transport = None;
        self.lower = None;
        self.waiter = None;
        self.backlog.clear();
        self.handshake_timeout_handle = None;
        self.shutdown_timeout_handle = None;
        self.rx_view = None;
    }
}
