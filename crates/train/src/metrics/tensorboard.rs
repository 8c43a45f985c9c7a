use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{MetricError, MetricSink};

/// TensorBoard event files (`events.out.tfevents.*`) in a directory, written by a small
/// encoder of our own: TFRecord framing with masked CRC-32C, and the few protobuf fields of
/// `Event`/`Summary` that scalars need.
///
/// Every call writes its records straight to the file (no buffering in between), so a
/// killed process leaves a readable file. It never panics: I/O errors are returned as
/// [`MetricError`]s, and after a failed write the sink refuses further calls (the file may
/// end in a partial record). Values are stored as f32, TensorBoard's scalar type.
pub struct TensorBoardSink {
    dir: PathBuf,
    path: PathBuf,
    file: Option<File>,
}

impl TensorBoardSink {
    /// Creates `dir` if needed and starts an event file in it.
    pub fn create(dir: &Path) -> Result<Self, MetricError> {
        fs::create_dir_all(dir).map_err(|source| MetricError::Io {
            action: "cannot create",
            path: dir.to_path_buf(),
            source,
        })?;
        // Unique per process and per sink, so two writers never share (or clobber) a file.
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut name = format!(
            "events.out.tfevents.{secs}.{}.{}",
            hostname(),
            std::process::id()
        );
        if seq > 0 {
            name.push_str(&format!(".{seq}"));
        }
        let path = dir.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| MetricError::Io {
                action: "cannot create",
                path: path.clone(),
                source,
            })?;
        let mut sink = TensorBoardSink {
            dir: dir.to_path_buf(),
            path,
            file: Some(file),
        };
        let mut event = Vec::new();
        encode_event_header(&mut event, wall_time(), 0);
        put_bytes(&mut event, 3, b"brain.Event:2");
        let mut buf = Vec::new();
        frame_record(&mut buf, &event);
        sink.write(&buf)?;
        Ok(sink)
    }

    /// The event directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), MetricError> {
        let Some(file) = self.file.as_mut() else {
            return Err(MetricError::Other(format!(
                "the TensorBoard writer for {} has already failed",
                self.path.display()
            )));
        };
        match file.write_all(bytes).and_then(|()| file.flush()) {
            Ok(()) => Ok(()),
            Err(source) => {
                // The file may now end in a partial record: write nothing more to it.
                self.file = None;
                Err(MetricError::Io {
                    action: "cannot write",
                    path: self.path.clone(),
                    source,
                })
            }
        }
    }
}

impl MetricSink for TensorBoardSink {
    fn name(&self) -> &str {
        "tensorboard"
    }

    fn log_scalars(&mut self, step: u64, scalars: &[(&str, f64)]) -> Result<(), MetricError> {
        if scalars.is_empty() {
            return Ok(());
        }
        let step = i64::try_from(step)
            .map_err(|_| MetricError::Other(format!("step {step} does not fit in int64")))?;
        let mut summary = Vec::new();
        let mut value = Vec::new();
        for (tag, v) in scalars {
            value.clear();
            put_bytes(&mut value, 1, tag.as_bytes());
            put_key(&mut value, 2, WIRE_FIXED32);
            value.extend_from_slice(&(*v as f32).to_le_bytes());
            put_bytes(&mut summary, 1, &value);
        }
        let mut event = Vec::new();
        encode_event_header(&mut event, wall_time(), step);
        put_bytes(&mut event, 5, &summary);
        let mut buf = Vec::new();
        frame_record(&mut buf, &event);
        self.write(&buf)
    }

    fn flush(&mut self) -> Result<(), MetricError> {
        // Records are written unbuffered on every call; only report an earlier failure.
        self.write(&[])
    }
}

fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The host name for the file name (TensorBoard's convention), from std-only sources;
/// characters other than `[A-Za-z0-9._-]` become `_`.
fn hostname() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_key(buf: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(buf, (u64::from(field) << 3) | u64::from(wire));
}

fn put_bytes(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(buf, field, WIRE_LEN);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// `Event` fields 1 (wall_time, double) and 2 (step, int64).
fn encode_event_header(buf: &mut Vec<u8>, wall_time: f64, step: i64) {
    put_key(buf, 1, WIRE_FIXED64);
    buf.extend_from_slice(&wall_time.to_le_bytes());
    put_key(buf, 2, WIRE_VARINT);
    // int64 is encoded as its two's-complement u64 (steps here are never negative).
    put_varint(buf, step as u64);
}

/// One TFRecord: u64 LE length, masked CRC of the length bytes, payload, masked CRC of it.
fn frame_record(buf: &mut Vec<u8>, payload: &[u8]) {
    let len = (payload.len() as u64).to_le_bytes();
    buf.extend_from_slice(&len);
    buf.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    buf.extend_from_slice(payload);
    buf.extend_from_slice(&masked_crc32c(payload).to_le_bytes());
}

const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut k = 0;
        while k < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            k += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = CRC32C_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// TFRecord's masked CRC: rotate right by 15, then add a constant.
fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    // (crc >> 15) | (crc << 17)
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_values() {
        // RFC 3720 / iSCSI check values.
        assert_eq!(crc32c(b""), 0);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn varint_encoding() {
        let mut b = Vec::new();
        put_varint(&mut b, 0);
        put_varint(&mut b, 1);
        put_varint(&mut b, 300);
        put_varint(&mut b, u64::MAX);
        assert_eq!(
            b,
            [0, 1, 0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn step_beyond_int64_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = TensorBoardSink::create(dir.path()).unwrap();
        assert!(sink.log_scalars(u64::MAX, &[("x", 1.0)]).is_err());
        assert!(sink.log_scalars(1, &[("x", 1.0)]).is_ok());
    }
}
