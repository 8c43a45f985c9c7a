//! Human chunk-relevance judgments: reviewers mark retrieved chunks as helpful (1) or not
//! helpful (0) for a question, and R-ft mixes those labels into its targets.
//!
//! The judgments arrive as `retrieval.jsonl`, one object per line:
//!
//! ```text
//! {"question": "Who founded Varnholt?", "chunk_id": 12, "text_hash": "9f2c…", "index": "0a1b…", "label": 1}
//! ```
//!
//! `text_hash` is [`radit_docstore::ChunkRecord::text_hash`] of the chunk the reviewer read and
//! `index` the [`radit_docstore::DocStore::identity`] it came from; other fields (`answer_id`,
//! `reviewer`, …) are ignored. A label is used only when the chunk id exists in the current
//! store *and* its text still hashes to `text_hash`: ids are positions, so a label from a
//! rebuilt or different index would otherwise land on an unrelated chunk. A different `index`
//! with matching hashes is still used (same text, same judgment).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use radit_docstore::DocStore;
use serde::Deserialize;

use crate::RetrieverError;

/// One line of `retrieval.jsonl`, as exported by the review app.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LabelLine {
    /// The question the chunk was judged for.
    pub question: String,
    /// The chunk's id in the index the reviewer saw.
    pub chunk_id: u32,
    /// [`radit_docstore::ChunkRecord::text_hash`] of the chunk the reviewer read.
    pub text_hash: String,
    /// [`radit_docstore::DocStore::identity`] of that index.
    #[serde(default)]
    pub index: Option<String>,
    /// 1: helpful, 0: not helpful.
    pub label: u8,
}

/// Reads `path`, one judgment per non-blank line. A line that is not a judgment is an error
/// naming the file and its 1-based line number: a half-written export should be noticed, not
/// trained on in part.
pub fn read_label_lines(path: &Path) -> Result<Vec<LabelLine>, RetrieverError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| RetrieverError::Io(path.to_path_buf(), e))?;
    parse_label_lines(&text, path)
}

/// [`read_label_lines`] on text already read; `path` names it in errors.
pub fn parse_label_lines(text: &str, path: &Path) -> Result<Vec<LabelLine>, RetrieverError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |message: String| RetrieverError::Labels {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        if line.trim().is_empty() {
            continue;
        }
        let parsed: LabelLine = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        if parsed.label > 1 {
            return Err(bad(format!(
                "label must be 0 (not helpful) or 1 (helpful), got {}",
                parsed.label
            )));
        }
        out.push(parsed);
    }
    Ok(out)
}

/// Judgments that apply to the current store, by normalized question and chunk id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HumanLabels {
    /// Normalized question → chunk id → helpful.
    labels: BTreeMap<String, BTreeMap<u32, bool>>,
    /// Lines whose chunk is missing from the store or whose text changed.
    stale: usize,
    /// Usable lines recorded against another index (same text, so still used).
    other_index: usize,
    /// The file they came from.
    path: PathBuf,
}

impl HumanLabels {
    /// Reads `path` and keeps the judgments that still describe chunks of `store`.
    pub fn load(path: &Path, store: &DocStore) -> Result<Self, RetrieverError> {
        let lines = read_label_lines(path)?;
        let identity = store.identity();
        let mut hashes: BTreeMap<u32, Option<String>> = BTreeMap::new();
        // Hash each referenced chunk once: chunk text is read from disk.
        for line in &lines {
            if hashes.contains_key(&line.chunk_id) {
                continue;
            }
            let hash = if (line.chunk_id as usize) < store.len() {
                Some(store.chunk(line.chunk_id)?.text_hash())
            } else {
                None
            };
            hashes.insert(line.chunk_id, hash);
        }
        let mut labels = Self::resolve(lines, Some(&identity), |id| {
            hashes.get(&id).cloned().flatten()
        });
        labels.path = path.to_path_buf();
        Ok(labels)
    }

    /// Keeps the `lines` whose chunk exists (`hash_of` returns its current text hash) with
    /// the recorded hash; a later line for the same (question, chunk) overrides an earlier
    /// one. A stale line overrides nothing: it judged another text. `identity` is the
    /// current store's, to count lines recorded against another index.
    pub fn resolve(
        lines: Vec<LabelLine>,
        identity: Option<&str>,
        hash_of: impl Fn(u32) -> Option<String>,
    ) -> Self {
        let mut out = Self::default();
        for line in lines {
            if hash_of(line.chunk_id).as_deref() != Some(line.text_hash.as_str()) {
                out.stale += 1;
                continue;
            }
            if let (Some(current), Some(recorded)) = (identity, line.index.as_deref()) {
                out.other_index += usize::from(current != recorded);
            }
            out.labels
                .entry(radit_util::question_key(&line.question))
                .or_default()
                .insert(line.chunk_id, line.label == 1);
        }
        out
    }

    /// Per candidate of `question`, 1.0 when judged helpful and 0.0 otherwise (not helpful
    /// or not judged); `None` when no candidate was judged at all. The second value is how
    /// many candidates were judged.
    pub fn for_candidates(&self, question: &str, ids: &[u32]) -> Option<(Vec<f32>, usize)> {
        let judged = self.labels.get(&radit_util::question_key(question))?;
        let mut count = 0;
        let row = ids
            .iter()
            .map(|id| match judged.get(id) {
                Some(&helpful) => {
                    count += 1;
                    if helpful {
                        1.0
                    } else {
                        0.0
                    }
                }
                None => 0.0,
            })
            .collect();
        (count > 0).then_some((row, count))
    }

