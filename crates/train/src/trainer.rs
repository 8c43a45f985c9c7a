//! The training loop every stage shares: an optimizer (AdamW from the recipe, or the
//! caller's), LR schedule, mean gradient accumulation, global-norm clipping, NaN guard,
//! checkpoints with exact resume, evaluation with best-checkpoint selection and early
//! stopping, signals and metrics.
//!
//! A stage plugs in through [`Objective`]: it serves the next micro-batch's loss for the
//! current model and owns the data position that checkpoints save. The loop knows nothing of
//! language models or retrievers; LM-ft (`radit-generator`) and R-ft (`radit-retriever`) are
//! each an objective plus this loop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Tensor};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{BestMetric, CheckpointManager, Retention};
use crate::guard::{DivergenceConfig, DivergenceError, LossGuard, Streaks};
use crate::metrics::MetricLogger;
use crate::optim_state::{self, StateDtype};
use crate::schedule::{validate_peak_lr, LrSchedule, ScheduleError};
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
    /// The current data position, serialized. An error fails the checkpoint (and the run):
    /// a checkpoint without its data position could not resume exactly.
    fn state(&self) -> Result<Vec<u8>, BoxError>;
    /// Restores a position returned by [`Objective::state`].
    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError>;
    /// Unit of [`MicroBatchLoss::items`], logged as `train/{unit}_per_sec` (e.g. `tokens`).
    fn unit(&self) -> &'static str;
}

/// The optimizer a recipe selects, as written in a stage's train table:
///
/// ```toml
/// optimizer = { kind = "adamw", beta1 = 0.9, beta2 = 0.999, epsilon = 1e-5 }
/// ```
///
/// Weight decay stays at [`TrainConfig::weight_decay`]. For an optimizer not listed here,
/// pass one to [`train_with_optimizer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// AdamW (Loshchilov & Hutter) with decoupled weight decay. Every default is burn's
    /// `AdamWConfig` default, so a recipe without an `optimizer` key trains exactly as
    /// before the key existed.
    #[serde(rename = "adamw")]
    AdamW {
        /// Decay rate of the first moment.
        #[serde(default = "default_beta1")]
        beta1: f64,
        /// Decay rate of the second moment.
        #[serde(default = "default_beta2")]
        beta2: f64,
        /// Added to the second moment's root for numerical stability (burn's default is
        /// `1e-5`, not PyTorch's `1e-8`).
        #[serde(default = "default_epsilon")]
        epsilon: f64,
        /// Use the running maximum of the second moment (AMSGrad).
        #[serde(default)]
        amsgrad: bool,
    },
}

// burn's AdamWConfig defaults, as f64 so that a resolved recipe prints them as typed;
// each converts to exactly burn's f32 (tested).
fn default_beta1() -> f64 {
    0.9
}

fn default_beta2() -> f64 {
    0.999
}

fn default_epsilon() -> f64 {
    1e-5
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::AdamW {
            beta1: default_beta1(),
            beta2: default_beta2(),
            epsilon: default_epsilon(),
            amsgrad: false,
        }
    }
}

impl OptimizerConfig {
    /// Checks the parameters; keys in errors are relative to the stage's train table.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            OptimizerConfig::AdamW {
                beta1,
                beta2,
                epsilon,
                ..
            } => {
                for (key, beta) in [("optimizer.beta1", beta1), ("optimizer.beta2", beta2)] {
                    if !(0.0..1.0).contains(&beta) {
                        return Err(ConfigError::new(
                            key,
                            format!("must be in [0, 1), got {beta}"),
                        ));
                    }
                }
                if !(epsilon.is_finite() && epsilon > 0.0) {
                    return Err(ConfigError::new(
                        "optimizer.epsilon",
                        format!("must be finite and > 0, got {epsilon}"),
                    ));
                }
                Ok(())
            }
        }
    }

    /// burn's configuration of this optimizer with `weight_decay`.
    fn adamw(&self, weight_decay: f64) -> AdamWConfig {
        match *self {
            OptimizerConfig::AdamW {
                beta1,
                beta2,
                epsilon,
                amsgrad,
            } => AdamWConfig::new()
                .with_beta_1(beta1 as f32)
                .with_beta_2(beta2 as f32)
                .with_epsilon(epsilon as f32)
                .with_amsgrad(amsgrad)
                .with_weight_decay(weight_decay as f32),
        }
    }

    /// The whole-module optimizer, with no state yet. Without gradient clipping: the loop
    /// clips the global norm itself ([`TrainConfig::max_grad_norm`]).
    pub fn init(&self, weight_decay: f64) -> ModuleOptimizer {
        self.adamw(weight_decay).init()
    }
}

/// A setting of a [`TrainConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid `{key}`: {reason}")]
pub struct ConfigError {
    /// The offending key, relative to the stage's train table (e.g. `lr`,
    /// `schedule.total_steps`), or prefixed by [`ConfigError::within`].
    pub key: String,
    /// What is wrong with its value.
    pub reason: String,
}

impl ConfigError {
    fn new(key: &str, reason: String) -> Self {
        ConfigError {
            key: key.to_string(),
            reason,
        }
    }

    /// The same error with the key placed under `table`, e.g. `stages.lm_ft.train`, so the
    /// message names the full dotted path of the recipe.
    pub fn within(mut self, table: &str) -> Self {
        if !table.is_empty() {
            self.key = format!("{table}.{}", self.key);
        }
        self
    }
}

impl From<ScheduleError> for ConfigError {
    fn from(e: ScheduleError) -> Self {
        ConfigError::new(e.key(), e.to_string())
    }
}

