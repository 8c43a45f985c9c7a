//! SQuAD-style answer metrics: normalized exact match and token F1, max over gold answers.

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

/// Running means of EM and F1 over a dev set.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QaMetrics {
    /// Predictions scored.
    pub count: usize,
    /// Sum of EM.
    pub em_sum: f64,
    /// Sum of F1.
    pub f1_sum: f64,
}

impl QaMetrics {
    /// Scores one prediction against its gold answers.
    pub fn add<S: AsRef<str>>(&mut self, prediction: &str, golds: &[S]) {
        self.count += 1;
        self.em_sum += exact_match(prediction, golds);
        self.f1_sum += token_f1(prediction, golds);
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
        m.add("Paris", &["Paris"]);
        m.add("Paris France", &["Paris"]);
        assert_eq!(m.count, 2);
        assert!((m.em() - 0.5).abs() < 1e-12);
        assert!((m.f1() - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
    }
}
