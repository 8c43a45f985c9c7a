//! `radit train RECIPE` and `radit cv RECIPE --folds K`: argument handling around
//! `radit-pipeline`, which runs the stages.

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::Device;
use radit_pipeline::{cross_validate, Pipeline, Recipe, Resume, RunDir};
use radit_util::shard::Shard;

/// A recipe run: `radit train` and each fold of `radit cv`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The recipe (TOML).
    pub recipe: PathBuf,
    /// Override the recipe's output directory.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Continue the run in the output directory from its newest valid checkpoint (only run
    /// length, checkpointing, evaluation and logging settings may differ from the run's);
    /// refused when the directory holds no run. `--resume auto` starts the run when there is
    /// none: one command line for a cluster job's first start and every requeue.
    #[arg(
        long,
        conflicts_with = "overwrite",
        num_args = 0..=1,
        default_missing_value = "existing",
        value_name = "auto"
    )]
    pub resume: Option<ResumeArg>,
    /// Clear a run already in the output directory and start over (its index is kept).
    #[arg(long)]
    pub overwrite: bool,
    /// Override a recipe key, e.g. `--set stages.lm_ft.train.lr=2e-5` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

/// Arguments of `radit train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Stop after this stage completes (`lm_ft`, `r_ft`, or `round-N/STAGE` with several
    /// rounds); `--resume` continues from there.
    #[arg(long, value_name = "STAGE", conflicts_with = "before")]
    pub until: Option<String>,
    /// Stop before this stage starts, unless it is complete (e.g. `--before r_ft`: train
    /// what comes before R-ft, then `radit score --shard I/N` precomputes its targets).
    #[arg(long, value_name = "STAGE")]
    pub before: Option<String>,
}

/// Arguments of `radit score`.
#[derive(clap::Args)]
pub struct ScoreArgs {
    /// The recipe (TOML) of the run whose R-ft targets to score.
    pub recipe: PathBuf,
    /// Override the recipe's output directory.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Override a recipe key (repeatable); a run already in the output directory allows
    /// only the changes `--resume` allows.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Which part of the queries to score: `I/N` (task I of N, from 0) or `slurm` (from
    /// SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT); default all of them.
    #[arg(long, value_name = "I/N|slurm")]
    pub shard: Option<Shard>,
}

/// The value of `--resume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResumeArg {
    /// Continue the run if the directory holds one, else start it.
    Auto,
    /// Plain `--resume`: the directory must hold a run.
    #[value(hide = true)]
    Existing,
}

impl RunArgs {
    /// The pipeline's resume mode.
    fn resume(&self) -> Resume {
        match self.resume {
            None => Resume::No,
            Some(ResumeArg::Existing) => Resume::Existing,
            Some(ResumeArg::Auto) => Resume::Auto,
        }
    }

    /// The recipe with `--set` overrides, `extra` overrides and `--output-dir`.
    fn recipe(&self, extra: &[String]) -> Result<Recipe> {
        let mut sets = self.sets.clone();
        sets.extend_from_slice(extra);
        load_recipe(&self.recipe, &sets, self.output_dir.as_deref())
    }
}

/// `path` with `sets` applied and the output directory replaced by `output_dir`, if given.
fn load_recipe(
    path: &std::path::Path,
    sets: &[String],
    output_dir: Option<&std::path::Path>,
) -> Result<Recipe> {
    let mut recipe = Recipe::load(path, sets)?;
    if let Some(dir) = output_dir {
        // A command-line path: relative to where the command runs.
        recipe.output_dir = std::path::absolute(dir)?;
    }
    Ok(recipe)
}

/// How `radit train` and `radit cv` end.
pub enum Ended {
    /// Every stage completed.
    Completed,
    /// A signal stopped the run after a checkpoint: resume it with `--resume`.
    Interrupted,
}

/// Runs `radit train`: the stages, then the result table on stdout.
pub fn run(args: &TrainArgs, device: &Device) -> Result<Ended> {
    let run = &args.run;
    let summary = Pipeline::new(run.recipe(&[])?, device.clone())
        .resume(run.resume())
        .overwrite(run.overwrite)
        .until(args.until.clone())
        .before(args.before.clone())
        .run()?;
    if summary.interrupted {
        return Ok(Ended::Interrupted);
    }
    for line in &summary.rows {
        println!("{line}");
    }
    if let Some(label) = &summary.stopped_after {
        eprintln!("stopped after {label} (--until); continue the run with --resume");
    }
    if let Some(label) = &summary.stopped_before {
        eprintln!("stopped before {label} (--before); continue the run with --resume");
    }
    Ok(Ended::Completed)
}

/// Runs `radit score`: one shard of the first unfinished stage's precompute.
pub fn score(args: &ScoreArgs, device: &Device) -> Result<()> {
    let recipe = load_recipe(&args.recipe, &args.sets, args.output_dir.as_deref())?;
    let line = Pipeline::new(recipe, device.clone()).score(args.shard.unwrap_or(Shard::WHOLE))?;
    println!("{line}");
    Ok(())
}

/// Runs `radit cv`: one run per fold under `OUTPUT_DIR/fold-N`, then the table of mean and
/// standard deviation per metric (also in `OUTPUT_DIR/cv.json`).
pub fn cross_validation(args: &RunArgs, folds: usize, device: &Device) -> Result<Ended> {
    let run = RunDir::new(args.recipe(&[])?.output_dir);
    // Folds not reached before an interruption start on resume; plain `--resume` still needs
    // the cross-validation to have begun in this directory.
    let fold_resume = match args.resume() {
        Resume::Existing if !run.fold(0).holds_run() => {
            anyhow::bail!(
                "{}: holds no cross-validation to resume: check --output-dir, or pass \
                 --resume auto to start it when there is none",
                run.root().display()
            )
        }
        Resume::Existing => Resume::Auto,
        other => other,
    };
    let summary = cross_validate(
        folds,
        &run,
        |extra| Recipe::load(&args.recipe, &[args.sets.as_slice(), extra].concat()),
        |recipe| {
            Pipeline::new(recipe, device.clone())
                .resume(fold_resume)
                .overwrite(args.overwrite)
        },
    )?;
    if summary.interrupted {
        return Ok(Ended::Interrupted);
    }
    println!();
    print!("{}", summary.to_markdown());
    Ok(Ended::Completed)
}
