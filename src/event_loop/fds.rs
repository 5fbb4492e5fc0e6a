//! Descriptors watched by the poller: Python callbacks (`add_reader`,
//! `add_writer`) and native sources, with asyncio's level-triggered
//! semantics and bookkeeping.

use super::source::IoSource;
use super::{LoopCore, Ready};
use crate::errors;
use crate::handles::{Args, Handle};
use crate::poller::{Poller, Readiness};
use crate::queued::Queued;
use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyTuple};
use std::os::fd::RawFd;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Read,
    Write,
}

/// What waits on one side of a descriptor.
pub(crate) enum Waiter {
    Handle(Py<Handle>),
    Source(Arc<dyn IoSource>),
}

impl Waiter {
    fn traverse(&self, visit: &PyVisit<'_>, seen: &mut SourcesSeen) -> Result<(), PyTraverseError> {
        match self {
            Waiter::Handle(h) => visit.call(h),
            Waiter::Source(s) => seen.traverse(s, visit),
        }
    }
}

/// A source is shared (`Arc`) by its registration and the ready queue, but
/// holds its Python references once: the garbage collector must see each
/// of them once, or it would count more references than exist.
#[derive(Default)]
pub(crate) struct SourcesSeen(std::collections::HashSet<usize>);

impl SourcesSeen {
    pub(crate) fn traverse(
        &mut self,
        s: &Arc<dyn IoSource>,
        visit: &PyVisit<'_>,
    ) -> Result<(), PyTraverseError> {
        if self.0.insert(Arc::as_ptr(s) as *const () as usize) {
            s.traverse(visit)?;
        }
        Ok(())
    }
}

/// The reader and writer registered for one descriptor.
#[derive(Default)]
pub(crate) struct FdHandlers {
    reader: Option<Waiter>,
    writer: Option<Waiter>,
    /// The object the last `add_reader`/`add_writer` named the descriptor
    /// by: once it is closed (its `fileno()` is -1) the registration is
    /// found by the object itself, as selectors' `_fileobj_lookup` does.
    fileobj: Option<Py<PyAny>>,
}

impl FdHandlers {
    fn slot(&mut self, side: Side) -> &mut Option<Waiter> {
        match side {
            Side::Read => &mut self.reader,
            Side::Write => &mut self.writer,
        }
    }

    /// `(reader, writer)`: each side's Handle, True for a native source,
    /// None when nothing waits on it.
    pub(crate) fn describe(&self, py: Python<'_>) -> (Py<PyAny>, Py<PyAny>) {
        let one = |w: &Option<Waiter>| match w {
            Some(Waiter::Handle(h)) => h.clone_ref(py).into_any(),
            Some(Waiter::Source(_)) => pyo3::types::PyBool::new(py, true)
                .to_owned()
                .into_any()
                .unbind(),
            None => py.None(),
        };
        (one(&self.reader), one(&self.writer))
    }

    pub(crate) fn traverse(
        &self,
        visit: &PyVisit<'_>,
        seen: &mut SourcesSeen,
    ) -> Result<(), PyTraverseError> {
        for w in [&self.reader, &self.writer].into_iter().flatten() {
            w.traverse(visit, seen)?;
        }
        visit.call(&self.fileobj)
    }
}

/// What leaves the registrations while the loop is borrowed: waiters
/// (handles, native sources) and the file objects registrations were named
/// by. The caller drops it once the borrow has ended, because dropping the
/// last reference to any of them can run Python code (a finalizer) that
/// calls back into the loop.
#[derive(Default)]
#[must_use = "drop it only once the loop is no longer borrowed"]
pub(crate) struct Detached {
    waiters: Vec<Waiter>,
    fileobjs: Vec<Py<PyAny>>,
}

impl Detached {
    fn forget(&mut self, gone: FdHandlers) {
        self.waiters.extend(gone.reader);
        self.waiters.extend(gone.writer);
        self.fileobjs.extend(gone.fileobj);
    }

