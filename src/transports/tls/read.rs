//! The incoming flow: ciphertext into the incoming BIO, plaintext out to
//! the application (`_do_read__copied` and `_do_read__buffered`), the
//! peer's close_notify, and read flow control both ways.

use super::{is_again, names, State, TlsProtocol};
use crate::sys::ReadScratch;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};
use std::cell::RefCell;

/// sslproto's `max_size`: the most a read asks OpenSSL for.
const MAX_SIZE: usize = 256 * 1024;

thread_local! {
    /// Where plaintext lands before it becomes one `bytes`.
    static PLAIN: RefCell<ReadScratch> = RefCell::new(ReadScratch::new(MAX_SIZE));
}

/// An object of one of the ssl module's C types, `_ssl.MemoryBIO` or
/// `_ssl._SSLSocket` (exactly: a subclass could keep what it is given),
/// whose `write(buffer)` and `read(n, buffer)` use the buffer only during
/// the call and keep no export of it. Only such an object is lent a view
/// of Rust memory; anything else gets `bytes` (see [`bio_write`],
/// [`read_into`]).
struct CBufferUser<'a, 'py>(&'a Bound<'py, PyAny>);

impl<'a, 'py> CBufferUser<'a, 'py> {
    fn check(obj: &'a Bound<'py, PyAny>) -> PyResult<Option<Self>> {
        let py = obj.py();
        let n = names(py)?;
        let t = obj.get_type();
        Ok((t.is(n.c_memory_bio.bind(py)) || t.is(n.c_ssl_socket.bind(py))).then_some(Self(obj)))
    }

    /// `method(*args, view)` with `view` a memoryview of `ptr..ptr + len`,
    /// released when the call returns.
    ///
    /// # Safety
    /// `ptr..ptr + len` is valid for the whole call (for writes too when
    /// `writable`), and nothing else accesses it meanwhile.
    unsafe fn call_with_view(
        &self,
        method: &Bound<'py, pyo3::types::PyString>,
        n: Option<usize>,
        ptr: *mut u8,
        len: usize,
        writable: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = self.0.py();
        let flags = if writable {
            pyo3::ffi::PyBUF_WRITE
        } else {
            pyo3::ffi::PyBUF_READ
        };
        // SAFETY: the memory is valid and unshared for the call (the
        // caller's contract); we hold the GIL; the result is a new
        // reference or NULL with an exception set.
        let view = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                pyo3::ffi::PyMemoryView_FromMemory(ptr.cast(), len as pyo3::ffi::Py_ssize_t, flags),
            )?
        };
        // The callee is a C method of an exact C type (`check`): it takes
        // the buffer for the call only, so once the view is released no
        // Python object refers to the memory.
        let result = match n {
            Some(n) => self.0.call_method1(method, (n, &view)),
            None => self.0.call_method1(method, (&view,)),
        };
        view.call_method0(pyo3::intern!(py, "release"))?;
        result
    }
}

/// `bio.write(data)`: without making a `bytes` of `data` when `bio` is
/// the ssl module's own MemoryBIO, which copies it.
fn bio_write(bio: &Bound<'_, PyAny>, data: &[u8]) -> PyResult<()> {
    let py = bio.py();
    let write = pyo3::intern!(py, "write");
    match CBufferUser::check(bio)? {
        Some(c) => {
            let (ptr, len) = (data.as_ptr().cast_mut(), data.len());
            // SAFETY: `data` is borrowed for the whole call and only read
            // (a read-only view).
            unsafe { c.call_with_view(write, None, ptr, len, false) }.map(drop)
        }
        None => bio.call_method1(write, (PyBytes::new(py, data),)).map(drop),
    }
}

/// `sslobj.read(len(buf), buf)`: decrypts straight into `buf` when
/// `sslobj` is the ssl module's own C object, else through a `bytes`.
fn read_into(sslobj: &Bound<'_, PyAny>, buf: &mut [u8]) -> PyResult<usize> {
    let py = sslobj.py();
    let read = pyo3::intern!(py, "read");
    match CBufferUser::check(sslobj)? {
        Some(c) => {
            let (ptr, len) = (buf.as_mut_ptr(), buf.len());
            // SAFETY: `buf` is borrowed mutably for the whole call, so
            // nothing else touches it.
            unsafe { c.call_with_view(read, Some(len), ptr, len, true) }?.extract()
        }
        None => {
            let got = crate::py::buffer_bytes(&sslobj.call_method1(read, (buf.len(),))?)?;
            let Some(dst) = buf.get_mut(..got.len()) else {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "SSLObject.read({}) returned {} bytes",
                    buf.len(),
                    got.len()
                )));
            };
            dst.copy_from_slice(&got);
            Ok(got.len())
        }
    }
}

