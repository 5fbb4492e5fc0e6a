//! The poller: level-triggered epoll plus an eventfd to wake it.
//!
//! # Implementation
//! asyncio's `add_reader` is level-triggered: the callback runs again on every
//! iteration while the descriptor stays ready. epoll gives that natively when
//! EPOLLET is not set, so a descriptor costs one `epoll_ctl` when its
//! interest changes and nothing per iteration. (mio is edge-triggered only;
//! the `polling` crate retries EINTR itself — which would swallow Ctrl-C —
//! and re-arms a timerfd and the notifier on every wait, four extra syscalls
//! per iteration. rustix's thin epoll binding has neither problem.)
//!
//! Waking from another thread writes the eventfd, once per sleep: a flag
//! records that a wake-up is already pending so a burst of
//! `call_soon_threadsafe` costs one write, and the loop reads the eventfd
//! back when it sees it.

use crate::sys::{borrow_raw, EventBuf};
use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags};
use rustix::io::Errno;
use rustix::time::Timespec;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// The key under which the wake-up eventfd is registered.
const WAKE_KEY: u64 = u64::MAX;

/// How many events one wait collects; more stay queued in the kernel for the
/// next iteration, as with selectors' own bounded lists.
const MAX_EVENTS: usize = 1024;

/// What a descriptor became ready for, in asyncio's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub fd: RawFd,
    pub readable: bool,
    pub writable: bool,
}

pub struct Poller {
    epoll: OwnedFd,
    wake_fd: OwnedFd,
    wake_pending: AtomicBool,
}

/// Why a wait returned without events.
pub enum WaitError {
    /// A signal arrived: the caller must let Python run its handlers.
    Interrupted,
    Os(io::Error),
}

impl Poller {
    pub fn new() -> io::Result<Self> {
        let epoll = epoll::create(CreateFlags::CLOEXEC)?;
        let wake_fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(
            &epoll,
            &wake_fd,
            EventData::new_u64(WAKE_KEY),
            EventFlags::IN,
        )?;
        Ok(Self {
            epoll,
            wake_fd,
            wake_pending: AtomicBool::new(false),
        })
    }

    fn flags(read: bool, write: bool) -> EventFlags {
        let mut f = EventFlags::empty();
        if read {
            f |= EventFlags::IN;
        }
        if write {
            f |= EventFlags::OUT;
        }
        f
    }

    /// Sets the interest for `fd`; `known` says whether it is registered.
    pub fn set_interest(&self, fd: RawFd, read: bool, write: bool, known: bool) -> io::Result<()> {
        let data = EventData::new_u64(fd as u64);
        let flags = Self::flags(read, write);
        // SAFETY: a number add_reader/add_writer or a transport handed in,
        // used for this one epoll_ctl, which only registers it (the kernel
        // answers EBADF for one that is not open), as selectors do.
        let src = unsafe { borrow_raw(fd) };
        if known {
            match epoll::modify(&self.epoll, src, data, flags) {
                // NOTE: a descriptor closed and reopened under the same number
                // was dropped from epoll by the kernel; register it afresh.
                Err(Errno::NOENT) => epoll::add(&self.epoll, src, data, flags)?,
                r => r?,
            }
        } else {
            epoll::add(&self.epoll, src, data, flags)?;
        }
        Ok(())
    }

    /// Forgets `fd`. Errors are ignored, as selectors' EpollSelector does:
    /// a closed descriptor has already left the epoll set.
    pub fn remove(&self, fd: RawFd) {
        // SAFETY: as in `set_interest`: one epoll_ctl on the number.
        let _ignored = epoll::delete(&self.epoll, unsafe { borrow_raw(fd) });
    }

