//! The LM-ft training loop: AdamW, LR schedule, mean gradient accumulation, global-norm
//! clipping, NaN guard, checkpoints with exact resume, signals and metrics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Tensor};
use radit_models::{Llama, TokenBatch};
use radit_train::checkpoint::{BestMetric, CheckpointManager, MetricMode, Retention};
use radit_train::guard::LossGuard;
use radit_train::metrics::MetricLogger;
use radit_train::schedule::LrSchedule;
use radit_train::signals::StopFlag;
use serde::{Deserialize, Serialize};

use crate::{answer_nll, GeneratorError, LmTargets};

/// Boxed error from a batch source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where training batches come from, with a position that checkpoints save and restore so a
/// resumed run sees exactly the batches an uninterrupted one would.
pub trait BatchSource {
    /// The next micro-batch and its answer mask (`[batch, seq_len]`, 1 on answer tokens).
    fn next_batch(&mut self) -> Result<(TokenBatch, Vec<u8>), BoxError>;
    /// The current position, serialized.
    fn state(&self) -> Vec<u8>;
    /// Restores a position returned by [`BatchSource::state`].
    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError>;
}

/// Optimization settings of one LM-ft run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmFtConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW decoupled weight decay.
    #[serde(default)]
    pub weight_decay: f64,
    /// Learning-rate multiplier per step.
    pub schedule: LrSchedule,
    /// Optimizer steps to run in total.
    pub max_steps: u64,
    /// Micro-batches averaged into one optimizer step.
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Clip the global gradient norm to this value.
    #[serde(default)]
    pub max_grad_norm: Option<f64>,
    /// Save a checkpoint every this many steps (and at the end).
    pub save_every: u64,
    /// Checkpoints kept besides the newest.
    #[serde(default = "three")]
    pub keep_last: usize,
    /// Also save when this many minutes have passed since the last save.
    #[serde(default)]
    pub save_every_minutes: Option<f64>,
    /// Evaluate (and save) every this many steps, when the caller gives an evaluator.
    #[serde(default)]
    pub eval_every: Option<u64>,
    /// The evaluation metric that picks the best checkpoint (kept through retention);
    /// larger is better unless its name contains `loss`.
    #[serde(default = "default_best_metric")]
    pub best_metric: String,
    /// Stop after this many evaluations without a new best.
    #[serde(default)]
    pub early_stopping_patience: Option<u64>,
}

fn default_best_metric() -> String {
    "dev/em".into()
}

impl LmFtConfig {
    fn best_mode(&self) -> MetricMode {
        if self.best_metric.contains("loss") {
            MetricMode::Min
        } else {
            MetricMode::Max
        }
    }
}

fn one() -> usize {
    1
}

fn three() -> usize {
    3
}

/// What the trainer keeps in `trainer.json` inside each checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: u64,
    /// Loss of every step so far (for loss curves and resume checks).
    pub losses: Vec<f64>,
    /// Tokens (prompt and answer, padding excluded) processed so far.
    pub tokens: u64,
    /// Answer tokens (loss targets) trained on so far.
    pub answer_tokens: u64,
    /// Best value of the best metric so far, and the step it was reached at.
    #[serde(default)]
    pub best: Option<(f64, u64)>,
    /// Evaluations since the last new best (for early stopping).
    #[serde(default)]
    pub evals_without_improvement: u64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// All steps done.
    Finished,
    /// Stopped by SIGTERM/SIGINT after saving a checkpoint.
    Interrupted,
    /// Stopped because the best metric stopped improving.
    EarlyStopped,
}

/// Errors of the training loop.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Loss or targets failed.
    #[error(transparent)]
    Generator(#[from] GeneratorError),
    /// The loss became NaN/inf; the message names the last good checkpoint.
    #[error(transparent)]
    NonFinite(#[from] radit_train::guard::NonFiniteError),
    /// Checkpoint I/O or verification failed.
    #[error(transparent)]
    Checkpoint(#[from] radit_train::checkpoint::CheckpointError),
    /// The batch source failed.
    #[error("training data: {0}")]
    Data(BoxError),
    /// Model or optimizer state could not be (de)serialized.
    #[error("{0}")]
    State(String),
}

/// Sums the squares of every gradient into one device scalar.
struct GradNorm<'a> {
    grads: &'a GradientsParams,
    squares: Vec<Tensor<1>>,
}

impl ModuleVisitor for GradNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.squares.push(g.square().sum());
        }
    }
}

/// Multiplies every gradient by a factor.
struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleMapper for ScaleGrads<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads
                .register::<D>(param.id, g.mul_scalar(self.factor));
        }
        param
    }
}

