//! `radit eval` and `radit ask`: RA-DIT inference with the retrieval-weighted ensemble over
//! chunks (or the `concat` / `closed_book` baselines) on a training run's models.
//!
//! With `--checkpoint RUN` the run's latest fine-tuned generator and query encoder (the last
//! completed `lm_ft` and `r_ft` stages, the last round's in a multi-round run) are used when
//! present, the recipe's base models otherwise (and always with `--base`); the run's resolved
//! recipe names the base models, the index, the search mode and the prompt settings. With
//! `--recipe` the recipe's base models are used. Model loading lives in `radit-pipeline`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use clap::{Args, ValueEnum};
use radit_data::Example;
use radit_eval::{EvalConfig, EvalReport, Mode, Scoring, ShardInfo};
use radit_pipeline::{load_examples, EvalModels, ModelSource, Recipe, RunDir};
use radit_util::shard::Shard;

/// `--mode`
#[derive(Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// Σ_k p_R(c_k|x) p_LM(y|c_k∘x) over the top-k chunks.
    Ensemble,
    /// The top-k chunks concatenated into one background.
    Concat,
    /// No background.
    #[value(name = "closed_book")]
    ClosedBook,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Ensemble => Mode::Ensemble,
            ModeArg::Concat => Mode::Concat,
            ModeArg::ClosedBook => Mode::ClosedBook,
        }
    }
}

/// `--scoring`
#[derive(Clone, Copy, ValueEnum)]
pub enum ScoringArg {
    /// −log p(y|x).
    Nll,
    /// −log p(y|x) per answer token.
    #[value(name = "nll_token")]
    NllToken,
    /// −log p(y|x) per answer character.
    #[value(name = "nll_char")]
    NllChar,
    /// −log p(y|x) + log p_LM(y | closed-book prompt).
    #[value(name = "nll_comp")]
    NllComp,
}

impl From<ScoringArg> for Scoring {
    fn from(s: ScoringArg) -> Self {
        match s {
            ScoringArg::Nll => Scoring::Nll,
            ScoringArg::NllToken => Scoring::NllToken,
            ScoringArg::NllChar => Scoring::NllChar,
            ScoringArg::NllComp => Scoring::NllComp,
        }
    }
}

/// Where the models come from and how answers are scored (shared by `eval` and `ask`).
#[derive(Args)]
pub struct ModelArgs {
    /// A training run directory (`radit train --output-dir`): its fine-tuned models are used.
    #[arg(long, required_unless_present = "recipe", conflicts_with = "recipe")]
    pub(crate) checkpoint: Option<PathBuf>,
    /// A recipe: its base models and index are used.
    #[arg(long)]
    recipe: Option<PathBuf>,
    /// Override a recipe key (repeatable), e.g. `--set docstore.index=/data/index`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(crate) sets: Vec<String>,
    /// Use the recipe's base generator and query encoder even if the run fine-tuned them.
    #[arg(long)]
    pub(crate) base: bool,
    /// How chunks are used.
    #[arg(long, value_enum, default_value = "ensemble")]
    pub(crate) mode: ModeArg,
    /// How candidate answers are ranked.
    #[arg(long, value_enum, default_value = "nll")]
    scoring: ScoringArg,
    /// τ_R of p_R(c|x) = softmax(E_q(x)·E_d(c) / τ_R).
    #[arg(long, default_value_t = radit_eval::DEFAULT_RETRIEVER_TEMPERATURE)]
    retriever_temperature: f64,
    /// Most new tokens per decoded answer (default: the recipe's `data.answer_tokens`).
    #[arg(long)]
    answer_tokens: Option<usize>,
    /// Longest prompt + answer in tokens (default: the recipe's `data.max_len`).
    #[arg(long)]
    pub(crate) max_len: Option<usize>,
    /// Sequences per generation / scoring batch.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
}

