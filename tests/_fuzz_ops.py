"""The operation model of tests/test_fuzz.py: how an outcome is recorded,
and the loop's own operations (timers, callbacks, futures, tasks): what
they are, how they are generated (hypothesis strategies) and how they run
on one loop. The connection worlds are in `_fuzz_io`.

Each `run_*` function takes a loop factory and a list of operations, runs
them on a fresh loop and returns an *outcome*: plain tuples and strings,
nothing that holds an object of the loop, so that ferroloop's outcome can
be compared with `==` to asyncio's.

What is recorded is what a program can observe: return values, exceptions
(type and message), the order callbacks run in, the exception handler's
calls (message, context keys, exception), asyncio's log warnings and the
bytes each peer received. What legitimately differs is normalised away:
addresses in reprs, descriptor numbers, port numbers, the real time in a
deadline, and how a byte stream is cut into reads.
"""

from __future__ import annotations

import asyncio
import contextvars
import decimal
import fractions
import gc
import logging
import math
import numbers
import re
import sys

from hypothesis import strategies as st

# --- recording ------------------------------------------------------------------------------------

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_FD = re.compile(r"fd=\d+")


def norm(text: str) -> str:
    """A repr or message without what differs from run to run."""
    return _FD.sub("fd=N", _ADDRESS.sub(" at 0x?", text))


def exc_sig(exc):
    """An exception as (type name, normalised message); None stays None."""
    return None if exc is None else (type(exc).__name__, norm(str(exc)))


def attempt(fn, *args, **kwargs):
    """('ok', result) or ('raised', type, message): what a call did. A
    result is kept only if it is plain data (ferroloop's objects are not
    asyncio's: their equality would compare nothing)."""
    try:
        result = fn(*args, **kwargs)
    except (Exception, asyncio.CancelledError) as exc:
        return ("raised",) + exc_sig(exc)
    if result is None or isinstance(result, (bool, int, float, str, bytes, tuple)):
        return ("ok", result)
    return ("ok", type(result).__name__)


class HandlerLog:
    """The loop's exception handler: each call as plain data. The
    context's keys are part of it (a transport's fatal error passes
    'transport' and 'protocol', a failed callback 'handle'). The exception
    is not kept: its frames would keep transports alive."""

    def __init__(self, events: list):
        self.events = events

    def __call__(self, loop, context):
        self.events.append(
            ("handler", norm(context["message"]), tuple(sorted(context)), exc_sig(context.get("exception")))
        )


class LogCapture(logging.Handler):
    """asyncio's logger from WARNING up ("socket.send() raised exception.",
    "returning true from eof_received() has no effect when using ssl")."""

    def __init__(self, sink):
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record):
        self.sink.append(("log", record.levelname, norm(record.getMessage())))


def _cut(entry, limit=600):
    text = repr(entry)
    return text if len(text) <= limit else text[:limit] + "..."


def explain(expected, actual) -> str:
    """Two outcomes side by side, the entries that differ marked `!!`."""
    lines = ["asyncio | ferroloop"]
    for n in range(max(len(expected), len(actual))):
        e = expected[n] if n < len(expected) else "<missing>"
        a = actual[n] if n < len(actual) else "<missing>"
        lines.append(f"{'  ' if e == a else '!!'} {_cut(e)} | {_cut(a)}")
    return "\n".join(lines)


# --- loop, timers, futures and tasks -----------------------------------------------------------------

VAR = contextvars.ContextVar("fuzz_var")


class Boom(Exception):
    """What a failing callback raises; its message names the callback."""


class NotAnException(BaseException):
    """Neither SystemExit nor KeyboardInterrupt: a handle reports it."""


class DuckContext:
    """Has the one method asyncio's Handle calls on a context: run()."""

    def __init__(self, log):
        self.log = log

    def run(self, callback, *args):
        self.log.append(("duck context ran",))
        return callback(*args)


CALLBACKS = ["rec", "rec", "rec", "raise", "base", "kbi", "stop", "nested", "cancel", "var", "reenter", "int",
             "none"]
# 3.13's run_forever runs its clean-up even when its set-up refused a
# nested run ("This event loop is already running"): the running loop's
# _stopping and _thread_id are reset, and a stop() queued before the refused
# call no longer stops it (3.14 moved the set-up out of the try). The
# reference loop then waits forever: no re-entry is generated there.
if sys.version_info[:2] == (3, 13):
    CALLBACKS.remove("reenter")
EXACT_DEADLINES = {"int": 5, "bool": True, "decimal": decimal.Decimal(3), "fraction": fractions.Fraction(1, 3),
                   "float": 2.5}


