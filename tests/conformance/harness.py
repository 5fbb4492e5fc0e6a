"""Child process of run.py: runs ONE test.test_asyncio module on the chosen loop.

    python harness.py --loop ferroloop|asyncio --module test_events --out F.jsonl
                      [--skip done.json] [--timeout 60]

Writes one JSON object per line to --out, flushed as it goes, so that the
parent still knows what happened if this process hangs or crashes:
    {"event": "start", "id": ...}
    {"event": "end", "id": ..., "outcome": "pass|fail|error|skip",
     "on_loop": bool, "time": seconds, "tb": str|null}
A hang is turned into a process exit by faulthandler (traceback of every
thread on stderr); the parent then records the in-flight test as a timeout
and starts this script again with the finished tests in --skip.
"""
import argparse
import asyncio
from asyncio import events, unix_events
import faulthandler
import importlib
import json
import re
import sys
import time
import traceback
import unittest
from pathlib import Path

PACKAGE = "test.test_asyncio"

# Tests bound to a concrete loop class. test_events, test_sendfile and
# test_sock_lowlevel define their tests once in a mixin and bind it to
# SelectorEventLoop once per selector (Kqueue/EPoll/Poll/Select); the
# functional modules bind theirs to SelectorEventLoop and ProactorEventLoop.
# We keep one binding, subclass the stdlib's own Select*-bound class (so the
# bases and per-platform overrides are exactly the stdlib's, e.g.
# UnixEventLoopTestsMixin + SubprocessTestsMixin for test_events) and swap
# its loop factory for ours. The new class has the same name in both modes
# so expected-failure ids and baseline numbers line up.
#   module -> {stdlib class: (our class name, the method that makes the loop)}
REBIND = {
    "test_events": {"SelectEventLoopTests": ("FerroEventLoopTests", "create_event_loop")},
    "test_sendfile": {"SelectEventLoopTests": ("FerroEventLoopTests", "create_event_loop")},
    "test_sock_lowlevel": {"SelectEventLoopTests": ("FerroEventLoopTests", "create_event_loop")},
    "test_server": {"SelectorStartServerTests": ("FerroStartServerTests", "new_loop")},
    "test_buffered_proto": {"BufferedProtocolSelectorTests": ("BufferedProtocolFerroTests", "new_loop")},
    "test_sslproto": {"SelectorStartTLSTests": ("FerroStartTLSTests", "new_loop")},
    # Public create_unix_server/connection checks; setUp hard-codes the loop.
    "test_unix_events": {"SelectorEventLoopUnixSocketTests": ("FerroEventLoopUnixSocketTests", "setUp")},
}
# Not run in either mode: the same mixins bound to other selectors or to the
# Windows proactor (they measure asyncio's loop, not ours), and the selector
# loop's signal-handling internals (mocked signal module, _signal_handlers).
_SELECTOR_COPIES = ("KqueueEventLoopTests", "EPollEventLoopTests", "PollEventLoopTests",
                    "ProactorEventLoopTests")
DROP = {
    "test_events": _SELECTOR_COPIES,
    "test_sendfile": _SELECTOR_COPIES,
    "test_sock_lowlevel": _SELECTOR_COPIES,
    "test_server": ("ProactorStartServerTests",),
    "test_buffered_proto": ("BufferedProtocolProactorTests",),
    "test_sslproto": ("ProactorStartTLSTests",),
    "test_unix_events": ("SelectorEventLoopSignalTests",),
}

_loops_created = 0  # loops of the loop-under-test made so far in this process


def install_loop(kind):
    """Route every loop the tests create to `kind`; return the factory for
    rebound classes.

    asyncio.events._init_event_loop_policy() does `from . import
    DefaultEventLoopPolicy` each time the policy is None (3.11-3.13), so
    replacing that package attribute makes the tests' own
    set_event_loop_policy(None) resets land on our policy, and with it
    asyncio.new_event_loop(), asyncio.run(), asyncio.Runner and
    IsolatedAsyncioTestCase (3.14+ import it from unix_events, where the
    same replacement is made). The policy subclass also counts the loops, to
    tell tests that really ran on the loop from those on mock/TestLoop loops.
    """
    if kind == "ferroloop":
        import ferroloop
        base_policy, loop_class, factory = (
            ferroloop.EventLoopPolicy, ferroloop.Loop, ferroloop.new_event_loop)
    else:
        base_policy, loop_class, factory = (
            unix_events._UnixDefaultEventLoopPolicy, asyncio.SelectorEventLoop,
            asyncio.SelectorEventLoop)

    def note(loop):
        global _loops_created
        if isinstance(loop, loop_class):
            _loops_created += 1
        return loop

    class CountingPolicy(base_policy):
        def new_event_loop(self):
            return note(super().new_event_loop())

    # 3.11-3.13 import the default policy from the package, 3.14+ from
    # unix_events under a private name (the public one is deprecated).
    # (Setting the package attribute on 3.14+ would also hide the warning
    # that test_events checks its deprecated lookup for.)
    if hasattr(unix_events, "_DefaultEventLoopPolicy"):
        unix_events._DefaultEventLoopPolicy = CountingPolicy
    else:
        asyncio.DefaultEventLoopPolicy = CountingPolicy
    getattr(events, "_set_event_loop_policy", events.set_event_loop_policy)(None)
    probe = asyncio.new_event_loop()
    probe.close()
    if not isinstance(probe, loop_class):
        sys.exit(f"harness: asyncio.new_event_loop() gave {type(probe)!r}, not {loop_class!r}")
    # 3.14+ tests also name the platform's loop class outright
    # (test_taskgroups' `loop_factory = asyncio.EventLoop`,
    # `asyncio.run(..., loop_factory=asyncio.EventLoop)`): they are loop
    # tests too, so that name gives the loop under test as well. A class,
    # not a function: held as a class attribute it must not become a method.
    class EventLoop:
        def __new__(cls):
            return note(factory())

    if hasattr(asyncio, "EventLoop"):
        asyncio.EventLoop = EventLoop
    return lambda: note(factory())


