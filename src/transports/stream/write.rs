//! The write half of the stream transport: `write` and `writelines` try
//! the socket at once and queue the rest; `_write_ready` flushes the queue
//! with one vectored send per writable event.

use super::super::flow::{maybe_pause_protocol, maybe_resume_protocol};
use super::super::shared::{write_now_or_queue, Writes};
use super::super::write_buffer::WriteBuffer;
use super::super::{drop_lost_write, set_watching};
use super::StreamTransport;
use crate::errors;
use crate::event_loop::fds::Side;
use crate::sys::{self, HeldFd, SysError, SysResult};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

impl Writes for StreamTransport {
    fn held_fd(&self) -> HeldFd {
        self.fd
    }

    fn write_buffer(&mut self) -> &mut WriteBuffer {
        &mut self.wbuf
    }

    fn has_queued(&self) -> bool {
        !self.wbuf.is_empty()
    }

    fn send_now(fd: HeldFd, data: &[u8]) -> SysResult<usize> {
        sys::send(fd, data)
    }

    fn write_failed(slf: &Bound<'_, Self>, err: PyErr) -> PyResult<()> {
        super::super::shared::fatal(slf, err, "Fatal write error on socket transport")
    }

    fn queue_refuses_view(py: Python<'_>) -> Option<&'static str> {
        // 3.11's `self._buffer.extend(data)`; from 3.12 the view is queued
        // as it is and the vectored send refuses it.
        (py.version_info() < (3, 12)).then_some("can't set bytearray slice from memoryview")
    }
}

impl StreamTransport {
    pub(crate) fn write_data(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let is_bytes = data.is_instance_of::<PyBytes>();
        if !(is_bytes
            || data.is_instance_of::<PyByteArray>()
            || data.is_instance_of::<PyMemoryView>())
        {
            return Err(crate::transports::not_bytes_error(data, true));
        }
        slf.try_borrow()?.check_writable("write")?;
        write_now_or_queue(slf, data)
    }

    pub(super) fn writelines_data(
        slf: &Bound<'_, Self>,
        list_of_data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        slf.try_borrow()?.check_writable("writelines")?;
        let items: Vec<Bound<'_, PyAny>> = list_of_data.try_iter()?.collect::<PyResult<_>>()?;
        if items.is_empty() {
            return Ok(());
        }
        if drop_lost_write(slf)? {
            return Ok(());
        }
        // asyncio queues views of the items and sends them with one
        // sendmsg(), which refuses a non-contiguous one: nothing is sent.
        for d in &items {
            if crate::py::is_non_contiguous_view(d)? {
                return Self::write_failed(slf, crate::py::non_contiguous_error());
            }
        }
        // Every item is converted before any is queued: a bad one writes
        // nothing, as in asyncio.
        enum Item {
            Shared(Py<PyBytes>, usize),
            Copied(Vec<u8>),
        }
        let mut converted = Vec::with_capacity(items.len());
        for d in &items {
            converted.push(match d.cast::<PyBytes>() {
                Ok(b) => Item::Shared(b.clone().unbind(), b.as_bytes().len()),
                Err(_) => Item::Copied(crate::py::buffer_bytes(d)?),
            });
        }
        {
            let mut t = slf.try_borrow_mut()?;
            for item in converted {
                match item {
                    Item::Shared(b, n) => t.wbuf.push_bytes(b, n),
                    Item::Copied(v) => t.wbuf.push_copy(&v),
                }
            }
        }
        Self::write_ready(slf)?;
        if !slf.try_borrow()?.wbuf.is_empty() {
            set_watching(slf, Side::Write, true)?;
        }
        maybe_pause_protocol(slf)
    }

    /// Sends what is buffered; asyncio's `_write_sendmsg`.
    pub(super) fn write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let mut done = Vec::new();
        let res = {
            let mut t = slf.try_borrow_mut()?;
            if t.conn_lost > 0 || t.wbuf.is_empty() {
                return Ok(());
            }
            let r = {
                let slices = t.wbuf.slices(py);
                sys::writev(t.fd, &slices)
            };
            if let Ok(n) = r {
                t.wbuf.consume(py, n, &mut done);
            }
            r
        };
        drop(done);
        match res {
            Ok(_) => {}
            Err(SysError::Again) => return Ok(()),
            Err(SysError::Os(e)) => {
                set_watching(slf, Side::Write, false)?;
                let dropped = slf.try_borrow_mut()?.wbuf.clear();
                drop(dropped);
                let err = errors::sys_error(e);
                let exc = err.value(py).clone().into_any();
                super::super::shared::fatal(slf, err, "Fatal write error on socket transport")?;
                let waiter = slf
                    .try_borrow()?
                    .empty_waiter
                    .as_ref()
                    .map(|w| w.clone_ref(py));
                if let Some(w) = waiter {
                    w.bind(py)
                        .call_method1(pyo3::intern!(py, "set_exception"), (exc,))?;
                }
                return Ok(());
            }
        }
        maybe_resume_protocol(slf)?;
        let (empty, closing, eof, waiter, fd) = {
            let t = slf.try_borrow()?;
            (
                t.wbuf.is_empty(),
                t.closing,
                t.eof,
                t.empty_waiter.as_ref().map(|w| w.clone_ref(py)),
                t.fd,
            )
        };
        if empty {
            set_watching(slf, Side::Write, false)?;
            if let Some(w) = waiter {
                w.bind(py)
                    .call_method1(pyo3::intern!(py, "set_result"), (py.None(),))?;
            }
            if closing {
                Self::call_connection_lost(slf, py.None().into_bound(py))?;
            } else if eof {
                match sys::shutdown_write(fd) {
                    Ok(()) | Err(SysError::Again) => {}
                    Err(SysError::Os(e)) => return Err(errors::sys_error(e)),
                }
            }
        }
        Ok(())
    }
}
