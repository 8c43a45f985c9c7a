//! R-ft data and objective: queries with their candidate chunks and generator targets, served
//! to the shared training loop.
//!
//! Candidates are the top-`k'` chunks of the frozen index for the query encoder's embedding of
//! `x` (exact search); their stored document embeddings stay fixed, so only the query side
//! moves. Generator targets are computed for every (query, candidate) before training — the
//! paper's offline mode, cached on disk — and, with `refresh_every`, candidates are
//! re-retrieved with the current query encoder every N steps and the new pairs scored.

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use radit_data::{
    first_answer_rank, Example, ExampleKey, Sampler, SamplerConfig, SamplerState, Tokenize,
};
use radit_docstore::{DocStore, Retriever, SearchMode};

use crate::embedder::QueryEncoder;
use radit_models::{Bert, Encoder};
use radit_train::trainer::{BoxError, MicroBatchLoss, Objective};
use serde::{Deserialize, Serialize};

use crate::feedback::HumanLabels;
use crate::loss::{LossBatch, RetrieverLoss};
use crate::RetrieverError;
use radit_generator::{LmScorer, ScoreCache, ScoreRequest};

/// One R-ft training query: `x` (question, or the head of a chunk), `y` (its first answer, or
/// the chunk's tail).
#[derive(Debug, Clone, PartialEq)]
pub struct RftExample {
    /// Dataset (instruction datasets first, corpus pairs last, by convention) and index.
    pub key: ExampleKey,
    /// Question and gold answers.
    pub example: Example,
    /// For a corpus pair, the chunk it was cut from: never a candidate (it contains `y`
    /// verbatim) but the positive for contrastive losses.
    pub source_chunk: Option<u32>,
}

/// A query's candidate chunks and the generator's verdict on each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidates {
    /// Chunk ids, best first by the retriever that found them.
    pub ids: Vec<u32>,
    /// `log p_LM(y | c ∘ x)` per candidate.
    pub logprob: Vec<f32>,
    /// Scored continuation tokens per candidate.
    pub tokens: Vec<f32>,
    /// `log p_LM(y | other candidates ∘ x)` per candidate, for leave-one-out losses.
    pub loo: Option<Vec<f32>>,
    /// Index of the positive chunk among `ids`, if any.
    pub positive: Option<usize>,
    /// Per candidate, 1.0 when a reviewer judged it helpful for this query and 0.0
    /// otherwise (not helpful, or not judged); `None` when no candidate was judged.
    /// (Absent from checkpoints written before judgments existed.)
    #[serde(default)]
    pub human: Option<Vec<f32>>,
}

impl Candidates {
    /// The positive a contrastive loss trains towards: with `human`, the best-ranked
    /// candidate judged helpful when there is one; otherwise [`Candidates::positive`].
    pub fn training_positive(&self, human: bool) -> Option<usize> {
        let helpful = self
            .human
            .as_ref()
            .filter(|_| human)
            .and_then(|row| row.iter().position(|&h| h > 0.0));
        helpful.or(self.positive)
    }

    /// `p_human` over the `k` candidates: uniform over those judged helpful, all zeros when
    /// none is.
    pub fn human_distribution(&self, k: usize) -> Vec<f32> {
        let mut row = vec![0.0; k];
        if let Some(labels) = &self.human {
            let helpful = labels.iter().filter(|&&h| h > 0.0).count();
            for (p, &h) in row.iter_mut().zip(labels) {
                if h > 0.0 {
                    *p = 1.0 / helpful as f32;
                }
            }
        }
        row
    }
}

