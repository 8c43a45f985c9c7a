//! Opening an index and searching it: dense (exact or HNSW), BM25, and hybrid (reciprocal rank
//! fusion), all behind one call that returns chunk ids, scores and texts.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use half::f16;
use memmap2::Mmap;
use rayon::prelude::*;

use crate::bm25::Bm25;
use crate::build::partial_dir;
use crate::chunk::ChunkRecord;
use crate::embed::{Embedder, EncoderIdentity};
use crate::error::{clip, Error, Result};
use crate::exact::{self, Rows};
use crate::fsutil::{cast_slice, hash_file, read_json};
use crate::hnsw::Hnsw;
use crate::manifest::*;
use crate::topk::{sort_hits, Scored};

/// How dense search is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dense {
    /// HNSW if the index has one (at its default `ef`), exact otherwise.
    Auto,
    /// Exact inner product over the f32 matrix.
    Exact,
    /// Exact inner product over the f16 matrix (half the memory traffic; needs `--f16` at build).
    ExactF16,
    /// HNSW with the given search list size (`None`: the default chosen at build time).
    Ann {
        /// Search list size.
        ef: Option<usize>,
    },
}

/// Reciprocal-rank-fusion settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hybrid {
    /// The dense side.
    pub dense: Dense,
    /// RRF constant: a hit at rank r (from 1) contributes `1 / (rrf_k + r)`.
    pub rrf_k: f32,
    /// How many hits of each side are fused (at least `k`).
    pub depth: usize,
}

impl Default for Hybrid {
    fn default() -> Self {
        Hybrid {
            dense: Dense::Auto,
            rrf_k: 60.0,
            depth: 100,
        }
    }
}

/// What kind of search to run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SearchMode {
    /// Inner product of query embeddings with chunk embeddings.
    Dense(Dense),
    /// BM25 over query texts.
    Bm25,
    /// Dense and BM25 fused by reciprocal rank; needs embeddings and texts.
    Hybrid(Hybrid),
}

impl Default for SearchMode {
    fn default() -> Self {
        SearchMode::Dense(Dense::Auto)
    }
}

impl SearchMode {
    /// Whether this mode needs query embeddings.
    pub fn needs_embeddings(&self) -> bool {
        !matches!(self, SearchMode::Bm25)
    }
    /// Whether this mode needs query texts.
    pub fn needs_texts(&self) -> bool {
        !matches!(self, SearchMode::Dense(_))
    }
}

impl FromStr for SearchMode {
    type Err = Error;
    /// `dense` (HNSW if present, else exact), `exact`, `exact-f16`, `ann`/`hnsw`, `bm25`, `hybrid`.
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "dense" => SearchMode::Dense(Dense::Auto),
            "exact" => SearchMode::Dense(Dense::Exact),
            "exact-f16" | "f16" => SearchMode::Dense(Dense::ExactF16),
            "ann" | "hnsw" => SearchMode::Dense(Dense::Ann { ef: None }),
            "bm25" | "lexical" => SearchMode::Bm25,
            "hybrid" | "rrf" => SearchMode::Hybrid(Hybrid::default()),
            other => {
                return Err(Error::arg(format!(
                    "unknown search mode `{other}` (expected dense, exact, exact-f16, ann, bm25 or hybrid)"
                )))
            }
        })
    }
}

/// A batch of queries: embeddings (`n × dim`, row-major), texts, or both.
#[derive(Clone, Copy, Debug, Default)]
pub struct Queries<'a> {
    /// Query embeddings, row-major, `dim` floats each.
    pub embeddings: Option<&'a [f32]>,
    /// Query texts (for BM25 and hybrid).
    pub texts: Option<&'a [&'a str]>,
}

impl<'a> Queries<'a> {
    /// Embeddings only.
    pub fn embeddings(e: &'a [f32]) -> Self {
        Queries {
            embeddings: Some(e),
            texts: None,
        }
    }
    /// Texts only.
    pub fn texts(t: &'a [&'a str]) -> Self {
        Queries {
            embeddings: None,
            texts: Some(t),
        }
    }
    /// Both (same number of queries).
    pub fn both(e: &'a [f32], t: &'a [&'a str]) -> Self {
        Queries {
            embeddings: Some(e),
            texts: Some(t),
        }
    }
}

/// One search result with its chunk.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// Chunk row in the index (also the row of its embedding).
    pub id: u32,
    /// Inner product, BM25 score, or fused RRF score.
    pub score: f32,
    /// The chunk: document id, title, section, text, metadata.
    pub chunk: ChunkRecord,
}

