//! The loop's clock: `time.monotonic()`, bit for bit.
//!
//! asyncio's `loop.time()` is `time.monotonic()`, and user code mixes the two
//! (deadlines computed with one, compared with the other), so we read the
//! same clock (CLOCK_MONOTONIC) and convert nanoseconds to a float exactly as
//! CPython's `_PyTime_AsSecondsDouble` does.

use rustix::time::{clock_gettime, ClockId};

const NS_PER_SEC: i64 = 1_000_000_000;

/// Seconds on the monotonic clock, as `time.monotonic()` returns them.
pub fn now() -> f64 {
    let ts = clock_gettime(ClockId::Monotonic);
    ns_to_secs(ts.tv_sec * NS_PER_SEC + ts.tv_nsec)
}

/// CPython's conversion: whole seconds are converted without rounding error.
fn ns_to_secs(ns: i64) -> f64 {
    if ns % NS_PER_SEC == 0 {
        (ns / NS_PER_SEC) as f64
    } else {
        ns as f64 / 1e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_matches_cpython() {
        assert_eq!(ns_to_secs(3 * NS_PER_SEC), 3.0);
        assert_eq!(ns_to_secs(1_500_000_000), 1.5);
        assert_eq!(ns_to_secs(123_456_789_012), 123_456_789_012f64 / 1e9);
    }

    #[test]
    fn monotonic_never_goes_back() {
        let a = now();
        let b = now();
        assert!(b >= a);
    }
}
