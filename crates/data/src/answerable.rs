//! Which QA examples can be answered from a corpus: an answer "occurs" in a text when its
//! SQuAD-normalized word sequence ([`normalize_tokens`]) is a contiguous run of the text's
//! normalized words, so matches respect word boundaries ("art" does not match "party").
//!
//! Because matching is on normalized words, it inherits the SQuAD normalization's quirks: ASCII
//! punctuation is deleted rather than split on (`1990-95` is the single word `199095`, so the
//! answer `1990` does not occur in it) and non-ASCII punctuation (curly quotes) stays attached
//! to its word.

use std::fmt;

use crate::dataset::fnv1a;
use crate::error::DataError;
use crate::metrics::normalize_tokens;
use crate::rng::{mix, splitmix64, stream};

/// Default longest answer, in normalized words, that an [`AnswerIndex`] can find.
pub const DEFAULT_MAX_ANSWER_WORDS: usize = 8;

/// Purpose tag of the holdout stream (kept apart from the tags in `rng.rs`).
const TAG_SPLIT_HOLDOUT: u64 = 0x5241_4449_545f_484f; // "RADIT_HO"

/// Start value of every n-gram hash chain.
const NGRAM_SEED: u64 = 0x6E67_7261_6D5F_6878; // "ngram_hx"

/// Compacting the hash list once it holds this many more entries than after the last
/// compaction bounds the memory of a build to about twice the final index.
const COMPACT_SLACK: usize = 1 << 22;

fn token_hash(token: &str) -> u64 {
    splitmix64(fnv1a(token.as_bytes()))
}

/// Extends an n-gram hash by one word hash; the chain is order- and length-sensitive.
fn chain(h: u64, token: u64) -> u64 {
    splitmix64(h ^ token)
}

/// A set of every normalized word n-gram (1 to `max_words` words) of a corpus, stored as
/// sorted 64-bit hashes, to test quickly whether an answer occurs anywhere in the corpus.
///
/// N-grams never span two texts. Hashing is deterministic (FNV-1a and SplitMix64, no random
/// keys), so an index is the same on every run; two different n-grams share a hash with a
/// probability of about `len / 2^64` per lookup, negligible at corpus scale (a 1M-word corpus
/// gives at most 8M n-grams, i.e. 64 MB).
#[derive(Clone, PartialEq, Eq)]
pub struct AnswerIndex {
    hashes: Vec<u64>,
    max_words: usize,
    texts: usize,
}

impl fmt::Debug for AnswerIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnswerIndex")
            .field("texts", &self.texts)
            .field("ngrams", &self.hashes.len())
            .field("max_words", &self.max_words)
            .finish()
    }
}

impl AnswerIndex {
    /// Indexes the texts with the default [`DEFAULT_MAX_ANSWER_WORDS`].
    pub fn new<I>(texts: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::build(texts, DEFAULT_MAX_ANSWER_WORDS)
    }

    /// Indexes the texts, keeping n-grams of up to `max_words` normalized words; answers with
    /// more words are never found. `max_words == 0` is [`DataError::InvalidConfig`].
    pub fn with_max_words<I>(texts: I, max_words: usize) -> Result<Self, DataError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        if max_words == 0 {
            return Err(DataError::InvalidConfig(
                "answer index max_words must be at least 1".into(),
            ));
        }
        Ok(Self::build(texts, max_words))
    }

    fn build<I>(texts: I, max_words: usize) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut hashes = Vec::new();
        let mut compacted = 0usize;
        let mut count = 0usize;
        let mut words: Vec<u64> = Vec::new();
        for text in texts {
            count += 1;
            words.clear();
            words.extend(
                normalize_tokens(text.as_ref())
                    .iter()
                    .map(|t| token_hash(t)),
            );
            for start in 0..words.len() {
                let mut h = NGRAM_SEED;
                for &w in &words[start..words.len().min(start + max_words)] {
                    h = chain(h, w);
                    hashes.push(h);
                }
            }
            if hashes.len() > 2 * compacted + COMPACT_SLACK {
                hashes.sort_unstable();
                hashes.dedup();
                compacted = hashes.len();
            }
        }
        hashes.sort_unstable();
        hashes.dedup();
        hashes.shrink_to_fit();
        Self {
            hashes,
            max_words,
            texts: count,
        }
    }

    /// Whether the answer occurs in some indexed text, as a whole-word run of normalized
    /// words. An answer that normalizes to nothing (`""`, `"the"`, `"?!"`) is never found, nor
    /// is one of more than [`AnswerIndex::max_words`] normalized words (too long to index).
    pub fn contains(&self, answer: &str) -> bool {
        let tokens = normalize_tokens(answer);
        if tokens.is_empty() || tokens.len() > self.max_words {
            return false;
        }
        let h = tokens
            .iter()
            .fold(NGRAM_SEED, |h, t| chain(h, token_hash(t)));
        self.hashes.binary_search(&h).is_ok()
    }

    /// Whether any of the answers occurs ([`AnswerIndex::contains`]); false for no answer.
    pub fn any<S: AsRef<str>>(&self, answers: &[S]) -> bool {
        answers.iter().any(|a| self.contains(a.as_ref()))
    }

    /// The longest answer, in normalized words, this index can find.
    pub fn max_words(&self) -> usize {
        self.max_words
    }

    /// Number of texts indexed.
    pub fn texts(&self) -> usize {
        self.texts
    }

    /// Number of distinct n-grams indexed.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether no n-gram was indexed (no text had a word).
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

