//! The operating-system layer: the only place raw file descriptors are
//! turned into Rust's I/O-safe types.

use std::os::fd::{BorrowedFd, RawFd};

/// Borrows a descriptor that Python code handed us as an integer.
///
/// asyncio's API takes raw descriptors whose lifetime the caller manages, so
/// the borrow is only ever used for the duration of one syscall, which
/// validates the number itself (EBADF for a closed one).
pub fn borrow_raw(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: the caller only uses the result within a single syscall; the
    // kernel rejects a descriptor that is not open with EBADF, so a stale
    // number cannot cause memory unsafety, only an error we report.
    unsafe { BorrowedFd::borrow_raw(fd) }
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
