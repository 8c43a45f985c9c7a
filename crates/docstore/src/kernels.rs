//! Inner-product kernels: a single dot product and a register-blocked "6 queries × 16 rows"
//! micro-kernel over rows packed into panels (the GEMM formulation of exact search).
//!
//! x86-64 builds target the baseline ISA, so the AVX2+FMA versions are selected at run time;
//! every kernel has a portable version written so that LLVM vectorizes it on any target.
//! `RADIT_DOCSTORE_SIMD=off` forces the portable versions (for comparisons).

use std::sync::OnceLock;

/// Queries per micro-tile.
pub(crate) const MR: usize = 6;
/// Rows per packed panel.
pub(crate) const NR: usize = 16;

/// Which instruction set the kernels use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// x86-64 AVX2 with FMA.
    Avx2Fma,
    /// Plain Rust, auto-vectorized for the compile target.
    Portable,
}

impl Isa {
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx2Fma => "avx2+fma",
            Isa::Portable => "portable",
        }
    }
}

/// The instruction set selected for this process.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        if std::env::var("RADIT_DOCSTORE_SIMD").is_ok_and(|v| v == "off" || v == "0") {
            return Isa::Portable;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2Fma;
            }
        }
        Isa::Portable
    })
}

/// Inner product of two equal-length vectors.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    {
        if isa() == Isa::Avx2Fma {
            // SAFETY: AVX2 and FMA were detected at run time; slices have equal length.
            return unsafe { x86::dot(a, b) };
        }
    }
    dot_portable(a, b)
}

/// Inner products of `q` with four rows at once (`q` is loaded once per step): what graph
/// search uses for the neighbours of a node.
#[inline]
pub fn dot4(q: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        if isa() == Isa::Avx2Fma && rows.iter().all(|r| r.len() == q.len()) {
            // SAFETY: AVX2/FMA detected at run time; all rows have the length of `q`.
            return unsafe { x86::dot4(q, rows) };
        }
    }
    rows.map(|r| dot_portable(q, r))
}

/// Portable dot product: eight independent lanes so LLVM vectorizes without reassociation.
pub fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Packs `rows` (`nr` ≤ `panels * NR` rows of `dim` floats, row-major) into panels laid out
/// `[panel][d][NR]`, padding missing rows with zeros. `out` is resized as needed.
pub(crate) fn pack_panels(rows: &[f32], nr: usize, dim: usize, out: &mut Vec<f32>) {
    let panels = nr.div_ceil(NR);
    out.clear();
    out.resize(panels * dim * NR, 0.0);
    for p in 0..panels {
        let base = p * dim * NR;
        let dst = &mut out[base..base + dim * NR];
        for j in 0..NR {
            let r = p * NR + j;
            if r >= nr {
                break;
            }
            let src = &rows[r * dim..(r + 1) * dim];
            for (d, &v) in src.iter().enumerate() {
                dst[d * NR + j] = v;
            }
        }
    }
}

/// Computes the `MR × NR` tile `out[i * NR + j] = q_i · row_j` for `MR` queries (rows of `q`,
/// `dim` apart) against one packed panel, and returns a bit mask of the queries `i` having some
/// score above `thresholds[i]`.
#[inline]
pub(crate) fn tile(
    q: &[f32],
    dim: usize,
    panel: &[f32],
    thresholds: &[f32; MR],
    out: &mut [f32; MR * NR],
) -> u32 {
    debug_assert!(q.len() >= MR * dim && panel.len() >= dim * NR);
    #[cfg(target_arch = "x86_64")]
    {
        if isa() == Isa::Avx2Fma && q.len() >= MR * dim && panel.len() >= dim * NR {
            // SAFETY: AVX2/FMA detected at run time; lengths checked just above.
            return unsafe { x86::tile(q.as_ptr(), dim, panel.as_ptr(), thresholds, out) };
        }
    }
    tile_portable(q, dim, panel, thresholds, out)
}

