//! Atomic, checksummed checkpoint directories with keep-last-N retention and a separate
//! copy of the best checkpoint.
//!
//! Layout: `RUN_DIR/checkpoints/step-00001200/{manifest.json, <files>}`. A checkpoint is
//! written under `checkpoints/.tmp-…`, every file and the directory fsync'd, then renamed
//! into place and the parent fsync'd: a crash leaves either no checkpoint or a complete one,
//! plus perhaps a temporary directory that the next save or [`CheckpointManager::latest_valid`]
//! removes. One process writes a run directory at a time.
//!
//! The best checkpoint by a metric lives in `RUN_DIR/checkpoints/best/`, a copy (hard links
//! where the filesystem allows, so no extra space) of its step directory with the same
//! manifest, so keep-last-N retention of the `step-…` directories never touches it. It is
//! replaced atomically ([`radit_util::fs::replace_dir`]) and verifies like any checkpoint
//! ([`Checkpoint::open`]); [`CheckpointManager::latest_valid`] never picks it, so a resume
//! continues from the newest step.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::time::{unix_millis, utc_rfc3339};

/// Name of the manifest inside every checkpoint directory.
pub const MANIFEST_NAME: &str = "manifest.json";
/// Version of the manifest format this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "radit-checkpoint";
const DIR_PREFIX: &str = "step-";
const TMP_PREFIX: &str = ".tmp-";
/// Name of the best checkpoint's directory inside `checkpoints/`.
pub const BEST_DIR_NAME: &str = "best";
/// Where [`radit_util::fs::replace_dir`] moves the previous `best/` aside.
const OLD_BEST_PREFIX: &str = ".best.old-";

/// What can go wrong writing, listing, verifying or reading checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A filesystem operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "cannot write".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The checkpoint has no manifest (an incomplete or foreign directory).
    #[error("checkpoint {} has no {MANIFEST_NAME}", checkpoint.display())]
    MissingManifest {
        /// The checkpoint directory.
        checkpoint: PathBuf,
    },
    /// The manifest is not valid JSON of the expected shape, or disagrees with its directory.
    #[error("checkpoint {}: bad {MANIFEST_NAME}: {message}", checkpoint.display())]
    BadManifest {
        /// The checkpoint directory.
        checkpoint: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The manifest lists a file that is not in the directory.
    #[error("checkpoint {} is missing file `{name}` listed in its manifest", checkpoint.display())]
    MissingFile {
        /// The checkpoint directory.
        checkpoint: PathBuf,
        /// The missing file's relative name.
        name: String,
    },
    /// A file's size differs from the manifest (truncated or overwritten).
    #[error("checkpoint {}: file `{name}` has {actual} bytes, the manifest says {expected}", checkpoint.display())]
    SizeMismatch {
        /// The checkpoint directory.
        checkpoint: PathBuf,
        /// The file's relative name.
        name: String,
        /// Size in the manifest.
        expected: u64,
        /// Size on disk.
        actual: u64,
    },
    /// A file's contents differ from the manifest's checksum.
    #[error("checkpoint {}: file `{name}` is corrupt (xxh3 {actual:016x}, the manifest says {expected:016x})", checkpoint.display())]
    ChecksumMismatch {
        /// The checkpoint directory.
        checkpoint: PathBuf,
        /// The file's relative name.
        name: String,
        /// Checksum in the manifest.
        expected: u64,
        /// Checksum of the bytes on disk.
        actual: u64,
    },
    /// A file was requested that the checkpoint does not contain.
    #[error("checkpoint {} has no file `{name}` (it has: {available})", checkpoint.display())]
    UnknownFile {
        /// The checkpoint directory.
        checkpoint: PathBuf,
        /// The requested name.
        name: String,
        /// The names it does have, comma-separated.
        available: String,
    },
    /// A file name given to [`CheckpointManager::save`] is not a safe relative path.
    #[error("invalid checkpoint file name `{name}`: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it is rejected.
        reason: &'static str,
    },
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> CheckpointError + 'a {
    move |source| CheckpointError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// fsyncs a directory (radit-util's, a no-op outside Unix), as a checkpoint error.
fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    radit_util::fs::sync_dir(dir).map_err(|e| io_err("cannot fsync", dir)(e.source))
}

/// Whether a larger or a smaller metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetricMode {
    /// Smaller is better (loss, perplexity).
    Min,
    /// Larger is better (EM, F1).
    Max,
}

/// The metric by which the best checkpoint is kept, as written in a recipe:
///
/// ```toml
/// best_metric = { name = "dev/em", mode = "max" }
/// ```
///
/// The plain-string form of earlier recipes, `best_metric = "dev/em"`, still reads, as
/// `mode = "max"`. Earlier versions guessed "smaller is better" for names containing `loss`;
/// such a plain string is rejected rather than silently read with the opposite direction,
/// and the message shows the table form to write instead.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct BestMetric {
    /// Metric name as passed to [`CheckpointManager::save`], e.g. `dev/em`.
    pub name: String,
    /// Whether larger or smaller is better.
    pub mode: MetricMode,
}

impl Default for BestMetric {
    /// `dev/em`, larger is better.
    fn default() -> Self {
        BestMetric {
            name: "dev/em".into(),
            mode: MetricMode::Max,
        }
    }
}

impl BestMetric {
    /// Whether `candidate` is a new best over `current`: it must be finite and strictly
    /// better, so on a tie the earlier checkpoint stays the best. The trainer (for early
    /// stopping and `checkpoints/best`) and [`CheckpointManager`] both decide with this.
    pub fn improves(&self, candidate: f64, current: Option<f64>) -> bool {
        if !candidate.is_finite() {
            return false;
        }
        match current {
            None => true,
            Some(c) if !c.is_finite() => true,
            Some(c) => match self.mode {
                MetricMode::Max => candidate > c,
                MetricMode::Min => candidate < c,
            },
        }
    }
}

/// The table form of [`BestMetric`]; a separate type so its own derive reports unknown or
/// missing keys with serde's usual messages (which the recipe loader turns into key paths).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BestMetricTable {
    name: String,
    mode: MetricMode,
}

