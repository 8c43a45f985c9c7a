//! Mutation test of the two parsers that read untrusted model files: the GGUF reader (with
//! the Llama config and tokenizer built from its metadata) and the `config.json` parser.
//!
//! Seeded byte flips, truncations and huge-length patches of a small valid input: every
//! case must end in `Ok` or `Err` (never a panic, an abort or a huge allocation), and every
//! error message must stay short.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use radit_util::rng::SplitMix64;

use super::testutil::tiny_llama_gguf;
use super::GgufFile;
use crate::config::{model_family, BertConfig, LlamaConfig};
use crate::loader::llama_config_from_gguf;

/// Longest error message accepted.
const MAX_MESSAGE: usize = 4096;

/// Values patched over length and count fields.
const HUGE: [u64; 7] = [
    u64::MAX,
    u64::MAX / 2,
    1 << 63,
    1 << 40,
    1 << 31,
    u32::MAX as u64,
    0x0800_0000,
];

/// One mutated input and what was done to it (for the failure report).
struct Case {
    what: String,
    bytes: Vec<u8>,
}

/// Offsets of 8-byte fields in `header` that hold a small non-zero little-endian value:
/// the lengths and counts a huge-length patch should hit.
fn length_fields(header: &[u8]) -> Vec<usize> {
    (0..header.len().saturating_sub(8))
        .filter(|&at| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[at..at + 8]);
            (1..=1 << 16).contains(&u64::from_le_bytes(b))
        })
        .collect()
}

/// `n` seeded mutations of `good`; flips and patches favour the first `focus` bytes, where
/// the structure is.
fn mutations(good: &[u8], focus: usize, n: usize, seed: u64) -> Vec<Case> {
    let mut rng = SplitMix64::new(seed);
    let fields = length_fields(&good[..focus.min(good.len())]);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut bytes = good.to_vec();
        let what = match i % 4 {
            0 | 1 => {
                let flips = 1 + rng.below(4);
                let mut at_list = Vec::new();
                for _ in 0..flips {
                    let span = if rng.below(4) == 0 {
                        bytes.len()
                    } else {
                        focus
                    };
                    let at = rng.below(span.min(bytes.len()) as u64) as usize;
                    bytes[at] ^= 1 << rng.below(8);
                    at_list.push(at);
                }
                format!("bit flips at {at_list:?}")
            }
            2 => {
                let len = rng.below(bytes.len() as u64) as usize;
                bytes.truncate(len);
                format!("truncated to {len} bytes")
            }
            _ => {
                // Half the file: a length that still fits, so the bytes it covers are read.
                let fits = good.len() as u64 / 2;
                let value = match rng.below(HUGE.len() as u64 + 2) as usize {
                    k if k < HUGE.len() => HUGE[k],
                    _ => fits,
                };
                let at = match fields.len() {
                    0 => rng.below(focus.saturating_sub(8).max(1) as u64) as usize,
                    n => fields[rng.below(n as u64) as usize],
                };
                let end = (at + 8).min(bytes.len());
                bytes[at..end].copy_from_slice(&value.to_le_bytes()[..end - at]);
                format!("u64 {value:#x} patched at {at}")
            }
        };
        out.push(Case { what, bytes });
    }
    out
}

/// Runs `parse` on every case; returns the cases that panicked or gave an over-long
/// message, and how many parsed.
fn run(cases: &[Case], mut parse: impl FnMut(&[u8]) -> Vec<String>) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let mut clean = 0;
    for case in cases {
        match catch_unwind(AssertUnwindSafe(|| parse(&case.bytes))) {
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: panicked: {msg}", case.what));
            }
            Ok(errors) => {
                if errors.is_empty() {
                    clean += 1;
                }
                for e in errors {
                    if e.len() >= MAX_MESSAGE {
                        failures.push(format!(
                            "{}: {}-byte error message: {}...",
                            case.what,
                            e.len(),
                            e.chars().take(200).collect::<String>()
                        ));
                    }
                }
            }
        }
    }
    (failures, clean)
}

