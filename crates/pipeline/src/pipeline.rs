//! The pipeline: a recipe's stages in order, for its rounds, over one index and one dataset.

use std::path::Path;
use std::sync::Arc;

use burn::tensor::Device;
use radit_data::{kfold_split, load_dataset, DatasetFormat, Example};
use radit_docstore::{build_index, BuildOptions, ChunkParams, DocStore, Embedder};
use radit_models::{Encoder, Generator};
use radit_retriever::loss::{LossFactory, LossRegistry};
use radit_retriever::EncoderEmbedder;

use crate::dpo::DpoStage;
use crate::error::{invalid, PipelineError, Result};
use crate::lm_ft::LmFtStage;
use crate::prompt::prompt_builder;
use crate::r_ft::RFtStage;
use crate::recipe::Recipe;
use crate::resume;
use crate::run_dir::{RunDir, StageDone};
use crate::stage::{AnyStage, BuiltinStage, Context, Models};
use radit_util::shard::Shard;

/// RA-DIT driven by a recipe: the built-in stages its `[stages]` configure, the losses R-ft
/// may name, and any stage a Rust user adds.
///
/// ```no_run
/// # fn main() -> Result<(), radit_pipeline::PipelineError> {
/// use radit_pipeline::{Pipeline, Recipe};
/// let recipe = Recipe::load("recipes/quickstart.toml".as_ref(), &[])?;
/// let summary = Pipeline::new(recipe, burn::tensor::Device::flex()).run()?;
/// for line in &summary.rows {
///     println!("{line}");
/// }
/// # Ok(()) }
/// ```
pub struct Pipeline {
    recipe: Recipe,
    device: Device,
    resume: Resume,
    overwrite: bool,
    losses: LossRegistry,
    custom: Vec<Box<dyn AnyStage>>,
    until: Option<String>,
    before: Option<String>,
}

/// Whether a run continues one already in its output directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Resume {
    /// Start a new run; a directory that holds one is refused (unless overwritten).
    #[default]
    No,
    /// Continue the run in the directory (`--resume`); refused when it holds none, so a
    /// mistyped `--output-dir` does not silently start from scratch.
    Existing,
    /// Continue the run when the directory holds one and start it when not (`--resume
    /// auto`): one command line for the first start and every requeue of a cluster job.
    Auto,
}

/// What a pipeline run reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    /// The completed stages in run order, with their labels.
    pub stages: Vec<(String, StageDone)>,
    /// The result table: each stage's rows.
    pub rows: Vec<String>,
    /// Final dev metrics of every stage, named `{stage label}/{metric}`.
    pub metrics: Vec<(String, f64)>,
    /// Whether a signal stopped the run before every stage completed.
    pub interrupted: bool,
    /// The stage [`Pipeline::until`] stopped after, when it did.
    pub stopped_after: Option<String>,
    /// The stage [`Pipeline::before`] stopped before, when it did.
    pub stopped_before: Option<String>,
}

impl Pipeline {
    /// A pipeline over `recipe`'s stages on `device`, with the built-in losses.
    pub fn new(recipe: Recipe, device: Device) -> Self {
        Self {
            recipe,
            device,
            resume: Resume::No,
            overwrite: false,
            losses: LossRegistry::builtin(),
            custom: Vec::new(),
            until: None,
            before: None,
        }
    }

    /// Stop after the stage with this label (`lm_ft`, or `round-2/r_ft` in a multi-round
    /// recipe) completes: e.g. LM-ft alone, before `radit score` spreads R-ft's scoring over
    /// processes and a resumed run trains R-ft.
    pub fn until(mut self, label: Option<String>) -> Self {
        self.until = label;
        self
    }

    /// Stop when the stage with this label is next and not complete, before it starts: e.g.
    /// `r_ft`, so that `radit score` can precompute its targets in shards (the stages before
    /// it, LM-ft, are trained; none are when it comes first).
    pub fn before(mut self, label: Option<String>) -> Self {
        self.before = label;
        self
    }

    /// Every stage's label in run order (`lm_ft`, or `round-N/lm_ft` with several rounds).
    pub fn labels(&self) -> Vec<String> {
        let run = RunDir::new(&self.recipe.output_dir);
        let rounds = self.recipe.stages.rounds;
        let names = self.order();
        (1..=rounds)
            .flat_map(|round| {
                let run = &run;
                names
                    .iter()
                    .map(move |name| run.stage(name, round, rounds).label)
            })
            .collect()
    }