impl<'de> Deserialize<'de> for BestMetric {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = BestMetric;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table `{ name = \"dev/em\", mode = \"max\" }` or a metric name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<BestMetric, E> {
                if name.contains("loss") {
                    return Err(E::custom(format!(
                        "a plain metric name means larger is better, which `{name}` probably \
                         is not; write best_metric = {{ name = \"{name}\", mode = \"min\" }} \
                         (or mode = \"max\")"
                    )));
                }
                Ok(BestMetric {
                    name: name.to_string(),
                    mode: MetricMode::Max,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<BestMetric, A::Error> {
                let table = BestMetricTable::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(BestMetric {
                    name: table.name,
                    mode: table.mode,
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Which checkpoints survive a save.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// How many of the newest `step-…` checkpoints to keep (at least 1 is always kept).
    pub keep_last: usize,
    /// Additionally keep the best checkpoint by this metric in `checkpoints/best/`: each
    /// [`CheckpointManager::save`] whose metrics [improve](BestMetric::improves) on it
    /// replaces it. Without it, `best/` changes only through
    /// [`CheckpointManager::promote_best`] (how the trainer keeps it).
    #[serde(default)]
    pub best: Option<BestMetric>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_last: 3,
            best: None,
        }
    }
}

/// One file's entry in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative name inside the checkpoint (`/`-separated).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// xxh3-64 of the contents, 16 hex digits (a string so JSON tools keep all 64 bits).
    pub xxh3_64: String,
}

/// The `manifest.json` of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `radit-checkpoint`.
    pub format: String,
    /// [`FORMAT_VERSION`] at the time of writing.
    pub format_version: u32,
    /// Global optimizer step.
    pub step: u64,
    /// Creation time, RFC 3339 UTC.
    pub created_utc: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Metrics at save time; non-finite values are stored as `null` (JSON has no NaN).
    pub metrics: BTreeMap<String, Option<f64>>,
    /// Every file of the checkpoint except the manifest.
    pub files: Vec<FileEntry>,
}

/// A verified checkpoint: its manifest parsed and every file's size and checksum checked.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    dir: PathBuf,
    manifest: Manifest,
    metrics: BTreeMap<String, f64>,
}

impl Checkpoint {
    /// Opens and fully verifies the checkpoint in `dir` (reads every file once).
    pub fn open(dir: &Path) -> Result<Checkpoint, CheckpointError> {
        let manifest = read_manifest(dir)?;
        for entry in &manifest.files {
            verify_entry_streaming(dir, entry)?;
        }
        let metrics = manifest
            .metrics
            .iter()
            .map(|(k, v)| (k.clone(), v.unwrap_or(f64::NAN)))
            .collect();
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            manifest,
            metrics,
        })
    }

    /// Global step of the checkpoint.
    pub fn step(&self) -> u64 {
        self.manifest.step
    }

    /// Metrics saved with the checkpoint (`NaN` where a non-finite value was saved).
    pub fn metrics(&self) -> &BTreeMap<String, f64> {
        &self.metrics
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The parsed manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Names of the files in the checkpoint, in the order they were saved.
    pub fn file_names(&self) -> impl Iterator<Item = &str> {
        self.manifest.files.iter().map(|f| f.name.as_str())
    }

    /// Whether the checkpoint has a file of that name.
    pub fn contains(&self, name: &str) -> bool {
        self.manifest.files.iter().any(|f| f.name == name)
    }

    /// Reads a file, checking its size and checksum again (it may have changed since
    /// [`Checkpoint::open`]).
    pub fn read(&self, name: &str) -> Result<Vec<u8>, CheckpointError> {
        read_entry(&self.dir, self.entry(name)?)
    }

    /// Path of a file, for loaders that want a path (memory maps, burn stores). The
    /// contents were verified by [`Checkpoint::open`] but are not re-checked here.
    pub fn path_of(&self, name: &str) -> Result<PathBuf, CheckpointError> {
        self.entry(name).map(|e| self.dir.join(&e.name))
    }

    fn entry(&self, name: &str) -> Result<&FileEntry, CheckpointError> {
        self.manifest
            .files
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| CheckpointError::UnknownFile {
                checkpoint: self.dir.clone(),
                name: name.to_string(),
                available: self
                    .manifest
                    .files
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// A checkpoint that [`CheckpointManager::latest_valid`] skipped, and why.
#[derive(Debug)]
pub struct SkippedCheckpoint {
    /// Its directory.
    pub dir: PathBuf,
    /// Why it is not usable.
    pub error: CheckpointError,
}

impl std::fmt::Display for SkippedCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "skipping checkpoint {}: {}",
            self.dir.display(),
            self.error
        )
    }
}

/// Result of [`CheckpointManager::latest_valid`]: the newest verified checkpoint, and the
/// newer ones that were skipped (for the caller to report).
#[derive(Debug)]
pub struct LatestValid {
    /// The newest checkpoint that verified, if any.
    pub checkpoint: Option<Checkpoint>,
    /// Newer checkpoints that failed verification, newest first.
    pub skipped: Vec<SkippedCheckpoint>,
}

/// Result of a successful [`CheckpointManager::save`].
#[derive(Debug)]
pub struct Saved {
    /// The new checkpoint's directory.
    pub dir: PathBuf,
    /// Old checkpoints removed by retention.
    pub pruned: Vec<PathBuf>,
    /// `checkpoints/best`, when [`Retention::best`] made this checkpoint the new best.
    pub best: Option<PathBuf>,
    /// Non-fatal problems (a stale directory that could not be removed); the checkpoint
    /// itself is complete. Training should report these and go on.
    pub warnings: Vec<String>,
}

/// Writes, lists, verifies and prunes the checkpoints of one run directory.
#[derive(Debug, Clone)]
pub struct CheckpointManager {
    root: PathBuf,
    retention: Retention,
}

impl CheckpointManager {
    /// A manager for `RUN_DIR/checkpoints`; touches nothing on disk until used.
    pub fn new(run_dir: impl AsRef<Path>, retention: Retention) -> Self {
        CheckpointManager {
            root: run_dir.as_ref().join("checkpoints"),
            retention,
        }
    }

