//! The accept loop of a listening socket: asyncio's `_accept_connection`
//! and `_accept_connection2`, natively, for servers without TLS.
//!
//! # Implementation
//! When the listening socket is readable, up to `backlog` connections are
//! taken with `accept4` (non-blocking, close-on-exec), as asyncio's loop
//! does with `sock.accept()`. For each one, what asyncio's per-connection
//! task would do next iteration is queued instead, in a copy of the
//! server's context as the task's would be: call the protocol factory,
//! make the transport, which schedules `connection_made` and reading. No
//! task, coroutine, waiter or socket object is made: an IPv4/IPv6
//! connection's descriptor stays Rust's (the transport makes its socket
//! object only if asked), and its addresses stay Rust values.
//!
//! What asyncio reports, this reports the same way: running out of
//! descriptors (EMFILE/ENFILE/ENOBUFS/ENOMEM) goes to the exception
//! handler, stops accepting, and `_start_serving` is called again after
//! `ACCEPT_RETRY_DELAY` (once per remaining backlog slot, as asyncio's
//! loop does not stop at the first such error); another accept error goes to the handler as an
//! exception in `_accept_connection`; a failing protocol factory is
//! reported in debug mode only.

use super::addr::Addr;
use super::stream::{stream_socket, StreamTransport};
use super::{log_debug, registry, Core};
use crate::errors::{stops_loop, HandlerContext};
use crate::event_loop::fds::Side;
use crate::event_loop::source::{self, IoSource};
use crate::event_loop::LoopCore;
use crate::sys::{self, HeldFd, SysError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rustix::io::Errno;
use rustix::net::AddressFamily;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::sync::Arc;

/// asyncio's `constants.ACCEPT_RETRY_DELAY`, in seconds.
const ACCEPT_RETRY_DELAY: f64 = 1.0;

/// A listening socket the loop accepts on. Nothing in it changes once made.
/// A Python object, so that each queued connection holds it by a counted
/// reference the garbage collector can see.
#[pyclass(module = "ferroloop._ferroloop", frozen)]
pub struct Listener {
    loop_: Py<LoopCore>,
    fd: HeldFd,
    /// The listening socket object, for error reports and the retry.
    sock: Py<PyAny>,
    family: i32,
    proto: i32,
    /// IPv4/IPv6: addresses stay Rust values, and the socket object is made
    /// on demand. Other families (Unix) get theirs at once.
    inet: bool,
    /// asyncio sets TCP_NODELAY on `IPPROTO_TCP` sockets only.
    nodelay: bool,
    protocol_factory: Py<PyAny>,
    server: Option<Py<PyAny>>,
    server_takes_transport: bool,
    backlog: usize,
    /// How many accepts one readiness tries: `backlog`, or from 3.14 on
    /// `backlog + 1` (asyncio's `range(backlog + 1)`).
    attempts: usize,
    /// Whether ECONNABORTED is skipped (3.14+) rather than ending the round.
    skip_aborted: bool,
    /// `_start_serving`'s TLS timeouts, passed back to it on a retry.
    ssl_handshake_timeout: Py<PyAny>,
    ssl_shutdown_timeout: Py<PyAny>,
    /// The context asyncio's accept handle would run in (3.15: the
    /// server's, given); each connection gets a copy of it, as each of
    /// asyncio's accept tasks does.
    context: Py<PyAny>,
    /// 3.15: that copy is also the context every callback of the
    /// connection's transport runs in.
    transport_context: bool,
    /// `ferroloop._transports.accepted`: makes the Python transport.
    make_face: Py<PyAny>,
}

impl Listener {
    fn accept_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let loop_ = this.loop_.bind(py);
        for _ in 0..this.attempts {
            match sys::accept(this.fd) {
                Ok((conn, addr)) => {
                    let peer = match this.inet {
                        true => Addr::from_kernel(addr),
                        false => Addr::Unknown,
                    };
                    let debug = loop_.try_borrow()?.debug_enabled();
                    let conn = match debug {
                        true => this.log_accept(py, conn, &peer)?,
                        false => conn,
                    };
                    let ctx = this
                        .context
                        .bind(py)
                        .call_method0(pyo3::intern!(py, "copy"))?;
                    let accepted = Accepted {
                        listener: slf.clone().unbind(),
                        conn: Some((conn, peer)),
                        context: this.transport_context.then(|| ctx.clone().unbind()),
                    };
                    LoopCore::push_soon(
                        loop_,
                        Bound::new(py, accepted)?.as_any(),
                        crate::handles::Args::Zero,
                        Some(ctx.unbind()),
                        debug,
                    )?;
                }
                // NOTE: 3.14's loop goes on past a connection aborted before it
                // was accepted; earlier versions stop there.
                Err(SysError::Os(Errno::CONNABORTED)) if this.skip_aborted => continue,
                Err(SysError::Again | SysError::Os(Errno::CONNABORTED)) => return Ok(()),
                // asyncio goes on trying (and reporting, and scheduling a
                // restart) for the rest of the backlog; so does this.
                Err(SysError::Os(
                    e @ (Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM),
                )) => {
                    this.back_off(py, e)?;
                }
                Err(SysError::Os(e)) => return Err(crate::errors::sys_error(e)),
            }
        }
        Ok(())
    }

    /// Out of a system resource: report it, stop accepting, and start
    /// again in a while (Linux keeps reporting the socket readable).
    fn back_off(&self, py: Python<'_>, err: Errno) -> PyResult<()> {
        let loop_ = self.loop_.bind(py);
        let tsock = py
            .import(pyo3::intern!(py, "asyncio.trsock"))?
            .getattr(pyo3::intern!(py, "TransportSocket"))?
            .call1((&self.sock,))?;
        HandlerContext::new(py, "socket.accept() out of system resource")?
            .exception(crate::errors::os_error(err.into()))?
            .with("socket", tsock)?
            .send(loop_.as_any())?;
        source::unwatch(loop_, self.fd.raw(), Side::Read)?;
        let mut args = vec![
            ACCEPT_RETRY_DELAY.into_pyobject(py)?.into_any(),
            loop_.getattr(pyo3::intern!(py, "_start_serving"))?,
            self.protocol_factory.bind(py).clone(),
            self.sock.bind(py).clone(),
            py.None().into_bound(py),
            self.server
                .as_ref()
                .map_or_else(|| py.None().into_bound(py), |s| s.bind(py).clone()),
            self.backlog.into_pyobject(py)?.into_any(),
            self.ssl_handshake_timeout.bind(py).clone(),
            self.ssl_shutdown_timeout.bind(py).clone(),
        ];
        // 3.15 passes the server's context on to the retry.
        if self.transport_context {
            args.push(self.context.bind(py).clone());
        }
        let args = pyo3::types::PyTuple::new(py, args)?;
        loop_.call_method1(pyo3::intern!(py, "call_later"), args)?;
        Ok(())
    }

    /// asyncio's debug line: "%r got a new connection from %r: %r", the
    /// last being the connection's socket object. One is made to show it,
    /// then gives the descriptor back.
    fn log_accept(&self, py: Python<'_>, conn: OwnedFd, peer: &Addr) -> PyResult<OwnedFd> {
        let made = stream_socket(py, self.family, self.proto, Some(conn.as_raw_fd()));
        let Ok(sock) = made else {
            return Ok(conn);
        };
        let shown = sock.repr();
        let addr = match peer {
            Addr::Unknown => sock
                .call_method0(pyo3::intern!(py, "getpeername"))
                .map(Bound::unbind)
                .unwrap_or_else(|_| py.None()),
            known => known.to_py(py)?,
        };
        if let Err(e) = sock.call_method0(pyo3::intern!(py, "detach")) {
            // The object still owns the descriptor: it must not be closed twice.
            let _ = conn.into_raw_fd();
            return Err(e);
        }
        log_debug(
            py,
            (
                "%r got a new connection from %r: %s",
                &self.server,
                addr,
                shown?,
            ),
        )?;
        Ok(conn)
    }

    /// asyncio's `_accept_connection2` up to the transport: the protocol,
    /// then the transport, which schedules `connection_made` and reading.
    fn serve_connection(
        &self,
        py: Python<'_>,
        conn: OwnedFd,
        peer: Addr,
        context: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let loop_ = self.loop_.bind(py);
        let protocol = match self.protocol_factory.bind(py).call0() {
            Ok(p) => p,
            Err(e) => return self.creation_failed(py, e, None),
        };
        if self.nodelay {
            // asyncio's `_set_nodelay`; a failure there would raise from
            // the transport's constructor, so it is reported the same way.
            if let Err(e) = rustix::net::sockopt::set_tcp_nodelay(&conn, true) {
                return self.creation_failed(
                    py,
                    crate::errors::os_error(e.into()),
                    Some(&protocol),
                );
            }
        }
        let server = self.server.as_ref().map(|s| s.bind(py));
        let made = if self.inet {
            StreamTransport::accepted(
                loop_,
                conn,
                self.family,
                self.proto,
                peer,
                &protocol,
                server,
                self.server_takes_transport,
                context,
            )
            .and_then(|core| Bound::new(py, core))
            .and_then(|core| {
                self.make_face
                    .bind(py)
                    .call1((loop_, &core, &self.server))?;
                let fd = core.try_borrow()?.fd();
                registry::register(loop_, fd, core.into_any().unbind())?;
                Ok(())
            })
        } else {
            self.unix_transport(py, conn, &protocol, context)
        };
        match made {
            Ok(()) => Ok(()),
            Err(e) => self.creation_failed(py, e, Some(&protocol)),
        }
    }

    /// A Unix connection gets its socket object at once, and asyncio's
    /// constructor path, so its addresses are the socket module's.
    fn unix_transport(
        &self,
        py: Python<'_>,
        conn: OwnedFd,
        protocol: &Bound<'_, PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let loop_ = self.loop_.bind(py);
        let raw = conn.as_raw_fd();
        let sock = stream_socket(py, self.family, self.proto, Some(raw))?;
        // The socket object owns the descriptor now.
        let _ = conn.into_raw_fd();
        sock.call_method1(pyo3::intern!(py, "setblocking"), (false,))?;
        let peer = sock.call_method0(pyo3::intern!(py, "getpeername"))?;
        let extra = PyDict::new(py);
        extra.set_item("peername", peer)?;
        let kw = PyDict::new(py);
        kw.set_item("extra", extra)?;
        kw.set_item("server", &self.server)?;
        if let Some(c) = context {
            kw.set_item("context", c)?;
        }
        loop_.call_method(
            pyo3::intern!(py, "_make_socket_transport"),
            (sock, protocol),
            Some(&kw),
        )?;
        Ok(())
    }

    /// A connection that could not be set up: asyncio's task swallows the
    /// error, reporting it only in debug mode. Its descriptor was closed
    /// when the error unwound it.
    fn creation_failed(
        &self,
        py: Python<'_>,
        err: PyErr,
        protocol: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        if stops_loop(py, &err) {
            return Err(err);
        }
        let loop_ = self.loop_.bind(py);
        if loop_.try_borrow()?.debug_enabled() {
            let mut ctx =
                HandlerContext::new(py, "Error on transport creation for incoming connection")?
                    .exception(err)?;
            if let Some(p) = protocol {
                ctx = ctx.with("protocol", p)?;
            }
            ctx.send(loop_.as_any())?;
        }
        Ok(())
    }
}

