//! Sharded index builds: `N` processes each embed their part of a corpus, then one merge
//! builds the index.
//!
//! A shard build ([`crate::build_index`] with [`BuildOptions::shard`] set) chunks the whole
//! corpus (cheap, and every shard must agree on it), embeds only the chunk rows
//! [`Shard::block_range`] gives it (whole encoder batches, so its batches are exactly the
//! single-process build's), and moves its folder to `<out>.shards/shard-I-of-N/` with a
//! `shard.json` record: the build settings, the rows, the finalize options (f16, BM25, HNSW)
//! and the checksum of every file. Each shard is an ordinary build underneath: its own lock,
//! its own resumable `.partial` staging folder, its own atomic move into place.
//!
//! [`merge_shards`] checks that every shard of one `N` is there, finished, uncorrupted and
//! built with the same settings over the same chunks, concatenates the embeddings, and runs
//! the same finalize step as a single-process build (f16 copy, BM25, HNSW with its recall
//! estimate, checksums, manifest). With a deterministic encoder the merged index is
//! byte-for-byte the single-process build's.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use radit_util::fs::{replace_dir, sync_dir};
use radit_util::shard::Shard;
use serde::{Deserialize, Serialize};

use crate::bm25::Bm25Params;
use crate::build::{
    check_replaceable, finalize, is_empty_dir, partial_dir, remove_if_exists, sibling,
    BuildOptions, ChunkSummary, OutputLock, Settings, PROGRESS, STATE,
};
use crate::error::{Error, Result};
use crate::fsutil::{hash_file, read_json, write_json_atomic, TmpFile};
use crate::hnsw::HnswParams;
use crate::manifest::{ChunkFile, FileEntry, CHUNKS, CHUNK_OFFSETS, EMBEDDINGS_F32};
use crate::progress::{note, ProgressMode};

/// The record a finished shard leaves in its folder.
pub const SHARD_RECORD: &str = "shard.json";
/// Marks a staging folder as a merge's (so a failed merge's leftovers may be discarded, while
/// an interrupted single-process build's embeddings are not).
const MERGING: &str = "merging";

/// The folder holding the shards of the index `out`: `<out>.shards`.
pub fn shards_dir(out: &Path) -> PathBuf {
    sibling(out, ".shards")
}

/// The folder of one finished shard of `out`: `<out>.shards/shard-I-of-N`.
pub fn shard_dir(out: &Path, shard: Shard) -> PathBuf {
    shards_dir(out).join(shard.file_tag())
}

/// What the merge does after the embeddings; the shards must agree on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct FinalizeOptions {
    f16: bool,
    hnsw: Option<HnswParams>,
    bm25: Option<Bm25Params>,
}

/// `shard.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ShardRecord {
    /// `(I, N)`.
    shard: (usize, usize),
    /// The chunk rows this shard embedded, `start..end`.
    rows: (usize, usize),
    settings: Settings,
    summary: ChunkSummary,
    finalize: FinalizeOptions,
    /// Size and checksum of the shard's chunks, offsets and embeddings.
    files: BTreeMap<String, FileEntry>,
}

/// Records a finished shard in its staging folder (called by the build after embedding).
pub(crate) fn finish_shard(
    staging: &Path,
    summary: &ChunkSummary,
    settings: &Settings,
    opts: &BuildOptions,
) -> Result<()> {
    let rows = opts
        .shard
        .block_range(summary.chunks as usize, settings.batch_size);
    let mut files = BTreeMap::new();
    for name in [CHUNKS, CHUNK_OFFSETS, EMBEDDINGS_F32] {
        let (bytes, xxh3) = hash_file(&staging.join(name))?;
        files.insert(name.to_string(), FileEntry { bytes, xxh3 });
    }
    let record = ShardRecord {
        shard: (opts.shard.index, opts.shard.count),
        rows: (rows.start, rows.end),
        settings: settings.clone(),
        summary: summary.clone(),
        finalize: FinalizeOptions {
            f16: opts.f16,
            hnsw: opts.hnsw,
            bm25: opts.bm25,
        },
        files,
    };
    write_json_atomic(&staging.join(SHARD_RECORD), &record)?;
    remove_if_exists(&staging.join(STATE))?;
    remove_if_exists(&staging.join(PROGRESS))?;
    sync_dir(staging)?;
    Ok(())
}

/// Options of [`merge_shards`].
#[derive(Clone, Debug, Default)]
pub struct MergeOptions {
    /// Replace an existing index at the output path.
    pub overwrite: bool,
    /// Keep `<out>.shards` after a successful merge (default: removed, it duplicates the
    /// embeddings).
    pub keep_shards: bool,
    /// Progress reporting on stderr.
    pub progress: ProgressMode,
}

/// What a merge did.
#[derive(Clone, Debug)]
pub struct MergeReport {
    /// The finished index.
    pub out: PathBuf,
    /// How many shards were merged.
    pub shards: usize,
    /// Chunks in the index.
    pub chunks: usize,
    /// HNSW construction seconds, if built.
    pub hnsw_seconds: Option<f64>,
    /// Estimated HNSW recall@10 at the default `ef`, if built.
    pub hnsw_recall_at_10: Option<f64>,
    /// Wall time of the merge.
    pub total_seconds: f64,
}

