use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::DataError;
use crate::rng::{mix, TAG_HOLDOUT};

/// One instruction / QA example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// Identifier: the id field when present, else `{dataset}:{line}`.
    pub id: String,
    /// The question or instruction text.
    pub question: String,
    /// Gold answers; the first is the training target, all count for EM/F1. Never empty for
    /// loaded examples.
    pub answers: Vec<String>,
    /// Gold context for reading-comprehension tasks; used instead of retrieved chunks.
    pub context: Option<String>,
    /// Answer options of a multiple-choice question (empty for open-ended questions); the
    /// first gold answer is the correct option.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
}

impl Example {
    /// The training target (the first gold answer).
    pub fn target(&self) -> Option<&str> {
        self.answers.first().map(String::as_str)
    }
}

/// Field names of a JSONL instruction dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsonlFields {
    /// Question/instruction field (string).
    pub question: String,
    /// Answer field: a string, a list of strings, or a SQuAD-style object with a `text` list.
    pub answers: String,
    /// Optional id field (string or number); missing ids become `{dataset}:{line}`.
    pub id: Option<String>,
    /// Optional gold-context field for reading-comprehension tasks; lines without it (or
    /// with an empty one) use retrieved chunks.
    pub context: Option<String>,
    /// Optional multiple-choice options field (a list of strings); lines without it are
    /// open-ended questions.
    pub choices: Option<String>,
}

impl Default for JsonlFields {
    fn default() -> Self {
        Self {
            question: "question".into(),
            answers: "answers".into(),
            id: Some("id".into()),
            context: None,
            choices: Some("choices".into()),
        }
    }
}

/// The on-disk format of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "format", deny_unknown_fields)]
pub enum DatasetFormat {
    /// One JSON object per line.
    Jsonl(JsonlFields),
    /// DPR-style `question<TAB>['answer', ...]` lines (Python list literal).
    DprTsv,
}

/// A malformed line that was skipped while loading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedLine {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// Why the line was skipped.
    pub reason: String,
}

impl fmt::Display for SkippedLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.reason)
    }
}

/// How many skipped lines and duplicate groups [`LoadReport`]'s `Display` lists one by one;
/// the rest are counted ("... and 12 more").
pub const REPORT_LIST_LIMIT: usize = 10;

/// Longest reason or quoted text the report prints (a malformed line may be megabytes).
const REPORT_TEXT_CHARS: usize = 200;

/// What two or more records of a file have in common.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateKind {
    /// The same explicit id (JSONL only; generated `{dataset}:{line}` ids never repeat).
    Id,
    /// The same question and the same gold answers.
    QuestionAndAnswers,
}

/// Records that look like the same example. They are all kept: neither format defines ids
/// as unique, and a benchmark may ask the same question twice on purpose, so the loader
/// warns and leaves the choice to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateRecords {
    /// What the records share.
    pub kind: DuplicateKind,
    /// The shared id, or the shared question.
    pub key: String,
    /// 1-based line numbers of the records, in file order (two or more).
    pub lines: Vec<usize>,
}

impl fmt::Display for DuplicateRecords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            DuplicateKind::Id => "id",
            DuplicateKind::QuestionAndAnswers => "question and answers",
        };
        write!(f, "duplicate {what} {:?} on lines ", clip(&self.key, 64))?;
        for (i, line) in self.lines.iter().take(REPORT_LIST_LIMIT).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{line}")?;
        }
        if self.lines.len() > REPORT_LIST_LIMIT {
            write!(f, " and {} more", self.lines.len() - REPORT_LIST_LIMIT)?;
        }
        Ok(())
    }
}

/// `s` cut to `n` characters, with `...` when something was cut.
fn clip(s: &str, n: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(n) {
        None => s.into(),
        Some((cut, _)) => format!("{}...", &s[..cut]).into(),
    }
}

/// What happened while loading one file: the caller prints it when
/// [`LoadReport::has_warnings`] (skips and duplicates are never silent).
///
/// `Display` gives a summary line, then one indented line per skipped line (`file:line:
/// reason`) and per group of duplicates, the first [`REPORT_LIST_LIMIT`] of each, then
/// "... and M more".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    /// The file.
    pub path: PathBuf,
    /// Non-blank lines read.
    pub lines: usize,
    /// Examples loaded.
    pub loaded: usize,
    /// Malformed lines, in file order.
    pub skipped: Vec<SkippedLine>,
    /// Groups of loaded records that share an id or their question and answers, ordered by
    /// their first line. Duplicates are kept in [`Dataset::examples`].
    #[serde(default)]
    pub duplicates: Vec<DuplicateRecords>,
}