/// Counts of candidate preparation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrepareReport {
    /// Queries with a full candidate list.
    pub ready: usize,
    /// Queries dropped because an instance did not fit `max_len`.
    pub dropped: usize,
    /// Queries with a positive (answer-bearing or source) candidate.
    pub with_positive: usize,
    /// Of those, queries where the generator likes the positive best: how much the
    /// generator's supervision agrees with answer matching.
    pub generator_prefers_positive: usize,
    /// Queries where the retriever already ranks the positive first.
    pub retriever_prefers_positive: usize,
    /// Generator scores computed by this preparation.
    pub scores_computed: usize,
    /// Generator scores not computed: found in the on-disk cache, or repeats of a request
    /// made for another query.
    pub scores_cached: usize,
    /// Whether human judgments were given (`[stages.r_ft.feedback]`).
    pub feedback: bool,
    /// Ready queries with at least one candidate judged by a reviewer.
    pub human_queries: usize,
    /// Judgments applied: (query, candidate) pairs with a human label.
    pub human_labels: usize,
    /// Judgments skipped because their chunk is missing from the index or its text changed.
    pub human_stale: usize,
}

impl std::fmt::Display for PrepareReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "R-ft candidates: {} queries ready, {} dropped (instance longer than max_len), \
             {} with an answer-bearing or source chunk, ranked first by the generator for {} \
             and by the retriever for {}; generator scores: {} computed, {} reused (cached or repeated)",
            self.ready,
            self.dropped,
            self.with_positive,
            self.generator_prefers_positive,
            self.retriever_prefers_positive,
            self.scores_computed,
            self.scores_cached
        )?;
        if self.feedback {
            write!(
                f,
                "; human judgments: {} applied to {} queries, {} stale (chunk missing or changed)",
                self.human_labels, self.human_queries, self.human_stale
            )?;
        }
        Ok(())
    }
}

/// Computes candidates and their generator targets.
pub struct TargetSource<'a, T: Tokenize> {
    /// The frozen generator's scorer.
    pub scorer: LmScorer<'a, T>,
    /// On-disk cache of scores.
    pub cache: Option<ScoreCache>,
    /// Candidates per query (`k'`, paper 10).
    pub k: usize,
    /// How candidates are searched (the recipe's `retriever.search`; exact by default).
    pub search: SearchMode,
    /// Reviewers' judgments, attached to every candidate list prepared (refreshes too).
    pub human: Option<HumanLabels>,
}

