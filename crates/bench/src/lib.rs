//! `radit-bench`: the fixed workloads of `radit bench`, for comparing throughput with peers
//! (DESIGN.md, "Benchmarks").
//!
//! Each workload has a PyTorch peer in `scripts/` (`bench_lmft_peer.py`, `bench_rft_peer.py`,
//! `bench_lsr_peer.py`, `bench_generate_peer.py`) with the same arguments and the same keys in
//! its `--json` line; `scripts/bench.sh WORKLOAD` runs both back to back.
//!
//! The clap types ([`BenchCommand`] and the specs it holds) live here rather than in the
//! binary: their flags are the contract with the peers and `scripts/bench.sh`, so they are
//! defined once, next to the code that reads them, and `radit bench` only flattens them.
//! [`run`] prints the table (or the `--json` line) on stdout and per-step progress on stderr.

#![deny(missing_docs)]

use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use clap::{Args, Subcommand};
use radit_data::{BuildOutcome, Example, ExampleKey, InstanceBuilder, InstanceConfig, Tokenize};
use radit_generator::trainer::{BatchSource, LmObjective};
use radit_generator::{
    answer_nll, target_log_likelihood, GeneratorError, LmScorer, LmTargets, ScoreRequest,
};
use radit_models::generate::SplitMix64;
use radit_models::layers::to_host;
use radit_models::{
    generate, random_bert, random_llama, Bert, BertConfig, GenerationConfig, KvCache, Llama,
    LlamaConfig, ModelError, PaddingSide, Pooling, TokenBatch,
};
use radit_retriever::candidate_logits;
use radit_retriever::loss::{LossBatch, LossError, LossParams, LossRegistry, RetrieverLoss};
use radit_train::metrics::{MetricError, MetricLogger, MetricSink};
use radit_train::trainer::{
    train, BoxError, MicroBatchLoss, Objective, RunContext, TrainConfig, TrainError,
};
use serde_json::{json, Value};

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The flags do not describe a workload that can run (a zero size, a shape that does not
    /// divide); the message names the flags.
    #[error("{0}")]
    InvalidArgument(String),
    /// Building the random model of the workload failed.
    #[error("building the model")]
    Build(#[source] ModelError),
    /// A model operation (batching, forward, generation, reading a tensor back) failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The generator's loss or scoring failed.
    #[error(transparent)]
    Generator(#[from] GeneratorError),
    /// The retriever loss could not be built or evaluated.
    #[error(transparent)]
    Loss(#[from] LossError),
    /// A training step's loss is NaN or infinite: the timings would not be of a real step.
    #[error("step {step}: loss is {loss}")]
    NonFiniteLoss {
        /// The step (warmup steps included, from 0).
        step: usize,
        /// The loss value.
        loss: f32,
    },
    /// The trainer failed (its configuration, a step, or its scratch run directory).
    #[error("the trainer: {0}")]
    Train(String),
    /// Generation stopped early, so the tokens/s would count tokens that were not produced.
    #[error("batch {batch}: generated {generated} tokens, expected {expected}")]
    ShortGeneration {
        /// The batch size.
        batch: usize,
        /// Tokens a row received.
        generated: usize,
        /// `--new-tokens`.
        expected: usize,
    },
}

type Result<T, E = BenchError> = std::result::Result<T, E>;

/// The error of a flag check.
fn invalid(message: &str) -> BenchError {
    BenchError::InvalidArgument(message.to_owned())
}

/// `radit bench ...`: one workload and how to measure it.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// W1: LM-ft training step (random Llama, answer-only loss, AdamW); tokens/s.
    LmFt(LmFtSpec),
    /// W2: R-ft training step (random MiniLM-L6-shaped BERT, mean pool + L2 norm, KL to a
    /// fixed target over 10 frozen documents per query with the `lsr` loss, AdamW); queries/s.
    RFt(RFtSpec),
    /// W3: LSR scoring (random W1 Llama, no grad, answer log-likelihood of chunk + question +
    /// answer sequences, 16 per forward); sequences/s.
    Lsr(LsrSpec),
    /// W5: greedy generation with the KV cache (random W1 Llama, 64 new tokens after a
    /// 128-token prompt, batch 1 and 8); new tokens/s.
    Generate(GenerateSpec),
    /// The CPU's f32 FMA peak: independent fused multiply-adds on every thread, the ceiling
    /// W1's GFLOP/s is read against.
    Peak(PeakSpec),
}

/// The FMA peak measurement.
#[derive(Args)]
pub struct PeakSpec {
    /// Seconds of FMAs per measured repetition (about).
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Measured repetitions (the best counts: a peak is what the machine can do).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    // Threads and output.
    #[command(flatten)]
    common: CommonArgs,
}

/// Options every workload takes.
#[derive(Args)]
pub struct CommonArgs {
    /// CPU threads (sets RAYON_NUM_THREADS before the first tensor op); default: rayon's.
    #[arg(long)]
    threads: Option<usize>,
    /// Print one JSON line instead of the table.
    #[arg(long)]
    json: bool,
}

/// The W1 Llama shape, shared by W1, W3 and W5 (the peers' defaults).
#[derive(Args)]
pub struct LlamaArgs {
    /// Hidden size.
    #[arg(long, default_value_t = 512)]
    hidden: usize,
    /// Decoder layers.
    #[arg(long, default_value_t = 8)]
    layers: usize,
    /// Attention heads (and KV heads).
    #[arg(long, default_value_t = 8)]
    heads: usize,
    /// FFN size.
    #[arg(long, default_value_t = 1376)]
    ffn: usize,
    /// Vocabulary size.
    #[arg(long, default_value_t = 32000)]
    vocab: usize,
}

/// Warmup and measured training steps, shared by W1 and W2.
#[derive(Args)]
pub struct StepArgs {
    /// Measured steps (after the warmup steps).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Unmeasured warmup steps.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Also time forward, backward and optimizer step separately, and a no-grad forward.
    #[arg(long)]
    breakdown: bool,
}

/// Warmup and measured repetitions of a no-grad workload, shared by W3 and W5.
#[derive(Args)]
pub struct RepeatArgs {
    /// Measured repetitions (passes or generations).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Unmeasured warmup repetitions.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
}

/// The W1 workload and how to measure it.
#[derive(Args)]
pub struct LmFtSpec {
    /// Rows per batch.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Tokens per row.
    #[arg(long, default_value_t = 256)]
    seq: usize,
    /// Loss on the last this many positions of each row.
    #[arg(long, default_value_t = 64)]
    answer: usize,
    // The model shape.
    #[command(flatten)]
    model: LlamaArgs,
    // Steps and breakdown.
    #[command(flatten)]
    run: StepArgs,
    // Threads and output.
    #[command(flatten)]
    common: CommonArgs,
}

/// The W2 workload and how to measure it.
#[derive(Args)]
pub struct RFtSpec {
    /// Queries per step.
    #[arg(long, default_value_t = 16)]
    queries: usize,
    /// Tokens per query (no padding).
    #[arg(long, default_value_t = 64)]
    seq: usize,
    /// Frozen documents per query.
    #[arg(long, default_value_t = 10)]
    docs: usize,
    /// Retriever temperature τ_R.
    #[arg(long, default_value_t = 0.1)]
    tau_r: f64,
    /// Temperature of the fixed target distribution's random logits.
    #[arg(long, default_value_t = 0.01)]
    target_tau: f64,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-5)]
    lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f32,
    /// Hidden size.
    #[arg(long, default_value_t = 384)]
    hidden: usize,
    /// Encoder layers.
    #[arg(long, default_value_t = 6)]
    layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 12)]
    heads: usize,
    /// FFN size.
    #[arg(long, default_value_t = 1536)]
    ffn: usize,
    /// Vocabulary size.
    #[arg(long, default_value_t = 30522)]
    vocab: usize,
    /// Learned positions.
    #[arg(long, default_value_t = 512)]
    max_positions: usize,
    /// Seed of the weights and the inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    // Steps and breakdown.
    #[command(flatten)]
    run: StepArgs,
    // Threads and output.
    #[command(flatten)]
    common: CommonArgs,
}