/// Options of [`DocStore::open_with`].
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Hash every file and compare with the manifest (on by default; xxh3 runs at several GB/s).
    pub verify_checksums: bool,
    /// Fail unless the index was built with a compatible document encoder.
    pub expected_encoder: Option<EncoderIdentity>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            verify_checksums: true,
            expected_encoder: None,
        }
    }
}

/// An open index: memory-mapped chunks and embeddings, optional HNSW graph and BM25 index.
pub struct DocStore {
    dir: PathBuf,
    manifest: Manifest,
    chunks: ChunkFile,
    emb: Option<Mmap>,
    emb16: Option<Mmap>,
    hnsw: Option<Hnsw>,
    bm25: Option<Bm25>,
}

impl fmt::Debug for DocStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DocStore")
            .field("dir", &self.dir)
            .field("chunks", &self.len())
            .field("dim", &self.dim())
            .finish()
    }
}

fn simple_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != ".."
}

impl DocStore {
    /// Opens `dir`, verifying checksums.
    pub fn open(dir: impl AsRef<Path>) -> Result<DocStore> {
        Self::open_with(dir, &OpenOptions::default())
    }

    /// Opens `dir`, verifying checksums and that it was built with `encoder`.
    pub fn open_for_encoder(dir: impl AsRef<Path>, encoder: &EncoderIdentity) -> Result<DocStore> {
        Self::open_with(
            dir,
            &OpenOptions {
                expected_encoder: Some(encoder.clone()),
                ..OpenOptions::default()
            },
        )
    }

    /// Opens `dir` with options.
    pub fn open_with(dir: impl AsRef<Path>, opts: &OpenOptions) -> Result<DocStore> {
        let dir = dir.as_ref().to_path_buf();
        let mpath = dir.join(MANIFEST);
        if !mpath.is_file() {
            if !dir.is_dir() {
                return Err(Error::invalid(&dir, "no such index directory"));
            }
            let partial = partial_dir(&dir);
            let msg = if partial.is_dir() {
                format!(
                    "not a finished index (no {MANIFEST}); an interrupted build is in {}: rerun the build to resume it",
                    partial.display()
                )
            } else {
                format!("not a radit index (no {MANIFEST})")
            };
            return Err(Error::invalid(&dir, msg));
        }
        let manifest: Manifest = read_json(&mpath)?;
        if manifest.format != FORMAT_NAME {
            return Err(Error::invalid(
                &dir,
                format!(
                    "{MANIFEST} is for format `{}`, not {FORMAT_NAME}",
                    clip(&manifest.format)
                ),
            ));
        }
        if manifest.format_version != FORMAT_VERSION {
            return Err(Error::invalid(
                &dir,
                format!(
                    "index format version {} is not supported (this build reads version {FORMAT_VERSION}); rebuild the index",
                    manifest.format_version
                ),
            ));
        }
        if let Some(given) = &opts.expected_encoder {
            if !manifest.encoder.compatible_with(given) {
                return Err(Error::EncoderMismatch {
                    dir,
                    built: Box::new(manifest.encoder.clone()),
                    given: Box::new(given.clone()),
                });
            }
        }
        let mut required = vec![CHUNKS, CHUNK_OFFSETS, EMBEDDINGS_F32];
        if manifest.embeddings.f16 {
            required.push(EMBEDDINGS_F16);
        }
        if manifest.ann.is_some() {
            required.push(HNSW);
        }
        if manifest.bm25.is_some() {
            required.push(BM25);
        }
        for r in &required {
            if !manifest.files.contains_key(*r) {
                return Err(Error::invalid(
                    &dir,
                    format!("{MANIFEST} does not list {r}"),
                ));
            }
        }
        let checks: Vec<(&String, &FileEntry)> = manifest.files.iter().collect();
        checks.par_iter().try_for_each(|(name, entry)| {
            if !simple_name(name) {
                return Err(Error::invalid(
                    &dir,
                    format!("bad file name {:?} in {MANIFEST}", clip(name)),
                ));
            }
            let path = dir.join(name);
            let meta = std::fs::metadata(&path).map_err(|e| Error::Checksum {
                file: path.clone(),
                message: format!("cannot read it: {e}"),
            })?;
            if meta.len() != entry.bytes {
                return Err(Error::Checksum {
                    file: path,
                    message: format!(
                        "size is {} bytes, the manifest records {}",
                        meta.len(),
                        entry.bytes
                    ),
                });
            }
            if opts.verify_checksums {
                let (_, h) = hash_file(&path)?;
                if h != entry.xxh3 {
                    return Err(Error::Checksum {
                        file: path,
                        message: format!("xxh3 is {h}, the manifest records {}", clip(&entry.xxh3)),
                    });
                }
            }
            Ok(())
        })?;
        let n = manifest.counts.chunks as usize;
        let dim = manifest.counts.dim;
        if dim == 0 {
            return Err(Error::invalid(&dir, "dimension 0 in the manifest"));
        }
        let chunks = ChunkFile::open(&dir, n)?;
        let emb = crate::fsutil::map_file(&dir.join(EMBEDDINGS_F32))?;
        let emb_len = emb.as_ref().map_or(0, |m| m.len());
        if emb_len != n * dim * 4 || emb.as_ref().is_some_and(|m| cast_slice::<f32>(m).is_none()) {
            return Err(Error::invalid(
                dir.join(EMBEDDINGS_F32),
                format!("expected {n} × {dim} little-endian f32 values"),
            ));
        }
        let emb16 = if manifest.embeddings.f16 {
            let m = crate::fsutil::map_file(&dir.join(EMBEDDINGS_F16))?;
            if m.as_ref().map_or(0, |m| m.len()) != n * dim * 2 {
                return Err(Error::invalid(
                    dir.join(EMBEDDINGS_F16),
                    format!("expected {n} × {dim} f16 values"),
                ));
            }
            m
        } else {
            None
        };
        let hnsw = match &manifest.ann {
            Some(_) => Some(Hnsw::open(&dir.join(HNSW), n, dim)?),
            None => None,
        };
        let bm25 = match &manifest.bm25 {
            Some(_) => Some(Bm25::open(&dir.join(BM25), n)?),
            None => None,
        };
        Ok(DocStore {
            dir,
            manifest,
            chunks,
            emb,
            emb16,
            hnsw,
            bm25,
        })
    }

