//! Building an index: ingest and chunk, embed in resumable batches, then finalize
//! (f16 copy, BM25, HNSW with a recall estimate, checksums, manifest) and move into place.
//!
//! Everything is written inside `<out>.partial/`. Chunking writes `chunks.jsonl` and
//! `chunks.offsets` through temporary names. Embedding appends each batch to
//! `embeddings.f32.partial`, fsyncs it, then atomically rewrites `embed-progress.json`; on
//! resume, rows beyond the recorded progress are truncated away, so a batch is either fully
//! recorded or recomputed, never half-used. The manifest is written last, and the folder is then
//! renamed to `<out>`: a crash at any point leaves either the old index, or no index plus a
//! resumable `.partial` folder, never a half-written index that opens as valid.
//!
//! A build holds an exclusive lock on `<out>.lock` (next to `<out>`, left in place) from start to
//! end, so two builds of one output never interleave: the second fails at once with
//! [`Error::Locked`].
//!
//! What a new build does with an existing `<out>.partial/`:
//!
//! * same settings (corpus path and fingerprint, format, chunking, encoder, batch size): resume,
//!   whether the previous attempt was killed or failed (a failure is recorded in its build state);
//! * different settings, and the previous attempt failed, or it holds no embeddings yet, or its
//!   build state is missing or unreadable: discard it with a warning (nothing in it is a
//!   finished artifact, and the change is most likely the fix of what failed);
//! * different settings, and a killed build that already holds embeddings: refuse with
//!   [`Error::ResumeMismatch`] (the embeddings may be hours of work); `restart` discards it.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use half::f16;
use radit_util::fs::{atomic_write, rename_durable, replace_dir, sync_dir};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::bm25::{Bm25Builder, Bm25Params};
use crate::chunk::{chunk_document, ChunkParams, TEXT_TEMPLATE};
use crate::corpus::{fingerprint, read_corpus, CorpusFormat, IngestReport};
use crate::embed::{Embedder, EncoderIdentity};
use crate::error::{Error, Result};
use crate::fsutil::{
    cast_slice, hash_file, map_file, open_append, read_json, write_json_atomic, TmpFile,
};
use crate::hnsw::{self, HnswParams};
use crate::manifest::*;
use crate::progress::{fmt_duration, note, Progress, ProgressMode};
use crate::text::ANALYZER;
use crate::topk::Scored;
use radit_util::shard::Shard;

pub(crate) const STATE: &str = "build-state.json";
pub(crate) const PROGRESS: &str = "embed-progress.json";
const EMB_PARTIAL: &str = "embeddings.f32.partial";
/// Rows used as queries for the HNSW recall estimate.
const RECALL_QUERIES: usize = 200;
/// Search sizes tried for the recall estimate.
const EF_GRID: [usize; 7] = [16, 32, 64, 128, 256, 512, 1024];

/// Options of [`build_index`].
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// How to read the corpus.
    pub format: CorpusFormat,
    /// Chunking parameters.
    pub chunking: ChunkParams,
    /// Chunks per encoder call (and per resumable step).
    pub batch_size: usize,
    /// Also store an f16 copy of the embeddings.
    pub f16: bool,
    /// Build an HNSW graph.
    pub hnsw: Option<HnswParams>,
    /// Build a BM25 index.
    pub bm25: Option<Bm25Params>,
    /// Progress reporting on stderr.
    pub progress: ProgressMode,
    /// Replace an existing index at the output path.
    pub overwrite: bool,
    /// Discard an interrupted build instead of resuming it.
    pub restart: bool,
    /// Fail if the corpus has malformed lines or duplicate ids (default: report and continue).
    pub strict: bool,
    /// Embed only this shard's chunks into `<out>.shards/shard-I-of-N` (see [`crate::shard`]);
    /// [`Shard::WHOLE`] builds the index itself.
    pub shard: Shard,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            format: CorpusFormat::Auto,
            chunking: ChunkParams::default(),
            batch_size: 64,
            f16: false,
            hnsw: None,
            bm25: None,
            progress: ProgressMode::Auto,
            overwrite: false,
            restart: false,
            strict: false,
            shard: Shard::WHOLE,
        }
    }
}

