//! RA-DIT retriever fine-tuning (R-ft) "corpus pairs": self-supervised (query, target) pairs cut
//! from the retrieval corpus itself, the start of a chunk as the query and its end as the
//! target the language model should find likely given the retrieved background.

use serde::{Deserialize, Serialize};

use crate::rng::{mix, stream};

/// Purpose tag of the chunk-order stream (kept apart from the tags in `rng.rs`).
const TAG_CORPUS_PAIRS: u64 = 0x5241_4449_545f_5052; // "RADIT_PR"

/// Chunks with fewer words than this give no pair.
pub const MIN_PAIR_WORDS: usize = 4;

/// One corpus pair: a query and a target cut from the same chunk, never overlapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusPair {
    /// Id of the chunk both texts come from.
    pub chunk: u32,
    /// The leading words of the chunk, joined by single spaces.
    pub query: String,
    /// The trailing words of the chunk, joined by single spaces.
    pub target: String,
}

/// Cuts `n` corpus pairs from `chunks` (`(chunk id, text)`).
///
/// Chunks are visited in a shuffled order drawn from `seed`; when `n` exceeds the number of
/// usable chunks, a new pass with a fresh shuffle starts, so every usable chunk is used once
/// per pass. The same `(chunks, n, words, seed)` always gives the same pairs.
///
/// Words are whitespace-separated and rejoined by single spaces. A chunk of `w` words gives:
/// - `w >= 2 * words`: the query is its first `words` words, the target its last `words`;
/// - `4 <= w < 2 * words`: the chunk is split in half, the query is its first `w / 2` words and
///   the target the remaining `w - w / 2` (the middle word of an odd count goes to the target);
/// - `w < 4` ([`MIN_PAIR_WORDS`]): no pair; such chunks are skipped and never counted.
///
/// Returns fewer than `n` pairs only when no chunk is usable or `words == 0` (then it returns
/// no pair at all).
pub fn corpus_pairs(chunks: &[(u32, &str)], n: usize, words: usize, seed: u64) -> Vec<CorpusPair> {
    if words == 0 || n == 0 {
        return Vec::new();
    }
    // Split each chunk once; unusable chunks drop out before the shuffle.
    let usable: Vec<(u32, Vec<&str>)> = chunks
        .iter()
        .map(|&(id, text)| (id, text.split_whitespace().collect::<Vec<_>>()))
        .filter(|(_, w)| w.len() >= MIN_PAIR_WORDS)
        .collect();
    if usable.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(n);
    let mut order: Vec<usize> = (0..usable.len()).collect();
    let mut pass = 0u64;
    while out.len() < n {
        order.sort_unstable();
        stream(mix(&[seed, TAG_CORPUS_PAIRS, pass])).shuffle(&mut order);
        for &i in order.iter().take(n - out.len()) {
            let (chunk, w) = &usable[i];
            out.push(cut_pair(*chunk, w, words));
        }
        pass += 1;
    }
    out
}

/// Cuts one pair from the words of a chunk (`w.len() >= MIN_PAIR_WORDS`).
fn cut_pair(chunk: u32, w: &[&str], words: usize) -> CorpusPair {
    let (query, target) = if w.len() >= 2 * words {
        (&w[..words], &w[w.len() - words..])
    } else {
        w.split_at(w.len() / 2)
    };
    CorpusPair {
        chunk,
        query: query.join(" "),
        target: target.join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> String {
        (0..n)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn long_chunks_give_head_and_tail() {
        let t = text(10);
        let pairs = corpus_pairs(&[(7, &t)], 1, 3, 0);
        assert_eq!(
            pairs,
            vec![CorpusPair {
                chunk: 7,
                query: "w0 w1 w2".into(),
                target: "w7 w8 w9".into(),
            }]
        );
        // Exactly 2 * words: head and tail meet without overlap.
        let t = text(6);
        let p = &corpus_pairs(&[(1, &t)], 1, 3, 0)[0];
        assert_eq!(
            (p.query.as_str(), p.target.as_str()),
            ("w0 w1 w2", "w3 w4 w5")
        );
    }

    #[test]
    fn short_chunks_split_in_half() {
        let t = text(5);
        let p = &corpus_pairs(&[(1, &t)], 1, 8, 0)[0];
        assert_eq!((p.query.as_str(), p.target.as_str()), ("w0 w1", "w2 w3 w4"));
        let t = text(4);
        let p = &corpus_pairs(&[(1, &t)], 1, 3, 0)[0];
        assert_eq!((p.query.as_str(), p.target.as_str()), ("w0 w1", "w2 w3"));
        // Whitespace of any kind separates words and is rejoined by single spaces.
        let p = &corpus_pairs(&[(1, " a\tb\n\nc   d ")], 1, 8, 0)[0];
        assert_eq!((p.query.as_str(), p.target.as_str()), ("a b", "c d"));
    }

    #[test]
    fn tiny_chunks_are_skipped() {
        let t4 = text(4);
        let chunks = [(1, "one two three"), (2, ""), (3, t4.as_str()), (4, "a b")];
        let pairs = corpus_pairs(&chunks, 5, 2, 9);
        assert_eq!(pairs.len(), 5);
        assert!(pairs.iter().all(|p| p.chunk == 3));
        assert!(corpus_pairs(&[(1, "a b c")], 3, 2, 0).is_empty());
        assert!(corpus_pairs(&[], 3, 2, 0).is_empty());
        assert!(corpus_pairs(&[(3, t4.as_str())], 3, 0, 0).is_empty());
        assert!(corpus_pairs(&[(3, t4.as_str())], 0, 2, 0).is_empty());
    }

    #[test]
    fn seeded_shuffle_with_new_passes() {
        let texts: Vec<String> = (0..20).map(|i| format!("c{i} {}", text(9))).collect();
        let chunks: Vec<(u32, &str)> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u32 * 10, t.as_str()))
            .collect();
        let a = corpus_pairs(&chunks, 50, 3, 42);
        assert_eq!(a, corpus_pairs(&chunks, 50, 3, 42));
        assert_eq!(a.len(), 50);
        // Each pass of 20 uses every chunk once.
        for pass in a.chunks(20) {
            let mut ids: Vec<u32> = pass.iter().map(|p| p.chunk).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), pass.len());
        }
        // Pairs come from their own chunk.
        for p in &a {
            assert!(p.query.starts_with(&format!("c{} ", p.chunk / 10)));
            assert_eq!(p.target, "w6 w7 w8");
        }
        // The order is shuffled, differs between passes and between seeds.
        let ids = |v: &[CorpusPair]| v.iter().map(|p| p.chunk).collect::<Vec<_>>();
        let identity: Vec<u32> = (0..20).map(|i| i * 10).collect();
        assert_ne!(ids(&a[..20]), identity);
        assert_ne!(ids(&a[..20]), ids(&a[20..40]));
        assert_ne!(ids(&a), ids(&corpus_pairs(&chunks, 50, 3, 43)));
        // A shorter request is a prefix of a longer one.
        assert_eq!(corpus_pairs(&chunks, 7, 3, 42), a[..7].to_vec());
    }
}