    /// The `checkpoints` directory.
    pub fn checkpoints_dir(&self) -> &Path {
        &self.root
    }

    /// The directory a checkpoint of `step` has.
    pub fn dir_for(&self, step: u64) -> PathBuf {
        self.root.join(format!("{DIR_PREFIX}{step:08}"))
    }

    /// Writes a checkpoint of `step` holding `files` (relative `/`-separated names, which
    /// may include subdirectories) and `metrics`, then applies retention.
    ///
    /// A checkpoint already present for the same step (e.g. a corrupt one that a resume
    /// skipped) is replaced only after the new one is complete.
    pub fn save(
        &mut self,
        step: u64,
        files: &[(&str, &[u8])],
        metrics: &BTreeMap<String, f64>,
    ) -> Result<Saved, CheckpointError> {
        validate_names(files)?;
        fs::create_dir_all(&self.root).map_err(io_err("cannot create", &self.root))?;
        let mut warnings = self.clean_temp();
        // Before this save: with the new checkpoint listed it would compete with itself.
        let current_best = self.best()?;

        let now = SystemTime::now();
        let tmp = self.root.join(format!(
            "{TMP_PREFIX}{DIR_PREFIX}{step:08}-{}-{}",
            std::process::id(),
            unix_millis(now)
        ));
        if let Err(e) = write_checkpoint(&tmp, step, files, metrics, now) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }

        let dir = self.dir_for(step);
        if dir.exists() {
            // Move the old one aside first: rename cannot replace a non-empty directory.
            let trash = self.root.join(format!(
                "{TMP_PREFIX}old-{DIR_PREFIX}{step:08}-{}",
                std::process::id()
            ));
            fs::rename(&dir, &trash).map_err(io_err("cannot move aside", &dir))?;
            if let Err(e) = fs::remove_dir_all(&trash) {
                warnings.push(format!("cannot remove {}: {e}", trash.display()));
            }
        }
        fs::rename(&tmp, &dir).map_err(io_err("cannot rename into place", &tmp))?;
        sync_dir(&self.root)?;

