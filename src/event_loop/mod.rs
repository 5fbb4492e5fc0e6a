//! The loop: ready queue, timers and poller, exposed as the `LoopCore` base
//! class that `ferroloop.Loop` extends.
//!
//! # Implementation
//! One iteration (`run_once`) follows CPython's `BaseEventLoop._run_once`
//! step for step: drop cancelled timers, compute the poll timeout (zero if
//! callbacks are ready or the loop is stopping), poll with the GIL released,
//! queue the callbacks of ready descriptors and of expired timers, then run
//! exactly the callbacks that were ready when the run started — those
//! scheduled meanwhile wait for the next iteration.
//!
//! Borrow discipline: the pyclass is borrowed only for short spans that
//! never call Python and never drop a Python object (dropping can run a
//! finalizer, which can call back into the loop); objects to drop are moved
//! out first. The poller lives behind an `Arc` so the wait runs with the GIL
//! released and no borrow held, and so other threads can wake it.

pub mod fds;
mod run;
mod scheduling;
pub mod source;
mod stats;
mod tasks;
mod throttle;

pub(crate) use scheduling::install as install_scheduling;

use crate::clock;
use crate::doorbell::Doorbell;
use crate::errors;
use crate::handles::{Args, Handle, TimerHandle};
use crate::parked::Parked;
use crate::poller::Poller;
use crate::queued::Queued;
use crate::recycled::Recycled;
use crate::sys::EventBuf;
use crate::timers::TimerHeap;
use crate::virtual_clock::{VirtualClock, VirtualTime};
use fds::FdHandlers;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use std::collections::{HashMap, VecDeque};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Something in the ready queue: our own handle, or a handle-like object from
/// Python (asyncio code such as the signal machinery builds `events.Handle`s
/// and queues them with `_add_callback`).
pub(crate) enum Ready {
    Native(Queued),
    Foreign(Py<PyAny>),
    /// A native I/O source whose descriptor `.2` is ready on one side.
    Source(Arc<dyn source::IoSource>, fds::Side, RawFd),
}

/// Its Python name is asyncio's `BaseEventLoop`: the methods asyncio defines
/// there are defined here, and an argument error names the class the method
/// belongs to (`BaseEventLoop.call_soon() got an unexpected keyword
/// argument 'x'`), as asyncio's own message does.
#[pyclass(module = "ferroloop._ferroloop", name = "BaseEventLoop", subclass)]
pub struct LoopCore {
    ready: VecDeque<Ready>,
    /// Where in `ready` the handles start that were adopted (queued.rs)
    /// since the GC hook last checked them; None if there are none.
    first_unchecked: Option<usize>,
    /// Whether the GC hook watches this loop (queued.rs); None until the
    /// loop first queues a handle of its own.
    gc_watched: Option<bool>,
    /// The previous iteration's emptied batch, kept for its capacity.
    spare: VecDeque<Ready>,
    /// Handles that ran, emptied for the next `call_soon` (recycled.rs).
    recycled: Recycled,
    timers: TimerHeap<Parked>,
    /// Inside `run_forever`'s own iterations: timers scheduled now are
    /// kept off the GC's lists while in the heap (parked.rs).
    in_run: bool,
    cancelled_timers: Arc<AtomicUsize>,
    fds: HashMap<RawFd, FdHandlers>,
    /// fd → the transport core that owns it (`loop._transports`, see
    /// transports/registry.rs).
    pub(crate) transports: HashMap<RawFd, Py<PyAny>>,
    poller: Option<Arc<Poller>>,
    /// Lets a zero-timeout poll that would find nothing be skipped
    /// (doorbell.rs).
    doorbell: Doorbell,
    events: EventBuf,
    stopping: bool,
    closed: bool,
    debug: bool,
    thread_id: Option<u64>,
    /// The thread running the loop, as Rust names it (`thread_id` is
    /// Python's ident), for the flood check of `call_soon_threadsafe`.
    loop_thread: Option<std::thread::ThreadId>,
    /// Threadsafe callbacks queued from other threads since the loop last
    /// took its ready queue (see throttle.rs).
    threadsafe_backlog: usize,
    throttle: Arc<throttle::Throttle>,
    task_factory: Option<Py<PyAny>>,
    current_handle: Option<Py<PyAny>>,
    slow_callback_duration: f64,
    /// `time` was replaced on the instance (`mock.patch.object(loop,
    /// "time")`) or in a subclass: timers then read the clock through it,
    /// as asyncio's `_run_once` and `call_later` call `self.time()`.
    time_on_instance: bool,
    time_in_class: bool,
    /// A virtual clock (`ferroloop.testing`): read instead of the monotonic
    /// clock, and moved to the next deadline instead of waiting for it.
    virtual_clock: Option<(Py<VirtualClock>, Arc<VirtualTime>)>,
    /// `loop.stats()` (stats.rs).
    stats: stats::Stats,
}

