//! Exact top-k inner-product search, batched and multi-threaded.
//!
//! Rows are split into contiguous ranges, one rayon task each (several per thread). A task walks
//! its range in blocks of 256 rows, packs each block into 16-row panels (converting f16
//! to f32 when needed), and runs every group of 6 queries against every panel with the
//! register-blocked micro-kernel of [`crate::kernels`]: the matrix is read from memory once per
//! query batch, and the scores of a tile are only looked at when some exceed the query's current
//! k-th best. Per-task heaps are merged at the end; the order (score, then lower id) is total, so
//! results do not depend on the thread count.

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kernels::{dot, pack_panels, tile, MR, NR};
use crate::topk::{Scored, TopK};

/// Rows per packed block (256 × 384 floats = 384 KiB, resident in L2).
pub(crate) const ROW_BLOCK: usize = 256;
/// Queries handled per pass over the matrix (bounds the heap memory).
const QUERY_BATCH: usize = 4096;
/// Below this many queries, packing costs more than it saves: plain dot products are used.
const SMALL_BATCH: usize = 4;

/// A read-only embedding matrix, row-major.
#[derive(Clone, Copy, Debug)]
pub enum Rows<'a> {
    /// 32-bit floats.
    F32(&'a [f32]),
    /// 16-bit floats, converted block by block.
    F16(&'a [f16]),
}

impl Rows<'_> {
    fn len(&self) -> usize {
        match self {
            Rows::F32(m) => m.len(),
            Rows::F16(m) => m.len(),
        }
    }
}

/// Exact top-`k` by inner product of each query (rows of `queries`, `dim` floats each) against
/// the rows of a row-major `matrix`. Returns, per query, up to `k` hits best first.
pub fn exact_top_k(
    matrix: &[f32],
    dim: usize,
    queries: &[f32],
    k: usize,
) -> Result<Vec<Vec<Scored>>> {
    search(Rows::F32(matrix), dim, queries, k)
}

/// [`exact_top_k`] over an f32 or f16 matrix.
pub fn search(rows: Rows<'_>, dim: usize, queries: &[f32], k: usize) -> Result<Vec<Vec<Scored>>> {
    if dim == 0 {
        return Err(Error::arg("dimension must be positive"));
    }
    if !rows.len().is_multiple_of(dim) {
        return Err(Error::arg(format!(
            "matrix length {} is not a multiple of dimension {dim}",
            rows.len()
        )));
    }
    if !queries.len().is_multiple_of(dim) {
        return Err(Error::arg(format!(
            "query buffer length {} is not a multiple of the index dimension {dim}",
            queries.len()
        )));
    }
    let n = rows.len() / dim;
    if n > u32::MAX as usize {
        return Err(Error::arg("more than 2^32 rows"));
    }
    let nq = queries.len() / dim;
    if n == 0 || k == 0 {
        return Ok(vec![Vec::new(); nq]);
    }
    let mut out = Vec::with_capacity(nq);
    for qs in queries.chunks(QUERY_BATCH * dim) {
        out.extend(search_batch(rows, n, dim, qs, k));
    }
    Ok(out)
}

fn search_batch(rows: Rows<'_>, n: usize, dim: usize, q: &[f32], k: usize) -> Vec<Vec<Scored>> {
    let nq = q.len() / dim;
    let threads = rayon::current_num_threads().max(1);
    let per_task = n
        .div_ceil(threads * 4)
        .div_ceil(ROW_BLOCK)
        .max(1)
        .saturating_mul(ROW_BLOCK);
    let tasks = n.div_ceil(per_task);
    let small = nq < SMALL_BATCH;
    let padded: Vec<f32> = if small {
        Vec::new()
    } else {
        let mut p = vec![0f32; nq.div_ceil(MR) * MR * dim];
        p[..q.len()].copy_from_slice(q);
        p
    };
    let heaps = (0..tasks)
        .into_par_iter()
        .map(|t| {
            let (start, end) = (t * per_task, ((t + 1) * per_task).min(n));
            if small {
                range_dots(rows, start, end, dim, q, k)
            } else {
                range_tiles(rows, start, end, dim, &padded, nq, k)
            }
        })
        .reduce_with(|mut a, b| {
            for (x, y) in a.iter_mut().zip(b) {
                x.merge(y);
            }
            a
        })
        .unwrap_or_else(|| vec![TopK::new(k); nq]);
    heaps.into_iter().map(TopK::into_sorted).collect()
}

