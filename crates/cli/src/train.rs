//! `radit train RECIPE`: the LM-ft stage of RA-DIT driven by a TOML recipe.
//!
//! docstore (built or reused) → top-k chunks per training question → one instance per chunk
//! (answer-only labels) → deterministic sampler → LM-ft with checkpoints → dev EM/F1 before and
//! after → the fine-tuned generator exported as a Hugging Face checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::tensor::Device;
use radit_data::{kfold_split, PromptStyle};
use radit_data::{
    load_dataset, packed_batch, pad_batch, BuildReport, DatasetFormat, Example, ExampleKey,
    Instance, InstanceBuilder, InstanceConfig, QaMetrics, Sampler, SamplerConfig, SamplerState,
};
use radit_docstore::{build_index, BuildOptions, ChunkParams, DocStore, Queries, SearchMode};
use radit_generator::lora::{apply_lora, parameter_counts, LoraConfig};
use radit_generator::trainer::{train_lm, BatchSource};
use radit_generator::PromptTokenizer;
use radit_models::ChatMessage;
use radit_models::{
    generate, Encoder, GenerationConfig, Generator, Llama, TextTokenizer, TokenBatch,
};
use radit_train::metrics::{ConsoleOptions, ConsoleSink, JsonlSink, MetricLogger, TensorBoardSink};
use radit_train::trainer::{BoxError, Evaluator, Outcome, RunContext, TrainConfig};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::index::load_embedder;
use crate::rft::{self, RFtInputs, RFtStage};
use radit_retriever::EncoderEmbedder;

/// A training recipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Seed of prompt markers, data order and mixture sampling.
    #[serde(default)]
    pub seed: u64,
    /// Where checkpoints, logs, the index and the final model go.
    pub output_dir: PathBuf,
    /// The generator to fine-tune.
    pub generator: GeneratorSection,
    /// The retriever whose document encoder builds the index.
    pub retriever: RetrieverSection,
    /// The corpus.
    pub docstore: DocstoreSection,
    /// Training and evaluation data.
    pub data: DataSection,
    /// Stages, in order.
    pub stages: Stages,
    /// Metric sinks.
    #[serde(default)]
    pub logging: Logging,
}

impl Recipe {
    /// Loads a recipe with `--set` overrides and expands `${RADIT_ASSETS}` and `~/` in its
    /// model and corpus paths.
    pub fn load(path: &Path, sets: &[String]) -> Result<Self> {
        let (mut recipe, _) = radit_train::recipe::load_recipe::<Recipe>(path, sets)?;
        recipe.generator.model = expand_spec(&recipe.generator.model);
        recipe.retriever.encoder = expand_spec(&recipe.retriever.encoder);
        recipe.docstore.corpus =
            PathBuf::from(expand_spec(&recipe.docstore.corpus.to_string_lossy()));
        Ok(recipe)
    }

    /// Opens the recipe's index (`docstore.index`, else `run_dir/index`), building it with
    /// `embedder` (the document encoder) first when it does not exist yet.
    pub fn open_or_build_index(
        &self,
        run_dir: &Path,
        embedder: &EncoderEmbedder,
    ) -> Result<DocStore> {
        let index = self
            .docstore
            .index
            .clone()
            .unwrap_or_else(|| run_dir.join("index"));
        if !index.join("manifest.json").is_file() {
            eprintln!("building index {}", index.display());
            let options = BuildOptions {
                chunking: ChunkParams {
                    max_words: self.docstore.chunk_words,
                    overlap: 0,
                },
                ..BuildOptions::default()
            };
            build_index(&self.docstore.corpus, &index, embedder, &options)
                .with_context(|| format!("building index {}", index.display()))?;
        }
        DocStore::open(&index).with_context(|| format!("opening index {}", index.display()))
    }
}

/// `[generator]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorSection {
    /// Model source: directory, .gguf file or hub id.
    pub model: String,
}

/// `[retriever]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrieverSection {
    /// Encoder source: directory or hub id.
    pub encoder: String,
    /// Chunks retrieved per question; each becomes one training instance (paper: 3).
    #[serde(default = "default_top_k")]
    pub top_k: usize,
}

