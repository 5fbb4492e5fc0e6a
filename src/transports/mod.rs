//! Native transports: Rust reads and writes the socket, keeps the write
//! buffer and decides when to call the protocol.
//!
//! Each transport is a Rust core plus a thin Python object deriving from
//! `asyncio.Transport` (python/ferroloop/_transports.py), because asyncio's
//! classes have a C layout a Rust class cannot share, and libraries check
//! `isinstance(t, asyncio.Transport)`. The protocol only ever sees the
//! Python object; the core calls the protocol directly.

/// `impl Core` for a transport core whose loop, fd, weak face, protocol and
/// `reading`/`writing` flags are fields of `self` (or of `self.<part>`);
/// `context: field` names the `Option` field holding its fixed context.
macro_rules! impl_core {
    ($ty:ty, $name:literal, self $(. $part:ident)?, read: $read:path, write: $write:path $(, context: $ctx:ident)?) => {
        impl $crate::transports::Core for $ty {
            const ASYNCIO_NAME: &'static str = $name;

            fn loop_core(&self) -> &Py<$crate::event_loop::LoopCore> {
                &self$(.$part)?.loop_
            }

            fn fd(&self) -> std::os::fd::RawFd {
                self$(.$part)?.fd.raw()
            }

            fn face_ref(&self) -> Option<&Py<PyAny>> {
                self$(.$part)?.wrapper.as_ref()
            }

            fn protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
                self$(.$part)?.protocol.as_ref().map(|p| p.clone_ref(py))
            }

            fn watching(&mut self, side: $crate::event_loop::fds::Side) -> &mut bool {
                match side {
                    $crate::event_loop::fds::Side::Read => &mut self$(.$part)?.reading,
                    $crate::event_loop::fds::Side::Write => &mut self$(.$part)?.writing,
                }
            }

            fn on_ready(slf: &Bound<'_, Self>, side: $crate::event_loop::fds::Side) -> PyResult<()> {
                match side {
                    $crate::event_loop::fds::Side::Read => $read(slf),
                    $crate::event_loop::fds::Side::Write => $write(slf),
                }
            }

            $(
                fn context(&self) -> Option<&Py<PyAny>> {
                    self.$ctx.as_ref()
                }
            )?
        }
    };
}

#[macro_use]
pub mod shared;
pub mod addr;
pub mod datagram;
pub mod flow;
pub mod pipes;
pub mod registry;
pub mod server;
pub mod stream;
pub mod tls;
pub mod write_buffer;

use crate::errors::HandlerContext;
use crate::event_loop::fds::Side;
use crate::event_loop::source::{self, IoSource};
use crate::event_loop::LoopCore;
use crate::py;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::False;
use pyo3::types::{PyDict, PyWeakrefReference};
use pyo3::PyClass;
use std::os::fd::RawFd;
use std::sync::Arc;

/// What the machinery shared by every native transport needs of a core.
pub trait Core: PyClass<Frozen = False> + Send + Sync {
    /// asyncio's class name, for the handle descriptions in error messages.
    const ASYNCIO_NAME: &'static str;

    fn loop_core(&self) -> &Py<LoopCore>;

    fn fd(&self) -> RawFd;

    /// The weak reference to the Python transport (the face).
    fn face_ref(&self) -> Option<&Py<PyAny>>;

    fn protocol(&self, py: Python<'_>) -> Option<Py<PyAny>>;

    /// The flag that records whether `side` is watched.
    fn watching(&mut self, side: Side) -> &mut bool;

    /// The descriptor is ready for `side`: asyncio's `_read_ready` or
    /// `_write_ready`.
    fn on_ready(slf: &Bound<'_, Self>, side: Side) -> PyResult<()>;

    /// The contextvars Context every callback of the transport runs in,
    /// where asyncio gives the transport one (3.15's socket transports).
    /// Without one, each watched side runs in a copy of the context that
    /// was current when watching began, as asyncio's `_add_reader` handle
    /// copies it.
    fn context(&self) -> Option<&Py<PyAny>> {
        None
    }

    /// The Python transport object, while it lives.
    fn face<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.face_ref()?
            .bind(py)
            .cast::<PyWeakrefReference>()
            .ok()?
            .upgrade()
    }

    fn loop_any<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.loop_core().bind(py).clone().into_any()
    }

