//! The write buffer of a transport: what the kernel did not take yet.
//!
//! # Implementation
//! `bytes` objects are kept by reference (they are immutable), with an
//! offset for a partially sent first chunk; mutable buffers (bytearray,
//! memoryview) are copied, because the caller may reuse them once `write`
//! returns. Flushing sends up to `IOV_MAX` chunks with one `writev`.

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::collections::VecDeque;
use std::io::IoSlice;

/// Linux's IOV_MAX.
const IOV_MAX: usize = 1024;

enum Chunk {
    Shared(Py<PyBytes>),
    Owned(Vec<u8>),
}

#[derive(Default)]
pub struct WriteBuffer {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already sent.
    offset: usize,
    len: usize,
}

impl WriteBuffer {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push_bytes(&mut self, b: Py<PyBytes>, len: usize) {
        if len > 0 {
            self.len += len;
            self.chunks.push_back(Chunk::Shared(b));
        }
    }

    /// Queues the rest of `b` after its first `sent` bytes, which the
    /// kernel already took: by reference, not by copy, so a large write
    /// that only partly went out costs no memcpy of the remainder.
    pub fn push_bytes_rest(&mut self, py: Python<'_>, b: Py<PyBytes>, sent: usize) {
        let len = b.bind(py).as_bytes().len();
        if sent >= len {
            return;
        }
        if sent > 0 && !self.chunks.is_empty() {
            // Only the front chunk can start part-way; never reached by the
            // transports, which send at once only when nothing is queued.
            self.push_copy(&b.bind(py).as_bytes()[sent..]);
            return;
        }
        if self.chunks.is_empty() {
            self.offset = sent;
        }
        self.len += len - sent;
        self.chunks.push_back(Chunk::Shared(b));
    }

    /// Queues what the kernel did not take of a write: `bytes` is the
    /// content of `data`, whose first `sent` bytes went out. A `bytes`
    /// object is kept by reference; anything else is copied, since its
    /// owner may change it once `write` returns.
    pub fn push_rest(&mut self, data: &Bound<'_, PyAny>, bytes: &[u8], sent: usize) {
        match data.cast::<PyBytes>() {
            Ok(b) => self.push_bytes_rest(data.py(), b.clone().unbind(), sent),
            Err(_) => self.push_copy(&bytes[sent..]),
        }
    }

    pub fn push_copy(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.len += data.len();
            self.chunks.push_back(Chunk::Owned(data.to_vec()));
        }
    }

    /// Drops everything, handing shared chunks back for a GIL-safe drop.
    pub fn clear(&mut self) -> Vec<Py<PyBytes>> {
        self.len = 0;
        self.offset = 0;
        self.chunks
            .drain(..)
            .filter_map(|c| match c {
                Chunk::Shared(b) => Some(b),
                Chunk::Owned(_) => None,
            })
            .collect()
    }

    /// The pending data as I/O slices for one vectored write.
    pub fn slices<'a>(&'a self, py: Python<'a>) -> Vec<IoSlice<'a>> {
        let mut out = Vec::with_capacity(self.chunks.len().min(IOV_MAX));
        for (i, c) in self.chunks.iter().take(IOV_MAX).enumerate() {
            let bytes: &[u8] = match c {
                Chunk::Shared(b) => b.as_bytes(py),
                Chunk::Owned(v) => v,
            };
            let start = if i == 0 { self.offset } else { 0 };
            out.push(IoSlice::new(&bytes[start..]));
        }
        out
    }

    /// Forgets the first `n` bytes, which the kernel took. Fully sent shared
    /// chunks are handed back to be dropped by the caller.
    pub fn consume(&mut self, py: Python<'_>, mut n: usize, done: &mut Vec<Py<PyBytes>>) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let size = match front {
                Chunk::Shared(b) => b.as_bytes(py).len(),
                Chunk::Owned(v) => v.len(),
            } - self.offset;
            if n < size {
                self.offset += n;
                return;
            }
            n -= size;
            self.offset = 0;
            if let Some(Chunk::Shared(b)) = self.chunks.pop_front() {
                done.push(b);
            }
        }
    }

    pub fn traverse(&self, visit: &pyo3::gc::PyVisit<'_>) -> Result<(), pyo3::gc::PyTraverseError> {
        for c in &self.chunks {
            if let Chunk::Shared(b) = c {
                visit.call(b)?;
            }
        }
        Ok(())
    }
}