/// The poller's handle on the listening socket.
struct ListenSource(Py<Listener>);

impl IoSource for ListenSource {
    fn on_ready(&self, py: Python<'_>, _side: Side) -> PyResult<()> {
        Listener::accept_ready(self.0.bind(py))
    }

    fn describe(&self, _side: Side) -> String {
        "BaseSelectorEventLoop._accept_connection()".to_string()
    }

    fn loop_object<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.0.get().loop_.bind(py).clone().into_any()
    }

    /// asyncio's `_accept_connection` handle, with its arguments.
    fn handle_callback<'py>(
        &self,
        py: Python<'py>,
        _side: Side,
    ) -> Option<(Bound<'py, PyAny>, Bound<'py, pyo3::types::PyTuple>)> {
        let l = self.0.get();
        let callback = l
            .loop_
            .bind(py)
            .getattr(pyo3::intern!(py, "_accept_connection"))
            .ok()?;
        let args = (
            &l.protocol_factory,
            &l.sock,
            py.None(),
            &l.server,
            l.backlog,
            &l.ssl_handshake_timeout,
            &l.ssl_shutdown_timeout,
        )
            .into_pyobject(py)
            .ok()?;
        Some((callback, args))
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.0)
    }
}

#[pymethods]
impl Listener {
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.sock)?;
        visit.call(&self.protocol_factory)?;
        visit.call(&self.server)?;
        visit.call(&self.ssl_handshake_timeout)?;
        visit.call(&self.ssl_shutdown_timeout)?;
        visit.call(&self.context)?;
        visit.call(&self.make_face)
    }
}