        let best = self.auto_promote(step, metrics, current_best)?;
        let (pruned, prune_warnings) = self.prune(&dir);
        warnings.extend(prune_warnings);
        Ok(Saved {
            dir,
            pruned,
            best,
            warnings,
        })
    }

    /// With [`Retention::best`]: makes the checkpoint of `step` the best if its metric
    /// improves on the current best. A run directory of an earlier version has no `best/`
    /// but kept its best `step-…` directory through retention: that one is copied to
    /// `best/` first (before retention could remove it), unless the new one beats it.
    fn auto_promote(
        &mut self,
        step: u64,
        metrics: &BTreeMap<String, f64>,
        current: Option<(u64, f64, PathBuf)>,
    ) -> Result<Option<PathBuf>, CheckpointError> {
        let Some(metric) = self.retention.best.clone() else {
            return Ok(None);
        };
        let candidate = metrics.get(&metric.name).copied();
        if let Some(v) = candidate {
            if metric.improves(v, current.as_ref().map(|c| c.1)) {
                return self.promote_best(step).map(Some);
            }
        }
        match current {
            Some((legacy, _, dir)) if dir != self.best_dir() && legacy != step => {
                self.promote_best(legacy)?;
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// `checkpoints/best`, the directory of the best checkpoint (it may not exist yet).
    pub fn best_dir(&self) -> PathBuf {
        self.root.join(BEST_DIR_NAME)
    }

    /// Makes the committed checkpoint of `step` the best: copies it to `checkpoints/best/`
    /// (hard links where possible, else copies; files fsync'd), replacing the previous best
    /// atomically. Returns `checkpoints/best`.
    pub fn promote_best(&mut self, step: u64) -> Result<PathBuf, CheckpointError> {
        let src = self.dir_for(step);
        let manifest = read_manifest(&src)?;
        let staged = self.root.join(format!(
            "{TMP_PREFIX}{BEST_DIR_NAME}-{step:08}-{}-{}",
            std::process::id(),
            unix_millis(SystemTime::now())
        ));
        let staged_result = (|| {
            fs::create_dir(&staged).map_err(io_err("cannot create", &staged))?;
            let names = manifest
                .files
                .iter()
                .map(|f| f.name.as_str())
                .chain([MANIFEST_NAME]);
            for name in names {
                let from = src.join(name);
                let to = staged.join(name);
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
                }
                if fs::hard_link(&from, &to).is_err() {
                    fs::copy(&from, &to).map_err(io_err("cannot copy", &from))?;
                }
            }
            radit_util::fs::sync_tree(&staged)
                .map_err(|e| io_err("cannot fsync", &staged)(e.source))
        })();
        let best = self.best_dir();
        let result = staged_result.and_then(|()| {
            radit_util::fs::replace_dir(&staged, &best)
                .map_err(|e| io_err("cannot replace", &best)(e.source))
        });
        if result.is_err() {
            let _ = fs::remove_dir_all(&staged);
        }
        result.map(|()| best)
    }

    /// The step of the checkpoint in `checkpoints/best/`, if there is one with a readable
    /// manifest (not verified).
    pub fn best_step(&self) -> Option<u64> {
        self.recover_best();
        read_manifest(&self.best_dir()).ok().map(|m| m.step)
    }

    /// Committed checkpoint directories (`step-NNNNNNNN`), oldest first. Does not verify them.
    pub fn list(&self) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
        let rd = match fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("cannot list", &self.root)(e)),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(io_err("cannot list", &self.root))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(step) = name
                .strip_prefix(DIR_PREFIX)
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u64>().ok())
            else {
                continue;
            };
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.push((step, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The newest checkpoint whose manifest and checksums verify. Newer ones that do not
    /// are skipped and returned in [`LatestValid::skipped`] so the caller can report them.
    /// Removes leftover temporary directories of interrupted saves.
    pub fn latest_valid(&self) -> Result<LatestValid, CheckpointError> {
        // Failures to clean are harmless here: the next save retries and reports them.
        let _ = self.clean_temp();
        let mut skipped = Vec::new();
        for (_, dir) in self.list()?.into_iter().rev() {
            match Checkpoint::open(&dir) {
                Ok(ckpt) => {
                    return Ok(LatestValid {
                        checkpoint: Some(ckpt),
                        skipped,
                    })
                }
                Err(error) => skipped.push(SkippedCheckpoint { dir, error }),
            }
        }
        Ok(LatestValid {
            checkpoint: None,
            skipped,
        })
    }

    /// A crash between the two renames of [`radit_util::fs::replace_dir`] leaves the previous
    /// best beside a missing `best/`: puts it back. Best effort.
    fn recover_best(&self) {
        let best = self.best_dir();
        if fs::symlink_metadata(&best).is_ok() {
            return;
        }
        let Ok(rd) = fs::read_dir(&self.root) else {
            return;
        };
        for entry in rd.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(OLD_BEST_PREFIX)
                && fs::rename(entry.path(), &best).is_ok()
            {
                let _ = sync_dir(&self.root);
                return;
            }
        }
    }

    /// Removes temporary directories left by interrupted saves (after restoring a best
    /// checkpoint an interrupted replacement moved aside); returns what it could not remove.
    fn clean_temp(&self) -> Vec<String> {
        self.recover_best();
        let mut warnings = Vec::new();
        let Ok(rd) = fs::read_dir(&self.root) else {
            return warnings;
        };
        for entry in rd.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TMP_PREFIX) || name.starts_with(OLD_BEST_PREFIX) {
                let p = entry.path();
                let r = if p.is_dir() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                if let Err(e) = r {
                    warnings.push(format!("cannot remove leftover {}: {e}", p.display()));
                }
            }
        }
        warnings
    }

    /// Applies retention to the `step-…` directories: keeps the newest `keep_last`, and
    /// always `just_saved` and the newest; removes the rest. The best checkpoint is safe in
    /// `best/`, which this never touches.
    fn prune(&self, just_saved: &Path) -> (Vec<PathBuf>, Vec<String>) {
        let mut warnings = Vec::new();
        let all = match self.list() {
            Ok(all) => all,
            Err(e) => return (Vec::new(), vec![e.to_string()]),
        };
        let mut keep: BTreeSet<PathBuf> = all
            .iter()
            .rev()
            .take(self.retention.keep_last.max(1))
            .map(|(_, d)| d.clone())
            .collect();
        keep.insert(just_saved.to_path_buf());
        let mut pruned = Vec::new();
        for (_, dir) in &all {
            if keep.contains(dir) {
                continue;
            }
            match fs::remove_dir_all(dir) {
                Ok(()) => pruned.push(dir.clone()),
                Err(e) => warnings.push(format!(
                    "cannot remove old checkpoint {}: {e}",
                    dir.display()
                )),
            }
        }
        (pruned, warnings)
    }

    /// The best checkpoint by [`Retention::best`]'s metric, `(step, value, directory)`
    /// (manifests only, unverified): `checkpoints/best` when it holds the metric; otherwise
    /// (a run directory of an earlier version) the `step-…` directory that first reached the
    /// best value. `None` without [`Retention::best`].
    pub fn best(&self) -> Result<Option<(u64, f64, PathBuf)>, CheckpointError> {
        let Some(best) = &self.retention.best else {
            return Ok(None);
        };
        self.recover_best();
        let best_dir = self.best_dir();
        if let Ok(m) = read_manifest(&best_dir) {
            if let Some(v) = m.metrics.get(&best.name).copied().flatten() {
                return Ok(Some((m.step, v, best_dir)));
            }
        }
        let mut winner: Option<(u64, f64, PathBuf)> = None;
        for (step, dir) in self.list()? {
            let Ok(m) = read_manifest(&dir) else { continue };
            let Some(v) = m.metrics.get(&best.name).copied().flatten() else {
                continue;
            };
            if best.improves(v, winner.as_ref().map(|w| w.1)) {
                winner = Some((step, v, dir));
            }
        }
        Ok(winner)
    }
}

