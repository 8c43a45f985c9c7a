//! The R-ft stage: the query encoder learns from the generator which chunks help it
//! (LM-supervised retrieval); the document encoder and the index stay frozen.

use std::sync::Arc;

use radit_data::{corpus_pairs, Example, ExampleKey};
use radit_eval::RECALL_KS;
use radit_generator::{weights_fingerprint, LmScorer, ScoreCache};
use radit_models::{Bert, Encoder};
use radit_retriever::eval::{metric_pairs, retrieval_metrics};
use radit_retriever::loss::LossRegistry;
use radit_retriever::{HumanLabels, RftExample, RftObjective, RftSettings, TargetSource};
use radit_train::trainer::{BoxError, TrainConfig};
use radit_util::shard::Shard;

use crate::error::{PipelineError, Result};
use crate::recipe::RFtSection;
use crate::run_dir::StageDir;
use crate::stage::{BuiltinStage, Context, DevMetrics, Models, Prepared, Stage};

/// R-ft as configured by `[stages.r_ft]`, with the losses a recipe may name.
pub struct RFtStage {
    section: RFtSection,
    losses: Arc<LossRegistry>,
}

impl RFtStage {
    /// The stage of a recipe's `[stages.r_ft]` section; `losses` resolves `loss.name`.
    pub fn new(section: RFtSection, losses: Arc<LossRegistry>) -> Self {
        Self { section, losses }
    }
}

impl RFtStage {
    /// Candidates and generator targets, scored by the current generator through `cache`.
    fn targets<'a>(
        &self,
        ctx: &'a Context<'a>,
        models: &'a Models,
        cache: ScoreCache,
    ) -> Result<TargetSource<'a, radit_generator::PromptTokenizer<'a>>> {
        Ok(TargetSource {
            scorer: LmScorer::new(
                &models.generator,
                ctx.builder,
                ctx.tokenizer.pad_id(),
                weights_fingerprint(&models.generator)?,
                self.section.score_batch,
            ),
            cache: Some(cache),
            k: self.section.candidates,
            search: ctx.search,
            human: None,
        })
    }

    /// The reviewers' judgments of `[stages.r_ft.feedback]`, checked against the store's
    /// chunk texts; `None` without the section. Errors when the loss would ignore them.
    fn human_labels(
        &self,
        ctx: &Context<'_>,
        loss: &dyn radit_retriever::loss::RetrieverLoss,
    ) -> Result<Option<HumanLabels>> {
        let Some(feedback) = &self.section.feedback else {
            return Ok(None);
        };
        if !loss.requires().human {
            return Err(PipelineError::Invalid(format!(
                "stages.r_ft.feedback is set but loss `{}` does not use human judgments \
                 (lsr and infonce do); remove the section or choose one of them",
                loss.name()
            )));
        }
        let labels = HumanLabels::load(&feedback.labels, ctx.store)?;
        // One warning with the count, not one per line: a whole export from an older index
        // would otherwise flood the log.
        if labels.stale() > 0 {
            tracing::warn!(
                "{}: {} judgment(s) skipped: their chunk is missing from this index or its text \
                 changed (recorded against another index)",
                feedback.labels.display(),
                labels.stale()
            );
        }
        if labels.other_index() > 0 {
            tracing::info!(
                "{}: {} judgment(s) recorded against another index, used since the chunk texts match",
                feedback.labels.display(),
                labels.other_index()
            );
        }
        tracing::info!(
            "R-ft: {} human judgment(s) from {}, weight {}",
            labels.len(),
            feedback.labels.display(),
            feedback.weight
        );
        Ok(Some(labels))
    }
}

/// Opens a score cache, warning about lines a killed writer tore (they are recomputed).
fn open_cache(path: &std::path::Path) -> Result<ScoreCache> {
    let cache = ScoreCache::open(path)?;
    if cache.skipped_lines() > 0 {
        tracing::warn!(
            "{}: {} unreadable line(s) skipped; their scores are recomputed",
            path.display(),
            cache.skipped_lines()
        );
    }
    Ok(cache)
}

impl Stage for RFtStage {
    type Model = Bert;

    fn name(&self) -> &str {
        BuiltinStage::RFt.name()
    }

    fn title(&self) -> &str {
        "query encoder"
    }

    fn train_config(&self) -> &TrainConfig {
        &self.section.train
    }