/// `[docstore]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocstoreSection {
    /// Corpus file or folder.
    pub corpus: PathBuf,
    /// Index directory (default: `output_dir/index`).
    #[serde(default)]
    pub index: Option<PathBuf>,
    /// Maximum words per chunk.
    #[serde(default = "default_chunk_words")]
    pub chunk_words: usize,
}

/// `[data]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Training dataset, or a list of datasets mixed by size with the per-dataset `cap`
    /// (JSONL with `question`/`answers`, or DPR TSV by extension).
    pub train: OneOrMany,
    /// Dev dataset for EM/F1 before and after training.
    #[serde(default)]
    pub dev: Option<PathBuf>,
    /// Use at most this many training examples per dataset (0: all).
    #[serde(default)]
    pub train_limit: usize,
    /// Evaluate on at most this many dev examples (0: all).
    #[serde(default)]
    pub dev_limit: usize,
    /// Longest instance in tokens; the background chunk is truncated to fit.
    pub max_len: usize,
    /// Instances per micro-batch.
    pub batch_size: usize,
    /// Per-dataset cap per epoch (paper: 7,500).
    #[serde(default)]
    pub cap: Option<usize>,
    /// Cross-validation: split each training dataset into this many folds (seeded); the
    /// fold `fold` becomes the dev set and the others the training data (`radit cv` runs
    /// every fold). Exclusive with `dev`.
    #[serde(default)]
    pub folds: Option<usize>,
    /// The held-out fold when `folds` is set.
    #[serde(default)]
    pub fold: usize,
    /// Pack several instances into each row of `max_len` tokens (attention stays inside each
    /// instance) instead of one padded instance per row.
    #[serde(default)]
    pub packing: bool,
    /// Prompt rendering: `plain` (`Background: ...\n\n{instruction}{answer}`) or `chat` (the
    /// same user message through the generator's chat template).
    #[serde(default)]
    pub prompt: PromptKind,
    /// New tokens generated per dev answer.
    #[serde(default = "default_answer_tokens")]
    pub answer_tokens: usize,
}

/// One path or a list of paths.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single path.
    One(PathBuf),
    /// Several paths.
    Many(Vec<PathBuf>),
}

impl OneOrMany {
    /// The paths, in order.
    pub fn paths(&self) -> Vec<&Path> {
        match self {
            OneOrMany::One(p) => vec![p.as_path()],
            OneOrMany::Many(v) => v.iter().map(PathBuf::as_path).collect(),
        }
    }
}

/// How prompts are rendered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptKind {
    /// RA-DIT's plain prompt.
    #[default]
    Plain,
    /// The RA-DIT user message inside the generator's chat template.
    Chat,
}

/// `[stages]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stages {
    /// Stages to run, in order: `lm_ft`, `r_ft` (default: every configured stage, LM-ft
    /// first). R-ft after LM-ft learns from the fine-tuned generator.
    #[serde(default)]
    pub order: Vec<String>,
    /// LM-ft: fine-tune the generator on retrieval-augmented instances.
    #[serde(default)]
    pub lm_ft: Option<LmFtStage>,
    /// R-ft: fine-tune the query encoder with LM-supervised retrieval.
    #[serde(default)]
    pub r_ft: Option<RFtStage>,
    /// Repeat `order` this many times; each stage continues from the previous one's weights.
    #[serde(default = "one_round")]
    pub rounds: usize,
    /// LM-ft retrieves its chunks with the current (R-ft-trained) query encoder instead of
    /// the base one, once R-ft has run.
    #[serde(default)]
    pub re_retrieve: bool,
}

fn one_round() -> usize {
    1
}