fn validate_names(files: &[(&str, &[u8])]) -> Result<(), CheckpointError> {
    let mut seen = BTreeSet::new();
    for (name, _) in files {
        let invalid = |reason| CheckpointError::InvalidName {
            name: name.to_string(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("empty"));
        }
        if name.contains('\\') {
            return Err(invalid("use `/` as the separator"));
        }
        let p = Path::new(name);
        if !p.components().all(|c| matches!(c, Component::Normal(_))) || name.ends_with('/') {
            return Err(invalid(
                "must be a relative path without `.`, `..` or a trailing `/`",
            ));
        }
        if *name == MANIFEST_NAME {
            return Err(invalid("reserved for the manifest"));
        }
        if !seen.insert(*name) {
            return Err(invalid("given twice"));
        }
    }
    Ok(())
}

fn write_checkpoint(
    tmp: &Path,
    step: u64,
    files: &[(&str, &[u8])],
    metrics: &BTreeMap<String, f64>,
    now: SystemTime,
) -> Result<(), CheckpointError> {
    fs::create_dir(tmp).map_err(io_err("cannot create", tmp))?;
    let mut entries = Vec::with_capacity(files.len());
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    for (name, bytes) in files {
        let path = tmp.join(name);
        if let Some(parent) = path.parent() {
            if parent != tmp && dirs.insert(parent.to_path_buf()) {
                fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
            }
        }
        write_synced(&path, bytes)?;
        entries.push(FileEntry {
            name: name.to_string(),
            size: bytes.len() as u64,
            xxh3_64: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes)),
        });
    }
    let manifest = Manifest {
        format: FORMAT_NAME.to_string(),
        format_version: FORMAT_VERSION,
        step,
        created_utc: utc_rfc3339(now),
        created_unix_ms: unix_millis(now),
        metrics: metrics
            .iter()
            .map(|(k, v)| (k.clone(), v.is_finite().then_some(*v)))
            .collect(),
        files: entries,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| CheckpointError::BadManifest {
        checkpoint: tmp.to_path_buf(),
        message: e.to_string(),
    })?;
    // Written last: a directory with a manifest has all its files.
    write_synced(&tmp.join(MANIFEST_NAME), &json)?;
    for d in dirs.iter().rev() {
        sync_dir(d)?;
    }
    sync_dir(tmp)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let mut f = File::create(path).map_err(io_err("cannot create", path))?;
    f.write_all(bytes).map_err(io_err("cannot write", path))?;
    f.sync_all().map_err(io_err("cannot fsync", path))
}

