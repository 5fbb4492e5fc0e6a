//! The datagram transport (UDP, Unix datagram): asyncio's
//! `_SelectorDatagramTransport`, natively.
//!
//! # Implementation
//! IPv4 and IPv6 datagrams are received and sent by Rust, with addresses
//! converted the way the socket module converts them; other families, and
//! destinations given as host names (which the socket module resolves),
//! go through the Python socket object so their semantics stay exactly the
//! socket module's. Queued datagrams are sent in order when the socket turns
//! writable. Version differences follow the running Python: 3.13 sends
//! empty datagrams, counts 8 header bytes per queued datagram, and closes
//! once a closing transport's queue drains.

use super::addr::{inet_to_py, py_to_inet};
use super::flow::{maybe_pause_protocol, maybe_resume_protocol, FlowControlled, WaterMarks};
use super::shared::{close, fatal, force_close, tell_protocol_lost};
use super::{drop_lost_write, registry, set_watching, stops_loop, Core};
use crate::errors;
use crate::event_loop::fds::Side;
use crate::event_loop::LoopCore;
use crate::sys::{self, HeldFd, SysError};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyWeakrefReference};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// asyncio's `max_size` for datagrams.
const MAX_DATAGRAM: usize = 256 * 1024;

thread_local! {
    static SCRATCH: RefCell<crate::sys::ReadScratch> = RefCell::new(crate::sys::ReadScratch::new(MAX_DATAGRAM));
}

#[pyclass(module = "ferroloop._ferroloop")]
pub struct DatagramTransport {
    loop_: Py<LoopCore>,
    fd: HeldFd,
    sock: Option<Py<PyAny>>,
    /// AF_INET/AF_INET6: Rust does the I/O; otherwise the socket object.
    native: bool,
    /// AF_INET6 (only matters when `native`).
    ipv6: bool,
    paused: bool,
    wrapper: Option<Py<PyAny>>,
    protocol: Option<Py<PyAny>>,
    protocol_connected: bool,
    /// The fixed peer (`remote_addr`), as the Python object given.
    address: Option<Py<PyAny>>,
    connected: bool,
    queue: VecDeque<(Py<PyBytes>, Option<Py<PyAny>>)>,
    queued_size: usize,
    header_size: usize,
    send_empty: bool,
    marks: WaterMarks,
    protocol_paused: bool,
    conn_lost: u32,
    closing: bool,
    reading: bool,
    writing: bool,
}

impl_core!(DatagramTransport, "_SelectorDatagramTransport", self, read: DatagramTransport::read_ready, write: DatagramTransport::write_ready);

impl FlowControlled for DatagramTransport {
    fn flow(&mut self) -> (&mut WaterMarks, usize, &mut bool) {
        (&mut self.marks, self.queued_size, &mut self.protocol_paused)
    }

    fn flow_ref(&self) -> (&WaterMarks, usize, bool) {
        (&self.marks, self.queued_size, self.protocol_paused)
    }
}

reading_pymethods!(DatagramTransport, paused: self.paused, closing: self.closing);
writing_pymethods!(DatagramTransport, conn_lost: self.conn_lost, warning: "socket.send() raised exception.");
ready_pymethods!(DatagramTransport);

selector_transport!(
    DatagramTransport,
    queue: queue,
    clear_queue: DatagramTransport::clear_queue,
    schedule_lost: DatagramTransport::schedule_lost
);