    fn debug(&self, py: Python<'_>) -> bool {
        self.loop_core()
            .bind(py)
            .try_borrow()
            .map(|l| l.debug_enabled())
            .unwrap_or(false)
    }
}

/// A watched side of a transport's descriptor. It holds the core and the
/// Python face strongly, so a transport the loop watches stays alive (as
/// asyncio's handles keep theirs) even if the program dropped it; and the
/// context the readiness callbacks run in (see [`Core::context`]).
struct Source<T: Core> {
    core: Py<T>,
    loop_: Py<LoopCore>,
    face: Option<Py<PyAny>>,
    context: Py<PyAny>,
}

impl<T: Core> IoSource for Source<T> {
    fn describe(&self, side: Side) -> String {
        let what = match side {
            Side::Read => "_read_ready",
            Side::Write => "_write_ready",
        };
        format!("{}.{what}()", T::ASYNCIO_NAME)
    }

    fn loop_object<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.loop_.bind(py).clone().into_any()
    }

    fn on_ready(&self, py: Python<'_>, side: Side) -> PyResult<()> {
        py::run_in_context(self.context.bind(py), || {
            T::on_ready(self.core.bind(py), side)
        })
    }

    fn handle_callback<'py>(
        &self,
        py: Python<'py>,
        side: Side,
    ) -> Option<(Bound<'py, PyAny>, Bound<'py, pyo3::types::PyTuple>)> {
        let name = match side {
            Side::Read => pyo3::intern!(py, "_read_ready"),
            Side::Write => pyo3::intern!(py, "_write_ready"),
        };
        let face = self.face.as_ref()?.bind(py);
        let callback = face.getattr(name).ok()?;
        Some((callback, pyo3::types::PyTuple::empty(py)))
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.core)?;
        visit.call(&self.loop_)?;
        visit.call(&self.face)?;
        visit.call(&self.context)
    }
}

/// Starts or stops watching `side` of the transport's descriptor; nothing
/// happens if it already is in that state.
pub fn set_watching<T: Core>(slf: &Bound<'_, T>, side: Side, on: bool) -> PyResult<()> {
    let py = slf.py();
    let (loop_, fd, was, face, context) = {
        let mut t = slf.try_borrow_mut()?;
        let flag = t.watching(side);
        let was = std::mem::replace(flag, on);
        (
            t.loop_core().clone_ref(py),
            t.fd(),
            was,
            t.face(py).map(Bound::unbind),
            t.context().map(|c| c.clone_ref(py)),
        )
    };
    if on && !was {
        let context = match context {
            Some(c) => c,
            None => py::copy_context(py)?,
        };
        let src: Arc<dyn IoSource> = Arc::new(Source {
            core: slf.clone().unbind(),
            loop_: loop_.clone_ref(py),
            face,
            context,
        });
        source::watch(loop_.bind(py), fd, side, src)?;
    } else if !on && was {
        source::unwatch(loop_.bind(py), fd, side)?;
    }
    Ok(())
}

pub use crate::errors::stops_loop;

/// Reports an error with no caller to the loop's exception handler, with
/// asyncio's context keys.
pub fn report(
    loop_: &Bound<'_, PyAny>,
    message: &str,
    exc: &Bound<'_, PyAny>,
    transport: Option<&Py<PyAny>>,
    protocol: Option<&Py<PyAny>>,
) -> PyResult<()> {
    let mut ctx = HandlerContext::new(loop_.py(), message)?.with("exception", exc)?;
    if let Some(t) = transport {
        ctx = ctx.with("transport", t)?;
    }
    if let Some(p) = protocol {
        ctx = ctx.with("protocol", p)?;
    }
    ctx.send(loop_)
}

/// `logger.debug(*args)` on asyncio's logger (debug mode only).
pub fn log_debug<'py>(py: Python<'py>, args: impl pyo3::call::PyCallArgs<'py>) -> PyResult<()> {
    let a = py::asyncio(py)?;
    a.logger
        .bind(py)
        .call_method1(pyo3::intern!(py, "debug"), args)
        .map(drop)
}

/// asyncio's `LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

/// A transport that drops writes once its connection is lost, as asyncio's
/// do: silently at first, then with a warning for each.
pub trait LostWrites: Core {
    /// What asyncio logs for a dropped write.
    const LOST_WRITE_WARNING: &'static str;