def _past(value, index):
    """How far back a past deadline is: distinct per operation (`index` <
    100) and 10 s from any other, so that the order past timers fire in
    does not depend on how long the operations took."""
    return 10 * (1 + 100 * value + index)


def _deadline(kind, value, base, index):
    """A `call_at` deadline; past ones are 5 s off any `call_later` one."""
    if kind == "past":
        return base - _past(value, index) - 5
    return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "far": base + 10**6, "huge": 10**400,
            "-huge": -(10**400), "zero": 0, "none": None}[kind]


def _delay(kind, value, index):
    """A `call_later` delay: past, NaN, infinite, far, or not a number."""
    if kind == "past":
        return -_past(value, index)
    return {"zero": 0, "false": False, "nan": math.nan, "inf": math.inf, "-inf": -math.inf, "far": 10**6,
            "huge": 10**400, "none": None, "str": "1", "bytes": b"1", "decimal": decimal.Decimal(1),
            "fraction_neg": fractions.Fraction(-7, 3), "object": object()}[kind]


def _when_free(text: str) -> str:
    """A TimerHandle repr without its deadline, which is real time (the
    deadline is compared on its own where it is not)."""
    return re.sub(r"when=\S+", "when=?", text)


class TimerWorld:
    """Runs loop/timer/future/task operations on one loop; `events` is
    the outcome."""

    def __init__(self, loop):
        self.loop = loop
        self.events: list = []
        self.handles: list = []
        self.futures: list = []
        self.base = loop.time()
        loop.set_exception_handler(HandlerLog(self.events))

    # The callbacks: bound methods, so that the handler's message
    # ("Exception in callback TimerWorld.cb_raise(3)") reads the same on both.
    def cb_rec(self, i):
        self.events.append(("ran", i))

    def cb_raise(self, i):
        self.events.append(("ran", i))
        raise Boom(f"callback {i}")

    def cb_base(self, i):
        raise NotAnException(f"callback {i}")

    def cb_kbi(self, i):
        self.events.append(("ran", i))
        raise KeyboardInterrupt(f"callback {i}")

    def cb_stop(self, i):
        self.events.append(("ran", i))
        self.loop.stop()

    def cb_nested(self, i):
        self.events.append(("ran", i))
        self.loop.call_soon(self.cb_rec, f"{i}.nested")

    def cb_cancel(self, i):  # cancels the handle made before the last one
        self.events.append(("ran", i))
        if len(self.handles) >= 2:
            self.handles[-2].cancel()

    def cb_var(self, i):
        self.events.append(("ran", i, VAR.get("unset")))

    def cb_reenter(self, i):
        self.events.append(("ran", i, attempt(self.loop.run_forever)))

    def callback(self, kind):
        return {"int": 42, "none": None}[kind] if kind in ("int", "none") else getattr(self, f"cb_{kind}")

    def context(self, kind, i):
        if kind == "copy":
            ctx = contextvars.copy_context()
            ctx.run(VAR.set, f"ctx{i}")
            return {"context": ctx}
        # 42 is not a context: asyncio fails when the handle runs.
        return {"default": {}, "duck": {"context": DuckContext(self.events)}, "int": {"context": 42}}[kind]

    def schedule(self, i, how, *args, **kwargs):
        try:
            handle = how(*args, **kwargs)
        except Exception as exc:
            self.events.append(("schedule raised", i) + exc_sig(exc))
            return None
        self.handles.append(handle)
        self.events.append(("scheduled", i, norm(_when_free(repr(handle)))))
        return handle

    def step(self):
        """One iteration: what is ready now, then stop."""
        self.loop.call_soon(self.loop.stop)
        self.run(self.loop.run_forever)

    def run(self, fn, *args):
        """Runs the loop; what escapes it (KeyboardInterrupt from a
        callback, RuntimeError from a stop) is an event too."""
        try:
            result = fn(*args)
        except (Exception, KeyboardInterrupt, asyncio.CancelledError) as exc:
            self.events.append(("run raised",) + exc_sig(exc))
        else:
            self.events.append(("run returned", result if isinstance(result, (int, str, type(None))) else "?"))

    def apply(self, i, op):
        loop, name = self.loop, op[0]
        if name == "soon":
            how = loop.call_soon_threadsafe if op[3] else loop.call_soon
            self.schedule(i, how, self.callback(op[1]), i, **self.context(op[2], i))
        elif name == "later":
            self.schedule(i, loop.call_later, _delay(op[1], op[2], i), self.callback(op[3]), i)
        elif name == "at":
            handle = self.schedule(i, loop.call_at, _deadline(op[1], op[2], self.base, i), self.callback(op[3]), i)
            if handle is not None and op[1] not in ("huge", "-huge"):  # huge ints: the README's difference
                when = handle.when()  # relative to `base` where it was made so
                when = round(when - self.base, 6) if op[1] in ("past", "far") else "nan" if when != when else when
                self.events.append(("when", i, when))
        elif name == "at_exact":  # a past deadline that is not a float, and what the handle shows of it
            when = EXACT_DEADLINES[op[1]] + (i if op[1] == "float" else 0)  # distinct, if repeated
            handle = self.schedule(i, loop.call_at, when, self.cb_rec, i)
            self.events.append(("exact", i, repr(handle.when()), repr(handle)))
        elif name == "at_object":
            self.refused_deadline(i, op[1])
        elif name == "kwarg":
            args = (0,) if op[1] in ("call_later", "call_at") else ()
            self.events.append(("kwarg", op[1], attempt(getattr(loop, op[1]), *args, self.cb_rec, i, x=1)))
        elif name == "cancel" and self.handles:
            handle = self.handles[op[1] % len(self.handles)]
            handle.cancel()
            self.events.append(("cancelled", i, handle.cancelled(), norm(_when_free(repr(handle)))))
        elif name == "step":
            self.step()
        elif name == "stop_then_step":  # stop() outside the loop: the next run does one iteration
            loop.stop()
            self.step()
        elif name == "future":
            self.futures.append(loop.create_future())
            self.futures[-1].add_done_callback(self.fut_done)
        elif name.startswith("fut_") and self.futures:
            self.future_op(i, op, self.futures[op[1] % len(self.futures)])
        elif name in ("task", "run_until"):
            # Always a task of ours: a KeyboardInterrupt may leave a
            # run_until_complete() task pending, and finish() cancels it.
            task = loop.create_task(self.coro(op[1], op[2], i), name=f"{name}{i}")
            task.add_done_callback(self.fut_done)
            self.futures.append(task)
            if name == "run_until":
                self.run(loop.run_until_complete, task)
        elif name == "run_until_bad":
            self.events.append(("run_until_complete", attempt(loop.run_until_complete, op[1])))

    def refused_deadline(self, i, when):
        """A deadline that is not a number: asyncio fails when it compares
        it, at once if its heap is not empty, else at the next iteration
        before any callback runs; ferroloop fails at once (as
        test_bad_input allows). Either way a TypeError, and nothing runs."""
        try:
            self.loop.call_at(when, self.cb_rec, i)
        except TypeError:
            pass
        else:
            self.loop.stop()  # not call_soon(stop): nothing left queued behind the failure
            try:
                self.loop.run_forever()
            except TypeError:
                pass
            else:
                self.events.append(("deadline accepted", i))
        scheduled = getattr(self.loop, "_scheduled", None)
        if scheduled and not isinstance(scheduled[-1].when(), numbers.Real):
            # asyncio keeps the deadline in its heap and fails on every
            # iteration from now on: take it out, so that the run goes on.
            # It is the heap's last item (heappush failed at its first
            # comparison, before moving anything): the heap stays as it was.
            scheduled.pop()
        self.events.append(("deadline refused", i))

    def future_op(self, i, op, fut):
        name = op[0]
        if name == "fut_result":
            self.events.append(("result", i, fut.done(), fut.cancelled(), attempt(fut.result)))
        elif name == "fut_set_result":
            self.events.append(("set_result", i, attempt(fut.set_result, op[2])))
        elif name == "fut_set_exception":
            exc = {"instance": Boom(f"set {i}"), "class": Boom, "stop": StopIteration(), "int": 42}[op[2]]
            self.events.append(("set_exception", i, attempt(fut.set_exception, exc)))
        elif name == "fut_cancel":
            self.events.append(("cancel", i, attempt(fut.cancel, *op[2:])))
        elif name == "fut_await" and not fut.done():
            waiter = self.loop.create_task(self.awaiter(fut, i), name=f"awaiter{i}")
            waiter.add_done_callback(self.fut_done)
            self.futures.append(waiter)

    def fut_done(self, fut):
        what = "cancelled" if fut.cancelled() else exc_sig(fut.exception()) or ("result", fut.result())
        self.events.append(("done", fut.get_name() if isinstance(fut, asyncio.Task) else "future", what))

    async def awaiter(self, fut, i):
        try:
            return ("awaited", await fut)
        except (Exception, asyncio.CancelledError) as exc:
            self.events.append(("awaiter caught", i) + exc_sig(exc))
            raise

    async def coro(self, kind, n, i):
        for _ in range(n):
            await asyncio.sleep(0)
        self.events.append(("coro", i, kind))
        if kind == "raise":
            raise Boom(f"coro {i}")
        if kind == "cancel_self":
            asyncio.current_task().cancel(f"self {i}")
            await asyncio.sleep(0)
        if kind in ("sleep_nan", "sleep_neg"):
            await asyncio.sleep(math.nan if kind == "sleep_nan" else -1)
        return i

    def finish(self):
        """Lets what is ready run, cancels what is pending, then drops every
        object: "exception was never retrieved" comes from the collector."""
        for _ in range(3):
            self.step()
        for fut in self.futures:
            if not fut.done():
                fut.cancel()
        for _ in range(3):
            self.step()
        self.handles.clear()
        self.futures.clear()
        mark = len(self.events)
        gc.collect()
        self.events[mark:] = sorted(self.events[mark:], key=repr)  # in the collector's order otherwise


