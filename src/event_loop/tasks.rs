//! `create_future` and `create_task`: asyncio's own C Future and Task,
//! constructed through vectorcall with the loop as keyword.

use super::LoopCore;
use crate::py;
use pyo3::prelude::*;
use pyo3::types::PyDict;

static KW_LOOP: py::KwNames = py::KwNames::new(&["loop"]);
static KW_LOOP_NAME: py::KwNames = py::KwNames::new(&["loop", "name"]);
static KW_LOOP_CONTEXT: py::KwNames = py::KwNames::new(&["loop", "context"]);
static KW_LOOP_NAME_CONTEXT: py::KwNames = py::KwNames::new(&["loop", "name", "context"]);

pub(super) fn create_future(slf: &Bound<'_, LoopCore>) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    let a = py::asyncio(py)?;
    Ok(py::vectorcall(&a.future(py)?, &[slf.as_any()], Some(&KW_LOOP))?.unbind())
}

pub(super) fn create_task(
    slf: &Bound<'_, LoopCore>,
    coro: &Bound<'_, PyAny>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    let (has_factory, debug) = {
        let this = slf.try_borrow()?;
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
    let task = match (name, context) {
        (None, None) => py::vectorcall(&task, &[coro, slf.as_any()], Some(&KW_LOOP)),
        (Some(n), None) => py::vectorcall(&task, &[coro, slf.as_any(), &n], Some(&KW_LOOP_NAME)),
        (None, Some(c)) => py::vectorcall(&task, &[coro, slf.as_any(), &c], Some(&KW_LOOP_CONTEXT)),
        (Some(n), Some(c)) => py::vectorcall(
            &task,
            &[coro, slf.as_any(), &n, &c],
            Some(&KW_LOOP_NAME_CONTEXT),
        ),
    }?;
    if debug {
        py::drop_own_frame(&task)?;
    }
    Ok(task.unbind())
}
