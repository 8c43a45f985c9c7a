//! `radit train RECIPE` and `radit cv RECIPE --folds K`: argument handling around
//! `radit-pipeline`, which runs the stages.

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::Device;
use radit_pipeline::{cross_validate, Pipeline, Recipe, RunDir};

/// A recipe run: `radit train` and each fold of `radit cv`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The recipe (TOML).
    pub recipe: PathBuf,
    /// Override the recipe's output directory.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Continue the run in the output directory from its newest valid checkpoint (only run
    /// length, checkpointing, evaluation and logging settings may differ from the run's).
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Clear a run already in the output directory and start over (its index is kept).
    #[arg(long)]
    pub overwrite: bool,
    /// Override a recipe key, e.g. `--set stages.lm_ft.train.lr=2e-5` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

impl RunArgs {
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
        .resume(args.resume)
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
    let summary = cross_validate(
        folds,
        &run,
        |extra| Recipe::load(&args.recipe, &[args.sets.as_slice(), extra].concat()),
        |recipe| {
            Pipeline::new(recipe, device.clone())
                .resume(args.resume)
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
