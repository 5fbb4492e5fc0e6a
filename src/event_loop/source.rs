//! How native I/O sources (transports, socket operations) plug into the
//! loop without the loop knowing them.
//!
//! A source registers a descriptor side with [`watch`]; when epoll reports
//! it ready, the loop queues `(source, side)` in the ready queue like any
//! reader callback, so a transport's read runs in the same place of the
//! iteration as asyncio's `_read_ready` handle would.

use super::fds::{self, Side};
use super::LoopCore;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use std::os::fd::RawFd;
use std::sync::Arc;

pub trait IoSource: Send + Sync {
    /// The descriptor became ready for `side`. Errors of the source's own
    /// are reported by the source; an `Err` stops the loop, so only
    /// SystemExit/KeyboardInterrupt (or a failing exception handler) may
    /// come back.
    fn on_ready(&self, py: Python<'_>, side: Side) -> PyResult<()>;

    /// What asyncio's handle would be called, e.g.
    /// `_SelectorSocketTransport._read_ready()`, for error messages.
    fn describe(&self, side: Side) -> String;

    /// The loop, whose exception handler gets what escapes `on_ready`.
    fn loop_object<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny>;

    /// The callback and arguments of the handle asyncio would have run,
    /// for the `handle` of an error report (e.g. the transport's bound
    /// `_read_ready`), if there is one to show.
    fn handle_callback<'py>(
        &self,
        _py: Python<'py>,
        _side: Side,
    ) -> Option<(Bound<'py, PyAny>, Bound<'py, pyo3::types::PyTuple>)> {
        None
    }

    /// The Python objects the source holds, for the garbage collector.
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError>;
}

/// Starts delivering `side` readiness of `fd` to `source`.
pub fn watch(
    loop_: &Bound<'_, LoopCore>,
    fd: RawFd,
    side: Side,
    source: Arc<dyn IoSource>,
) -> PyResult<()> {
    let mut dropped = fds::Detached::default();
    let set = fds::set(
        loop_,
        fd,
        side,
        fds::Waiter::Source(source),
        None,
        &mut dropped,
    );
    drop(dropped);
    set.map(drop)
}

/// Stops delivering `side` readiness of `fd`; true if it was watched.
pub fn unwatch(loop_: &Bound<'_, LoopCore>, fd: RawFd, side: Side) -> PyResult<bool> {
    fds::unset(loop_, fd, side)
}