impl<T: Tokenize> TargetSource<'_, T> {
    /// Attaches the judgments of `question` to `candidates`; returns how many apply.
    fn label(&self, question: &str, candidates: &mut Candidates) -> usize {
        let found = self
            .human
            .as_ref()
            .and_then(|h| h.for_candidates(question, &candidates.ids));
        let judged = found.as_ref().map_or(0, |(_, n)| *n);
        candidates.human = found.map(|(row, _)| row);
        judged
    }

    /// Retrieves the candidates of every query with `model` (the query encoder, inference
    /// device) and scores them, with the leave-one-out scores when `leave_one_out`; `None`
    /// for a query with an instance that does not fit.
    pub fn prepare(
        &mut self,
        store: &DocStore,
        encoder: &Encoder,
        model: &Bert,
        queries: &[RftExample],
        leave_one_out: bool,
    ) -> Result<(Vec<Option<Candidates>>, PrepareReport), RetrieverError> {
        self.prepare_range(
            store,
            encoder,
            model,
            queries,
            leave_one_out,
            0..queries.len(),
        )
    }

    /// [`TargetSource::prepare`] for the queries `range` only (one shard of `radit score`).
    /// Candidates are still retrieved for every query, as one batch, exactly as the whole
    /// preparation does: query embeddings depend on their batch, so a shard retrieving only
    /// its own queries could find other candidates than training later looks up.
    pub fn prepare_range(
        &mut self,
        store: &DocStore,
        encoder: &Encoder,
        model: &Bert,
        queries: &[RftExample],
        leave_one_out: bool,
        range: std::ops::Range<usize>,
    ) -> Result<(Vec<Option<Candidates>>, PrepareReport), RetrieverError> {
        let k = self.k.min(store.len().saturating_sub(1)).max(1);
        let texts: Vec<&str> = queries
            .iter()
            .map(|q| q.example.question.as_str())
            .collect();
        let query = QueryEncoder { encoder, model };
        let hits = Retriever::new(store, &query)?.retrieve_ids(&texts, k + 1, &self.search)?;
        let (queries, hits) = match (queries.get(range.clone()), hits.get(range.clone())) {
            (Some(q), Some(h)) => (q, h),
            _ => {
                return Err(RetrieverError::Input(format!(
                    "queries {}..{} asked of {}",
                    range.start,
                    range.end,
                    queries.len()
                )))
            }
        };
        let mut lists = Vec::with_capacity(queries.len());
        for (q, scored) in queries.iter().zip(hits) {
            let mut ids: Vec<u32> = scored
                .iter()
                .map(|s| s.id)
                .filter(|&id| Some(id) != q.source_chunk)
                .collect();
            ids.truncate(k);
            let mut texts = Vec::with_capacity(ids.len());
            for &id in &ids {
                texts.push(store.chunk(id)?.background_text());
            }
            let positive = match q.source_chunk {
                Some(source) => {
                    // The source chunk is the contrastive positive: it takes the last slot.
                    if let Some(last) = ids.last_mut() {
                        *last = source;
                    }
                    if let Some(last) = texts.last_mut() {
                        *last = store.chunk(source)?.background_text();
                    }
                    Some(ids.len() - 1)
                }
                None => first_answer_rank(&texts, &q.example.answers),
            };
            lists.push((ids, texts, positive));
        }
        let mut requests = Vec::new();
        for (q, (_, texts, _)) in queries.iter().zip(&lists) {
            for text in texts {
                requests.push(ScoreRequest {
                    key: q.key,
                    example: &q.example,
                    background: Some(text.clone()),
                });
            }
            if leave_one_out {
                for skip in 0..texts.len() {
                    let others: Vec<&str> = texts
                        .iter()
                        .enumerate()
                        .filter(|&(j, _)| j != skip)
                        .map(|(_, t)| t.as_str())
                        .collect();
                    requests.push(ScoreRequest {
                        key: q.key,
                        example: &q.example,
                        background: Some(others.join("\n\n")),
                    });
                }
            }
        }
        let cached_before = self.cache.as_ref().map(ScoreCache::len);
        let scores = self.scorer.score(&requests, self.cache.as_mut())?;
        let per_query = if leave_one_out { 2 } else { 1 };
        let scored = scores.iter().filter(|s| s.is_some()).count();
        // What the cache gained is what the generator computed.
        let computed = match (cached_before, self.cache.as_ref()) {
            (Some(before), Some(cache)) => cache.len() - before,
            _ => scored,
        };
        let mut report = PrepareReport {
            scores_computed: computed,
            scores_cached: scored.saturating_sub(computed),
            feedback: self.human.is_some(),
            human_stale: self.human.as_ref().map_or(0, HumanLabels::stale),
            ..PrepareReport::default()
        };
        let mut out = Vec::with_capacity(queries.len());
        let mut at = 0;
        for (q, (ids, _, positive)) in queries.iter().zip(lists) {
            let n = ids.len();
            let block = &scores[at..at + per_query * n];
            at += per_query * n;
            if block.iter().any(Option::is_none) || n == 0 {
                report.dropped += 1;
                out.push(None);
                continue;
            }
            let single = block[..n].iter().flatten();
            let loo =
                leave_one_out.then(|| block[n..].iter().flatten().map(|s| s.logprob).collect());
            let logprob: Vec<f32> = single.clone().map(|s| s.logprob).collect();
            report.ready += 1;
            if let Some(p) = positive {
                report.with_positive += 1;
                let best = (0..n).max_by(|&a, &b| logprob[a].total_cmp(&logprob[b]));
                report.generator_prefers_positive += usize::from(best == Some(p));
                report.retriever_prefers_positive += usize::from(p == 0);
            }
            let mut candidates = Candidates {
                ids,
                logprob,
                tokens: single.map(|s| s.tokens.max(1) as f32).collect(),
                loo,
                positive,
                human: None,
            };
            let judged = self.label(&q.example.question, &mut candidates);
            report.human_labels += judged;
            report.human_queries += usize::from(judged > 0);
            out.push(Some(candidates));
        }
        Ok((out, report))
    }
}

