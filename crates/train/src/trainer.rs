//! The training loop every stage shares: AdamW, LR schedule, mean gradient accumulation,
//! global-norm clipping, NaN guard, checkpoints with exact resume, evaluation with
//! best-checkpoint selection and early stopping, signals and metrics.
//!
//! A stage plugs in through [`Objective`]: it serves the next micro-batch's loss for the
//! current model and owns the data position that checkpoints save. The loop knows nothing of
//! language models or retrievers; LM-ft (`radit-generator`) and R-ft (`radit-retriever`) are
//! each an objective plus this loop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Tensor};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{BestMetric, CheckpointManager, MetricMode, Retention};
use crate::guard::LossGuard;
use crate::metrics::MetricLogger;
use crate::schedule::LrSchedule;
use crate::signals::StopFlag;

/// Boxed error from an objective or an evaluator.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The loss of one micro-batch.
pub struct MicroBatchLoss {
    /// Differentiable scalar loss (`[1]`), averaged over the micro-batch.
    pub loss: Tensor<1>,
    /// How many throughput units (see [`Objective::unit`]) the micro-batch held.
    pub items: u64,
}

/// What a stage trains: the loss of the next micro-batch, with a data position that
/// checkpoints save and restore, so that a resumed run sees exactly the batches an
/// uninterrupted one would.
pub trait Objective<M: Module> {
    /// The loss of the next micro-batch under `model`, before optimizer step `step` (0-based).
    fn next_loss(&mut self, model: &M, step: u64) -> Result<MicroBatchLoss, BoxError>;
    /// The current data position, serialized.
    fn state(&self) -> Vec<u8>;
    /// Restores a position returned by [`Objective::state`].
    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError>;
    /// Unit of [`MicroBatchLoss::items`], logged as `train/{unit}_per_sec` (e.g. `tokens`).
    fn unit(&self) -> &'static str;
}

/// Optimization, checkpointing and evaluation settings of one training stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
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

impl TrainConfig {
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
    /// Throughput units (see [`Objective::unit`]) processed so far.
    pub items: u64,
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
    /// The loss became NaN/inf; the message names the last good checkpoint.
    #[error(transparent)]
    NonFinite(#[from] crate::guard::NonFiniteError),
    /// Checkpoint I/O or verification failed.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// The objective (data or loss) failed.
    #[error("{0}")]
    Objective(BoxError),
    /// The evaluator failed.
    #[error("evaluation: {0}")]
    Evaluation(BoxError),
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
pub fn clip_global_norm<M: Module>(
    model: M,
    grads: &mut GradientsParams,
    max_norm: Option<f64>,
) -> (M, f64) {
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
pub type Evaluator<'a, M> = dyn FnMut(&M) -> Result<Vec<(String, f64)>, BoxError> + 'a;

/// Where and how a run keeps its state.
pub struct RunContext<'a, M> {
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
    pub evaluate: Option<&'a mut Evaluator<'a, M>>,
}

/// Runs (or resumes) a stage: `model` (on an autodiff device) minimizes `objective` with AdamW.
/// With `resume`, the newest valid checkpoint under `run_dir` restores weights, optimizer
/// moments, data position and step, so the run continues exactly where it stopped.
pub fn train<M: Module>(
    mut model: M,
    objective: &mut dyn Objective<M>,
    config: &TrainConfig,
    run: RunContext<'_, M>,
) -> Result<(M, TrainerState, Outcome), TrainError> {
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
            objective
                .restore(&ckpt.read("data.bin")?)
                .map_err(TrainError::Objective)?;
            state = serde_json::from_slice(&ckpt.read("trainer.json")?)
                .map_err(|e| state_err("trainer.json", e))?;
            guard = LossGuard::resumed_from(state.step, ckpt.dir());
        }
    }
    let save = |manager: &mut CheckpointManager,
                model: &M,
                optim_bytes: Vec<u8>,
                objective: &dyn Objective<M>,
                state: &TrainerState,
                eval: &[(String, f64)]|
     -> Result<PathBuf, TrainError> {
        let model_bytes = model
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| state_err("model state", e))?;
        let trainer = serde_json::to_vec(state).map_err(|e| state_err("trainer.json", e))?;
        let data = objective.state();
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
        let mut accumulator = GradientsAccumulator::<M>::new();
        let mut loss_sum = 0.0;
        let mut items = 0u64;
        for _ in 0..accum {
            let micro = objective
                .next_loss(&model, state.step)
                .map_err(TrainError::Objective)?;
            items += micro.items;
            // Mean over micro-batches, not sum: the step size must not depend on `grad_accum`.
            let loss = micro.loss.div_scalar(accum as f64);
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
        state.items += items;
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        let throughput = format!("train/{}_per_sec", objective.unit());
        logger.log_scalars(
            step,
            &[
                ("train/loss", loss_sum),
                ("train/lr", lr),
                ("train/grad_norm", grad_norm),
                (throughput.as_str(), items as f64 / seconds),
            ],
        );
        let mut eval_metrics = Vec::new();
        let mut early_stop = false;
        if let (Some(every), Some(evaluator)) = (config.eval_every, evaluate.as_mut()) {
            if step % every.max(1) == 0 || step == config.max_steps {
                eval_metrics = evaluator(&model.valid()).map_err(TrainError::Evaluation)?;
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
                objective,
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
