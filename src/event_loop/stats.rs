//! Loop statistics, always on: `loop.stats()`.
//!
//! What it costs decides how it is measured. Counters are plain integers
//! the loop thread adds to (the GIL orders every reader after them). Time
//! is split per iteration from clock reads the loop makes anyway: each
//! iteration reads the clock once after its poll, so the time between two
//! such reads is one iteration; a poll that may block reads the clock once
//! more before it, and what it waited is the idle share. Loop lag is how
//! late each timer ran, from that same read.
//!
//! Timing every callback would cost a clock read each (a few percent of
//! the fastest callbacks, measured: benches/stats_cost.py), so callbacks
//! are timed by sampling: an iteration that ran longer than the slow
//! threshold starts a watch of WATCH seconds in which every callback is
//! timed, and callbacks that take the threshold are named. A slow path
//! that recurs is caught on its next run; one that never recurs shows as a
//! slow iteration, with how many callbacks it ran. Debug mode times every
//! callback anyway, and names every slow one.

use super::LoopCore;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::sync::atomic::Ordering;

/// Statistics compiled out (`--features no-stats`): only to measure what
/// they cost (benches/stats_cost.py); every counter then stays at zero.
pub(crate) const ENABLED: bool = !cfg!(feature = "no-stats");

/// Lag histogram buckets: bucket 0 is < 1 µs, bucket k is [2^(k-1), 2^k) µs,
/// the last one everything from 2^(LAG_BUCKETS-2) µs (about 67 s) up.
const LAG_BUCKETS: usize = 28;
/// How many of the slowest callbacks are kept.
const SLOWEST: usize = 10;
/// How long callbacks are timed after a slow iteration, in seconds.
const WATCH: f64 = 1.0;

#[derive(Default)]
pub(crate) struct Stats {
    iterations: u64,
    callbacks: u64,
    io_events: u64,
    pub(crate) timers_scheduled: u64,
    timers_fired: u64,
    /// Cancelled timers the loop has dropped from its heap; those still in
    /// it are counted by the loop's `cancelled_timers` at a snapshot.
    pub(crate) timers_cancelled_dropped: u64,
    waiting: f64,
    running: f64,
    /// The real clock at the previous iteration's post-poll read; None
    /// until the loop runs (the time between runs is neither).
    mark: Option<f64>,
    lag_buckets: [u64; LAG_BUCKETS],
    lag_count: u64,
    lag_sum: f64,
    lag_max: f64,
    /// The slowest callbacks seen, slowest first: (seconds, repr).
    slowest: Vec<(f64, String)>,
    slow_count: u64,
    slow_iterations: u64,
    /// The longest iteration's running time, and its callbacks.
    longest: (f64, u64),
    /// Callbacks of the previous iteration, for the slow-iteration record.
    last_batch: u64,
    /// Real time until which each callback is timed.
    watch_until: f64,
    /// Whether this iteration's callbacks are timed.
    pub(crate) watching: bool,
}

impl Stats {
    /// One iteration's post-poll clock read (`now`, real seconds), and
    /// what its poll waited (`waited`, 0 if it could not block); `slow` is
    /// the loop's slow-callback threshold.
    #[inline]
    pub(crate) fn iteration(&mut self, now: f64, waited: f64, io_events: usize, slow: f64) {
        if !ENABLED {
            return;
        }
        self.iterations += 1;
        self.io_events += io_events as u64;
        if let Some(mark) = self.mark {
            let span = (now - mark).max(0.0);
            let waited = waited.clamp(0.0, span);
            let ran = span - waited;
            self.waiting += waited;
            self.running += ran;
            if ran >= slow {
                self.slow_iteration(ran, now);
            }
        }
        self.mark = Some(now);
        self.watching = now < self.watch_until;
    }

    #[cold]
    fn slow_iteration(&mut self, ran: f64, now: f64) {
        self.slow_iterations += 1;
        if ran > self.longest.0 {
            self.longest = (ran, self.last_batch);
        }
        self.watch_until = now + WATCH;
    }

    /// The loop stopped: the time until it runs again is not its own.
    pub(crate) fn stopped(&mut self) {
        self.mark = None;
    }

