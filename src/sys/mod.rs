//! The operating-system layer: the only place descriptor numbers become
//! Rust's I/O-safe types, and the system calls the transports make, typed:
//! each takes a [`HeldFd`] and reports a [`SysError`].

use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags, Shutdown, SocketAddrAny, SocketFlags};
use std::io::IoSlice;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

/// Borrows a descriptor that Python code handed us as an integer, for one
/// system call.
///
/// # Safety
/// `fd` must be open, and stay open, until the returned borrow is last
/// used; the caller uses it for a single system call on a number that the
/// Python object it came from holds open meanwhile.
pub unsafe fn borrow_raw(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: the caller's contract above.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// The descriptor of a socket or pipe that a transport holds open — through
/// its Python socket or pipe object, or as an `OwnedFd` — until the
/// transport closes it, after which it makes no call through it. A plain
/// number to copy around; the promise is made once, by [`HeldFd::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldFd(RawFd);

impl HeldFd {
    /// # Safety
    /// `fd` is open, and the caller (a transport) keeps it open for as
    /// long as it makes system calls through the result: it holds the
    /// object that owns it and stops calling once it has closed it.
    pub unsafe fn new(fd: RawFd) -> Self {
        Self(fd)
    }

    pub fn raw(self) -> RawFd {
        self.0
    }

    fn as_fd(self) -> BorrowedFd<'static> {
        // SAFETY: `new`'s contract: the holder keeps the descriptor open
        // while it calls through this value.
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }
}

/// How a non-blocking system call failed. asyncio retries later on
/// BlockingIOError and InterruptedError alike (`except (BlockingIOError,
/// InterruptedError)`); anything else is an error to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysError {
    /// EAGAIN/EWOULDBLOCK or EINTR: nothing done, try again when ready.
    Again,
    Os(Errno),
}

impl From<Errno> for SysError {
    fn from(e: Errno) -> Self {
        match e {
            Errno::AGAIN | Errno::INTR => SysError::Again,
            e => SysError::Os(e),
        }
    }
}

pub type SysResult<T> = Result<T, SysError>;

pub fn recv(fd: HeldFd, buf: &mut [u8]) -> SysResult<usize> {
    Ok(rustix::net::recv(fd.as_fd(), buf, RecvFlags::empty())?.0)
}

/// A datagram and who sent it.
pub fn recvfrom(fd: HeldFd, buf: &mut [u8]) -> SysResult<(usize, Option<SocketAddrAny>)> {
    let (n, _, addr) = rustix::net::recvfrom(fd.as_fd(), buf, RecvFlags::empty())?;
    Ok((n, addr))
}

pub fn send(fd: HeldFd, data: &[u8]) -> SysResult<usize> {
    Ok(rustix::net::send(fd.as_fd(), data, SendFlags::empty())?)
}

pub fn sendto(fd: HeldFd, data: &[u8], addr: &std::net::SocketAddr) -> SysResult<usize> {
    Ok(rustix::net::sendto(
        fd.as_fd(),
        data,
        SendFlags::empty(),
        addr,
    )?)
}

pub fn read(fd: HeldFd, buf: &mut [u8]) -> SysResult<usize> {
    Ok(rustix::io::read(fd.as_fd(), buf)?)
}

pub fn write(fd: HeldFd, data: &[u8]) -> SysResult<usize> {
    Ok(rustix::io::write(fd.as_fd(), data)?)
}

pub fn writev(fd: HeldFd, slices: &[IoSlice<'_>]) -> SysResult<usize> {
    Ok(rustix::io::writev(fd.as_fd(), slices)?)
}

/// A connection, non-blocking and close-on-exec, and its peer's address.
pub fn accept(fd: HeldFd) -> SysResult<(OwnedFd, Option<SocketAddrAny>)> {
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    Ok(rustix::net::acceptfrom_with(fd.as_fd(), flags)?)
}

pub fn shutdown_write(fd: HeldFd) -> SysResult<()> {
    Ok(rustix::net::shutdown(fd.as_fd(), Shutdown::Write)?)
}

pub fn getsockname(fd: HeldFd) -> SysResult<SocketAddrAny> {
    Ok(rustix::net::getsockname(fd.as_fd())?)
}

pub fn getpeername(fd: HeldFd) -> SysResult<Option<SocketAddrAny>> {
    Ok(rustix::net::getpeername(fd.as_fd())?)
}

/// `pidfd_open(pid)`: a descriptor that turns readable when the child
/// exits (ENOSYS before Linux 5.3, ESRCH for no such process).
pub fn pidfd_open(pid: rustix::process::Pid) -> Result<OwnedFd, Errno> {
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
}

/// `waitpid(pid, WNOHANG)`: the child's status if it has exited and is
/// now reaped, None while it runs.
pub fn try_reap(pid: rustix::process::Pid) -> Result<Option<rustix::process::WaitStatus>, Errno> {
    Ok(rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG)?.map(|(_, s)| s))
}

/// `waitpid(pid, 0)`, retried on EINTR, until the child is reaped (or
/// ECHILD says someone else did it).
pub fn reap_blocking(pid: rustix::process::Pid) {
    while let Err(Errno::INTR) =
        rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
    {}
}

/// A reusable buffer for `epoll_wait` results.
///
/// rustix's `Event` can carry a pointer as its user data, which makes it
/// neither Send nor Sync; we only ever store descriptor numbers there, so
/// the buffer may move with the loop between threads.
#[derive(Default)]
pub struct EventBuf(pub Vec<rustix::event::epoll::Event>);

// SAFETY: the only user data we put in an Event is a u64 descriptor number
// (see poller.rs); no pointer is ever stored or dereferenced.
unsafe impl Send for EventBuf {}
// SAFETY: as above; shared references only read plain integers.
unsafe impl Sync for EventBuf {}

/// Where reads land before their bytes are copied into a Python `bytes`.
///
/// Page-aligned on purpose: the kernel's copy into a destination that is
/// not cache-line aligned (a large `Vec` from malloc starts 16 bytes into
/// its mapping) runs several times slower — 1 GiB read from a pipe took
/// 1.0 s of CPU into a buffer at offset 16 against 0.29 s at offset 0.
pub struct ReadScratch {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl ReadScratch {
    const ALIGN: usize = 4096;

    /// Runs `f` on the thread's buffer in `key` (of `len` bytes); if that
    /// buffer is already in use — code run from inside `f`, such as a
    /// finalizer or an OpenSSL callback, read again on this thread — on a
    /// fresh buffer of the same size, so that re-entry never panics.
    pub fn with<R>(
        key: &'static std::thread::LocalKey<std::cell::RefCell<ReadScratch>>,
        len: usize,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> R {
        key.with(|cell| match cell.try_borrow_mut() {
            Ok(mut s) => f(&mut s[..]),
            Err(_) => f(&mut vec![0u8; len][..]),
        })
    }

    pub fn new(len: usize) -> Self {
        let buf = vec![0u8; len + Self::ALIGN];
        let start = (Self::ALIGN - buf.as_ptr() as usize % Self::ALIGN) % Self::ALIGN;
        Self { buf, start, len }
    }
}

impl std::ops::Deref for ReadScratch {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl std::ops::DerefMut for ReadScratch {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
}
