//! `radit train RECIPE` and `radit cv RECIPE --folds K`: argument handling around
//! `radit-pipeline`, which runs the stages.

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::Device;
use radit_pipeline::{cross_validate, Pipeline, Recipe, Resume, RunDir};

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
        let mut recipe = Recipe::load(&self.recipe, &sets)?;
        if let Some(dir) = &self.output_dir {
            // A command-line path: relative to where the command runs.
            recipe.output_dir = std::path::absolute(dir)?;
        }
        Ok(recipe)
    }
}

/// How `radit train` and `radit cv` end.
pub enum Ended {
    /// Every stage completed.
    Completed,
    /// A signal stopped the run after a checkpoint: resume it with `--resume`.
    Interrupted,
}

/// Runs `radit train`: the stages, then the result table on stdout.
pub fn run(args: &RunArgs, device: &Device) -> Result<Ended> {
    let summary = Pipeline::new(args.recipe(&[])?, device.clone())
        .resume(args.resume())
        .overwrite(args.overwrite)
        .run()?;
    if summary.interrupted {
        return Ok(Ended::Interrupted);
    }
    for line in &summary.rows {
        println!("{line}");
    }
    Ok(Ended::Completed)
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