/// R-ft settings besides the loop's.
#[derive(Debug, Clone, PartialEq)]
pub struct RftSettings {
    /// τ_R: retriever logits are `s(x, c) / τ_R`.
    pub retriever_temperature: f64,
    /// Queries per micro-batch.
    pub batch_size: usize,
    /// Seed of the query order.
    pub seed: u64,
    /// Per-dataset cap per epoch.
    pub cap: Option<usize>,
    /// Re-retrieve candidates with the current query encoder every this many steps.
    pub refresh_every: Option<u64>,
    /// λ of human judgments (`[stages.r_ft.feedback] weight`); 0 ignores them.
    pub human_weight: f64,
}

/// The retriever's logits over each query's candidates: `s(x, c) / τ_R`, the inner product of
/// the query embeddings `q` `[b, dim]` with their frozen candidate embeddings `docs`
/// `[b, k, dim]`, divided by `tau_r`; `[b, k]`. Every R-ft loss starts from these.
pub fn candidate_logits(q: Tensor<2>, docs: Tensor<3>, tau_r: f64) -> Tensor<2> {
    let [b, dim] = q.dims();
    let k = docs.dims()[1];
    q.reshape([b, 1, dim])
        .mul(docs)
        .sum_dim(2)
        .reshape([b, k])
        .div_scalar(tau_r)
}

/// A one-hot row of `k` at `at` (all zeros without a positive).
fn one_hot(at: Option<usize>, k: usize) -> Vec<f32> {
    (0..k)
        .map(|j| if at == Some(j) { 1.0 } else { 0.0 })
        .collect()
}

#[derive(Serialize, Deserialize)]
struct ObjectiveState {
    sampler: SamplerState,
    /// Candidates after the last refresh (absent while they are the prepared ones).
    refreshed: Option<(u64, Vec<Option<Candidates>>)>,
}

/// The R-ft objective: the chosen retriever loss on batches of queries.
pub struct RftObjective<'a, T: Tokenize> {
    queries: Vec<RftExample>,
    candidates: Vec<Option<Candidates>>,
    refreshed_at: Option<u64>,
    sampler: Sampler,
    store: &'a DocStore,
    encoder: &'a Encoder,
    loss: Box<dyn RetrieverLoss>,
    settings: RftSettings,
    targets: TargetSource<'a, T>,
}

impl<'a, T: Tokenize> RftObjective<'a, T> {
    /// Prepares the candidates of `queries` with the base query encoder (`encoder.model`)
    /// and builds the objective. Queries whose candidates cannot be scored are left out.
    pub fn new(
        queries: Vec<RftExample>,
        store: &'a DocStore,
        encoder: &'a Encoder,
        loss: Box<dyn RetrieverLoss>,
        settings: RftSettings,
        mut targets: TargetSource<'a, T>,
    ) -> Result<(Self, PrepareReport), RetrieverError> {
        let leave_one_out = loss.requires().leave_one_out;
        let (candidates, report) =
            targets.prepare(store, encoder, &encoder.model, &queries, leave_one_out)?;
        let mut groups: Vec<Vec<Vec<usize>>> = Vec::new();
        for (i, (q, c)) in queries.iter().zip(&candidates).enumerate() {
            if c.is_none() {
                continue;
            }
            if groups.len() <= q.key.dataset {
                groups.resize_with(q.key.dataset + 1, Vec::new);
            }
            groups[q.key.dataset].push(vec![i]);
        }
        if groups.iter().all(Vec::is_empty) {
            return Err(RetrieverError::Input(format!(
                "no R-ft query has scorable candidates ({report})"
            )));
        }
        let sampler = Sampler::new(
            groups,
            SamplerConfig {
                batch_size: settings.batch_size,
                seed: settings.seed,
                cap: settings.cap,
                drop_last: false,
            },
        )?;
        let objective = Self {
            queries,
            candidates,
            refreshed_at: None,
            sampler,
            store,
            encoder,
            loss,
            settings,
            targets,
        };
        Ok((objective, report))
    }

