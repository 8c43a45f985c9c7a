//! The `radit` binary as a user runs it: real models through `generate` and `embed`, and
//! clear errors for bad sources. Real-model checks skip without assets unless
//! `RADIT_REQUIRE_ASSETS=1`.

use std::path::PathBuf;
use std::process::{Command, Output};

fn radit(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_radit"));
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn assets() -> Option<PathBuf> {
    let root = std::env::var_os("RADIT_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/radit/assets")
        });
    if root.join("all-MiniLM-L6-v2/model.safetensors").is_file() {
        return Some(root);
    }
    assert!(
        std::env::var("RADIT_REQUIRE_ASSETS").as_deref() != Ok("1"),
        "assets missing under {}",
        root.display()
    );
    eprintln!("skipping: assets missing under {}", root.display());
    None
}

#[test]
fn embed_prints_the_reference_embedding() {
    let Some(root) = assets() else { return };
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/tests/fixtures/minilm_embeddings.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let sentence = fixture["sentences"][0].as_str().unwrap();
    let model = root.join("all-MiniLM-L6-v2");
    let out = radit(
        &[
            "embed",
            "--model",
            model.to_str().unwrap(),
            "--text",
            sentence,
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<f32> = serde_json::from_slice(&out.stdout).unwrap();
    let expected: Vec<f32> = fixture["mean_normalized"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(printed.len(), 384);
    let diff = printed
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff <= 1e-4, "max |Δ| {diff}");
}

#[test]
fn generate_answers_with_the_chat_template() {
    let Some(root) = assets() else { return };
    let model = root.join("SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf");
    let out = radit(
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "What is the capital of France?",
            "--max-new-tokens",
            "12",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Paris"), "completion: {text}");
    assert!(
        !text.contains("<|im_end|>"),
        "special tokens must not be printed: {text}"
    );
}

#[test]
fn missing_model_is_a_clear_error() {
    let out = radit(
        &["generate", "--model", "./no/such/model", "--prompt", "hi"],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("./no/such/model"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn offline_hub_miss_names_id_and_cache() {
    let cache = tempfile::tempdir().unwrap();
    let cache_path = cache.path().to_str().unwrap();
    let out = radit(
        &["embed", "--model", "acme/not-cached", "--text", "x"],
        &[("HF_HUB_OFFLINE", "1"), ("HF_HUB_CACHE", cache_path)],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("acme/not-cached") && err.contains(cache_path),
        "{err}"
    );
}

#[test]
fn index_build_search_and_stats_with_minilm() {
    let Some(root) = assets() else { return };
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    let docs = [
        ("mars", "Mars", "Mars is the fourth planet from the Sun. Iron oxide on its surface gives it a reddish appearance, so it is often called the Red Planet."),
        ("bach", "Johann Sebastian Bach", "Bach was a German composer of the Baroque period, known for the Brandenburg Concertos and the Mass in B minor."),
        ("nile", "Nile", "The Nile is a major river in northeastern Africa that flows north into the Mediterranean Sea."),
        ("photosynthesis", "Photosynthesis", "Photosynthesis is the process by which plants use sunlight, water and carbon dioxide to make sugar and oxygen."),
    ];
    let mut lines: Vec<String> = docs
        .iter()
        .map(|(id, title, text)| {
            serde_json::json!({"id": id, "title": title, "text": text}).to_string()
        })
        .collect();
    lines.insert(2, "{\"id\": \"broken\", \"title\": ".into());
    std::fs::write(&corpus, lines.join("\n")).unwrap();
    let index = dir.path().join("index");
    let encoder = root.join("all-MiniLM-L6-v2");
    let out = radit(
        &[
            "index",
            "build",
            "--corpus",
            corpus.to_str().unwrap(),
            "--encoder",
            encoder.to_str().unwrap(),
            "--out",
            index.to_str().unwrap(),
            "--bm25",
            "--ann",
            "hnsw",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The malformed line is reported with file and line number, and counted.
    assert!(stderr.contains("corpus.jsonl:3"), "{stderr}");
    assert!(stderr.contains("1 malformed"), "{stderr}");

    let search = |query: &str, mode: &str| {
        let out = radit(
            &[
                "index",
                "search",
                index.to_str().unwrap(),
                "--query",
                query,
                "-k",
                "2",
                "--mode",
                mode,
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().nth(1).unwrap_or_default().to_owned()
    };
    assert!(search("Which planet is called the red planet?", "dense").contains("Mars"));
    assert!(search("composer of the Brandenburg Concertos", "exact").contains("Bach"));
    assert!(search("carbon dioxide", "bm25").contains("Photosynthesis"));
    assert!(search("river flowing into the Mediterranean", "hybrid").contains("Nile"));

    let out = radit(&["index", "stats", index.to_str().unwrap()], &[]);
    let stats = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stats.contains("4 documents") && stats.contains("dim 384"),
        "{stats}"
    );
}
