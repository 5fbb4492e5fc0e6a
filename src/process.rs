//! Child processes: knowing when a child exits, without a thread per child
//! and without reaping children that are not ours.
//!
//! # Implementation
//! A pidfd (Linux ≥ 5.3) becomes readable when its process exits. It is
//! watched by the loop's poller like any descriptor; when it fires, the
//! child is reaped with `waitpid(pid, WNOHANG)` — only that pid, so other
//! code's children are left alone — and the callback (the subprocess
//! transport's `_process_exited`) is scheduled with `call_soon`, where
//! asyncio's `PidfdChildWatcher` would schedule it. Kernels without pidfds
//! get the thread-per-child fallback in `_loop.py`.

use crate::event_loop::fds::Side;
use crate::event_loop::source::{self, IoSource};
use crate::event_loop::LoopCore;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use rustix::fd::{AsRawFd, OwnedFd};
use rustix::io::Errno;
use rustix::process::{Pid, WaitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The returncode asyncio reports when someone else reaped the child.
const UNKNOWN_RETURNCODE: i32 = 255;

/// `os.waitstatus_to_exitcode`: the exit status, or minus the signal.
fn returncode(status: WaitStatus) -> i32 {
    match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => -sig,
        // Neither exited nor killed: only possible with WUNTRACED, which
        // is not asked for; report it as asyncio reports an unknown status.
        (None, None) => UNKNOWN_RETURNCODE,
    }
}

struct ChildSource {
    loop_: Py<LoopCore>,
    pid: Pid,
    /// Closed when the loop drops this source: after the child was reaped,
    /// or when the loop closes first.
    pidfd: OwnedFd,
    callback: Py<PyAny>,
    /// Set once the child has been reaped (or found reaped by others).
    reaped: AtomicBool,
    /// The context asyncio's watcher would run the exit in: a copy of the
    /// spawner's (3.12+: `PidfdChildWatcher`'s reader handle), or a new,
    /// empty one (3.11: `ThreadedChildWatcher` calls back from its thread).
    context: Py<PyAny>,
}

impl Drop for ChildSource {
    /// The loop closed while the child still runs. It must still be reaped
    /// or it stays a zombie; asyncio's thread-based watcher would do it, so
    /// a thread waits for it here — only in this rare case.
    fn drop(&mut self) {
        if self.reaped.load(Ordering::Relaxed) {
            return;
        }
        let pid = self.pid;
        let spawned = std::thread::Builder::new()
            .name(format!("ferroloop-reap-{}", pid.as_raw_nonzero()))
            // Retried on EINTR; reaped, or ECHILD (someone else, such as
            // Popen.poll, did it) ends the wait.
            .spawn(move || crate::sys::reap_blocking(pid));
        // Without a thread, the child's Popen reaps it when polled or
        // collected; nothing else can be done here.
        drop(spawned);
    }
}

impl IoSource for ChildSource {
    fn on_ready(&self, py: Python<'_>, _side: Side) -> PyResult<()> {
        crate::py::run_in_context(self.context.bind(py), || self.exited(py))
    }

    fn describe(&self, _side: Side) -> String {
        format!("child watcher for pid {}", self.pid.as_raw_nonzero())
    }

    fn loop_object<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.loop_.bind(py).clone().into_any()
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.callback)?;
        visit.call(&self.context)
    }
}

impl ChildSource {
    /// The pidfd is readable: reap the child and schedule the callback.
    fn exited(&self, py: Python<'_>) -> PyResult<()> {
        let code = match crate::sys::try_reap(self.pid) {
            Ok(Some(status)) => returncode(status),
            // Readable but not yet reapable cannot happen for a pidfd;
            // keep waiting rather than guess.
            Ok(None) | Err(Errno::INTR) => return Ok(()),
            Err(_) => {
                // ECHILD: reaped elsewhere (a SIGCHLD handler, waitpid(-1)).
                let a = crate::py::asyncio(py)?;
                a.logger.bind(py).call_method1(
                    pyo3::intern!(py, "warning"),
                    (
                        "child process pid %d exit status already read:  will report returncode 255",
                        self.pid.as_raw_nonzero().get(),
                    ),
                )?;
                UNKNOWN_RETURNCODE
            }
        };
        self.reaped.store(true, Ordering::Relaxed);
        let loop_ = self.loop_.bind(py);
        source::unwatch(loop_, self.pidfd.as_raw_fd(), Side::Read)?;
        loop_.call_method1(pyo3::intern!(py, "call_soon"), (&self.callback, code))?;
        Ok(())
    }
}

/// Calls `callback(returncode)` on the loop once child `pid` has exited and
/// been reaped. Raises OSError (ENOSYS on kernels older than 5.3, ESRCH for
/// a pid that is not a live process) when no pidfd can be had.
#[pyfunction]
pub fn watch_child(
    loop_: &Bound<'_, LoopCore>,
    pid: i32,
    callback: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let Some(pid) = Pid::from_raw(pid).filter(|p| p.as_raw_nonzero().get() > 0) else {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "invalid pid {pid}"
        )));
    };
    let pidfd = crate::sys::pidfd_open(pid).map_err(crate::errors::sys_error)?;
    let fd = pidfd.as_raw_fd();
    let py = loop_.py();
    let context = match py.version_info() >= (3, 12) {
        true => crate::py::copy_context(py)?,
        false => py
            .import(pyo3::intern!(py, "contextvars"))?
            .getattr(pyo3::intern!(py, "Context"))?
            .call0()?
            .unbind(),
    };
    let src = ChildSource {
        loop_: loop_.clone().unbind(),
        pid,
        pidfd,
        callback: callback.clone().unbind(),
        reaped: AtomicBool::new(false),
        context,
    };
    source::watch(loop_, fd, Side::Read, Arc::new(src))
}
