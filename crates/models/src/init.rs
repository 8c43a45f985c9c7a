//! Freshly initialized weights under Hugging Face names, for tiny test models and benchmarks.

use std::collections::HashMap;

use crate::config::{BertConfig, LlamaConfig};
use crate::error::{ModelError, Result};
use crate::tokenizer::TextTokenizer;
use crate::weights::{HostTensor, TensorSource};
use radit_util::rng::SplitMix64;

/// Named tensors held in memory.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    tensors: HashMap<String, HostTensor>,
}

impl MemorySource {
    /// Wraps named tensors.
    pub fn new(tensors: impl IntoIterator<Item = (String, HostTensor)>) -> Self {
        Self {
            tensors: tensors.into_iter().collect(),
        }
    }
}

impl TensorSource for MemorySource {
    fn source_name(&self) -> String {
        "<memory>".into()
    }

    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn read(&self, name: &str) -> Result<HostTensor> {
        self.tensors
            .get(name)
            .cloned()
            .ok_or_else(|| ModelError::MissingTensor {
                source_name: self.source_name(),
                tensor: name.to_owned(),
            })
    }
}

struct Init {
    rng: SplitMix64,
    out: Vec<(String, HostTensor)>,
}

impl Init {
    /// Normal(0, std) via Box–Muller, so any seed gives the same weights on every platform.
    fn normal(&mut self, name: String, shape: &[usize], std: f32) {
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|_| self.rng.next_normal() as f32 * std)
            .collect();
        self.out.push((
            name,
            HostTensor {
                shape: shape.to_vec(),
                data,
            },
        ));
    }

    fn fill(&mut self, name: String, shape: &[usize], value: f32) {
        let n: usize = shape.iter().product();
        self.out.push((
            name,
            HostTensor {
                shape: shape.to_vec(),
                data: vec![value; n],
            },
        ));
    }
}

/// Llama weights with transformers' initialization (N(0, 0.02) matrices, unit norms).
pub fn random_llama(config: &LlamaConfig, seed: u64) -> MemorySource {
    let c = config;
    let mut init = Init {
        rng: SplitMix64::new(seed),
        out: Vec::new(),
    };
    let (h, q, kv) = (
        c.hidden_size,
        c.num_attention_heads * c.head_dim,
        c.num_key_value_heads * c.head_dim,
    );
    init.normal("model.embed_tokens.weight".into(), &[c.vocab_size, h], 0.02);
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        init.fill(format!("{p}.input_layernorm.weight"), &[h], 1.0);
        for (name, out) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
            init.normal(format!("{p}.self_attn.{name}.weight"), &[out, h], 0.02);
            if c.attention_bias {
                init.fill(format!("{p}.self_attn.{name}.bias"), &[out], 0.0);
            }
        }
        init.normal(format!("{p}.self_attn.o_proj.weight"), &[h, q], 0.02);
        init.fill(format!("{p}.post_attention_layernorm.weight"), &[h], 1.0);
        init.normal(
            format!("{p}.mlp.gate_proj.weight"),
            &[c.intermediate_size, h],
            0.02,
        );
        init.normal(
            format!("{p}.mlp.up_proj.weight"),
            &[c.intermediate_size, h],
            0.02,
        );
        init.normal(
            format!("{p}.mlp.down_proj.weight"),
            &[h, c.intermediate_size],
            0.02,
        );
    }
    init.fill("model.norm.weight".into(), &[h], 1.0);
    if !c.tie_word_embeddings {
        init.normal("lm_head.weight".into(), &[c.vocab_size, h], 0.02);
    }
    MemorySource::new(init.out)
}

/// BERT weights (no name prefix) with N(0, 0.02) matrices, unit LayerNorm gains, zero biases.
pub fn random_bert(config: &BertConfig, seed: u64) -> MemorySource {
    let c = config;
    let h = c.hidden_size;
    let mut init = Init {
        rng: SplitMix64::new(seed),
        out: Vec::new(),
    };
    init.normal(
        "embeddings.word_embeddings.weight".into(),
        &[c.vocab_size, h],
        0.02,
    );
    init.normal(
        "embeddings.position_embeddings.weight".into(),
        &[c.max_position_embeddings, h],
        0.02,
    );
    init.normal(
        "embeddings.token_type_embeddings.weight".into(),
        &[c.type_vocab_size, h],
        0.02,
    );
    let ln = |init: &mut Init, p: String| {
        init.fill(format!("{p}.weight"), &[h], 1.0);
        init.fill(format!("{p}.bias"), &[h], 0.0);
    };
    ln(&mut init, "embeddings.LayerNorm".into());
    for i in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{i}");
        for (name, d_out, d_in) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", c.intermediate_size, h),
            ("output.dense", h, c.intermediate_size),
        ] {
            init.normal(format!("{p}.{name}.weight"), &[d_out, d_in], 0.02);
            init.normal(format!("{p}.{name}.bias"), &[d_out], 0.02);
        }
        ln(&mut init, format!("{p}.attention.output.LayerNorm"));
        ln(&mut init, format!("{p}.output.LayerNorm"));
    }
    MemorySource::new(init.out)
}

/// A whitespace-split word-level tokenizer whose id `i` is `words[i]`; unknown words map to
/// `<unk>`, which must be among the words. For tiny test models.
pub fn word_level_tokenizer<S: AsRef<str>>(words: &[S]) -> Result<TextTokenizer> {
    let vocab: serde_json::Map<String, serde_json::Value> = words
        .iter()
        .enumerate()
        .map(|(i, w)| (w.as_ref().to_owned(), i.into()))
        .collect();
    TextTokenizer::from_json(&serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    }))
}

/// [`word_level_tokenizer`] over `<pad>` (0), `<unk>` (1) and made-up words `w2`..`w{vocab-1}`.
pub fn numbered_word_tokenizer(vocab: usize) -> Result<TextTokenizer> {
    let mut words = vec!["<pad>".to_string(), "<unk>".to_string()];
    words.extend((2..vocab).map(|i| format!("w{i}")));
    word_level_tokenizer(&words)
}
