//! Pipe transports (pipes, FIFOs, character devices, PTYs): asyncio's
//! `_UnixReadPipeTransport` and `_UnixWritePipeTransport`, natively.
//!
//! # Implementation
//! The read side reads into the shared scratch buffer and hands an exact-size
//! `bytes` to `data_received`; at EOF it schedules `eof_received` and then
//! `connection_lost`, as asyncio does. The write side writes at once when
//! nothing is queued, queues the rest (see `write_buffer`) and flushes with
//! `writev` when writable; it also watches its descriptor for readability,
//! which for a pipe means the reader went away (asyncio's EPIPE detection).

use super::flow::{maybe_resume_protocol, FlowControlled, WaterMarks};
use super::shared::{write_now_or_queue, Writes};
use super::write_buffer::WriteBuffer;
use super::{face_or_core, report_fatal, set_watching, Core};
use crate::errors;
use crate::event_loop::fds::Side;
use crate::event_loop::LoopCore;
use crate::sys::{self, HeldFd, SysError, SysResult};
use pyo3::exceptions::{PyBrokenPipeError, PyOSError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyWeakrefReference};
use std::cell::RefCell;
use std::os::fd::RawFd;

const MAX_READ: usize = 256 * 1024;
const EIO: i32 = 5;

thread_local! {
    static SCRATCH: RefCell<crate::sys::ReadScratch> = RefCell::new(crate::sys::ReadScratch::new(MAX_READ));
}

/// What both pipe transports answer alike: `set_protocol` (the old
/// protocol let go once the core is not borrowed: its finalizer may use
/// the transport), `get_protocol`, `is_closing`, asyncio's `_fileno`,
/// `_fatal_error` (each with its own `fatal`) and `_call_connection_lost`.
macro_rules! pipe_pymethods {
    ($ty:ty) => {
        #[pymethods]
        impl $ty {
            fn set_protocol(slf: &Bound<'_, Self>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
                let old = slf
                    .try_borrow_mut()?
                    .c
                    .protocol
                    .replace(protocol.clone().unbind());
                drop(old);
                Ok(())
            }

            fn get_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
                self.c.protocol(py)
            }

            fn is_closing(&self) -> bool {
                self.c.closing
            }

            #[getter]
            fn _fileno(&self) -> RawFd {
                self.c.fd.raw()
            }

            #[pyo3(signature = (exc, message = "Fatal error on pipe transport"))]
            fn _fatal_error(
                slf: &Bound<'_, Self>,
                exc: &Bound<'_, PyAny>,
                message: &str,
            ) -> PyResult<()> {
                Self::fatal(slf, PyErr::from_value(exc.clone()), message)
            }

            fn _call_connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
                let py = slf.py();
                let (protocol, pipe, wrapper) = {
                    let mut t = slf.try_borrow_mut()?;
                    let w = t.face(py);
                    (t.c.protocol.take(), t.c.pipe.take(), w)
                };
                Common::connection_lost(py, protocol, pipe, wrapper, &exc)
            }
        }
    };
}

/// What both pipe transports share: the loop, the pipe object, the
/// protocol and a weak reference to the Python transport.
struct Common {
    loop_: Py<LoopCore>,
    fd: HeldFd,
    pipe: Option<Py<PyAny>>,
    protocol: Option<Py<PyAny>>,
    wrapper: Option<Py<PyAny>>,
    closing: bool,
    /// Whether the descriptor is watched for each side.
    reading: bool,
    writing: bool,
}

impl Common {
    fn new(
        loop_: &Bound<'_, LoopCore>,
        pipe: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        wrapper: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        Ok(Self {
            loop_: loop_.clone().unbind(),
            // SAFETY: the transport holds `pipe`, whose descriptor this
            // is, until it closes it, and calls through it only while the
            // pipe is not lost.
            fd: unsafe { HeldFd::new(crate::event_loop::fds::fileobj_to_fd(pipe)?) },
            pipe: Some(pipe.clone().unbind()),
            protocol: Some(protocol.clone().unbind()),
            wrapper: Some(PyWeakrefReference::new(wrapper)?.into_any().unbind()),
            closing: false,
            reading: false,
            writing: false,
        })
    }

