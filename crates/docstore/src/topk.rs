//! Bounded top-k selection with a deterministic order: higher score first, then lower id.

use serde::{Deserialize, Serialize};

/// A chunk id with its score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// Chunk row in the index.
    pub id: u32,
    /// Inner product, BM25 score or fused score (higher is better).
    pub score: f32,
}

/// `true` if `a` ranks after `b` (lower score, or equal score and higher id).
#[inline]
fn worse(a: &Scored, b: &Scored) -> bool {
    a.score < b.score || (a.score == b.score && a.id > b.id)
}

/// Sorts best first (score descending, id ascending); NaN scores go last.
pub(crate) fn sort_hits(v: &mut [Scored]) {
    v.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or_else(|| a.score.is_nan().cmp(&b.score.is_nan()))
            .then(a.id.cmp(&b.id))
    });
}

/// Keeps the `k` best of the items pushed: a binary min-heap whose root is the worst kept item.
#[derive(Clone, Debug)]
pub(crate) struct TopK {
    k: usize,
    heap: Vec<Scored>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            heap: Vec::with_capacity(k),
        }
    }

    /// Scores must exceed this to possibly enter (−∞ until `k` items are held).
    #[inline]
    pub(crate) fn threshold(&self) -> f32 {
        if self.heap.len() < self.k || self.k == 0 {
            if self.k == 0 {
                f32::INFINITY
            } else {
                f32::NEG_INFINITY
            }
        } else {
            self.heap[0].score
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, item: Scored) {
        if self.k == 0 || item.score.is_nan() {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(item);
            let mut i = self.heap.len() - 1;
            while i > 0 {
                let parent = (i - 1) / 2;
                if worse(&self.heap[i], &self.heap[parent]) {
                    self.heap.swap(i, parent);
                    i = parent;
                } else {
                    break;
                }
            }
        } else if worse(&self.heap[0], &item) {
            self.heap[0] = item;
            let n = self.heap.len();
            let mut i = 0;
            loop {
                let (l, r) = (2 * i + 1, 2 * i + 2);
                let mut m = i;
                if l < n && worse(&self.heap[l], &self.heap[m]) {
                    m = l;
                }
                if r < n && worse(&self.heap[r], &self.heap[m]) {
                    m = r;
                }
                if m == i {
                    break;
                }
                self.heap.swap(i, m);
                i = m;
            }
        }
    }

    pub(crate) fn merge(&mut self, other: TopK) {
        for s in other.heap {
            self.push(s);
        }
    }

    /// The kept items, best first.
    pub(crate) fn into_sorted(self) -> Vec<Scored> {
        let mut v = self.heap;
        sort_hits(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_best_with_id_tie_break() {
        let mut t = TopK::new(3);
        for (id, s) in [(5, 0.5), (1, 0.9), (2, 0.5), (3, 0.1), (4, 0.5), (0, 0.5)] {
            t.push(Scored { id, score: s });
        }
        let ids: Vec<u32> = t.into_sorted().iter().map(|s| s.id).collect();
        assert_eq!(ids, [1, 0, 2]);
        let mut z = TopK::new(0);
        z.push(Scored { id: 1, score: 1.0 });
        assert!(z.into_sorted().is_empty());
    }
}
