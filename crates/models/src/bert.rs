//! BERT-family encoder (post-LN blocks, GELU, absolute positions, token types) with
//! sentence pooling, as used by dual-encoder retrievers (MiniLM, Contriever, DRAGON+).

use burn::module::Module;
use burn::nn::{Embedding, Linear};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::batch::{attention_bias, TokenBatch};
use crate::config::BertConfig;
use crate::error::Result;
use crate::fused::{gelu, softmax_last};
use crate::layers::{load_embedding, load_linear, LayerNorm};
use crate::weights::TensorSource;

/// How token states become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over real (unmasked) tokens — sentence-transformers, Contriever.
    Mean,
    /// The first token's state — DPR, DRAGON+.
    Cls,
}

/// Embedding layer: word + absolute position + token type, then LayerNorm.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// Word embeddings.
    pub word_embeddings: Embedding,
    /// Absolute position embeddings.
    pub position_embeddings: Embedding,
    /// Token-type (segment) embeddings.
    pub token_type_embeddings: Embedding,
    /// Normalization.
    pub layer_norm: LayerNorm,
}

/// One post-LN encoder block.
#[derive(Module, Debug)]
pub struct BertLayer {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// Attention output projection.
    pub attention_output: Linear,
    /// Norm after attention + residual.
    pub attention_norm: LayerNorm,
    /// Feed-forward up projection.
    pub intermediate: Linear,
    /// Feed-forward down projection.
    pub output: Linear,
    /// Norm after feed-forward + residual.
    pub output_norm: LayerNorm,
    #[module(skip)]
    n_head: usize,
}

/// A BERT-family encoder.
#[derive(Module, Debug)]
pub struct Bert {
    /// Input embeddings.
    pub embeddings: BertEmbeddings,
    /// Encoder blocks.
    pub layers: Vec<BertLayer>,
    #[module(skip)]
    config: BertConfig,
    #[module(skip)]
    prefix: String,
}

impl BertLayer {
    fn forward(&self, x: Tensor<3>, bias: &Tensor<4>) -> Tensor<3> {
        let [b, t, hidden] = x.dims();
        let (h, d) = (self.n_head, hidden / self.n_head);
        // Token rows as one matrix: each projection is a single GEMM over all b·t rows (a
        // batched one would pack its weight again for every sequence), in and out as views.
        let x = x.reshape([b * t, hidden]);
        let heads = |y: Tensor<2>| y.reshape([b, t, h, d]).swap_dims(1, 2);
        let q = heads(self.query.forward(x.clone()));
        let k = heads(self.key.forward(x.clone()));
        let v = heads(self.value.forward(x.clone()));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (d as f64).sqrt())
            .add(bias.clone());
        let context = softmax_last(scores)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b * t, hidden]);
        let x = self
            .attention_norm
            .forward(x.add(self.attention_output.forward(context)));
        let ff = self
            .output
            .forward(gelu(self.intermediate.forward(x.clone())));
        self.output_norm.forward(x.add(ff)).reshape([b, t, hidden])
    }
}

