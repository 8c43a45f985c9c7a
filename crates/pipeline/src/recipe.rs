//! The recipe: one TOML file naming the models, the corpus, the data, the stages with their
//! optimizer, schedule and loss, and the logging; parsed with `deny_unknown_fields` (unknown
//! keys fail with the nearest valid key) and validated before any model is loaded.

use std::path::{Path, PathBuf};

use radit_docstore::SearchMode;
use radit_generator::lora::LoraConfig;
use radit_retriever::loss::LossSpec;
use radit_train::trainer::TrainConfig;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};
use crate::stage::BuiltinStage;

/// A training recipe.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// Loads a recipe with `--set KEY=VALUE` overrides, expands `${RADIT_ASSETS}` and `~/` in
    /// its model and corpus paths, makes its paths absolute and validates it
    /// ([`Recipe::validate`]).
    ///
    /// A relative path in the file means the same wherever the command runs from: it is
    /// resolved against the recipe file's folder. A relative path given with `--set` is
    /// resolved against the current directory, as any command-line path is. A model spec is
    /// made absolute only when that path exists (otherwise it may be a hub id, `owner/name`).
    /// The run stores the resolved recipe, so its paths are absolute from then on.
    pub fn load(path: &Path, sets: &[String]) -> Result<Self> {
        let (mut recipe, _) = radit_train::recipe::load_recipe::<Recipe>(path, sets)?;
        let io = |e| crate::PipelineError::io(path, e);
        // `recipe.toml` alone has the empty parent: the current directory.
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file_dir = normalize_path(&std::path::absolute(parent).map_err(io)?);
        let cwd = std::env::current_dir().map_err(io)?;
        let set_keys: Vec<&str> = sets
            .iter()
            .filter_map(|s| s.split_once('=').map(|(k, _)| k.trim()))
            .collect();
        // The folder a key's relative path is relative to.
        let base = |key: &str| -> &Path {
            let overridden = set_keys
                .iter()
                .any(|k| *k == key || key.starts_with(&format!("{k}.")));
            if overridden {
                &cwd
            } else {
                &file_dir
            }
        };
        let absolute = |key: &str, p: &Path| -> PathBuf {
            let p = PathBuf::from(expand_spec(&p.to_string_lossy()));
            if p.is_relative() {
                normalize_path(&base(key).join(p))
            } else {
                p
            }
        };
        let model = |key: &str, spec: &str| -> String {
            let spec = expand_spec(spec);
            let candidate = base(key).join(&spec);
            if Path::new(&spec).is_relative() && candidate.exists() {
                normalize_path(&candidate).display().to_string()
            } else {
                spec
            }
        };
        recipe.output_dir = absolute("output_dir", &recipe.output_dir);
        recipe.generator.model = model("generator.model", &recipe.generator.model);
        recipe.retriever.encoder = model("retriever.encoder", &recipe.retriever.encoder);
        recipe.docstore.corpus = absolute("docstore.corpus", &recipe.docstore.corpus);
        recipe.docstore.index = recipe
            .docstore
            .index
            .as_ref()
            .map(|p| absolute("docstore.index", p));
        recipe.data.train = match &recipe.data.train {
            OneOrMany::One(p) => OneOrMany::One(absolute("data.train", p)),
            OneOrMany::Many(v) => {
                OneOrMany::Many(v.iter().map(|p| absolute("data.train", p)).collect())
            }
        };
        recipe.data.dev = recipe.data.dev.as_ref().map(|p| absolute("data.dev", p));
        if let Some(feedback) = recipe
            .stages
            .r_ft
            .as_mut()
            .and_then(|r| r.feedback.as_mut())
        {
            feedback.labels = absolute("stages.r_ft.feedback.labels", &feedback.labels);
        }
        if let Some(dpo) = recipe.stages.dpo.as_mut() {
            dpo.preferences = absolute("stages.dpo.preferences", &dpo.preferences);
        }
        recipe.validate()?;
        Ok(recipe)
    }

    /// Checks every setting that can be checked without loading a model; errors name the key.
    pub fn validate(&self) -> Result<()> {
        let data = &self.data;
        if data.batch_size == 0 {
            invalid!("data.batch_size must be at least 1");
        }
        if data.max_len == 0 {
            invalid!("data.max_len must be at least 1");
        }
        if data.answer_tokens == 0 {
            invalid!("data.answer_tokens must be at least 1");
        }
        if data.dev.is_some() && data.folds.is_some() {
            invalid!("data.dev and data.folds are exclusive: with folds, the held-out fold is the dev set");
        }
        if let Some(folds) = data.folds {
            if folds < 2 {
                invalid!("data.folds must be at least 2, got {folds}");
            }
            if data.fold >= folds {
                invalid!(
                    "data.fold must be below data.folds ({folds}), got {}",
                    data.fold
                );
            }
        }
        if data.train.paths().is_empty() {
            invalid!("data.train lists no dataset");
        }
        if self.retriever.top_k == 0 {
            invalid!("retriever.top_k must be at least 1");
        }
        if self.logging.console_every == 0 {
            invalid!("logging.console_every must be at least 1");
        }
        if self.docstore.chunk_words == 0 {
            invalid!("docstore.chunk_words must be at least 1");
        }
        self.search_mode()?;
        if self.stages.rounds == 0 {
            invalid!("stages.rounds must be at least 1");
        }
        if let Some(lm_ft) = &self.stages.lm_ft {
            validate_train("stages.lm_ft.train", &lm_ft.train)?;
        }
        if let Some(r_ft) = &self.stages.r_ft {
            r_ft.validate()?;
        }
        if let Some(dpo) = &self.stages.dpo {
            dpo.validate()?;
        }
        Ok(())
    }

    /// The search mode of `retriever.search`.
    pub fn search_mode(&self) -> Result<SearchMode> {
        self.retriever
            .search
            .parse()
            .map_err(|e| crate::PipelineError::Invalid(format!("retriever.search: {e}")))
    }
}

