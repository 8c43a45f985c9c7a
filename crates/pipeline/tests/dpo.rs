//! The DPO stage end to end on the real assets (SmolLM2-135M and all-MiniLM-L6-v2, from
//! `scripts/fetch-assets.sh`): `order = ["dpo"]`, two steps. The first step's loss is ln 2 (the
//! reference scored in `prepare` agrees with the trained copy's forward pass on the retrieved
//! prompts), and `final/` is a loadable generator. Skipped without the assets, unless
//! `RADIT_REQUIRE_ASSETS=1`.

use std::path::PathBuf;

use radit_pipeline::{Pipeline, Recipe};

fn assets() -> Option<PathBuf> {
    let home = std::env::var("HOME").unwrap_or_default();
    let root = std::env::var("RADIT_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(home).join(".cache/radit/assets"));
    if root.join("all-MiniLM-L6-v2").is_dir() && root.join("SmolLM2-135M-Instruct-GGUF").is_dir() {
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
fn two_dpo_steps_start_at_ln_2_and_export_a_generator() {
    if assets().is_none() {
        return;
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("preferences.jsonl"),
        concat!(
            "{\"prompt\": \"What material is the Choxfond mill made of?\", \"chosen\": \"copper\", \"rejected\": \"wood\"}\n",
            "{\"prompt\": \"In what year was Hemquell Dassuv born?\", \"chosen\": \"1911\", \"rejected\": \"in the spring of 1850\"}\n",
            "{\"prompt\": \"Under whom did Sorktav Haexthyth study?\", \"chosen\": \"Kiskchil Troullmox\", \"rejected\": \"nobody\"}\n",
        ),
    )
    .unwrap();
    let recipe_path = tmp.path().join("dpo.toml");
    std::fs::write(
        &recipe_path,
        format!(
            r#"seed = 3
output_dir = "run"
[generator]
model = "${{RADIT_ASSETS}}/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf"
[retriever]
encoder = "${{RADIT_ASSETS}}/all-MiniLM-L6-v2"
[docstore]
corpus = "{repo}/datasets/synthetic/corpus.jsonl"
[data]
train = "{repo}/datasets/synthetic/train.jsonl"
train_limit = 4
max_len = 96
batch_size = 2
[logging]
tensorboard = false
[stages]
order = ["dpo"]
[stages.dpo]
preferences = "preferences.jsonl"
batch_size = 2
[stages.dpo.train]
lr = 1e-5
max_steps = 2
schedule = {{ kind = "constant" }}
"#,
            repo = repo.display()
        ),
    )
    .unwrap();
    let recipe = Recipe::load(&recipe_path, &[]).unwrap();
    Pipeline::new(recipe, burn::tensor::Device::flex())
        .run()
        .unwrap();
    let stage = tmp.path().join("run/dpo");
    assert!(stage.join("final/config.json").is_file());
    let log = std::fs::read_to_string(stage.join("metrics.jsonl")).unwrap();
    let losses: Vec<(u64, f64)> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["step"].as_u64()?, v["train/loss"].as_f64()?)))
        .collect();
    assert_eq!(losses.len(), 2, "{log}");
    assert_eq!(losses[0].0, 1);
    assert!(
        (losses[0].1 - std::f64::consts::LN_2).abs() < 1e-4,
        "first DPO loss {} (ln 2 = {})",
        losses[0].1,
        std::f64::consts::LN_2
    );
    assert!(losses[1].1.is_finite());
    // The exported generator loads as the next stage or `radit eval` would load it.
    radit_models::Generator::load(
        &stage.join("final").display().to_string(),
        &burn::tensor::Device::flex(),
    )
    .unwrap();
}
