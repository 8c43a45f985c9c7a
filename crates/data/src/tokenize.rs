use crate::error::BoxError;

/// The tokenizer interface the data pipeline needs.
///
/// The model crate implements it for its real tokenizer; tests use a toy one. `encode`
/// must add no special tokens of its own (BOS/EOS are placed by the pipeline), but should
/// recognize special tokens written in the text (a chat template emits them as text).
pub trait Tokenize {
    /// Token ids of `text`, without added special tokens.
    fn encode(&self, text: &str) -> Result<Vec<u32>, BoxError>;
    /// Beginning-of-sequence id, if the model uses one.
    fn bos_id(&self) -> Option<u32>;
    /// End-of-sequence id appended after every answer (it is part of the loss).
    fn eos_id(&self) -> Option<u32>;
}

impl<T: Tokenize + ?Sized> Tokenize for &T {
    fn encode(&self, text: &str) -> Result<Vec<u32>, BoxError> {
        (**self).encode(text)
    }
    fn bos_id(&self) -> Option<u32> {
        (**self).bos_id()
    }
    fn eos_id(&self) -> Option<u32> {
        (**self).eos_id()
    }
}
