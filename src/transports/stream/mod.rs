//! The stream transport (TCP and Unix stream sockets): asyncio's
//! `_SelectorSocketTransport`, natively.
//!
//! # Implementation
//! Reads (`read.rs`): for a plain `Protocol`, `recv` goes into a per-thread scratch
//! buffer and a `bytes` of exactly the received size is handed to
//! `data_received` — no maximum-size allocation per read. For a
//! `BufferedProtocol`, `recv` goes straight into the protocol's buffer.
//! Writes (`write.rs`): `write` tries `send` at once when nothing is queued; the rest is
//! queued (see `write_buffer`) and flushed with one `writev` per writable
//! event. Ordering of protocol calls, flow control, EOF handling and the
//! single `connection_lost` follow selector_events.py line by line.
//!
//! Borrow discipline as in the loop: the core is never borrowed while the
//! protocol or any other Python code runs.

mod read;
mod write;

use super::addr::Addr;
use super::flow::{FlowControlled, WaterMarks};
use super::write_buffer::WriteBuffer;
use super::{face_or_core, log_debug, registry, report_fatal, set_watching, Core, LostWrites};
use crate::errors;
use crate::event_loop::fds::Side;
use crate::event_loop::LoopCore;
use crate::sys::borrow_raw;
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyWeakrefReference};
use rustix::net::AddressFamily;
use rustix::net::Shutdown;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};

#[pyclass(module = "ferroloop._ferroloop")]
pub struct StreamTransport {
    loop_: Py<LoopCore>,
    fd: RawFd,
    /// The Python socket object, once there is one (see `sock_object`).
    sock: Option<Py<PyAny>>,
    /// The descriptor while no Python socket object owns it: an accepted
    /// connection gets its socket object only if someone asks for it.
    owned: Option<OwnedFd>,
    /// `(family, proto)`, to make that socket object.
    family: i32,
    proto: i32,
    /// `sockname` and `peername`, read when the transport was made.
    local: Addr,
    peer: Addr,
    /// The `extra` the transport was made with (None if empty).
    extra: Option<Py<PyAny>>,
    /// The `TransportSocket` of `get_extra_info('socket')`, once asked for.
    tsock: Option<Py<PyAny>>,
    /// A weak reference to the Python `asyncio.Transport` object the
    /// protocol sees. Weak, so that no reference cycle delays its
    /// finalizer: what keeps it alive is what kept asyncio's transports
    /// alive — the user, and the poller while it watches the socket (the
    /// registered source holds it strongly).
    wrapper: Option<Py<PyAny>>,
    protocol: Option<Py<PyAny>>,
    buffered: bool,
    protocol_connected: bool,
    server: Option<Py<PyAny>>,
    /// 3.13's Server tracks its transports: `_attach(t)`/`_detach(t)`.
    server_takes_transport: bool,
    wbuf: WriteBuffer,
    marks: WaterMarks,
    protocol_paused: bool,
    conn_lost: u32,
    closing: bool,
    paused: bool,
    eof: bool,
    reading: bool,
    writing: bool,
    empty_waiter: Option<Py<PyAny>>,
}

/// `socket.SOCK_STREAM`.
const SOCK_STREAM: i32 = 1;

/// `socket.socket(family, SOCK_STREAM, proto, fileno=fd)`: the Python
/// socket object of a stream descriptor, or a new socket for `None`.
pub(crate) fn stream_socket<'py>(
    py: Python<'py>,
    family: i32,
    proto: i32,
    fd: Option<RawFd>,
) -> PyResult<Bound<'py, PyAny>> {
    py.import(pyo3::intern!(py, "socket"))?
        .getattr(pyo3::intern!(py, "socket"))?
        .call1((family, SOCK_STREAM, proto, fd))
}

impl_core!(StreamTransport, "SocketTransport", self, read: StreamTransport::read_ready, write: StreamTransport::write_ready);

impl LostWrites for StreamTransport {
    const LOST_WRITE_WARNING: &'static str = "socket.send() raised exception.";

    fn lost_writes(&mut self) -> Option<&mut u32> {
        (self.conn_lost > 0).then_some(&mut self.conn_lost)
    }
}

