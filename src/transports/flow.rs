//! Write flow control: asyncio's `_FlowControlMixin` water marks.

use super::{report, stops_loop, Core};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// asyncio's default high-water mark.
const DEFAULT_HIGH: usize = 64 * 1024;

/// The marks, as numbers to compare against and as the Python objects given
/// (asyncio accepts any number, floats too, and hands them back unchanged).
pub struct WaterMarks {
    high: f64,
    low: f64,
    given: Option<(Py<PyAny>, Py<PyAny>)>,
}

impl Default for WaterMarks {
    fn default() -> Self {
        Self::with_high(DEFAULT_HIGH)
    }
}

impl WaterMarks {
    /// `high`, and a quarter of it as the low mark.
    pub fn with_high(high: usize) -> Self {
        Self {
            high: high as f64,
            low: (high / 4) as f64,
            given: None,
        }
    }

    /// `_set_write_buffer_limits(high, low)`, with its defaults and checks.
    pub fn from_args(
        high: Option<&Bound<'_, PyAny>>,
        low: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        Self::from_args_default(high, low, DEFAULT_HIGH)
    }

    /// The same with another default high mark (sslproto's
    /// `add_flowcontrol_defaults`).
    pub fn from_args_default(
        high: Option<&Bound<'_, PyAny>>,
        low: Option<&Bound<'_, PyAny>>,
        default_high: usize,
    ) -> PyResult<Self> {
        let py = match (high, low) {
            (Some(h), _) => h.py(),
            (None, Some(l)) => l.py(),
            (None, None) => return Ok(Self::with_high(default_high)),
        };
        let high = high.filter(|h| !h.is_none()).cloned();
        let low = low.filter(|l| !l.is_none()).cloned();
        let four = 4i64.into_pyobject(py)?.into_any();
        let high = match (high, &low) {
            (Some(h), _) => h,
            (None, None) => default_high.into_pyobject(py)?.into_any(),
            (None, Some(l)) => four.mul(l)?,
        };
        let low = match low {
            Some(l) => l,
            None => high.floor_div(&four)?,
        };
        let zero = 0i64.into_pyobject(py)?;
        if !(high.ge(&low)? && low.ge(&zero)?) {
            return Err(PyValueError::new_err(format!(
                "high ({}) must be >= low ({}) must be >= 0",
                high.repr()?,
                low.repr()?
            )));
        }
        Ok(Self {
            high: high.extract()?,
            low: low.extract()?,
            given: Some((high.unbind(), low.unbind())),
        })
    }

    pub fn above_high(&self, size: usize) -> bool {
        size as f64 > self.high
    }

    /// sslproto's comparison, where reaching the mark is enough.
    pub fn at_or_above_high(&self, size: usize) -> bool {
        size as f64 >= self.high
    }

    pub fn at_or_below_low(&self, size: usize) -> bool {
        size as f64 <= self.low
    }

    /// `(low, high)`, as `get_write_buffer_limits()` returns them.
    pub fn limits(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        Ok(match &self.given {
            Some((h, l)) => (l.clone_ref(py), h.clone_ref(py)),
            None => (
                (self.low as usize).into_pyobject(py)?.into_any().unbind(),
                (self.high as usize).into_pyobject(py)?.into_any().unbind(),
            ),
        })
    }
}

/// A transport core whose writes are under its protocol's flow control.
pub trait FlowControlled: Core {
    /// The marks, the buffered size they are compared with, and whether the
    /// protocol is paused.
    fn flow(&mut self) -> (&mut WaterMarks, usize, &mut bool);

    /// The same, to read.
    fn flow_ref(&self) -> (&WaterMarks, usize, bool);

    fn marks(&self) -> &WaterMarks {
        self.flow_ref().0
    }

    /// `get_write_buffer_size()`.
    fn buffered(&self) -> usize {
        self.flow_ref().1
    }

    fn protocol_paused(&self) -> bool {
        self.flow_ref().2
    }
}

/// `set_write_buffer_limits(high, low)`: new marks, then pause at once if
/// the buffer is already above the new high mark.
pub fn set_write_buffer_limits<T: FlowControlled>(
    slf: &Bound<'_, T>,
    high: Option<&Bound<'_, PyAny>>,
    low: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let marks = WaterMarks::from_args(high, low)?;
    *slf.try_borrow_mut()?.flow().0 = marks;
    maybe_pause_protocol(slf)
}

/// `_maybe_pause_protocol`: `pause_writing()` once the buffer is above the
/// high-water mark.
pub fn maybe_pause_protocol<T: FlowControlled>(slf: &Bound<'_, T>) -> PyResult<()> {
    let py = slf.py();
    let protocol = {
        let mut t = slf.try_borrow_mut()?;
        let (marks, size, paused) = t.flow();
        if *paused || !marks.above_high(size) {
            return Ok(());
        }
        *paused = true;
        t.protocol(py)
    };
    notify(slf, protocol, "pause_writing")
}

/// `_maybe_resume_protocol`: `resume_writing()` once a paused protocol's
/// buffer is down to the low-water mark.
pub fn maybe_resume_protocol<T: FlowControlled>(slf: &Bound<'_, T>) -> PyResult<()> {
    let py = slf.py();
    let protocol = {
        let mut t = slf.try_borrow_mut()?;
        let (marks, size, paused) = t.flow();
        if !*paused || !marks.at_or_below_low(size) {
            return Ok(());
        }
        *paused = false;
        t.protocol(py)
    };
    notify(slf, protocol, "resume_writing")
}

/// Calls `protocol.<method>()`. A failure goes to the exception handler
/// with asyncio's message, not to the code that happened to write.
fn notify<T: Core>(slf: &Bound<'_, T>, protocol: Option<Py<PyAny>>, method: &str) -> PyResult<()> {
    let py = slf.py();
    let Some(p) = protocol else { return Ok(()) };
    if let Err(e) = p.bind(py).call_method0(method) {
        if stops_loop(py, &e) {
            return Err(e);
        }
        let (loop_, face) = {
            let t = slf.try_borrow()?;
            (t.loop_any(py), t.face(py).map(Bound::unbind))
        };
        let exc = e.into_value(py).into_bound(py).into_any();
        report(
            &loop_,
            &format!("protocol.{method}() failed"),
            &exc,
            face.as_ref(),
            Some(&p),
        )?;
    }
    Ok(())
}