def run_timers(factory, ops, debug=False):
    loop = factory()
    try:
        if debug:
            loop.set_debug(True)
            loop.slow_callback_duration = 1e9  # no "Executing ... took" logs: real time
        world = TimerWorld(loop)
        for i, op in enumerate(ops):
            world.apply(i, op)
        world.finish()
        return world.events
    finally:
        loop.close()


def timer_ops():
    idx = st.integers(0, 30)
    cb = st.sampled_from(CALLBACKS)
    deadline = st.tuples(st.just("past"), st.integers(0, 20)) | st.tuples(
        st.sampled_from(["nan", "inf", "-inf", "far", "huge", "-huge", "zero", "none"]), st.just(0))
    delay = st.tuples(st.just("past"), st.integers(0, 20)) | st.tuples(
        st.sampled_from(["zero", "false", "nan", "inf", "-inf", "far", "huge", "none", "str", "bytes", "decimal",
                         "fraction_neg", "object"]), st.just(0))
    task = st.tuples(st.sampled_from(["return", "raise", "cancel_self", "sleep_nan", "sleep_neg"]), st.integers(0, 3))
    # Not sleep(nan) under run_until_complete(): a NaN timer pushed below
    # a later one waits for it (asyncio's heap; test_bad_input), and an
    # infinite one never comes: the run would never end, on either loop.
    main = st.tuples(st.sampled_from(["return", "raise", "cancel_self", "sleep_neg"]), st.integers(0, 3))
    op = st.one_of(
        st.tuples(st.just("soon"), cb, st.sampled_from(["default", "default", "copy", "duck", "int"]), st.booleans()),
        st.builds(lambda d, c: ("later", *d, c), delay, cb),
        st.builds(lambda d, c: ("at", *d, c), deadline, cb),
        st.tuples(st.just("at_exact"), st.sampled_from(list(EXACT_DEADLINES))),
        st.tuples(st.just("at_object"), st.sampled_from(["1", b"1", ()])),
        st.tuples(st.just("kwarg"), st.sampled_from(["call_soon", "call_soon_threadsafe", "call_later", "call_at"])),
        st.tuples(st.just("cancel"), idx),
        st.sampled_from([("step",), ("stop_then_step",), ("future",)]),
        st.tuples(st.just("fut_result"), idx),
        st.tuples(st.just("fut_set_result"), idx, st.sampled_from([None, 1, "x"])),
        st.tuples(st.just("fut_set_exception"), idx, st.sampled_from(["instance", "class", "stop", "int"])),
        st.tuples(st.just("fut_cancel"), idx) | st.tuples(st.just("fut_cancel"), idx, st.sampled_from(["why", 42])),
        st.tuples(st.just("fut_await"), idx),
        st.builds(lambda c: ("task", *c), task),
        st.builds(lambda c: ("run_until", *c), main),
        st.tuples(st.just("run_until_bad"), st.sampled_from([42, None, "coro"])),
    )
    return st.lists(op, max_size=25).map(distinct_deadlines)


# Deadlines that are equal whenever repeated: -inf (and -10**400, which
# ferroloop orders as -inf, the README's difference), call_at(0), and each
# of EXACT_DEADLINES.
_TIES = {("at", "-inf"): "-inf", ("later", "-inf"): "-inf", ("at", "-huge"): "-inf", ("at", "zero"): "zero"}


def distinct_deadlines(ops):
    """Keeps the first timer of each such deadline; the others become past
    ones. asyncio leaves the order of equal deadlines undefined (its heap
    pops them in no set order, ferroloop in the order they were made)."""
    seen, out = set(), []
    for op in ops:
        tie = op if op[0] == "at_exact" else _TIES.get(op[:2])
        if tie is not None and tie in seen:
            if op[0] == "at_exact":
                continue  # the same exact deadline again: left out
            op = (op[0], "past", 0, op[3])
        seen.add(tie)
        out.append(op)
    return out
