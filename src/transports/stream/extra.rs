//! What a stream transport tells about its socket: the socket object
//! (made from the descriptor only when asked for), `sockname`/`peername`,
//! and `get_extra_info` / `_extra` as asyncio's selector transports give
//! them.

use super::StreamTransport;
use crate::sys::{self, HeldFd};
use crate::transports::addr::Addr;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use rustix::net::AddressFamily;
use std::os::fd::{IntoRawFd, RawFd};

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

/// `sockname` and `peername` (if `want_peer`) of a connected socket: as
/// Rust addresses for IPv4 and IPv6, else the socket module's objects.
/// None (`Unknown`) where the call fails, as asyncio stores.
pub(super) fn socket_addresses(
    sock: &Bound<'_, PyAny>,
    fd: HeldFd,
    family: i32,
    want_peer: bool,
) -> PyResult<(Addr, Addr)> {
    let py = sock.py();
    if family == i32::from(AddressFamily::INET.as_raw())
        || family == i32::from(AddressFamily::INET6.as_raw())
    {
        let local = Addr::from_kernel(sys::getsockname(fd).ok());
        let peer = match want_peer {
            true => Addr::from_kernel(sys::getpeername(fd).ok().flatten()),
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
    /// `get_extra_info`: `socket`, `sockname` and `peername` as asyncio's
    /// selector transports give them, then what `extra` had.
    pub(super) fn extra_info(
        slf: &Bound<'_, Self>,
        name: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Ok(key) = name.cast::<PyString>() {
            match key.to_str()? {
                "socket" => return Self::transport_socket(slf),
                "sockname" => return slf.try_borrow()?.local.to_py(py),
                "peername" if !slf.try_borrow()?.peer_given(py)? => {
                    return slf.try_borrow()?.peer.to_py(py)
                }
                _ => {}
            }
        }
        let extra = slf.try_borrow()?.extra.as_ref().map(|e| e.clone_ref(py));
        let default = default.unwrap_or_else(|| py.None());
        match extra {
            Some(e) => Ok(e
                .bind(py)
                .call_method1(pyo3::intern!(py, "get"), (name, default))?
                .unbind()),
            None => {
                // asyncio's `_extra.get(name)` hashes the key: an
                // unhashable one is a TypeError even with nothing stored,
                // in the words of the running Python's dict.
                PyDict::new(py).get_item(name)?;
                Ok(default)
            }
        }
    }

    /// asyncio's `_extra` dict, made on demand.
    pub(super) fn extra_as_dict<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        let d = PyDict::new(py);
        if let Some(e) = &slf.try_borrow()?.extra {
            d.update(e.bind(py).cast::<pyo3::types::PyMapping>()?)?;
        }
        for key in ["socket", "sockname", "peername"] {
            let key = PyString::new(py, key);
            if key.to_str()? == "peername" && d.contains(&key)? {
                continue;
            }
            d.set_item(&key, Self::extra_info(slf, &key, None)?)?;
        }
        Ok(d)
    }

    fn peer_given(&self, py: Python<'_>) -> PyResult<bool> {
        match &self.extra {
            Some(e) => e.bind(py).contains(pyo3::intern!(py, "peername")),
            None => Ok(false),
        }
    }

    /// The Python socket object, made from the descriptor on first use;
    /// None once the socket is closed.
    pub(super) fn sock_object<'py>(slf: &Bound<'py, Self>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = slf.py();
        let (family, proto, fd) = {
            let t = slf.try_borrow()?;
            if let Some(s) = &t.sock {
                return Ok(Some(s.bind(py).clone()));
            }
            if t.owned.is_none() {
                return Ok(None);
            }
            (t.family, t.proto, t.fd)
        };
        let sock = stream_socket(py, family, proto, Some(fd.raw()))?;
        {
            // The socket object owns the descriptor from now on (at once:
            // were the OwnedFd kept past an error below, two owners would
            // close it).
            let mut t = slf.try_borrow_mut()?;
            if let Some(fd) = t.owned.take() {
                let _ = fd.into_raw_fd();
            }
            t.sock = Some(sock.clone().unbind());
        }
        // What asyncio's accept path does to the connection's socket.
        sock.call_method1(pyo3::intern!(py, "setblocking"), (false,))?;
        Ok(Some(sock))
    }

    /// `get_extra_info('socket')`: asyncio's `TransportSocket`, made once.
    /// Asked for after the socket was closed without ever having had a
    /// Python object, it is a closed socket of the same kind, as asyncio's
    /// would be by then.
    fn transport_socket(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Some(ts) = &slf.try_borrow()?.tsock {
            return Ok(ts.clone_ref(py));
        }
        let sock = match Self::sock_object(slf)? {
            Some(s) => s,
            None => {
                let (family, proto) = {
                    let t = slf.try_borrow()?;
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
        slf.try_borrow_mut()?.tsock = Some(ts.clone_ref(py));
        Ok(ts)
    }
}
