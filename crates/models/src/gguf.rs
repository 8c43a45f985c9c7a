//! GGUF, llama.cpp's single-file model format: header, metadata and tensor index read over
//! a memory map, dequantization of the common ggml block types to `f32`, and the Hugging Face
//! tokenizer that the `tokenizer.ggml.*` metadata describes.
//!
//! Format: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>. Block layouts follow
//! ggml-quants.c and gguf-py's `quants.py`; the tests check them bit for bit against the latter
//! (fixtures from `scripts/make_gguf_fixtures.py`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use half::f16;
use memmap2::Mmap;
use serde_json::{json, Map, Value};

const MAGIC: [u8; 4] = *b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// GGML_MAX_DIMS.
const MAX_DIMS: u32 = 4;
/// Real files nest arrays at most one level deep; the bound keeps a corrupt header from
/// recursing until the stack overflows.
const MAX_ARRAY_DEPTH: usize = 16;
/// Magic, version, tensor count and metadata count.
const HEADER_LEN: u64 = 4 + 4 + 8 + 8;

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

/// ggml's (name, elements per block, bytes per block) for a type id, as in `ggml.c`'s type
/// traits (and gguf-py's `GGML_QUANT_SIZES`, except Q8_1 where gguf-py is out of date).
fn type_layout(id: u32) -> Option<(&'static str, usize, usize)> {
    Some(match id {
        0 => ("F32", 1, 4),
        1 => ("F16", 1, 2),
        2 => ("Q4_0", 32, 18),
        3 => ("Q4_1", 32, 20),
        6 => ("Q5_0", 32, 22),
        7 => ("Q5_1", 32, 24),
        8 => ("Q8_0", 32, 34),
        9 => ("Q8_1", 32, 36),
        10 => ("Q2_K", 256, 84),
        11 => ("Q3_K", 256, 110),
        12 => ("Q4_K", 256, 144),
        13 => ("Q5_K", 256, 176),
        14 => ("Q6_K", 256, 210),
        15 => ("Q8_K", 256, 292),
        16 => ("IQ2_XXS", 256, 66),
        17 => ("IQ2_XS", 256, 74),
        18 => ("IQ3_XXS", 256, 98),
        19 => ("IQ1_S", 256, 50),
        20 => ("IQ4_NL", 32, 18),
        21 => ("IQ3_S", 256, 110),
        22 => ("IQ2_S", 256, 82),
        23 => ("IQ4_XS", 256, 136),
        24 => ("I8", 1, 1),
        25 => ("I16", 1, 2),
        26 => ("I32", 1, 4),
        27 => ("I64", 1, 8),
        28 => ("F64", 1, 8),
        29 => ("IQ1_M", 256, 56),
        30 => ("BF16", 1, 2),
        34 => ("TQ1_0", 256, 54),
        35 => ("TQ2_0", 256, 66),
        39 => ("MXFP4", 32, 17),
        40 => ("NVFP4", 64, 36),
        41 => ("Q1_0", 128, 18),
        _ => return None,
    })
}

impl GgmlType {
    /// The type for a `ggml_type` id as stored in a tensor's info.
    pub fn from_id(id: u32) -> Self {
        match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            12 => Self::Q4_K,
            14 => Self::Q6_K,
            30 => Self::BF16,
            other => Self::Other(other),
        }
    }

    /// The `ggml_type` id.
    pub fn id(self) -> u32 {
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
        type_layout(self.id()).map(|(name, _, _)| name)
    }

    /// Elements per block (1 for plain float types), or `None` for an unknown id.
    pub fn block_size(self) -> Option<usize> {
        type_layout(self.id()).map(|(_, block, _)| block)
    }

    /// Bytes per block, or `None` for an unknown id.
    pub fn type_size(self) -> Option<usize> {
        type_layout(self.id()).map(|(_, _, size)| size)
    }

    /// Whether [`dequantize`] supports this type.
    pub fn can_dequantize(self) -> bool {
        !matches!(self, Self::Other(_))
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

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// `uint8`.
    U8(u8),
    /// `int8`.
    I8(i8),
    /// `uint16`.
    U16(u16),
    /// `int16`.
    I16(i16),
    /// `uint32`.
    U32(u32),
    /// `int32`.
    I32(i32),
    /// `uint64`.
    U64(u64),
    /// `int64`.
    I64(i64),
    /// `float32`.
    F32(f32),
    /// `float64`.
    F64(f64),
    /// `bool`.
    Bool(bool),
    /// `string`; invalid UTF-8 is replaced with U+FFFD rather than rejected, as some
    /// converters wrote partial characters into vocabularies.
    String(String),
    /// `array`; all elements share one type on disk.
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// The value as `u64` if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as `i64` if it is an integer of any width that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::I8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::I64(v) => Some(v),
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as `f64` if it is a float or an integer (large 64-bit integers round).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            Self::U64(v) => Some(v as f64),
            Self::I64(v) => Some(v as f64),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The value if it is a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// The value if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements if the value is an array.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            Self::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The GGUF name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::U8(_) => "uint8",
            Self::I8(_) => "int8",
            Self::U16(_) => "uint16",
            Self::I16(_) => "int16",
            Self::U32(_) => "uint32",
            Self::I32(_) => "int32",
            Self::U64(_) => "uint64",
            Self::I64(_) => "int64",
            Self::F32(_) => "float32",
            Self::F64(_) => "float64",
            Self::Bool(_) => "bool",
            Self::String(_) => "string",
            Self::Array(_) => "array",
        }
    }

    /// The `gguf_type` id written before the value on disk.
    pub fn type_id(&self) -> u32 {
        match self {
            Self::U8(_) => 0,
            Self::I8(_) => 1,
            Self::U16(_) => 2,
            Self::I16(_) => 3,
            Self::U32(_) => 4,
            Self::I32(_) => 5,
            Self::F32(_) => 6,
            Self::Bool(_) => 7,
            Self::String(_) => 8,
            Self::Array(_) => 9,
            Self::U64(_) => 10,
            Self::I64(_) => 11,
            Self::F64(_) => 12,
        }
    }
}

/// The type and value, briefly: `uint32 8192`, `string "llama"`, `array of 49152 string`.
impl fmt::Display for GgufValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.type_name())?;
        match self {
            Self::U8(v) => write!(f, "{v}"),
            Self::I8(v) => write!(f, "{v}"),
            Self::U16(v) => write!(f, "{v}"),
            Self::I16(v) => write!(f, "{v}"),
            Self::U32(v) => write!(f, "{v}"),
            Self::I32(v) => write!(f, "{v}"),
            Self::U64(v) => write!(f, "{v}"),
            Self::I64(v) => write!(f, "{v}"),
            Self::F32(v) => write!(f, "{v}"),
            Self::F64(v) => write!(f, "{v}"),
            Self::Bool(v) => write!(f, "{v}"),
            // Chat templates run to kilobytes.
            Self::String(s) if s.chars().count() > 60 => {
                let head: String = s.chars().take(60).collect();
                write!(f, "{head:?}...")
            }
            Self::String(s) => write!(f, "{s:?}"),
            Self::Array(items) => match items.first() {
                Some(first) => write!(f, "of {} {}", items.len(), first.type_name()),
                None => f.write_str("(empty)"),
            },
        }
    }
}

/// Where one tensor lives in the file and how to read it.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in PyTorch order: GGUF's `ne` reversed, so the last one is contiguous.
    pub shape: Vec<usize>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Start of the tensor's bytes, relative to the data section.
    pub offset: u64,
    n_bytes: usize,
}

impl GgufTensorInfo {
    /// Number of elements (product of the shape).
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size of the tensor's data in the file.
    pub fn n_bytes(&self) -> usize {
        self.n_bytes
    }
}

