//! The study summary behind `radit report`: evaluation reports (`radit eval --output`) and
//! training logs (`metrics.jsonl` of `radit train` stages) as one Markdown report with SVG
//! plots.
//!
//! The report (`OUT/README.md`) holds the command that regenerates it, the comparison table
//! of the evaluations ([`markdown_table`](crate::markdown_table)), paired bootstrap intervals
//! of each evaluation's EM / F1 difference to the first one, a summary of every training
//! stage, and links to the plots written beside it: EM / F1 per evaluation (`metrics.svg`),
//! recall@k for every k up to the retrieval depth (`recall-at-k.svg`), `train/loss` per stage
//! kind (`loss-<stage>.svg`) and the `dev/*` metrics per stage kind (`dev-<stage>.svg`).
//!
//! Where a training run keeps its stage logs is knowledge of the run-directory layout, not of
//! the summary: the caller passes each run's `(stage, metrics.jsonl)` list, which
//! `radit_pipeline::RunDir::stage_logs` finds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use radit_data::metrics::RetrievalMetrics;

use crate::{bootstrap_ci, markdown_table, ConfidenceInterval, EvalReport};

/// Coverage of the difference intervals.
const LEVEL: f64 = 0.95;

/// Plot size in pixels.
const SIZE: (u32, u32) = (800, 480);