/// Portable version of [`tile`].
pub(crate) fn tile_portable(
    q: &[f32],
    dim: usize,
    panel: &[f32],
    thresholds: &[f32; MR],
    out: &mut [f32; MR * NR],
) -> u32 {
    let mut acc = [[0f32; NR]; MR];
    for d in 0..dim {
        let b: &[f32; NR] = match panel[d * NR..d * NR + NR].try_into() {
            Ok(b) => b,
            Err(_) => return 0,
        };
        for (i, row) in acc.iter_mut().enumerate() {
            let a = q[i * dim + d];
            for j in 0..NR {
                row[j] += a * b[j];
            }
        }
    }
    let mut mask = 0u32;
    for (i, row) in acc.iter().enumerate() {
        out[i * NR..(i + 1) * NR].copy_from_slice(row);
        if row.iter().any(|&s| s > thresholds[i]) {
            mask |= 1 << i;
        }
    }
    mask
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut s0 = _mm256_setzero_ps();
        let mut s1 = _mm256_setzero_ps();
        let mut s2 = _mm256_setzero_ps();
        let mut s3 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 32 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            s1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                s1,
            );
            s2 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 16)),
                _mm256_loadu_ps(pb.add(i + 16)),
                s2,
            );
            s3 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 24)),
                _mm256_loadu_ps(pb.add(i + 24)),
                s3,
            );
            i += 32;
        }
        while i + 8 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
        let mut r = hsum(s);
        while i < n {
            r += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        r
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot4(q: &[f32], rows: [&[f32]; 4]) -> [f32; 4] {
        let n = q.len();
        let pq = q.as_ptr();
        let [r0, r1, r2, r3] = rows.map(|r| r.as_ptr());
        let mut a0 = _mm256_setzero_ps();
        let mut a1 = _mm256_setzero_ps();
        let mut a2 = _mm256_setzero_ps();
        let mut a3 = _mm256_setzero_ps();
        let mut b0 = _mm256_setzero_ps();
        let mut b1 = _mm256_setzero_ps();
        let mut b2 = _mm256_setzero_ps();
        let mut b3 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            let x = _mm256_loadu_ps(pq.add(i));
            a0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(r0.add(i)), a0);
            a1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(r1.add(i)), a1);
            a2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(r2.add(i)), a2);
            a3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(r3.add(i)), a3);
            let y = _mm256_loadu_ps(pq.add(i + 8));
            b0 = _mm256_fmadd_ps(y, _mm256_loadu_ps(r0.add(i + 8)), b0);
            b1 = _mm256_fmadd_ps(y, _mm256_loadu_ps(r1.add(i + 8)), b1);
            b2 = _mm256_fmadd_ps(y, _mm256_loadu_ps(r2.add(i + 8)), b2);
            b3 = _mm256_fmadd_ps(y, _mm256_loadu_ps(r3.add(i + 8)), b3);
            i += 16;
        }
        while i + 8 <= n {
            let x = _mm256_loadu_ps(pq.add(i));
            a0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(r0.add(i)), a0);
            a1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(r1.add(i)), a1);
            a2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(r2.add(i)), a2);
            a3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(r3.add(i)), a3);
            i += 8;
        }
        let mut out = [
            hsum(_mm256_add_ps(a0, b0)),
            hsum(_mm256_add_ps(a1, b1)),
            hsum(_mm256_add_ps(a2, b2)),
            hsum(_mm256_add_ps(a3, b3)),
        ];
        while i < n {
            let x = *pq.add(i);
            out[0] += x * *r0.add(i);
            out[1] += x * *r1.add(i);
            out[2] += x * *r2.add(i);
            out[3] += x * *r3.add(i);
            i += 1;
        }
        out
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// 6×16 register-blocked micro-kernel: 12 accumulators, two panel loads and six broadcasts
    /// per step of `d`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile(
        q: *const f32,
        dim: usize,
        panel: *const f32,
        thresholds: &[f32; MR],
        out: &mut [f32; MR * NR],
    ) -> u32 {
        let mut c00 = _mm256_setzero_ps();
        let mut c01 = _mm256_setzero_ps();
        let mut c10 = _mm256_setzero_ps();
        let mut c11 = _mm256_setzero_ps();
        let mut c20 = _mm256_setzero_ps();
        let mut c21 = _mm256_setzero_ps();
        let mut c30 = _mm256_setzero_ps();
        let mut c31 = _mm256_setzero_ps();
        let mut c40 = _mm256_setzero_ps();
        let mut c41 = _mm256_setzero_ps();
        let mut c50 = _mm256_setzero_ps();
        let mut c51 = _mm256_setzero_ps();
        let (q0, q1, q2) = (q, q.add(dim), q.add(2 * dim));
        let (q3, q4, q5) = (q.add(3 * dim), q.add(4 * dim), q.add(5 * dim));
        let mut p = panel;
        for d in 0..dim {
            let b0 = _mm256_loadu_ps(p);
            let b1 = _mm256_loadu_ps(p.add(8));
            let a = _mm256_broadcast_ss(&*q0.add(d));
            c00 = _mm256_fmadd_ps(a, b0, c00);
            c01 = _mm256_fmadd_ps(a, b1, c01);
            let a = _mm256_broadcast_ss(&*q1.add(d));
            c10 = _mm256_fmadd_ps(a, b0, c10);
            c11 = _mm256_fmadd_ps(a, b1, c11);
            let a = _mm256_broadcast_ss(&*q2.add(d));
            c20 = _mm256_fmadd_ps(a, b0, c20);
            c21 = _mm256_fmadd_ps(a, b1, c21);
            let a = _mm256_broadcast_ss(&*q3.add(d));
            c30 = _mm256_fmadd_ps(a, b0, c30);
            c31 = _mm256_fmadd_ps(a, b1, c31);
            let a = _mm256_broadcast_ss(&*q4.add(d));
            c40 = _mm256_fmadd_ps(a, b0, c40);
            c41 = _mm256_fmadd_ps(a, b1, c41);
            let a = _mm256_broadcast_ss(&*q5.add(d));
            c50 = _mm256_fmadd_ps(a, b0, c50);
            c51 = _mm256_fmadd_ps(a, b1, c51);
            p = p.add(NR);
        }
        let o = out.as_mut_ptr();
        let rows = [
            (c00, c01),
            (c10, c11),
            (c20, c21),
            (c30, c31),
            (c40, c41),
            (c50, c51),
        ];
        let mut mask = 0u32;
        for (i, &(lo, hi)) in rows.iter().enumerate() {
            _mm256_storeu_ps(o.add(i * NR), lo);
            _mm256_storeu_ps(o.add(i * NR + 8), hi);
            let t = _mm256_set1_ps(thresholds[i]);
            let gt = _mm256_or_ps(
                _mm256_cmp_ps::<_CMP_GT_OQ>(lo, t),
                _mm256_cmp_ps::<_CMP_GT_OQ>(hi, t),
            );
            if _mm256_movemask_ps(gt) != 0 {
                mask |= 1 << i;
            }
        }
        mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    #[test]
    fn dot_matches_reference_for_odd_lengths() {
        let mut s = 1;
        for n in [0, 1, 7, 8, 31, 33, 384, 385] {
            let a: Vec<f32> = (0..n).map(|_| lcg(&mut s)).collect();
            let b: Vec<f32> = (0..n).map(|_| lcg(&mut s)).collect();
            let r: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - r).abs() < 1e-4, "n={n}");
            assert!((dot_portable(&a, &b) as f64 - r).abs() < 1e-4, "n={n}");
            let four = dot4(&a, [&b, &a, &b, &b]);
            assert!((four[0] as f64 - r).abs() < 1e-4, "n={n}");
            assert!((four[1] - dot_portable(&a, &a)).abs() < 1e-4, "n={n}");
        }
    }

    #[test]
    fn tile_kernels_agree_with_reference() {
        let mut s = 3;
        for dim in [1, 5, 16, 37] {
            let nr = 11; // a partial panel
            let rows: Vec<f32> = (0..nr * dim).map(|_| lcg(&mut s)).collect();
            let q: Vec<f32> = (0..MR * dim).map(|_| lcg(&mut s)).collect();
            let mut packed = Vec::new();
            pack_panels(&rows, nr, dim, &mut packed);
            let th = [0.0, 1e9, -1e9, 0.1, 0.0, 0.0];
            let mut out_a = [0f32; MR * NR];
            let mut out_b = [0f32; MR * NR];
            let ma = tile(&q, dim, &packed, &th, &mut out_a);
            let mb = tile_portable(&q, dim, &packed, &th, &mut out_b);
            for i in 0..MR {
                for j in 0..NR {
                    let r = if j < nr {
                        dot_portable(&q[i * dim..(i + 1) * dim], &rows[j * dim..(j + 1) * dim])
                    } else {
                        0.0
                    };
                    assert!((out_a[i * NR + j] - r).abs() < 1e-4);
                    assert!((out_b[i * NR + j] - r).abs() < 1e-4);
                }
            }
            assert_eq!(ma & 0b110, 0b100);
            assert_eq!(mb & 0b110, 0b100);
        }
    }
}
