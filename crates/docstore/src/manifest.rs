//! The index manifest (`manifest.json`) and the chunk file reader.

use std::collections::BTreeMap;
use std::path::Path;

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use crate::bm25::Bm25Params;
use crate::chunk::{ChunkParams, ChunkRecord};
use crate::corpus::CorpusFormat;
use crate::embed::EncoderIdentity;
use crate::error::{Error, Result};
use crate::fsutil::{cast_slice, map_file};
use crate::hnsw::HnswParams;

/// Value of [`Manifest::format`].
pub const FORMAT_NAME: &str = "radit-docstore";
/// Current on-disk format version.
pub const FORMAT_VERSION: u32 = 1;

/// Manifest file name.
pub const MANIFEST: &str = "manifest.json";
/// Chunk records, one JSON object per line.
pub const CHUNKS: &str = "chunks.jsonl";
/// Byte offsets of the chunk lines (u64 little-endian, chunks + 1 entries).
pub const CHUNK_OFFSETS: &str = "chunks.offsets";
/// Embedding matrix, f32 little-endian, row-major `chunks × dim`.
pub const EMBEDDINGS_F32: &str = "embeddings.f32";
/// Optional f16 copy of the embedding matrix.
pub const EMBEDDINGS_F16: &str = "embeddings.f16";
/// Optional HNSW graph.
pub const HNSW: &str = "hnsw.bin";
/// Optional BM25 inverted index.
pub const BM25: &str = "bm25.bin";

/// Size and checksum of one index file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Length in bytes.
    pub bytes: u64,
    /// xxh3-64 of the contents, 16 hex digits.
    pub xxh3: String,
}

/// Where the corpus came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusInfo {
    /// The corpus path as given to the build.
    pub path: String,
    /// The format it was read with.
    pub format: CorpusFormat,
}

/// Counts of the index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Documents read.
    pub documents: u64,
    /// Documents without words.
    pub empty_documents: u64,
    /// Malformed lines/entries skipped plus duplicate ids, see the build's ingest report.
    pub ingest_problems: u64,
    /// Chunks (rows of the embedding matrix).
    pub chunks: u64,
    /// Embedding dimension.
    pub dim: usize,
    /// Mean words per chunk.
    pub words_mean: f64,
    /// Most words in a chunk.
    pub words_max: u64,
}

/// How the embeddings are stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingInfo {
    /// Layout of `embeddings.f32`.
    pub layout: String,
    /// Whether `embeddings.f16` exists.
    pub f16: bool,
    /// Whether every row has unit L2 norm (within 1e-3).
    pub unit_norm: bool,
    /// Chunks per encoder call during the build.
    pub batch_size: usize,
}

/// The approximate index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnnInfo {
    /// `hnsw`.
    pub kind: String,
    /// Construction parameters.
    pub params: HnswParams,
    /// Levels above the base level.
    pub max_level: usize,
    /// Default search list size: the smallest tried that reached the target recall.
    pub ef_search: usize,
    /// Estimated recall@10 at `ef_search`.
    pub recall_at_10: f64,
    /// Indexed rows used as queries for the estimate (their own id excluded).
    pub recall_queries: usize,
    /// Recall@10 per `ef` tried.
    pub recall_curve: Vec<(usize, f64)>,
}

/// The BM25 index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bm25Info {
    /// Parameters.
    pub params: Bm25Params,
    /// Analyzer name.
    pub analyzer: String,
    /// Distinct terms.
    pub terms: u64,
    /// (term, chunk) pairs.
    pub postings: u64,
    /// Mean analyzed chunk length.
    pub avg_doc_len: f64,
}

/// Everything needed to trust and use an index directory. Written last, atomically.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// On-disk format version.
    pub format_version: u32,
    /// The document encoder that produced the embeddings.
    pub encoder: EncoderIdentity,
    /// Chunking parameters.
    pub chunking: ChunkParams,
    /// How chunk text is presented to the encoder.
    pub text_template: String,
    /// Corpus origin.
    pub corpus: CorpusInfo,
    /// Counts.
    pub counts: Counts,
    /// Embedding storage.
    pub embeddings: EmbeddingInfo,
    /// Approximate index, if built.
    pub ann: Option<AnnInfo>,
    /// Lexical index, if built.
    pub bm25: Option<Bm25Info>,
    /// Every data file with its size and checksum.
    pub files: BTreeMap<String, FileEntry>,
}

/// Random access to `chunks.jsonl` through `chunks.offsets`, both memory-mapped.
pub(crate) struct ChunkFile {
    lines: Option<Mmap>,
    offsets: Option<Mmap>,
    n: usize,
}

impl ChunkFile {
    pub(crate) fn open(dir: &Path, n: usize) -> Result<ChunkFile> {
        let lines = map_file(&dir.join(CHUNKS))?;
        let offsets = map_file(&dir.join(CHUNK_OFFSETS))?;
        let cf = ChunkFile { lines, offsets, n };
        let off = cf.offsets_slice().ok_or_else(|| {
            Error::invalid(dir.join(CHUNK_OFFSETS), "misaligned or truncated offsets")
        })?;
        let len = cf.lines.as_ref().map_or(0, |m| m.len()) as u64;
        if off.len() != n + 1
            || off.first() != Some(&0)
            || off.last() != Some(&len)
            || off.windows(2).any(|w| w[0] > w[1])
        {
            return Err(Error::invalid(
                dir.join(CHUNK_OFFSETS),
                format!("offsets do not describe {n} chunks of {CHUNKS}"),
            ));
        }
        Ok(cf)
    }

    fn offsets_slice(&self) -> Option<&[u64]> {
        match &self.offsets {
            Some(m) => cast_slice(m),
            None => Some(&[]),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// The raw JSON line of chunk `i` (without the newline).
    pub(crate) fn raw(&self, i: usize) -> Option<&[u8]> {
        let off = self.offsets_slice()?;
        let (a, b) = (*off.get(i)? as usize, *off.get(i + 1)? as usize);
        let line = self.lines.as_ref()?.get(a..b)?;
        Some(line.strip_suffix(b"\n").unwrap_or(line))
    }

    pub(crate) fn get(&self, i: usize) -> Result<ChunkRecord> {
        let raw = self.raw(i).ok_or_else(|| {
            Error::arg(format!("chunk id {i} out of range (index has {})", self.n))
        })?;
        serde_json::from_slice(raw)
            .map_err(|e| Error::json(CHUNKS, format!("chunk {i} (line {}): {e}", i + 1)))
    }
}