/// Errors from reading a GGUF file; messages name the file where known.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or mapped.
    #[error("cannot read GGUF file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The header, metadata or tensor index is malformed, or the file is truncated.
    #[error("invalid GGUF file {}: {msg}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the byte offset or tensor name involved.
        msg: String,
    },
    /// No tensor of that name.
    #[error("GGUF file {} has no tensor named {name:?}", path.display())]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The name looked up.
        name: String,
    },
    /// No metadata entry with that key.
    #[error("GGUF file {} has no metadata key {key:?}", path.display())]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The key looked up.
        key: String,
    },
    /// A metadata entry has a type the caller cannot use.
    #[error("GGUF file {}: metadata key {key:?} is {found}, expected {expected}", path.display())]
    WrongType {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What the caller wanted.
        expected: &'static str,
        /// What the file has (a GGUF type name, or a description of the bad value).
        found: String,
    },
    /// Data that [`dequantize`] cannot convert: an unsupported type or a size mismatch.
    #[error("cannot dequantize {ty} data: {msg}")]
    Dequantize {
        /// The element type.
        ty: GgmlType,
        /// What is wrong.
        msg: String,
    },
    /// An error while reading one tensor.
    #[error("GGUF file {}, tensor {name:?}: {source}", path.display())]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// The underlying error.
        source: Box<GgufError>,
    },
    /// The tokenizer metadata is missing, inconsistent or of an unsupported kind.
    #[error("GGUF file {}: cannot build a tokenizer: {msg}", path.display())]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

/// Bounds-checked little-endian reader over the mapped bytes; errors are plain messages that
/// the caller wraps with the path and what was being read.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end));
        match slice {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(format!(
                "unexpected end of file at byte {}: needed {n} bytes, {} left (truncated?)",
                self.pos,
                self.remaining()
            )),
        }
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    /// A u64 count, refused when `count * min_size` cannot fit in the rest of the file, so a
    /// corrupt count fails here instead of driving a huge allocation.
    fn count(&mut self, what: &str, min_size: usize) -> Result<usize, String> {
        let at = self.pos;
        let n = self.u64()?;
        let fits = usize::try_from(n)
            .ok()
            .filter(|&n| n.saturating_mul(min_size) <= self.remaining());
        fits.ok_or_else(|| {
            format!(
                "{what} {n} at byte {at} cannot fit in the {} bytes left (corrupt or truncated)",
                self.remaining()
            )
        })
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.count("string length", 1)?;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }

    fn value(&mut self, ty: u32, depth: usize) -> Result<GgufValue, String> {
        Ok(match ty {
            0 => GgufValue::U8(self.u8()?),
            1 => GgufValue::I8(i8::from_le_bytes(self.bytes()?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.bytes()?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.bytes()?)),
            4 => GgufValue::U32(self.u32()?),
            5 => GgufValue::I32(i32::from_le_bytes(self.bytes()?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.bytes()?)),
            // llama.cpp reads bools as a byte and tests it for non-zero.
            7 => GgufValue::Bool(self.u8()? != 0),
            8 => GgufValue::String(self.string()?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"));
                }
                let elem_ty = self.u32()?;
                let min_size = min_value_size(elem_ty)
                    .ok_or_else(|| format!("array of unknown value type {elem_ty}"))?;
                let n = self.count("array length", min_size)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem_ty, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(self.u64()?),
            11 => GgufValue::I64(i64::from_le_bytes(self.bytes()?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.bytes()?)),
            other => return Err(format!("unknown value type {other}")),
        })
    }
}

/// Fewest bytes a value of a `gguf_type` occupies (strings and arrays carry a u64 length).
fn min_value_size(ty: u32) -> Option<usize> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        8 | 10..=12 => Some(8),
        9 => Some(4 + 8),
        _ => None,
    }
}

/// What [`parse`] finds in the bytes of a file.
struct Parsed {
    version: u32,
    metadata: BTreeMap<String, GgufValue>,
    tensors: Vec<GgufTensorInfo>,
    data_offset: usize,
}

fn parse(buf: &[u8]) -> Result<Parsed, String> {
    let mut r = Reader { buf, pos: 0 };
    let magic: [u8; 4] = r
        .bytes()
        .map_err(|_| format!("{} bytes is too short for a GGUF header", buf.len()))?;
    if magic != MAGIC {
        return Err(format!(
            "not a GGUF file: starts with {magic:02x?}, expected \"GGUF\""
        ));
    }
    let version = r.u32()?;
    match version {
        2 | 3 => {}
        1 => return Err("GGUF version 1 is not supported (only 2 and 3)".into()),
        v if (1..=3).contains(&v.swap_bytes()) => {
            return Err(format!(
                "version field {v:#x} looks like a big-endian GGUF, which is not supported"
            ))
        }
        v => return Err(format!("unsupported GGUF version {v} (only 2 and 3)")),
    }
    // A tensor info is at least a name length, n_dims, one type and one offset; a metadata
    // entry at least a key length, a type and one byte.
    let n_tensors = r.count("tensor count", 8 + 4 + 4 + 8)?;
    let n_kv = r.count("metadata count", 8 + 4 + 1)?;

    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = r
            .string()
            .map_err(|e| format!("metadata entry {i}: key: {e}"))?;
        let value = r
            .u32()
            .and_then(|ty| r.value(ty, 0))
            .map_err(|e| format!("metadata key {key:?}: {e}"))?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(format!("duplicate metadata key {key:?}"));
        }
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => v
            .as_u64()
            .filter(|a| a.is_power_of_two())
            .ok_or_else(|| format!("general.alignment {v:?} is not a power of two"))?,
    };
    let alignment = usize::try_from(alignment)
        .map_err(|_| format!("general.alignment {alignment} is too large"))?;

    let mut raw = Vec::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let name = r
            .string()
            .map_err(|e| format!("tensor info {i}: name: {e}"))?;
        let info = (|| {
            let n_dims = r.u32()?;
            if n_dims > MAX_DIMS {
                return Err(format!(
                    "{n_dims} dimensions (ggml allows at most {MAX_DIMS})"
                ));
            }
            let dims = (0..n_dims)
                .map(|_| r.u64())
                .collect::<Result<Vec<_>, _>>()?;
            Ok((dims, r.u32()?, r.u64()?))
        })()
        .map_err(|e: String| format!("tensor info {i} ({name:?}): {e}"))?;
        raw.push((name, info));
    }

    let data_offset = r
        .pos
        .checked_next_multiple_of(alignment)
        .ok_or("data section offset overflows")?;
    let mut tensors = Vec::with_capacity(raw.len());
    let mut seen = HashSet::with_capacity(raw.len());
    for (name, (dims, type_id, offset)) in raw {
        let info = tensor_info(name, &dims, type_id, offset, alignment)?;
        let start = usize::try_from(info.offset)
            .ok()
            .and_then(|o| o.checked_add(data_offset));
        let end = start.and_then(|s| s.checked_add(info.n_bytes));
        if info.n_bytes > 0 && end.is_none_or(|end| end > buf.len()) {
            return Err(format!(
                "tensor {:?} ({} bytes at data offset {}) extends past the end of the file \
                 ({} bytes, data section at {data_offset}): the file is truncated",
                info.name,
                info.n_bytes,
                info.offset,
                buf.len()
            ));
        }
        if !seen.insert(info.name.clone()) {
            return Err(format!("duplicate tensor name {:?}", info.name));
        }
        tensors.push(info);
    }
    Ok(Parsed {
        version,
        metadata,
        tensors,
        data_offset,
    })
}