/// The trainer's own checks, with the key prefix of the stage.
fn validate_train(prefix: &str, train: &TrainConfig) -> Result<()> {
    train
        .validate()
        .map_err(|e| crate::PipelineError::Invalid(e.within(prefix).to_string()))
}

impl RFtSection {
    /// Checks R-ft's own settings and its loop's.
    pub fn validate(&self) -> Result<()> {
        if !(self.retriever_temperature > 0.0 && self.retriever_temperature.is_finite()) {
            invalid!(
                "stages.r_ft.retriever_temperature must be positive, got {}",
                self.retriever_temperature
            );
        }
        for (key, value) in [
            ("candidates", self.candidates),
            ("batch_size", self.batch_size),
            ("score_batch", self.score_batch),
            ("eval_depth", self.eval_depth),
            ("pair_words", self.pair_words),
        ] {
            if value == 0 {
                invalid!("stages.r_ft.{key} must be at least 1");
            }
        }
        if self.refresh_every == Some(0) {
            invalid!("stages.r_ft.refresh_every must be at least 1 when given");
        }
        if let Some(feedback) = &self.feedback {
            // `contains` is false for NaN too.
            if !(0.0..=1.0).contains(&feedback.weight) {
                invalid!(
                    "stages.r_ft.feedback.weight must be in [0, 1], got {}",
                    feedback.weight
                );
            }
        }
        validate_train("stages.r_ft.train", &self.train)
    }
}

impl DpoSection {
    /// Checks DPO's own settings and its loop's.
    pub fn validate(&self) -> Result<()> {
        if !(self.beta > 0.0 && self.beta.is_finite()) {
            invalid!("stages.dpo.beta must be positive, got {}", self.beta);
        }
        if self.batch_size == 0 {
            invalid!("stages.dpo.batch_size must be at least 1");
        }
        validate_train("stages.dpo.train", &self.train)
    }
}

