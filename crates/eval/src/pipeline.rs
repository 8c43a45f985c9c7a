//! Retrieval, candidate generation, ensemble scoring and records, batched over questions.

use std::time::Instant;

use radit_data::{
    exact_match, first_answer_rank, rouge_l_max, token_f1, Example, ExampleKey, InstanceBuilder,
    Tokenize,
};
use radit_docstore::{DocStore, Retriever, SearchMode};
use radit_generator::{LmScore, LmScorer, ScoreRequest};
use radit_models::{generate, GenerationConfig, Llama, TextTokenizer};
pub use radit_retriever::QueryEncoder;

use crate::ensemble::{
    best, contributions, ensemble_log_likelihood, retrieval_log_weights, Likelihood,
};
use crate::report::{
    choice_correct, finite, CandidateRecord, ChunkUse, EvalMetrics, EvalReport, QuestionRecord,
    RunInfo,
};
use crate::{EvalConfig, EvalError, Mode};

/// One retrieved chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrieved {
    /// Chunk id.
    pub id: u32,
    /// Retrieval score `E_q(x)·E_d(c)`.
    pub score: f32,
    /// Its document's title.
    pub title: String,
    /// The chunk as the generator reads it (`{title}: {text}`).
    pub background: String,
}

/// Runs RA-DIT inference and evaluation with a frozen generator (and, except in
/// `closed_book` mode, a query encoder over a frozen index).
pub struct Evaluator<'a, T: Tokenize> {
    generator: &'a Llama,
    tokenizer: &'a TextTokenizer,
    builder: &'a InstanceBuilder<T>,
    retrieval: Option<(&'a DocStore, QueryEncoder<'a>)>,
    search: SearchMode,
    config: EvalConfig,
    dataset: usize,
}

/// The backgrounds one question is read with, and their log weights.
struct Plan {
    backgrounds: Vec<Option<String>>,
    log_weights: Vec<f64>,
    /// Top-k chunks (ids, scores, titles) with `p_R`, in rank order.
    chunks: Vec<(Retrieved, f64)>,
    retrieved: Vec<Retrieved>,
    gold_context: bool,
}

/// Questions processed together (retrieval, generation and scoring batches span them).
pub const QUESTION_GROUP: usize = 16;

impl<'a, T: Tokenize> Evaluator<'a, T> {
    /// An evaluator of `generator` (inference device) whose prompts `builder` makes and whose
    /// answers `tokenizer` decodes. Add retrieval with [`Evaluator::with_retrieval`].
    pub fn new(
        generator: &'a Llama,
        tokenizer: &'a TextTokenizer,
        builder: &'a InstanceBuilder<T>,
        config: EvalConfig,
    ) -> Result<Self, EvalError> {
        config.validate()?;
        Ok(Self {
            generator,
            tokenizer,
            builder,
            retrieval: None,
            search: SearchMode::Dense(radit_docstore::Dense::Exact),
            config,
            dataset: 1,
        })
    }

    /// Retrieves from `store` with `query`.
    pub fn with_retrieval(mut self, store: &'a DocStore, query: QueryEncoder<'a>) -> Self {
        self.retrieval = Some((store, query));
        self
    }

    /// Searches the index in `mode` (the recipe's `retriever.search`) instead of exactly.
    pub fn with_search(mut self, mode: SearchMode) -> Self {
        self.search = mode;
        self
    }

    /// The dataset index of the example keys (it seeds the prompt markers with the example
    /// index; default 1, as `radit train` uses for its dev set).
    pub fn with_dataset_index(mut self, dataset: usize) -> Self {
        self.dataset = dataset;
        self
    }

    /// The settings.
    pub fn config(&self) -> &EvalConfig {
        &self.config
    }

