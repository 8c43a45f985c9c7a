//! The `radit` command line.

use std::path::PathBuf;
use std::process::ExitCode;

mod data;
mod eval;
mod index;
mod logging;
mod memory;
mod recipe;
mod review;
mod train;

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use clap::{Parser, Subcommand, ValueEnum};
use radit_models::{generate, ChatMessage, Encoder, GenerationConfig, Generator, Pooling};
use radit_pipeline::RunDir;

/// radit: retrieval-augmented dual instruction tuning (RA-DIT) in Rust.
#[derive(Parser)]
#[command(name = "radit", version, about)]
struct Cli {
    /// Compute device: `cpu` (burn's flex backend) or `wgpu` (GPU; Vulkan's software
    /// driver where there is none).
    #[arg(long, global = true, default_value = "cpu")]
    device: DeviceArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Cpu,
    Wgpu,
}

#[derive(Clone, Copy, ValueEnum)]
enum PoolingArg {
    Mean,
    Cls,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModelKind {
    Generator,
    Encoder,
}

#[derive(Subcommand)]
enum Command {
    /// Continue a prompt with a generator (the chat template is applied when the model has one).
    Generate {
        /// Model: a directory, a .gguf file, or a hub id (owner/name, owner/name:file.gguf).
        #[arg(long)]
        model: String,
        /// The prompt (the user message, for chat models).
        #[arg(long)]
        prompt: String,
        /// Most new tokens to produce.
        #[arg(long, default_value_t = 64)]
        max_new_tokens: usize,
        /// Sampling temperature; 0 is greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Nucleus sampling threshold.
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        /// Sampling seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Feed the prompt as raw text even if the model has a chat template.
        #[arg(long)]
        raw: bool,
        /// System message for chat models.
        #[arg(long)]
        system: Option<String>,
    },
    /// Print the sentence embedding of a text as a JSON array.
    Embed {
        /// Model: a directory or a hub id.
        #[arg(long)]
        model: String,
        /// Text to embed (repeat for several; one JSON array per line).
        #[arg(long, required = true)]
        text: Vec<String>,
        /// Override the pooling from the model's sentence-transformers config.
        #[arg(long)]
        pooling: Option<PoolingArg>,
        /// Override normalization: true or false.
        #[arg(long)]
        normalize: Option<bool>,
    },
    /// Run a training recipe (its LM-ft and R-ft stages); `--resume` continues from the newest
    /// valid checkpoint.
    Train(train::TrainArgs),
    /// Precompute R-ft's generator scores (every query's candidates) into the run's score
    /// cache, for `--shard I/N` of the queries: one array task per shard, then `radit train
    /// --resume auto` finds them cached. The stages before R-ft must be complete (`radit
    /// train --until lm_ft`).
    Score(train::ScoreArgs),
    /// k-fold cross-validation of a recipe: one run per fold (under `OUTPUT_DIR/fold-N`, its
    /// training data split into folds), then mean and std of the dev metrics.
    Cv {
        #[command(flatten)]
        run: train::RunArgs,
        /// Number of folds.
        #[arg(long, default_value_t = 5)]
        folds: usize,
    },
    /// Shipped recipes (`ls`, `cp`), and a recipe resolved (`show`) or checked (`validate`)
    /// without running it.
    #[command(subcommand)]
    Recipe(recipe::RecipeCommand),
    /// Prepare datasets: `answerable` keeps QA questions whose answer is in an index.
    #[command(subcommand)]
    Data(DataCommand),
    /// Evaluate a run's models on QA data: EM/F1/ROUGE-L (bootstrap CIs), multiple-choice
    /// accuracy, recall@k/MRR, with the RA-DIT ensemble over chunks or a baseline mode.
    Eval(eval::EvalArgs),
    /// Merge the shard reports of one evaluation (`radit eval --shard I/N`) into the report
    /// one process would have written: metrics and bootstrap intervals over all questions.
    EvalMerge(eval::MergeArgs),
    /// Answer one question with the ensemble; prints the chunks used and their weights.
    Ask(eval::AskArgs),
    /// Review a run's answers and chunks in the browser: mark chunks helpful or not, answers
    /// right or wrong, type corrections, pick the better of two models; judgments go to a
    /// SQLite database (`radit feedback export` turns them into training data).
    Review(review::ReviewArgs),
    /// The judgments of `radit review`: `export` training files, `stats`.
    #[command(subcommand)]
    Feedback(review::FeedbackCommand),
    /// Build, search and inspect document indexes.
    #[command(subcommand)]
    Index(index::IndexCommand),
    /// Throughput benchmarks (DESIGN.md, "Benchmarks").
    #[command(subcommand)]
    Bench(radit_bench::BenchCommand),
    /// Markdown report with SVG plots from `radit eval` reports and `radit train` logs.
    Report(ReportArgs),
    /// Write a model as a Hugging Face safetensors checkpoint.
    Export {
        /// Model to read.
        #[arg(long)]
        model: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Which kind of model it is.
        #[arg(long, value_enum, default_value = "generator")]
        kind: ModelKind,
    },
}

/// `radit report`: parsed here, written by `radit_eval::summary`.
#[derive(clap::Args)]
struct ReportArgs {
    /// An evaluation report written by `radit eval` (JSON), as LABEL=PATH; repeatable. The
    /// differences are taken to the first one.
    #[arg(long = "eval", value_name = "LABEL=PATH")]
    evals: Vec<String>,
    /// A `radit train` output directory, as LABEL=DIR; repeatable. Its stages' logs are
    /// `lm_ft/metrics.jsonl`, `r_ft/metrics.jsonl` or `round-N/<stage>/metrics.jsonl` (or DIR
    /// is one stage directory with its own `metrics.jsonl`).
    #[arg(long = "run", value_name = "LABEL=DIR")]
    runs: Vec<String>,
    /// Title of the report.
    #[arg(long, default_value = "radit report")]
    title: String,
    /// Output directory: README.md and the SVG plots.
    #[arg(long)]
    out: PathBuf,
    /// The command that regenerates the report, recorded verbatim (default: this command
    /// line).
    #[arg(long, value_name = "TEXT")]
    command: Option<String>,
    /// Bootstrap resamples of the paired difference intervals.
    #[arg(long, default_value_t = 1000)]
    resamples: usize,
    /// Seed of the paired bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl ReportArgs {
    /// The flags as a summary request: each run's stage logs found through its run
    /// directory; the default command is this command line.
    fn request(self) -> Result<radit_eval::summary::SummaryRequest> {
        let runs = radit_eval::summary::parse_labeled(&self.runs, "--run")?
            .into_iter()
            .map(|(label, dir)| {
                let logs = RunDir::new(dir)
                    .stage_logs()
                    .with_context(|| format!("--run {label}"))?;
                Ok((label, logs))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(radit_eval::summary::SummaryRequest {
            evals: self.evals,
            runs,
            title: self.title,
            out: self.out,
            command: self.command.unwrap_or_else(|| {
                radit_eval::summary::command_line("radit", std::env::args().skip(1))
            }),
            resamples: self.resamples,
            seed: self.seed,
        })
    }
}

/// `radit data ...`
#[derive(clap::Subcommand)]
enum DataCommand {
    /// Keep QA questions whose answer occurs in an index's chunks; split train / held out.
    Answerable(data::AnswerableArgs),
}

fn device(arg: DeviceArg) -> Device {
    match arg {
        DeviceArg::Cpu => Device::flex(),
        DeviceArg::Wgpu => Device::wgpu(Default::default()),
    }
}

/// Exit status of a run a signal stopped after saving a checkpoint: "preempted, resume me",
/// the status a signal outside a training loop exits with too.
const EXIT_INTERRUPTED: u8 = radit_train::signals::EXIT_RESUMABLE as u8;

fn main() -> ExitCode {
    // First, while this is the only thread.
    memory::keep_freed_memory();
    let cli = Cli::parse();
    logging::init();
    match run(cli) {
        Ok(train::Ended::Completed) => ExitCode::SUCCESS,
        Ok(train::Ended::Interrupted) => {
            eprintln!(
                "stopped by a signal after saving a checkpoint; continue with --resume (exit {EXIT_INTERRUPTED})"
            );
            ExitCode::from(EXIT_INTERRUPTED)
        }
        Err(e) => {
            // The message chain on one line: a user error is not a crash, so no backtrace
            // (anyhow's Debug output would print one under RUST_BACKTRACE=1).
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<train::Ended> {
    // burn puts some state (a loaded optimizer's moments) on its default device, which is wgpu
    // whenever that backend is compiled in; keep it on the device the user chose.
    if std::env::var_os("BURN_DEVICE").is_none() {
        let name = match cli.device {
            DeviceArg::Cpu => "flex",
            DeviceArg::Wgpu => "wgpu",
        };
        // Single-threaded here: nothing else reads the environment yet.
        std::env::set_var("BURN_DEVICE", name);
    }
    let device = device(cli.device);
    match cli.command {
        Command::Generate {
            model,
            prompt,
            max_new_tokens,
            temperature,
            top_p,
            seed,
            raw,
            system,
        } => {
            let g = Generator::load(&model, &device)
                .with_context(|| format!("loading generator {model}"))?;
            let text = if g.tokenizer.chat_template().is_some() && !raw {
                let mut messages = Vec::new();
                if let Some(system) = system {
                    messages.push(ChatMessage::new("system", system));
                }
                messages.push(ChatMessage::new("user", prompt));
                g.tokenizer.apply_chat_template(&messages, true)?
            } else {
                prompt
            };
            let ids = g.tokenizer.encode(&text)?;
            if ids.is_empty() {
                bail!("the prompt encodes to no tokens");
            }
            let config = GenerationConfig {
                max_new_tokens,
                temperature,
                top_p,
                seed,
                stop_ids: g.tokenizer.stop_ids().to_vec(),
                use_cache: true,
            };
            let new = generate(&g.model, &[ids], &config, g.tokenizer.pad_id())?;
            let tokens = new.into_iter().next().unwrap_or_default();
            println!("{}", g.tokenizer.decode(&tokens, true)?);
        }
        Command::Embed {
            model,
            text,
            pooling,
            normalize,
        } => {
            let mut e = Encoder::load(&model, &device)
                .with_context(|| format!("loading encoder {model}"))?;
            if let Some(p) = pooling {
                e.pooling = match p {
                    PoolingArg::Mean => Pooling::Mean,
                    PoolingArg::Cls => Pooling::Cls,
                };
            }
            if let Some(n) = normalize {
                e.normalize = n;
            }
            let texts: Vec<&str> = text.iter().map(String::as_str).collect();
            for v in e.embed(&texts)? {
                println!("{}", serde_json::to_string(&v)?);
            }
        }
        Command::Eval(args) => eval::eval(&args, &device)?,
        Command::Ask(args) => eval::ask(&args, &device)?,
        Command::EvalMerge(args) => eval::merge(&args)?,
        Command::Review(args) => review::review(&args, &device)?,
        Command::Feedback(command) => review::feedback(&command)?,
        Command::Index(command) => index::run(command, &device)?,
        Command::Bench(command) => radit_bench::run(command, &device)?,
        Command::Data(DataCommand::Answerable(args)) => data::answerable(&args)?,
        Command::Recipe(command) => recipe::run(command)?,
        Command::Report(args) => {
            let readme = radit_eval::summary::write_summary(&args.request()?)?;
            eprintln!("wrote {}", readme.display());
        }
        Command::Train(args) => return train::run(&args, &device),
        Command::Score(args) => train::score(&args, &device)?,
        Command::Cv { run, folds } => return train::cross_validation(&run, folds, &device),
        Command::Export { model, out, kind } => {
            match kind {
                ModelKind::Generator => Generator::load(&model, &device)?.export(&out)?,
                ModelKind::Encoder => Encoder::load(&model, &device)?.export(&out)?,
            }
            eprintln!("wrote {}", out.display());
        }
    }
    Ok(train::Ended::Completed)
}