/// `path` without `.` and `..` components, resolved lexically (the path need not exist; a
/// `..` at the root stays at the root).
pub fn normalize_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                // `..` of the root is the root.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                // A relative path that already climbs keeps climbing.
                _ => out.push(component),
            },
            other => out.push(other),
        }
    }
    out
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
/// `[generator]`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneratorSection {
    /// Model source: directory, .gguf file or hub id.
    pub model: String,
}

/// `[retriever]`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrieverSection {
    /// Encoder source: directory or hub id.
    pub encoder: String,
    /// Chunks retrieved per question; each becomes one training instance (paper: 3).
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// How LM-ft, R-ft, dev metrics and `radit eval` search the index: `exact` (default),
    /// `dense` (HNSW when the index has one), `ann`, `exact-f16`, `bm25` or `hybrid`. One
    /// setting for every stage, so a recipe never trains on approximate hits and evaluates on
    /// exact ones.
    #[serde(default = "default_search")]
    pub search: String,
}

/// `[docstore]`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PromptKind {
    /// RA-DIT's plain prompt.
    #[default]
    Plain,
    /// The RA-DIT user message inside the generator's chat template.
    Chat,
}

/// `[stages]`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stages {
    /// Stages to run, in order: `lm_ft`, `r_ft`, `dpo` or the name of a stage registered
    /// through [`crate::Pipeline::with_stage`] (default: every configured built-in stage in
    /// that order). R-ft after LM-ft learns from the fine-tuned generator; DPO continues from
    /// the current generator and retrieves with the current query encoder.
    #[serde(default)]
    pub order: Vec<String>,
    /// LM-ft: fine-tune the generator on retrieval-augmented instances.
    #[serde(default)]
    pub lm_ft: Option<LmFtSection>,
    /// R-ft: fine-tune the query encoder with LM-supervised retrieval.
    #[serde(default)]
    pub r_ft: Option<RFtSection>,
    /// DPO: fine-tune the generator on reviewers' preferred and rejected answers.
    #[serde(default)]
    pub dpo: Option<DpoSection>,
    /// Repeat `order` this many times; each stage continues from the previous one's weights.
    #[serde(default = "one_round")]
    pub rounds: usize,
    /// LM-ft retrieves its chunks with the current (R-ft-trained) query encoder instead of
    /// the base one, once R-ft has run.
    #[serde(default)]
    pub re_retrieve: bool,
}

impl Stages {
    /// The stage names to run in each round: `order`, or every configured built-in stage
    /// (LM-ft, R-ft, DPO).
    pub fn names(&self) -> Vec<String> {
        if !self.order.is_empty() {
            return self.order.clone();
        }
        BuiltinStage::ALL
            .into_iter()
            .filter(|&stage| self.configures(stage))
            .map(|stage| stage.name().to_string())
            .collect()
    }

    /// Whether the recipe has the section of `stage`.
    pub fn configures(&self, stage: BuiltinStage) -> bool {
        match stage {
            BuiltinStage::LmFt => self.lm_ft.is_some(),
            BuiltinStage::RFt => self.r_ft.is_some(),
            BuiltinStage::Dpo => self.dpo.is_some(),
        }
    }
}

fn one_round() -> usize {
    1
}

/// `[stages.lm_ft]`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LmFtSection {
    /// Train low-rank adapters instead of every weight (`[stages.lm_ft.lora]`).
    #[serde(default)]
    pub lora: Option<LoraConfig>,
    /// Optimizer, schedule, checkpointing and evaluation (`[stages.lm_ft.train]`).
    pub train: TrainConfig,
}

