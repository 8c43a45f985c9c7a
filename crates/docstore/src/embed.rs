//! The embedding interface the store depends on, and a deterministic fake encoder for tests.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{clip, BoxError};
use crate::text::words_lowercase;

/// Identity of a document encoder, recorded in the index manifest.
///
/// Two identities are [compatible](EncoderIdentity::compatible_with) when they produce the same
/// embeddings: same weights hash (or, without a hash, same source), pooling, normalization,
/// dimension and token limit. The source string alone may differ (a hub id and a local copy of the
/// same weights are the same encoder).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncoderIdentity {
    /// Where the encoder came from: a hub id, a local path, or a name such as `hash-bow`.
    pub source: String,
    /// A hash of the weights (any stable hex string); empty when unknown.
    pub weights_hash: String,
    /// Pooling over token states, e.g. `mean`, `cls`.
    pub pooling: String,
    /// Whether embeddings are L2-normalized.
    pub normalize: bool,
    /// Embedding dimension.
    pub dim: usize,
    /// Maximum number of tokens the encoder reads (longer inputs are truncated), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
}

impl EncoderIdentity {
    /// Whether an index built with `self` can be searched with embeddings of `other`.
    pub fn compatible_with(&self, other: &EncoderIdentity) -> bool {
        let same_weights = if !self.weights_hash.is_empty() && !other.weights_hash.is_empty() {
            self.weights_hash == other.weights_hash
        } else {
            self.weights_hash == other.weights_hash && self.source == other.source
        };
        same_weights
            && self.pooling == other.pooling
            && self.normalize == other.normalize
            && self.dim == other.dim
            && self.max_tokens == other.max_tokens
    }
}

impl fmt::Display for EncoderIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Read from a manifest, so clipped: a corrupt one may hold any length.
        let hash = if self.weights_hash.is_empty() {
            "unknown".into()
        } else {
            clip(&self.weights_hash)
        };
        write!(
            f,
            "`{}` (weights {}, {} pooling, {}, dim {}",
            clip(&self.source),
            hash,
            clip(&self.pooling),
            if self.normalize {
                "L2-normalized"
            } else {
                "not normalized"
            },
            self.dim
        )?;
        if let Some(t) = self.max_tokens {
            write!(f, ", max {t} tokens")?;
        }
        write!(f, ")")
    }
}

/// A text encoder producing one fixed-size vector per input text.
///
/// The store never depends on a model crate: the real BERT encoder implements this trait in the
/// caller, and tests use [`HashEmbedder`]. Implementations must be deterministic for resumable
/// builds to reproduce an uninterrupted build exactly.
pub trait Embedder {
    /// Identity recorded in (and checked against) the index manifest.
    fn identity(&self) -> EncoderIdentity;
    /// Embedding dimension; equals `identity().dim`.
    fn dim(&self) -> usize;
    /// Embeds a batch of texts: one vector of length [`dim`](Embedder::dim) per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError>;
}

impl<T: Embedder + ?Sized> Embedder for &T {
    fn identity(&self) -> EncoderIdentity {
        (**self).identity()
    }
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError> {
        (**self).embed(texts)
    }
}

impl<T: Embedder + ?Sized> Embedder for Box<T> {
    fn identity(&self) -> EncoderIdentity {
        (**self).identity()
    }
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError> {
        (**self).embed(texts)
    }
}

/// A deterministic fake encoder: hashed bag of words (and word bigrams) into a unit vector.
///
/// Texts sharing words get positive inner products, so retrieval over it behaves sensibly in
/// tests, with no model to load. Not a semantic encoder.
#[derive(Clone, Debug)]
pub struct HashEmbedder {
    dim: usize,
    seed: u64,
}

impl HashEmbedder {
    /// A hashing encoder of dimension `dim` (at least 1) with the given seed.
    pub fn new(dim: usize, seed: u64) -> Self {
        HashEmbedder {
            dim: dim.max(1),
            seed,
        }
    }

    /// Embeds one text.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dim];
        let words = words_lowercase(text);
        let mut add = |key: &[u8], weight: f32| {
            let h = xxhash_rust::xxh3::xxh3_64_with_seed(key, self.seed);
            let idx = (h % self.dim as u64) as usize;
            let sign = if (h >> 63) == 1 { -1.0 } else { 1.0 };
            v[idx] += sign * weight;
        };
        for w in &words {
            add(w.as_bytes(), 1.0);
        }
        for pair in words.windows(2) {
            let key = format!("{} {}", pair[0], pair[1]);
            add(key.as_bytes(), 0.5);
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        } else {
            v[0] = 1.0;
        }
        v
    }
}

impl Embedder for HashEmbedder {
    fn identity(&self) -> EncoderIdentity {
        EncoderIdentity {
            source: "hash-bow".to_string(),
            weights_hash: format!("seed-{:016x}", self.seed),
            pooling: "sum".to_string(),
            normalize: true,
            dim: self.dim,
            max_tokens: None,
        }
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError> {
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_embedder_is_deterministic_unit_and_lexical() {
        let e = HashEmbedder::new(64, 7);
        let a = e.embed_one("The quick brown fox");
        let b = e.embed_one("the QUICK brown fox");
        assert_eq!(a, b);
        let n: f32 = a.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-5);
        let c = e.embed_one("quick brown fox jumps");
        let d = e.embed_one("completely unrelated sentence here");
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        assert!(dot(&a, &c) > dot(&a, &d));
    }

    #[test]
    fn identity_compatibility_ignores_source_when_hashes_match() {
        let a = HashEmbedder::new(8, 1).identity();
        let mut b = a.clone();
        b.source = "/some/local/copy".into();
        assert!(a.compatible_with(&b));
        b.dim = 16;
        assert!(!a.compatible_with(&b));
        let c = HashEmbedder::new(8, 2).identity();
        assert!(!a.compatible_with(&c));
        assert!(a.to_string().contains("hash-bow"));
    }
}