impl FlowControlled for StreamTransport {
    fn flow(&mut self) -> (&mut WaterMarks, usize, &mut bool) {
        (&mut self.marks, self.wbuf.len(), &mut self.protocol_paused)
    }
}

impl StreamTransport {
    /// The Python transport's `_call_connection_lost`, or the core's if it
    /// is gone; the scheduled handle keeps the transport alive until then,
    /// as asyncio's bound method does.
    fn connection_lost_cb<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let target = slf
            .borrow()
            .face(py)
            .unwrap_or_else(|| slf.clone().into_any());
        target.getattr(pyo3::intern!(py, "_call_connection_lost"))
    }

    fn call_soon(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        arg: Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let loop_ = slf.borrow().loop_.clone_ref(slf.py());
        loop_
            .bind(slf.py())
            .call_method1(pyo3::intern!(slf.py(), "call_soon"), (callback, arg))?;
        Ok(())
    }

    /// `_fatal_error`: OS errors are only logged in debug mode, anything
    /// else goes to the exception handler; then the transport is closed.
    fn fatal(slf: &Bound<'_, Self>, err: PyErr, message: &str) -> PyResult<()> {
        let exc = report_fatal(slf, err, message, |e| e.is_instance_of::<PyOSError>())?;
        Self::force_close(slf, Some(exc))
    }

    fn force_close(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let dropped;
        let was_closing = {
            let mut t = slf.borrow_mut();
            if t.conn_lost > 0 {
                return Ok(());
            }
            dropped = t.wbuf.clear();
            let was = t.closing;
            t.closing = true;
            t.conn_lost += 1;
            was
        };
        drop(dropped);
        set_watching(slf, Side::Write, false)?;
        if !was_closing {
            set_watching(slf, Side::Read, false)?;
        }
        let cb = Self::connection_lost_cb(slf)?;
        let exc = exc.unwrap_or_else(|| py.None().into_bound(py));
        Self::call_soon(slf, cb, exc)
    }

    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let empty = {
            let mut t = slf.borrow_mut();
            if t.closing {
                return Ok(());
            }
            t.closing = true;
            t.wbuf.is_empty()
        };
        set_watching(slf, Side::Read, false)?;
        if empty {
            slf.borrow_mut().conn_lost += 1;
            set_watching(slf, Side::Write, false)?;
            let cb = Self::connection_lost_cb(slf)?;
            Self::call_soon(slf, cb, py.None().into_bound(py))?;
        }
        Ok(())
    }

    fn call_connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let (protocol, connected) = {
            let t = slf.borrow();
            (
                t.protocol.as_ref().map(|p| p.clone_ref(py)),
                t.protocol_connected,
            )
        };
        let result = match protocol {
            Some(p) if connected => p
                .bind(py)
                .call_method1(pyo3::intern!(py, "connection_lost"), (&exc,))
                .map(drop),
            _ => Ok(()),
        };
        // asyncio's `finally:` — the socket is closed whatever the protocol did.
        Self::close_socket(slf)?;
        let (protocol, server, wrapper, takes, waiter) = {
            let mut t = slf.borrow_mut();
            (
                t.protocol.take(),
                t.server.take(),
                t.wrapper
                    .take()
                    .and_then(|w| w.bind(py).cast::<PyWeakrefReference>().ok()?.upgrade()),
                t.server_takes_transport,
                t.empty_waiter.as_ref().map(|w| w.clone_ref(py)),
            )
        };
        if let Some(server) = &server {
            if takes {
                server
                    .bind(py)
                    .call_method1(pyo3::intern!(py, "_detach"), (&wrapper,))?;
            } else {
                server.bind(py).call_method0(pyo3::intern!(py, "_detach"))?;
            }
        }
        drop((protocol, server, wrapper));
        if let Some(w) = waiter {
            let err = pyo3::exceptions::PyConnectionError::new_err("Connection is closed by peer");
            w.bind(py)
                .call_method1(pyo3::intern!(py, "set_exception"), (err.into_value(py),))?;
        }
        result
    }

    fn check_writable(&self, what: &str) -> PyResult<()> {
        if self.eof {
            return Err(PyRuntimeError::new_err(format!(
                "Cannot call {what}() after write_eof()"
            )));
        }
        if self.empty_waiter.is_some() {
            return Err(PyRuntimeError::new_err(format!(
                "unable to {what}; sendfile is in progress"
            )));
        }
        Ok(())
    }
}

