//! The `Stage` trait and the one driver every stage runs under.
//!
//! A stage says what is particular to it: how to prepare its trainable model, objective and
//! dev metrics from the current models ([`Stage::prepare`]), how to export the trained model
//! and hand it on ([`Stage::export`]), and how to pick up its weights when an earlier run
//! completed it ([`Stage::adopt`]). [`drive`] does the rest, the same way for every stage:
//! skip a completed stage on resume, dev metrics before and after, metric sinks, the shared
//! training loop with checkpoints and exact resume, interruption, export, the done marker and
//! the result table.

use burn::module::Module;
use burn::tensor::Device;
use radit_data::{Example, InstanceBuilder};
use radit_docstore::{DocStore, SearchMode};
use radit_generator::PromptTokenizer;
use radit_models::{Encoder, Llama, TextTokenizer};
use radit_retriever::{EncoderEmbedder, QueryEncoder};
use radit_train::metrics::{ConsoleOptions, ConsoleSink, JsonlSink, MetricLogger, TensorBoardSink};
use radit_train::signals::StopFlag;
use radit_train::trainer::{
    train, BoxError, Evaluator, Objective, Outcome, RunContext, TrainConfig,
};
use radit_util::shard::Shard;

use crate::error::{PipelineError, Result};
use crate::recipe::Recipe;
use crate::run_dir::{RunDir, StageDir, StageDone};

/// The stages radit ships; a recipe configures each in its own `[stages.NAME]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinStage {
    /// LM-ft: the generator learns to use one retrieved chunk (`[stages.lm_ft]`).
    LmFt,
    /// R-ft: the query encoder learns which chunks help the generator (`[stages.r_ft]`).
    RFt,
    /// DPO: the generator learns reviewers' preferred answers over rejected ones
    /// (`[stages.dpo]`).
    Dpo,
}

impl BuiltinStage {
    /// Every built-in stage, in the default order.
    pub const ALL: [BuiltinStage; 3] = [BuiltinStage::LmFt, BuiltinStage::RFt, BuiltinStage::Dpo];

    /// The name in `stages.order`, the recipe section and the run directory.
    pub fn name(self) -> &'static str {
        match self {
            BuiltinStage::LmFt => "lm_ft",
            BuiltinStage::RFt => "r_ft",
            BuiltinStage::Dpo => "dpo",
        }
    }

    /// The built-in stage called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What every stage of a run shares: the recipe, the run directory, the frozen index and
/// document encoder, the prompt builder, the data, the stop flag and the device.
pub struct Context<'a> {
    /// The validated recipe.
    pub recipe: &'a Recipe,
    /// The run's directory.
    pub run: &'a RunDir,
    /// Continue completed stages and checkpoints instead of starting over.
    pub resume: bool,
    /// The resolved recipe as TOML, stored with every checkpoint.
    pub resolved: &'a str,
    /// The base retriever encoder: it built the index (document side, frozen) and is the
    /// query encoder until an R-ft stage trains one.
    pub embedder: &'a EncoderEmbedder,
    /// The frozen index.
    pub store: &'a DocStore,
    /// How every stage searches the index (`retriever.search`).
    pub search: SearchMode,
    /// The generator's tokenizer.
    pub tokenizer: &'a TextTokenizer,
    /// The RA-DIT prompt builder (prompt style, length limit, marker seed).
    pub builder: &'a InstanceBuilder<PromptTokenizer<'a>>,
    /// Training examples, one list per dataset of the mixture.
    pub train: &'a [Vec<Example>],
    /// Dev examples (empty without a dev set).
    pub dev: &'a [Example],
    /// Set by SIGTERM/SIGINT.
    pub stop: &'a StopFlag,
    /// Inference device; training runs on its autodiff twin.
    pub device: &'a Device,
}

impl Context<'_> {
    /// Metric sinks of one stage: console, TensorBoard and the stage's JSONL log.
    pub fn logger(&self, stage: &StageDir, total_steps: u64) -> Result<MetricLogger> {
        let mut logger = MetricLogger::new();
        logger.add(Box::new(ConsoleSink::stderr(ConsoleOptions {
            total_steps: Some(total_steps),
            plain_every: self.recipe.logging.console_every,
            ..ConsoleOptions::default()
        })));
        if self.recipe.logging.tensorboard {
            logger.add(Box::new(TensorBoardSink::create(
                &self.run.tensorboard_dir(stage),
            )?));
        }
        if self.recipe.logging.jsonl {
            logger.add(Box::new(JsonlSink::append(&stage.metrics_log())?));
        }
        Ok(logger)
    }
}

/// The newest weights of both models, as stages hand them on.
pub struct Models {
    /// The current generator (inference device).
    pub generator: Llama,
    /// Where its weights live: the recipe's base model or a stage's `final/`.
    pub generator_source: String,
    /// The query encoder an R-ft stage trained, once one has (inference device).
    pub query: Option<Encoder>,
    /// Where the current query encoder's weights live.
    pub query_source: String,
}