    /// Fails with [`Error::EncoderMismatch`] unless the index was built with `encoder`.
    pub fn check_encoder(&self, encoder: &EncoderIdentity) -> Result<()> {
        if self.manifest.encoder.compatible_with(encoder) {
            Ok(())
        } else {
            Err(Error::EncoderMismatch {
                dir: self.dir.clone(),
                built: Box::new(self.manifest.encoder.clone()),
                given: Box::new(encoder.clone()),
            })
        }
    }

    /// The index folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The index's identity: xxh3-64 over the names, sizes and checksums of every data file
    /// in its manifest, 16 hex digits. Two indexes with the same identity hold the same chunks
    /// and embeddings; a rebuilt or different index gets another.
    pub fn identity(&self) -> String {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for (name, entry) in &self.manifest.files {
            h.update(name.as_bytes());
            h.update(&[0]);
            h.update(&entry.bytes.to_le_bytes());
            h.update(entry.xxh3.as_bytes());
        }
        format!("{:016x}", h.digest())
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether the index has no chunks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.manifest.counts.dim
    }

    /// Whether an HNSW graph is present.
    pub fn has_ann(&self) -> bool {
        self.hnsw.is_some()
    }

    /// Whether a BM25 index is present.
    pub fn has_bm25(&self) -> bool {
        self.bm25.is_some()
    }

    /// The whole f32 embedding matrix (`len() × dim()`, row-major), memory-mapped.
    pub fn embeddings(&self) -> &[f32] {
        self.emb.as_ref().and_then(|m| cast_slice(m)).unwrap_or(&[])
    }

    /// The f16 matrix, if built.
    pub fn embeddings_f16(&self) -> Option<&[f16]> {
        self.emb16.as_ref().and_then(|m| cast_slice(m))
    }

    /// The embedding of chunk `id`.
    pub fn embedding(&self, id: u32) -> Option<&[f32]> {
        let d = self.dim();
        self.embeddings()
            .get(id as usize * d..(id as usize + 1) * d)
    }

    /// The chunk record of row `id`.
    pub fn chunk(&self, id: u32) -> Result<ChunkRecord> {
        self.chunks.get(id as usize)
    }

    /// Attaches chunk records to scored ids.
    pub fn hits(&self, scored: &[Scored]) -> Result<Vec<Hit>> {
        scored
            .iter()
            .map(|s| {
                Ok(Hit {
                    id: s.id,
                    score: s.score,
                    chunk: self.chunk(s.id)?,
                })
            })
            .collect()
    }