    /// The epoll descriptor, for the doorbell (doorbell.rs) to poll.
    pub fn epoll_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// Waits up to `timeout_ms` (None: forever) and appends what became
    /// ready; returns how many events the kernel reported, the wake-up
    /// descriptor's included.
    pub fn wait(
        &self,
        buf: &mut EventBuf,
        out: &mut Vec<Readiness>,
        timeout_ms: Option<u64>,
    ) -> Result<usize, WaitError> {
        let buf = &mut buf.0;
        buf.clear();
        buf.reserve(MAX_EVENTS);
        let ts = timeout_ms.map(|ms| Timespec {
            tv_sec: (ms / 1000) as i64,
            tv_nsec: ((ms % 1000) * 1_000_000) as i64,
        });
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(buf),
            ts.as_ref(),
        ) {
            Ok(_) => {}
            Err(Errno::INTR) => return Err(WaitError::Interrupted),
            Err(e) => return Err(WaitError::Os(e.into())),
        }
        for ev in buf.iter() {
            let key = ev.data.u64();
            let flags = ev.flags;
            if key == WAKE_KEY {
                self.drain_wake();
                continue;
            }
            // Like selectors.EpollSelector: an error or hang-up wakes both
            // sides, so the reader sees EOF and the writer sees the error.
            out.push(Readiness {
                fd: key as RawFd,
                readable: !(flags - EventFlags::OUT).is_empty(),
                writable: !(flags - EventFlags::IN).is_empty(),
            });
        }
        Ok(buf.len())
    }

    /// Wakes a wait in progress, or the next one, from any thread.
    pub fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            // EAGAIN means the counter is already non-zero: still awake.
            let _ignored = rustix::io::write(&self.wake_fd, &1u64.to_ne_bytes());
        }
    }

    fn drain_wake(&self) {
        // NOTE: read first, then clear the flag. The other order loses a
        // wake-up: a `wake()` between the two would see the flag clear,
        // write, and have its write swallowed by our read, leaving the flag
        // set with nothing in the eventfd — and every later `wake()` silent.
        let mut b = [0u8; 8];
        let _ignored = rustix::io::read(self.wake_fd.as_fd(), &mut b);
        self.wake_pending.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn level_triggered_reports_again_while_ready() {
        let p = Poller::new().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut &b, b"x").unwrap();
        p.set_interest(a.as_raw_fd(), true, false, false).unwrap();
        let (mut buf, mut out) = (EventBuf::default(), Vec::new());
        for _ in 0..3 {
            out.clear();
            assert!(p.wait(&mut buf, &mut out, Some(0)).is_ok());
            assert_eq!(out.len(), 1, "unread data keeps the fd ready");
            assert!(out[0].readable && !out[0].writable);
        }
        p.remove(a.as_raw_fd());
        out.clear();
        assert!(p.wait(&mut buf, &mut out, Some(0)).is_ok());
        assert!(out.is_empty());
    }

    #[test]
    fn wake_from_another_thread_ends_a_blocking_wait() {
        let p = std::sync::Arc::new(Poller::new().unwrap());
        let p2 = p.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            p2.wake();
        });
        let (mut buf, mut out) = (EventBuf::default(), Vec::new());
        assert!(p.wait(&mut buf, &mut out, None).is_ok());
        assert!(out.is_empty(), "the wake-up is not an I/O event");
        t.join().unwrap();
        // The wake-up was consumed: a zero timeout now returns nothing.
        assert!(p.wait(&mut buf, &mut out, Some(0)).is_ok());
        assert!(out.is_empty());
    }

    #[test]
    fn closed_and_reused_descriptor_is_registered_again() {
        let p = Poller::new().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        p.set_interest(fd, true, false, false).unwrap();
        // dup2 over `fd` closes the registered file and puts another under the
        // same number, as a close-then-open by other code would.
        let (c, d) = UnixStream::pair().unwrap();
        let mut owned: std::os::fd::OwnedFd = a.into();
        rustix::io::dup2(&c, &mut owned).unwrap();
        assert_eq!(owned.as_raw_fd(), fd);
        std::io::Write::write_all(&mut &d, b"x").unwrap();
        assert!(p.set_interest(fd, true, false, true).is_ok());
        let (mut buf, mut out) = (EventBuf::default(), Vec::new());
        assert!(p.wait(&mut buf, &mut out, Some(0)).is_ok());
        assert_eq!(out.len(), 1);
    }
}