impl LoadReport {
    /// Whether anything deserves a warning: a skipped line or a duplicate.
    pub fn has_warnings(&self) -> bool {
        !self.skipped.is_empty() || !self.duplicates.is_empty()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} example(s) loaded, {} malformed line(s) skipped",
            self.path.display(),
            self.loaded,
            self.skipped.len()
        )?;
        if !self.duplicates.is_empty() {
            write!(
                f,
                ", {} group(s) of duplicate records (kept)",
                self.duplicates.len()
            )?;
        }
        for s in self.skipped.iter().take(REPORT_LIST_LIMIT) {
            write!(
                f,
                "\n  {}:{}: {}",
                s.path.display(),
                s.line,
                clip(&s.reason, REPORT_TEXT_CHARS)
            )?;
        }
        if self.skipped.len() > REPORT_LIST_LIMIT {
            write!(
                f,
                "\n  ... and {} more malformed line(s)",
                self.skipped.len() - REPORT_LIST_LIMIT
            )?;
        }
        for d in self.duplicates.iter().take(REPORT_LIST_LIMIT) {
            write!(f, "\n  {}: {d}", self.path.display())?;
        }
        if self.duplicates.len() > REPORT_LIST_LIMIT {
            write!(
                f,
                "\n  ... and {} more group(s) of duplicates",
                self.duplicates.len() - REPORT_LIST_LIMIT
            )?;
        }
        Ok(())
    }
}

/// A loaded dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// Name (the file stem unless renamed).
    pub name: String,
    /// The examples, in file order.
    pub examples: Vec<Example>,
    /// The load report.
    pub report: LoadReport,
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether there is no example (never true for a loaded dataset).
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// Splits off a held-out part of `n` examples chosen by a hash of (seed, id), so the split
    /// is stable when lines are added or reordered. Returns `(rest, held_out)`, both in file
    /// order. Useful because the bundled QA sets have no train split.
    pub fn split_holdout(self, n: usize, seed: u64) -> (Dataset, Dataset) {
        let mut keyed: Vec<(u64, usize)> = self
            .examples
            .iter()
            .enumerate()
            .map(|(i, e)| (mix(&[seed, TAG_HOLDOUT, fnv1a(e.id.as_bytes())]), i))
            .collect();
        keyed.sort_unstable();
        let mut held = vec![false; self.examples.len()];
        for &(_, i) in keyed.iter().take(n) {
            held[i] = true;
        }
        let (mut rest, mut out) = (Vec::new(), Vec::new());
        for (e, h) in self.examples.into_iter().zip(held) {
            if h {
                out.push(e)
            } else {
                rest.push(e)
            }
        }
        let held_name = format!("{}-heldout", self.name);
        (
            Dataset {
                name: self.name,
                examples: rest,
                report: self.report.clone(),
            },
            Dataset {
                name: held_name,
                examples: out,
                report: self.report,
            },
        )
    }
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn open(path: &Path) -> Result<BufReader<File>, DataError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| DataError::Io {
            path: path.to_owned(),
            source,
        })
}

fn dataset_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into())
}

/// Loads a dataset, inferring the format from the extension when `format` is `None`
/// (`.jsonl`/`.json` → JSONL with default fields, `.tsv`/`.txt` → DPR TSV).
pub fn load_dataset(path: &Path, format: Option<&DatasetFormat>) -> Result<Dataset, DataError> {
    let inferred;
    let format = match format {
        Some(f) => f,
        None => {
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase());
            inferred = match ext.as_deref() {
                Some("jsonl") | Some("json") => DatasetFormat::Jsonl(JsonlFields::default()),
                Some("tsv") | Some("txt") => DatasetFormat::DprTsv,
                _ => {
                    return Err(DataError::UnknownFormat {
                        path: path.to_owned(),
                    })
                }
            };
            &inferred
        }
    };
    match format {
        DatasetFormat::Jsonl(fields) => load_jsonl(path, fields),
        DatasetFormat::DprTsv => load_dpr_tsv(path),
    }
}

