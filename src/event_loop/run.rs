//! One iteration of the loop: CPython's `BaseEventLoop._run_once`.

use super::{LoopCore, Ready, MAX_TIMEOUT};
use crate::clock;
use crate::errors::{self, stops_loop, HandlerContext};
use crate::handles::{Handle, TimerHandle};
use crate::poller::{Readiness, WaitError};
use crate::py;
use crate::queued::Queued;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

/// `time.get_clock_info('monotonic').resolution` on Linux.
const CLOCK_RESOLUTION: f64 = 1e-9;

pub(super) fn run_once(slf: &Bound<'_, LoopCore>) -> PyResult<()> {
    let py = slf.py();
    let mut garbage: Vec<Py<TimerHandle>> = Vec::new();

    // 1. Drop cancelled timers and work out how long we may sleep.
    let (poller, mut events, wait, time_replaced, virtual_time) = {
        let mut this = slf.try_borrow_mut()?;
        let this = &mut *this;
        let cancelled = this.cancelled_timers.load(Ordering::Relaxed);
        if this.timers.should_purge(cancelled) {
            garbage = this
                .timers
                .purge(|t| t.bind(py).as_super().get().is_cancelled())
                .into_iter()
                .map(|t| t.release(py))
                .collect();
            this.cancelled_timers
                .fetch_sub(garbage.len().min(cancelled), Ordering::Relaxed);
        } else {
            while this
                .timers
                .peek()
                .is_some_and(|(_, t)| t.bind(py).as_super().get().is_cancelled())
            {
                if let Some((_, t)) = this.timers.pop() {
                    this.cancelled_timers.fetch_sub(1, Ordering::Relaxed);
                    garbage.push(t.release(py));
                }
            }
        }
        this.stats.timers_cancelled_dropped += garbage.len() as u64;
        let wait = if !this.ready.is_empty() || this.stopping {
            Wait::No
        } else {
            match this.timers.peek() {
                Some((when, _)) => Wait::Until(when),
                None => Wait::Forever,
            }
        };
        let poller = this.poller.clone().ok_or_else(errors::loop_closed)?;
        let events = std::mem::take(&mut this.events);
        let virtual_time = this.virtual_time().cloned();
        (poller, events, wait, this.time_replaced(), virtual_time)
    };
    for t in &garbage {
        t.get().unschedule();
    }
    drop(garbage);
    let timeout_ms = match wait {
        Wait::No => Some(0),
        Wait::Forever => None,
        Wait::Until(when) => {
            // asyncio reads `self.time()` here only when a timer is waited for.
            let now = match LoopCore::now(slf, time_replaced) {
                Ok(now) => now,
                Err(e) => return fail_returning_events(slf, events, e),
            };
            let timeout = when - now;
            // NOTE: a NaN deadline at the head of the heap: up to 3.12,
            // `min(max(0, nan), …)` is 0; from 3.13, `_run_once` passes the
            // NaN on and the selector's `math.ceil` raises.
            if timeout.is_nan() && py.version_info() >= (3, 13) {
                let err = PyValueError::new_err("cannot convert float NaN to integer");
                return fail_returning_events(slf, events, err);
            }
            let timeout = timeout.clamp(0.0, MAX_TIMEOUT);
            match &virtual_time {
                // Virtual time does not pass while the loop waits: it polls
                // I/O for the auto-jump threshold of real time, then jumps.
                Some(v) if timeout > 0.0 => Some(timeout_to_ms(v.threshold())),
                _ => Some(timeout_to_ms(timeout)),
            }
        }
    };

    // 2. Poll, with the GIL released. With no descriptor registered there is
    // nothing a zero-timeout poll could report, so that syscall is skipped;
    // any registered descriptor is polled on every iteration, as asyncio does.
    // NOTE: a signal that arrived while only Rust code ran (no bytecode, so
    // Python never looked at its pending-signal flag) would otherwise wait
    // until the poll returns; Ctrl-C must not sleep that long.
    if timeout_ms != Some(0) {
        if let Err(e) = py.check_signals() {
            return fail_returning_events(slf, events, e);
        }
    }
    let mut ready_fds: Vec<Readiness> = Vec::new();
    // A zero-timeout poll is skipped too while the doorbell (doorbell.rs)
    // shows the epoll set has stayed empty since a poll found nothing.
    let nothing_to_poll = timeout_ms == Some(0) && {
        let mut this = slf.try_borrow_mut()?;
        this.fds.is_empty() || this.doorbell.silent()
    };
    let mut polled = None;
    // Only a poll that may block reads the clock first (stats.rs): what it
    // waited is the loop's idle time.
    let wait_started = (super::stats::ENABLED && timeout_ms != Some(0)).then(clock::now);
    if !nothing_to_poll {
        // The GIL is released only for a poll that may block: a zero
        // timeout returns at once, and giving the GIL up and taking it back
        // costs about as much as that syscall (benches: the idle-fd chain).
        let res = if timeout_ms == Some(0) {
            poller.wait(&mut events, &mut ready_fds, timeout_ms)
        } else {
            py.detach(|| poller.wait(&mut events, &mut ready_fds, timeout_ms))
        };
        match res {
            Ok(n) => polled = Some(n),
            Err(WaitError::Interrupted) => {
                slf.try_borrow_mut()?.events = events;
                py.check_signals()?;
                events = std::mem::take(&mut slf.try_borrow_mut()?.events);
            }
            Err(WaitError::Os(e)) => {
                return fail_returning_events(slf, events, errors::os_error(e))
            }
        }
    }

    // 2b. Virtual time: nothing arrived while the loop polled, so it jumps
    // to the deadline it would have slept until (a day at most, as the real
    // wait is capped, so an infinite deadline never becomes the time).
    if let (Some(v), Wait::Until(when)) = (&virtual_time, &wait) {
        // A NaN deadline fires without a jump (see step 3).
        let idle = ready_fds.is_empty() && slf.try_borrow()?.ready.is_empty();
        if idle && !time_replaced && !when.is_nan() {
            v.jump_to(when.min(v.now() + MAX_TIMEOUT));
        }
    }

    // 3. Queue the callbacks of ready descriptors and expired timers.
    let now = match LoopCore::now(slf, time_replaced) {
        Ok(now) => now,
        Err(e) => return fail_returning_events(slf, events, e),
    };
    let end_time = now + CLOCK_RESOLUTION;
    let real_now = if super::stats::ENABLED && (time_replaced || virtual_time.is_some()) {
        clock::now()
    } else {
        now
    };
    let waited = wait_started.map_or(0.0, |t| real_now - t);
    let mut dropped_fd_handles = super::fds::Detached::default();
    let batch = {
        let mut this = slf.try_borrow_mut()?;
        let this = &mut *this;
        this.events = events;
        if let Some(n) = polled {
            this.doorbell.after_poll(poller.epoll_fd(), n);
        }
        let slow = this.slow_callback_duration;
        this.stats
            .iteration(real_now, waited, ready_fds.len(), slow);
        for r in &ready_fds {
            super::fds::queue_ready(this, r, &mut dropped_fd_handles, py);
        }
        while let Some((when, _)) = this.timers.peek() {
            // NOTE: a NaN deadline fails this test and fires, as it does in
            // asyncio, whose comparison is the same.
            if when >= end_time {
                break;
            }
            let Some((_, t)) = this.timers.pop() else {
                break;
            };
            let t = t.release(py);
            t.get().unschedule();
            if t.bind(py).as_super().get().is_cancelled() {
                this.stats.timers_cancelled_dropped += 1;
            } else {
                this.stats.timer_fired(when, now);
            }
            this.ready.push_back(Ready::Native(Queued::plain(
                t.into_bound(py).into_super().unbind(),
            )));
        }
        this.timers.shrink_if_sparse();
        // 4. Take exactly what is ready now; later arrivals wait a turn.
        // Producer threads held back by a flood may queue again.
        this.threadsafe_backlog = 0;
        this.throttle.turn();
        let spare = std::mem::take(&mut this.spare);
        // The batch runs now: its handles leave the loop's queue, and a
        // running loop is not garbage, so none needs the GC hook's check.
        this.first_unchecked = None;
        std::mem::replace(&mut this.ready, spare)
    };
    drop(dropped_fd_handles);
    run_batch(slf, batch)
}

