use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{MetricError, MetricSink};

/// One JSON object per `log_scalars` call: `{"step":12,"train/loss":2.31,...}`, in the
/// order given. Non-finite values are written as `null` (JSON has no NaN).
///
/// The file is opened for appending, so a resumed run continues it, and two repairs keep it
/// one row per line and one row per step and metric:
///
/// - Opening cuts off a last line without its newline (a crash in the middle of a write),
///   with a warning, instead of gluing the next row onto it. Nothing worth keeping is lost:
///   the trainer logs a step's rows before saving its checkpoint, so a torn row is from a
///   step after the last checkpoint, which a resume runs and logs again.
/// - [`MetricSink::resumed_at`] (called by the trainer after it restores the checkpoint of
///   step S) drops the rows of steps after S, which the interrupted run logged after its
///   last checkpoint and the resumed one logs again. The file is rewritten atomically.
pub struct JsonlSink {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonlSink {
    /// Opens (creating it and its directory if needed) `path` for appending, first cutting
    /// off an incomplete last line.
    pub fn append(path: &Path) -> Result<Self, MetricError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| MetricError::Io {
                action: "cannot create",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut file = open_append(path)?;
        repair_tail(&mut file, path).map_err(|source| MetricError::Io {
            action: "cannot repair",
            path: path.to_path_buf(),
            source,
        })?;
        Ok(JsonlSink {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    fn io(&self, source: std::io::Error) -> MetricError {
        MetricError::Io {
            action: "cannot write",
            path: self.path.clone(),
            source,
        }
    }
}

fn open_append(path: &Path) -> Result<File, MetricError> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|source| MetricError::Io {
            action: "cannot open",
            path: path.to_path_buf(),
            source,
        })
}

/// Truncates a regular file after its last newline, if it does not end with one.
fn repair_tail(file: &mut File, path: &Path) -> std::io::Result<()> {
    let meta = file.metadata()?;
    let len = meta.len();
    if !meta.is_file() || len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Scan backwards for the newline that ends the last complete line.
    let mut end = len;
    let mut keep = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            keep = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    let mut torn = vec![0u8; (len - keep).min(200) as usize];
    file.seek(SeekFrom::Start(keep))?;
    file.read_exact(&mut torn)?;
    file.set_len(keep)?;
    file.sync_data()?;
    tracing::warn!(
        "{}: cut off an incomplete last line ({} bytes, from a crash during a write): {}{}",
        path.display(),
        len - keep,
        String::from_utf8_lossy(&torn),
        if len - keep > 200 { "…" } else { "" }
    );
    Ok(())
}

/// The `step` of a line written by [`json_line`]; `None` for anything else.
fn line_step(line: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()?
        .get("step")?
        .as_u64()
}

/// Formats one line (without the newline).
pub(crate) fn json_line(step: u64, scalars: &[(&str, f64)]) -> String {
    let mut line = format!("{{\"step\":{step}");
    for (name, value) in scalars {
        // serde_json escapes the name; a non-finite f64 has no JSON number form.
        let name = serde_json::Value::String((*name).to_string());
        let value = serde_json::Number::from_f64(*value)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null);
        line.push_str(&format!(",{name}:{value}"));
    }
    line.push('}');
    line
}

impl MetricSink for JsonlSink {
    fn name(&self) -> &str {
        "jsonl"
    }

    fn log_scalars(&mut self, step: u64, scalars: &[(&str, f64)]) -> Result<(), MetricError> {
        let mut line = json_line(step, scalars);
        line.push('\n');
        // Flushed per call: a killed run keeps every line it logged, at one write(2) a step.
        self.out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.flush())
            .map_err(|e| self.io(e))
    }

    fn flush(&mut self) -> Result<(), MetricError> {
        self.out.flush().map_err(|e| self.io(e))?;
        self.out.get_ref().sync_data().map_err(|e| self.io(e))
    }