/// Global L2 norm of all gradients; scales them down to `max_norm` when above it.
/// Returns the norm before clipping.
pub fn clip_global_norm(
    model: Llama,
    grads: &mut GradientsParams,
    max_norm: Option<f64>,
) -> (Llama, f64) {
    let mut visitor = GradNorm {
        grads,
        squares: Vec::new(),
    };
    model.visit(&mut visitor);
    let norm = if visitor.squares.is_empty() {
        0.0
    } else {
        f64::from(Tensor::cat(visitor.squares, 0).sum().into_scalar::<f32>()).sqrt()
    };
    let model = match max_norm {
        Some(max) if norm > max && norm.is_finite() => {
            let mut mapper = ScaleGrads {
                grads,
                factor: max / (norm + 1e-6),
            };
            model.map(&mut mapper)
        }
        _ => model,
    };
    (model, norm)
}

fn state_err(what: &str, e: impl std::fmt::Display) -> TrainError {
    TrainError::State(format!("{what}: {e}"))
}

/// Scores the model on held-out data: `(metric name, value)` pairs, e.g. `("dev/em", 0.7)`.
pub type Evaluator<'a> = dyn FnMut(&Llama) -> Result<Vec<(String, f64)>, BoxError> + 'a;

/// Where and how a run keeps its state.
pub struct RunContext<'a> {
    /// Run directory; checkpoints go to `run_dir/checkpoints`.
    pub run_dir: &'a Path,
    /// Continue from the newest valid checkpoint, if any.
    pub resume: bool,
    /// Files stored with every checkpoint besides the trainer's own (e.g. the resolved recipe).
    pub extra_files: &'a [(&'a str, &'a [u8])],
    /// Metric sinks.
    pub logger: &'a mut MetricLogger,
    /// Set by SIGTERM/SIGINT: save and stop.
    pub stop: Option<&'a StopFlag>,
    /// Runs every `eval_every` steps on a gradient-free snapshot of the model.
    pub evaluate: Option<&'a mut Evaluator<'a>>,
}

