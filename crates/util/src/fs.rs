//! Durable replacement of files and directories.
//!
//! A reader sees either the old version or the whole new one, never a torn one (the new
//! bytes are written under a temporary sibling name and renamed over the target, which is
//! atomic within one filesystem), and once a call returns the new version survives a power
//! loss (the data is fsync'd before the rename and the parent directory after it; without
//! the first, a crash can leave the new name pointing at an empty file).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A filesystem operation that failed, with the path it failed on.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct FsError {
    /// What was being done ("write", "fsync", "rename into place", …).
    pub action: &'static str,
    /// The file or directory involved (the temporary sibling where that one failed).
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

impl FsError {
    fn new(action: &'static str, path: &Path, source: io::Error) -> Self {
        FsError {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<FsError> for io::Error {
    /// Keeps the error kind and puts the action and path in the message, for callers whose
    /// errors carry a plain `io::Error`.
    fn from(e: FsError) -> Self {
        io::Error::new(e.source.kind(), e.to_string())
    }
}

fn on<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |source| FsError::new(action, path, source)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A hidden sibling of `path` for `purpose`, e.g. `dir/.name.tmp-4711`. The process id keeps
/// two processes writing the same target from sharing (and tearing) one temporary file.
fn sibling(path: &Path, purpose: &str) -> Result<PathBuf, FsError> {
    let name = path.file_name().ok_or_else(|| {
        FsError::new(
            "name a temporary sibling of",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
        )
    })?;
    Ok(parent_of(path).join(format!(
        ".{}.{purpose}-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Replaces `path` with `bytes` durably: writes a temporary file in the same directory,
/// fsyncs it, renames it over `path` and fsyncs the directory. On failure the temporary
/// file is removed and `path` is left as it was (unless only the final fsync failed).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    let tmp = sibling(path, "tmp")?;
    let written = (|| {
        let mut f = File::create(&tmp).map_err(on("create", &tmp))?;
        f.write_all(bytes).map_err(on("write", &tmp))?;
        f.sync_all().map_err(on("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(on("rename into place", path))
    })();
    if written.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = fs::remove_file(&tmp);
    }
    written?;
    sync_dir(parent_of(path))
}

/// Renames `from` to `to` (same filesystem) and fsyncs the directory holding `to`, so the
/// rename itself survives a power loss.
pub fn rename_durable(from: &Path, to: &Path) -> Result<(), FsError> {
    fs::rename(from, to).map_err(on("rename into place", to))?;
    sync_dir(parent_of(to))
}

/// fsyncs a directory so entries created, renamed or removed in it are durable.
///
/// A no-op outside Unix: std cannot open a directory as a file there, and NTFS journals
/// its metadata itself.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(on("fsync", dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// fsyncs every regular file and directory under `dir` (itself included, children first),
/// for trees written by code that does not sync (safetensors, `std::fs::write`). Symbolic
/// links are not followed.
pub fn sync_tree(dir: &Path) -> Result<(), FsError> {
    for entry in fs::read_dir(dir).map_err(on("list", dir))? {
        let entry = entry.map_err(on("list", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(on("inspect", &path))?;
        if kind.is_dir() {
            sync_tree(&path)?;
        } else if kind.is_file() {
            sync_file(&path)?;
        }
    }
    sync_dir(dir)
}

fn sync_file(path: &Path) -> Result<(), FsError> {
    // Windows flushes only handles opened for writing; Unix fsyncs a read-only one fine
    // (and the file may be read-only).
    fs::OpenOptions::new()
        .read(true)
        .write(cfg!(not(unix)))
        .open(path)
        .and_then(|f| f.sync_all())
        .map_err(on("fsync", path))
}

/// Moves the complete directory `staged` to `dest` (a sibling path on the same filesystem),
/// replacing any directory already there, and fsyncs their parent.
///
/// A directory cannot be renamed over a non-empty one, so an existing `dest` is first
/// renamed aside (`.name.old-PID`) and deleted only once the new one is in place: a crash
/// leaves the old version or the new one under `dest`, or, between the two renames, the old
/// one beside it. If the second rename fails the old one is put back. `staged` should be
/// synced already (see [`sync_tree`]).
pub fn replace_dir(staged: &Path, dest: &Path) -> Result<(), FsError> {
    let old = sibling(dest, "old")?;
    let had_old = match fs::symlink_metadata(dest) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(FsError::new("inspect", dest, e)),
    };
    if had_old {
        remove_any(&old)?;
        fs::rename(dest, &old).map_err(on("move aside", dest))?;
    }
    if let Err(e) = fs::rename(staged, dest) {
        if had_old {
            // Best effort: the rename error is the one worth reporting.
            let _ = fs::rename(&old, dest);
        }
        return Err(FsError::new("rename into place", dest, e));
    }
    sync_dir(parent_of(dest))?;
    if had_old {
        remove_any(&old)?;
    }
    Ok(())
}

/// Removes a file or directory tree; a missing path is fine.
fn remove_any(path: &Path) -> Result<(), FsError> {
    let removed = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    removed.map_err(on("remove", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn atomic_write_creates_and_replaces_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.txt");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(names(dir.path()), ["f.txt"]);
    }

    #[test]
    fn atomic_write_errors_name_the_path_and_keep_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir/f.txt");
        let e = atomic_write(&missing, b"x").unwrap_err();
        assert_eq!(e.source.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("no/such/dir"), "{e}");

        // Renaming a file over a directory fails: the directory and no temporary remain.
        let target = dir.path().join("d");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep"), b"k").unwrap();
        let e = atomic_write(&target, b"x").unwrap_err();
        assert_eq!(e.action, "rename into place");
        assert_eq!(names(dir.path()), ["d"]);
        assert_eq!(fs::read(target.join("keep")).unwrap(), b"k");

        let e = atomic_write(Path::new("/"), b"x").unwrap_err();
        assert_eq!(e.source.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn replace_dir_installs_and_replaces() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("out");
        for round in ["first", "second"] {
            let staged = root.path().join(".staged");
            fs::create_dir_all(staged.join("sub")).unwrap();
            fs::write(staged.join("sub/f"), round).unwrap();
            sync_tree(&staged).unwrap();
            replace_dir(&staged, &dest).unwrap();
            assert_eq!(fs::read_to_string(dest.join("sub/f")).unwrap(), round);
            assert_eq!(names(root.path()), ["out"]);
        }
    }

    #[test]
    fn replace_dir_puts_the_old_one_back_when_the_new_one_is_missing() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("out");
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join("f"), b"old").unwrap();
        let e = replace_dir(&root.path().join("missing"), &dest).unwrap_err();
        assert_eq!(e.action, "rename into place");
        assert_eq!(fs::read(dest.join("f")).unwrap(), b"old");
        assert_eq!(names(root.path()), ["out"]);
    }

    #[test]
    fn rename_durable_moves_and_into_io_error_keeps_kind() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        fs::write(&a, b"x").unwrap();
        rename_durable(&a, &b).unwrap();
        assert_eq!(names(root.path()), ["b"]);
        let e: io::Error = rename_durable(&a, &b).unwrap_err().into();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("rename into place"), "{e}");
    }
}
