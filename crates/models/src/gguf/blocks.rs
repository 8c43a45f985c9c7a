//! The ggml element types: one table of every type id ggml defines, with its block layout and,
//! where radit has one, its decoder to `f32`; and [`dequantize`], which dispatches through it.
//!
//! Block layouts follow ggml-quants.c and gguf-py's `quants.py`; the tests check the decoders
//! bit for bit against the latter (fixtures from `scripts/make_gguf_fixtures.py`).

use std::fmt;

use half::f16;

use super::GgufError;

/// The element type of a ggml tensor (`ggml_type`).
///
/// Only the listed types can be dequantized; every other id ggml defines is kept as
/// [`GgmlType::Other`] so that a file using it still opens (its byte sizes are known), and
/// [`dequantize`] rejects it with an error naming the type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)] // ggml's own names, as printed by llama.cpp and gguf-py
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// Blocks of 32: f16 scale `d`, 16 bytes of 4-bit quants; value `(q - 8) * d`.
    Q4_0,
    /// Blocks of 32: f16 scale `d`, f16 minimum `m`, 16 bytes of 4-bit quants; value `d * q + m`.
    Q4_1,
    /// Blocks of 32: f16 scale `d`, 32 signed bytes; value `q * d`.
    Q8_0,
    /// Super-blocks of 256 in 8 groups of 32 with 6-bit scales and minimums.
    Q4_K,
    /// Super-blocks of 256 in 16 groups of 16 with 8-bit scales; 6-bit quants.
    Q6_K,
    /// Any other ggml type id.
    Other(u32),
}

/// Decodes whole blocks from `src` into `dst`; [`dequantize`] has checked that `src` holds
/// exactly the blocks `dst` needs.
type Decoder = fn(&[u8], &mut [f32]);

/// What radit needs to dequantize a type: the variant that names it and its decoder.
#[derive(Clone, Copy)]
struct Codec {
    ty: GgmlType,
    decode: Decoder,
}

/// One ggml type: its id, name and block layout, and how radit decodes it, if it can.
struct TypeRow {
    /// The `ggml_type` id.
    id: u32,
    /// ggml's name, as printed by llama.cpp and gguf-py.
    name: &'static str,
    /// Elements per block (1 for plain scalar types).
    block: usize,
    /// Bytes per block.
    bytes: usize,
    /// `None` for a type radit cannot dequantize (its files still open: the sizes are known).
    codec: Option<Codec>,
}

/// A row for a type radit decodes; the id is the variant's, so it is written only once.
const fn decoded(
    ty: GgmlType,
    name: &'static str,
    block: usize,
    bytes: usize,
    decode: Decoder,
) -> TypeRow {
    TypeRow {
        id: ty.id(),
        name,
        block,
        bytes,
        codec: Some(Codec { ty, decode }),
    }
}

/// A row for a type radit knows the layout of but cannot decode ([`GgmlType::Other`]).
const fn opaque(id: u32, name: &'static str, block: usize, bytes: usize) -> TypeRow {
    TypeRow {
        id,
        name,
        block,
        bytes,
        codec: None,
    }
}