/// Loads a JSONL dataset. Malformed lines are skipped and listed in the report; a file
/// without any usable example is [`DataError::EmptyDataset`].
pub fn load_jsonl(path: &Path, fields: &JsonlFields) -> Result<Dataset, DataError> {
    read_jsonl(open(path)?, path, fields)
}

/// Loads a DPR-style QA TSV (`question<TAB>['answer', ...]`).
pub fn load_dpr_tsv(path: &Path) -> Result<Dataset, DataError> {
    read_dpr_tsv(open(path)?, path)
}

/// Groups of examples sharing an explicit id (when `explicit_ids`: an id the file gave,
/// not one made from the line number) or their question and answers, ordered by first line.
fn find_duplicates(
    examples: &[Example],
    lines: &[usize],
    explicit_ids: bool,
) -> Vec<DuplicateRecords> {
    use std::collections::HashMap;
    let mut by_id: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_content: HashMap<(&str, &[String]), Vec<usize>> = HashMap::new();
    for (e, &line) in examples.iter().zip(lines) {
        if explicit_ids {
            by_id.entry(e.id.as_str()).or_default().push(line);
        }
        by_content
            .entry((e.question.as_str(), e.answers.as_slice()))
            .or_default()
            .push(line);
    }
    let ids = by_id.into_iter().map(|(k, l)| (DuplicateKind::Id, k, l));
    let content = by_content
        .into_iter()
        .map(|((q, _), l)| (DuplicateKind::QuestionAndAnswers, q, l));
    let mut out: Vec<DuplicateRecords> = ids
        .chain(content)
        .filter(|(_, _, lines)| lines.len() > 1)
        .map(|(kind, key, lines)| DuplicateRecords {
            kind,
            key: key.to_owned(),
            lines,
        })
        .collect();
    out.sort_by_key(|d| (d.lines[0], d.kind == DuplicateKind::QuestionAndAnswers));
    out
}

/// Shared line loop: blank lines are layout, not data, so they are neither loaded nor
/// reported. A UTF-8 byte-order mark before the first line is dropped. `explicit_ids`: ids
/// come from the records (so duplicates of them are reported), not from line numbers.
fn read_lines<R: BufRead>(
    reader: R,
    path: &Path,
    explicit_ids: bool,
    mut parse: impl FnMut(&str, usize, &str) -> Result<Example, String>,
) -> Result<Dataset, DataError> {
    let name = dataset_name(path);
    let mut report = LoadReport {
        path: path.to_owned(),
        ..LoadReport::default()
    };
    let mut examples = Vec::new();
    let mut example_lines = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let line = match line {
            // Editors on Windows start UTF-8 files with a byte-order mark; it is not data.
            Ok(l) if i == 0 && l.starts_with('\u{feff}') => l['\u{feff}'.len_utf8()..].to_owned(),
            Ok(l) => l,
            // Invalid UTF-8 spoils one line only; an I/O failure would repeat, so stop there.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                report.lines += 1;
                report.skipped.push(SkippedLine {
                    path: path.to_owned(),
                    line: line_no,
                    reason: "not valid UTF-8".into(),
                });
                continue;
            }
            Err(source) => {
                return Err(DataError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            continue;
        }
        report.lines += 1;
        match parse(line, line_no, &name) {
            Ok(ex) => {
                examples.push(ex);
                example_lines.push(line_no);
            }
            // Clipped here, not only when printed: a reason may quote a megabyte-long line
            // (a field name, a serde message with the value) and the report is public.
            Err(reason) => report.skipped.push(SkippedLine {
                path: path.to_owned(),
                line: line_no,
                reason: clip(&reason, REPORT_TEXT_CHARS).into_owned(),
            }),
        }
    }
    report.loaded = examples.len();
    report.duplicates = find_duplicates(&examples, &example_lines, explicit_ids);
    if examples.is_empty() {
        return Err(DataError::EmptyDataset {
            path: path.to_owned(),
            skipped: report.skipped.len(),
            first_reason: report
                .skipped
                .first()
                .map(|s| format!("line {}: {}", s.line, s.reason)),
        });
    }
    Ok(Dataset {
        name,
        examples,
        report,
    })
}

