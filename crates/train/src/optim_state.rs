//! How a checkpoint stores the optimizer's state (AdamW's two moments: twice the model's
//! size in f32, so two thirds of every checkpoint).
//!
//! burn serializes the state as a burnpack. With [`StateDtype::Bf16`] every f32 tensor of
//! that pack is rounded to bfloat16 before it is written and widened back to f32 when it is
//! read, which halves the optimizer's share of the checkpoint. bfloat16 keeps f32's exponent
//! range, so tiny second moments (1e-12 is common) survive; f16 would flush them to zero and
//! turn the next update into `m / ε`, which is why it is not offered. Rounding the moments
//! means a resumed run continues from slightly different moments: close to an uninterrupted
//! run, not bitwise equal to it (the f32 default is).

use burn_pack::{Bytes, DType, Reader, Tensor, Writer};
use serde::{Deserialize, Serialize};

/// Storage type of the optimizer state in checkpoints.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum StateDtype {
    /// As the optimizer holds it (f32): resume is bitwise exact.
    #[default]
    F32,
    /// bfloat16: half the optimizer's share of each checkpoint; a resumed run continues from
    /// moments rounded to bf16 (close to, not bitwise equal to, an uninterrupted run).
    Bf16,
}

/// Burnpack metadata key recording that the f32 tensors were narrowed, and to what.
const NARROWED: &str = "radit.optimizer_state_dtype";

/// The optimizer pack `bytes` as it is stored for `dtype`.
pub fn encode(bytes: Bytes, dtype: StateDtype) -> Result<Bytes, String> {
    match dtype {
        StateDtype::F32 => Ok(bytes),
        StateDtype::Bf16 => convert(bytes, DType::F32, DType::BF16, Some("bf16")),
    }
}

/// A stored optimizer pack as the optimizer reads it back: narrowed tensors widened to f32.
/// A pack written without narrowing is returned unchanged.
pub fn decode(bytes: Bytes) -> Result<Bytes, String> {
    let reader = Reader::from_bytes(bytes.clone()).map_err(|e| e.to_string())?;
    match reader.metadata().get(NARROWED).map(String::as_str) {
        None => Ok(bytes),
        Some("bf16") => convert(bytes, DType::BF16, DType::F32, None),
        Some(other) => Err(format!("unknown optimizer state dtype `{other}`")),
    }
}

/// Rewrites the pack with every `from` tensor converted to `to`; `mark` is recorded as the
/// narrowing (or the record of one removed when `None`).
fn convert(bytes: Bytes, from: DType, to: DType, mark: Option<&str>) -> Result<Bytes, String> {
    let reader = Reader::from_bytes(bytes).map_err(|e| e.to_string())?;
    let metadata = reader.metadata().clone();
    let scalars = reader.scalars().clone();
    let mut tensors = Vec::new();
    for tensor in reader.into_tensors().map_err(|e| e.to_string())? {
        let (name, dtype, shape, param_id, data) =
            tensor.into_parts().map_err(|e| e.to_string())?;
        let data = if dtype == from {
            Bytes::from_bytes_vec(convert_values(&data, from, to)?)
        } else {
            data
        };
        let dtype = if dtype == from { to } else { dtype };
        tensors.push(Tensor::new(name, dtype, shape, param_id, data));
    }
    let mut writer = Writer::new(tensors);
    for (key, value) in &metadata {
        if key != NARROWED {
            writer = writer.with_metadata(key, value);
        }
    }
    if let Some(mark) = mark {
        writer = writer.with_metadata(NARROWED, mark);
    }
    for (key, value) in scalars {
        writer = writer.with_scalar(&key, value);
    }
    writer.into_bytes().map_err(|e| e.to_string())
}