fn tensor_info(
    name: String,
    dims: &[u64],
    type_id: u32,
    offset: u64,
    alignment: usize,
) -> Result<GgufTensorInfo, String> {
    let ggml_type = GgmlType::from_id(type_id);
    let (_, block, type_size) = type_layout(type_id)
        .ok_or_else(|| format!("tensor {name:?} has unknown ggml type id {type_id}"))?;
    let overflow = || format!("tensor {name:?}: dimensions {dims:?} overflow");
    let mut n_elements: u64 = 1;
    for &d in dims {
        n_elements = n_elements.checked_mul(d).ok_or_else(overflow)?;
    }
    let row = dims.first().copied().unwrap_or(1);
    if !row.is_multiple_of(block as u64) {
        return Err(format!(
            "tensor {name:?}: row length {row} is not a multiple of the {ggml_type} block size {block}"
        ));
    }
    let n_bytes = (n_elements / block as u64)
        .checked_mul(type_size as u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(overflow)?;
    let shape = dims
        .iter()
        .rev()
        .map(|&d| usize::try_from(d).map_err(|_| overflow()))
        .collect::<Result<Vec<_>, _>>()?;
    if !offset.is_multiple_of(alignment as u64) {
        return Err(format!(
            "tensor {name:?}: data offset {offset} is not a multiple of the alignment {alignment}"
        ));
    }
    Ok(GgufTensorInfo {
        name,
        shape,
        ggml_type,
        offset,
        n_bytes,
    })
}

/// The special token ids named in `tokenizer.ggml.*_token_id`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecialTokenIds {
    /// Beginning of sequence (`bos_token_id`).
    pub bos: Option<u32>,
    /// End of sequence (`eos_token_id`).
    pub eos: Option<u32>,
    /// Padding (`padding_token_id`).
    pub pad: Option<u32>,
    /// Unknown token (`unknown_token_id`).
    pub unk: Option<u32>,
    /// End of turn (`eot_token_id`), where a chat model has one distinct from EOS.
    pub eot: Option<u32>,
}

/// An open GGUF file: parsed header and metadata, with tensor data left in the memory map.
pub struct GgufFile {
    /// Format version (2 or 3).
    pub version: u32,
    /// All metadata entries.
    pub metadata: BTreeMap<String, GgufValue>,
    /// Tensor index, in file order.
    pub tensors: Vec<GgufTensorInfo>,
    path: PathBuf,
    mmap: Mmap,
    data_offset: usize,
    by_name: HashMap<String, usize>,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Metadata holds whole vocabularies: too long to print.
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_entries", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish_non_exhaustive()
    }
}

