//! Word-window chunking that never crosses document or section boundaries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::corpus::Document;
use crate::error::{Error, Result};
use crate::text::word_spans;

/// Name of the encoder-text template, recorded in the manifest (see [`ChunkRecord::encoder_text`]).
pub const TEXT_TEMPLATE: &str = "title[: section]\\ntext (v1)";

/// Chunking parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkParams {
    /// Maximum whitespace-separated words per chunk (RA-DIT: under 200 for Wikipedia, under 100
    /// for web text; MiniLM reads at most 256 tokens, so 100 is the default).
    pub max_words: usize,
    /// Words shared by consecutive chunks of the same section (must be below `max_words`).
    pub overlap: usize,
}

impl Default for ChunkParams {
    fn default() -> Self {
        ChunkParams {
            max_words: 100,
            overlap: 0,
        }
    }
}

impl ChunkParams {
    /// Checks `max_words >= 1` and `overlap < max_words`.
    pub fn validate(&self) -> Result<()> {
        if self.max_words == 0 {
            return Err(Error::arg("chunk max_words must be at least 1"));
        }
        if self.overlap >= self.max_words {
            return Err(Error::arg(format!(
                "chunk overlap ({}) must be smaller than max_words ({})",
                self.overlap, self.max_words
            )));
        }
        Ok(())
    }
}

/// A stored chunk: its text and the metadata of the document it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// Id of the source document.
    pub doc_id: String,
    /// Index of this chunk within its document (0-based, across sections).
    pub chunk_index: u32,
    /// Document title.
    pub title: String,
    /// Section heading, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    /// The chunk text (a verbatim slice of the section text, from its first to its last word).
    pub text: String,
    /// Index of the first word within the section.
    pub word_start: u32,
    /// One past the index of the last word within the section.
    pub word_end: u32,
    /// Document metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
}

impl ChunkRecord {
    /// The text the encoder sees (and BM25 indexes): the title, `: section` if any, a newline,
    /// then the chunk text, as DPR/Contriever prepend titles. Without a title, just the text
    /// (prefixed by the section if any).
    pub fn encoder_text(&self) -> String {
        let head = match (&self.title, &self.section) {
            (t, Some(s)) if !t.is_empty() => format!("{t}: {s}"),
            (t, None) if !t.is_empty() => t.clone(),
            (_, Some(s)) => s.clone(),
            _ => String::new(),
        };
        if head.is_empty() {
            self.text.clone()
        } else {
            format!("{head}\n{}", self.text)
        }
    }

    /// The chunk as the generator reads it in RA-DIT's `Background: ...`: `{title}: {text}`,
    /// or just the text when there is no title.
    pub fn background_text(&self) -> String {
        if self.title.is_empty() {
            self.text.clone()
        } else {
            format!("{}: {}", self.title, self.text)
        }
    }

    /// A fingerprint of [`ChunkRecord::background_text`], the text a generator (and a human
    /// reviewer) reads: xxh3-64 as 16 hex digits. Judgments keep it next to the chunk id, so a
    /// label recorded against one index is never applied to a different chunk of another.
    pub fn text_hash(&self) -> String {
        text_hash(&self.background_text())
    }

    /// Number of words of the chunk text.
    pub fn word_count(&self) -> usize {
        (self.word_end - self.word_start) as usize
    }
}

/// Word windows `(start, end)` over `n` words: `max_words` long, consecutive windows sharing
/// `overlap` words, the last one ending at `n`.
pub fn windows(n: usize, params: &ChunkParams) -> Vec<(usize, usize)> {
    let step = params.max_words.saturating_sub(params.overlap).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let end = (start + params.max_words).min(n);
        out.push((start, end));
        if end == n {
            break;
        }
        start += step;
    }
    out
}

/// Splits a document into chunks, section by section.
pub fn chunk_document(doc: &Document, params: &ChunkParams) -> Vec<ChunkRecord> {
    let mut out = Vec::new();
    for section in &doc.sections {
        let spans = word_spans(&section.text);
        for (a, b) in windows(spans.len(), params) {
            let text = section.text[spans[a].0..spans[b - 1].1].to_string();
            out.push(ChunkRecord {
                doc_id: doc.id.clone(),
                chunk_index: out.len() as u32,
                title: doc.title.clone(),
                section: section.heading.clone(),
                text,
                word_start: a as u32,
                word_end: b as u32,
                metadata: doc.metadata.clone(),
            });
        }
    }
    out
}

/// xxh3-64 of `text` as 16 lowercase hex digits (see [`ChunkRecord::text_hash`]).
pub fn text_hash(text: &str) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_with_overlap() {
        let p = ChunkParams {
            max_words: 100,
            overlap: 20,
        };
        assert_eq!(windows(250, &p), [(0, 100), (80, 180), (160, 250)]);
        assert_eq!(windows(100, &p), [(0, 100)]);
        assert_eq!(windows(0, &p), []);
        let p0 = ChunkParams {
            max_words: 3,
            overlap: 0,
        };
        assert_eq!(windows(7, &p0), [(0, 3), (3, 6), (6, 7)]);
        assert!(ChunkParams {
            max_words: 3,
            overlap: 3
        }
        .validate()
        .is_err());
    }
}