/// What a build did.
#[derive(Clone, Debug)]
pub struct BuildReport {
    /// The finished index.
    pub out: PathBuf,
    /// Ingestion summary (from the first run if this one resumed).
    pub ingest: IngestReport,
    /// Chunks in the index.
    pub chunks: usize,
    /// Chunks that were already embedded when this run started (0 for a fresh build).
    pub resumed_from: usize,
    /// Chunks embedded by this run.
    pub embedded: usize,
    /// Seconds spent embedding in this run.
    pub embed_seconds: f64,
    /// Embedding throughput of this run.
    pub chunks_per_second: f64,
    /// HNSW construction seconds, if built.
    pub hnsw_seconds: Option<f64>,
    /// Estimated HNSW recall@10 at the default `ef`, if built.
    pub hnsw_recall_at_10: Option<f64>,
    /// Default HNSW `ef`, if built.
    pub hnsw_ef_search: Option<usize>,
    /// Wall time of this run.
    pub total_seconds: f64,
}

impl fmt::Display for BuildReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "index {}: {} chunks", self.out.display(), self.chunks)?;
        writeln!(f, "  {}", self.ingest)?;
        if self.resumed_from > 0 {
            writeln!(
                f,
                "  resumed: {} chunks were already embedded",
                self.resumed_from
            )?;
        }
        writeln!(
            f,
            "  embedded {} chunks in {:.1} s ({:.1} chunks/s)",
            self.embedded, self.embed_seconds, self.chunks_per_second
        )?;
        if let (Some(s), Some(r), Some(ef)) = (
            self.hnsw_seconds,
            self.hnsw_recall_at_10,
            self.hnsw_ef_search,
        ) {
            writeln!(
                f,
                "  hnsw built in {s:.1} s, estimated recall@10 {r:.3} at ef {ef}"
            )?;
        }
        write!(f, "  total {:.1} s", self.total_seconds)
    }
}

/// Settings an interrupted build must share with the one resuming it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Settings {
    pub(crate) format_version: u32,
    pub(crate) corpus_path: String,
    pub(crate) corpus_fingerprint: String,
    pub(crate) format: CorpusFormat,
    pub(crate) chunking: ChunkParams,
    pub(crate) encoder: EncoderIdentity,
    pub(crate) batch_size: usize,
    /// `(I, N)` of a shard build; absent for the whole index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) shard: Option<(usize, usize)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ChunkSummary {
    pub(crate) chunks: u64,
    words_sum: u64,
    words_max: u64,
    ingest: IngestReport,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct State {
    settings: Settings,
    chunked: Option<ChunkSummary>,
    /// The error of the last attempt, if it failed (rather than being killed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failed: Option<String>,
}

/// Progress of the embedding phase, rewritten atomically after every batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbedProgress {
    /// Chunk rows whose embeddings are durably stored.
    pub rows_done: u64,
    /// Total chunk rows.
    pub rows_total: u64,
}

/// `out` with `suffix` appended to its file name.
pub(crate) fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    out.with_file_name(name)
}

/// The staging folder of a build of `out`: `<out>.partial`.
pub fn partial_dir(out: &Path) -> PathBuf {
    sibling(out, ".partial")
}

/// The lock file a build of `out` holds: `<out>.lock`.
pub fn lock_path(out: &Path) -> PathBuf {
    sibling(out, ".lock")
}

/// An exclusive lock on `<out>.lock`, held for a whole build and released on drop.
///
/// The file holds the holder's process id while locked, for the error message of a concurrent
/// build. It is never removed: unlinking a lock file lets two later builds lock two different
/// files of the same name.
pub(crate) struct OutputLock {
    file: fs::File,
}

