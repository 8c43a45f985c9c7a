//! LoRA for LM-ft: low-rank adapters on chosen projections, everything else frozen.
//!
//! Built on burn's reparameterization: an adapted weight materializes as
//! `W + (α/r)·A·B` wherever the model reads it, so the model code is unchanged, checkpoints
//! carry the adapter factors, and export (which reads materialized weights) writes merged
//! weights that load anywhere without LoRA support.

use burn::module::{Lora, Module, ModuleVisitor, Param, ParamGroup};
use burn::tensor::Tensor;
use radit_models::Llama;
use serde::{Deserialize, Serialize};

use crate::GeneratorError;

/// The projections of a Llama block that may carry adapters.
pub const LORA_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// `[stages.lm_ft.lora]`: LoRA instead of full fine-tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank `r` of the adapters.
    #[serde(default = "default_rank")]
    pub rank: usize,
    /// Scale numerator: the update is `(alpha / rank) · A·B`.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Projections to adapt (names from [`LORA_TARGETS`]).
    #[serde(default = "default_targets")]
    pub targets: Vec<String>,
    /// Seed of the adapters' initialization (`A ~ N(0, 1/r)`, `B = 0`).
    #[serde(default)]
    pub seed: u64,
}

fn default_rank() -> usize {
    8
}
fn default_alpha() -> f64 {
    16.0
}
fn default_targets() -> Vec<String> {
    vec!["q_proj".into(), "v_proj".into()]
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: default_rank(),
            alpha: default_alpha(),
            targets: default_targets(),
            seed: 0,
        }
    }
}

/// Attaches adapters to `model` (freezing every base weight), deterministically from the
/// config's seed.
pub fn apply_lora(model: Llama, config: &LoraConfig) -> Result<Llama, GeneratorError> {
    if config.rank == 0 {
        return Err(GeneratorError::Targets(
            "lora.rank must be at least 1".into(),
        ));
    }
    if config.targets.is_empty() {
        return Err(GeneratorError::Targets(
            "lora.targets is empty; name projections among q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj".into(),
        ));
    }
    for target in &config.targets {
        if !LORA_TARGETS.contains(&target.as_str()) {
            return Err(GeneratorError::Targets(format!(
                "lora.targets: unknown projection `{target}` (expected one of {})",
                LORA_TARGETS.join(", ")
            )));
        }
    }
    let device = model.device();
    device.seed(config.seed);
    let group = ParamGroup::from_any_predicates(
        config
            .targets
            .iter()
            .map(|t| format!(".{t}."))
            .collect::<Vec<_>>(),
    );
    Ok(model.apply_lora(Lora::new(config.rank, config.alpha).set_param_group(group)))
}

/// `(trainable, total)` parameter counts of a module.
pub fn parameter_counts<M: Module>(model: &M) -> (usize, usize) {
    struct Count {
        trainable: usize,
        total: usize,
    }
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let n: usize = param.shape().num_elements();
            self.total += n;
            if param.is_require_grad() {
                self.trainable += n;
            }
        }
    }
    let mut c = Count {
        trainable: 0,
        total: 0,
    };
    model.visit(&mut c);
    (c.trainable, c.total)
}