    /// The top-`depth` chunks of each question, best first, searched in the evaluator's mode
    /// ([`Evaluator::with_search`]; exact inner-product search by default).
    pub fn retrieve(
        &self,
        questions: &[&str],
        depth: usize,
    ) -> Result<Vec<Vec<Retrieved>>, EvalError> {
        let Some((store, query)) = self.retrieval else {
            return Err(EvalError::Input(
                "retrieval needs an index and a query encoder".into(),
            ));
        };
        let hits = Retriever::new(store, &query)?.retrieve(questions, depth, &self.search)?;
        Ok(hits
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|h| Retrieved {
                        id: h.id,
                        score: h.score,
                        background: h.chunk.background_text(),
                        title: h.chunk.title,
                    })
                    .collect()
            })
            .collect())
    }

    /// Answers one question (its `answers` may be empty, its `choices` make it a
    /// multiple-choice question) as example `index` of the evaluator's dataset.
    pub fn answer(&self, index: usize, example: &Example) -> Result<QuestionRecord, EvalError> {
        let key = ExampleKey {
            dataset: self.dataset,
            example: index,
        };
        self.check_retrieval(std::slice::from_ref(example))?;
        let mut records = self.run_group(&[(key, example)])?;
        records
            .pop()
            .ok_or_else(|| EvalError::Input("no record for the question".into()))
    }

    /// Evaluates `examples` (example `i` gets key `(dataset, i)`), calling
    /// `progress(done, total)` after each group of questions.
    pub fn evaluate(
        &self,
        examples: &[Example],
        run: RunInfo,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<EvalReport, EvalError> {
        self.evaluate_from(0, examples, run, progress)
    }

    /// [`Evaluator::evaluate`] for the part of a dataset that starts at question `first`
    /// (one shard of `radit eval --shard`): example `i` gets key `(dataset, first + i)`, the
    /// key the whole evaluation gives it, so its prompt (markers are drawn per key) is the
    /// same. With `first` a multiple of [`QUESTION_GROUP`] the batches are the same too.
    pub fn evaluate_from(
        &self,
        first: usize,
        examples: &[Example],
        run: RunInfo,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<EvalReport, EvalError> {
        let start = Instant::now();
        self.check_retrieval(examples)?;
        let mut questions = Vec::with_capacity(examples.len());
        let items: Vec<(ExampleKey, &Example)> = examples
            .iter()
            .enumerate()
            .map(|(i, e)| {
                (
                    ExampleKey {
                        dataset: self.dataset,
                        example: first + i,
                    },
                    e,
                )
            })
            .collect();
        for group in items.chunks(QUESTION_GROUP) {
            questions.extend(self.run_group(group)?);
            progress(questions.len(), examples.len());
        }
        let metrics = EvalMetrics::compute(&questions, &self.config);
        Ok(EvalReport {
            run,
            config: self.config.clone(),
            metrics,
            seconds: start.elapsed().as_secs_f64(),
            questions,
            shard: None,
        })
    }

    fn check_retrieval(&self, examples: &[Example]) -> Result<(), EvalError> {
        let needs =
            self.config.mode != Mode::ClosedBook && examples.iter().any(|e| e.context.is_none());
        if needs && self.retrieval.is_none() {
            return Err(EvalError::Input(format!(
                "mode {} needs an index and a query encoder",
                self.config.mode
            )));
        }
        Ok(())
    }

    fn plan(&self, example: &Example, retrieved: Vec<Retrieved>) -> Plan {
        let cfg = &self.config;
        let single = |background: Option<String>, gold_context: bool| Plan {
            backgrounds: vec![background],
            log_weights: vec![0.0],
            chunks: Vec::new(),
            retrieved: Vec::new(),
            gold_context,
        };
        if cfg.mode == Mode::ClosedBook {
            return single(None, false);
        }
        if let Some(ctx) = &example.context {
            return single(Some(ctx.clone()), true);
        }
        if retrieved.is_empty() {
            // An empty index: nothing to read.
            return single(None, false);
        }
        let top = &retrieved[..cfg.k.min(retrieved.len())];
        let scores: Vec<f32> = top.iter().map(|r| r.score).collect();
        let log_w = retrieval_log_weights(&scores, cfg.retriever_temperature);
        let chunks: Vec<(Retrieved, f64)> = top
            .iter()
            .cloned()
            .zip(log_w.iter().map(|w| w.exp()))
            .collect();
        let (backgrounds, log_weights) = match cfg.mode {
            Mode::Concat => {
                let joined: Vec<&str> = top.iter().map(|r| r.background.as_str()).collect();
                (vec![Some(joined.join("\n\n"))], vec![0.0])
            }
            _ => (
                top.iter().map(|r| Some(r.background.clone())).collect(),
                log_w,
            ),
        };
        Plan {
            backgrounds,
            log_weights,
            chunks,
            retrieved,
            gold_context: false,
        }
    }

    /// Greedy answers (first line, trimmed) for each prompt; `None` prompts give `None`.
    fn decode(&self, prompts: &[Option<Vec<u32>>]) -> Result<Vec<Option<String>>, EvalError> {
        let mut stops = self.tokenizer.stop_ids().to_vec();
        // Answers are one line: a newline ends them as EOS does (byte-level BPE spells it Ċ).
        for newline in ["Ċ", "\n"] {
            if let Some(id) = self.tokenizer.token_id(newline) {
                if !stops.contains(&id) {
                    stops.push(id);
                }
            }
        }
        let config = GenerationConfig {
            max_new_tokens: self.config.answer_tokens,
            stop_ids: stops,
            ..Default::default()
        };
        let mut order: Vec<usize> = (0..prompts.len())
            .filter(|&i| prompts[i].as_ref().is_some_and(|p| !p.is_empty()))
            .collect();
        // Similar lengths together: less padding per batch.
        order.sort_by_key(|&i| prompts[i].as_ref().map_or(0, Vec::len));
        let mut out = vec![None; prompts.len()];
        for group in order.chunks(self.config.batch_size) {
            let batch: Vec<Vec<u32>> = group.iter().filter_map(|&i| prompts[i].clone()).collect();
            let outputs = generate(self.generator, &batch, &config, self.tokenizer.pad_id())?;
            for (&i, tokens) in group.iter().zip(outputs) {
                let text = self.tokenizer.decode(&tokens, true)?;
                out[i] = Some(text.lines().next().unwrap_or("").trim().to_string());
            }
        }
        Ok(out)
    }

    /// The candidates of each question: its choices, or the distinct non-empty answers
    /// decoded under each of its backgrounds.
    fn candidates(
        &self,
        items: &[(ExampleKey, &Example)],
        plans: &[Plan],
    ) -> Result<Vec<Vec<String>>, EvalError> {
        let mut prompts: Vec<Option<Vec<u32>>> = Vec::new();
        let mut owner: Vec<usize> = Vec::new();
        for (q, ((key, example), plan)) in items.iter().zip(plans).enumerate() {
            if !example.choices.is_empty() {
                continue;
            }
            for background in &plan.backgrounds {
                let prompt = self.builder.prompt(
                    *key,
                    &example.question,
                    background.as_deref(),
                    self.config.answer_tokens,
                )?;
                prompts.push(prompt.map(|p| p.ids));
                owner.push(q);
            }
        }
        let decoded = self.decode(&prompts)?;
        let mut out: Vec<Vec<String>> = items
            .iter()
            .map(|(_, e)| distinct(e.choices.iter().map(|c| c.trim().to_string())))
            .collect();
        for (q, answer) in owner.into_iter().zip(decoded) {
            if let Some(a) = answer.filter(|a| !a.is_empty()) {
                if !out[q].contains(&a) {
                    out[q].push(a);
                }
            }
        }
        Ok(out)
    }

    fn run_group(
        &self,
        items: &[(ExampleKey, &Example)],
    ) -> Result<Vec<QuestionRecord>, EvalError> {
        let cfg = &self.config;
        // 1. Retrieval for the questions that use it.
        let need: Vec<usize> = if cfg.mode == Mode::ClosedBook {
            Vec::new()
        } else {
            (0..items.len())
                .filter(|&i| items[i].1.context.is_none())
                .collect()
        };
        let mut retrieved: Vec<Vec<Retrieved>> = vec![Vec::new(); items.len()];
        if !need.is_empty() {
            let questions: Vec<&str> = need.iter().map(|&i| items[i].1.question.as_str()).collect();
            for (&i, hits) in need.iter().zip(self.retrieve(&questions, cfg.depth())?) {
                retrieved[i] = hits;
            }
        }
        // 2. Backgrounds and weights; 3. candidates.
        let plans: Vec<Plan> = items
            .iter()
            .zip(retrieved)
            .map(|((_, e), r)| self.plan(e, r))
            .collect();
        let candidates = self.candidates(items, &plans)?;
        // 4. Every (question, candidate, background) instance, and closed-book ones for
        // nll_comp, scored in one pass (the scorer batches by length).
        let cand_examples: Vec<Vec<Example>> = items
            .iter()
            .zip(&candidates)
            .map(|((_, e), cands)| {
                cands
                    .iter()
                    .map(|c| Example {
                        id: e.id.clone(),
                        question: e.question.clone(),
                        answers: vec![c.clone()],
                        context: None,
                        choices: Vec::new(),
                    })
                    .collect()
            })
            .collect();
        let closed_extra = cfg.scoring.needs_closed_book() && cfg.mode != Mode::ClosedBook;
        let mut requests = Vec::new();
        for (((key, _), plan), cands) in items.iter().zip(&plans).zip(&cand_examples) {
            for example in cands {
                for background in &plan.backgrounds {
                    requests.push(ScoreRequest {
                        key: *key,
                        example,
                        background: background.clone(),
                    });
                }
                if closed_extra {
                    requests.push(ScoreRequest {
                        key: *key,
                        example,
                        background: None,
                    });
                }
            }
        }
        let scorer = LmScorer::new(
            self.generator,
            self.builder,
            self.tokenizer.pad_id(),
            "radit-eval",
            cfg.batch_size,
        );
        let scores = scorer.score(&requests, None)?;
        // 5. Records.
        let mut next = scores.into_iter();
        let mut records = Vec::with_capacity(items.len());
        for (((_, example), plan), cands) in items.iter().zip(plans).zip(candidates) {
            let mut per_candidate: Vec<Vec<Option<LmScore>>> = Vec::with_capacity(cands.len());
            let mut closed: Vec<Option<LmScore>> = Vec::with_capacity(cands.len());
            for _ in &cands {
                per_candidate.push(next.by_ref().take(plan.backgrounds.len()).collect());
                closed.push(if closed_extra {
                    next.next().flatten()
                } else {
                    None
                });
            }
            records.push(self.record(example, plan, cands, per_candidate, closed));
        }
        Ok(records)
    }

    fn record(
        &self,
        example: &Example,
        plan: Plan,
        cands: Vec<String>,
        per_candidate: Vec<Vec<Option<LmScore>>>,
        closed: Vec<Option<LmScore>>,
    ) -> QuestionRecord {
        let cfg = &self.config;
        let log_lm: Vec<Vec<Option<f64>>> = per_candidate
            .iter()
            .map(|row| {
                row.iter()
                    .map(|s| s.map(|s| f64::from(s.logprob)))
                    .collect()
            })
            .collect();
        let mut log_ps = Vec::with_capacity(cands.len());
        let mut scores = Vec::with_capacity(cands.len());
        for ((text, row), (lm, closed)) in cands
            .iter()
            .zip(&per_candidate)
            .zip(log_lm.iter().zip(&closed))
        {
            let log_p = ensemble_log_likelihood(&plan.log_weights, lm);
            let closed_book_log_p = if cfg.mode == Mode::ClosedBook {
                lm.first().copied().flatten()
            } else {
                closed.map(|s| f64::from(s.logprob))
            };
            let likelihood = Likelihood {
                log_p,
                tokens: row.iter().flatten().map(|s| s.tokens).next().unwrap_or(0),
                chars: text.chars().count(),
                closed_book_log_p,
            };
            log_ps.push(log_p);
            scores.push(cfg.scoring.score(&likelihood));
        }
        let chosen = best(&scores);
        let prediction = chosen.map(|b| cands[b].clone()).unwrap_or_default();
        let shares = chosen
            .filter(|_| cfg.mode == Mode::Ensemble && !plan.chunks.is_empty())
            .map(|b| {
                (
                    log_lm[b].clone(),
                    contributions(&plan.log_weights, &log_lm[b]),
                )
            });
        let chunks = plan
            .chunks
            .iter()
            .enumerate()
            .map(|(j, (r, weight))| ChunkUse {
                id: r.id,
                title: r.title.clone(),
                retrieval_score: r.score,
                weight: *weight,
                log_p_lm: shares.as_ref().and_then(|(lm, _)| lm[j]),
                contribution: shares.as_ref().and_then(|(_, c)| c[j]),
            })
            .collect();
        let golds = &example.answers;
        let answer_rank =
            first_answer_rank(plan.retrieved.iter().map(|r| r.background.as_str()), golds);
        QuestionRecord {
            id: example.id.clone(),
            question: example.question.clone(),
            gold: golds.clone(),
            choices: example.choices.clone(),
            em: exact_match(&prediction, golds),
            f1: token_f1(&prediction, golds),
            rouge_l: rouge_l_max(&prediction, golds),
            correct: (!example.choices.is_empty()).then(|| choice_correct(&prediction, golds)),
            log_p: chosen.and_then(|b| finite(log_ps[b])),
            score: chosen.and_then(|b| finite(scores[b])),
            candidates: cands
                .iter()
                .zip(log_ps.iter().zip(&scores))
                .map(|(text, (&log_p, &score))| CandidateRecord {
                    text: text.clone(),
                    log_p: finite(log_p),
                    score: finite(score),
                })
                .collect(),
            prediction,
            chunks,
            retrieved: plan.retrieved.len(),
            answer_rank,
            gold_context: plan.gold_context,
        }
    }
}

/// Keeps the first occurrence of each non-empty string.
fn distinct(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in items {
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    }
    out
}
