use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{MetricError, MetricSink};

/// One JSON object per `log_scalars` call: `{"step":12,"train/loss":2.31,...}`, in the
/// order given. Non-finite values are written as `null` (JSON has no NaN).
///
/// The file is opened for appending, so a resumed run continues it; steps logged after the
/// last checkpoint of the interrupted run then appear twice, and readers should keep the
/// last line per step.
pub struct JsonlSink {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonlSink {
    /// Opens (creating it and its directory if needed) `path` for appending.
    pub fn append(path: &Path) -> Result<Self, MetricError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| MetricError::Io {
                action: "cannot create",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| MetricError::Io {
                action: "cannot open",
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