impl Stages {
    /// The stage names to run, validated against the configured stages.
    fn resolved_order(&self) -> Result<Vec<&'static str>> {
        let order: Vec<String> = if self.order.is_empty() {
            let mut o = Vec::new();
            if self.lm_ft.is_some() {
                o.push("lm_ft".to_string());
            }
            if self.r_ft.is_some() {
                o.push("r_ft".to_string());
            }
            o
        } else {
            self.order.clone()
        };
        if order.is_empty() {
            bail!("the recipe configures no stage: add [stages.lm_ft] and/or [stages.r_ft]");
        }
        order
            .iter()
            .map(|name| match name.as_str() {
                "lm_ft" if self.lm_ft.is_some() => Ok("lm_ft"),
                "r_ft" if self.r_ft.is_some() => Ok("r_ft"),
                "lm_ft" | "r_ft" => {
                    bail!("stages.order lists `{name}` but [stages.{name}] is missing")
                }
                other => bail!("stages.order: unknown stage `{other}` (expected lm_ft or r_ft)"),
            })
            .collect()
    }
}

/// `[stages.lm_ft]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmFtStage {
    /// Train low-rank adapters instead of every weight (`[stages.lm_ft.lora]`).
    #[serde(default)]
    pub lora: Option<LoraConfig>,
    /// Optimizer, schedule, checkpointing and evaluation (`[stages.lm_ft.train]`).
    pub train: TrainConfig,
}

/// `[logging]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    /// Write TensorBoard event files to `output_dir/tensorboard`.
    #[serde(default = "yes")]
    pub tensorboard: bool,
    /// Append metrics to `output_dir/metrics.jsonl`.
    #[serde(default = "yes")]
    pub jsonl: bool,
}

impl Default for Logging {
    fn default() -> Self {
        Self {
            tensorboard: true,
            jsonl: true,
        }
    }
}

fn default_top_k() -> usize {
    3
}
fn default_chunk_words() -> usize {
    100
}
fn default_answer_tokens() -> usize {
    16
}
fn yes() -> bool {
    true
}

/// Training instances served by the deterministic sampler.
struct InstanceSource {
    instances: Vec<Instance>,
    sampler: Sampler,
    pad_id: u32,
    /// Row length when packing.
    pack: Option<usize>,
}

impl BatchSource for InstanceSource {
    fn next_batch(&mut self) -> Result<(TokenBatch, Vec<u8>), BoxError> {
        let sampled = self.sampler.next_batch();
        let batch = match self.pack {
            Some(max_len) => packed_batch(&self.instances, &sampled.indices, max_len, self.pad_id)?,
            None => pad_batch(&self.instances, &sampled.indices, self.pad_id, None)?,
        };
        let tokens = TokenBatch::packed(batch.ids, batch.segment_ids, batch.rows, batch.seq_len)?;
        Ok((tokens, batch.answer_mask))
    }
    fn state(&self) -> Vec<u8> {
        serde_json::to_vec(&self.sampler.state()).unwrap_or_default()
    }
    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let state: SamplerState = serde_json::from_slice(state)?;
        Ok(self.sampler.restore(state)?)
    }
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
    let dataset = load_dataset(path, format_for(path).as_ref())
        .with_context(|| format!("loading dataset {}", path.display()))?;
    if !dataset.report.skipped.is_empty() {
        eprintln!("{}", dataset.report);
    }
    let mut examples = dataset.examples;
    if limit > 0 {
        examples.truncate(limit);
    }
    Ok(examples)
}

/// The top-k chunk texts for each question, embedded by `query` (the base or a fine-tuned
/// query encoder) and searched in the frozen index.
fn retrieve(
    store: &DocStore,
    query: &Encoder,
    questions: &[&str],
    k: usize,
) -> Result<Vec<Vec<String>>> {
    let mut out = Vec::with_capacity(questions.len());
    for group in questions.chunks(64) {
        let embeddings = query.embed(group)?.concat();
        for hits in store.search(&Queries::embeddings(&embeddings), k, &SearchMode::default())? {
            out.push(hits.iter().map(|h| h.chunk.background_text()).collect());
        }
    }
    Ok(out)
}

