//! The evaluation report: per-question records, aggregate metrics, JSON (serde) and a
//! Markdown table.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use radit_data::metrics::RetrievalMetrics;
use radit_data::normalize_answer;
use serde::{Deserialize, Serialize};

use crate::bootstrap::{bootstrap_ci, ConfidenceInterval, DEFAULT_LEVEL};
use crate::{EvalConfig, Mode, RECALL_KS};

/// What was evaluated: filled in by the caller, copied into the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// A short name of the system (e.g. `base`, `LM-ft`, `LM-ft + R-ft`).
    pub label: String,
    /// The generator's source.
    pub generator: String,
    /// The query encoder's source (none in `closed_book` mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_encoder: Option<String>,
    /// The index directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// The evaluation data file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// One chunk given to the generator for a question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkUse {
    /// Chunk id (row in the index).
    pub id: u32,
    /// Title of its document.
    pub title: String,
    /// Retrieval score `s(x, c) = E_q(x)·E_d(c)`.
    pub retrieval_score: f32,
    /// `p_R(c|x)`: softmax of the top-k retrieval scores over τ_R (sums to 1 over the chunks).
    pub weight: f64,
    /// `log p_LM(prediction | c ∘ x)` (ensemble mode; `None` when the prompt did not fit or
    /// in the other modes).
    pub log_p_lm: Option<f64>,
    /// This chunk's share of the ensembled probability of the prediction,
    /// `p_R(c|x) p_LM(y|c∘x) / p(y|x)` (ensemble mode; sums to 1 over the chunks).
    pub contribution: Option<f64>,
}

/// One candidate answer and its score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateRecord {
    /// The answer text.
    pub text: String,
    /// `log p(y|x)` under the mode (`None`: could not be scored).
    pub log_p: Option<f64>,
    /// Its score under the chosen scoring, lower is better (`None`: could not be scored).
    pub score: Option<f64>,
}

/// Everything about one evaluated question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionRecord {
    /// Example id.
    pub id: String,
    /// The question.
    pub question: String,
    /// Gold answers.
    pub gold: Vec<String>,
    /// Options of a multiple-choice question.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// The predicted answer.
    pub prediction: String,
    /// Exact match (max over gold answers).
    pub em: f64,
    /// Token F1 (max over gold answers).
    pub f1: f64,
    /// ROUGE-L (max over gold answers).
    pub rouge_l: f64,
    /// Multiple choice: whether the prediction is the first gold answer (SQuAD-normalized).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct: Option<bool>,
    /// `log p(prediction|x)` under the mode.
    pub log_p: Option<f64>,
    /// The prediction's score under the chosen scoring.
    pub score: Option<f64>,
    /// The candidates considered (choices, or distinct decoded answers), in order.
    pub candidates: Vec<CandidateRecord>,
    /// The chunks the generator read (top-k; empty in `closed_book` mode), best first.
    pub chunks: Vec<ChunkUse>,
    /// Chunks retrieved for recall@k / MRR (0 when nothing was retrieved).
    pub retrieved: usize,
    /// 0-based rank of the first retrieved chunk containing a gold answer.
    pub answer_rank: Option<usize>,
    /// The example's own gold context was the background (no retrieval).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gold_context: bool,
}

/// Recall@k and MRR of the first answer-bearing chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalSummary {
    /// Chunks retrieved per question.
    pub depth: usize,
    /// Questions with retrieval.
    pub questions: usize,
    /// Recall@k for k in 1, 5, 10 (those within the depth).
    pub recall_at: BTreeMap<usize, f64>,
    /// Mean reciprocal rank within the depth.
    pub mrr: f64,
}

/// Aggregate metrics of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Questions evaluated.
    pub count: usize,
    /// Mean exact match.
    pub em: f64,
    /// Mean token F1.
    pub f1: f64,
    /// Mean ROUGE-L.
    pub rouge_l: f64,
    /// Bootstrap interval of EM.
    pub em_ci: ConfidenceInterval,
    /// Bootstrap interval of F1.
    pub f1_ci: ConfidenceInterval,
    /// Multiple-choice questions among them.
    pub multiple_choice: usize,
    /// Accuracy on the multiple-choice questions (`None` without any).
    pub accuracy: Option<f64>,
    /// Retrieval quality (`None` when nothing was retrieved).
    pub retrieval: Option<RetrievalSummary>,
}

