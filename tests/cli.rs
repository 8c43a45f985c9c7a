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

/// A small LM-ft recipe over the synthetic dataset, writing into `dir`.
fn tiny_recipe(dir: &std::path::Path, root: &std::path::Path) -> PathBuf {
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let recipe = format!(
        r#"seed = 7
output_dir = "{out}"
[generator]
model = "{root}/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf"
[retriever]
encoder = "{root}/all-MiniLM-L6-v2"
top_k = 2
[docstore]
corpus = "{repo}/datasets/synthetic/corpus.jsonl"
index = "{index}"
[data]
train = "{repo}/datasets/synthetic/train.jsonl"
train_limit = 12
max_len = 64
batch_size = 2
[stages.lm_ft.train]
lr = 1e-4
max_steps = 5
grad_accum = 2
max_grad_norm = 1.0
save_every = 2
# One checkpoint of this model and its AdamW state is 1.6 GB: tests keep the newest only.
keep_last = 1
schedule = {{ kind = "cosine", warmup_steps = 1, total_steps = 5 }}
"#,
        out = dir.join("unused").display(),
        root = root.display(),
        index = dir.join("index").display(),
    );
    let path = dir.join("recipe.toml");
    std::fs::write(&path, recipe).unwrap();
    path
}

/// Per-step losses of the last checkpoint (step 5) and the final weights of a stage.
fn final_state(run: &std::path::Path, stage: &str) -> (serde_json::Value, Vec<u8>) {
    let trainer =
        std::fs::read(run.join(format!("{stage}/checkpoints/step-00000005/trainer.json"))).unwrap();
    let weights = std::fs::read(run.join(format!("{stage}/final/model.safetensors"))).unwrap();
    (serde_json::from_slice(&trainer).unwrap(), weights)
}