/// The normalized answers worth matching (those that normalize to at least one word).
fn answer_tokens<S: AsRef<str>>(answers: &[S]) -> Vec<Vec<String>> {
    answers
        .iter()
        .map(|a| normalize_tokens(a.as_ref()))
        .filter(|t| !t.is_empty())
        .collect()
}

fn occurs(text: &[String], answers: &[Vec<String>]) -> bool {
    answers
        .iter()
        .any(|a| a.len() <= text.len() && text.windows(a.len()).any(|w| w == a.as_slice()))
}

/// Whether any answer occurs in `text` as a whole-word run of normalized words (answer "art"
/// does not match "party"; "The Beatles!" matches "... by the beatles."). Answers that
/// normalize to nothing never match. No length limit, unlike [`AnswerIndex`].
pub fn contains_answer<S: AsRef<str>>(text: &str, answers: &[S]) -> bool {
    let answers = answer_tokens(answers);
    !answers.is_empty() && occurs(&normalize_tokens(text), &answers)
}

/// The 0-based rank of the first chunk, in retrieval order, that contains an answer
/// ([`contains_answer`]), or `None`: the input of [`crate::RetrievalMetrics::add`]. Answers
/// are normalized once for all chunks.
pub fn first_answer_rank<I, S>(chunks: I, answers: &[S]) -> Option<usize>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
    S: AsRef<str>,
{
    let answers = answer_tokens(answers);
    if answers.is_empty() {
        return None;
    }
    chunks
        .into_iter()
        .position(|c| occurs(&normalize_tokens(c.as_ref()), &answers))
}

/// Splits `items` into `(rest, holdout)` with a seeded shuffle: `holdout` gets
/// `round(holdout_fraction * items.len())` items, `rest` the others; the two are disjoint (by
/// position), together hold every item once, and each keeps the input order. The same
/// `(items.len(), holdout_fraction, seed)` always selects the same positions.
///
/// `holdout_fraction` is clamped to `[0, 1]`; NaN counts as 0.
pub fn split_holdout<T: Clone>(items: &[T], holdout_fraction: f64, seed: u64) -> (Vec<T>, Vec<T>) {
    let n = items.len();
    let fraction = if holdout_fraction.is_nan() {
        0.0
    } else {
        holdout_fraction.clamp(0.0, 1.0)
    };
    let size = ((fraction * n as f64).round() as usize).min(n);
    let order = seeded_order(n, seed);
    partition(items, &order[..size])
}

/// Fold `fold` of a `folds`-fold cross-validation split: `(train, held_out)`, where the
/// held-out parts of the folds `0..folds` are disjoint, cover every item once and differ in
/// size by at most one. The split is a seeded shuffle, reproducible from `seed`; both parts
/// keep the input order. Errors when `folds < 2` or `fold >= folds`.
pub fn kfold_split<T: Clone>(
    items: &[T],
    folds: usize,
    fold: usize,
    seed: u64,
) -> Result<(Vec<T>, Vec<T>), DataError> {
    if folds < 2 || fold >= folds {
        return Err(DataError::InvalidConfig(format!(
            "cross-validation fold {fold} of {folds}: need folds >= 2 and fold < folds"
        )));
    }
    let order = seeded_order(items.len(), seed);
    let (start, end) = (fold * items.len() / folds, (fold + 1) * items.len() / folds);
    Ok(partition(items, &order[start..end]))
}