#[pymethods]
impl StreamTransport {
    #[new]
    #[pyo3(signature = (loop_, sock, protocol, wrapper, server, server_takes_transport, extra = None))]
    fn new(
        loop_: &Bound<'_, LoopCore>,
        sock: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        wrapper: &Bound<'_, PyAny>,
        server: Option<&Bound<'_, PyAny>>,
        server_takes_transport: bool,
        extra: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let py = sock.py();
        let fd = crate::event_loop::fds::fileobj_to_fd(sock)?;
        let family: i32 = sock.getattr(pyo3::intern!(py, "family"))?.extract()?;
        let proto: i32 = sock.getattr(pyo3::intern!(py, "proto"))?.extract()?;
        let extra = match extra {
            Some(e) if e.is_truthy()? => Some(e.clone()),
            _ => None,
        };
        let given_peer = match &extra {
            Some(e) => e.contains(pyo3::intern!(py, "peername"))?,
            None => false,
        };
        let (local, peer) = socket_addresses(sock, fd, family, !given_peer)?;
        let mut t = Self::base(
            loop_,
            fd,
            family,
            proto,
            local,
            peer,
            server,
            server_takes_transport,
        );
        t.sock = Some(sock.clone().unbind());
        t.extra = extra.map(Bound::unbind);
        t.wrapper = Some(PyWeakrefReference::new(wrapper)?.into_any().unbind());
        t.assign_protocol(protocol)?;
        Ok(t)
    }

