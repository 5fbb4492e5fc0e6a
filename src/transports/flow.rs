//! Write flow control: asyncio's `_FlowControlMixin` water marks.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// asyncio's default high-water mark.
const DEFAULT_HIGH: usize = 64 * 1024;

pub struct WaterMarks {
    pub high: usize,
    pub low: usize,
}

impl Default for WaterMarks {
    fn default() -> Self {
        Self {
            high: DEFAULT_HIGH,
            low: DEFAULT_HIGH / 4,
        }
    }
}

impl WaterMarks {
    /// `_set_write_buffer_limits(high, low)`, with its defaults and checks.
    pub fn from_args(
        high: Option<&Bound<'_, PyAny>>,
        low: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let high = high.filter(|h| !h.is_none());
        let low = low.filter(|l| !l.is_none());
        let high_v: i64 = match (high, low) {
            (Some(h), _) => h.extract()?,
            (None, None) => DEFAULT_HIGH as i64,
            (None, Some(l)) => 4 * l.extract::<i64>()?,
        };
        let low_v: i64 = match low {
            Some(l) => l.extract()?,
            None => high_v / 4,
        };
        if !(high_v >= low_v && low_v >= 0) {
            return Err(PyValueError::new_err(format!(
                "high ({high_v}) must be >= low ({low_v}) must be >= 0"
            )));
        }
        Ok(Self {
            high: high_v as usize,
            low: low_v as usize,
        })
    }
}
