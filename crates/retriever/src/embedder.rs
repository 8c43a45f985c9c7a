//! A radit encoder seen through the document store's embedding interface.

use radit_docstore::{BoxError, Embedder, EncoderIdentity};
use radit_models::{Encoder, Pooling};

/// Wraps an [`Encoder`] (the document encoder when building an index, the query encoder when
/// searching one) as a docstore [`Embedder`].
pub struct EncoderEmbedder {
    /// The wrapped encoder.
    pub encoder: Encoder,
}

impl EncoderEmbedder {
    /// Wraps `encoder`.
    pub fn new(encoder: Encoder) -> Self {
        Self { encoder }
    }
}

impl Embedder for EncoderEmbedder {
    fn identity(&self) -> EncoderIdentity {
        EncoderIdentity {
            source: self.encoder.source.clone(),
            weights_hash: self.encoder.weights_hash.clone(),
            pooling: match self.encoder.pooling {
                Pooling::Mean => "mean".into(),
                Pooling::Cls => "cls".into(),
            },
            normalize: self.encoder.normalize,
            dim: self.dim(),
            max_tokens: Some(self.encoder.max_length),
        }
    }

    fn dim(&self) -> usize {
        self.encoder.model.config().hidden_size
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError> {
        Ok(self.encoder.embed(texts)?)
    }
}
