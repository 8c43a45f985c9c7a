//! Model hyper-parameters, read from Hugging Face `config.json` files or GGUF metadata.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Architectures the decoder implements (`architectures[0]` or `model_type` in `config.json`).
pub const LLAMA_ARCHITECTURES: &[&str] =
    &["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"];
/// Architectures the encoder implements.
pub const BERT_ARCHITECTURES: &[&str] = &["BertModel", "BertForMaskedLM", "BertForPreTraining"];

/// Upper bounds on model dimensions, checked when a config is read (from `config.json` or GGUF
/// metadata) before anything is allocated from it. They are far above any released model of
/// the supported families, so only corrupt or hostile configs hit them.
pub mod limits {
    /// Most decoder or encoder blocks (`num_hidden_layers`, `block_count`).
    pub const MAX_LAYERS: usize = 4096;
    /// Widest model (`hidden_size`, `embedding_length`).
    pub const MAX_HIDDEN: usize = 1 << 17;
    /// Widest feed-forward layer (`intermediate_size`, `feed_forward_length`).
    pub const MAX_INTERMEDIATE: usize = 1 << 20;
    /// Largest vocabulary (`vocab_size`, rows of the token embedding).
    pub const MAX_VOCAB: usize = 1 << 24;
    /// Most attention heads (query or key/value).
    pub const MAX_HEADS: usize = 1 << 12;
    /// Widest attention head (`head_dim`, `attention.key_length`).
    pub const MAX_HEAD_DIM: usize = 1 << 14;
    /// Longest context (`max_position_embeddings`, `context_length`).
    pub const MAX_POSITIONS: usize = 1 << 24;
    /// Largest token-type vocabulary of an encoder (`type_vocab_size`).
    pub const MAX_TYPE_VOCAB: usize = 1 << 16;
}

/// Longest piece of a config value or parser message quoted in an error.
const QUOTE_CHARS: usize = 256;

/// `s` cut to [`QUOTE_CHARS`] characters for an error message (serde quotes whole
/// offending strings, which a corrupt file can make arbitrarily long).
fn clip(s: &str) -> String {
    match s.char_indices().nth(QUOTE_CHARS) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}... ({} bytes)", &s[..cut], s.len()),
    }
}

/// A dimension that must lie in `1..=max`; the message names the key.
fn dim(path: &Path, key: &str, value: usize, max: usize) -> Result<()> {
    if value == 0 || value > max {
        return Err(ModelError::config(
            path,
            format!("{key} must be between 1 and {max}, got {value}"),
        ));
    }
    Ok(())
}

/// A float hyper-parameter that must be finite and positive (epsilons, RoPE base and factors).
fn positive_finite(path: &Path, key: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && value > 0.0) {
        return Err(ModelError::config(
            path,
            format!("{key} must be finite and positive, got {value}"),
        ));
    }
    Ok(())
}

/// `hidden_size` must split evenly into `num_attention_heads` heads.
fn heads_divide_hidden(path: &Path, hidden: usize, heads: usize) -> Result<()> {
    dim(path, "num_attention_heads", heads, limits::MAX_HEADS)?;
    if !hidden.is_multiple_of(heads) {
        return Err(ModelError::config(
            path,
            format!("hidden_size {hidden} is not a multiple of num_attention_heads {heads}"),
        ));
    }
    Ok(())
}

/// Llama-3 style RoPE frequency scaling (`rope_scaling` with `rope_type = "llama3"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    /// Always `"llama3"`; other scaling types are rejected when the config is read.
    pub rope_type: String,
    /// Overall context-extension factor.
    pub factor: f64,
    /// Wavelengths longer than `original_max_position_embeddings / low_freq_factor` are divided by `factor`.
    pub low_freq_factor: f64,
    /// Wavelengths shorter than `original_max_position_embeddings / high_freq_factor` are kept.
    pub high_freq_factor: f64,
    /// Context length the model was pre-trained with.
    pub original_max_position_embeddings: usize,
}

/// Hyper-parameters of a Llama-family decoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Vocabulary size (rows of the embedding matrix).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// SwiGLU inner width.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when smaller than the query heads).
    pub num_key_value_heads: usize,
    /// Per-head width; `hidden_size / num_attention_heads` unless the config says otherwise.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// Optional Llama-3 frequency scaling.
    pub rope_scaling: Option<RopeScaling>,
    /// Longest sequence the model supports.
    pub max_position_embeddings: usize,
    /// Whether the output projection shares the token-embedding matrix.
    pub tie_word_embeddings: bool,
    /// Whether q/k/v projections carry a bias (Qwen2).
    pub attention_bias: bool,
    /// Beginning-of-sequence token id, if the model has one.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token ids (a config may list several).
    pub eos_token_ids: Vec<u32>,
    /// The architecture name written back on export.
    pub architecture: String,
}