/// Arguments of `radit eval`.
#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    models: ModelArgs,
    /// Evaluation data (JSONL with `question`, `answers` and optional `choices`, or DPR
    /// TSV); default: the recipe's `data.dev`.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Evaluate at most this many questions (0: all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Chunks per question (default: the recipe's `retriever.top_k`, as in training).
    #[arg(long)]
    k: Option<usize>,
    /// Where to write the JSON report (default: in the run directory, or the recipe's output
    /// directory, `eval-MODELS-MODE-SCORING-kK-DATA.json`: evaluations of different models,
    /// settings or data never share a file); with `--shard`, `X.json` becomes
    /// `X.shard-I-of-N.json`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed of the bootstrap confidence intervals.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Evaluate only this part of the questions, as `I/N` (task I of N, from 0) or `slurm`
    /// (from SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT); the report's default name ends
    /// in `.shard-I-of-N.json`, and `radit eval-merge` makes the whole report of the shards.
    #[arg(long, value_name = "I/N|slurm")]
    shard: Option<Shard>,
}

/// Arguments of `radit eval-merge`.
#[derive(Args)]
pub struct MergeArgs {
    /// The shard reports (`radit eval --shard I/N`), one per shard, in any order.
    #[arg(required = true)]
    parts: Vec<PathBuf>,
    /// Where to write the merged report (default: the shards' name without
    /// `.shard-I-of-N`, which is the name a whole evaluation would have written).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Arguments of `radit ask`.
#[derive(Args)]
pub struct AskArgs {
    /// The question.
    question: String,
    #[command(flatten)]
    models: ModelArgs,
    /// Chunks to read (default: the recipe's `retriever.top_k`).
    #[arg(long)]
    k: Option<usize>,
    /// An answer option (repeat for a multiple-choice question).
    #[arg(long = "choice")]
    choices: Vec<String>,
}

impl ModelArgs {
    /// Where the models come from.
    pub(crate) fn source(&self) -> Result<ModelSource> {
        Ok(match (&self.checkpoint, &self.recipe) {
            (Some(dir), _) => ModelSource::Run {
                dir: dir.clone(),
                base: self.base,
            },
            (None, Some(recipe)) => ModelSource::Recipe(recipe.clone()),
            (None, None) => bail!("give --checkpoint RUN_DIR or --recipe RECIPE"),
        })
    }