impl OutputLock {
    /// Takes the lock of `out` without waiting, creating the lock file (and its folder) if needed.
    pub(crate) fn acquire(out: &Path) -> Result<OutputLock> {
        let path = lock_path(out);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(Error::Locked { lock: path, pid });
            }
            Err(fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                tracing::warn!(
                    "{}: file locks are not supported here ({e}); building without a lock, so \
                     do not start another build of {} until this one ends",
                    path.display(),
                    out.display()
                );
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        // Best effort: the pid only improves the message a concurrent build prints.
        let recorded = file
            .set_len(0)
            .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()));
        if let Err(e) = recorded {
            tracing::warn!("{}: could not record the pid: {e}", path.display());
        }
        Ok(OutputLock { file })
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Clear the pid; closing the file releases the lock.
        let _ = self.file.set_len(0);
    }
}

/// Progress of an interrupted (or running) build of `out`, if its embedding phase has started.
pub fn read_progress(out: &Path) -> Option<EmbedProgress> {
    read_json(&partial_dir(out).join(PROGRESS)).ok()
}

fn differs(what: &str, old: impl fmt::Display, new: impl fmt::Display) -> Option<String> {
    Some(format!(
        "{what} differs (previous attempt: {old}; now: {new})"
    ))
}

/// The first setting that differs between the staged build and the requested one, described
/// with both values; `None` when the staged build can be resumed.
fn settings_difference(old: &Settings, new: &Settings) -> Option<String> {
    if old.format_version != new.format_version {
        return differs("format version", old.format_version, new.format_version);
    }
    if old.corpus_path != new.corpus_path {
        return differs("corpus path", &old.corpus_path, &new.corpus_path);
    }
    if old.corpus_fingerprint != new.corpus_fingerprint {
        return differs(
            "corpus contents (file sizes or modification times)",
            &old.corpus_fingerprint,
            &new.corpus_fingerprint,
        );
    }
    if old.format != new.format {
        return differs("corpus format", old.format, new.format);
    }
    if old.chunking != new.chunking {
        return differs(
            "chunking",
            format!("{:?}", old.chunking),
            format!("{:?}", new.chunking),
        );
    }
    if old.encoder != new.encoder {
        return differs("encoder", &old.encoder, &new.encoder);
    }
    if old.batch_size != new.batch_size {
        return differs("batch size", old.batch_size, new.batch_size);
    }
    if old.shard != new.shard {
        let show = |s: Option<(usize, usize)>| {
            s.map_or("the whole index".into(), |(i, n)| format!("shard {i}/{n}"))
        };
        return differs("shard", show(old.shard), show(new.shard));
    }
    None
}