impl GgufFile {
    /// Memory-maps and parses a GGUF v2/v3 file, checking the magic, version and alignment,
    /// and that every tensor's bytes lie inside the file.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let format = |msg| GgufError::Format {
            path: path.to_path_buf(),
            msg,
        };
        if len < HEADER_LEN {
            return Err(format(format!(
                "{len} bytes is too short for a GGUF header"
            )));
        }
        // SAFETY: the map is read-only and private to this process. Another process truncating
        // or rewriting the file while it is mapped is outside what this reader can guard
        // against (as for every mmap-based model loader); every read is bounds-checked against
        // the length seen at map time.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        let parsed = parse(&mmap).map_err(format)?;
        let by_name = parsed
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(Self {
            version: parsed.version,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            path: path.to_path_buf(),
            mmap,
            data_offset: parsed.data_offset,
            by_name,
        })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Byte offset of the data section (tensor offsets are relative to it).
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// The tensor with this name.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.by_name.get(name).and_then(|&i| self.tensors.get(i))
    }

    /// The tensor's raw (possibly quantized) bytes, borrowed from the memory map.
    pub fn tensor_data(&self, name: &str) -> Result<&[u8], GgufError> {
        let info = self.tensor(name).ok_or_else(|| GgufError::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
        })?;
        self.data_of(info)
    }

    fn data_of(&self, info: &GgufTensorInfo) -> Result<&[u8], GgufError> {
        if info.n_bytes == 0 {
            return Ok(&[]);
        }
        // `open` checked the range; this only guards against an info edited by the caller.
        usize::try_from(info.offset)
            .ok()
            .and_then(|o| o.checked_add(self.data_offset))
            .and_then(|start| self.mmap.get(start..start.checked_add(info.n_bytes)?))
            .ok_or_else(|| GgufError::Format {
                path: self.path.clone(),
                msg: format!("tensor {:?} lies outside the file", info.name),
            })
    }

    /// The tensor dequantized to `f32`: its shape (PyTorch order) and its elements, row-major
    /// in that shape.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), GgufError> {
        let info = self.tensor(name).ok_or_else(|| GgufError::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
        })?;
        let values =
            dequantize(info.ggml_type, self.data_of(info)?, info.n_elements()).map_err(|e| {
                GgufError::Tensor {
                    path: self.path.clone(),
                    name: name.to_string(),
                    source: Box::new(e),
                }
            })?;
        Ok((info.shape.clone(), values))
    }

    /// The metadata value for `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&GgufValue, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_string(),
        })
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: &GgufValue) -> GgufError {
        GgufError::WrongType {
            path: self.path.clone(),
            key: key.to_string(),
            expected,
            found: found.to_string(),
        }
    }

    /// A string entry.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.require(key)?;
        v.as_str()
            .ok_or_else(|| self.wrong_type(key, "a string", v))
    }

    /// A non-negative integer entry of any width.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.require(key)?;
        v.as_u64()
            .ok_or_else(|| self.wrong_type(key, "a non-negative integer", v))
    }

    /// A float or integer entry.
    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        let v = self.require(key)?;
        v.as_f64()
            .ok_or_else(|| self.wrong_type(key, "a number", v))
    }

    /// A bool entry.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| self.wrong_type(key, "a bool", v))
    }

    /// An array entry.
    pub fn get_array(&self, key: &str) -> Result<&[GgufValue], GgufError> {
        let v = self.require(key)?;
        v.as_array()
            .ok_or_else(|| self.wrong_type(key, "an array", v))
    }

    fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        let items = self.get_array(key)?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let s = item
                .as_str()
                .ok_or_else(|| self.wrong_type(key, "an array of strings", item))?;
            out.push(s);
        }
        Ok(out)
    }

    /// `general.architecture`, e.g. "llama".
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")
    }

    /// The Jinja chat template (`tokenizer.chat_template`), if the file has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.get("tokenizer.chat_template")
            .and_then(GgufValue::as_str)
    }

    /// The BOS/EOS/padding/unknown/end-of-turn ids from `tokenizer.ggml.*_token_id`; an entry
    /// that is absent or not a u32 gives `None`.
    pub fn special_token_ids(&self) -> SpecialTokenIds {
        let id = |name: &str| {
            self.get(&format!("tokenizer.ggml.{name}_token_id"))
                .and_then(GgufValue::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        SpecialTokenIds {
            bos: id("bos"),
            eos: id("eos"),
            pad: id("padding"),
            unk: id("unknown"),
            eot: id("eot"),
        }
    }

    fn tokenizer_error(&self, msg: String) -> GgufError {
        GgufError::Tokenizer {
            path: self.path.clone(),
            msg,
        }
    }

    /// A Hugging Face `tokenizer.json` document equivalent to the tokenizer in the metadata,
    /// for `tokenizers::Tokenizer::from_str(&doc.to_string())`.
    ///
    /// Supports `tokenizer.ggml.model` "gpt2" (byte-level BPE; the pre-tokenizer follows
    /// `tokenizer.ggml.pre` as llama.cpp does for "smollm"/"starcoder"/"refact", the Llama 3
    /// family and "qwen2", and is GPT-2's for anything else) and "llama" (SentencePiece BPE
    /// with byte fallback; merges rebuilt from the scores when the file has none). Control
    /// and unknown tokens become special added tokens, user-defined ones plain added tokens.
    /// BOS/EOS are added by the post-processor when `tokenizer.ggml.add_bos_token` /
    /// `add_eos_token` say so (BOS defaults to on for "llama", as in llama.cpp).
    pub fn tokenizer_json(&self) -> Result<Value, GgufError> {
        let model = self.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" && model != "llama" {
            return Err(self.tokenizer_error(format!(
                "tokenizer model {model:?} is not supported (only \"gpt2\", byte-level BPE, \
                 and \"llama\", SentencePiece BPE)"
            )));
        }
        let tokens = self.get_str_array("tokenizer.ggml.tokens")?;
        let ids = vocab_ids(&tokens);
        let types = self.token_types(tokens.len())?;
        let added = added_tokens(&tokens, &types);
        let unk = self
            .special_token_ids()
            .unk
            .and_then(|id| tokens.get(id as usize).copied());
        let flag = |key: &str| self.get(key).and_then(GgufValue::as_bool);
        let add_bos = flag("tokenizer.ggml.add_bos_token").unwrap_or(model == "llama");
        let add_eos = flag("tokenizer.ggml.add_eos_token").unwrap_or(false);
        let template = self.template_processing(&tokens, add_bos, add_eos)?;
        let vocab: Map<String, Value> = tokens
            .iter()
            .enumerate()
            .filter(|&(i, t)| ids.get(t) == Some(&(i as u32)))
            .map(|(i, t)| (t.to_string(), json!(i)))
            .collect();

        let doc = if model == "gpt2" {
            let merges = self.file_merges(&ids)?.ok_or_else(|| {
                self.tokenizer_error("byte-level BPE needs tokenizer.ggml.merges".into())
            })?;
            let pre = self.get("tokenizer.ggml.pre").and_then(GgufValue::as_str);
            let byte_level_post = json!({
                "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true
            });
            let post = match template {
                Some(t) => json!({"type": "Sequence", "processors": [byte_level_post, t]}),
                None => byte_level_post,
            };
            json!({
                "version": "1.0",
                "truncation": null,
                "padding": null,
                "added_tokens": added,
                "normalizer": null,
                "pre_tokenizer": byte_level_pre_tokenizer(pre),
                "post_processor": post,
                "decoder": {
                    "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true
                },
                "model": {
                    "type": "BPE",
                    "dropout": null,
                    "unk_token": unk,
                    "continuing_subword_prefix": null,
                    "end_of_word_suffix": null,
                    "fuse_unk": false,
                    "byte_fallback": false,
                    // llama.cpp emits a pre-token found whole in the vocabulary without
                    // merging for the Llama 3 family, as Meta's tokenizer.json does.
                    "ignore_merges": pre.is_some_and(is_llama3_pre),
                    "vocab": vocab,
                    "merges": merges,
                },
            })
        } else {
            let merges = match self.file_merges(&ids)? {
                Some(m) => m,
                None => self.merges_from_scores(&tokens, &ids)?,
            };
            let add_space_prefix = flag("tokenizer.ggml.add_space_prefix").unwrap_or(true);
            let replace_space =
                json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
            // A normalizer, not a Metaspace pre-tokenizer: it runs on every stretch of text
            // between special tokens, and llama.cpp likewise prefixes a space after each one.
            let normalizer = if add_space_prefix {
                json!({"type": "Sequence", "normalizers": [
                    {"type": "Prepend", "prepend": "\u{2581}"}, replace_space
                ]})
            } else {
                replace_space
            };
            let mut decoders = vec![
                json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
                json!({"type": "ByteFallback"}),
                json!({"type": "Fuse"}),
            ];
            if add_space_prefix {
                decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
            }
            json!({
                "version": "1.0",
                "truncation": null,
                "padding": null,
                "added_tokens": added,
                "normalizer": normalizer,
                "pre_tokenizer": null,
                "post_processor": template,
                "decoder": {"type": "Sequence", "decoders": decoders},
                "model": {
                    "type": "BPE",
                    "dropout": null,
                    "unk_token": unk.or_else(|| ids.contains_key("<unk>").then_some("<unk>")),
                    "continuing_subword_prefix": null,
                    "end_of_word_suffix": null,
                    "fuse_unk": true,
                    "byte_fallback": true,
                    "ignore_merges": false,
                    "vocab": vocab,
                    "merges": merges,
                },
            })
        };
        Ok(doc)
    }

    /// The tokenizer from [`GgufFile::tokenizer_json`], ready to use.
    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer, GgufError> {
        let doc = self.tokenizer_json()?.to_string();
        tokenizers::Tokenizer::from_str(&doc)
            .map_err(|e| self.tokenizer_error(format!("tokenizers rejected the document: {e}")))
    }

    /// `tokenizer.ggml.token_type`, or all "normal" when absent.
    fn token_types(&self, n_tokens: usize) -> Result<Vec<i64>, GgufError> {
        const KEY: &str = "tokenizer.ggml.token_type";
        if self.get(KEY).is_none() {
            return Ok(vec![TOKEN_NORMAL; n_tokens]);
        }
        let items = self.get_array(KEY)?;
        if items.len() != n_tokens {
            return Err(self.tokenizer_error(format!(
                "{KEY} has {} entries for {n_tokens} tokens",
                items.len()
            )));
        }
        items
            .iter()
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| self.wrong_type(KEY, "an array of integers", v))
            })
            .collect()
    }

    /// Pairs from `tokenizer.ggml.merges`, each checked against the vocabulary so that a bad
    /// file fails here, naming the merge, rather than inside `tokenizers`.
    fn file_merges(&self, ids: &HashMap<&str, u32>) -> Result<Option<Vec<Value>>, GgufError> {
        const KEY: &str = "tokenizer.ggml.merges";
        if self.get(KEY).is_none() {
            return Ok(None);
        }
        let merges = self.get_str_array(KEY)?;
        let mut out = Vec::with_capacity(merges.len());
        for (i, merge) in merges.iter().enumerate() {
            // As llama.cpp: the separator is the first space after the first character, so
            // a left piece that is itself a space still parses.
            let first = merge.chars().next().map_or(0, char::len_utf8);
            let split = merge
                .get(first..)
                .and_then(|rest| rest.find(' '))
                .map(|at| first + at);
            let pair = split.and_then(|at| Some((merge.get(..at)?, merge.get(at + 1..)?)));
            let Some((a, b)) = pair else {
                return Err(self.tokenizer_error(format!("merge {i} {merge:?} is not two tokens")));
            };
            if !ids.contains_key(a)
                || !ids.contains_key(b)
                || !ids.contains_key(&*format!("{a}{b}"))
            {
                return Err(self.tokenizer_error(format!(
                    "merge {i} {merge:?} uses or makes a token missing from the vocabulary"
                )));
            }
            out.push(json!([a, b]));
        }
        Ok(Some(out))
    }

    /// SentencePiece BPE files carry scores, not merges. Every split of a token into two
    /// vocabulary pieces is a merge, ranked by the token's score, as transformers'
    /// `generate_merges` does (ties: longer left piece, then longer right piece, then token
    /// order).
    fn merges_from_scores(
        &self,
        tokens: &[&str],
        ids: &HashMap<&str, u32>,
    ) -> Result<Vec<Value>, GgufError> {
        const KEY: &str = "tokenizer.ggml.scores";
        let scores = self.get_array(KEY)?;
        if scores.len() != tokens.len() {
            return Err(self.tokenizer_error(format!(
                "{KEY} has {} entries for {} tokens",
                scores.len(),
                tokens.len()
            )));
        }
        let mut merges: Vec<(&str, &str, f64)> = Vec::new();
        for (token, score) in tokens.iter().zip(scores) {
            let score = score
                .as_f64()
                .ok_or_else(|| self.wrong_type(KEY, "an array of numbers", score))?;
            let mut local: Vec<(&str, &str, u32, u32)> = token
                .char_indices()
                .skip(1)
                .filter_map(|(at, _)| {
                    let (l, r) = token.split_at(at);
                    Some((l, r, *ids.get(l)?, *ids.get(r)?))
                })
                .collect();
            local.sort_by_key(|&(_, _, il, ir)| (il, ir));
            merges.extend(local.into_iter().map(|(l, r, _, _)| (l, r, score)));
        }
        merges.sort_by(|x, y| {
            y.2.total_cmp(&x.2)
                .then_with(|| y.0.chars().count().cmp(&x.0.chars().count()))
                .then_with(|| y.1.chars().count().cmp(&x.1.chars().count()))
        });
        Ok(merges.into_iter().map(|(l, r, _)| json!([l, r])).collect())
    }

    /// A TemplateProcessing that adds BOS and/or EOS, or `None` when neither is wanted.
    fn template_processing(
        &self,
        tokens: &[&str],
        add_bos: bool,
        add_eos: bool,
    ) -> Result<Option<Value>, GgufError> {
        let special = self.special_token_ids();
        let mut specials = Map::new();
        let mut piece =
            |wanted: bool, id: Option<u32>, what: &str| -> Result<Option<Value>, GgufError> {
                if !wanted {
                    return Ok(None);
                }
                let token = id.and_then(|id| tokens.get(id as usize).map(|t| (id, *t)));
                let Some((id, token)) = token else {
                    return Err(self.tokenizer_error(format!(
                    "the file asks to add {what} but has no valid tokenizer.ggml.{what}_token_id"
                )));
                };
                specials.insert(
                    token.to_string(),
                    json!({"id": token, "ids": [id], "tokens": [token]}),
                );
                Ok(Some(json!({"SpecialToken": {"id": token, "type_id": 0}})))
            };
        let bos = piece(add_bos, special.bos, "bos")?;
        let eos = piece(add_eos, special.eos, "eos")?;
        if bos.is_none() && eos.is_none() {
            return Ok(None);
        }
        let seq = |id: &str, type_id: u32| json!({"Sequence": {"id": id, "type_id": type_id}});
        let mut single = Vec::new();
        single.extend(bos.clone());
        single.push(seq("A", 0));
        single.extend(eos.clone());
        let mut pair = single.clone();
        pair.extend(bos);
        pair.push(seq("B", 1));
        pair.extend(eos);
        Ok(Some(json!({
            "type": "TemplateProcessing",
            "single": single,
            "pair": pair,
            "special_tokens": specials,
        })))
    }
}

