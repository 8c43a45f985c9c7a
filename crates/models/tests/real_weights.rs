//! Real-weight tests (the slow group): all-MiniLM-L6-v2 and SmolLM2-135M-Instruct against
//! reference values computed by PyTorch + transformers on the same files
//! (`scripts/make_model_fixtures.py`), plus decoding and export round trips on the real model.
//!
//! Assets come from `scripts/fetch-assets.sh` (into `$RADIT_ASSETS`, default
//! `~/.cache/radit/assets`). Without them these tests print a notice and pass, unless
//! `RADIT_REQUIRE_ASSETS=1` (as in CI), where a missing asset fails the test.

use std::path::PathBuf;
use std::sync::OnceLock;

use burn::tensor::{Device, Tensor};
use radit_models::layers::to_host;
use radit_models::{
    generate, ChatMessage, Encoder, GenerationConfig, Generator, ModelError, Pooling, TokenBatch,
};
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;

fn assets() -> Option<PathBuf> {
    let root = std::env::var_os("RADIT_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/radit/assets")
        });
    let present =
        root.join("all-MiniLM-L6-v2/model.safetensors").is_file() && gguf_path_in(&root).is_file();
    if present {
        return Some(root);
    }
    assert!(
        std::env::var("RADIT_REQUIRE_ASSETS").as_deref() != Ok("1"),
        "real-weight assets missing under {}; run scripts/fetch-assets.sh",
        root.display()
    );
    eprintln!(
        "skipping: real-weight assets missing under {} (run scripts/fetch-assets.sh)",
        root.display()
    );
    None
}