    fn check_until(&self) -> Result<()> {
        for (flag, label) in [("--until", &self.until), ("--before", &self.before)] {
            if let Some(label) = label.as_ref().filter(|l| !self.labels().contains(l)) {
                invalid!(
                    "{flag} `{label}`: this recipe's stages are {}",
                    self.labels().join(", ")
                );
            }
        }
        Ok(())
    }

    /// Continue the newest valid checkpoint and skip completed stages (see [`Resume`]).
    pub fn resume(mut self, resume: Resume) -> Self {
        self.resume = resume;
        self
    }

    /// Clear a run already in the output directory before starting (its index is kept);
    /// without this or [`Pipeline::resume`], a directory holding a run is refused.
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// Makes a retriever loss available to `[stages.r_ft.loss] name = "..."`.
    pub fn register_loss(mut self, name: &str, factory: LossFactory) -> Self {
        self.losses.register(name, factory);
        self
    }

    /// Replaces the losses R-ft may name.
    pub fn with_losses(mut self, losses: LossRegistry) -> Self {
        self.losses = losses;
        self
    }

    /// Adds a stage that `stages.order` may name (by [`AnyStage::name`]).
    pub fn with_stage(mut self, stage: impl AnyStage + 'static) -> Self {
        self.custom.push(Box::new(stage));
        self
    }

    /// The recipe.
    pub fn recipe(&self) -> &Recipe {
        &self.recipe
    }

    /// The stage names to run in each round: `stages.order`, or every configured built-in
    /// stage (LM-ft first).
    pub fn order(&self) -> Vec<String> {
        self.recipe.stages.names()
    }

    /// The built-in stages the recipe configures.
    fn builtin_stages(&self) -> Vec<Box<dyn AnyStage>> {
        let stages = &self.recipe.stages;
        let mut out: Vec<Box<dyn AnyStage>> = Vec::new();
        if let Some(section) = &stages.lm_ft {
            out.push(Box::new(LmFtStage::new(section.clone())));
        }
        if let Some(section) = &stages.r_ft {
            out.push(Box::new(RFtStage::new(
                section.clone(),
                Arc::new(self.losses.clone()),
            )));
        }
        if let Some(section) = &stages.dpo {
            out.push(Box::new(DpoStage::new(section.clone())));
        }
        out
    }