    fn push(&mut self, waiter: Option<Waiter>) {
        self.waiters.extend(waiter);
    }
}

/// `selectors._fileobj_to_fd`: an int, or an object with `fileno()`.
///
/// selectors accepts any non-negative int; one beyond C `int` fails only
/// where it reaches epoll, with the OverflowError returned here, which
/// [`remove`] reads as "not registered", as selectors' lookup does.
pub(crate) fn fileobj_to_fd(obj: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    let py = obj.py();
    let fd: i64 = if obj.is_instance_of::<PyInt>() {
        match obj.extract() {
            Ok(fd) => fd,
            Err(_) if obj.lt(0)? => return Err(invalid_fd(obj.str()?)),
            Err(_) => return Err(fd_too_large()),
        }
    } else {
        obj.call_method0(pyo3::intern!(py, "fileno"))
            .and_then(|n| py.get_type::<PyInt>().call1((n,)))
            .and_then(|n| n.extract())
            .map_err(|e| {
                // selectors maps only these to "Invalid file object"; any
                // other exception (KeyboardInterrupt, say) propagates.
                let invalid = e.is_instance_of::<pyo3::exceptions::PyAttributeError>(py)
                    || e.is_instance_of::<pyo3::exceptions::PyTypeError>(py)
                    || e.is_instance_of::<PyValueError>(py);
                if !invalid {
                    return e;
                }
                let shown = obj.repr().map(|r| r.to_string()).unwrap_or_default();
                PyValueError::new_err(format!("Invalid file object: {shown}"))
            })?
    };
    if fd < 0 {
        return Err(invalid_fd(fd));
    }
    RawFd::try_from(fd).map_err(|_| fd_too_large())
}

fn invalid_fd(fd: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("Invalid file descriptor: {fd}"))
}

/// What epoll's `register` raises for a descriptor beyond C `int`.
fn fd_too_large() -> PyErr {
    PyOverflowError::new_err("Python int too large to convert to C int")
}

/// selectors' `_fileobj_lookup`: the descriptor of `fileobj`; for an
/// object that has none any more (a socket closed after it was
/// registered), the descriptor it was registered under.
fn lookup(loop_: &Bound<'_, LoopCore>, fileobj: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    let py = fileobj.py();
    match fileobj_to_fd(fileobj) {
        Err(e) if e.is_instance_of::<PyValueError>(py) => {
            let this = loop_.try_borrow()?;
            let found = this
                .fds
                .iter()
                .find(|(_, h)| h.fileobj.as_ref().is_some_and(|o| o.bind(py).is(fileobj)));
            found.map(|(fd, _)| *fd).ok_or(e)
        }
        other => other,
    }
}

/// Puts `waiter` on `side` of `fd`, returning what it replaced; the
/// `fileobj` (from `add_reader`/`add_writer`) a registration is made with
/// is remembered for [`lookup`].
/// A registration the poller refuses is dropped whole, as selectors'
/// `modify` (unregister, then register) leaves it; what was dropped goes
/// into `dropped`, to be released once the loop is no longer borrowed.
pub(crate) fn set(
    loop_: &Bound<'_, LoopCore>,
    fd: RawFd,
    side: Side,
    waiter: Waiter,
    fileobj: Option<&Bound<'_, PyAny>>,
    dropped: &mut Detached,
) -> PyResult<Option<Waiter>> {
    let mut this = loop_.try_borrow_mut()?;
    let this = &mut *this;
    this.check_closed()?;
    let poller = this.poller.clone().ok_or_else(errors::loop_closed)?;
    let known = this.fds.contains_key(&fd);
    let entry = this.fds.entry(fd).or_default();
    let before = (entry.reader.is_some(), entry.writer.is_some());
    let (read, write) = match side {
        Side::Read => (true, before.1),
        Side::Write => (before.0, true),
    };
    match poller.set_interest(fd, read, write, known) {
        // selectors makes no system call when the events do not change,
        // so a closed descriptor's handler can still be replaced.
        Err(e) if known && (read, write) == before && e.raw_os_error() == Some(libc_ebadf()) => {}
        Err(e) => {
            forget_whole(this, fd, &poller, dropped);
            return Err(errors::os_error(e));
        }
        Ok(()) => {}
    }
    // A selector key keeps the object it was registered with (`modify`
    // never renames it), so only a new registration takes `fileobj`.
    if !known {
        entry_of(this, fd).fileobj = fileobj.map(|o| o.clone().unbind());
    }
    Ok(entry_of(this, fd).slot(side).replace(waiter))
}

