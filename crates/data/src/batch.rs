use crate::error::DataError;
use crate::instance::Instance;

/// A host batch, row-major `[rows, seq_len]` in every field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Number of rows.
    pub rows: usize,
    /// Tokens per row.
    pub seq_len: usize,
    /// Token ids; padding positions hold the pad id.
    pub ids: Vec<u32>,
    /// 1 on real tokens, 0 on padding.
    pub mask: Vec<u8>,
    /// 1 where `ids` is a loss target (answer tokens and the EOS after them).
    pub answer_mask: Vec<u8>,
    /// 0 on padding, 1.. numbering the instances within the row: attention must stay inside
    /// one segment.
    pub segment_ids: Vec<u32>,
    /// Position of each token within its segment (restarting at 0 per segment; 0 on padding).
    pub positions: Vec<u32>,
    /// For each row, the instance indices it holds, in segment order.
    pub row_instances: Vec<Vec<usize>>,
}

impl Batch {
    /// Number of real (non-padding) tokens.
    pub fn real_tokens(&self) -> usize {
        self.mask.iter().map(|&m| m as usize).sum()
    }

    /// Number of loss target tokens.
    pub fn target_tokens(&self) -> usize {
        self.answer_mask.iter().map(|&m| m as usize).sum()
    }
}

fn get(instances: &[Instance], index: usize) -> Result<&Instance, DataError> {
    instances.get(index).ok_or(DataError::IndexOutOfRange {
        index,
        len: instances.len(),
    })
}

fn collate(
    instances: &[Instance],
    rows: Vec<Vec<usize>>,
    seq_len: Option<usize>,
    pad_id: u32,
) -> Result<Batch, DataError> {
    let mut longest = 0;
    for row in &rows {
        let mut len = 0;
        for &i in row {
            len += get(instances, i)?.len();
        }
        longest = longest.max(len);
    }
    let seq_len = match seq_len {
        Some(s) if longest > s => {
            // Only reachable for a single over-long instance (packing never overfills).
            let index = rows
                .iter()
                .flatten()
                .copied()
                .find(|&i| instances[i].len() > s)
                .unwrap_or_default();
            return Err(DataError::InstanceTooLong {
                index,
                len: instances.get(index).map_or(longest, Instance::len),
                seq_len: s,
            });
        }
        Some(s) => s,
        None => longest,
    };
    let n = rows.len() * seq_len;
    let mut batch = Batch {
        rows: rows.len(),
        seq_len,
        ids: vec![pad_id; n],
        mask: vec![0; n],
        answer_mask: vec![0; n],
        segment_ids: vec![0; n],
        positions: vec![0; n],
        row_instances: Vec::with_capacity(rows.len()),
    };
    for (r, row) in rows.into_iter().enumerate() {
        let mut at = r * seq_len;
        for (s, &i) in row.iter().enumerate() {
            let inst = &instances[i];
            let end = at + inst.len();
            batch.ids[at..end].copy_from_slice(&inst.ids);
            batch.mask[at..end].fill(1);
            batch.answer_mask[at..end].copy_from_slice(&inst.answer_mask);
            batch.segment_ids[at..end].fill(s as u32 + 1);
            for (p, pos) in batch.positions[at..end].iter_mut().enumerate() {
                *pos = p as u32;
            }
            at = end;
        }
        batch.row_instances.push(row);
    }
    Ok(batch)
}

/// One instance per row, right-padded to `seq_len` (or to the longest instance when `None`).
pub fn pad_batch(
    instances: &[Instance],
    indices: &[usize],
    pad_id: u32,
    seq_len: Option<usize>,
) -> Result<Batch, DataError> {
    collate(
        instances,
        indices.iter().map(|&i| vec![i]).collect(),
        seq_len,
        pad_id,
    )
}

/// Groups consecutive lengths into rows of at most `max_len` tokens (next-fit, order kept, so
/// the result depends only on the input order). A length above `max_len` gets a row alone.
pub fn pack_rows(lengths: &[usize], max_len: usize) -> Vec<Vec<usize>> {
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let mut used = 0;
    for (i, &len) in lengths.iter().enumerate() {
        match rows.last_mut() {
            Some(row) if used + len <= max_len => {
                row.push(i);
                used += len;
            }
            _ => {
                rows.push(vec![i]);
                used = len;
            }
        }
    }
    rows
}

/// Packs the given instances, in order, into as few rows of `max_len` tokens as next-fit
/// allows; each instance is its own segment. Rows are padded to `max_len`.
pub fn packed_batch(
    instances: &[Instance],
    indices: &[usize],
    max_len: usize,
    pad_id: u32,
) -> Result<Batch, DataError> {
    let lengths = indices
        .iter()
        .map(|&i| get(instances, i).map(Instance::len))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = pack_rows(&lengths, max_len)
        .into_iter()
        .map(|row| row.into_iter().map(|k| indices[k]).collect())
        .collect();
    collate(instances, rows, Some(max_len), pad_id)
}