/// Hyper-parameters of a BERT-family encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Number of encoder blocks.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Feed-forward inner width.
    pub intermediate_size: usize,
    /// Learned absolute positions.
    pub max_position_embeddings: usize,
    /// Token-type (segment) vocabulary.
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Padding token id.
    pub pad_token_id: u32,
}

#[derive(Deserialize)]
struct RawLlama {
    architectures: Option<Vec<String>>,
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    bos_token_id: Option<serde_json::Value>,
    eos_token_id: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawBert {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    type_vocab_size: Option<usize>,
    layer_norm_eps: Option<f64>,
    pad_token_id: Option<u32>,
    hidden_act: Option<String>,
    position_embedding_type: Option<String>,
}

/// Which model family a `config.json` describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFamily {
    /// A Llama-family decoder.
    Llama,
    /// A BERT-family encoder.
    Bert,
}

/// Reads a `config.json` into a JSON value, with the path in any error.
pub fn read_config_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::config(path, clip(&e.to_string())))
}

/// Decides the family of a `config.json`, or names the unsupported architecture.
pub fn model_family(path: &Path, config: &serde_json::Value) -> Result<ModelFamily> {
    let archs: Vec<String> = config
        .get("architectures")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let model_type = config.get("model_type").and_then(|v| v.as_str());
    let is = |list: &[&str]| archs.iter().any(|a| list.contains(&a.as_str()));
    if is(LLAMA_ARCHITECTURES) || matches!(model_type, Some("llama" | "mistral" | "qwen2")) {
        return Ok(ModelFamily::Llama);
    }
    if is(BERT_ARCHITECTURES) || model_type == Some("bert") {
        return Ok(ModelFamily::Bert);
    }
    let found = archs
        .first()
        .cloned()
        .or(model_type.map(str::to_owned))
        .map(|a| clip(&a))
        .unwrap_or_else(|| "<none given>".into());
    Err(ModelError::UnsupportedArchitecture {
        path: path.to_path_buf(),
        found,
        supported: [LLAMA_ARCHITECTURES, BERT_ARCHITECTURES]
            .concat()
            .join(", "),
    })
}

fn token_ids(value: &Option<serde_json::Value>) -> Vec<u32> {
    match value {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|v| v as u32).into_iter().collect(),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_u64().map(|v| v as u32))
            .collect(),
        _ => Vec::new(),
    }
}

impl LlamaConfig {
    /// A plain Llama shape (no RoPE scaling, no biases, tied embeddings, 2,048 positions,
    /// rope theta 10,000), for freshly initialized models in tests and benchmarks; adjust
    /// the public fields for anything else.
    pub fn new(
        vocab_size: usize,
        hidden_size: usize,
        intermediate_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        num_key_value_heads: usize,
    ) -> Self {
        Self {
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim: hidden_size / num_attention_heads.max(1),
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: 2048,
            tie_word_embeddings: true,
            attention_bias: false,
            bos_token_id: None,
            eos_token_ids: Vec::new(),
            architecture: "LlamaForCausalLM".into(),
        }
    }