    /// The candidates in use, per query (`None`: left out).
    pub fn candidates(&self) -> &[Option<Candidates>] {
        &self.candidates
    }

    fn refresh(&mut self, model: &Bert, step: u64) -> Result<(), RetrieverError> {
        let inference = model.valid();
        let leave_one_out = self.loss.requires().leave_one_out;
        let (fresh, _) = self.targets.prepare(
            self.store,
            self.encoder,
            &inference,
            &self.queries,
            leave_one_out,
        )?;
        // A query keeps its old candidates when the new ones cannot be scored, so the
        // sampler's population never changes.
        for (old, new) in self.candidates.iter_mut().zip(fresh) {
            if old.is_some() && new.is_some() {
                *old = new;
            }
        }
        self.refreshed_at = Some(step);
        Ok(())
    }

    fn loss_batch(&self, model: &Bert, indices: &[usize]) -> Result<LossBatch, BoxError> {
        let chosen: Vec<&Candidates> = indices
            .iter()
            .filter_map(|&i| self.candidates[i].as_ref())
            .collect();
        let b = chosen.len();
        let k = chosen.first().map_or(0, |c| c.ids.len());
        if b != indices.len() || chosen.iter().any(|c| c.ids.len() != k) {
            return Err("R-ft batch with missing or uneven candidate lists".into());
        }
        let texts: Vec<&str> = indices
            .iter()
            .map(|&i| self.queries[i].example.question.as_str())
            .collect();
        let device = model.device();
        let q = self.encoder.embed_tensor_with(model, &texts)?;
        let dim = q.dims()[1];
        let mut docs = Vec::with_capacity(b * k * dim);
        for c in &chosen {
            for &id in &c.ids {
                let e = self
                    .store
                    .embedding(id)
                    .ok_or_else(|| format!("chunk {id} is not in the index"))?;
                docs.extend_from_slice(e);
            }
        }
        let docs = Tensor::<3>::from_data(TensorData::new(docs, [b, k, dim]), &device);
        let scores = candidate_logits(q, docs, self.settings.retriever_temperature);
        let matrix = |f: &dyn Fn(&Candidates) -> Vec<f32>| {
            let data: Vec<f32> = chosen.iter().flat_map(|c| f(c)).collect();
            Tensor::<2>::from_data(TensorData::new(data, [b, k]), &device)
        };
        let requires = self.loss.requires();
        let loo = if requires.leave_one_out {
            if chosen.iter().any(|c| c.loo.is_none()) {
                return Err("leave-one-out targets were not computed".into());
            }
            Some(matrix(&|c| c.loo.clone().unwrap_or_default()))
        } else {
            None
        };
        // λ = 0 turns judgments off for every loss, the positive override included.
        let human = requires.human
            && self.settings.human_weight > 0.0
            && chosen.iter().any(|c| c.human.is_some());
        let positive = requires
            .positive
            .then(|| matrix(&|c| one_hot(c.training_positive(human), k)));
        Ok(LossBatch {
            retriever_logits: scores,
            lm_logprob: matrix(&|c| c.logprob.clone()),
            answer_tokens: matrix(&|c| c.tokens.clone()),
            loo_logprob: loo,
            positive,
            human: human.then(|| matrix(&|c| c.human_distribution(k))),
            human_weight: if human {
                self.settings.human_weight
            } else {
                0.0
            },
        })
    }
}