/// An early return from an iteration: the event buffer, taken out of the
/// loop for the poll, goes back first, so the next iteration has it.
fn fail_returning_events(
    slf: &Bound<'_, LoopCore>,
    events: crate::sys::EventBuf,
    err: PyErr,
) -> PyResult<()> {
    slf.try_borrow_mut()?.events = events;
    Err(err)
}

/// How long an iteration may wait for I/O.
enum Wait {
    No,
    Forever,
    /// Until the earliest timer's deadline.
    Until(f64),
}

/// Runs one iteration's callbacks in FIFO order, skipping cancelled ones.
fn run_batch(slf: &Bound<'_, LoopCore>, mut batch: VecDeque<Ready>) -> PyResult<()> {
    let py = slf.py();
    let (debug, watching, threshold, room) = {
        let this = slf.try_borrow()?;
        let room = this.recycled.room();
        (
            this.debug,
            this.stats.watching,
            this.slow_callback_duration,
            room,
        )
    };
    // Debug mode times each callback anyway (run_timed); otherwise they
    // are timed while the statistics watch for a slow one (stats.rs).
    let timed = watching && !debug;
    let mut last = if timed { clock::now() } else { 0.0 };
    let mut ran = 0;
    // Handles that ran and that only the loop held, emptied for reuse, as
    // many as the loop has room for. The others are freed as they run, not
    // when the batch ends: freeing one balances the allocation count that
    // triggers a collection, so a batch of a thousand callbacks each making
    // one object does not start one.
    let mut emptied = Vec::new();
    while let Some(item) = batch.pop_front() {
        let result = if debug {
            run_timed(slf, &item)
        } else {
            run_item(slf, &item)
        };
        ran += 1;
        if timed {
            let t = clock::now();
            if t - last >= threshold {
                note_slow(slf, &item, t - last)?;
            }
            last = t;
        }
        match item {
            // What the handle held is dropped here, as asyncio drops a
            // handle that ran before it runs the next.
            Ready::Native(q) if emptied.len() < room => {
                if let Some(held) = q.release_for_reuse(py, &mut emptied) {
                    held.release(py);
                }
            }
            Ready::Native(q) => q.release(py),
            other => drop(other),
        }
        if let Err(e) = result {
            slf.try_borrow_mut()?.stats.ran(ran);
            // SystemExit/KeyboardInterrupt: leave the rest queued, as asyncio
            // leaves them in `_ready`.
            let mut this = slf.try_borrow_mut()?;
            while let Some(rest) = batch.pop_back() {
                this.ready.push_front(rest);
            }
            // They are the loop's again, in front: the GC hook checks all.
            this.first_unchecked = Some(0);
            this.spare = batch;
            return Err(e);
        }
    }
    let mut this = slf.try_borrow_mut()?;
    this.stats.ran(ran);
    this.recycled.keep(emptied);
    // Keep the larger buffer for the next batch, unless a burst left it far
    // larger than what the loop now needs.
    if this.spare.capacity() < batch.capacity() {
        this.spare = batch;
    }
    let needed = this.ready.len().max(1024);
    if this.spare.capacity() > 4 * needed {
        this.spare.shrink_to(needed);
    }
    Ok(())
}