pub(crate) fn is_empty_dir(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

/// Decides what to do with an existing staging folder (see the module documentation): returns
/// the state to resume, or `None` after discarding the folder (or when there is none).
fn take_over_staging(staging: &Path, settings: &Settings) -> Result<Option<State>> {
    if !staging.exists() || is_empty_dir(staging) {
        return Ok(None);
    }
    let state_path = staging.join(STATE);
    let reason = if !state_path.exists() {
        format!("it has no {STATE}")
    } else {
        match read_json::<State>(&state_path) {
            Err(e) => format!("its build state is unreadable ({e})"),
            Ok(old) => match settings_difference(&old.settings, settings) {
                None => return Ok(Some(old)),
                Some(diff) => {
                    let embedded = read_json::<EmbedProgress>(&staging.join(PROGRESS))
                        .map_or(0, |p| p.rows_done);
                    match &old.failed {
                        Some(failure) => {
                            format!("the attempt that left it failed ({failure}), and {diff}")
                        }
                        None if embedded == 0 => format!("{diff}, and it holds no embeddings"),
                        None => {
                            let total = old.chunked.as_ref().map_or(0, |c| c.chunks);
                            return Err(Error::ResumeMismatch {
                                staging: staging.to_path_buf(),
                                message: format!(
                                    "{diff}; it already holds the embeddings of {embedded} of \
                                     {total} chunks"
                                ),
                            });
                        }
                    }
                }
            },
        }
    };
    tracing::warn!(
        "discarding the unfinished build in {}: {reason}",
        staging.display()
    );
    fs::remove_dir_all(staging).map_err(|e| Error::io(staging, e))?;
    Ok(None)
}

/// Records in the build state that the attempt failed with `err`, so that the next attempt may
/// discard the staging folder when its settings differ. Best effort: the build's own error is
/// the one reported.
fn record_failure(state_path: &Path, err: &Error) {
    // No state (finalization already removed it): nothing to record.
    let Ok(mut state) = read_json::<State>(state_path) else {
        return;
    };
    state.failed = Some(err.to_string());
    if let Err(e) = write_json_atomic(state_path, &state) {
        tracing::warn!("could not record the failed build: {e}");
    }
}

/// Whether `dir` may be overwritten by a build: an index, a finished shard, or empty.
fn is_index_or_empty(dir: &Path) -> bool {
    dir.join(MANIFEST).is_file()
        || dir.join(crate::shard::SHARD_RECORD).is_file()
        || is_empty_dir(dir)
}

/// Checks that a build or merge may write `out`: it is absent or an empty folder, or
/// `overwrite` is set and it is a radit index (or shard), never a foreign folder.
pub(crate) fn check_replaceable(out: &Path, overwrite: bool) -> Result<()> {
    if !out.exists() || (out.is_dir() && is_empty_dir(out)) {
        return Ok(());
    }
    if !overwrite {
        return Err(Error::Exists(out.to_path_buf()));
    }
    if !out.is_dir() || !is_index_or_empty(out) {
        return Err(Error::arg(format!(
            "{} exists and is not a radit index; refusing to overwrite it",
            out.display()
        )));
    }
    Ok(())
}

/// Builds (or resumes building) the index of `corpus` in the folder `out` with `embedder`.
///
/// An interrupted or failed build of the same `out` with the same settings is resumed: finished
/// embedding batches are kept. The embedder must be deterministic for a resumed build to equal an
/// uninterrupted one byte for byte. A staged build with other settings is discarded with a
/// warning, unless it was killed (not failed) after embedding something: then this is an
/// [`Error::ResumeMismatch`] (see the module documentation).
///
/// The build holds an exclusive lock on [`lock_path`]`(out)`; while another build holds it, this
/// fails at once with [`Error::Locked`].
pub fn build_index(
    corpus: &Path,
    out: &Path,
    embedder: &dyn Embedder,
    opts: &BuildOptions,
) -> Result<BuildReport> {
    let t0 = Instant::now();
    opts.chunking.validate()?;
    if opts.batch_size == 0 {
        return Err(Error::arg("batch size must be at least 1"));
    }
    if let Some(h) = &opts.hnsw {
        h.validate()?;
    }
    let shard_out;
    let out = if opts.shard.is_whole() {
        out
    } else {
        shard_out = crate::shard::shard_dir(out, opts.shard);
        &shard_out
    };
    let identity = embedder.identity();
    let dim = embedder.dim();
    if dim == 0 || identity.dim != dim {
        return Err(Error::arg(format!(
            "encoder dimension {dim} does not match its identity ({identity})"
        )));
    }
    if out.file_name().is_none() {
        return Err(Error::arg(format!(
            "output path {} does not name a folder",
            out.display()
        )));
    }
    let _lock = OutputLock::acquire(out)?;
    check_replaceable(out, opts.overwrite)?;
    let settings = Settings {
        format_version: FORMAT_VERSION,
        corpus_path: corpus.display().to_string(),
        corpus_fingerprint: fingerprint(corpus)?,
        format: opts.format,
        chunking: opts.chunking,
        encoder: identity.clone(),
        batch_size: opts.batch_size,
        shard: (!opts.shard.is_whole()).then_some((opts.shard.index, opts.shard.count)),
    };
    let staging = partial_dir(out);
    if opts.restart && staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    }
    let resumed = take_over_staging(&staging, &settings)?;
    fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    let state_path = staging.join(STATE);
    let state = match resumed {
        Some(mut old) => {
            if let Some(failure) = old.failed.take() {
                note(
                    opts.progress,
                    &format!(
                        "resuming the build in {} (the previous attempt failed: {failure})",
                        staging.display()
                    ),
                );
                write_json_atomic(&state_path, &old)?;
            }
            old
        }
        None => {
            let s = State {
                settings,
                chunked: None,
                failed: None,
            };
            write_json_atomic(&state_path, &s)?;
            s
        }
    };
    let built = build_staged(corpus, out, &staging, state, embedder, opts, t0);
    if let Err(e) = &built {
        record_failure(&state_path, e);
    }
    built
}