impl Models {
    /// The current query side: the trained query encoder, else the base encoder.
    pub fn query_encoder<'a>(&'a self, ctx: &'a Context<'_>) -> &'a Encoder {
        self.query.as_ref().unwrap_or(&ctx.embedder.encoder)
    }

    /// The current query encoder with the base encoder's tokenization settings.
    pub fn query<'a>(&'a self, ctx: &'a Context<'_>) -> QueryEncoder<'a> {
        QueryEncoder {
            encoder: &ctx.embedder.encoder,
            model: &self.query_encoder(ctx).model,
        }
    }
}

/// Dev metrics of a model: `(name, value)` pairs such as `("dev/em", 0.7)`.
pub type DevMetrics<'a, M> = dyn Fn(&M) -> std::result::Result<Vec<(String, f64)>, BoxError> + 'a;

/// A stage made ready to train.
pub struct Prepared<'a, M> {
    /// The weights training starts from, on the inference device (the "before" metrics).
    pub start: M,
    /// A trainable copy of them on the autodiff device.
    pub trainable: M,
    /// What the loop minimizes.
    pub objective: Box<dyn Objective<M> + 'a>,
    /// Dev metrics, `None` without dev data.
    pub dev: Option<Box<DevMetrics<'a, M>>>,
}

/// One RA-DIT stage (LM-ft, R-ft, DPO, or one a user adds), run by [`drive`].
pub trait Stage {
    /// The module the stage trains.
    type Model: Module;
    /// The stage's name in `stages.order` and in the run directory.
    fn name(&self) -> &str;
    /// What the result table calls the trained model, e.g. `generator (top-1 chunk)`.
    fn title(&self) -> &str;
    /// The loop's settings.
    fn train_config(&self) -> &TrainConfig;
    /// Builds the trainable model, objective and dev metrics from the current models.
    fn prepare<'a>(
        &'a self,
        ctx: &'a Context<'a>,
        models: &'a Models,
        stage: &StageDir,
    ) -> Result<Prepared<'a, Self::Model>>;
    /// Exports the trained model (inference device) to `stage.final_dir()` and makes it
    /// current in `models`.
    fn export(
        &self,
        ctx: &Context<'_>,
        model: Self::Model,
        stage: &StageDir,
        models: &mut Models,
    ) -> Result<()>;
    /// Makes the `final/` weights of a stage completed earlier current in `models`.
    fn adopt(&self, ctx: &Context<'_>, stage: &StageDir, models: &mut Models) -> Result<()>;
    /// Computes `shard`'s part of the expensive, cacheable work [`Stage::prepare`] does
    /// before training and stores it in the stage folder, where `prepare` finds it: what
    /// `radit score --shard I/N` spreads over processes (R-ft: the generator's scores of
    /// every query's candidates). Returns a summary line, or `None` (the default) when the
    /// stage has nothing to precompute.
    fn precompute(
        &self,
        _ctx: &Context<'_>,
        _models: &Models,
        _stage: &StageDir,
        _shard: Shard,
    ) -> Result<Option<String>> {
        Ok(None)
    }
}

