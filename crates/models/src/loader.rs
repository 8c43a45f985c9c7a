//! One call from a model spec (directory, GGUF file or hub id) to a ready model + tokenizer.

use std::path::Path;

use burn::tensor::{Device, Tensor};

use crate::batch::{PaddingSide, TokenBatch};
use crate::bert::{Bert, Pooling};
use crate::config::{limits, read_config_json, BertConfig, LlamaConfig};
use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use crate::layers::to_host;
use crate::llama::Llama;
use crate::source::{resolve, ResolvedSource};
use crate::tokenizer::{EncodeOptions, TextTokenizer};
use crate::weights::{GgufLlamaSource, TensorSource, WeightsSource};

/// A decoder and its tokenizer.
#[derive(Debug)]
pub struct Generator {
    /// The language model.
    pub model: Llama,
    /// Its tokenizer (chat template and stop tokens included).
    pub tokenizer: TextTokenizer,
}

/// An encoder, its tokenizer and how it turns token states into one vector.
#[derive(Debug)]
pub struct Encoder {
    /// The encoder.
    pub model: Bert,
    /// Its tokenizer.
    pub tokenizer: TextTokenizer,
    /// Sentence pooling.
    pub pooling: Pooling,
    /// Whether embeddings are L2-normalized.
    pub normalize: bool,
    /// Longest input in tokens (longer texts are truncated).
    pub max_length: usize,
    /// Where the encoder was loaded from.
    pub source: String,
    /// Hash of the weight files (see [`WeightsSource::content_hash`]); empty when unknown.
    pub weights_hash: String,
}

impl Generator {
    /// Loads a generator from a spec: a model directory, a `.gguf` file or a hub id.
    pub fn load(spec: &str, device: &Device) -> Result<Self> {
        match resolve(spec)? {
            ResolvedSource::Dir(dir) => Self::load_dir(&dir, device),
            ResolvedSource::Gguf(file) => Self::load_gguf(&file, device),
        }
    }

    /// Loads `config.json`, the weights (safetensors, else `pytorch_model.bin`; see
    /// [`WeightsSource::open_dir`]) and `tokenizer.json` from a directory.
    pub fn load_dir(dir: &Path, device: &Device) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config = LlamaConfig::from_json(&config_path, &read_config_json(&config_path)?)?;
        let mut tokenizer = TextTokenizer::from_dir(dir)?;
        tokenizer.check_model_vocab(config.vocab_size)?;
        for &id in &config.eos_token_ids {
            tokenizer.add_stop_id(id);
        }
        let source = WeightsSource::open_dir(dir)?;
        let model = Llama::load(&source, config, device)?;
        Ok(Self { model, tokenizer })
    }

    /// Loads a Llama-architecture GGUF file: weights dequantized to f32, config and
    /// tokenizer rebuilt from its metadata.
    pub fn load_gguf(path: &Path, device: &Device) -> Result<Self> {
        let file = GgufFile::open(path)?;
        let config = llama_config_from_gguf(path, &file)?;
        let mut tokenizer = TextTokenizer::from_json(&file.tokenizer_json()?)?;
        tokenizer.check_model_vocab(config.vocab_size)?;
        let token = |key: &str| {
            file.get_u64(key)
                .ok()
                .and_then(|id| tokenizer.inner().id_to_token(id as u32))
        };
        let (bos, eos) = (
            token("tokenizer.ggml.bos_token_id"),
            token("tokenizer.ggml.eos_token_id"),
        );
        tokenizer.set_special_tokens(bos, eos);
        if let Ok(pad) = file.get_u64("tokenizer.ggml.padding_token_id") {
            tokenizer.set_pad_id(pad as u32);
        }
        // Chat models end a turn with <|im_end|>/<|eot_id|> even when EOS is another token.
        for stop in ["<|im_end|>", "<|eot_id|>", "<|end|>"] {
            if let Some(id) = tokenizer.token_id(stop) {
                tokenizer.add_stop_id(id);
            }
        }
        tokenizer.set_chat_template(file.chat_template().map(str::to_owned));
        let source = GgufLlamaSource::new(
            path,
            file,
            config.num_attention_heads,
            config.num_key_value_heads,
        );
        let model = Llama::load(&source, config, device)?;
        Ok(Self { model, tokenizer })
    }
}

