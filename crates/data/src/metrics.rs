//! Evaluation metrics.
//!
//! - Answers: SQuAD-style normalized exact match, token F1 and ROUGE-L (LCS F-measure), each
//!   the max over gold answers, accumulated by [`QaMetrics`].
//! - Retrieval: recall@k and MRR of the first answer-bearing chunk, accumulated by
//!   [`RetrievalMetrics`].

use std::collections::HashMap;

/// SQuAD normalization: lowercase, drop ASCII punctuation, drop the articles a/an/the as whole
/// words, collapse whitespace (same order as the official evaluation script).
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punct: String = lower
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    // The official script replaces `\b(a|an|the)\b` with a space: a word here is a maximal
    // run of word characters, as in Python's `\w`.
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut no_articles = String::with_capacity(no_punct.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if matches!(word.as_str(), "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in no_punct.chars() {
        if is_word(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut no_articles);
            no_articles.push(c);
        }
    }
    flush(&mut word, &mut no_articles);
    no_articles.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The whitespace-separated tokens of [`normalize_answer`]`(s)`: the word sequence every metric
/// and answer match of this crate compares.
pub fn normalize_tokens(s: &str) -> Vec<String> {
    normalize_answer(s)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// 1.0 when the normalized prediction equals some normalized gold answer, else 0.0.
pub fn exact_match<S: AsRef<str>>(prediction: &str, golds: &[S]) -> f64 {
    let p = normalize_answer(prediction);
    if golds.iter().any(|g| normalize_answer(g.as_ref()) == p) {
        1.0
    } else {
        0.0
    }
}

fn f1_one(prediction: &str, gold: &str) -> f64 {
    let p = normalize_answer(prediction);
    let g = normalize_answer(gold);
    let pt: Vec<&str> = p.split_whitespace().collect();
    let gt: Vec<&str> = g.split_whitespace().collect();
    // Both empty is a match (as in SQuAD 2.0's script); one empty scores 0.
    if pt.is_empty() || gt.is_empty() {
        return if pt.is_empty() && gt.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &gt {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0usize;
    for t in &pt {
        if let Some(c) = counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / pt.len() as f64;
    let recall = same as f64 / gt.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// Token-level F1 between normalized prediction and gold, max over gold answers (0 if none).
pub fn token_f1<S: AsRef<str>>(prediction: &str, golds: &[S]) -> f64 {
    golds
        .iter()
        .map(|g| f1_one(prediction, g.as_ref()))
        .fold(0.0, f64::max)
}

/// Length of the longest common subsequence of two token sequences (two-row dynamic program,
/// O(|a|·|b|) time, O(|b|) memory).
fn lcs_len<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L between a prediction and one reference: the F-measure (beta = 1) of
/// LCS precision (`lcs / |prediction|`) and recall (`lcs / |reference|`) over
/// [`normalize_tokens`] (so articles and punctuation do not count, unlike the `rouge-score`
/// package's tokenizer). As for F1, both empty scores 1.0 and one empty scores 0.0.
pub fn rouge_l(prediction: &str, reference: &str) -> f64 {
    let p = normalize_tokens(prediction);
    let r = normalize_tokens(reference);
    if p.is_empty() || r.is_empty() {
        return if p.is_empty() && r.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    let lcs = lcs_len(&p, &r);
    if lcs == 0 {
        return 0.0;
    }
    let precision = lcs as f64 / p.len() as f64;
    let recall = lcs as f64 / r.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// [`rouge_l`] of the prediction, max over gold answers (0 if none).
pub fn rouge_l_max<S: AsRef<str>>(prediction: &str, golds: &[S]) -> f64 {
    golds
        .iter()
        .map(|g| rouge_l(prediction, g.as_ref()))
        .fold(0.0, f64::max)
}

/// Running means of EM, F1 and ROUGE-L over a dev set.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QaMetrics {
    /// Predictions scored.
    pub count: usize,
    /// Sum of EM.
    pub em_sum: f64,
    /// Sum of F1.
    pub f1_sum: f64,
    /// Sum of ROUGE-L (max over gold answers).
    pub rouge_l_sum: f64,
}

impl QaMetrics {
    /// Scores one prediction against its gold answers.
    pub fn add<S: AsRef<str>>(&mut self, prediction: &str, golds: &[S]) {
        self.count += 1;
        self.em_sum += exact_match(prediction, golds);
        self.f1_sum += token_f1(prediction, golds);
        self.rouge_l_sum += rouge_l_max(prediction, golds);
    }

    /// Mean EM in [0, 1] (0 when empty).
    pub fn em(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.em_sum / self.count as f64
        }
    }

    /// Mean F1 in [0, 1] (0 when empty).
    pub fn f1(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.f1_sum / self.count as f64
        }
    }

    /// Mean ROUGE-L (max over gold answers) in [0, 1] (0 when empty).
    pub fn rouge_l(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.rouge_l_sum / self.count as f64
        }
    }
}

/// Retrieval quality over a set of queries: for each query, the 0-based rank of the first
/// relevant (answer-bearing) chunk in its retrieved list, or `None` when no retrieved chunk is
/// relevant. See [`crate::first_answer_rank`] to compute the rank from chunk texts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetrievalMetrics {
    ranks: Vec<Option<usize>>,
}

impl RetrievalMetrics {
    /// Records one query: the 0-based rank of its first relevant chunk, or `None`.
    pub fn add(&mut self, rank: Option<usize>) {
        self.ranks.push(rank);
    }

    /// Queries recorded.
    pub fn count(&self) -> usize {
        self.ranks.len()
    }

    /// The recorded ranks, in the order added.
    pub fn ranks(&self) -> &[Option<usize>] {
        &self.ranks
    }

    /// Recall@k: the fraction of queries whose first relevant chunk has rank `< k`
    /// (0 when empty; `recall_at(0)` is 0).
    pub fn recall_at(&self, k: usize) -> f64 {
        if self.ranks.is_empty() {
            return 0.0;
        }
        let hits = self
            .ranks
            .iter()
            .filter(|r| matches!(r, Some(r) if *r < k))
            .count();
        hits as f64 / self.ranks.len() as f64
    }

    /// Mean reciprocal rank: the mean of `1 / (rank + 1)`, counting 0 for `None`
    /// (0 when empty). Not cut off at any depth: it covers whatever list length was retrieved.
    pub fn mrr(&self) -> f64 {
        if self.ranks.is_empty() {
            return 0.0;
        }
        let sum: f64 = self
            .ranks
            .iter()
            .map(|r| r.map_or(0.0, |r| 1.0 / (r as f64 + 1.0)))
            .sum();
        sum / self.ranks.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_matches_squad() {
        assert_eq!(normalize_answer("The  Eiffel Tower!"), "eiffel tower");
        assert_eq!(
            normalize_answer("a cat, an apple & THE end."),
            "cat apple end"
        );
        assert_eq!(normalize_answer("theory of Anathema"), "theory of anathema");
        assert_eq!(normalize_answer("  \tU.S.A.\n"), "usa");
        assert_eq!(normalize_answer("the"), "");
        assert_eq!(normalize_answer("rock-'n'-roll"), "rocknroll");
        // Punctuation is removed before articles, so "the-end" becomes "theend" (kept).
        assert_eq!(normalize_answer("the-end"), "theend");
        assert_eq!(normalize_answer("Café the Ünïcode"), "café ünïcode");
    }

    #[test]
    fn exact_match_known_cases() {
        assert_eq!(exact_match("the Eiffel tower", &["Eiffel Tower"]), 1.0);
        assert_eq!(exact_match("Paris", &["London", "paris."]), 1.0);
        assert_eq!(exact_match("Paris, France", &["Paris"]), 0.0);
        assert_eq!(exact_match("x", &[] as &[&str]), 0.0);
    }

    #[test]
    fn f1_known_cases() {
        assert_eq!(token_f1("Paris", &["Paris"]), 1.0);
        // pred {paris, france}, gold {paris}: p=1/2 r=1 -> 2/3
        assert!((token_f1("Paris, France", &["Paris"]) - 2.0 / 3.0).abs() < 1e-12);
        // max over golds
        assert_eq!(token_f1("Paris, France", &["Lyon", "Paris France"]), 1.0);
        // repeated tokens count with multiplicity: pred [a1,a1,b], gold [a1,b,b]: same 2
        let f = token_f1("x x y", &["x y y"]);
        assert!((f - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(token_f1("London", &["Paris"]), 0.0);
        assert_eq!(token_f1("the", &["a"]), 1.0);
        assert_eq!(token_f1("", &["Paris"]), 0.0);
    }

    #[test]
    fn running_means() {
        let mut m = QaMetrics::default();
        assert_eq!((m.em(), m.f1(), m.rouge_l()), (0.0, 0.0, 0.0));
        m.add("Paris", &["Paris"]);
        m.add("Paris France", &["Paris"]);
        assert_eq!(m.count, 2);
        assert!((m.em() - 0.5).abs() < 1e-12);
        assert!((m.f1() - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        // ROUGE-L: 1.0, then lcs 1 of p=2, r=1 -> 2/3.
        assert!((m.rouge_l() - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn normalized_tokens() {
        assert_eq!(
            normalize_tokens("The  Eiffel Tower!"),
            vec!["eiffel", "tower"]
        );
        assert!(normalize_tokens(" the a , ").is_empty());
    }

    #[test]
    fn lcs_known_values() {
        fn t(s: &str) -> Vec<&str> {
            s.split_whitespace().collect()
        }
        assert_eq!(lcs_len(&t("a b c d"), &t("a c d")), 3);
        assert_eq!(lcs_len(&t("a b c b d a b"), &t("b d c a b a")), 4);
        assert_eq!(lcs_len(&t("x y"), &t("y x")), 1);
        assert_eq!(lcs_len(&t(""), &t("a")), 0);
    }

    #[test]
    fn rouge_l_known_values() {
        // Normalized: [cat sat on mat] vs [cat is on mat]: lcs 3 (cat on mat), p = r = 3/4.
        let r = rouge_l("the cat sat on the mat", "the cat is on the mat");
        assert!((r - 0.75).abs() < 1e-12, "{r}");
        assert_eq!(rouge_l("The Cat!", "the cat"), 1.0);
        // [police killed gunman] vs [gunman police killed]: lcs 2, p = r = 2/3.
        let r = rouge_l("police killed the gunman", "the gunman police killed");
        assert!((r - 2.0 / 3.0).abs() < 1e-12, "{r}");
        // p = 2/2, r = 2/4 -> 2/3.
        let r = rouge_l("cat mat", "cat sat on mat");
        assert!((r - 2.0 / 3.0).abs() < 1e-12, "{r}");
        assert_eq!(rouge_l("London", "Paris"), 0.0);
        assert_eq!(rouge_l("", "Paris"), 0.0);
        assert_eq!(rouge_l("the", "a"), 1.0);
        // Order matters for LCS, not for F1.
        assert!(rouge_l("y x", "x y") < token_f1("y x", &["x y"]));
        assert_eq!(rouge_l_max("cat mat", &["dog", "cat mat"]), 1.0);
        assert_eq!(rouge_l_max("cat", &[] as &[&str]), 0.0);
    }

    #[test]
    fn retrieval_metrics() {
        let mut m = RetrievalMetrics::default();
        assert_eq!((m.count(), m.recall_at(5), m.mrr()), (0, 0.0, 0.0));
        for r in [Some(0), Some(2), None, Some(9)] {
            m.add(r);
        }
        assert_eq!(m.count(), 4);
        assert_eq!(m.ranks(), &[Some(0), Some(2), None, Some(9)]);
        assert_eq!(m.recall_at(0), 0.0);
        assert_eq!(m.recall_at(1), 0.25);
        assert_eq!(m.recall_at(3), 0.5);
        assert_eq!(m.recall_at(10), 0.75);
        assert_eq!(m.recall_at(100), 0.75);
        let mrr = (1.0 + 1.0 / 3.0 + 0.0 + 0.1) / 4.0;
        assert!((m.mrr() - mrr).abs() < 1e-12);
    }
}
