//! The targets: seed builders and the real parser entry points, one pair per format.
//!
//! Each run function does what a radit command does with such a file before any heavy work
//! (load the model from a GGUF file, open a safetensors checkpoint and read every tensor,
//! open an index and search it, ...), so a bug anywhere on that path shows up.

use std::path::Path;

use burn::tensor::Device;
use radit_data::load_dataset;
use radit_docstore::{
    build_index, chunk_document, load_corpus, Bm25Params, BuildOptions, ChunkParams, CorpusFormat,
    Dense, DocStore, HashEmbedder, HnswParams, Hybrid, ProgressMode, Queries, SearchMode,
};
use radit_models::config::{model_family, read_config_json, BertConfig, LlamaConfig};
use radit_models::gguf::GgufFile;
use radit_models::weights::{SafetensorsSource, TensorSource};
use radit_models::{EncodeOptions, Generator, TextTokenizer};
use radit_pipeline::recipe::Recipe;

use crate::{check_warnings, Seed, Style, Target};

pub(crate) static TARGETS: &[Target] = &[
    Target {
        name: "gguf",
        about: "a tiny Llama GGUF (Q8_0 and F32 tensors, BPE vocabulary): Generator::load_gguf, then encode and decode",
        seeds: gguf_seeds,
        run: gguf_run,
    },
    Target {
        name: "config-json",
        about: "SmolLM2 and MiniLM config.json: read_config_json, model_family, LlamaConfig/BertConfig::from_json",
        seeds: config_seeds,
        run: config_run,
    },
    Target {
        name: "safetensors",
        about: "a safetensors file with F32, F16 and BF16 tensors: SafetensorsSource::open_file, read every tensor",
        seeds: safetensors_seeds,
        run: safetensors_run,
    },
    Target {
        name: "tokenizer",
        about: "byte-level BPE and SentencePiece tokenizer.json: TextTokenizer::from_dir, encode, decode",
        seeds: tokenizer_seeds,
        run: tokenizer_run,
    },
    Target {
        name: "recipe",
        about: "recipes/quickstart.toml: Recipe::load (parse, paths, validation)",
        seeds: recipe_seeds,
        run: recipe_run,
    },
    Target {
        name: "jsonl",
        about: "a JSONL instruction dataset: load_dataset (skipped lines and duplicates reported)",
        seeds: jsonl_seeds,
        run: dataset_run,
    },
    Target {
        name: "tsv",
        about: "a DPR QA TSV dataset: load_dataset",
        seeds: tsv_seeds,
        run: dataset_run,
    },
    Target {
        name: "corpus",
        about: "JSONL, Wikipedia-summaries JSON and Markdown corpora: load_corpus, chunk_document",
        seeds: corpus_seeds,
        run: corpus_run,
    },
    Target {
        name: "manifest",
        about: "manifest.json of a small index (HNSW, BM25, f16): DocStore::open, dense, HNSW, BM25 and hybrid search",
        seeds: manifest_seeds,
        run: manifest_run,
    },
    Target {
        name: "feedback-labels",
        about: "retrieval.jsonl of radit feedback export: read_label_lines (R-ft's human judgments)",
        seeds: labels_seeds,
        run: labels_run,
    },
    Target {
        name: "feedback-preferences",
        about: "preferences.jsonl (TRL's DPO format) of radit feedback export: the dpo stage's load_preferences",
        seeds: preferences_seeds,
        run: preferences_run,
    },
    Target {
        name: "feedback-db",
        about: "a radit review SQLite database: FeedbackDb::open, judgments, preferences, stats, export",
        seeds: feedback_db_seeds,
        run: feedback_db_run,
    },
];

