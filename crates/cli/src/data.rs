//! `radit data answerable`: QA questions whose answer occurs in an index's chunks, split into a
//! training part and a disjoint held-out part (JSONL), for real-data recipes.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use radit_data::{split_holdout, AnswerIndex, Example};
use radit_docstore::DocStore;

use radit_pipeline::load_examples;

/// `radit data answerable`
#[derive(Args)]
pub struct AnswerableArgs {
    /// Index whose chunks must contain an answer.
    #[arg(long)]
    index: PathBuf,
    /// QA datasets (DPR TSV by `.txt`/`.tsv` extension, else JSONL); repeatable.
    #[arg(long, required = true)]
    data: Vec<PathBuf>,
    /// Output directory for `train.jsonl` and `heldout.jsonl`.
    #[arg(long)]
    out: PathBuf,
    /// Fraction of the answerable questions held out.
    #[arg(long, default_value_t = 0.3)]
    holdout: f64,
    /// Seed of the split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn write_jsonl(path: &std::path::Path, examples: &[Example]) -> Result<()> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    for e in examples {
        let line = serde_json::json!({"id": e.id, "question": e.question, "answers": e.answers});
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

/// Runs `radit data answerable`.
pub fn answerable(args: &AnswerableArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.holdout) {
        bail!("--holdout must be within [0, 1], got {}", args.holdout);
    }
    let store = DocStore::open(&args.index)
        .with_context(|| format!("opening index {}", args.index.display()))?;
    let texts = (0..store.len() as u32)
        .map(|id| Ok(store.chunk(id)?.background_text()))
        .collect::<Result<Vec<String>, radit_docstore::Error>>()?;
    let index = AnswerIndex::new(texts.iter().map(String::as_str));
    let mut kept = Vec::new();
    let mut total = 0;
    for path in &args.data {
        let examples = load_examples(path, 0)?;
        total += examples.len();
        kept.extend(examples.into_iter().filter(|e| index.any(&e.answers)));
    }
    let (train, heldout) = split_holdout(&kept, args.holdout, args.seed);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write_jsonl(&args.out.join("train.jsonl"), &train)?;
    write_jsonl(&args.out.join("heldout.jsonl"), &heldout)?;
    println!(
        "{} of {} questions have an answer in the {} chunks of {}: {} train, {} held out -> {}",
        kept.len(),
        total,
        store.len(),
        args.index.display(),
        train.len(),
        heldout.len(),
        args.out.display()
    );
    Ok(())
}