/// Dev EM/F1: greedy answers from the prompt with the top-1 chunk.
fn evaluate(
    model: &Llama,
    tokenizer: &TextTokenizer,
    builder: &InstanceBuilder<PromptTokenizer<'_>>,
    dev: &[Example],
    chunks: &[Vec<String>],
    answer_tokens: usize,
) -> Result<QaMetrics> {
    let mut metrics = QaMetrics::default();
    let prompts = dev
        .iter()
        .zip(chunks)
        .enumerate()
        .map(|(i, (ex, c))| {
            let key = ExampleKey {
                dataset: 1,
                example: i,
            };
            let prompt = builder.prompt(
                key,
                &ex.question,
                c.first().map(String::as_str),
                answer_tokens,
            )?;
            Ok(prompt.map(|p| p.ids).unwrap_or_default())
        })
        .collect::<Result<Vec<Vec<u32>>, radit_data::DataError>>()?;
    let mut stops = tokenizer.stop_ids().to_vec();
    // Answers are one line: a newline ends them as EOS does.
    stops.extend(tokenizer.token_id("Ċ"));
    let config = GenerationConfig {
        max_new_tokens: answer_tokens,
        stop_ids: stops,
        ..Default::default()
    };
    for (batch, examples) in prompts.chunks(8).zip(dev.chunks(8)) {
        let outputs = generate(model, batch, &config, tokenizer.pad_id())?;
        for (out, ex) in outputs.iter().zip(examples) {
            let text = tokenizer.decode(out, true)?;
            let answer = text.lines().next().unwrap_or("").trim();
            metrics.add(answer, &ex.answers);
        }
    }
    Ok(metrics)
}

/// Expands `${RADIT_ASSETS}` (default `~/.cache/radit/assets`, where `scripts/fetch-assets.sh`
/// puts models) and a leading `~/` in a model spec, so shipped recipes work on any machine.
pub fn expand_spec(spec: &str) -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    let assets =
        std::env::var("RADIT_ASSETS").unwrap_or_else(|_| format!("{home}/.cache/radit/assets"));
    let spec = spec.replace("${RADIT_ASSETS}", &assets);
    match spec.strip_prefix("~/") {
        Some(rest) => format!("{home}/{rest}"),
        None => spec,
    }
}

/// Everything the stages share: models, index, prompt builder, data, sinks.
struct Run<'a> {
    recipe: &'a Recipe,
    out: PathBuf,
    resume: bool,
    resolved: String,
    embedder: EncoderEmbedder,
    store: DocStore,
    tokenizer: TextTokenizer,
    /// Training examples per dataset of the mixture.
    train: Vec<Vec<Example>>,
    dev: Vec<Example>,
    stop: radit_train::signals::StopFlag,
    device: Device,
}

