//! What the reviewers said, counted, and how far they agree with the generator.
//!
//! R-ft's LSR target ranks chunks by how much each raises the generator's likelihood of the
//! answer, `log p_LM(y | c ∘ x)`. Where a reviewer labelled chunks of an answer, two numbers
//! say how far that signal agrees with the people:
//!
//! * **pairwise**: over every (helpful, not helpful) pair of chunks of one answer, the share
//!   where the generator gives the helpful chunk the higher log-likelihood (0.5 is chance);
//! * **top-1**: over answers with any chunk label, the share where the generator's favourite
//!   chunk (highest log-likelihood among the shown ones) is one the reviewer marked helpful.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::db::{Choice, ChunkLabel, FeedbackDb, Verdict};
use crate::export::latest_per_answer;
use crate::Result;

/// Counts and agreement of a feedback database.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Answers shown.
    pub answers: usize,
    /// Judgments saved (a re-judged answer counts each time).
    pub judgments: usize,
    /// Answers judged at least once; the counts below use each one's latest judgment.
    pub judged_answers: usize,
    /// Distinct reviewers named.
    pub reviewers: usize,
    /// Verdicts "right".
    pub right: usize,
    /// Verdicts "wrong".
    pub wrong: usize,
    /// Typed corrections.
    pub corrections: usize,
    /// Chunks labelled helpful.
    pub helpful: usize,
    /// Chunks labelled not helpful.
    pub not_helpful: usize,
    /// A/B picks of the first answer, the second, and ties.
    pub preferences: [usize; 3],
    /// (helpful, not helpful) chunk pairs of one answer, both with a generator score.
    pub lsr_pairs: usize,
    /// Of those, pairs where the generator scores the helpful chunk higher.
    pub lsr_pairs_agree: usize,
    /// Answers with a chunk label and generator scores.
    pub lsr_top1: usize,
    /// Of those, answers whose generator-favourite chunk is labelled helpful.
    pub lsr_top1_agree: usize,
}

fn share(part: usize, whole: usize) -> String {
    if whole == 0 {
        "–".into()
    } else {
        format!("{:.3} ({part}/{whole})", part as f64 / whole as f64)
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "answers shown {}, judgments {}, answers judged {}, reviewers {}",
            self.answers, self.judgments, self.judged_answers, self.reviewers
        )?;
        writeln!(
            f,
            "verdicts: {} right, {} wrong; {} correction(s)",
            self.right, self.wrong, self.corrections
        )?;
        writeln!(
            f,
            "chunk labels: {} helpful, {} not helpful",
            self.helpful, self.not_helpful
        )?;
        let [a, b, tie] = self.preferences;
        writeln!(f, "A/B picks: {a} first, {b} second, {tie} tie")?;
        writeln!(
            f,
            "agreement of the labels with the generator (LSR signal): pairwise {}, top-1 {}",
            share(self.lsr_pairs_agree, self.lsr_pairs),
            share(self.lsr_top1_agree, self.lsr_top1)
        )
    }
}

/// Counts the judgments of `db` and their agreement with the generator.
pub fn stats(db: &FeedbackDb) -> Result<Stats> {
    let (answers, judgments, _) = db.counts()?;
    let all = db.judgments(None)?;
    let reviewers: BTreeSet<&str> = all
        .iter()
        .filter_map(|j| j.judgment.reviewer.as_deref())
        .collect();
    let mut s = Stats {
        answers,
        judgments,
        reviewers: reviewers.len(),
        ..Stats::default()
    };
    for j in latest_per_answer(&all) {
        s.judged_answers += 1;
        match j.judgment.verdict {
            Some(Verdict::Right) => s.right += 1,
            Some(Verdict::Wrong) => s.wrong += 1,
            None => {}
        }
        s.corrections += usize::from(j.judgment.correction.is_some());
        let chunks = &j.answer.shown.chunks;
        let score = |rank: u32| chunks.get(rank as usize).and_then(|c| c.log_p_lm);
        let (mut helpful, mut not_helpful) = (Vec::new(), Vec::new());
        for &(rank, label) in &j.judgment.chunks {
            match label {
                ChunkLabel::Helpful => {
                    s.helpful += 1;
                    helpful.extend(score(rank));
                }
                ChunkLabel::NotHelpful => {
                    s.not_helpful += 1;
                    not_helpful.extend(score(rank));
                }
            }
        }
        for h in &helpful {
            for n in &not_helpful {
                s.lsr_pairs += 1;
                s.lsr_pairs_agree += usize::from(h > n);
            }
        }
        let favourite = chunks
            .iter()
            .enumerate()
            .filter_map(|(rank, c)| c.log_p_lm.map(|lp| (rank, lp)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(rank, _)| rank as u32);
        if let (Some(fav), false) = (favourite, j.judgment.chunks.is_empty()) {
            s.lsr_top1 += 1;
            s.lsr_top1_agree += usize::from(
                j.judgment
                    .chunks
                    .iter()
                    .any(|&(rank, l)| rank == fav && l == ChunkLabel::Helpful),
            );
        }
    }
    for p in db.preferences()? {
        s.preferences[match p.choice {
            Choice::A => 0,
            Choice::B => 1,
            Choice::Tie => 2,
        }] += 1;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tests::shown;
    use crate::db::Judgment;

    #[test]
    fn agreement_counts_pairs_and_the_generators_favourite() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = FeedbackDb::open(&dir.path().join("fb.sqlite")).unwrap();
        // Generator log-likelihoods of ranks 0, 1, 2: -1, -2, -3 (rank 0 its favourite).
        let a = db.record_answer(&shown("Q1", "x", "g")).unwrap();
        let b = db.record_answer(&shown("Q2", "y", "g")).unwrap();
        db.record_judgment(&Judgment {
            answer_id: a,
            reviewer: Some("ana".into()),
            verdict: Some(Verdict::Right),
            correction: None,
            // helpful 0 vs not 1, 2: the generator agrees on both pairs; top-1 agrees.
            chunks: vec![
                (0, ChunkLabel::Helpful),
                (1, ChunkLabel::NotHelpful),
                (2, ChunkLabel::NotHelpful),
            ],
        })
        .unwrap();
        db.record_judgment(&Judgment {
            answer_id: b,
            reviewer: Some("bo".into()),
            verdict: Some(Verdict::Wrong),
            correction: Some("z".into()),
            // helpful 2 vs not 0: disagrees; the favourite (0) is not helpful.
            chunks: vec![(2, ChunkLabel::Helpful), (0, ChunkLabel::NotHelpful)],
        })
        .unwrap();
        let s = stats(&db).unwrap();
        assert_eq!(
            (s.answers, s.judgments, s.judged_answers, s.reviewers),
            (2, 2, 2, 2)
        );
        assert_eq!((s.right, s.wrong, s.corrections), (1, 1, 1));
        assert_eq!((s.helpful, s.not_helpful), (2, 3));
        assert_eq!((s.lsr_pairs, s.lsr_pairs_agree), (3, 2));
        assert_eq!((s.lsr_top1, s.lsr_top1_agree), (2, 1));
        let text = s.to_string();
        assert!(
            text.contains("pairwise 0.667 (2/3), top-1 0.500 (1/2)"),
            "{text}"
        );
    }
}
