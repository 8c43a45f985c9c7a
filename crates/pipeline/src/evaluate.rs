//! The models an evaluation reads: a run's latest fine-tuned generator and query encoder (or
//! the recipe's base models), its index, search mode and prompt settings.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use radit_docstore::{DocStore, SearchMode};
use radit_eval::{EvalConfig, Evaluator, QueryEncoder, RunInfo};
use radit_generator::PromptTokenizer;
use radit_models::{Encoder, Generator};

use crate::error::{PipelineError, Result};
use crate::pipeline::{load_embedder, open_or_build_index};
use crate::prompt::prompt_builder_with_len;
use crate::recipe::Recipe;
use crate::run_dir::RunDir;
use crate::stage::BuiltinStage;

/// Where an evaluation's models come from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A training run: its latest fine-tuned models (the last round's), unless `base`.
    Run {
        /// The run directory.
        dir: PathBuf,
        /// Use the recipe's base models even where the run fine-tuned them.
        base: bool,
    },
    /// A recipe's base models.
    Recipe(PathBuf),
}

/// Models, index and settings of an evaluation.
pub struct EvalModels {
    /// The recipe (the run's resolved one, or the given one), with `--set` overrides.
    pub recipe: Recipe,
    /// The run, when evaluating one.
    pub run: Option<RunDir>,
    /// The generator.
    pub generator: Generator,
    /// Where its weights come from.
    pub generator_source: String,
    /// Retrieval, when the mode needs it.
    pub retrieval: Option<Retrieval>,
    /// `base`, `LM-ft`, `R-ft` or `LM-ft + R-ft`.
    pub label: String,
}

/// The retrieval side of an evaluation.
pub struct Retrieval {
    /// The base encoder: tokenization settings and, without R-ft, the query weights.
    pub base: Encoder,
    /// The R-ft query encoder, when the run trained one.
    pub query: Option<Encoder>,
    /// Where the query weights come from.
    pub query_source: String,
    /// The frozen index.
    pub store: DocStore,
    /// The recipe's search mode.
    pub search: SearchMode,
}

impl EvalModels {
    /// Loads the models of `source` (the recipe with `sets` applied); `retrieval` loads the
    /// index and query encoder too.
    pub fn load(
        source: &ModelSource,
        sets: &[String],
        retrieval: bool,
        device: &Device,
    ) -> Result<Self> {
        let (recipe, run, base) = match source {
            ModelSource::Run { dir, base } => {
                let run = RunDir::open(dir)?;
                (Recipe::load(&run.recipe_path(), sets)?, Some(run), *base)
            }
            ModelSource::Recipe(path) => (Recipe::load(path, sets)?, None, true),
        };
        let names = recipe.stages.names();
        let finetuned_of = |stages: &[&str]| -> Option<(String, PathBuf)> {
            let run = run.as_ref().filter(|_| !base)?;
            run.latest_final_of(&names, recipe.stages.rounds, stages)
                .filter(|(_, dir)| dir.join("config.json").is_file())
        };
        let finetuned = |stage: &str| finetuned_of(&[stage]).map(|(_, dir)| dir);
        // LM-ft and DPO both train the generator: the one that ran last holds the newest.
        let generator_final = finetuned_of(&[BuiltinStage::LmFt.name(), BuiltinStage::Dpo.name()]);
        let lm_ft = finetuned(BuiltinStage::LmFt.name());
        let r_ft = if retrieval {
            finetuned(BuiltinStage::RFt.name())
        } else {
            None
        };
        if let (Some(run), false) = (&run, base) {
            let unfinished = [
                (BuiltinStage::LmFt, generator_final.is_none()),
                (BuiltinStage::Dpo, generator_final.is_none()),
                (BuiltinStage::RFt, retrieval && r_ft.is_none()),
            ];
            for (stage, missing) in unfinished {
                if missing && names.iter().any(|n| n == stage.name()) {
                    tracing::warn!(
                        "{}: no completed {} stage; its base model is used",
                        run.root().display(),
                        stage.name()
                    );
                }
            }
        }
        let generator_source = match &generator_final {
            Some((_, dir)) => dir.display().to_string(),
            None => recipe.generator.model.clone(),
        };
        let generator = Generator::load(&generator_source, device)
            .map_err(|e| PipelineError::model(format!("generator {generator_source}"), e))?;
        let retrieval = if retrieval {
            let embedder = load_embedder(&recipe.retriever.encoder, device)?;
            let default_run = RunDir::new(&recipe.output_dir);
            let store =
                open_or_build_index(&recipe, run.as_ref().unwrap_or(&default_run), &embedder)?;
            let query = match &r_ft {
                Some(dir) => Some(load_encoder(dir, device)?),
                None => None,
            };
            let query_source = match &r_ft {
                Some(dir) => dir.display().to_string(),
                None => recipe.retriever.encoder.clone(),
            };
            Some(Retrieval {
                base: embedder.encoder,
                query,
                query_source,
                store,
                search: recipe.search_mode()?,
            })
        } else {
            None
        };
        let generator_label = match &generator_final {
            None => None,
            Some((stage, _)) if stage == BuiltinStage::Dpo.name() => Some(if lm_ft.is_some() {
                "LM-ft + DPO"
            } else {
                "DPO"
            }),
            Some(_) => Some("LM-ft"),
        };
        let label = match (generator_label, r_ft.is_some()) {
            (None, false) => "base".to_string(),
            (Some(g), false) => g.to_string(),
            (None, true) => "R-ft".to_string(),
            (Some(g), true) => format!("{g} + R-ft"),
        };
        Ok(Self {
            recipe,
            run,
            generator,
            generator_source,
            retrieval,
            label,
        })
    }

    /// What the report says about the models.
    pub fn run_info(&self, data: Option<&Path>) -> RunInfo {
        RunInfo {
            label: self.label.clone(),
            generator: self.generator_source.clone(),
            query_encoder: self.retrieval.as_ref().map(|r| r.query_source.clone()),
            index: self
                .retrieval
                .as_ref()
                .map(|r| r.store.dir().display().to_string()),
            data: data.map(|d| d.display().to_string()),
        }
    }

    /// Runs `f` with an evaluator over the models, prompts built as the recipe's (with
    /// `max_len` instead of `data.max_len` when given).
    pub fn with_evaluator<R>(
        &self,
        config: EvalConfig,
        max_len: Option<usize>,
        f: impl FnOnce(&Evaluator<'_, PromptTokenizer<'_>>) -> Result<R>,
    ) -> Result<R> {
        let tokenizer = &self.generator.tokenizer;
        let max_len = max_len.unwrap_or(self.recipe.data.max_len);
        let builder = prompt_builder_with_len(&self.recipe, tokenizer, max_len)?;
        let mut evaluator = Evaluator::new(&self.generator.model, tokenizer, &builder, config)?;
        if let Some(r) = &self.retrieval {
            let query = QueryEncoder {
                encoder: &r.base,
                model: r.query.as_ref().map_or(&r.base.model, |q| &q.model),
            };
            evaluator = evaluator
                .with_retrieval(&r.store, query)
                .with_search(r.search);
        }
        f(&evaluator)
    }
}

fn load_encoder(dir: &Path, device: &Device) -> Result<Encoder> {
    let spec = dir.display().to_string();
    Encoder::load(&spec, device)
        .map_err(|e| PipelineError::model(format!("query encoder {spec}"), e))
}
