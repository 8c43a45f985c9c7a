//! The LM-ft stage: the generator learns to answer from one retrieved chunk. Each training
//! question is repeated for each of its top-k chunks, the loss covers answer tokens only.

use radit_data::{
    packed_batch, pad_batch, BuildReport, ExampleKey, Instance, Sampler, SamplerConfig,
    SamplerState,
};
use radit_docstore::Retriever;
use radit_eval::{EvalConfig, Evaluator, Mode, RunInfo};
use radit_generator::lora::{apply_lora, parameter_counts};
use radit_generator::trainer::{BatchSource, LmObjective};
use radit_models::{Generator, Llama, TokenBatch};
use radit_retriever::QueryEncoder;
use radit_train::trainer::{BoxError, TrainConfig};

use crate::error::{invalid, PipelineError, Result};
use crate::recipe::{LmFtSection, Recipe};
use crate::run_dir::StageDir;
use crate::stage::{BuiltinStage, Context, DevMetrics, Models, Prepared, Stage};

/// LM-ft as configured by `[stages.lm_ft]`.
pub struct LmFtStage {
    section: LmFtSection,
}

impl LmFtStage {
    /// The stage of a recipe's `[stages.lm_ft]` section.
    pub fn new(section: LmFtSection) -> Self {
        Self { section }
    }
}

/// The settings of dev EM/F1 during LM-ft: greedy answers read with the top-1 chunk. This is
/// `radit eval --k 1` on the same data, so the numbers a run logs are the numbers eval gives.
pub fn dev_eval_config(recipe: &Recipe) -> EvalConfig {
    EvalConfig {
        mode: Mode::Ensemble,
        k: 1,
        answer_tokens: recipe.data.answer_tokens,
        ..EvalConfig::default()
    }
}

impl Stage for LmFtStage {
    type Model = Llama;

    fn name(&self) -> &str {
        BuiltinStage::LmFt.name()
    }

    fn title(&self) -> &str {
        "generator (top-1 chunk)"
    }

    fn train_config(&self) -> &TrainConfig {
        &self.section.train
    }

    fn prepare<'a>(
        &'a self,
        ctx: &'a Context<'a>,
        models: &'a Models,
        _stage: &StageDir,
    ) -> Result<Prepared<'a, Llama>> {
        let recipe = ctx.recipe;
        let data = &recipe.data;
        // LM-ft retrieves with the base query encoder, or the R-ft one when asked to.
        let query = if recipe.stages.re_retrieve {
            models.query(ctx)
        } else {
            QueryEncoder::base(&ctx.embedder.encoder)
        };
        let mut report = BuildReport::default();
        let mut instances = Vec::new();
        for (d, examples) in ctx.train.iter().enumerate() {
            let questions: Vec<&str> = examples.iter().map(|e| e.question.as_str()).collect();
            let backgrounds =
                retrieve_backgrounds(ctx, &query, &questions, recipe.retriever.top_k)?;
            for (i, (example, chunks)) in examples.iter().zip(&backgrounds).enumerate() {
                let key = ExampleKey {
                    dataset: d,
                    example: i,
                };
                instances.extend(ctx.builder.instances(key, example, chunks, &mut report)?);
            }
        }
        tracing::info!("{report}");
        if instances.is_empty() {
            invalid!("no training instance fits data.max_len {}", data.max_len);
        }
        let sampler = Sampler::from_instances(
            &instances,
            SamplerConfig {
                batch_size: data.batch_size,
                seed: recipe.seed,
                cap: data.cap,
                drop_last: false,
            },
        )?;
        let source = InstanceSource {
            instances,
            sampler,
            pad_id: ctx.tokenizer.pad_id(),
            pack: data.packing.then_some(data.max_len),
        };
        let mut trainable = load_trainable_generator(ctx, models)?;
        if let Some(lora) = &self.section.lora {
            trainable = apply_lora(trainable, lora)?;
            let (trainable_params, total) = parameter_counts(&trainable);
            tracing::info!(
                "LoRA rank {} on {}: {trainable_params} of {total} parameters trainable",
                lora.rank,
                lora.targets.join(", ")
            );
        }
        Ok(Prepared {
            start: models.generator.clone(),
            trainable,
            objective: Box::new(LmObjective::new(source)),
            dev: generator_dev_metrics(ctx, query),
        })
    }

    fn export(
        &self,
        ctx: &Context<'_>,
        model: Llama,
        stage: &StageDir,
        models: &mut Models,
    ) -> Result<()> {
        export_generator(ctx, model, stage, models)
    }

    fn adopt(&self, ctx: &Context<'_>, stage: &StageDir, models: &mut Models) -> Result<()> {
        adopt_generator(ctx, stage, models)
    }
}