fn gguf_path_in(root: &std::path::Path) -> PathBuf {
    root.join("SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn smollm2() -> Option<&'static Generator> {
    static MODEL: OnceLock<Generator> = OnceLock::new();
    let root = assets()?;
    Some(MODEL.get_or_init(|| {
        Generator::load(gguf_path_in(&root).to_str().unwrap(), &Device::flex()).unwrap()
    }))
}

fn logits_row(t: Tensor<2>) -> Vec<f32> {
    to_host(t).unwrap().data
}

#[test]
fn minilm_embeddings_match_transformers() {
    let Some(root) = assets() else { return };
    let fx = fixture("minilm_embeddings.json");
    let mut encoder = Encoder::load(
        root.join("all-MiniLM-L6-v2").to_str().unwrap(),
        &Device::flex(),
    )
    .unwrap();
    assert_eq!(
        (encoder.pooling, encoder.normalize, encoder.max_length),
        (Pooling::Mean, true, 256)
    );
    let sentences: Vec<&str> = fx["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let batch = encoder.encode(&sentences).unwrap();
    for (i, expected) in fx["input_ids"].as_array().unwrap().iter().enumerate() {
        let expected = ids(expected);
        assert_eq!(
            &batch.row(i)[..expected.len()],
            expected.as_slice(),
            "token ids of sentence {i}"
        );
    }
    let batched = encoder.embed(&sentences).unwrap();
    let mut worst = 0.0f32;
    for (i, expected) in fx["mean_normalized"].as_array().unwrap().iter().enumerate() {
        let single = encoder.embed(&sentences[i..i + 1]).unwrap();
        worst = worst.max(max_abs_diff(&single[0], &floats(expected)));
        worst = worst.max(max_abs_diff(&batched[i], &floats(expected)));
    }
    eprintln!("MiniLM mean+L2 embeddings: max |Δ| = {worst:e}");
    assert!(worst <= TOLERANCE, "max |Δ| {worst}");
    encoder.pooling = Pooling::Cls;
    encoder.normalize = false;
    let cls = encoder.embed(&sentences).unwrap();
    let mut worst = 0.0f32;
    for (i, expected) in fx["cls"].as_array().unwrap().iter().enumerate() {
        worst = worst.max(max_abs_diff(&cls[i], &floats(expected)));
    }
    eprintln!("MiniLM CLS states: max |Δ| = {worst:e}");
    assert!(worst <= TOLERANCE, "max |Δ| {worst}");
}

#[test]
fn smollm2_logits_match_transformers() {
    let Some(g) = smollm2() else { return };
    let fx = fixture("smollm2_logits.json");
    let user = fx["chat_user_message"].as_str().unwrap();
    let rendered = g
        .tokenizer
        .apply_chat_template(&[ChatMessage::new("user", user)], true)
        .unwrap();
    assert_eq!(rendered, fx["chat_rendered"].as_str().unwrap());
    let indices: Vec<usize> = fx["indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let mut worst = 0.0f32;
    for (p, prompt) in fx["prompts"].as_array().unwrap().iter().enumerate() {
        let tokens = g.tokenizer.encode(prompt.as_str().unwrap()).unwrap();
        assert_eq!(tokens, ids(&fx["input_ids"][p]), "token ids of prompt {p}");
        let logits = logits_row(
            g.model
                .next_token_logits(&TokenBatch::single(&tokens).unwrap(), None)
                .unwrap(),
        );
        let ours: Vec<f32> = indices.iter().map(|&i| logits[i]).collect();
        let diff = max_abs_diff(&ours, &floats(&fx["last_logits"][p]));
        eprintln!(
            "SmolLM2 prompt {p} ({} tokens): max |Δ| last-position logits = {diff:e}",
            tokens.len()
        );
        worst = worst.max(diff);
        assert_eq!(
            radit_models::generate::argmax(&logits) as u64,
            fx["argmax"][p].as_u64().unwrap()
        );
    }
    assert!(worst <= TOLERANCE, "max |Δ| {worst}");
}

#[test]
fn smollm2_greedy_with_kv_cache_equals_without_and_reference() {
    let Some(g) = smollm2() else { return };
    let fx = fixture("smollm2_greedy.json");
    for run in fx["runs"].as_array().unwrap() {
        let prompt = ids(&run["prompt_ids"]);
        let mut config = GenerationConfig {
            max_new_tokens: 32,
            ..Default::default()
        };
        let cached = generate(
            &g.model,
            std::slice::from_ref(&prompt),
            &config,
            g.tokenizer.pad_id(),
        )
        .unwrap();
        config.use_cache = false;
        let recomputed = generate(
            &g.model,
            std::slice::from_ref(&prompt),
            &config,
            g.tokenizer.pad_id(),
        )
        .unwrap();
        assert_eq!(cached[0].len(), 32);
        assert_eq!(cached, recomputed, "KV cache changed greedy decoding");
        assert_eq!(
            cached[0],
            ids(&run["greedy_ids"]),
            "greedy tokens differ from transformers"
        );
    }
}

#[test]
fn smollm2_batched_generation_matches_single() {
    let Some(g) = smollm2() else { return };
    let prompts: Vec<Vec<u32>> = [
        "The capital of France is",
        "Water boils at a temperature of",
    ]
    .iter()
    .map(|p| g.tokenizer.encode(p).unwrap())
    .collect();
    let config = GenerationConfig {
        max_new_tokens: 12,
        ..Default::default()
    };
    let batched = generate(&g.model, &prompts, &config, g.tokenizer.pad_id()).unwrap();
    for (p, out) in prompts.iter().zip(&batched) {
        let single = generate(
            &g.model,
            std::slice::from_ref(p),
            &config,
            g.tokenizer.pad_id(),
        )
        .unwrap();
        assert_eq!(&single[0], out);
    }
}

#[test]
fn smollm2_gguf_export_round_trip_gives_identical_logits() {
    let Some(g) = smollm2() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smollm2-export");
    g.export(&out).unwrap();
    let reloaded = Generator::load(out.to_str().unwrap(), &Device::flex()).unwrap();
    assert_eq!(reloaded.model.config(), g.model.config());
    assert_eq!(
        reloaded.tokenizer.chat_template(),
        g.tokenizer.chat_template()
    );
    let tokens = g
        .tokenizer
        .encode("Retrieval-augmented models answer from a chunk of text.")
        .unwrap();
    assert_eq!(
        reloaded
            .tokenizer
            .encode("Retrieval-augmented models answer from a chunk of text.")
            .unwrap(),
        tokens
    );
    let batch = TokenBatch::single(&tokens).unwrap();
    let before = logits_row(g.model.next_token_logits(&batch, None).unwrap());
    let after = logits_row(reloaded.model.next_token_logits(&batch, None).unwrap());
    assert_eq!(before, after);
}

#[test]
fn truncated_real_gguf_is_an_error() {
    let Some(root) = assets() else { return };
    let bytes = std::fs::read(gguf_path_in(&root)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for cut in [bytes.len() - 4096, 1 << 20, 64] {
        let path = dir.path().join(format!("cut{cut}.gguf"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = Generator::load(path.to_str().unwrap(), &Device::flex()).unwrap_err();
        assert!(matches!(err, ModelError::Gguf(_)), "cut at {cut}: {err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}
