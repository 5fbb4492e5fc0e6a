//! The timer queue: a binary heap ordered by (deadline, scheduling order).
//!
//! # Implementation
//! asyncio keeps its `TimerHandle`s in a `heapq` list keyed by deadline. This
//! heap runs heapq's own algorithms (`heappush`'s sift-down, `heappop`'s
//! bottom-up sift-up, `heapify`) over a `Vec`, comparing with `<` as
//! `TimerHandle.__lt__` does, and adds a sequence number so that timers with
//! equal deadlines fire in the order they were scheduled (heapq alone does not
//! promise that). For ordinary deadlines the comparison is a strict total
//! order, so any correct heap would pop the same sequence; running heapq's
//! exact steps matters for NaN, which compares false both ways: where a NaN
//! timer ends up, and so when it fires, depends on the heap's history exactly
//! as it does in asyncio's list.
//!
//! A cancelled timer stays in the heap until it reaches the top or until
//! cancelled entries make up more than half of a heap of over 100 entries,
//! when the heap is rebuilt without them — CPython's rule, which keeps the
//! cost amortised O(log n) and the memory bounded by twice the live timers,
//! so a million cancelled timers are not kept alive.

/// CPython's `_MIN_SCHEDULED_TIMER_HANDLES`.
pub const MIN_SCHEDULED_TO_PURGE: usize = 100;

struct Entry<T> {
    when: f64,
    seq: u64,
    item: T,
}

impl<T> Entry<T> {
    /// `TimerHandle.__lt__`, with the scheduling order breaking ties. A NaN
    /// deadline is neither before nor after anything, as in Python.
    fn lt(&self, other: &Self) -> bool {
        self.when < other.when || (self.when == other.when && self.seq < other.seq)
    }
}

/// A heap of timers of any payload type.
pub struct TimerHeap<T> {
    heap: Vec<Entry<T>>,
    next_seq: u64,
}

impl<T> Default for TimerHeap<T> {
    fn default() -> Self {
        Self {
            heap: Vec::new(),
            next_seq: 0,
        }
    }
}

impl<T> TimerHeap<T> {
    /// `heapq.heappush`.
    pub fn push(&mut self, when: f64, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { when, seq, item });
        self.sift_down(0, self.heap.len() - 1);
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The head of the heap (`_scheduled[0]`) and its deadline.
    pub fn peek(&self) -> Option<(f64, &T)> {
        self.heap.first().map(|e| (e.when, &e.item))
    }

    /// `heapq.heappop`: the last entry takes the head's place and sifts up.
    pub fn pop(&mut self) -> Option<(f64, T)> {
        let last = self.heap.pop()?;
        let head = if self.heap.is_empty() {
            last
        } else {
            let head = std::mem::replace(&mut self.heap[0], last);
            self.sift_up(0);
            head
        };
        Some((head.when, head.item))
    }

    /// True when CPython would rebuild the heap to drop cancelled entries.
    pub fn should_purge(&self, cancelled: usize) -> bool {
        let n = self.heap.len();
        n > MIN_SCHEDULED_TO_PURGE && cancelled * 2 > n
    }

    /// Removes every entry for which `dead` holds and hands them back, so the
    /// caller decides where they are dropped (dropping a Python object can run
    /// arbitrary code). The survivors keep their list order and are
    /// heapified, as asyncio's list comprehension and `heapify` do.
    pub fn purge(&mut self, mut dead: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut removed = Vec::new();
        let mut kept = Vec::with_capacity(self.heap.len());
        for e in std::mem::take(&mut self.heap) {
            if dead(&e.item) {
                removed.push(e.item);
            } else {
                kept.push(e);
            }
        }
        kept.shrink_to_fit();
        self.heap = kept;
        for i in (0..self.heap.len() / 2).rev() {
            self.sift_up(i);
        }
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
            .into_iter()
            .map(|e| e.item)
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.heap.iter().map(|e| &e.item)
    }

    /// heapq's `_siftdown(heap, startpos, pos)`: the entry at `pos` moves up
    /// towards `start` while it is less than its parent.
    fn sift_down(&mut self, start: usize, mut pos: usize) {
        while pos > start {
            let parent = (pos - 1) / 2;
            if !self.heap[pos].lt(&self.heap[parent]) {
                break;
            }
            self.heap.swap(pos, parent);
            pos = parent;
        }
    }

    /// heapq's `_siftup(heap, pos)`: the smaller child moves up until a leaf
    /// is reached (the right one unless the left is less), then the entry
    /// that was at `pos` sifts down from that leaf.
    fn sift_up(&mut self, mut pos: usize) {
        let end = self.heap.len();
        let start = pos;
        let mut child = 2 * pos + 1;
        while child < end {
            let right = child + 1;
            if right < end && !self.heap[child].lt(&self.heap[right]) {
                child = right;
            }
            self.heap.swap(pos, child);
            pos = child;
            child = 2 * pos + 1;
        }
        self.sift_down(start, pos);
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
    fn nan_stays_where_heapq_leaves_it() {
        // heappush compares the new entry with its parent: NaN < x is false,
        // so a NaN pushed after a timer stays below it, and one pushed first
        // stays at the head.
        let mut h = TimerHeap::default();
        h.push(0.3, "timer");
        h.push(f64::NAN, "nan");
        assert_eq!(h.pop().unwrap().1, "timer");
        assert_eq!(h.pop().unwrap().1, "nan");
        let mut h = TimerHeap::default();
        h.push(f64::NAN, "nan");
        h.push(f64::INFINITY, "inf");
        h.push(1.0, "one");
        assert_eq!(h.pop().unwrap().1, "nan");
        assert_eq!(h.pop().unwrap().1, "one");
        assert_eq!(h.pop().unwrap().1, "inf");
    }

    #[test]
    fn pops_sorted_after_any_history() {
        // A deterministic shuffle of pushes, pops and a purge: whatever the
        // history, a heap without NaN pops in (deadline, scheduling) order.
        let mut h = TimerHeap::default();
        let mut x: u64 = 12345;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % 1000
        };
        for i in 0..5_000u64 {
            h.push(next() as f64, i);
            if next() % 3 == 0 {
                h.pop();
            }
        }
        h.purge(|&i| i % 7 == 0);
        let mut last = (f64::NEG_INFINITY, 0u64);
        while let Some((when, i)) = h.pop() {
            assert!(i % 7 != 0);
            assert!(when > last.0 || (when == last.0 && i > last.1));
            last = (when, i);
        }
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