/// Runs `radit train`; returns the final dev metrics of every stage, named
/// `{stage label}/{metric}` (empty without a dev set).
pub fn run(
    recipe_path: &Path,
    output_dir: Option<PathBuf>,
    resume: bool,
    sets: &[String],
    device: &Device,
) -> Result<Vec<(String, f64)>> {
    let mut recipe = Recipe::load(recipe_path, sets)?;
    if let Some(dir) = output_dir {
        recipe.output_dir = dir;
    }
    let order = recipe.stages.resolved_order()?;
    let out = recipe.output_dir.clone();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let resolved = toml::to_string(&recipe).context("serializing the resolved recipe")?;
    std::fs::write(out.join("recipe.toml"), &resolved)?;

    let embedder = load_embedder(&recipe.retriever.encoder, device)?;
    let store = recipe.open_or_build_index(&out, &embedder)?;

    let generator = Generator::load(&recipe.generator.model, device)
        .with_context(|| format!("loading generator {}", recipe.generator.model))?;
    let data = &recipe.data;
    let mut train = Vec::new();
    let mut dev = match (&data.dev, data.folds) {
        (Some(_), Some(_)) => bail!(
            "data.dev and data.folds are exclusive: with folds, the held-out fold is the dev set"
        ),
        (Some(path), None) => load_examples(path, data.dev_limit)?,
        (None, _) => Vec::new(),
    };
    for path in data.train.paths() {
        let mut examples = load_examples(path, data.train_limit)?;
        if examples.is_empty() {
            bail!("{}: no training examples", path.display());
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
    let mut run = Run {
        recipe: &recipe,
        out,
        resume,
        resolved,
        embedder,
        store,
        tokenizer: generator.tokenizer.clone(),
        train,
        dev,
        stop: radit_train::signals::install()?,
        device: device.clone(),
    };
    let rounds = recipe.stages.rounds.max(1);
    let mut current = Current {
        generator_spec: recipe.generator.model.clone(),
        generator: generator.model,
        query_spec: recipe.retriever.encoder.clone(),
        query_trained: false,
    };
    let mut table: Vec<String> = Vec::new();
    let mut summary: Vec<(String, f64)> = Vec::new();
    for round in 0..rounds {
        for &stage in &order {
            let dir = if rounds == 1 {
                run.out.join(stage)
            } else {
                run.out.join(format!("round-{}", round + 1)).join(stage)
            };
            let label = if rounds == 1 {
                stage.to_string()
            } else {
                format!("{stage} (round {})", round + 1)
            };
            let done = if stage == "lm_ft" {
                run_lm_ft(&mut run, &mut current, &dir, &label)?
            } else {
                run_r_ft(&mut run, &mut current, &dir, &label)?
            };
            let Some(done) = done else {
                return Ok(summary);
            };
            table.extend(done.rows);
            summary.extend(
                done.metrics
                    .into_iter()
                    .map(|(name, value)| (format!("{label}/{name}"), value)),
            );
        }
    }
    for line in table {
        println!("{line}");
    }
    Ok(summary)
}

/// The newest weights of both models as the stages hand them on.
struct Current {
    /// Where the current generator's weights live (base spec or a stage's `final/`).
    generator_spec: String,
    /// The current generator (inference device).
    generator: Llama,
    /// Where the current query encoder's weights live.
    query_spec: String,
    /// Whether an R-ft stage has produced `query_spec`.
    query_trained: bool,
}

/// Marker written when a stage has completed, with its result table rows: a resumed
/// pipeline skips the stage and continues from its `final/` weights.
const DONE: &str = "done.json";

/// Metric sinks of one stage: console, TensorBoard run `tensorboard/<stage dir>`, JSONL
/// in the stage directory.
fn stage_logger(run: &Run<'_>, dir: &Path, total_steps: u64) -> Result<MetricLogger> {
    let mut logger = MetricLogger::new();
    logger.add(Box::new(ConsoleSink::stderr(ConsoleOptions {
        total_steps: Some(total_steps),
        ..ConsoleOptions::default()
    })));
    let relative = dir.strip_prefix(&run.out).unwrap_or(dir);
    if run.recipe.logging.tensorboard {
        logger.add(Box::new(TensorBoardSink::create(
            &run.out.join("tensorboard").join(relative),
        )?));
    }
    if run.recipe.logging.jsonl {
        logger.add(Box::new(JsonlSink::append(&dir.join("metrics.jsonl"))?));
    }
    Ok(logger)
}

/// What a completed stage reports: its rows of the result table and its final dev metrics.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StageDone {
    rows: Vec<String>,
    metrics: Vec<(String, f64)>,
}

/// The report of a stage completed earlier, read back on resume.
fn read_done(dir: &Path) -> Result<Option<StageDone>> {
    let path = dir.join(DONE);
    if !path.is_file() || !dir.join("final").is_dir() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)?;
    Ok(Some(
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?,
    ))
}

fn mark_done(dir: &Path, done: &StageDone) -> Result<()> {
    let tmp = dir.join(format!("{DONE}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(done)?)?;
    std::fs::rename(&tmp, dir.join(DONE))?;
    Ok(())
}

/// The RA-DIT instance builder of the recipe: prompt style, length limit, marker seed.
pub fn prompt_builder<'t>(
    recipe: &Recipe,
    tokenizer: &'t TextTokenizer,
) -> Result<InstanceBuilder<PromptTokenizer<'t>>> {
    let builder = InstanceBuilder::new(
        PromptTokenizer(tokenizer),
        InstanceConfig {
            max_len: recipe.data.max_len,
            add_bos: false,
            seed: recipe.seed,
        },
    )?;
    Ok(match recipe.data.prompt {
        PromptKind::Plain => builder,
        PromptKind::Chat => {
            if tokenizer.chat_template().is_none() {
                bail!("data.prompt = \"chat\" but the generator has no chat template");
            }
            let chat = tokenizer.clone();
            let render = move |user: &str| -> Result<String, radit_data::BoxError> {
                Ok(chat.apply_chat_template(&[ChatMessage::new("user", user)], true)?)
            };
            builder.with_style(PromptStyle::Chat(Arc::new(render)))
        }
    })
}

