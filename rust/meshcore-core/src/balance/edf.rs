//! Earliest-deadline-first scheduler (as Envoy's `EdfScheduler`): every entry has a virtual
//! deadline; a pick takes the smallest (ties by a fixed per-entry key) and moves it on by
//! 1 / weight, the weight read at that moment. Long-run shares are proportional to weights; with
//! constant integer weights every run of Σw picks from a rebuild hands out exactly wᵢ to each.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Debug, Clone, Copy)]
struct Entry {
    deadline: f64,
    tie: u32,
    idx: u32,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    // Reversed: `BinaryHeap` is a max-heap and the earliest deadline must be on top.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .deadline
            .total_cmp(&self.deadline)
            .then_with(|| other.tie.cmp(&self.tie))
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct Edf {
    heap: BinaryHeap<Entry>,
}

impl Edf {
    pub(super) fn clear(&mut self) {
        self.heap.clear();
    }

    /// Adds endpoint `idx` with its first deadline `1 / weight`; `tie` orders equal deadlines.
    pub(super) fn push(&mut self, idx: usize, tie: u32, weight: f64) {
        self.heap.push(Entry {
            deadline: 1.0 / weight,
            tie,
            idx: idx as u32,
        });
    }

    /// The endpoint with the earliest deadline, re-armed at `deadline + 1 / weight(idx)`; `None`
    /// when empty. One sift-down, O(log n).
    pub(super) fn pick(&mut self, mut weight: impl FnMut(usize) -> f64) -> Option<usize> {
        let mut top = self.heap.peek_mut()?;
        let idx = top.idx as usize;
        top.deadline += 1.0 / weight(idx);
        Some(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::Edf;

    #[test]
    fn shares_and_ties() {
        let w = [1.0, 2.0, 3.0];
        let mut e = Edf::default();
        for (i, &wi) in w.iter().enumerate() {
            e.push(i, i as u32, wi);
        }
        let mut counts = [0; 3];
        for _ in 0..6 {
            counts[e.pick(|i| w[i]).unwrap()] += 1;
        }
        assert_eq!(counts, [1, 2, 3]);
        e.clear();
        assert_eq!(e.pick(|_| 1.0), None);
    }
}
