//! `radit-models`: the generator (Llama-family decoder) and retriever (BERT-family encoder)
//! of radit, loaded from real checkpoints and computing what their reference implementations
//! compute.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use radit_models::{generate, GenerationConfig, Generator};
//!
//! let device = Device::flex();
//! let g = Generator::load("SmolLM2-135M-Instruct.Q4_1.gguf", &device)?;
//! let prompt = g.tokenizer.encode("The capital of France is")?;
//! let config = GenerationConfig { max_new_tokens: 8, ..Default::default() };
//! let new = generate(&g.model, &[prompt], &config, g.tokenizer.pad_id())?;
//! println!("{}", g.tokenizer.decode(&new[0], true)?);
//! # Ok::<(), radit_models::ModelError>(())
//! ```

pub mod batch;
pub mod bert;
pub mod config;
pub mod error;
pub mod export;
pub mod fused;
pub mod generate;
pub mod gguf;
pub mod init;
pub mod layers;
pub mod llama;
pub mod loader;
pub mod pytorch;
pub mod source;
pub mod tokenizer;
pub mod weights;

pub use batch::{PaddingSide, TokenBatch};
pub use bert::{Bert, Pooling};
pub use config::{BertConfig, LlamaConfig};
pub use error::{ModelError, Result};
pub use generate::{generate, GenerationConfig};
pub use init::{
    numbered_word_tokenizer, random_bert, random_llama, word_level_tokenizer, MemorySource,
};
pub use llama::{KvCache, Llama};
pub use loader::{Encoder, Generator};
pub use source::{resolve, ResolvedSource};
pub use tokenizer::{ChatMessage, EncodeOptions, TextTokenizer, TruncationSide};
