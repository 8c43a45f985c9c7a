//! `radit review` (the browser app over a run's models) and `radit feedback export|stats`.
//!
//! The app itself lives in `radit-review` and the judgments in `radit-feedback`; this module
//! loads the models exactly as `radit ask` does and answers the app's questions on this thread.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use clap::{Args, Subcommand};
use radit_eval::{Evaluator, Mode};
use radit_feedback::{FeedbackDb, ModelIdentity, ShownAnswer, ShownChunk};
use radit_generator::{weights_fingerprint, PromptTokenizer};
use radit_pipeline::{load_examples, EvalModels, ModelSource};
use radit_review::{QueueItem, Review, ReviewConfig, Side};

use crate::eval::{self, ModelArgs};

/// Arguments of `radit review`.
#[derive(Args)]
pub struct ReviewArgs {
    #[command(flatten)]
    models: ModelArgs,
    /// Questions to review in order (JSONL with `question`, or DPR TSV, as `radit eval
    /// --data`); the page shows "n of N" and steps through them.
    #[arg(long)]
    questions: Option<PathBuf>,
    /// A second training run: both answer every question side by side and the reviewer
    /// picks the better one (or a tie).
    #[arg(long, value_name = "RUN2")]
    compare: Option<PathBuf>,
    /// Address to listen on. Anything but loopback requires the token printed at start.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8087)]
    port: u16,
    /// The judgments' database (SQLite; created if missing). Default: `feedback.sqlite` in
    /// the `--checkpoint` run directory.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Chunks per question (default: the recipe's `retriever.top_k`).
    #[arg(long)]
    k: Option<usize>,
}