    fn protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.protocol.as_ref().map(|p| p.clone_ref(py))
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.pipe)?;
        visit.call(&self.protocol)?;
        visit.call(&self.wrapper)
    }

    /// `_call_connection_lost`: tell the protocol, then close the pipe
    /// whatever the protocol did.
    fn connection_lost(
        py: Python<'_>,
        protocol: Option<Py<PyAny>>,
        pipe: Option<Py<PyAny>>,
        wrapper: Option<Bound<'_, PyAny>>,
        exc: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let result = match &protocol {
            Some(p) => p
                .bind(py)
                .call_method1(pyo3::intern!(py, "connection_lost"), (exc,))
                .map(drop),
            None => Ok(()),
        };
        if let Some(p) = &pipe {
            p.bind(py).call_method0(pyo3::intern!(py, "close"))?;
        }
        // asyncio's transport lets go of its pipe and its loop here.
        if let Some(w) = &wrapper {
            w.setattr(pyo3::intern!(py, "_pipe"), py.None())?;
            w.setattr(pyo3::intern!(py, "_loop"), py.None())?;
        }
        drop((protocol, pipe, wrapper));
        result
    }
}

/// `loop.call_soon(self._call_connection_lost, exc)` on the Python
/// transport (its handle keeps the transport alive until it runs), or on
/// the core once that is gone.
fn schedule_lost<T: Core>(slf: &Bound<'_, T>, exc: Bound<'_, PyAny>) -> PyResult<()> {
    let py = slf.py();
    let loop_ = slf.try_borrow()?.loop_any(py);
    let cb = face_or_core(slf).getattr(pyo3::intern!(py, "_call_connection_lost"))?;
    loop_.call_method1(pyo3::intern!(py, "call_soon"), (cb, exc))?;
    Ok(())
}

// ---------------------------------------------------------------- reading

#[pyclass(module = "ferroloop._ferroloop")]
pub struct ReadPipeTransport {
    c: Common,
    paused: bool,
}

// A read pipe only ever watches its Read side.
impl_core!(
    ReadPipeTransport,
    "_UnixReadPipeTransport",
    self.c,
    read: ReadPipeTransport::read_ready,
    write: ReadPipeTransport::read_ready
);

reading_pymethods!(ReadPipeTransport, paused: self.paused, closing: self.c.closing);
pipe_pymethods!(ReadPipeTransport);

impl ReadPipeTransport {
    fn read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let fd = slf.try_borrow()?.c.fd;
        let got = crate::sys::ReadScratch::with(&SCRATCH, MAX_READ, |s| {
            sys::read(fd, &mut s[..]).map(|n| PyBytes::new(py, &s[..n]))
        });
        match got {
            Err(SysError::Again) => Ok(()),
            Err(SysError::Os(e)) => Self::fatal(
                slf,
                errors::sys_error(e),
                "Fatal read error on pipe transport",
            ),
            Ok(data) if !data.as_bytes().is_empty() => {
                // Bound first: an `if let` scrutinee's borrow would last
                // through data_received, which may pause reading.
                let protocol = slf.try_borrow()?.c.protocol(py);
                if let Some(p) = protocol {
                    p.bind(py)
                        .call_method1(pyo3::intern!(py, "data_received"), (data,))?;
                }
                Ok(())
            }
            Ok(_) => {
                if slf.try_borrow()?.debug(py) {
                    let a = crate::py::asyncio(py)?;
                    a.logger.bind(py).call_method1(
                        pyo3::intern!(py, "info"),
                        ("%r was closed by peer", face_or_core(slf)),
                    )?;
                }
                slf.try_borrow_mut()?.c.closing = true;
                set_watching(slf, Side::Read, false)?;
                let (loop_, protocol) = {
                    let t = slf.try_borrow()?;
                    (t.c.loop_.clone_ref(py), t.c.protocol(py))
                };
                if let Some(p) = protocol {
                    let eof = p.bind(py).getattr(pyo3::intern!(py, "eof_received"))?;
                    loop_
                        .bind(py)
                        .call_method1(pyo3::intern!(py, "call_soon"), (eof,))?;
                }
                schedule_lost(slf, py.None().into_bound(py))
            }
        }
    }

    fn fatal(slf: &Bound<'_, Self>, err: PyErr, message: &str) -> PyResult<()> {
        // EIO is how a PTY's master reads the slave closing: routine.
        let exc = report_fatal(slf, err, message, |e| {
            e.is_instance_of::<PyOSError>()
                && e.getattr("errno").and_then(|n| n.extract::<i32>()).ok() == Some(EIO)
        })?;
        Self::close_with(slf, exc)
    }

    fn close_with(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        slf.try_borrow_mut()?.c.closing = true;
        set_watching(slf, Side::Read, false)?;
        schedule_lost(slf, exc)
    }
}

