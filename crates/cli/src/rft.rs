//! The R-ft stage of `radit train`: LM-supervised training of the query encoder against the
//! frozen index, with the loss a recipe names.

use std::path::Path;

use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::tensor::Device;
use radit_data::{corpus_pairs, Example, ExampleKey, InstanceBuilder};
use radit_docstore::DocStore;
use radit_generator::{weights_fingerprint, LmScorer, PromptTokenizer, ScoreCache};
use radit_models::{Bert, Encoder, Llama};
use radit_retriever::eval::{metric_pairs, retrieval_metrics};
use radit_retriever::loss::{LossRegistry, LossSpec};
use radit_retriever::{train_retriever, RftExample, RftObjective, RftSettings, TargetSource};
use radit_train::metrics::MetricLogger;
use radit_train::signals::StopFlag;
use radit_train::trainer::{BoxError, Evaluator, Outcome, RunContext, TrainConfig};
use serde::{Deserialize, Serialize};

/// `[stages.r_ft]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RFtStage {
    /// Candidate chunks per query, `k'` (paper: 10).
    #[serde(default = "default_candidates")]
    pub candidates: usize,
    /// τ_R: the retriever's logits are `E_q(x)·E_d(c) / τ_R`.
    #[serde(default = "default_retriever_temperature")]
    pub retriever_temperature: f64,
    /// Queries per micro-batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Corpus pairs mixed with the instruction examples (x = head of a random chunk,
    /// y = its tail); the paper's 95 %/5 % mix is 19 pairs per instruction example.
    #[serde(default)]
    pub corpus_pairs: usize,
    /// Words in the head and in the tail of a corpus pair (paper: 50 tokens).
    #[serde(default = "default_pair_words")]
    pub pair_words: usize,
    /// Re-retrieve candidates with the current query encoder every this many steps.
    #[serde(default)]
    pub refresh_every: Option<u64>,
    /// Instances scored by the generator at once.
    #[serde(default = "default_score_batch")]
    pub score_batch: usize,
    /// Retrieval depth of the dev recall@k / MRR evaluation.
    #[serde(default = "default_eval_depth")]
    pub eval_depth: usize,
    /// The loss: `name` and its parameters (`[stages.r_ft.loss]`).
    #[serde(default)]
    pub loss: LossSpec,
    /// Optimizer, schedule, checkpointing and evaluation (`[stages.r_ft.train]`).
    pub train: TrainConfig,
}

fn default_candidates() -> usize {
    10
}
fn default_retriever_temperature() -> f64 {
    0.1
}
fn default_batch() -> usize {
    8
}
fn default_pair_words() -> usize {
    50
}
fn default_score_batch() -> usize {
    8
}
fn default_eval_depth() -> usize {
    20
}

/// The recall cut-offs reported on the dev set.
pub const RECALL_KS: [usize; 3] = [1, 5, 10];

/// What R-ft needs from the rest of the run.
pub struct RFtInputs<'a> {
    /// The stage's settings.
    pub stage: &'a RFtStage,
    /// Seed of pair sampling and query order.
    pub seed: u64,
    /// The frozen index (document embeddings).
    pub store: &'a DocStore,
    /// The base retriever encoder: tokenization, pooling and the starting query encoder.
    pub encoder: &'a Encoder,
    /// Its source spec, to load a trainable copy.
    pub encoder_spec: &'a str,
    /// The generator whose likelihoods supervise the retriever (frozen, inference device).
    pub generator: &'a Llama,
    /// RA-DIT prompt builder of the generator.
    pub builder: &'a InstanceBuilder<PromptTokenizer<'a>>,
    /// Generator padding id.
    pub pad_id: u32,
    /// Instruction examples, per dataset of the mixture.
    pub train: &'a [Vec<Example>],
    /// Dev examples for recall@k / MRR.
    pub dev: &'a [Example],
    /// Per-dataset cap per epoch.
    pub cap: Option<usize>,
}

/// Dev retrieval metrics of `model`, as `(name, value)` pairs.
pub fn dev_metrics(inputs: &RFtInputs<'_>, model: &Bert) -> Result<Vec<(String, f64)>> {
    let m = retrieval_metrics(
        inputs.encoder,
        model,
        inputs.store,
        inputs.dev,
        inputs.stage.eval_depth,
    )?;
    Ok(metric_pairs(&m, &RECALL_KS))
}

