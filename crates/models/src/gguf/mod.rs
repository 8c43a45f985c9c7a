//! GGUF, llama.cpp's single-file model format: header, metadata and tensor index read over
//! a memory map, with every read bounds-checked against the mapped length.
//!
//! Format: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>. The ggml element types
//! and their dequantization to `f32` are in `blocks`; the Hugging Face tokenizer that the
//! `tokenizer.ggml.*` metadata describes is built in `tokenizer`.

mod blocks;
#[cfg(test)]
mod mutation;
#[cfg(test)]
mod testutil;
mod tokenizer;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

pub use blocks::{dequantize, GgmlType};
pub use tokenizer::SpecialTokenIds;

const MAGIC: [u8; 4] = *b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// GGML_MAX_DIMS.
const MAX_DIMS: u32 = 4;
/// Real files nest arrays at most one level deep; the bound keeps a corrupt header from
/// recursing until the stack overflows.
const MAX_ARRAY_DEPTH: usize = 16;
/// Magic, version, tensor count and metadata count.
const HEADER_LEN: u64 = 4 + 4 + 8 + 8;
/// Longest metadata key: the GGUF spec caps keys at 65,535 bytes.
const MAX_KEY_LEN: usize = u16::MAX as usize;
/// Longest tensor name. The spec (and llama.cpp) allow 63 bytes; the bound is generous so
/// that only corrupt lengths hit it.
const MAX_TENSOR_NAME_LEN: usize = 1 << 12;
/// Longest string value (chat templates run to kilobytes, tokens to bytes).
const MAX_STRING_LEN: usize = 1 << 26;
/// Most elements of one metadata array (the largest vocabularies and merge lists hold
/// under a million). Each element takes 32 bytes in memory, so this also bounds what one
/// corrupt length can allocate.
const MAX_ARRAY_LEN: usize = 1 << 24;
/// Most tensors in one file (real models hold thousands).
const MAX_TENSORS: usize = 1 << 20;
/// Most metadata entries in one file (real files hold a few dozen).
const MAX_METADATA: usize = 1 << 20;
/// How much of a key, tensor name or string value an error message quotes.
const QUOTE_CHARS: usize = 64;