#[pymethods]
impl ReadPipeTransport {
    #[new]
    fn new(
        loop_: &Bound<'_, LoopCore>,
        pipe: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        wrapper: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        Ok(Self {
            c: Common::new(loop_, pipe, protocol, wrapper)?,
            paused: false,
        })
    }

    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        if slf.try_borrow()?.c.closing {
            return Ok(());
        }
        Self::close_with(slf, slf.py().None().into_bound(slf.py()))
    }

    /// asyncio's `_read_ready`: what the loop runs when the pipe is
    /// readable; the face's method of that name is the `handle` of an
    /// error report, as asyncio's handle is.
    fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        <Self as crate::transports::Core>::on_ready(slf, crate::event_loop::fds::Side::Read)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.c.traverse(&visit)
    }

    fn __clear__(&mut self) {
        self.c.protocol = None;
    }
}

// ---------------------------------------------------------------- writing

#[pyclass(module = "ferroloop._ferroloop")]
pub struct WritePipeTransport {
    c: Common,
    wbuf: WriteBuffer,
    marks: WaterMarks,
    protocol_paused: bool,
    conn_lost: u32,
    /// Whether the descriptor is watched for readability (the reader went
    /// away) — only for FIFOs and sockets, as in asyncio.
    watch_hangup: bool,
}

// The Read side of a write pipe reports the reader going away.
impl_core!(
    WritePipeTransport,
    "_UnixWritePipeTransport",
    self.c,
    read: WritePipeTransport::hangup,
    write: WritePipeTransport::write_ready
);

impl FlowControlled for WritePipeTransport {
    fn flow(&mut self) -> (&mut WaterMarks, usize, &mut bool) {
        (&mut self.marks, self.wbuf.len(), &mut self.protocol_paused)
    }
    fn flow_ref(&self) -> (&WaterMarks, usize, bool) {
        (&self.marks, self.wbuf.len(), self.protocol_paused)
    }
}

impl Writes for WritePipeTransport {
    fn held_fd(&self) -> HeldFd {
        self.c.fd
    }

    fn write_buffer(&mut self) -> &mut WriteBuffer {
        &mut self.wbuf
    }

    fn has_queued(&self) -> bool {
        !self.wbuf.is_empty()
    }

    fn send_now(fd: HeldFd, data: &[u8]) -> SysResult<usize> {
        sys::write(fd, data)
    }

    fn write_failed(slf: &Bound<'_, Self>, err: PyErr) -> PyResult<()> {
        slf.try_borrow_mut()?.conn_lost += 1;
        Self::fatal(slf, err, "Fatal write error on pipe transport")
    }

    fn queue_refuses_view(_py: Python<'_>) -> Option<&'static str> {
        // `self._buffer += data`
        Some("can't concat memoryview to bytearray")
    }
}

writing_pymethods!(
    WritePipeTransport,
    conn_lost: self.conn_lost,
    warning: "pipe closed by peer or os.write(pipe, data) raised exception.",
    lost_when: self.c.closing
);
pipe_pymethods!(WritePipeTransport);

impl WritePipeTransport {
    /// The read end went away.
    fn hangup(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if slf.try_borrow()?.debug(py) {
            let a = crate::py::asyncio(py)?;
            a.logger.bind(py).call_method1(
                pyo3::intern!(py, "info"),
                ("%r was closed by peer", face_or_core(slf)),
            )?;
        }
        let exc = if slf.try_borrow()?.wbuf.is_empty() {
            py.None().into_bound(py)
        } else {
            PyBrokenPipeError::new_err(())
                .into_value(py)
                .into_bound(py)
                .into_any()
        };
        Self::close_with(slf, exc)
    }

