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

mod extra;
mod read;
mod write;

use extra::socket_addresses;
pub(crate) use extra::stream_socket;

use super::addr::Addr;
use super::flow::{FlowControlled, WaterMarks};
use super::shared::{close, fatal, force_close, tell_protocol_lost};
use super::write_buffer::WriteBuffer;
use super::{registry, Core};
use crate::errors;
use crate::event_loop::LoopCore;
use crate::sys::{self, HeldFd};
use pyo3::exceptions::PyRuntimeError;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyWeakrefReference};
use std::os::fd::{OwnedFd, RawFd};

#[pyclass(module = "ferroloop._ferroloop")]
pub struct StreamTransport {
    loop_: Py<LoopCore>,
    fd: HeldFd,
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
    /// 3.15's `_context`: the context that every callback of the transport
    /// runs in, given by `create_connection` or the server. None before
    /// 3.15, where each callback runs in a copy of the context current
    /// where it was scheduled.
    context: Option<Py<PyAny>>,
}

impl_core!(StreamTransport, "_SelectorSocketTransport", self, read: StreamTransport::read_ready, write: StreamTransport::write_ready, context: context);

impl FlowControlled for StreamTransport {
    fn flow(&mut self) -> (&mut WaterMarks, usize, &mut bool) {
        (&mut self.marks, self.wbuf.len(), &mut self.protocol_paused)
    }

    fn flow_ref(&self) -> (&WaterMarks, usize, bool) {
        (&self.marks, self.wbuf.len(), self.protocol_paused)
    }
}

reading_pymethods!(StreamTransport, paused: self.paused, closing: self.closing);
writing_pymethods!(StreamTransport, conn_lost: self.conn_lost, warning: "socket.send() raised exception.");
ready_pymethods!(StreamTransport);

selector_transport!(
    StreamTransport,
    queue: wbuf,
    clear_queue: StreamTransport::clear_queue,
    schedule_lost: StreamTransport::schedule_lost
);