/// A stage behind a trait object, so that one pipeline runs stages of different model types.
pub trait AnyStage {
    /// The stage's name.
    fn name(&self) -> &str;
    /// Runs the stage under [`drive`].
    fn run(
        &self,
        ctx: &Context<'_>,
        models: &mut Models,
        stage: &StageDir,
    ) -> Result<Option<StageDone>>;
    /// [`Stage::adopt`].
    fn adopt(&self, ctx: &Context<'_>, stage: &StageDir, models: &mut Models) -> Result<()>;
    /// [`Stage::precompute`].
    fn precompute(
        &self,
        ctx: &Context<'_>,
        models: &Models,
        stage: &StageDir,
        shard: Shard,
    ) -> Result<Option<String>>;
}

impl<S: Stage> AnyStage for S {
    fn name(&self) -> &str {
        Stage::name(self)
    }
    fn run(
        &self,
        ctx: &Context<'_>,
        models: &mut Models,
        stage: &StageDir,
    ) -> Result<Option<StageDone>> {
        drive(self, ctx, models, stage)
    }
    fn adopt(&self, ctx: &Context<'_>, stage: &StageDir, models: &mut Models) -> Result<()> {
        Stage::adopt(self, ctx, stage, models)
    }
    fn precompute(
        &self,
        ctx: &Context<'_>,
        models: &Models,
        stage: &StageDir,
        shard: Shard,
    ) -> Result<Option<String>> {
        Stage::precompute(self, ctx, models, stage, shard)
    }
}

fn eval_error(e: BoxError) -> PipelineError {
    radit_train::trainer::TrainError::Evaluation(e).into()
}

/// Runs (or, on resume, skips or continues) one stage; `None` when a signal stopped it.
pub fn drive<S: Stage + ?Sized>(
    stage: &S,
    ctx: &Context<'_>,
    models: &mut Models,
    dir: &StageDir,
) -> Result<Option<StageDone>> {
    if ctx.resume {
        if let Some(done) = dir.read_done()? {
            tracing::info!(
                "{}: already complete, continuing from {}",
                dir.label,
                dir.final_dir().display()
            );
            stage.adopt(ctx, dir, models)?;
            return Ok(Some(done));
        }
    }
    let cfg = stage.train_config();
    let (model, before, after, best) = {
        let Prepared {
            start,
            trainable,
            mut objective,
            dev,
        } = stage.prepare(ctx, models, dir)?;
        let before = match &dev {
            Some(metrics) => Some(timed_dev(dir, "before training", ctx, || metrics(&start))?),
            None => None,
        };
        drop(start);
        let mut logger = ctx.logger(dir, cfg.max_steps)?;
        let extra_files = [("recipe.toml", ctx.resolved.as_bytes())];
        let (model, state, outcome) = {
            let mut dev_eval = |m: &S::Model| match &dev {
                Some(metrics) => metrics(m),
                None => Ok(Vec::new()),
            };
            let evaluate: Option<&mut Evaluator<'_, S::Model>> =
                if dev.is_some() && cfg.eval_every.is_some() {
                    Some(&mut dev_eval)
                } else {
                    None
                };
            let run = RunContext {
                run_dir: &dir.dir,
                resume: ctx.resume,
                extra_files: &extra_files,
                logger: &mut logger,
                stop: Some(ctx.stop),
                evaluate,
            };
            train(trainable, objective.as_mut(), cfg, run)?
        };
        if outcome == Outcome::Interrupted {
            tracing::warn!(
                "{}: stopped by signal at step {}; resume with --resume",
                dir.label,
                state.step
            );
            return Ok(None);
        }
        let model = model.valid();
        let after = match &dev {
            Some(metrics) => {
                let after = timed_dev(dir, "after training", ctx, || metrics(&model))?;
                let scalars: Vec<(&str, f64)> =
                    after.iter().map(|(n, v)| (n.as_str(), *v)).collect();
                logger.log_scalars(state.step, &scalars);
                Some(after)
            }
            None => None,
        };
        logger.flush();
        let best = match (state.best, &state.best_checkpoint) {
            (Some((value, step)), Some(path)) => Some(format!(
                "final/ is the last step ({}); the best {} ({value:.3}) is step {step}, kept in {}",
                state.step,
                cfg.best_metric.name,
                path.display()
            )),
            _ => None,
        };
        if let Some(best) = &best {
            tracing::info!("{}: {best}", dir.label);
        }
        (model, before, after, best)
    };
    stage.export(ctx, model, dir, models)?;
    tracing::info!("{}: wrote {}", dir.label, dir.final_dir().display());
    let mut rows = table_rows(
        stage.title(),
        &dir.label,
        before,
        after.as_deref(),
        ctx.dev.len(),
    );
    if let Some(best) = best {
        rows.push(String::new());
        rows.push(best);
    }
    let done = StageDone {
        rows,
        metrics: after.unwrap_or_default(),
    };
    dir.mark_done(&done)?;
    Ok(Some(done))
}

/// Runs a dev evaluation with a line saying what it measured and how long it took (a long
/// phase is never silent in a log).
fn timed_dev(
    dir: &StageDir,
    when: &str,
    ctx: &Context<'_>,
    run: impl FnOnce() -> std::result::Result<Vec<(String, f64)>, BoxError>,
) -> Result<Vec<(String, f64)>> {
    let started = std::time::Instant::now();
    let metrics = run().map_err(eval_error)?;
    let shown: Vec<String> = metrics.iter().map(|(n, v)| format!("{n}={v:.3}")).collect();
    tracing::info!(
        "{}: dev metrics {when} on {} examples in {:.1} s: {}",
        dir.label,
        ctx.dev.len(),
        started.elapsed().as_secs_f64(),
        shown.join(" ")
    );
    Ok(metrics)
}

/// The stage's rows of the result table: dev metrics before and after training.
fn table_rows(
    title: &str,
    label: &str,
    before: Option<Vec<(String, f64)>>,
    after: Option<&[(String, f64)]>,
    n: usize,
) -> Vec<String> {
    let Some(after) = after else {
        return Vec::new();
    };
    let names: Vec<&str> = after.iter().map(|(name, _)| name.as_str()).collect();
    let mut rows = vec![
        String::new(),
        format!("| {title}, {label} | {} | n |", names.join(" | ")),
        format!("|---|{}---|", "---|".repeat(names.len())),
    ];
    let row = |name: &str, values: &[(String, f64)]| {
        let cells: Vec<String> = values.iter().map(|(_, v)| format!("{v:.3}")).collect();
        format!("| {name} | {} | {n} |", cells.join(" | "))
    };
    if let Some(before) = before {
        rows.push(row("before", &before));
    }
    rows.push(row("after", after));
    rows
}
