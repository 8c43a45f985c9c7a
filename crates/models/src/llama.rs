//! Llama-family decoder: RMSNorm, rotate-half RoPE (with Llama-3 scaling), grouped-query
//! attention, SwiGLU, tied or untied output embeddings, and a KV cache for decoding.

use burn::module::Module;
use burn::nn::{Embedding, Linear};
use burn::tensor::{Device, Tensor, TensorData};

use crate::batch::{attention_bias, TokenBatch};
use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::fused::{silu, softmax_last};
use crate::layers::{load_embedding, load_linear, RmsNorm};
use crate::weights::TensorSource;

/// Self-attention with grouped-query heads.
#[derive(Module, Debug)]
pub struct LlamaAttention {
    /// Query projection.
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection.
    pub o_proj: Linear,
    #[module(skip)]
    n_head: usize,
    #[module(skip)]
    n_kv_head: usize,
    #[module(skip)]
    head_dim: usize,
}

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct LlamaMlp {
    /// Gate projection.
    pub gate_proj: Linear,
    /// Up projection.
    pub up_proj: Linear,
    /// Down projection.
    pub down_proj: Linear,
}

/// One pre-norm decoder block.
#[derive(Module, Debug)]
pub struct LlamaBlock {
    /// Norm before attention.
    pub input_layernorm: RmsNorm,
    /// Attention.
    pub self_attn: LlamaAttention,
    /// Norm before the feed-forward.
    pub post_attention_layernorm: RmsNorm,
    /// Feed-forward.
    pub mlp: LlamaMlp,
}

/// A Llama-family causal language model.
#[derive(Module, Debug)]
pub struct Llama {
    /// Token embeddings `[vocab, hidden]` (also the output projection when tied).
    pub embed_tokens: Embedding,
    /// Decoder blocks.
    pub layers: Vec<LlamaBlock>,
    /// Final norm.
    pub norm: RmsNorm,
    /// Untied output projection, if the model has one.
    pub lm_head: Option<Linear>,
    #[module(skip)]
    config: LlamaConfig,
    #[module(skip)]
    inv_freq: Vec<f32>,
}

/// Keys and values of every layer for the tokens seen so far, plus each row's mask and next
/// position, so a decoding step only computes the new tokens.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    mask: Vec<Vec<u8>>,
    next_position: Vec<usize>,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cached positions (padding included).
    pub fn len(&self) -> usize {
        self.mask.first().map_or(0, Vec::len)
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// RoPE inverse frequencies, computed in f32 the way transformers does, with Llama-3 scaling.
pub fn rope_inv_freq(config: &LlamaConfig) -> Vec<f32> {
    let d = config.head_dim;
    let base = config.rope_theta as f32;
    let mut inv: Vec<f32> = (0..d)
        .step_by(2)
        .map(|i| 1.0f32 / base.powf(i as f32 / d as f32))
        .collect();
    if let Some(s) = &config.rope_scaling {
        let old = s.original_max_position_embeddings as f64;
        let low_wavelen = old / s.low_freq_factor;
        let high_wavelen = old / s.high_freq_factor;
        for f in inv.iter_mut() {
            let freq = f64::from(*f);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let scaled = if wavelen < high_wavelen {
                freq
            } else if wavelen > low_wavelen {
                freq / s.factor
            } else {
                let smooth =
                    (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                (1.0 - smooth) * freq / s.factor + smooth * freq
            };
            *f = scaled as f32;
        }
    }
    inv
}

fn rotate_half(x: Tensor<4>) -> Tensor<4> {
    let d = x.dims()[3];
    let x1 = x.clone().narrow(3, 0, d / 2);
    let x2 = x.narrow(3, d / 2, d / 2);
    Tensor::cat(vec![x2.neg(), x1], 3)
}

impl LlamaAttention {
    fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<4>,
        sin: &Tensor<4>,
        bias: &Tensor<4>,
        cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>,
    ) -> Tensor<3> {
        let [b, t, hidden] = x.dims();
        let (h, kv, d) = (self.n_head, self.n_kv_head, self.head_dim);
        // Token rows as one matrix: each projection is a single GEMM over all b·t rows (a
        // batched one would pack its weight again for every sequence), in and out as views.
        let x = x.reshape([b * t, hidden]);
        let heads = |y: Tensor<2>, n: usize| y.reshape([b, t, n, d]).swap_dims(1, 2);
        let rope = |y: Tensor<4>| {
            y.clone()
                .mul(cos.clone())
                .add(rotate_half(y).mul(sin.clone()))
        };
        let q = rope(heads(self.q_proj.forward(x.clone()), h));
        let mut k = rope(heads(self.k_proj.forward(x.clone()), kv));
        let mut v = heads(self.v_proj.forward(x), kv);
        if let Some(slot) = cache {
            if let Some((past_k, past_v)) = slot.take() {
                k = Tensor::cat(vec![past_k, k], 2);
                v = Tensor::cat(vec![past_v, v], 2);
            }
            *slot = Some((k.clone(), v.clone()));
        }
        let s = k.dims()[2];
        let (k, v) = if h != kv {
            let rep = h / kv;
            let expand = |y: Tensor<4>| {
                y.unsqueeze_dim::<5>(2)
                    .repeat_dim(2, rep)
                    .reshape([b, h, s, d])
            };
            (expand(k), expand(v))
        } else {
            (k, v)
        };
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (d as f64).sqrt())
            .add(bias.clone());
        let context = softmax_last(scores).matmul(v);
        self.o_proj
            .forward(context.swap_dims(1, 2).reshape([b * t, h * d]))
            .reshape([b, t, hidden])
    }
}

