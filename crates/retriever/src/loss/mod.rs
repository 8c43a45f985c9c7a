//! Retriever losses behind one trait, chosen by name in the recipe.
//!
//! Every loss sees the same [`LossBatch`]: for each query, the retriever's logits over its
//! `K` candidate chunks (`s(x, c) / τ_R`, the only differentiable input) and constants
//! computed from the frozen generator: the summed log-likelihood of the gold continuation
//! `log p_LM(y | c ∘ x)` per chunk, its token count, and, when a loss asks for them, the
//! leave-one-out log-likelihoods and the positive chunk. A loss returns the mean over
//! queries.
//!
//! # Human judgments
//!
//! With `[stages.r_ft.feedback]`, reviewers' helpful / not-helpful labels of candidates
//! ([`crate::feedback`]) reach the losses as [`LossBatch::human`]: per query, `p_human`,
//! uniform over the candidates judged helpful (an all-zero row when none is), and the
//! weight λ ([`LossBatch::human_weight`], in `[0, 1]`).
//!
//! - `lsr` distils towards the mixture `(1 − λ)·p_LSR + λ·p_human` for queries with human
//!   mass ([`human_log_target`]); other queries keep `p_LSR`.
//! - `infonce` takes the best-ranked helpful candidate as the positive, instead of the
//!   answer-bearing one, when λ > 0 (the objective builds [`LossBatch::positive`] so).
//!
//! Losses that do not read the labels say so through [`Requires::human`]; the pipeline
//! refuses a recipe that gives labels to one of them rather than ignore them silently.
//!
//! # Adding a loss
//!
//! Implement [`RetrieverLoss`] in one file, give it a constructor that reads its recipe
//! parameters, and register the name. A recipe then selects it with
//! `[stages.r_ft.loss] name = "margin"`:
//!
//! ```
//! use burn::tensor::{activation::log_softmax, Tensor};
//! use radit_retriever::loss::{LossBatch, LossError, LossParams, LossRegistry, RetrieverLoss};
//!
//! /// Cross-entropy towards the chunk the generator likes best (hard distillation).
//! #[derive(Debug)]
//! struct BestChunk;
//!
//! impl RetrieverLoss for BestChunk {
//!     fn name(&self) -> &'static str {
//!         "best_chunk"
//!     }
//!     fn loss(&self, batch: &LossBatch) -> Result<Tensor<1>, LossError> {
//!         let [b, _] = batch.retriever_logits.dims();
//!         let best = batch.lm_logprob.clone().argmax(1); // [B, 1]
//!         let log_p = log_softmax(batch.retriever_logits.clone(), 1);
//!         Ok(log_p.gather(1, best).sum().neg().div_scalar(b as f64))
//!     }
//! }
//!
//! let mut registry = LossRegistry::builtin();
//! registry.register("best_chunk", |params: &LossParams| {
//!     params.expect_none("best_chunk")?;
//!     Ok(Box::new(BestChunk))
//! });
//! let loss = registry.build("best_chunk", &LossParams::default()).unwrap();
//! assert_eq!(loss.name(), "best_chunk");
//! ```

use std::collections::BTreeMap;

use burn::tensor::activation::log_softmax;
use burn::tensor::Tensor;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod emdr2;
mod infonce;
mod loo;
mod lsr;
mod pdist;
mod replug;

pub use emdr2::Emdr2;
pub use infonce::InfoNce;
pub use loo::LeaveOneOut;
pub use lsr::{KlDirection, LmSignal, Lsr};
pub use pdist::PerplexityDistillation;
pub use replug::Replug;

/// Errors of loss construction and evaluation.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    /// No loss of that name is registered.
    #[error("unknown retriever loss `{name}` (registered: {known})")]
    Unknown {
        /// The requested name.
        name: String,
        /// Registered names, comma-separated.
        known: String,
    },
    /// The recipe parameters of a loss are invalid.
    #[error("retriever loss `{name}`: {message}")]
    Params {
        /// The loss.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The batch lacks an input the loss needs.
    #[error("retriever loss `{name}` needs {input}, which the batch does not carry")]
    MissingInput {
        /// The loss.
        name: &'static str,
        /// The missing input.
        input: &'static str,
    },
}

/// What a loss needs besides the retriever logits and the per-chunk LM log-likelihoods;
/// targets are only computed for losses that ask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requires {
    /// `log p_LM(y | all candidates but c_k, concatenated ∘ x)` per candidate.
    pub leave_one_out: bool,
    /// A positive chunk per query.
    pub positive: bool,
    /// The loss uses human judgments ([`LossBatch::human`], or the human positive).
    pub human: bool,
}