fn read_manifest(dir: &Path) -> Result<Manifest, CheckpointError> {
    let path = dir.join(MANIFEST_NAME);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CheckpointError::MissingManifest {
                checkpoint: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(io_err("cannot read", &path)(e)),
    };
    let bad = |message: String| CheckpointError::BadManifest {
        checkpoint: dir.to_path_buf(),
        message,
    };
    // Check the format fields before the full shape, so a newer format says so instead of
    // failing on some field it added.
    let head: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    if head.get("format").and_then(|v| v.as_str()) != Some(FORMAT_NAME) {
        return Err(bad(format!("`format` is not \"{FORMAT_NAME}\"")));
    }
    match head.get("format_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        Some(v) => {
            return Err(bad(format!(
                "format version {v} is not supported (this build reads version {FORMAT_VERSION})"
            )))
        }
        None => return Err(bad("no `format_version`".to_string())),
    }
    let m: Manifest = serde_json::from_value(head).map_err(|e| bad(e.to_string()))?;
    for f in &m.files {
        if validate_names(&[(f.name.as_str(), &[])]).is_err() {
            return Err(bad(format!("unsafe file name `{}`", f.name)));
        }
        if u64::from_str_radix(&f.xxh3_64, 16).is_err() || f.xxh3_64.len() != 16 {
            return Err(bad(format!(
                "bad checksum `{}` for `{}`",
                f.xxh3_64, f.name
            )));
        }
    }
    let expected_dir = format!("{DIR_PREFIX}{:08}", m.step);
    let name = dir.file_name().and_then(|n| n.to_str());
    if name != Some(expected_dir.as_str()) && name != Some(BEST_DIR_NAME) {
        return Err(bad(format!(
            "it is for step {} but the directory is not named {expected_dir} (or {BEST_DIR_NAME})",
            m.step
        )));
    }
    Ok(m)
}

/// Verifies size and checksum without holding the file in memory (weights can be GBs).
fn verify_entry_streaming(dir: &Path, entry: &FileEntry) -> Result<(), CheckpointError> {
    use std::io::Read;
    let path = dir.join(&entry.name);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CheckpointError::MissingFile {
                checkpoint: dir.to_path_buf(),
                name: entry.name.clone(),
            })
        }
        Err(e) => return Err(io_err("cannot read", &path)(e)),
    };
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("cannot read", &path)(e)),
        };
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    check_entry(dir, entry, size, hasher.digest())
}

fn check_entry(
    dir: &Path,
    entry: &FileEntry,
    size: u64,
    actual: u64,
) -> Result<(), CheckpointError> {
    if size != entry.size {
        return Err(CheckpointError::SizeMismatch {
            checkpoint: dir.to_path_buf(),
            name: entry.name.clone(),
            expected: entry.size,
            actual: size,
        });
    }
    // Validated as 16 hex digits when the manifest was read.
    let expected = u64::from_str_radix(&entry.xxh3_64, 16).unwrap_or(0);
    if actual != expected {
        return Err(CheckpointError::ChecksumMismatch {
            checkpoint: dir.to_path_buf(),
            name: entry.name.clone(),
            expected,
            actual,
        });
    }
    Ok(())
}

fn read_entry(dir: &Path, entry: &FileEntry) -> Result<Vec<u8>, CheckpointError> {
    let path = dir.join(&entry.name);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CheckpointError::MissingFile {
                checkpoint: dir.to_path_buf(),
                name: entry.name.clone(),
            })
        }
        Err(e) => return Err(io_err("cannot read", &path)(e)),
    };
    check_entry(
        dir,
        entry,
        bytes.len() as u64,
        xxhash_rust::xxh3::xxh3_64(&bytes),
    )?;
    Ok(bytes)
}
