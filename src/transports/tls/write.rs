//! The outgoing flow: application data into OpenSSL (the backlog holds
//! what it has not taken yet), ciphertext out of the outgoing BIO to the
//! socket transport, and write flow control toward the application.

use super::{is_again, StreamTransport, TlsProtocol, LOG_THRESHOLD_FOR_CONNLOST_WRITES};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

impl TlsProtocol {
    /// The application transport's `write(data)`.
    pub(super) fn write_one(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if !(data.is_instance_of::<PyBytes>()
            || data.is_instance_of::<PyByteArray>()
            || data.is_instance_of::<PyMemoryView>())
        {
            return Err(PyTypeError::new_err(format!(
                "data: expecting a bytes-like instance, got {}",
                data.get_type().name()?
            )));
        }
        if !data.is_truthy()? {
            return Ok(());
        }
        if Self::drop_lost_write(slf)? {
            return Ok(());
        }
        let len = data.len()?;
        Self::write_items(slf, [(data.clone(), len)])
    }

    /// `_write_appdata(list_of_data)`.
    pub(super) fn write_appdata(
        slf: &Bound<'_, Self>,
        list_of_data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        if Self::drop_lost_write(slf)? {
            return Ok(());
        }
        // asyncio appends each item to its backlog before it takes the
        // item's len(): an item without one raises to the caller but stays
        // queued with those before it, unwritten, and the next flush (a
        // write, a close) fails on it as a fatal error. So here too.
        let mut items = Vec::new();
        for d in list_of_data.try_iter()? {
            let d = match d {
                Ok(d) => d,
                Err(e) => return Self::queue_items(slf, items).and(Err(e)),
            };
            match d.len() {
                Ok(len) => items.push((d, len)),
                Err(e) => {
                    items.push((d, 0));
                    return Self::queue_items(slf, items).and(Err(e));
                }
            }
        }
        Self::write_items(slf, items)
    }

    /// Puts the items at the end of the backlog; true if the handshake is
    /// done, so that they may be written.
    fn queue_items<'py>(
        slf: &Bound<'py, Self>,
        items: impl IntoIterator<Item = (Bound<'py, PyAny>, usize)>,
    ) -> PyResult<bool> {
        let mut t = slf.try_borrow_mut()?;
        for (d, len) in items {
            t.backlog.push_back((d.unbind(), len));
            t.backlog_size += len;
        }
        Ok(t.state == super::State::Wrapped)
    }

    /// Writes refused after shutdown began are counted and, from the fifth
    /// on, logged.
    fn drop_lost_write(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let warn = {
            let mut t = slf.try_borrow_mut()?;
            if !t.state.refuses_writes() {
                return Ok(false);
            }
            let warn = t.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES;
            t.conn_lost += 1;
            warn
        };
        if warn {
            let py = slf.py();
            crate::py::asyncio(py)?
                .logger
                .bind(py)
                .call_method1(pyo3::intern!(py, "warning"), ("SSL connection is closed",))?;
        }
        Ok(true)
    }

    /// Queues the items (the state allows writes), and writes them out if
    /// the handshake is done.
    fn write_items<'py>(
        slf: &Bound<'py, Self>,
        items: impl IntoIterator<Item = (Bound<'py, PyAny>, usize)>,
    ) -> PyResult<()> {
        if !Self::queue_items(slf, items)? {
            return Ok(());
        }
        let res = Self::do_write(slf);
        Self::fatal_on_exception(slf, res, "Fatal error on SSL protocol")
    }

    /// `_do_write`: the backlog into OpenSSL, then the ciphertext out.
    pub(super) fn do_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let raw = slf.try_borrow()?.raw.clone_ref(py);
        let raw = raw.bind(py);
        loop {
            let front = {
                let t = slf.try_borrow()?;
                t.backlog.front().map(|(d, n)| (d.clone_ref(py), *n))
            };
            let Some((data, len)) = front else { break };
            let count: usize = match raw.call_method1(pyo3::intern!(py, "write"), (&data,)) {
                Ok(c) => c.extract()?,
                Err(e) if is_again(py, &e)? => break,
                Err(e) => return Err(e),
            };
            if count < len {
                let rest = data.bind(py).get_item(pyo3::types::PySlice::new(
                    py,
                    count as isize,
                    isize::MAX,
                    1,
                ))?;
                let mut t = slf.try_borrow_mut()?;
                if let Some(front) = t.backlog.front_mut() {
                    *front = (rest.unbind(), len - count);
                }
                t.backlog_size -= count.min(t.backlog_size);
            } else {
                let mut t = slf.try_borrow_mut()?;
                let done = t.backlog.pop_front();
                t.backlog_size -= len.min(t.backlog_size);
                drop(t);
                drop(done);
            }
        }
        Self::process_outgoing(slf)
    }

    /// `_process_outgoing`: ciphertext to the socket transport, unless it
    /// asked us to pause; then write flow control.
    pub(super) fn process_outgoing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (paused, outgoing, lower, transport) = {
            let t = slf.try_borrow()?;
            (
                t.ssl_writing_paused,
                t.outgoing.clone_ref(py),
                t.lower.as_ref().map(|l| l.clone_ref(py)),
                t.transport(py),
            )
        };
        if !paused {
            let data = outgoing.bind(py).call_method0(pyo3::intern!(py, "read"))?;
            if data.len()? > 0 {
                match (lower, transport) {
                    (Some(core), _) => StreamTransport::write_data(core.bind(py), &data)?,
                    (None, Some(t)) => {
                        t.bind(py)
                            .call_method1(pyo3::intern!(py, "write"), (data,))?;
                    }
                    (None, None) => {}
                }
            }
        }
        Self::control_app_writing(slf)
    }

    /// `_get_write_buffer_size`: ciphertext not yet taken by the socket
    /// transport plus application data not yet taken by OpenSSL.
    pub(super) fn write_buffer_size(slf: &Bound<'_, Self>) -> PyResult<usize> {
        let py = slf.py();
        let (outgoing, backlog) = {
            let t = slf.try_borrow()?;
            (t.outgoing.clone_ref(py), t.backlog_size)
        };
        let pending: usize = outgoing
            .bind(py)
            .getattr(pyo3::intern!(py, "pending"))?
            .extract()?;
        Ok(pending + backlog)
    }

    /// `_control_app_writing`: pause_writing() at the high-water mark,
    /// resume_writing() at the low one.
    pub(super) fn control_app_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let size = Self::write_buffer_size(slf)?;
        let call = {
            let t = &mut *slf.try_borrow_mut()?;
            super::flip(&mut t.app_writing_paused, &t.outgoing_marks, size)
        };
        match call {
            Some(true) => Self::notify_app(slf, "pause_writing"),
            Some(false) => Self::notify_app(slf, "resume_writing"),
            None => Ok(()),
        }
    }
}