/// One batch of `B` queries with `K` candidate chunks each.
#[derive(Debug, Clone)]
pub struct LossBatch {
    /// `s(x, c_k) / τ_R`, `[B, K]`: the only input with a gradient.
    pub retriever_logits: Tensor<2>,
    /// Summed `log p_LM(y | c_k ∘ x)` over the continuation's tokens, `[B, K]`.
    pub lm_logprob: Tensor<2>,
    /// Token count of the continuation under each chunk's prompt, `[B, K]` (≥ 1).
    pub answer_tokens: Tensor<2>,
    /// Summed `log p_LM(y | {c_j : j ≠ k} ∘ x)`, `[B, K]`, when [`Requires::leave_one_out`].
    pub loo_logprob: Option<Tensor<2>>,
    /// One-hot positive chunk per query, `[B, K]`; an all-zero row has no positive.
    pub positive: Option<Tensor<2>>,
    /// `p_human`, `[B, K]`: per query, uniform over the candidates reviewers judged helpful;
    /// an all-zero row when no candidate of that query was judged helpful. `None` without
    /// human judgments.
    pub human: Option<Tensor<2>>,
    /// λ ∈ `[0, 1]`: how much of the target `p_human` replaces (0 without judgments).
    pub human_weight: f64,
}

/// The log-target, at λ = 1, of a candidate no reviewer judged helpful: `ln 1e-30`. `p_human` is exactly zero there, so `KL(p_R ‖ p_human)` would be infinite;
/// the floor keeps it finite (and pushing that candidate down) while changing
/// `KL(p_human ‖ p_R)` by less than 1e-28.
pub const HUMAN_LOG_FLOOR: f64 = -69.077_552_789_821_37;

/// The log of the mixed target `(1 − λ)·exp(log_target) + λ·p_human` for the rows of
/// `human` with mass; rows without (no candidate judged helpful) keep `log_target` exactly.
///
/// Computed in log space, `logaddexp(ln(1 − λ) + log_target, ln λ + ln p_human)`, because
/// sharp LM targets (τ = 0.01) underflow `exp` for most candidates. At λ = 1 a candidate
/// without human mass gets [`HUMAN_LOG_FLOOR`].
pub fn human_log_target(log_target: Tensor<2>, human: Tensor<2>, weight: f64) -> Tensor<2> {
    let [b, k] = log_target.dims();
    // A NaN weight is no usable weight: no mixing.
    if weight.is_nan() || weight <= 0.0 {
        return log_target;
    }
    let weight = weight.min(1.0);
    let rest = if weight < 1.0 {
        log_target.clone().add_scalar((1.0 - weight).ln())
    } else {
        log_target.zeros_like().add_scalar(HUMAN_LOG_FLOOR)
    };
    let helpful = human.clone().greater_elem(0.0);
    // ln p_human only where it is positive; the clamp keeps -inf out of the other entries,
    // which `helpful` discards below.
    let lifted = human.clamp_min(1e-30).log().add_scalar(weight.ln());
    let high = rest.clone().max_pair(lifted.clone());
    let low = rest.clone().min_pair(lifted);
    let added = high.clone().add(low.sub(high).exp().log1p());
    let mixed = rest.mask_where(helpful.clone(), added);
    let labelled = helpful.float().sum_dim(1).greater_elem(0.0).expand([b, k]);
    log_target.mask_where(labelled, mixed)
}

/// A retriever training loss. Implementations document their formula.
pub trait RetrieverLoss: std::fmt::Debug + Send + Sync {
    /// The registered name.
    fn name(&self) -> &'static str;
    /// Extra inputs the loss reads.
    fn requires(&self) -> Requires {
        Requires::default()
    }
    /// The loss, averaged over the queries of the batch: a `[1]` tensor.
    fn loss(&self, batch: &LossBatch) -> Result<Tensor<1>, LossError>;
}

/// The recipe parameters of a loss: every key of `[stages.r_ft.loss]` besides `name`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct LossParams(pub BTreeMap<String, serde_json::Value>);

impl LossParams {
    /// Deserializes the parameters into a loss's own settings struct (which should deny
    /// unknown fields, so a typo is an error that names the valid keys).
    pub fn parse<T: DeserializeOwned>(&self, loss: &str) -> Result<T, LossError> {
        let object = serde_json::Value::Object(self.0.clone().into_iter().collect());
        serde_json::from_value(object).map_err(|e| LossError::Params {
            name: loss.to_owned(),
            message: e.to_string(),
        })
    }

    /// Checks that a temperature-like parameter `key` of `loss` is positive and finite.
    pub fn positive(loss: &str, key: &str, value: f64) -> Result<f64, LossError> {
        if value > 0.0 && value.is_finite() {
            Ok(value)
        } else {
            Err(LossError::Params {
                name: loss.to_owned(),
                message: format!("{key} must be positive, got {value}"),
            })
        }
    }