/// The R-ft queries: instruction examples (one dataset each) and corpus pairs (the last
/// dataset), mixed by size with the per-dataset cap.
fn queries(inputs: &RFtInputs<'_>) -> Result<Vec<RftExample>> {
    let mut out = Vec::new();
    for (d, examples) in inputs.train.iter().enumerate() {
        for (i, e) in examples.iter().enumerate() {
            out.push(RftExample {
                key: ExampleKey {
                    dataset: d,
                    example: i,
                },
                example: e.clone(),
                source_chunk: None,
            });
        }
    }
    let stage = inputs.stage;
    if stage.corpus_pairs > 0 {
        let texts: Vec<String> = (0..inputs.store.len() as u32)
            .map(|id| Ok(inputs.store.chunk(id)?.text))
            .collect::<Result<_, radit_docstore::Error>>()?;
        let chunks: Vec<(u32, &str)> = texts
            .iter()
            .enumerate()
            .map(|(id, t)| (id as u32, t.as_str()))
            .collect();
        let pairs = corpus_pairs(&chunks, stage.corpus_pairs, stage.pair_words, inputs.seed);
        for (i, p) in pairs.into_iter().enumerate() {
            out.push(RftExample {
                key: ExampleKey {
                    dataset: inputs.train.len(),
                    example: i,
                },
                example: Example {
                    id: format!("pair:{i}"),
                    question: p.query,
                    answers: vec![p.target],
                    context: None,
                    choices: Vec::new(),
                },
                source_chunk: Some(p.chunk),
            });
        }
    }
    Ok(out)
}

/// Runs (or resumes) R-ft under `run_dir`; returns the trained query encoder (inference
/// device), or `None` when a signal stopped the run.
pub fn run(
    inputs: &RFtInputs<'_>,
    run_dir: &Path,
    resume: bool,
    extra_files: &[(&str, &[u8])],
    logger: &mut MetricLogger,
    stop: &StopFlag,
    device: &Device,
) -> Result<Option<Bert>> {
    let stage = inputs.stage;
    if stage.retriever_temperature <= 0.0 || !stage.retriever_temperature.is_finite() {
        bail!(
            "stages.r_ft.retriever_temperature must be positive, got {}",
            stage.retriever_temperature
        );
    }
    let loss = LossRegistry::builtin()
        .build_spec(&stage.loss)
        .context("stages.r_ft.loss")?;
    let generator_id = weights_fingerprint(inputs.generator)?;
    let cache_path = run_dir.join("lm_scores.jsonl");
    let cache = ScoreCache::open(&cache_path)?;
    if cache.skipped_lines() > 0 {
        eprintln!(
            "warning: {}: {} unreadable line(s) skipped; their scores are recomputed",
            cache_path.display(),
            cache.skipped_lines()
        );
    }
    let targets = TargetSource {
        scorer: LmScorer::new(
            inputs.generator,
            inputs.builder,
            inputs.pad_id,
            generator_id,
            stage.score_batch,
        ),
        cache: Some(cache),
        k: stage.candidates,
    };
    let queries = queries(inputs)?;
    eprintln!(
        "R-ft: scoring {} queries × {} candidates with the generator ({} loss)",
        queries.len(),
        stage.candidates,
        stage.loss.name
    );
    let settings = RftSettings {
        retriever_temperature: stage.retriever_temperature,
        batch_size: stage.batch_size,
        seed: inputs.seed,
        cap: inputs.cap,
        refresh_every: stage.refresh_every,
    };
    let (mut objective, report) = RftObjective::new(
        queries,
        inputs.store,
        inputs.encoder,
        loss,
        settings,
        targets,
    )?;
    eprintln!("{report}");

    let model = Encoder::load(inputs.encoder_spec, &device.clone().autodiff())?.model;
    let mut dev_eval = |m: &Bert| -> Result<Vec<(String, f64)>, BoxError> {
        dev_metrics(inputs, m).map_err(|e| e.into())
    };
    let evaluate: Option<&mut Evaluator<'_, Bert>> =
        if inputs.dev.is_empty() || stage.train.eval_every.is_none() {
            None
        } else {
            Some(&mut dev_eval)
        };
    let ctx = RunContext {
        run_dir,
        resume,
        extra_files,
        logger,
        stop: Some(stop),
        evaluate,
    };
    let (model, state, outcome) = train_retriever(model, &mut objective, &stage.train, ctx)?;
    if outcome == Outcome::Interrupted {
        eprintln!(
            "R-ft stopped by signal at step {}; resume with --resume",
            state.step
        );
        return Ok(None);
    }
    Ok(Some(model.valid()))
}
