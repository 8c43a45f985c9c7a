//! Corpus ingestion: JSONL records, folders of `.txt`/`.md` files, and the Wikipedia summaries JSON.
//!
//! Malformed input never disappears silently: every skipped line or entry becomes an
//! [`IngestIssue`] with its file and line, counted in the [`IngestReport`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{clip, Error, Result};

/// At most this many issues are kept in a report (all are counted).
pub const MAX_KEPT_ISSUES: usize = 1000;

/// How to read a corpus path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CorpusFormat {
    /// By extension: `.jsonl` JSON lines, `.json` a summaries-style object (or array of records),
    /// `.txt`/`.md` one document each; a folder is walked recursively (sorted, hidden entries
    /// skipped) and each file read by its extension.
    #[default]
    Auto,
    /// JSON lines: `{"id", "title", "text", "section"?, "metadata"?, ...}` per line.
    Jsonl,
    /// A folder (or single file) of `.txt` and `.md` documents.
    TextDir,
    /// The Wikipedia summaries JSON: an object `title -> {title, extract, description, topic}`.
    WikiSummaries,
}

impl FromStr for CorpusFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(CorpusFormat::Auto),
            "jsonl" => Ok(CorpusFormat::Jsonl),
            "text" | "txt" | "md" | "text-dir" | "textdir" => Ok(CorpusFormat::TextDir),
            "wiki" | "wiki-summaries" | "wikisummaries" | "json" => Ok(CorpusFormat::WikiSummaries),
            other => Err(Error::arg(format!(
                "unknown corpus format `{other}` (expected auto, jsonl, text-dir or wiki-summaries)"
            ))),
        }
    }
}

impl fmt::Display for CorpusFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CorpusFormat::Auto => "auto",
            CorpusFormat::Jsonl => "jsonl",
            CorpusFormat::TextDir => "text-dir",
            CorpusFormat::WikiSummaries => "wiki-summaries",
        })
    }
}

/// A titled part of a document; chunks never cross sections.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// Section heading (for Markdown, the heading path joined with ` > `), if any.
    pub heading: Option<String>,
    /// The section's text.
    pub text: String,
}

/// One input document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Document id (JSONL `id`, relative file path, or Wikipedia title).
    pub id: String,
    /// Title, prepended to every chunk the encoder sees.
    pub title: String,
    /// Sections in order.
    pub sections: Vec<Section>,
    /// Extra fields (JSONL `metadata` and unknown keys, Wikipedia `description`/`topic`).
    pub metadata: BTreeMap<String, Value>,
}

impl Document {
    /// A single-section document without metadata.
    pub fn new(id: impl Into<String>, title: impl Into<String>, text: impl Into<String>) -> Self {
        Document {
            id: id.into(),
            title: title.into(),
            sections: vec![Section {
                heading: None,
                text: text.into(),
            }],
            metadata: BTreeMap::new(),
        }
    }

    /// Whether the document has no words at all.
    pub fn is_empty(&self) -> bool {
        self.sections.iter().all(|s| s.text.trim().is_empty())
    }
}

/// One problem found while reading the corpus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestIssue {
    /// The file (as a display string).
    pub file: String,
    /// 1-based line number, where it applies.
    pub line: Option<usize>,
    /// What is wrong, and what was done about it.
    pub message: String,
}

impl fmt::Display for IngestIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file, l, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Summary of an ingestion: what was read and every problem met.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestReport {
    /// Files read.
    pub files: usize,
    /// Files skipped because of their extension.
    pub ignored_files: usize,
    /// Documents produced (including empty ones).
    pub documents: usize,
    /// Documents without any words (they yield no chunks).
    pub empty_documents: usize,
    /// Blank lines in JSONL files (not an error).
    pub blank_lines: usize,
    /// Lines or entries skipped because they were malformed.
    pub malformed: usize,
    /// Documents whose id was already seen (they are kept).
    pub duplicate_ids: usize,
    /// The first [`MAX_KEPT_ISSUES`] problems, in order.
    pub issues: Vec<IngestIssue>,
}