/// Every type id ggml defines, in id order, with ggml's (name, elements per block, bytes per
/// block) as in `ggml.c`'s type traits (and gguf-py's `GGML_QUANT_SIZES`, except Q8_1 where
/// gguf-py is out of date). Ids missing here (4, 5, 31-33, 36-38) are ones ggml no longer
/// defines; a tensor using one, or any id past the end, is refused when the file opens.
const TYPES: &[TypeRow] = &[
    decoded(GgmlType::F32, "F32", 1, 4, dequantize_f32),
    decoded(GgmlType::F16, "F16", 1, 2, dequantize_f16),
    decoded(GgmlType::Q4_0, "Q4_0", 32, 18, dequantize_q4_0),
    decoded(GgmlType::Q4_1, "Q4_1", 32, 20, dequantize_q4_1),
    opaque(6, "Q5_0", 32, 22),
    opaque(7, "Q5_1", 32, 24),
    decoded(GgmlType::Q8_0, "Q8_0", 32, 34, dequantize_q8_0),
    opaque(9, "Q8_1", 32, 36),
    opaque(10, "Q2_K", 256, 84),
    opaque(11, "Q3_K", 256, 110),
    decoded(GgmlType::Q4_K, "Q4_K", 256, 144, dequantize_q4_k),
    opaque(13, "Q5_K", 256, 176),
    decoded(GgmlType::Q6_K, "Q6_K", 256, 210, dequantize_q6_k),
    opaque(15, "Q8_K", 256, 292),
    opaque(16, "IQ2_XXS", 256, 66),
    opaque(17, "IQ2_XS", 256, 74),
    opaque(18, "IQ3_XXS", 256, 98),
    opaque(19, "IQ1_S", 256, 50),
    opaque(20, "IQ4_NL", 32, 18),
    opaque(21, "IQ3_S", 256, 110),
    opaque(22, "IQ2_S", 256, 82),
    opaque(23, "IQ4_XS", 256, 136),
    opaque(24, "I8", 1, 1),
    opaque(25, "I16", 1, 2),
    opaque(26, "I32", 1, 4),
    opaque(27, "I64", 1, 8),
    opaque(28, "F64", 1, 8),
    opaque(29, "IQ1_M", 256, 56),
    decoded(GgmlType::BF16, "BF16", 1, 2, dequantize_bf16),
    opaque(34, "TQ1_0", 256, 54),
    opaque(35, "TQ2_0", 256, 66),
    opaque(39, "MXFP4", 32, 17),
    opaque(40, "NVFP4", 64, 36),
    opaque(41, "Q1_0", 128, 18),
];

/// The table row for a type id.
fn row(id: u32) -> Option<&'static TypeRow> {
    TYPES.iter().find(|r| r.id == id)
}

impl GgmlType {
    /// The type for a `ggml_type` id as stored in a tensor's info.
    pub fn from_id(id: u32) -> Self {
        row(id)
            .and_then(|r| r.codec)
            .map_or(Self::Other(id), |c| c.ty)
    }

    /// The `ggml_type` id.
    // The one place a decodable type's id is written: its table row takes it from here.
    pub const fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 8,
            Self::Q4_K => 12,
            Self::Q6_K => 14,
            Self::BF16 => 30,
            Self::Other(id) => id,
        }
    }

    /// ggml's name for the type ("Q4_K"), or `None` for an id ggml does not define.
    pub fn name(self) -> Option<&'static str> {
        row(self.id()).map(|r| r.name)
    }

    /// Elements per block (1 for plain float types), or `None` for an unknown id.
    pub fn block_size(self) -> Option<usize> {
        row(self.id()).map(|r| r.block)
    }

    /// Bytes per block, or `None` for an unknown id.
    pub fn type_size(self) -> Option<usize> {
        row(self.id()).map(|r| r.bytes)
    }

    /// Whether [`dequantize`] supports this type.
    pub fn can_dequantize(self) -> bool {
        self.decodable_row().is_some()
    }

    /// The row and decoder of a type radit decodes. `Other(id)` never decodes, even for the id
    /// of a decodable type: only the named variants do, as [`GgmlType::can_dequantize`] says.
    fn decodable_row(self) -> Option<(&'static TypeRow, Decoder)> {
        let r = row(self.id())?;
        let codec = r.codec.filter(|c| c.ty == self)?;
        Some((r, codec.decode))
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "unknown ggml type {}", self.id()),
        }
    }
}

/// Converts `n_elements` values of type `ty` from their GGUF bytes to `f32`, exactly as
/// ggml's reference dequantizers (and gguf-py) do. `bytes` must be exactly the size those
/// elements take.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>, GgufError> {
    let err = |msg: String| GgufError::Dequantize { ty, msg };
    let Some((row, decode)) = ty.decodable_row() else {
        // The list is the table's decodable rows; a test keeps the two in step.
        return Err(err(
            "this type is not supported (supported: F32, F16, BF16, Q4_0, Q4_1, Q8_0, \
             Q4_K, Q6_K)"
                .into(),
        ));
    };
    let (block, type_size) = (row.block, row.bytes);
    if !n_elements.is_multiple_of(block) {
        return Err(err(format!(
            "{n_elements} elements is not a whole number of {block}-element blocks"
        )));
    }
    let expected = (n_elements / block).checked_mul(type_size);
    if expected != Some(bytes.len()) {
        return Err(err(format!(
            "{n_elements} elements need {} bytes, got {}",
            expected.map_or_else(|| "too many".into(), |n| n.to_string()),
            bytes.len()
        )));
    }
    let mut out = vec![0f32; n_elements];
    decode(bytes, &mut out);
    Ok(out)
}