    /// Resolves every name of `order` to a stage: a registered one first (so a user may
    /// replace a built-in), else a configured built-in.
    fn resolve<'s>(
        &'s self,
        order: &[String],
        builtins: &'s [Box<dyn AnyStage>],
    ) -> Result<Vec<&'s dyn AnyStage>> {
        if order.is_empty() {
            invalid!(
                "the recipe configures no stage: add [stages.lm_ft], [stages.r_ft] and/or [stages.dpo]"
            );
        }
        order
            .iter()
            .map(|name| {
                let found = self
                    .custom
                    .iter()
                    .chain(builtins)
                    .find(|s| s.name() == name.as_str());
                match (found, BuiltinStage::from_name(name)) {
                    (Some(stage), _) => Ok(stage.as_ref()),
                    (None, Some(_)) => Err(PipelineError::Invalid(format!(
                        "stages.order lists `{name}` but [stages.{name}] is missing"
                    ))),
                    (None, None) => {
                        let known: Vec<&str> = BuiltinStage::ALL
                            .iter()
                            .map(|s| s.name())
                            .chain(self.custom.iter().map(|s| s.name()))
                            .collect();
                        Err(PipelineError::Invalid(format!(
                            "stages.order: unknown stage `{name}` (expected one of {})",
                            known.join(", ")
                        )))
                    }
                }
            })
            .collect()
    }

    /// Checks what needs the pipeline's registries (stage names, the R-ft loss and its
    /// parameters) before anything is loaded, so a typo fails in a second, not after LM-ft.
    pub fn validate(&self) -> Result<()> {
        let builtins = self.builtin_stages();
        self.resolve(&self.order(), &builtins)?;
        self.check_loss()
    }

    /// Builds the R-ft loss once, so an unknown name or parameter fails before any model loads.
    fn check_loss(&self) -> Result<()> {
        if let Some(r_ft) = &self.recipe.stages.r_ft {
            self.losses.build_spec(&r_ft.loss)?;
        }
        Ok(())
    }

    /// Makes `run` this pipeline's: a folder holding a run is refused unless resuming (with
    /// only [`resume::RESUMABLE_CHANGES`], which are recorded) or overwriting (cleared first).
    fn claim(&self, run: &RunDir, names: &[String]) -> Result<()> {
        if !run.holds_run() {
            if self.resume == Resume::Existing {
                return Err(PipelineError::RunDir {
                    path: run.root().to_path_buf(),
                    message: "holds no run to resume (no recipe.toml): check --output-dir, or \
                              pass --resume auto to start the run when there is none"
                        .into(),
                });
            }
            return Ok(());
        }
        if self.overwrite {
            tracing::warn!(
                "{}: clearing the previous run (--overwrite)",
                run.root().display()
            );
            return run.clear(names);
        }
        if self.resume == Resume::No {
            return Err(PipelineError::RunDir {
                path: run.root().to_path_buf(),
                message: "already holds a run: pass --resume to continue it, or --overwrite to \
                          clear it and start over (or choose another --output-dir)"
                    .into(),
            });
        }
        let changes = self.changes_from(run)?;
        if !changes.is_empty() {
            for c in &changes {
                tracing::info!(
                    "resume changes {}: {} -> {}",
                    c.key,
                    c.from.as_deref().unwrap_or("(absent)"),
                    c.to.as_deref().unwrap_or("(absent)")
                );
            }
            let line = serde_json::json!({ "changes": changes }).to_string() + "\n";
            let log = run.resume_log();
            let mut previous_log = match std::fs::read(&log) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(PipelineError::io(&log, e)),
            };
            previous_log.extend_from_slice(line.as_bytes());
            radit_util::fs::atomic_write(&log, &previous_log)?;
        }
        Ok(())
    }

    /// The recipe changes from the run in `run` (which holds one), refused unless each is
    /// one of [`resume::RESUMABLE_CHANGES`].
    fn changes_from(&self, run: &RunDir) -> Result<Vec<resume::Change>> {
        let (previous, _) = radit_train::recipe::load_recipe::<Recipe>(&run.recipe_path(), &[])?;
        let mut previous = previous;
        previous.output_dir = self.recipe.output_dir.clone();
        let changes = resume::changes(&previous, &self.recipe)?;
        resume::check(&changes)?;
        Ok(changes)
    }

    /// Runs every stage in order for every round under the recipe's `output_dir`; a stage
    /// completed earlier is skipped on resume and its weights handed on.
    pub fn run(&self) -> Result<RunSummary> {
        let recipe = &self.recipe;
        let names = self.order();
        let builtins = self.builtin_stages();
        let stages = self.resolve(&names, &builtins)?;
        self.check_loss()?;
        self.check_until()?;
        // Before any model loads: a signal while loading ends the process at once (nothing
        // is unsaved yet), one during training saves a checkpoint first.
        let stop = radit_train::signals::install()?;
        let run = RunDir::new(&recipe.output_dir);
        self.claim(&run, &names)?;
        std::fs::create_dir_all(run.root()).map_err(|e| PipelineError::io(run.root(), e))?;
        let resolved = self.resolved()?;
        radit_util::fs::atomic_write(&run.recipe_path(), resolved.as_bytes())?;
        let resume = self.resume != Resume::No;
        self.with_loaded(&run, &resolved, &stop, resume, |ctx, mut models| {
            let mut summary = RunSummary::default();
            let rounds = recipe.stages.rounds;
            for round in 1..=rounds {
                for (name, stage) in names.iter().zip(&stages) {
                    let dir = run.stage(name, round, rounds);
                    if self.before.as_ref() == Some(&dir.label) && !dir.is_done() {
                        tracing::info!(
                            "{}: stopping before it as asked (--before); continue the run with \
                             --resume",
                            dir.label
                        );
                        summary.stopped_before = Some(dir.label);
                        return Ok(summary);
                    }
                    let Some(done) = stage.run(ctx, &mut models, &dir)? else {
                        summary.interrupted = true;
                        return Ok(summary);
                    };
                    summary.rows.extend(done.rows.iter().cloned());
                    summary.metrics.extend(
                        done.metrics
                            .iter()
                            .map(|(metric, value)| (format!("{}/{metric}", dir.label), *value)),
                    );
                    let label = dir.label.clone();
                    summary.stages.push((dir.label, done));
                    if self.until.as_ref() == Some(&label) {
                        tracing::info!(
                            "{label}: stopping here as asked (--until); continue the run with \
                             --resume"
                        );
                        summary.stopped_after = Some(label);
                        return Ok(summary);
                    }
                }
            }
            Ok(summary)
        })
    }

    /// Computes `shard`'s part of the precompute of the first unfinished stage (R-ft: the
    /// generator's scores of its queries' candidates) into that stage's folder, where a
    /// later `radit train --resume` finds it; the stages before it must be complete. Writes
    /// nothing else, so every shard of an array job can run at once. Returns the stage's
    /// summary line.
    pub fn score(&self, shard: Shard) -> Result<String> {
        let recipe = &self.recipe;
        let names = self.order();
        let builtins = self.builtin_stages();
        let stages = self.resolve(&names, &builtins)?;
        self.check_loss()?;
        let stop = radit_train::signals::install()?;
        let run = RunDir::new(&recipe.output_dir);
        if run.holds_run() {
            self.changes_from(&run)?;
        }
        let plan = IndexPlan::of(recipe);
        if !plan.is_built() {
            invalid!(
                "{}: no index yet; scoring shards do not build it (they would race): build it \
                 first with `radit index build` (or its shards and `radit index merge`), or \
                 with `radit train --until STAGE`",
                plan.dir.display()
            );
        }
        let resolved = self.resolved()?;
        self.with_loaded(&run, &resolved, &stop, true, |ctx, mut models| {
            let rounds = recipe.stages.rounds;
            for round in 1..=rounds {
                for (name, stage) in names.iter().zip(&stages) {
                    let dir = run.stage(name, round, rounds);
                    if dir.read_done()?.is_some() {
                        stage.adopt(ctx, &dir, &mut models)?;
                        continue;
                    }
                    return match stage.precompute(ctx, &models, &dir, shard)? {
                        Some(line) => Ok(line),
                        None => Err(PipelineError::Invalid(format!(
                            "`{label}` is the first unfinished stage and has nothing to \
                             score; the stages after it need the model it trains: run \
                             `radit train RECIPE --until {label}` first",
                            label = dir.label
                        ))),
                    };
                }
            }
            invalid!(
                "every stage of the run in {} is complete: nothing to score",
                run.root().display()
            )
        })
    }

    /// The recipe as the TOML stored with the run and its checkpoints.
    fn resolved(&self) -> Result<String> {
        toml::to_string(&self.recipe)
            .map_err(|e| PipelineError::Invalid(format!("serializing the recipe: {e}")))
    }

    /// Loads what every stage shares (encoder, index, generator, data, prompt builder) and
    /// calls `f` with the stages' context and the starting models.
    fn with_loaded<T>(
        &self,
        run: &RunDir,
        resolved: &str,
        stop: &radit_train::signals::StopFlag,
        resume: bool,
        f: impl FnOnce(&Context<'_>, Models) -> Result<T>,
    ) -> Result<T> {
        let recipe = &self.recipe;
        let embedder = load_embedder(&recipe.retriever.encoder, &self.device)?;
        let store = open_or_build_index(recipe, run, &embedder)?;
        let generator = Generator::load(&recipe.generator.model, &self.device).map_err(|e| {
            PipelineError::model(format!("generator {}", recipe.generator.model), e)
        })?;
        let (train, dev) = load_data(recipe)?;
        let builder = prompt_builder(recipe, &generator.tokenizer)?;
        let ctx = Context {
            recipe,
            run,
            resume,
            resolved,
            embedder: &embedder,
            store: &store,
            search: recipe.search_mode()?,
            tokenizer: &generator.tokenizer,
            builder: &builder,
            train: &train,
            dev: &dev,
            stop,
            device: &self.device,
        };
        let models = Models {
            generator: generator.model.clone(),
            generator_source: recipe.generator.model.clone(),
            query: None,
            query_source: recipe.retriever.encoder.clone(),
        };
        f(&ctx, models)
    }
}

