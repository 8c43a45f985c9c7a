//! Retrieval quality on a dev set: recall@k and MRR of the first answer-bearing chunk.

use radit_data::metrics::RetrievalMetrics;
use radit_data::{first_answer_rank, Example};
use radit_docstore::{Dense, DocStore};
use radit_models::{Bert, Encoder};

use crate::RetrieverError;

/// Ranks (0-based) of the first chunk containing a gold answer in the top-`depth` exact
/// search results of each dev question, embedded by `model` with `encoder`'s settings.
pub fn retrieval_metrics(
    encoder: &Encoder,
    model: &Bert,
    store: &DocStore,
    dev: &[Example],
    depth: usize,
) -> Result<RetrievalMetrics, RetrieverError> {
    let mut metrics = RetrievalMetrics::default();
    for group in dev.chunks(64) {
        let texts: Vec<&str> = group.iter().map(|e| e.question.as_str()).collect();
        let embeddings = encoder.embed_with(model, &texts)?.concat();
        let hits = store.search_dense(&embeddings, depth, Dense::Exact)?;
        for (example, scored) in group.iter().zip(&hits) {
            let texts = scored
                .iter()
                .map(|s| Ok(store.chunk(s.id)?.background_text()))
                .collect::<Result<Vec<String>, radit_docstore::Error>>()?;
            metrics.add(first_answer_rank(&texts, &example.answers));
        }
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