/// Everything radit reads from a GGUF file before loading weights; the error messages.
fn read_gguf(path: &Path) -> Vec<String> {
    let file = match GgufFile::open(path) {
        Ok(f) => f,
        Err(e) => return vec![e.to_string()],
    };
    let mut errors = Vec::new();
    if let Err(e) = llama_config_from_gguf(path, &file) {
        errors.push(e.to_string());
    }
    for t in &file.tensors {
        if let Err(e) = file.tensor_f32(&t.name) {
            errors.push(e.to_string());
        }
    }
    if let Err(e) = file.tokenizer() {
        errors.push(e.to_string());
    }
    let _ = file.special_token_ids();
    errors
}

#[test]
fn gguf_mutations_never_panic_and_errors_stay_short() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (good, data_start) = tiny_llama_gguf();
    let path = dir.path().join("mutant.gguf");
    std::fs::write(&path, &good).expect("write");
    assert_eq!(read_gguf(&path), Vec::<String>::new(), "the unmutated file");

    let cases = mutations(&good, data_start, 400, 0x5eed_6767);
    let (failures, clean) = run(&cases, |bytes| {
        std::fs::write(&path, bytes).expect("write");
        read_gguf(&path)
    });
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Flips in tensor data leave a readable file: the test reaches past the header.
    assert!(clean > 0, "no mutated file read cleanly");
}

/// Everything radit derives from a `config.json`; the error messages.
fn read_config(bytes: &[u8]) -> Vec<String> {
    let path = Path::new("config.json");
    let value: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return vec![e.to_string()],
    };
    let mut errors = Vec::new();
    if let Err(e) = model_family(path, &value) {
        errors.push(e.to_string());
    }
    match LlamaConfig::from_json(path, &value) {
        Ok(c) => {
            let _ = crate::llama::rope_inv_freq(&c);
        }
        Err(e) => errors.push(e.to_string()),
    }
    if let Err(e) = BertConfig::from_json(path, &value) {
        errors.push(e.to_string());
    }
    errors
}

/// Numbers in a JSON text, with their byte ranges.
fn numbers(text: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if text[i].is_ascii_digit() && (i == 0 || !text[i - 1].is_ascii_alphanumeric()) {
            let start = i;
            while i < text.len() && (text[i].is_ascii_digit() || b".eE-+".contains(&text[i])) {
                i += 1;
            }
            out.push((start, i));
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn config_json_mutations_never_panic_and_errors_stay_short() {
    const REPLACEMENTS: [&str; 8] = [
        "1000000000",
        "18446744073709551615",
        "4294967296",
        "0",
        "-1",
        "1e308",
        "-0.0",
        "\"x\"",
    ];
    for (name, fixture) in [
        (
            "minilm",
            include_str!("../../tests/fixtures/minilm_config.json"),
        ),
        (
            "smollm2",
            include_str!("../../tests/fixtures/smollm2_config.json"),
        ),
    ] {
        let good = fixture.as_bytes();
        assert!(
            read_config(good).len() == 1,
            "{name}: exactly one family should reject the fixture: {:?}",
            read_config(good)
        );
        let mut cases = mutations(good, good.len(), 240, 0xc0ff_ee00 ^ good.len() as u64);
        // Number swaps: every numeric value replaced by out-of-range ones.
        let mut rng = SplitMix64::new(7);
        for (start, end) in numbers(good) {
            let with = REPLACEMENTS[rng.below(REPLACEMENTS.len() as u64) as usize];
            let mut bytes = good[..start].to_vec();
            bytes.extend(with.as_bytes());
            bytes.extend(&good[end..]);
            cases.push(Case {
                what: format!("number at {start} replaced by {with}"),
                bytes,
            });
        }
        let (failures, _) = run(&cases, read_config);
        assert!(
            failures.is_empty(),
            "{name}: {} of {} cases failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }
}