    fn prepare<'a>(
        &'a self,
        ctx: &'a Context<'a>,
        models: &'a Models,
        stage: &StageDir,
    ) -> Result<Prepared<'a, Bert>> {
        let section = &self.section;
        let loss = self.losses.build_spec(&section.loss)?;
        let start: &'a Encoder = models.query_encoder(ctx);
        let mut cache = open_cache(&stage.score_cache())?;
        for shard in stage.score_cache_shards()? {
            let added = cache.absorb(&shard)?;
            tracing::info!(
                "R-ft: {added} generator score(s) taken from {}",
                shard.display()
            );
        }
        let mut targets = self.targets(ctx, models, cache)?;
        targets.human = self.human_labels(ctx, loss.as_ref())?;
        let queries = queries(ctx, section)?;
        tracing::info!(
            "R-ft: scoring {} queries × {} candidates with the generator ({} loss)",
            queries.len(),
            section.candidates,
            section.loss.name
        );
        let settings = RftSettings {
            retriever_temperature: section.retriever_temperature,
            batch_size: section.batch_size,
            seed: ctx.recipe.seed,
            cap: ctx.recipe.data.cap,
            refresh_every: section.refresh_every,
            human_weight: section.feedback.as_ref().map_or(0.0, |f| f.weight),
        };
        let started = std::time::Instant::now();
        let (objective, report) =
            RftObjective::new(queries, ctx.store, start, loss, settings, targets)?;
        tracing::info!(
            "R-ft: candidates retrieved and scored in {:.1} s; {report}",
            started.elapsed().as_secs_f64()
        );
        let trainable = Encoder::load(&models.query_source, &ctx.device.clone().autodiff())
            .map_err(|e| PipelineError::model(format!("query encoder {}", models.query_source), e))?
            .model;
        let depth = section.eval_depth;
        let dev = (!ctx.dev.is_empty()).then(|| {
            let metrics = move |model: &Bert| -> std::result::Result<_, BoxError> {
                let m = retrieval_metrics(start, model, ctx.store, ctx.dev, depth, &ctx.search)?;
                Ok(metric_pairs(&m, &RECALL_KS))
            };
            Box::new(metrics) as Box<DevMetrics<'a, Bert>>
        });
        Ok(Prepared {
            start: start.model.clone(),
            trainable,
            objective: Box::new(objective),
            dev,
        })
    }

    fn export(
        &self,
        ctx: &Context<'_>,
        model: Bert,
        stage: &StageDir,
        models: &mut Models,
    ) -> Result<()> {
        let final_dir = stage.final_dir();
        let base = &ctx.embedder.encoder;
        let query = Encoder {
            model,
            tokenizer: base.tokenizer.clone(),
            pooling: base.pooling,
            normalize: base.normalize,
            max_length: base.max_length,
            source: final_dir.display().to_string(),
            weights_hash: String::new(),
        };
        query
            .export(&final_dir)
            .map_err(|e| PipelineError::model(format!("exporting {}", final_dir.display()), e))?;
        models.query_source = query.source.clone();
        models.query = Some(query);
        Ok(())
    }

    fn precompute(
        &self,
        ctx: &Context<'_>,
        models: &Models,
        stage: &StageDir,
        shard: Shard,
    ) -> Result<Option<String>> {
        let section = &self.section;
        let leave_one_out = self
            .losses
            .build_spec(&section.loss)?
            .requires()
            .leave_one_out;
        let start = models.query_encoder(ctx);
        let path = if shard.is_whole() {
            stage.score_cache()
        } else {
            stage.score_cache_shard(shard)
        };
        let mut targets = self.targets(ctx, models, open_cache(&path)?)?;
        let queries = queries(ctx, section)?;
        let range = shard.range(queries.len());
        tracing::info!(
            "R-ft scoring, shard {shard}: queries {}..{} of {} × {} candidates into {}",
            range.start,
            range.end,
            queries.len(),
            section.candidates,
            path.display()
        );
        let (_, report) = targets.prepare_range(
            ctx.store,
            start,
            &start.model,
            &queries,
            leave_one_out,
            range.clone(),
        )?;
        Ok(Some(format!(
            "{}: shard {shard}, queries {}..{} of {}: {report}",
            stage.label,
            range.start,
            range.end,
            queries.len()
        )))
    }

    fn adopt(&self, ctx: &Context<'_>, stage: &StageDir, models: &mut Models) -> Result<()> {
        let final_dir = stage.final_dir().display().to_string();
        let query = Encoder::load(&final_dir, ctx.device)
            .map_err(|e| PipelineError::model(format!("query encoder {final_dir}"), e))?;
        models.query = Some(query);
        models.query_source = final_dir;
        Ok(())
    }
}

/// The R-ft queries: instruction examples (one dataset each) and corpus pairs (the last
/// dataset), mixed by size with the per-dataset cap.
fn queries(ctx: &Context<'_>, section: &RFtSection) -> Result<Vec<RftExample>> {
    let mut out = Vec::new();
    for (d, examples) in ctx.train.iter().enumerate() {
        for (i, e) in examples.iter().enumerate() {
            out.push(RftExample {
                key: ExampleKey {
                    dataset: d,
                    example: i,
                },
                example: e.clone(),
                source_chunk: None,
            });
        }
    }
    if section.corpus_pairs > 0 {
        let store = ctx.store;
        let texts: Vec<String> = (0..store.len() as u32)
            .map(|id| Ok(store.chunk(id)?.text))
            .collect::<std::result::Result<_, radit_docstore::Error>>()?;
        let chunks: Vec<(u32, &str)> = texts
            .iter()
            .enumerate()
            .map(|(id, t)| (id as u32, t.as_str()))
            .collect();
        let pairs = corpus_pairs(
            &chunks,
            section.corpus_pairs,
            section.pair_words,
            ctx.recipe.seed,
        );
        for (i, p) in pairs.into_iter().enumerate() {
            out.push(RftExample {
                key: ExampleKey {
                    dataset: ctx.train.len(),
                    example: i,
                },
                example: Example {
                    id: format!("pair:{i}"),
                    question: p.query,
                    answers: vec![p.target],
                    context: None,
                    choices: Vec::new(),
                },
                source_chunk: Some(p.chunk),
            });
        }
    }
    Ok(out)
}
