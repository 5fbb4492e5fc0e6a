//! `loop._transports`: which transport owns which descriptor.
//!
//! asyncio's selector loop keeps a `WeakValueDictionary` of fd → transport
//! so that `add_reader` and friends refuse a descriptor a live transport
//! owns, and `_sendfile_native` takes the transport out of it while the
//! socket is lent. A weak-value entry costs an idle connection 125 bytes
//! of Python heap; here the loop keeps fd → transport core in a Rust map,
//! and the core forgets its entry when it closes its socket. Looking up an
//! entry gives the Python transport, while it lives, as asyncio's weak
//! dictionary does. `TransportMap` is the mapping Python code sees.

use super::datagram::DatagramTransport;
use super::stream::StreamTransport;
use super::Core;
use crate::event_loop::LoopCore;
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyWeakrefReference};
use std::os::fd::RawFd;

/// Records `obj` (a transport core) as the owner of `fd`.
pub fn register(loop_: &Bound<'_, LoopCore>, fd: RawFd, obj: Py<PyAny>) -> PyResult<()> {
    let old = loop_.try_borrow_mut()?.transports.insert(fd, obj);
    drop(old); // after the borrow: dropping may run a finalizer
    Ok(())
}

/// Forgets `fd`'s entry if it is still `obj`'s (the number may have been
/// reused by a newer transport since).
pub fn forget(loop_: &Bound<'_, LoopCore>, fd: RawFd, obj: &Bound<'_, PyAny>) -> PyResult<()> {
    let old = {
        let mut l = loop_.try_borrow_mut()?;
        match l.transports.get(&fd) {
            Some(o) if o.as_ptr() == obj.as_ptr() => l.transports.remove(&fd),
            _ => None,
        }
    };
    drop(old);
    Ok(())
}

/// The transport an entry stands for, if it still lives: a core's Python
/// face, a weak reference's referent, or the object itself.
fn resolve<'py>(obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    let py = obj.py();
    if let Ok(c) = obj.cast::<StreamTransport>() {
        return c.try_borrow().ok()?.face(py);
    }
    if let Ok(c) = obj.cast::<DatagramTransport>() {
        return c.try_borrow().ok()?.face(py);
    }
    if let Ok(w) = obj.cast::<PyWeakrefReference>() {
        return w.upgrade();
    }
    Some(obj.clone())
}

/// What to keep for a transport: its native core when it has one (no
/// weak reference needed: the core forgets itself), else a weak reference
/// as asyncio keeps, or the object itself if it cannot be weakly referenced.
fn entry_for(value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let py = value.py();
    if let Ok(core) = value.getattr(pyo3::intern!(py, "_core")) {
        if core.cast::<StreamTransport>().is_ok() || core.cast::<DatagramTransport>().is_ok() {
            return Ok(core.unbind());
        }
    }
    match PyWeakrefReference::new(value) {
        Ok(w) => Ok(w.into_any().unbind()),
        Err(_) => Ok(value.clone().unbind()),
    }
}

/// `loop._transports`, a view of the loop's map with the mapping methods
/// asyncio's code uses (and the read-only ones tests use).
#[pyclass(module = "ferroloop._ferroloop")]
pub struct TransportMap {
    loop_: Py<LoopCore>,
}

impl TransportMap {
    pub fn new(loop_: Py<LoopCore>) -> Self {
        Self { loop_ }
    }

    /// The live `(fd, transport)` pairs, in descriptor order.
    fn live<'py>(&self, py: Python<'py>) -> PyResult<Vec<(RawFd, Bound<'py, PyAny>)>> {
        let entries: Vec<(RawFd, Py<PyAny>)> = {
            let l = self.loop_.bind(py).try_borrow()?;
            l.transports
                .iter()
                .map(|(fd, o)| (*fd, o.clone_ref(py)))
                .collect()
        };
        let mut out: Vec<_> = entries
            .into_iter()
            .filter_map(|(fd, o)| resolve(o.bind(py)).map(|t| (fd, t)))
            .collect();
        out.sort_unstable_by_key(|(fd, _)| *fd);
        Ok(out)
    }

    fn lookup<'py>(&self, py: Python<'py>, fd: RawFd) -> PyResult<Option<Bound<'py, PyAny>>> {
        let obj = match self.loop_.bind(py).try_borrow()?.transports.get(&fd) {
            Some(o) => o.clone_ref(py),
            None => return Ok(None),
        };
        Ok(resolve(obj.bind(py)))
    }

    /// [`Self::lookup`] for any key a dict would take: one that is not a C
    /// `int` is simply missing (asyncio's `_transports[fileno]` for a huge
    /// fd: KeyError).
    fn lookup_key<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        match key.extract::<RawFd>() {
            Ok(fd) => self.lookup(py, fd),
            Err(_) => Ok(None),
        }
    }
}

#[pymethods]
impl TransportMap {
    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.lookup_key(py, key)?
            .ok_or_else(|| PyKeyError::new_err(key.clone().unbind()))
    }

    fn __setitem__(&self, py: Python<'_>, fd: RawFd, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let entry = entry_for(value)?;
        register(self.loop_.bind(py), fd, entry)
    }

    fn __delitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let Ok(fd) = key.extract::<RawFd>() else {
            return Err(PyKeyError::new_err(key.clone().unbind()));
        };
        let live = self.lookup(py, fd)?.is_some();
        let old = self.loop_.bind(py).try_borrow_mut()?.transports.remove(&fd);
        drop(old);
        if live {
            Ok(())
        } else {
            Err(PyKeyError::new_err(fd))
        }
    }

    fn __contains__(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.lookup_key(py, fd)?.is_some())
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.live(py)?.len())
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.keys(py)?.try_iter().map(Bound::into_any)
    }

    #[pyo3(signature = (fd, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        fd: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(self.lookup_key(py, fd)?.or(default))
    }

    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.live(py)?.into_iter().map(|(fd, _)| fd))
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.live(py)?.into_iter().map(|(_, t)| t))
    }

    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.live(py)?)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<TransportMap of {} transports>",
            self.live(py)?.len()
        ))
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.loop_)
    }
}