    /// Parses a Llama-family `config.json` value; `path` is used in error messages.
    pub fn from_json(path: &Path, value: &serde_json::Value) -> Result<Self> {
        if model_family(path, value)? != ModelFamily::Llama {
            return Err(ModelError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                found: clip(
                    value
                        .get("model_type")
                        .and_then(|v| v.as_str())
                        .unwrap_or("?"),
                ),
                supported: LLAMA_ARCHITECTURES.join(", "),
            });
        }
        let raw: RawLlama = serde_json::from_value(value.clone())
            .map_err(|e| ModelError::config(path, clip(&e.to_string())))?;
        let rope_scaling = match &raw.rope_scaling {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => {
                let kind = v
                    .get("rope_type")
                    .or_else(|| v.get("type"))
                    .and_then(|t| t.as_str())
                    .unwrap_or("");
                match kind {
                    "llama3" => Some(RopeScaling {
                        rope_type: "llama3".into(),
                        factor: num(path, v, "factor")?,
                        low_freq_factor: num(path, v, "low_freq_factor")?,
                        high_freq_factor: num(path, v, "high_freq_factor")?,
                        original_max_position_embeddings: num(
                            path,
                            v,
                            "original_max_position_embeddings",
                        )? as usize,
                    }),
                    "default" => None,
                    other => {
                        return Err(ModelError::config(
                            path,
                            format!(
                                "unsupported rope_scaling type `{}` (supported: llama3)",
                                clip(other)
                            ),
                        ))
                    }
                }
            }
        };
        if raw.head_dim.is_none() {
            // The per-head width comes from the division, which must then be exact.
            heads_divide_hidden(path, raw.hidden_size, raw.num_attention_heads)?;
        }
        let config = Self {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads: raw.num_key_value_heads.unwrap_or(raw.num_attention_heads),
            head_dim: raw
                .head_dim
                .unwrap_or(raw.hidden_size / raw.num_attention_heads.max(1)),
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta: raw.rope_theta.unwrap_or(10_000.0),
            rope_scaling,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(2048),
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            attention_bias: raw
                .attention_bias
                .unwrap_or(raw.model_type.as_deref() == Some("qwen2")),
            bos_token_id: token_ids(&raw.bos_token_id).first().copied(),
            eos_token_ids: token_ids(&raw.eos_token_id),
            architecture: raw
                .architectures
                .and_then(|a| a.into_iter().next())
                .unwrap_or_else(|| "LlamaForCausalLM".into()),
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Checks the invariants the forward pass relies on, and that every dimension is within
    /// [`limits`], so a corrupt or hostile config fails here, naming the key, before any
    /// allocation sized by it.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let err = |m: String| Err(ModelError::config(path, m));
        dim(path, "vocab_size", self.vocab_size, limits::MAX_VOCAB)?;
        dim(path, "hidden_size", self.hidden_size, limits::MAX_HIDDEN)?;
        dim(
            path,
            "intermediate_size",
            self.intermediate_size,
            limits::MAX_INTERMEDIATE,
        )?;
        dim(
            path,
            "num_hidden_layers",
            self.num_hidden_layers,
            limits::MAX_LAYERS,
        )?;
        dim(
            path,
            "num_attention_heads",
            self.num_attention_heads,
            limits::MAX_HEADS,
        )?;
        dim(
            path,
            "num_key_value_heads",
            self.num_key_value_heads,
            limits::MAX_HEADS,
        )?;
        dim(path, "head_dim", self.head_dim, limits::MAX_HEAD_DIM)?;
        dim(
            path,
            "max_position_embeddings",
            self.max_position_embeddings,
            limits::MAX_POSITIONS,
        )?;
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return err(format!(
                "head_dim {} must be even and positive",
                self.head_dim
            ));
        }
        positive_finite(path, "rms_norm_eps", self.rms_norm_eps)?;
        positive_finite(path, "rope_theta", self.rope_theta)?;
        if let Some(s) = &self.rope_scaling {
            positive_finite(path, "rope_scaling.factor", s.factor)?;
            positive_finite(path, "rope_scaling.low_freq_factor", s.low_freq_factor)?;
            positive_finite(path, "rope_scaling.high_freq_factor", s.high_freq_factor)?;
            dim(
                path,
                "rope_scaling.original_max_position_embeddings",
                s.original_max_position_embeddings,
                limits::MAX_POSITIONS,
            )?;
            if s.low_freq_factor >= s.high_freq_factor {
                return err(format!(
                    "rope_scaling.low_freq_factor {} must be smaller than high_freq_factor {}",
                    s.low_freq_factor, s.high_freq_factor
                ));
            }
        }
        Ok(())
    }

    /// The `config.json` document transformers expects for this model.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "architectures": [self.architecture],
            "model_type": match self.architecture.as_str() {
                "MistralForCausalLM" => "mistral",
                "Qwen2ForCausalLM" => "qwen2",
                _ => "llama",
            },
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "mlp_bias": false,
            "torch_dtype": "float32",
        });
        if let Some(s) = &self.rope_scaling {
            v["rope_scaling"] = serde_json::to_value(s).unwrap_or_default();
        }
        if let Some(b) = self.bos_token_id {
            v["bos_token_id"] = b.into();
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [one] => v["eos_token_id"] = (*one).into(),
            many => v["eos_token_id"] = many.into(),
        }
        v
    }
}

fn num(path: &Path, v: &serde_json::Value, key: &str) -> Result<f64> {
    v.get(key)
        .and_then(|x| x.as_f64())
        .ok_or_else(|| ModelError::config(path, format!("rope_scaling.{key} is missing")))
}