/// Loads the encoder named by `spec` (directory or hub id) as a docstore embedder.
pub fn load_embedder(spec: &str, device: &Device) -> Result<EncoderEmbedder> {
    let encoder = Encoder::load(spec, device)
        .map_err(|e| PipelineError::model(format!("encoder {spec}"), e))?;
    Ok(EncoderEmbedder::new(encoder))
}

/// The index a recipe reads, and how `radit train` builds it when it is missing: the one
/// definition behind [`open_or_build_index`] and `radit index build --recipe` (whose shards
/// and merge then make exactly the index training would have built).
#[derive(Debug, Clone)]
pub struct IndexPlan {
    /// `docstore.corpus`.
    pub corpus: std::path::PathBuf,
    /// `docstore.index`, else the run's `index/`.
    pub dir: std::path::PathBuf,
    /// `retriever.encoder`, the document encoder.
    pub encoder: String,
    /// Chunking from `docstore.chunk_words`, without overlap, default batches.
    pub options: BuildOptions,
}

impl IndexPlan {
    /// The plan of `recipe`'s index.
    pub fn of(recipe: &Recipe) -> Self {
        Self::in_run(recipe, &RunDir::new(&recipe.output_dir))
    }

    /// The plan of `recipe`'s index when its run lives in `run` (a run folder that moved:
    /// its own `index/` is the default).
    pub fn in_run(recipe: &Recipe, run: &RunDir) -> Self {
        Self {
            corpus: recipe.docstore.corpus.clone(),
            dir: recipe
                .docstore
                .index
                .clone()
                .unwrap_or_else(|| run.default_index()),
            encoder: recipe.retriever.encoder.clone(),
            options: BuildOptions {
                chunking: ChunkParams {
                    max_words: recipe.docstore.chunk_words,
                    overlap: 0,
                },
                ..BuildOptions::default()
            },
        }
    }
    /// Whether the index is finished (its manifest, written last, is there).
    pub fn is_built(&self) -> bool {
        self.dir.join(radit_docstore::manifest::MANIFEST).is_file()
    }
}