impl<T: Tokenize> Objective<Bert> for RftObjective<'_, T> {
    fn next_loss(&mut self, model: &Bert, step: u64) -> Result<MicroBatchLoss, BoxError> {
        if let Some(every) = self.settings.refresh_every {
            if step > 0 && step.is_multiple_of(every.max(1)) && self.refreshed_at != Some(step) {
                self.refresh(model, step)?;
            }
        }
        let sampled = self.sampler.next_batch();
        let batch = self.loss_batch(model, &sampled.indices)?;
        Ok(MicroBatchLoss {
            loss: self.loss.loss(&batch)?,
            items: sampled.indices.len() as u64,
        })
    }

    fn state(&self) -> Result<Vec<u8>, BoxError> {
        let state = ObjectiveState {
            sampler: self.sampler.state(),
            refreshed: self.refreshed_at.map(|s| (s, self.candidates.clone())),
        };
        Ok(serde_json::to_vec(&state)?)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
        let state: ObjectiveState = serde_json::from_slice(state)?;
        self.sampler.restore(state.sampler)?;
        if let Some((step, candidates)) = state.refreshed {
            if candidates.len() != self.candidates.len() {
                return Err(format!(
                    "checkpoint holds candidates of {} queries, this run has {}",
                    candidates.len(),
                    self.candidates.len()
                )
                .into());
            }
            self.candidates = candidates;
            // Judgments follow this run's file, not the one the checkpoint was written with.
            for (q, c) in self.queries.iter().zip(self.candidates.iter_mut()) {
                if let Some(c) = c {
                    self.targets.label(&q.example.question, c);
                }
            }
            self.refreshed_at = Some(step);
        }
        Ok(())
    }

    fn unit(&self) -> &'static str {
        "queries"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::InfoNce;
    use burn::tensor::Device;

    fn candidates(positive: Option<usize>, human: Option<Vec<f32>>) -> Candidates {
        Candidates {
            ids: vec![7, 3, 9, 4],
            logprob: vec![-1.0; 4],
            tokens: vec![1.0; 4],
            loo: None,
            positive,
            human,
        }
    }

    #[test]
    fn a_helpful_candidate_overrides_the_answer_positive() {
        // Candidates 1 and 3 judged helpful, 0 not helpful: the best-ranked helpful one (1).
        let judged = candidates(Some(2), Some(vec![0.0, 1.0, 0.0, 1.0]));
        assert_eq!(judged.training_positive(true), Some(1));
        assert_eq!(judged.training_positive(false), Some(2));
        assert_eq!(judged.human_distribution(4), vec![0.0, 0.5, 0.0, 0.5]);
        // Judged, but nothing helpful: the answer positive stays, and p_human is all zeros.
        let unhelpful = candidates(Some(2), Some(vec![0.0; 4]));
        assert_eq!(unhelpful.training_positive(true), Some(2));
        assert_eq!(unhelpful.human_distribution(4), vec![0.0; 4]);
        // A helpful judgment gives a positive to a query without an answer-bearing chunk.
        let only_human = candidates(None, Some(vec![0.0, 0.0, 1.0, 0.0]));
        assert_eq!(only_human.training_positive(true), Some(2));
        assert_eq!(candidates(None, None).training_positive(true), None);
    }

    #[test]
    fn infonce_trains_towards_the_human_positive() {
        let device = Device::flex();
        let logits = [0.4f32, -0.2, 1.0, 0.3];
        let rows = [
            candidates(Some(2), Some(vec![0.0, 1.0, 0.0, 1.0])),
            candidates(Some(0), None),
        ];
        let matrix = |f: &dyn Fn(&Candidates) -> Vec<f32>| {
            let data: Vec<f32> = rows.iter().flat_map(f).collect();
            Tensor::<2>::from_data(TensorData::new(data, [2, 4]), &device)
        };
        let batch = LossBatch {
            retriever_logits: matrix(&|_| logits.to_vec()),
            lm_logprob: matrix(&|c| c.logprob.clone()),
            answer_tokens: matrix(&|c| c.tokens.clone()),
            loo_logprob: None,
            positive: Some(matrix(&|c| one_hot(c.training_positive(true), 4))),
            human: Some(matrix(&|c| c.human_distribution(4))),
            human_weight: 0.5,
        };
        let loss = f64::from(InfoNce.loss(&batch).unwrap().into_scalar::<f32>());
        let lse = logits.iter().map(|&x| f64::from(x).exp()).sum::<f64>().ln();
        // Query 1 towards its helpful candidate 1, query 2 towards its answer chunk 0.
        let expected = ((lse - f64::from(logits[1])) + (lse - f64::from(logits[0]))) / 2.0;
        assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
    }
}