    /// A timer due at `when` is queued to run at `now` (the loop's clock).
    #[inline]
    pub(crate) fn timer_fired(&mut self, when: f64, now: f64) {
        if !ENABLED {
            return;
        }
        self.timers_fired += 1;
        let lag = now - when;
        if lag.is_nan() || lag < 0.0 {
            return; // early by clock resolution, or a NaN deadline
        }
        let micros = lag * 1e6;
        let bucket = if micros < 1.0 {
            0
        } else {
            ((micros as u64).ilog2() as usize + 1).min(LAG_BUCKETS - 1)
        };
        self.lag_buckets[bucket] += 1;
        self.lag_count += 1;
        self.lag_sum += lag;
        self.lag_max = self.lag_max.max(lag);
    }

    #[inline]
    pub(crate) fn ran(&mut self, callbacks: u64) {
        if !ENABLED {
            return;
        }
        self.callbacks += callbacks;
        self.last_batch = callbacks;
    }

    /// A callback took `seconds`, at least the threshold: kept if it is
    /// among the slowest. `describe` is called only then.
    pub(crate) fn slow(&mut self, seconds: f64, describe: impl FnOnce() -> String) {
        self.slow_count += 1;
        if self.slowest.len() == SLOWEST && self.slowest[SLOWEST - 1].0 >= seconds {
            return;
        }
        let at = self.slowest.partition_point(|(s, _)| *s >= seconds);
        self.slowest.insert(at, (seconds, describe()));
        self.slowest.truncate(SLOWEST);
    }

    /// The upper bound, in seconds, of the bucket holding quantile `q`.
    fn lag_quantile(&self, q: f64) -> f64 {
        if self.lag_count == 0 {
            return 0.0;
        }
        let rank = ((q * self.lag_count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (k, n) in self.lag_buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_upper(k).min(self.lag_max);
            }
        }
        self.lag_max
    }
}

/// The upper bound, in seconds, of lag bucket `k` (see LAG_BUCKETS).
fn bucket_upper(k: usize) -> f64 {
    if k == 0 {
        1e-6
    } else {
        (1u64 << k) as f64 * 1e-6
    }
}

#[pymethods]
impl LoopCore {
    /// A snapshot of the loop's statistics, as a dict of plain values.
    /// Counters only grow; times are in seconds.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = &self.stats;
        let d = PyDict::new(py);
        d.set_item("iterations", s.iterations)?;
        d.set_item("callbacks", s.callbacks)?;
        d.set_item("io_events", s.io_events)?;
        d.set_item("timers_scheduled", s.timers_scheduled)?;
        d.set_item("timers_fired", s.timers_fired)?;
        let in_heap = self.cancelled_timers.load(Ordering::Relaxed) as u64;
        d.set_item("timers_cancelled", s.timers_cancelled_dropped + in_heap)?;
        d.set_item("waiting_seconds", s.waiting)?;
        d.set_item("running_seconds", s.running)?;
        let lag = PyDict::new(py);
        lag.set_item("count", s.lag_count)?;
        let mean = if s.lag_count > 0 {
            s.lag_sum / s.lag_count as f64
        } else {
            0.0
        };
        lag.set_item("mean", mean)?;
        lag.set_item("p50", s.lag_quantile(0.50))?;
        lag.set_item("p90", s.lag_quantile(0.90))?;
        lag.set_item("p99", s.lag_quantile(0.99))?;
        lag.set_item("max", s.lag_max)?;
        // (upper bound in seconds, count) for each non-empty bucket.
        let buckets = PyList::empty(py);
        for (k, n) in s.lag_buckets.iter().enumerate().filter(|(_, n)| **n > 0) {
            let upper = if k == LAG_BUCKETS - 1 {
                f64::INFINITY
            } else {
                bucket_upper(k)
            };
            buckets.append((upper, *n))?;
        }
        lag.set_item("buckets", buckets)?;
        d.set_item("lag", lag)?;
        d.set_item("slow_callback_threshold", self.slow_callback_duration)?;
        d.set_item("slow_callbacks", s.slow_count)?;
        d.set_item("slow_iterations", s.slow_iterations)?;
        d.set_item("longest_iteration", s.longest)?;
        let slowest = PyList::empty(py);
        for (seconds, what) in &s.slowest {
            slowest.append((what.as_str(), *seconds))?;
        }
        d.set_item("slowest_callbacks", slowest)?;
        Ok(d)
    }
}
