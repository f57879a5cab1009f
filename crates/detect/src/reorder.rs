//! Bounded reorder buffer: events may arrive out of order within a lateness; they leave in
//! (timestamp, arrival) order once the newest timestamp seen is `lateness` past them.
//!
//! Events without a timestamp take the newest timestamp seen so far (so they stay in arrival
//! order among their neighbours); before any timestamp they pass straight through.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use jiff::{SignedDuration, Timestamp};

/// An item waiting in the buffer.
struct Pending<T> {
    at: Timestamp,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Pending<T> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}
impl<T> Eq for Pending<T> {}
impl<T> PartialOrd for Pending<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Pending<T> {
    // Reversed: BinaryHeap is a max-heap, we want the oldest first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .at
            .cmp(&self.at)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// Counters of the reorder buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReorderStats {
    /// Events that arrived later than the lateness allows (processed anyway, out of order).
    pub late: u64,
    /// Events released early because the buffer was full.
    pub forced: u64,
    /// Most events held at once.
    pub peak: usize,
    /// Times an event was so much older than the watermark (more than the reset interval, e.g.
    /// the next input file covers an earlier period) that ordering restarted from it.
    pub time_jumps: u64,
}

/// The reorder buffer.
pub struct Reorder<T> {
    heap: BinaryHeap<Pending<T>>,
    lateness: SignedDuration,
    reset_after: SignedDuration,
    capacity: usize,
    seq: u64,
    newest: Option<Timestamp>,
    released: Option<Timestamp>,
    stats: ReorderStats,
}

impl<T> Reorder<T> {
    /// A buffer holding events up to `lateness` behind the newest, at most `capacity` of them.
    /// An event more than `reset_after` older than the last released one starts a new epoch:
    /// everything held is released and ordering restarts from it.
    pub fn new(lateness: SignedDuration, reset_after: SignedDuration, capacity: usize) -> Self {
        Reorder {
            heap: BinaryHeap::new(),
            lateness,
            reset_after,
            capacity: capacity.max(1),
            seq: 0,
            newest: None,
            released: None,
            stats: ReorderStats::default(),
        }
    }

    /// Add an item with its timestamp; push released items (oldest first) onto `out`.
    pub fn push(&mut self, at: Option<Timestamp>, item: T, out: &mut Vec<(Option<Timestamp>, T)>) {
        let at = match (at, self.newest) {
            (Some(t), _) => t,
            (None, Some(n)) => n,
            (None, None) => {
                out.push((None, item));
                return;
            }
        };
        let jump = self
            .released
            .or(self.newest)
            .and_then(|r| r.checked_sub(self.reset_after).ok())
            .is_some_and(|limit| at < limit);
        if jump {
            self.stats.time_jumps += 1;
            self.release(out, true);
            self.newest = None;
            self.released = None;
        }
        if self.newest.is_none_or(|n| at > n) {
            self.newest = Some(at);
        }
        if self.released.is_some_and(|r| at < r) {
            // Too late to be put in order.
            self.stats.late += 1;
            out.push((Some(at), item));
            return;
        }
        self.seq += 1;
        self.heap.push(Pending {
            at,
            seq: self.seq,
            item,
        });
        self.stats.peak = self.stats.peak.max(self.heap.len());
        self.release(out, false);
    }

    /// Release everything (end of input).
    pub fn flush(&mut self, out: &mut Vec<(Option<Timestamp>, T)>) {
        self.release(out, true);
    }

    /// The newest timestamp seen (the watermark).
    pub fn newest(&self) -> Option<Timestamp> {
        self.newest
    }

    /// Counters.
    pub fn stats(&self) -> ReorderStats {
        self.stats
    }

    /// Events currently held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    fn release(&mut self, out: &mut Vec<(Option<Timestamp>, T)>, all: bool) {
        let limit = self.newest.and_then(|n| n.checked_sub(self.lateness).ok());
        // Each iteration pops one item: bounded by the heap size.
        while let Some(top) = self.heap.peek() {
            let due = all || limit.is_some_and(|l| top.at <= l);
            let full = self.heap.len() > self.capacity;
            if !due && !full {
                break;
            }
            if !due {
                self.stats.forced += 1;
            }
            let Some(p) = self.heap.pop() else { break };
            self.released = Some(p.at);
            out.push((Some(p.at), p.item));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Option<Timestamp> {
        Timestamp::from_second(s).ok()
    }

    #[test]
    fn reorders_within_lateness() {
        let mut r = Reorder::new(
            SignedDuration::from_secs(5),
            SignedDuration::from_secs(1000),
            100,
        );
        let mut out = Vec::new();
        r.push(ts(10), "a", &mut out);
        r.push(ts(8), "b", &mut out);
        r.push(None, "c", &mut out); // takes 10
        assert!(out.is_empty());
        r.push(ts(16), "d", &mut out);
        let got: Vec<_> = out.iter().map(|(_, x)| *x).collect();
        assert_eq!(got, vec!["b", "a", "c"]);
        out.clear();
        r.push(ts(1), "late", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(r.stats().late, 1);
        out.clear();
        r.flush(&mut out);
        assert_eq!(out.iter().map(|(_, x)| *x).collect::<Vec<_>>(), vec!["d"]);
    }

    #[test]
    fn a_much_older_event_starts_a_new_epoch() {
        let mut r = Reorder::new(
            SignedDuration::from_secs(5),
            SignedDuration::from_secs(100),
            10,
        );
        let mut out = Vec::new();
        r.push(ts(10_000), "new1", &mut out);
        r.push(ts(10_010), "new2", &mut out);
        assert_eq!(out.len(), 1);
        r.push(ts(50), "old1", &mut out);
        r.push(ts(49), "old0", &mut out);
        r.push(ts(60), "old2", &mut out);
        r.flush(&mut out);
        let got: Vec<_> = out.iter().map(|(_, x)| *x).collect();
        assert_eq!(got, vec!["new1", "new2", "old0", "old1", "old2"]);
        assert_eq!(r.stats().time_jumps, 1);
        assert_eq!(r.stats().late, 0);
    }

    #[test]
    fn capacity_forces_release() {
        let mut r = Reorder::new(
            SignedDuration::from_secs(1000),
            SignedDuration::from_secs(5000),
            2,
        );
        let mut out = Vec::new();
        for i in 0..5 {
            r.push(ts(100 + i), i, &mut out);
        }
        assert_eq!(r.len(), 2);
        assert_eq!(r.stats().forced, 3);
    }

    #[test]
    fn untimed_before_any_timestamp_passes_through() {
        let mut r: Reorder<u8> = Reorder::new(
            SignedDuration::from_secs(5),
            SignedDuration::from_secs(1000),
            10,
        );
        let mut out = Vec::new();
        r.push(None, 1, &mut out);
        assert_eq!(out.len(), 1);
        assert!(r.is_empty());
    }
}
