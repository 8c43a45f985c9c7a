//! A new retriever loss, registered with the pipeline and trained by R-ft on a tiny recipe.
//!
//! The loss is a pairwise margin: for each query, the chunk the generator finds most useful
//! (highest `log p_LM(y | c ∘ x)`) should outscore every other candidate by at least
//! `margin` in the retriever's logits,
//!
//! ```text
//! L = mean_b  1/(K-1) Σ_{k ≠ best_b} max(0, margin − (s_b,best − s_b,k))
//! ```
//!
//! Run it after `scripts/fetch-assets.sh` (it reads the models under `$RADIT_ASSETS`):
//!
//! ```text
//! cargo run --release -p radit-pipeline --example custom_loss [-- OUT_DIR]
//! ```

use std::path::PathBuf;

use burn::tensor::{Int, Tensor};
use radit_pipeline::Pipeline;
use radit_pipeline::Recipe;
use radit_retriever::loss::{LossBatch, LossError, LossParams, RetrieverLoss};
use serde::Deserialize;

/// The pairwise margin loss towards the generator's favourite chunk.
#[derive(Debug)]
struct Margin {
    margin: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MarginParams {
    #[serde(default = "one")]
    margin: f64,
}

fn one() -> f64 {
    1.0
}

impl Margin {
    /// Reads `[stages.r_ft.loss] margin = ...` (default 1).
    fn from_params(params: &LossParams) -> Result<Self, LossError> {
        let p: MarginParams = params.parse("margin")?;
        let margin = LossParams::positive("margin", "margin", p.margin)?;
        Ok(Self { margin })
    }
}

impl RetrieverLoss for Margin {
    fn name(&self) -> &'static str {
        "margin"
    }

    fn loss(&self, batch: &LossBatch) -> Result<Tensor<1>, LossError> {
        let logits = batch.retriever_logits.clone();
        let [b, k] = logits.dims();
        let best: Tensor<2, Int> = batch.lm_logprob.clone().argmax(1); // [B, 1]
        let best_score = logits.clone().gather(1, best.clone()); // [B, 1]
                                                                 // margin − (s_best − s_k), clamped at 0; the best chunk itself contributes exactly
                                                                 // `margin`, which is removed again below so that only the K−1 others count.
        let hinge = logits
            .sub(best_score)
            .add_scalar(self.margin)
            .clamp_min(0.0);
        let per_query = hinge.sum_dim(1).sub_scalar(self.margin); // [B, 1]
        let others = (k.max(2) - 1) as f64;
        Ok(per_query.sum().div_scalar(b as f64 * others))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("runs/custom_loss"), PathBuf::from);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let repo = repo.canonicalize()?;
    std::fs::create_dir_all(&out)?;
    // A tiny R-ft-only recipe on the synthetic task, naming the new loss.
    let recipe_text = format!(
        r#"seed = 3
output_dir = "{out}"
[generator]
model = "${{RADIT_ASSETS}}/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf"
[retriever]
encoder = "${{RADIT_ASSETS}}/all-MiniLM-L6-v2"
top_k = 2
[docstore]
corpus = "{repo}/datasets/synthetic/corpus.jsonl"
[data]
train = "{repo}/datasets/synthetic/train.jsonl"
dev = "{repo}/datasets/synthetic/dev.jsonl"
train_limit = 24
dev_limit = 30
max_len = 96
batch_size = 4
[stages.r_ft]
candidates = 4
retriever_temperature = 0.05
batch_size = 8
loss = {{ name = "margin", margin = 0.5 }}
[stages.r_ft.train]
lr = 1e-5
max_steps = 6
save_every = 3
schedule = {{ kind = "constant" }}
"#,
        out = out.display(),
        repo = repo.display(),
    );
    let recipe_path = out.join("custom_loss.toml");
    std::fs::write(&recipe_path, recipe_text)?;
    let recipe = Recipe::load(&recipe_path, &[])?;

    let summary = Pipeline::new(recipe, burn::tensor::Device::flex())
        .register_loss("margin", |params| {
            Ok(Box::new(Margin::from_params(params)?))
        })
        .run()?;
    for line in &summary.rows {
        println!("{line}");
    }
    let losses = std::fs::read_to_string(out.join("r_ft/metrics.jsonl"))?;
    let steps = losses.lines().filter(|l| l.contains("train/loss")).count();
    println!(
        "\nR-ft with the `margin` loss: {steps} logged steps, weights in {}",
        out.join("r_ft/final").display()
    );
    if steps == 0 {
        return Err("no training step was logged".into());
    }
    Ok(())
}