    pub(crate) fn load(&self, retrieval: bool, device: &Device) -> Result<EvalModels> {
        Ok(EvalModels::load(
            &self.source()?,
            &self.sets,
            retrieval,
            device,
        )?)
    }
}

/// Fails fast on settings that cannot work, before any model is loaded.
pub(crate) fn precheck(args: &ModelArgs, k: Option<usize>) -> Result<()> {
    if k == Some(0) {
        bail!("--k must be at least 1");
    }
    EvalConfig {
        k: 1,
        retriever_temperature: args.retriever_temperature,
        answer_tokens: args.answer_tokens.unwrap_or(1),
        batch_size: args.batch_size,
        ..EvalConfig::default()
    }
    .validate()?;
    Ok(())
}

/// The chunks per question: `--k`, else the recipe's `retriever.top_k`, capped at the index
/// size (more cannot be retrieved; asking for them would only make every step slower).
pub(crate) fn chunks_per_question(loaded: &EvalModels, k: Option<usize>) -> usize {
    let k = k.unwrap_or(loaded.recipe.retriever.top_k);
    match &loaded.retrieval {
        Some(r) if k > r.store.len() => {
            eprintln!(
                "warning: --k {k} exceeds the {} chunks of the index; using {}",
                r.store.len(),
                r.store.len().max(1)
            );
            r.store.len().max(1)
        }
        _ => k,
    }
}

/// A file-name part: lowercase letters, digits and dashes.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

pub(crate) fn eval_config(args: &ModelArgs, recipe: &Recipe, k: usize, seed: u64) -> EvalConfig {
    EvalConfig {
        mode: args.mode.into(),
        scoring: args.scoring.into(),
        k,
        retriever_temperature: args.retriever_temperature,
        answer_tokens: args.answer_tokens.unwrap_or(recipe.data.answer_tokens),
        batch_size: args.batch_size,
        bootstrap_seed: seed,
        ..EvalConfig::default()
    }
}

/// Runs `radit eval`.
pub fn eval(args: &EvalArgs, device: &Device) -> Result<()> {
    let m = &args.models;
    let mode: Mode = m.mode.into();
    precheck(m, args.k)?;
    let loaded = m.load(mode != Mode::ClosedBook, device)?;
    let data = match (&args.data, &loaded.recipe.data.dev) {
        (Some(d), _) | (None, Some(d)) => d.clone(),
        (None, None) => bail!("give --data FILE (the recipe has no data.dev)"),
    };
    let mut examples: Vec<Example> = load_examples(&data, args.limit)?;
    if examples.is_empty() {
        bail!("{}: no examples", data.display());
    }
    let shard = args.shard.filter(|s| !s.is_whole()).map(|s| {
        // Whole question groups: each shard's batches are the whole evaluation's.
        let range = s.block_range(examples.len(), radit_eval::QUESTION_GROUP);
        ShardInfo {
            index: s.index,
            count: s.count,
            first: range.start,
            end: range.end,
            total: examples.len(),
        }
    });
    if let Some(s) = shard {
        examples = examples.drain(s.first..s.end).collect();
    }
    let k = chunks_per_question(&loaded, args.k);
    let config = eval_config(m, &loaded.recipe, k, args.seed);
    // `.shard-I-of-N` in a shard's file name (every task of an array job gets one --out).
    let part = match args.shard.filter(|s| !s.is_whole()) {
        Some(s) => format!(".{}", s.file_tag()),
        None => String::new(),
    };
    let out = match &args.out {
        Some(o) if part.is_empty() => o.clone(),
        Some(o) => {
            let stem = o.file_stem().map_or("eval".into(), |s| s.to_string_lossy());
            o.with_file_name(format!("{stem}{part}.json"))
        }
        None => {
            let data_name = data
                .file_stem()
                .map_or("data".into(), |s| s.to_string_lossy());
            let name = format!(
                "eval-{}-{mode}-{}-k{k}-{}{part}.json",
                slug(&loaded.label),
                config.scoring,
                slug(&data_name)
            );
            loaded
                .run
                .clone()
                .unwrap_or_else(|| RunDir::new(&loaded.recipe.output_dir))
                .eval_report(&name)
        }
    };
    eprintln!(
        "evaluating {} question(s) from {}: models {}, mode {mode}, scoring {}, k {}",
        examples.len(),
        data.display(),
        loaded.label,
        config.scoring,
        config.k
    );
    if let Some(s) = shard {
        eprintln!(
            "shard {}/{}: questions {}..{} of {}",
            s.index, s.count, s.first, s.end, s.total
        );
    }
    let info = loaded.run_info(Some(&data));
    let mut report: EvalReport = loaded.with_evaluator(config, m.max_len, |ev| {
        let mut progress = |done: usize, total: usize| eprintln!("  {done}/{total} questions");
        let first = shard.map_or(0, |s| s.first);
        Ok(ev.evaluate_from(first, &examples, info, &mut progress)?)
    })?;
    report.shard = shard;
    write_report(&report, &out)?;
    eprintln!("wrote {} ({:.1} s)", out.display(), report.seconds);
    print!("{}", report.to_markdown());
    Ok(())
}

/// Writes a report as pretty JSON, atomically (a killed job leaves the old file or none).
fn write_report(report: &EvalReport, out: &std::path::Path) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(report).context("serializing the report")?;
    radit_util::fs::atomic_write(out, json.as_bytes())?;
    Ok(())
}

