//! Virtual time for tests (`ferroloop.testing`): a clock that stands still
//! while callbacks run, and that the loop moves to the next timer's deadline
//! instead of sleeping until it.
//!
//! The loop reads it wherever it would read the monotonic clock (`time()`,
//! `call_later`, each iteration), so a loop with one is the same loop: only
//! the wait changes. When nothing is ready, the iteration polls I/O for the
//! auto-jump threshold of real time (zero by default: a non-blocking poll)
//! and, if nothing arrived, jumps (see `event_loop/run.rs`). trio's
//! `MockClock` with `autojump_threshold` is the model.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The clock's state, shared by the Python object and the loops using it.
/// Atomics rather than a lock: a thread may read `time` while the loop
/// runs; every write happens with the GIL held, so they never race.
#[derive(Debug)]
pub struct VirtualTime {
    now: AtomicU64,
    threshold: AtomicU64,
}

impl VirtualTime {
    pub fn now(&self) -> f64 {
        f64::from_bits(self.now.load(Ordering::Acquire))
    }

    /// Real seconds the loop polls for I/O before it jumps.
    pub fn threshold(&self) -> f64 {
        f64::from_bits(self.threshold.load(Ordering::Acquire))
    }

    /// Moves the clock to `when` if that is later: the loop's jump.
    pub fn jump_to(&self, when: f64) {
        if when > self.now() {
            self.now.store(when.to_bits(), Ordering::Release);
        }
    }
}

/// `ferroloop.testing.VirtualClock(start=0.0, *, autojump_threshold=0.0)`.
#[pyclass(module = "ferroloop._ferroloop", frozen)]
pub struct VirtualClock {
    pub(crate) time: Arc<VirtualTime>,
}

fn finite_non_negative(value: f64, what: &str) -> PyResult<f64> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(PyValueError::new_err(format!(
            "{what} must be a finite number >= 0, not {value}"
        )))
    }
}

#[pymethods]
impl VirtualClock {
    #[new]
    #[pyo3(signature = (start = 0.0, *, autojump_threshold = 0.0))]
    fn new(start: f64, autojump_threshold: f64) -> PyResult<Self> {
        if !start.is_finite() {
            return Err(PyValueError::new_err(format!(
                "start must be a finite number, not {start}"
            )));
        }
        let threshold = finite_non_negative(autojump_threshold, "autojump_threshold")?;
        Ok(Self {
            time: Arc::new(VirtualTime {
                now: AtomicU64::new(start.to_bits()),
                threshold: AtomicU64::new(threshold.to_bits()),
            }),
        })
    }

    /// The virtual time: what `loop.time()` returns on a loop using it.
    #[getter]
    fn time(&self) -> f64 {
        self.time.now()
    }

    #[getter]
    fn autojump_threshold(&self) -> f64 {
        self.time.threshold()
    }

    #[setter]
    fn set_autojump_threshold(&self, value: f64) -> PyResult<()> {
        let value = finite_non_negative(value, "autojump_threshold")?;
        self.time
            .threshold
            .store(value.to_bits(), Ordering::Release);
        Ok(())
    }

    /// Moves the clock forward by `seconds`. Timers that became due run on
    /// the loop's next iteration. From another thread than the loop's, use
    /// `loop.call_soon_threadsafe(clock.advance, seconds)`.
    fn advance(&self, seconds: f64) -> PyResult<()> {
        let seconds = finite_non_negative(seconds, "seconds")?;
        self.time.jump_to(self.time.now() + seconds);
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!(
            "<VirtualClock time={:?} autojump_threshold={:?}>",
            self.time.now(),
            self.time.threshold()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(start: f64) -> VirtualTime {
        VirtualTime {
            now: AtomicU64::new(start.to_bits()),
            threshold: AtomicU64::new(0f64.to_bits()),
        }
    }

    #[test]
    fn jumps_only_forward() {
        let c = clock(5.0);
        c.jump_to(3.0);
        assert_eq!(c.now(), 5.0);
        c.jump_to(7.5);
        assert_eq!(c.now(), 7.5);
        c.jump_to(f64::NAN);
        assert_eq!(c.now(), 7.5);
    }
}