impl IngestReport {
    fn issue(&mut self, file: &Path, line: Option<usize>, message: impl Into<String>) {
        if self.issues.len() < MAX_KEPT_ISSUES {
            self.issues.push(IngestIssue {
                file: file.display().to_string(),
                line,
                message: message.into(),
            });
        }
    }

    fn malformed(&mut self, file: &Path, line: Option<usize>, message: impl Into<String>) {
        self.malformed += 1;
        let message = format!("{}; skipped", message.into());
        self.issue(file, line, message);
    }

    /// Total number of problems (malformed lines plus duplicate ids).
    pub fn problem_count(&self) -> usize {
        self.malformed + self.duplicate_ids
    }

    /// A multi-line summary listing at most `max_issues` problems.
    pub fn summary(&self, max_issues: usize) -> String {
        let mut s = self.to_string();
        for i in self.issues.iter().take(max_issues) {
            s.push_str("\n  ");
            s.push_str(&i.to_string());
        }
        let total = self.problem_count();
        let shown = self.issues.len().min(max_issues);
        if total > shown {
            s.push_str(&format!("\n  ... and {} more", total - shown));
        }
        s
    }
}

impl fmt::Display for IngestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read {} documents from {} files ({} empty, {} malformed lines/entries skipped, {} duplicate ids",
            self.documents, self.files, self.empty_documents, self.malformed, self.duplicate_ids
        )?;
        if self.ignored_files > 0 {
            write!(f, ", {} files ignored by extension", self.ignored_files)?;
        }
        write!(f, ")")
    }
}

/// Sorts object keys recursively, so serialized metadata is byte-identical whatever
/// `serde_json` features other crates enable.
pub(crate) fn canonical(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let sorted: BTreeMap<String, Value> =
                map.into_iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(canonical).collect()),
        other => other,
    }
}

struct Reader<'a> {
    report: IngestReport,
    seen: HashMap<u64, (usize, Option<usize>)>,
    files: Vec<String>,
    sink: &'a mut dyn FnMut(Document) -> Result<()>,
}

impl Reader<'_> {
    fn emit(&mut self, file: &Path, line: Option<usize>, doc: Document) -> Result<()> {
        let h = xxhash_rust::xxh3::xxh3_64(doc.id.as_bytes());
        let file_idx = self.files.len().saturating_sub(1);
        if let Some(&(f, l)) = self.seen.get(&h) {
            self.report.duplicate_ids += 1;
            let first = match l {
                Some(l) => format!("{}:{}", self.files.get(f).map_or("?", |s| s.as_str()), l),
                None => self.files.get(f).cloned().unwrap_or_default(),
            };
            // Ids come from the file and may be any length: quote at most 100 characters.
            let msg = format!(
                "duplicate id {:?} (first seen at {first}); kept",
                clip(&doc.id)
            );
            self.report.issue(file, line, msg);
        } else {
            self.seen.insert(h, (file_idx, line));
        }
        self.report.documents += 1;
        if doc.is_empty() {
            self.report.empty_documents += 1;
        }
        (self.sink)(doc)
    }

    fn start_file(&mut self, file: &Path) {
        self.report.files += 1;
        self.files.push(file.display().to_string());
    }
}

/// Reads the corpus at `path`, handing each document to `sink` in a deterministic order.
///
/// Returns the ingestion report; problems in the data are reported, not returned as errors.
/// Errors are I/O failures, a missing path, or an error returned by `sink`.
pub fn read_corpus(
    path: &Path,
    format: CorpusFormat,
    sink: &mut dyn FnMut(Document) -> Result<()>,
) -> Result<IngestReport> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mut reader = Reader {
        report: IngestReport::default(),
        seen: HashMap::new(),
        files: Vec::new(),
        sink,
    };
    if meta.is_dir() {
        let mut files = Vec::new();
        walk(path, &mut files)?;
        files.sort();
        for f in files {
            let rel = f.strip_prefix(path).unwrap_or(&f).to_path_buf();
            match file_kind(&f, format) {
                Some(kind) => read_file(&mut reader, &f, &rel, kind)?,
                None => reader.report.ignored_files += 1,
            }
        }
    } else {
        let rel = PathBuf::from(path.file_name().unwrap_or(path.as_os_str()));
        let kind = file_kind(path, format).unwrap_or(match format {
            CorpusFormat::Jsonl => Kind::Jsonl,
            CorpusFormat::WikiSummaries => Kind::Json,
            _ => Kind::Text,
        });
        read_file(&mut reader, path, &rel, kind)?;
    }
    Ok(reader.report)
}