/// Chunks, embeds and finalizes in `staging` (prepared, with its build state written), then
/// moves the result to `out`.
fn build_staged(
    corpus: &Path,
    out: &Path,
    staging: &Path,
    mut state: State,
    embedder: &dyn Embedder,
    opts: &BuildOptions,
    t0: Instant,
) -> Result<BuildReport> {
    let dim = embedder.dim();
    let state_path = staging.join(STATE);

    // Phase 1: chunks.
    let summary = match state.chunked.clone() {
        Some(s) => s,
        None => {
            note(
                opts.progress,
                &format!("reading and chunking {}", corpus.display()),
            );
            let s = write_chunks(corpus, staging, opts)?;
            state.chunked = Some(s.clone());
            write_json_atomic(&state_path, &state)?;
            s
        }
    };
    if opts.progress != ProgressMode::Silent {
        eprintln!("{}", summary.ingest.summary(10));
    }
    let n = summary.chunks as usize;
    let chunks = ChunkFile::open(staging, n)?;

    // Phase 2: embeddings (of this shard's rows only, for a shard build).
    let rows = opts.shard.block_range(n, opts.batch_size);
    let emb = embed_all(&chunks, rows, staging, embedder, dim, opts)?;

    // Phase 3: finalize (a shard records what the merge needs instead).
    let fin = if opts.shard.is_whole() {
        finalize(staging, &chunks, &summary, &settings_of(&state), dim, opts)?
    } else {
        crate::shard::finish_shard(staging, &summary, &settings_of(&state), opts)?;
        Finalized {
            ann: None,
            hnsw_seconds: None,
        }
    };
    drop(chunks);
    replace_dir(staging, out)?;
    let total = t0.elapsed().as_secs_f64();
    Ok(BuildReport {
        out: out.to_path_buf(),
        ingest: summary.ingest,
        chunks: n,
        resumed_from: emb.resumed_from,
        embedded: emb.embedded,
        embed_seconds: emb.seconds,
        chunks_per_second: if emb.seconds > 0.0 {
            emb.embedded as f64 / emb.seconds
        } else {
            0.0
        },
        hnsw_seconds: fin.hnsw_seconds,
        hnsw_recall_at_10: fin.ann.as_ref().map(|a| a.recall_at_10),
        hnsw_ef_search: fin.ann.as_ref().map(|a| a.ef_search),
        total_seconds: total,
    })
}

fn settings_of(state: &State) -> Settings {
    state.settings.clone()
}

fn write_chunks(corpus: &Path, staging: &Path, opts: &BuildOptions) -> Result<ChunkSummary> {
    let mut lines = TmpFile::create(&staging.join(CHUNKS))?;
    let mut offsets: Vec<u64> = vec![0];
    let mut pos = 0u64;
    let (mut words_sum, mut words_max) = (0u64, 0u64);
    let mut line = Vec::new();
    let ingest = read_corpus(corpus, opts.format, &mut |doc| {
        for c in chunk_document(&doc, &opts.chunking) {
            line.clear();
            serde_json::to_writer(&mut line, &c).map_err(|e| Error::json(CHUNKS, e))?;
            line.push(b'\n');
            lines.write(&line)?;
            pos += line.len() as u64;
            offsets.push(pos);
            let w = c.word_count() as u64;
            words_sum += w;
            words_max = words_max.max(w);
        }
        Ok(())
    })?;
    let n = offsets.len() - 1;
    if opts.strict && ingest.problem_count() > 0 {
        return Err(Error::Corpus {
            path: corpus.to_path_buf(),
            message: format!("strict build: {}", ingest.summary(20)),
        });
    }
    if n == 0 {
        return Err(Error::Corpus {
            path: corpus.to_path_buf(),
            message: format!("no chunks to index: {}", ingest.summary(20)),
        });
    }
    if n > u32::MAX as usize - 1 {
        return Err(Error::Corpus {
            path: corpus.to_path_buf(),
            message: "more than 2^32 chunks".into(),
        });
    }
    lines.commit()?;
    let mut bytes = Vec::with_capacity(offsets.len() * 8);
    crate::fsutil::extend_u64(&mut bytes, &offsets);
    atomic_write(&staging.join(CHUNK_OFFSETS), &bytes)?;
    Ok(ChunkSummary {
        chunks: n as u64,
        words_sum,
        words_max,
        ingest,
    })
}