/// asyncio's `MAXIMUM_SELECT_TIMEOUT`: a day.
const MAX_TIMEOUT: f64 = 24.0 * 3600.0;

impl LoopCore {
    pub(crate) fn debug_enabled(&self) -> bool {
        self.debug
    }

    fn time_replaced(&self) -> bool {
        self.time_on_instance || self.time_in_class
    }

    /// The loop's own clock: the monotonic one, or the virtual one.
    fn clock_now(&self) -> f64 {
        match &self.virtual_clock {
            Some((_, time)) => time.now(),
            None => clock::now(),
        }
    }

    /// The virtual clock's state, if the loop has one.
    fn virtual_time(&self) -> Option<&Arc<VirtualTime>> {
        self.virtual_clock.as_ref().map(|(_, time)| time)
    }

    /// `self.time()`: the clock, or the replacement's value as a float;
    /// `replaced` is [`Self::time_replaced`], read by the caller.
    fn now(slf: &Bound<'_, Self>, replaced: bool) -> PyResult<f64> {
        if replaced {
            slf.call_method0(pyo3::intern!(slf.py(), "time"))?.extract()
        } else {
            Ok(slf.try_borrow()?.clock_now())
        }
    }

    /// `call_soon_threadsafe` from another thread: once [`throttle::LIMIT`]
    /// such callbacks wait for this iteration, the caller gives up the GIL
    /// until the loop takes them (unless the loop is stuck: see
    /// throttle.rs), then counts its own.
    fn hold_back_flood(slf: &Bound<'_, Self>) -> PyResult<()> {
        let (throttle, seen) = {
            let this = slf.try_borrow()?;
            let Some(loop_thread) = this.loop_thread else {
                return Ok(());
            };
            if loop_thread == std::thread::current().id() {
                return Ok(());
            }
            let seen = this.throttle.iteration();
            if this.threadsafe_backlog < throttle::LIMIT || this.throttle.stuck_at(seen) {
                drop(this);
                slf.try_borrow_mut()?.threadsafe_backlog += 1;
                return Ok(());
            }
            (this.throttle.clone(), seen)
        };
        slf.py()
            .detach(|| throttle.wait_past(seen, throttle::MAX_WAIT));
        slf.try_borrow_mut()?.threadsafe_backlog += 1;
        Ok(())
    }

    fn check_closed(&self) -> PyResult<()> {
        if self.closed {
            Err(errors::loop_closed())
        } else {
            Ok(())
        }
    }

    /// The GC hook's check (queued.rs): `f` on each handle queued since
    /// the last check.
    pub(crate) fn check_queued(&mut self, mut f: impl FnMut(&Queued)) {
        if let Some(first) = self.first_unchecked.take() {
            for item in self.ready.iter().skip(first) {
                if let Ready::Native(q) = item {
                    f(q);
                }
            }
        }
    }
}