/// A fingerprint of the corpus files (relative paths, sizes, modification times), used to
/// refuse resuming a build over a corpus that changed.
pub fn fingerprint(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        walk(path, &mut files)?;
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for f in &files {
        let m = std::fs::metadata(f).map_err(|e| Error::io(f, e))?;
        let rel = f.strip_prefix(path).unwrap_or(f);
        h.update(rel.to_string_lossy().as_bytes());
        h.update(&[0]);
        h.update(&m.len().to_le_bytes());
        let mtime = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        h.update(&mtime.to_le_bytes());
    }
    Ok(format!("{} files, xxh3 {:016x}", files.len(), h.digest()))
}

/// Reads the whole corpus into memory (convenient for small corpora and tests).
pub fn load_corpus(path: &Path, format: CorpusFormat) -> Result<(Vec<Document>, IngestReport)> {
    let mut docs = Vec::new();
    let report = read_corpus(path, format, &mut |d| {
        docs.push(d);
        Ok(())
    })?;
    Ok((docs, report))
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Jsonl,
    Json,
    Text,
    Markdown,
}

fn file_kind(path: &Path, format: CorpusFormat) -> Option<Kind> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    let by_ext = match ext.as_str() {
        "jsonl" | "ndjson" => Some(Kind::Jsonl),
        "json" => Some(Kind::Json),
        "txt" | "text" => Some(Kind::Text),
        "md" | "markdown" => Some(Kind::Markdown),
        _ => None,
    };
    match format {
        CorpusFormat::Auto => by_ext,
        CorpusFormat::Jsonl => matches!(by_ext, Some(Kind::Jsonl) | None).then_some(Kind::Jsonl),
        CorpusFormat::WikiSummaries => matches!(by_ext, Some(Kind::Json)).then_some(Kind::Json),
        CorpusFormat::TextDir => match by_ext {
            Some(Kind::Text) | Some(Kind::Markdown) => by_ext,
            _ => None,
        },
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let p = entry.path();
        let ft = entry.file_type().map_err(|e| Error::io(&p, e))?;
        if ft.is_dir() {
            walk(&p, out)?;
        } else if ft.is_file() || (ft.is_symlink() && p.is_file()) {
            out.push(p);
        }
    }
    Ok(())
}

fn read_file(reader: &mut Reader<'_>, path: &Path, rel: &Path, kind: Kind) -> Result<()> {
    reader.start_file(path);
    match kind {
        Kind::Jsonl => read_jsonl(reader, path, rel),
        Kind::Json => read_json(reader, path),
        Kind::Text | Kind::Markdown => {
            let mut bytes = Vec::new();
            File::open(path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(|e| Error::io(path, e))?;
            let text = match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => {
                    let line = line_of_offset(e.as_bytes(), e.utf8_error().valid_up_to());
                    reader
                        .report
                        .malformed(path, Some(line), "file is not valid UTF-8");
                    return Ok(());
                }
            };
            let id = rel.to_string_lossy().replace('\\', "/");
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| id.clone());
            let doc = if matches!(kind, Kind::Markdown) {
                parse_markdown(id, stem, &text)
            } else {
                Document::new(id, stem, text)
            };
            reader.emit(path, None, doc)
        }
    }
}