/// Little-endian values of `from` as little-endian values of `to` (f32 ↔ bf16, rounding to
/// nearest even when narrowing).
fn convert_values(data: &[u8], from: DType, to: DType) -> Result<Vec<u8>, String> {
    match (from, to) {
        (DType::F32, DType::BF16) => {
            if !data.len().is_multiple_of(4) {
                return Err(format!("{} bytes are not f32 values", data.len()));
            }
            Ok(data
                .chunks_exact(4)
                .flat_map(|b| {
                    let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    half::bf16::from_f32(v).to_le_bytes()
                })
                .collect())
        }
        (DType::BF16, DType::F32) => {
            if !data.len().is_multiple_of(2) {
                return Err(format!("{} bytes are not bf16 values", data.len()));
            }
            Ok(data
                .chunks_exact(2)
                .flat_map(|b| {
                    half::bf16::from_le_bytes([b[0], b[1]])
                        .to_f32()
                        .to_le_bytes()
                })
                .collect())
        }
        _ => Err(format!("no conversion from {from:?} to {to:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(values: &[f32]) -> Bytes {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let tensors = vec![
            Tensor::new(
                "1.moment_2".into(),
                DType::F32,
                [values.len()],
                Some(1),
                Bytes::from_bytes_vec(bytes),
            ),
            Tensor::new(
                "1.step".into(),
                DType::I64,
                [1],
                Some(1),
                Bytes::from_bytes_vec(7i64.to_le_bytes().to_vec()),
            ),
        ];
        Writer::new(tensors)
            .with_metadata("kept", "yes")
            .into_bytes()
            .unwrap()
    }

    fn tensor(bytes: &Bytes, name: &str) -> (DType, Vec<u8>) {
        let reader = Reader::from_bytes(bytes.clone()).unwrap();
        let t = reader
            .into_tensors()
            .unwrap()
            .into_iter()
            .find(|t| t.name == name)
            .unwrap();
        let (_, dtype, _, _, data) = t.into_parts().unwrap();
        (dtype, data.to_vec())
    }

    #[test]
    fn bf16_halves_the_moments_and_round_trips_within_bf16_precision() {
        let values: Vec<f32> = (0..1000)
            .map(|i| 1e-12 * (i as f32 + 1.0).powi(3))
            .collect();
        let f32_pack = pack(&values);
        let stored = encode(f32_pack.clone(), StateDtype::Bf16).unwrap();
        assert_eq!(tensor(&stored, "1.moment_2").0, DType::BF16);
        // 4,000 bytes of moments became 2,000; the rest of the pack is unchanged in size.
        assert!(
            stored.len() + 1900 < f32_pack.len(),
            "{} vs {}",
            stored.len(),
            f32_pack.len()
        );
        let back = decode(stored).unwrap();
        let (dtype, data) = tensor(&back, "1.moment_2");
        assert_eq!(dtype, DType::F32);
        for (chunk, want) in data.chunks_exact(4).zip(&values) {
            let got = f32::from_le_bytes(chunk.try_into().unwrap());
            // bf16 keeps 8 bits of mantissa and f32's range: no tiny moment becomes 0.
            assert!(got > 0.0 && ((got - want) / want).abs() < 1.0 / 256.0);
        }
        // Other tensors and metadata pass through; the narrowing mark is gone again.
        assert_eq!(tensor(&back, "1.step").1, 7i64.to_le_bytes());
        let reader = Reader::from_bytes(back).unwrap();
        assert_eq!(
            reader.metadata().get("kept").map(String::as_str),
            Some("yes")
        );
        assert!(!reader.metadata().contains_key(NARROWED));
    }

    #[test]
    fn f32_storage_is_the_optimizers_own_bytes() {
        let p = pack(&[1.0, 2.0]);
        assert_eq!(
            encode(p.clone(), StateDtype::F32).unwrap().to_vec(),
            p.to_vec()
        );
        assert_eq!(decode(p.clone()).unwrap().to_vec(), p.to_vec());
    }

    #[test]
    fn a_damaged_pack_is_an_error() {
        let p = pack(&[1.0, 2.0]).to_vec();
        assert!(decode(Bytes::from_bytes_vec(p[..p.len() / 2].to_vec())).is_err());
    }
}