    /// Schedules `connection_made`, then reading, then the waiter, in
    /// asyncio's order.
    #[pyo3(signature = (waiter = None))]
    fn _start(slf: &Bound<'_, Self>, waiter: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let (loop_, protocol, wrapper) = {
            let t = slf.borrow();
            (
                t.loop_any(py),
                t.protocol.as_ref().map(|p| p.clone_ref(py)),
                t.face(py),
            )
        };
        let call_soon = pyo3::intern!(py, "call_soon");
        if let Some(p) = protocol {
            loop_.call_method1(
                call_soon,
                (
                    p.bind(py).getattr(pyo3::intern!(py, "connection_made"))?,
                    wrapper.clone(),
                ),
            )?;
        }
        // The face's method when there is a face: its handle then holds the
        // transport until reading starts, as asyncio's `_add_reader` handle
        // does (a just-accepted transport has no other owner yet).
        let start_from = match &wrapper {
            Some(w) => w.clone(),
            None => slf.clone().into_any(),
        };
        loop_.call_method1(
            call_soon,
            (start_from.getattr(pyo3::intern!(py, "_start_reading"))?,),
        )?;
        if let Some(w) = waiter {
            let set = py
                .import("asyncio.futures")?
                .getattr("_set_result_unless_cancelled")?;
            loop_.call_method1(call_soon, (set, w, py.None()))?;
        }
        Ok(())
    }

    /// asyncio's `_read_ready`: what the loop runs when the socket is
    /// readable (also callable directly, as asyncio's is).
    fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        <Self as Core>::on_ready(slf, Side::Read)
    }

    /// asyncio's `_write_ready`: what the loop runs when the socket is
    /// writable.
    fn _write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        <Self as Core>::on_ready(slf, Side::Write)
    }

    fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let ok = {
            let t = slf.borrow();
            !t.closing && !t.paused
        };
        if ok {
            set_watching(slf, Side::Read, true)?;
        }
        Ok(())
    }

    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::write_data(slf, data)
    }

    fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::writelines_data(slf, list_of_data)
    }

    fn write_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        let fd = {
            let mut t = slf.borrow_mut();
            if t.closing || t.eof {
                return Ok(());
            }
            t.eof = true;
            if !t.wbuf.is_empty() {
                return Ok(());
            }
            t.fd
        };
        rustix::net::shutdown(borrow_raw(fd), Shutdown::Write)
            .map_err(|e| errors::os_error(e.into()))
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    #[pyo3(name = "close")]
    fn py_close(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::close(slf)
    }

    fn abort(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::force_close(slf, None)
    }

    #[pyo3(signature = (exc = None))]
    fn _force_close(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        Self::force_close(slf, exc)
    }

    #[pyo3(signature = (exc, message = "Fatal error on transport"))]
    fn _fatal_error(slf: &Bound<'_, Self>, exc: &Bound<'_, PyAny>, message: &str) -> PyResult<()> {
        Self::fatal(slf, PyErr::from_value(exc.clone()), message)
    }

    fn _call_connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        Self::call_connection_lost(slf, exc)
    }

    fn is_closing(&self) -> bool {
        self.closing
    }

    fn is_reading(&self) -> bool {
        !self.closing && !self.paused
    }

    fn pause_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        {
            let mut t = slf.borrow_mut();
            if t.closing || t.paused {
                return Ok(());
            }
            t.paused = true;
        }
        set_watching(slf, Side::Read, false)?;
        if slf.borrow().debug(py) {
            log_debug(py, ("%r pauses reading", face_or_core(slf).unbind()))?;
        }
        Ok(())
    }

    fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        {
            let mut t = slf.borrow_mut();
            if t.closing || !t.paused {
                return Ok(());
            }
            t.paused = false;
        }
        set_watching(slf, Side::Read, true)?;
        if slf.borrow().debug(py) {
            log_debug(py, ("%r resumes reading", face_or_core(slf).unbind()))?;
        }
        Ok(())
    }

    #[pyo3(signature = (high = None, low = None))]
    fn set_write_buffer_limits(
        slf: &Bound<'_, Self>,
        high: Option<&Bound<'_, PyAny>>,
        low: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        super::flow::set_write_buffer_limits(slf, high, low)
    }

    fn get_write_buffer_limits(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        self.marks.limits(py)
    }

    fn get_write_buffer_size(&self) -> usize {
        self.wbuf.len()
    }

    fn set_protocol(&mut self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        self.assign_protocol(protocol)
    }

    fn get_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.protocol.as_ref().map(|p| p.clone_ref(py))
    }

    /// `get_extra_info`: `socket`, `sockname` and `peername` as asyncio's
    /// selector transports give them, then what `extra` had.
    #[pyo3(signature = (name, default = None))]
    fn get_extra_info(
        slf: &Bound<'_, Self>,
        name: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Ok(key) = name.cast::<PyString>() {
            match key.to_str()? {
                "socket" => return Self::transport_socket(slf),
                "sockname" => return slf.borrow().local.to_py(py),
                "peername" if !slf.borrow().peer_given(py)? => return slf.borrow().peer.to_py(py),
                _ => {}
            }
        }
        let extra = slf.borrow().extra.as_ref().map(|e| e.clone_ref(py));
        let default = default.unwrap_or_else(|| py.None());
        match extra {
            Some(e) => Ok(e
                .bind(py)
                .call_method1(pyo3::intern!(py, "get"), (name, default))?
                .unbind()),
            None => Ok(default),
        }
    }

    /// asyncio's `_extra` dict, made on demand.
    #[getter(_extra)]
    fn extra_dict<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        let d = PyDict::new(py);
        if let Some(e) = &slf.borrow().extra {
            d.update(e.bind(py).cast::<pyo3::types::PyMapping>()?)?;
        }
        for key in ["socket", "sockname", "peername"] {
            let key = PyString::new(py, key);
            if key.to_str()? == "peername" && d.contains(&key)? {
                continue;
            }
            d.set_item(&key, Self::get_extra_info(slf, &key, None)?)?;
        }
        Ok(d)
    }

    /// The socket object, None once it is closed (asyncio's `_sock`).
    #[getter(_sock)]
    fn sock_attr<'py>(slf: &Bound<'py, Self>) -> PyResult<Option<Bound<'py, PyAny>>> {
        Self::sock_object(slf)
    }

    /// True until the socket is closed.
    #[getter]
    fn _sock_open(&self) -> bool {
        self.sock.is_some() || self.owned.is_some()
    }

    /// Gives a core made by the native accept loop its Python transport.
    fn _set_face(&mut self, face: &Bound<'_, PyAny>) -> PyResult<()> {
        self.wrapper = Some(PyWeakrefReference::new(face)?.into_any().unbind());
        Ok(())
    }

    /// Closes the socket of a transport nobody closed (its finalizer).
    fn _close_unclosed(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::close_socket(slf)
    }

    fn _make_empty_waiter(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if slf.borrow().empty_waiter.is_some() {
            return Err(PyRuntimeError::new_err("Empty waiter is already set"));
        }
        let loop_ = slf.borrow().loop_any(py);
        let fut = loop_.call_method0(pyo3::intern!(py, "create_future"))?;
        if slf.borrow().wbuf.is_empty() {
            fut.call_method1(pyo3::intern!(py, "set_result"), (py.None(),))?;
        }
        slf.borrow_mut().empty_waiter = Some(fut.clone().unbind());
        Ok(fut.unbind())
    }

    fn _reset_empty_waiter(slf: &Bound<'_, Self>) {
        let old = slf.borrow_mut().empty_waiter.take();
        drop(old);
    }

    #[getter(_protocol_paused)]
    fn protocol_paused_attr(&self) -> bool {
        self.protocol_paused
    }

    #[getter]
    fn _conn_lost(&self) -> u32 {
        self.conn_lost
    }

    #[getter]
    fn _sock_fd(&self) -> RawFd {
        self.fd
    }

    #[getter]
    fn _state(&self) -> (bool, bool, usize) {
        (self.reading, self.writing, self.wbuf.len())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.sock)?;
        visit.call(&self.extra)?;
        visit.call(&self.tsock)?;
        self.local.traverse(&visit)?;
        self.peer.traverse(&visit)?;
        visit.call(&self.wrapper)?;
        visit.call(&self.protocol)?;
        visit.call(&self.server)?;
        visit.call(&self.empty_waiter)?;
        self.wbuf.traverse(&visit)
    }

    fn __clear__(&mut self) {
        self.extra = None;
        self.tsock = None;
        self.wrapper = None;
        self.protocol = None;
        self.server = None;
        self.empty_waiter = None;
    }
}