/// LM-ft from `base` (inference weights of the spec `spec`); returns the fine-tuned
/// generator (inference device), or `None` when a signal stopped the run.
fn run_lm_ft(
    run: &mut Run<'_>,
    current: &mut Current,
    run_dir: &Path,
    label: &str,
) -> Result<Option<StageDone>> {
    let Some(stage) = run.recipe.stages.lm_ft.as_ref() else {
        bail!("[stages.lm_ft] is missing");
    };
    if run.resume {
        if let Some(done) = read_done(run_dir)? {
            eprintln!(
                "{label}: already complete, continuing from {}",
                run_dir.join("final").display()
            );
            let final_dir = run_dir.join("final").display().to_string();
            current.generator = Generator::load(&final_dir, &run.device)?.model;
            current.generator_spec = final_dir;
            return Ok(Some(done));
        }
    }
    // LM-ft retrieves with the base query encoder, or the R-ft one when asked to.
    let query_owned;
    let query: &Encoder = if run.recipe.stages.re_retrieve && current.query_trained {
        query_owned = Encoder::load(&current.query_spec, &run.device)?;
        &query_owned
    } else {
        &run.embedder.encoder
    };
    let cfg = &stage.train;
    let data = &run.recipe.data;
    let builder = prompt_builder(run.recipe, &run.tokenizer)?;
    let mut report = BuildReport::default();
    let mut instances = Vec::new();
    for (d, examples) in run.train.iter().enumerate() {
        let questions: Vec<&str> = examples.iter().map(|e| e.question.as_str()).collect();
        let chunks = retrieve(&run.store, query, &questions, run.recipe.retriever.top_k)?;
        for (i, (example, top)) in examples.iter().zip(&chunks).enumerate() {
            let key = ExampleKey {
                dataset: d,
                example: i,
            };
            instances.extend(builder.instances(key, example, top, &mut report)?);
        }
    }
    eprintln!("{report}");
    if instances.is_empty() {
        bail!("no training instance fits max_len {}", data.max_len);
    }
    let sampler = Sampler::from_instances(
        &instances,
        SamplerConfig {
            batch_size: data.batch_size,
            seed: run.recipe.seed,
            cap: data.cap,
            drop_last: false,
        },
    )?;
    let mut source = InstanceSource {
        instances,
        sampler,
        pad_id: run.tokenizer.pad_id(),
        pack: data.packing.then_some(data.max_len),
    };
    let dev_questions: Vec<&str> = run.dev.iter().map(|e| e.question.as_str()).collect();
    let dev_chunks = retrieve(&run.store, query, &dev_questions, 1)?;
    let (tokenizer, dev) = (&run.tokenizer, &run.dev);
    let evaluate_on = |model: &Llama| {
        evaluate(
            model,
            tokenizer,
            &builder,
            dev,
            &dev_chunks,
            data.answer_tokens,
        )
    };
    let before = if dev.is_empty() {
        None
    } else {
        Some(evaluate_on(&current.generator)?)
    };
    let train_device = run.device.clone().autodiff();
    let mut model = Generator::load(&current.generator_spec, &train_device)?.model;
    if let Some(lora) = &stage.lora {
        model = apply_lora(model, lora)?;
        let (trainable, total) = parameter_counts(&model);
        eprintln!(
            "LoRA rank {} on {}: {trainable} of {total} parameters trainable",
            lora.rank,
            lora.targets.join(", ")
        );
    }
    let mut logger = stage_logger(run, run_dir, cfg.max_steps)?;
    let mut dev_eval = |m: &Llama| -> Result<Vec<(String, f64)>, BoxError> {
        let metrics = evaluate_on(m)?;
        Ok(vec![
            ("dev/em".into(), metrics.em()),
            ("dev/f1".into(), metrics.f1()),
        ])
    };
    let evaluate: Option<&mut Evaluator<'_, Llama>> = if dev.is_empty() || cfg.eval_every.is_none()
    {
        None
    } else {
        Some(&mut dev_eval)
    };
    let ctx = RunContext {
        run_dir,
        resume: run.resume,
        extra_files: &[("recipe.toml", run.resolved.as_bytes())],
        logger: &mut logger,
        stop: Some(&run.stop),
        evaluate,
    };
    let (model, state, outcome) = train_lm(model, &mut source, cfg, ctx)?;
    if outcome == Outcome::Interrupted {
        eprintln!(
            "{label}: stopped by signal at step {}; resume with --resume",
            state.step
        );
        return Ok(None);
    }
    let trained = Generator {
        model: model.valid(),
        tokenizer: run.tokenizer.clone(),
    };
    trained.export(&run_dir.join("final"))?;
    eprintln!("wrote {}", run_dir.join("final").display());
    let mut rows = Vec::new();
    let mut metrics = Vec::new();
    if !dev.is_empty() {
        let after = evaluate_on(&trained.model)?;
        metrics = vec![
            ("dev/em".to_string(), after.em()),
            ("dev/f1".to_string(), after.f1()),
        ];
        logger.log_scalars(
            state.step,
            &[("dev/em", after.em()), ("dev/f1", after.f1())],
        );
        rows.push(String::new());
        rows.push(format!("| generator, {label} | dev EM | dev F1 | n |"));
        rows.push("|---|---|---|---|".into());
        if let Some(b) = before {
            rows.push(format!(
                "| before (top-1 chunk) | {:.3} | {:.3} | {} |",
                b.em(),
                b.f1(),
                dev.len()
            ));
        }
        rows.push(format!(
            "| after (top-1 chunk) | {:.3} | {:.3} | {} |",
            after.em(),
            after.f1(),
            dev.len()
        ));
    }
    logger.flush();
    let done = StageDone { rows, metrics };
    mark_done(run_dir, &done)?;
    current.generator = trained.model;
    current.generator_spec = run_dir.join("final").display().to_string();
    Ok(Some(done))
}