/// The positions `0..n` in a seeded random order.
fn seeded_order(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    stream(mix(&[seed, TAG_SPLIT_HOLDOUT])).shuffle(&mut order);
    order
}

/// `(items not at `held` positions, items at `held` positions)`, both in input order.
fn partition<T: Clone>(items: &[T], held_positions: &[usize]) -> (Vec<T>, Vec<T>) {
    let mut held = vec![false; items.len()];
    for &i in held_positions {
        held[i] = true;
    }
    let size = held_positions.len();
    let (mut rest, mut holdout) = (
        Vec::with_capacity(items.len() - size),
        Vec::with_capacity(size),
    );
    for (item, h) in items.iter().zip(held) {
        if h {
            holdout.push(item.clone());
        } else {
            rest.push(item.clone());
        }
    }
    (rest, holdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn word_boundaries_on_normalized_tokens() {
        let text = "The party was at the Art Institute, by The Beatles.";
        assert!(contains_answer(text, &["art"]));
        assert!(!contains_answer("The party was fun", &["art"]));
        assert!(contains_answer(text, &["the beatles!"]));
        assert!(contains_answer(text, &["ART INSTITUTE"]));
        assert!(contains_answer(text, &["institute by beatles"]));
        assert!(!contains_answer(text, &["art museum"]));
        assert!(!contains_answer(text, &["", "the", "?!"]));
        assert!(!contains_answer(text, &[] as &[&str]));
        assert!(contains_answer(text, &["nope", "Party"]));
        assert!(contains_answer("U.S.A. forces", &["usa"]));
        assert!(!contains_answer("in 1990-95", &["1990"]));
    }

    #[test]
    fn index_agrees_with_direct_match() {
        let corpus = [
            "The party was at the Art Institute, by The Beatles.",
            "Paris is the capital of France.",
            "",
            "one two three four five six seven eight nine ten",
        ];
        let idx = AnswerIndex::new(corpus);
        assert_eq!(idx.texts(), 4);
        assert_eq!(idx.max_words(), DEFAULT_MAX_ANSWER_WORDS);
        assert!(!idx.is_empty());
        let probes = [
            "art",
            "Art Institute",
            "the beatles",
            "beatles paris",
            "paris",
            "Capital of France",
            "france one",
            "par",
            "",
            "the",
            "one two three four five six seven eight",
            "three four five six seven eight nine ten",
            "ten nine",
        ];
        for p in probes {
            let direct = corpus.iter().any(|t| contains_answer(t, &[p]));
            assert_eq!(idx.contains(p), direct, "{p:?}");
        }
        // N-grams do not span texts.
        assert!(!idx.contains("beatles paris"));
        // Longer than max_words: never found, even though it occurs.
        let nine = "one two three four five six seven eight nine";
        assert!(contains_answer(corpus[3], &[nine]));
        assert!(!idx.contains(nine));
        let idx9 = AnswerIndex::with_max_words(corpus, 9).unwrap();
        assert!(idx9.contains(nine));
        assert!(idx9.len() > idx.len());
        assert!(idx.any(&s(&["nothing", "the beatles"])));
        assert!(!idx.any(&s(&["nothing", ""])));
        assert!(!idx.any(&[] as &[String]));
    }

    #[test]
    fn index_is_deterministic_and_validates() {
        let corpus = ["a b c", "c b a", "b c d"];
        assert_eq!(AnswerIndex::new(corpus), AnswerIndex::new(corpus));
        assert!(matches!(
            AnswerIndex::with_max_words(corpus, 0),
            Err(DataError::InvalidConfig(_))
        ));
        // Articles are dropped by normalization: "a b c" is [b, c].
        let idx = AnswerIndex::with_max_words(corpus, 2).unwrap();
        // Distinct n-grams: b, c, bc / c, b, cb / b, c, d, bc, cd -> {b, c, d, bc, cb, cd}.
        assert_eq!(idx.len(), 6);
        assert!(AnswerIndex::new(["", "the"]).is_empty());
    }

    #[test]
    fn index_at_scale() {
        // 200k words over 2k texts; words drawn from a small vocabulary so n-grams repeat.
        let mut rng = stream(5);
        let texts: Vec<String> = (0..2_000)
            .map(|_| {
                (0..100)
                    .map(|_| format!("w{}", rng.below(500)))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let idx = AnswerIndex::new(&texts);
        for t in texts.iter().step_by(97) {
            let words: Vec<&str> = t.split_whitespace().collect();
            assert!(idx.contains(&words[40..48].join(" ")));
            assert!(idx.contains(words[99]));
        }
        assert!(!idx.contains("w1 w1 w1 w1 w1 w1"));
        assert!(!idx.contains("w500"));
    }

    #[test]
    fn first_rank_of_an_answer_bearing_chunk() {
        let chunks = ["nothing here", "a party", "the art of war", "art again"];
        assert_eq!(first_answer_rank(chunks, &["Art"]), Some(2));
        assert_eq!(first_answer_rank(chunks, &["war", "party"]), Some(1));
        assert_eq!(first_answer_rank(chunks, &["peace"]), None);
        assert_eq!(first_answer_rank(chunks, &["the"]), None);
        assert_eq!(first_answer_rank(Vec::<String>::new(), &["art"]), None);
    }

    #[test]
    fn kfold_folds_partition_the_items() {
        let items: Vec<usize> = (0..23).collect();
        let mut seen = Vec::new();
        for fold in 0..5 {
            let (train, held) = kfold_split(&items, 5, fold, 9).unwrap();
            assert_eq!(train.len() + held.len(), 23);
            assert!(held.len() == 4 || held.len() == 5, "{}", held.len());
            assert!(held.iter().all(|h| !train.contains(h)));
            assert!(held.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(kfold_split(&items, 5, fold, 9).unwrap().1, held);
            seen.extend(held);
        }
        seen.sort();
        assert_eq!(seen, items);
        assert_ne!(
            kfold_split(&items, 5, 0, 9).unwrap().1,
            kfold_split(&items, 5, 0, 10).unwrap().1
        );
        assert!(kfold_split(&items, 1, 0, 0).is_err());
        assert!(kfold_split(&items, 3, 3, 0).is_err());
    }

    #[test]
    fn holdout_split() {
        let items: Vec<u32> = (0..101).collect();
        let (rest, held) = split_holdout(&items, 0.1, 7);
        assert_eq!((rest.len(), held.len()), (91, 10));
        assert_eq!(split_holdout(&items, 0.1, 7), (rest.clone(), held.clone()));
        // Disjoint, complete, each in input order.
        let mut all = [rest.clone(), held.clone()].concat();
        all.sort_unstable();
        assert_eq!(all, items);
        assert!(rest.windows(2).all(|w| w[0] < w[1]));
        assert!(held.windows(2).all(|w| w[0] < w[1]));
        // Seeded: another seed picks other items; not simply the first ones.
        assert_ne!(split_holdout(&items, 0.1, 8).1, held);
        assert_ne!(held, (0..10).collect::<Vec<_>>());
        // round(fraction * n), clamped fractions.
        assert_eq!(split_holdout(&items[..10], 0.25, 1).1.len(), 3); // 2.5 -> 3
        assert_eq!(split_holdout(&items, 0.3, 1).1.len(), 30); // 30.3 -> 30
        assert_eq!(split_holdout(&items, 0.5, 1).1.len(), 51); // 50.5 -> 51
        assert_eq!(split_holdout(&items, 0.0, 1).1.len(), 0);
        assert_eq!(split_holdout(&items, 1.0, 1).0.len(), 0);
        assert_eq!(split_holdout(&items, 2.0, 1).1.len(), 101);
        assert_eq!(split_holdout(&items, -1.0, 1).1.len(), 0);
        assert_eq!(split_holdout(&items, f64::NAN, 1).1.len(), 0);
        let empty: (Vec<u32>, Vec<u32>) = split_holdout(&[], 0.5, 1);
        assert_eq!(empty, (vec![], vec![]));
    }
}