/// `[stages.dpo]`: Direct Preference Optimization of the generator (Rafailov et al. 2023) on
/// reviewers' preferences, with the RA-DIT prompt LM-ft trains on.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DpoSection {
    /// Preference pairs in TRL's DPO format, one `{"prompt", "chosen", "rejected"}` JSON
    /// object per line, the prompt being the question (relative to the recipe's folder).
    pub preferences: PathBuf,
    /// β: the strength of the pull towards the generator the stage starts from; the loss is
    /// `−log σ(β·[(log π(y_c|x) − log π_ref(y_c|x)) − (log π(y_r|x) − log π_ref(y_r|x))])`.
    #[serde(default = "default_dpo_beta")]
    pub beta: f64,
    /// Preference pairs per micro-batch (each pair is two rows: chosen and rejected).
    #[serde(default = "default_dpo_batch")]
    pub batch_size: usize,
    /// Optimizer, schedule, checkpointing and evaluation (`[stages.dpo.train]`).
    pub train: TrainConfig,
}

fn default_dpo_beta() -> f64 {
    0.1
}
fn default_dpo_batch() -> usize {
    4
}

/// `[logging]`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    /// Write TensorBoard event files to `output_dir/tensorboard`.
    #[serde(default = "yes")]
    pub tensorboard: bool,
    /// Append metrics to `output_dir/metrics.jsonl`.
    #[serde(default = "yes")]
    pub jsonl: bool,
    /// Without a terminal (logs, batch jobs), print a progress line every this many steps.
    #[serde(default = "default_console_every")]
    pub console_every: u64,
}

impl Default for Logging {
    fn default() -> Self {
        Self {
            tensorboard: true,
            jsonl: true,
            console_every: default_console_every(),
        }
    }
}

fn default_console_every() -> u64 {
    10
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
fn default_search() -> String {
    "exact".into()
}
fn yes() -> bool {
    true
}

/// `[stages.r_ft]`
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RFtSection {
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
    /// Human judgments of retrieved chunks mixed into the loss's targets
    /// (`[stages.r_ft.feedback]`; losses `lsr` and `infonce`).
    #[serde(default)]
    pub feedback: Option<RFtFeedback>,
    /// Optimizer, schedule, checkpointing and evaluation (`[stages.r_ft.train]`).
    pub train: TrainConfig,
}

/// `[stages.r_ft.feedback]`: reviewers' helpful / not-helpful labels of retrieved chunks.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RFtFeedback {
    /// The review app's `retrieval.jsonl` (one `{question, chunk_id, text_hash, index,
    /// label}` per line; relative to the recipe's folder). A label is used only when its
    /// chunk still has the recorded text.
    pub labels: PathBuf,
    /// λ, from 0 to 1 inclusive: `lsr` distils towards `(1 − λ)·p_LSR + λ·p_human` for queries with a
    /// chunk judged helpful; `infonce` takes the best-ranked helpful chunk as the positive
    /// when λ > 0. 0 ignores the labels.
    #[serde(default = "default_feedback_weight")]
    pub weight: f64,
}