    /// Errors when any parameter is given to a loss that takes none.
    pub fn expect_none(&self, loss: &str) -> Result<(), LossError> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(key) => Err(LossError::Params {
                name: loss.to_owned(),
                message: format!("takes no parameters, got `{key}`"),
            }),
        }
    }
}

/// `[stages.r_ft.loss]`: a loss name and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LossSpec {
    /// Registered name, e.g. `lsr`.
    pub name: String,
    /// The loss's own parameters.
    #[serde(flatten)]
    pub params: LossParams,
}

impl Default for LossSpec {
    fn default() -> Self {
        Self {
            name: "lsr".into(),
            params: LossParams::default(),
        }
    }
}

/// Builds a loss from its recipe parameters.
pub type LossFactory = fn(&LossParams) -> Result<Box<dyn RetrieverLoss>, LossError>;

/// Loss names and their constructors.
#[derive(Debug, Clone)]
pub struct LossRegistry {
    factories: BTreeMap<String, LossFactory>,
}

/// The recipe parameters of each built-in loss as a JSON schema (field docs and defaults), in
/// [`LossRegistry::builtin`]'s name order: what the recipe reference documents under
/// `[stages.r_ft.loss]`. A loss without parameters has an empty table.
pub fn builtin_parameter_schemas() -> Vec<(&'static str, schemars::Schema)> {
    let none = |about: &str| schemars::json_schema!({ "type": "object", "properties": {}, "description": about });
    vec![
        ("emdr2", none("EMDR² (Sachan et al., 2021): `−log Σ_k p_R(c_k|x) · p_LM(y|c_k∘x)`, the retrieved chunk as a latent variable.")),
        ("infonce", none("Contrastive loss against a given positive chunk among the candidates (DPR, Contriever); the temperature is `stages.r_ft.retriever_temperature`.")),
        ("loop", schemars::schema_for!(LeaveOneOut)),
        ("lsr", schemars::schema_for!(Lsr)),
        ("pdist", schemars::schema_for!(PerplexityDistillation)),
        ("replug", schemars::schema_for!(Replug)),
    ]
}

impl LossRegistry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self {
            factories: BTreeMap::new(),
        }
    }

    /// The built-in losses: `lsr`, `replug`, `pdist`, `emdr2`, `loop`, `infonce`.
    pub fn builtin() -> Self {
        let mut r = Self::empty();
        r.register("lsr", |p| Ok(Box::new(Lsr::from_params(p)?)));
        r.register("replug", |p| Ok(Box::new(Replug::from_params(p)?)));
        r.register("pdist", |p| {
            Ok(Box::new(PerplexityDistillation::from_params(p)?))
        });
        r.register("emdr2", |p| {
            p.expect_none("emdr2")?;
            Ok(Box::new(Emdr2))
        });
        r.register("loop", |p| Ok(Box::new(LeaveOneOut::from_params(p)?)));
        r.register("infonce", |p| {
            p.expect_none("infonce")?;
            Ok(Box::new(InfoNce))
        });
        r
    }

    /// Registers (or replaces) a loss under `name`.
    pub fn register(&mut self, name: &str, factory: LossFactory) {
        self.factories.insert(name.to_owned(), factory);
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }

    /// Builds the loss `name` with `params`.
    pub fn build(
        &self,
        name: &str,
        params: &LossParams,
    ) -> Result<Box<dyn RetrieverLoss>, LossError> {
        match self.factories.get(name) {
            Some(factory) => factory(params),
            None => Err(LossError::Unknown {
                name: name.to_owned(),
                known: self.names().join(", "),
            }),
        }
    }

    /// Builds the loss a recipe asks for.
    pub fn build_spec(&self, spec: &LossSpec) -> Result<Box<dyn RetrieverLoss>, LossError> {
        self.build(&spec.name, &spec.params)
    }
}

impl Default for LossRegistry {
    fn default() -> Self {
        Self::builtin()
    }
}

/// `log softmax(f / τ)` over candidates: a target distribution from per-chunk scores `f`.
pub fn log_target(f: Tensor<2>, temperature: f64) -> Tensor<2> {
    log_softmax(f.div_scalar(temperature), 1)
}

/// `KL(P ‖ Q) = Σ_k P_k (log P_k − log Q_k)` per row, averaged over rows; both arguments are
/// log-probabilities `[B, K]`.
pub fn kl_divergence(log_p: Tensor<2>, log_q: Tensor<2>) -> Tensor<1> {
    let [b, _] = log_p.dims();
    log_p
        .clone()
        .exp()
        .mul(log_p.sub(log_q))
        .sum()
        .div_scalar(b.max(1) as f64)
}
