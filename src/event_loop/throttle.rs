//! Backpressure for `call_soon_threadsafe`: a flood from other threads
//! cannot starve the loop.
//!
//! # Why
//! A thread that calls `call_soon_threadsafe` in a tight loop holds the GIL
//! for a whole switch interval at a time and queues callbacks faster than the
//! loop can run them. asyncio is throttled by accident: every call writes to
//! its self-pipe with the GIL released, which hands the GIL around. ferroloop
//! coalesces wake-ups (one eventfd write per sleep), so without a limit a few
//! producers queue millions of callbacks and the loop's own timers run
//! seconds late.
//!
//! # How
//! The loop counts the threadsafe callbacks queued from other threads since
//! it last took its ready queue. Once that count reaches [`LIMIT`], the next
//! caller from another thread releases the GIL and waits until the loop
//! takes its ready queue (one iteration). So the backlog of threadsafe
//! callbacks is at most `LIMIT` plus one per producer thread per iteration,
//! and no timer waits behind more than that many of them.
//!
//! The wait is bounded by [`MAX_WAIT`], and once a wait for an iteration has
//! run out, no caller waits again until the loop turns: a loop stuck in one
//! long callback — perhaps one that waits for the very thread that is
//! producing — costs each producer at most one `MAX_WAIT`, never a wait per
//! call and never a deadlock. Only while the loop is stuck that long does
//! the backlog grow past the bound.
//!
//! Calls from the loop's own thread, and calls while the loop is not
//! running, never wait: nothing else would drain the queue.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Threadsafe callbacks from other threads that may be queued in one
/// iteration before their callers wait. At ~0.1–1 µs per trivial callback
/// an iteration's share of them stays under a few milliseconds, below
/// CPython's 5 ms switch interval, while a producer still hands the GIL over
/// only once per thousands of calls.
pub const LIMIT: usize = 4096;

/// The longest a producer waits for one iteration: far longer than an
/// iteration of `LIMIT` callbacks takes, so it only ends a wait on a loop
/// that is stuck.
pub const MAX_WAIT: Duration = Duration::from_millis(100);

pub struct Throttle {
    /// Bumped whenever the loop takes its ready queue.
    iterations: AtomicU64,
    /// The iteration a wait ran out on (`u64::MAX`: none).
    gave_up_on: AtomicU64,
    waiting: AtomicUsize,
    lock: Mutex<()>,
    turned: Condvar,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            iterations: AtomicU64::new(0),
            gave_up_on: AtomicU64::new(u64::MAX),
            waiting: AtomicUsize::new(0),
            lock: Mutex::new(()),
            turned: Condvar::new(),
        }
    }
}

impl Throttle {
    /// The iteration count a producer waits to see change.
    pub fn iteration(&self) -> u64 {
        self.iterations.load(Ordering::Acquire)
    }

    /// True when a wait for iteration `seen` already ran out: the loop is
    /// stuck in it, and waiting again would only slow the caller down.
    pub fn stuck_at(&self, seen: u64) -> bool {
        self.gave_up_on.load(Ordering::Acquire) == seen
    }

    /// Blocks until the loop has taken its ready queue after `seen` was read,
    /// or `max` ([`MAX_WAIT`]) has passed. Call it without the GIL.
    pub fn wait_past(&self, seen: u64, max: Duration) {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        // A poisoned lock only means another waiter panicked while holding
        // a `()`: the guard is still good to wait on.
        let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let _guard = self
            .turned
            .wait_timeout_while(guard, max, |_| self.iteration() == seen)
            .unwrap_or_else(|e| e.into_inner());
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        if self.iteration() == seen {
            self.gave_up_on.store(seen, Ordering::Release);
        }
    }

    /// The loop took its ready queue (or stopped running): waiting producers
    /// may go on. Costs one atomic add, and a lock only when someone waits.
    pub fn turn(&self) {
        self.iterations.fetch_add(1, Ordering::AcqRel);
        if self.waiting.load(Ordering::Acquire) > 0 {
            // NOTE: taking the lock orders this with a waiter that read the
            // old count and is about to sleep: it either sees the new count
            // or is already asleep when we notify.
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.turned.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{mpsc, Arc};
    use std::time::Instant;

    const FOREVER: Duration = Duration::from_secs(3600);
    /// How long a test waits for a waiter that should be released before
    /// calling it stuck: a liveness bound, not a measurement.
    const STUCK: Duration = Duration::from_secs(30);

    fn waiter(t: &Arc<Throttle>, seen: u64) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel();
        let t = t.clone();
        std::thread::spawn(move || {
            t.wait_past(seen, FOREVER);
            let _ = tx.send(());
        });
        rx
    }

    #[test]
    fn a_turn_releases_a_waiter() {
        let t = Arc::new(Throttle::default());
        let done = waiter(&t, t.iteration());
        while t.waiting.load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
        t.turn();
        done.recv_timeout(STUCK)
            .expect("the turn released the waiter");
        assert_eq!(t.waiting.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_turn_already_taken_does_not_wait() {
        let t = Arc::new(Throttle::default());
        let seen = t.iteration();
        t.turn();
        waiter(&t, seen)
            .recv_timeout(STUCK)
            .expect("no wait for a turn already taken");
    }

    #[test]
    fn without_a_turn_the_wait_ends_at_its_bound_and_is_not_repeated() {
        let t = Throttle::default();
        let seen = t.iteration();
        assert!(!t.stuck_at(seen));
        let start = Instant::now();
        t.wait_past(seen, Duration::from_millis(2));
        assert!(start.elapsed() >= Duration::from_millis(2));
        assert_eq!(t.waiting.load(Ordering::Acquire), 0);
        assert!(t.stuck_at(seen), "the loop is stuck in this iteration");
        t.turn();
        assert!(
            !t.stuck_at(t.iteration()),
            "a new iteration is waited for again"
        );
    }
}