/// R-ft of the current query encoder, supervised by the current generator; `false` when a
/// signal stopped it.
fn run_r_ft(
    run: &mut Run<'_>,
    current: &mut Current,
    run_dir: &Path,
    label: &str,
) -> Result<Option<StageDone>> {
    let Some(stage) = run.recipe.stages.r_ft.as_ref() else {
        bail!("[stages.r_ft] is missing");
    };
    let final_dir = run_dir.join("final");
    if run.resume {
        if let Some(done) = read_done(run_dir)? {
            eprintln!(
                "{label}: already complete, continuing from {}",
                final_dir.display()
            );
            current.query_spec = final_dir.display().to_string();
            current.query_trained = true;
            return Ok(Some(done));
        }
    }
    let data = &run.recipe.data;
    let builder = prompt_builder(run.recipe, &run.tokenizer)?;
    let start_owned;
    let start: &Encoder = if current.query_trained {
        start_owned = Encoder::load(&current.query_spec, &run.device)?;
        &start_owned
    } else {
        &run.embedder.encoder
    };
    let inputs = RFtInputs {
        stage,
        seed: run.recipe.seed,
        store: &run.store,
        encoder: start,
        encoder_spec: &current.query_spec,
        generator: &current.generator,
        builder: &builder,
        pad_id: run.tokenizer.pad_id(),
        train: &run.train,
        dev: &run.dev,
        cap: data.cap,
    };
    let before = if run.dev.is_empty() {
        None
    } else {
        Some(rft::dev_metrics(&inputs, &start.model)?)
    };
    let mut logger = stage_logger(run, run_dir, stage.train.max_steps)?;
    let trained = rft::run(
        &inputs,
        run_dir,
        run.resume,
        &[("recipe.toml", run.resolved.as_bytes())],
        &mut logger,
        &run.stop,
        &run.device,
    )?;
    let Some(model) = trained else {
        return Ok(None);
    };
    let query_encoder = Encoder {
        model,
        tokenizer: start.tokenizer.clone(),
        pooling: start.pooling,
        normalize: start.normalize,
        max_length: start.max_length,
        source: final_dir.display().to_string(),
        weights_hash: String::new(),
    };
    query_encoder.export(&final_dir)?;
    eprintln!("wrote query encoder {}", final_dir.display());
    let mut rows = Vec::new();
    let mut metrics = Vec::new();
    if let Some(before) = before {
        let after = rft::dev_metrics(&inputs, &query_encoder.model)?;
        metrics = after.clone();
        let header: Vec<&str> = after.iter().map(|(n, _)| n.as_str()).collect();
        rows.push(String::new());
        rows.push(format!(
            "| query encoder, {label} | {} | n |",
            header.join(" | ")
        ));
        rows.push(format!("|---|{}---|", "---|".repeat(header.len())));
        for (name, values) in [("before", &before), ("after", &after)] {
            let cells: Vec<String> = values.iter().map(|(_, v)| format!("{v:.3}")).collect();
            rows.push(format!(
                "| {name} | {} | {} |",
                cells.join(" | "),
                run.dev.len()
            ));
        }
    }
    logger.flush();
    let done = StageDone { rows, metrics };
    mark_done(run_dir, &done)?;
    current.query_spec = final_dir.display().to_string();
    current.query_trained = true;
    Ok(Some(done))
}