impl EvalMetrics {
    /// Aggregates per-question records (bootstrap with `config`'s resamples and seed).
    pub fn compute(records: &[QuestionRecord], config: &EvalConfig) -> Self {
        let em: Vec<f64> = records.iter().map(|r| r.em).collect();
        let f1: Vec<f64> = records.iter().map(|r| r.f1).collect();
        let mean = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let rouge: Vec<f64> = records.iter().map(|r| r.rouge_l).collect();
        let mc: Vec<bool> = records.iter().filter_map(|r| r.correct).collect();
        let accuracy =
            (!mc.is_empty()).then(|| mc.iter().filter(|&&c| c).count() as f64 / mc.len() as f64);
        let with_retrieval: Vec<&QuestionRecord> =
            records.iter().filter(|r| r.retrieved > 0).collect();
        let retrieval = (!with_retrieval.is_empty()).then(|| {
            let depth = with_retrieval
                .iter()
                .map(|r| r.retrieved)
                .max()
                .unwrap_or(0);
            let mut m = RetrievalMetrics::default();
            for r in &with_retrieval {
                m.add(r.answer_rank);
            }
            RetrievalSummary {
                depth,
                questions: with_retrieval.len(),
                recall_at: RECALL_KS
                    .iter()
                    .filter(|&&k| k <= depth)
                    .map(|&k| (k, m.recall_at(k)))
                    .collect(),
                mrr: m.mrr(),
            }
        });
        let (n, seed) = (config.bootstrap_resamples, config.bootstrap_seed);
        Self {
            count: records.len(),
            em: mean(&em),
            f1: mean(&f1),
            rouge_l: mean(&rouge),
            // The same seed: both intervals come from the same resamples of the questions.
            em_ci: bootstrap_ci(&em, n, DEFAULT_LEVEL, seed),
            f1_ci: bootstrap_ci(&f1, n, DEFAULT_LEVEL, seed),
            multiple_choice: mc.len(),
            accuracy,
            retrieval,
        }
    }
}

/// A full evaluation report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// What was evaluated.
    pub run: RunInfo,
    /// The settings.
    pub config: EvalConfig,
    /// Aggregate metrics.
    pub metrics: EvalMetrics,
    /// Wall-clock seconds of the evaluation.
    pub seconds: f64,
    /// One record per question, in input order.
    pub questions: Vec<QuestionRecord>,
    /// The part of the questions a sharded evaluation covered (`radit eval --shard I/N`);
    /// absent for a whole evaluation, and for the merge of all shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
}

/// Which questions one shard of an evaluation covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// This shard, `0..count`.
    pub index: usize,
    /// Shards of the evaluation.
    pub count: usize,
    /// Its questions are `first..end` of the data.
    pub first: usize,
    /// One past its last question.
    pub end: usize,
    /// Questions in the whole evaluation.
    pub total: usize,
}

/// Why shard reports cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MergeError(pub String);