    /// Drops the rows of steps after `step` (lines that are not rows are kept).
    fn resumed_at(&mut self, step: u64) -> Result<(), MetricError> {
        self.out.flush().map_err(|e| self.io(e))?;
        if !self
            .out
            .get_ref()
            .metadata()
            .map_err(|e| self.io(e))?
            .is_file()
        {
            return Ok(());
        }
        let text = std::fs::read(&self.path).map_err(|source| MetricError::Io {
            action: "cannot read",
            path: self.path.clone(),
            source,
        })?;
        let text = String::from_utf8_lossy(&text);
        let mut kept = String::with_capacity(text.len());
        let mut dropped = 0usize;
        for line in text.split_inclusive('\n') {
            if line_step(line.trim_end()).is_some_and(|s| s > step) {
                dropped += 1;
            } else {
                kept.push_str(line);
            }
        }
        if dropped == 0 {
            return Ok(());
        }
        radit_util::fs::atomic_write(&self.path, kept.as_bytes()).map_err(|e| MetricError::Io {
            action: "cannot rewrite",
            path: self.path.clone(),
            source: e.source,
        })?;
        // The old handle points at the replaced file.
        self.out = BufWriter::new(open_append(&self.path)?);
        tracing::info!(
            "{}: dropped {dropped} rows of steps after {step}, which the resumed run logs again",
            self.path.display()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_append() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/metrics.jsonl");
        {
            let mut s = JsonlSink::append(&p).unwrap();
            s.log_scalars(1, &[("train/loss", 2.5), ("lr", 1e-4)])
                .unwrap();
            s.log_scalars(2, &[("train/loss", f64::NAN), ("we\"ird", 1.0)])
                .unwrap();
        }
        {
            let mut s = JsonlSink::append(&p).unwrap();
            s.log_scalars(3, &[("dev/em", 0.5)]).unwrap();
            s.flush().unwrap();
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], r#"{"step":1,"train/loss":2.5,"lr":0.0001}"#);
        assert_eq!(lines[1], r#"{"step":2,"train/loss":null,"we\"ird":1.0}"#);
        assert_eq!(lines[2], r#"{"step":3,"dev/em":0.5}"#);
        for l in lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["step"].is_u64());
        }
    }

    #[test]
    fn a_torn_last_line_is_cut_off_not_glued_to_the_next_row() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        std::fs::write(&p, "{\"step\":1,\"x\":1.0}\n{\"step\":2,\"x\":2.").unwrap();
        let ((), events) = crate::testlog::capture(|| {
            let mut s = JsonlSink::append(&p).unwrap();
            s.log_scalars(2, &[("x", 2.5)]).unwrap();
        });
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, "{\"step\":1,\"x\":1.0}\n{\"step\":2,\"x\":2.5}\n");
        assert!(
            events
                .iter()
                .any(|(level, msg)| *level == tracing::Level::WARN
                    && msg.contains("incomplete last line")),
            "{events:?}"
        );
        // A file that is only a torn line becomes empty; a complete one is untouched.
        std::fs::write(&p, "{\"step\":1,\"x\"").unwrap();
        drop(JsonlSink::append(&p).unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
        std::fs::write(&p, "{\"step\":1}\n").unwrap();
        drop(JsonlSink::append(&p).unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"step\":1}\n");
    }

    #[test]
    fn resuming_drops_the_rows_of_later_steps() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        {
            let mut s = JsonlSink::append(&p).unwrap();
            for step in 1..=5 {
                s.log_scalars(step, &[("x", step as f64)]).unwrap();
            }
        }
        let mut s = JsonlSink::append(&p).unwrap();
        s.resumed_at(3).unwrap();
        s.log_scalars(4, &[("x", 40.0)]).unwrap();
        s.flush().unwrap();
        let steps: Vec<u64> = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| line_step(l).unwrap())
            .collect();
        assert_eq!(steps, vec![1, 2, 3, 4]);
        // Nothing to drop: the file is left alone.
        s.resumed_at(10).unwrap();
        s.log_scalars(5, &[("x", 50.0)]).unwrap();
        drop(s);
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 5);
    }

    #[test]
    fn unwritable_path_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(JsonlSink::append(&file.join("m.jsonl")).is_err());
    }

    #[test]
    fn full_disk_is_an_error() {
        // /dev/full fails every write with ENOSPC, like a full disk.
        if let Ok(mut s) = JsonlSink::append(Path::new("/dev/full")) {
            assert!(s.log_scalars(1, &[("x", 1.0)]).is_err());
        }
    }
}