    /// The count of dropped writes (asyncio's `_conn_lost`), if a write now
    /// must be dropped.
    fn lost_writes(&mut self) -> Option<&mut u32>;

    /// asyncio's `_conn_lost`.
    fn conn_lost(&self) -> u32;
}

/// True if this write is to be dropped (and it was counted and, from the
/// fifth on, logged).
pub fn drop_lost_write<T: LostWrites>(slf: &Bound<'_, T>) -> PyResult<bool> {
    let py = slf.py();
    let warn = {
        let mut t = slf.try_borrow_mut()?;
        let Some(count) = t.lost_writes() else {
            return Ok(false);
        };
        let warn = *count >= LOG_THRESHOLD_FOR_CONNLOST_WRITES;
        *count += 1;
        warn
    };
    if warn {
        let a = py::asyncio(py)?;
        a.logger
            .bind(py)
            .call_method1(pyo3::intern!(py, "warning"), (T::LOST_WRITE_WARNING,))?;
    }
    Ok(true)
}

/// The Python transport if it still lives, else the core: what asyncio
/// would pass as `self` to a log line or a callback.
pub fn face_or_core<'py, T: Core>(slf: &Bound<'py, T>) -> Bound<'py, PyAny> {
    // Borrowed elsewhere (never expected), the core stands in.
    slf.try_borrow()
        .ok()
        .and_then(|t| t.face(slf.py()))
        .unwrap_or_else(|| slf.clone().into_any())
}

/// asyncio's `_fatal_error` up to the closing, which each transport does
/// its own way: an error `expected` says is routine (a peer's reset) is
/// only logged, in debug mode, with its traceback; anything else goes to
/// the exception handler. Returns the exception for the closing; an error
/// that must stop the loop comes back as `Err`.
pub fn report_fatal<'py, T: Core>(
    slf: &Bound<'py, T>,
    err: PyErr,
    message: &str,
    expected: impl FnOnce(&Bound<'py, PyAny>) -> bool,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    if stops_loop(py, &err) {
        return Err(err);
    }
    let exc = err.into_value(py).into_bound(py).into_any();
    if expected(&exc) {
        if slf.try_borrow()?.debug(py) {
            let kw = PyDict::new(py);
            kw.set_item("exc_info", &exc)?;
            py::asyncio(py)?.logger.bind(py).call_method(
                pyo3::intern!(py, "debug"),
                ("%r: %s", face_or_core(slf), message),
                Some(&kw),
            )?;
        }
    } else {
        let (loop_, face, protocol) = {
            let t = slf.try_borrow()?;
            (
                t.loop_any(py),
                t.face(py).map(Bound::unbind),
                t.protocol(py),
            )
        };
        report(&loop_, message, &exc, face.as_ref(), protocol.as_ref())?;
    }
    Ok(exc)
}

/// The TypeError a transport's `write()`/`sendto()` raises for data that is
/// not bytes, bytearray or memoryview, in the words of the running asyncio:
/// 3.14 reworded the stream transport's (the datagram one's did not change).
pub fn not_bytes_error(data: &Bound<'_, PyAny>, stream: bool) -> PyErr {
    static REWORDED: pyo3::sync::PyOnceLock<bool> = pyo3::sync::PyOnceLock::new();
    const NEW: &str = "data argument must be a bytes, bytearray, or memoryview object, not ";
    let py = data.py();
    // Read off asyncio's own `_SelectorSocketTransport.write`: its message
    // is a constant of the function.
    let reworded = stream
        && *REWORDED.get_or_init(py, || {
            let consts = py
                .import("asyncio.selector_events")
                .and_then(|m| m.getattr("_SelectorSocketTransport"))
                .and_then(|c| c.getattr("write"))
                .and_then(|f| f.getattr("__code__"))
                .and_then(|c| c.getattr("co_consts"));
            consts.and_then(|c| c.contains(NEW)).unwrap_or(false)
        });
    let prefix = match reworded {
        true => NEW,
        false => "data argument must be a bytes-like object, not ",
    };
    match py::type_name_repr(data) {
        Ok(name) => pyo3::exceptions::PyTypeError::new_err(format!("{prefix}{name}")),
        Err(e) => e,
    }
}
