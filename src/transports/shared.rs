//! The Python methods transports of one kind share, written once.
//!
//! asyncio gets them by inheritance (`_SelectorTransport`,
//! `_FlowControlMixin`); a PyO3 class cannot inherit from another's
//! methods without sharing its layout, so each group is a generic function
//! over a small trait here, and a macro adds the group's `#[pymethods]`
//! block to a class (PyO3's `multiple-pymethods`).

use super::flow::{maybe_pause_protocol, FlowControlled};
use super::write_buffer::WriteBuffer;
use super::{
    drop_lost_write, face_or_core, log_debug, report_fatal, set_watching, Core, LostWrites,
};
use crate::event_loop::fds::Side;
use crate::sys::{HeldFd, SysError, SysResult};
use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// A transport that reads: asyncio's `_SelectorTransport` reading half and
/// `_UnixReadPipeTransport`.
pub trait Reading: Core {
    fn read_paused(&self) -> bool;
    fn set_read_paused(&mut self, paused: bool);
    fn closing(&self) -> bool;
}

/// `is_reading()`.
pub fn is_reading<T: Reading>(t: &T) -> bool {
    !t.closing() && !t.read_paused()
}

/// `_start_reading()`: watch for reads unless closing or paused.
pub fn start_reading<T: Reading>(slf: &Bound<'_, T>) -> PyResult<()> {
    if is_reading(&*slf.try_borrow()?) {
        set_watching(slf, Side::Read, true)?;
    }
    Ok(())
}

/// `pause_reading()` and `resume_reading()`: a no-op unless it changes
/// something; in debug mode, logged as asyncio logs it.
pub fn set_reading<T: Reading>(slf: &Bound<'_, T>, on: bool) -> PyResult<()> {
    let py = slf.py();
    {
        let mut t = slf.try_borrow_mut()?;
        // Pausing needs a reading transport, resuming a paused one.
        if t.closing() || t.read_paused() != on {
            return Ok(());
        }
        t.set_read_paused(!on);
    }
    set_watching(slf, Side::Read, on)?;
    if slf.try_borrow()?.debug(py) {
        let what = if on {
            "%r resumes reading"
        } else {
            "%r pauses reading"
        };
        log_debug(py, (what, face_or_core(slf)))?;
    }
    Ok(())
}

/// `Reading` for a class whose `paused` and `closing` flags are the
/// fields named, and its `_start_reading`, `is_reading`, `pause_reading`,
/// `resume_reading`.
macro_rules! reading_pymethods {
    ($ty:ty, paused: self.$($paused:ident).+, closing: self.$($closing:ident).+) => {
        impl $crate::transports::shared::Reading for $ty {
            fn read_paused(&self) -> bool {
                self.$($paused).+
            }

            fn set_read_paused(&mut self, paused: bool) {
                self.$($paused).+ = paused;
            }

            fn closing(&self) -> bool {
                self.$($closing).+
            }
        }

        #[pymethods]
        impl $ty {
            fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
                $crate::transports::shared::start_reading(slf)
            }

            fn is_reading(&self) -> bool {
                $crate::transports::shared::is_reading(self)
            }

            fn pause_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
                $crate::transports::shared::set_reading(slf, false)
            }

            fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
                $crate::transports::shared::set_reading(slf, true)
            }
        }
    };
}

/// For a transport with a write buffer under flow control
/// (`FlowControlled`): `LostWrites` over its `conn_lost` count field (a
/// write is dropped once it is above zero, or also while closing where
/// `lost_when:` names the flag), with asyncio's warning for a dropped
/// write; and `set_write_buffer_limits`, `get_write_buffer_limits`,
/// `get_write_buffer_size`, and asyncio's `_protocol_paused` and
/// `_conn_lost` attributes.
macro_rules! writing_pymethods {
    ($ty:ty, conn_lost: self.$($lost:ident).+, warning: $warning:literal $(, lost_when: self.$($also:ident).+)?) => {
        impl $crate::transports::LostWrites for $ty {
            const LOST_WRITE_WARNING: &'static str = $warning;

            fn lost_writes(&mut self) -> Option<&mut u32> {
                let lost = self.$($lost).+ > 0 $(|| self.$($also).+)?;
                lost.then_some(&mut self.$($lost).+)
            }

            fn conn_lost(&self) -> u32 {
                self.$($lost).+
            }
        }

        #[pymethods]
        impl $ty {
            #[pyo3(signature = (high = None, low = None))]
            fn set_write_buffer_limits(
                slf: &Bound<'_, Self>,
                high: Option<&Bound<'_, PyAny>>,
                low: Option<&Bound<'_, PyAny>>,
            ) -> PyResult<()> {
                $crate::transports::flow::set_write_buffer_limits(slf, high, low)
            }

            fn get_write_buffer_limits(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
                $crate::transports::flow::FlowControlled::marks(self).limits(py)
            }

            fn get_write_buffer_size(&self) -> usize {
                $crate::transports::flow::FlowControlled::buffered(self)
            }

            #[getter(_protocol_paused)]
            fn protocol_paused_attr(&self) -> bool {
                $crate::transports::flow::FlowControlled::protocol_paused(self)
            }

            #[getter]
            fn _conn_lost(&self) -> u32 {
                $crate::transports::LostWrites::conn_lost(self)
            }
        }
    };
}