/// Forgets `fd`'s whole registration, as selectors' failed `modify`
/// (unregister, then register) leaves it; its waiters go into `dropped`.
fn forget_whole(this: &mut LoopCore, fd: RawFd, poller: &Poller, dropped: &mut Detached) {
    if let Some(gone) = this.fds.remove(&fd) {
        dropped.forget(gone);
    }
    poller.remove(fd);
}

/// The entry of a descriptor [`set`] just made sure of.
fn entry_of(this: &mut LoopCore, fd: RawFd) -> &mut FdHandlers {
    this.fds.entry(fd).or_default()
}

/// `EBADF`, as `io::Error::raw_os_error` reports it.
fn libc_ebadf() -> i32 {
    rustix::io::Errno::BADF.raw_os_error()
}

/// Takes whatever waits on `side` of `fd`: true if something did. What
/// was detached is dropped after the loop's borrow has ended.
pub(crate) fn unset(loop_: &Bound<'_, LoopCore>, fd: RawFd, side: Side) -> PyResult<bool> {
    let mut dropped = Detached::default();
    let was = {
        let mut this = loop_.try_borrow_mut()?;
        let taken = if this.closed {
            None
        } else {
            take(&mut this, fd, side, &mut dropped)
        };
        let was = taken.is_some();
        dropped.push(taken);
        was
    };
    drop(dropped);
    Ok(was)
}

pub(super) fn add(
    slf: &Bound<'_, LoopCore>,
    fileobj: &Bound<'_, PyAny>,
    callback: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
    context: Option<Py<PyAny>>,
    side: Side,
) -> PyResult<Py<Handle>> {
    let py = slf.py();
    let debug = {
        let this = slf.try_borrow()?;
        this.check_closed()?;
        this.debug
    };
    let fd = lookup(slf, fileobj)?;
    let handle = Py::new(
        py,
        LoopCore::make_handle(slf, callback, Args::from_tuple(args)?, context, debug)?,
    )?;
    let mut dropped = Detached::default();
    let waiter = Waiter::Handle(handle.clone_ref(py));
    let set = set(slf, fd, side, waiter, Some(fileobj), &mut dropped);
    // Refused by the poller: asyncio's handles are then unregistered, not
    // cancelled.
    drop(dropped);
    // A replaced handle is cancelled, as asyncio does.
    release(py, set?.into_iter().collect())?;
    Ok(handle)
}

pub(super) fn remove(
    slf: &Bound<'_, LoopCore>,
    fileobj: &Bound<'_, PyAny>,
    side: Side,
) -> PyResult<bool> {
    let py = slf.py();
    if slf.try_borrow()?.closed {
        return Ok(false);
    }
    let fd = match lookup(slf, fileobj) {
        // Beyond C int: never registered (selectors' get_key: KeyError).
        Err(e) if e.is_instance_of::<PyOverflowError>(py) => return Ok(false),
        other => other?,
    };
    let mut dropped = Detached::default();
    let taken = {
        let mut this = slf.try_borrow_mut()?;
        take_reporting(&mut this, fd, side, &mut dropped)
    };
    drop(dropped);
    match taken {
        Ok(Some(w)) => {
            release(py, vec![w])?;
            Ok(true)
        }
        Ok(None) => Ok(false),
        Err(e) => Err(errors::os_error(e)),
    }
}