/// A string from the file, quoted for an error message: at most [`QUOTE_CHARS`] characters,
/// with the full length noted when it was cut, so a corrupt length never turns into a
/// message of megabytes.
pub(crate) fn quote(s: &str) -> String {
    let mut chars = s.char_indices();
    match chars.nth(QUOTE_CHARS) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &s[..cut], s.len()),
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
    #[error("GGUF file {} has no tensor named {}", path.display(), quote(name))]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The name looked up.
        name: String,
    },
    /// No metadata entry with that key.
    #[error("GGUF file {} has no metadata key {}", path.display(), quote(key))]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The key looked up.
        key: String,
    },
    /// A metadata entry has a type the caller cannot use.
    #[error("GGUF file {}: metadata key {} is {found}, expected {expected}", path.display(), quote(key))]
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
    #[error("GGUF file {}, tensor {}: {source}", path.display(), quote(name))]
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

    /// A u64 count, refused when it exceeds `max` or when `count * min_size` cannot fit in the
    /// rest of the file, so a corrupt count fails here, naming `what`, instead of driving a
    /// huge allocation.
    fn count(&mut self, what: &str, min_size: usize, max: usize) -> Result<usize, String> {
        let at = self.pos;
        let n = self.u64()?;
        if usize::try_from(n).is_ok_and(|n| n > max) {
            return Err(format!(
                "{what} {n} at byte {at} exceeds the limit of {max} (corrupt file?)"
            ));
        }
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

    /// A length-prefixed string of at most `max` bytes; invalid UTF-8 is replaced.
    fn string(&mut self, what: &str, max: usize) -> Result<String, String> {
        let n = self.count(what, 1, max)?;
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
            8 => GgufValue::String(self.string("string length", MAX_STRING_LEN)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"));
                }
                let elem_ty = self.u32()?;
                let min_size = min_value_size(elem_ty)
                    .ok_or_else(|| format!("array of unknown value type {elem_ty}"))?;
                let n = self.count("array length", min_size, MAX_ARRAY_LEN)?;
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
    let n_tensors = r.count("tensor count", 8 + 4 + 4 + 8, MAX_TENSORS)?;
    let n_kv = r.count("metadata count", 8 + 4 + 1, MAX_METADATA)?;

    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = r
            .string("key length", MAX_KEY_LEN)
            .map_err(|e| format!("metadata entry {i}: key: {e}"))?;
        let value = r
            .u32()
            .and_then(|ty| r.value(ty, 0))
            .map_err(|e| format!("metadata key {}: {e}", quote(&key)))?;
        if metadata.contains_key(&key) {
            return Err(format!("duplicate metadata key {}", quote(&key)));
        }
        metadata.insert(key, value);
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => v
            .as_u64()
            .filter(|a| a.is_power_of_two())
            .ok_or_else(|| format!("general.alignment {v} is not a power of two"))?,
    };
    let alignment = usize::try_from(alignment)
        .map_err(|_| format!("general.alignment {alignment} is too large"))?;

    let mut raw = Vec::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let name = r
            .string("name length", MAX_TENSOR_NAME_LEN)
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
        .map_err(|e: String| format!("tensor info {i} ({}): {e}", quote(&name)))?;
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
                "tensor {} ({} bytes at data offset {}) extends past the end of the file \
                 ({} bytes, data section at {data_offset}): the file is truncated",
                quote(&info.name),
                info.n_bytes,
                info.offset,
                buf.len()
            ));
        }
        if !seen.insert(info.name.clone()) {
            return Err(format!("duplicate tensor name {}", quote(&info.name)));
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
    let (Some(block), Some(type_size)) = (ggml_type.block_size(), ggml_type.type_size()) else {
        return Err(format!(
            "tensor {} has unknown ggml type id {type_id}",
            quote(&name)
        ));
    };
    let overflow = || format!("tensor {}: dimensions {dims:?} overflow", quote(&name));
    let mut n_elements: u64 = 1;
    for &d in dims {
        n_elements = n_elements.checked_mul(d).ok_or_else(overflow)?;
    }
    let row = dims.first().copied().unwrap_or(1);
    if !row.is_multiple_of(block as u64) {
        return Err(format!(
            "tensor {}: row length {row} is not a multiple of the {ggml_type} block size {block}",
            quote(&name)
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
            "tensor {}: data offset {offset} is not a multiple of the alignment {alignment}",
            quote(&name)
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
                msg: format!("tensor {} lies outside the file", quote(&info.name)),
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
}

#[cfg(test)]
mod tests {
    use super::testutil::{
        build_gguf, put_str, sample_metadata, sample_tensors, smollm2_gguf, tiny_bpe_metadata,
        write_temp,
    };
    use super::*;
    use GgufValue as V;

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
        assert!(patched(24, &u64::MAX.to_le_bytes()).contains("key length"));
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

    /// A huge key or name length that still fits in the file must not put the bytes into
    /// the message (a flipped file once printed 226 MB): limits name the field, and
    /// embedded strings are cut.
    #[test]
    fn gguf_long_strings_are_bounded_and_cut_in_messages() {
        let header = |n_tensors: u64, n_kv: u64| {
            let mut b = b"GGUF".to_vec();
            b.extend(3u32.to_le_bytes());
            b.extend(n_tensors.to_le_bytes());
            b.extend(n_kv.to_le_bytes());
            b
        };
        // A key of 1 MB, then an unknown value type: the error quotes the key.
        let mut b = header(0, 1);
        b.extend(((1u64 << 20) - 8).to_le_bytes());
        b.extend(vec![b'A'; (1 << 20) - 8]);
        b.extend(99u32.to_le_bytes());
        let msg = parse(&b).err().unwrap_or_default();
        assert!(
            msg.contains("key length") && msg.contains("exceeds the limit of 65535"),
            "{}",
            &msg[..msg.len().min(300)]
        );
        assert!(msg.len() < 200, "{} bytes", msg.len());
        // Under the key limit: the key is quoted, cut to 64 characters.
        let mut b = header(0, 1);
        put_str(&mut b, &"K".repeat(60_000));
        b.extend(99u32.to_le_bytes());
        let msg = parse(&b).err().unwrap_or_default();
        assert!(
            msg.contains("unknown value type 99") && msg.contains("(60000 bytes)"),
            "{}",
            &msg[..msg.len().min(300)]
        );
        assert!(msg.len() < 300, "{} bytes", msg.len());
        // A tensor name of 1 MB.
        let mut b = header(1, 0);
        b.extend((1u64 << 20).to_le_bytes());
        b.extend(vec![b'n'; 1 << 20]);
        b.extend([0u8; 64]);
        let msg = parse(&b).err().unwrap_or_default();
        assert!(
            msg.contains("tensor info 0: name: name length 1048576"),
            "{}",
            &msg[..msg.len().min(300)]
        );
        assert!(msg.len() < 200, "{} bytes", msg.len());
        // A long tensor name under the limit, with an unknown type: quoted and cut.
        let mut b = header(1, 0);
        put_str(&mut b, &"t".repeat(4000));
        b.extend(1u32.to_le_bytes());
        b.extend(4u64.to_le_bytes());
        b.extend(5u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        let msg = parse(&b).err().unwrap_or_default();
        assert!(
            msg.contains("unknown ggml type id 5"),
            "{}",
            &msg[..msg.len().min(300)]
        );
        assert!(msg.len() < 300, "{} bytes", msg.len());
        // Counts past the sane limits fail even when the file could hold them.
        let b = header(0, (1 << 20) + 1);
        assert!(parse(&b)
            .err()
            .unwrap_or_default()
            .contains("metadata count"));
        let mut b = header(0, 1);
        put_str(&mut b, "a");
        b.extend(9u32.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend(((1u64 << 24) + 1).to_le_bytes());
        b.extend(vec![0u8; (1 << 24) + 1]);
        let msg = parse(&b).err().unwrap_or_default();
        assert!(
            msg.contains("array length 16777217") && msg.contains("limit"),
            "{msg}"
        );
        assert_eq!(quote("short"), "\"short\"");
        assert_eq!(
            quote(&"é".repeat(100)),
            format!("{:?}... (200 bytes)", "é".repeat(64))
        );
    }

    /// A Llama GGUF's dimensions are bounded and checked against the tensors present before
    /// anything is sized by them (`llama.block_count = 2^31` used to abort the process).
    #[test]
    fn gguf_llama_dimensions_are_validated() {
        use super::testutil::{tiny_llama_gguf, tiny_llama_gguf_with};
        use crate::loader::llama_config_from_gguf;
        let dir = tempfile::tempdir().expect("tempdir");
        let config_err = |overrides: &[(&'static str, GgufValue)]| {
            let (bytes, _) = tiny_llama_gguf_with(overrides);
            let path = write_temp(&dir, "llama.gguf", &bytes);
            let f = GgufFile::open(&path).expect("open");
            match llama_config_from_gguf(&path, &f) {
                Ok(c) => panic!("{overrides:?} accepted: {c:?}"),
                Err(e) => e.to_string(),
            }
        };
        let (bytes, _) = tiny_llama_gguf();
        let path = write_temp(&dir, "good.gguf", &bytes);
        let f = GgufFile::open(&path).expect("open");
        let c = llama_config_from_gguf(&path, &f).expect("valid file");
        assert_eq!(
            (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.head_dim),
            (11, 32, 2, 8)
        );

        let e = config_err(&[("llama.block_count", V::U32(1 << 31))]);
        assert!(
            e.contains("llama.block_count must be between 1 and 4096, got 2147483648"),
            "{e}"
        );
        let e = config_err(&[("llama.block_count", V::U32(3))]);
        assert!(
            e.contains("llama.block_count is 3 but the file has tensors for 2 block(s)"),
            "{e}"
        );
        let e = config_err(&[("llama.embedding_length", V::U64(1 << 40))]);
        assert!(e.contains("llama.embedding_length must be between"), "{e}");
        let e = config_err(&[("llama.embedding_length", V::U32(64))]);
        assert!(
            e.contains("token_embd.weight") && e.contains("[11, 64]"),
            "{e}"
        );
        let e = config_err(&[("llama.attention.head_count", V::U32(0))]);
        assert!(
            e.contains("llama.attention.head_count must be between"),
            "{e}"
        );
        let e = config_err(&[("llama.attention.head_count", V::U32(5))]);
        assert!(
            e.contains("not a multiple of llama.attention.head_count 5"),
            "{e}"
        );
        let e = config_err(&[("llama.feed_forward_length", V::U64(u64::MAX))]);
        assert!(
            e.contains("llama.feed_forward_length must be between"),
            "{e}"
        );
        let e = config_err(&[("llama.rope.freq_base", V::F32(f32::NAN))]);
        assert!(
            e.contains("llama.rope.freq_base must be finite and positive, got NaN"),
            "{e}"
        );
        let e = config_err(&[("llama.attention.layer_norm_rms_epsilon", V::F32(-1e-5))]);
        assert!(
            e.contains("llama.attention.layer_norm_rms_epsilon must be finite and positive"),
            "{e}"
        );
        let e = config_err(&[("llama.attention.head_count_kv", V::U32(3))]);
        assert!(e.contains("not a multiple of num_key_value_heads 3"), "{e}");
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
}