impl StreamTransport {
    /// `self._loop.call_soon(self._call_connection_lost, exc)`.
    fn schedule_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let cb = Self::connection_lost_cb(slf)?;
        Self::call_soon(slf, cb, &[exc])
    }

    /// The Python transport's `_call_connection_lost`, or the core's if it
    /// is gone; the scheduled handle keeps the transport alive until then,
    /// as asyncio's bound method does.
    fn connection_lost_cb<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let target = slf
            .try_borrow()?
            .face(py)
            .unwrap_or_else(|| slf.clone().into_any());
        target.getattr(pyo3::intern!(py, "_call_connection_lost"))
    }

    /// asyncio's `_call_soon`: `loop.call_soon`, in the transport's
    /// context where it has one.
    fn call_soon<'py>(
        slf: &Bound<'py, Self>,
        callback: Bound<'py, PyAny>,
        args: &[Bound<'py, PyAny>],
    ) -> PyResult<()> {
        let py = slf.py();
        let (loop_, context) = {
            let t = slf.try_borrow()?;
            (t.loop_any(py), t.context.as_ref().map(|c| c.clone_ref(py)))
        };
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(callback);
        all.extend(args.iter().cloned());
        let all = PyTuple::new(py, all)?;
        let kwargs = match context {
            Some(c) => {
                let kw = PyDict::new(py);
                kw.set_item(pyo3::intern!(py, "context"), c)?;
                Some(kw)
            }
            None => None,
        };
        loop_.call_method(pyo3::intern!(py, "call_soon"), all, kwargs.as_ref())?;
        Ok(())
    }

    /// The write buffer's shared chunks, taken out.
    fn clear_queue(&mut self) -> Vec<Py<PyAny>> {
        self.wbuf.clear().into_iter().map(Py::into_any).collect()
    }

    fn call_connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let result = tell_protocol_lost(slf, &exc)?;
        // asyncio's `finally:` — the socket is closed whatever the protocol did.
        Self::close_socket(slf)?;
        let (protocol, server, wrapper, takes, waiter) = {
            let mut t = slf.try_borrow_mut()?;
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
    #[allow(clippy::too_many_arguments)] // asyncio's transport constructor, plus the face
    #[pyo3(signature = (loop_, sock, protocol, wrapper, server, server_takes_transport, extra = None, context = None))]
    fn new(
        loop_: &Bound<'_, LoopCore>,
        sock: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        wrapper: &Bound<'_, PyAny>,
        server: Option<&Bound<'_, PyAny>>,
        server_takes_transport: bool,
        extra: Option<&Bound<'_, PyAny>>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let py = sock.py();
        // SAFETY: the transport holds `sock`, whose descriptor this is,
        // until `close_socket` closes it, and calls through it only while
        // the connection is not lost.
        let fd = unsafe { HeldFd::new(crate::event_loop::fds::fileobj_to_fd(sock)?) };
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
        t.context = context.filter(|c| !c.is_none(py));
        t.assign_protocol(protocol, is_buffered(protocol)?);
        Ok(t)
    }

    /// Schedules `connection_made`, then reading, then the waiter, in
    /// asyncio's order.
    #[pyo3(signature = (waiter = None))]
    fn _start(slf: &Bound<'_, Self>, waiter: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let (protocol, wrapper) = {
            let t = slf.try_borrow()?;
            (t.protocol.as_ref().map(|p| p.clone_ref(py)), t.face(py))
        };
        let face = || wrapper.clone().unwrap_or_else(|| py.None().into_bound(py));
        if let Some(p) = protocol {
            let made = p.bind(py).getattr(pyo3::intern!(py, "connection_made"))?;
            Self::call_soon(slf, made, &[face()])?;
        }
        // The face's method when there is a face: its handle then holds the
        // transport until reading starts, as asyncio's `_add_reader` handle
        // does (a just-accepted transport has no other owner yet).
        let start_from = match &wrapper {
            Some(w) => w.clone(),
            None => slf.clone().into_any(),
        };
        let start = start_from.getattr(pyo3::intern!(py, "_start_reading"))?;
        Self::call_soon(slf, start, &[])?;
        if let Some(w) = waiter {
            let set = py
                .import("asyncio.futures")?
                .getattr("_set_result_unless_cancelled")?;
            Self::call_soon(slf, set, &[w.clone(), py.None().into_bound(py)])?;
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
            let mut t = slf.try_borrow_mut()?;
            if t.closing || t.eof {
                return Ok(());
            }
            t.eof = true;
            if !t.wbuf.is_empty() {
                return Ok(());
            }
            t.fd
        };
        match sys::shutdown_write(fd) {
            Ok(()) | Err(sys::SysError::Again) => Ok(()),
            Err(sys::SysError::Os(e)) => Err(errors::sys_error(e)),
        }
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    #[pyo3(name = "close")]
    fn py_close(slf: &Bound<'_, Self>) -> PyResult<()> {
        close(slf)
    }

    fn abort(slf: &Bound<'_, Self>) -> PyResult<()> {
        force_close(slf, None)
    }

    #[pyo3(signature = (exc = None))]
    fn _force_close(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        force_close(slf, exc)
    }

    #[pyo3(signature = (exc, message = "Fatal error on transport"))]
    fn _fatal_error(slf: &Bound<'_, Self>, exc: &Bound<'_, PyAny>, message: &str) -> PyResult<()> {
        fatal(slf, PyErr::from_value(exc.clone()), message)
    }

    fn _call_connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        Self::call_connection_lost(slf, exc)
    }

    fn is_closing(&self) -> bool {
        self.closing
    }

    /// The protocol's kind is asked (an `isinstance`, which can run
    /// Python) before the core is borrowed, and the old protocol is let go
    /// after (its finalizer may use the transport).
    fn set_protocol(slf: &Bound<'_, Self>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let buffered = is_buffered(protocol)?;
        let old = slf.try_borrow_mut()?.assign_protocol(protocol, buffered);
        drop(old);
        Ok(())
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
        Self::extra_info(slf, name, default)
    }

    /// asyncio's `_extra` dict, made on demand.
    #[getter(_extra)]
    fn extra_dict<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        Self::extra_as_dict(slf)
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
        if slf.try_borrow()?.empty_waiter.is_some() {
            return Err(PyRuntimeError::new_err("Empty waiter is already set"));
        }
        let loop_ = slf.try_borrow()?.loop_any(py);
        let fut = loop_.call_method0(pyo3::intern!(py, "create_future"))?;
        if slf.try_borrow()?.wbuf.is_empty() {
            fut.call_method1(pyo3::intern!(py, "set_result"), (py.None(),))?;
        }
        slf.try_borrow_mut()?.empty_waiter = Some(fut.clone().unbind());
        Ok(fut.unbind())
    }

    fn _reset_empty_waiter(slf: &Bound<'_, Self>) -> PyResult<()> {
        let old = slf.try_borrow_mut()?.empty_waiter.take();
        drop(old);
        Ok(())
    }

    /// asyncio's `_paused`: reading was paused by `pause_reading()`.
    #[getter]
    fn _paused(&self) -> bool {
        self.paused
    }

    #[getter]
    fn _sock_fd(&self) -> RawFd {
        self.fd.raw()
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
        visit.call(&self.context)?;
        self.wbuf.traverse(&visit)
    }

    fn __clear__(&mut self) {
        self.extra = None;
        self.tsock = None;
        self.wrapper = None;
        self.protocol = None;
        self.server = None;
        self.empty_waiter = None;
        self.context = None;
    }
}

