//! `add_reader`/`add_writer` and friends: descriptors watched natively by
//! the poller, with asyncio's level-triggered semantics and bookkeeping.

use super::{FdHandlers, LoopCore, Ready};
use crate::errors;
use crate::handles::Handle;
use crate::poller::Readiness;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyTuple};
use std::os::fd::RawFd;

#[derive(Clone, Copy)]
pub(super) enum Side {
    Read,
    Write,
}

impl FdHandlers {
    fn slot(&mut self, side: Side) -> &mut Option<Py<Handle>> {
        match side {
            Side::Read => &mut self.reader,
            Side::Write => &mut self.writer,
        }
    }
}

/// `selectors._fileobj_to_fd`: an int, or an object with `fileno()`.
fn fileobj_to_fd(obj: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    let fd: i64 = if obj.is_instance_of::<PyInt>() {
        obj.extract()?
    } else {
        obj.call_method0(pyo3::intern!(obj.py(), "fileno"))
            .and_then(|n| n.call_method0(pyo3::intern!(obj.py(), "__index__")))
            .and_then(|n| n.extract())
            .map_err(|_| {
                PyValueError::new_err(format!(
                    "Invalid file object: {}",
                    obj.repr().map(|r| r.to_string()).unwrap_or_default()
                ))
            })?
    };
    if fd < 0 {
        return Err(PyValueError::new_err(format!(
            "Invalid file descriptor: {fd}"
        )));
    }
    RawFd::try_from(fd).map_err(|_| PyValueError::new_err(format!("Invalid file descriptor: {fd}")))
}

pub(super) fn add(
    slf: &Bound<'_, LoopCore>,
    fileobj: &Bound<'_, PyAny>,
    callback: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
    side: Side,
) -> PyResult<Py<Handle>> {
    let py = slf.py();
    let fd = fileobj_to_fd(fileobj)?;
    slf.borrow().check_closed()?;
    let handle = Py::new(py, LoopCore::make_handle(slf, callback, args, None, false)?)?;
    let old = {
        let mut this = slf.borrow_mut();
        let this = &mut *this;
        let poller = this.poller.clone().ok_or_else(errors::loop_closed)?;
        let known = this.fds.contains_key(&fd);
        let entry = this.fds.entry(fd).or_default();
        let (read, write) = match side {
            Side::Read => (true, entry.writer.is_some()),
            Side::Write => (entry.reader.is_some(), true),
        };
        if let Err(e) = poller.set_interest(fd, read, write, known) {
            if !known {
                this.fds.remove(&fd);
            }
            return Err(errors::os_error(e));
        }
        this.fds
            .get_mut(&fd)
            .expect("inserted above")
            .slot(side)
            .replace(handle.clone_ref(py))
    };
    // The replaced handle is cancelled, as asyncio does.
    if let Some(old) = old {
        Handle::cancel_native(old.bind(py))?;
    }
    Ok(handle)
}

pub(super) fn remove(
    slf: &Bound<'_, LoopCore>,
    fileobj: &Bound<'_, PyAny>,
    side: Side,
) -> PyResult<bool> {
    let py = slf.py();
    if slf.borrow().closed {
        return Ok(false);
    }
    let fd = fileobj_to_fd(fileobj)?;
    let removed = take(&mut slf.borrow_mut(), fd, side);
    match removed {
        Some(h) => {
            Handle::cancel_native(h.bind(py))?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Detaches one side of `fd` and updates the poller's interest.
fn take(this: &mut LoopCore, fd: RawFd, side: Side) -> Option<Py<Handle>> {
    let entry = this.fds.get_mut(&fd)?;
    let old = entry.slot(side).take();
    let (read, write) = (entry.reader.is_some(), entry.writer.is_some());
    if let Some(poller) = &this.poller {
        if !read && !write {
            this.fds.remove(&fd);
            poller.remove(fd);
        } else if let Err(_gone) = poller.set_interest(fd, read, write, true) {
            // The descriptor was closed under us; epoll already forgot it.
        }
    }
    old
}

/// Queues the callbacks of a ready descriptor; a cancelled reader or writer
/// is unregistered instead (asyncio's `_process_events`). Detached handles
/// go to `dropped`, to be released once the loop is no longer borrowed.
pub(super) fn queue_ready(
    this: &mut LoopCore,
    r: &Readiness,
    dropped: &mut Vec<Py<Handle>>,
    py: Python<'_>,
) {
    for (wanted, side) in [(r.readable, Side::Read), (r.writable, Side::Write)] {
        if !wanted {
            continue;
        }
        let Some(entry) = this.fds.get_mut(&r.fd) else {
            return;
        };
        let Some(h) = entry.slot(side).as_ref() else {
            continue;
        };
        if h.get().is_cancelled() {
            if let Some(h) = take(this, r.fd, side) {
                dropped.push(h);
            }
        } else {
            let h = h.clone_ref(py);
            this.ready.push_back(Ready::Native(h));
        }
    }
}