/// The decoder config a Llama GGUF file's metadata describes, every dimension bounded by
/// [`limits`] and checked against the tensors the file holds before anything is allocated.
pub(crate) fn llama_config_from_gguf(path: &Path, file: &GgufFile) -> Result<LlamaConfig> {
    let arch = file.architecture()?.to_owned();
    if arch != "llama" {
        return Err(ModelError::UnsupportedArchitecture {
            path: path.to_path_buf(),
            // A corrupt string length can make this megabytes long.
            found: if arch.len() > 64 {
                crate::gguf::quote(&arch)
            } else {
                arch
            },
            supported: "llama".into(),
        });
    }
    if file.tensor("rope_freqs.weight").is_some() {
        return Err(ModelError::config(
            path,
            "GGUF files with Llama-3 RoPE frequency factors (rope_freqs.weight) are not supported yet; \
             load the safetensors checkpoint instead",
        ));
    }
    let key = |k: &str| format!("{arch}.{k}");
    let bad = |m: String| ModelError::config(path, m);
    // Every dimension is bounded (and, below, checked against the tensors present) before
    // anything is sized by it; messages name the GGUF key.
    let dim = |k: &str, max: usize| -> Result<Option<usize>> {
        let k = key(k);
        if file.get(&k).is_none() {
            return Ok(None);
        }
        let v = file.get_u64(&k)?;
        match usize::try_from(v) {
            Ok(v) if (1..=max).contains(&v) => Ok(Some(v)),
            _ => Err(bad(format!("{k} must be between 1 and {max}, got {v}"))),
        }
    };
    let required = |k: &str, max: usize| -> Result<usize> {
        dim(k, max)?.ok_or_else(|| {
            ModelError::from(crate::gguf::GgufError::MissingKey {
                path: path.to_path_buf(),
                key: key(k),
            })
        })
    };
    let float = |k: &str, default: f64| -> Result<f64> {
        let k = key(k);
        let v = match file.get(&k) {
            None => return Ok(default),
            Some(_) => file.get_f64(&k)?,
        };
        if !(v.is_finite() && v > 0.0) {
            return Err(bad(format!("{k} must be finite and positive, got {v}")));
        }
        Ok(v)
    };
    let embd = file
        .tensor("token_embd.weight")
        .ok_or_else(|| ModelError::MissingTensor {
            source_name: path.display().to_string(),
            tensor: "token_embd.weight".into(),
        })?;
    let heads = required("attention.head_count", limits::MAX_HEADS)?;
    let hidden = required("embedding_length", limits::MAX_HIDDEN)?;
    let layers = required("block_count", limits::MAX_LAYERS)?;
    let (vocab_size, embd_width) = match embd.shape.as_slice() {
        &[vocab, width] => (vocab, width),
        other => {
            return Err(ModelError::ShapeMismatch {
                source_name: path.display().to_string(),
                tensor: "token_embd.weight".into(),
                found: other.to_vec(),
                expected: vec![0, hidden],
            })
        }
    };
    if embd_width != hidden {
        return Err(ModelError::ShapeMismatch {
            source_name: path.display().to_string(),
            tensor: "token_embd.weight".into(),
            found: embd.shape.clone(),
            expected: vec![vocab_size, hidden],
        });
    }
    // The last block the metadata promises must be in the file: a corrupt block_count fails
    // here instead of sizing the model.
    let last_block = format!("blk.{}.", layers - 1);
    if !file.tensors.iter().any(|t| t.name.starts_with(&last_block)) {
        let present = file
            .tensors
            .iter()
            .filter_map(|t| {
                t.name
                    .strip_prefix("blk.")?
                    .split('.')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .map_or(0, |m| m + 1);
        return Err(bad(format!(
            "{} is {layers} but the file has tensors for {present} block(s)",
            key("block_count")
        )));
    }
    let head_dim = match dim("attention.key_length", limits::MAX_HEAD_DIM)? {
        Some(d) => d,
        None if hidden.is_multiple_of(heads) => hidden / heads,
        None => {
            return Err(bad(format!(
                "{} {hidden} is not a multiple of {} {heads}",
                key("embedding_length"),
                key("attention.head_count")
            )))
        }
    };
    let eos: Vec<u32> = file
        .get_u64("tokenizer.ggml.eos_token_id")
        .ok()
        .map(|v| v as u32)
        .into_iter()
        .collect();
    let config = LlamaConfig {
        vocab_size,
        hidden_size: hidden,
        intermediate_size: required("feed_forward_length", limits::MAX_INTERMEDIATE)?,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: dim("attention.head_count_kv", limits::MAX_HEADS)?.unwrap_or(heads),
        head_dim,
        rms_norm_eps: float("attention.layer_norm_rms_epsilon", 1e-5)?,
        rope_theta: float("rope.freq_base", 10_000.0)?,
        rope_scaling: None,
        max_position_embeddings: dim("context_length", limits::MAX_POSITIONS)?.unwrap_or(2048),
        tie_word_embeddings: file.tensor("output.weight").is_none(),
        attention_bias: file.tensor("blk.0.attn_q.bias").is_some(),
        bos_token_id: file
            .get_u64("tokenizer.ggml.bos_token_id")
            .ok()
            .map(|v| v as u32),
        eos_token_ids: eos,
        architecture: "LlamaForCausalLM".into(),
    };
    config.validate(path)?;
    Ok(config)
}

impl Encoder {
    /// Most texts [`Encoder::embed`] runs through the model at once.
    pub const MICRO_BATCH: usize = 16;

    /// Loads an encoder from a model directory or hub id. Pooling, normalization and maximum
    /// length come from the sentence-transformers files when present (mean pooling, no
    /// normalization and 512 tokens otherwise).
    pub fn load(spec: &str, device: &Device) -> Result<Self> {
        match resolve(spec)? {
            ResolvedSource::Dir(dir) => {
                let mut encoder = Self::load_dir(&dir, device)?;
                encoder.source = spec.to_owned();
                Ok(encoder)
            }
            ResolvedSource::Gguf(file) => Err(ModelError::Source {
                source_spec: file.display().to_string(),
                message: "encoders are loaded from model directories (safetensors or pytorch_model.bin), not GGUF".into(),
            }),
        }
    }

    /// Loads `config.json`, the weights (safetensors, else `pytorch_model.bin`),
    /// `tokenizer.json` and sentence-transformers settings from a directory.
    pub fn load_dir(dir: &Path, device: &Device) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config = BertConfig::from_json(&config_path, &read_config_json(&config_path)?)?;
        let tokenizer = TextTokenizer::from_dir(dir)?;
        tokenizer.check_model_vocab(config.vocab_size)?;
        let (pooling, normalize, max_len) = sentence_transformers_settings(dir)?;
        let max_length = max_len
            .or(tokenizer.model_max_length())
            .unwrap_or(512)
            .min(config.max_position_embeddings);
        let source = WeightsSource::open_dir(dir)?;
        let model = Bert::load(&source as &dyn TensorSource, config, device)?;
        Ok(Self {
            model,
            tokenizer,
            pooling,
            normalize,
            max_length,
            source: dir.display().to_string(),
            weights_hash: source.content_hash(),
        })
    }

    /// Embeds a batch of texts: `[texts.len(), hidden]` on the model's device.
    pub fn embed_tensor(&self, texts: &[&str]) -> Result<Tensor<2>> {
        self.embed_tensor_with(&self.model, texts)
    }

    /// [`Encoder::embed_tensor`] with another model of the same architecture and vocabulary,
    /// e.g. a query encoder being fine-tuned from this one (differentiable on an autodiff
    /// device).
    pub fn embed_tensor_with(&self, model: &Bert, texts: &[&str]) -> Result<Tensor<2>> {
        let batch = self.encode(texts)?;
        model.embed(&batch, self.pooling, self.normalize)
    }

    /// Special tokens on, truncation at `max_length`, right padding.
    fn encode_options(&self) -> EncodeOptions {
        EncodeOptions {
            max_length: Some(self.max_length),
            ..EncodeOptions::default()
        }
    }

    /// Tokenizes texts the way this encoder expects (special tokens, truncation, right padding).
    pub fn encode(&self, texts: &[&str]) -> Result<TokenBatch> {
        self.tokenizer.encode_batch(texts, &self.encode_options())
    }

    /// Embeds texts into host vectors, in input order.
    ///
    /// Texts are grouped by token length into batches of at most [`Self::MICRO_BATCH`] so
    /// short texts are not padded to the longest one of the whole call; padding never changes
    /// a row's embedding, and the grouping depends only on the inputs, so results are
    /// deterministic.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embed_with(&self.model, texts)
    }

    /// [`Encoder::embed`] with another model of the same architecture and vocabulary.
    pub fn embed_with(&self, model: &Bert, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let options = self.encode_options();
        let rows = texts
            .iter()
            .map(|t| self.tokenizer.encode_with(t, &options))
            .collect::<Result<Vec<_>>>()?;
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].len());
        let mut out = vec![Vec::new(); rows.len()];
        for group in order.chunks(Self::MICRO_BATCH) {
            let batch_rows: Vec<Vec<u32>> = group.iter().map(|&i| rows[i].clone()).collect();
            let batch =
                TokenBatch::from_rows(&batch_rows, self.tokenizer.pad_id(), PaddingSide::Right)?;
            let t = to_host(model.embed(&batch, self.pooling, self.normalize)?)?;
            let dim = t.shape.get(1).copied().unwrap_or(0).max(1);
            for (&i, v) in group.iter().zip(t.data.chunks(dim)) {
                out[i] = v.to_vec();
            }
        }
        Ok(out)
    }
}