/// Optimization, checkpointing and evaluation settings of one training stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Decoupled weight decay of the optimizer.
    #[serde(default)]
    pub weight_decay: f64,
    /// The optimizer (default: AdamW with burn's defaults).
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// Learning-rate multiplier per step. A decaying schedule without `total_steps` decays
    /// over `max_steps`; give `total_steps` explicitly if `max_steps` may change on a resume.
    pub schedule: LrSchedule,
    /// Optimizer steps to run in total.
    pub max_steps: u64,
    /// Micro-batches averaged into one optimizer step.
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Clip the global gradient norm to this value.
    #[serde(default)]
    pub max_grad_norm: Option<f64>,
    /// Save a checkpoint every this many steps; `None` (the default): at the end only.
    /// Evaluations, `save_every_minutes`, early stopping and SIGTERM/SIGINT save too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_every: Option<u64>,
    /// How many of the newest checkpoints retention keeps (at least 1), besides the best
    /// one when evaluating.
    #[serde(default = "three")]
    pub keep_last: usize,
    /// Also save when this many minutes have passed since the last save.
    #[serde(default)]
    pub save_every_minutes: Option<f64>,
    /// Evaluate (and save) every this many steps, when the caller gives an evaluator.
    #[serde(default)]
    pub eval_every: Option<u64>,
    /// The evaluation metric that picks the best checkpoint (kept through retention), and
    /// its direction (default: `{ name = "dev/em", mode = "max" }`).
    #[serde(default)]
    pub best_metric: BestMetric,
    /// Stop after this many evaluations without a new best.
    #[serde(default)]
    pub early_stopping_patience: Option<u64>,
    /// When a run that stays finite counts as stalled (default: the gradient norm exactly
    /// 0 for 20 steps in a row); see [`DivergenceConfig`].
    #[serde(default)]
    pub divergence: DivergenceConfig,
    /// How checkpoints store the optimizer state (AdamW's moments, two thirds of a
    /// checkpoint): `f32` (resume is bitwise exact) or `bf16` (half that share; a resumed
    /// run continues from moments rounded to bf16, close to but not bitwise equal to an
    /// uninterrupted one). f16 is not offered: it flushes the tiny second moments to 0.
    #[serde(default)]
    pub optimizer_state_dtype: StateDtype,
}