impl DatagramTransport {
    /// `self._loop.call_soon(self._call_connection_lost, exc)`.
    fn schedule_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let target = slf
            .try_borrow()?
            .face(py)
            .unwrap_or_else(|| slf.clone().into_any());
        let cb = target.getattr(pyo3::intern!(py, "_call_connection_lost"))?;
        let loop_ = slf.try_borrow()?.loop_any(py);
        loop_.call_method1(pyo3::intern!(py, "call_soon"), (cb, exc))?;
        Ok(())
    }

    fn error_received(slf: &Bound<'_, Self>, err: PyErr) -> PyResult<()> {
        let py = slf.py();
        // Taken out first: the borrow must end before the protocol runs (it
        // may close this transport).
        let protocol = slf.try_borrow()?.protocol(py);
        if let Some(p) = protocol {
            p.bind(py)
                .call_method1(pyo3::intern!(py, "error_received"), (err.into_value(py),))?;
        }
        Ok(())
    }

    fn read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (fd, native, sock, protocol) = {
            let t = slf.try_borrow()?;
            if t.conn_lost > 0 {
                return Ok(());
            }
            (
                t.fd,
                t.native,
                t.sock.as_ref().map(|s| s.clone_ref(py)),
                t.protocol(py),
            )
        };
        let (Some(sock), Some(protocol)) = (sock, protocol) else {
            return Ok(());
        };
        let received: PyResult<Option<(Bound<'_, PyAny>, Bound<'_, PyAny>)>> = if native {
            crate::sys::ReadScratch::with(&SCRATCH, MAX_DATAGRAM, |s| {
                match sys::recvfrom(fd, &mut s[..]) {
                    Ok((n, addr)) => {
                        let data = PyBytes::new(py, &s[..n]).into_any();
                        let addr = match addr.and_then(|a| SocketAddr::try_from(a).ok()) {
                            Some(a) => inet_to_py(py, a)?.into_any(),
                            None => py.None().into_bound(py),
                        };
                        Ok(Some((data, addr)))
                    }
                    Err(SysError::Again) => Ok(None),
                    Err(SysError::Os(e)) => Err(errors::sys_error(e)),
                }
            })
        } else {
            match sock
                .bind(py)
                .call_method1(pyo3::intern!(py, "recvfrom"), (MAX_DATAGRAM,))
            {
                Ok(r) => Ok(Some((r.get_item(0)?, r.get_item(1)?))),
                Err(e)
                    if e.is_instance_of::<pyo3::exceptions::PyBlockingIOError>(py)
                        || e.is_instance_of::<pyo3::exceptions::PyInterruptedError>(py) =>
                {
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        };
        match received {
            Ok(None) => Ok(()),
            Ok(Some((data, addr))) => {
                protocol
                    .bind(py)
                    .call_method1(pyo3::intern!(py, "datagram_received"), (data, addr))?;
                Ok(())
            }
            Err(e) if e.is_instance_of::<PyOSError>(py) => Self::error_received(slf, e),
            Err(e) => fatal(slf, e, "Fatal read error on datagram transport"),
        }
    }

    /// One datagram out; Ok(false) when the socket would block.
    fn send_one(
        slf: &Bound<'_, Self>,
        data: &[u8],
        addr: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let py = slf.py();
        let (fd, native, ipv6, connected, sock) = {
            let t = slf.try_borrow()?;
            (
                t.fd,
                t.native,
                t.ipv6,
                t.connected,
                t.sock.as_ref().map(|s| s.clone_ref(py)),
            )
        };
        let res = if native && connected {
            Some(sys::send(fd, data))
        } else if native {
            // Only a destination of the socket's own family: the socket module
            // reports the others (as a gaierror), so they take its path.
            addr.and_then(py_to_inet)
                .filter(|a| a.is_ipv6() == ipv6)
                .map(|a| sys::sendto(fd, data, &a))
        } else {
            None
        };
        match res {
            Some(Ok(_)) => Ok(true),
            Some(Err(SysError::Again)) => Ok(false),
            Some(Err(SysError::Os(e))) => Err(errors::sys_error(e)),
            None => {
                let Some(sock) = sock else { return Ok(true) };
                let bytes = PyBytes::new(py, data);
                let r = if connected {
                    sock.bind(py)
                        .call_method1(pyo3::intern!(py, "send"), (bytes,))
                } else {
                    sock.bind(py)
                        .call_method1(pyo3::intern!(py, "sendto"), (bytes, addr))
                };
                match r {
                    Ok(_) => Ok(true),
                    Err(e)
                        if e.is_instance_of::<pyo3::exceptions::PyBlockingIOError>(py)
                            || e.is_instance_of::<pyo3::exceptions::PyInterruptedError>(py) =>
                    {
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    fn write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        loop {
            let front = {
                let mut t = slf.try_borrow_mut()?;
                let h = t.header_size;
                match t.queue.pop_front() {
                    Some((d, a)) => {
                        t.queued_size -= d.as_bytes(py).len() + h;
                        (d, a)
                    }
                    None => break,
                }
            };
            let (data, addr) = front;
            match Self::send_one(slf, data.as_bytes(py), addr.as_ref().map(|a| a.bind(py))) {
                Ok(true) => {}
                Ok(false) => {
                    let mut t = slf.try_borrow_mut()?;
                    t.queued_size += data.as_bytes(py).len() + t.header_size;
                    t.queue.push_front((data, addr));
                    break;
                }
                Err(e) if stops_loop(py, &e) => return Err(e),
                Err(e) if e.is_instance_of::<PyOSError>(py) => return Self::error_received(slf, e),
                Err(e) => return fatal(slf, e, "Fatal write error on datagram transport"),
            }
        }
        maybe_resume_protocol(slf)?;
        let (empty, closing) = {
            let t = slf.try_borrow()?;
            (t.queue.is_empty(), t.closing)
        };
        if empty {
            set_watching(slf, Side::Write, false)?;
            if closing {
                Self::call_connection_lost(slf, py.None().into_bound(py))?;
            }
        }
        Ok(())
    }

    /// The queued datagrams and their addresses, taken out.
    fn clear_queue(&mut self) -> Vec<Py<PyAny>> {
        self.queued_size = 0;
        self.queue
            .drain(..)
            .flat_map(|(data, addr)| std::iter::once(data.into_any()).chain(addr))
            .collect()
    }

    fn call_connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let result = tell_protocol_lost(slf, &exc)?;
        Self::close_socket(slf)?;
        let (protocol, wrapper) = {
            let mut t = slf.try_borrow_mut()?;
            let w = t.face(py);
            (t.protocol.take(), w)
        };
        if let Some(w) = &wrapper {
            w.setattr(pyo3::intern!(py, "_sock"), py.None())?;
        }
        drop((protocol, wrapper));
        result
    }

    /// Closes the socket and forgets the loop's record of it.
    fn close_socket(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (sock, loop_, fd) = {
            let mut t = slf.try_borrow_mut()?;
            (t.sock.take(), t.loop_.clone_ref(py), t.fd)
        };
        registry::forget(loop_.bind(py), fd.raw(), slf.as_any())?;
        if let Some(s) = &sock {
            s.bind(py).call_method0(pyo3::intern!(py, "close"))?;
        }
        Ok(())
    }
}

#[pymethods]
impl DatagramTransport {
    #[new]
    #[pyo3(signature = (loop_, sock, protocol, wrapper, address, connected, native, ipv6, py313))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        loop_: &Bound<'_, LoopCore>,
        sock: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        wrapper: &Bound<'_, PyAny>,
        address: Option<&Bound<'_, PyAny>>,
        connected: bool,
        native: bool,
        ipv6: bool,
        py313: bool,
    ) -> PyResult<Self> {
        Ok(Self {
            loop_: loop_.clone().unbind(),
            // SAFETY: the transport holds `sock`, whose descriptor this
            // is, until `close_socket` closes it, and calls through it only
            // while the connection is not lost.
            fd: unsafe { HeldFd::new(crate::event_loop::fds::fileobj_to_fd(sock)?) },
            sock: Some(sock.clone().unbind()),
            native,
            ipv6,
            paused: false,
            wrapper: Some(PyWeakrefReference::new(wrapper)?.into_any().unbind()),
            protocol: Some(protocol.clone().unbind()),
            protocol_connected: true,
            address: address
                .filter(|a| a.is_truthy().unwrap_or(false))
                .map(|a| a.clone().unbind()),
            connected,
            queue: VecDeque::new(),
            queued_size: 0,
            header_size: if py313 { 8 } else { 0 },
            send_empty: py313,
            marks: WaterMarks::default(),
            protocol_paused: false,
            conn_lost: 0,
            closing: false,
            reading: false,
            writing: false,
        })
    }

    #[pyo3(signature = (data, addr = None))]
    fn sendto(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        addr: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        if !(data.is_instance_of::<PyBytes>()
            || data.is_instance_of::<PyByteArray>()
            || data.is_instance_of::<PyMemoryView>())
        {
            return Err(crate::transports::not_bytes_error(data, false));
        }
        let bytes: Bound<'_, PyBytes> = match data.cast::<PyBytes>() {
            Ok(b) => b.clone(),
            Err(_) => PyBytes::new(py, &crate::py::buffer_bytes(data)?),
        };
        let len = bytes.as_bytes().len();
        if len == 0 && !slf.try_borrow()?.send_empty {
            return Ok(());
        }
        let mut addr = addr.filter(|a| !a.is_none());
        let fixed = slf.try_borrow()?.address.as_ref().map(|a| a.clone_ref(py));
        if let Some(fixed) = fixed {
            let fixed = fixed.bind(py);
            if let Some(a) = &addr {
                if !a.eq(fixed)? {
                    return Err(PyValueError::new_err(format!(
                        "Invalid address: must be None or {}",
                        fixed.str()?
                    )));
                }
            }
            addr = Some(fixed.clone());
            if drop_lost_write(slf)? {
                return Ok(());
            }
        }
        if slf.try_borrow()?.queue.is_empty() {
            if crate::py::is_non_contiguous_view(data)? {
                // sendto() refuses it; asyncio queues `bytes(data)` instead
                // when a datagram waits, so only this path fails.
                let err = crate::py::non_contiguous_error();
                return fatal(slf, err, "Fatal write error on datagram transport");
            }
            match Self::send_one(slf, bytes.as_bytes(), addr.as_ref()) {
                Ok(true) => return Ok(()),
                Ok(false) => set_watching(slf, Side::Write, true)?,
                Err(e) if stops_loop(py, &e) => return Err(e),
                Err(e) if e.is_instance_of::<PyOSError>(py) => return Self::error_received(slf, e),
                Err(e) => return fatal(slf, e, "Fatal write error on datagram transport"),
            }
        }
        {
            let mut t = slf.try_borrow_mut()?;
            t.queued_size += len + t.header_size;
            t.queue.push_back((bytes.unbind(), addr.map(Bound::unbind)));
        }
        maybe_pause_protocol(slf)
    }

    #[pyo3(name = "close")]
    fn py_close(slf: &Bound<'_, Self>) -> PyResult<()> {
        close(slf)
    }

    fn abort(slf: &Bound<'_, Self>) -> PyResult<()> {
        force_close(slf, None)
    }

    #[pyo3(signature = (exc, message = "Fatal error on transport"))]
    fn _fatal_error(slf: &Bound<'_, Self>, exc: &Bound<'_, PyAny>, message: &str) -> PyResult<()> {
        fatal(slf, PyErr::from_value(exc.clone()), message)
    }

    /// True until the socket is closed.
    #[getter]
    fn _sock_open(&self) -> bool {
        self.sock.is_some()
    }

    /// Closes the socket of a transport nobody closed (its finalizer).
    fn _close_unclosed(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::close_socket(slf)
    }

    fn _call_connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        Self::call_connection_lost(slf, exc)
    }

    fn is_closing(&self) -> bool {
        self.closing
    }

    /// The old protocol is let go once the core is not borrowed: its
    /// finalizer may use the transport.
    fn set_protocol(slf: &Bound<'_, Self>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let old = {
            let mut t = slf.try_borrow_mut()?;
            t.protocol_connected = true;
            t.protocol.replace(protocol.clone().unbind())
        };
        drop(old);
        Ok(())
    }

    fn get_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.protocol(py)
    }

    #[getter]
    fn _sock_fd(&self) -> RawFd {
        self.fd.raw()
    }

    #[getter]
    fn _state(&self) -> (bool, bool, usize) {
        (self.reading, self.writing, self.queued_size)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.sock)?;
        visit.call(&self.wrapper)?;
        visit.call(&self.protocol)?;
        visit.call(&self.address)?;
        for (d, a) in &self.queue {
            visit.call(d)?;
            visit.call(a)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.protocol = None;
        self.address = None;
        self.queue.clear();
    }
}