def rebind(mod, name, factory):
    for cls_name in DROP.get(name, ()):
        if hasattr(mod, cls_name):
            delattr(mod, cls_name)
    for cls_name, (new_name, method) in REBIND.get(name, {}).items():
        stdlib_cls = getattr(mod, cls_name)  # missing: the table needs updating
        if method == "setUp":
            def make(self, _cls=stdlib_cls):
                super(_cls, self).setUp()  # skip the stdlib setUp's hard-coded loop
                self.loop = factory()
                self.set_event_loop(self.loop)
        else:
            def make(self):
                return factory()
        new_cls = type(new_name, (stdlib_cls,), {method: make, "__module__": mod.__name__,
                                                 "__qualname__": new_name})
        delattr(mod, cls_name)
        setattr(mod, new_name, new_cls)


def flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from flatten(item)
        else:
            yield item


class Recorder(unittest.TestResult):
    """Writes start/end records and keeps the faulthandler timer armed: it is
    re-armed at each test start and end, so it also covers class fixtures
    and the teardown that IsolatedAsyncioTestCase does after stopTest."""

    RANK = {"pass": 0, "skip": 1, "fail": 2, "error": 3}

    def __init__(self, out, timeout):
        super().__init__()
        self.out, self.timeout = out, timeout
        self.current = None

    def write(self, **record):
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    def arm(self):
        faulthandler.dump_traceback_later(self.timeout, exit=True)

    def startTest(self, test):
        super().startTest(test)
        self.arm()
        self.current, self.outcome, self.tb = test, "pass", None
        self.loops_before, self.t0 = _loops_created, time.monotonic()
        self.write(event="start", id=test.id())

    def stopTest(self, test):
        super().stopTest(test)
        self.write(event="end", id=test.id(), outcome=self.outcome,
                   on_loop=_loops_created > self.loops_before,
                   time=round(time.monotonic() - self.t0, 3), tb=self.tb)
        self.current = None
        self.arm()

    def note(self, test, outcome, tb):
        if test is not self.current:
            # a class or module fixture failed (unittest passes an _ErrorHolder
            # described as "setUpClass (pkg.mod.Class)"): record it as
            # pkg.mod.Class.setUpClass so it sorts and matches like a test
            fixture = re.fullmatch(r"(\w+) \((.+)\)", test.id())
            test_id = f"{fixture[2]}.{fixture[1]}" if fixture else test.id()
            self.write(event="end", id=test_id, outcome=outcome, on_loop=False, time=0, tb=tb)
        elif self.RANK[outcome] > self.RANK[self.outcome]:
            self.outcome, self.tb = outcome, tb

    def addError(self, test, err):
        self.note(test, "error", self._exc_info_to_string(err, test))

    def addFailure(self, test, err):
        self.note(test, "fail", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        self.note(test, "skip", reason)

    def addSubTest(self, test, subtest, err):
        if err is not None:
            kind = "fail" if issubclass(err[0], test.failureException) else "error"
            self.note(test, kind, f"{subtest}\n" + self._exc_info_to_string(err, test))

    def addExpectedFailure(self, test, err):
        pass  # unittest's @expectedFailure counts as success

    def addUnexpectedSuccess(self, test):
        self.note(test, "fail", "unexpected success of an @expectedFailure test")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", choices=("ferroloop", "asyncio"), required=True)
    ap.add_argument("--module", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--skip")
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    skip = set(json.loads(Path(args.skip).read_text())) if args.skip else set()
    faulthandler.enable()  # a crash in the loop dumps the Python stack too

    with open(args.out, "a") as out:
        recorder = Recorder(out, args.timeout)
        recorder.arm()  # covers the import and module fixtures as well
        factory = install_loop(args.loop)
        mod_id = f"{PACKAGE}.{args.module}"
        try:
            mod = importlib.import_module(mod_id)
        except unittest.SkipTest as exc:
            recorder.write(event="end", id=mod_id, outcome="skip", on_loop=False, time=0, tb=str(exc))
            return
        except Exception:
            recorder.write(event="end", id=mod_id, outcome="error", on_loop=False, time=0,
                           tb=traceback.format_exc())
            return
        rebind(mod, args.module, factory)
        tests = unittest.defaultTestLoader.loadTestsFromModule(mod)
        suite = unittest.TestSuite(t for t in flatten(tests) if t.id() not in skip)
        suite.run(recorder)
        faulthandler.cancel_dump_traceback_later()


if __name__ == "__main__":
    main()