/// `sockname` and `peername` (if `want_peer`) of a connected socket: as
/// Rust addresses for IPv4 and IPv6, else the socket module's objects.
/// None (`Unknown`) where the call fails, as asyncio stores.
fn socket_addresses(
    sock: &Bound<'_, PyAny>,
    fd: RawFd,
    family: i32,
    want_peer: bool,
) -> PyResult<(Addr, Addr)> {
    let py = sock.py();
    if family == i32::from(AddressFamily::INET.as_raw())
        || family == i32::from(AddressFamily::INET6.as_raw())
    {
        let fd = borrow_raw(fd);
        let local = Addr::from_kernel(rustix::net::getsockname(fd).ok());
        let peer = match want_peer {
            true => Addr::from_kernel(rustix::net::getpeername(fd).ok().flatten()),
            false => Addr::Unknown,
        };
        return Ok((local, peer));
    }
    let ask = |method: &Bound<'_, PyString>| match sock.call_method0(method) {
        Ok(a) => Ok(Addr::Py(a.unbind())),
        Err(e) if e.is_instance_of::<PyOSError>(py) => Ok(Addr::Unknown),
        Err(e) => Err(e),
    };
    let local = ask(pyo3::intern!(py, "getsockname"))?;
    let peer = match want_peer {
        true => ask(pyo3::intern!(py, "getpeername"))?,
        false => Addr::Unknown,
    };
    Ok((local, peer))
}

impl StreamTransport {
    #[allow(clippy::too_many_arguments)]
    fn base(
        loop_: &Bound<'_, LoopCore>,
        fd: RawFd,
        family: i32,
        proto: i32,
        local: Addr,
        peer: Addr,
        server: Option<&Bound<'_, PyAny>>,
        server_takes_transport: bool,
    ) -> Self {
        Self {
            loop_: loop_.clone().unbind(),
            fd,
            sock: None,
            owned: None,
            family,
            proto,
            local,
            peer,
            extra: None,
            tsock: None,
            wrapper: None,
            protocol: None,
            buffered: false,
            protocol_connected: false,
            server: server.map(|s| s.clone().unbind()),
            server_takes_transport,
            wbuf: WriteBuffer::default(),
            marks: WaterMarks::default(),
            protocol_paused: false,
            conn_lost: 0,
            closing: false,
            paused: false,
            eof: false,
            reading: false,
            writing: false,
            empty_waiter: None,
        }
    }