impl fmt::Display for MergeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "index {}: {} chunks merged from {} shards",
            self.out.display(),
            self.chunks,
            self.shards
        )?;
        if let (Some(s), Some(r)) = (self.hnsw_seconds, self.hnsw_recall_at_10) {
            writeln!(f, "  hnsw built in {s:.1} s, estimated recall@10 {r:.3}")?;
        }
        write!(f, "  total {:.1} s", self.total_seconds)
    }
}

/// `shard-I-of-N` as `(I, N)`.
fn parse_tag(name: &str) -> Option<(usize, usize)> {
    Shard::from_file_tag(name).map(|s| (s.index, s.count))
}

/// Finished shards by `(I, N)`.
type Finished = BTreeMap<(usize, usize), ShardRecord>;

/// The finished shards under `dir`, and the tags of unfinished ones.
fn scan(dir: &Path) -> Result<(Finished, Vec<String>)> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::arg(format!(
                "{} holds no shards: build them first with `radit index build ... --shard I/N` \
                 (one process per shard)",
                dir.display()
            )))
        }
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut finished = BTreeMap::new();
    let mut unfinished = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(tag) = name.strip_suffix(".partial") {
            if parse_tag(tag).is_some() {
                unfinished.push(tag.to_string());
            }
            continue;
        }
        let Some(id) = parse_tag(&name) else { continue };
        let path = entry.path().join(SHARD_RECORD);
        if !path.is_file() {
            unfinished.push(name);
            continue;
        }
        let record: ShardRecord = read_json(&path)?;
        if record.shard != id {
            return Err(Error::invalid(
                &path,
                format!(
                    "records shard {}/{} but its folder is {name}",
                    record.shard.0, record.shard.1
                ),
            ));
        }
        finished.insert(id, record);
    }
    unfinished.sort();
    unfinished.dedup();
    Ok((finished, unfinished))
}

/// The shard records of one complete set, in shard order, checked against each other.
fn complete_set(dir: &Path) -> Result<Vec<ShardRecord>> {
    let (finished, unfinished) = scan(dir)?;
    let counts: std::collections::BTreeSet<usize> = finished.keys().map(|&(_, n)| n).collect();
    let count = match counts.len() {
        0 => {
            return Err(Error::arg(format!(
                "{} holds no finished shard{}",
                dir.display(),
                if unfinished.is_empty() {
                    String::new()
                } else {
                    format!(" (unfinished: {})", unfinished.join(", "))
                }
            )))
        }
        1 => counts.into_iter().next().unwrap_or(1),
        _ => {
            let list: Vec<String> = counts.iter().map(|n| format!("N = {n}")).collect();
            return Err(Error::arg(format!(
                "{} holds shards of different splits ({}): remove the stale ones",
                dir.display(),
                list.join(", ")
            )));
        }
    };
    let missing: Vec<String> = (0..count)
        .filter(|i| !finished.contains_key(&(*i, count)))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        let unfinished = if unfinished.is_empty() {
            String::new()
        } else {
            format!("; unfinished: {}", unfinished.join(", "))
        };
        return Err(Error::arg(format!(
            "{}: shard{} {} not finished{unfinished}; run `radit index build ... --shard I/N` \
             for each",
            dir.display(),
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", ")
        )));
    }
    let records: Vec<ShardRecord> = finished.into_values().collect();
    let first = &records[0];
    let bare = |r: &ShardRecord| Settings {
        shard: None,
        ..r.settings.clone()
    };
    let mut next_row = 0;
    for r in &records {
        let tag = Shard {
            index: r.shard.0,
            count: r.shard.1,
        }
        .file_tag();
        let mismatch = |what: &str| {
            Error::arg(format!(
                "{}: {tag} was built with other {what} than {}; rebuild it",
                dir.display(),
                Shard { index: 0, count }.file_tag()
            ))
        };
        if bare(r) != bare(first) {
            return Err(mismatch(
                "settings (corpus, chunking, encoder or batch size)",
            ));
        }
        if r.summary != first.summary || r.files.get(CHUNKS) != first.files.get(CHUNKS) {
            return Err(mismatch("chunks"));
        }
        if r.finalize != first.finalize {
            return Err(mismatch("finalize options (--f16, --bm25, --ann)"));
        }
        let rows = Shard {
            index: r.shard.0,
            count,
        }
        .block_range(first.summary.chunks as usize, first.settings.batch_size);
        if r.rows != (rows.start, rows.end) || rows.start != next_row {
            return Err(Error::invalid(
                dir.join(&tag),
                format!(
                    "records rows {}..{}, but shard {}/{count} owns rows {}..{}",
                    r.rows.0, r.rows.1, r.shard.0, rows.start, rows.end
                ),
            ));
        }
        next_row = rows.end;
    }
    Ok(records)
}