/// Runs `radit eval-merge`: the shard reports of one evaluation as one report.
pub fn merge(args: &MergeArgs) -> Result<()> {
    let parts = args
        .parts
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str::<EvalReport>(&text)
                .with_context(|| format!("{} is not a `radit eval` report", path.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let merged = radit_eval::merge_reports(parts)?;
    let out = match &args.out {
        Some(out) => out.clone(),
        None => whole_name(&args.parts[0])?,
    };
    write_report(&merged, &out)?;
    eprintln!(
        "wrote {} ({} questions from {} shards)",
        out.display(),
        merged.questions.len(),
        args.parts.len()
    );
    print!("{}", merged.to_markdown());
    Ok(())
}

/// `eval-x.shard-0-of-4.json` → `eval-x.json`.
fn whole_name(part: &std::path::Path) -> Result<PathBuf> {
    let name = part.file_name().map(|n| n.to_string_lossy().into_owned());
    let whole = name.as_deref().and_then(|n| {
        let (stem, tag) = n.strip_suffix(".json")?.rsplit_once('.')?;
        Shard::from_file_tag(tag).map(|_| format!("{stem}.json"))
    });
    match whole {
        Some(w) => Ok(part.with_file_name(w)),
        None => bail!(
            "{}: not named like a shard report (`NAME.shard-I-of-N.json`); give --out",
            part.display()
        ),
    }
}

/// A typed question as the evaluator takes it: no gold answers, evaluation key 0 (its prompt
/// markers), as `radit ask` and `radit review` answer it.
pub(crate) fn asked(question: &str, choices: &[String]) -> Example {
    Example {
        id: "ask".into(),
        question: question.to_string(),
        answers: Vec::new(),
        context: None,
        choices: choices.to_vec(),
    }
}

/// Runs `radit ask`.
pub fn ask(args: &AskArgs, device: &Device) -> Result<()> {
    let m = &args.models;
    let mode: Mode = m.mode.into();
    let question = args.question.trim();
    if question.is_empty() {
        bail!("the question is empty");
    }
    precheck(m, args.k)?;
    let loaded = m.load(mode != Mode::ClosedBook, device)?;
    let k = chunks_per_question(&loaded, args.k);
    let config = eval_config(m, &loaded.recipe, k, 0);
    let example = asked(question, &args.choices);
    let record = loaded.with_evaluator(config, m.max_len, |ev| Ok(ev.answer(0, &example)?))?;
    println!("answer: {}", record.prediction);
    match record.log_p {
        Some(lp) => println!(
            "log p(answer|question) = {lp:.4} (mode {mode}, models: {})",
            loaded.label
        ),
        None => println!("the answer could not be scored ({mode})"),
    }
    if record.candidates.len() > 1 {
        println!("candidates (score: {}, lower is better):", m.scoring_name());
        for c in &record.candidates {
            let score = c.score.map_or("–".into(), |s| format!("{s:.4}"));
            println!("  {score}  {}", c.text);
        }
    }
    if !record.chunks.is_empty() {
        println!();
        println!("| rank | chunk | p_R | log p_LM(answer|chunk) | share of p(answer) | text |");
        println!("|---|---|---|---|---|---|");
        let store = loaded.retrieval.as_ref().map(|r| &r.store);
        for (rank, c) in record.chunks.iter().enumerate() {
            let text = match store.map(|s| s.chunk(c.id)) {
                Some(Ok(chunk)) => snippet(&chunk.background_text(), 80),
                _ => c.title.clone(),
            };
            let opt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.4}"));
            println!(
                "| {} | {} | {:.4} | {} | {} | {} |",
                rank + 1,
                c.id,
                c.weight,
                opt(c.log_p_lm),
                opt(c.contribution),
                text.replace('|', "/")
            );
        }
    }
    Ok(())
}

impl ModelArgs {
    fn scoring_name(&self) -> &'static str {
        Scoring::from(self.scoring).name()
    }
}

/// The first `max` characters of `text` on one line, with an ellipsis when cut.
fn snippet(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}…", flat.chars().take(max).collect::<String>())
    }
}
