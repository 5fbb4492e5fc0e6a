//! The doorbell: an iteration that must not block polls I/O without a
//! system call while nothing has become ready.
//!
//! asyncio polls its selector on every iteration, with a zero timeout while
//! callbacks are ready; so does ferroloop, for fairness: a socket that
//! became readable runs at most one iteration behind a `call_soon` chain.
//! On a busy loop that zero-timeout `epoll_wait` is most of an iteration's
//! cost (~170 ns on a 2-vCPU VM, against ~250 ns for a whole `call_soon`
//! hop). The loops that skip it (rloop, rsloop) poll only every ~50-100
//! iterations, which is the unfairness the loop must not buy speed with.
//!
//! # Implementation
//! The epoll descriptor is itself pollable: it is readable while any
//! descriptor in its set is ready. After a few zero-timeout polls in a row
//! that found nothing, the loop arms a one-shot `IORING_OP_POLL_ADD` on it
//! in an io_uring. From then on, as long as the ring shows no sign of it
//! firing, the epoll set is known to have been empty since that last poll,
//! and the next zero-timeout poll is skipped: the check reads two words of
//! memory the kernel shares with us. Whatever readies a descriptor wakes
//! the epoll's pollers, this one among them — a write from this thread
//! before it returns, another thread or process at once; an `epoll_ctl` of
//! a descriptor already ready also does — and the next iteration polls.
//!
//! The ring is set up with `DEFER_TASKRUN` (its completion work runs only
//! when the loop enters the ring, so it never interrupts a system call of
//! the program's, as plain io_uring task work would) and `TASKRUN_FLAG`
//! (the kernel flags in the shared ring that such work is pending, which is
//! the doorbell ringing). That needs `SINGLE_ISSUER` and Linux 6.1; where
//! io_uring is missing or forbidden (seccomp, `io_uring_disabled`), the
//! loop polls every iteration as before. A one-shot poll is re-armed only
//! after polls found nothing again, so a loop busy with I/O pays nothing
//! but those polls, as before.

use io_uring::{opcode, types, IoUring};
use rustix::process::{getpid, Pid};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::ThreadId;

/// Empty polls in a row before the doorbell is armed. Arming is a system
/// call of its own, so a loop whose polls often find something does not
/// arm after each of them.
const QUIET_POLLS_TO_ARM: u32 = 4;

/// Set once io_uring has failed to set up in this process: no loop tries
/// again.
static UNAVAILABLE: AtomicBool = AtomicBool::new(false);

/// One loop's doorbell; used only by the thread running the loop.
#[derive(Default)]
pub struct Doorbell {
    /// Made the first time the doorbell is armed, in the thread that arms
    /// it: with `SINGLE_ISSUER` only that thread (of that process: a
    /// forked child inherits the ring but may not enter it) may enter it.
    ring: Option<(IoUring, ThreadId, Pid)>,
    armed: bool,
    /// Arming failed on a ring that was set up: the loop polls as before.
    broken: bool,
    /// Empty polls since the last one that found something.
    quiet: u32,
    /// Which arming a completion answers: one from an earlier arming may
    /// still arrive, and means nothing now.
    generation: u64,
}

impl Doorbell {
    /// Before a poll that must not block: true when the epoll set has
    /// stayed empty since the doorbell was armed after an empty poll, so
    /// that poll would find nothing and can be skipped.
    pub fn silent(&mut self) -> bool {
        if !self.armed {
            return false;
        }
        let Some((ring, _, _)) = &mut self.ring else {
            return false;
        };
        // Pending completion work is the poll firing; a posted completion
        // of this arming is it having fired.
        let generation = self.generation;
        let rang =
            ring.submission().taskrun() || ring.completion().any(|c| c.user_data() == generation);
        if rang {
            self.armed = false;
            self.quiet = 0;
        }
        !rang
    }

    /// After a poll of `epoll` that collected `events` events (the wake-up
    /// descriptor's too): arms the doorbell once polls have found nothing
    /// a few times in a row.
    pub fn after_poll(&mut self, epoll: RawFd, events: usize) {
        if events > 0 {
            self.quiet = 0;
            return;
        }
        if self.armed {
            return;
        }
        self.quiet = self.quiet.saturating_add(1);
        if self.quiet >= QUIET_POLLS_TO_ARM {
            self.armed = self.arm(epoll);
        }
    }