/// A callback that ran for `seconds`, at least the slow threshold: counted,
/// and kept (as asyncio's debug log names it) if among the slowest.
fn note_slow(slf: &Bound<'_, LoopCore>, item: &Ready, seconds: f64) -> PyResult<()> {
    let py = slf.py();
    let format = |h: Py<PyAny>| -> PyResult<String> {
        Ok(py::asyncio(py)?
            .format_handle
            .bind(py)
            .call1((h,))?
            .to_string())
    };
    let name = match item {
        Ready::Native(h) => format(h.clone_ref(py).into_any())?,
        Ready::Foreign(h) => format(h.clone_ref(py))?,
        Ready::Source(s, side, _) => s.describe(*side),
    };
    slf.try_borrow_mut()?.stats.slow(seconds, || name);
    Ok(())
}

fn run_item(slf: &Bound<'_, LoopCore>, item: &Ready) -> PyResult<()> {
    let py = slf.py();
    match item {
        Ready::Native(h) => {
            let h = h.bind(py);
            if h.get().is_cancelled() {
                return Ok(());
            }
            Handle::run(h)
        }
        Ready::Foreign(h) => {
            let h = h.bind(py);
            if h.getattr(pyo3::intern!(py, "_cancelled"))?.is_truthy()? {
                return Ok(());
            }
            h.call_method0(pyo3::intern!(py, "_run")).map(drop)
        }
        // Unregistered since it was queued (a callback earlier in this
        // batch paused reading, closed the socket, ...): asyncio's handle
        // would have been cancelled by remove_reader/remove_writer.
        Ready::Source(s, side, fd) => {
            let registered = super::fds::is_registered(&*slf.try_borrow()?, *fd, *side, s);
            if !registered {
                return Ok(());
            }
            match s.on_ready(py, *side) {
                Ok(()) => Ok(()),
                Err(e) if stops_loop(py, &e) => Err(e),
                // What escapes a transport (a protocol callback asyncio calls
                // unguarded, such as datagram_received) goes to the exception
                // handler, as it would from asyncio's `_read_ready` handle.
                Err(e) => report_source_error(slf, s.as_ref(), *side, e),
            }
        }
    }
}

