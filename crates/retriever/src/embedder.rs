//! radit encoders seen through the document store's embedding interface, so that training and
//! evaluation retrieve through the store's one entry point ([`radit_docstore::Retriever`]).

use radit_docstore::{BoxError, Embedder, EncoderIdentity};
use radit_models::{Bert, Encoder, Pooling};

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

fn identity(encoder: &Encoder) -> EncoderIdentity {
    EncoderIdentity {
        source: encoder.source.clone(),
        weights_hash: encoder.weights_hash.clone(),
        pooling: match encoder.pooling {
            Pooling::Mean => "mean".into(),
            Pooling::Cls => "cls".into(),
        },
        normalize: encoder.normalize,
        dim: encoder.model.config().hidden_size,
        max_tokens: Some(encoder.max_length),
    }
}

impl Embedder for EncoderEmbedder {
    fn identity(&self) -> EncoderIdentity {
        identity(&self.encoder)
    }

    fn dim(&self) -> usize {
        self.encoder.model.config().hidden_size
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError> {
        Ok(self.encoder.embed(texts)?)
    }
}

/// The query side of retrieval: an encoder's tokenization, pooling and normalization with a
/// query model of the same architecture (the base encoder's own weights, or an R-ft one).
#[derive(Clone, Copy)]
pub struct QueryEncoder<'a> {
    /// Tokenization, pooling and normalization settings.
    pub encoder: &'a Encoder,
    /// The query encoder weights.
    pub model: &'a Bert,
}

impl<'a> QueryEncoder<'a> {
    /// The encoder with its own weights.
    pub fn base(encoder: &'a Encoder) -> Self {
        Self {
            encoder,
            model: &encoder.model,
        }
    }
}

impl Embedder for QueryEncoder<'_> {
    /// The settings' identity; the weights may be R-ft's, which the store never checks on the
    /// query side (only the dimension must agree with the index).
    fn identity(&self) -> EncoderIdentity {
        identity(self.encoder)
    }

    fn dim(&self) -> usize {
        self.model.config().hidden_size
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError> {
        Ok(self.encoder.embed_with(self.model, texts)?)
    }
}
