//! Retrieval quality on a dev set: recall@k and MRR of the first answer-bearing chunk.

use radit_data::metrics::RetrievalMetrics;
use radit_data::{first_answer_rank, Example};
use radit_docstore::{DocStore, Retriever, SearchMode};
use radit_models::{Bert, Encoder};

use crate::{QueryEncoder, RetrieverError};

/// Ranks (0-based) of the first chunk containing a gold answer in the top-`depth` search
/// results (`search` mode) of each dev question, embedded by `model` with `encoder`'s settings.
pub fn retrieval_metrics(
    encoder: &Encoder,
    model: &Bert,
    store: &DocStore,
    dev: &[Example],
    depth: usize,
    search: &SearchMode,
) -> Result<RetrievalMetrics, RetrieverError> {
    let mut metrics = RetrievalMetrics::default();
    let query = QueryEncoder { encoder, model };
    let retriever = Retriever::new(store, &query)?;
    let questions: Vec<&str> = dev.iter().map(|e| e.question.as_str()).collect();
    for (example, hits) in dev
        .iter()
        .zip(retriever.retrieve(&questions, depth, search)?)
    {
        let texts: Vec<String> = hits.iter().map(|h| h.chunk.background_text()).collect();
        metrics.add(first_answer_rank(&texts, &example.answers));
    }
    Ok(metrics)
}

/// `dev/recall@k` for each `k` and `dev/mrr`, as the loop's evaluator reports them.
pub fn metric_pairs(metrics: &RetrievalMetrics, ks: &[usize]) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = ks
        .iter()
        .map(|&k| (format!("dev/recall@{k}"), metrics.recall_at(k)))
        .collect();
    out.push(("dev/mrr".into(), metrics.mrr()));
    out
}