    /// Submits a one-shot poll for `epoll` becoming readable.
    fn arm(&mut self, epoll: RawFd) -> bool {
        if self.broken {
            return false;
        }
        let (this_thread, this_process) = (std::thread::current().id(), getpid());
        if self
            .ring
            .as_ref()
            .is_some_and(|(_, t, p)| (*t, *p) != (this_thread, this_process))
        {
            // The loop now runs in another thread (asyncio allows that,
            // one thread at a time) or in a forked child: the old ring
            // cannot be entered here.
            self.ring = None;
        }
        if self.ring.is_none() {
            if UNAVAILABLE.load(Ordering::Relaxed) {
                return false;
            }
            match new_ring() {
                Ok(ring) => self.ring = Some((ring, this_thread, this_process)),
                Err(_) => {
                    UNAVAILABLE.store(true, Ordering::Relaxed);
                    return false;
                }
            }
        }
        let Some((ring, _, _)) = &mut self.ring else {
            return false;
        };
        self.generation = self.generation.wrapping_add(1);
        let poll = opcode::PollAdd::new(types::Fd(epoll), POLLIN)
            .build()
            .user_data(self.generation);
        // SAFETY: a poll refers to no memory of ours, and the kernel takes
        // its own reference to the epoll file when the entry is submitted
        // (just below), so the operation never outlives what it uses.
        if unsafe { ring.submission().push(&poll) }.is_err() {
            return false;
        }
        // Entering the ring also runs the work an earlier arming left
        // pending (the TASKRUN flag); its completions are dropped here.
        let submitted = ring.submit().is_ok_and(|n| n == 1);
        if !submitted {
            // Not worth a failing system call per busy iteration.
            self.ring = None;
            self.broken = true;
            return false;
        }
        let generation = self.generation;
        let fired_at_once = ring.completion().any(|c| c.user_data() == generation);
        !fired_at_once
    }
}

/// `POLLIN`, as io_uring's poll takes it.
const POLLIN: u32 = rustix::event::PollFlags::IN.bits() as u32;

fn new_ring() -> std::io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .build(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::event::epoll;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    /// An epoll set with one idle socket registered, and its peer.
    fn idle_set() -> (std::os::fd::OwnedFd, UnixStream, UnixStream) {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        epoll::add(&ep, &a, epoll::EventData::new_u64(1), epoll::EventFlags::IN).unwrap();
        (ep, a, b)
    }

    fn armed(ep: RawFd) -> Doorbell {
        let mut d = Doorbell::default();
        for _ in 0..QUIET_POLLS_TO_ARM {
            assert!(!d.silent(), "not armed yet");
            d.after_poll(ep, 0);
        }
        assert!(d.armed, "io_uring with DEFER_TASKRUN is available here");
        d
    }

    #[test]
    fn silent_while_nothing_is_ready() {
        let (ep, _a, _b) = idle_set();
        let mut d = armed(ep.as_raw_fd());
        for _ in 0..100 {
            assert!(d.silent());
        }
    }

    #[test]
    fn rings_for_a_write_from_this_thread() {
        let (ep, _a, mut b) = idle_set();
        let mut d = armed(ep.as_raw_fd());
        assert!(d.silent());
        b.write_all(b"x").unwrap();
        assert!(!d.silent(), "the write readied a descriptor in the set");
        assert!(!d.silent(), "disarmed until polls find nothing again");
    }

    #[test]
    fn rings_for_a_write_from_another_thread() {
        let (ep, _a, b) = idle_set();
        let mut d = armed(ep.as_raw_fd());
        std::thread::spawn(move || (&b).write_all(b"x").unwrap())
            .join()
            .unwrap();
        assert!(!d.silent());
    }

    #[test]
    fn rings_for_a_descriptor_added_ready() {
        let (ep, _a, _b) = idle_set();
        let mut d = armed(ep.as_raw_fd());
        let (c, mut e) = UnixStream::pair().unwrap();
        e.write_all(b"x").unwrap();
        assert!(d.silent(), "not in the set yet");
        epoll::add(&ep, &c, epoll::EventData::new_u64(2), epoll::EventFlags::IN).unwrap();
        assert!(!d.silent());
    }

    #[test]
    fn does_not_arm_while_the_set_is_ready() {
        let (ep, _a, mut b) = idle_set();
        b.write_all(b"x").unwrap();
        let mut d = Doorbell::default();
        // Polls that (wrongly) report nothing: arming finds the set ready.
        for _ in 0..QUIET_POLLS_TO_ARM {
            d.after_poll(ep.as_raw_fd(), 0);
        }
        assert!(!d.silent());
    }

    #[test]
    fn rearms_after_ringing() {
        let (ep, a, mut b) = idle_set();
        let mut d = armed(ep.as_raw_fd());
        b.write_all(b"x").unwrap();
        assert!(!d.silent());
        let mut buf = [0u8; 1];
        std::io::Read::read_exact(&mut &a, &mut buf).unwrap();
        for _ in 0..QUIET_POLLS_TO_ARM {
            d.after_poll(ep.as_raw_fd(), 0);
        }
        assert!(d.silent(), "armed again, and a stale completion ignored");
        b.write_all(b"y").unwrap();
        assert!(!d.silent());
    }
}