fn block<'a>(
    rows: Rows<'a>,
    start: usize,
    end: usize,
    dim: usize,
    buf: &'a mut Vec<f32>,
) -> &'a [f32] {
    match rows {
        Rows::F32(m) => &m[start * dim..end * dim],
        Rows::F16(h) => {
            buf.resize((end - start) * dim, 0.0);
            h[start * dim..end * dim].convert_to_f32_slice(buf);
            buf
        }
    }
}

fn range_dots(
    rows: Rows<'_>,
    start: usize,
    end: usize,
    dim: usize,
    q: &[f32],
    k: usize,
) -> Vec<TopK> {
    let nq = q.len() / dim;
    let mut heaps = vec![TopK::new(k); nq];
    let mut buf = Vec::new();
    let mut bs = start;
    while bs < end {
        let be = (bs + ROW_BLOCK).min(end);
        let b = block(rows, bs, be, dim, &mut buf);
        for (qi, heap) in heaps.iter_mut().enumerate() {
            let qv = &q[qi * dim..(qi + 1) * dim];
            let mut th = heap.threshold();
            for (r, row) in b.chunks_exact(dim).enumerate() {
                let s = dot(qv, row);
                if s > th {
                    heap.push(Scored {
                        id: (bs + r) as u32,
                        score: s,
                    });
                    th = heap.threshold();
                }
            }
        }
        bs = be;
    }
    heaps
}

fn range_tiles(
    rows: Rows<'_>,
    start: usize,
    end: usize,
    dim: usize,
    qpad: &[f32],
    nq: usize,
    k: usize,
) -> Vec<TopK> {
    let mut heaps = vec![TopK::new(k); nq];
    let mut buf = Vec::new();
    let mut packed = Vec::new();
    let mut tile_out = [0f32; MR * NR];
    let groups = qpad.len() / (MR * dim);
    let mut bs = start;
    while bs < end {
        let be = (bs + ROW_BLOCK).min(end);
        let nr = be - bs;
        {
            let b = block(rows, bs, be, dim, &mut buf);
            pack_panels(b, nr, dim, &mut packed);
        }
        let panels = nr.div_ceil(NR);
        for g in 0..groups {
            let qg = &qpad[g * MR * dim..(g + 1) * MR * dim];
            let mut th = [f32::INFINITY; MR];
            for (i, t) in th.iter_mut().enumerate() {
                if let Some(h) = heaps.get(g * MR + i) {
                    *t = h.threshold();
                }
            }
            for p in 0..panels {
                let panel = &packed[p * dim * NR..(p + 1) * dim * NR];
                let mut mask = tile(qg, dim, panel, &th, &mut tile_out);
                while mask != 0 {
                    let i = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    let heap = &mut heaps[g * MR + i];
                    let live = NR.min(nr - p * NR);
                    for (j, &s) in tile_out[i * NR..i * NR + live].iter().enumerate() {
                        if s > th[i] {
                            heap.push(Scored {
                                id: (bs + p * NR + j) as u32,
                                score: s,
                            });
                            th[i] = heap.threshold();
                        }
                    }
                }
            }
        }
        bs = be;
    }
    heaps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(m: &[f32], dim: usize, q: &[f32], k: usize) -> Vec<Vec<u32>> {
        q.chunks(dim)
            .map(|qv| {
                let mut v: Vec<(f64, u32)> = m
                    .chunks(dim)
                    .enumerate()
                    .map(|(i, r)| {
                        (
                            r.iter().zip(qv).map(|(a, b)| *a as f64 * *b as f64).sum(),
                            i as u32,
                        )
                    })
                    .collect();
                v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                v.into_iter().take(k).map(|x| x.1).collect()
            })
            .collect()
    }

    #[test]
    fn exact_matches_brute_force_for_all_batch_shapes() {
        let mut s = 11u64;
        let mut rnd = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let dim = 19;
        let n = 1000;
        let m: Vec<f32> = (0..n * dim).map(|_| rnd()).collect();
        for nq in [1, 3, 7, 13] {
            let q: Vec<f32> = (0..nq * dim).map(|_| rnd()).collect();
            let got = exact_top_k(&m, dim, &q, 5).unwrap();
            let want = brute(&m, dim, &q, 5);
            for (g, w) in got.iter().zip(&want) {
                let ids: Vec<u32> = g.iter().map(|s| s.id).collect();
                assert_eq!(&ids, w, "nq={nq}");
            }
            let h: Vec<f16> = m.iter().map(|&x| f16::from_f32(x)).collect();
            let got16 = search(Rows::F16(&h), dim, &q, 5).unwrap();
            assert_eq!(got16.len(), nq);
        }
        assert!(exact_top_k(&m, dim, &[0.0; 3], 5).is_err());
        assert_eq!(exact_top_k(&m, dim, &[], 5).unwrap().len(), 0);
    }
}
