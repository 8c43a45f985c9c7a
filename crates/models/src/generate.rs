//! Text generation with a [`Llama`]: greedy or temperature/top-p sampling, stop tokens,
//! batched prompts (left-padded), with or without the KV cache.

use crate::batch::{PaddingSide, TokenBatch};
use crate::error::{ModelError, Result};
use crate::layers::to_host;
use crate::llama::{KvCache, Llama};

/// Decoding settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// Upper bound on new tokens per prompt.
    pub max_new_tokens: usize,
    /// 0 means greedy; otherwise logits are divided by it before sampling.
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p`.
    pub top_p: f32,
    /// Seed of the sampling RNG (same seed, same samples).
    pub seed: u64,
    /// Tokens that end a row (the stop token itself is kept in the output).
    pub stop_ids: Vec<u32>,
    /// Decode incrementally with the KV cache (otherwise the whole sequence is re-run per step).
    pub use_cache: bool,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop_ids: Vec::new(),
            use_cache: true,
        }
    }
}

/// The sampling generator, from radit-util; re-exported because [`sample`] takes one.
pub use radit_util::rng::SplitMix64;

/// Index of the largest value (the first one on ties, as `torch.argmax`).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// Samples from `softmax(logits / temperature)` restricted to the top-p nucleus.
pub fn sample(logits: &[f32], temperature: f32, top_p: f32, rng: &mut SplitMix64) -> usize {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i, f64::from((l - max) / temperature).exp()))
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut kept = 0.0;
    let mut cut = probs.len();
    for (n, p) in probs.iter().enumerate() {
        kept += p.1 / total;
        if kept >= f64::from(top_p) {
            cut = n + 1;
            break;
        }
    }
    let nucleus = &probs[..cut];
    let mass: f64 = nucleus.iter().map(|p| p.1).sum();
    let mut u = rng.next_f64() * mass;
    for &(i, p) in nucleus {
        if u < p {
            return i;
        }
        u -= p;
    }
    nucleus.last().map_or(0, |p| p.0)
}

/// Continues each prompt; returns only the new tokens of each row.
pub fn generate(
    model: &Llama,
    prompts: &[Vec<u32>],
    config: &GenerationConfig,
    pad_id: u32,
) -> Result<Vec<Vec<u32>>> {
    if config.temperature < 0.0 || !(config.top_p > 0.0 && config.top_p <= 1.0) {
        return Err(ModelError::InvalidInput(format!(
            "temperature must be ≥ 0 and top_p in (0, 1], got {} and {}",
            config.temperature, config.top_p
        )));
    }
    if prompts.iter().any(Vec::is_empty) {
        return Err(ModelError::InvalidInput(
            "every prompt needs at least one token".into(),
        ));
    }
    let mut rng = SplitMix64::new(config.seed);
    let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    let mut done = vec![false; prompts.len()];
    let mut cache = KvCache::new();
    let mut step_batch = TokenBatch::from_rows(prompts, pad_id, PaddingSide::Left)?;
    for _ in 0..config.max_new_tokens {
        let logits = if config.use_cache {
            model.next_token_logits(&step_batch, Some(&mut cache))?
        } else {
            let rows: Vec<Vec<u32>> = prompts
                .iter()
                .zip(&outputs)
                .map(|(p, o)| p.iter().chain(o).copied().collect())
                .collect();
            let full = TokenBatch::from_rows(&rows, pad_id, PaddingSide::Left)?;
            model.next_token_logits(&full, None)?
        };
        let host = to_host(logits)?;
        let vocab = host.shape[1];
        let mut next = Vec::with_capacity(prompts.len());
        for (r, row) in host.data.chunks(vocab).enumerate() {
            let token = if done[r] {
                pad_id
            } else if config.temperature == 0.0 {
                argmax(row) as u32
            } else {
                sample(row, config.temperature, config.top_p, &mut rng) as u32
            };
            if !done[r] {
                outputs[r].push(token);
                done[r] = config.stop_ids.contains(&token);
            }
            next.push(vec![token]);
        }
        if done.iter().all(|&d| d) {
            break;
        }
        step_batch = TokenBatch::from_rows(&next, pad_id, PaddingSide::Left)?;
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
    }

    #[test]
    fn top_p_restricts_to_nucleus() {
        // p ≈ [0.88, 0.12, 0.00002]: with top_p 0.5 only token 0 may be drawn.
        let logits = [4.0, 2.0, -7.0];
        let mut rng = SplitMix64::new(7);
        for _ in 0..200 {
            assert_eq!(sample(&logits, 1.0, 0.5, &mut rng), 0);
        }
        let mut seen = [0usize; 3];
        for _ in 0..2000 {
            seen[sample(&logits, 1.0, 1.0, &mut rng)] += 1;
        }
        assert!(seen[1] > 100 && seen[1] < 400, "{seen:?}");
    }

    #[test]
    fn sampling_is_reproducible_from_seed() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let draw = |seed| {
            let mut rng = SplitMix64::new(seed);
            (0..20)
                .map(|_| sample(&logits, 0.8, 0.9, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }
}