/// Runs `radit cv`: the recipe once per fold (`data.folds`, `data.fold`) under
/// `output_dir/fold-N`, then a table of each fold's final dev metrics with mean and standard
/// deviation, also written to `output_dir/cv.json`.
pub fn cross_validate(
    recipe_path: &Path,
    folds: usize,
    output_dir: Option<PathBuf>,
    resume: bool,
    sets: &[String],
    device: &Device,
) -> Result<()> {
    if folds < 2 {
        bail!("--folds must be at least 2, got {folds}");
    }
    let (recipe, _) = radit_train::recipe::load_recipe::<Recipe>(recipe_path, sets)?;
    let base = output_dir.unwrap_or(recipe.output_dir);
    let mut per_fold: Vec<Vec<(String, f64)>> = Vec::new();
    for fold in 0..folds {
        eprintln!("== fold {} of {folds}", fold + 1);
        let mut fold_sets = sets.to_vec();
        fold_sets.push(format!("data.folds={folds}"));
        fold_sets.push(format!("data.fold={fold}"));
        let summary = run(
            recipe_path,
            Some(base.join(format!("fold-{fold}"))),
            resume,
            &fold_sets,
            device,
        )?;
        per_fold.push(summary);
    }
    let names: Vec<String> = per_fold
        .first()
        .map(|s| s.iter().map(|(n, _)| n.clone()).collect())
        .unwrap_or_default();
    if names.is_empty() {
        bail!("the folds reported no dev metric (does the recipe run a stage?)");
    }
    let mut rows = Vec::new();
    println!();
    let fold_cols: Vec<String> = (0..folds).map(|f| format!("fold {f}")).collect();
    println!("| metric | {} | mean | std |", fold_cols.join(" | "));
    println!("|---|{}---|---|", "---|".repeat(folds));
    for name in &names {
        let values: Vec<f64> = per_fold
            .iter()
            .map(|s| {
                s.iter()
                    .find(|(n, _)| n == name)
                    .map_or(f64::NAN, |(_, v)| *v)
            })
            .collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
            / (values.len().max(2) - 1) as f64;
        let cells: Vec<String> = values.iter().map(|v| format!("{v:.3}")).collect();
        println!(
            "| {name} | {} | {mean:.3} | {:.3} |",
            cells.join(" | "),
            var.sqrt()
        );
        rows.push(
            serde_json::json!({"metric": name, "folds": values, "mean": mean, "std": var.sqrt()}),
        );
    }
    let path = base.join("cv.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&rows)?)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
