//! Training files from the judgments, in formats people already use.
//!
//! * `lm_ft.jsonl`: `{"id", "question", "answers": [answer], "context"?, "chunk_ids"}` per
//!   reviewed question (its latest judgment): the corrected answer, or the model's answer when
//!   the reviewer marked it right; `context` is the text of the chunks marked helpful (best
//!   first, blank-line separated), which radit's LM-ft reads as the background instead of a
//!   retrieved chunk. A question with no helpful chunk has no `context` and is trained with
//!   retrieved chunks. Loadable as a recipe's `data.train`.
//! * `retrieval.jsonl`: `{"question", "chunk_id", "text_hash", "index", "label", "answer_id",
//!   "reviewer"}` per chunk label, oldest first (a later label of the same question and chunk
//!   overrides an earlier one); `label` is 1 (helpful) or 0. R-ft reads it through
//!   `[stages.r_ft.feedback] labels = ...`.
//! * `preferences.jsonl`: `{"prompt", "chosen", "rejected"}`, TRL's standard DPO format, from
//!   the A/B picks (ties skipped) and from corrections (the correction over the model's answer).
//! * `feedback.json`: what was exported from which database, with the counts.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use crate::db::{Choice, ChunkLabel, FeedbackDb, JudgmentView, Verdict, SCHEMA_VERSION};
use crate::{question_key, FeedbackError, Result};

/// The files an export writes, in `DIR`.
pub const EXPORT_FILES: [&str; 4] = [
    "lm_ft.jsonl",
    "retrieval.jsonl",
    "preferences.jsonl",
    "feedback.json",
];

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    /// Judgments read.
    pub judgments: usize,
    /// Lines of `lm_ft.jsonl`.
    pub lm_ft: usize,
    /// Of those, with a helpful chunk as the background.
    pub lm_ft_with_context: usize,
    /// Lines of `retrieval.jsonl`.
    pub retrieval: usize,
    /// Lines of `preferences.jsonl`.
    pub preferences: usize,
}

impl std::fmt::Display for ExportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} judgment(s) exported: lm_ft.jsonl {} example(s) ({} with a helpful chunk as \
             background), retrieval.jsonl {} label(s), preferences.jsonl {} pair(s)",
            self.judgments, self.lm_ft, self.lm_ft_with_context, self.retrieval, self.preferences
        )
    }
}

/// The latest judgment of each answer, newest first.
pub(crate) fn latest_per_answer(judgments: &[JudgmentView]) -> Vec<&JudgmentView> {
    let mut seen = HashSet::new();
    judgments
        .iter()
        .filter(|j| seen.insert(j.answer.id))
        .collect()
}

/// The answer a judgment approves: the correction, else the model's answer marked right.
fn approved(j: &JudgmentView) -> Option<&str> {
    match (&j.judgment.correction, j.judgment.verdict) {
        (Some(c), _) => Some(c.as_str()),
        (None, Some(Verdict::Right)) => Some(j.answer.shown.answer.as_str()),
        _ => None,
    }
}

