//! Atomic file writes (temporary file, fsync, rename).
//!
//! Temporary: replaced by the workspace's shared atomic write once it lands.

use std::io::Write;
use std::path::Path;

use crate::error::{PipelineError, Result};

/// Writes `bytes` to `path` atomically: a crash leaves the old file or the new one.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let io = |e| PipelineError::io(path, e);
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