fn text_seed(file: &'static str, text: &str) -> Seed {
    Seed {
        file,
        bytes: text.as_bytes().to_vec(),
        focus: text.len(),
        style: Style::Text,
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

// ---- GGUF ----

/// A minimal GGUF writer: the value types the tiny model uses.
enum Value<'a> {
    U32(u32),
    F32(f32),
    Str(&'a str),
    Strs(&'a [&'a str]),
    I32s(&'a [i32]),
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_kv(out: &mut Vec<u8>, key: &str, value: &Value<'_>) {
    put_str(out, key);
    match value {
        Value::U32(v) => {
            out.extend(4u32.to_le_bytes());
            out.extend(v.to_le_bytes());
        }
        Value::F32(v) => {
            out.extend(6u32.to_le_bytes());
            out.extend(v.to_le_bytes());
        }
        Value::Str(s) => {
            out.extend(8u32.to_le_bytes());
            put_str(out, s);
        }
        Value::Strs(items) => {
            out.extend(9u32.to_le_bytes());
            out.extend(8u32.to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for s in *items {
                put_str(out, s);
            }
        }
        Value::I32s(items) => {
            out.extend(9u32.to_le_bytes());
            out.extend(5u32.to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for v in *items {
                out.extend(v.to_le_bytes());
            }
        }
    }
}

/// The two-block Llama of radit-models' GGUF tests (hidden 32, 4 query and 2 key/value
/// heads, feed-forward 64, 11-token byte-level BPE vocabulary), F32 norms and Q8_0 matrices.
/// Returns the bytes and where the data section starts.
pub(crate) fn tiny_llama_gguf() -> (Vec<u8>, usize) {
    const ALIGN: usize = 32;
    let (hidden, ffn, kv_out, vocab) = (32u64, 64u64, 16u64, 11u64);
    let kv: Vec<(&str, Value<'_>)> = vec![
        ("general.architecture", Value::Str("llama")),
        ("general.alignment", Value::U32(ALIGN as u32)),
        ("llama.block_count", Value::U32(2)),
        ("llama.embedding_length", Value::U32(hidden as u32)),
        ("llama.feed_forward_length", Value::U32(ffn as u32)),
        ("llama.attention.head_count", Value::U32(4)),
        ("llama.attention.head_count_kv", Value::U32(2)),
        ("llama.context_length", Value::U32(64)),
        ("llama.rope.freq_base", Value::F32(10_000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", Value::Str("gpt2")),
        ("tokenizer.ggml.pre", Value::Str("smollm")),
        (
            "tokenizer.ggml.tokens",
            Value::Strs(&[
                "<|endoftext|>",
                "a",
                "b",
                "c",
                "Ġ",
                "ab",
                "Ġa",
                "abc",
                "1",
                "2",
                "<think>",
            ]),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::I32s(&[3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4]),
        ),
        (
            "tokenizer.ggml.merges",
            Value::Strs(&["a b", "Ġ a", "ab c"]),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(0)),
        ("tokenizer.ggml.eos_token_id", Value::U32(0)),
        (
            "tokenizer.chat_template",
            Value::Str("{% for m in messages %}{{ m['content'] }}{% endfor %}"),
        ),
    ];
    // (name, GGUF dims fastest-first, type, data)
    let mut tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)> = Vec::new();
    let f32_tensor = |name: String, n: u64| {
        let data = (0..n)
            .flat_map(|i| (1.0 + i as f32 / 64.0).to_le_bytes())
            .collect();
        (name, vec![n], 0u32, data)
    };
    // Q8_0 rows of `cols` (a multiple of 32) elements: scale 1/64 (f16 0x2400), quants cycling.
    let q8_tensor = |name: String, cols: u64, rows: u64| {
        let mut data = Vec::new();
        for r in 0..rows * cols / 32 {
            data.extend([0x00, 0x24]);
            data.extend((0..32).map(|i| ((i + r as i32) % 17 - 8) as i8 as u8));
        }
        (name, vec![cols, rows], 8u32, data)
    };
    tensors.push(q8_tensor("token_embd.weight".into(), hidden, vocab));
    tensors.push(f32_tensor("output_norm.weight".into(), hidden));
    for b in 0..2 {
        let n = |s: &str| format!("blk.{b}.{s}.weight");
        tensors.extend([
            f32_tensor(n("attn_norm"), hidden),
            q8_tensor(n("attn_q"), hidden, hidden),
            q8_tensor(n("attn_k"), hidden, kv_out),
            q8_tensor(n("attn_v"), hidden, kv_out),
            q8_tensor(n("attn_output"), hidden, hidden),
            f32_tensor(n("ffn_norm"), hidden),
            q8_tensor(n("ffn_gate"), hidden, ffn),
            q8_tensor(n("ffn_up"), hidden, ffn),
            q8_tensor(n("ffn_down"), ffn, hidden),
        ]);
    }
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((kv.len() as u64).to_le_bytes());
    for (key, value) in &kv {
        put_kv(&mut out, key, value);
    }
    let mut offset = 0usize;
    for (name, dims, ty, data) in &tensors {
        put_str(&mut out, name);
        out.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(ty.to_le_bytes());
        out.extend((offset as u64).to_le_bytes());
        offset = (offset + data.len()).next_multiple_of(ALIGN);
    }
    out.resize(out.len().next_multiple_of(ALIGN), 0);
    let data_start = out.len();
    for (_, _, _, data) in &tensors {
        out.extend(data);
        out.resize(out.len().next_multiple_of(ALIGN), 0);
    }
    (out, data_start)
}

fn gguf_seeds(_: &Path) -> Result<Vec<Seed>, String> {
    let (bytes, data_start) = tiny_llama_gguf();
    Ok(vec![Seed {
        file: "model.gguf",
        bytes,
        focus: data_start,
        style: Style::Binary,
    }])
}

fn gguf_run(dir: &Path, file: &str, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join(file);
    write(&path, bytes)?;
    let generator = Generator::load_gguf(&path, &Device::flex()).map_err(|e| e.to_string())?;
    let tok = &generator.tokenizer;
    let ids = tok.encode("abc ab 12").map_err(|e| e.to_string())?;
    tok.decode(&ids, false).map_err(|e| e.to_string())?;
    Ok(())
}

// ---- config.json ----

fn config_seeds(_: &Path) -> Result<Vec<Seed>, String> {
    Ok(vec![
        text_seed(
            "smollm2.json",
            include_str!("../../models/tests/fixtures/smollm2_config.json"),
        ),
        text_seed(
            "minilm.json",
            include_str!("../../models/tests/fixtures/minilm_config.json"),
        ),
    ])
}

fn config_run(dir: &Path, file: &str, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join(file);
    write(&path, bytes)?;
    let value = read_config_json(&path).map_err(|e| e.to_string())?;
    let family = model_family(&path, &value).map_err(|e| e.to_string())?;
    match family {
        radit_models::config::ModelFamily::Llama => {
            let c = LlamaConfig::from_json(&path, &value).map_err(|e| e.to_string())?;
            // What the model builder derives from the config first.
            radit_models::llama::rope_inv_freq(&c);
        }
        radit_models::config::ModelFamily::Bert => {
            BertConfig::from_json(&path, &value).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

// ---- safetensors ----

/// A safetensors file: the 8-byte header length, the JSON header (padded with spaces to a
/// multiple of 8, as the reference writer does), then the data.
fn safetensors_file() -> (Vec<u8>, usize) {
    let f32s: Vec<u8> = (0..6)
        .flat_map(|i| (i as f32 - 2.5).to_le_bytes())
        .collect();
    // f16 1.0, -2.0, 0.5, 65504; bf16 1.0, -1.0, 3.0, 0.0.
    let f16s: Vec<u8> = [0x3c00u16, 0xc000, 0x3800, 0x7bff]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let bf16s: Vec<u8> = [0x3f80u16, 0xbf80, 0x4040, 0x0000]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let header = r#"{"__metadata__":{"format":"pt"},"a.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b.bias":{"dtype":"F16","shape":[4],"data_offsets":[24,32]},"c.norm":{"dtype":"BF16","shape":[2,2],"data_offsets":[32,40]},"d.empty":{"dtype":"F32","shape":[0,4],"data_offsets":[40,40]}}"#;
    let mut header = header.as_bytes().to_vec();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(&header);
    let focus = out.len();
    out.extend(f32s);
    out.extend(f16s);
    out.extend(bf16s);
    (out, focus)
}

fn safetensors_seeds(_: &Path) -> Result<Vec<Seed>, String> {
    let (bytes, focus) = safetensors_file();
    // Text mutations too: the header is JSON, and its numbers are the offsets and shapes.
    Ok(vec![Seed {
        file: "model.safetensors",
        bytes,
        focus,
        style: Style::Text,
    }])
}

fn safetensors_run(dir: &Path, file: &str, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join(file);
    write(&path, bytes)?;
    let source = SafetensorsSource::open_file(&path).map_err(|e| e.to_string())?;
    let names: Vec<String> = source.names().map(str::to_owned).collect();
    for name in names {
        let t = source.read(&name).map_err(|e| e.to_string())?;
        let n: usize = t.shape.iter().product();
        if n != t.data.len() {
            // A wrong-sized tensor would panic later, in the model builder.
            panic!(
                "tensor {name}: shape {:?} but {} values",
                t.shape,
                t.data.len()
            );
        }
    }
    source.content_hash();
    Ok(())
}

// ---- tokenizer.json ----

fn tokenizer_seeds(scratch: &Path) -> Result<Vec<Seed>, String> {
    // The tokenizer.json documents radit builds from GGUF metadata: byte-level BPE from the
    // tiny Llama, SentencePiece BPE with byte fallback from radit-models' fixture.
    let bpe = scratch.join("bpe.gguf");
    write(&bpe, &tiny_llama_gguf().0)?;
    let spm = scratch.join("spm.gguf");
    write(
        &spm,
        include_bytes!("../../models/tests/fixtures/spm_tiny.gguf"),
    )?;
    let mut seeds = Vec::new();
    for (path, file) in [(&bpe, "bpe.json"), (&spm, "spm.json")] {
        let doc = GgufFile::open(path)
            .and_then(|f| f.tokenizer_json())
            .map_err(|e| e.to_string())?;
        // Pretty-printed, so the line mutations have lines to work on.
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        seeds.push(text_seed(file, &text));
    }
    Ok(seeds)
}

fn tokenizer_run(dir: &Path, file: &str, bytes: &[u8]) -> Result<(), String> {
    // A model folder of its own per seed: from_dir reads `tokenizer.json` there.
    let folder = dir.join(file.trim_end_matches(".json"));
    std::fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
    write(&folder.join("tokenizer.json"), bytes)?;
    let tok = TextTokenizer::from_dir(&folder).map_err(|e| e.to_string())?;
    let options = EncodeOptions::default();
    tok.encode_batch(&["abc ab 12", "", "naïve 東京 <think>"], &options)
        .map_err(|e| e.to_string())?;
    let ids = tok
        .encode("abc ab 12 \u{1F600}")
        .map_err(|e| e.to_string())?;
    tok.decode(&ids, true).map_err(|e| e.to_string())?;
    Ok(())
}

// ---- recipe TOML ----

fn recipe_seeds(_: &Path) -> Result<Vec<Seed>, String> {
    Ok(vec![text_seed(
        "recipe.toml",
        include_str!("../../../recipes/quickstart.toml"),
    )])
}

fn recipe_run(dir: &Path, file: &str, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join(file);
    write(&path, bytes)?;
    Recipe::load(&path, &[]).map_err(|e| e.to_string())?;
    Ok(())
}

// ---- datasets ----

fn jsonl_seeds(_: &Path) -> Result<Vec<Seed>, String> {
    Ok(vec![text_seed(
        "train.jsonl",
        concat!(
            r#"{"id": "q1", "question": "Who wrote Hamlet?", "answers": ["Shakespeare", "William Shakespeare"]}"#,
            "\n",
            r#"{"id": 2, "question": "What is 2+2?", "answers": "4", "context": "In arithmetic, 2+2 is 4."}"#,
            "\n",
            r#"{"id": "q3", "question": "Which is a fruit?", "answers": {"text": ["apple"], "answer_start": [0]}, "choices": ["apple", "stone", "iron"]}"#,
            "\n\n",
            r#"{"id": "q4", "question": "Name the capital of \u00c9cosse", "answers": ["Edinburgh"], "extra": [1, 2.5e3, null]}"#,
            "\n",
        ),
    )])
}

fn tsv_seeds(_: &Path) -> Result<Vec<Seed>, String> {
    Ok(vec![text_seed(
        "train.tsv",
        concat!(
            "who wrote hamlet\t['Shakespeare', \"William Shakespeare\"]\n",
            "\"what is \"\"2+2\"\"\"\t['4', u'four']\n",
            "when did it end\t['1945', 'in 1945\\n', '\\x41\\u00e9']\n",
            "a question\twith a tab\t[\"\"\"Jaws\"\" (film)\"]\n",
        ),
    )])
}

fn dataset_run(dir: &Path, file: &str, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join(file);
    write(&path, bytes)?;
    let dataset = load_dataset(&path, None).map_err(|e| e.to_string())?;
    let report = &dataset.report;
    check_warnings(
        report
            .skipped
            .iter()
            .map(|s| s.to_string())
            .chain(report.duplicates.iter().map(|d| d.to_string())),
    )
}

// ---- corpus ----

fn corpus_seeds(_: &Path) -> Result<Vec<Seed>, String> {
    Ok(vec![
        text_seed(
            "corpus.jsonl",
            concat!(
                r#"{"id": "doc1", "title": "Hamlet", "text": "Hamlet is a tragedy by William Shakespeare, written around 1600."}"#,
                "\n",
                r#"{"id": "doc2", "title": "Macbeth", "text": "Macbeth is a tragedy.", "section": "Plot", "metadata": {"year": 1606, "tags": ["play"]}}"#,
                "\n",
                r#"{"id": 3, "title": "", "text": "An untitled note with a number id.", "url": "https://example.org/x"}"#,
                "\n",
            ),
        ),
        text_seed(
            "summaries.json",
            r#"{"Hamlet": {"title": "Hamlet", "extract": "Hamlet is a tragedy by Shakespeare.", "description": "play", "topic": "Literature"},
 "Paris": {"title": "Paris", "extract": "Paris is the capital of France. It has 2.1 million people.", "description": "city", "topic": "Geography"}}
"#,
        ),
        text_seed(
            "notes.md",
            "# Notes\n\nIntro text before any section.\n\n## Plays\n\nHamlet (1600) and Macbeth (1606).\n\n### Details\n\n- one\n- two\n\n## Cities\n\nParis, 2.1 million.\n",
        ),
    ])
}

fn corpus_run(dir: &Path, file: &str, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join(file);
    write(&path, bytes)?;
    let (docs, report) = load_corpus(&path, CorpusFormat::Auto).map_err(|e| e.to_string())?;
    let params = ChunkParams::default();
    for doc in &docs {
        chunk_document(doc, &params);
    }
    check_warnings(report.issues.iter().map(|i| i.to_string()))
}

// ---- index manifest ----

const INDEX: &str = "index";

fn manifest_seeds(scratch: &Path) -> Result<Vec<Seed>, String> {
    let corpus = scratch.join("corpus.jsonl");
    let lines: String = (0..40)
        .map(|i| {
            format!(
                "{{\"id\": \"d{i}\", \"title\": \"Doc {i}\", \"text\": \"document {i} is about topic {} and word{} with some filler text\"}}\n",
                i % 7,
                i * 3
            )
        })
        .collect();
    write(&corpus, lines.as_bytes())?;
    let options = BuildOptions {
        f16: true,
        hnsw: Some(HnswParams::default()),
        bm25: Some(Bm25Params::default()),
        progress: ProgressMode::Silent,
        ..BuildOptions::default()
    };
    let index = scratch.join(INDEX);
    build_index(&corpus, &index, &HashEmbedder::new(16, 0), &options).map_err(|e| e.to_string())?;
    let manifest =
        std::fs::read(index.join(radit_docstore::manifest::MANIFEST)).map_err(|e| e.to_string())?;
    Ok(vec![Seed {
        file: radit_docstore::manifest::MANIFEST,
        focus: manifest.len(),
        bytes: manifest,
        style: Style::Text,
    }])
}

fn manifest_run(dir: &Path, file: &str, bytes: &[u8]) -> Result<(), String> {
    let index = dir.join(INDEX);
    write(&index.join(file), bytes)?;
    let store = DocStore::open(&index).map_err(|e| e.to_string())?;
    // The encoder's own width, not the manifest's: a lying `dim` must be caught by the store.
    let embedder = HashEmbedder::new(16, 0);
    let q = embedder.embed_one("document about topic 3");
    let texts = ["document about topic 3"];
    let queries = Queries::both(&q, &texts);
    for mode in [
        SearchMode::Dense(Dense::Exact),
        SearchMode::Dense(Dense::ExactF16),
        SearchMode::Dense(Dense::Ann { ef: None }),
        SearchMode::Bm25,
        SearchMode::Hybrid(Hybrid::default()),
    ] {
        store
            .search(&queries, 5, &mode)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

// ---- human feedback ----

fn labels_seeds(_: &Path) -> Result<Vec<Seed>, String> {
    Ok(vec![text_seed(
        "retrieval.jsonl",
        concat!(
            r#"{"question": "Who opened Quorble Cafe?", "chunk_id": 210, "text_hash": "5aaa16dfc9a3eb17", "index": "0a1b2c3d4e5f6071", "label": 1, "answer_id": 3, "reviewer": "ana"}"#,
            "\n",
            r#"{"question": "who opened  quorble cafe?", "chunk_id": 161, "text_hash": "ceca929d3940da01", "index": null, "label": 0}"#,
            "\n\n",
        ),
    )])
}

fn labels_run(dir: &Path, file: &str, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join(file);
    write(&path, bytes)?;
    radit_retriever::feedback::read_label_lines(&path).map_err(|e| e.to_string())?;
    Ok(())
}

fn preferences_seeds(_: &Path) -> Result<Vec<Seed>, String> {
    Ok(vec![text_seed(
        "preferences.jsonl",
        concat!(
            r#"{"prompt": "Who opened Quorble Cafe?", "chosen": "Ada Lint", "rejected": "John"}"#,
            "\n\n",
            r#"{"prompt": "In what year was the Bristeth pump invented?", "chosen": "1893", "rejected": "1900", "extra": [1]}"#,
            "\n",
        ),
    )])
}

fn preferences_run(dir: &Path, file: &str, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join(file);
    write(&path, bytes)?;
    radit_pipeline::dpo::load_preferences(&path).map_err(|e| e.to_string())?;
    Ok(())
}

/// A database with an answer, a judgment with labels and a correction, and a preference.
fn feedback_db_seeds(scratch: &Path) -> Result<Vec<Seed>, String> {
    use radit_feedback::{
        Choice, ChunkLabel, FeedbackDb, Judgment, ModelIdentity, Preference, ShownAnswer,
        ShownChunk, Verdict,
    };
    let path = scratch.join("seed.sqlite");
    {
        let mut db = FeedbackDb::open(&path).map_err(|e| e.to_string())?;
        let shown = |answer: &str| ShownAnswer {
            question: "Who opened Quorble Cafe?".into(),
            answer: answer.into(),
            log_p: Some(-2.5),
            models: ModelIdentity {
                label: "LM-ft".into(),
                generator: "/run/lm_ft/final".into(),
                generator_fingerprint: "1a5202ca7f154ad3".into(),
                query_encoder: Some("/assets/all-MiniLM-L6-v2".into()),
                query_fingerprint: Some("77aa".into()),
                index_identity: Some("0a1b".into()),
                index_dir: Some("/run/index".into()),
            },
            chunks: (0..2)
                .map(|i| ShownChunk {
                    chunk_id: 200 + i,
                    title: "Quorble Cafe".into(),
                    text: format!("Quorble Cafe: opened by Ada Lint ({i})"),
                    text_hash: format!("{i:016x}"),
                    p_r: 0.5,
                    log_p_lm: Some(-1.0 - f64::from(i)),
                    share: Some(0.5),
                })
                .collect(),
        };
        let e = |e: radit_feedback::FeedbackError| e.to_string();
        let a = db.record_answer(&shown("John")).map_err(e)?;
        let b = db.record_answer(&shown("Ada Lint")).map_err(e)?;
        db.record_judgment(&Judgment {
            answer_id: a,
            reviewer: Some("ana".into()),
            verdict: Some(Verdict::Wrong),
            correction: Some("Ada Lint".into()),
            chunks: vec![(0, ChunkLabel::Helpful), (1, ChunkLabel::NotHelpful)],
        })
        .map_err(e)?;
        db.record_preference(&Preference {
            answer_a: a,
            answer_b: b,
            choice: Choice::B,
            reviewer: None,
        })
        .map_err(e)?;
    }
    let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
    // Mutations spread over the whole file: header, schema page and the rows.
    Ok(vec![Seed {
        file: "judgments.sqlite",
        focus: bytes.len(),
        bytes,
        style: Style::Binary,
    }])
}

fn feedback_db_run(dir: &Path, file: &str, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join(file);
    write(&path, bytes)?;
    let e = |e: radit_feedback::FeedbackError| e.to_string();
    let db = radit_feedback::FeedbackDb::open(&path).map_err(e)?;
    db.judgments(None).map_err(e)?;
    db.preferences().map_err(e)?;
    radit_feedback::stats(&db).map_err(e)?;
    radit_feedback::export(&db, &dir.join("export"), true).map_err(e)?;
    Ok(())
}