fn jsonl(lines: &[serde_json::Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Writes the training files of `db` into `out` (created if missing). Refuses to replace
/// an earlier export's files unless `overwrite`: each file is written atomically, so a
/// failed export leaves every file either old or new, never torn.
pub fn export(db: &FeedbackDb, out: &Path, overwrite: bool) -> Result<ExportReport> {
    let io = |path: &Path, e: &dyn std::fmt::Display| FeedbackError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    if !overwrite {
        if let Some(existing) = EXPORT_FILES
            .iter()
            .map(|f| out.join(f))
            .find(|p| p.exists())
        {
            return Err(io(
                &existing,
                &"already exists (an earlier export?); choose another --out or pass --overwrite",
            ));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| io(out, &e))?;
    let all = db.judgments(None)?;
    let mut report = ExportReport {
        judgments: all.len(),
        ..ExportReport::default()
    };
    let latest = latest_per_answer(&all);

    // lm_ft.jsonl: the latest approving judgment of each question, oldest question first.
    let mut questions = HashSet::new();
    let mut lm_ft = Vec::new();
    for j in &latest {
        let Some(answer) = approved(j) else { continue };
        if !questions.insert(question_key(&j.answer.shown.question)) {
            continue;
        }
        let helpful: Vec<_> = j
            .judgment
            .chunks
            .iter()
            .filter(|(_, l)| *l == ChunkLabel::Helpful)
            .filter_map(|(rank, _)| j.answer.shown.chunks.get(*rank as usize))
            .collect();
        let mut line = json!({
            "id": format!("feedback-{}", j.answer.id),
            "question": j.answer.shown.question,
            "answers": [answer],
            "chunk_ids": helpful.iter().map(|c| c.chunk_id).collect::<Vec<_>>(),
        });
        if !helpful.is_empty() {
            let context: Vec<&str> = helpful.iter().map(|c| c.text.as_str()).collect();
            line["context"] = json!(context.join("\n\n"));
            report.lm_ft_with_context += 1;
        }
        lm_ft.push(line);
    }
    lm_ft.reverse();
    report.lm_ft = lm_ft.len();

    // retrieval.jsonl: every label, oldest first, so a later one overrides.
    let mut retrieval = Vec::new();
    for j in all.iter().rev() {
        for (rank, label) in &j.judgment.chunks {
            let Some(c) = j.answer.shown.chunks.get(*rank as usize) else {
                continue;
            };
            retrieval.push(json!({
                "question": j.answer.shown.question,
                "chunk_id": c.chunk_id,
                "text_hash": c.text_hash,
                "index": j.answer.shown.models.index_identity,
                "label": u8::from(*label == ChunkLabel::Helpful),
                "answer_id": j.answer.id,
                "reviewer": j.judgment.reviewer,
            }));
        }
    }
    report.retrieval = retrieval.len();

    // preferences.jsonl: A/B picks, then corrections of wrong answers.
    let mut pairs = Vec::new();
    let mut seen = HashSet::new();
    let mut push = |prompt: &str, chosen: &str, rejected: &str| {
        let (chosen, rejected) = (chosen.trim(), rejected.trim());
        // One pair per question (as a reviewer counts questions) and answer pair.
        let key = (
            question_key(prompt),
            chosen.to_string(),
            rejected.to_string(),
        );
        if chosen != rejected && seen.insert(key) {
            pairs.push(json!({"prompt": prompt.trim(), "chosen": chosen, "rejected": rejected}));
        }
    };
    for p in db.preferences()? {
        let (chosen, rejected) = match p.choice {
            Choice::A => (&p.a, &p.b),
            Choice::B => (&p.b, &p.a),
            Choice::Tie => continue,
        };
        push(
            &chosen.shown.question,
            &chosen.shown.answer,
            &rejected.shown.answer,
        );
    }
    for j in latest.iter().rev() {
        if let Some(c) = &j.judgment.correction {
            push(&j.answer.shown.question, c, &j.answer.shown.answer);
        }
    }
    report.preferences = pairs.len();

    let manifest = json!({
        "database": db.path().display().to_string(),
        "schema_version": SCHEMA_VERSION,
        "report": report,
        "files": &EXPORT_FILES[..3],
    });
    let files: [(PathBuf, Vec<u8>); 4] = [
        (out.join(EXPORT_FILES[0]), jsonl(&lm_ft)),
        (out.join(EXPORT_FILES[1]), jsonl(&retrieval)),
        (out.join(EXPORT_FILES[2]), jsonl(&pairs)),
        (
            out.join(EXPORT_FILES[3]),
            format!("{manifest:#}\n").into_bytes(),
        ),
    ];
    for (path, bytes) in &files {
        radit_util::fs::atomic_write(path, bytes).map_err(|e| io(path, &e))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tests::shown;
    use crate::db::{Judgment, Preference};

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn export_writes_lm_ft_retrieval_and_dpo_files_from_the_latest_judgments() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = FeedbackDb::open(&dir.path().join("fb.sqlite")).unwrap();
        let a = db
            .record_answer(&shown("Who founded X?", "Ann", "g1"))
            .unwrap();
        let b = db
            .record_answer(&shown("who founded x? ", "Bob", "g2"))
            .unwrap();
        let c = db.record_answer(&shown("When?", "1900", "g1")).unwrap();
        let d = db.record_answer(&shown("Where?", "Oslo", "g1")).unwrap();
        let judge = |answer_id, verdict, correction: Option<&str>, chunks| Judgment {
            answer_id,
            reviewer: Some("ana".into()),
            verdict,
            correction: correction.map(String::from),
            chunks,
        };
        // First judged right, then corrected: the correction wins.
        db.record_judgment(&judge(a, Some(Verdict::Right), None, vec![]))
            .unwrap();
        db.record_judgment(&judge(
            a,
            Some(Verdict::Wrong),
            Some("Bob"),
            vec![(0, ChunkLabel::NotHelpful), (1, ChunkLabel::Helpful)],
        ))
        .unwrap();
        db.record_judgment(&judge(
            c,
            Some(Verdict::Right),
            None,
            vec![(2, ChunkLabel::Helpful)],
        ))
        .unwrap();
        // Wrong without a correction: no LM-ft example, its label still counts.
        db.record_judgment(&judge(
            d,
            Some(Verdict::Wrong),
            None,
            vec![(0, ChunkLabel::NotHelpful)],
        ))
        .unwrap();
        db.record_preference(&Preference {
            answer_a: a,
            answer_b: b,
            choice: Choice::B,
            reviewer: None,
        })
        .unwrap();
        let out = dir.path().join("export");
        let report = export(&db, &out, false).unwrap();
        assert_eq!(
            report,
            ExportReport {
                judgments: 4,
                lm_ft: 2,
                lm_ft_with_context: 2,
                retrieval: 4,
                preferences: 1,
            }
        );
        let lm = lines(&out.join("lm_ft.jsonl"));
        assert_eq!(lm[0]["question"], "Who founded X?");
        assert_eq!(lm[0]["answers"], json!(["Bob"]));
        assert_eq!(lm[0]["context"], "T1: text 1");
        assert_eq!(lm[0]["chunk_ids"], json!([11]));
        assert_eq!(lm[1]["answers"], json!(["1900"]));
        assert_eq!(lm[1]["context"], "T2: text 2");
        let r = lines(&out.join("retrieval.jsonl"));
        let labels: Vec<(u64, u64)> = r
            .iter()
            .map(|l| {
                (
                    l["chunk_id"].as_u64().unwrap(),
                    l["label"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(labels, vec![(10, 0), (11, 1), (12, 1), (10, 0)]);
        assert_eq!(r[0]["text_hash"], "h0");
        assert_eq!(r[0]["index"], "idx");
        // The A/B pick (B over A) and the correction (Bob over Ann) are the same pair.
        let p = lines(&out.join("preferences.jsonl"));
        assert_eq!(
            p,
            vec![json!({"prompt": "who founded x?", "chosen": "Bob", "rejected": "Ann"})]
        );
        let e = export(&db, &out, false).unwrap_err().to_string();
        assert!(
            e.contains("lm_ft.jsonl") && e.contains("--overwrite"),
            "{e}"
        );
        assert_eq!(export(&db, &out, true).unwrap(), report);
    }
}