fn dequantize_f32(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *y = f16_le(b[0], b[1]);
    }
}

fn dequantize_bf16(src: &[u8], dst: &mut [f32]) {
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *y = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
    }
}

#[inline]
fn f16_le(lo: u8, hi: u8) -> f32 {
    f16::from_bits(u16::from_le_bytes([lo, hi])).to_f32()
}

// In the block decoders, the operation order of each product and sum matches ggml's so the
// f32 results are bit-identical; none is written as a fused multiply-add.

fn dequantize_q4_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(18).zip(dst.chunks_exact_mut(32)) {
        let d = f16_le(b[0], b[1]);
        let (lo, hi) = y.split_at_mut(16);
        for ((&q, l), h) in b[2..].iter().zip(lo).zip(hi) {
            *l = ((q & 0x0F) as i32 - 8) as f32 * d;
            *h = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

fn dequantize_q4_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(20).zip(dst.chunks_exact_mut(32)) {
        let d = f16_le(b[0], b[1]);
        let m = f16_le(b[2], b[3]);
        let (lo, hi) = y.split_at_mut(16);
        for ((&q, l), h) in b[4..].iter().zip(lo).zip(hi) {
            *l = (q & 0x0F) as f32 * d + m;
            *h = (q >> 4) as f32 * d + m;
        }
    }
}

fn dequantize_q8_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(34).zip(dst.chunks_exact_mut(32)) {
        let d = f16_le(b[0], b[1]);
        for (&q, y) in b[2..].iter().zip(y) {
            *y = (q as i8) as f32 * d;
        }
    }
}

/// Scale and minimum of group `j` (0..8) from Q4_K's 12 packed bytes: groups 0-3 use the
/// low 6 bits of bytes 0-7; groups 4-7 take their low 4 bits from bytes 8-11 and their top 2
/// from the spare high bits of bytes 0-7 (`get_scale_min_k4`).
#[inline]
fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

fn dequantize_q4_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(144).zip(dst.chunks_exact_mut(256)) {
        let d = f16_le(b[0], b[1]);
        let dmin = f16_le(b[2], b[3]);
        let mut scales = [0u8; 12];
        scales.copy_from_slice(&b[4..16]);
        // Each 32 bytes of quants hold 64 values: low nibbles for the first group of 32,
        // high nibbles for the next.
        for (j, (qs, y)) in b[16..]
            .chunks_exact(32)
            .zip(y.chunks_exact_mut(64))
            .enumerate()
        {
            let (sc1, m1) = scale_min_k4(2 * j, &scales);
            let (sc2, m2) = scale_min_k4(2 * j + 1, &scales);
            let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
            let (lo, hi) = y.split_at_mut(32);
            for ((&q, l), h) in qs.iter().zip(lo).zip(hi) {
                *l = d1 * (q & 0x0F) as f32 - m1;
                *h = d2 * (q >> 4) as f32 - m2;
            }
        }
    }
}