impl TlsProtocol {
    /// Ciphertext read by a native stream transport: into the incoming
    /// BIO, then on through the state machine (`buffer_updated`).
    pub(crate) fn feed(slf: &Bound<'_, Self>, data: &[u8]) -> PyResult<()> {
        let py = slf.py();
        let incoming = slf.try_borrow()?.incoming.clone_ref(py);
        bio_write(incoming.bind(py), data)
    }

    /// `get_buffer(n)` for a transport that is not native: a view of a
    /// buffer of this protocol's own, made on first use. Whatever `n`,
    /// it is sslproto's `max_size` long, as asyncio's.
    pub(super) fn lend_buffer(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Some(v) = &slf.try_borrow()?.rx_view {
            return Ok(v.clone_ref(py));
        }
        let buf = PyByteArray::new_with(py, MAX_SIZE, |_| Ok(()))?;
        let view = PyMemoryView::from(buf.as_any())?.into_any().unbind();
        slf.try_borrow_mut()?.rx_view = Some(view.clone_ref(py));
        Ok(view)
    }

    /// `buffer_updated(nbytes)`'s first step: the lent buffer's first
    /// `nbytes` into the incoming BIO.
    pub(super) fn take_lent(slf: &Bound<'_, Self>, nbytes: usize) -> PyResult<()> {
        let py = slf.py();
        let view = Self::lend_buffer(slf)?.into_bound(py);
        let incoming = slf.try_borrow()?.incoming.clone_ref(py);
        let part = view.get_item(pyo3::types::PySlice::new(py, 0, nbytes as isize, 1))?;
        incoming
            .bind(py)
            .call_method1(pyo3::intern!(py, "write"), (part,))?;
        Ok(())
    }

    /// The rest of `buffer_updated`: what the new ciphertext means in the
    /// current state.
    pub(crate) fn on_incoming(slf: &Bound<'_, Self>) -> PyResult<()> {
        match Self::state(slf)? {
            State::DoHandshake => Self::do_handshake(slf),
            State::Wrapped => Self::do_read(slf),
            State::Flushing => Self::do_flush(slf),
            State::Shutdown => Self::do_shutdown(slf),
            State::Unwrapped => Ok(()),
        }
    }