impl BertConfig {
    /// Parses a BERT-family `config.json` value; `path` is used in error messages.
    pub fn from_json(path: &Path, value: &serde_json::Value) -> Result<Self> {
        if model_family(path, value)? != ModelFamily::Bert {
            return Err(ModelError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                found: clip(
                    value
                        .get("model_type")
                        .and_then(|v| v.as_str())
                        .unwrap_or("?"),
                ),
                supported: BERT_ARCHITECTURES.join(", "),
            });
        }
        let raw: RawBert = serde_json::from_value(value.clone())
            .map_err(|e| ModelError::config(path, clip(&e.to_string())))?;
        if let Some(act) = raw.hidden_act.as_deref() {
            if act != "gelu" {
                return Err(ModelError::config(
                    path,
                    format!("unsupported hidden_act `{}` (supported: gelu)", clip(act)),
                ));
            }
        }
        if let Some(kind) = raw.position_embedding_type.as_deref() {
            if kind != "absolute" {
                return Err(ModelError::config(
                    path,
                    format!(
                        "unsupported position_embedding_type `{}` (supported: absolute)",
                        clip(kind)
                    ),
                ));
            }
        }
        let config = Self {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            intermediate_size: raw.intermediate_size,
            max_position_embeddings: raw.max_position_embeddings,
            type_vocab_size: raw.type_vocab_size.unwrap_or(2),
            layer_norm_eps: raw.layer_norm_eps.unwrap_or(1e-12),
            pad_token_id: raw.pad_token_id.unwrap_or(0),
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Checks that every dimension is within [`limits`], that the heads divide the width and
    /// that `layer_norm_eps` is finite and positive; messages name the key.
    pub fn validate(&self, path: &Path) -> Result<()> {
        dim(path, "vocab_size", self.vocab_size, limits::MAX_VOCAB)?;
        dim(path, "hidden_size", self.hidden_size, limits::MAX_HIDDEN)?;
        dim(
            path,
            "num_hidden_layers",
            self.num_hidden_layers,
            limits::MAX_LAYERS,
        )?;
        dim(
            path,
            "num_attention_heads",
            self.num_attention_heads,
            limits::MAX_HEADS,
        )?;
        dim(
            path,
            "intermediate_size",
            self.intermediate_size,
            limits::MAX_INTERMEDIATE,
        )?;
        dim(
            path,
            "max_position_embeddings",
            self.max_position_embeddings,
            limits::MAX_POSITIONS,
        )?;
        dim(
            path,
            "type_vocab_size",
            self.type_vocab_size,
            limits::MAX_TYPE_VOCAB,
        )?;
        heads_divide_hidden(path, self.hidden_size, self.num_attention_heads)?;
        positive_finite(path, "layer_norm_eps", self.layer_norm_eps)
    }

    /// The `config.json` document transformers expects for this model.
    pub fn to_hf_json(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["BertModel"],
            "model_type": "bert",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size,
            "layer_norm_eps": self.layer_norm_eps,
            "pad_token_id": self.pad_token_id,
            "hidden_act": "gelu",
            "position_embedding_type": "absolute",
            "torch_dtype": "float32",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = include_str!("../tests/fixtures/smollm2_config.json");
    const MINILM: &str = include_str!("../tests/fixtures/minilm_config.json");

    fn with(fixture: &str, key: &str, value: serde_json::Value) -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_str(fixture).expect("fixture");
        v[key] = value;
        v
    }

    fn llama_err(key: &str, value: serde_json::Value) -> String {
        let path = Path::new("m/config.json");
        match LlamaConfig::from_json(path, &with(SMOLLM2, key, value.clone())) {
            Ok(_) => panic!("{key} = {value} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    fn bert_err(key: &str, value: serde_json::Value) -> String {
        let path = Path::new("m/config.json");
        match BertConfig::from_json(path, &with(MINILM, key, value.clone())) {
            Ok(_) => panic!("{key} = {value} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn real_configs_parse_unchanged() {
        let path = Path::new("config.json");
        let l = LlamaConfig::from_json(path, &serde_json::from_str(SMOLLM2).unwrap()).unwrap();
        assert_eq!(
            (
                l.vocab_size,
                l.hidden_size,
                l.intermediate_size,
                l.num_hidden_layers
            ),
            (49152, 576, 1536, 30)
        );
        assert_eq!(
            (l.num_attention_heads, l.num_key_value_heads, l.head_dim),
            (9, 3, 64)
        );
        assert_eq!((l.rms_norm_eps, l.rope_theta), (1e-5, 100_000.0));
        assert!(l.tie_word_embeddings && l.rope_scaling.is_none());
        let b = BertConfig::from_json(path, &serde_json::from_str(MINILM).unwrap()).unwrap();
        assert_eq!(
            (
                b.vocab_size,
                b.hidden_size,
                b.num_hidden_layers,
                b.num_attention_heads
            ),
            (30522, 384, 6, 12)
        );
        assert_eq!(b.layer_norm_eps, 1e-12);
    }

    /// Dimensions that would size multi-terabyte allocations fail at load, naming the key.
    #[test]
    fn absurd_dimensions_are_rejected_by_key() {
        let e = llama_err("num_hidden_layers", 1_000_000_000.into());
        assert!(
            e.contains("config.json")
                && e.contains("num_hidden_layers must be between 1 and 4096, got 1000000000"),
            "{e}"
        );
        for (key, value) in [
            ("hidden_size", 9u64 << 17),
            ("vocab_size", 1 << 30),
            ("intermediate_size", 1 << 40),
            ("num_attention_heads", 0),
            ("num_key_value_heads", 0),
            ("max_position_embeddings", 0),
        ] {
            let e = llama_err(key, value.into());
            assert!(e.contains(&format!("{key} must be between 1 and")), "{e}");
        }
        // The head width comes from the division: it must be exact.
        let e = llama_err("num_attention_heads", 7.into());
        assert!(e.contains("not a multiple of num_attention_heads 7"), "{e}");
        let e = bert_err("num_hidden_layers", 1_000_000_000.into());
        assert!(e.contains("num_hidden_layers must be between 1"), "{e}");
        let e = bert_err("vocab_size", 0.into());
        assert!(e.contains("vocab_size must be between 1"), "{e}");
        let e = bert_err("num_attention_heads", 0.into());
        assert!(e.contains("num_attention_heads must be between 1"), "{e}");
        let e = bert_err("max_position_embeddings", (1u64 << 40).into());
        assert!(
            e.contains("max_position_embeddings must be between 1"),
            "{e}"
        );
    }

    #[test]
    fn bad_float_values_are_rejected_by_key() {
        for (key, value) in [
            ("rope_theta", serde_json::json!(0)),
            ("rope_theta", serde_json::json!(-10000.0)),
            ("rms_norm_eps", serde_json::json!(0.0)),
            ("rms_norm_eps", serde_json::json!(-1e-5)),
        ] {
            let e = llama_err(key, value.clone());
            assert!(
                e.contains(&format!("{key} must be finite and positive, got")),
                "{key} = {value}: {e}"
            );
        }
        let e = bert_err("layer_norm_eps", serde_json::json!(-1e-12));
        assert!(
            e.contains("layer_norm_eps must be finite and positive, got -0.000000000001"),
            "{e}"
        );
        let e = bert_err("layer_norm_eps", serde_json::json!(0));
        assert!(e.contains("layer_norm_eps must be finite"), "{e}");
        // JSON has no NaN; a config built in code (or from GGUF metadata) can.
        let mut c = LlamaConfig::new(16, 8, 16, 1, 2, 2);
        c.rope_theta = f64::NAN;
        let e = c
            .validate(Path::new("config.json"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("config.json: invalid model config: rope_theta must be finite and positive, got NaN"),
            "{e}"
        );
        c.rope_theta = 1e4;
        c.rms_norm_eps = f64::INFINITY;
        assert!(c.validate(Path::new("c")).is_err());
        let scaled = with(
            SMOLLM2,
            "rope_scaling",
            serde_json::json!({"rope_type": "llama3", "factor": -8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
        );
        let e = LlamaConfig::from_json(Path::new("c"), &scaled)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rope_scaling.factor must be finite and positive"),
            "{e}"
        );
    }

    /// Strings from the file are cut in messages: a corrupt file cannot make them huge.
    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "x".repeat(100_000);
        let e = llama_err("hidden_size", long.clone().into());
        assert!(e.len() < 1000, "{} bytes", e.len());
        let mut v: serde_json::Value = serde_json::from_str(MINILM).unwrap();
        v["architectures"] = serde_json::json!([long]);
        v["model_type"] = serde_json::json!("nope");
        let e = model_family(Path::new("c"), &v).unwrap_err().to_string();
        assert!(e.len() < 1000, "{} bytes", e.len());
    }
}
