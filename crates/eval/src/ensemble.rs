//! The ensemble arithmetic, in log space, and the candidate scoring variants.
//!
//! With retrieval scores `s_1..s_k` of the top-k chunks and the generator's
//! `ℓ_j = log p_LM(y | c_j ∘ x)`:
//!
//! ```text
//! log p_R(c_j|x) = s_j/τ_R − logsumexp_i(s_i/τ_R)                    (retrieval_log_weights)
//! log p(y|x)     = logsumexp_j( log p_R(c_j|x) + ℓ_j )               (ensemble_log_likelihood)
//! share_j        = p_R(c_j|x) p_LM(y|c_j∘x) / p(y|x)                 (contributions)
//! ```
//!
//! Working in log space keeps answers of many tokens (`ℓ` of −50 and below) from underflowing
//! to zero, which the direct sum `Σ p_R · exp(ℓ)` would do in `f32` and, for long answers,
//! in `f64`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::EvalError;

/// Default τ_R of the inference ensemble.
pub const DEFAULT_RETRIEVER_TEMPERATURE: f64 = 0.05;

/// `log Σ_i exp(v_i)`, stable for any magnitudes; `−∞` for no values or all `−∞`.
pub fn logsumexp(values: &[f64]) -> f64 {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY || max.is_nan() {
        return max;
    }
    if max == f64::INFINITY {
        return f64::INFINITY;
    }
    let sum: f64 = values.iter().map(|v| (v - max).exp()).sum();
    max + sum.ln()
}

/// `log p_R(c_j|x) = log softmax_j(s_j / τ_R)` of the retrieval scores of one question's
/// chunks (the caller checks `temperature > 0`). Empty for no chunk.
pub fn retrieval_log_weights(scores: &[f32], temperature: f64) -> Vec<f64> {
    let logits: Vec<f64> = scores.iter().map(|&s| f64::from(s) / temperature).collect();
    let norm = logsumexp(&logits);
    logits.iter().map(|l| l - norm).collect()
}

/// `log p(y|x) = logsumexp_j(log p_R(c_j|x) + log p_LM(y|c_j∘x))`. A chunk whose instance
/// could not be scored (`None`: the instruction and answer alone exceed the prompt length)
/// counts as `p_LM = 0`; with no scored chunk at all the result is `−∞`.
pub fn ensemble_log_likelihood(log_weights: &[f64], log_lm: &[Option<f64>]) -> f64 {
    let terms: Vec<f64> = log_weights
        .iter()
        .zip(log_lm)
        .filter_map(|(w, l)| l.map(|l| w + l))
        .collect();
    logsumexp(&terms)
}

/// Each chunk's share of the ensembled probability, `p_R p_LM / p(y|x)` (they sum to 1;
/// `None` for unscored chunks, and for all when nothing was scored).
pub fn contributions(log_weights: &[f64], log_lm: &[Option<f64>]) -> Vec<Option<f64>> {
    let total = ensemble_log_likelihood(log_weights, log_lm);
    log_weights
        .iter()
        .zip(log_lm)
        .map(|(w, l)| match l {
            Some(l) if total.is_finite() => Some((w + l - total).exp()),
            _ => None,
        })
        .collect()
}

/// What a scoring variant needs to know about one candidate answer `y`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Likelihood {
    /// `log p(y|x)` under the mode's prompt(s) (the ensemble, the concatenation, or none).
    pub log_p: f64,
    /// Scored tokens of `y` (the answer tokens and the end-of-sequence token).
    pub tokens: u32,
    /// Characters of `y` (trimmed).
    pub chars: usize,
    /// `log p_LM(y | closed-book prompt)`, for [`Scoring::NllComp`].
    pub closed_book_log_p: Option<f64>,
}

/// How candidate answers are ranked: the candidate with the lowest score wins (each is a
/// negative log-likelihood, possibly normalized).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scoring {
    /// `−log p(y|x)`.
    #[default]
    Nll,
    /// `−log p(y|x) / T(y)`, per scored answer token (`T` counts the end-of-sequence token).
    NllToken,
    /// `−log p(y|x) / |y|`, per character of the answer.
    NllChar,
    /// `−log p(y|x) + log p_LM(y | closed-book prompt)`: the likelihood relative to the
    /// answer's unconditional completion likelihood (the question without background), so
    /// that a priori likely answers are not favoured. In `closed_book` mode every candidate
    /// scores 0.
    NllComp,
}

impl Scoring {
    /// Every variant.
    pub const ALL: [Scoring; 4] = [
        Scoring::Nll,
        Scoring::NllToken,
        Scoring::NllChar,
        Scoring::NllComp,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scoring::Nll => "nll",
            Scoring::NllToken => "nll_token",
            Scoring::NllChar => "nll_char",
            Scoring::NllComp => "nll_comp",
        }
    }

    /// Whether the closed-book likelihood of each candidate is needed.
    pub fn needs_closed_book(self) -> bool {
        self == Scoring::NllComp
    }

    /// The score of a candidate (lower is better); `+∞` when it could not be scored
    /// (`log_p = −∞`, or a missing closed-book likelihood for `nll_comp`).
    pub fn score(self, l: &Likelihood) -> f64 {
        if l.log_p.is_nan() || l.log_p == f64::NEG_INFINITY {
            return f64::INFINITY;
        }
        let nll = -l.log_p;
        match self {
            Scoring::Nll => nll,
            Scoring::NllToken => nll / f64::from(l.tokens.max(1)),
            Scoring::NllChar => nll / l.chars.max(1) as f64,
            Scoring::NllComp => match l.closed_book_log_p {
                Some(c) if c.is_finite() => nll + c,
                _ => f64::INFINITY,
            },
        }
    }
}

impl fmt::Display for Scoring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scoring {
    type Err = EvalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scoring::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                EvalError::Input(format!(
                    "unknown scoring `{s}` (expected nll, nll_token, nll_char or nll_comp)"
                ))
            })
    }
}

/// The index of the lowest score (the first one on ties); `None` for no candidate.
pub fn best(scores: &[f64]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &s) in scores.iter().enumerate() {
        match best {
            None => best = Some(i),
            Some(b) if s < scores[b] || (scores[b].is_nan() && !s.is_nan()) => best = Some(i),
            _ => {}
        }
    }
    best
}