/// The W3 workload and how to measure it.
#[derive(Args)]
pub struct LsrSpec {
    /// Sequences scored per pass.
    #[arg(long, default_value_t = 160)]
    sequences: usize,
    /// Sequences scored per forward.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Chunk tokens at the start of each sequence.
    #[arg(long, default_value_t = 128)]
    chunk: usize,
    /// Question tokens after the chunk.
    #[arg(long, default_value_t = 32)]
    question: usize,
    /// Answer tokens at the end (the scored ones).
    #[arg(long, default_value_t = 32)]
    answer: usize,
    /// Seed of the weights and the inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    // The model shape.
    #[command(flatten)]
    model: LlamaArgs,
    // Passes.
    #[command(flatten)]
    run: RepeatArgs,
    // Threads and output.
    #[command(flatten)]
    common: CommonArgs,
}

/// The W5 workload and how to measure it.
#[derive(Args)]
pub struct GenerateSpec {
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    batches: Vec<usize>,
    /// Prompt tokens per row.
    #[arg(long, default_value_t = 128)]
    prompt: usize,
    /// New tokens per row (greedy, no stop tokens: exactly this many).
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Seed of the weights and the prompts.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also time the prefill (the prompt's forward into an empty KV cache) alone.
    #[arg(long)]
    breakdown: bool,
    // The model shape.
    #[command(flatten)]
    model: LlamaArgs,
    // Generations per batch size.
    #[command(flatten)]
    run: RepeatArgs,
    // Threads and output.
    #[command(flatten)]
    common: CommonArgs,
}

/// Runs one `radit bench` command on `device`: the table (or `--json` line) goes to stdout.
///
/// `--threads` sets `RAYON_NUM_THREADS`, which only takes effect if no tensor op has run yet
/// in this process (rayon's global pool is built once).
pub fn run(command: BenchCommand, device: &Device) -> Result<(), BenchError> {
    let common = match &command {
        BenchCommand::LmFt(s) => &s.common,
        BenchCommand::RFt(s) => &s.common,
        BenchCommand::Lsr(s) => &s.common,
        BenchCommand::Generate(s) => &s.common,
        BenchCommand::Peak(s) => &s.common,
    };
    if let Some(n) = common.threads {
        // Before the first tensor op, so rayon's global pool picks it up.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    match command {
        BenchCommand::LmFt(spec) => lm_ft(&spec, device),
        BenchCommand::RFt(spec) => r_ft(&spec, device),
        BenchCommand::Lsr(spec) => lsr(&spec, device),
        BenchCommand::Generate(spec) => generate_bench(&spec, device),
        BenchCommand::Peak(spec) => peak(&spec, device),
    }
}

impl CommonArgs {
    /// The thread count as reported: the flag, else RAYON_NUM_THREADS, else "default".
    fn threads_label(&self) -> String {
        self.threads.map_or_else(
            || std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into()),
            |n| n.to_string(),
        )
    }

    /// The JSON line's first keys: which workload, which implementation, where.
    fn json_head(&self, bench: &str, device: &Device) -> Value {
        json!({
            "bench": bench,
            "impl": "radit",
            "device": format!("{device:?}"),
            "threads": self.threads_label(),
        })
    }

    /// The first line of the table.
    fn title(&self, workload: &str, device: &Device) -> String {
        format!(
            "{workload} (radit, {device:?}, threads {})",
            self.threads_label()
        )
    }
}

impl LlamaArgs {
    /// The Llama config of the peers (untied embeddings, as transformers' default).
    fn config(&self, positions: usize) -> Result<LlamaConfig> {
        if self.heads == 0 || !self.hidden.is_multiple_of(self.heads) {
            return Err(invalid("--hidden must be a multiple of --heads"));
        }
        if self.vocab < 2 {
            return Err(invalid("--vocab must be at least 2"));
        }
        Ok(LlamaConfig {
            max_position_embeddings: positions.max(2048),
            // transformers' LlamaConfig default, as in the PyTorch peers.
            tie_word_embeddings: false,
            ..LlamaConfig::new(
                self.vocab,
                self.hidden,
                self.ffn,
                self.layers,
                self.heads,
                self.heads,
            )
        })
    }

    fn json(&self) -> Value {
        json!({
            "hidden": self.hidden, "layers": self.layers, "heads": self.heads, "ffn": self.ffn,
            "vocab": self.vocab,
        })
    }

    fn describe(&self) -> String {
        format!(
            "hidden {} layers {} heads {} ffn {} vocab {}",
            self.hidden, self.layers, self.heads, self.ffn, self.vocab
        )
    }
}

/// Adds the keys of each object in `parts` to the object `head`.
fn merge(mut head: Value, parts: impl IntoIterator<Item = Value>) -> Value {
    if let Value::Object(map) = &mut head {
        for part in parts {
            if let Value::Object(more) = part {
                map.extend(more);
            }
        }
    }
    head
}

/// Deterministic pseudo-random token ids in `1..vocab` (never the pad id 0); seed 0 gives
/// the tokens W1 has always used.
struct TokenRng(u64);

impl TokenRng {
    fn new(seed: u64) -> Self {
        let state = 0x2545_F491_4F6C_DD1Du64 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Self(if state == 0 { 1 } else { state })
    }