/// `radit feedback`
#[derive(Subcommand)]
pub enum FeedbackCommand {
    /// Write training files from the judgments: `lm_ft.jsonl` (question, approved or
    /// corrected answer, helpful chunks as background), `retrieval.jsonl` (chunk relevance
    /// labels for `[stages.r_ft.feedback]`) and `preferences.jsonl` (TRL's DPO format).
    Export {
        /// The judgments' database.
        #[arg(long)]
        db: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Replace the files of an earlier export in `--out`.
        #[arg(long)]
        overwrite: bool,
    },
    /// Counts of judgments, and how often the reviewers' chunk labels agree with the
    /// generator's own preference (the LSR signal).
    Stats {
        /// The judgments' database.
        #[arg(long)]
        db: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `radit feedback ...`.
pub fn feedback(command: &FeedbackCommand) -> Result<()> {
    match command {
        FeedbackCommand::Export { db, out, overwrite } => {
            let db = open_existing(db)?;
            let report = radit_feedback::export(&db, out, *overwrite)?;
            println!("{report}");
            eprintln!("wrote {}", out.display());
        }
        FeedbackCommand::Stats { db, json } => {
            let stats = radit_feedback::stats(&open_existing(db)?)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{stats}");
            }
        }
    }
    Ok(())
}

/// Opens a database that must exist already (a typo should not create an empty one).
fn open_existing(path: &std::path::Path) -> Result<FeedbackDb> {
    if !path.is_file() {
        bail!(
            "{}: no such database (radit review --db creates one)",
            path.display()
        );
    }
    Ok(FeedbackDb::open(path)?)
}

/// The models behind one side of the app, with their identity computed once.
struct Reviewed {
    loaded: EvalModels,
    identity: ModelIdentity,
}

fn side(models: &ModelArgs, source: ModelSource, device: &Device) -> Result<Reviewed> {
    let loaded = EvalModels::load(
        &source,
        &models.sets,
        Mode::from(models.mode) != Mode::ClosedBook,
        device,
    )?;
    let retrieval = loaded.retrieval.as_ref();
    let query_fingerprint = match retrieval {
        Some(r) => Some(weights_fingerprint(
            r.query.as_ref().map_or(&r.base.model, |q| &q.model),
        )?),
        None => None,
    };
    // Absolute, so the same model is one name in the database wherever the server ran from.
    let absolute = |spec: &str| match std::path::absolute(spec) {
        Ok(p) if p.exists() => p.display().to_string(),
        _ => spec.to_string(),
    };
    let identity = ModelIdentity {
        label: loaded.label.clone(),
        generator: absolute(&loaded.generator_source),
        generator_fingerprint: weights_fingerprint(&loaded.generator.model)?,
        query_encoder: retrieval.map(|r| absolute(&r.query_source)),
        query_fingerprint,
        index_identity: retrieval.map(|r| r.store.identity()),
        index_dir: retrieval.map(|r| absolute(&r.store.dir().display().to_string())),
    };
    Ok(Reviewed { loaded, identity })
}

/// Answers `question` as `radit ask` does and says what the reviewer is shown.
fn answer(
    side: &Reviewed,
    evaluator: &Evaluator<'_, PromptTokenizer<'_>>,
    question: &str,
) -> Result<ShownAnswer> {
    let record = evaluator.answer(0, &eval::asked(question, &[]))?;
    let store = side.loaded.retrieval.as_ref().map(|r| &r.store);
    let mut chunks = Vec::with_capacity(record.chunks.len());
    for c in &record.chunks {
        let chunk = store
            .context("chunks without an index")?
            .chunk(c.id)
            .with_context(|| format!("reading chunk {}", c.id))?;
        chunks.push(ShownChunk {
            chunk_id: c.id,
            title: chunk.title.clone(),
            text_hash: chunk.text_hash(),
            text: chunk.background_text(),
            p_r: c.weight,
            log_p_lm: c.log_p_lm,
            share: c.contribution,
        });
    }
    Ok(ShownAnswer {
        question: record.question,
        answer: record.prediction,
        log_p: record.log_p,
        models: side.identity.clone(),
        chunks,
    })
}

/// Runs `radit review` until SIGINT/SIGTERM.
pub fn review(args: &ReviewArgs, device: &Device) -> Result<()> {
    let m = &args.models;
    eval::precheck(m, args.k)?;
    let db_path = match (&args.db, &m.checkpoint) {
        (Some(db), _) => db.clone(),
        (None, Some(run)) => run.join("feedback.sqlite"),
        (None, None) => bail!("give --db FILE (there is no --checkpoint run to keep it in)"),
    };
    let queue = match &args.questions {
        Some(path) => {
            let examples = load_examples(path, 0)?;
            if examples.is_empty() {
                bail!("{}: no questions", path.display());
            }
            examples
                .into_iter()
                .map(|e| QueueItem {
                    question: e.question,
                })
                .collect()
        }
        None => Vec::new(),
    };
    // Opened before the models load, so a bad file fails in a second, not after a minute.
    let db = FeedbackDb::open(&db_path)?;
    let a = side(m, m.source()?, device)?;
    let b = match &args.compare {
        Some(run) => Some(side(
            m,
            ModelSource::Run {
                dir: run.clone(),
                base: false,
            },
            device,
        )?),
        None => None,
    };
    let token = if args.host.is_loopback() {
        None
    } else {
        Some(radit_review::new_token().context("generating the access token")?)
    };
    let mut labels = vec![a.identity.label.clone()];
    labels.extend(b.as_ref().map(|b| b.identity.label.clone()));
    let app = Review::start(
        ReviewConfig {
            host: args.host,
            port: args.port,
            token,
            queue,
            models: labels,
        },
        db,
    )?;
    let k = eval::chunks_per_question(&a.loaded, args.k);
    println!(
        "review: {} (judgments in {}; Ctrl-C stops)",
        app.url(),
        db_path.display()
    );
    std::io::stdout().flush()?;
    let config = |side: &Reviewed| eval::eval_config(m, &side.loaded.recipe, k, 0);
    let serve = |ev_a: &Evaluator<'_, PromptTokenizer<'_>>,
                 ev_b: Option<&Evaluator<'_, PromptTokenizer<'_>>>|
     -> Result<()> {
        app.serve(|question, which| {
            let result = match (which, &b, ev_b) {
                (Side::B, Some(b), Some(ev)) => answer(b, ev, question),
                _ => answer(&a, ev_a, question),
            };
            result.map_err(|e| format!("{e:#}"))
        })?;
        Ok(())
    };
    // The evaluators borrow the models, so the app is served inside their scopes.
    let served: Result<()> = a.loaded.with_evaluator(config(&a), m.max_len, |ev_a| {
        Ok(match &b {
            Some(bs) => bs
                .loaded
                .with_evaluator(config(bs), m.max_len, |ev_b| Ok(serve(ev_a, Some(ev_b))))
                .map_err(anyhow::Error::from)
                .and_then(|r| r),
            None => serve(ev_a, None),
        })
    })?;
    served?;
    eprintln!("review: stopped; judgments are in {}", db_path.display());
    Ok(())
}
