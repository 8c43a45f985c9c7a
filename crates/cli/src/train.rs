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
    /// Continue from the newest valid checkpoint in the output directory.
    #[arg(long)]
    pub resume: bool,
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
            recipe.output_dir = dir.clone();
        }
        Ok(recipe)
    }
}

/// Runs `radit train`: the stages, then the result table on stdout.
pub fn run(args: &RunArgs, device: &Device) -> Result<()> {
    let summary = Pipeline::new(args.recipe(&[])?, device.clone())
        .resume(args.resume)
        .run()?;
    if !summary.interrupted {
        for line in &summary.rows {
            println!("{line}");
        }
    }
    Ok(())
}

/// Runs `radit cv`: one run per fold under `OUTPUT_DIR/fold-N`, then the table of mean and
/// standard deviation per metric (also in `OUTPUT_DIR/cv.json`).
pub fn cross_validation(args: &RunArgs, folds: usize, device: &Device) -> Result<()> {
    let run = RunDir::new(args.recipe(&[])?.output_dir);
    let summary = cross_validate(
        folds,
        &run,
        |extra| Recipe::load(&args.recipe, &[args.sets.as_slice(), extra].concat()),
        |recipe| Pipeline::new(recipe, device.clone()).resume(args.resume),
    )?;
    if !summary.interrupted {
        println!();
        print!("{}", summary.to_markdown());
    }
    Ok(())
}