    /// Dense top-`k` for each query embedding (rows of `queries`).
    pub fn search_dense(
        &self,
        queries: &[f32],
        k: usize,
        dense: Dense,
    ) -> Result<Vec<Vec<Scored>>> {
        let dim = self.dim();
        if !queries.len().is_multiple_of(dim) {
            return Err(Error::arg(format!(
                "query embeddings have {} values, not a multiple of the index dimension {dim}",
                queries.len()
            )));
        }
        let ann = |ef: Option<usize>| -> Result<Vec<Vec<Scored>>> {
            let (h, info) = match (&self.hnsw, &self.manifest.ann) {
                (Some(h), Some(i)) => (h, i),
                _ => {
                    return Err(Error::arg(format!(
                        "index {} has no HNSW graph (build it with hnsw enabled)",
                        self.dir.display()
                    )))
                }
            };
            h.search(self.embeddings(), queries, k, ef.unwrap_or(info.ef_search))
        };
        match dense {
            Dense::Auto if self.hnsw.is_some() => ann(None),
            Dense::Auto | Dense::Exact => {
                exact::search(Rows::F32(self.embeddings()), dim, queries, k)
            }
            Dense::ExactF16 => match self.embeddings_f16() {
                Some(m) => exact::search(Rows::F16(m), dim, queries, k),
                None => Err(Error::arg(format!(
                    "index {} has no f16 embeddings (build it with f16 enabled)",
                    self.dir.display()
                ))),
            },
            Dense::Ann { ef } => ann(ef),
        }
    }

    /// BM25 top-`k` for each query text.
    pub fn search_bm25(&self, texts: &[&str], k: usize) -> Result<Vec<Vec<Scored>>> {
        match &self.bm25 {
            Some(b) => Ok(b.search(texts, k)),
            None => Err(Error::arg(format!(
                "index {} has no BM25 index (build it with bm25 enabled)",
                self.dir.display()
            ))),
        }
    }

    /// Top-`k` ids and scores per query in any mode.
    pub fn search_ids(
        &self,
        q: &Queries<'_>,
        k: usize,
        mode: &SearchMode,
    ) -> Result<Vec<Vec<Scored>>> {
        let dim = self.dim();
        let ne = q.embeddings.map(|e| e.len() / dim.max(1));
        let nt = q.texts.map(|t| t.len());
        if let (Some(a), Some(b)) = (ne, nt) {
            if a != b {
                return Err(Error::arg(format!(
                    "{a} query embeddings but {b} query texts"
                )));
            }
        }
        let need_e = || {
            q.embeddings
                .ok_or_else(|| Error::arg("this search mode needs query embeddings"))
        };
        let need_t = || {
            q.texts
                .ok_or_else(|| Error::arg("this search mode needs query texts"))
        };
        match mode {
            SearchMode::Dense(d) => self.search_dense(need_e()?, k, *d),
            SearchMode::Bm25 => self.search_bm25(need_t()?, k),
            SearchMode::Hybrid(h) => {
                let (e, t) = (need_e()?, need_t()?);
                let depth = h.depth.max(k);
                let dense = self.search_dense(e, depth, h.dense)?;
                let lex = self.search_bm25(t, depth)?;
                Ok(dense
                    .iter()
                    .zip(&lex)
                    .map(|(a, b)| rrf(&[a, b], h.rrf_k, k))
                    .collect())
            }
        }
    }

    /// Top-`k` hits (ids, scores and chunk texts) per query in any mode: the retriever-facing call.
    pub fn search(&self, q: &Queries<'_>, k: usize, mode: &SearchMode) -> Result<Vec<Vec<Hit>>> {
        self.search_ids(q, k, mode)?
            .iter()
            .map(|s| self.hits(s))
            .collect()
    }

    /// Summary for `radit index stats`.
    pub fn stats(&self) -> IndexStats {
        let files: Vec<(String, u64)> = self
            .manifest
            .files
            .iter()
            .map(|(k, v)| (k.clone(), v.bytes))
            .collect();
        IndexStats {
            dir: self.dir.clone(),
            total_bytes: files.iter().map(|f| f.1).sum(),
            files,
            manifest: self.manifest.clone(),
        }
    }
}

/// Reciprocal rank fusion of ranked lists; ties broken by lower id.
pub fn rrf(lists: &[&Vec<Scored>], rrf_k: f32, k: usize) -> Vec<Scored> {
    let mut fused: HashMap<u32, f64> = HashMap::new();
    for list in lists {
        for (rank, s) in list.iter().enumerate() {
            *fused.entry(s.id).or_insert(0.0) += 1.0 / (rrf_k as f64 + rank as f64 + 1.0);
        }
    }
    let mut v: Vec<Scored> = fused
        .into_iter()
        .map(|(id, s)| Scored {
            id,
            score: s as f32,
        })
        .collect();
    sort_hits(&mut v);
    v.truncate(k);
    v
}

