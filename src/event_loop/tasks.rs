//! `create_future` and `create_task`: asyncio's own C Future and Task,
//! constructed through vectorcall with the loop as keyword.

use super::LoopCore;
use crate::py;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple};

static KW_LOOP: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();

fn kwnames<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyTuple>>,
    names: &[&str],
) -> PyResult<&'py Bound<'py, PyTuple>> {
    let t = cell.get_or_try_init(py, || {
        let items: Vec<Bound<'_, PyString>> =
            names.iter().map(|n| PyString::intern(py, n)).collect();
        PyTuple::new(py, items).map(Bound::unbind)
    })?;
    Ok(t.bind(py))
}

pub(super) fn create_future(slf: &Bound<'_, LoopCore>) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    let a = py::asyncio(py)?;
    let names = kwnames(py, &KW_LOOP, &["loop"])?;
    Ok(py::vectorcall(&a.future(py)?, &[slf.as_any()], Some(names))?.unbind())
}

pub(super) fn create_task(
    slf: &Bound<'_, LoopCore>,
    coro: &Bound<'_, PyAny>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    let (has_factory, debug) = {
        let this = slf.borrow();
        this.check_closed()?;
        (this.task_factory.is_some(), this.debug)
    };
    let a = py::asyncio(py)?;
    // The fast path takes what every version's create_task takes, `name`
    // and `context`. A task factory, or any other keyword (3.14 passes them
    // all on to the factory or to Task, such as `eager_start`; earlier
    // versions raise TypeError), goes through asyncio's own method, whose
    // behaviour is that version's by construction.
    let mut name = None;
    let mut context = None;
    let mut other = has_factory;
    if let Some(kw) = kwargs {
        for (key, value) in kw.iter() {
            match key.extract::<&str>() {
                Ok("name") => name = Some(value),
                Ok("context") => context = Some(value),
                _ => other = true,
            }
        }
    }
    if other {
        return Ok(a
            .base_create_task
            .bind(py)
            .call((slf, coro), kwargs)?
            .unbind());
    }
    let name = name.filter(|n| !n.is_none());
    let context = context.filter(|c| !c.is_none());
    let task = a.task(py)?;
    static KW_L: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
    static KW_LN: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
    static KW_LC: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
    static KW_LNC: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
    let task = match (name, context) {
        (None, None) => py::vectorcall(
            &task,
            &[coro, slf.as_any()],
            Some(kwnames(py, &KW_L, &["loop"])?),
        ),
        (Some(n), None) => py::vectorcall(
            &task,
            &[coro, slf.as_any(), &n],
            Some(kwnames(py, &KW_LN, &["loop", "name"])?),
        ),
        (None, Some(c)) => py::vectorcall(
            &task,
            &[coro, slf.as_any(), &c],
            Some(kwnames(py, &KW_LC, &["loop", "context"])?),
        ),
        (Some(n), Some(c)) => py::vectorcall(
            &task,
            &[coro, slf.as_any(), &n, &c],
            Some(kwnames(py, &KW_LNC, &["loop", "name", "context"])?),
        ),
    }?;
    if debug {
        py::drop_own_frame(&task)?;
    }
    Ok(task.unbind())
}