fn read_json_opt(path: &Path) -> Result<Option<serde_json::Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ModelError::config(path, e.to_string()))
}

/// (pooling, normalize, max_seq_length) from `1_Pooling/config.json`, `modules.json` and
/// `sentence_bert_config.json`.
fn sentence_transformers_settings(dir: &Path) -> Result<(Pooling, bool, Option<usize>)> {
    let pooling_path = dir.join("1_Pooling/config.json");
    let pooling = match read_json_opt(&pooling_path)? {
        Some(p) => {
            let flag = |k: &str| p.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
            if flag("pooling_mode_cls_token") {
                Pooling::Cls
            } else if flag("pooling_mode_mean_tokens") {
                Pooling::Mean
            } else {
                return Err(ModelError::config(
                    &pooling_path,
                    "only mean and cls pooling are supported",
                ));
            }
        }
        None => Pooling::Mean,
    };
    let normalize = read_json_opt(&dir.join("modules.json"))?
        .and_then(|m| m.as_array().cloned())
        .is_some_and(|mods| {
            mods.iter().any(|m| {
                m.get("type")
                    .and_then(|t| t.as_str())
                    .is_some_and(|t| t.ends_with("Normalize"))
            })
        });
    let max_len = read_json_opt(&dir.join("sentence_bert_config.json"))?
        .and_then(|c| c.get("max_seq_length").and_then(|v| v.as_u64()))
        .map(|v| v as usize);
    Ok((pooling, normalize, max_len))
}