/// llama.cpp's `llama_token_type` values that matter here.
const TOKEN_NORMAL: i64 = 1;
const TOKEN_UNKNOWN: i64 = 2;
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// Token → id, keeping the first id of a duplicated token (a JSON vocabulary can hold only
/// one).
fn vocab_ids<'a>(tokens: &[&'a str]) -> HashMap<&'a str, u32> {
    let mut ids = HashMap::with_capacity(tokens.len());
    for (i, &t) in tokens.iter().enumerate() {
        ids.entry(t).or_insert(i as u32);
    }
    ids
}

/// Tokens llama.cpp matches whole in raw text before tokenizing: control and unknown tokens
/// (special) and user-defined ones (not special).
fn added_tokens(tokens: &[&str], types: &[i64]) -> Vec<Value> {
    tokens
        .iter()
        .zip(types)
        .enumerate()
        .filter(|&(_, (_, &ty))| matches!(ty, TOKEN_UNKNOWN | TOKEN_CONTROL | TOKEN_USER_DEFINED))
        .map(|(id, (content, &ty))| {
            json!({
                "id": id,
                "content": content,
                "single_word": false,
                "lstrip": false,
                "rstrip": false,
                "normalized": false,
                "special": ty != TOKEN_USER_DEFINED,
            })
        })
        .collect()
}

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn is_llama3_pre(pre: &str) -> bool {
    matches!(
        pre,
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "dbrx" | "smaug-bpe"
    )
}

/// The pre-tokenizer llama.cpp uses for a `tokenizer.ggml.pre` value, in tokenizers' terms.
fn byte_level_pre_tokenizer(pre: Option<&str>) -> Value {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |regex: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            byte_level(false),
        ]})
    };
    match pre {
        // llama.cpp splits off every digit ("\p{N}") before GPT-2's regex; Digits with
        // individual_digits is the same, and is what SmolLM2's own tokenizer.json uses.
        Some("smollm" | "starcoder" | "refact") => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            byte_level(true),
        ]}),
        Some(p) if is_llama3_pre(p) => split(LLAMA3_SPLIT),
        Some("qwen2" | "deepseek-r1-qwen") => split(QWEN2_SPLIT),
        _ => byte_level(true),
    }
}

