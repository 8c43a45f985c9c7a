//! `radit-pipeline`: RA-DIT as a library.
//!
//! - [`Recipe`]: the recipe schema, its loading (`--set` overrides, asset paths) and validation;
//! - [`RunDir`]: the run directory, the one place that knows its layout (stages, rounds,
//!   finals, done markers, the latest trained generator and query encoder);
//! - [`Stage`]: what a stage plugs in (prepare, export, adopt), with one driver ([`drive`])
//!   for every stage: resume in the right stage, dev metrics, checkpoints, done markers;
//! - [`Pipeline`]: the recipe's stages for its rounds, with the built-in LM-ft, R-ft and DPO
//!   stages, losses a user registers ([`Pipeline::register_loss`]) and stages a user adds
//!   ([`Pipeline::with_stage`]);
//! - [`cross_validate`]: k-fold cross-validation of a recipe;
//! - [`EvalModels`]: a run's models, index and prompt settings for evaluation.
//!
//! Data flows one way: docstore → instances → stages (trainer) → checkpoints and finals →
//! evaluation. The `radit` binary only parses arguments and calls this crate.

#![deny(missing_docs)]

pub mod check;
pub mod cv;
pub mod dpo;
mod error;
pub mod evaluate;
pub mod lm_ft;
pub mod pipeline;
pub mod prompt;
pub mod r_ft;
pub mod recipe;
pub mod reference;
pub mod resume;
pub mod run_dir;
pub mod stage;

pub use check::check_recipe;
pub use cv::{cross_validate, CvSummary, FoldMetric};
pub use dpo::DpoStage;
pub use error::{PipelineError, Result};
pub use evaluate::{EvalModels, ModelSource};
pub use lm_ft::{dev_eval_config, LmFtStage};
pub use pipeline::{
    load_data, load_embedder, load_examples, open_or_build_index, IndexPlan, Pipeline, Resume,
    RunSummary,
};
pub use prompt::prompt_builder;
pub use r_ft::RFtStage;
pub use recipe::{normalize_path, Recipe};
pub use reference::recipe_reference;
pub use run_dir::{RunDir, StageDir, StageDone};
pub use stage::{drive, AnyStage, BuiltinStage, Context, DevMetrics, Models, Prepared, Stage};