fn dequantize_q6_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(210).zip(dst.chunks_exact_mut(256)) {
        let (ql, rest) = b.split_at(128);
        let (qh, rest) = rest.split_at(64);
        let (scales, d) = rest.split_at(16);
        let d = f16_le(d[0], d[1]);
        // Two halves of 128 values, each from 64 bytes of low 4 bits, 32 bytes holding four
        // 2-bit high parts, and 8 scales (one per 16 values).
        let halves = ql
            .chunks_exact(64)
            .zip(qh.chunks_exact(32))
            .zip(scales.chunks_exact(8))
            .zip(y.chunks_exact_mut(128));
        for (((ql, qh), sc), y) in halves {
            let sc: [f32; 8] = std::array::from_fn(|i| d * (sc[i] as i8) as f32);
            for l in 0..32 {
                let (a, c, h) = (ql[l], ql[l + 32], qh[l]);
                let q1 = ((a & 0x0F) | ((h & 3) << 4)) as i32 - 32;
                let q2 = ((c & 0x0F) | (((h >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((a >> 4) | (((h >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((c >> 4) | (((h >> 6) & 3) << 4)) as i32 - 32;
                let is = l / 16;
                y[l] = sc[is] * q1 as f32;
                y[l + 32] = sc[is + 2] * q2 as f32;
                y[l + 64] = sc[is + 4] * q3 as f32;
                y[l + 96] = sc[is + 6] * q4 as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::gguf::testutil::smollm2_gguf;
    use crate::gguf::GgufFile;
    #[test]
    fn dequantize_matches_gguf_py() {
        let fixture: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/gguf_dequant.json"))
                .expect("fixture json");
        let cases = fixture["cases"].as_array().expect("cases");
        let mut seen = Vec::new();
        for case in cases {
            let ty = GgmlType::from_id(case["type_id"].as_u64().expect("type_id") as u32);
            assert_eq!(ty.to_string(), case["type"].as_str().expect("type"));
            assert!(ty.can_dequantize(), "{ty}");
            let hex = case["hex"].as_str().expect("hex");
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
                .collect();
            let expected: Vec<f32> = case["expected"]
                .as_array()
                .expect("expected")
                .iter()
                .map(|v| v.as_f64().expect("number") as f32)
                .collect();
            let n = case["n_elements"].as_u64().expect("n_elements") as usize;
            assert_eq!(expected.len(), n);
            let got = dequantize(ty, &bytes, n).expect("dequantize");
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert!(
                    g.to_bits() == e.to_bits(),
                    "{ty} element {i} (block {}): got {g:e}, gguf-py {e:e}",
                    i / ty.block_size().unwrap_or(1)
                );
            }
            seen.push(ty);
        }
        for ty in [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::BF16,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
        ] {
            assert!(seen.contains(&ty), "fixture lacks {ty}");
        }
    }

    #[test]
    fn dequantize_rejects_bad_input() {
        let q5k = GgmlType::from_id(13);
        assert_eq!(q5k, GgmlType::Other(13));
        let msg = dequantize(q5k, &[0; 176], 256).unwrap_err().to_string();
        assert!(
            msg.contains("Q5_K") && msg.contains("not supported"),
            "{msg}"
        );
        let msg = dequantize(GgmlType::Other(999), &[], 0)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("999"), "{msg}");
        assert!(dequantize(GgmlType::Q4_0, &[0; 17], 32).is_err());
        assert!(dequantize(GgmlType::Q4_0, &[0; 18], 31).is_err());
        assert!(dequantize(GgmlType::Q4_K, &[0; 144], usize::MAX - 255).is_err());
        assert_eq!(
            dequantize(GgmlType::Q6_K, &[], 0).unwrap(),
            Vec::<f32>::new()
        );
        assert_eq!(GgmlType::Q4_K.type_size(), Some(144));
        assert_eq!(GgmlType::from_id(GgmlType::BF16.id()), GgmlType::BF16);
    }

    /// The table is the only source of ids, names and sizes: each id once, in order, and each
    /// decodable row's sizes the ones its decoder reads and writes.
    #[test]
    fn type_table_is_consistent() {
        for pair in TYPES.windows(2) {
            assert!(
                pair[0].id < pair[1].id,
                "ids {} and {} out of order or repeated",
                pair[0].id,
                pair[1].id
            );
        }
        let mut names: Vec<&str> = TYPES.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TYPES.len(), "a name is repeated");

        for r in TYPES {
            let ty = GgmlType::from_id(r.id);
            assert_eq!(ty.id(), r.id);
            assert_eq!(ty.name(), Some(r.name));
            assert_eq!(
                (ty.block_size(), ty.type_size()),
                (Some(r.block), Some(r.bytes))
            );
            assert_eq!(ty.can_dequantize(), r.codec.is_some(), "{}", r.name);
            let Some(codec) = r.codec else {
                assert_eq!(ty, GgmlType::Other(r.id));
                continue;
            };
            assert_eq!(codec.ty, ty);
            assert_eq!(format!("{ty:?}"), r.name, "variant and ggml name differ");
            // Bytes per block from the layouts in the decoders' comments (ggml-quants.h).
            let layout = match ty {
                GgmlType::F32 => 4,
                GgmlType::F16 | GgmlType::BF16 => 2,
                // d, 32 4-bit quants.
                GgmlType::Q4_0 => 2 + 32 / 2,
                // d, m, 32 4-bit quants.
                GgmlType::Q4_1 => 2 + 2 + 32 / 2,
                // d, 32 8-bit quants.
                GgmlType::Q8_0 => 2 + 32,
                // d, dmin, 12 bytes of packed 6-bit scales and minimums, 256 4-bit quants.
                GgmlType::Q4_K => 2 + 2 + 12 + 256 / 2,
                // 256 low 4-bit parts, 256 high 2-bit parts, 16 8-bit scales, d.
                GgmlType::Q6_K => 256 / 2 + 256 / 4 + 16 + 2,
                GgmlType::Other(id) => panic!("row {id} decodes but has no variant"),
            };
            assert_eq!(r.bytes, layout, "{ty} bytes per block");
            // One block of input fills exactly one block of output; one byte short fills none.
            let mut out = vec![f32::NAN; r.block];
            (codec.decode)(&vec![0; r.bytes], &mut out);
            assert!(out.iter().all(|v| !v.is_nan()), "{ty}: {out:?}");
            let mut out = vec![f32::NAN; r.block];
            (codec.decode)(&vec![0; r.bytes - 1], &mut out);
            assert!(out.iter().all(|v| v.is_nan()), "{ty}: {out:?}");
        }
    }

    /// The "supported" list in the error is written out; it must name the decodable rows.
    #[test]
    fn unsupported_error_lists_the_decodable_types() {
        let msg = dequantize(GgmlType::Other(13), &[], 0)
            .unwrap_err()
            .to_string();
        let listed = msg
            .split_once("supported: ")
            .and_then(|(_, rest)| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{msg}"));
        let mut listed: Vec<&str> = listed.split(", ").collect();
        let mut decodable: Vec<&str> = TYPES
            .iter()
            .filter(|r| r.codec.is_some())
            .map(|r| r.name)
            .collect();
        listed.sort_unstable();
        decodable.sort_unstable();
        assert_eq!(listed, decodable);
    }

    #[test]
    fn other_never_decodes() {
        // As before the table: a hand-made Other with a decodable id is not dequantized.
        let ty = GgmlType::Other(GgmlType::F32.id());
        assert!(!ty.can_dequantize());
        assert!(dequantize(ty, &[0; 4], 1).is_err());
        assert_eq!(ty.name(), Some("F32"));
    }

    #[test]
    fn gguf_smollm2_dequantize_matches_gguf_py() {
        let Some(path) = smollm2_gguf() else { return };
        let f = GgufFile::open(&path).expect("open");
        let fixture: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/smollm2_real_tensors.json"
        ))
        .expect("fixture");
        for t in fixture["tensors"].as_array().expect("tensors") {
            let name = t["name"].as_str().expect("name");
            let (shape, values) = f.tensor_f32(name).expect("tensor_f32");
            let want_shape: Vec<usize> = serde_json::from_value(t["shape"].clone()).expect("shape");
            assert_eq!(shape, want_shape, "{name}");
            assert_eq!(
                f.tensor(name).unwrap().ggml_type.to_string(),
                t["type"].as_str().unwrap()
            );
            let indices: Vec<usize> =
                serde_json::from_value(t["indices"].clone()).expect("indices");
            let expected: Vec<f64> = serde_json::from_value(t["values"].clone()).expect("values");
            for (&i, &e) in indices.iter().zip(&expected) {
                assert_eq!(
                    values[i].to_bits(),
                    (e as f32).to_bits(),
                    "{name}[{i}]: {} vs {e}",
                    values[i]
                );
            }
            // Sums cover every element; only the summation order differs from numpy's.
            let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
            let abs_sum: f64 = values.iter().map(|&v| f64::from(v).abs()).sum();
            let (want_sum, want_abs) = (t["sum"].as_f64().unwrap(), t["abs_sum"].as_f64().unwrap());
            assert!(
                (sum - want_sum).abs() <= 1e-9 * want_abs,
                "{name}: sum {sum} vs {want_sum}"
            );
            assert!(
                (abs_sum - want_abs).abs() <= 1e-9 * want_abs,
                "{name}: abs sum {abs_sum} vs {want_abs}"
            );
        }

        let start = std::time::Instant::now();
        let mut n = 0;
        for t in &f.tensors {
            n += f.tensor_f32(&t.name).expect("dequantize").1.len();
        }
        eprintln!(
            "dequantized all {} tensors ({n} values) in {:?}",
            f.tensors.len(),
            start.elapsed()
        );
        assert_eq!(n, 134_515_008);
    }
}