/// Cancels the handles among `waiters` (asyncio cancels the handle that
/// a new one replaces, or that is removed) and drops the rest, with the
/// loop not borrowed.
fn release(py: Python<'_>, waiters: Vec<Waiter>) -> PyResult<()> {
    for w in waiters {
        if let Waiter::Handle(h) = w {
            Handle::cancel_native(h.bind(py))?;
        }
    }
    Ok(())
}

/// `remove_reader`/`remove_writer`'s detach: as [`take`], but when the
/// poller refuses the new interest (the descriptor was closed while its
/// other side stays registered) the whole registration is dropped into
/// `dropped` and the error returned, as selectors' `modify` does.
fn take_reporting(
    this: &mut LoopCore,
    fd: RawFd,
    side: Side,
    dropped: &mut Detached,
) -> std::io::Result<Option<Waiter>> {
    let Some(entry) = this.fds.get_mut(&fd) else {
        return Ok(None);
    };
    let (read, write) = match side {
        Side::Read => (false, entry.writer.is_some()),
        Side::Write => (entry.reader.is_some(), false),
    };
    if !read && !write {
        return Ok(take(this, fd, side, dropped));
    }
    if entry.slot(side).is_none() {
        return Ok(None);
    }
    let Some(poller) = this.poller.clone() else {
        return Ok(take(this, fd, side, dropped));
    };
    match poller.set_interest(fd, read, write, true) {
        Ok(()) => Ok(entry_of(this, fd).slot(side).take()),
        Err(e) => {
            forget_whole(this, fd, &poller, dropped);
            Err(e)
        }
    }
}

/// True if `source` still waits on `side` of `fd`.
pub(super) fn is_registered(
    this: &LoopCore,
    fd: RawFd,
    side: Side,
    source: &Arc<dyn IoSource>,
) -> bool {
    let Some(entry) = this.fds.get(&fd) else {
        return false;
    };
    let slot = match side {
        Side::Read => &entry.reader,
        Side::Write => &entry.writer,
    };
    matches!(slot, Some(Waiter::Source(s)) if Arc::ptr_eq(s, source))
}

/// Detaches one side of `fd` and updates the poller's interest; a
/// registration left empty goes, its file object into `dropped`.
fn take(this: &mut LoopCore, fd: RawFd, side: Side, dropped: &mut Detached) -> Option<Waiter> {
    let entry = this.fds.get_mut(&fd)?;
    let old = entry.slot(side).take();
    let (read, write) = (entry.reader.is_some(), entry.writer.is_some());
    if let Some(poller) = &this.poller {
        if !read && !write {
            dropped.forget(this.fds.remove(&fd).unwrap_or_default());
            poller.remove(fd);
        } else if let Err(_gone) = poller.set_interest(fd, read, write, true) {
            // The descriptor was closed under us; epoll already forgot it.
        }
    }
    old
}

/// Queues the callbacks of a ready descriptor; a cancelled reader or writer
/// is unregistered instead (asyncio's `_process_events`). Detached waiters
/// go to `dropped`, to be released once the loop is no longer borrowed.
pub(super) fn queue_ready(
    this: &mut LoopCore,
    r: &Readiness,
    dropped: &mut Detached,
    py: Python<'_>,
) {
    for (wanted, side) in [(r.readable, Side::Read), (r.writable, Side::Write)] {
        if !wanted {
            continue;
        }
        let Some(entry) = this.fds.get_mut(&r.fd) else {
            return;
        };
        let item = match entry.slot(side).as_ref() {
            None => continue,
            Some(Waiter::Handle(h)) if h.get().is_cancelled() => None,
            Some(Waiter::Handle(h)) => Some(Ready::Native(Queued::plain(h.clone_ref(py)))),
            Some(Waiter::Source(s)) => Some(Ready::Source(s.clone(), side, r.fd)),
        };
        match item {
            Some(item) => this.ready.push_back(item),
            None => {
                let gone = take(this, r.fd, side, dropped);
                dropped.push(gone);
            }
        }
    }
}