/// What escapes a native source goes to the exception handler as it would
/// from asyncio's handle: "Exception in callback ...", with the `handle`
/// (the transport's bound `_read_ready`, say) when the source names one.
fn report_source_error(
    slf: &Bound<'_, LoopCore>,
    s: &dyn super::source::IoSource,
    side: super::fds::Side,
    e: PyErr,
) -> PyResult<()> {
    let py = slf.py();
    let loop_ = s.loop_object(py);
    let mut shown = s.describe(side);
    let mut handle = None;
    if let Some((callback, args)) = s.handle_callback(py, side) {
        let debug = slf.try_borrow()?.debug;
        shown = crate::py::format_callback_source(py, &callback, &args, debug)?.to_string();
        let h = crate::handles::Handle::new(
            py,
            callback.unbind(),
            crate::handles::Args::from_tuple(&args)?,
            None,
            loop_.clone().unbind(),
            false,
        )?;
        handle = Some(Py::new(py, h)?);
    }
    let mut ctx =
        HandlerContext::new(py, &format!("Exception in callback {shown}"))?.exception(e)?;
    if let Some(h) = handle {
        ctx = ctx.with("handle", h)?;
    }
    ctx.send(&loop_)
}

/// Debug mode: record the current handle and warn about slow callbacks.
fn run_timed(slf: &Bound<'_, LoopCore>, item: &Ready) -> PyResult<()> {
    let py = slf.py();
    let handle: Py<PyAny> = match item {
        Ready::Native(h) => {
            if h.get().is_cancelled() {
                return Ok(());
            }
            h.clone_ref(py).into_any()
        }
        Ready::Foreign(h) => h.clone_ref(py),
        // Native sources report their own slowness through their protocol
        // callbacks' handles; there is no Python handle to name here.
        Ready::Source(..) => return run_item(slf, item),
    };
    slf.try_borrow_mut()?.current_handle = Some(handle.clone_ref(py));
    let t0 = clock::now();
    let result = run_item(slf, item);
    let dt = clock::now() - t0;
    let previous = slf.try_borrow_mut()?.current_handle.take();
    drop(previous);
    result?;
    if dt >= slf.try_borrow()?.slow_callback_duration {
        note_slow(slf, item, dt)?;
        let a = py::asyncio(py)?;
        let name = a.format_handle.bind(py).call1((handle,))?;
        a.logger.bind(py).call_method1(
            pyo3::intern!(py, "warning"),
            ("Executing %s took %.3f seconds", name, dt),
        )?;
    }
    Ok(())
}

/// Rounds up to whole milliseconds, as `selectors.EpollSelector` does, so a
/// timer never fires early.
fn timeout_to_ms(secs: f64) -> u64 {
    (secs * 1e3).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::timeout_to_ms;

    #[test]
    fn timeouts_round_up() {
        assert_eq!(timeout_to_ms(0.0), 0);
        assert_eq!(timeout_to_ms(0.0000001), 1);
        assert_eq!(timeout_to_ms(0.001), 1);
        assert_eq!(timeout_to_ms(1.5), 1500);
    }
}