/// Runs (or resumes) LM-ft. `model` must live on an autodiff device. With `resume`, the newest
/// valid checkpoint under `run_dir` restores weights, optimizer moments, data position and
/// step, so the run continues exactly where it stopped.
pub fn train_lm(
    mut model: Llama,
    source: &mut dyn BatchSource,
    config: &LmFtConfig,
    run: RunContext<'_>,
) -> Result<(Llama, TrainerState, Outcome), TrainError> {
    let RunContext {
        run_dir,
        resume,
        extra_files,
        logger,
        stop,
        mut evaluate,
    } = run;
    let mut optim = AdamWConfig::new()
        .with_weight_decay(config.weight_decay as f32)
        .init();
    // Best-by-metric retention only makes sense when something is evaluated.
    let best = evaluate
        .as_ref()
        .and(config.eval_every)
        .map(|_| BestMetric {
            name: config.best_metric.clone(),
            mode: config.best_mode(),
        });
    let mut manager = CheckpointManager::new(
        run_dir,
        Retention {
            keep_last: config.keep_last.max(1),
            best,
        },
    );
    let mut state = TrainerState::default();
    let mut guard = LossGuard::new();
    if resume {
        let latest = manager.latest_valid()?;
        for skipped in &latest.skipped {
            eprintln!("warning: skipping checkpoint: {skipped}");
        }
        if let Some(ckpt) = latest.checkpoint {
            let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(ckpt.read("model.bpk")?))
                .map_err(|e| state_err("model state", e))?;
            model = model
                .try_load_record(record)
                .map_err(|e| state_err("model state", e))?;
            optim = optim
                .from_bytes(Bytes::from_bytes_vec(ckpt.read("optimizer.bpk")?))
                .map_err(|e| state_err("optimizer state", e))?;
            source
                .restore(&ckpt.read("data.bin")?)
                .map_err(TrainError::Data)?;
            state = serde_json::from_slice(&ckpt.read("trainer.json")?)
                .map_err(|e| state_err("trainer.json", e))?;
            guard = LossGuard::resumed_from(state.step, ckpt.dir());
        }
    }
    let save = |manager: &mut CheckpointManager,
                model: &Llama,
                optim_bytes: Vec<u8>,
                source: &dyn BatchSource,
                state: &TrainerState,
                eval: &[(String, f64)]|
     -> Result<PathBuf, TrainError> {
        let model_bytes = model
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| state_err("model state", e))?;
        let trainer = serde_json::to_vec(state).map_err(|e| state_err("trainer.json", e))?;
        let data = source.state();
        let mut files: Vec<(&str, &[u8])> = vec![
            ("model.bpk", &model_bytes),
            ("optimizer.bpk", &optim_bytes),
            ("data.bin", &data),
            ("trainer.json", &trainer),
        ];
        files.extend_from_slice(extra_files);
        let mut metrics = BTreeMap::new();
        if let Some(loss) = state.losses.last() {
            metrics.insert("train/loss".to_string(), *loss);
        }
        for (name, value) in eval {
            metrics.insert(name.clone(), *value);
        }
        let saved = manager.save(state.step, &files, &metrics)?;
        for w in &saved.warnings {
            eprintln!("warning: {w}");
        }
        Ok(saved.dir)
    };
    let accum = config.grad_accum.max(1);
    let mut last_save = Instant::now();
    while state.step < config.max_steps {
        let started = Instant::now();
        let mut accumulator = GradientsAccumulator::<Llama>::new();
        let mut loss_sum = 0.0;
        let mut tokens = 0u64;
        let mut answer_tokens = 0.0f32;
        for _ in 0..accum {
            let (batch, answer_mask) = source.next_batch().map_err(TrainError::Data)?;
            let targets = LmTargets::from_answer_mask(&batch, &answer_mask)?;
            answer_tokens += targets.count();
            tokens += batch.mask.iter().map(|&m| u64::from(m)).sum::<u64>();
            // Mean over micro-batches, not sum: the step size must not depend on `grad_accum`.
            let loss = answer_nll(&model, &batch, &targets)?.div_scalar(accum as f64);
            loss_sum += f64::from(loss.clone().into_scalar::<f32>());
            accumulator.accumulate(&model, GradientsParams::from_grads(loss.backward(), &model));
        }
        let step = state.step + 1;
        guard.check_loss(step, loss_sum)?;
        let mut grads = accumulator.grads();
        let (clipped, grad_norm) = clip_global_norm(model, &mut grads, config.max_grad_norm);
        let lr = config.schedule.lr(config.lr, state.step);
        model = optim.step(lr, clipped, grads);
        state.step = step;
        state.losses.push(loss_sum);
        state.tokens += tokens;
        state.answer_tokens += answer_tokens as u64;
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        logger.log_scalars(
            step,
            &[
                ("train/loss", loss_sum),
                ("train/lr", lr),
                ("train/grad_norm", grad_norm),
                ("train/tokens_per_sec", tokens as f64 / seconds),
            ],
        );
        let mut eval_metrics = Vec::new();
        let mut early_stop = false;
        if let (Some(every), Some(evaluator)) = (config.eval_every, evaluate.as_mut()) {
            if step % every.max(1) == 0 || step == config.max_steps {
                eval_metrics = evaluator(&model.valid()).map_err(TrainError::Data)?;
                let scalars: Vec<(&str, f64)> =
                    eval_metrics.iter().map(|(n, v)| (n.as_str(), *v)).collect();
                logger.log_scalars(step, &scalars);
                if let Some(&(_, value)) =
                    eval_metrics.iter().find(|(n, _)| *n == config.best_metric)
                {
                    let better = match (state.best, config.best_mode()) {
                        (None, _) => true,
                        (Some((b, _)), MetricMode::Max) => value > b,
                        (Some((b, _)), MetricMode::Min) => value < b,
                    };
                    if better {
                        state.best = Some((value, step));
                        state.evals_without_improvement = 0;
                    } else {
                        state.evals_without_improvement += 1;
                    }
                    early_stop = config
                        .early_stopping_patience
                        .is_some_and(|p| state.evals_without_improvement >= p);
                }
            }
        }
        let interrupted = stop.is_some_and(StopFlag::requested);
        let timed = config
            .save_every_minutes
            .is_some_and(|m| last_save.elapsed().as_secs_f64() >= m * 60.0);
        let due = step % config.save_every.max(1) == 0 || step == config.max_steps;
        if due || timed || interrupted || early_stop || !eval_metrics.is_empty() {
            let optim_bytes = optim
                .into_bytes()
                .map_err(|e| state_err("optimizer state", e))?
                .to_vec();
            let dir = save(
                &mut manager,
                &model,
                optim_bytes,
                source,
                &state,
                &eval_metrics,
            )?;
            guard.checkpoint_saved(step, &dir);
            last_save = Instant::now();
        }
        if interrupted || early_stop {
            logger.flush();
            let outcome = if interrupted {
                Outcome::Interrupted
            } else {
                Outcome::EarlyStopped
            };
            return Ok((model, state, outcome));
        }
    }
    logger.flush();
    Ok((model, state, Outcome::Finished))
}