    /// Usable (question, chunk) judgments.
    pub fn len(&self) -> usize {
        self.labels.values().map(BTreeMap::len).sum()
    }

    /// Whether no judgment is usable.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lines skipped because their chunk is missing from the store or its text changed.
    pub fn stale(&self) -> usize {
        self.stale
    }

    /// Usable lines recorded against another index than the current store.
    pub fn other_index(&self) -> usize {
        self.other_index
    }

    /// The file the judgments were read from (empty when built by [`HumanLabels::resolve`]).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(question: &str, chunk: u32, hash: &str, label: u8) -> String {
        serde_json::json!({
            "question": question, "chunk_id": chunk, "text_hash": hash,
            "index": "0a1b2c3d4e5f6071", "label": label, "answer_id": 3, "reviewer": "ana"
        })
        .to_string()
    }

    fn hashes(id: u32) -> Option<String> {
        match id {
            0 => Some("aaaa".into()),
            1 => Some("bbbb".into()),
            2 => Some("cccc".into()),
            _ => None,
        }
    }

    #[test]
    fn a_malformed_line_names_the_file_and_line() {
        let text = format!(
            "{}\n\n{}\n{{\"question\": \"q\", \"chunk_id\": \"x\"}}\n",
            line("q", 0, "aaaa", 1),
            line("q", 1, "bbbb", 0)
        );
        let err = parse_label_lines(&text, Path::new("/r/retrieval.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/r/retrieval.jsonl:4: "), "{err}");
        let err = parse_label_lines(&line("q", 0, "aaaa", 2), Path::new("l.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("l.jsonl:1: label must be 0"), "{err}");
    }

    #[test]
    fn stale_hashes_and_missing_chunks_are_skipped_and_counted() {
        let text = [
            line("Who founded Varnholt?", 0, "aaaa", 1),
            line("Who founded Varnholt?", 1, "ffff", 1), // text changed
            line("Who founded Varnholt?", 9, "aaaa", 1), // no such chunk
        ]
        .join("\n");
        let lines = parse_label_lines(&text, Path::new("l.jsonl")).unwrap();
        let labels = HumanLabels::resolve(lines, Some("0a1b2c3d4e5f6071"), hashes);
        assert_eq!(labels.stale(), 2);
        assert_eq!(labels.len(), 1);
        assert_eq!(labels.other_index(), 0);
        let (row, judged) = labels
            .for_candidates("who founded  varnholt?", &[1, 0, 2])
            .unwrap();
        assert_eq!((row, judged), (vec![0.0, 1.0, 0.0], 1));
    }

    /// `load` against a real (hash-embedded) store: the hash of chunk 1 is its text's,
    /// a wrong hash and an id past the end are stale, and an unreadable file is an error.
    #[test]
    fn load_checks_hashes_against_the_store() {
        use radit_docstore::{build_index, BuildOptions, Embedder, HashEmbedder};
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus.jsonl");
        let docs: Vec<String> = ["Varnholt was founded by Ana.", "Rain falls.", "Hills rise."]
            .iter()
            .enumerate()
            .map(|(i, t)| serde_json::json!({"id": i, "title": "T", "text": t}).to_string())
            .collect();
        std::fs::write(&corpus, docs.join("\n")).unwrap();
        let encoder = HashEmbedder::new(16, 0);
        let index = dir.path().join("index");
        build_index(&corpus, &index, &encoder, &BuildOptions::default()).unwrap();
        let store = DocStore::open_for_encoder(&index, &encoder.identity()).unwrap();
        let hash = store.chunk(1).unwrap().text_hash();
        let labels_path = dir.path().join("retrieval.jsonl");
        let text = [
            line("Q?", 1, &hash, 1),
            line("Q?", 0, &hash, 1),
            line("Q?", 99, &hash, 1),
        ]
        .join("\n");
        std::fs::write(&labels_path, text).unwrap();
        let labels = HumanLabels::load(&labels_path, &store).unwrap();
        assert_eq!((labels.len(), labels.stale()), (1, 2));
        // The test lines name another index; the texts match, so the label is used.
        assert_eq!(labels.other_index(), 1);
        assert_eq!(labels.for_candidates("q?", &[1]).unwrap().0, vec![1.0]);
        let missing = dir.path().join("none.jsonl");
        let err = HumanLabels::load(&missing, &store).unwrap_err().to_string();
        assert!(err.contains("none.jsonl"), "{err}");
    }

    #[test]
    fn a_later_line_overrides_and_questions_are_normalized() {
        let text = [
            line("Who founded Varnholt?", 0, "aaaa", 1),
            line("  who   FOUNDED\tVarnholt? ", 0, "aaaa", 0),
            line("Who founded Varnholt?", 2, "cccc", 1),
            // A stale line judged another text: it must not undo the label of chunk 2.
            line("Who founded Varnholt?", 2, "dddd", 0),
        ]
        .join("\n");
        let lines = parse_label_lines(&text, Path::new("l.jsonl")).unwrap();
        // Recorded against another index, but the texts match: still used.
        let labels = HumanLabels::resolve(lines, Some("ffffffffffffffff"), hashes);
        assert_eq!(labels.len(), 2);
        assert_eq!(labels.stale(), 1);
        assert_eq!(labels.other_index(), 3);
        let (row, judged) = labels
            .for_candidates("Who founded Varnholt?", &[0, 1, 2])
            .unwrap();
        assert_eq!(row, vec![0.0, 0.0, 1.0]);
        assert_eq!(judged, 2);
        assert!(labels
            .for_candidates("Who founded Varnholt?", &[1])
            .is_none());
        assert!(labels.for_candidates("Another question", &[0]).is_none());
    }
}