impl Bert {
    /// Loads an encoder; tensor names may carry a `bert.` prefix or none (sentence-transformers).
    pub fn load(source: &dyn TensorSource, config: BertConfig, device: &Device) -> Result<Self> {
        let prefix = if source.contains("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        }
        .to_owned();
        let c = &config;
        let hd = c.hidden_size;
        let name = |n: &str| format!("{prefix}{n}");
        let lin = |n: &str, d_in, d_out| load_linear(source, &name(n), d_in, d_out, true, device);
        let norm = |n: &str| LayerNorm::load(source, &name(n), hd, c.layer_norm_eps, device);
        let embeddings = BertEmbeddings {
            word_embeddings: load_embedding(
                source,
                &name("embeddings.word_embeddings.weight"),
                c.vocab_size,
                hd,
                device,
            )?,
            position_embeddings: load_embedding(
                source,
                &name("embeddings.position_embeddings.weight"),
                c.max_position_embeddings,
                hd,
                device,
            )?,
            token_type_embeddings: load_embedding(
                source,
                &name("embeddings.token_type_embeddings.weight"),
                c.type_vocab_size,
                hd,
                device,
            )?,
            layer_norm: norm("embeddings.LayerNorm")?,
        };
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(BertLayer {
                query: lin(&format!("{p}.attention.self.query"), hd, hd)?,
                key: lin(&format!("{p}.attention.self.key"), hd, hd)?,
                value: lin(&format!("{p}.attention.self.value"), hd, hd)?,
                attention_output: lin(&format!("{p}.attention.output.dense"), hd, hd)?,
                attention_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                intermediate: lin(&format!("{p}.intermediate.dense"), hd, c.intermediate_size)?,
                output: lin(&format!("{p}.output.dense"), c.intermediate_size, hd)?,
                output_norm: norm(&format!("{p}.output.LayerNorm"))?,
                n_head: c.num_attention_heads,
            });
        }
        Ok(Self {
            embeddings,
            layers,
            config,
            prefix,
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.embeddings.word_embeddings.weight.val().device()
    }

    /// Token states `[batch, seq_len, hidden]` (token type 0 everywhere; padding masked out).
    pub fn forward(&self, batch: &TokenBatch) -> Result<Tensor<3>> {
        batch.check_vocab(self.config.vocab_size)?;
        if batch.seq_len > self.config.max_position_embeddings {
            return Err(crate::ModelError::InvalidInput(format!(
                "sequence of {} tokens exceeds the encoder's {} positions",
                batch.seq_len, self.config.max_position_embeddings
            )));
        }
        let device = self.device();
        let (b, t) = (batch.batch_size, batch.seq_len);
        let ids = batch.ids_tensor(&device);
        let positions = Tensor::<1, Int>::arange(0..t as i64, &device)
            .unsqueeze::<2>()
            .repeat_dim(0, b);
        let types = Tensor::<2, Int>::zeros([b, t], &device);
        let e = &self.embeddings;
        let x = e
            .word_embeddings
            .forward(ids)
            .add(e.position_embeddings.forward(positions))
            .add(e.token_type_embeddings.forward(types));
        let mut x = e.layer_norm.forward(x);
        let rows: Vec<Vec<u8>> = (0..b).map(|r| batch.row_mask(r).to_vec()).collect();
        let bias = attention_bias(&rows, t, false, None, &device);
        for layer in &self.layers {
            x = layer.forward(x, &bias);
        }
        Ok(x)
    }

    /// Sentence embeddings `[batch, hidden]`: pooled token states, optionally L2-normalized.
    pub fn embed(
        &self,
        batch: &TokenBatch,
        pooling: Pooling,
        normalize: bool,
    ) -> Result<Tensor<2>> {
        let states = self.forward(batch)?;
        let [b, t, h] = states.dims();
        let pooled = match pooling {
            Pooling::Cls => states.slice([0..b, 0..1, 0..h]).reshape([b, h]),
            Pooling::Mean => {
                let mask: Vec<f32> = batch.mask.iter().map(|&m| f32::from(m)).collect();
                let mask = Tensor::<3>::from_data(TensorData::new(mask, [b, t, 1]), &self.device());
                let summed = states.mul(mask.clone()).sum_dim(1).reshape([b, h]);
                // transformers clamps the count at 1e-9; a row of only padding stays finite.
                let count = mask.sum_dim(1).reshape([b, 1]).clamp_min(1e-9);
                summed.div(count)
            }
        };
        Ok(if normalize {
            // F.normalize: divide by max(‖x‖, 1e-12).
            let norm = pooled.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
            pooled.div(norm)
        } else {
            pooled
        })
    }

    /// The name prefix the checkpoint used (`"bert."` or `""`), kept for export.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}