impl TrainConfig {
    /// Checks every setting (call once after loading a recipe; [`train`] calls it too).
    /// Keys in errors are relative to the stage's train table; see [`ConfigError::within`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(ConfigError::new(
                    key,
                    format!("must be finite and > 0, got {v}"),
                ))
            }
        };
        let at_least_one = |key: &str, v: u64| {
            if v >= 1 {
                Ok(())
            } else {
                Err(ConfigError::new(key, "must be at least 1, got 0".into()))
            }
        };
        validate_peak_lr(self.lr)?;
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(ConfigError::new(
                "weight_decay",
                format!("must be finite and >= 0, got {}", self.weight_decay),
            ));
        }
        at_least_one("max_steps", self.max_steps)?;
        at_least_one("grad_accum", self.grad_accum as u64)?;
        if let Some(norm) = self.max_grad_norm {
            positive("max_grad_norm", norm)?;
        }
        if let Some(every) = self.save_every {
            at_least_one("save_every", every)?;
        }
        at_least_one("keep_last", self.keep_last as u64)?;
        if let Some(minutes) = self.save_every_minutes {
            positive("save_every_minutes", minutes)?;
        }
        if let Some(every) = self.eval_every {
            at_least_one("eval_every", every)?;
        }
        if let Some(patience) = self.early_stopping_patience {
            at_least_one("early_stopping_patience", patience)?;
        }
        if self.best_metric.name.is_empty() {
            return Err(ConfigError::new(
                "best_metric.name",
                "must not be empty".into(),
            ));
        }
        self.divergence
            .validate()
            .map_err(|(key, reason)| ConfigError::new(key, reason))?;
        self.optimizer.validate()?;
        self.schedule.validate(self.max_steps)?;
        Ok(())
    }

    /// Steps between regular checkpoints: `save_every`, or `max_steps` when it is not set.
    pub fn save_interval(&self) -> u64 {
        self.save_every.unwrap_or(self.max_steps).max(1)
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
    /// Best value of the best metric so far, and the step it was reached at (the first
    /// step to reach it: a tie is no improvement). Its checkpoint is kept in
    /// [`TrainerState::best_checkpoint`].
    #[serde(default)]
    pub best: Option<(f64, u64)>,
    /// Evaluations since the last new best (for early stopping).
    #[serde(default)]
    pub evals_without_improvement: u64,
    /// Counts of the stall check ([`TrainConfig::divergence`]).
    #[serde(default)]
    pub streaks: Streaks,
    /// Where the checkpoint of [`TrainerState::best`] is, `RUN_DIR/checkpoints/best`,
    /// outside keep-last retention (`None` without evaluations, or if it could not be
    /// kept). Filled in by [`train`] on return, not saved in `trainer.json`. The returned
    /// model is the last step's; load the best from here.
    #[serde(skip)]
    pub best_checkpoint: Option<PathBuf>,
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
    /// The loss, the gradient norm or a parameter became NaN/inf; the message names the
    /// last good checkpoint. Nothing non-finite was saved.
    #[error(transparent)]
    NonFinite(#[from] crate::guard::NonFiniteError),
    /// Training stalled ([`TrainConfig::divergence`]); the message names the newest
    /// checkpoint from before.
    #[error(transparent)]
    Diverged(#[from] DivergenceError),
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
    /// The configuration cannot work (see [`TrainConfig::validate`]).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The objective could not serialize its data position, so no checkpoint was written.
    #[error("cannot save the data position: {0}")]
    DataState(BoxError),
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

/// Sums `0 × x` over every parameter: 0 when all are finite, NaN otherwise (`0 × ±inf` is
/// NaN), without the overflow a sum of squares could hit. One reduction per parameter.
struct FiniteProbe {
    parts: Vec<Tensor<1>>,
}

impl ModuleVisitor for FiniteProbe {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.parts.push(param.val().detach().mul_scalar(0.0).sum());
    }
}

/// See [`FiniteProbe`]: 0.0 when every parameter of `model` is finite, else NaN.
fn finite_probe<M: Module>(model: &M) -> f64 {
    let mut probe = FiniteProbe { parts: Vec::new() };
    model.visit(&mut probe);
    if probe.parts.is_empty() {
        return 0.0;
    }
    f64::from(Tensor::cat(probe.parts, 0).sum().into_scalar::<f32>())
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

/// Runs (or resumes) a stage: `model` (on an autodiff device) minimizes `objective` with the
/// optimizer of `config.optimizer`. With `resume`, the newest valid checkpoint under
/// `run_dir` restores weights, optimizer moments, data position and step, so the run
/// continues exactly where it stopped. Fails with [`TrainError::Config`] before touching
/// anything when [`TrainConfig::validate`] does.
pub fn train<M: Module>(
    model: M,
    objective: &mut dyn Objective<M>,
    config: &TrainConfig,
    run: RunContext<'_, M>,
) -> Result<(M, TrainerState, Outcome), TrainError> {
    config.validate()?;
    let optim = config.optimizer.init(config.weight_decay);
    run_loop(model, objective, config, run, optim)
}

/// Like [`train`], with the caller's optimizer instead of `config.optimizer`: any
/// `burn::optim::Optimizer` (e.g. `SgdConfig::new().build()`), or a `ModuleOptimizer`
/// with parameter groups.
///
/// `config.optimizer` and `config.weight_decay` are not used; the rest of `config` is.
/// Checkpoints save and restore the optimizer's state through burn's record format, which
/// every burn optimizer supports, so a resume is as exact as with [`train`] provided it is
/// given the same optimizer (a different one would find no usable state and start afresh).
/// Leave burn's own gradient clipping off: the loop clips to `max_grad_norm` already.
pub fn train_with_optimizer<M: Module, O: Into<ModuleOptimizer>>(
    model: M,
    objective: &mut dyn Objective<M>,
    config: &TrainConfig,
    run: RunContext<'_, M>,
    optim: O,
) -> Result<(M, TrainerState, Outcome), TrainError> {
    config.validate()?;
    run_loop(model, objective, config, run, optim.into())
}

/// The loop of [`train`] and [`train_with_optimizer`], on a validated `config`.
fn run_loop<M: Module>(
    mut model: M,
    objective: &mut dyn Objective<M>,
    config: &TrainConfig,
    run: RunContext<'_, M>,
    mut optim: ModuleOptimizer,
) -> Result<(M, TrainerState, Outcome), TrainError> {
    let RunContext {
        run_dir,
        resume,
        extra_files,
        logger,
        stop,
        mut evaluate,
    } = run;
    // From here a signal means "save at the next step boundary", not "exit now".
    let _saving = stop.map(StopFlag::save_on_signal);
    // The loop decides the best itself (it also drives early stopping) and copies it to
    // `checkpoints/best` explicitly: one decision, consistent with `state.best` even after a
    // resume from an older checkpoint, so the manager's own best-by-metric stays off.
    let evaluating = evaluate.is_some() && config.eval_every.is_some();
    let mut manager = CheckpointManager::new(
        run_dir,
        Retention {
            keep_last: config.keep_last,
            best: None,
        },
    );
    let mut state = TrainerState::default();
    let mut guard = LossGuard::new();
    if resume {
        let latest = manager.latest_valid()?;
        for skipped in &latest.skipped {
            tracing::warn!("{skipped}");
        }
        if let Some(ckpt) = latest.checkpoint {
            let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(ckpt.read("model.bpk")?))
                .map_err(|e| state_err("model state", e))?;
            model = model
                .try_load_record(record)
                .map_err(|e| state_err("model state", e))?;
            let stored = Bytes::from_bytes_vec(ckpt.read("optimizer.bpk")?);
            optim = optim
                .from_bytes(
                    optim_state::decode(stored).map_err(|e| state_err("optimizer state", e))?,
                )
                .map_err(|e| state_err("optimizer state", e))?;
            objective
                .restore(&ckpt.read("data.bin")?)
                .map_err(TrainError::Objective)?;
            state = serde_json::from_slice(&ckpt.read("trainer.json")?)
                .map_err(|e| state_err("trainer.json", e))?;
            guard = LossGuard::resumed_from(state.step, ckpt.dir());
            tracing::info!(
                "resuming at step {} from {}",
                state.step,
                ckpt.dir().display()
            );
            reconcile_best(&mut manager, &state);
        }
        // Rows the interrupted run logged after its last checkpoint are redone now.
        logger.resumed_at(state.step);
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
        // Before anything is written: a checkpoint without its data position is no checkpoint.
        let data = objective.state().map_err(TrainError::DataState)?;
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
            tracing::warn!("{w}");
        }
        Ok(saved.dir)
    };
    let accum = config.grad_accum;
    let save_every = config.save_interval();
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
        // Before the step: a non-finite gradient would make every parameter NaN.
        guard.check("gradient norm", step, grad_norm)?;
        let first_loss = state.losses.first().copied().unwrap_or(loss_sum);
        if let Err(mut e) =
            config
                .divergence
                .observe(&mut state.streaks, step, loss_sum, first_loss, grad_norm)
        {
            e.last_good = newest_before(&manager, e.since.saturating_sub(1));
            return Err(e.into());
        }
        let lr = config.schedule.lr(config.lr, state.step, config.max_steps);
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
        let mut new_best = false;
        if let (Some(every), Some(evaluator)) = (config.eval_every, evaluate.as_mut()) {
            if step % every == 0 || step == config.max_steps {
                eval_metrics = evaluator(&model.valid()).map_err(TrainError::Evaluation)?;
                let scalars: Vec<(&str, f64)> =
                    eval_metrics.iter().map(|(n, v)| (n.as_str(), *v)).collect();
                logger.log_scalars(step, &scalars);
                if let Some(&(_, value)) = eval_metrics
                    .iter()
                    .find(|(n, _)| *n == config.best_metric.name)
                {
                    // A NaN evaluation is never the best, and counts as no improvement.
                    if config
                        .best_metric
                        .improves(value, state.best.map(|(b, _)| b))
                    {
                        state.best = Some((value, step));
                        new_best = true;
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
        let due = step % save_every == 0 || step == config.max_steps;
        if due || timed || interrupted || early_stop || !eval_metrics.is_empty() {
            // Never save (or name as good) weights the step made non-finite.
            guard.check_params(step, finite_probe(&model), lr, grad_norm)?;
            let optim_bytes = optim
                .into_bytes()
                .map_err(|e| state_err("optimizer state", e))
                .and_then(|b| {
                    optim_state::encode(b, config.optimizer_state_dtype)
                        .map_err(|e| state_err("optimizer state", e))
                })?
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
            if new_best {
                match manager.promote_best(step) {
                    Ok(best) => tracing::info!(
                        "step {step} is the new best ({} {}), kept in {}",
                        config.best_metric.name,
                        state.best.map_or(f64::NAN, |b| b.0),
                        best.display()
                    ),
                    // The run can go on; retention may remove this step's directory later.
                    Err(e) => tracing::warn!("cannot keep step {step} as the best: {e}"),
                }
            }
        }
        if interrupted || early_stop {
            logger.flush();
            let outcome = if interrupted {
                Outcome::Interrupted
            } else {
                Outcome::EarlyStopped
            };
            state.best_checkpoint = best_checkpoint(&manager, &state, evaluating);
            return Ok((model, state, outcome));
        }
    }
    logger.flush();
    state.best_checkpoint = best_checkpoint(&manager, &state, evaluating);
    Ok((model, state, Outcome::Finished))
}

/// `checkpoints/best` when it holds the step of `state.best`.
fn best_checkpoint(
    manager: &CheckpointManager,
    state: &TrainerState,
    evaluating: bool,
) -> Option<PathBuf> {
    let (_, step) = state.best?;
    if manager.best_step() == Some(step) {
        return Some(manager.best_dir());
    }
    if evaluating {
        tracing::warn!(
            "the best checkpoint (step {step}) is not in {}",
            manager.best_dir().display()
        );
    }
    None
}

/// After a resume: makes `checkpoints/best` hold the step of `state.best`. It may not, for
/// a run directory of an earlier version (no `best/`), or when the resume went back past
/// newer checkpoints that failed verification and `best/` is from that abandoned future.
fn reconcile_best(manager: &mut CheckpointManager, state: &TrainerState) {
    let Some((_, step)) = state.best else { return };
    if manager.best_step() == Some(step) {
        return;
    }
    if !manager.dir_for(step).is_dir() {
        tracing::warn!(
            "the best checkpoint so far (step {step}) is gone; {} will hold the next best",
            manager.best_dir().display()
        );
        return;
    }
    if let Err(e) = manager.promote_best(step) {
        tracing::warn!("cannot keep step {step} as the best: {e}");
    }
}

/// The newest committed `step-…` checkpoint with a step below `before`, if still on disk.
fn newest_before(manager: &CheckpointManager, before: u64) -> Option<(u64, PathBuf)> {
    manager
        .list()
        .ok()?
        .into_iter()
        .rev()
        .find(|(step, _)| *step < before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Checkpoint, MetricMode};
    use crate::metrics::JsonlSink;
    use burn::optim::momentum::MomentumConfig;
    use burn::optim::SgdConfig;
    use burn::tensor::{Device, TensorData};
    use std::io::Write;

    #[derive(Module, Debug)]
    struct Weights {
        w: Param<Tensor<1>>,
    }

    fn weights() -> Weights {
        let device = Device::flex().autodiff();
        let init = TensorData::new(vec![0.3f32, -0.2, 0.1], [3]);
        Weights {
            w: Param::from_tensor(Tensor::from_data(init, &device)),
        }
    }

    fn values(model: &Weights) -> Vec<f32> {
        model.w.val().into_data().try_to_vec::<f32>().unwrap()
    }

    /// A quadratic towards a target that depends on the data position, so a resume that
    /// lost the position (or the optimizer state) would end elsewhere.
    #[derive(Default)]
    struct Quadratic {
        next: u64,
        state_fails: bool,
        /// Micro-batch from which `next_loss` fails (a crash).
        fail_from: Option<u64>,
        /// Micro-batch whose loss is finite but whose gradient is not.
        grad_bomb_at: Option<u64>,
        /// A constant loss: every gradient exactly 0.
        flat: bool,
    }

    impl Objective<Weights> for Quadratic {
        fn next_loss(&mut self, model: &Weights, _step: u64) -> Result<MicroBatchLoss, BoxError> {
            let k = self.next;
            if self.fail_from.is_some_and(|f| k >= f) {
                return Err("killed".into());
            }
            self.next += 1;
            let w = model.w.val();
            if self.flat {
                return Ok(MicroBatchLoss {
                    loss: w.mul_scalar(0.0).sum().add_scalar(10.8),
                    items: 1,
                });
            }
            if self.grad_bomb_at == Some(k) {
                // sqrt(|w - w|) is 0, with an infinite (or NaN) derivative.
                let zero = w.clone().sub(w.clone().detach()).abs().sqrt().sum();
                return Ok(MicroBatchLoss {
                    loss: w.square().sum().add(zero),
                    items: 1,
                });
            }
            let target = TensorData::new(
                vec![(k % 3) as f32, 1.0 - (k % 2) as f32, 0.5 * k as f32],
                [3],
            );
            let target = Tensor::<1>::from_data(target, &model.w.val().device());
            Ok(MicroBatchLoss {
                loss: model.w.val().sub(target).square().sum(),
                items: 1,
            })
        }
        fn state(&self) -> Result<Vec<u8>, BoxError> {
            if self.state_fails {
                return Err("the position cannot be serialized".into());
            }
            Ok(self.next.to_le_bytes().to_vec())
        }
        fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
            self.next = u64::from_le_bytes(state.try_into()?);
            Ok(())
        }
        fn unit(&self) -> &'static str {
            "items"
        }
    }

    fn config(max_steps: u64) -> TrainConfig {
        TrainConfig {
            lr: 0.05,
            weight_decay: 0.01,
            optimizer: OptimizerConfig::default(),
            schedule: LrSchedule::Cosine {
                warmup_steps: 1,
                total_steps: Some(6),
                min_lr_ratio: 0.1,
            },
            max_steps,
            grad_accum: 2,
            max_grad_norm: Some(1.0),
            save_every: Some(2),
            keep_last: 2,
            save_every_minutes: None,
            eval_every: None,
            best_metric: BestMetric::default(),
            early_stopping_patience: None,
            divergence: DivergenceConfig::default(),
            optimizer_state_dtype: StateDtype::F32,
        }
    }

    fn ctx<'a>(
        dir: &'a Path,
        resume: bool,
        logger: &'a mut MetricLogger,
    ) -> RunContext<'a, Weights> {
        RunContext {
            run_dir: dir,
            resume,
            extra_files: &[],
            logger,
            stop: None,
            evaluate: None,
        }
    }

    fn run(
        dir: &Path,
        cfg: &TrainConfig,
        resume: bool,
    ) -> Result<(Weights, TrainerState, Outcome), TrainError> {
        let mut logger = MetricLogger::new();
        train(
            weights(),
            &mut Quadratic::default(),
            cfg,
            ctx(dir, resume, &mut logger),
        )
    }

    fn sgd() -> burn::optim::Sgd {
        SgdConfig::new()
            .with_momentum(Some(MomentumConfig::new()))
            .build()
    }

    fn run_sgd(
        dir: &Path,
        cfg: &TrainConfig,
        resume: bool,
    ) -> Result<(Weights, TrainerState, Outcome), TrainError> {
        let mut logger = MetricLogger::new();
        train_with_optimizer(
            weights(),
            &mut Quadratic::default(),
            cfg,
            ctx(dir, resume, &mut logger),
            sgd(),
        )
    }

    fn step_dirs(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("checkpoints"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("step-"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn parse(text: &str) -> Result<TrainConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// A change to a valid config that makes it invalid.
    type Breakage = Box<dyn Fn(&mut TrainConfig)>;

    #[test]
    fn validate_names_the_offending_key() {
        config(6).validate().unwrap();
        let cases: Vec<(&str, Breakage)> = vec![
            ("lr", Box::new(|c: &mut TrainConfig| c.lr = 0.0)),
            ("lr", Box::new(|c: &mut TrainConfig| c.lr = f64::NAN)),
            (
                "weight_decay",
                Box::new(|c: &mut TrainConfig| c.weight_decay = -0.1),
            ),
            (
                "weight_decay",
                Box::new(|c: &mut TrainConfig| c.weight_decay = f64::INFINITY),
            ),
            ("max_steps", Box::new(|c: &mut TrainConfig| c.max_steps = 0)),
            (
                "grad_accum",
                Box::new(|c: &mut TrainConfig| c.grad_accum = 0),
            ),
            (
                "max_grad_norm",
                Box::new(|c: &mut TrainConfig| c.max_grad_norm = Some(0.0)),
            ),
            (
                "max_grad_norm",
                Box::new(|c: &mut TrainConfig| c.max_grad_norm = Some(f64::NAN)),
            ),
            (
                "save_every",
                Box::new(|c: &mut TrainConfig| c.save_every = Some(0)),
            ),
            ("keep_last", Box::new(|c: &mut TrainConfig| c.keep_last = 0)),
            (
                "save_every_minutes",
                Box::new(|c: &mut TrainConfig| c.save_every_minutes = Some(-1.0)),
            ),
            (
                "eval_every",
                Box::new(|c: &mut TrainConfig| c.eval_every = Some(0)),
            ),
            (
                "early_stopping_patience",
                Box::new(|c: &mut TrainConfig| c.early_stopping_patience = Some(0)),
            ),
            (
                "best_metric.name",
                Box::new(|c: &mut TrainConfig| c.best_metric.name.clear()),
            ),
            (
                "optimizer.beta2",
                Box::new(|c: &mut TrainConfig| {
                    c.optimizer = OptimizerConfig::AdamW {
                        beta1: 0.9,
                        beta2: 1.0,
                        epsilon: 1e-5,
                        amsgrad: false,
                    }
                }),
            ),
            (
                "optimizer.epsilon",
                Box::new(|c: &mut TrainConfig| {
                    c.optimizer = OptimizerConfig::AdamW {
                        beta1: 0.9,
                        beta2: 0.999,
                        epsilon: 0.0,
                        amsgrad: false,
                    }
                }),
            ),
            (
                "schedule.total_steps",
                Box::new(|c: &mut TrainConfig| c.max_steps = 7),
            ),
            (
                "schedule.warmup_steps",
                Box::new(|c: &mut TrainConfig| {
                    c.schedule = LrSchedule::Constant { warmup_steps: 7 }
                }),
            ),
            (
                "schedule.min_lr_ratio",
                Box::new(|c: &mut TrainConfig| {
                    c.schedule = LrSchedule::Linear {
                        warmup_steps: 0,
                        total_steps: None,
                        min_lr_ratio: 1.5,
                    }
                }),
            ),
        ];
        for (key, mutate) in cases {
            let mut cfg = config(6);
            mutate(&mut cfg);
            let err = cfg.validate().unwrap_err();
            assert_eq!(err.key, key, "{err}");
            assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
        }
        let err = config(0)
            .validate()
            .unwrap_err()
            .within("stages.lm_ft.train");
        assert_eq!(
            err.to_string(),
            "invalid `stages.lm_ft.train.max_steps`: must be at least 1, got 0"
        );
    }

    #[test]
    fn train_validates_before_touching_the_run_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(6);
        cfg.max_grad_norm = Some(-1.0);
        let err = run(dir.path(), &cfg, false).err().unwrap();
        assert!(
            matches!(&err, TrainError::Config(e) if e.key == "max_grad_norm"),
            "{err}"
        );
        let err = run_sgd(dir.path(), &cfg, false).err().unwrap();
        assert!(matches!(err, TrainError::Config(_)), "{err}");
        assert!(!dir.path().join("checkpoints").exists());
    }

    #[test]
    fn minimal_recipe_takes_the_defaults() {
        let cfg = parse(
            "lr = 1e-3\nmax_steps = 10\nschedule = { kind = \"cosine\", warmup_steps = 2 }\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.save_every, None);
        assert_eq!(cfg.save_interval(), 10);
        assert_eq!(cfg.optimizer, OptimizerConfig::default());
        assert_eq!(cfg.best_metric, BestMetric::default());
        assert_eq!(cfg.best_metric.name, "dev/em");
        assert_eq!(cfg.best_metric.mode, MetricMode::Max);
        assert_eq!(cfg.schedule.total_steps(cfg.max_steps), Some(10));
        // The serialized form reads back as the same configuration.
        let again = parse(&toml::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn optimizer_from_the_recipe_with_burns_defaults() {
        let cfg = parse(
            "lr = 1e-3\nmax_steps = 4\nschedule = { kind = \"constant\" }\n\
             optimizer = { kind = \"adamw\", beta1 = 0.8, beta2 = 0.99, epsilon = 1e-8 }\n",
        )
        .unwrap();
        assert_eq!(
            cfg.optimizer,
            OptimizerConfig::AdamW {
                beta1: 0.8,
                beta2: 0.99,
                epsilon: 1e-8,
                amsgrad: false
            }
        );
        let partial = parse(
            "lr = 1e-3\nmax_steps = 4\nschedule = { kind = \"constant\" }\n\
             optimizer = { kind = \"adamw\" }\n",
        )
        .unwrap();
        assert_eq!(partial.optimizer, OptimizerConfig::default());
        // Same f32 values as the burn configuration the loop used before the key existed.
        assert_eq!(
            format!("{:?}", OptimizerConfig::default().adamw(0.01)),
            format!("{:?}", AdamWConfig::new().with_weight_decay(0.01))
        );
        let err = parse(
            "lr = 1e-3\nmax_steps = 4\nschedule = { kind = \"constant\" }\n\
             optimizer = { kind = \"lion\" }\n",
        )
        .unwrap_err();
        assert!(err.contains("unknown variant `lion`"), "{err}");
        let err = parse(
            "lr = 1e-3\nmax_steps = 4\nschedule = { kind = \"constant\" }\n\
             optimizer = { kind = \"adamw\", beta_1 = 0.9 }\n",
        )
        .unwrap_err();
        assert!(err.contains("unknown field `beta_1`"), "{err}");
    }

    #[test]
    fn best_metric_direction_is_explicit() {
        let base = "lr = 1e-3\nmax_steps = 4\nschedule = { kind = \"constant\" }\n";
        let cfg = parse(&format!(
            "{base}best_metric = {{ name = \"dev/perplexity\", mode = \"min\" }}\n"
        ))
        .unwrap();
        assert_eq!(
            cfg.best_metric,
            BestMetric {
                name: "dev/perplexity".into(),
                mode: MetricMode::Min
            }
        );
        // The plain-string form of earlier recipes: larger is better.
        let cfg = parse(&format!("{base}best_metric = \"dev/mrr\"\n")).unwrap();
        assert_eq!(cfg.best_metric.mode, MetricMode::Max);
        // Earlier versions read this one as smaller-is-better: refuse to flip it silently.
        let err = parse(&format!("{base}best_metric = \"dev/loss\"\n")).unwrap_err();
        assert!(err.contains("mode = \"min\""), "{err}");
        let err = parse(&format!(
            "{base}best_metric = {{ name = \"dev/em\", mode = \"maximum\" }}\n"
        ))
        .unwrap_err();
        assert!(err.contains("unknown variant `maximum`"), "{err}");
        let err = parse(&format!("{base}best_metric = {{ name = \"dev/em\" }}\n")).unwrap_err();
        assert!(err.contains("missing field `mode`"), "{err}");
    }

    #[test]
    fn min_mode_keeps_the_smallest_value() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(6);
        cfg.eval_every = Some(1);
        cfg.early_stopping_patience = Some(2);
        cfg.keep_last = 1;
        // A name without "loss": the old guess would have taken larger as better.
        cfg.best_metric = BestMetric {
            name: "dev/perplexity".into(),
            mode: MetricMode::Min,
        };
        let scores = [5.0, 4.0, 6.0, 7.0, 1.0];
        let mut calls = 0;
        let mut evaluator = |_: &Weights| -> Result<Vec<(String, f64)>, BoxError> {
            calls += 1;
            Ok(vec![("dev/perplexity".to_string(), scores[calls - 1])])
        };
        let mut logger = MetricLogger::new();
        let run = RunContext {
            evaluate: Some(&mut evaluator),
            ..ctx(dir.path(), false, &mut logger)
        };
        let (_, state, outcome) = train(weights(), &mut Quadratic::default(), &cfg, run).unwrap();
        assert_eq!(outcome, Outcome::EarlyStopped);
        assert_eq!(state.best, Some((4.0, 2)));
        assert_eq!(state.step, 4);
        // keep_last = 1 keeps the newest step; the best is in checkpoints/best.
        assert_eq!(step_dirs(dir.path()), vec!["step-00000004"]);
        let best = Checkpoint::open(&dir.path().join("checkpoints/best")).unwrap();
        assert_eq!(best.step(), 2);
        assert_eq!(best.metrics()["dev/perplexity"], 4.0);
    }

    /// Runs with an evaluator that returns `scores` in turn as `dev/em`.
    fn run_eval(
        dir: &Path,
        cfg: &TrainConfig,
        resume: bool,
        scores: &[f64],
    ) -> Result<(Weights, TrainerState, Outcome), TrainError> {
        let mut calls = 0;
        let mut evaluator = |_: &Weights| -> Result<Vec<(String, f64)>, BoxError> {
            calls += 1;
            Ok(vec![("dev/em".to_string(), scores[calls - 1])])
        };
        let mut logger = MetricLogger::new();
        let run = RunContext {
            evaluate: Some(&mut evaluator),
            ..ctx(dir, resume, &mut logger)
        };
        train(weights(), &mut Quadratic::default(), cfg, run)
    }

    #[test]
    fn keep_last_never_removes_the_best_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(6);
        cfg.eval_every = Some(2);
        cfg.keep_last = 1;
        // Step 4 ties step 2: a tie is no new best, so step 2 stays the best.
        let (_, state, _) = run_eval(dir.path(), &cfg, false, &[0.7, 0.7, 0.5]).unwrap();
        assert_eq!(state.best, Some((0.7, 2)));
        let best_dir = dir.path().join("checkpoints/best");
        assert_eq!(state.best_checkpoint.as_deref(), Some(best_dir.as_path()));
        let best = Checkpoint::open(&best_dir).unwrap();
        assert_eq!(best.step(), 2);
        assert_eq!(best.metrics()["dev/em"], 0.7);
        let trainer: TrainerState =
            serde_json::from_slice(&best.read("trainer.json").unwrap()).unwrap();
        assert_eq!(trainer.step, 2);
        assert_eq!(step_dirs(dir.path()), vec!["step-00000006"]);
        // A resume continues from the newest step, not from best/.
        let manager = CheckpointManager::new(dir.path(), Retention::default());
        let latest = manager.latest_valid().unwrap().checkpoint.unwrap();
        assert_eq!(latest.step(), 6);
    }

    #[test]
    fn a_nan_evaluation_is_never_the_best() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(6);
        cfg.eval_every = Some(2);
        let (_, state, _) = run_eval(dir.path(), &cfg, false, &[f64::NAN, 0.2, 0.1]).unwrap();
        assert_eq!(state.best, Some((0.2, 4)));
        assert_eq!(state.evals_without_improvement, 1);
        let best = Checkpoint::open(&dir.path().join("checkpoints/best")).unwrap();
        assert_eq!(best.step(), 4);
    }

    #[test]
    fn the_best_survives_a_resume() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(4);
        cfg.eval_every = Some(2);
        cfg.keep_last = 1;
        run_eval(dir.path(), &cfg, false, &[0.9, 0.3]).unwrap();
        cfg.max_steps = 6;
        let (_, state, _) = run_eval(dir.path(), &cfg, true, &[0.5]).unwrap();
        assert_eq!(state.best, Some((0.9, 2)));
        assert!(state.best_checkpoint.is_some());
        let best = Checkpoint::open(&dir.path().join("checkpoints/best")).unwrap();
        assert_eq!(best.step(), 2);
        assert_eq!(step_dirs(dir.path()), vec!["step-00000006"]);
    }

    fn jsonl_steps(path: &Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["step"].as_u64().unwrap()
            })
            .collect()
    }

    #[test]
    fn a_resumed_run_logs_every_step_once_after_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("metrics.jsonl");
        let cfg = config(6);
        // Killed during step 6: steps 1–5 are logged, the last checkpoint is step 4.
        {
            let mut logger =
                MetricLogger::new().with_sink(Box::new(JsonlSink::append(&log).unwrap()));
            let mut objective = Quadratic {
                fail_from: Some(10),
                ..Quadratic::default()
            };
            let err = train(
                weights(),
                &mut objective,
                &cfg,
                ctx(dir.path(), false, &mut logger),
            );
            assert!(matches!(err, Err(TrainError::Objective(_))));
        }
        assert_eq!(jsonl_steps(&log), vec![1, 2, 3, 4, 5]);
        // ... in the middle of writing a row.
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"{\"step\":6,\"train/lo").unwrap();
        drop(f);
        let mut logger = MetricLogger::new().with_sink(Box::new(JsonlSink::append(&log).unwrap()));
        let (_, state, _) = train(
            weights(),
            &mut Quadratic::default(),
            &cfg,
            ctx(dir.path(), true, &mut logger),
        )
        .unwrap();
        drop(logger);
        assert_eq!(state.step, 6);
        assert_eq!(jsonl_steps(&log), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn non_finite_parameters_are_never_saved() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(4);
        cfg.lr = 1e39;
        cfg.schedule = LrSchedule::Constant { warmup_steps: 0 };
        cfg.save_every = Some(1);
        let err = run(dir.path(), &cfg, false).err().unwrap();
        let TrainError::NonFinite(e) = &err else {
            panic!("{err}")
        };
        assert_eq!(e.step, 1);
        assert!(e.what.contains("parameter"), "{err}");
        assert_eq!(e.last_good, None);
        assert!(
            step_dirs(dir.path()).is_empty(),
            "{:?}",
            step_dirs(dir.path())
        );
    }

    #[test]
    fn a_non_finite_gradient_is_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(6);
        cfg.save_every = Some(1);
        let mut logger = MetricLogger::new();
        // Micro-batch 6 is in step 4 (two per step): the last good checkpoint is step 3.
        let mut objective = Quadratic {
            grad_bomb_at: Some(6),
            ..Quadratic::default()
        };
        let err = train(
            weights(),
            &mut objective,
            &cfg,
            ctx(dir.path(), false, &mut logger),
        )
        .err()
        .unwrap();
        let TrainError::NonFinite(e) = &err else {
            panic!("{err}")
        };
        assert_eq!(e.what, "gradient norm");
        assert_eq!(e.step, 4);
        assert_eq!(e.last_good.as_ref().map(|g| g.0), Some(3));
        assert!(err.to_string().contains("step 3"), "{err}");
        assert_eq!(
            step_dirs(dir.path()),
            vec!["step-00000002", "step-00000003"]
        );
        let ckpt = Checkpoint::open(&dir.path().join("checkpoints/step-00000003")).unwrap();
        assert!(ckpt.metrics()["train/loss"].is_finite());
    }

    #[test]
    fn vanished_gradients_stop_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(30);
        cfg.schedule = LrSchedule::Constant { warmup_steps: 0 };
        cfg.save_every = Some(5);
        cfg.keep_last = 10;
        let mut logger = MetricLogger::new();
        let mut objective = Quadratic {
            flat: true,
            ..Quadratic::default()
        };
        let err = train(
            weights(),
            &mut objective,
            &cfg,
            ctx(dir.path(), false, &mut logger),
        )
        .err()
        .unwrap();
        let TrainError::Diverged(e) = &err else {
            panic!("{err}")
        };
        assert_eq!((e.step, e.since), (20, 1));
        assert_eq!(e.last_good, None);
        assert!(
            err.to_string().contains("gradient norm was exactly 0"),
            "{err}"
        );
        // Configurable, and off when asked.
        let dir = tempfile::tempdir().unwrap();
        cfg.divergence.zero_grad = false;
        let mut logger = MetricLogger::new();
        let mut objective = Quadratic {
            flat: true,
            ..Quadratic::default()
        };
        let (_, state, _) = train(
            weights(),
            &mut objective,
            &cfg,
            ctx(dir.path(), false, &mut logger),
        )
        .unwrap();
        assert_eq!(state.step, 30);
        assert_eq!(state.streaks.zero_grad, 30);
    }

    #[test]
    fn divergence_reads_from_a_recipe_with_defaults() {
        let base = "lr = 1e-3\nmax_steps = 4\nschedule = { kind = \"constant\" }\n";
        let cfg = parse(base).unwrap();
        assert_eq!(cfg.divergence, DivergenceConfig::default());
        assert_eq!(cfg.divergence.patience, 20);
        let cfg = parse(&format!(
            "{base}divergence = {{ patience = 5, loss_factor = 3.0 }}\n"
        ))
        .unwrap();
        assert_eq!(cfg.divergence.patience, 5);
        assert_eq!(cfg.divergence.loss_factor, Some(3.0));
        assert!(cfg.divergence.zero_grad);
        let err = parse(&format!("{base}divergence = {{ patients = 5 }}\n")).unwrap_err();
        assert!(err.contains("unknown field `patients`"), "{err}");
        let err = parse(&format!("{base}divergence = {{ patience = 0 }}\n"))
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(err.key, "divergence.patience");
    }

    #[test]
    fn caller_optimizer_equal_to_the_recipe_one_trains_bitwise_alike() {
        let cfg = config(6);
        let a = tempfile::tempdir().unwrap();
        let (ours, ours_state, _) = run(a.path(), &cfg, false).unwrap();
        let b = tempfile::tempdir().unwrap();
        let mut logger = MetricLogger::new();
        let (theirs, theirs_state, _) = train_with_optimizer(
            weights(),
            &mut Quadratic::default(),
            &cfg,
            ctx(b.path(), false, &mut logger),
            AdamWConfig::new().with_weight_decay(0.01).init(),
        )
        .unwrap();
        assert_eq!(values(&ours), values(&theirs));
        assert_eq!(ours_state.losses, theirs_state.losses);
        assert_ne!(values(&ours), values(&weights()));
    }

    #[test]
    fn bf16_optimizer_state_is_stored_narrow_and_resumes_close_to_the_straight_run() {
        let mut cfg = config(6);
        cfg.optimizer_state_dtype = StateDtype::Bf16;
        let straight = tempfile::tempdir().unwrap();
        let (expected, expected_state, _) = run(straight.path(), &cfg, false).unwrap();
        let split = tempfile::tempdir().unwrap();
        let mut first = cfg.clone();
        first.max_steps = 3;
        run(split.path(), &first, false).unwrap();
        // The stored moments are bf16 (2 bytes per value), the step counter untouched.
        let pack =
            std::fs::read(split.path().join("checkpoints/step-00000003/optimizer.bpk")).unwrap();
        let reader = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(pack)).unwrap();
        let tensors = reader.into_tensors().unwrap();
        let moments: Vec<_> = tensors
            .iter()
            .filter(|t| t.name.contains("moment"))
            .collect();
        assert!(
            !moments.is_empty(),
            "{:?}",
            tensors.iter().map(|t| &t.name).collect::<Vec<_>>()
        );
        for t in &moments {
            assert_eq!(t.dtype, burn_pack::DType::BF16, "{}", t.name);
            assert_eq!(t.byte_len(), 3 * 2, "{}", t.name);
        }
        let (resumed, resumed_state, _) = run(split.path(), &cfg, true).unwrap();
        assert_eq!(resumed_state.losses[..3], expected_state.losses[..3]);
        for (a, b) in values(&resumed).iter().zip(values(&expected)) {
            assert!((a - b).abs() < 1e-2, "{a} vs {b}");
        }
        // An f32 run's checkpoint holds the optimizer's own f32 state.
        let plain = tempfile::tempdir().unwrap();
        run(plain.path(), &config(2), false).unwrap();
        let pack =
            std::fs::read(plain.path().join("checkpoints/step-00000002/optimizer.bpk")).unwrap();
        let reader = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(pack)).unwrap();
        assert!(reader
            .into_tensors()
            .unwrap()
            .iter()
            .filter(|t| t.name.contains("moment"))
            .all(|t| t.dtype == burn_pack::DType::F32));
    }

    #[test]
    fn caller_optimizer_state_survives_a_resume() {
        let cfg = config(6);
        let straight = tempfile::tempdir().unwrap();
        let (expected, expected_state, _) = run_sgd(straight.path(), &cfg, false).unwrap();
        let split = tempfile::tempdir().unwrap();
        run_sgd(split.path(), &config(3), false).unwrap();
        let (resumed, resumed_state, _) = run_sgd(split.path(), &cfg, true).unwrap();
        assert_eq!(resumed_state.losses, expected_state.losses);
        assert_eq!(values(&resumed), values(&expected));
        // And SGD is not AdamW: the caller's optimizer is the one used.
        let adamw = tempfile::tempdir().unwrap();
        let (adamw, _, _) = run(adamw.path(), &cfg, false).unwrap();
        assert_ne!(values(&adamw), values(&expected));
    }

    #[test]
    fn omitted_total_steps_trains_like_the_explicit_one() {
        let explicit = config(6);
        let mut omitted = config(6);
        omitted.schedule = LrSchedule::Cosine {
            warmup_steps: 1,
            total_steps: None,
            min_lr_ratio: 0.1,
        };
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let (x, _, _) = run(a.path(), &explicit, false).unwrap();
        let (y, _, _) = run(b.path(), &omitted, false).unwrap();
        assert_eq!(values(&x), values(&y));
    }

    #[test]
    fn without_save_every_only_the_end_is_saved() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(5);
        cfg.save_every = None;
        run(dir.path(), &cfg, false).unwrap();
        assert_eq!(step_dirs(dir.path()), vec!["step-00000005"]);
    }

    #[test]
    fn a_failing_data_state_fails_the_save() {
        let dir = tempfile::tempdir().unwrap();
        let mut logger = MetricLogger::new();
        let mut objective = Quadratic {
            state_fails: true,
            ..Quadratic::default()
        };
        let err = train(
            weights(),
            &mut objective,
            &config(4),
            ctx(dir.path(), false, &mut logger),
        )
        .err()
        .unwrap();
        assert!(matches!(err, TrainError::DataState(_)), "{err}");
        assert!(err.to_string().contains("cannot be serialized"), "{err}");
        assert!(step_dirs(dir.path()).is_empty());
    }

    #[test]
    fn warnings_and_notices_go_through_tracing() {
        let dir = tempfile::tempdir().unwrap();
        run(dir.path(), &config(4), false).unwrap();
        // Corrupt the newest checkpoint: the resume skips it, with a warning.
        let newest = dir.path().join("checkpoints/step-00000004/data.bin");
        std::fs::write(&newest, b"garbage!").unwrap();
        let (result, events) = crate::testlog::capture(|| run(dir.path(), &config(6), true));
        let (_, state, _) = result.unwrap();
        assert_eq!(state.step, 6);
        let warned = events.iter().any(|(level, msg)| {
            *level == tracing::Level::WARN && msg.contains("skipping checkpoint")
        });
        assert!(warned, "{events:?}");
        let resumed = events.iter().any(|(level, msg)| {
            *level == tracing::Level::INFO && msg.contains("resuming at step 2")
        });
        assert!(resumed, "{events:?}");
    }
}