struct EmbedOutcome {
    resumed_from: usize,
    embedded: usize,
    seconds: f64,
}

/// Embeds chunk rows `rows` (all of them, or a shard's) into `staging`'s embedding matrix,
/// resuming after the last durably recorded batch.
fn embed_all(
    chunks: &ChunkFile,
    rows: std::ops::Range<usize>,
    staging: &Path,
    embedder: &dyn Embedder,
    dim: usize,
    opts: &BuildOptions,
) -> Result<EmbedOutcome> {
    let first = rows.start;
    let n = rows.len();
    let final_path = staging.join(EMBEDDINGS_F32);
    let row_bytes = (dim * 4) as u64;
    if final_path.is_file() {
        let len = fs::metadata(&final_path)
            .map_err(|e| Error::io(&final_path, e))?
            .len();
        if len == n as u64 * row_bytes {
            return Ok(EmbedOutcome {
                resumed_from: n,
                embedded: 0,
                seconds: 0.0,
            });
        }
        fs::remove_file(&final_path).map_err(|e| Error::io(&final_path, e))?;
    }
    let part = staging.join(EMB_PARTIAL);
    let prog_path = staging.join(PROGRESS);
    let recorded = if prog_path.exists() {
        read_json::<EmbedProgress>(&prog_path)?.rows_done
    } else {
        0
    };
    let file_rows = match fs::metadata(&part) {
        Ok(m) => m.len() / row_bytes,
        Err(_) => 0,
    };
    // Whole batches only: the progress file is the authority, the file may hold a torn tail.
    let bs = opts.batch_size as u64;
    let mut done = recorded.min(file_rows).min(n as u64);
    if done < n as u64 {
        done -= done % bs;
    }
    {
        let f = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&part)
            .map_err(|e| Error::io(&part, e))?;
        f.set_len(done * row_bytes)
            .map_err(|e| Error::io(&part, e))?;
        f.sync_all().map_err(|e| Error::io(&part, e))?;
    }
    let resumed_from = done as usize;
    if resumed_from > 0 {
        note(
            opts.progress,
            &format!("resuming: {resumed_from} of {n} chunks already embedded"),
        );
    }
    let mut file = open_append(&part)?;
    let mut progress = Progress::new(opts.progress, "embedding", "chunks", n as u64, done);
    let t0 = Instant::now();
    let mut row = resumed_from;
    let mut buf: Vec<u8> = Vec::new();
    while row < n {
        let end = (row + opts.batch_size).min(n);
        let texts: Vec<String> = (first + row..first + end)
            .map(|i| chunks.get(i).map(|c| c.encoder_text()))
            .collect::<Result<_>>()?;
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        let fail = |message: String| Error::Embedder {
            first: first + row,
            end: first + end,
            message,
        };
        let vecs = embedder.embed(&refs).map_err(|e| fail(e.to_string()))?;
        if vecs.len() != refs.len() {
            return Err(fail(format!(
                "returned {} embeddings for {} texts",
                vecs.len(),
                refs.len()
            )));
        }
        buf.clear();
        for (i, v) in vecs.iter().enumerate() {
            if v.len() != dim {
                return Err(fail(format!(
                    "chunk {} got an embedding of length {} (expected {dim})",
                    first + row + i,
                    v.len()
                )));
            }
            if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
                return Err(fail(format!(
                    "chunk {} has a non-finite value {bad}",
                    first + row + i
                )));
            }
            crate::fsutil::extend_f32(&mut buf, v);
        }
        file.write_all(&buf).map_err(|e| Error::io(&part, e))?;
        file.sync_data().map_err(|e| Error::io(&part, e))?;
        write_json_atomic(
            &prog_path,
            &EmbedProgress {
                rows_done: end as u64,
                rows_total: n as u64,
            },
        )?;
        row = end;
        progress.set(row as u64);
    }
    let rate = progress.rate();
    progress.finish();
    drop(file);
    let seconds = t0.elapsed().as_secs_f64();
    rename_durable(&part, &final_path)?;
    if resumed_from < n {
        note(
            opts.progress,
            &format!(
                "embedded {} chunks in {} ({rate:.1} chunks/s)",
                n - resumed_from,
                fmt_duration(t0.elapsed())
            ),
        );
    }
    Ok(EmbedOutcome {
        resumed_from,
        embedded: n - resumed_from,
        seconds,
    })
}