/// Converts `n_elements` values of type `ty` from their GGUF bytes to `f32`, exactly as
/// ggml's reference dequantizers (and gguf-py) do. `bytes` must be exactly the size those
/// elements take.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>, GgufError> {
    let err = |msg: String| GgufError::Dequantize { ty, msg };
    let decode: fn(&[u8], &mut [f32]) = match ty {
        GgmlType::F32 => dequantize_f32,
        GgmlType::F16 => dequantize_f16,
        GgmlType::BF16 => dequantize_bf16,
        GgmlType::Q4_0 => dequantize_q4_0,
        GgmlType::Q4_1 => dequantize_q4_1,
        GgmlType::Q8_0 => dequantize_q8_0,
        GgmlType::Q4_K => dequantize_q4_k,
        GgmlType::Q6_K => dequantize_q6_k,
        GgmlType::Other(_) => {
            return Err(err(
                "this type is not supported (supported: F32, F16, BF16, Q4_0, Q4_1, Q8_0, \
                 Q4_K, Q6_K)"
                    .into(),
            ))
        }
    };
    let (Some(block), Some(type_size)) = (ty.block_size(), ty.type_size()) else {
        return Err(err("unknown type".into()));
    };
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
    use super::*;
    use GgufValue as V;

    // ---- a minimal GGUF writer, enough to build files of every shape the reader accepts ----

    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    fn put_value(out: &mut Vec<u8>, v: &GgufValue) {
        match v {
            V::U8(x) => out.push(*x),
            V::I8(x) => out.extend(x.to_le_bytes()),
            V::U16(x) => out.extend(x.to_le_bytes()),
            V::I16(x) => out.extend(x.to_le_bytes()),
            V::U32(x) => out.extend(x.to_le_bytes()),
            V::I32(x) => out.extend(x.to_le_bytes()),
            V::U64(x) => out.extend(x.to_le_bytes()),
            V::I64(x) => out.extend(x.to_le_bytes()),
            V::F32(x) => out.extend(x.to_le_bytes()),
            V::F64(x) => out.extend(x.to_le_bytes()),
            V::Bool(x) => out.push(u8::from(*x)),
            V::String(s) => put_str(out, s),
            V::Array(items) => {
                let elem = items.first().map_or(0, GgufValue::type_id);
                out.extend(elem.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for item in items {
                    put_value(out, item);
                }
            }
        }
    }

    struct TestTensor {
        name: &'static str,
        /// GGUF order: fastest-varying first.
        dims: Vec<u64>,
        ty: u32,
        data: Vec<u8>,
    }

    fn pad(out: &mut Vec<u8>, alignment: usize) {
        out.resize(out.len().next_multiple_of(alignment), 0);
    }

    /// A GGUF file as llama.cpp writes it; returns the bytes and where the data section starts.
    fn build_gguf(
        kv: &[(&str, GgufValue)],
        tensors: &[TestTensor],
        alignment: usize,
    ) -> (Vec<u8>, usize) {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((tensors.len() as u64).to_le_bytes());
        out.extend((kv.len() as u64).to_le_bytes());
        for (key, value) in kv {
            put_str(&mut out, key);
            out.extend(value.type_id().to_le_bytes());
            put_value(&mut out, value);
        }
        let mut offset = 0usize;
        for t in tensors {
            put_str(&mut out, t.name);
            out.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.ty.to_le_bytes());
            out.extend((offset as u64).to_le_bytes());
            offset = (offset + t.data.len()).next_multiple_of(alignment);
        }
        pad(&mut out, alignment);
        let data_start = out.len();
        for t in tensors {
            out.extend(&t.data);
            pad(&mut out, alignment);
        }
        (out, data_start)
    }

    fn write_temp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write temp file");
        path
    }

    fn f16_bytes(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_bits().to_le_bytes()
    }

    fn sample_metadata() -> Vec<(&'static str, GgufValue)> {
        vec![
            ("general.architecture", V::String("llama".into())),
            ("general.alignment", V::U32(64)),
            ("t.u8", V::U8(200)),
            ("t.i8", V::I8(-5)),
            ("t.u16", V::U16(60000)),
            ("t.i16", V::I16(-30000)),
            ("t.u32", V::U32(4_000_000_000)),
            ("t.i32", V::I32(-2_000_000_000)),
            ("t.u64", V::U64(u64::MAX)),
            ("t.i64", V::I64(i64::MIN)),
            ("t.f32", V::F32(1e-5)),
            ("t.f64", V::F64(100000.5)),
            ("t.bool", V::Bool(true)),
            ("t.str", V::String("naïve 東京".into())),
            ("t.arr", V::Array(vec![V::I32(1), V::I32(-2), V::I32(3)])),
            ("t.empty", V::Array(vec![])),
            (
                "t.nested",
                V::Array(vec![
                    V::Array(vec![V::String("a".into())]),
                    V::Array(vec![V::String("b".into())]),
                ]),
            ),
        ]
    }

    fn sample_tensors() -> Vec<TestTensor> {
        let f32_data: Vec<u8> = (0..6)
            .flat_map(|i| (i as f32 * 0.5 - 1.0).to_le_bytes())
            .collect();
        // Q8_0: two rows of one block; d = 0.5 and 0.25, quants -16..16.
        let mut q8 = Vec::new();
        for d in [0.5f32, 0.25] {
            q8.extend(f16_bytes(d));
            q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
        }
        let f16_data: Vec<u8> = [1.0f32, -2.5, 65504.0, 0.0]
            .iter()
            .flat_map(|&v| f16_bytes(v))
            .collect();
        vec![
            TestTensor {
                name: "a.f32",
                dims: vec![3, 2],
                ty: 0,
                data: f32_data,
            },
            TestTensor {
                name: "b.q8",
                dims: vec![32, 2],
                ty: 8,
                data: q8,
            },
            TestTensor {
                name: "c.f16",
                dims: vec![4],
                ty: 1,
                data: f16_data,
            },
        ]
    }

    #[test]
    fn gguf_roundtrip_metadata_and_tensors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (bytes, data_start) = build_gguf(&sample_metadata(), &sample_tensors(), 64);
        let path = write_temp(&dir, "small.gguf", &bytes);
        let f = GgufFile::open(&path).expect("open");
        assert_eq!(f.version, 3);
        assert_eq!(f.data_offset(), data_start);
        assert_eq!(f.data_offset() % 64, 0);
        assert_eq!(f.metadata.len(), sample_metadata().len());
        for (key, value) in sample_metadata() {
            assert_eq!(f.get(key), Some(&value), "{key}");
        }
        assert_eq!(f.architecture().unwrap(), "llama");
        assert_eq!(f.get_str("t.str").unwrap(), "naïve 東京");
        assert_eq!(f.get_u64("t.u8").unwrap(), 200);
        assert_eq!(f.get_u64("t.u64").unwrap(), u64::MAX);
        assert_eq!(f.get_u64("t.u32").unwrap(), 4_000_000_000);
        assert_eq!(f.get_f64("t.f32").unwrap(), 1e-5f32 as f64);
        assert_eq!(f.get_f64("t.f64").unwrap(), 100000.5);
        assert_eq!(f.get_f64("t.i32").unwrap(), -2e9);
        assert!(f.get_bool("t.bool").unwrap());
        assert_eq!(f.get_array("t.arr").unwrap().len(), 3);
        assert!(f.chat_template().is_none());

        let missing = f.get_str("no.such.key").unwrap_err().to_string();
        assert!(
            missing.contains("no.such.key") && missing.contains("small.gguf"),
            "{missing}"
        );
        let wrong = f.get_str("t.u32").unwrap_err().to_string();
        assert!(
            wrong.contains("t.u32") && wrong.contains("uint32"),
            "{wrong}"
        );
        let negative = f.get_u64("t.i8").unwrap_err().to_string();
        assert!(
            negative.contains("t.i8") && negative.contains("-5"),
            "{negative}"
        );
        assert!(f.get_f64("t.str").is_err());
        assert_eq!(f.get("t.u32").unwrap().to_string(), "uint32 4000000000");
        assert_eq!(f.get("t.arr").unwrap().to_string(), "array of 3 int32");
        assert_eq!(f.get("t.str").unwrap().to_string(), "string \"naïve 東京\"");

        let a = f.tensor("a.f32").expect("a.f32");
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.ggml_type, GgmlType::F32);
        assert_eq!(a.n_bytes(), 24);
        let (shape, values) = f.tensor_f32("a.f32").unwrap();
        assert_eq!(shape, vec![2, 3]);
        assert_eq!(values, vec![-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]);

        let (shape, values) = f.tensor_f32("b.q8").unwrap();
        assert_eq!(shape, vec![2, 32]);
        let expected: Vec<f32> = [0.5f32, 0.25]
            .iter()
            .flat_map(|&d| (0..32).map(move |i| (i - 16) as f32 * d))
            .collect();
        assert_eq!(values, expected);
        assert_eq!(f.tensor("b.q8").unwrap().offset % 64, 0);
        assert_eq!(f.tensor_data("b.q8").unwrap().len(), 68);

        let (shape, values) = f.tensor_f32("c.f16").unwrap();
        assert_eq!(shape, vec![4]);
        assert_eq!(values, vec![1.0, -2.5, 65504.0, 0.0]);

        let err = f.tensor_f32("nope").unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("small.gguf"), "{err}");
        assert_eq!(
            f.tensors
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            ["a.f32", "b.q8", "c.f16"]
        );
    }

    #[test]
    fn gguf_truncated_files_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (bytes, data_start) = build_gguf(&sample_metadata(), &sample_tensors(), 64);
        let parsed = parse(&bytes).expect("parse");
        let last = parsed.tensors.last().expect("tensors");
        // The final padding after the last tensor is not needed.
        let data_end = data_start + last.offset as usize + last.n_bytes();
        assert!(data_end < bytes.len());
        assert!(GgufFile::open(&write_temp(&dir, "full.gguf", &bytes)).is_ok());

        let cut_data = write_temp(&dir, "cut-data.gguf", &bytes[..data_start + 70]);
        let msg = GgufFile::open(&cut_data).unwrap_err().to_string();
        assert!(
            msg.contains("cut-data.gguf") && msg.contains("\"b.q8\"") && msg.contains("truncated"),
            "{msg}"
        );

        let cut_header = write_temp(&dir, "cut-header.gguf", &bytes[..100]);
        let msg = GgufFile::open(&cut_header).unwrap_err().to_string();
        assert!(
            msg.contains("cut-header.gguf") && msg.contains("truncated"),
            "{msg}"
        );
        let cut_key = write_temp(&dir, "cut-key.gguf", &bytes[..data_start / 2]);
        let msg = GgufFile::open(&cut_key).unwrap_err().to_string();
        assert!(
            msg.contains("metadata key") && msg.contains("end of file"),
            "{msg}"
        );

        let empty = write_temp(&dir, "empty.gguf", &[]);
        assert!(GgufFile::open(&empty)
            .unwrap_err()
            .to_string()
            .contains("too short"));
        let missing = dir.path().join("missing.gguf");
        assert!(matches!(
            GgufFile::open(&missing),
            Err(GgufError::Io { .. })
        ));

        // Every cut before the end of the last tensor fails cleanly.
        for len in 0..data_end {
            assert!(parse(&bytes[..len]).is_err(), "cut at {len} parsed");
        }
        for len in data_end..=bytes.len() {
            assert!(
                parse(&bytes[..len]).is_ok(),
                "cut at {len} in the padding failed"
            );
        }
    }

    /// Header fields patched to absurd values must give errors, not allocations or panics.
    #[test]
    fn gguf_corrupt_headers_are_errors() {
        let (good, _) = build_gguf(&[("k", V::U32(1))], &sample_tensors()[..1], 32);
        let patched = |at: usize, with: &[u8]| {
            let mut b = good.clone();
            b[at..at + with.len()].copy_from_slice(with);
            parse(&b).err().unwrap_or_default()
        };
        assert!(patched(0, b"GGUG").contains("not a GGUF file"));
        assert!(patched(4, &1u32.to_le_bytes()).contains("version 1"));
        assert!(patched(4, &3u32.to_be_bytes()).contains("big-endian"));
        assert!(patched(4, &7u32.to_le_bytes()).contains("unsupported GGUF version 7"));
        assert!(patched(8, &u64::MAX.to_le_bytes()).contains("tensor count"));
        assert!(patched(16, &u64::MAX.to_le_bytes()).contains("metadata count"));
        // Key length, then the value type of key "k".
        assert!(patched(24, &u64::MAX.to_le_bytes()).contains("string length"));
        assert!(patched(24 + 8 + 1, &99u32.to_le_bytes()).contains("unknown value type 99"));
        let kv_end = 24 + 8 + 1 + 4 + 4;
        // Tensor "a.f32": name, n_dims, dims, type, offset.
        let n_dims_at = kv_end + 8 + 5;
        assert!(patched(n_dims_at, &5u32.to_le_bytes()).contains("5 dimensions"));
        assert!(patched(n_dims_at + 4, &u64::MAX.to_le_bytes()).contains("overflow"));
        let type_at = n_dims_at + 4 + 16;
        assert!(patched(type_at, &5u32.to_le_bytes()).contains("unknown ggml type id 5"));
        assert!(
            patched(type_at, &2u32.to_le_bytes()).contains("not a multiple of the Q4_0 block size")
        );
        assert!(patched(type_at + 4, &4u64.to_le_bytes()).contains("alignment"));
        assert!(patched(type_at + 4, &(1u64 << 62).to_le_bytes()).contains("truncated"));

        let huge_array = {
            let mut b = b"GGUF".to_vec();
            b.extend(3u32.to_le_bytes());
            b.extend(0u64.to_le_bytes());
            b.extend(1u64.to_le_bytes());
            put_str(&mut b, "arr");
            b.extend(9u32.to_le_bytes());
            b.extend(0u32.to_le_bytes());
            b.extend((u64::MAX / 2).to_le_bytes());
            b
        };
        assert!(parse(&huge_array)
            .err()
            .unwrap_or_default()
            .contains("array length"));
        let deep = {
            let mut b = b"GGUF".to_vec();
            b.extend(3u32.to_le_bytes());
            b.extend(0u64.to_le_bytes());
            b.extend(1u64.to_le_bytes());
            put_str(&mut b, "deep");
            b.extend(9u32.to_le_bytes());
            for _ in 0..40 {
                b.extend(9u32.to_le_bytes());
                b.extend(1u64.to_le_bytes());
            }
            b.extend([0u8; 64]);
            b
        };
        assert!(parse(&deep).err().unwrap_or_default().contains("nested"));
        let dup = build_gguf(&[("k", V::U8(1)), ("k", V::U8(2))], &[], 32).0;
        assert!(parse(&dup)
            .err()
            .unwrap_or_default()
            .contains("duplicate metadata key"));
        let bad_align = build_gguf(&[("general.alignment", V::U32(48))], &[], 32).0;
        assert!(parse(&bad_align)
            .err()
            .unwrap_or_default()
            .contains("power of two"));
    }

    /// Random byte corruption anywhere in a file: any outcome but a panic is fine.
    #[test]
    fn gguf_random_corruption_never_panics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut kv = sample_metadata();
        kv.extend(tiny_bpe_metadata());
        let (good, _) = build_gguf(&kv, &sample_tensors(), 64);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let path = dir.path().join("fuzz.gguf");
        let mut opened = 0;
        for _ in 0..400 {
            let mut b = good.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % b.len() as u64) as usize;
                b[at] = next() as u8;
            }
            std::fs::write(&path, &b).expect("write");
            if let Ok(f) = GgufFile::open(&path) {
                opened += 1;
                for t in &f.tensors {
                    let _ = f.tensor_f32(&t.name);
                }
                let _ = f.tokenizer_json();
                let _ = f.special_token_ids();
            }
        }
        assert!(
            opened > 0,
            "no corrupted file opened at all: the fuzz is not reaching past the header"
        );
    }

    #[test]
    fn dequantize_matches_gguf_py() {
        let fixture: Value =
            serde_json::from_str(include_str!("../tests/fixtures/gguf_dequant.json"))
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

    // ---- tokenizers built from metadata ----

    fn strings(items: &[&str]) -> GgufValue {
        V::Array(items.iter().map(|s| V::String(s.to_string())).collect())
    }

    fn tiny_bpe_metadata() -> Vec<(&'static str, GgufValue)> {
        vec![
            ("tokenizer.ggml.model", V::String("gpt2".into())),
            ("tokenizer.ggml.pre", V::String("smollm".into())),
            (
                "tokenizer.ggml.tokens",
                strings(&[
                    "<|endoftext|>",
                    "a",
                    "b",
                    "c",
                    "Ġ",
                    "ab",
                    "Ġa",
                    "abc",
                    "1",
                    "2",
                    "<think>",
                ]),
            ),
            (
                "tokenizer.ggml.token_type",
                V::Array([3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4].map(V::I32).to_vec()),
            ),
            ("tokenizer.ggml.merges", strings(&["a b", "Ġ a", "ab c"])),
            ("tokenizer.ggml.bos_token_id", V::U32(0)),
            ("tokenizer.ggml.eos_token_id", V::U32(0)),
        ]
    }

    fn file_with(dir: &tempfile::TempDir, kv: &[(&str, GgufValue)]) -> GgufFile {
        let (bytes, _) = build_gguf(kv, &[], 32);
        GgufFile::open(&write_temp(dir, "tok.gguf", &bytes)).expect("open")
    }

    fn ids(tok: &tokenizers::Tokenizer, text: &str, special: bool) -> Vec<u32> {
        tok.encode(text, special)
            .expect("encode")
            .get_ids()
            .to_vec()
    }

    #[test]
    fn gguf_tiny_byte_level_tokenizer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = file_with(&dir, &tiny_bpe_metadata());
        let tok = f.tokenizer().expect("tokenizer");
        // "Ġabc": a+b merges first (rank 0), then ab+c; "Ġ a" never gets a chance.
        assert_eq!(ids(&tok, "ab abc", false), [5, 4, 7]);
        assert_eq!(
            ids(&tok, "<|endoftext|>a<think>12", false),
            [0, 1, 10, 8, 9]
        );
        assert_eq!(tok.decode(&[5, 4, 7], false).expect("decode"), "ab abc");
        assert_eq!(tok.decode(&[0, 5], true).expect("decode"), "ab");
        let specials = f.special_token_ids();
        assert_eq!(
            (specials.bos, specials.eos, specials.pad),
            (Some(0), Some(0), None)
        );

        let mut kv = tiny_bpe_metadata();
        kv.push(("tokenizer.ggml.add_bos_token", V::Bool(true)));
        let tok = file_with(&dir, &kv).tokenizer().expect("tokenizer");
        assert_eq!(ids(&tok, "ab", true), [0, 5]);
        assert_eq!(ids(&tok, "ab", false), [5]);

        let mut kv = tiny_bpe_metadata();
        kv[0].1 = V::String("bert".into());
        let msg = file_with(&dir, &kv)
            .tokenizer_json()
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("\"bert\"") && msg.contains("not supported"),
            "{msg}"
        );

        let mut kv = tiny_bpe_metadata();
        kv[4].1 = strings(&["a b", "b q"]);
        let msg = file_with(&dir, &kv)
            .tokenizer_json()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("\"b q\""), "{msg}");

        let mut kv = tiny_bpe_metadata();
        kv[3].1 = V::Array(vec![V::I32(1)]);
        let msg = file_with(&dir, &kv)
            .tokenizer_json()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("token_type"), "{msg}");
    }

    #[test]
    fn gguf_tiny_sentencepiece_tokenizer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = [
            "<unk>", "<s>", "</s>", "<0x63>", "▁", "a", "b", "▁a", "ab", "▁ab", "▁b",
        ];
        let kv = vec![
            ("tokenizer.ggml.model", V::String("llama".into())),
            ("tokenizer.ggml.tokens", strings(&tokens)),
            (
                "tokenizer.ggml.scores",
                V::Array(
                    [0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -5.0, -4.0, -6.0, -7.0]
                        .map(V::F32)
                        .to_vec(),
                ),
            ),
            (
                "tokenizer.ggml.token_type",
                V::Array([2, 3, 3, 6, 1, 1, 1, 1, 1, 1, 1].map(V::I32).to_vec()),
            ),
            ("tokenizer.ggml.bos_token_id", V::U32(1)),
            ("tokenizer.ggml.eos_token_id", V::U32(2)),
            ("tokenizer.ggml.unknown_token_id", V::U32(0)),
        ];
        let f = file_with(&dir, &kv);
        let doc = f.tokenizer_json().expect("json");
        // "ab" (-4) outranks "▁a" (-5), so "▁ab" comes from "▁" + "ab".
        assert_eq!(doc["model"]["merges"][0], json!(["a", "b"]));
        let tok = f.tokenizer().expect("tokenizer");
        // BOS is on by default for SentencePiece files, as in llama.cpp.
        assert_eq!(ids(&tok, "ab b", true), [1, 9, 10]);
        assert_eq!(ids(&tok, "ab b", false), [9, 10]);
        // Unknown characters fall back to byte tokens where present, else <unk>.
        assert_eq!(ids(&tok, "ac", false), [7, 3]);
        assert_eq!(ids(&tok, "a</s>b", false), [7, 2, 10]);
        assert_eq!(tok.decode(&[1, 9, 10, 3], true).expect("decode"), "ab bc");
    }

    /// A SentencePiece BPE vocabulary written by gguf-py the way llama.cpp's converter writes
    /// Llama 2's, against sentencepiece's own ids.
    #[test]
    fn gguf_sentencepiece_tokenizer_matches_sentencepiece() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spm_tiny.gguf");
        let f = GgufFile::open(&path).expect("open");
        assert!(f.tensors.is_empty());
        let tok = f.tokenizer().expect("tokenizer");
        let fixture: Value =
            serde_json::from_str(include_str!("../tests/fixtures/spm_tiny_ids.json"))
                .expect("fixture");
        for case in fixture["cases"].as_array().expect("cases") {
            let text = case["text"].as_str().expect("text");
            let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).expect("ids");
            assert_eq!(ids(&tok, text, false), want, "{text:?}");
            let mut with_bos = vec![1];
            with_bos.extend(&want);
            assert_eq!(ids(&tok, text, true), with_bos, "{text:?} with BOS");
            assert_eq!(tok.decode(&with_bos, true).expect("decode"), text);
        }
    }

    // ---- the real SmolLM2 file, when fetched (scripts/fetch-assets.sh) ----

    fn smollm2_gguf() -> Option<PathBuf> {
        let root = std::env::var_os("RADIT_ASSETS")
            .map(PathBuf::from)
            .or_else(|| {
                let cache = std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| {
                        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache"))
                    })?;
                Some(cache.join("radit").join("assets"))
            })?;
        let path = root.join("SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf");
        if path.exists() {
            Some(path)
        } else {
            eprintln!(
                "skipping: {} not found (run scripts/fetch-assets.sh)",
                path.display()
            );
            None
        }
    }

    #[test]
    fn gguf_smollm2_metadata() {
        let Some(path) = smollm2_gguf() else { return };
        let f = GgufFile::open(&path).expect("open");
        assert_eq!(f.version, 3);
        assert_eq!(f.architecture().unwrap(), "llama");
        assert_eq!(f.tensors.len(), 272);
        assert_eq!(f.get_u64("llama.block_count").unwrap(), 30);
        assert_eq!(f.get_u64("llama.embedding_length").unwrap(), 576);
        assert_eq!(f.get_u64("llama.attention.head_count_kv").unwrap(), 3);
        assert_eq!(f.get_f64("llama.rope.freq_base").unwrap(), 100000.0);
        assert_eq!(
            f.get_f64("llama.attention.layer_norm_rms_epsilon").unwrap(),
            1e-5f32 as f64
        );
        assert_eq!(f.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
        let embd = f.tensor("token_embd.weight").expect("token_embd");
        assert_eq!(
            (embd.shape.as_slice(), embd.ggml_type),
            ([49152, 576].as_slice(), GgmlType::Q8_0)
        );
        assert!(
            f.tensor("output.weight").is_none(),
            "SmolLM2 ties its output to the embedding"
        );
        assert_eq!(
            f.tensor("blk.0.ffn_down.weight").unwrap().shape,
            [576, 1536]
        );
        assert!(f
            .chat_template()
            .unwrap_or_default()
            .contains("<|im_start|>"));
        let s = f.special_token_ids();
        assert_eq!(
            (s.bos, s.eos, s.pad, s.unk),
            (Some(1), Some(2), Some(2), Some(0))
        );
    }

    #[test]
    fn gguf_smollm2_dequantize_matches_gguf_py() {
        let Some(path) = smollm2_gguf() else { return };
        let f = GgufFile::open(&path).expect("open");
        let fixture: Value =
            serde_json::from_str(include_str!("../tests/fixtures/smollm2_real_tensors.json"))
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

    #[test]
    fn gguf_smollm2_tokenizer_matches_transformers() {
        let Some(path) = smollm2_gguf() else { return };
        let f = GgufFile::open(&path).expect("open");
        let tok = f.tokenizer().expect("tokenizer");
        assert_eq!(tok.get_vocab_size(true), 49152);
        let fixture: Value =
            serde_json::from_str(include_str!("../tests/fixtures/smollm2_tokenizer_ids.json"))
                .expect("fixture");
        assert_eq!(fixture["tokenizer_ggml_pre"], "smollm");
        for case in fixture["cases"].as_array().expect("cases") {
            let text = case["text"].as_str().expect("text");
            let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).expect("ids");
            let want_special: Vec<u32> =
                serde_json::from_value(case["ids_with_special_tokens"].clone()).expect("ids");
            assert_eq!(ids(&tok, text, false), want, "{text:?}");
            assert_eq!(
                ids(&tok, text, true),
                want_special,
                "{text:?} with special tokens"
            );
            assert_eq!(tok.decode(&want, false).expect("decode"), text);
        }
        // Where transformers is wrong: its GGUF loader ignores tokenizer.ggml.pre "smollm" and
        // keeps " ٣" (Arabic-Indic three) together as "ĠÙ" + "£", while llama.cpp's \p{N} split
        // and SmolLM2's own tokenizer.json (Digits) cut off every digit first.
        assert_eq!(ids(&tok, " \u{663}", false), [216, 164, 113]);
    }
}