#[pymethods]
impl LoopCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let poller = Poller::new().map_err(errors::os_error)?;
        Ok(Self {
            ready: VecDeque::new(),
            first_unchecked: None,
            gc_watched: None,
            spare: VecDeque::new(),
            recycled: Recycled::default(),
            timers: TimerHeap::default(),
            in_run: false,
            cancelled_timers: Arc::new(AtomicUsize::new(0)),
            fds: HashMap::new(),
            transports: HashMap::new(),
            poller: Some(Arc::new(poller)),
            doorbell: Doorbell::default(),
            events: EventBuf::default(),
            stopping: false,
            closed: false,
            debug: false,
            thread_id: None,
            loop_thread: None,
            threadsafe_backlog: 0,
            throttle: Arc::default(),
            task_factory: None,
            current_handle: None,
            slow_callback_duration: 0.1,
            time_on_instance: false,
            time_in_class: false,
            virtual_clock: None,
            stats: stats::Stats::default(),
        })
    }

    // --- scheduling -------------------------------------------------------

    // `call_soon`, `call_later` and `call_at` are scheduling.rs's: vectorcall
    // entries of their own.

    #[pyo3(signature = (callback, *args, context = None))]
    fn call_soon_threadsafe(
        slf: &Bound<'_, Self>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        Self::hold_back_flood(slf)?;
        let debug = Self::checked_for_soon(slf, callback, "call_soon_threadsafe", false)?;
        let py = slf.py();
        let handle = match &crate::py::asyncio(py)?.threadsafe_handle {
            // From 3.14 on it is asyncio's own `_ThreadSafeHandle`, whose
            // lock makes a cancel() from another thread wait for a callback
            // that is running; the ready queue runs it through `_run`.
            Some(class) => {
                let context = context.unwrap_or_else(|| py.None());
                let h = class.bind(py).call1((callback, args, slf, context))?;
                if debug {
                    crate::py::drop_own_frame(&h)?;
                }
                slf.try_borrow_mut()?
                    .ready
                    .push_back(Ready::Foreign(h.clone().unbind()));
                h.unbind()
            }
            None => {
                Self::push_soon(slf, callback, Args::from_tuple(args)?, context, debug)?.into_any()
            }
        };
        if let Some(p) = &slf.try_borrow()?.poller {
            p.wake();
        }
        Ok(handle)
    }

    fn time(&self) -> f64 {
        self.clock_now()
    }

    /// The virtual clock the loop reads, or None for the real one.
    #[getter(_virtual_clock)]
    fn virtual_clock_attr(&self, py: Python<'_>) -> Option<Py<VirtualClock>> {
        self.virtual_clock.as_ref().map(|(c, _)| c.clone_ref(py))
    }

    /// Makes the loop read `clock` (None: the real clock again). Only
    /// while it neither runs nor has a timer: deadlines taken on one clock
    /// mean nothing on another.
    #[setter(_virtual_clock)]
    fn set_virtual_clock(&mut self, clock: Option<Bound<'_, VirtualClock>>) -> PyResult<()> {
        if self.thread_id.is_some() {
            return Err(PyRuntimeError::new_err(
                "cannot change the clock of a running loop",
            ));
        }
        if !self.timers.is_empty() {
            return Err(PyRuntimeError::new_err(
                "cannot change the clock of a loop with timers scheduled",
            ));
        }
        self.virtual_clock = clock.map(|c| {
            let time = c.get().time.clone();
            (c.unbind(), time)
        });
        Ok(())
    }

    /// Stores as Python would, noting whether `time` is replaced on the
    /// instance. Only a set or delete of an attribute pays for this, never
    /// a read.
    fn __setattr__(
        slf: &Bound<'_, Self>,
        name: &Bound<'_, PyString>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        crate::py::generic_setattr(slf.as_any(), name, Some(value))?;
        if name.to_str()? == "time" {
            slf.try_borrow_mut()?.time_on_instance = true;
        }
        Ok(())
    }

    fn __delattr__(slf: &Bound<'_, Self>, name: &Bound<'_, PyString>) -> PyResult<()> {
        crate::py::generic_setattr(slf.as_any(), name, None)?;
        if name.to_str()? == "time" {
            slf.try_borrow_mut()?.time_on_instance = false;
        }
        Ok(())
    }

    /// Notes whether the class replaces `time` (a subclass, or a patch of
    /// the class): looked up when a loop is made and whenever it starts
    /// running, since a class is patched rarely and never mid-iteration.
    fn _note_time_source(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let name = pyo3::intern!(py, "time");
        let ours = py.get_type::<Self>().getattr(name)?;
        let replaced = !slf.get_type().getattr(name)?.is(&ours);
        slf.try_borrow_mut()?.time_in_class = replaced;
        Ok(())
    }

    /// Queues an existing handle (asyncio's private `_add_callback`).
    fn _add_callback(slf: &Bound<'_, Self>, handle: &Bound<'_, PyAny>) -> PyResult<()> {
        let item = match handle.cast::<Handle>() {
            Ok(h) if h.get().is_cancelled() => return Ok(()),
            Ok(h) => Ready::Native(Queued::plain(h.clone().unbind())),
            Err(_) => {
                if handle
                    .getattr(pyo3::intern!(slf.py(), "_cancelled"))?
                    .is_truthy()?
                {
                    return Ok(());
                }
                Ready::Foreign(handle.clone().unbind())
            }
        };
        slf.try_borrow_mut()?.ready.push_back(item);
        Ok(())
    }

    /// Kept for code written against asyncio's TimerHandle protocol; our
    /// own handles count themselves.
    fn _timer_handle_cancelled(&self, handle: &Bound<'_, PyAny>) {
        if handle.cast::<TimerHandle>().is_err() {
            self.cancelled_timers.fetch_add(1, Ordering::Relaxed);
        }
    }

    // --- running ----------------------------------------------------------

    fn _run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        run::run_once(slf)
    }

    /// Iterates until `stop()`: the body of `run_forever`, whose set-up and
    /// tear-down stay in Python where asyncio's hooks live.
    fn _run_until_stopped(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.try_borrow_mut()?.in_run = true;
        let result = loop {
            if let Err(e) = run::run_once(slf) {
                break Err(e);
            }
            match slf.try_borrow() {
                Ok(this) if !this.stopping => {}
                Ok(_) => break Ok(()),
                Err(e) => break Err(e.into()),
            }
        };
        // A loop that is not running may become garbage: its timers go
        // back on the GC's lists (parked.rs).
        if let Ok(mut this) = slf.try_borrow_mut() {
            this.in_run = false;
            for t in this.timers.iter() {
                t.track(slf.py());
            }
        }
        result
    }

    fn stop(&mut self) {
        self.stopping = true;
    }

    fn is_running(&self) -> bool {
        self.thread_id.is_some()
    }

    fn is_closed(&self) -> bool {
        self.closed
    }

    fn _check_closed(&self) -> PyResult<()> {
        self.check_closed()
    }

    /// Marks the loop closed and drops everything it holds; the Python
    /// `close()` does asyncio's checks and the executor around it.
    fn _close_core(slf: &Bound<'_, Self>) -> PyResult<()> {
        let (ready, timers, fds, poller, recycled) = {
            let mut this = slf.try_borrow_mut()?;
            this.first_unchecked = None;
            this.closed = true;
            // The ring (and its poll of the epoll descriptor) goes first.
            this.doorbell = Doorbell::default();
            (
                std::mem::take(&mut this.ready),
                this.timers.drain(),
                std::mem::take(&mut this.fds),
                this.poller.take(),
                this.recycled.clear(),
            )
        };
        let timers: Vec<_> = timers.into_iter().map(|t| t.release(slf.py())).collect();
        for t in &timers {
            t.get().unschedule();
        }
        drop((ready, timers, fds, poller, recycled));
        Ok(())
    }

    // --- state asyncio keeps as attributes ----------------------------------

    fn get_debug(&self) -> bool {
        self.debug
    }

    #[getter(_debug)]
    fn debug_attr(&self) -> bool {
        self.debug
    }

    /// `value.__bool__` may run Python that uses the loop: it is asked
    /// before the loop is borrowed.
    #[setter(_debug)]
    fn set_debug_attr(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let on = value.is_truthy()?;
        slf.try_borrow_mut()?.debug = on;
        Ok(())
    }

    #[getter(_stopping)]
    fn stopping_attr(&self) -> bool {
        self.stopping
    }

    #[setter(_stopping)]
    fn set_stopping_attr(&mut self, value: bool) {
        self.stopping = value;
    }

    #[getter(_closed)]
    fn closed_attr(&self) -> bool {
        self.closed
    }

    #[getter(_thread_id)]
    fn thread_id_attr(&self) -> Option<u64> {
        self.thread_id
    }

    #[setter(_thread_id)]
    fn set_thread_id_attr(&mut self, value: Option<u64>) {
        self.thread_id = value;
        // run_forever sets it from the loop's thread, and clears it on the
        // way out: producers held back then must not wait for a loop that
        // no longer runs.
        self.loop_thread = value.map(|_| std::thread::current().id());
        if value.is_none() {
            self.threadsafe_backlog = 0;
            self.throttle.turn();
            self.stats.stopped();
        }
    }

    #[getter(_current_handle)]
    fn current_handle_attr(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.current_handle.as_ref().map(|h| h.clone_ref(py))
    }

    #[getter]
    fn get_slow_callback_duration(&self) -> f64 {
        self.slow_callback_duration
    }

    #[setter]
    fn set_slow_callback_duration(&mut self, value: f64) {
        self.slow_callback_duration = value;
    }

    #[getter(_task_factory)]
    fn task_factory_attr(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.task_factory.as_ref().map(|f| f.clone_ref(py))
    }

    fn get_task_factory(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.task_factory.as_ref().map(|f| f.clone_ref(py))
    }

    fn set_task_factory(slf: &Bound<'_, Self>, factory: &Bound<'_, PyAny>) -> PyResult<()> {
        if !factory.is_none() && !factory.is_callable() {
            return Err(PyTypeError::new_err(
                "task factory must be a callable or None",
            ));
        }
        let new = (!factory.is_none()).then(|| factory.clone().unbind());
        let old = std::mem::replace(&mut slf.try_borrow_mut()?.task_factory, new);
        drop(old);
        Ok(())
    }

    /// Number of scheduled timers, cancelled ones included (for tests and
    /// introspection, like `len(loop._scheduled)`).
    fn _timer_count(&self) -> usize {
        self.timers.len()
    }

    fn _ready_count(&self) -> usize {
        self.ready.len()
    }

    // --- futures and tasks --------------------------------------------------

    fn create_future(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        tasks::create_future(slf)
    }

    #[pyo3(signature = (coro, **kwargs))]
    fn create_task(
        slf: &Bound<'_, Self>,
        coro: &Bound<'_, PyAny>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        tasks::create_task(slf, coro, kwargs)
    }

    // --- file descriptors ---------------------------------------------------

    // The public add_reader/... live in Python: they first check that no
    // transport owns the descriptor, as asyncio's do.

    /// `context`: 3.15's transports run their callbacks in theirs.
    #[pyo3(signature = (fd, callback, *args, context = None))]
    fn _add_reader(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<Handle>> {
        fds::add(slf, fd, callback, args, context, fds::Side::Read)
    }

    /// `context`: 3.15's transports run their callbacks in theirs.
    #[pyo3(signature = (fd, callback, *args, context = None))]
    fn _add_writer(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<Handle>> {
        fds::add(slf, fd, callback, args, context, fds::Side::Write)
    }

    fn _remove_reader(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        fds::remove(slf, fd, fds::Side::Read)
    }

    fn _remove_writer(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        fds::remove(slf, fd, fds::Side::Write)
    }

    /// What waits on `fd`, for the read-only `_selector` view: None if it is
    /// not watched, else `(reader, writer)`, each a Handle (add_reader and
    /// friends), True (a native transport or child watch) or None.
    fn _fd_waiters(&self, py: Python<'_>, fd: RawFd) -> Option<(Py<PyAny>, Py<PyAny>)> {
        self.fds.get(&fd).map(|h| h.describe(py))
    }

    /// Every watched descriptor.
    fn _watched_fds(&self) -> Vec<RawFd> {
        let mut v: Vec<RawFd> = self.fds.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// asyncio's fd → transport map, as a mapping view.
    #[getter]
    fn _transports(slf: &Bound<'_, Self>) -> crate::transports::registry::TransportMap {
        crate::transports::registry::TransportMap::new(slf.clone().unbind())
    }

    // --- garbage collection ---------------------------------------------

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let mut seen = fds::SourcesSeen::default();
        for item in self.ready.iter().chain(self.spare.iter()) {
            match item {
                Ready::Native(h) => h.traverse(&visit)?,
                Ready::Foreign(h) => visit.call(h)?,
                Ready::Source(s, _, _) => seen.traverse(s, &visit)?,
            }
        }
        self.recycled.traverse(&visit)?;
        for t in self.timers.iter() {
            visit.call(&**t)?;
        }
        for h in self.fds.values() {
            h.traverse(&visit, &mut seen)?;
        }
        for t in self.transports.values() {
            visit.call(t)?;
        }
        visit.call(&self.task_factory)?;
        visit.call(&self.current_handle)?;
        Ok(())
    }

    fn __clear__(&mut self) {
        self.ready.clear();
        self.first_unchecked = None;
        self.spare.clear();
        self.recycled.clear();
        self.timers.drain();
        self.fds.clear();
        self.transports.clear();
        self.task_factory = None;
        self.current_handle = None;
    }
}