pub(crate) struct Finalized {
    pub(crate) ann: Option<AnnInfo>,
    pub(crate) hnsw_seconds: Option<f64>,
}

pub(crate) fn remove_if_exists(p: &Path) -> Result<()> {
    match fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(p, e)),
    }
}

/// Deterministic sample of `count` distinct rows out of `n`.
pub(crate) fn sample_rows(n: usize, count: usize, seed: u64) -> Vec<u32> {
    if count >= n {
        return (0..n as u32).collect();
    }
    let mut picked = std::collections::BTreeSet::new();
    let mut rng = radit_util::rng::SplitMix64::new(seed);
    while picked.len() < count {
        // Plain modulo, not `below`: keeps the rows earlier builds measured recall on.
        picked.insert((rng.next_u64() % n as u64) as u32);
    }
    picked.into_iter().collect()
}

/// Writes what a finished index holds besides chunks and embeddings (f16 copy, BM25, HNSW
/// with its recall estimate, checksums, manifest) into `staging`: for a single-process build
/// and for a merge of shards alike, so both give the same files.
pub(crate) fn finalize(
    staging: &Path,
    chunks: &ChunkFile,
    summary: &ChunkSummary,
    settings: &Settings,
    dim: usize,
    opts: &BuildOptions,
) -> Result<Finalized> {
    let n = chunks.len();
    let emb_path = staging.join(EMBEDDINGS_F32);
    let map = map_file(&emb_path)?;
    let data: &[f32] = match &map {
        Some(m) => cast_slice(m).ok_or_else(|| Error::invalid(&emb_path, "misaligned matrix"))?,
        None => &[],
    };
    if data.len() != n * dim {
        return Err(Error::invalid(
            &emb_path,
            format!("expected {n} × {dim} floats, found {}", data.len()),
        ));
    }
    let unit_norm = data
        .par_chunks(dim)
        .all(|r| (r.iter().map(|x| x * x).sum::<f32>().sqrt() - 1.0).abs() < 1e-3);

    let f16_path = staging.join(EMBEDDINGS_F16);
    if opts.f16 {
        let mut f = TmpFile::create(&f16_path)?;
        let mut buf = Vec::with_capacity(dim * 2 * 1024);
        for block in data.chunks(dim * 1024) {
            buf.clear();
            for &x in block {
                buf.extend_from_slice(&f16::from_f32(x).to_le_bytes());
            }
            f.write(&buf)?;
        }
        f.commit()?;
    } else {
        remove_if_exists(&f16_path)?;
    }

    let bm25_path = staging.join(BM25);
    let bm25 = match opts.bm25 {
        Some(params) => {
            note(opts.progress, "building the BM25 index");
            let mut b = Bm25Builder::new();
            for i in 0..n {
                b.add(&chunks.get(i)?.encoder_text());
            }
            let (bytes, stats) = b.finish(params);
            atomic_write(&bm25_path, &bytes)?;
            Some(Bm25Info {
                params,
                analyzer: ANALYZER.to_string(),
                terms: stats.terms,
                postings: stats.postings,
                avg_doc_len: stats.avg_doc_len,
            })
        }
        None => {
            remove_if_exists(&bm25_path)?;
            None
        }
    };

    let hnsw_path = staging.join(HNSW);
    let (ann, hnsw_seconds) = match opts.hnsw {
        Some(params) => {
            let t = Instant::now();
            let p =
                std::cell::RefCell::new(Progress::new(opts.progress, "hnsw", "nodes", n as u64, 0));
            let bytes = hnsw::build(data, dim, &params, &|done| {
                p.borrow_mut().set(done as u64);
            })?;
            p.into_inner().finish();
            atomic_write(&hnsw_path, &bytes)?;
            drop(bytes);
            let secs = t.elapsed().as_secs_f64();
            let graph = hnsw::Hnsw::open(&hnsw_path, n, dim)?;
            let sample = sample_rows(n, RECALL_QUERIES, params.seed ^ 0xA11CE);
            let q = hnsw::gather_rows(data, dim, &sample);
            let exact: Vec<Vec<Scored>> = crate::exact::exact_top_k(data, dim, &q, 11)?;
            let mut curve = Vec::new();
            let mut chosen = None;
            for ef in EF_GRID {
                let r = hnsw::estimate_recall(&graph, data, dim, &sample, &exact, 10, ef)?;
                curve.push((ef, r));
                if r >= params.target_recall as f64 {
                    chosen = Some((ef, r));
                    break;
                }
            }
            let (ef, recall) = chosen.or(curve.last().copied()).unwrap_or((64, 0.0));
            note(
                opts.progress,
                &format!(
                    "hnsw: built in {}, estimated recall@10 {recall:.3} at ef {ef}",
                    fmt_duration(t.elapsed())
                ),
            );
            (
                Some(AnnInfo {
                    kind: "hnsw".into(),
                    params,
                    max_level: graph.max_level(),
                    ef_search: ef,
                    recall_at_10: recall,
                    recall_queries: sample.len(),
                    recall_curve: curve,
                }),
                Some(secs),
            )
        }
        None => {
            remove_if_exists(&hnsw_path)?;
            (None, None)
        }
    };

    let mut names = vec![CHUNKS, CHUNK_OFFSETS, EMBEDDINGS_F32];
    if opts.f16 {
        names.push(EMBEDDINGS_F16);
    }
    if ann.is_some() {
        names.push(HNSW);
    }
    if bm25.is_some() {
        names.push(BM25);
    }
    let entries: Vec<(String, FileEntry)> = names
        .par_iter()
        .map(|name| {
            let (bytes, xxh3) = hash_file(&staging.join(name))?;
            Ok((name.to_string(), FileEntry { bytes, xxh3 }))
        })
        .collect::<Result<_>>()?;
    let files: BTreeMap<String, FileEntry> = entries.into_iter().collect();
    let ingest = &summary.ingest;
    let manifest = Manifest {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        encoder: settings.encoder.clone(),
        chunking: settings.chunking,
        text_template: TEXT_TEMPLATE.into(),
        corpus: CorpusInfo {
            path: settings.corpus_path.clone(),
            format: settings.format,
        },
        counts: Counts {
            documents: ingest.documents as u64,
            empty_documents: ingest.empty_documents as u64,
            ingest_problems: ingest.problem_count() as u64,
            chunks: n as u64,
            dim,
            words_mean: summary.words_sum as f64 / n.max(1) as f64,
            words_max: summary.words_max,
        },
        embeddings: EmbeddingInfo {
            layout: "row-major little-endian f32, chunks × dim".into(),
            f16: opts.f16,
            unit_norm,
            batch_size: settings.batch_size,
        },
        ann: ann.clone(),
        bm25,
        files,
    };
    drop(map);
    write_json_atomic(&staging.join(MANIFEST), &manifest)?;
    remove_if_exists(&staging.join(STATE))?;
    remove_if_exists(&staging.join(PROGRESS))?;
    sync_dir(staging)?;
    Ok(Finalized { ann, hnsw_seconds })
}