/// Reads JSONL from any reader; `path` names the source in messages.
pub fn read_jsonl<R: BufRead>(
    reader: R,
    path: &Path,
    fields: &JsonlFields,
) -> Result<Dataset, DataError> {
    // Lines without an id get `{dataset}:{line}`, which cannot collide with a real
    // duplicate, so checking every id is safe.
    read_lines(reader, path, fields.id.is_some(), |line, line_no, name| {
        parse_jsonl_line(line, line_no, name, fields)
    })
}

fn parse_jsonl_line(
    line: &str,
    line_no: usize,
    name: &str,
    fields: &JsonlFields,
) -> Result<Example, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| "expected a JSON object".to_string())?;
    let question = match obj.get(&fields.question) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::String(_)) => return Err(format!("field `{}` is empty", fields.question)),
        Some(_) => return Err(format!("field `{}` is not a string", fields.question)),
        None => return Err(missing_field(&fields.question, obj)),
    };
    let answers = match obj.get(&fields.answers) {
        Some(v) => answers_from_json(v).map_err(|e| format!("field `{}`: {e}", fields.answers))?,
        None => return Err(missing_field(&fields.answers, obj)),
    };
    let id = match fields.id.as_ref().and_then(|f| obj.get(f)) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Null) | None => format!("{name}:{line_no}"),
        Some(_) => {
            return Err(format!(
                "field `{}` is neither a string nor a number",
                fields.id.as_deref().unwrap_or_default()
            ))
        }
    };
    let context = match fields.context.as_ref() {
        None => None,
        Some(f) => match obj.get(f) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            // Mixed files may give a context on some lines only: those without are open-domain.
            Some(Value::String(_)) | Some(Value::Null) | None => None,
            Some(_) => return Err(format!("field `{f}` is not a string")),
        },
    };
    let choices = match fields
        .choices
        .as_ref()
        .and_then(|f| obj.get(f).map(|v| (f, v)))
    {
        None | Some((_, Value::Null)) => Vec::new(),
        Some((f, v)) => answers_from_json(v).map_err(|e| format!("field `{f}`: {e}"))?,
    };
    Ok(Example {
        id,
        question,
        answers,
        context,
        choices,
    })
}

fn missing_field(field: &str, obj: &serde_json::Map<String, Value>) -> String {
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    format!(
        "missing field `{field}` (fields present: {})",
        keys.join(", ")
    )
}

fn answers_from_json(v: &Value) -> Result<Vec<String>, String> {
    let raw: Vec<String> = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                _ => Err("list holds a non-string".to_string()),
            })
            .collect::<Result<_, _>>()?,
        Value::Object(o) => match o.get("text") {
            Some(t) => return answers_from_json(t),
            None => return Err("object without a `text` entry".into()),
        },
        _ => return Err("expected a string or a list of strings".into()),
    };
    non_empty_answers(raw)
}

fn non_empty_answers(raw: Vec<String>) -> Result<Vec<String>, String> {
    let answers: Vec<String> = raw
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if answers.is_empty() {
        Err("no non-empty answer".into())
    } else {
        Ok(answers)
    }
}

/// Reads DPR TSV from any reader; `path` names the source in messages.
///
/// Tolerant of CSV-style quoting (a field wrapped in `"` with inner quotes doubled), which a
/// few TriviaQA lines use, some of them quoted twice (`"""What is """"x""""?"""`): a field is
/// unquoted as long as it is a well-formed quoted CSV field.
pub fn read_dpr_tsv<R: BufRead>(reader: R, path: &Path) -> Result<Dataset, DataError> {
    read_lines(reader, path, false, |line, line_no, name| {
        // The answer list never holds a tab, the question occasionally might: split at the last.
        let (q, a) = line
            .rsplit_once('\t')
            .ok_or_else(|| "no tab: expected `question<TAB>['answer', ...]`".to_string())?;
        let question = csv_unquote_all(q.trim()).trim().to_string();
        if question.is_empty() {
            return Err("empty question".into());
        }
        let a = a.trim();
        let answers = match parse_python_str_list(a) {
            Ok(list) => list,
            Err(first) => parse_python_str_list(&csv_unquote_all(a))
                .map_err(|_| format!("answer field is not a Python list of strings: {first}"))?,
        };
        // Doubled quotes left inside strings are CSV escaping that leaked into the literal.
        let answers = answers.into_iter().map(strip_csv_residue).collect();
        let answers = non_empty_answers(answers)?;
        Ok(Example {
            id: format!("{name}:{line_no}"),
            question,
            answers,
            context: None,
            choices: Vec::new(),
        })
    })
}

