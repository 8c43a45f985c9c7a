//! Mutation test of the two parsers that read untrusted model files: the GGUF reader (with
//! the Llama config and tokenizer built from its metadata) and the `config.json` parser.
//!
//! The cases come from radit-util's shared generator ([`radit_util::mutate`]): seeded flips,
//! truncations, huge integer patches and text edits of a small valid input. Every case must
//! end in `Ok` or a short `Err` (never a panic, an abort or a huge allocation). The long
//! runs of these and the other untrusted parsers are `scripts/fuzz.sh` (crates/fuzz).

use std::path::{Path, PathBuf};
use std::time::Duration;

use radit_util::mutate::{run_case, Mutation, Mutator, Outcome, Style};

use super::testutil::tiny_llama_gguf;
use super::GgufFile;
use crate::config::{model_family, BertConfig, LlamaConfig};
use crate::loader::llama_config_from_gguf;

/// Per-case time budget: generous, the machine running the tests may be busy.
const BUDGET: Duration = Duration::from_secs(20);

/// Runs `parse` on every case; returns the failures and how many cases parsed cleanly.
fn run<F>(cases: Vec<Mutation>, parse: F) -> (Vec<String>, usize)
where
    F: Fn(Vec<u8>) -> Result<(), String> + Send + Sync + Copy + 'static,
{
    let mut failures = Vec::new();
    let mut clean = 0;
    for case in cases {
        let Mutation { what, bytes } = case;
        match run_case(BUDGET, move || parse(bytes)) {
            Outcome::Ok => clean += 1,
            Outcome::Err(_) => {}
            Outcome::Failure(f) => failures.push(format!("{what}: {f}")),
        }
    }
    (failures, clean)
}

/// `Ok` without errors, else the longest one (the one the message-length check is about).
fn longest(errors: Vec<String>) -> Result<(), String> {
    errors
        .into_iter()
        .max_by_key(String::len)
        .map_or(Ok(()), Err)
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

    let mutator = Mutator::new(&good, data_start, Style::Binary);
    let cases: Vec<Mutation> = (0..400).map(|i| mutator.case(0x5eed_6767, i)).collect();
    let n = cases.len();
    // One file per case: a case that overran the budget may still be reading its own.
    let root: &'static Path = Box::leak(dir.path().to_path_buf().into_boxed_path());
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let counter: &'static _ = Box::leak(Box::new(counter));
    let (failures, clean) = run(cases, move |bytes| {
        let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path: PathBuf = root.join(format!("mutant-{i}.gguf"));
        std::fs::write(&path, bytes).expect("write");
        let errors = read_gguf(&path);
        let _ = std::fs::remove_file(&path);
        longest(errors)
    });
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n{}",
        failures.len(),
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

#[test]
fn config_json_mutations_never_panic_and_errors_stay_short() {
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
        let mutator = Mutator::new(good, good.len(), Style::Text);
        let cases: Vec<Mutation> = (0..300)
            .map(|i| mutator.case(0xc0ff_ee00 ^ good.len() as u64, i))
            .collect();
        let n = cases.len();
        let (failures, _) = run(cases, |bytes| longest(read_config(&bytes)));
        assert!(
            failures.is_empty(),
            "{name}: {} of {n} cases failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}