/// asyncio's `_read_ready` and `_write_ready` on socket transports: what
/// the loop runs when the socket is ready (callable directly too).
macro_rules! ready_pymethods {
    ($ty:ty) => {
        #[pymethods]
        impl $ty {
            fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
                <Self as $crate::transports::Core>::on_ready(
                    slf,
                    $crate::event_loop::fds::Side::Read,
                )
            }

            fn _write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
                <Self as $crate::transports::Core>::on_ready(
                    slf,
                    $crate::event_loop::fds::Side::Write,
                )
            }
        }
    };
}

/// A transport whose `write()` tries the kernel at once when nothing is
/// queued and queues the rest (asyncio's socket and pipe transports).
pub trait Writes: FlowControlled + LostWrites {
    fn held_fd(&self) -> HeldFd;
    fn write_buffer(&mut self) -> &mut WriteBuffer;
    fn has_queued(&self) -> bool;
    /// The system call: `send` on a socket, `write` on a pipe.
    fn send_now(fd: HeldFd, data: &[u8]) -> SysResult<usize>;
    /// A failed attempt: asyncio's `_fatal_error` with the transport's
    /// message (a pipe also counts the write as lost first).
    fn write_failed(slf: &Bound<'_, Self>, err: PyErr) -> PyResult<()>;
    /// What asyncio's `write()` raises when it adds a non-contiguous
    /// memoryview to a non-empty buffer (its bytearray refuses it), or None
    /// where the buffer takes it and the later send fails instead.
    fn queue_refuses_view(py: Python<'_>) -> Option<&'static str>;
}

/// `write(data)` once `data`'s type and the transport's state are
/// checked: nothing for empty data or a lost connection; else as much as
/// the kernel takes now, the rest queued and the descriptor watched.
pub fn write_now_or_queue<T: Writes>(slf: &Bound<'_, T>, data: &Bound<'_, PyAny>) -> PyResult<()> {
    if data.len()? == 0 || drop_lost_write(slf)? {
        return Ok(());
    }
    let (fd, queued) = {
        let t = slf.try_borrow()?;
        (t.held_fd(), t.has_queued())
    };
    if crate::py::is_non_contiguous_view(data)? {
        // asyncio hands the view to send()/os.write(), which refuse it; or,
        // with a write already queued, to its buffer.
        if let Some(msg) = queued.then(|| T::queue_refuses_view(slf.py())).flatten() {
            return Err(PyTypeError::new_err(msg));
        }
        return T::write_failed(slf, crate::py::non_contiguous_error());
    }
    // Converted once: sent from, and queued from, the same bytes.
    let owned: Vec<u8>;
    let bytes: &[u8] = match data.cast::<PyBytes>() {
        Ok(b) => b.as_bytes(),
        Err(_) => {
            owned = crate::py::buffer_bytes(data)?;
            &owned
        }
    };
    let mut sent = 0;
    if !queued {
        match T::send_now(fd, bytes) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(n) => sent = n,
            Err(SysError::Again) => {}
            Err(SysError::Os(e)) => return T::write_failed(slf, crate::errors::sys_error(e)),
        }
        set_watching(slf, Side::Write, true)?;
    }
    slf.try_borrow_mut()?
        .write_buffer()
        .push_rest(data, bytes, sent);
    maybe_pause_protocol(slf)
}

/// What asyncio's `_SelectorTransport` gives both socket transports and
/// they do alike: `close()` and the start of `_call_connection_lost`.
pub trait SelectorTransport: Reading + LostWrites {
    fn set_closing(&mut self);
    /// Empties the write queue; what it held is dropped by the caller once
    /// the core is not borrowed.
    fn clear_queue(&mut self) -> Vec<Py<PyAny>>;
    /// Nothing waits in the write buffer (or the datagram queue).
    fn nothing_queued(&self) -> bool;
    /// `self._conn_lost += 1`.
    fn count_lost(&mut self);
    /// Whether `connection_made` was called (asyncio's `_protocol_connected`).
    fn protocol_connected(&self) -> bool;
    /// `self._loop.call_soon(self._call_connection_lost, exc)`.
    fn schedule_connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()>;
}

/// `SelectorTransport` for a class with asyncio's `closing`, `conn_lost`
/// and `protocol_connected` fields, whose write queue is the field named
/// (anything with `is_empty()`) and which schedules `connection_lost`
/// with the function named.
macro_rules! selector_transport {
    ($ty:ty, queue: $queue:ident, clear_queue: $clear:path, schedule_lost: $schedule:path) => {
        impl $crate::transports::shared::SelectorTransport for $ty {
            fn set_closing(&mut self) {
                self.closing = true;
            }

            fn clear_queue(&mut self) -> Vec<Py<PyAny>> {
                $clear(self)
            }

            fn nothing_queued(&self) -> bool {
                self.$queue.is_empty()
            }

            fn count_lost(&mut self) {
                self.conn_lost += 1;
            }

            fn protocol_connected(&self) -> bool {
                self.protocol_connected
            }

            fn schedule_connection_lost(
                slf: &Bound<'_, Self>,
                exc: Bound<'_, PyAny>,
            ) -> PyResult<()> {
                $schedule(slf, exc)
            }
        }
    };
}

/// `close()`: stop reading; with nothing left to write, the connection is
/// lost at once (`connection_lost` scheduled), else once the buffer drains.
pub fn close<T: SelectorTransport>(slf: &Bound<'_, T>) -> PyResult<()> {
    let py = slf.py();
    let empty = {
        let mut t = slf.try_borrow_mut()?;
        if t.closing() {
            return Ok(());
        }
        t.set_closing();
        t.nothing_queued()
    };
    set_watching(slf, Side::Read, false)?;
    if empty {
        slf.try_borrow_mut()?.count_lost();
        set_watching(slf, Side::Write, false)?;
        T::schedule_connection_lost(slf, py.None().into_bound(py))?;
    }
    Ok(())
}

/// `_call_connection_lost`'s first step: the protocol's
/// `connection_lost(exc)`, if it was told of the connection. Its outcome
/// is returned for after the socket is closed (asyncio's `finally:`).
pub fn tell_protocol_lost<T: SelectorTransport>(
    slf: &Bound<'_, T>,
    exc: &Bound<'_, PyAny>,
) -> PyResult<PyResult<()>> {
    let py = slf.py();
    let (protocol, connected) = {
        let t = slf.try_borrow()?;
        (t.protocol(py), t.protocol_connected())
    };
    Ok(match protocol {
        Some(p) if connected => p
            .bind(py)
            .call_method1(pyo3::intern!(py, "connection_lost"), (exc,))
            .map(drop),
        _ => Ok(()),
    })
}

/// asyncio's `_fatal_error`: an OS error is only logged (in debug mode),
/// anything else goes to the exception handler; then `_force_close(exc)`.
pub fn fatal<T: SelectorTransport>(slf: &Bound<'_, T>, err: PyErr, message: &str) -> PyResult<()> {
    let exc = report_fatal(slf, err, message, |e| e.is_instance_of::<PyOSError>())?;
    force_close(slf, Some(exc))
}

/// asyncio's `_force_close(exc)`: the queue dropped, reading and writing
/// stopped, `connection_lost(exc)` scheduled; once only.
pub fn force_close<T: SelectorTransport>(
    slf: &Bound<'_, T>,
    exc: Option<Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = slf.py();
    let (dropped, was_closing) = {
        let mut t = slf.try_borrow_mut()?;
        if t.conn_lost() > 0 {
            return Ok(());
        }
        let dropped = t.clear_queue();
        let was = t.closing();
        t.set_closing();
        t.count_lost();
        (dropped, was)
    };
    drop(dropped);
    set_watching(slf, Side::Write, false)?;
    if !was_closing {
        set_watching(slf, Side::Read, false)?;
    }
    T::schedule_connection_lost(slf, exc.unwrap_or_else(|| py.None().into_bound(py)))
}