impl StreamTransport {
    #[allow(clippy::too_many_arguments)]
    fn base(
        loop_: &Bound<'_, LoopCore>,
        fd: HeldFd,
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
            context: None,
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
        context: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        // SAFETY: the transport owns `fd` (`owned` below, or the socket
        // object it becomes) until `close_socket`, and calls through it
        // only while it is not lost.
        let held = unsafe { HeldFd::new(std::os::fd::AsRawFd::as_raw_fd(&fd)) };
        let local = Addr::from_kernel(sys::getsockname(held).ok());
        let mut t = Self::base(
            loop_,
            held,
            family,
            proto,
            local,
            peer,
            server,
            server_takes_transport,
        );
        t.owned = Some(fd);
        t.context = context;
        t.assign_protocol(protocol, is_buffered(protocol)?);
        Ok(t)
    }

    /// Closes the socket: its Python object if it has one, else the
    /// descriptor; and forgets the loop's record of it.
    fn close_socket(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (sock, owned, loop_, fd) = {
            let mut t = slf.try_borrow_mut()?;
            (t.sock.take(), t.owned.take(), t.loop_.clone_ref(py), t.fd)
        };
        registry::forget(loop_.bind(py), fd.raw(), slf.as_any())?;
        drop(owned);
        if let Some(s) = &sock {
            s.bind(py).call_method0(pyo3::intern!(py, "close"))?;
        }
        Ok(())
    }

    /// Sets the protocol, of the kind [`is_buffered`] found, and returns
    /// the one it replaces, to be dropped once the core is not borrowed.
    fn assign_protocol(
        &mut self,
        protocol: &Bound<'_, PyAny>,
        buffered: bool,
    ) -> Option<Py<PyAny>> {
        self.buffered = buffered;
        self.protocol_connected = true;
        self.protocol.replace(protocol.clone().unbind())
    }
}

/// Whether `protocol` is an `asyncio.BufferedProtocol` (an `isinstance`,
/// which can run Python: never asked with the core borrowed).
fn is_buffered(protocol: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = protocol.py();
    let buffered_cls = py.import("asyncio")?.getattr("BufferedProtocol")?;
    protocol.is_instance(&buffered_cls)
}