/// Errors of writing a summary.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// The request is unusable (nothing to report, a malformed or repeated label).
    #[error("{0}")]
    Argument(String),
    /// An evaluation report cannot be read.
    #[error("--eval {label}: cannot read {}", path.display())]
    ReadEval {
        /// Its label.
        label: String,
        /// Its file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not an evaluation report.
    #[error("--eval {label}: {} is not a `radit eval` JSON report", path.display())]
    NotEvalReport {
        /// Its label.
        label: String,
        /// Its file.
        path: PathBuf,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// A report of one shard of an evaluation: its metrics cover only part of the questions.
    #[error("--eval {label}: {} is shard {shard} of an evaluation; merge the shards first (`radit eval-merge`)", path.display())]
    ShardReport {
        /// Its label.
        label: String,
        /// Its file.
        path: PathBuf,
        /// `I/N`.
        shard: String,
    },
    /// A stage's `metrics.jsonl` cannot be read.
    #[error("cannot read {}", path.display())]
    ReadLog {
        /// The log file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The output directory cannot be created.
    #[error("cannot create {}", path.display())]
    CreateOut {
        /// The output directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The README or a plot cannot be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Drawing a plot failed.
    #[error("drawing {}", path.display())]
    Plot {
        /// The plot's file.
        path: PathBuf,
        /// plotters' error.
        #[source]
        source: PlotError,
    },
}

/// A plotters error: its type is generic over the drawing backend, so it is kept boxed.
pub type PlotError = Box<dyn std::error::Error + Send + Sync>;

/// What to summarize and where: `radit report`'s flags.
#[derive(Debug, Clone)]
pub struct SummaryRequest {
    /// Evaluation reports written by `radit eval` (JSON), as `LABEL=PATH`. The differences
    /// are taken to the first one.
    pub evals: Vec<String>,
    /// Training runs by label, each with its stage logs in order (the run directory's owner,
    /// `radit_pipeline::RunDir::stage_logs`, finds them).
    pub runs: Vec<(String, Vec<StageLogFile>)>,
    /// Title of the report.
    pub title: String,
    /// Output directory: README.md and the SVG plots.
    pub out: PathBuf,
    /// The command that regenerates the report, recorded verbatim.
    pub command: String,
    /// Bootstrap resamples of the paired difference intervals.
    pub resamples: usize,
    /// Seed of the paired bootstrap.
    pub seed: u64,
}

/// Writes the report and its plots into `request.out`; returns the README's path.
///
/// Lines of a `metrics.jsonl` that are not `{"step": N, ...}` objects are skipped with a
/// warning on stderr (a log cut short by a crash still gives its earlier steps).
pub fn write_summary(request: &SummaryRequest) -> Result<PathBuf, SummaryError> {
    if request.evals.is_empty() && request.runs.is_empty() {
        return Err(SummaryError::Argument(
            "nothing to report: give at least one --eval LABEL=PATH or --run LABEL=DIR".into(),
        ));
    }
    let evals = parse_labeled(&request.evals, "--eval")?
        .into_iter()
        .map(|(label, path)| load_eval(label, &path))
        .collect::<Result<Vec<_>, _>>()?;
    let runs = request
        .runs
        .iter()
        .map(|(label, logs)| load_stages(label, logs))
        .collect::<Result<Vec<_>, _>>()?;
    let out = &request.out;
    std::fs::create_dir_all(out).map_err(|source| SummaryError::CreateOut {
        path: out.clone(),
        source,
    })?;

    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", request.title.trim());
    let _ = writeln!(
        md,
        "Regenerate this report with:\n\n```sh\n{}\n```\n",
        request.command
    );
    if !evals.is_empty() {
        eval_section(&mut md, &evals, request)?;
    }
    if !runs.is_empty() {
        training_section(&mut md, &runs, out)?;
    }
    let readme = out.join("README.md");
    write_file(&readme, md)?;
    Ok(readme)
}

/// Splits `LABEL=PATH` arguments (`flag` names them in errors); labels must be distinct and
/// non-empty.
pub fn parse_labeled(
    values: &[String],
    flag: &str,
) -> Result<Vec<(String, PathBuf)>, SummaryError> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for v in values {
        let Some((label, path)) = v.split_once('=') else {
            return Err(SummaryError::Argument(format!(
                "{flag} `{v}`: expected LABEL=PATH"
            )));
        };
        let label = label.trim();
        if label.is_empty() || path.is_empty() {
            return Err(SummaryError::Argument(format!(
                "{flag} `{v}`: expected LABEL=PATH with a non-empty label and path"
            )));
        }
        if out.iter().any(|(l, _)| l == label) {
            return Err(SummaryError::Argument(format!(
                "{flag}: the label `{label}` is given twice"
            )));
        }
        out.push((label.to_string(), PathBuf::from(path)));
    }
    Ok(out)
}

/// A command line as one shell-quoted string, `program` first: the default "regenerate
/// with" command of a report is the command line that wrote it.
pub fn command_line(program: &str, args: impl IntoIterator<Item = String>) -> String {
    std::iter::once(program.to_string())
        .chain(args.into_iter().map(|a| shell_quote(&a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `s` as one shell word: unchanged when it has no special characters, else single-quoted.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%^".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Writes `contents` to `path`.
fn write_file(path: &Path, contents: String) -> Result<(), SummaryError> {
    std::fs::write(path, contents).map_err(|source| SummaryError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// A `|` would end a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', r"\|")
}

/// A name usable in a file name.
fn file_stem(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Evaluations

/// An evaluation report under its label.
struct Eval {
    label: String,
    path: PathBuf,
    report: EvalReport,
}

fn load_eval(label: String, path: &Path) -> Result<Eval, SummaryError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(source) => {
            return Err(SummaryError::ReadEval {
                label,
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let report: EvalReport = match serde_json::from_str(&text) {
        Ok(report) => report,
        Err(source) => {
            return Err(SummaryError::NotEvalReport {
                label,
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if let Some(shard) = report.shard {
        // A part's metrics are not the evaluation's.
        return Err(SummaryError::ShardReport {
            label,
            path: path.to_path_buf(),
            shard: format!("{}/{}", shard.index, shard.count),
        });
    }
    Ok(Eval {
        label,
        path: path.to_path_buf(),
        report,
    })
}

fn eval_section(
    md: &mut String,
    evals: &[Eval],
    args: &SummaryRequest,
) -> Result<(), SummaryError> {
    md.push_str("## Evaluation\n\n");
    for e in evals {
        let run = &e.report.run;
        let _ = write!(
            md,
            "- **{}**: `{}` (generator `{}`",
            e.label,
            e.path.display(),
            run.generator
        );
        if let Some(q) = &run.query_encoder {
            let _ = write!(md, ", query encoder `{q}`");
        }
        if let Some(i) = &run.index {
            let _ = write!(md, ", index `{i}`");
        }
        if let Some(d) = &run.data {
            let _ = write!(md, ", data `{d}`");
        }
        md.push_str(")\n");
    }
    md.push('\n');
    // The table shows each report under its label on the command line.
    let relabeled: Vec<EvalReport> = evals
        .iter()
        .map(|e| {
            let mut r = e.report.clone();
            r.run.label = cell(&e.label);
            r
        })
        .collect();
    md.push_str(&markdown_table(&relabeled.iter().collect::<Vec<_>>()));
    md.push_str(
        "\nEM and F1 with their 95% bootstrap intervals over questions (from each report); \
         R@k: recall@k of the first answer-bearing chunk; MRR within the retrieval depth.\n\n",
    );
    differences(md, evals, args);

    md.push_str("### Plots\n\n");
    let bars = args.out.join("metrics.svg");
    em_f1_chart(&bars, evals)?;
    md.push_str("![EM and F1 per evaluation](metrics.svg)\n\n");
    let curves: Vec<(String, Vec<(f64, f64)>)> = evals
        .iter()
        .filter_map(|e| recall_curve(&e.report).map(|c| (e.label.clone(), c)))
        .collect();
    if curves.is_empty() {
        md.push_str("No evaluation retrieved chunks: no recall@k curve.\n\n");
    } else {
        let depth = curves
            .iter()
            .map(|(_, c)| c.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let chart = LineChart {
            title: "recall@k",
            x_desc: "k (chunks retrieved)",
            y_desc: "recall@k",
            y_range: Some(0.0..1.0),
            markers: depth <= 30,
        };
        chart.draw(&args.out.join("recall-at-k.svg"), &curves)?;
        let _ = writeln!(
            md,
            "![recall@k for k = 1..{depth}](recall-at-k.svg)\n\nRecall@k for every k up to the \
             retrieval depth, from the per-question rank of the first answer-bearing chunk.\n"
        );
    }
    Ok(())
}

/// Recall@k for k = 1..depth from the per-question ranks (`None` without retrieval).
fn recall_curve(report: &EvalReport) -> Option<Vec<(f64, f64)>> {
    let with: Vec<_> = report
        .questions
        .iter()
        .filter(|q| q.retrieved > 0)
        .collect();
    let depth = with.iter().map(|q| q.retrieved).max()?;
    let mut m = RetrievalMetrics::default();
    for q in &with {
        m.add(q.answer_rank);
    }
    Some((1..=depth).map(|k| (k as f64, m.recall_at(k))).collect())
}

/// Why two reports cannot be paired question by question (`None`: they can).
fn unpaired_reason(base: &EvalReport, other: &EvalReport) -> Option<String> {
    let (a, b) = (&base.questions, &other.questions);
    if a.is_empty() || b.is_empty() {
        return Some("a report has no per-question records".into());
    }
    if a.len() != b.len() {
        return Some(format!(
            "different question counts ({} vs {})",
            b.len(),
            a.len()
        ));
    }
    a.iter()
        .zip(b)
        .position(|(x, y)| x.id != y.id || x.question != y.question)
        .map(|i| {
            format!(
                "question #{} differs (id `{}` vs `{}`)",
                i + 1,
                b[i].id,
                a[i].id
            )
        })
}

/// Paired bootstrap interval of `mean(other − base)` over questions.
fn paired_ci(base: &[f64], other: &[f64], resamples: usize, seed: u64) -> ConfidenceInterval {
    let d: Vec<f64> = other.iter().zip(base).map(|(o, b)| o - b).collect();
    bootstrap_ci(&d, resamples, LEVEL, seed)
}

fn signed_ci(c: &ConfidenceInterval) -> String {
    format!("{:+.3} [{:+.3}, {:+.3}]", c.mean, c.low, c.high)
}

fn excludes_zero(c: &ConfidenceInterval) -> &'static str {
    if c.low > 0.0 || c.high < 0.0 {
        "yes: the interval excludes 0"
    } else {
        "no: the interval includes 0"
    }
}

fn differences(md: &mut String, evals: &[Eval], args: &SummaryRequest) {
    md.push_str("### Differences\n\n");
    let Some((base, rest)) = evals.split_first() else {
        return;
    };
    if rest.is_empty() {
        md.push_str("One evaluation only: nothing to compare.\n\n");
        return;
    }
    let _ = writeln!(
        md,
        "Each evaluation minus **{}**, per question: the mean difference with its paired \
         bootstrap {:.0}% interval ({} resamples of the questions, seed {}; EM and F1 share the \
         resamples). An interval that excludes 0 is a difference at the {:.0}% level.\n",
        base.label,
        LEVEL * 100.0,
        args.resamples,
        args.seed,
        (1.0 - LEVEL) * 100.0
    );
    md.push_str(
        "| run | vs | paired n | ΔEM [95% CI] | ΔEM ≠ 0 | ΔF1 [95% CI] | ΔF1 ≠ 0 |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let mut notes = Vec::new();
    for e in rest {
        let (b, o) = (&base.report, &e.report);
        match unpaired_reason(b, o) {
            None => {
                let em = |r: &EvalReport| r.questions.iter().map(|q| q.em).collect::<Vec<_>>();
                let f1 = |r: &EvalReport| r.questions.iter().map(|q| q.f1).collect::<Vec<_>>();
                let dem = paired_ci(&em(b), &em(o), args.resamples, args.seed);
                let df1 = paired_ci(&f1(b), &f1(o), args.resamples, args.seed);
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    cell(&e.label),
                    cell(&base.label),
                    o.questions.len(),
                    signed_ci(&dem),
                    excludes_zero(&dem),
                    signed_ci(&df1),
                    excludes_zero(&df1),
                );
            }
            Some(reason) => {
                let _ = writeln!(
                    md,
                    "| {} | {} | – | {:+.3} (unpaired) | – | {:+.3} (unpaired) | – |",
                    cell(&e.label),
                    cell(&base.label),
                    o.metrics.em - b.metrics.em,
                    o.metrics.f1 - b.metrics.f1,
                );
                notes.push(format!(
                    "- **{}** vs **{}**: not the same questions in the same order ({reason}); \
                     only the difference of the means is shown, without an interval.",
                    e.label, base.label
                ));
            }
        }
    }
    md.push('\n');
    if notes.is_empty() {
        md.push_str("All evaluations have the same questions in the same order.\n\n");
    } else {
        for n in notes {
            let _ = writeln!(md, "{n}");
        }
        md.push('\n');
    }
}

// ---------------------------------------------------------------------------------------
// Training runs

/// The `metrics.jsonl` of one stage: every scalar by name, then by step.
struct StageLog {
    /// The run's label.
    run: String,
    /// The stage directory relative to the run (`lm_ft`, `round-2/r_ft`; empty when the run
    /// directory is the stage).
    stage: String,
    /// The stage directory's name (`lm_ft`, `r_ft`).
    kind: String,
    /// Scalars: name → step → value (the last line wins for a step logged twice).
    scalars: BTreeMap<String, BTreeMap<u64, f64>>,
}

impl StageLog {
    /// `run`, `run round-2/r_ft`: the series name across runs.
    fn name(&self) -> String {
        if self.stage.is_empty() {
            self.run.clone()
        } else {
            format!("{} {}", self.run, self.stage)
        }
    }

    /// The series name within one stage kind's plot (`run`, `run round-2`).
    fn name_in_kind(&self) -> String {
        match self.stage.rsplit_once('/') {
            Some((round, _)) => format!("{} {round}", self.run),
            None => self.run.clone(),
        }
    }

    fn points(&self, key: &str) -> Vec<(f64, f64)> {
        self.scalars.get(key).map_or_else(Vec::new, |s| {
            s.iter().map(|(&step, &v)| (step as f64, v)).collect()
        })
    }
}

/// One stage log of a training run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageLogFile {
    /// The stage directory relative to the run (`lm_ft`, `round-2/r_ft`; empty when the run
    /// directory is itself the stage).
    pub stage: String,
    /// Its `metrics.jsonl`.
    pub metrics: PathBuf,
}

/// Reads the logs of the run labeled `label`.
fn load_stages(label: &str, logs: &[StageLogFile]) -> Result<Vec<StageLog>, SummaryError> {
    logs.iter()
        .map(|log| {
            // The stage kind is the directory's name; canonical, so that a run given as `.`
            // (itself a stage directory) is named after the directory.
            let stage_dir = log.metrics.parent().unwrap_or(Path::new(""));
            let kind = stage_dir
                .canonicalize()
                .unwrap_or_else(|_| stage_dir.to_path_buf())
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("stage")
                .to_string();
            let scalars = read_jsonl(&log.metrics)?;
            Ok(StageLog {
                run: label.to_string(),
                stage: log.stage.clone(),
                kind,
                scalars,
            })
        })
        .collect()
}

/// Reads a `metrics.jsonl`: `{"step":N,"name":value,...}` per line. Non-numeric values
/// (`null` for a non-finite one) are skipped, lines that are not such an object are skipped
/// with a warning, and a step logged twice (a resumed run) keeps its last value.
fn read_jsonl(path: &Path) -> Result<BTreeMap<String, BTreeMap<u64, f64>>, SummaryError> {
    let text = std::fs::read_to_string(path).map_err(|source| SummaryError::ReadLog {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
    let mut skipped = 0usize;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(line) else {
            skipped += 1;
            continue;
        };
        let Some(step) = fields.get("step").and_then(serde_json::Value::as_u64) else {
            skipped += 1;
            continue;
        };
        for (name, value) in &fields {
            if let Some(v) = value.as_f64().filter(|v| v.is_finite()) {
                if name != "step" {
                    out.entry(name.clone()).or_default().insert(step, v);
                }
            }
        }
    }
    if skipped > 0 {
        tracing::warn!(
            "{}: skipped {skipped} line(s) that are not {{\"step\": N, ...}} objects",
            path.display()
        );
    }
    Ok(out)
}

fn training_section(
    md: &mut String,
    runs: &[Vec<StageLog>],
    out: &Path,
) -> Result<(), SummaryError> {
    md.push_str("## Training\n\n");
    md.push_str(
        "| run | stage | steps | train/loss first → last (min) | dev metrics (last eval) |\n\
         |---|---|---|---|---|\n",
    );
    let stages: Vec<&StageLog> = runs.iter().flatten().collect();
    for s in &stages {
        let steps = s
            .scalars
            .values()
            .filter_map(|v| v.keys().next_back())
            .max()
            .map_or_else(|| "–".into(), u64::to_string);
        let loss = s.scalars.get("train/loss").map_or_else(
            || "–".to_string(),
            |l| {
                let first = l.values().next().copied().unwrap_or(f64::NAN);
                let last = l.values().next_back().copied().unwrap_or(f64::NAN);
                let min = l.values().copied().fold(f64::INFINITY, f64::min);
                format!("{first:.4} → {last:.4} ({min:.4})")
            },
        );
        let dev: Vec<String> = s
            .scalars
            .iter()
            .filter(|(k, _)| k.starts_with("dev/"))
            .filter_map(|(k, v)| {
                v.iter()
                    .next_back()
                    .map(|(step, x)| format!("{k} {x:.3} @{step}"))
            })
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {steps} | {loss} | {} |",
            cell(&s.run),
            cell(if s.stage.is_empty() {
                &s.kind
            } else {
                &s.stage
            }),
            if dev.is_empty() {
                "–".to_string()
            } else {
                cell(&dev.join(", "))
            },
        );
    }
    md.push('\n');
    let mut kinds: Vec<&str> = stages.iter().map(|s| s.kind.as_str()).collect();
    kinds.dedup();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in kinds {
        let of_kind: Vec<&&StageLog> = stages.iter().filter(|s| s.kind == kind).collect();
        let _ = writeln!(md, "### {kind}\n");
        let losses: Vec<(String, Vec<(f64, f64)>)> = of_kind
            .iter()
            .map(|s| (s.name_in_kind(), s.points("train/loss")))
            .filter(|(_, p)| !p.is_empty())
            .collect();
        let stem = file_stem(kind);
        if losses.is_empty() {
            md.push_str("No `train/loss` logged.\n\n");
        } else {
            let file = format!("loss-{stem}.svg");
            let title = format!("train/loss, {kind}");
            LineChart {
                title: &title,
                x_desc: "step",
                y_desc: "train/loss",
                y_range: None,
                markers: false,
            }
            .draw(&out.join(&file), &losses)?;
            let _ = writeln!(md, "![{title}]({file})\n");
        }
        let dev: Vec<(String, Vec<(f64, f64)>)> = of_kind
            .iter()
            .flat_map(|s| {
                s.scalars
                    .keys()
                    .filter(|k| k.starts_with("dev/"))
                    .map(|k| (format!("{} {k}", s.name_in_kind()), s.points(k)))
            })
            .collect();
        if !dev.is_empty() {
            let file = format!("dev-{stem}.svg");
            let title = format!("dev metrics, {kind}");
            LineChart {
                title: &title,
                x_desc: "step",
                y_desc: "value",
                y_range: None,
                markers: true,
            }
            .draw(&out.join(&file), &dev)?;
            let _ = writeln!(md, "![{title}]({file})\n");
        }
        let names: Vec<String> = of_kind.iter().map(|s| s.name()).collect();
        let _ = writeln!(md, "Stages: {}.\n", names.join(", "));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Plots (plotters' SVG backend; text is left to the viewer's fonts)

/// `lo..hi` padded by 5% (a unit around a single value).
fn padded(lo: f64, hi: f64) -> Range<f64> {
    if !(lo.is_finite() && hi.is_finite()) {
        return 0.0..1.0;
    }
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else {
        lo.abs().max(1.0) * 0.05
    };
    (lo - pad)..(hi + pad)
}

fn series_color(i: usize) -> RGBColor {
    // Palette99 starts with a yellow that is hard to read on white: skip it.
    let c = Palette99::pick(if i >= 3 { i + 1 } else { i });
    let (r, g, b) = c.rgb();
    RGBColor(r, g, b)
}

/// An x tick: whole numbers (steps, k) without decimals.
fn tick(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// Renders into an SVG string, then writes it to `path`.
fn write_svg(
    path: &Path,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), PlotError>,
) -> Result<(), SummaryError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let drawn: Result<(), PlotError> = (|| {
            root.fill(&WHITE)?;
            draw(&root)?;
            root.present()?;
            Ok(())
        })();
        drawn.map_err(|source| SummaryError::Plot {
            path: path.to_path_buf(),
            source,
        })?;
    }
    write_file(path, svg)
}

/// A line chart with one series per name.
struct LineChart<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    /// Fixed y range (default: the data's, padded).
    y_range: Option<Range<f64>>,
    /// Mark each point with a dot (sparse series).
    markers: bool,
}

impl LineChart<'_> {
    fn draw(&self, path: &Path, series: &[(String, Vec<(f64, f64)>)]) -> Result<(), SummaryError> {
        let points = || series.iter().flat_map(|(_, p)| p.iter());
        let (x0, x1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
        let (y0, y1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
        let x_range = padded(x0, x1);
        let y_range = match &self.y_range {
            Some(r) => padded(r.start, r.end),
            None => padded(y0, y1),
        };
        // Rising curves leave the lower right corner free for the legend, falling ones the upper.
        let rise: f64 = series
            .iter()
            .filter_map(|(_, p)| Some(p.last()?.1 - p.first()?.1))
            .sum();
        let legend = if rise > 0.0 {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperRight
        };
        write_svg(path, |root| {
            let mut chart = ChartBuilder::on(root)
                .caption(self.title, ("sans-serif", 22))
                .margin(12)
                .x_label_area_size(45)
                .y_label_area_size(65)
                .build_cartesian_2d(x_range, y_range)?;
            chart
                .configure_mesh()
                .label_style(("sans-serif", 14))
                .axis_desc_style(("sans-serif", 15))
                .x_label_formatter(&|x| tick(*x))
                .x_desc(self.x_desc)
                .y_desc(self.y_desc)
                .light_line_style(WHITE.mix(0.0))
                .draw()?;
            for (i, (name, pts)) in series.iter().enumerate() {
                let color = series_color(i);
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                if self.markers || pts.len() == 1 {
                    chart.draw_series(
                        pts.iter()
                            .map(|&p| Circle::new(p, 3, color.filled()))
                            .collect::<Vec<_>>(),
                    )?;
                }
            }
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(legend)
                .draw()?;
            Ok(())
        })
    }
}

/// EM and F1 bars per evaluation with their bootstrap intervals as whiskers.
fn em_f1_chart(path: &Path, evals: &[Eval]) -> Result<(), SummaryError> {
    let n = evals.len().max(1);
    let top = evals
        .iter()
        .map(|e| e.report.metrics.em_ci.high.max(e.report.metrics.f1_ci.high))
        .fold(0.0f64, f64::max);
    let y_max = if top > 0.0 {
        (top * 1.15).min(1.05)
    } else {
        1.0
    };
    let names: Vec<String> = evals.iter().map(|e| e.label.clone()).collect();
    write_svg(path, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("EM and F1 per evaluation (95% CI)", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(65)
            // n segments: an integer range a..b has b − a + 1 values.
            .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..y_max)?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 15))
            .disable_x_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_labels(n)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    names.get(*i).cloned().unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .y_desc("score")
            .draw()?;
        // Bars are placed in pixels: evaluation i has the i-th of n equal slots.
        let (xs, _) = chart.plotting_area().get_pixel_range();
        let slot = f64::from(xs.end - xs.start) / n as f64;
        let y_px = |y: f64| chart.backend_coord(&(SegmentValue::Exact(0), y)).1;
        let base = y_px(0.0);
        for (i, e) in evals.iter().enumerate() {
            let m = &e.report.metrics;
            let left = f64::from(xs.start) + slot * i as f64;
            for (j, ci) in [m.em_ci, m.f1_ci].iter().enumerate() {
                let color = series_color(j);
                let a = (left + slot * (0.15 + 0.36 * j as f64)).round() as i32;
                let b = (left + slot * (0.49 + 0.36 * j as f64)).round() as i32;
                root.draw(&Rectangle::new(
                    [(a, y_px(ci.mean)), (b, base)],
                    color.filled(),
                ))?;
                let mid = (a + b) / 2;
                let (lo, hi) = (y_px(ci.low), y_px(ci.high));
                let style = BLACK.stroke_width(1);
                root.draw(&PathElement::new(vec![(mid, lo), (mid, hi)], style))?;
                for y in [lo, hi] {
                    root.draw(&PathElement::new(vec![(mid - 5, y), (mid + 5, y)], style))?;
                }
            }
        }
        for (j, name) in ["EM", "F1"].into_iter().enumerate() {
            let color = series_color(j);
            chart
                .draw_series(std::iter::empty::<Rectangle<(SegmentValue<usize>, f64)>>())?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_split_at_the_first_equals_and_must_be_distinct() {
        let ok = parse_labeled(&["a=x=y".into(), "b=z".into()], "--eval").unwrap();
        assert_eq!(ok[0], ("a".into(), PathBuf::from("x=y")));
        assert!(parse_labeled(&["a".into()], "--eval").is_err());
        assert!(parse_labeled(&["=x".into()], "--eval").is_err());
        assert!(parse_labeled(&["a=".into()], "--eval").is_err());
        assert!(parse_labeled(&["a=x".into(), "a=y".into()], "--eval").is_err());
    }

    #[test]
    fn jsonl_keeps_the_last_value_per_step_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        std::fs::write(
            &p,
            "{\"step\":1,\"train/loss\":3.0}\n{\"step\":2,\"train/loss\":null}\n\
             {\"step\":2,\"dev/em\":0.5}\nnot json\n{\"step\":1,\"train/loss\":2.0}\n",
        )
        .unwrap();
        let s = read_jsonl(&p).unwrap();
        assert_eq!(s["train/loss"].len(), 1);
        assert_eq!(s["train/loss"][&1], 2.0);
        assert_eq!(s["dev/em"][&2], 0.5);
    }

    #[test]
    fn quoting_is_shell_safe() {
        assert_eq!(shell_quote("a=b/c.json"), "a=b/c.json");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(
            command_line(
                "radit",
                ["report".to_string(), "--title".into(), "a b".into()]
            ),
            "radit report --title 'a b'"
        );
    }
}