/// Waits until `checkpoint` exists, failing if `child` ends first or ten minutes pass.
fn wait_for_checkpoint(child: &mut std::process::Child, checkpoint: &std::path::Path) {
    let start = std::time::Instant::now();
    while !checkpoint.is_file() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "training ended before its first checkpoint"
        );
        assert!(
            start.elapsed().as_secs() < 600,
            "no checkpoint after 10 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Runs `recipe` straight through, then again SIGKILLed after the first checkpoint of
/// `stage` and resumed; asserts equal per-step losses and final weights. Returns the resumed
/// run's stderr.
fn assert_kill_and_resume_is_exact(
    dir: &std::path::Path,
    recipe: &std::path::Path,
    stage: &str,
) -> String {
    let recipe = recipe.to_str().unwrap();
    let straight = dir.join("straight");
    let out = radit(
        &["train", recipe, "--output-dir", straight.to_str().unwrap()],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Read now and freed: both runs' checkpoints at once would double the test's disk use.
    let (a_state, a_weights) = final_state(&straight, stage);
    std::fs::remove_dir_all(&straight).unwrap();

    let killed = dir.join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_radit"))
        .args(["train", recipe, "--output-dir", killed.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill at a step after the first checkpoint: as soon as step 2 is on disk, or a little later.
    let delay_ms = (std::process::id() % 3) as u64 * 700;
    let first = killed.join(format!("{stage}/checkpoints/step-00000002/manifest.json"));
    wait_for_checkpoint(&mut child, &first);
    std::thread::sleep(std::time::Duration::from_millis(delay_ms));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !killed.join(format!("{stage}/final")).exists(),
        "the run finished before it was killed"
    );

    let out = radit(
        &[
            "train",
            recipe,
            "--output-dir",
            killed.to_str().unwrap(),
            "--resume",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (b_state, b_weights) = final_state(&killed, stage);
    assert_eq!(a_state["losses"], b_state["losses"]);
    assert_eq!(a_state["losses"].as_array().unwrap().len(), 5);
    assert!(a_weights == b_weights, "final weights differ after resume");
    // The resolved recipe is saved with every checkpoint.
    let saved = std::fs::read_to_string(
        killed.join(format!("{stage}/checkpoints/step-00000005/recipe.toml")),
    )
    .unwrap();
    assert!(saved.contains("max_steps = 5"), "{saved}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn killed_training_resumes_to_the_same_weights_and_losses() {
    let Some(root) = assets() else { return };
    let dir = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe(dir.path(), &root);
    assert_kill_and_resume_is_exact(dir.path(), &recipe, "lm_ft");
}

/// xxh3-free content digest of every file under `dir` (names and bytes), sorted by path.
fn tree_digest(dir: &std::path::Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn killed_retriever_training_resumes_exactly_and_leaves_documents_frozen() {
    let Some(root) = assets() else { return };
    let dir = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe(dir.path(), &root);
    // LM-ft then R-ft (with corpus pairs mixed in, candidates refreshed every 2 steps, dev
    // recall every 2 steps and the best kept); the kill lands in R-ft, so the resumed pipeline
    // must skip the finished LM-ft and continue R-ft at its step.
    let text = std::fs::read_to_string(&recipe).unwrap();
    let lm_ft = text.find("[stages.lm_ft.train]").unwrap();
    let text = format!(
        r#"{}dev = "{}"
dev_limit = 10
{}
[stages.r_ft]
candidates = 4
batch_size = 4
corpus_pairs = 4
pair_words = 20
refresh_every = 2
retriever_temperature = 0.05
loss = {{ name = "lsr", signal = "logprob", temperature = 1.0, direction = "target_retriever" }}
[stages.r_ft.train]
lr = 1e-5
max_steps = 5
grad_accum = 2
max_grad_norm = 1.0
save_every = 2
keep_last = 5
eval_every = 2
best_metric = "dev/mrr"
schedule = {{ kind = "cosine", warmup_steps = 1, total_steps = 5 }}
"#,
        &text[..lm_ft],
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../datasets/synthetic/dev.jsonl"
        ),
        &text[lm_ft..],
    );
    std::fs::write(&recipe, text).unwrap();
    let encoder = root.join("all-MiniLM-L6-v2");
    let encoder_before = tree_digest(&encoder);
    let index = dir.path().join("index");
    let out = radit(
        &[
            "index",
            "build",
            "--corpus",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../datasets/synthetic/corpus.jsonl"
            ),
            "--encoder",
            encoder.to_str().unwrap(),
            "--out",
            index.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index_before = tree_digest(&index);
    let resumed = assert_kill_and_resume_is_exact(dir.path(), &recipe, "r_ft");
    assert!(resumed.contains("lm_ft: already complete"), "{resumed}");
    assert!(dir.path().join("killed/r_ft/lm_scores.jsonl").is_file());
    assert!(
        encoder_before == tree_digest(&encoder),
        "document encoder files changed"
    );
    assert!(
        index_before == tree_digest(&index),
        "the index changed during R-ft"
    );
    // The query encoder did move: its embedding of a question differs from the base one.
    let embed = |model: &std::path::Path| {
        let out = radit(
            &[
                "embed",
                "--model",
                model.to_str().unwrap(),
                "--text",
                "Who founded Velmora?",
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let trained = dir.path().join("killed/r_ft/final");
    assert_ne!(embed(&encoder), embed(&trained));
    let table = std::fs::read_to_string(dir.path().join("killed/r_ft/done.json")).unwrap();
    assert!(
        table.contains("dev/recall@5") && table.contains("| query encoder, r_ft |"),
        "{table}"
    );
}

#[test]
fn lora_packing_chat_prompts_and_a_mixture_train_together() {
    let Some(root) = assets() else { return };
    let dir = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe(dir.path(), &root);
    let synthetic = concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/synthetic");
    let text = std::fs::read_to_string(&recipe)
        .unwrap()
        .replace(
            &format!("train = \"{synthetic}/train.jsonl\""),
            &format!("train = [\"{synthetic}/train.jsonl\", \"{synthetic}/dev.jsonl\"]\npacking = true\nprompt = \"chat\"\ncap = 8"),
        )
        .replace(
            "[stages.lm_ft.train]",
            "[stages.lm_ft.lora]\nrank = 4\ntargets = [\"q_proj\", \"v_proj\", \"down_proj\"]\n[stages.lm_ft.train]",
        )
        .replace("max_len = 64", "max_len = 160");
    assert!(text.contains("packing = true"), "{text}");
    std::fs::write(&recipe, text).unwrap();
    let run = dir.path().join("run");
    let out = radit(
        &[
            "train",
            recipe.to_str().unwrap(),
            "--output-dir",
            run.to_str().unwrap(),
            "--set",
            "stages.lm_ft.train.max_steps=2",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // 24 examples from two datasets (12 each), 2 chunks each.
    assert!(
        stderr.contains("24 example(s) -> 48 instance(s)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("LoRA rank 4 on q_proj, v_proj, down_proj"),
        "{stderr}"
    );
    // The exported generator has merged weights and loads like any checkpoint.
    let out = radit(
        &[
            "generate",
            "--model",
            run.join("lm_ft/final").to_str().unwrap(),
            "--prompt",
            "Hi",
            "--max-new-tokens",
            "2",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cross_validation_runs_every_fold_and_reports_mean_and_std() {
    let Some(root) = assets() else { return };
    let dir = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe(dir.path(), &root);
    let text = std::fs::read_to_string(&recipe).unwrap();
    let lm_ft = text.find("[stages.lm_ft.train]").unwrap();
    let text = format!(
        "{}[stages.r_ft]\ncandidates = 3\nbatch_size = 4\n[stages.r_ft.train]\nlr = 1e-5\nmax_steps = 2\nsave_every = 2\nschedule = {{ kind = \"constant\", warmup_steps = 0 }}\n",
        &text[..lm_ft]
    );
    std::fs::write(&recipe, text).unwrap();
    let out_dir = dir.path().join("cv");
    let out = radit(
        &[
            "cv",
            recipe.to_str().unwrap(),
            "--folds",
            "3",
            "--output-dir",
            out_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("| metric | fold 0 | fold 1 | fold 2 | mean | std |"),
        "{stdout}"
    );
    assert!(stdout.contains("| r_ft/dev/mrr |"), "{stdout}");
    let cv: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("cv.json")).unwrap()).unwrap();
    let mrr = cv
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == "r_ft/dev/mrr")
        .unwrap();
    let folds: Vec<f64> = mrr["folds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(folds.len(), 3);
    let mean = folds.iter().sum::<f64>() / 3.0;
    assert!((mrr["mean"].as_f64().unwrap() - mean).abs() < 1e-9);
    // Each fold held out a different third of the 12 training questions (4 each).
    for f in 0..3 {
        let done =
            std::fs::read_to_string(out_dir.join(format!("fold-{f}/r_ft/done.json"))).unwrap();
        assert!(done.contains("| 4 |"), "{done}");
    }
}

#[test]
fn recipe_typo_names_the_key_and_the_nearest_valid_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("assets");
    let recipe = tiny_recipe(dir.path(), &root);
    let text = std::fs::read_to_string(&recipe)
        .unwrap()
        .replace("max_grad_norm", "max_grad_nrom");
    std::fs::write(&recipe, text).unwrap();
    let out = radit(&["train", recipe.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max_grad_nrom") && err.contains("max_grad_norm"),
        "{err}"
    );
    let recipe2 = tiny_recipe(dir.path(), &root);
    let out = radit(
        &[
            "train",
            recipe2.to_str().unwrap(),
            "--set",
            "stages.lm_ft.train.lrr=1",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("lrr") && err.contains("`lr`"),
        "{err}"
    );
}

/// Sum of the numeric cells of column `col` in the Markdown table rows of `text` (rows whose
/// first cell is a rank).
fn column_sum(text: &str, col: usize) -> f64 {
    text.lines()
        .filter(|l| {
            l.split('|')
                .nth(1)
                .is_some_and(|c| c.trim().parse::<usize>().is_ok())
        })
        .map(|l| {
            l.split('|')
                .nth(col)
                .unwrap()
                .trim()
                .parse::<f64>()
                .unwrap()
        })
        .sum()
}

/// `radit eval --recipe` in every mode on 5 synthetic dev questions (the last two multiple
/// choice), then `radit ask --checkpoint` on a run directory whose R-ft query encoder is the
/// base one exported (no training, to keep the test short).
#[test]
fn eval_reports_every_mode_and_ask_prints_chunk_weights() {
    let Some(root) = assets() else { return };
    let dir = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe(dir.path(), &root);
    let dev = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/synthetic/dev.jsonl"
    ))
    .unwrap();
    let lines: Vec<String> = dev
        .lines()
        .take(5)
        .enumerate()
        .map(|(i, line)| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            if i >= 3 {
                let gold = v["answers"][0].clone();
                v["choices"] = serde_json::json!(["Mira Tosk", gold, "1750"]);
            }
            v.to_string()
        })
        .collect();
    let data = dir.path().join("dev5.jsonl");
    std::fs::write(&data, lines.join("\n")).unwrap();
    for mode in ["ensemble", "concat", "closed_book"] {
        let report_path = dir.path().join(format!("eval-{mode}.json"));
        let start = std::time::Instant::now();
        let out = radit(
            &[
                "eval",
                "--recipe",
                recipe.to_str().unwrap(),
                "--data",
                data.to_str().unwrap(),
                "--mode",
                mode,
                "--k",
                "3",
                "--out",
                report_path.to_str().unwrap(),
            ],
            &[],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        eprintln!("eval --mode {mode}: {:.1} s", start.elapsed().as_secs_f64());
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            table.starts_with("| run | mode | scoring |")
                && table.contains(&format!("| base | {mode} | nll |")),
            "{table}"
        );
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
        let m = &report["metrics"];
        assert_eq!(m["count"], 5);
        assert_eq!(m["multiple_choice"], 2);
        for key in ["em", "f1", "rouge_l", "accuracy"] {
            let v = m[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        }
        for ci in ["em_ci", "f1_ci"] {
            let (lo, mean, hi) = (
                m[ci]["low"].as_f64().unwrap(),
                m[ci]["mean"].as_f64().unwrap(),
                m[ci]["high"].as_f64().unwrap(),
            );
            assert!(lo <= mean && mean <= hi, "{ci}: {}", m[ci]);
            assert_eq!(m[ci]["resamples"], 1000);
        }
        assert_eq!(report["config"]["mode"], mode);
        let questions = report["questions"].as_array().unwrap();
        assert_eq!(questions.len(), 5);
        for (i, q) in questions.iter().enumerate() {
            let prediction = q["prediction"].as_str().unwrap();
            assert!(q["em"] == 0.0 || q["em"] == 1.0, "{q}");
            let chunks = q["chunks"].as_array().unwrap();
            if i >= 3 {
                let choices = q["choices"].as_array().unwrap();
                assert!(choices.iter().any(|c| c == prediction), "{q}");
                assert!(q["correct"].is_boolean());
            }
            if mode == "closed_book" {
                assert!(chunks.is_empty() && q["retrieved"] == 0);
                continue;
            }
            assert_eq!(chunks.len(), 3, "{q}");
            let weights: f64 = chunks.iter().map(|c| c["weight"].as_f64().unwrap()).sum();
            assert!((weights - 1.0).abs() < 1e-6, "{q}");
            if mode == "ensemble" {
                let shares: f64 = chunks
                    .iter()
                    .map(|c| c["contribution"].as_f64().unwrap())
                    .sum();
                assert!((shares - 1.0).abs() < 1e-6, "{q}");
            }
        }
        if mode == "closed_book" {
            assert!(m["retrieval"].is_null());
        } else {
            let r = &m["retrieval"];
            assert_eq!(r["depth"], 10);
            for k in ["1", "5", "10"] {
                assert!(r["recall_at"][k].as_f64().is_some(), "{r}");
            }
            assert!(r["mrr"].as_f64().unwrap() > 0.0, "{r}");
        }
    }

    // A run directory: the resolved recipe with an R-ft stage, completed (done marker) with
    // an "R-ft" query encoder that is the base one exported.
    let run = dir.path().join("run");
    std::fs::create_dir_all(run.join("r_ft")).unwrap();
    let resolved = std::fs::read_to_string(&recipe).unwrap()
        + "[stages.r_ft.train]\nlr = 1e-5\nmax_steps = 1\nschedule = { kind = \"constant\" }\n";
    std::fs::write(run.join("recipe.toml"), resolved).unwrap();
    std::fs::write(run.join("r_ft/done.json"), r#"{"rows": [], "metrics": []}"#).unwrap();
    let encoder = root.join("all-MiniLM-L6-v2");
    let out = radit(
        &[
            "export",
            "--kind",
            "encoder",
            "--model",
            encoder.to_str().unwrap(),
            "--out",
            run.join("r_ft/final").to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success());
    for (extra, models) in [(None, "models: R-ft"), (Some("--base"), "models: base")] {
        let start = std::time::Instant::now();
        let mut args = vec![
            "ask",
            "--checkpoint",
            run.to_str().unwrap(),
            "Who founded Pamshund Industries?",
            "--k",
            "3",
        ];
        args.extend(extra);
        let out = radit(&args, &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("ask {extra:?}: {:.1} s", start.elapsed().as_secs_f64());
        assert!(
            stdout.starts_with("answer: ") && stdout.contains(models),
            "{stdout}"
        );
        assert!(stdout.contains("| rank | chunk | p_R |"), "{stdout}");
        // Three chunk rows; p_R and the shares of p(answer) each sum to 1 (4 decimals shown).
        let rows = stdout
            .lines()
            .filter(|l| l.starts_with("| ") && l.as_bytes().get(2).is_some_and(u8::is_ascii_digit))
            .count();
        assert_eq!(rows, 3, "{stdout}");
        assert!((column_sum(&stdout, 3) - 1.0).abs() < 2e-3, "{stdout}");
        assert!((column_sum(&stdout, 5) - 1.0).abs() < 2e-3, "{stdout}");
    }
}

/// A synthetic `radit eval` report: `n` questions, EM/F1 from `score(i)`, the answer at
/// rank `i % 12` of 10 retrieved chunks (none for `i % 12 >= 10`).
fn synthetic_eval_report(label: &str, n: usize, score: impl Fn(usize) -> f64) -> String {
    use radit_eval::{EvalConfig, EvalMetrics, EvalReport, QuestionRecord, RunInfo};
    let questions: Vec<QuestionRecord> = (0..n)
        .map(|i| QuestionRecord {
            id: format!("q{i}"),
            question: format!("question {i}?"),
            gold: vec!["yes".into()],
            choices: Vec::new(),
            prediction: if score(i) > 0.5 { "yes" } else { "no" }.into(),
            em: score(i),
            f1: score(i),
            rouge_l: score(i),
            correct: None,
            log_p: Some(-1.0),
            score: Some(1.0),
            candidates: Vec::new(),
            chunks: Vec::new(),
            retrieved: 10,
            answer_rank: (i % 12 < 10).then_some(i % 12),
            gold_context: false,
        })
        .collect();
    let config = EvalConfig::default();
    let report = EvalReport {
        run: RunInfo {
            label: label.into(),
            generator: "tiny-generator".into(),
            ..RunInfo::default()
        },
        metrics: EvalMetrics::compute(&questions, &config),
        config,
        seconds: 1.0,
        questions,
        shard: None,
    };
    serde_json::to_string(&report).unwrap()
}

#[test]
fn report_writes_tables_paired_differences_and_svg_plots() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // `ft` is right wherever `base` is, and on a third more: EM +1/3, interval above 0.
    std::fs::write(
        d.join("base.json"),
        synthetic_eval_report("b", 60, |i| f64::from(i % 3 == 0)),
    )
    .unwrap();
    std::fs::write(
        d.join("ft.json"),
        synthetic_eval_report("f", 60, |i| f64::from(i % 3 != 2)),
    )
    .unwrap();
    // Other questions: no paired interval.
    std::fs::write(
        d.join("short.json"),
        synthetic_eval_report("s", 50, |i| f64::from(i % 2 == 0)),
    )
    .unwrap();
    let run = d.join("run");
    for (stage, dev) in [("lm_ft", "dev/em"), ("r_ft", "dev/recall@5")] {
        std::fs::create_dir_all(run.join(stage)).unwrap();
        let mut lines = String::new();
        for step in 1..=5 {
            lines.push_str(&format!(
                "{{\"step\":{step},\"train/loss\":{},\"train/lr\":0.0001}}\n",
                3.0 / step as f64
            ));
        }
        lines.push_str(&format!("{{\"step\":5,\"{dev}\":0.5}}\n"));
        std::fs::write(run.join(stage).join("metrics.jsonl"), lines).unwrap();
    }
    let out = d.join("report");
    let base = format!("base={}", d.join("base.json").display());
    let ft = format!("ft={}", d.join("ft.json").display());
    let short = format!("short={}", d.join("short.json").display());
    let run_arg = format!("tiny={}", run.display());
    let command = "radit report --eval base=base.json --eval ft=ft.json --out report";
    let result = radit(
        &[
            "report",
            "--eval",
            &base,
            "--eval",
            &ft,
            "--eval",
            &short,
            "--run",
            &run_arg,
            "--title",
            "Tiny study",
            "--command",
            command,
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(readme.starts_with("# Tiny study\n"), "{readme}");
    assert!(readme.contains(command), "{readme}");
    // Main table: one row per label, EM and F1 with their intervals, recall@k and MRR.
    assert!(
        readme.contains("EM [95% CI] | F1 [95% CI] | ROUGE-L"),
        "{readme}"
    );
    assert!(readme.contains("R@1 | R@5 | R@10 | MRR |"), "{readme}");
    for label in ["base", "ft", "short"] {
        assert!(
            readme.contains(&format!("\n| {label} | ensemble | nll | 10 |")),
            "{readme}"
        );
    }
    assert!(readme.contains("| 0.333 ["), "{readme}");
    assert!(readme.contains("| 0.667 ["), "{readme}");
    // Differences: paired interval for ft, and a note for the other questions.
    assert!(readme.contains("### Differences"), "{readme}");
    let ft_row = readme
        .lines()
        .find(|l| l.starts_with("| ft | base | 60 | +0.333 [+"))
        .unwrap_or_else(|| panic!("{readme}"));
    assert!(
        ft_row.matches("yes: the interval excludes 0").count() == 2,
        "{ft_row}"
    );
    assert!(readme.contains("1000 resamples"), "{readme}");
    assert!(
        readme.contains("| short | base | – | +0.167 (unpaired)"),
        "{readme}"
    );
    assert!(
        readme.contains(
            "not the same questions in the same order (different question counts (50 vs 60))"
        ),
        "{readme}"
    );
    // Training table and plots.
    assert!(
        readme.contains("| tiny | lm_ft | 5 | 3.0000 → 0.6000 (0.6000) | dev/em 0.500 @5 |"),
        "{readme}"
    );
    for svg in [
        "metrics.svg",
        "recall-at-k.svg",
        "loss-lm_ft.svg",
        "loss-r_ft.svg",
        "dev-lm_ft.svg",
        "dev-r_ft.svg",
    ] {
        assert!(readme.contains(&format!("]({svg})")), "{svg}: {readme}");
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(
            (text.starts_with("<svg") || text.starts_with("<?xml"))
                && text.trim_end().ends_with("</svg>"),
            "{svg}: {text}"
        );
        if svg.starts_with("loss-") || svg == "recall-at-k.svg" {
            assert!(
                text.contains("<polyline") || text.contains("<path"),
                "{svg}: {text}"
            );
        }
        if svg == "metrics.svg" {
            assert!(
                text.contains("<rect") && text.contains(">\nft\n</text>"),
                "{text}"
            );
        }
    }
    // Bad inputs are errors that name the problem.
    let bad = radit(
        &[
            "report",
            "--eval",
            "nolabel",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("LABEL=PATH"));
    let missing = radit(
        &[
            "report",
            "--run",
            &format!("x={}", d.join("none").display()),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not a directory"));
}

/// A two-round LM-ft run with a dev set: `radit eval --checkpoint` must read the last round's
/// generator (before the pipeline library it read `RUN/lm_ft/final`, absent in a multi-round
/// run, and silently fell back to the base model), and its EM/F1 with `--k 1` on the dev data
/// must equal the dev metrics the run recorded (LM-ft's dev evaluation is `radit eval`'s).
#[test]
fn eval_reads_the_last_round_and_matches_the_runs_dev_metrics() {
    let Some(root) = assets() else { return };
    let dir = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe(dir.path(), &root);
    let dev = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/synthetic/dev.jsonl"
    );
    let run = dir.path().join("run");
    let sets = [
        "stages.rounds=2",
        "stages.lm_ft.train.max_steps=1",
        "stages.lm_ft.train.save_every=1",
        "stages.lm_ft.train.schedule.total_steps=1",
        "stages.lm_ft.train.schedule.warmup_steps=0",
        "data.train_limit=4",
        "data.dev_limit=6",
        "data.answer_tokens=6",
    ];
    let mut args = vec![
        "train",
        recipe.to_str().unwrap(),
        "--output-dir",
        run.to_str().unwrap(),
    ];
    let dev_set = format!("data.dev={dev}");
    for s in sets.iter().copied().chain([dev_set.as_str()]) {
        args.extend(["--set", s]);
    }
    let out = radit(&args, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for round in ["round-1", "round-2"] {
        assert!(
            run.join(round).join("lm_ft/final/config.json").is_file(),
            "{round}"
        );
    }
    let done: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("round-2/lm_ft/done.json")).unwrap())
            .unwrap();
    let recorded = |name: &str| {
        done["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m[0] == name)
            .and_then(|m| m[1].as_f64())
            .unwrap_or_else(|| panic!("{name} missing in {done}"))
    };

    let report_path = dir.path().join("eval.json");
    let out = radit(
        &[
            "eval",
            "--checkpoint",
            run.to_str().unwrap(),
            "--k",
            "1",
            "--limit",
            "6",
            "--out",
            report_path.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let generator = report["run"]["generator"].as_str().unwrap();
    assert!(
        generator.ends_with("round-2/lm_ft/final"),
        "eval used {generator}, not the last round's generator"
    );
    assert_eq!(report["run"]["label"], "LM-ft");
    assert_eq!(report["metrics"]["count"], 6);
    assert_eq!(
        report["metrics"]["em"].as_f64().unwrap(),
        recorded("dev/em")
    );
    assert_eq!(
        report["metrics"]["f1"].as_f64().unwrap(),
        recorded("dev/f1")
    );
}

/// `retriever.search` is one setting for every stage and for eval: an unknown mode fails when
/// the recipe loads, naming the key; `bm25` on an index without BM25 fails in LM-ft's
/// retrieval (which before the pipeline library ignored the key's equivalent and searched
/// densely); and eval searches the way the run's recipe says.
#[test]
fn the_recipe_search_mode_is_used_by_training_and_eval() {
    let Some(root) = assets() else { return };
    let dir = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe(dir.path(), &root);
    let recipe = recipe.to_str().unwrap();
    let out = radit(&["train", recipe, "--set", "retriever.search=nearest"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("retriever.search") && err.contains("nearest"),
        "{err}"
    );

    let run = dir.path().join("run");
    let out = radit(
        &[
            "train",
            recipe,
            "--output-dir",
            run.to_str().unwrap(),
            "--set",
            "retriever.search=bm25",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no BM25 index"),
        "{err}"
    );

    // An index with BM25: training and eval both search it lexically.
    let index = dir.path().join("bm25-index");
    let corpus = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/synthetic/corpus.jsonl"
    );
    let encoder = root.join("all-MiniLM-L6-v2");
    let out = radit(
        &[
            "index",
            "build",
            "--corpus",
            corpus,
            "--encoder",
            encoder.to_str().unwrap(),
            "--out",
            index.to_str().unwrap(),
            "--chunk-words",
            "100",
            "--overlap",
            "0",
            "--bm25",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index_set = format!("docstore.index={}", index.display());
    let run = dir.path().join("run-bm25");
    let out = radit(
        &[
            "train",
            recipe,
            "--output-dir",
            run.to_str().unwrap(),
            "--set",
            "retriever.search=bm25",
            "--set",
            &index_set,
            "--set",
            "stages.lm_ft.train.max_steps=1",
            "--set",
            "stages.lm_ft.train.schedule.total_steps=1",
            "--set",
            "stages.lm_ft.train.schedule.warmup_steps=0",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let question = "Which instrument did Steil Vysreir play?";
    let qa = dir.path().join("one.jsonl");
    std::fs::write(
        &qa,
        format!("{{\"question\": \"{question}\", \"answers\": [\"x\"]}}\n"),
    )
    .unwrap();
    let report_path = dir.path().join("eval.json");
    let out = radit(
        &[
            "eval",
            "--checkpoint",
            run.to_str().unwrap(),
            "--data",
            qa.to_str().unwrap(),
            "--k",
            "3",
            "--out",
            report_path.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let eval_titles: Vec<String> = report["questions"][0]["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap().to_string())
        .collect();
    let out = radit(
        &[
            "index",
            "search",
            index.to_str().unwrap(),
            "--query",
            question,
            "-k",
            "3",
            "--mode",
            "bm25",
        ],
        &[],
    );
    let search = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Lines are `rank  score  title  |  text`.
    let bm25_titles: Vec<String> = search
        .lines()
        .filter(|l| !l.starts_with("query:"))
        .filter_map(|l| {
            let head = l.split("  |  ").next()?.trim();
            let (_, rest) = head.split_once(' ')?;
            let (_, title) = rest.trim_start().split_once(' ')?;
            Some(title.trim().to_string())
        })
        .collect();
    assert_eq!(bm25_titles.len(), 3, "{search}");
    assert_eq!(
        eval_titles, bm25_titles,
        "eval did not search with the recipe's bm25 mode: {search}"
    );
}

/// A recipe named by its bare file name (`radit train recipe.toml` in its folder) resolves
/// its relative paths against that folder, like any other recipe path.
#[test]
fn a_recipe_given_by_its_bare_file_name_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("recipe.toml"),
        "output_dir = \"runs/x\"\n[generator]\nmodel = \"g\"\n[retriever]\nencoder = \"e\"\n\
         [docstore]\ncorpus = \"c.jsonl\"\n[data]\ntrain = \"t.jsonl\"\nmax_len = 8\n\
         batch_size = 1\n[stages.lm_ft.train]\nlr = 1e-4\nmax_steps = 1\n\
         schedule = { kind = \"constant\" }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_radit"))
        .args(["recipe", "show", "recipe.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = dir.path().canonicalize().unwrap();
    assert!(
        shown.contains(&format!("{}/runs/x", root.display()))
            || shown.contains(&format!("{}/runs/x", dir.path().display())),
        "{shown}"
    );
}

/// SIGTERM while the models load (nothing unsaved yet) ends the run at once with the
/// "resume me" status, instead of after the load; `--resume` then starts it.
#[test]
fn a_signal_while_loading_exits_at_once_and_the_run_resumes() {
    let Some(root) = assets() else { return };
    let dir = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe(dir.path(), &root);
    let recipe = recipe.to_str().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_radit"))
        .args(["train", recipe, "--output-dir", run_s])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The resolved recipe is written just before the first model loads.
    let start = std::time::Instant::now();
    while !run.join("recipe.toml").is_file() {
        assert!(child.try_wait().unwrap().is_none(), "train ended early");
        assert!(start.elapsed().as_secs() < 120, "no run directory");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let sent = std::time::Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(75), "SIGTERM while loading: {status:?}");
    assert!(took.as_secs_f64() < 2.0, "exit took {took:?}");
    assert!(
        !run.join("lm_ft/checkpoints").exists(),
        "the signal arrived after loading; the test did not test loading"
    );
    // "Resume me" holds: the interrupted run continues (here for one step).
    let out = radit(
        &[
            "train",
            recipe,
            "--output-dir",
            run_s,
            "--resume",
            "--set",
            "stages.lm_ft.train.max_steps=1",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(run.join("lm_ft/final").is_dir());
}

/// A run directory is never silently reused: a SIGTERMed run exits with the documented
/// "resume me" status; a plain `train` into it is refused; `--resume` with a setting that
/// breaks exact resume is refused, with a resumable one it is recorded; `--overwrite` clears
/// the run and starts over. A user error prints no backtrace, even with RUST_BACKTRACE=1.
#[test]
fn a_run_directory_is_never_silently_reused() {
    let Some(root) = assets() else { return };
    let dir = tempfile::tempdir().unwrap();
    let recipe = tiny_recipe(dir.path(), &root);
    let recipe = recipe.to_str().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();

    // Plain `--resume` needs a run to resume: a mistyped directory is not a fresh start.
    let out = radit(&["train", recipe, "--output-dir", run_s, "--resume"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--resume auto"),
        "{err}"
    );
    assert!(!run.join("recipe.toml").exists());

    // `--resume auto` starts the run (a cluster job's first start); SIGUSR1, SLURM's warning
    // before the time limit, saves a checkpoint and exits "resume me".
    let mut child = Command::new(env!("CARGO_BIN_EXE_radit"))
        .args(["train", recipe, "--output-dir", run_s, "--resume", "auto"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first = run.join("lm_ft/checkpoints/step-00000002/manifest.json");
    wait_for_checkpoint(&mut child, &first);
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-USR1", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(
        !run.join("lm_ft/final").exists(),
        "the run finished before SIGUSR1"
    );
    assert_eq!(
        status.code(),
        Some(75),
        "SIGUSR1 after a checkpoint: {status:?}"
    );

    let steps = |run: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(run.join("lm_ft/checkpoints"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let before = steps(&run);
    let out = radit(
        &["train", recipe, "--output-dir", run_s],
        &[("RUST_BACKTRACE", "1")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("--resume") && err.contains("--overwrite"),
        "{err}"
    );
    assert!(!err.to_lowercase().contains("backtrace"), "{err}");
    assert_eq!(steps(&run), before, "a refused run wrote checkpoints");

    let out = radit(
        &[
            "train",
            recipe,
            "--output-dir",
            run_s,
            "--resume",
            "--set",
            "data.batch_size=4",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("data.batch_size: 2 -> 4"),
        "{err}"
    );

    let out = radit(
        &[
            "train",
            recipe,
            "--output-dir",
            run_s,
            "--resume",
            "--set",
            "stages.lm_ft.train.keep_last=4",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(run.join("resumes.jsonl")).unwrap();
    assert!(log.contains("stages.lm_ft.train.keep_last"), "{log}");
    assert!(run.join("lm_ft/final/model.safetensors").is_file());

    let out = radit(
        &["train", recipe, "--output-dir", run_s, "--overwrite"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !run.join("resumes.jsonl").exists(),
        "--overwrite kept the old run's log"
    );
    let metrics = std::fs::read_to_string(run.join("lm_ft/metrics.jsonl")).unwrap();
    let first_steps = metrics
        .lines()
        .filter(|l| l.contains("\"step\":1,"))
        .count();
    assert_eq!(first_steps, 1, "{metrics}");
}

/// Relative paths in a recipe are relative to the recipe file, wherever the command runs;
/// the run stores them absolute, so `ask` and `eval` work from any directory; and `eval` of
/// different models writes different default files.
#[test]
fn recipe_paths_mean_the_same_from_any_directory_and_evals_never_share_a_file() {
    let Some(root) = assets() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("recipes");
    std::fs::create_dir_all(&data).unwrap();
    let synthetic = concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/synthetic");
    for file in ["corpus.jsonl", "train.jsonl", "dev.jsonl"] {
        std::fs::copy(format!("{synthetic}/{file}"), data.join(file)).unwrap();
    }
    let recipe = data.join("rel.toml");
    std::fs::write(
        &recipe,
        format!(
            r#"output_dir = "../run"
[generator]
model = "{root}/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf"
[retriever]
encoder = "{root}/all-MiniLM-L6-v2"
top_k = 2
[docstore]
corpus = "corpus.jsonl"
[data]
train = "train.jsonl"
dev = "dev.jsonl"
train_limit = 4
dev_limit = 2
max_len = 64
batch_size = 2
answer_tokens = 4
[stages.lm_ft.train]
lr = 1e-4
max_steps = 1
schedule = {{ kind = "constant" }}
"#,
            root = root.display()
        ),
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let in_dir = |args: &[&str], cwd: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_radit"))
            .args(args)
            .current_dir(cwd)
            .output()
            .unwrap()
    };
    let out = in_dir(&["train", recipe.to_str().unwrap()], elsewhere.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = dir.path().join("run");
    assert!(run.join("lm_ft/final/config.json").is_file());
    let saved = std::fs::read_to_string(run.join("recipe.toml")).unwrap();
    let corpus = data.join("corpus.jsonl");
    assert!(saved.contains(corpus.to_str().unwrap()), "{saved}");

    let other = tempfile::tempdir().unwrap();
    let run_s = run.to_str().unwrap();
    let out = in_dir(
        &[
            "ask",
            "--checkpoint",
            run_s,
            "Who founded Pamshund Industries?",
        ],
        other.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read_dir(other.path()).unwrap().next().is_none(),
        "ask wrote into the current directory"
    );
    for extra in [None, Some("--base")] {
        let mut args = vec![
            "eval",
            "--checkpoint",
            run_s,
            "--mode",
            "closed_book",
            "--limit",
            "2",
        ];
        args.extend(extra);
        let out = in_dir(&args, other.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut reports: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("eval-"))
        .collect();
    reports.sort();
    assert_eq!(
        reports,
        [
            "eval-base-closed_book-nll-k2-dev.json",
            "eval-lm-ft-closed_book-nll-k2-dev.json"
        ]
    );
}

/// The shipped recipes can be listed and copied (the copy runs from anywhere: its paths are
/// absolute), a recipe can be shown resolved and validated with every problem at once.
#[test]
fn recipes_are_discoverable_and_validated_all_at_once() {
    let out = radit(&["recipe", "ls"], &[]);
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && list.contains("quickstart"),
        "{list}"
    );

    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("mine.toml");
    let out = radit(&["recipe", "cp", "quickstart", copy.to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&copy).unwrap();
    assert!(!text.contains("\"../"), "{text}");
    let out = radit(&["recipe", "validate", copy.to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = radit(
        &[
            "recipe",
            "show",
            copy.to_str().unwrap(),
            "--set",
            "stages.lm_ft.train.lr=3e-5",
        ],
        &[],
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Defaults are filled in and the override applied.
    assert!(
        shown.contains("search = \"exact\"") && shown.contains("lr = 0.00003"),
        "{shown}"
    );

    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        "output_dir = \"out\"\n[generator]\nmodel = \"g\"\n[data]\ntrain = \"t.jsonl\"\nmax_len = 64\n",
    )
    .unwrap();
    let out = radit(&["recipe", "validate", broken.to_str().unwrap()], &[]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{report}");
    for missing in ["retriever", "docstore", "data.batch_size", "stages"] {
        assert!(
            report.contains(&format!("missing key `{missing}`")),
            "{missing}: {report}"
        );
    }
}

/// A one-node SLURM cluster started by `scripts/slurm/local-cluster.sh` for one test; stopped
/// when dropped, also when the test fails.
struct LocalSlurm {
    dir: PathBuf,
    /// One cluster at a time: every one binds the same ports.
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

static SLURM: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl LocalSlurm {
    /// Starts the cluster under `dir`, or `None` (with the reason printed) when SLURM is not
    /// installed or cannot run here. With `RADIT_REQUIRE_SLURM=1` (CI) that is a failure.
    fn start(dir: &std::path::Path) -> Option<Self> {
        let guard = SLURM
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let required = std::env::var("RADIT_REQUIRE_SLURM").as_deref() == Ok("1");
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/slurm/local-cluster.sh"
        );
        let installed = Command::new("sh")
            .args(["-c", "command -v sbatch slurmctld slurmd munged"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            assert!(
                !required,
                "RADIT_REQUIRE_SLURM=1 but SLURM is not installed"
            );
            eprintln!("skipped: SLURM (slurm-wlm, munge) is not installed");
            return None;
        }
        let out = Command::new(script)
            .args(["start", dir.to_str().unwrap()])
            .output()
            .unwrap();
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!required, "the local SLURM cluster did not start:\n{why}");
            eprintln!("skipped: the local SLURM cluster did not start:\n{why}");
            return None;
        }
        Some(Self {
            dir: dir.to_path_buf(),
            _one_at_a_time: guard,
        })
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }

    /// A SLURM command against this cluster; its stdout.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .args(args)
            .env("SLURM_CONF", self.conf())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `KEY=VALUE` of `scontrol show job`.
    fn job_field(&self, job: &str, key: &str) -> Option<String> {
        let text = self.run("scontrol", &["show", "job", job]);
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_string))
    }

    /// The daemons' logs, for failure messages.
    fn logs(&self) -> String {
        ["slurmctld.log", "slurmd.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.join("log").join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until `done` holds for the job, failing after ten minutes.
    fn wait_job(&self, job: &str, what: &str, done: impl Fn(&Self) -> bool) {
        let start = std::time::Instant::now();
        while !done(self) {
            assert!(
                start.elapsed().as_secs() < 600,
                "job {job}: no {what} after 10 minutes"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

impl Drop for LocalSlurm {
    fn drop(&mut self) {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/slurm/local-cluster.sh"
        );
        let _ = Command::new(script)
            .args(["stop", self.dir.to_str().unwrap()])
            .status();
    }
}

/// A training job under a real SLURM (`scripts/slurm/radit.sbatch train`): preempted with SIGUSR1
/// after its first checkpoint, it saves, exits 75 and requeues itself; the requeued job runs
/// the same command line, resumes, and ends with weights and losses bitwise equal to an
/// uninterrupted run.
#[test]
fn a_preempted_slurm_job_requeues_and_ends_bitwise_equal() {
    let Some(root) = assets() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(slurm) = LocalSlurm::start(&dir.path().join("slurm")) else {
        return;
    };
    let started = std::time::Instant::now();
    let recipe = tiny_recipe(dir.path(), &root);
    let recipe = recipe.to_str().unwrap();
    let straight = dir.path().join("straight");
    let out = radit(
        &["train", recipe, "--output-dir", straight.to_str().unwrap()],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let run = dir.path().join("slurm-run");
    let sbatch = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/slurm/radit.sbatch"
    );
    let out = Command::new("sbatch")
        .args([
            "--parsable",
            "--job-name=radit-train",
            sbatch,
            "train",
            recipe,
            "--output-dir",
            run.to_str().unwrap(),
            "--resume",
            "auto",
        ])
        .current_dir(dir.path())
        .env("SLURM_CONF", slurm.conf())
        .env("RADIT", env!("CARGO_BIN_EXE_radit"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let log = dir.path().join(format!("radit-train-{job}.log"));

    let first = run.join("lm_ft/checkpoints/step-00000002/manifest.json");
    slurm.wait_job(&job, "first checkpoint", |_| first.is_file());
    // What a preemption notice or the time-limit warning delivers.
    slurm.run("scancel", &["--signal=USR1", "--batch", &job]);
    slurm.wait_job(&job, "requeue", |s| {
        s.job_field(&job, "Restarts").as_deref() == Some("1")
            && s.job_field(&job, "JobState").as_deref() == Some("PENDING")
    });
    // The requeued job starts again once its old credential has expired (10 s here).
    slurm.wait_job(&job, "completion", |s| {
        matches!(
            s.job_field(&job, "JobState").as_deref(),
            Some("COMPLETED" | "FAILED" | "CANCELLED" | "TIMEOUT")
        )
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        slurm.job_field(&job, "JobState").as_deref(),
        Some("COMPLETED"),
        "{text}\n{}",
        slurm.logs()
    );
    assert_eq!(slurm.job_field(&job, "ExitCode").as_deref(), Some("0:0"));
    assert!(
        text.contains("attempt 1") && text.contains("attempt 2"),
        "{text}"
    );
    assert!(text.contains("requeueing"), "{text}");
    let resumed = text
        .lines()
        .find(|l| l.contains("resuming at step"))
        .unwrap_or_else(|| panic!("the requeued job did not resume:\n{text}"));
    eprintln!(
        "slurm job {job}: preempted, requeued, {}; {:.0} s in all",
        resumed.trim(),
        started.elapsed().as_secs_f64()
    );
    let (a_state, a_weights) = final_state(&straight, "lm_ft");
    let (b_state, b_weights) = final_state(&run, "lm_ft");
    assert_eq!(a_state["losses"], b_state["losses"]);
    assert!(
        a_weights == b_weights,
        "final weights differ after the requeue"
    );
}

/// The tiny LM-ft recipe with an R-ft stage and dev data.
fn tiny_r_ft_recipe(dir: &std::path::Path, root: &std::path::Path) -> PathBuf {
    let recipe = tiny_recipe(dir, root);
    let text = std::fs::read_to_string(&recipe).unwrap();
    let text = text.replace(
        "[data]\n",
        &format!(
            "[data]\ndev = \"{}\"\ndev_limit = 8\n",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../datasets/synthetic/dev.jsonl"
            )
        ),
    ) + r#"
[stages.r_ft]
candidates = 4
batch_size = 4
corpus_pairs = 4
pair_words = 20
[stages.r_ft.train]
lr = 1e-5
max_steps = 3
schedule = { kind = "constant" }
"#;
    std::fs::write(&recipe, text).unwrap();
    recipe
}

/// The `JobState` of every record of a job (one per task of an array job).
fn job_states(slurm: &LocalSlurm, job: &str) -> Vec<String> {
    let text = slurm.run("scontrol", &["show", "job", job]);
    let states: Vec<String> = text
        .split_whitespace()
        .filter_map(|kv| kv.strip_prefix("JobState=").map(str::to_string))
        .collect();
    if text.contains("DependencyNeverSatisfied") {
        return vec!["NEVER".into()];
    }
    states
}

/// RA-DIT's precompute spread over SLURM array tasks (`scripts/slurm/pipeline.sh RECIPE 2`):
/// index shards and their merge, LM-ft, scoring shards, R-ft, evaluation shards and their
/// merge, each job waiting for the one before. The merged index is byte-for-byte the
/// single-process build, R-ft finds every generator score cached, and the merged evaluation
/// report is the single-process evaluation's.
#[test]
fn a_slurm_array_pipeline_shards_the_precompute_and_matches_one_process() {
    let Some(root) = assets() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(slurm) = LocalSlurm::start(&dir.path().join("slurm")) else {
        return;
    };
    let started = std::time::Instant::now();
    let recipe = tiny_r_ft_recipe(dir.path(), &root);
    let recipe = recipe.to_str().unwrap();
    let run = dir.path().join("run");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/slurm/pipeline.sh"
    );
    let out = Command::new(script)
        .args([recipe, "2", "--output-dir", run.to_str().unwrap()])
        .args(["--eval-limit", "20"])
        .current_dir(dir.path())
        .env("SLURM_CONF", slurm.conf())
        .env("RADIT", env!("CARGO_BIN_EXE_radit"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jobs: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(name, id)| (name.to_string(), id.to_string()))
        .collect();
    let names: Vec<&str> = jobs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "index",
            "merge",
            "lm-ft",
            "score",
            "train",
            "eval",
            "eval-merge"
        ]
    );
    let logs = || {
        let mut text = String::new();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                text += &format!("== {}\n", path.display());
                text += &std::fs::read_to_string(&path).unwrap_or_default();
            }
        }
        text
    };
    for (name, job) in &jobs {
        slurm.wait_job(job, "end", |s| {
            let states = job_states(s, job);
            !states.is_empty()
                && states.iter().all(|st| {
                    matches!(
                        st.as_str(),
                        "COMPLETED" | "FAILED" | "CANCELLED" | "TIMEOUT" | "NEVER"
                    )
                })
        });
        let states = job_states(&slurm, job);
        assert!(
            states.iter().all(|s| s == "COMPLETED"),
            "job {name} ({job}): {states:?}\n{}\n{}",
            logs(),
            slurm.logs()
        );
        if matches!(name.as_str(), "index" | "score" | "eval") {
            assert_eq!(states.len(), 2, "{name}: one record per array task");
        }
    }
    let pipeline_seconds = started.elapsed().as_secs_f64();
    let text = logs();

    // The index: byte-for-byte a single process's build of the recipe's index.
    let single = dir.path().join("single-index");
    let out = radit(
        &[
            "index",
            "build",
            "--recipe",
            recipe,
            "--set",
            &format!("docstore.index={}", single.display()),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index = dir.path().join("index");
    for name in [
        "manifest.json",
        "chunks.jsonl",
        "chunks.offsets",
        "embeddings.f32",
    ] {
        assert!(
            std::fs::read(index.join(name)).unwrap() == std::fs::read(single.join(name)).unwrap(),
            "{name} differs from the single-process build"
        );
    }
    assert!(
        !dir.path().join("index.shards").exists(),
        "the merge removes the shards"
    );

    // Scoring: both shards scored, and R-ft computed nothing itself.
    for shard in ["shard 0/2, queries 0..", "shard 1/2, queries "] {
        assert!(text.contains(shard), "{shard}:\n{text}");
    }
    assert!(
        text.contains("generator scores: 0 computed"),
        "R-ft recomputed scores:\n{text}"
    );
    assert!(run.join("r_ft/final/model.safetensors").is_file());

    // Evaluation: the merged report is the one-process report.
    let whole = dir.path().join("whole.json");
    let out = radit(
        &[
            "eval",
            "--checkpoint",
            run.to_str().unwrap(),
            "--limit",
            "20",
            "--out",
            whole.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |p: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let (merged, whole) = (read(&run.join("eval-sharded.json")), read(&whole));
    assert!(merged.get("shard").is_none());
    assert_eq!(merged["metrics"], whole["metrics"]);
    assert_eq!(merged["run"], whole["run"]);
    let predictions = |r: &serde_json::Value| -> Vec<(String, String)> {
        r["questions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| (q["id"].to_string(), q["prediction"].to_string()))
            .collect()
    };
    assert_eq!(predictions(&merged), predictions(&whole));
    assert_eq!(predictions(&merged).len(), 20);
    eprintln!(
        "slurm pipeline: jobs {jobs:?} completed in {pipeline_seconds:.0} s; {:.0} s with the \
         single-process checks",
        started.elapsed().as_secs_f64()
    );
}

/// The sharded commands name what is missing or wrong: no index for scoring shards (they
/// would race to build it), a shard that does not exist, `--shard slurm` outside an array
/// job, a stage the recipe lacks, scoring before the stage it needs, a merge without shards.
#[test]
fn sharded_commands_name_what_is_missing() {
    let Some(root) = assets() else { return };
    let dir = tempfile::tempdir().unwrap();
    let recipe = tiny_r_ft_recipe(dir.path(), &root);
    let r = recipe.to_str().unwrap();
    let run = dir.path().join("run");
    let run = run.to_str().unwrap();
    let fails = |args: &[&str]| {
        let out = radit(args, &[]);
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = fails(&["score", r, "--output-dir", run, "--shard", "0/2"]);
    assert!(
        e.contains("no index yet") && e.contains("radit index merge"),
        "{e}"
    );
    let e = fails(&["score", r, "--output-dir", run, "--shard", "2/2"]);
    assert!(e.contains("numbered 0 to 1"), "{e}");
    let e = fails(&["index", "build", "--recipe", r, "--shard", "slurm"]);
    assert!(
        e.contains("SLURM_ARRAY_TASK_ID") && e.contains("array job"),
        "{e}"
    );
    let e = fails(&["train", r, "--output-dir", run, "--until", "r_fr"]);
    assert!(
        e.contains("--until `r_fr`") && e.contains("lm_ft, r_ft"),
        "{e}"
    );
    assert!(
        !std::path::Path::new(run).exists(),
        "a refused run wrote nothing"
    );

    let out = radit(&["index", "build", "--recipe", r], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = radit(&["index", "build", "--recipe", r], &[]);
    assert!(
        again.status.success()
            && String::from_utf8_lossy(&again.stderr).contains("nothing to build"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let e = fails(&["score", r, "--output-dir", run]);
    assert!(
        e.contains("`lm_ft` is the first unfinished stage") && e.contains("--until lm_ft"),
        "{e}"
    );
    let other = dir.path().join("other-index");
    let e = fails(&["index", "merge", "--out", other.to_str().unwrap()]);
    assert!(e.contains("holds no shards"), "{e}");
}

/// `scripts/slurm/radit.sbatch` outside SLURM, with the array variables a SLURM array task
/// would have set by hand (ids from 1, as `--array=1-2` gives): the two index shards it runs
/// merge into the single-process index. This runs where SLURM's daemons cannot.
#[test]
fn the_sbatch_script_shards_by_the_array_variables_set_by_hand() {
    let Some(root) = assets() else { return };
    let dir = tempfile::tempdir().unwrap();
    let recipe = tiny_r_ft_recipe(dir.path(), &root);
    let r = recipe.to_str().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/slurm/radit.sbatch"
    );
    for id in ["1", "2"] {
        let out = Command::new("bash")
            .args([script, "index", "build", "--recipe", r, "--shard", "slurm"])
            .env("RADIT", env!("CARGO_BIN_EXE_radit"))
            .env("SLURM_ARRAY_TASK_ID", id)
            .env("SLURM_ARRAY_TASK_MIN", "1")
            .env("SLURM_ARRAY_TASK_COUNT", "2")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        let shard = format!("shard {}/2 done", id.parse::<usize>().unwrap() - 1);
        assert!(text.contains(&shard), "{text}");
    }
    let merged = radit(&["index", "merge", "--recipe", r], &[]);
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    let single = dir.path().join("single-index");
    let set = format!("docstore.index={}", single.display());
    let out = radit(&["index", "build", "--recipe", r, "--set", &set], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["manifest.json", "chunks.jsonl", "embeddings.f32"] {
        let (a, b) = (dir.path().join("index").join(name), single.join(name));
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{name} differs"
        );
    }
}

#[path = "support/webdriver.rs"]
mod webdriver;

/// `radit ARGS`, which must succeed (its stderr is the failure message).
fn radit_ok(args: &[&str]) -> Output {
    let out = radit(args, &[]);
    assert!(
        out.status.success(),
        "radit {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A running `radit review`, SIGKILLed on drop.
struct ReviewServer {
    child: std::process::Child,
    url: String,
}

impl Drop for ReviewServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `radit review ARGS --port 0` and waits (models load first) for the URL it prints.
fn start_review(args: &[&str]) -> ReviewServer {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_radit"))
        .args(args)
        .args(["--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(url) = line
                .strip_prefix("review: ")
                .and_then(|rest| rest.split_whitespace().next())
            {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let started = std::time::Instant::now();
    let url = loop {
        if let Ok(url) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
            break url;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("radit review exited ({status}) before printing its address");
        }
        if started.elapsed() > std::time::Duration::from_secs(300) {
            let _ = child.kill();
            panic!("radit review printed no address within 300 s");
        }
    };
    ReviewServer { child, url }
}

/// Chromium and its driver, or `None` with a notice (CI sets `RADIT_REQUIRE_BROWSER=1`).
fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    match webdriver::chromium() {
        Ok(found) => Some(found),
        Err(why) => {
            assert!(
                std::env::var("RADIT_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "headless Chromium missing: {why}"
            );
            eprintln!(
                "skipping: headless Chromium missing ({why}); apt install chromium chromium-driver"
            );
            None
        }
    }
}

/// What a reviewer's judgment of the answer on the page is, from the gold answers: chunks
/// containing a gold answer are helpful, the others not; an answer that matches is right,
/// otherwise wrong and corrected to the first gold answer. Returns whether it was right.
fn judge_from_gold(browser: &webdriver::Browser, gold: &[String]) -> bool {
    let norm = |s: &str| {
        s.to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || c.is_whitespace())
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let texts = texts_in_page(browser, "#answers .answer[data-side=a] tr.chunk td.text");
    for (rank, text) in texts.iter().enumerate() {
        let text = norm(text);
        let helpful = gold.iter().any(|g| text.contains(&norm(g)));
        let button = if helpful { "helpful" } else { "not-helpful" };
        browser.click(&format!(
            "#answers .answer[data-side=a] tr.chunk[data-rank=\"{rank}\"] button.{button}"
        ));
    }
    let answer = browser.text("#answers .answer[data-side=a] .answer-text");
    let right = gold.iter().any(|g| norm(g) == norm(&answer));
    if right {
        browser.click("#answers .answer[data-side=a] button.right");
    } else {
        browser.click("#answers .answer[data-side=a] button.wrong");
        browser.type_into("#answers .answer[data-side=a] input.correction", &gold[0]);
    }
    browser.click("#answers .answer[data-side=a] button.save");
    browser.wait_for(
        "the judgment to be saved",
        std::time::Duration::from_secs(30),
        "const s = document.querySelector('#answers .answer[data-side=a] .saved');\
         return s && s.textContent.startsWith('saved (judgment #') && s.textContent",
    );
    right
}

/// Types `question` into the page, asks it and waits for the answer.
fn ask_in_page(browser: &webdriver::Browser, question: &str) {
    browser.type_into("#question", question);
    browser.click("#ask");
    wait_answered(browser);
}

/// The `textContent` of every element matching `css`.
fn texts_in_page(browser: &webdriver::Browser, css: &str) -> Vec<String> {
    let script = format!(
        "return [...document.querySelectorAll({})].map(e => e.textContent)",
        serde_json::json!(css)
    );
    serde_json::from_value(browser.eval(&script, vec![])).unwrap()
}

/// Waits until the page shows an answer for the question in the box.
fn wait_answered(browser: &webdriver::Browser) {
    browser.wait_for(
        "the answer",
        std::time::Duration::from_secs(120),
        "const s = document.querySelector('#status');\
         return s && s.textContent === 'answered' && !document.querySelector('#ask').disabled",
    );
}

#[test]
fn review_in_a_browser_persists_judgments_through_sigkill_and_they_train_both_stages() {
    let Some(root) = assets() else { return };
    let Some((chromium, driver)) = browser_binaries() else {
        return;
    };
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    // The corpus with one document a hostile editor wrote: it must render as text.
    let corpus = dir.path().join("corpus.jsonl");
    let mut text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/synthetic/corpus.jsonl"
    ))
    .unwrap();
    text.push_str(
        &serde_json::json!({
            "id": "doc-xss",
            "title": "Quorble Cafe",
            "text": "<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script> \
                     Quorble Cafe was opened by Ada Lint in 1901 in Deskgate."
        })
        .to_string(),
    );
    text.push('\n');
    std::fs::write(&corpus, text).unwrap();
    let recipe = tiny_recipe(dir.path(), &root);
    let recipe_text = std::fs::read_to_string(&recipe).unwrap().replace(
        &format!(
            "{}/datasets/synthetic/corpus.jsonl",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../..")
        ),
        corpus.to_str().unwrap(),
    );
    std::fs::write(&recipe, &recipe_text).unwrap();
    let run = dir.path().join("run");
    radit_ok(&[
        "train",
        recipe.to_str().unwrap(),
        "--output-dir",
        run.to_str().unwrap(),
    ]);
    let trained = started.elapsed().as_secs_f64();

    let dev: Vec<serde_json::Value> = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/synthetic/dev.jsonl"
    ))
    .unwrap()
    .lines()
    .take(2)
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    let queue = dir.path().join("queue.jsonl");
    std::fs::write(
        &queue,
        dev.iter().map(|v| v.to_string() + "\n").collect::<String>(),
    )
    .unwrap();
    let db = dir.path().join("judgments.sqlite");
    let review_args = |db: &std::path::Path| -> Vec<String> {
        vec![
            "review".into(),
            "--checkpoint".into(),
            run.display().to_string(),
            "--questions".into(),
            queue.display().to_string(),
            "--db".into(),
            db.display().to_string(),
        ]
    };
    let args = review_args(&db);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = start_review(&args);
    let browser = webdriver::Browser::start(&chromium, &driver);
    let browser_started = std::time::Instant::now();
    browser.goto(&server.url);
    // The queue's first question is asked on load, with "n of N".
    wait_answered(&browser);
    assert_eq!(browser.text("#progress"), "Question 1 of 2");
    let gold: Vec<String> = serde_json::from_value(dev[0]["answers"].clone()).unwrap();
    judge_from_gold(&browser, &gold);
    browser.click("#next");
    browser.wait_for(
        "the second question",
        std::time::Duration::from_secs(60),
        "return document.querySelector('#progress').textContent === 'Question 2 of 2'",
    );
    wait_answered(&browser);

    // A typed question whose best chunk carries markup: shown as text, never run.
    ask_in_page(&browser, "Who opened Quorble Cafe?");
    let texts = texts_in_page(&browser, "#answers tr.chunk td.text");
    let hostile = texts
        .iter()
        .position(|t| t.contains("<script>window.__pwned=2</script>"))
        .unwrap_or_else(|| panic!("the Quorble Cafe chunk was not retrieved: {texts:?}"));
    let safe = browser.eval(
        "return window.__pwned === undefined && \
         document.querySelectorAll('#answers img, #answers script').length === 0",
        vec![],
    );
    assert_eq!(
        safe,
        serde_json::json!(true),
        "markup in a chunk was executed"
    );
    // Mark it helpful and the other chunk not, say the answer is wrong and correct it.
    let other = 1 - hostile;
    browser.click(&format!("tr.chunk[data-rank=\"{hostile}\"] button.helpful"));
    browser.click(&format!(
        "tr.chunk[data-rank=\"{other}\"] button.not-helpful"
    ));
    browser.type_into("#reviewer", "ana");
    browser.click("button.wrong");
    browser.type_into("input.correction", "Ada Lint");
    browser.click("button.save");
    let saved = browser.wait_for(
        "the judgment to be saved",
        std::time::Duration::from_secs(30),
        "const s = document.querySelector('.saved');\
         return s.textContent.startsWith('saved (judgment #') && s.textContent",
    );
    assert_eq!(saved, serde_json::json!("saved (judgment #2)"));
    if let Some(path) = std::env::var_os("RADIT_REVIEW_SCREENSHOT") {
        std::fs::write(&path, browser.screenshot()).unwrap();
        eprintln!("screenshot: {}", PathBuf::from(path).display());
    }

    // Acknowledged means durable: SIGKILL the server, start another on the same file.
    let first_url = server.url.clone();
    drop(server);
    let server = start_review(&args);
    assert_ne!(server.url, first_url);
    browser.goto(&server.url);
    let recent = browser.wait_for(
        "the saved judgments",
        std::time::Duration::from_secs(120),
        "const li = [...document.querySelectorAll('#recent li')].map(l => l.textContent);\
         return li.length === 2 && li",
    );
    let recent: Vec<String> = serde_json::from_value(recent).unwrap();
    assert!(
        recent[0].starts_with("Who opened Quorble Cafe? → ")
            && recent[0].contains("answer wrong")
            && recent[0].contains("corrected to “Ada Lint”")
            && recent[0].contains("by ana"),
        "{recent:?}"
    );
    eprintln!(
        "browser test: training {trained:.1} s, in the browser {:.1} s",
        browser_started.elapsed().as_secs_f64()
    );
    drop(browser);
    drop(server);

    let out = radit_ok(&["feedback", "stats", "--db", db.to_str().unwrap(), "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["judgments"], 2, "{stats}");
    assert_eq!(
        stats["corrections"],
        1 + u64::from(stats["wrong"] == 2),
        "{stats}"
    );
    assert_eq!(stats["reviewers"], 1, "{stats}");

    // The export loads as training data: LM-ft on the corrections, R-ft on the labels.
    let export = dir.path().join("export");
    radit_ok(&[
        "feedback",
        "export",
        "--db",
        db.to_str().unwrap(),
        "--out",
        export.to_str().unwrap(),
    ]);
    let lm_ft = std::fs::read_to_string(export.join("lm_ft.jsonl")).unwrap();
    let quorble: serde_json::Value = lm_ft
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["question"] == "Who opened Quorble Cafe?")
        .unwrap();
    assert_eq!(quorble["answers"], serde_json::json!(["Ada Lint"]));
    assert!(quorble["context"]
        .as_str()
        .unwrap()
        .contains("Quorble Cafe was opened by Ada Lint"));
    let labels = std::fs::read_to_string(export.join("retrieval.jsonl")).unwrap();
    assert!(labels.lines().count() >= 4, "{labels}");
    let out = radit(
        &[
            "feedback",
            "export",
            "--db",
            db.to_str().unwrap(),
            "--out",
            export.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--overwrite"));

    std::fs::create_dir_all(dir.path().join("r2")).unwrap();
    let round2 = tiny_r_ft_recipe(&dir.path().join("r2"), &root);
    let text = std::fs::read_to_string(&round2).unwrap();
    let text =
        text.replace(
            &format!(
                "train = \"{}/datasets/synthetic/train.jsonl\"",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../..")
            ),
            &format!(
                "train = [\"{}/datasets/synthetic/train.jsonl\", \"{}\"]",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
                export.join("lm_ft.jsonl").display()
            ),
        )
        .replace(
            &format!(
                "corpus = \"{}/datasets/synthetic/corpus.jsonl\"",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../..")
            ),
            &format!("corpus = \"{}\"", corpus.display()),
        )
        .replace(
            &format!("index = \"{}\"", dir.path().join("r2/index").display()),
            &format!("index = \"{}\"", dir.path().join("index").display()),
        ) + &format!(
            "[stages.r_ft.feedback]\nlabels = \"{}\"\nweight = 1.0\n\
             [stages.dpo]\npreferences = \"{}\"\nbatch_size = 1\n\
             [stages.dpo.train]\nlr = 1e-6\nmax_steps = 2\nschedule = {{ kind = \"constant\" }}\n",
            export.join("retrieval.jsonl").display(),
            export.join("preferences.jsonl").display()
        );
    assert!(
        text.contains("lm_ft.jsonl") && text.contains(corpus.to_str().unwrap()),
        "{text}"
    );
    std::fs::write(&round2, text).unwrap();
    let run2 = dir.path().join("run2");
    let out = radit(
        &[
            "train",
            round2.to_str().unwrap(),
            "--output-dir",
            run2.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // DPO trained on the correction pairs, after LM-ft and R-ft.
    assert!(stderr.contains("dpo: wrote"), "{stderr}");
    // Both reviewed questions are R-ft queries now (from lm_ft.jsonl), each with 2 labels.
    assert!(
        stderr.contains("human judgments: 4 applied to 2 queries, 0 stale"),
        "{stderr}"
    );

    // The two rounds side by side: the reviewer picks the second round's answer.
    let server = start_review(&[
        "review",
        "--checkpoint",
        run.to_str().unwrap(),
        "--compare",
        run2.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    let browser = webdriver::Browser::start(&chromium, &driver);
    browser.goto(&server.url);
    ask_in_page(&browser, "Who opened Quorble Cafe?");
    let sides = texts_in_page(&browser, "#answers .answer h2.side");
    assert!(
        sides.len() == 2
            && sides[0].starts_with("A: LM-ft")
            && sides[1].starts_with("B: LM-ft + DPO + R-ft"),
        "{sides:?}"
    );
    browser.click("button.prefer[data-choice=b]");
    browser.wait_for(
        "the preference to be saved",
        std::time::Duration::from_secs(30),
        "return document.querySelector('#prefer-status').textContent === 'saved (preference #1)'",
    );
    drop(browser);
    drop(server);
    let out = radit(
        &["feedback", "stats", "--db", db.to_str().unwrap(), "--json"],
        &[],
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        stats["preferences"],
        serde_json::json!([0, 1, 0]),
        "{stats}"
    );
}

/// The reviewer of `scripts/feedback_demo.sh`: reviews every question of a queue in the
/// browser, judging from the gold answers (see `judge_from_gold`), as a person would click.
/// Run by the script (`--ignored`), with RADIT_DEMO_RUN, RADIT_DEMO_QUESTIONS, RADIT_DEMO_DB.
#[test]
#[ignore = "run by scripts/feedback_demo.sh"]
fn feedback_demo_reviewer() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let (run, questions, db) = (
        var("RADIT_DEMO_RUN"),
        var("RADIT_DEMO_QUESTIONS"),
        var("RADIT_DEMO_DB"),
    );
    let (chromium, driver) = webdriver::chromium().unwrap();
    let gold_answers: Vec<Vec<String>> = std::fs::read_to_string(&questions)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            serde_json::from_value(v["answers"].clone()).unwrap()
        })
        .collect();
    let server = start_review(&[
        "review",
        "--checkpoint",
        &run,
        "--questions",
        &questions,
        "--db",
        &db,
    ]);
    let browser = webdriver::Browser::start(&chromium, &driver);
    let started = std::time::Instant::now();
    browser.goto(&server.url);
    let mut right = 0;
    for (i, gold) in gold_answers.iter().enumerate() {
        browser.wait_for(
            "the next question",
            std::time::Duration::from_secs(60),
            &format!(
                "return document.querySelector('#progress').textContent.startsWith('Question {} of ')",
                i + 1
            ),
        );
        wait_answered(&browser);
        right += usize::from(judge_from_gold(&browser, gold));
        if i + 1 < gold_answers.len() {
            browser.click("#next");
        }
    }
    if let Ok(path) = std::env::var("RADIT_REVIEW_SCREENSHOT") {
        std::fs::write(path, browser.screenshot()).unwrap();
    }
    println!(
        "reviewed {} questions in the browser in {:.1} s: {right} answers right, {} corrected",
        gold_answers.len(),
        started.elapsed().as_secs_f64(),
        gold_answers.len() - right
    );
}
