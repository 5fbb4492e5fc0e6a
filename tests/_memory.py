"""What a process holds: live allocations for leak checks, RSS for footprints.

A leak check compares live allocations, not RSS: RSS also counts what an
allocator keeps after a free (a pymalloc arena pinned by one surviving object,
a glibc heap that cannot shrink past a live chunk), so it moves with whatever
else the process did and makes a flaky test. Live allocations move only with
what is still allocated.
"""

import contextlib
import ctypes
import gc
import sys


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _mallinfo2():
    try:
        fn = ctypes.CDLL(None).mallinfo2  # glibc 2.33+
    except AttributeError:
        return None
    fn.restype = _MallInfo2
    return fn


_MALLINFO2 = _mallinfo2()


def live_allocations() -> tuple[int, float]:
    """(Python object-allocator blocks in use, MiB in use from malloc).

    The second covers everything that goes through the C allocator: the Rust
    extension's heap and CPython's objects too big for its small-object
    allocator. Without glibc's mallinfo2 it falls back to RSS.
    """
    gc.collect()
    if _MALLINFO2 is None:
        return sys.getallocatedblocks(), rss_mb()
    info = _MALLINFO2()
    return sys.getallocatedblocks(), (info.uordblks + info.hblkhd) / 2**20


def rss_mb() -> float:
    """VmRSS, after the C allocator gave back what it can."""
    gc.collect()
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None).malloc_trim(0)  # glibc keeps freed heap memory otherwise
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")
