//! The read half of the stream transport: `_read_ready` for a `Protocol`
//! (into the aligned scratch buffer, then an exact-size `bytes`) and for a
//! `BufferedProtocol` (straight into its buffer), and end of file.

use super::super::{face_or_core, log_debug, set_watching, Core};
use super::StreamTransport;
use crate::errors;
use crate::event_loop::fds::Side;
use crate::sys::{self, ReadScratch, SysError};
use crate::transports::tls::TlsProtocol;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rustix::io::Errno;
use std::cell::RefCell;

/// asyncio's `max_size`: the most one read takes.
const MAX_READ: usize = 256 * 1024;

thread_local! {
    static SCRATCH: RefCell<ReadScratch> = RefCell::new(ReadScratch::new(MAX_READ));
}

impl StreamTransport {
    pub(super) fn read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (lost, buffered, protocol) = {
            let t = slf.try_borrow()?;
            (
                t.conn_lost > 0,
                t.buffered,
                t.protocol.as_ref().map(|p| p.clone_ref(py)),
            )
        };
        let Some(protocol) = protocol.filter(|_| !lost) else {
            return Ok(());
        };
        let protocol = protocol.bind(py);
        // ferroloop's TLS layer is fed natively.
        if let Ok(tls) = protocol.cast::<TlsProtocol>() {
            Self::read_tls(slf, protocol, tls)
        } else if buffered {
            Self::read_into_buffer(slf, protocol)
        } else {
            Self::read_bytes(slf, protocol)
        }
    }

    pub(super) fn read_bytes(slf: &Bound<'_, Self>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let fd = slf.try_borrow()?.fd;
        let got = ReadScratch::with(&SCRATCH, MAX_READ, |s| {
            sys::recv(fd, &mut s[..]).map(|n| PyBytes::new(py, &s[..n]))
        });
        let data = match got {
            Ok(d) => d,
            Err(SysError::Again) => return Ok(()),
            Err(SysError::Os(e)) => {
                return super::super::shared::fatal(
                    slf,
                    errors::sys_error(e),
                    "Fatal read error on socket transport",
                )
            }
        };
        if data.as_bytes().is_empty() {
            return Self::on_eof(slf, protocol);
        }
        if let Err(e) = protocol.call_method1(pyo3::intern!(py, "data_received"), (data,)) {
            return super::super::shared::fatal(
                slf,
                e,
                "Fatal error: protocol.data_received() call failed.",
            );
        }
        Ok(())
    }

    /// For ferroloop's TLS layer: the ciphertext goes from the scratch
    /// buffer straight into its incoming BIO, with no buffer lent and no
    /// Python call in between (`get_buffer`/`buffer_updated` natively).
    fn read_tls(
        slf: &Bound<'_, Self>,
        protocol: &Bound<'_, PyAny>,
        tls: &Bound<'_, TlsProtocol>,
    ) -> PyResult<()> {
        enum Got {
            Fed,
            Eof,
            Again,
            Os(Errno),
            Failed(PyErr),
        }
        let fd = slf.try_borrow()?.fd;
        let got = ReadScratch::with(&SCRATCH, MAX_READ, |s| match sys::recv(fd, &mut s[..]) {
            Ok(0) => Got::Eof,
            Ok(n) => match TlsProtocol::feed(tls, &s[..n]) {
                Ok(()) => Got::Fed,
                Err(e) => Got::Failed(e),
            },
            Err(SysError::Again) => Got::Again,
            Err(SysError::Os(e)) => Got::Os(e),
        });
        let failed = match got {
            Got::Again => return Ok(()),
            Got::Eof => return Self::on_eof(slf, protocol),
            Got::Os(e) => {
                return super::super::shared::fatal(
                    slf,
                    errors::sys_error(e),
                    "Fatal read error on socket transport",
                )
            }
            Got::Failed(e) => e,
            Got::Fed => match TlsProtocol::on_incoming(tls) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            },
        };
        super::super::shared::fatal(
            slf,
            failed,
            "Fatal error: protocol.buffer_updated() call failed.",
        )
    }

    pub(super) fn read_into_buffer(
        slf: &Bound<'_, Self>,
        protocol: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let buf = protocol
            .call_method1(pyo3::intern!(py, "get_buffer"), (-1,))
            .and_then(|b| {
                if b.len()? == 0 {
                    return Err(PyRuntimeError::new_err(
                        "get_buffer() returned an empty buffer",
                    ));
                }
                Ok(b)
            });
        let buf = match buf {
            Ok(b) => b,
            Err(e) => {
                return super::super::shared::fatal(
                    slf,
                    e,
                    "Fatal error: protocol.get_buffer() call failed.",
                )
            }
        };
        // A buffer recv_into() refuses (read-only, say) is a read error in
        // asyncio, which only finds out when it calls recv_into().
        let mut view = match crate::py::WritableBuffer::new(&buf) {
            Ok(v) => v,
            Err(e) => {
                return super::super::shared::fatal(slf, e, "Fatal read error on socket transport")
            }
        };
        let fd = slf.try_borrow()?.fd;
        let res = sys::recv(fd, view.as_mut_slice(py));
        drop(view);
        let n = match res {
            Ok(n) => n,
            Err(SysError::Again) => return Ok(()),
            Err(SysError::Os(e)) => {
                return super::super::shared::fatal(
                    slf,
                    errors::sys_error(e),
                    "Fatal read error on socket transport",
                )
            }
        };
        if n == 0 {
            return Self::on_eof(slf, protocol);
        }
        if let Err(e) = protocol.call_method1(pyo3::intern!(py, "buffer_updated"), (n,)) {
            return super::super::shared::fatal(
                slf,
                e,
                "Fatal error: protocol.buffer_updated() call failed.",
            );
        }
        Ok(())
    }

    pub(super) fn on_eof(slf: &Bound<'_, Self>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        if slf.try_borrow()?.debug(py) {
            log_debug(py, ("%r received EOF", face_or_core(slf).unbind()))?;
        }
        let keep_open = match protocol.call_method0(pyo3::intern!(py, "eof_received")) {
            Ok(v) => v.is_truthy()?,
            Err(e) => {
                return super::super::shared::fatal(
                    slf,
                    e,
                    "Fatal error: protocol.eof_received() call failed.",
                )
            }
        };
        if keep_open {
            set_watching(slf, Side::Read, false)
        } else {
            super::super::shared::close(slf)
        }
    }
}
