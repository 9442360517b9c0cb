//! Earliest-deadline-first scheduler (as Envoy's `EdfScheduler`): every entry has a virtual
//! deadline; a pick takes the smallest (ties by a fixed per-entry key) and moves it on by
//! 1 / weight, the weight read at that moment. Long-run shares are proportional to weights; with
//! constant integer weights every run of Σw picks from a rebuild hands out exactly wᵢ to each.
//!

#[derive(Debug, Clone, Copy)]
struct Entry {
    deadline: f64,
    tie: u32,
    idx: u32,
}

impl Entry {
    /// Deadlines are positive and finite, so their bit patterns order as the values do and
    /// the comparison stays in integers.
    fn key(&self) -> (u64, u32) {
        (self.deadline.to_bits(), self.tie)
    }

    fn before(&self, other: &Entry) -> bool {
        self.key() < other.key()
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct Edf {
    heap: Vec<Entry>,
}

impl Edf {
    pub(super) fn clear(&mut self) {
        self.heap.clear();
    }

    pub(super) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Adds endpoint `idx` with its first deadline `1 / weight`; `tie` orders equal deadlines.
    pub(super) fn push(&mut self, idx: usize, tie: u32, weight: f64) {
        let item = Entry {
            deadline: 1.0 / weight,
            tie,
            idx: idx as u32,
        };
        let mut i = self.heap.len();
        self.heap.push(item);
        while i > 0 {
            let parent = (i - 1) / 2;
            if !item.before(&self.heap[parent]) {
                break;
            }
            self.heap[i] = self.heap[parent];
            i = parent;
        }
        self.heap[i] = item;
    }

    /// The endpoint with the earliest deadline, re-armed at `deadline + 1 / weight(idx)`; `None`
    /// when empty. O(log n): the re-armed entry moves down the smaller-child path to the bottom
    /// and back up (Floyd's bottom-up sift, as std's `BinaryHeap` does), one comparison per
    /// level on the way down, chosen without a branch.
    pub(super) fn pick(&mut self, mut weight: impl FnMut(usize) -> f64) -> Option<usize> {
        let top = self.heap.first_mut()?;
        let idx = top.idx as usize;
        top.deadline += 1.0 / weight(idx);
        let item = *top;
        let n = self.heap.len();
        let mut i = 0;
        let mut child = 1;
        while child + 1 < n {
            child += usize::from(self.heap[child + 1].before(&self.heap[child]));
            self.heap[i] = self.heap[child];
            i = child;
            child = 2 * i + 1;
        }
        if child + 1 == n {
            self.heap[i] = self.heap[child];
            i = child;
        }
        while i > 0 {
            let parent = (i - 1) / 2;
            if !item.before(&self.heap[parent]) {
                break;
            }
            self.heap[i] = self.heap[parent];
            i = parent;
        }
        self.heap[i] = item;
        Some(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::Edf;
    use crate::rand::Rng;

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

    #[test]
    fn picks_in_deadline_order() {
        // Against a linear scan of the same deadlines, with weights drawn per pick.
        let mut rng = Rng::new(5);
        for n in [1usize, 2, 5, 17, 100] {
            let mut e = Edf::default();
            let mut deadline: Vec<f64> = Vec::new();
            for i in 0..n {
                let w = 1.0 + f64::from(rng.below(9) as u32);
                e.push(i, i as u32, w);
                deadline.push(1.0 / w);
            }
            for _ in 0..2000 {
                let want = (0..n)
                    .min_by(|&a, &b| deadline[a].total_cmp(&deadline[b]).then(a.cmp(&b)))
                    .unwrap();
                let w = 1.0 + f64::from(rng.below(9) as u32);
                let got = e.pick(|_| w).unwrap();
                assert_eq!(got, want);
                deadline[got] += 1.0 / w;
            }
        }
    }
}