/// One report from the shard reports of an evaluation (`radit eval --shard I/N`, every `I`
/// of one `N`): the questions in data order, and metrics and bootstrap intervals computed on
/// all of them, as one process evaluating every question would report them. The shards
/// must have evaluated the same models with the same settings on the same data.
pub fn merge_reports(mut parts: Vec<EvalReport>) -> Result<EvalReport, MergeError> {
    let fail = |m: String| Err(MergeError(m));
    parts.sort_by_key(|p| p.shard.map(|s| s.index));
    let Some(first) = parts.first() else {
        return fail("no shard reports to merge".into());
    };
    let Some(info) = first.shard else {
        return fail("a report without a `shard` field is among the shard reports".into());
    };
    let (run, config) = (first.run.clone(), first.config.clone());
    let mut seen = vec![false; info.count];
    for p in &parts {
        let Some(s) = p.shard else {
            return fail("a report without a `shard` field is among the shard reports".into());
        };
        if s.count != info.count || s.total != info.total {
            return fail(format!(
                "shard {}/{} of {} questions does not belong with shard {}/{} of {}",
                s.index, s.count, s.total, info.index, info.count, info.total
            ));
        }
        if s.index >= s.count || std::mem::replace(&mut seen[s.index], true) {
            return fail(format!(
                "shard {}/{} is given twice (or out of range)",
                s.index, s.count
            ));
        }
        if p.run != run {
            return fail(format!(
                "shard {}/{} evaluated other models or data ({:?}) than shard {}/{} ({:?})",
                s.index, s.count, p.run, info.index, info.count, run
            ));
        }
        if p.config != config {
            return fail(format!(
                "shard {}/{} used other settings than shard {}/{}",
                s.index, s.count, info.index, info.count
            ));
        }
    }
    let missing: Vec<String> = (0..info.count)
        .filter(|&i| !seen[i])
        .map(|i| format!("{i}/{}", info.count))
        .collect();
    if !missing.is_empty() {
        return fail(format!("shard report(s) missing: {}", missing.join(", ")));
    }
    let mut at = 0;
    for p in &parts {
        let s = p.shard.unwrap_or(info);
        if s.first != at || s.end - s.first != p.questions.len() {
            return fail(format!(
                "shard {}/{} holds questions {}..{} ({} records), expected to start at {at}",
                s.index,
                s.count,
                s.first,
                s.end,
                p.questions.len()
            ));
        }
        at = s.end;
    }
    if at != info.total {
        return fail(format!("the shards cover {at} of {} questions", info.total));
    }
    let seconds = parts.iter().map(|p| p.seconds).sum();
    let questions: Vec<QuestionRecord> = parts.into_iter().flat_map(|p| p.questions).collect();
    Ok(EvalReport {
        metrics: EvalMetrics::compute(&questions, &config),
        run,
        config,
        seconds,
        questions,
        shard: None,
    })
}

impl EvalReport {
    /// The report as a one-row Markdown table (see [`markdown_table`]).
    pub fn to_markdown(&self) -> String {
        markdown_table(&[self])
    }
}

/// Whether a multiple-choice prediction is the first gold answer (SQuAD-normalized).
pub fn choice_correct(prediction: &str, gold: &[String]) -> bool {
    gold.first()
        .is_some_and(|g| normalize_answer(g) == normalize_answer(prediction))
}

/// A Markdown table comparing reports, one row each: run, mode, scoring, k, n, EM and F1
/// with their intervals, ROUGE-L, accuracy (multiple choice), recall@k and MRR.
pub fn markdown_table(reports: &[&EvalReport]) -> String {
    let ks: BTreeSet<usize> = reports
        .iter()
        .filter_map(|r| r.metrics.retrieval.as_ref())
        .flat_map(|s| s.recall_at.keys().copied())
        .collect();
    let mut out = String::from(
        "| run | mode | scoring | k | n | EM [95% CI] | F1 [95% CI] | ROUGE-L | acc |",
    );
    for k in &ks {
        let _ = write!(out, " R@{k} |");
    }
    out.push_str(" MRR |\n|---|---|---|---|---|---|---|---|---|");
    out.push_str(&"---|".repeat(ks.len() + 1));
    out.push('\n');
    let dash = || "–".to_string();
    for r in reports {
        let m = &r.metrics;
        let label = if r.run.label.is_empty() {
            "–"
        } else {
            r.run.label.as_str()
        };
        let ci = |c: &ConfidenceInterval| format!("{:.3} [{:.3}, {:.3}]", c.mean, c.low, c.high);
        let k = if r.config.mode == Mode::ClosedBook {
            dash()
        } else {
            r.config.k.to_string()
        };
        let _ = write!(
            out,
            "| {label} | {} | {} | {k} | {} | {} | {} | {:.3} | {} |",
            r.config.mode,
            r.config.scoring,
            m.count,
            ci(&m.em_ci),
            ci(&m.f1_ci),
            m.rouge_l,
            m.accuracy.map_or_else(dash, |a| format!("{a:.3}")),
        );
        for k in &ks {
            let cell = m
                .retrieval
                .as_ref()
                .and_then(|s| s.recall_at.get(k))
                .map_or_else(dash, |v| format!("{v:.3}"));
            let _ = write!(out, " {cell} |");
        }
        let mrr = m
            .retrieval
            .as_ref()
            .map_or_else(dash, |s| format!("{:.3}", s.mrr));
        let _ = writeln!(out, " {mrr} |");
    }
    out
}

/// `Some(x)` when finite (JSON has no infinities).
pub(crate) fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}