/// The background texts of the top `k` chunks of each question, found by `query` in the index
/// with the recipe's search mode: the retrieval every generator stage trains with.
pub(crate) fn retrieve_backgrounds(
    ctx: &Context<'_>,
    query: &QueryEncoder<'_>,
    questions: &[&str],
    k: usize,
) -> Result<Vec<Vec<String>>> {
    let retriever = Retriever::new(ctx.store, query)?;
    let hits = retriever.retrieve(questions, k, &ctx.search)?;
    Ok(hits
        .iter()
        .map(|top| top.iter().map(|h| h.chunk.background_text()).collect())
        .collect())
}

/// A trainable copy (autodiff device) of the current generator, loaded from its source.
pub(crate) fn load_trainable_generator(ctx: &Context<'_>, models: &Models) -> Result<Llama> {
    let train_device = ctx.device.clone().autodiff();
    Ok(Generator::load(&models.generator_source, &train_device)
        .map_err(|e| PipelineError::model(format!("generator {}", models.generator_source), e))?
        .model)
}

/// Dev EM/F1 of a generator answering from the top-1 chunk `query` retrieves (see
/// [`dev_eval_config`]); `None` without dev data.
pub(crate) fn generator_dev_metrics<'a>(
    ctx: &'a Context<'a>,
    query: QueryEncoder<'a>,
) -> Option<Box<DevMetrics<'a, Llama>>> {
    (!ctx.dev.is_empty()).then(|| {
        let config = dev_eval_config(ctx.recipe);
        let metrics = move |model: &Llama| -> std::result::Result<_, BoxError> {
            let evaluator = Evaluator::new(model, ctx.tokenizer, ctx.builder, config.clone())?
                .with_retrieval(ctx.store, query)
                .with_search(ctx.search);
            let report = evaluator.evaluate(ctx.dev, RunInfo::default(), &mut |_, _| {})?;
            Ok(vec![
                ("dev/em".to_string(), report.metrics.em),
                ("dev/f1".to_string(), report.metrics.f1),
            ])
        };
        Box::new(metrics) as Box<DevMetrics<'a, Llama>>
    })
}

/// Exports a trained generator as a Hugging Face checkpoint to the stage's `final/` and makes
/// it the current generator.
pub(crate) fn export_generator(
    ctx: &Context<'_>,
    model: Llama,
    stage: &StageDir,
    models: &mut Models,
) -> Result<()> {
    let final_dir = stage.final_dir();
    let trained = Generator {
        model,
        tokenizer: ctx.tokenizer.clone(),
    };
    trained
        .export(&final_dir)
        .map_err(|e| PipelineError::model(format!("exporting {}", final_dir.display()), e))?;
    models.generator = trained.model;
    models.generator_source = final_dir.display().to_string();
    Ok(())
}

/// Makes the generator in the `final/` of a stage completed earlier current.
pub(crate) fn adopt_generator(
    ctx: &Context<'_>,
    stage: &StageDir,
    models: &mut Models,
) -> Result<()> {
    let final_dir = stage.final_dir().display().to_string();
    models.generator = Generator::load(&final_dir, ctx.device)
        .map_err(|e| PipelineError::model(format!("generator {final_dir}"), e))?
        .model;
    models.generator_source = final_dir;
    Ok(())
}

/// Training instances served by the deterministic sampler, padded or packed.
struct InstanceSource {
    instances: Vec<Instance>,
    sampler: Sampler,
    pad_id: u32,
    /// Row length when packing.
    pack: Option<usize>,
}

impl BatchSource for InstanceSource {
    fn next_batch(&mut self) -> std::result::Result<(TokenBatch, Vec<u8>), BoxError> {
        let sampled = self.sampler.next_batch();
        let batch = match self.pack {
            Some(max_len) => packed_batch(&self.instances, &sampled.indices, max_len, self.pad_id)?,
            None => pad_batch(&self.instances, &sampled.indices, self.pad_id, None)?,
        };
        let tokens = TokenBatch::packed(batch.ids, batch.segment_ids, batch.rows, batch.seq_len)?;
        Ok((tokens, batch.answer_mask))
    }
    fn state(&self) -> std::result::Result<Vec<u8>, BoxError> {
        Ok(serde_json::to_vec(&self.sampler.state())?)
    }
    fn restore(&mut self, state: &[u8]) -> std::result::Result<(), BoxError> {
        let state: SamplerState = serde_json::from_slice(state)?;
        Ok(self.sampler.restore(state)?)
    }
}