impl LlamaMlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        // One GEMM per projection over all token rows, as in the attention.
        let [b, t, hidden] = x.dims();
        let x = x.reshape([b * t, hidden]);
        self.down_proj
            .forward(silu(self.gate_proj.forward(x.clone())).mul(self.up_proj.forward(x)))
            .reshape([b, t, hidden])
    }
}

impl Llama {
    /// Loads every weight from a checkpoint (Hugging Face names) onto `device`.
    pub fn load(source: &dyn TensorSource, config: LlamaConfig, device: &Device) -> Result<Self> {
        let c = &config;
        let (hd, q_out, kv_out) = (
            c.hidden_size,
            c.num_attention_heads * c.head_dim,
            c.num_key_value_heads * c.head_dim,
        );
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let lin = |name: &str, d_in, d_out, bias| {
                load_linear(source, &format!("{p}.{name}"), d_in, d_out, bias, device)
            };
            layers.push(LlamaBlock {
                input_layernorm: RmsNorm::load(
                    source,
                    &format!("{p}.input_layernorm"),
                    hd,
                    c.rms_norm_eps,
                    device,
                )?,
                self_attn: LlamaAttention {
                    q_proj: lin("self_attn.q_proj", hd, q_out, c.attention_bias)?,
                    k_proj: lin("self_attn.k_proj", hd, kv_out, c.attention_bias)?,
                    v_proj: lin("self_attn.v_proj", hd, kv_out, c.attention_bias)?,
                    o_proj: lin("self_attn.o_proj", q_out, hd, false)?,
                    n_head: c.num_attention_heads,
                    n_kv_head: c.num_key_value_heads,
                    head_dim: c.head_dim,
                },
                post_attention_layernorm: RmsNorm::load(
                    source,
                    &format!("{p}.post_attention_layernorm"),
                    hd,
                    c.rms_norm_eps,
                    device,
                )?,
                mlp: LlamaMlp {
                    gate_proj: lin("mlp.gate_proj", hd, c.intermediate_size, false)?,
                    up_proj: lin("mlp.up_proj", hd, c.intermediate_size, false)?,
                    down_proj: lin("mlp.down_proj", c.intermediate_size, hd, false)?,
                },
            });
        }
        // A checkpoint may store lm_head even when tied; it is then ignored, as transformers does.
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(load_linear(
                source,
                "lm_head",
                hd,
                c.vocab_size,
                false,
                device,
            )?)
        };
        Ok(Self {
            embed_tokens: load_embedding(
                source,
                "model.embed_tokens.weight",
                c.vocab_size,
                hd,
                device,
            )?,
            layers,
            norm: RmsNorm::load(source, "model.norm", hd, c.rms_norm_eps, device)?,
            lm_head,
            inv_freq: rope_inv_freq(c),
            config,
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.embed_tokens.weight.val().device()
    }

    /// cos/sin tables `[batch, 1, t, head_dim]` for the given per-row positions.
    fn rope_tables(&self, positions: &[Vec<usize>], device: &Device) -> (Tensor<4>, Tensor<4>) {
        let b = positions.len();
        let t = positions.first().map_or(0, Vec::len);
        let d = self.config.head_dim;
        let half = d / 2;
        let mut cos = vec![0.0f32; b * t * d];
        let mut sin = vec![0.0f32; b * t * d];
        for (r, row) in positions.iter().enumerate() {
            for (i, &p) in row.iter().enumerate() {
                let base = (r * t + i) * d;
                for (j, &f) in self.inv_freq.iter().enumerate() {
                    let angle = p as f32 * f;
                    let (s, c) = angle.sin_cos();
                    cos[base + j] = c;
                    cos[base + j + half] = c;
                    sin[base + j] = s;
                    sin[base + j + half] = s;
                }
            }
        }
        let make = |v| Tensor::from_data(TensorData::new(v, [b, 1, t, d]), device);
        (make(cos), make(sin))
    }

    /// Final hidden states `[batch, t, hidden]` for the tokens of `batch`.
    ///
    /// With a cache, `batch` holds only the new tokens; their keys and values are appended
    /// and earlier tokens are attended through the cache. Padding (mask 0) may sit on either
    /// side; positions count real tokens only, so left-padded rows start at position 0.
    pub fn hidden_states(
        &self,
        batch: &TokenBatch,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor<3>> {
        batch.check_vocab(self.config.vocab_size)?;
        let device = self.device();
        let (b, t) = (batch.batch_size, batch.seq_len);
        let mut fresh = KvCache::new();
        let (cache, keep) = match cache {
            Some(c) => (c, true),
            None => (&mut fresh, false),
        };
        if cache.is_empty() {
            cache.layers = vec![None; self.layers.len()];
            cache.mask = vec![Vec::new(); b];
            cache.next_position = vec![0; b];
        } else if batch.segments.is_some() {
            return Err(ModelError::InvalidInput(
                "packed batches cannot be decoded with a KV cache".into(),
            ));
        } else if cache.mask.len() != b {
            return Err(ModelError::InvalidInput(format!(
                "batch of {b} rows does not match the cache's {} rows",
                cache.mask.len()
            )));
        }
        let mut positions = Vec::with_capacity(b);
        for r in 0..b {
            let mut next = cache.next_position[r];
            let segments = batch.row_segments(r);
            let row: Vec<usize> = batch
                .row_mask(r)
                .iter()
                .enumerate()
                .map(|(i, &m)| {
                    // Each packed example starts at position 0, as it would alone.
                    if let Some(seg) = segments {
                        if i > 0 && seg[i] != seg[i - 1] {
                            next = 0;
                        }
                    }
                    let p = next;
                    if m != 0 {
                        next += 1;
                    }
                    p
                })
                .collect();
            cache.next_position[r] = next;
            cache.mask[r].extend_from_slice(batch.row_mask(r));
            positions.push(row);
        }
        let (cos, sin) = self.rope_tables(&positions, &device);
        let bias = attention_bias(&cache.mask, t, true, batch.segments.as_deref(), &device);
        let mut x = self.embed_tokens.forward(batch.ids_tensor(&device));
        for (layer, slot) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let attn_in = layer.input_layernorm.forward(x.clone());
            let slot = if keep { Some(slot) } else { None };
            x = x.add(layer.self_attn.forward(attn_in, &cos, &sin, &bias, slot));
            let mlp_in = layer.post_attention_layernorm.forward(x.clone());
            x = x.add(layer.mlp.forward(mlp_in));
        }
        Ok(self.norm.forward(x))
    }

    /// Output logits for hidden states of any rank-3 shape `[batch, t, hidden]`.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let [b, t, h] = hidden.dims();
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => hidden
                .reshape([b * t, h])
                .matmul(self.embed_tokens.weight.val().transpose())
                .reshape([b, t, self.config.vocab_size]),
        }
    }

    /// Logits `[batch, seq_len, vocab]` at every position.
    pub fn forward(&self, batch: &TokenBatch) -> Result<Tensor<3>> {
        Ok(self.logits(self.hidden_states(batch, None)?))
    }

    /// Logits `[batch, vocab]` at each row's last real token: the next-token distribution.
    /// Only that position goes through the output projection.
    pub fn next_token_logits(
        &self,
        batch: &TokenBatch,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor<2>> {
        let hidden = self.hidden_states(batch, cache)?;
        let [b, _, h] = hidden.dims();
        let rows: Vec<Tensor<3>> = batch
            .last_real_positions()
            .into_iter()
            .enumerate()
            .map(|(r, p)| hidden.clone().slice([r..r + 1, p..p + 1, 0..h]))
            .collect();
        let last = Tensor::cat(rows, 0);
        Ok(self.logits(last).reshape([b, self.config.vocab_size]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RopeScaling;

    fn config(theta: f64, scaling: Option<RopeScaling>) -> LlamaConfig {
        LlamaConfig {
            rope_theta: theta,
            rope_scaling: scaling,
            ..LlamaConfig::new(8, 64, 8, 1, 1, 1)
        }
    }

    fn assert_close(ours: &[f32], reference: &serde_json::Value) {
        let reference: Vec<f64> = reference
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(ours.len(), reference.len());
        for (a, b) in ours.iter().zip(&reference) {
            let rel = (f64::from(*a) - b).abs() / b.abs();
            assert!(rel < 1e-6, "{a} vs {b}");
        }
    }

    /// Against transformers' own RoPE initialisation (`scripts/make_rope_fixture.py`).
    #[test]
    fn inverse_frequencies_match_transformers() {
        let fx: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/rope_inv_freq.json")).unwrap();
        assert_close(
            &rope_inv_freq(&config(100_000.0, None)),
            &fx["default"]["inv_freq"],
        );
        let scaling = RopeScaling {
            rope_type: "llama3".into(),
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        };
        assert_close(
            &rope_inv_freq(&config(500_000.0, Some(scaling))),
            &fx["llama3"]["inv_freq"],
        );
    }
}
