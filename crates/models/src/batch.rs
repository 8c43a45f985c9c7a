//! Host-side token batches: the hand-off between tokenizers and models.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::{ModelError, Result};

/// Which end of a row padding goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaddingSide {
    /// Pad after the tokens (encoders, training).
    #[default]
    Right,
    /// Pad before the tokens (batched generation, so every row ends at the same column).
    Left,
}

/// A rectangular batch of token ids with an attention mask (1 = real token, 0 = padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// Row-major `[batch_size, seq_len]` token ids.
    pub ids: Vec<u32>,
    /// Row-major `[batch_size, seq_len]` mask.
    pub mask: Vec<u8>,
    /// Number of rows.
    pub batch_size: usize,
    /// Columns per row.
    pub seq_len: usize,
    /// For packed rows: which example each column belongs to (`[batch_size, seq_len]`,
    /// 0 for padding). Attention stays inside an example and positions restart at each one.
    pub segments: Option<Vec<u32>>,
}

impl TokenBatch {
    /// Pads rows of token ids to a rectangle with `pad_id` on the given side.
    pub fn from_rows(rows: &[Vec<u32>], pad_id: u32, side: PaddingSide) -> Result<Self> {
        if rows.is_empty() {
            return Err(ModelError::InvalidInput("empty batch".into()));
        }
        let seq_len = rows.iter().map(Vec::len).max().unwrap_or(0);
        if seq_len == 0 {
            return Err(ModelError::InvalidInput(
                "every row of the batch is empty".into(),
            ));
        }
        let mut ids = Vec::with_capacity(rows.len() * seq_len);
        let mut mask = Vec::with_capacity(rows.len() * seq_len);
        for row in rows {
            let pad = seq_len - row.len();
            if side == PaddingSide::Left {
                ids.extend(std::iter::repeat_n(pad_id, pad));
                mask.extend(std::iter::repeat_n(0u8, pad));
            }
            ids.extend_from_slice(row);
            mask.extend(std::iter::repeat_n(1u8, row.len()));
            if side == PaddingSide::Right {
                ids.extend(std::iter::repeat_n(pad_id, pad));
                mask.extend(std::iter::repeat_n(0u8, pad));
            }
        }
        Ok(Self {
            ids,
            mask,
            batch_size: rows.len(),
            seq_len,
            segments: None,
        })
    }

    /// A packed batch: `segments` (`[batch_size, seq_len]`, 0 = padding) says which example
    /// each column belongs to; the mask is derived from it.
    pub fn packed(
        ids: Vec<u32>,
        segments: Vec<u32>,
        batch_size: usize,
        seq_len: usize,
    ) -> Result<Self> {
        if ids.len() != batch_size * seq_len || segments.len() != ids.len() || ids.is_empty() {
            return Err(ModelError::InvalidInput(format!(
                "packed batch of {} ids and {} segment ids does not fill {batch_size}×{seq_len}",
                ids.len(),
                segments.len()
            )));
        }
        let mask = segments.iter().map(|&s| u8::from(s != 0)).collect();
        Ok(Self {
            ids,
            mask,
            batch_size,
            seq_len,
            segments: Some(segments),
        })
    }

    /// The segment ids of row `r`, if the batch is packed.
    pub fn row_segments(&self, r: usize) -> Option<&[u32]> {
        self.segments
            .as_deref()
            .map(|s| &s[r * self.seq_len..(r + 1) * self.seq_len])
    }

    /// A batch of one unpadded row.
    pub fn single(ids: &[u32]) -> Result<Self> {
        Self::from_rows(&[ids.to_vec()], 0, PaddingSide::Right)
    }

    /// The ids of row `r`, padding included.
    pub fn row(&self, r: usize) -> &[u32] {
        &self.ids[r * self.seq_len..(r + 1) * self.seq_len]
    }

    /// The mask of row `r`.
    pub fn row_mask(&self, r: usize) -> &[u8] {
        &self.mask[r * self.seq_len..(r + 1) * self.seq_len]
    }

    /// Index of the last real token of each row (what a causal LM predicts from).
    pub fn last_real_positions(&self) -> Vec<usize> {
        (0..self.batch_size)
            .map(|r| {
                self.row_mask(r)
                    .iter()
                    .rposition(|&m| m != 0)
                    .unwrap_or(self.seq_len - 1)
            })
            .collect()
    }

    /// The ids as an int tensor `[batch_size, seq_len]`.
    pub fn ids_tensor(&self, device: &Device) -> Tensor<2, Int> {
        let ids: Vec<i64> = self.ids.iter().map(|&v| i64::from(v)).collect();
        Tensor::from_data(
            TensorData::new(ids, [self.batch_size, self.seq_len]),
            device,
        )
    }

    /// Checks every id is below `vocab_size`, so an embedding lookup cannot go out of range.
    pub fn check_vocab(&self, vocab_size: usize) -> Result<()> {
        if let Some(&bad) = self.ids.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(ModelError::InvalidInput(format!(
                "token id {bad} is outside the model's vocabulary of {vocab_size}"
            )));
        }
        Ok(())
    }
}

/// An additive attention bias `[batch, 1, queries, keys]`: 0 where attention is allowed and
/// a large negative number where it is not, so softmax gives those keys exactly zero weight.
pub(crate) const MASKED: f32 = -1.0e9;

/// Builds the bias for `queries` new tokens attending over `keys_mask` (per row, all keys
/// including cached ones). With `causal`, query `i` (absolute position `keys - queries + i`)
/// sees only keys up to itself. With `segments` (packed rows, no cache), a query sees only
/// keys of its own segment.
pub(crate) fn attention_bias(
    keys_mask: &[Vec<u8>],
    queries: usize,
    causal: bool,
    segments: Option<&[u32]>,
    device: &Device,
) -> Tensor<4> {
    let batch = keys_mask.len();
    let keys = keys_mask.first().map_or(0, Vec::len);
    let past = keys - queries;
    let mut bias = vec![0.0f32; batch * queries * keys];
    for (b, row) in keys_mask.iter().enumerate() {
        for q in 0..queries {
            let out = &mut bias[(b * queries + q) * keys..(b * queries + q + 1) * keys];
            for (k, v) in out.iter_mut().enumerate() {
                let other_segment =
                    segments.is_some_and(|seg| seg[b * keys + k] != seg[b * keys + past + q]);
                if row[k] == 0 || (causal && k > past + q) || other_segment {
                    *v = MASKED;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(bias, [batch, 1, queries, keys]), device)
}