/// One accepted connection, queued to be set up next iteration. Dropped
/// without being run (the loop closed first), it closes the descriptor.
#[pyclass(module = "ferroloop._ferroloop")]
pub struct Accepted {
    listener: Py<Listener>,
    conn: Option<(OwnedFd, Addr)>,
    /// The context the connection's transport runs in (3.15).
    context: Option<Py<PyAny>>,
}

#[pymethods]
impl Accepted {
    fn __call__(&mut self, py: Python<'_>) -> PyResult<()> {
        match self.conn.take() {
            Some((conn, peer)) => {
                let context = self.context.take();
                self.listener
                    .get()
                    .serve_connection(py, conn, peer, context)
            }
            None => Ok(()),
        }
    }

    fn __repr__(&self) -> String {
        "<BaseSelectorEventLoop._accept_connection2()>".to_string()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.listener)?;
        visit.call(&self.context)?;
        if let Some((_, peer)) = &self.conn {
            peer.traverse(&visit)?;
        }
        Ok(())
    }
}

/// `loop._start_serving` for a server without TLS: accepts on `sock`
/// natively. `make_face(loop, core, server)` makes each connection's
/// Python transport. `context` is 3.15's: the server's, which each
/// connection's transport runs in a copy of.
#[pyfunction]
#[pyo3(signature = (loop_, sock, protocol_factory, server, backlog, ssl_handshake_timeout, ssl_shutdown_timeout, server_takes_transport, make_face, context = None))]
#[allow(clippy::too_many_arguments)]
pub fn serve(
    loop_: &Bound<'_, LoopCore>,
    sock: &Bound<'_, PyAny>,
    protocol_factory: &Bound<'_, PyAny>,
    server: Option<&Bound<'_, PyAny>>,
    backlog: i64,
    ssl_handshake_timeout: &Bound<'_, PyAny>,
    ssl_shutdown_timeout: &Bound<'_, PyAny>,
    server_takes_transport: bool,
    make_face: &Bound<'_, PyAny>,
    context: Option<Py<PyAny>>,
) -> PyResult<()> {
    let py = sock.py();
    // SAFETY: the listener holds `sock`, whose descriptor this is; the
    // server stops watching it (so no accept is made) before closing it.
    let fd = unsafe { HeldFd::new(crate::event_loop::fds::fileobj_to_fd(sock)?) };
    let family: i32 = sock.getattr(pyo3::intern!(py, "family"))?.extract()?;
    let proto: i32 = sock.getattr(pyo3::intern!(py, "proto"))?.extract()?;
    let since_314 = py.version_info() >= (3, 14);
    let inet = family == i32::from(AddressFamily::INET.as_raw())
        || family == i32::from(AddressFamily::INET6.as_raw());
    let listener = Listener {
        loop_: loop_.clone().unbind(),
        fd,
        sock: sock.clone().unbind(),
        family,
        proto,
        inet,
        nodelay: inet && i64::from(proto) == i64::from(rustix::net::ipproto::TCP.as_raw().get()),
        protocol_factory: protocol_factory.clone().unbind(),
        server: server.map(|s| s.clone().unbind()),
        server_takes_transport,
        // `range(backlog)` (3.14: `range(backlog + 1)`): a backlog below 1
        // accepts nothing (3.14: one).
        backlog: usize::try_from(backlog).unwrap_or(0),
        attempts: usize::try_from(backlog.saturating_add(i64::from(since_314))).unwrap_or(0),
        skip_aborted: since_314,
        ssl_handshake_timeout: ssl_handshake_timeout.clone().unbind(),
        ssl_shutdown_timeout: ssl_shutdown_timeout.clone().unbind(),
        transport_context: context.is_some(),
        context: match context {
            Some(c) => c,
            None => crate::py::copy_context(py)?,
        },
        make_face: make_face.clone().unbind(),
    };
    let listener = Py::new(py, listener)?;
    source::watch(
        loop_,
        fd.raw(),
        Side::Read,
        Arc::new(ListenSource(listener)),
    )
}
