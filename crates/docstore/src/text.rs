//! Small text utilities: whitespace words with byte spans, and the lexical analyzer used by BM25.

/// Name of the BM25 analyzer, recorded in the manifest.
pub const ANALYZER: &str = "lowercase-alnum-en33stop-v1";

/// Lucene's classic English stop-word set (33 words).
const STOP_WORDS: [&str; 33] = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];

/// Byte spans `(start, end)` of the whitespace-separated words of `text`.
pub fn word_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                spans.push((s, i));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    spans
}

/// Lowercased alphanumeric tokens of `text` (every non-alphanumeric character separates tokens).
pub fn words_lowercase(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            cur.extend(c.to_lowercase());
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// BM25 analyzer: lowercased alphanumeric tokens without English stop words.
pub fn analyze(text: &str) -> Vec<String> {
    let mut words = words_lowercase(text);
    words.retain(|w| !STOP_WORDS.contains(&w.as_str()));
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_words() {
        let t = "  Hello,\n wörld \t again ";
        let s = word_spans(t);
        let words: Vec<&str> = s.iter().map(|&(a, b)| &t[a..b]).collect();
        assert_eq!(words, ["Hello,", "wörld", "again"]);
        assert!(word_spans("   ").is_empty());
    }

    #[test]
    fn analyzer_lowercases_splits_and_drops_stop_words() {
        assert_eq!(
            analyze("The Cat's hat, in 1984: Ünïcode!"),
            ["cat", "s", "hat", "1984", "ünïcode"]
        );
    }
}