    /// `_do_read`: plaintext to the application unless it paused reading,
    /// then whatever OpenSSL has to send, then read flow control.
    pub(super) fn do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        if !matches!(Self::state(slf)?, State::Wrapped | State::Flushing) {
            return Ok(());
        }
        let res = (|| {
            let (paused, buffered) = {
                let t = slf.try_borrow()?;
                (t.app_reading_paused, t.app_buffered)
            };
            if !paused {
                if buffered {
                    Self::read_buffered(slf)?;
                } else {
                    Self::read_copied(slf)?;
                }
                if slf.try_borrow()?.backlog.is_empty() {
                    Self::process_outgoing(slf)?;
                } else {
                    Self::do_write(slf)?;
                }
            }
            Self::control_ssl_reading(slf)
        })();
        Self::fatal_on_exception(slf, res, "Fatal error on SSL protocol")
    }

    /// True when a read would only raise `SSLWantReadError`: the incoming
    /// BIO is empty and OpenSSL holds no decrypted bytes. (Python's ssl
    /// never enables read-ahead, so OpenSSL holds no undecrypted records
    /// either once the BIO is drained.)
    fn drained(
        py: Python<'_>,
        incoming: &Bound<'_, PyAny>,
        raw: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let bio: usize = incoming.getattr(pyo3::intern!(py, "pending"))?.extract()?;
        if bio > 0 {
            return Ok(false);
        }
        let ssl: usize = raw.call_method0(pyo3::intern!(py, "pending"))?.extract()?;
        Ok(ssl == 0)
    }

    /// `_do_read__copied`: everything OpenSSL can decrypt now, as one
    /// `bytes` to `data_received`; then the peer's close_notify, if that
    /// is what came.
    fn read_copied(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (raw, incoming) = {
            let t = slf.try_borrow()?;
            (t.raw.clone_ref(py), t.incoming.clone_ref(py))
        };
        let (raw, incoming) = (raw.bind(py), incoming.bind(py));
        let mut closed = false;
        let collect = |scratch: &mut [u8]| -> PyResult<Option<Bound<'_, PyBytes>>> {
            let cap = scratch.len();
            let mut spill: Vec<u8> = Vec::new();
            let mut off = 0;
            loop {
                if off == cap {
                    spill.extend_from_slice(&scratch[..off]);
                    off = 0;
                }
                let got = read_into(raw, &mut scratch[off..]);
                match got {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => {
                        off += n;
                        if Self::drained(py, incoming, raw)? {
                            break;
                        }
                    }
                    Err(e) if is_again(py, &e)? => break,
                    Err(e) => return Err(e),
                }
            }
            Ok(match (spill.is_empty(), off) {
                (true, 0) => None,
                (true, _) => Some(PyBytes::new(py, &scratch[..off])),
                (false, _) => {
                    spill.extend_from_slice(&scratch[..off]);
                    Some(PyBytes::new(py, &spill))
                }
            })
        };
        // Re-entered (an OpenSSL callback reading another connection), it
        // gets a buffer of its own.
        let data = ReadScratch::with(&PLAIN, MAX_SIZE, collect)?;
        if let Some(data) = data {
            let app = slf.try_borrow()?.app_protocol(py);
            if let Some(app) = app {
                app.bind(py)
                    .call_method1(pyo3::intern!(py, "data_received"), (data,))?;
            }
        }
        if closed {
            Self::call_eof_received(slf)?;
            Self::start_shutdown(slf)?;
        }
        Ok(())
    }

    /// `_do_read__buffered`: decrypt straight into the application's
    /// buffer.
    fn read_buffered(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (raw, app) = {
            let t = slf.try_borrow()?;
            (t.raw.clone_ref(py), t.app_protocol(py))
        };
        let Some(app) = app else { return Ok(()) };
        let (raw, app) = (raw.bind(py), app.bind(py));
        let size = Self::read_buffer_size(slf)?;
        let buf = app.call_method1(pyo3::intern!(py, "get_buffer"), (size,))?;
        let wants = buf.len()?;
        let mut offset = 0;
        let mut count = 1;
        let read = pyo3::intern!(py, "read");
        let res = (|| -> PyResult<()> {
            count = raw.call_method1(read, (wants, &buf))?.extract()?;
            if count > 0 {
                offset = count;
                while offset < wants {
                    let rest = buf.get_item(pyo3::types::PySlice::new(
                        py,
                        offset as isize,
                        isize::MAX,
                        1,
                    ))?;
                    count = raw.call_method1(read, (wants - offset, rest))?.extract()?;
                    if count == 0 {
                        return Ok(());
                    }
                    offset += count;
                }
                // The buffer is full: there may be more.
                Self::call_soon_own(slf, pyo3::intern!(py, "_do_read"))?;
            }
            Ok(())
        })();
        match res {
            Ok(()) => {}
            Err(e) if is_again(py, &e)? => {}
            Err(e) => return Err(e),
        }
        if offset > 0 {
            app.call_method1(pyo3::intern!(py, "buffer_updated"), (offset,))?;
        }
        if count == 0 {
            Self::call_eof_received(slf)?;
            Self::start_shutdown(slf)?;
        }
        Ok(())
    }

    /// `_call_eof_received`: the application hears of the peer's
    /// close_notify once; keeping the connection open is not possible.
    pub(super) fn call_eof_received(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let app = {
            let mut t = slf.try_borrow_mut()?;
            if t.app_state != super::AppState::ConMade {
                return Ok(());
            }
            t.app_state = super::AppState::Eof;
            t.app_protocol(py)
        };
        let Some(app) = app else { return Ok(()) };
        let res = app
            .bind(py)
            .call_method0(pyo3::intern!(py, "eof_received"))
            .and_then(|keep| keep.is_truthy());
        match res {
            Ok(true) => {
                crate::py::asyncio(py)?.logger.bind(py).call_method1(
                    pyo3::intern!(py, "warning"),
                    ("returning true from eof_received() has no effect when using ssl",),
                )?;
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) if super::stops_loop(py, &e) => Err(e),
            Err(e) => {
                let exc = e.into_value(py).into_bound(py).into_any();
                Self::fatal_error(slf, &exc, "Error calling eof_received()")
            }
        }
    }

    pub(super) fn read_buffer_size(slf: &Bound<'_, Self>) -> PyResult<usize> {
        let py = slf.py();
        let incoming = slf.try_borrow()?.incoming.clone_ref(py);
        incoming
            .bind(py)
            .getattr(pyo3::intern!(py, "pending"))?
            .extract()
    }

    /// `_control_ssl_reading`: pause the socket transport while too much
    /// ciphertext waits in the incoming BIO.
    pub(super) fn control_ssl_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let size = Self::read_buffer_size(slf)?;
        let call = {
            let t = &mut *slf.try_borrow_mut()?;
            super::flip(&mut t.ssl_reading_paused, &t.incoming_marks, size)
        };
        if let Some(pause) = call {
            let method = if pause {
                "pause_reading"
            } else {
                "resume_reading"
            };
            let transport = slf.try_borrow()?.transport(py);
            if let Some(t) = transport {
                t.bind(py).call_method0(method)?;
            }
        }
        Ok(())
    }

    /// `_resume_reading`: the application wants data again; what is
    /// buffered comes in the next iteration.
    pub(super) fn resume_app_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        {
            let mut t = slf.try_borrow_mut()?;
            if !t.app_reading_paused {
                return Ok(());
            }
            t.app_reading_paused = false;
        }
        Self::call_soon_own(slf, pyo3::intern!(py, "_resume_app_reading"))
    }
}