/// Index statistics; `Display` prints the report of `radit index stats`.
#[derive(Clone, Debug)]
pub struct IndexStats {
    /// Index folder.
    pub dir: PathBuf,
    /// Data files and their sizes.
    pub files: Vec<(String, u64)>,
    /// Sum of the file sizes.
    pub total_bytes: u64,
    /// The full manifest.
    pub manifest: Manifest,
}

fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = b as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < units.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{x:.1} {}", units[u])
    }
}

impl fmt::Display for IndexStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.manifest;
        writeln!(f, "index      {}", self.dir.display())?;
        writeln!(f, "format     {} v{}", m.format, m.format_version)?;
        writeln!(f, "encoder    {}", m.encoder)?;
        writeln!(
            f,
            "corpus     {} ({}), {} documents ({} empty, {} ingest problems)",
            m.corpus.path,
            m.corpus.format,
            m.counts.documents,
            m.counts.empty_documents,
            m.counts.ingest_problems
        )?;
        writeln!(
            f,
            "chunks     {} (max {} words, overlap {}; mean {:.1} words, longest {})",
            m.counts.chunks,
            m.chunking.max_words,
            m.chunking.overlap,
            m.counts.words_mean,
            m.counts.words_max
        )?;
        writeln!(
            f,
            "embeddings {} × {} f32{}{}",
            m.counts.chunks,
            m.counts.dim,
            if m.embeddings.f16 { " + f16 copy" } else { "" },
            if m.embeddings.unit_norm {
                ", unit norm"
            } else {
                ", not unit norm"
            }
        )?;
        match &m.ann {
            Some(a) => writeln!(
                f,
                "ann        hnsw m={} ef_construction={} levels={}; default ef {} with estimated recall@10 {:.3} ({} queries)",
                a.params.m,
                a.params.ef_construction,
                a.max_level + 1,
                a.ef_search,
                a.recall_at_10,
                a.recall_queries
            )?,
            None => writeln!(f, "ann        none")?,
        }
        match &m.bm25 {
            Some(b) => writeln!(
                f,
                "bm25       k1={} b={} analyzer={}; {} terms, {} postings, mean length {:.1}",
                b.params.k1, b.params.b, b.analyzer, b.terms, b.postings, b.avg_doc_len
            )?,
            None => writeln!(f, "bm25       none")?,
        }
        write!(f, "files      {}", human_bytes(self.total_bytes))?;
        for (name, bytes) in &self.files {
            write!(f, "\n  {name:<20} {}", human_bytes(*bytes))?;
        }
        Ok(())
    }
}

/// A query encoder paired with an index: text in, hits out.
///
/// The query encoder may differ from the document encoder that built the index (RA-DIT updates
/// only the query side); only the dimension must agree.
pub struct Retriever<'a, E: Embedder + ?Sized> {
    store: &'a DocStore,
    encoder: &'a E,
}

impl<'a, E: Embedder + ?Sized> Retriever<'a, E> {
    /// Pairs `store` with a query `encoder` of the same dimension.
    pub fn new(store: &'a DocStore, encoder: &'a E) -> Result<Self> {
        if encoder.dim() != store.dim() {
            return Err(Error::arg(format!(
                "query encoder dimension {} differs from the index dimension {} ({})",
                encoder.dim(),
                store.dim(),
                store.manifest().encoder
            )));
        }
        Ok(Retriever { store, encoder })
    }

    /// The index.
    pub fn store(&self) -> &DocStore {
        self.store
    }

    /// Embeds the query texts (as the mode requires) and returns top-`k` ids and scores.
    pub fn retrieve_ids(
        &self,
        texts: &[&str],
        k: usize,
        mode: &SearchMode,
    ) -> Result<Vec<Vec<Scored>>> {
        let emb: Vec<f32> = if mode.needs_embeddings() {
            let vecs = self
                .encoder
                .embed(texts)
                .map_err(|e| Error::arg(format!("query encoder failed: {e}")))?;
            if vecs.len() != texts.len() || vecs.iter().any(|v| v.len() != self.store.dim()) {
                return Err(Error::arg(
                    "query encoder returned embeddings of the wrong shape",
                ));
            }
            vecs.concat()
        } else {
            Vec::new()
        };
        let q = Queries {
            embeddings: mode.needs_embeddings().then_some(emb.as_slice()),
            texts: Some(texts),
        };
        self.store.search_ids(&q, k, mode)
    }

    /// Like [`Retriever::retrieve_ids`], with chunk texts.
    pub fn retrieve(&self, texts: &[&str], k: usize, mode: &SearchMode) -> Result<Vec<Vec<Hit>>> {
        self.retrieve_ids(texts, k, mode)?
            .iter()
            .map(|s| self.store.hits(s))
            .collect()
    }
}
