//! File helpers: JSON and streamed writes on top of radit-util's atomic replace, checksums,
//! and zero-copy views of memory-mapped little-endian arrays.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use memmap2::Mmap;
use radit_util::fs::{atomic_write, rename_durable};
use serde::Serialize;

use crate::error::{Error, Result};

/// Serializes `value` as pretty JSON (plus a newline) and writes it atomically.
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::json(path, e))?;
    bytes.push(b'\n');
    atomic_write(path, &bytes).map_err(Error::from)
}

/// Reads and parses a JSON file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::json(path, e))
}

/// `path` with `.tmp` appended to its file name. Fixed, not per process like radit-util's
/// temporaries: a resumed build overwrites the big streamed file a killed one left, instead of
/// leaving it in the index folder.
fn tmp_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// A file being written through a temporary name; [`TmpFile::commit`] fsyncs and renames it.
pub(crate) struct TmpFile {
    tmp: std::path::PathBuf,
    dest: std::path::PathBuf,
    w: std::io::BufWriter<File>,
}

impl TmpFile {
    pub(crate) fn create(dest: &Path) -> Result<Self> {
        let tmp = tmp_path(dest);
        let f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(TmpFile {
            tmp,
            dest: dest.to_path_buf(),
            w: std::io::BufWriter::with_capacity(1 << 20, f),
        })
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.w.write_all(bytes).map_err(|e| Error::io(&self.tmp, e))
    }

    pub(crate) fn commit(self) -> Result<()> {
        let f = self
            .w
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        drop(f);
        rename_durable(&self.tmp, &self.dest).map_err(Error::from)
    }
}

/// Opens a file for appending (creating it if needed).
pub(crate) fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// Memory-maps a whole file read-only (an empty file maps to an empty slice).
pub(crate) fn map_file(path: &Path) -> Result<Option<Mmap>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: the index files are never modified in place (writers use temporary files and
    // rename); a concurrent external modification is outside the contract, as for any mmap user.
    let m = unsafe { Mmap::map(&f) }.map_err(|e| Error::io(path, e))?;
    Ok(Some(m))
}

/// xxh3-64 of a byte slice, as 16 hex digits.
pub(crate) fn xxh3_hex(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

/// xxh3-64 of a file (memory-mapped), as 16 hex digits, with its length.
pub(crate) fn hash_file(path: &Path) -> Result<(u64, String)> {
    match map_file(path)? {
        Some(m) => Ok((m.len() as u64, xxh3_hex(&m))),
        None => Ok((0, xxh3_hex(&[]))),
    }
}

/// A plain-old-data element type that may be viewed from little-endian bytes.
pub(crate) trait Pod: Copy + 'static {}
impl Pod for u32 {}
impl Pod for u64 {}
impl Pod for f32 {}
impl Pod for half::f16 {}

/// Views `bytes` as a slice of `T`, or `None` if misaligned or of a partial length.
pub(crate) fn cast_slice<T: Pod>(bytes: &[u8]) -> Option<&[T]> {
    let size = std::mem::size_of::<T>();
    if cfg!(target_endian = "big")
        || !bytes.len().is_multiple_of(size)
        || !(bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>())
    {
        return None;
    }
    // SAFETY: alignment and length were checked; `T` is plain data valid for any bit pattern
    // (u32, u64, f32, f16), and the layout is little-endian on this target.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

/// Appends the little-endian bytes of `vals` to `out`.
pub(crate) fn extend_u32(out: &mut Vec<u8>, vals: &[u32]) {
    out.reserve(vals.len() * 4);
    for v in vals {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Appends the little-endian bytes of `vals` to `out`.
pub(crate) fn extend_u64(out: &mut Vec<u8>, vals: &[u64]) {
    out.reserve(vals.len() * 8);
    for v in vals {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Appends the little-endian bytes of `vals` to `out`.
pub(crate) fn extend_f32(out: &mut Vec<u8>, vals: &[f32]) {
    out.reserve(vals.len() * 4);
    for v in vals {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Pads `out` with zeros to a multiple of 8 bytes.
pub(crate) fn pad8(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
}