    /// A transport for a connection the native accept loop took: the
    /// descriptor is Rust's until someone asks for its socket object.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn accepted(
        loop_: &Bound<'_, LoopCore>,
        fd: OwnedFd,
        family: i32,
        proto: i32,
        peer: Addr,
        protocol: &Bound<'_, PyAny>,
        server: Option<&Bound<'_, PyAny>>,
        server_takes_transport: bool,
    ) -> PyResult<Self> {
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let local = Addr::from_kernel(rustix::net::getsockname(&fd).ok());
        let mut t = Self::base(
            loop_,
            raw,
            family,
            proto,
            local,
            peer,
            server,
            server_takes_transport,
        );
        t.owned = Some(fd);
        t.assign_protocol(protocol)?;
        Ok(t)
    }

    fn peer_given(&self, py: Python<'_>) -> PyResult<bool> {
        match &self.extra {
            Some(e) => e.bind(py).contains(pyo3::intern!(py, "peername")),
            None => Ok(false),
        }
    }

    /// The Python socket object, made from the descriptor on first use;
    /// None once the socket is closed.
    fn sock_object<'py>(slf: &Bound<'py, Self>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = slf.py();
        let (family, proto, fd) = {
            let t = slf.borrow();
            if let Some(s) = &t.sock {
                return Ok(Some(s.bind(py).clone()));
            }
            if t.owned.is_none() {
                return Ok(None);
            }
            (t.family, t.proto, t.fd)
        };
        let sock = stream_socket(py, family, proto, Some(fd))?;
        // What asyncio's accept path does to the connection's socket.
        sock.call_method1(pyo3::intern!(py, "setblocking"), (false,))?;
        let mut t = slf.borrow_mut();
        if let Some(fd) = t.owned.take() {
            // The socket object owns the descriptor from now on.
            let _ = fd.into_raw_fd();
        }
        t.sock = Some(sock.clone().unbind());
        Ok(Some(sock))
    }

    /// Closes the socket: its Python object if it has one, else the
    /// descriptor; and forgets the loop's record of it.
    fn close_socket(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (sock, owned, loop_, fd) = {
            let mut t = slf.borrow_mut();
            (t.sock.take(), t.owned.take(), t.loop_.clone_ref(py), t.fd)
        };
        registry::forget(loop_.bind(py), fd, slf.as_any());
        drop(owned);
        if let Some(s) = &sock {
            s.bind(py).call_method0(pyo3::intern!(py, "close"))?;
        }
        Ok(())
    }

    /// `get_extra_info('socket')`: asyncio's `TransportSocket`, made once.
    /// Asked for after the socket was closed without ever having had a
    /// Python object, it is a closed socket of the same kind, as asyncio's
    /// would be by then.
    fn transport_socket(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Some(ts) = &slf.borrow().tsock {
            return Ok(ts.clone_ref(py));
        }
        let sock = match Self::sock_object(slf)? {
            Some(s) => s,
            None => {
                let (family, proto) = {
                    let t = slf.borrow();
                    (t.family, t.proto)
                };
                let made = stream_socket(py, family, proto, None);
                match made {
                    Ok(s) => {
                        s.call_method0(pyo3::intern!(py, "close"))?;
                        s
                    }
                    // Out of descriptors, say: there is no socket to show.
                    Err(e) if e.is_instance_of::<PyOSError>(py) => return Ok(py.None()),
                    Err(e) => return Err(e),
                }
            }
        };
        let ts = py
            .import(pyo3::intern!(py, "asyncio.trsock"))?
            .getattr(pyo3::intern!(py, "TransportSocket"))?
            .call1((sock,))?
            .unbind();
        slf.borrow_mut().tsock = Some(ts.clone_ref(py));
        Ok(ts)
    }

    fn assign_protocol(&mut self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = protocol.py();
        let buffered_cls = py.import("asyncio")?.getattr("BufferedProtocol")?;
        self.buffered = protocol.is_instance(&buffered_cls)?;
        self.protocol = Some(protocol.clone().unbind());
        self.protocol_connected = true;
        Ok(())
    }
}