/// Checks a shard file against its record: size first (cheap), then the checksum.
fn verify(path: &Path, entry: Option<&FileEntry>) -> Result<()> {
    let Some(entry) = entry else {
        return Err(Error::invalid(path, "not recorded in shard.json"));
    };
    let (bytes, xxh3) = hash_file(path).map_err(|_| Error::Checksum {
        file: path.to_path_buf(),
        message: "missing or unreadable".into(),
    })?;
    if bytes != entry.bytes || xxh3 != entry.xxh3 {
        return Err(Error::Checksum {
            file: path.to_path_buf(),
            message: format!(
                "expected {} bytes with xxh3 {}, found {bytes} bytes with xxh3 {xxh3}; rebuild \
                 this shard",
                entry.bytes, entry.xxh3
            ),
        });
    }
    Ok(())
}

/// Hard-links `from` to `to` (the shards are removed after the merge), copying where links
/// are not possible.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    remove_if_exists(to)?;
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to).map_err(|e| Error::io(to, e))?;
    Ok(())
}

/// Builds the index `out` from the finished shards in `<out>.shards` (see the module
/// documentation). Fails, naming them, when shards are missing, unfinished, corrupt or
/// inconsistent; the shards are left untouched on failure.
pub fn merge_shards(out: &Path, opts: &MergeOptions) -> Result<MergeReport> {
    let t0 = Instant::now();
    if out.file_name().is_none() {
        return Err(Error::arg(format!(
            "output path {} does not name a folder",
            out.display()
        )));
    }
    let dir = shards_dir(out);
    let records = complete_set(&dir)?;
    let _lock = OutputLock::acquire(out)?;
    check_replaceable(out, opts.overwrite)?;
    let staging = partial_dir(out);
    if staging.exists() && !is_empty_dir(&staging) {
        if !staging.join(MERGING).is_file() {
            return Err(Error::arg(format!(
                "{} holds an unfinished single-process build of this index; resume it with \
                 `radit index build` or remove it before merging shards",
                staging.display()
            )));
        }
        fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    }
    fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    fs::write(staging.join(MERGING), b"").map_err(|e| Error::io(&staging, e))?;

    let first = &records[0];
    let tag = |r: &ShardRecord| {
        Shard {
            index: r.shard.0,
            count: r.shard.1,
        }
        .file_tag()
    };
    note(
        opts.progress,
        &format!("merging {} shards of {}", records.len(), out.display()),
    );
    let first_dir = dir.join(tag(first));
    for name in [CHUNKS, CHUNK_OFFSETS] {
        let from = first_dir.join(name);
        verify(&from, first.files.get(name))?;
        link_or_copy(&from, &staging.join(name))?;
    }
    let mut matrix = TmpFile::create(&staging.join(EMBEDDINGS_F32))?;
    let row_bytes = first.settings.encoder.dim as u64 * 4;
    let mut buf = vec![0u8; 1 << 20];
    for r in &records {
        let path = dir.join(tag(r)).join(EMBEDDINGS_F32);
        let entry = r.files.get(EMBEDDINGS_F32);
        verify(&path, entry)?;
        let expected = (r.rows.1 - r.rows.0) as u64 * row_bytes;
        if entry.map(|e| e.bytes) != Some(expected) {
            return Err(Error::invalid(
                &path,
                format!(
                    "holds {} bytes, but rows {}..{} of dimension {} take {expected}",
                    entry.map_or(0, |e| e.bytes),
                    r.rows.0,
                    r.rows.1,
                    first.settings.encoder.dim
                ),
            ));
        }
        let mut file = fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        loop {
            let read = file.read(&mut buf).map_err(|e| Error::io(&path, e))?;
            if read == 0 {
                break;
            }
            matrix.write(&buf[..read])?;
        }
    }
    matrix.commit()?;

    let settings = Settings {
        shard: None,
        ..first.settings.clone()
    };
    let summary = &first.summary;
    let n = summary.chunks as usize;
    let chunks = ChunkFile::open(&staging, n)?;
    let build_opts = BuildOptions {
        f16: first.finalize.f16,
        hnsw: first.finalize.hnsw,
        bm25: first.finalize.bm25,
        progress: opts.progress,
        batch_size: settings.batch_size,
        ..BuildOptions::default()
    };
    let fin = finalize(
        &staging,
        &chunks,
        summary,
        &settings,
        settings.encoder.dim,
        &build_opts,
    )?;
    drop(chunks);
    remove_if_exists(&staging.join(MERGING))?;
    sync_dir(&staging)?;
    replace_dir(&staging, out)?;
    if !opts.keep_shards {
        if let Err(e) = fs::remove_dir_all(&dir) {
            tracing::warn!("merged, but could not remove {}: {e}", dir.display());
        }
    }
    Ok(MergeReport {
        out: out.to_path_buf(),
        shards: records.len(),
        chunks: n,
        hnsw_seconds: fin.hnsw_seconds,
        hnsw_recall_at_10: fin.ann.as_ref().map(|a| a.recall_at_10),
        total_seconds: t0.elapsed().as_secs_f64(),
    })
}
