//! The TLS layer's states (sslproto's `SSLProtocolState` and
//! `AppProtocolState`) and what it takes from `ssl` and asyncio.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// sslproto's `SSLProtocolState`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum State {
    Unwrapped,
    DoHandshake,
    Wrapped,
    Flushing,
    Shutdown,
}

impl State {
    pub(super) fn name(self) -> &'static str {
        match self {
            State::Unwrapped => "UNWRAPPED",
            State::DoHandshake => "DO_HANDSHAKE",
            State::Wrapped => "WRAPPED",
            State::Flushing => "FLUSHING",
            State::Shutdown => "SHUTDOWN",
        }
    }

    /// The transitions `_set_state` allows.
    pub(super) fn can_become(self, new: State) -> bool {
        matches!(
            (self, new),
            (_, State::Unwrapped)
                | (State::Unwrapped, State::DoHandshake)
                | (State::DoHandshake, State::Wrapped)
                | (State::Wrapped, State::Flushing)
                | (State::Flushing, State::Shutdown)
        )
    }

    /// No more application data may be written.
    pub(super) fn refuses_writes(self) -> bool {
        matches!(self, State::Flushing | State::Shutdown | State::Unwrapped)
    }
}

/// sslproto's `AppProtocolState`: where the application protocol is in
/// connection_made, eof_received, connection_lost.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum AppState {
    Init,
    ConMade,
    Eof,
    ConLost,
}

/// What the TLS layer takes from `ssl`, asyncio and ferroloop's Python
/// side, looked up once.
pub(super) struct Names {
    pub(super) want_read: Py<PyAny>,
    pub(super) syscall_error: Py<PyAny>,
    pub(super) ssl_error: Py<PyAny>,
    pub(super) certificate_error: Py<PyAny>,
    pub(super) sslobject: Py<PyAny>,
    pub(super) memory_bio: Py<PyAny>,
    /// `_ssl.MemoryBIO` and `_ssl._SSLSocket`: the C types whose methods
    /// use a buffer argument only during the call (see `read::CBufferUser`).
    pub(super) c_memory_bio: Py<PyAny>,
    pub(super) c_ssl_socket: Py<PyAny>,
    pub(super) create_context: Py<PyAny>,
    pub(super) buffered_protocol: Py<PyAny>,
    pub(super) cancelled_error: Py<PyAny>,
    pub(super) face: Py<PyAny>,
    pub(super) handshake_timeout: Py<PyAny>,
    pub(super) shutdown_timeout: Py<PyAny>,
    /// 3.13 aborts the socket transport with `_force_close(exc)`.
    pub(super) abort_takes_exc: bool,
    /// Whether a clean shutdown keeps its timeout running until
    /// connection_lost (3.14's `_on_shutdown_complete`: the socket's close
    /// may wait forever on a peer that does not read). Read off asyncio's
    /// own method, which names `_check_shutdown_timeout` only if it does.
    pub(super) keep_shutdown_timer: bool,
}

static NAMES: PyOnceLock<Names> = PyOnceLock::new();

pub(super) fn names(py: Python<'_>) -> PyResult<&'static Names> {
    NAMES.get_or_try_init(py, || {
        let ssl = py.import("ssl")?;
        let sslproto = py.import("asyncio.sslproto")?;
        let constants = py.import("asyncio.constants")?;
        let get = |m: &Bound<'_, PyModule>, n: &str| m.getattr(n).map(Bound::unbind);
        Ok(Names {
            want_read: get(&ssl, "SSLWantReadError")?,
            syscall_error: get(&ssl, "SSLSyscallError")?,
            ssl_error: get(&ssl, "SSLError")?,
            certificate_error: get(&ssl, "CertificateError")?,
            sslobject: get(&ssl, "SSLObject")?,
            memory_bio: get(&ssl, "MemoryBIO")?,
            c_memory_bio: get(&py.import("_ssl")?, "MemoryBIO")?,
            c_ssl_socket: get(&py.import("_ssl")?, "_SSLSocket")?,
            create_context: get(&sslproto, "_create_transport_context")?,
            buffered_protocol: get(&py.import("asyncio")?, "BufferedProtocol")?,
            cancelled_error: get(&py.import("asyncio.exceptions")?, "CancelledError")?,
            face: get(&py.import("ferroloop._transports")?, "SSLTransport")?,
            handshake_timeout: get(&constants, "SSL_HANDSHAKE_TIMEOUT")?,
            shutdown_timeout: get(&constants, "SSL_SHUTDOWN_TIMEOUT")?,
            abort_takes_exc: py.version_info() >= (3, 13),
            keep_shutdown_timer: sslproto
                .getattr("SSLProtocol")?
                .getattr("_on_shutdown_complete")?
                .getattr("__code__")?
                .getattr("co_names")?
                .contains("_check_shutdown_timeout")?,
        })
    })
}

/// `SSLAgainErrors`: what sslproto treats as "wait for more data".
pub(super) fn is_again(py: Python<'_>, e: &PyErr) -> PyResult<bool> {
    let n = names(py)?;
    Ok(e.is_instance(py, n.want_read.bind(py)) || e.is_instance(py, n.syscall_error.bind(py)))
}

pub(super) fn is_ssl_error(py: Python<'_>, e: &PyErr) -> PyResult<bool> {
    Ok(e.is_instance(py, names(py)?.ssl_error.bind(py)))
}