fn default_feedback_weight() -> f64 {
    0.5
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

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
output_dir = "runs/t"
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
[stages.lm_ft.train]
lr = 1e-4
max_steps = 4
save_every = 2
schedule = { kind = "constant" }
"#;

    fn with(extra: &str) -> Result<Recipe> {
        let recipe: Recipe = toml::from_str(&format!("{MINIMAL}{extra}"))
            .map_err(|e| crate::PipelineError::Invalid(e.to_string()))?;
        recipe.validate()?;
        Ok(recipe)
    }

    #[test]
    fn paths_normalize_lexically() {
        assert_eq!(
            normalize_path(Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
        assert_eq!(normalize_path(Path::new("/../x")), PathBuf::from("/x"));
    }

    #[test]
    fn a_minimal_recipe_is_valid_and_searches_exactly() {
        let recipe = with("").unwrap();
        assert_eq!(
            recipe.search_mode().unwrap(),
            SearchMode::Dense(radit_docstore::Dense::Exact)
        );
        assert_eq!(recipe.stages.names(), ["lm_ft"]);
    }

    #[test]
    fn bad_settings_name_their_key() {
        let mut cases = vec![
            ("[stages.r_ft]\nretriever_temperature = 0.0\n[stages.r_ft.train]\nlr = 1e-5\nmax_steps = 2\nschedule = { kind = \"constant\" }\n", "stages.r_ft.retriever_temperature"),
            ("[stages.r_ft]\ncandidates = 0\n[stages.r_ft.train]\nlr = 1e-5\nmax_steps = 2\nschedule = { kind = \"constant\" }\n", "stages.r_ft.candidates"),
        ];
        let mut recipe = with("").unwrap();
        recipe.retriever.search = "nearest".into();
        let err = recipe.validate().unwrap_err().to_string();
        assert!(
            err.contains("retriever.search") && err.contains("nearest"),
            "{err}"
        );
        let mut recipe = with("").unwrap();
        recipe.data.folds = Some(3);
        recipe.data.fold = 3;
        let err = recipe.validate().unwrap_err().to_string();
        assert!(err.contains("data.fold"), "{err}");
        let mut recipe = with("").unwrap();
        if let Some(lm_ft) = recipe.stages.lm_ft.as_mut() {
            lm_ft.train.lr = -1e-4;
        }
        let err = recipe.validate().unwrap_err().to_string();
        assert!(err.contains("stages.lm_ft.train.lr"), "{err}");
        let mut recipe = with("").unwrap();
        recipe.stages.rounds = 0;
        let err = recipe.validate().unwrap_err().to_string();
        assert!(err.contains("stages.rounds"), "{err}");
        for (extra, key) in cases.drain(..) {
            let err = with(extra).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    const R_FT: &str =
        "[stages.r_ft.train]\nlr = 1e-5\nmax_steps = 2\nschedule = { kind = \"constant\" }\n";

    #[test]
    fn feedback_weight_defaults_and_is_checked() {
        let recipe = with(&format!(
            "{R_FT}[stages.r_ft.feedback]\nlabels = \"retrieval.jsonl\"\n"
        ))
        .unwrap();
        let feedback = recipe.stages.r_ft.and_then(|r| r.feedback).unwrap();
        assert_eq!(feedback.weight, 0.5);
        assert_eq!(feedback.labels, PathBuf::from("retrieval.jsonl"));
        for weight in ["1.5", "-0.1", "nan"] {
            let err = with(&format!(
                "{R_FT}[stages.r_ft.feedback]\nlabels = \"l.jsonl\"\nweight = {weight}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("stages.r_ft.feedback.weight"),
                "{weight}: {err}"
            );
        }
        for weight in ["0.0", "1.0"] {
            with(&format!(
                "{R_FT}[stages.r_ft.feedback]\nlabels = \"l.jsonl\"\nweight = {weight}\n"
            ))
            .unwrap();
        }
    }

    #[test]
    fn an_unknown_feedback_key_names_the_nearest() {
        let text =
            format!("{MINIMAL}{R_FT}[stages.r_ft.feedback]\nlabels = \"l.jsonl\"\nwieght = 0.3\n");
        let err = radit_train::recipe::parse_recipe::<Recipe>(&text, "recipe.toml", &[])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "unknown key `stages.r_ft.feedback.wieght` in recipe.toml (did you mean `weight`?)"
        );
    }

    #[test]
    fn feedback_labels_resolve_against_the_recipe_folder() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("recipes");
        std::fs::create_dir_all(&sub).unwrap();
        let path = sub.join("r.toml");
        std::fs::write(
            &path,
            format!(
                "{MINIMAL}{R_FT}[stages.r_ft.feedback]\nlabels = \"../feedback/retrieval.jsonl\"\n"
            ),
        )
        .unwrap();
        let recipe = Recipe::load(&path, &[]).unwrap();
        let labels = recipe.stages.r_ft.and_then(|r| r.feedback).unwrap().labels;
        let root = normalize_path(&std::path::absolute(dir.path()).unwrap());
        assert_eq!(labels, root.join("feedback/retrieval.jsonl"));
    }

    const DPO: &str = "[stages.dpo]\npreferences = \"preferences.jsonl\"\n[stages.dpo.train]\nlr = 1e-6\nmax_steps = 2\nschedule = { kind = \"constant\" }\n";

    #[test]
    fn dpo_defaults_and_runs_after_the_other_built_in_stages() {
        let recipe = with(DPO).unwrap();
        let dpo = recipe.stages.dpo.clone().unwrap();
        assert_eq!((dpo.beta, dpo.batch_size), (0.1, 4));
        assert_eq!(dpo.preferences, PathBuf::from("preferences.jsonl"));
        assert_eq!(recipe.stages.names(), ["lm_ft", "dpo"]);
        let recipe = with(&format!("{R_FT}{DPO}")).unwrap();
        assert_eq!(recipe.stages.names(), ["lm_ft", "r_ft", "dpo"]);
        let mut recipe = with(DPO).unwrap();
        recipe.stages.order = vec!["dpo".into()];
        assert_eq!(recipe.stages.names(), ["dpo"]);
    }

    #[test]
    fn dpo_settings_name_their_key() {
        for (setting, key) in [
            ("beta = 0.0", "stages.dpo.beta"),
            ("beta = -0.1", "stages.dpo.beta"),
            ("beta = nan", "stages.dpo.beta"),
            ("beta = inf", "stages.dpo.beta"),
            ("batch_size = 0", "stages.dpo.batch_size"),
        ] {
            let extra = DPO.replace(
                "preferences = \"preferences.jsonl\"\n",
                &format!("preferences = \"preferences.jsonl\"\n{setting}\n"),
            );
            let err = with(&extra).unwrap_err().to_string();
            assert!(err.contains(key), "{setting}: {err}");
        }
        let extra = DPO.replace("lr = 1e-6", "lr = -1e-6");
        let err = with(&extra).unwrap_err().to_string();
        assert!(err.contains("stages.dpo.train.lr"), "{err}");
        with(&DPO.replace(
            "preferences = \"preferences.jsonl\"\n",
            "preferences = \"preferences.jsonl\"\nbeta = 0.5\nbatch_size = 1\n",
        ))
        .unwrap();
    }

    #[test]
    fn an_unknown_dpo_key_names_the_nearest() {
        let extra = DPO.replace(
            "preferences = \"preferences.jsonl\"\n",
            "preferences = \"preferences.jsonl\"\nbetta = 0.2\n",
        );
        let text = format!("{MINIMAL}{extra}");
        let err = radit_train::recipe::parse_recipe::<Recipe>(&text, "recipe.toml", &[])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "unknown key `stages.dpo.betta` in recipe.toml (did you mean `beta`?)"
        );
    }

    #[test]
    fn dpo_preferences_resolve_against_the_recipe_folder() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("recipes");
        std::fs::create_dir_all(&sub).unwrap();
        let path = sub.join("r.toml");
        let text = format!(
            "{MINIMAL}{}",
            DPO.replace("\"preferences.jsonl\"", "\"../reviews/preferences.jsonl\"")
        )
        .replace(
            "[stages.lm_ft.train]",
            "[stages]\norder = [\"lm_ft\", \"dpo\"]\n[stages.lm_ft.train]",
        );
        std::fs::write(&path, text).unwrap();
        let recipe = Recipe::load(&path, &[]).unwrap();
        assert_eq!(recipe.stages.names(), ["lm_ft", "dpo"]);
        let preferences = recipe.stages.dpo.unwrap().preferences;
        let root = normalize_path(&std::path::absolute(dir.path()).unwrap());
        assert_eq!(preferences, root.join("reviews/preferences.jsonl"));
    }
}
