//! The timer queue: a min-heap ordered by (deadline, scheduling order).
//!
//! # Implementation
//! asyncio keeps its `TimerHandle`s in a binary heap (`heapq`) keyed by
//! deadline; we do the same, and add a sequence number so that timers with
//! equal deadlines fire in the order they were scheduled (heapq alone does not
//! promise that). A cancelled timer stays in the heap until it reaches the
//! top or until cancelled entries make up more than half of a heap of over
//! 100 entries, when the heap is rebuilt without them — CPython's rule, which
//! keeps the cost amortised O(log n) and the memory bounded by twice the live
//! timers, so a million cancelled timers are not kept alive.
//!
//! Deadlines are compared with `f64::total_cmp`, a NaN deadline counting as
//! minus infinity: asyncio's comparisons leave a NaN timer at the head of its
//! heap, where it fires on the next iteration.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// CPython's `_MIN_SCHEDULED_TIMER_HANDLES`.
pub const MIN_SCHEDULED_TO_PURGE: usize = 100;

struct Entry<T> {
    when: f64,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    // Reversed, so that std's max-heap pops the earliest deadline first.
    fn cmp(&self, other: &Self) -> Ordering {
        key(other.when)
            .total_cmp(&key(self.when))
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

fn key(when: f64) -> f64 {
    if when.is_nan() {
        f64::NEG_INFINITY
    } else {
        when
    }
}

/// A heap of timers of any payload type.
pub struct TimerHeap<T> {
    heap: BinaryHeap<Entry<T>>,
    next_seq: u64,
}

impl<T> Default for TimerHeap<T> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }
}

impl<T> TimerHeap<T> {
    pub fn push(&mut self, when: f64, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { when, seq, item });
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The earliest deadline and its payload.
    pub fn peek(&self) -> Option<(f64, &T)> {
        self.heap.peek().map(|e| (e.when, &e.item))
    }

    pub fn pop(&mut self) -> Option<(f64, T)> {
        self.heap.pop().map(|e| (e.when, e.item))
    }

    /// True when CPython would rebuild the heap to drop cancelled entries.
    pub fn should_purge(&self, cancelled: usize) -> bool {
        let n = self.heap.len();
        n > MIN_SCHEDULED_TO_PURGE && cancelled * 2 > n
    }

    /// Removes every entry for which `dead` holds and hands them back, so the
    /// caller decides where they are dropped (dropping a Python object can run
    /// arbitrary code).
    pub fn purge(&mut self, mut dead: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut removed = Vec::new();
        let mut kept = Vec::with_capacity(self.heap.len());
        for e in std::mem::take(&mut self.heap).into_vec() {
            if dead(&e.item) {
                removed.push(e.item);
            } else {
                kept.push(e);
            }
        }
        kept.shrink_to_fit();
        self.heap = BinaryHeap::from(kept);
        removed
    }

    /// Gives back memory a burst left behind once the heap has shrunk to a
    /// quarter of it.
    pub fn shrink_if_sparse(&mut self) {
        let cap = self.heap.capacity();
        if cap > 1024 && self.heap.len() < cap / 4 {
            self.heap.shrink_to(self.heap.len() * 2);
        }
    }

    /// Empties the heap, handing the payloads back.
    pub fn drain(&mut self) -> Vec<T> {
        std::mem::take(&mut self.heap)
            .into_vec()
            .into_iter()
            .map(|e| e.item)
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.heap.iter().map(|e| &e.item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_deadline_then_scheduling_order() {
        let mut h = TimerHeap::default();
        h.push(2.0, "c");
        h.push(1.0, "a");
        h.push(1.0, "b");
        h.push(0.5, "first");
        let order: Vec<_> = std::iter::from_fn(|| h.pop().map(|(_, x)| x)).collect();
        assert_eq!(order, ["first", "a", "b", "c"]);
    }

    #[test]
    fn equal_deadlines_keep_fifo_order_at_scale() {
        let mut h = TimerHeap::default();
        for i in 0..10_000 {
            h.push(5.0, i);
        }
        for i in 0..10_000 {
            assert_eq!(h.pop().unwrap().1, i);
        }
    }

    #[test]
    fn nan_sorts_first() {
        let mut h = TimerHeap::default();
        h.push(f64::INFINITY, "inf");
        h.push(1.0, "one");
        h.push(f64::NAN, "nan");
        assert_eq!(h.pop().unwrap().1, "nan");
        assert_eq!(h.pop().unwrap().1, "one");
        assert_eq!(h.pop().unwrap().1, "inf");
    }

    #[test]
    fn purge_rule_and_memory() {
        let mut h = TimerHeap::default();
        for i in 0..1_000_000u32 {
            h.push(f64::from(i), i);
        }
        assert!(!h.should_purge(500_000));
        assert!(h.should_purge(500_001));
        let removed = h.purge(|&i| i % 4 != 0);
        assert_eq!(removed.len(), 750_000);
        assert_eq!(h.len(), 250_000);
        assert!(h.heap.capacity() < 300_000, "purge must give memory back");
        assert_eq!(h.pop().unwrap().1, 0);
        assert_eq!(h.pop().unwrap().1, 4);
    }

    #[test]
    fn small_heaps_are_never_purged() {
        let h: TimerHeap<()> = TimerHeap::default();
        assert!(!h.should_purge(0));
        let mut h = TimerHeap::default();
        for _ in 0..100 {
            h.push(0.0, ());
        }
        assert!(!h.should_purge(100));
    }
}