fn line_of_offset(bytes: &[u8], offset: usize) -> usize {
    1 + bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

fn read_jsonl(reader: &mut Reader<'_>, path: &Path, rel: &Path) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut br = BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    let rel = rel.to_string_lossy().replace('\\', "/");
    loop {
        buf.clear();
        let n = br
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let line = match std::str::from_utf8(&buf) {
            Ok(s) => s.trim(),
            Err(_) => {
                reader
                    .report
                    .malformed(path, Some(line_no), "line is not valid UTF-8");
                continue;
            }
        };
        if line.is_empty() {
            reader.report.blank_lines += 1;
            continue;
        }
        let value: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                reader.report.malformed(
                    path,
                    Some(line_no),
                    format!("invalid JSON at column {}: {e}", e.column()),
                );
                continue;
            }
        };
        let fallback_id = format!("{rel}:{line_no}");
        match record_to_document(value, &fallback_id) {
            Ok(doc) => reader.emit(path, Some(line_no), doc)?,
            Err(msg) => reader.report.malformed(path, Some(line_no), msg),
        }
    }
    Ok(())
}

/// Converts a JSON record (`id`, `title`, `text`, `section`, `metadata`, extra keys) to a document.
fn record_to_document(value: Value, fallback_id: &str) -> std::result::Result<Document, String> {
    let Value::Object(map) = value else {
        return Err(format!(
            "expected a JSON object, found {}",
            json_kind(&value)
        ));
    };
    let mut id = None;
    let mut title = String::new();
    let mut text = None;
    let mut section = None;
    let mut metadata = BTreeMap::new();
    for (k, v) in map {
        match k.as_str() {
            "id" | "_id" | "docid" => match v {
                Value::String(s) => id = Some(s),
                Value::Number(n) => id = Some(n.to_string()),
                other => {
                    return Err(format!(
                        "field \"{k}\" must be a string or number, found {}",
                        json_kind(&other)
                    ))
                }
            },
            "title" => match v {
                Value::String(s) => title = s,
                Value::Null => {}
                other => {
                    return Err(format!(
                        "field \"title\" must be a string, found {}",
                        json_kind(&other)
                    ))
                }
            },
            "text" | "contents" => match v {
                Value::String(s) => text = Some(s),
                other => {
                    return Err(format!(
                        "field \"{k}\" must be a string, found {}",
                        json_kind(&other)
                    ))
                }
            },
            "section" => match v {
                Value::String(s) => section = Some(s).filter(|s| !s.trim().is_empty()),
                Value::Null => {}
                other => {
                    return Err(format!(
                        "field \"section\" must be a string, found {}",
                        json_kind(&other)
                    ))
                }
            },
            "metadata" => match v {
                Value::Object(m) => {
                    for (mk, mv) in m {
                        metadata.insert(mk, canonical(mv));
                    }
                }
                Value::Null => {}
                other => {
                    return Err(format!(
                        "field \"metadata\" must be an object, found {}",
                        json_kind(&other)
                    ))
                }
            },
            _ => {
                metadata.insert(k, canonical(v));
            }
        }
    }
    let Some(text) = text else {
        return Err("missing field \"text\"".to_string());
    };
    Ok(Document {
        id: id.unwrap_or_else(|| fallback_id.to_string()),
        title,
        sections: vec![Section {
            heading: section,
            text,
        }],
        metadata,
    })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The summaries JSON (`title -> {title, extract, description, topic}`), or an array of records.
fn read_json(reader: &mut Reader<'_>, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| Error::io(path, e))?;
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            reader.report.malformed(
                path,
                Some(e.line()),
                format!(
                    "invalid JSON at column {}: {e}; the whole file was skipped",
                    e.column()
                ),
            );
            return Ok(());
        }
    };
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, v) in entries {
                match summary_to_document(&key, v) {
                    Ok(doc) => reader.emit(path, None, doc)?,
                    Err(msg) => reader.report.malformed(
                        path,
                        None,
                        format!("entry {:?}: {msg}", clip(&key)),
                    ),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.into_iter().enumerate() {
                let fallback = format!("{}#{i}", path.display());
                match record_to_document(v, &fallback) {
                    Ok(doc) => reader.emit(path, None, doc)?,
                    Err(msg) => reader
                        .report
                        .malformed(path, None, format!("element {i}: {msg}")),
                }
            }
        }
        other => reader.report.malformed(
            path,
            Some(1),
            format!(
                "expected a JSON object or array at the top level, found {}",
                json_kind(&other)
            ),
        ),
    }
    Ok(())
}

