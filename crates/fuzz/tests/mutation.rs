//! A short mutation run of every untrusted parser (the long runs are `scripts/fuzz.sh`):
//! each test fails when its parser panics, hangs, aborts the process or returns an error
//! over `MAX_MESSAGE` bytes on one of the cases.

use std::time::Duration;

use radit_fuzz::{fuzz, target, Budget, FuzzConfig};

/// Cases per target: about a second each in --release on two cores.
const CASES: u64 = 1000;

fn short_run(name: &str) {
    let t = target(name).expect("a target of that name");
    let config = FuzzConfig {
        seed: 0x7e57_0000,
        budget: Budget::Cases(CASES),
        // Generous: the test machine may be busy with other builds.
        case_budget: Duration::from_secs(30),
        progress_every: None,
    };
    let report = fuzz(t, &config).expect("the seeds build and parse");
    assert_eq!(report.cases, CASES, "{}", report.summary());
    assert!(report.failures.is_empty(), "{}", report.summary());
    // Some mutants still parse: the cases reach past the first check. (Not every target
    // rejects any: the corpus reader reports bad records and keeps going.)
    assert!(report.ok > 0, "{}", report.summary());
}

#[test]
fn gguf() {
    short_run("gguf");
}

#[test]
fn config_json() {
    short_run("config-json");
}

#[test]
fn safetensors() {
    short_run("safetensors");
}

#[test]
fn tokenizer() {
    short_run("tokenizer");
}

#[test]
fn recipe() {
    short_run("recipe");
}

#[test]
fn jsonl() {
    short_run("jsonl");
}

#[test]
fn tsv() {
    short_run("tsv");
}

#[test]
fn corpus() {
    short_run("corpus");
}

#[test]
fn manifest() {
    short_run("manifest");
}

/// Cases the long runs found, replayed: each hung or crashed a parser before its fix.
/// (target, seed, case)
const FOUND: &[(&str, u64, u64)] = &[
    // A q/k tensor with a zero-sized dimension and a first dimension of 2^63 kept the
    // llama.cpp row un-permutation looping over empty slices.
    ("gguf", 0x1201, 129_989),
    // A 60,000-character document id repeated: the duplicate-id warning quoted it whole.
    ("corpus", 0x1201, 4_650),
    // A 10,000-character summaries.json key of a malformed entry, quoted whole.
    ("corpus", 0x1201, 553_351),
];

#[test]
fn cases_found_by_long_runs_stay_fixed() {
    for &(name, seed, case) in FOUND {
        let t = target(name).expect("a target of that name");
        let prepared = radit_fuzz::Prepared::new(t, Duration::from_secs(30)).expect("seeds");
        let (file, m) = prepared.case(seed, case);
        let outcome = prepared.run_bytes(file, m.bytes, Duration::from_secs(30));
        if let radit_fuzz::Outcome::Failure(failure) = outcome {
            panic!("{name} seed {seed:#x} case {case} ({}): {failure}", m.what);
        }
    }
}

#[test]
fn feedback_labels() {
    short_run("feedback-labels");
}

#[test]
fn feedback_db() {
    short_run("feedback-db");
}

#[test]
fn feedback_preferences() {
    short_run("feedback-preferences");
}