    fn write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let mut done = Vec::new();
        let res = {
            let mut t = slf.try_borrow_mut()?;
            if t.wbuf.is_empty() {
                return Ok(());
            }
            let r = {
                let slices = t.wbuf.slices(py);
                sys::writev(t.c.fd, &slices)
            };
            if let Ok(n) = r {
                t.wbuf.consume(py, n, &mut done);
            }
            r
        };
        drop(done);
        match res {
            Err(SysError::Again) => Ok(()),
            Err(SysError::Os(e)) => {
                let dropped = {
                    let mut t = slf.try_borrow_mut()?;
                    t.conn_lost += 1;
                    t.wbuf.clear()
                };
                drop(dropped);
                set_watching(slf, Side::Write, false)?;
                Self::fatal(
                    slf,
                    errors::sys_error(e),
                    "Fatal write error on pipe transport",
                )
            }
            Ok(_) => {
                if !slf.try_borrow()?.wbuf.is_empty() {
                    return Ok(());
                }
                set_watching(slf, Side::Write, false)?;
                maybe_resume_protocol(slf)?;
                if slf.try_borrow()?.c.closing && slf.try_borrow()?.wbuf.is_empty() {
                    set_watching(slf, Side::Read, false)?;
                    Self::_call_connection_lost(slf, py.None().into_bound(py))?;
                }
                Ok(())
            }
        }
    }

    fn fatal(slf: &Bound<'_, Self>, err: PyErr, message: &str) -> PyResult<()> {
        let exc = report_fatal(slf, err, message, |e| e.is_instance_of::<PyOSError>())?;
        Self::close_with(slf, exc)
    }

    /// asyncio's `_close(exc)`.
    fn close_with(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let dropped = {
            let mut t = slf.try_borrow_mut()?;
            t.c.closing = true;
            t.wbuf.clear()
        };
        drop(dropped);
        set_watching(slf, Side::Write, false)?;
        set_watching(slf, Side::Read, false)?;
        schedule_lost(slf, exc)
    }
}

#[pymethods]
impl WritePipeTransport {
    #[new]
    fn new(
        loop_: &Bound<'_, LoopCore>,
        pipe: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        wrapper: &Bound<'_, PyAny>,
        watch_hangup: bool,
    ) -> PyResult<Self> {
        Ok(Self {
            c: Common::new(loop_, pipe, protocol, wrapper)?,
            wbuf: WriteBuffer::default(),
            marks: WaterMarks::default(),
            protocol_paused: false,
            conn_lost: 0,
            watch_hangup,
        })
    }

    fn _start_watching(slf: &Bound<'_, Self>) -> PyResult<()> {
        let watch = {
            let t = slf.try_borrow()?;
            t.watch_hangup && t.c.pipe.is_some()
        };
        if watch {
            set_watching(slf, Side::Read, true)?;
        }
        Ok(())
    }

    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        write_now_or_queue(slf, data)
    }

    fn write_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let empty = {
            let mut t = slf.try_borrow_mut()?;
            if t.c.closing {
                return Ok(());
            }
            t.c.closing = true;
            t.wbuf.is_empty()
        };
        if empty {
            set_watching(slf, Side::Read, false)?;
            schedule_lost(slf, py.None().into_bound(py))?;
        }
        Ok(())
    }

    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let open = {
            let t = slf.try_borrow()?;
            t.c.pipe.is_some() && !t.c.closing
        };
        if open {
            Self::write_eof(slf)?;
        }
        Ok(())
    }

    fn abort(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::close_with(slf, slf.py().None().into_bound(slf.py()))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.c.traverse(&visit)?;
        self.wbuf.traverse(&visit)
    }

    fn __clear__(&mut self) {
        self.c.protocol = None;
    }
}
