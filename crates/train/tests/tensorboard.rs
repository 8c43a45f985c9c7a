//! The TensorBoard sink's event files: TFRecord framing and CRCs checked in Rust, and read
//! back by Python's `tensorboard` package when `RADIT_PYTHON` names a Python that has it.

use std::path::{Path, PathBuf};

use radit_train::metrics::{MetricLogger, MetricSink, TensorBoardSink};

const SCALARS: &[(u64, &[(&str, f64)])] = &[
    (1, &[("train/loss", 2.5), ("train/lr", 1e-4)]),
    (2, &[("train/loss", 2.25), ("train/lr", 2e-4)]),
    (10, &[("train/loss", 1.75), ("dev/em", 0.5)]),
];

fn write_events(dir: &Path) {
    let mut sink = TensorBoardSink::create(dir).expect("create sink");
    for (step, scalars) in SCALARS {
        sink.log_scalars(*step, scalars).expect("log");
    }
    sink.flush().expect("flush");
    // Every call writes straight to the file: nothing is left to do on drop.
}

fn event_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("events.out.tfevents.")
        })
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// CRC-32C (Castagnoli), bitwise: slow but obviously right, and independent of the writer.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn masked(data: &[u8]) -> u32 {
    let c = crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn varint(buf: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = buf[*pos];
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    v
}

/// Protobuf fields of one message: (field number, wire type, bytes or varint/fixed value).
fn fields(buf: &[u8]) -> Vec<(u64, u8, Vec<u8>, u64)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos);
        let (field, wire) = (key >> 3, (key & 7) as u8);
        match wire {
            0 => out.push((field, wire, Vec::new(), varint(buf, &mut pos))),
            1 => {
                let v = u64::from_le_bytes(buf[pos..pos + 8].try_into().unwrap());
                pos += 8;
                out.push((field, wire, Vec::new(), v));
            }
            2 => {
                let len = varint(buf, &mut pos) as usize;
                out.push((field, wire, buf[pos..pos + len].to_vec(), 0));
                pos += len;
            }
            5 => {
                let v = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap());
                pos += 4;
                out.push((field, wire, Vec::new(), u64::from(v)));
            }
            w => panic!("unexpected wire type {w}"),
        }
    }
    out
}

#[test]
fn event_file_framing_crcs_and_scalars() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let bytes = std::fs::read(event_file(dir.path())).unwrap();

    let mut pos = 0;
    let mut records = Vec::new();
    while pos < bytes.len() {
        let len_bytes = &bytes[pos..pos + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        let len_crc = u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().unwrap());
        assert_eq!(
            len_crc,
            masked(len_bytes),
            "length CRC of record {}",
            records.len()
        );
        let payload = &bytes[pos + 12..pos + 12 + len];
        let data_crc =
            u32::from_le_bytes(bytes[pos + 12 + len..pos + 16 + len].try_into().unwrap());
        assert_eq!(
            data_crc,
            masked(payload),
            "payload CRC of record {}",
            records.len()
        );
        records.push(payload.to_vec());
        pos += 16 + len;
    }
    assert_eq!(pos, bytes.len(), "trailing bytes");

    // Event: 1 wall_time (double), 2 step (int64), 3 file_version (string), 5 summary.
    // Summary: 1 repeated Value. Value: 1 tag (string), 2 simple_value (float).
    let first = fields(&records[0]);
    assert!(
        first.iter().any(|f| f.0 == 3 && f.2 == b"brain.Event:2"),
        "{first:?}"
    );
    let mut got = Vec::new();
    for rec in &records[1..] {
        let f = fields(rec);
        let step = f.iter().find(|x| x.0 == 2).map(|x| x.3).unwrap_or(0);
        for summary in f.iter().filter(|x| x.0 == 5) {
            for value in fields(&summary.2).iter().filter(|x| x.0 == 1) {
                let v = fields(&value.2);
                let tag =
                    String::from_utf8(v.iter().find(|x| x.0 == 1).unwrap().2.clone()).unwrap();
                let val = f32::from_bits(v.iter().find(|x| x.0 == 2).unwrap().3 as u32);
                got.push((step, tag, val));
            }
        }
    }
    let want: Vec<(u64, String, f32)> = SCALARS
        .iter()
        .flat_map(|(s, xs)| xs.iter().map(move |(n, v)| (*s, n.to_string(), *v as f32)))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn python_tensorboard_reads_the_events() {
    let Some(python) = std::env::var_os("RADIT_PYTHON") else {
        eprintln!(
            "notice: skipping the Python TensorBoard check; set RADIT_PYTHON to a python \
             with the `tensorboard` package to run it"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let mut expected = serde_json::Map::new();
    for (step, scalars) in SCALARS {
        for (name, v) in *scalars {
            let e = expected
                .entry(name.to_string())
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let serde_json::Value::Array(a) = e {
                a.push(serde_json::json!([step, v]));
            }
        }
    }
    let expected_path = dir.path().join("expected.json");
    std::fs::write(&expected_path, serde_json::to_vec(&expected).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check_tensorboard.py");
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(dir.path())
        .arg(&expected_path)
        .output()
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "check_tensorboard.py failed:\n{text}");
    eprintln!("{text}");
}

#[test]
fn unwritable_directory_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = TensorBoardSink::create(&file.join("tb"))
        .err()
        .expect("must fail");
    assert!(err.to_string().starts_with("cannot create"), "{err}");
}

#[test]
fn two_sinks_in_one_directory_write_separate_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = TensorBoardSink::create(dir.path()).unwrap();
    let mut b = TensorBoardSink::create(dir.path()).unwrap();
    a.log_scalars(1, &[("a", 1.0)]).unwrap();
    b.log_scalars(1, &[("b", 2.0)]).unwrap();
    let n = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("events.out.tfevents.")
        })
        .count();
    assert_eq!(n, 2);
}

#[test]
fn logger_with_tensorboard_and_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let mut logger = MetricLogger::new()
        .with_sink(Box::new(
            TensorBoardSink::create(&dir.path().join("tb")).unwrap(),
        ))
        .with_sink(Box::new(
            radit_train::metrics::JsonlSink::append(&dir.path().join("metrics.jsonl")).unwrap(),
        ));
    for (step, scalars) in SCALARS {
        logger.log_scalars(*step, scalars);
    }
    logger.flush();
    assert_eq!(logger.active_sinks(), vec!["tensorboard", "jsonl"]);
    drop(logger);
    let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 3);
    event_file(&dir.path().join("tb"));
}