/// Opens the recipe's index (`docstore.index`, else the run's `index/`), checking it was built
/// by `embedder` (the document encoder), and builds it first when it does not exist yet.
pub fn open_or_build_index(
    recipe: &Recipe,
    run: &RunDir,
    embedder: &EncoderEmbedder,
) -> Result<DocStore> {
    let plan = IndexPlan::in_run(recipe, run);
    if !plan.is_built() {
        tracing::info!("building index {}", plan.dir.display());
        build_index(&plan.corpus, &plan.dir, embedder, &plan.options)?;
    }
    Ok(DocStore::open_for_encoder(&plan.dir, &embedder.identity())?)
}

fn format_for(path: &Path) -> Option<DatasetFormat> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("tsv" | "txt") => Some(DatasetFormat::DprTsv),
        _ => None,
    }
}

/// Loads a dataset (DPR TSV by extension, else JSONL), reporting skipped lines, keeping at
/// most `limit` examples (0: all).
pub fn load_examples(path: &Path, limit: usize) -> Result<Vec<Example>> {
    let dataset = load_dataset(path, format_for(path).as_ref())?;
    if dataset.report.has_warnings() {
        tracing::warn!("{}", dataset.report);
    }
    let mut examples = dataset.examples;
    if limit > 0 {
        examples.truncate(limit);
    }
    Ok(examples)
}