/// One level of CSV unquoting: `Some` only when `s` is a well-formed quoted field (wrapped in
/// `"`, every inner `"` doubled), so text that merely starts and ends with a quote
/// (`"Jaws" or "Alien"`) is left alone.
fn csv_unquote_once(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '"' && chars.next() != Some('"') {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

/// Undoes CSV escaping that leaked into an answer string (TriviaQA has answers such as
/// `"Macbeth in ""Macbeth"""` and `""""""Just Do It"""" (Nike)""`): while doubled quotes
/// remain, unquote a well-formed quoted field or else halve the doubled quotes; a string that
/// had doubled quotes then loses a last wrapping level (`""Uma Thurman""` → `Uma Thurman`).
/// Strings without doubled quotes are returned unchanged (`"Hello"` keeps its quotes).
fn strip_csv_residue(s: String) -> String {
    if !s.contains("\"\"") {
        return s;
    }
    let mut cur = s;
    // Each step shortens the string, so this ends.
    while cur.contains("\"\"") {
        cur = csv_unquote_once(&cur).unwrap_or_else(|| cur.replace("\"\"", "\""));
    }
    csv_unquote_all(&cur)
}

/// Removes every level of CSV quoting (TriviaQA has fields quoted twice).
fn csv_unquote_all(s: &str) -> String {
    let mut cur = s.to_string();
    while let Some(next) = csv_unquote_once(&cur) {
        cur = next;
    }
    cur
}

/// Parses a Python list literal of string literals, e.g. `['a', "b's", 'c\'d']`.
///
/// Handles single and double quotes, `u`/`r` prefixes, the common backslash escapes
/// (`\\ \' \" \n \t \r \xNN \uNNNN \UNNNNNNNN`) and adjacent-literal concatenation.
pub fn parse_python_str_list(s: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = s.trim().chars().collect();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1
        }
    };
    if chars.first() != Some(&'[') {
        return Err("does not start with `[`".into());
    }
    i += 1;
    let mut out = Vec::new();
    loop {
        skip_ws(&mut i);
        match chars.get(i) {
            Some(']') => {
                i += 1;
                break;
            }
            None => return Err("unterminated list".into()),
            _ => {}
        }
        let mut item = String::new();
        let mut parsed_one = false;
        // Adjacent literals concatenate, as in Python.
        loop {
            skip_ws(&mut i);
            let mut raw = false;
            while let Some(c) = chars.get(i) {
                match c {
                    'u' | 'U' => i += 1,
                    'r' | 'R' => {
                        raw = true;
                        i += 1
                    }
                    _ => break,
                }
            }
            let quote = match chars.get(i) {
                Some(&q @ ('\'' | '"')) => q,
                _ if parsed_one => break,
                Some(c) => return Err(format!("expected a string literal at `{c}`")),
                None => return Err("unterminated list".into()),
            };
            i += 1;
            loop {
                let c = *chars.get(i).ok_or("unterminated string literal")?;
                i += 1;
                if c == quote {
                    break;
                }
                if c != '\\' || raw {
                    if c == '\\' && raw {
                        // A raw string still cannot end on an escaped quote.
                        if let Some(&n) = chars.get(i) {
                            item.push('\\');
                            item.push(n);
                            i += 1;
                            continue;
                        }
                    }
                    item.push(c);
                    continue;
                }
                let e = *chars.get(i).ok_or("unterminated escape")?;
                i += 1;
                match e {
                    '\\' | '\'' | '"' => item.push(e),
                    'n' => item.push('\n'),
                    't' => item.push('\t'),
                    'r' => item.push('\r'),
                    '\n' => {}
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String =
                            chars.get(i..i + n).ok_or("short escape")?.iter().collect();
                        let code = u32::from_str_radix(&hex, 16)
                            .map_err(|_| format!("bad escape \\{e}{hex}"))?;
                        item.push(char::from_u32(code).ok_or("escape is not a character")?);
                        i += n;
                    }
                    other => {
                        // Python keeps unknown escapes verbatim.
                        item.push('\\');
                        item.push(other);
                    }
                }
            }
            parsed_one = true;
        }
        out.push(item);
        skip_ws(&mut i);
        match chars.get(i) {
            Some(',') => i += 1,
            Some(']') => {}
            Some(c) => return Err(format!("expected `,` or `]`, found `{c}`")),
            None => return Err("unterminated list".into()),
        }
    }
    skip_ws(&mut i);
    if i != chars.len() {
        return Err("trailing text after the list".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_reasons_stay_short_whatever_the_line_holds() {
        // Found by radit-fuzz: a 60,000-byte field name came back whole in the reason.
        let long = "q".repeat(60_000);
        let text =
            format!("{{\"{long}\": 1, \"answers\": [\"a\"]}}\n{{\"question\": \"{long}\"}}\n");
        let path = Path::new("long.jsonl");
        let err = read_jsonl(text.as_bytes(), path, &JsonlFields::default()).unwrap_err();
        assert!(err.to_string().len() < 1000, "{}", err.to_string().len());
        let text = format!("{text}{{\"question\": \"q\", \"answers\": [\"a\"]}}\n");
        let d = read_jsonl(text.as_bytes(), path, &JsonlFields::default()).unwrap();
        assert_eq!(d.report.skipped.len(), 2);
        for s in &d.report.skipped {
            assert!(s.to_string().len() < 300, "{}", s.to_string().len());
        }
    }

    #[test]
    fn python_lists() {
        assert_eq!(parse_python_str_list("['a', 'b']").unwrap(), vec!["a", "b"]);
        assert_eq!(
            parse_python_str_list(r#"["O'Brien", 'it\'s', 'x\\y', '\xe9']"#).unwrap(),
            vec!["O'Brien", "it's", "x\\y", "é"]
        );
        assert_eq!(parse_python_str_list("[]").unwrap(), Vec::<String>::new());
        assert_eq!(parse_python_str_list("['a',]").unwrap(), vec!["a"]);
        assert_eq!(parse_python_str_list("[u'a' 'b']").unwrap(), vec!["ab"]);
        assert!(parse_python_str_list("['a'").is_err());
        assert!(parse_python_str_list("'a'").is_err());
        assert!(parse_python_str_list("[1, 2]").is_err());
        assert!(parse_python_str_list("['a'] x").is_err());
    }

    #[test]
    fn csv_unquoting_is_strict_and_repeated() {
        assert_eq!(csv_unquote_all(r#""a ""b"" c""#), r#"a "b" c"#);
        // Quoted twice, as on TriviaQA dev line 27.
        assert_eq!(
            csv_unquote_all(r#""""What is """"x""""?""""#),
            r#"What is "x"?"#
        );
        // Shaped like TriviaQA dev line 1900: the inner field itself starts with a quote.
        let line_1900 = r##""""""""The 59th Street Bridge Song"""" was a hit.""""##;
        assert_eq!(
            csv_unquote_all(line_1900),
            r#""The 59th Street Bridge Song" was a hit."#
        );
        // Not a well-formed quoted field: left alone.
        assert_eq!(
            csv_unquote_all(r#""Jaws" or "Alien""#),
            r#""Jaws" or "Alien""#
        );
        assert_eq!(csv_unquote_all(r#"say "hi""#), r#"say "hi""#);
        assert_eq!(csv_unquote_all("\""), "\"");
        assert_eq!(csv_unquote_all(r#""""#), "");
    }

    #[test]
    fn csv_residue_in_answers() {
        let clean = |s: &str| strip_csv_residue(s.to_string());
        assert_eq!(
            clean(r#""Macbeth in ""Macbeth""""#),
            r#"Macbeth in "Macbeth""#
        );
        assert_eq!(
            // The shape of an answer on TriviaQA dev line 6499.
            clean(r#"""""""Just Do It"""" (Nike)"""#),
            r#""Just Do It" (Nike)"#
        );
        assert_eq!(clean(r#"""Uma Thurman"""#), "Uma Thurman");
        assert_eq!(clean(r#""Hello""#), r#""Hello""#);
        assert_eq!(clean("plain"), "plain");
    }
}