    fn rows(&mut self, n: usize, len: usize, vocab: usize) -> Vec<Vec<u32>> {
        (0..n)
            .map(|_| {
                (0..len)
                    .map(|_| {
                        let s = &mut self.0;
                        *s ^= *s << 13;
                        *s ^= *s >> 7;
                        *s ^= *s << 17;
                        1 + (*s % (vocab as u64 - 1)) as u32
                    })
                    .collect()
            })
            .collect()
    }
}

/// Standard normal floats.
fn normals(rng: &mut SplitMix64, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.next_normal() as f32).collect()
}

/// Answer mask marking the last `answer` tokens of every `seq`-token row.
fn tail_mask(rows: usize, seq: usize, answer: usize) -> Vec<u8> {
    let mut mask = vec![0u8; rows * seq];
    for row in mask.chunks_mut(seq) {
        row[seq - answer..].fill(1);
    }
    mask
}

/// Best and median of a set of timings.
#[derive(Clone, Copy)]
struct Stats {
    min: f64,
    median: f64,
}

impl Stats {
    fn of(v: &[f64]) -> Self {
        Self {
            min: min_of(v),
            median: median_of(v),
        }
    }
}

fn secs_list(v: &[f64]) -> String {
    v.iter()
        .map(|t| format!("{t:.3}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `f` `warmup + repeats` times and returns the measured wall times; unless `quiet`,
/// reports each run on stderr as `{kind} {what} {i}: T s  (items/T unit)`.
fn timed_runs(
    warmup: usize,
    repeats: usize,
    quiet: bool,
    what: &str,
    items: f64,
    unit: &str,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Vec<f64>> {
    let mut times = Vec::with_capacity(repeats);
    for i in 0..warmup + repeats {
        let start = Instant::now();
        f()?;
        let t = start.elapsed().as_secs_f64();
        if i >= warmup {
            times.push(t);
        }
        if !quiet {
            let kind = if i < warmup { "warmup" } else { "measured" };
            eprintln!("{kind} {what} {i}: {t:.3} s  ({:.1} {unit})", items / t);
        }
    }
    Ok(times)
}

/// Per-step phase times in seconds (forward/backward/optimizer only with `--breakdown`).
#[derive(Default, Clone, Copy)]
struct StepTimes {
    total: f64,
    forward: f64,
    backward: f64,
    optim: f64,
}

/// What a run of training steps measured, and how to report it.
struct StepRun {
    /// The unit of work (`tokens`, `queries`).
    unit: &'static str,
    /// Units per step.
    items: f64,
    times: Vec<StepTimes>,
    losses: Vec<f32>,
    /// No-grad forwards of the same loss (only with `--breakdown`).
    nograd: Vec<f64>,
}

/// Times `warmup + steps` training steps of `model`: the loss (`loss_fn`), its backward and
/// one AdamW step at `lr`; `sync` reads an updated parameter back so the update has run.
#[allow(clippy::too_many_arguments)]
fn train_steps<M: Module>(
    mut model: M,
    optim: AdamWConfig,
    lr: f64,
    s: &StepArgs,
    quiet: bool,
    unit: &'static str,
    items: f64,
    loss_fn: impl Fn(&M) -> Result<Tensor<1>>,
    sync: impl Fn(&M),
) -> Result<StepRun> {
    if s.steps == 0 {
        return Err(invalid("--steps must be at least 1"));
    }
    let mut optim = optim.init();
    let mut times = Vec::with_capacity(s.steps);
    let mut losses = Vec::with_capacity(s.steps);
    for step in 0..s.warmup + s.steps {
        let mut t = StepTimes::default();
        let start = Instant::now();
        let loss = loss_fn(&model)?;
        if s.breakdown {
            // Reading a value forces the forward to finish (it does anyway on an eager backend).
            let _ = loss.clone().into_scalar::<f32>();
            t.forward = start.elapsed().as_secs_f64();
        }
        let loss_value = loss.clone().into_scalar::<f32>();
        let b0 = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let o0 = Instant::now();
        t.backward = (o0 - b0).as_secs_f64();
        model = optim.step(lr, model, grads);
        // Make sure the update has run (flex is eager; this matters on async backends only,
        // and then only for this parameter).
        sync(&model);
        t.optim = o0.elapsed().as_secs_f64();
        t.total = start.elapsed().as_secs_f64();
        if !loss_value.is_finite() {
            return Err(BenchError::NonFiniteLoss {
                step,
                loss: loss_value,
            });
        }
        if step >= s.warmup {
            times.push(t);
            losses.push(loss_value);
        }
        if !quiet {
            eprintln!(
                "{} step {step}: {:.3} s  loss {loss_value:.4}",
                if step < s.warmup {
                    "warmup"
                } else {
                    "measured"
                },
                t.total
            );
        }
    }
    Ok(StepRun {
        unit,
        items,
        times,
        losses,
        nograd: Vec::new(),
    })
}

/// W1's data: the one fixed batch every step, as the peer trains on.
struct FixedBatch {
    batch: TokenBatch,
    answer_mask: Vec<u8>,
}

impl BatchSource for FixedBatch {
    fn next_batch(&mut self) -> Result<(TokenBatch, Vec<u8>), BoxError> {
        Ok((self.batch.clone(), self.answer_mask.clone()))
    }
    fn state(&self) -> Result<Vec<u8>, BoxError> {
        Ok(Vec::new())
    }
    fn restore(&mut self, _state: &[u8]) -> Result<(), BoxError> {
        Ok(())
    }
}

/// What the trainer logs each step: its loss and `train/{unit}_per_sec`, which is the step's
/// items over its wall time (objective, backward, clipping, optimizer), read back as seconds.
struct StepSink {
    throughput_key: String,
    items: f64,
    steps: std::sync::Arc<std::sync::Mutex<Vec<(f64, f32)>>>,
}

impl MetricSink for StepSink {
    fn name(&self) -> &str {
        "bench"
    }
    fn log_scalars(&mut self, _step: u64, scalars: &[(&str, f64)]) -> Result<(), MetricError> {
        let value = |key: &str| scalars.iter().find(|(n, _)| *n == key).map(|(_, v)| *v);
        if let (Some(loss), Some(rate)) = (value("train/loss"), value(&self.throughput_key)) {
            if let Ok(mut steps) = self.steps.lock() {
                steps.push((self.items / rate, loss as f32));
            }
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), MetricError> {
        Ok(())
    }
}

/// The AdamW settings of a benchmark's trainer, as its PyTorch peer sets them.
struct Optimizer {
    lr: f64,
    weight_decay: f64,
    /// `None`: burn's default (1e-5).
    epsilon: Option<f64>,
}

impl Optimizer {
    /// The same AdamW for a probe loop (`--breakdown`).
    fn config(&self) -> AdamWConfig {
        let c = AdamWConfig::new().with_weight_decay(self.weight_decay as f32);
        match self.epsilon {
            Some(e) => c.with_epsilon(e as f32),
            None => c,
        }
    }
}

/// Times `warmup + steps` steps of the real training loop (`radit_train::trainer::train`, as
/// `radit train` runs it: the objective, gradient accumulation, global-norm clipping, the
/// divergence guard, AdamW as `optimizer` says at a constant learning rate), in a scratch
/// run directory that holds its one final checkpoint (written after the last step, outside
/// the timings) and is removed afterwards.
#[allow(clippy::too_many_arguments)]
fn trainer_steps<M: Module>(
    model: M,
    objective: &mut dyn Objective<M>,
    optimizer: &Optimizer,
    s: &StepArgs,
    quiet: bool,
    unit: &'static str,
    items: f64,
) -> Result<StepRun> {
    if s.steps == 0 {
        return Err(invalid("--steps must be at least 1"));
    }
    let mut config = json!({
        "lr": optimizer.lr,
        "weight_decay": optimizer.weight_decay,
        "max_steps": s.warmup + s.steps,
        "schedule": { "kind": "constant" },
    });
    if let Some(epsilon) = optimizer.epsilon {
        config["optimizer"] = json!({ "kind": "adamw", "epsilon": epsilon });
    }
    let config: TrainConfig = serde_json::from_value(config)
        .map_err(|e| BenchError::Train(format!("the step configuration: {e}")))?;
    let steps = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut logger = MetricLogger::new();
    logger.add(Box::new(StepSink {
        throughput_key: format!("train/{}_per_sec", objective.unit()),
        items,
        steps: steps.clone(),
    }));
    let scratch = tempfile::Builder::new()
        .prefix("radit-bench-")
        .tempdir()
        .map_err(|e| BenchError::Train(format!("a scratch run directory: {e}")))?;
    let trained = train(
        model,
        objective,
        &config,
        RunContext {
            run_dir: scratch.path(),
            resume: false,
            extra_files: &[],
            logger: &mut logger,
            stop: None,
            evaluate: None,
        },
    );
    drop(scratch);
    trained.map_err(|e: TrainError| BenchError::Train(e.to_string()))?;
    let steps = steps.lock().map(|s| s.clone()).unwrap_or_default();
    let mut run = StepRun {
        unit,
        items,
        times: Vec::new(),
        losses: Vec::new(),
        nograd: Vec::new(),
    };
    for (i, (seconds, loss)) in steps.into_iter().enumerate() {
        if !quiet {
            let kind = if i < s.warmup { "warmup" } else { "measured" };
            eprintln!("{kind} trainer step {i}: {seconds:.3} s  loss {loss:.4}");
        }
        if i >= s.warmup {
            run.times.push(StepTimes {
                total: seconds,
                ..StepTimes::default()
            });
            run.losses.push(loss);
        }
    }
    Ok(run)
}

impl StepRun {
    /// Two no-grad runs of `f` (the same loss on the plain device), for the autodiff overhead.
    fn time_nograd(&mut self, mut f: impl FnMut() -> Result<()>) -> Result<()> {
        for _ in 0..2 {
            let start = Instant::now();
            f()?;
            self.nograd.push(start.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Takes the per-step phases of a probe loop's steps (same count), for `--breakdown`.
    fn phases_from(&mut self, probe: &StepRun) {
        for (t, p) in self.times.iter_mut().zip(&probe.times) {
            t.forward = p.forward;
            t.backward = p.backward;
            t.optim = p.optim;
        }
    }

    fn totals(&self) -> Vec<f64> {
        self.times.iter().map(|t| t.total).collect()
    }

    fn phase(&self, f: fn(&StepTimes) -> f64) -> f64 {
        median_of(&self.times.iter().map(f).collect::<Vec<_>>())
    }

    /// The step keys of the JSON line (the peers' names).
    fn json(&self, s: &StepArgs) -> Value {
        let totals = self.totals();
        let st = Stats::of(&totals);
        let mut v = json!({
            "warmup": s.warmup, "steps": s.steps,
            "step_s": totals,
            "step_min_s": st.min, "step_median_s": st.median,
            "loss_last": self.losses.last(),
        });
        v[format!("{}_per_s_best", self.unit)] = (self.items / st.min).into();
        v[format!("{}_per_s_median", self.unit)] = (self.items / st.median).into();
        if s.breakdown {
            v["forward_s"] = self.phase(|t| t.forward).into();
            v["backward_s"] = self.phase(|t| t.backward).into();
            v["optim_s"] = self.phase(|t| t.optim).into();
            v["nograd_forward_s"] = min_of(&self.nograd).into();
            // Per measured step, so a quiet step's phases can be read on a loaded machine.
            v["phases_s"] = self
                .times
                .iter()
                .map(|t| vec![t.forward, t.backward, t.optim])
                .collect::<Vec<_>>()
                .into();
        }
        v
    }

    /// The step lines of the table.
    fn print(&self, s: &StepArgs) {
        let totals = self.totals();
        let st = Stats::of(&totals);
        println!(
            "  steps    {} warmup, {} measured: {}",
            s.warmup,
            s.steps,
            secs_list(&totals)
        );
        println!("  step     min {:.3} s   median {:.3} s", st.min, st.median);
        println!(
            "  {}/s best {:.1}   median {:.1}",
            self.unit,
            self.items / st.min,
            self.items / st.median
        );
        if s.breakdown {
            println!(
                "  phases   forward {:.3} s   backward {:.3} s   optimizer {:.3} s   (medians)",
                self.phase(|t| t.forward),
                self.phase(|t| t.backward),
                self.phase(|t| t.optim)
            );
            println!(
                "  no-grad forward (same loss, plain device): {:.3} s",
                min_of(&self.nograd)
            );
        }
    }
}

fn lm_ft(s: &LmFtSpec, device: &Device) -> Result<()> {
    if s.answer == 0 || s.answer >= s.seq {
        return Err(invalid("--answer must be in 1..seq"));
    }
    if s.batch == 0 {
        return Err(invalid("--batch must be at least 1"));
    }
    let config = s.model.config(s.seq)?;
    let source = random_llama(&config, 0);
    let train_device = device.clone().autodiff();
    let model = Llama::load(&source, config.clone(), &train_device).map_err(BenchError::Build)?;

    let rows = TokenRng::new(0).rows(s.batch, s.seq, s.model.vocab);
    let batch = TokenBatch::from_rows(&rows, 0, PaddingSide::Right)?;
    let answer_mask = tail_mask(s.batch, s.seq, s.answer);
    let targets = LmTargets::from_answer_mask(&batch, &answer_mask)?;

    let items = (s.batch * s.seq) as f64;
    let mut objective = LmObjective::new(FixedBatch {
        batch: batch.clone(),
        answer_mask,
    });
    // The peer's AdamW: lr 1e-4, PyTorch's default weight decay 0.01.
    let optimizer = Optimizer {
        lr: 1e-4,
        weight_decay: 0.01,
        epsilon: None,
    };
    let mut run = trainer_steps(
        model.clone(),
        &mut objective,
        &optimizer,
        &s.run,
        s.common.json,
        "tokens",
        items,
    )?;
    if s.run.breakdown {
        // Phases cannot be read from the trainer; time them in a probe loop of the same loss
        // and optimizer (the step totals above are the trainer's).
        let probe = train_steps(
            model,
            optimizer.config(),
            optimizer.lr,
            &s.run,
            s.common.json,
            "tokens",
            items,
            |m: &Llama| Ok(answer_nll(m, &batch, &targets)?),
            |m: &Llama| {
                let _ = m.norm.weight.val().sum().into_scalar::<f32>();
            },
        )?;
        run.phases_from(&probe);
        let plain = Llama::load(&source, config.clone(), device)?;
        run.time_nograd(|| {
            let ll = target_log_likelihood(&plain, &batch, &targets)?;
            let _ = ll.sum().into_scalar::<f32>();
            Ok(())
        })?;
    }

    let flops = lm_ft_step_flops(&s.model, s.batch, s.seq, s.answer);
    let median_step = median_of(&run.totals());
    if s.common.json {
        let shape = json!({
            "batch": s.batch, "seq": s.seq, "answer": s.answer,
            "gemm_gflop_per_step": flops / 1e9,
            "gemm_gflops_median": flops / median_step / 1e9,
        });
        let v = merge(
            s.common.json_head("lm-ft", device),
            [s.model.json(), shape, run.json(&s.run)],
        );
        println!("{v}");
    } else {
        println!("{}", s.common.title("W1 lm-ft", device));
        println!(
            "  config   {}; batch {} x seq {}, loss on last {}",
            s.model.describe(),
            s.batch,
            s.seq,
            s.answer
        );
        run.print(&s.run);
        println!(
            "  GEMM     {:.1} GFLOP per step, {:.1} GFLOP/s at the median step",
            flops / 1e9,
            flops / median_step / 1e9
        );
    }
    Ok(())
}

/// The constant inputs of the W2 loss on one device.
struct RftInputs {
    /// Frozen unit document embeddings `[queries, docs, hidden]`.
    docs: Tensor<3>,
    /// Random logits whose `log_softmax(· / target_tau)` is the target distribution.
    target_logits: Tensor<2>,
    /// Ones `[queries, docs]` (the `lsr` loss's token counts; unused by its `logprob` signal).
    ones: Tensor<2>,
}

impl RftInputs {
    fn new(docs: &[f32], target: &[f32], s: &RFtSpec, device: &Device) -> Self {
        let (q, d, h) = (s.queries, s.docs, s.hidden);
        Self {
            docs: Tensor::from_data(TensorData::new(docs.to_vec(), [q, d, h]), device),
            target_logits: Tensor::from_data(TensorData::new(target.to_vec(), [q, d]), device),
            ones: Tensor::ones([q, d], device),
        }
    }

    /// `lsr`'s KL(target ‖ p_R) for the queries in `batch`, with
    /// `p_R = softmax(E_q(x) · d / τ_R)` over each query's documents.
    fn loss(
        &self,
        model: &Bert,
        batch: &TokenBatch,
        loss: &dyn RetrieverLoss,
        tau_r: f64,
    ) -> Result<Tensor<1>> {
        let q = model.embed(batch, Pooling::Mean, true)?;
        let scores = candidate_logits(q, self.docs.clone(), tau_r);
        Ok(loss.loss(&LossBatch {
            retriever_logits: scores,
            lm_logprob: self.target_logits.clone(),
            answer_tokens: self.ones.clone(),
            loo_logprob: None,
            positive: None,
            human: None,
            human_weight: 0.0,
        })?)
    }
}

/// W2's data: the same queries and frozen documents every step, as the peer trains on; the
/// loss is R-ft's (query embedding, [`candidate_logits`], the registry's `lsr`).
struct FixedQueries<'a> {
    inputs: &'a RftInputs,
    batch: &'a TokenBatch,
    loss: &'a dyn RetrieverLoss,
    tau_r: f64,
}

impl Objective<Bert> for FixedQueries<'_> {
    fn next_loss(&mut self, model: &Bert, _step: u64) -> Result<MicroBatchLoss, BoxError> {
        Ok(MicroBatchLoss {
            loss: self.inputs.loss(model, self.batch, self.loss, self.tau_r)?,
            items: self.batch.batch_size as u64,
        })
    }
    fn state(&self) -> Result<Vec<u8>, BoxError> {
        Ok(Vec::new())
    }
    fn restore(&mut self, _state: &[u8]) -> Result<(), BoxError> {
        Ok(())
    }
    fn unit(&self) -> &'static str {
        "queries"
    }
}

fn r_ft(s: &RFtSpec, device: &Device) -> Result<()> {
    if s.queries == 0 || s.seq == 0 || s.docs == 0 {
        return Err(invalid("--queries, --seq and --docs must be at least 1"));
    }
    if s.seq > s.max_positions {
        return Err(invalid("--seq must be at most --max-positions"));
    }
    if s.heads == 0 || !s.hidden.is_multiple_of(s.heads) {
        return Err(invalid("--hidden must be a multiple of --heads"));
    }
    if s.vocab < 2 {
        return Err(invalid("--vocab must be at least 2"));
    }
    if !(s.tau_r > 0.0 && s.target_tau > 0.0) {
        return Err(invalid("--tau-r and --target-tau must be positive"));
    }
    let config = BertConfig {
        vocab_size: s.vocab,
        hidden_size: s.hidden,
        num_hidden_layers: s.layers,
        num_attention_heads: s.heads,
        intermediate_size: s.ffn,
        max_position_embeddings: s.max_positions,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        pad_token_id: 0,
    };
    let source = random_bert(&config, s.seed);
    let train_device = device.clone().autodiff();
    let model = Bert::load(&source, config.clone(), &train_device).map_err(BenchError::Build)?;

    let rows = TokenRng::new(s.seed).rows(s.queries, s.seq, s.vocab);
    let batch = TokenBatch::from_rows(&rows, 0, PaddingSide::Right)?;
    let mut rng = SplitMix64::new(s.seed ^ 0xD0C5);
    let mut docs = normals(&mut rng, s.queries * s.docs * s.hidden);
    for v in docs.chunks_mut(s.hidden) {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= norm);
    }
    let target = normals(&mut rng, s.queries * s.docs);
    // The real R-ft loss: lsr on log-probabilities, Atlas' direction KL(target ‖ p_R).
    let params = LossParams(
        [
            ("signal".to_owned(), json!("logprob")),
            ("temperature".to_owned(), json!(s.target_tau)),
            ("direction".to_owned(), json!("target_retriever")),
        ]
        .into_iter()
        .collect(),
    );
    let loss = LossRegistry::builtin().build("lsr", &params)?;
    let inputs = RftInputs::new(&docs, &target, s, &train_device);

    // PyTorch's AdamW epsilon, as in the peer.
    let optimizer = Optimizer {
        lr: s.lr,
        weight_decay: f64::from(s.weight_decay),
        epsilon: Some(1e-8),
    };
    let mut objective = FixedQueries {
        inputs: &inputs,
        batch: &batch,
        loss: loss.as_ref(),
        tau_r: s.tau_r,
    };
    let mut run = trainer_steps(
        model.clone(),
        &mut objective,
        &optimizer,
        &s.run,
        s.common.json,
        "queries",
        s.queries as f64,
    )?;
    if s.run.breakdown {
        let probe = train_steps(
            model,
            optimizer.config(),
            optimizer.lr,
            &s.run,
            s.common.json,
            "queries",
            s.queries as f64,
            |m: &Bert| inputs.loss(m, &batch, loss.as_ref(), s.tau_r),
            |m: &Bert| {
                let _ = m
                    .embeddings
                    .layer_norm
                    .weight
                    .val()
                    .sum()
                    .into_scalar::<f32>();
            },
        )?;
        run.phases_from(&probe);
        let plain = Bert::load(&source, config, device)?;
        let plain_inputs = RftInputs::new(&docs, &target, s, device);
        run.time_nograd(|| {
            let l = plain_inputs.loss(&plain, &batch, loss.as_ref(), s.tau_r)?;
            let _ = l.into_scalar::<f32>();
            Ok(())
        })?;
    }

    if s.common.json {
        let shape = json!({
            "hidden": s.hidden, "layers": s.layers, "heads": s.heads, "ffn": s.ffn,
            "vocab": s.vocab, "queries": s.queries, "seq": s.seq, "docs": s.docs,
            "tau_r": s.tau_r, "seed": s.seed,
        });
        let v = merge(
            s.common.json_head("r-ft", device),
            [shape, run.json(&s.run)],
        );
        println!("{v}");
    } else {
        println!("{}", s.common.title("W2 r-ft", device));
        println!(
            "  config   hidden {} layers {} heads {} ffn {} vocab {}; {} queries x seq {}, \
             {} docs/query, tau_r {}",
            s.hidden, s.layers, s.heads, s.ffn, s.vocab, s.queries, s.seq, s.docs, s.tau_r
        );
        run.print(&s.run);
    }
    Ok(())
}

fn lsr(s: &LsrSpec, device: &Device) -> Result<()> {
    let seq = s.chunk + s.question + s.answer;
    if s.answer == 0 || s.answer >= seq {
        return Err(invalid(
            "--answer must be at least 1, with --chunk + --question at least 1",
        ));
    }
    if s.sequences == 0 || s.batch == 0 {
        return Err(invalid("--sequences and --batch must be at least 1"));
    }
    if s.run.repeats == 0 {
        return Err(invalid("--repeats must be at least 1"));
    }
    let config = s.model.config(seq)?;
    let source = random_llama(&config, s.seed);
    let model = Llama::load(&source, config, device).map_err(BenchError::Build)?;

    // The peer's random tokens, as (chunk, question, answer) texts of id words; the answer's
    // last token is the EOS the instance builder appends.
    let eos = (s.model.vocab - 1) as u32;
    let words = |ids: &[u32]| ids.iter().map(|id| format!("t{id} ")).collect::<String>();
    let rows = TokenRng::new(s.seed).rows(s.sequences, seq, s.model.vocab);
    let examples: Vec<(Example, String)> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let (chunk, rest) = row.split_at(s.chunk);
            let (question, answer) = rest.split_at(s.question);
            let example = Example {
                id: format!("w3:{i}"),
                question: words(question),
                answers: vec![words(&answer[..answer.len() - 1])],
                context: None,
                choices: Vec::new(),
            };
            (example, words(chunk))
        })
        .collect();
    let requests: Vec<ScoreRequest<'_>> = examples
        .iter()
        .enumerate()
        .map(|(i, (example, chunk))| ScoreRequest {
            key: ExampleKey {
                dataset: 0,
                example: i,
            },
            example,
            background: Some(chunk.clone()),
        })
        .collect();
    let builder = InstanceBuilder::new(
        IdWords { eos },
        InstanceConfig {
            max_len: seq,
            add_bos: false,
            seed: s.seed,
        },
    )
    .map_err(|e| invalid(&e.to_string()))?;
    // The workload's shape, checked on the instances the scorer will build.
    for r in &requests {
        let built = builder
            .instance(r.key, r.example, None, r.background.as_deref())
            .map_err(|e| invalid(&e.to_string()))?;
        let BuildOutcome::Built(instance) = built else {
            return Err(invalid("a W3 instance does not fit"));
        };
        let scored = instance.answer_mask.iter().filter(|&&m| m == 1).count();
        if instance.len() != seq || scored != s.answer || instance.background_tokens_dropped > 0 {
            return Err(invalid("a W3 instance does not have the workload's shape"));
        }
    }
    let scorer = LmScorer::new(&model, &builder, 0, "bench", s.batch);

    let n = s.sequences as f64;
    let mut scores = Vec::with_capacity(s.sequences);
    let times = timed_runs(
        s.run.warmup,
        s.run.repeats,
        s.common.json,
        "pass",
        n,
        "seq/s",
        || {
            scores.clear();
            for score in scorer.score(&requests, None)? {
                let score = score.ok_or_else(|| invalid("a W3 sequence was not scored"))?;
                scores.push(score.logprob);
            }
            Ok(())
        },
    )?;
    let st = Stats::of(&times);
    let score_mean = scores.iter().map(|&x| f64::from(x)).sum::<f64>() / scores.len() as f64;
    let score_first = scores.first().copied().unwrap_or(f32::NAN);

    if s.common.json {
        let v = merge(
            s.common.json_head("lsr", device),
            [
                s.model.json(),
                json!({
                    "sequences": s.sequences, "batch": s.batch, "seq": seq,
                    "chunk": s.chunk, "question": s.question, "answer": s.answer, "seed": s.seed,
                    "warmup": s.run.warmup, "repeats": s.run.repeats, "pass_s": times,
                    "pass_min_s": st.min, "pass_median_s": st.median,
                    "sequences_per_s_best": n / st.min, "sequences_per_s_median": n / st.median,
                    "score_mean": score_mean, "score_first": score_first,
                }),
            ],
        );
        println!("{v}");
    } else {
        println!("{}", s.common.title("W3 lsr", device));
        println!(
            "  config   {}; {} sequences x {seq} tokens ({}+{}+{}), {} per forward, score on last {}",
            s.model.describe(),
            s.sequences,
            s.chunk,
            s.question,
            s.answer,
            s.batch,
            s.answer
        );
        println!(
            "  passes   {} warmup, {} measured: {}",
            s.run.warmup,
            s.run.repeats,
            secs_list(&times)
        );
        println!("  pass     min {:.3} s   median {:.3} s", st.min, st.median);
        println!(
            "  seq/s    best {:.1}   median {:.1}",
            n / st.min,
            n / st.median
        );
        println!("  scores   mean {score_mean:.3}  first {score_first:.3}");
    }
    Ok(())
}

/// W3's tokenizer: a word `t{id}` is token `id`; every other word (the prompt template's)
/// adds no token, so each instance has exactly the workload's token counts.
struct IdWords {
    eos: u32,
}

impl Tokenize for IdWords {
    fn encode(&self, text: &str) -> std::result::Result<Vec<u32>, radit_data::BoxError> {
        Ok(text
            .split_whitespace()
            .filter_map(|w| w.strip_prefix('t')?.parse().ok())
            .collect())
    }
    fn bos_id(&self) -> Option<u32> {
        None
    }
    fn eos_id(&self) -> Option<u32> {
        Some(self.eos)
    }
}

/// One batch size's generations.
struct GenResult {
    batch: usize,
    times: Vec<f64>,
    stats: Stats,
    /// New tokens per generation (batch × new tokens).
    tokens: f64,
    /// The first new tokens of row 0.
    first: Vec<u32>,
    /// The prefill alone (only with `--breakdown`).
    prefill: Option<f64>,
}

impl GenResult {
    /// The rest of the best run, per decoding step after the prefill's.
    fn decode_step(&self, new_tokens: usize) -> f64 {
        (self.stats.min - self.prefill.unwrap_or(0.0)) / new_tokens.max(2).saturating_sub(1) as f64
    }

    /// One entry of the peer's `results` list.
    fn json(&self, new_tokens: usize) -> Value {
        let mut v = json!({
            "batch": self.batch, "run_s": self.times,
            "run_min_s": self.stats.min, "run_median_s": self.stats.median,
            "new_tokens_per_s_best": self.tokens / self.stats.min,
            "new_tokens_per_s_median": self.tokens / self.stats.median,
            "first_new_tokens": self.first,
        });
        if let Some(prefill) = self.prefill {
            v["prefill_s"] = prefill.into();
            v["decode_step_s"] = self.decode_step(new_tokens).into();
        }
        v
    }
}

fn generate_bench(s: &GenerateSpec, device: &Device) -> Result<()> {
    if s.prompt == 0 || s.new_tokens == 0 {
        return Err(invalid("--prompt and --new-tokens must be at least 1"));
    }
    if s.batches.is_empty() || s.batches.contains(&0) {
        return Err(invalid("--batches must list batch sizes of at least 1"));
    }
    if s.run.repeats == 0 {
        return Err(invalid("--repeats must be at least 1"));
    }
    let config = s.model.config(s.prompt + s.new_tokens)?;
    let source = random_llama(&config, s.seed);
    let model = Llama::load(&source, config, device).map_err(BenchError::Build)?;
    let generation = GenerationConfig {
        max_new_tokens: s.new_tokens,
        temperature: 0.0,
        stop_ids: Vec::new(),
        use_cache: true,
        ..GenerationConfig::default()
    };

    let mut rng = TokenRng::new(s.seed);
    let mut results = Vec::with_capacity(s.batches.len());
    for &b in &s.batches {
        let prompts = rng.rows(b, s.prompt, s.model.vocab);
        let tokens = (b * s.new_tokens) as f64;
        let mut first = Vec::new();
        let times = timed_runs(
            s.run.warmup,
            s.run.repeats,
            s.common.json,
            &format!("batch {b} run"),
            tokens,
            "new tok/s",
            || {
                let out = generate(&model, &prompts, &generation, 0)?;
                if let Some(row) = out.iter().find(|r| r.len() != s.new_tokens) {
                    return Err(BenchError::ShortGeneration {
                        batch: b,
                        generated: row.len(),
                        expected: s.new_tokens,
                    });
                }
                first = out
                    .first()
                    .map_or_else(Vec::new, |row| row.iter().take(8).copied().collect());
                Ok(())
            },
        )?;
        let mut result = GenResult {
            batch: b,
            stats: Stats::of(&times),
            times,
            tokens,
            first,
            prefill: None,
        };
        if s.breakdown {
            // The prompt's forward into an empty cache, i.e. generation's first step.
            let batch = TokenBatch::from_rows(&prompts, 0, PaddingSide::Left)?;
            let mut prefill = Vec::new();
            for _ in 0..2 {
                let start = Instant::now();
                let mut cache = KvCache::new();
                let logits = model.next_token_logits(&batch, Some(&mut cache))?;
                let _ = to_host(logits)?;
                prefill.push(start.elapsed().as_secs_f64());
            }
            result.prefill = Some(min_of(&prefill));
        }
        results.push(result);
    }

    if s.common.json {
        let v = merge(
            s.common.json_head("generate", device),
            [
                s.model.json(),
                json!({
                    "prompt": s.prompt, "new_tokens": s.new_tokens, "seed": s.seed,
                    "warmup": s.run.warmup, "repeats": s.run.repeats,
                    "results": results.iter().map(|r| r.json(s.new_tokens)).collect::<Vec<_>>(),
                }),
            ],
        );
        println!("{v}");
    } else {
        println!("{}", s.common.title("W5 generate", device));
        println!(
            "  config   {}; prompt {}, {} new tokens, greedy, KV cache",
            s.model.describe(),
            s.prompt,
            s.new_tokens
        );
        for r in &results {
            println!(
                "  batch {:<3} {} warmup, {} measured: {}",
                r.batch,
                s.run.warmup,
                s.run.repeats,
                secs_list(&r.times)
            );
            println!(
                "            min {:.3} s   median {:.3} s   new tok/s best {:.1}   median {:.1}",
                r.stats.min,
                r.stats.median,
                r.tokens / r.stats.min,
                r.tokens / r.stats.median
            );
            if let Some(prefill) = r.prefill {
                println!(
                    "            prefill {prefill:.3} s   decode step {:.4} s (best run)",
                    r.decode_step(s.new_tokens)
                );
            }
        }
    }
    Ok(())
}

fn min_of(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn median_of(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `radit bench`'s shape: the subcommand under a program name.
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: BenchCommand,
    }

    fn parse(args: &[&str]) -> BenchCommand {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn bad_flags_are_argument_errors_before_any_model_is_built() {
        for args in [
            &["lm-ft", "--answer", "0"][..],
            &["lm-ft", "--hidden", "10", "--heads", "3"],
            &["r-ft", "--seq", "600"],
            &[
                "r-ft", "--steps", "0", "--hidden", "8", "--heads", "2", "--vocab", "16",
            ],
            &["lsr", "--repeats", "0"],
            &["generate", "--batches", "1,0"],
        ] {
            let err = run(parse(args), &Device::flex()).unwrap_err();
            assert!(
                matches!(err, BenchError::InvalidArgument(_)),
                "{args:?}: {err}"
            );
            assert!(err.to_string().starts_with("--"), "{args:?}: {err}");
        }
    }

    #[test]
    fn a_tiny_r_ft_step_runs() {
        let args = [
            "r-ft",
            "--queries",
            "2",
            "--seq",
            "4",
            "--docs",
            "3",
            "--hidden",
            "8",
            "--layers",
            "1",
            "--heads",
            "2",
            "--ffn",
            "16",
            "--vocab",
            "32",
            "--max-positions",
            "8",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--json",
        ];
        run(parse(&args), &Device::flex()).unwrap();
    }

    #[test]
    fn medians_and_minima() {
        assert_eq!(median_of(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_of(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median_of(&[]).is_nan());
        assert_eq!(min_of(&[3.0, 1.0, 2.0]), 1.0);
    }
}

/// Matmul FLOPs of one W1 training step, forward and backward (3× the forward's: each
/// product's backward is two products of its size): every token through the projections and
/// the MLP, attention scores and mixing over the full `seq × seq` square (as computed, the
/// causal mask included), and the LM head on the scored rows only. Elementwise work is left
/// out, so this is the GEMM work a step must do.
fn lm_ft_step_flops(model: &LlamaArgs, batch: usize, seq: usize, answer: usize) -> f64 {
    let (hidden, ffn) = (model.hidden as f64, model.ffn as f64);
    let tokens = (batch * seq) as f64;
    // q, k, v, o (KV heads = heads) and gate, up, down, in multiply-adds per token.
    let per_token = 4.0 * hidden * hidden + 3.0 * hidden * ffn;
    // QKᵀ and the weighted sum of V: batch · seq² · (heads · head_dim) each.
    let attention = 2.0 * (batch * seq * seq) as f64 * hidden;
    let head = (batch * answer) as f64 * hidden * model.vocab as f64;
    let forward = model.layers as f64 * (tokens * per_token + attention) + head;
    3.0 * 2.0 * forward
}

/// f32 multiply-adds per [`fma_iterations`] iteration and lane count of the widest FMA
/// this CPU has, or `None` without AVX2+FMA.
fn fma_isa() -> Option<(&'static str, f64)> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Some(("avx512f", (FMA_CHAINS * 16) as f64));
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Some(("avx2+fma", (FMA_CHAINS * 8) as f64));
        }
    }
    None
}

/// Independent accumulators: enough to cover FMA latency × issue width on current cores.
const FMA_CHAINS: usize = 12;

/// Runs `iterations` rounds of [`FMA_CHAINS`] independent vector FMAs with the ISA
/// [`fma_isa`] named; returns a value depending on every lane (so nothing is optimized away).
fn fma_iterations(iterations: u64) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is present (checked just above).
            return unsafe { fma_avx512(iterations) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: AVX2 and FMA are present (checked just above).
            return unsafe { fma_avx2(iterations) };
        }
    }
    let _ = iterations;
    0.0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_avx512(iterations: u64) -> f32 {
    use std::arch::x86_64::{_mm512_add_ps, _mm512_fmadd_ps, _mm512_reduce_add_ps, _mm512_set1_ps};
    let a = _mm512_set1_ps(0.999_999);
    let b = _mm512_set1_ps(1e-7);
    let mut acc = [_mm512_set1_ps(1.0); FMA_CHAINS];
    for _ in 0..iterations {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    let sum = acc
        .iter()
        .fold(_mm512_set1_ps(0.0), |s, &v| _mm512_add_ps(s, v));
    _mm512_reduce_add_ps(sum)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_avx2(iterations: u64) -> f32 {
    use std::arch::x86_64::{_mm256_add_ps, _mm256_fmadd_ps, _mm256_set1_ps, _mm256_storeu_ps};
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); FMA_CHAINS];
    for _ in 0..iterations {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    let sum = acc
        .iter()
        .fold(_mm256_set1_ps(0.0), |s, &v| _mm256_add_ps(s, v));
    let mut lanes = [0.0f32; 8];
    // SAFETY: `lanes` holds the 8 floats the store writes.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    lanes.iter().sum()
}

fn peak(s: &PeakSpec, _device: &Device) -> Result<()> {
    if !s.seconds.is_finite() || s.seconds <= 0.0 || s.repeats == 0 {
        return Err(invalid(
            "--seconds must be positive and --repeats at least 1",
        ));
    }
    let Some((isa, flops_per_iteration)) = fma_isa().map(|(isa, fmas)| (isa, 2.0 * fmas)) else {
        return Err(invalid("the peak needs AVX2+FMA or AVX-512F"));
    };
    let threads = s.common.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    // Calibrate on one thread: iterations for about `seconds`.
    let probe = 1u64 << 20;
    let start = Instant::now();
    std::hint::black_box(fma_iterations(std::hint::black_box(probe)));
    let per_iteration = start.elapsed().as_secs_f64() / probe as f64;
    let iterations = ((s.seconds / per_iteration.max(1e-12)) as u64).max(probe);
    let mut rates = Vec::with_capacity(s.repeats);
    for _ in 0..s.repeats {
        let start = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| std::hint::black_box(fma_iterations(iterations)));
            }
        });
        let wall = start.elapsed().as_secs_f64();
        rates.push(threads as f64 * iterations as f64 * flops_per_iteration / wall / 1e9);
    }
    let best = rates.iter().copied().fold(0.0, f64::max);
    if s.common.json {
        let v = merge(
            json!({"bench": "peak", "impl": "radit", "threads": threads, "isa": isa}),
            [json!({"gflops": rates, "gflops_best": best})],
        );
        println!("{v}");
    } else {
        println!("peak f32 FMA ({isa}, {FMA_CHAINS} chains, threads {threads})");
        let list: Vec<String> = rates.iter().map(|r| format!("{r:.1}")).collect();
        println!("  GFLOP/s  {}   best {best:.1}", list.join(" "));
    }
    Ok(())
}