/// The recipe's training examples (one list per dataset of the mixture) and dev examples
/// (`data.dev`, or the held-out fold of each training dataset).
pub fn load_data(recipe: &Recipe) -> Result<(Vec<Vec<Example>>, Vec<Example>)> {
    let data = &recipe.data;
    let mut train = Vec::new();
    let mut dev = match &data.dev {
        Some(path) => load_examples(path, data.dev_limit)?,
        None => Vec::new(),
    };
    for path in data.train.paths() {
        let mut examples = load_examples(path, data.train_limit)?;
        if examples.is_empty() {
            invalid!("{}: no training examples", path.display());
        }
        if let Some(folds) = data.folds {
            let (rest, held) = kfold_split(&examples, folds, data.fold, recipe.seed)?;
            examples = rest;
            dev.extend(held);
        }
        train.push(examples);
    }
    if data.folds.is_some() && data.dev_limit > 0 {
        dev.truncate(data.dev_limit);
    }
    Ok((train, dev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use radit_docstore::HashEmbedder;

    fn assets() -> Option<std::path::PathBuf> {
        let root = std::path::PathBuf::from(crate::recipe::expand_spec("${RADIT_ASSETS}"));
        if root.join("all-MiniLM-L6-v2/model.safetensors").is_file() {
            return Some(root);
        }
        assert!(
            std::env::var("RADIT_REQUIRE_ASSETS").as_deref() != Ok("1"),
            "assets missing under {}",
            root.display()
        );
        eprintln!("skipping: assets missing under {}", root.display());
        None
    }

    fn r_ft_recipe(loss: &str, order: &str) -> Recipe {
        toml::from_str(&format!(
            r#"output_dir = "runs/t"
[generator]
model = "g"
[retriever]
encoder = "e"
[docstore]
corpus = "c.jsonl"
[data]
train = "t.jsonl"
max_len = 64
batch_size = 2
[stages]
order = {order}
[stages.r_ft]
loss = {{ name = "{loss}" }}
[stages.r_ft.train]
lr = 1e-5
max_steps = 2
schedule = {{ kind = "constant" }}
"#
        ))
        .unwrap()
    }

    #[test]
    fn losses_and_stages_resolve_through_the_registries_before_anything_loads() {
        let device = Device::flex();
        let ok = Pipeline::new(r_ft_recipe("emdr2", r#"["r_ft"]"#), device.clone());
        ok.validate().unwrap();

        let unknown = Pipeline::new(r_ft_recipe("hinge", r#"["r_ft"]"#), device.clone());
        let err = unknown.validate().unwrap_err().to_string();
        assert!(err.contains("hinge") && err.contains("emdr2"), "{err}");
        let registered = Pipeline::new(r_ft_recipe("hinge", r#"["r_ft"]"#), device.clone())
            .register_loss("hinge", |_| Ok(Box::new(radit_retriever::loss::Emdr2)));
        registered.validate().unwrap();

        let missing = Pipeline::new(r_ft_recipe("lsr", r#"["lm_ft", "r_ft"]"#), device.clone());
        let err = missing.validate().unwrap_err().to_string();
        assert!(err.contains("[stages.lm_ft] is missing"), "{err}");
        let typo = Pipeline::new(r_ft_recipe("lsr", r#"["r_ft", "ppo"]"#), device);
        let err = typo.validate().unwrap_err().to_string();
        assert!(
            err.contains("unknown stage `ppo`") && err.contains("lm_ft, r_ft, dpo"),
            "{err}"
        );
    }

    /// An index named by the recipe but built by another encoder is refused (it used to be
    /// opened without the encoder-identity check).
    #[test]
    fn an_index_built_by_another_encoder_is_refused() {
        let Some(root) = assets() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let corpus = tmp.path().join("corpus.jsonl");
        std::fs::write(
            &corpus,
            "{\"id\": \"a\", \"title\": \"A\", \"text\": \"alpha beta gamma\"}\n",
        )
        .unwrap();
        let index = tmp.path().join("index");
        build_index(
            &corpus,
            &index,
            &HashEmbedder::new(384, 1),
            &BuildOptions::default(),
        )
        .unwrap();
        let recipe: Recipe = toml::from_str(&format!(
            r#"output_dir = "{out}"
[generator]
model = "g"
[retriever]
encoder = "{root}/all-MiniLM-L6-v2"
[docstore]
corpus = "{corpus}"
index = "{index}"
[data]
train = "t.jsonl"
max_len = 64
batch_size = 2
[stages]
"#,
            out = tmp.path().join("run").display(),
            root = root.display(),
            corpus = corpus.display(),
            index = index.display(),
        ))
        .unwrap();
        let embedder = load_embedder(&recipe.retriever.encoder, &Device::flex()).unwrap();
        let run = RunDir::new(&recipe.output_dir);
        let err = match open_or_build_index(&recipe, &run, &embedder) {
            Ok(_) => panic!("an index of another encoder was opened"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("encoder mismatch"), "{err}");
    }
}
