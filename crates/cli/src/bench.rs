//! `radit bench`: fixed workloads for comparing throughput with peers (DESIGN.md, "Benchmarks").

use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Device;
use clap::{Args, Subcommand};
use radit_generator::{answer_nll, target_log_likelihood, LmTargets};
use radit_models::{random_llama, Llama, LlamaConfig, PaddingSide, TokenBatch};

/// `radit bench ...`
#[derive(Subcommand)]
pub enum BenchCommand {
    /// W1: LM-ft training step (random Llama, answer-only loss, AdamW); tokens/s.
    LmFt(LmFtSpec),
}

/// The W1 workload and how to measure it.
#[derive(Args)]
pub struct LmFtSpec {
    /// Measured steps (after the warmup steps).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Unmeasured warmup steps.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Rows per batch.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Tokens per row.
    #[arg(long, default_value_t = 256)]
    seq: usize,
    /// Loss on the last this many positions of each row.
    #[arg(long, default_value_t = 64)]
    answer: usize,
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
    /// CPU threads (sets RAYON_NUM_THREADS before the first tensor op); default: rayon's.
    #[arg(long)]
    threads: Option<usize>,
    /// Also time forward, backward and optimizer step separately, and a no-grad forward.
    #[arg(long)]
    breakdown: bool,
    /// Print one JSON line instead of the table.
    #[arg(long)]
    json: bool,
}

/// Runs one `radit bench` command.
pub fn run(command: BenchCommand, device: &Device) -> Result<()> {
    match command {
        BenchCommand::LmFt(spec) => {
            if let Some(n) = spec.threads {
                // Before the first tensor op, so rayon's global pool picks it up.
                std::env::set_var("RAYON_NUM_THREADS", n.to_string());
            }
            lm_ft(&spec, device)
        }
    }
}

/// Per-step phase times in seconds (forward/backward/optimizer only with `--breakdown`).
#[derive(Default, Clone, Copy)]
struct StepTimes {
    total: f64,
    forward: f64,
    backward: f64,
    optim: f64,
}

fn lm_ft(s: &LmFtSpec, device: &Device) -> Result<()> {
    if s.steps == 0 {
        bail!("--steps must be at least 1");
    }
    if s.answer == 0 || s.answer >= s.seq {
        bail!("--answer must be in 1..seq");
    }
    if s.heads == 0 || !s.hidden.is_multiple_of(s.heads) {
        bail!("--hidden must be a multiple of --heads");
    }
    let config = LlamaConfig {
        max_position_embeddings: s.seq.max(2048),
        // transformers' LlamaConfig default, as in the PyTorch peer.
        tie_word_embeddings: false,
        ..LlamaConfig::new(s.vocab, s.hidden, s.ffn, s.layers, s.heads, s.heads)
    };
    let source = random_llama(&config, 0);
    let train_device = device.clone().autodiff();
    let mut model =
        Llama::load(&source, config.clone(), &train_device).context("building the model")?;

    // Deterministic pseudo-random tokens (never the pad id 0).
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let rows: Vec<Vec<u32>> = (0..s.batch)
        .map(|_| {
            (0..s.seq)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    1 + (state % (s.vocab as u64 - 1)) as u32
                })
                .collect()
        })
        .collect();
    let batch = TokenBatch::from_rows(&rows, 0, PaddingSide::Right)?;
    let mut mask = vec![0u8; s.batch * s.seq];
    for row in mask.chunks_mut(s.seq) {
        row[s.seq - s.answer..].fill(1);
    }
    let targets = LmTargets::from_answer_mask(&batch, &mask)?;

    let mut optim = AdamWConfig::new().init();
    let lr = 1e-4;
    let mut times = Vec::with_capacity(s.steps);
    let mut losses = Vec::with_capacity(s.steps);
    for step in 0..s.warmup + s.steps {
        let mut t = StepTimes::default();
        let start = Instant::now();
        let loss = answer_nll(&model, &batch, &targets)?;
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
        // and then only for this parameter): read an updated value back.
        let _ = model.norm.weight.val().sum().into_scalar::<f32>();
        t.optim = o0.elapsed().as_secs_f64();
        t.total = start.elapsed().as_secs_f64();
        if !loss_value.is_finite() {
            bail!("step {step}: loss is {loss_value}");
        }
        if step >= s.warmup {
            times.push(t);
            losses.push(loss_value);
        }
        if !s.json {
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

    // A no-grad forward of the same loss on the plain device, for the autodiff overhead.
    let mut nograd = Vec::new();
    if s.breakdown {
        let plain = Llama::load(&source, config.clone(), device)?;
        for _ in 0..2 {
            let start = Instant::now();
            let ll = target_log_likelihood(&plain, &batch, &targets)?;
            let _ = ll.sum().into_scalar::<f32>();
            nograd.push(start.elapsed().as_secs_f64());
        }
    }

    let tokens = (s.batch * s.seq) as f64;
    let totals: Vec<f64> = times.iter().map(|t| t.total).collect();
    let (min, median) = (min_of(&totals), median_of(&totals));
    let threads = s.threads.map_or_else(
        || std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into()),
        |n| n.to_string(),
    );
    let phase = |f: fn(&StepTimes) -> f64| median_of(&times.iter().map(f).collect::<Vec<_>>());
    if s.json {
        let mut v = serde_json::json!({
            "bench": "lm-ft",
            "impl": "radit",
            "device": format!("{device:?}"),
            "threads": threads,
            "hidden": s.hidden, "layers": s.layers, "heads": s.heads, "ffn": s.ffn,
            "vocab": s.vocab, "batch": s.batch, "seq": s.seq, "answer": s.answer,
            "warmup": s.warmup, "steps": s.steps,
            "step_s": totals,
            "step_min_s": min, "step_median_s": median,
            "tokens_per_s_best": tokens / min,
            "tokens_per_s_median": tokens / median,
            "loss_last": losses.last(),
        });
        if s.breakdown {
            v["forward_s"] = phase(|t| t.forward).into();
            v["backward_s"] = phase(|t| t.backward).into();
            v["optim_s"] = phase(|t| t.optim).into();
            v["nograd_forward_s"] = min_of(&nograd).into();
            // Per measured step, so a quiet step's phases can be read on a loaded machine.
            v["phases_s"] = times
                .iter()
                .map(|t| vec![t.forward, t.backward, t.optim])
                .collect::<Vec<_>>()
                .into();
        }
        println!("{v}");
    } else {
        println!("W1 lm-ft (radit, {device:?}, threads {threads})");
        println!(
            "  config   hidden {} layers {} heads {} ffn {} vocab {}; batch {} x seq {}, loss on last {}",
            s.hidden, s.layers, s.heads, s.ffn, s.vocab, s.batch, s.seq, s.answer
        );
        println!(
            "  steps    {} warmup, {} measured: {}",
            s.warmup,
            s.steps,
            totals
                .iter()
                .map(|t| format!("{t:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!("  step     min {min:.3} s   median {median:.3} s");
        println!(
            "  tokens/s best {:.1}   median {:.1}",
            tokens / min,
            tokens / median
        );
        if s.breakdown {
            println!(
                "  phases   forward {:.3} s   backward {:.3} s   optimizer {:.3} s   (medians)",
                phase(|t| t.forward),
                phase(|t| t.backward),
                phase(|t| t.optim)
            );
            println!(
                "  no-grad forward (same loss, plain device): {:.3} s",
                min_of(&nograd)
            );
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