fn summary_to_document(key: &str, v: Value) -> std::result::Result<Document, String> {
    let Value::Object(map) = v else {
        return Err(format!("expected an object, found {}", json_kind(&v)));
    };
    let mut title = key.to_string();
    let mut text = None;
    let mut metadata = BTreeMap::new();
    for (k, v) in map {
        match (k.as_str(), v) {
            ("title", Value::String(s)) => title = s,
            ("extract" | "text", Value::String(s)) => text = Some(s),
            ("extract" | "text", other) => {
                return Err(format!(
                    "field \"{k}\" must be a string, found {}",
                    json_kind(&other)
                ))
            }
            (_, v) => {
                metadata.insert(k, canonical(v));
            }
        }
    }
    let Some(text) = text else {
        return Err("missing field \"extract\" (or \"text\")".to_string());
    };
    Ok(Document {
        id: key.to_string(),
        title,
        sections: vec![Section {
            heading: None,
            text,
        }],
        metadata,
    })
}

/// Splits Markdown at ATX headings (outside code fences). A leading level-1 heading becomes
/// the title; later headings name sections by their path (`A > B`).
fn parse_markdown(id: String, stem: String, text: &str) -> Document {
    let mut title = stem;
    let mut sections: Vec<Section> = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut current = String::new();
    let mut heading: Option<String> = None;
    let mut in_fence = false;
    let mut seen_content = false;
    let mut title_taken = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
        }
        let level = if in_fence {
            0
        } else {
            t.chars().take_while(|&c| c == '#').count()
        };
        let is_heading = (1..=6).contains(&level)
            && t[level..]
                .chars()
                .next()
                .is_none_or(|c| c == ' ' || c == '\t');
        if !is_heading {
            if !t.is_empty() {
                seen_content = true;
            }
            current.push_str(line);
            current.push('\n');
            continue;
        }
        let name = t[level..].trim().trim_end_matches('#').trim().to_string();
        if level == 1 && !seen_content && !title_taken && sections.is_empty() {
            title = name;
            title_taken = true;
            continue;
        }
        if !current.trim().is_empty() {
            sections.push(Section {
                heading: heading.take(),
                text: std::mem::take(&mut current),
            });
        }
        current.clear();
        stack.retain(|(l, _)| *l < level);
        stack.push((level, name));
        heading = Some(
            stack
                .iter()
                .map(|(_, n)| n.as_str())
                .collect::<Vec<_>>()
                .join(" > "),
        );
        seen_content = true;
    }
    if !current.trim().is_empty() {
        sections.push(Section {
            heading,
            text: current,
        });
    }
    Document {
        id,
        title,
        sections,
        metadata: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_sections_and_title() {
        let md = "# My Title\n\nIntro text.\n\n## Part A\nalpha\n### Sub\nbeta\n```\n# not a heading\n```\n## Part B\ngamma\n";
        let d = parse_markdown("x.md".into(), "x".into(), md);
        assert_eq!(d.title, "My Title");
        let heads: Vec<Option<&str>> = d.sections.iter().map(|s| s.heading.as_deref()).collect();
        assert_eq!(
            heads,
            [None, Some("Part A"), Some("Part A > Sub"), Some("Part B")]
        );
        assert!(d.sections[2].text.contains("# not a heading"));
    }

    #[test]
    fn record_fields_and_errors() {
        let v: Value = serde_json::from_str(
            r#"{"id": 5, "title": "T", "text": "hello", "section": "S", "url": "u", "metadata": {"b": 1}}"#,
        )
        .unwrap();
        let d = record_to_document(v, "f:1").unwrap();
        assert_eq!(d.id, "5");
        assert_eq!(d.sections[0].heading.as_deref(), Some("S"));
        assert_eq!(d.metadata.len(), 2);
        let v: Value = serde_json::from_str(r#"{"title": "T"}"#).unwrap();
        assert!(record_to_document(v, "f:1").unwrap_err().contains("text"));
        let v: Value = serde_json::from_str(r#"[1]"#).unwrap();
        assert!(record_to_document(v, "f:1").is_err());
    }
}
