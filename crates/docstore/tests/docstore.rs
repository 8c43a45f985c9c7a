//! Integration tests of radit-docstore (one binary on purpose: every test binary links anew).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use radit_docstore::hnsw::Hnsw;
use radit_docstore::{
    build_index, exact_top_k, load_corpus, partial_dir, read_progress, Bm25Params, BoxError,
    BuildOptions, ChunkParams, CorpusFormat, Dense, DocStore, Embedder, EncoderIdentity, Error,
    HashEmbedder, HnswParams, Hybrid, ProgressMode, Queries, Retriever, Scored, SearchMode,
};
use radit_util::rng::SplitMix64;

fn silent() -> BuildOptions {
    BuildOptions {
        progress: ProgressMode::Silent,
        ..BuildOptions::default()
    }
}

fn write(path: &Path, text: &str) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(path, text).unwrap();
}

fn jsonl(docs: &[(&str, &str, &str)]) -> String {
    docs.iter()
        .map(|(id, title, text)| {
            serde_json::json!({"id": id, "title": title, "text": text}).to_string() + "\n"
        })
        .collect()
}

fn words(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("{prefix}{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Deterministic pseudo-random unit vectors keyed by the text (no lexical structure at all).
struct RandomEmbedder {
    dim: usize,
}

fn random_unit(seed: u64, dim: usize) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            let u1 = rng.next_f64_nonzero();
            let u2 = rng.next_f64();
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

impl Embedder for RandomEmbedder {
    fn identity(&self) -> EncoderIdentity {
        EncoderIdentity {
            source: "random".into(),
            weights_hash: "none".into(),
            pooling: "none".into(),
            normalize: true,
            dim: self.dim,
            max_tokens: None,
        }
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError> {
        Ok(texts
            .iter()
            .map(|t| random_unit(xxh(t), self.dim))
            .collect())
    }
}

fn xxh(t: &str) -> u64 {
    t.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn brute_force(m: &[f32], dim: usize, q: &[f32], k: usize) -> Vec<Vec<(u32, f64)>> {
    q.chunks(dim)
        .map(|qv| {
            let mut v: Vec<(u32, f64)> = m
                .chunks(dim)
                .enumerate()
                .map(|(i, r)| {
                    (
                        i as u32,
                        r.iter().zip(qv).map(|(a, b)| *a as f64 * *b as f64).sum(),
                    )
                })
                .collect();
            v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            v.truncate(k);
            v
        })
        .collect()
}

fn assert_matches_reference(got: &[Vec<Scored>], want: &[Vec<(u32, f64)>]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.len(), w.len());
        for (a, b) in g.iter().zip(w) {
            assert!(
                (a.score as f64 - b.1).abs() < 1e-4,
                "score {} vs reference {}",
                a.score,
                b.1
            );
            // Ids agree except across near-ties (f32 summation order differs from f64).
            if a.id != b.0 {
                assert!((a.score as f64 - b.1).abs() < 1e-5);
            }
        }
    }
}

#[test]
fn chunking_boundaries_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.jsonl");
    let long = words("w", 250);
    let mut text = jsonl(&[("a", "Alpha", &long), ("b", "Beta", "short text here")]);
    text.push_str(
        &(serde_json::json!({"id": "c", "title": "Gamma", "text": words("g", 12), "section": "History", "metadata": {"url": "http://x"}, "lang": "en"}).to_string() + "\n"),
    );
    write(&corpus, &text);
    let opts = BuildOptions {
        chunking: ChunkParams {
            max_words: 100,
            overlap: 20,
        },
        batch_size: 3,
        ..silent()
    };
    let out = dir.path().join("idx");
    let enc = HashEmbedder::new(16, 1);
    let report = build_index(&corpus, &out, &enc, &opts).unwrap();
    assert_eq!(report.chunks, 5);
    let store = DocStore::open(&out).unwrap();
    let c: Vec<_> = (0..5).map(|i| store.chunk(i).unwrap()).collect();
    // Document a: windows [0,100), [80,180), [160,250) with 20 words of overlap.
    assert_eq!(
        c[..3]
            .iter()
            .map(|c| (c.word_start, c.word_end))
            .collect::<Vec<_>>(),
        [(0, 100), (80, 180), (160, 250)]
    );
    assert!(c[0].text.starts_with("w0 ") && c[0].text.ends_with(" w99"));
    assert!(c[1].text.starts_with("w80 ") && c[2].text.ends_with(" w249"));
    assert_eq!(c[2].chunk_index, 2);
    // Never across documents: b is its own chunk, with its own title.
    assert_eq!((c[3].doc_id.as_str(), c[3].title.as_str()), ("b", "Beta"));
    assert_eq!(c[3].text, "short text here");
    assert_eq!(c[3].chunk_index, 0);
    // Section and metadata are kept; title and section are prepended for the encoder.
    assert_eq!(c[4].section.as_deref(), Some("History"));
    assert_eq!(c[4].metadata["url"], "http://x");
    assert_eq!(c[4].metadata["lang"], "en");
    assert_eq!(
        c[4].encoder_text(),
        format!("Gamma: History\n{}", words("g", 12))
    );
    assert_eq!(c[0].encoder_text(), format!("Alpha\n{}", c[0].text));
    // The stored embedding is the encoder's embedding of the encoder text.
    assert_eq!(
        store.embedding(4).unwrap(),
        enc.embed_one(&c[4].encoder_text()).as_slice()
    );
    let m = store.manifest();
    assert_eq!(m.counts.documents, 3);
    assert_eq!(m.counts.chunks, 5);
    assert_eq!(m.chunking.overlap, 20);
    assert!(m.embeddings.unit_norm);
}

#[test]
fn text_folder_markdown_sections_and_wiki_json() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("docs");
    write(&root.join("b/notes.txt"), "plain text file about rivers");
    write(
        &root.join("a.md"),
        "# Mountains\n\nIntro words.\n\n## Alps\nalpine text\n\n## Andes\nandean text\n",
    );
    write(&root.join("ignored.bin"), "zzz");
    write(&root.join(".hidden.txt"), "hidden");
    let (docs, rep) = load_corpus(&root, CorpusFormat::Auto).unwrap();
    assert_eq!(rep.files, 2);
    assert_eq!(rep.ignored_files, 1);
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].id, "a.md");
    assert_eq!(docs[0].title, "Mountains");
    let heads: Vec<_> = docs[0].sections.iter().map(|s| s.heading.clone()).collect();
    assert_eq!(heads, [None, Some("Alps".into()), Some("Andes".into())]);
    assert_eq!(docs[1].id, "b/notes.txt");
    assert_eq!(docs[1].title, "notes");

    // Chunks never cross sections.
    let out = dir.path().join("idx");
    build_index(&root, &out, &HashEmbedder::new(8, 0), &silent()).unwrap();
    let store = DocStore::open(&out).unwrap();
    assert_eq!(store.len(), 4);
    assert_eq!(store.chunk(2).unwrap().text, "andean text");
    assert_eq!(
        store.chunk(2).unwrap().encoder_text(),
        "Mountains: Andes\nandean text"
    );

    // The Wikipedia summaries format: title -> {title, extract, description, topic}.
    let wiki = dir.path().join("summaries.json");
    write(
        &wiki,
        r#"{"Zebra": {"title": "Zebra", "extract": "Zebras are striped.", "description": "animal", "topic": "Biology"},
            "Apple": {"title": "Apple", "extract": "An apple is a fruit.", "description": "fruit", "topic": "Biology"},
            "Broken": {"title": "Broken"}}"#,
    );
    let (docs, rep) = load_corpus(&wiki, CorpusFormat::Auto).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].id, "Apple");
    assert_eq!(docs[0].metadata["topic"], "Biology");
    assert_eq!(rep.malformed, 1);
    assert!(rep.issues[0].message.contains("Broken"));

    // The real asset, when present.
    let real = Path::new("/root/.cache/radit/assets/wikipedia-summaries/summaries_en-us.json");
    if real.is_file() {
        let (docs, rep) = load_corpus(real, CorpusFormat::WikiSummaries).unwrap();
        assert!(docs.len() > 10_000, "{rep}");
        assert_eq!(rep.malformed, 0, "{}", rep.summary(5));
    }
}

#[test]
fn malformed_jsonl_lines_are_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("bad.jsonl");
    write(
        &corpus,
        concat!(
            "{\"id\": \"1\", \"title\": \"One\", \"text\": \"first document\"}\n",
            "{\"id\": \"2\", \"title\": \"Two\", \"text\": \n",
            "\n",
            "{\"id\": \"3\", \"title\": \"Three\"}\n",
            "[1, 2]\n",
            "{\"id\": \"4\", \"title\": 5, \"text\": \"x\"}\n",
            "{\"id\": \"1\", \"title\": \"Dup\", \"text\": \"again\"}\n",
            "{\"id\": \"6\", \"text\": \"last document\"}\n",
        ),
    );
    let (docs, rep) = load_corpus(&corpus, CorpusFormat::Auto).unwrap();
    assert_eq!(docs.len(), 3);
    assert_eq!(rep.malformed, 4);
    assert_eq!(rep.duplicate_ids, 1);
    assert_eq!(rep.blank_lines, 1);
    let lines: Vec<Option<usize>> = rep.issues.iter().map(|i| i.line).collect();
    assert_eq!(lines, [Some(2), Some(4), Some(5), Some(6), Some(7)]);
    let shown = rep.issues[1].to_string();
    assert!(shown.contains("bad.jsonl:4:"), "{shown}");
    assert!(shown.contains("missing field \"text\""), "{shown}");
    assert!(rep.issues[4].message.contains("first seen at"));
    let summary = rep.summary(10);
    assert!(summary.contains("4 malformed"), "{summary}");

    // A build reports them (and keeps going) unless strict.
    let out = dir.path().join("idx");
    let r = build_index(&corpus, &out, &HashEmbedder::new(8, 0), &silent()).unwrap();
    assert_eq!(r.ingest.malformed, 4);
    assert_eq!(
        DocStore::open(&out)
            .unwrap()
            .manifest()
            .counts
            .ingest_problems,
        5
    );
    let strict = BuildOptions {
        strict: true,
        ..silent()
    };
    let err = build_index(
        &corpus,
        &dir.path().join("idx2"),
        &HashEmbedder::new(8, 0),
        &strict,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Corpus { .. }));
    assert!(err.to_string().contains("bad.jsonl:2:"), "{err}");
}

#[test]
fn exact_search_equals_brute_force() {
    let dim = 48;
    let n = 3000;
    let m: Vec<f32> = (0..n).flat_map(|i| random_unit(i as u64, dim)).collect();
    for nq in [1, 2, 5, 6, 7, 40] {
        let q: Vec<f32> = (0..nq)
            .flat_map(|i| random_unit(10_000 + i as u64, dim))
            .collect();
        for k in [1, 10, 64] {
            let got = exact_top_k(&m, dim, &q, k).unwrap();
            assert_matches_reference(&got, &brute_force(&m, dim, &q, k));
        }
    }
    // Same through an index, in both f32 and f16 storage, independent of the thread count.
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.jsonl");
    let docs: Vec<(String, String)> = (0..500)
        .map(|i| {
            (
                format!("d{i}"),
                format!("document number {i} {}", words("t", i % 7)),
            )
        })
        .collect();
    let refs: Vec<(&str, &str, &str)> = docs
        .iter()
        .map(|(a, b)| (a.as_str(), "", b.as_str()))
        .collect();
    write(&corpus, &jsonl(&refs));
    let out = dir.path().join("idx");
    let enc = RandomEmbedder { dim: 32 };
    let opts = BuildOptions {
        f16: true,
        ..silent()
    };
    build_index(&corpus, &out, &enc, &opts).unwrap();
    let store = DocStore::open(&out).unwrap();
    let q: Vec<f32> = (0..9).flat_map(|i| random_unit(77 + i, 32)).collect();
    let want = brute_force(store.embeddings(), 32, &q, 10);
    let got = store.search_dense(&q, 10, Dense::Exact).unwrap();
    assert_matches_reference(&got, &want);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let got1 = one.install(|| store.search_dense(&q, 10, Dense::Exact).unwrap());
    assert_eq!(got, got1);
    let got16 = store.search_dense(&q, 10, Dense::ExactF16).unwrap();
    for (a, b) in got16.iter().zip(&want) {
        assert_eq!(a[0].id, b[0].0);
        assert!((a[0].score as f64 - b[0].1).abs() < 2e-3);
    }
    let hits = store
        .search(
            &Queries::embeddings(&q[..32]),
            3,
            &SearchMode::Dense(Dense::Exact),
        )
        .unwrap();
    assert_eq!(hits[0][0].id, want[0][0].0);
    assert_eq!(hits[0][0].chunk, store.chunk(want[0][0].0).unwrap());
    assert!(store.search_dense(&q[..31], 10, Dense::Exact).is_err());
}

#[test]
fn hnsw_recall_on_random_data() {
    let dim = 32;
    let n = 4000;
    let m: Vec<f32> = (0..n).flat_map(|i| random_unit(i as u64, dim)).collect();
    let q: Vec<f32> = (0..200)
        .flat_map(|i| random_unit(90_000 + i as u64, dim))
        .collect();
    let truth = exact_top_k(&m, dim, &q, 10).unwrap();
    let h = Hnsw::build(&m, dim, &HnswParams::default()).unwrap();
    let got = h.search(&m, &q, 10, 64).unwrap();
    let mut hit = 0;
    for (qi, (t, g)) in truth.iter().zip(&got).enumerate() {
        hit += g.iter().filter(|s| t.iter().any(|x| x.id == s.id)).count();
        // Scores are the inner products of the ids returned, best first.
        let qv = &q[qi * dim..(qi + 1) * dim];
        for s in g {
            let r = &m[s.id as usize * dim..(s.id as usize + 1) * dim];
            let d: f32 = r.iter().zip(qv).map(|(a, b)| a * b).sum();
            assert!((d - s.score).abs() < 1e-5);
        }
        assert!(g.windows(2).all(|w| w[0].score >= w[1].score));
    }
    let recall = hit as f64 / (truth.len() * 10) as f64;
    assert!(recall >= 0.9, "recall@10 {recall}");
    // Construction is deterministic whatever the thread count.
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let h1 = one.install(|| Hnsw::build(&m, dim, &HnswParams::default()).unwrap());
    assert_eq!(h1.search(&m, &q, 10, 64).unwrap(), got);

    // Through an index: recall is estimated at build time and recorded.
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.jsonl");
    let docs: Vec<(String, String)> = (0..2000)
        .map(|i| (format!("d{i}"), format!("doc {i}")))
        .collect();
    let refs: Vec<(&str, &str, &str)> = docs
        .iter()
        .map(|(a, b)| (a.as_str(), "", b.as_str()))
        .collect();
    write(&corpus, &jsonl(&refs));
    let out = dir.path().join("idx");
    let opts = BuildOptions {
        hnsw: Some(HnswParams::default()),
        ..silent()
    };
    let rep = build_index(&corpus, &out, &RandomEmbedder { dim }, &opts).unwrap();
    assert!(rep.hnsw_recall_at_10.unwrap() >= 0.9);
    let store = DocStore::open(&out).unwrap();
    let ann = store.manifest().ann.clone().unwrap();
    assert!(ann.recall_at_10 >= 0.95 || ann.ef_search == 1024, "{ann:?}");
    let qq: Vec<f32> = (0..100)
        .flat_map(|i| random_unit(5_000 + i as u64, dim))
        .collect();
    let exact = store.search_dense(&qq, 10, Dense::Exact).unwrap();
    let approx = store.search_dense(&qq, 10, Dense::Auto).unwrap();
    let r: usize = exact
        .iter()
        .zip(&approx)
        .map(|(e, a)| a.iter().filter(|s| e.iter().any(|x| x.id == s.id)).count())
        .sum();
    assert!(
        r as f64 / 1000.0 >= 0.9,
        "index recall {}",
        r as f64 / 1000.0
    );
}

#[test]
fn bm25_ranks_exact_phrase_first_and_hybrid_fuses() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.jsonl");
    write(
        &corpus,
        &jsonl(&[
            (
                "1",
                "Physics",
                "the strong force binds quarks; electromagnetism is another force",
            ),
            (
                "2",
                "Chromodynamics",
                "quantum chromodynamics describes the strong interaction between quarks and gluons",
            ),
            (
                "3",
                "Cooking",
                "a strong coffee and a quantum of patience make a good morning",
            ),
            (
                "4",
                "Gluons",
                "gluons are the exchange particles of the strong interaction",
            ),
            ("5", "Misc", "interaction design for quantum computers"),
        ]),
    );
    let out = dir.path().join("idx");
    let opts = BuildOptions {
        bm25: Some(Bm25Params::default()),
        ..silent()
    };
    let enc = HashEmbedder::new(64, 3);
    build_index(&corpus, &out, &enc, &opts).unwrap();
    let store = DocStore::open(&out).unwrap();
    let q = ["quantum chromodynamics describes the strong interaction"];
    let hits = store
        .search(&Queries::texts(&q), 3, &SearchMode::Bm25)
        .unwrap();
    assert_eq!(hits[0][0].chunk.doc_id, "2");
    assert!(hits[0][0].score > hits[0][1].score);
    assert!(store
        .search(&Queries::texts(&["zzzz qqqq"]), 3, &SearchMode::Bm25)
        .unwrap()[0]
        .is_empty());

    // Through the retriever, in every mode; hybrid needs both sides.
    let r = Retriever::new(&store, &enc).unwrap();
    for mode in ["bm25", "dense", "exact", "hybrid"] {
        let mode: SearchMode = mode.parse().unwrap();
        let hits = r.retrieve(&q, 2, &mode).unwrap();
        assert_eq!(hits[0][0].chunk.doc_id, "2", "{mode:?}");
    }
    let h = Hybrid::default();
    let qe = enc.embed_one(q[0]);
    let fused = store
        .search_ids(&Queries::both(&qe, &q), 5, &SearchMode::Hybrid(h))
        .unwrap();
    assert_eq!(fused[0][0].id, 1);
    assert!((fused[0][0].score - 2.0 / 61.0).abs() < 1e-6);
    assert!(store
        .search_ids(&Queries::texts(&q), 5, &SearchMode::Hybrid(h))
        .is_err());
    assert!(store
        .search_ids(&Queries::both(&qe, &q), 5, &"ann".parse().unwrap())
        .unwrap_err()
        .to_string()
        .contains("no HNSW"));
}

#[test]
fn corrupted_or_truncated_files_and_encoder_mismatch_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.jsonl");
    write(
        &corpus,
        &jsonl(&[("1", "A", "alpha beta"), ("2", "B", "gamma delta")]),
    );
    let out = dir.path().join("idx");
    let enc = HashEmbedder::new(16, 9);
    build_index(&corpus, &out, &enc, &silent()).unwrap();
    assert!(DocStore::open(&out).is_ok());

    // Encoder identity: a different encoder is an error naming both.
    let other = HashEmbedder::new(16, 10).identity();
    let err = DocStore::open_for_encoder(&out, &other).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::EncoderMismatch { .. }));
    assert!(
        msg.contains("seed-0000000000000009") && msg.contains("seed-000000000000000a"),
        "{msg}"
    );
    assert!(DocStore::open_for_encoder(&out, &enc.identity()).is_ok());

    // Flip one byte of the embedding matrix.
    let emb = out.join("embeddings.f32");
    let mut bytes = fs::read(&emb).unwrap();
    bytes[5] ^= 0x40;
    fs::write(&emb, &bytes).unwrap();
    let err = DocStore::open(&out).unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("embeddings.f32"), "{err}");
    // Truncation is caught by size even without hashing.
    bytes.truncate(bytes.len() - 4);
    fs::write(&emb, &bytes).unwrap();
    let opts = radit_docstore::OpenOptions {
        verify_checksums: false,
        expected_encoder: None,
    };
    let err = DocStore::open_with(&out, &opts).unwrap_err();
    assert!(err.to_string().contains("embeddings.f32"), "{err}");
    assert!(err.to_string().contains("size"), "{err}");

    // Rebuilding over an existing index needs overwrite; a non-index folder is never replaced.
    assert!(matches!(
        build_index(&corpus, &out, &enc, &silent()),
        Err(Error::Exists(_))
    ));
    let ow = BuildOptions {
        overwrite: true,
        ..silent()
    };
    build_index(&corpus, &out, &enc, &ow).unwrap();
    assert!(DocStore::open(&out).is_ok());
    let not_index = dir.path().join("home");
    write(&not_index.join("precious.txt"), "keep me");
    assert!(build_index(&corpus, &not_index, &enc, &ow).is_err());
    assert!(not_index.join("precious.txt").exists());
}

fn dir_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn helper() -> Command {
    Command::new(env!("CARGO_BIN_EXE_docstore-build-test-helper"))
}

fn run_helper(corpus: &Path, out: &Path) -> BTreeMap<String, String> {
    let o = helper()
        .arg(corpus)
        .arg(out)
        .args(["--batch-size", "4", "--max-words", "20", "--overlap", "5"])
        .args(["--hnsw", "--bm25", "--f16"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "helper failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn build_killed_with_sigkill_resumes_to_identical_index() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    let mut f = fs::File::create(&corpus).unwrap();
    for i in 0..120 {
        let text = format!(
            "{} topic{} {}",
            words(&format!("d{i}w"), 30 + i % 17),
            i % 9,
            words("shared", 5)
        );
        let rec = serde_json::json!({"id": format!("doc{i}"), "title": format!("Title {i}"), "text": text});
        writeln!(f, "{rec}").unwrap();
    }
    drop(f);

    // Uninterrupted reference build.
    let reference = dir.path().join("reference");
    let r = run_helper(&corpus, &reference);
    let total: usize = r["chunks"].parse().unwrap();
    assert_eq!(r["resumed_from"], "0");
    assert!(total > 200, "{total} chunks");

    // A slow build, SIGKILLed once some batches are durably done.
    let out: PathBuf = dir.path().join("resumed");
    let mut child = helper()
        .arg(&corpus)
        .arg(&out)
        .args(["--batch-size", "4", "--max-words", "20", "--overlap", "5"])
        .args(["--hnsw", "--bm25", "--f16"])
        .env("RADIT_DOCSTORE_TEST_SLEEP_MS", "20")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let killed_at = loop {
        if let Some(p) = read_progress(&out) {
            if p.rows_done >= 40 {
                break p.rows_done;
            }
        }
        assert!(Instant::now() < deadline, "the helper made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the helper exited early"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!((killed_at as usize) < total, "killed too late");

    // Nothing half-written opens as an index; the partial build is there to resume.
    assert!(!out.exists());
    assert!(partial_dir(&out).is_dir());
    fs::create_dir_all(&out).unwrap();
    let err = DocStore::open(&out).unwrap_err().to_string();
    assert!(err.contains("interrupted build"), "{err}");
    fs::remove_dir(&out).unwrap();

    // Resume: finished batches are not recomputed.
    let r = run_helper(&corpus, &out);
    let resumed: usize = r["resumed_from"].parse().unwrap();
    let embedded: usize = r["embedded"].parse().unwrap();
    assert!(
        resumed >= killed_at as usize,
        "resumed from {resumed}, killed at {killed_at}"
    );
    assert_eq!(resumed % 4, 0);
    assert_eq!(resumed + embedded, total);
    assert!(!partial_dir(&out).exists());

    // Byte-for-byte identical to the uninterrupted build.
    let a = dir_files(&reference);
    let b = dir_files(&out);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(bytes == &b[name], "{name} differs");
    }
    assert!(
        a.contains_key("hnsw.bin")
            && a.contains_key("bm25.bin")
            && a.contains_key("embeddings.f16")
    );
    let store = DocStore::open(&out).unwrap();
    assert_eq!(store.len(), total);
}

#[test]
fn a_second_process_fails_fast_naming_the_lock_holder() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = ten_docs(dir.path());
    let out = dir.path().join("idx");
    let mut child = helper()
        .arg(&corpus)
        .arg(&out)
        .args(["--batch-size", "1"])
        .env("RADIT_DOCSTORE_TEST_SLEEP_MS", "2000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Wait until the first build holds the lock and has started (its staging folder exists).
    while !partial_dir(&out).join("chunks.offsets").exists() {
        assert!(Instant::now() < deadline, "the helper made no progress");
        assert!(child.try_wait().unwrap().is_none(), "the helper exited");
        std::thread::sleep(Duration::from_millis(5));
    }
    let t = Instant::now();
    let o = helper()
        .arg(&corpus)
        .arg(&out)
        .args(["--batch-size", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(t.elapsed() < Duration::from_secs(10), "did not fail fast");
    let want = format!(
        "another build holds {} (pid {})",
        radit_docstore::lock_path(&out).display(),
        child.id()
    );
    assert!(stderr.contains(&want), "{stderr}");
    // The loser left the winner's staging folder alone.
    let state = fs::read_to_string(partial_dir(&out).join("build-state.json")).unwrap();
    assert!(!state.contains("\"failed\""), "{state}");

    // A killed holder leaves no stale lock: the next build resumes.
    child.kill().unwrap();
    child.wait().unwrap();
    let o = helper()
        .arg(&corpus)
        .arg(&out)
        .args(["--batch-size", "1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(DocStore::open(&out).is_ok());
}

/// Embeds like `HashEmbedder::new(8, 0)` (same identity), but fails (or panics, standing in for
/// a kill) on batch `fail_at` and later, and sleeps `sleep` per batch.
struct Faulty {
    inner: HashEmbedder,
    fail_at: usize,
    panic: bool,
    sleep: Duration,
    calls: std::sync::atomic::AtomicUsize,
}

impl Faulty {
    fn new(fail_at: usize, panic: bool) -> Faulty {
        Faulty {
            inner: HashEmbedder::new(8, 0),
            fail_at,
            panic,
            sleep: Duration::ZERO,
            calls: Default::default(),
        }
    }
}

impl Embedder for Faulty {
    fn identity(&self) -> EncoderIdentity {
        self.inner.identity()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError> {
        std::thread::sleep(self.sleep);
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if call >= self.fail_at {
            if self.panic {
                panic!("simulated kill");
            }
            return Err("out of memory".into());
        }
        self.inner.embed(texts)
    }
}

/// Writes `docs` (id, title, text) as the JSONL corpus `dir/name`.
fn write_docs(dir: &Path, name: &str, docs: &[(String, String, String)]) -> PathBuf {
    let corpus = dir.join(name);
    let refs: Vec<(&str, &str, &str)> = docs
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    write(&corpus, &jsonl(&refs));
    corpus
}

/// Ten one-chunk documents.
fn ten_docs(dir: &Path) -> PathBuf {
    let docs: Vec<(String, String, String)> = (0..10)
        .map(|i| (i.to_string(), format!("T{i}"), words(&format!("d{i}w"), 6)))
        .collect();
    write_docs(dir, "c.jsonl", &docs)
}

fn batches_of_2() -> BuildOptions {
    BuildOptions {
        batch_size: 2,
        ..silent()
    }
}

#[test]
fn retry_after_a_failed_build_resumes_with_the_same_settings() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = ten_docs(dir.path());
    let out = dir.path().join("idx");
    let err = build_index(&corpus, &out, &Faulty::new(2, false), &batches_of_2()).unwrap_err();
    assert!(matches!(err, Error::Embedder { first: 4, .. }), "{err}");
    assert!(partial_dir(&out).is_dir());
    let r = build_index(&corpus, &out, &HashEmbedder::new(8, 0), &batches_of_2()).unwrap();
    assert_eq!((r.resumed_from, r.embedded, r.chunks), (4, 6, 10));
    assert!(!partial_dir(&out).exists());

    // Byte-for-byte the uninterrupted build.
    let reference = dir.path().join("reference");
    build_index(
        &corpus,
        &reference,
        &HashEmbedder::new(8, 0),
        &batches_of_2(),
    )
    .unwrap();
    assert_eq!(dir_files(&reference), dir_files(&out));
}

#[test]
fn retry_after_a_failed_build_with_other_settings_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = ten_docs(dir.path());
    let out = dir.path().join("idx");
    let err = build_index(&corpus, &out, &Faulty::new(2, false), &batches_of_2()).unwrap_err();
    assert!(err.to_string().contains("out of memory"), "{err}");
    // Another encoder (the fix), then another batch size: the failed attempt is discarded.
    let other = HashEmbedder::new(8, 1);
    let r = build_index(&corpus, &out, &other, &batches_of_2()).unwrap();
    assert_eq!((r.resumed_from, r.embedded), (0, 10));
    assert!(!partial_dir(&out).exists());
    assert!(DocStore::open_for_encoder(&out, &other.identity()).is_ok());

    let out = dir.path().join("idx2");
    build_index(&corpus, &out, &Faulty::new(1, false), &batches_of_2()).unwrap_err();
    let r = build_index(&corpus, &out, &HashEmbedder::new(8, 0), &silent()).unwrap();
    assert_eq!((r.resumed_from, r.embedded), (0, 10));
    assert_eq!(
        DocStore::open(&out)
            .unwrap()
            .manifest()
            .embeddings
            .batch_size,
        64
    );
}

#[test]
fn retry_after_a_bad_corpus_with_the_corrected_corpus_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.jsonl");
    write(
        &corpus,
        "{\"id\": \"1\", \"title\": \"A\", \"text\": \"alpha beta\"}\n{\"id\": \"2\", \n",
    );
    let out = dir.path().join("idx");
    let strict = BuildOptions {
        strict: true,
        ..silent()
    };
    let err = build_index(&corpus, &out, &HashEmbedder::new(8, 0), &strict).unwrap_err();
    assert!(matches!(err, Error::Corpus { .. }), "{err}");
    write(
        &corpus,
        &jsonl(&[("1", "A", "alpha beta"), ("2", "B", "gamma delta")]),
    );
    let r = build_index(&corpus, &out, &HashEmbedder::new(8, 0), &strict).unwrap();
    assert_eq!(r.chunks, 2);

    // A corpus with nothing to index, then a real one.
    let empty = dir.path().join("empty.jsonl");
    write(&empty, &jsonl(&[("1", "A", "")]));
    let out = dir.path().join("idx2");
    let err = build_index(&empty, &out, &HashEmbedder::new(8, 0), &silent()).unwrap_err();
    assert!(err.to_string().contains("no chunks"), "{err}");
    write(&empty, &jsonl(&[("1", "A", "now with text")]));
    assert_eq!(
        build_index(&empty, &out, &HashEmbedder::new(8, 0), &silent())
            .unwrap()
            .chunks,
        1
    );
}

#[test]
fn killed_build_with_embeddings_refuses_other_settings_until_restart() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = ten_docs(dir.path());
    let other = HashEmbedder::new(8, 1);

    // Killed (a panic: nothing records a failure) before any embedding is stored: discarded.
    let out = dir.path().join("idx0");
    let killed = std::panic::catch_unwind(|| {
        build_index(&corpus, &out, &Faulty::new(0, true), &batches_of_2())
    });
    assert!(killed.is_err());
    assert!(partial_dir(&out).is_dir());
    assert_eq!(
        build_index(&corpus, &out, &other, &batches_of_2())
            .unwrap()
            .resumed_from,
        0
    );

    // Killed after two batches: another encoder is refused, naming what would be lost.
    let out = dir.path().join("idx");
    let killed = std::panic::catch_unwind(|| {
        build_index(&corpus, &out, &Faulty::new(2, true), &batches_of_2())
    });
    assert!(killed.is_err());
    let err = build_index(&corpus, &out, &other, &batches_of_2()).unwrap_err();
    assert!(matches!(err, Error::ResumeMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("encoder differs"), "{msg}");
    assert!(msg.contains("embeddings of 4 of 10 chunks"), "{msg}");
    assert!(msg.contains("restart"), "{msg}");
    // `restart` discards it.
    let restart = BuildOptions {
        restart: true,
        ..batches_of_2()
    };
    let r = build_index(&corpus, &out, &other, &restart).unwrap();
    assert_eq!((r.resumed_from, r.embedded), (0, 10));
}

#[test]
fn concurrent_builds_of_one_output_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = ten_docs(dir.path());
    for trial in 0..4 {
        let out = dir.path().join(format!("idx{trial}"));
        let barrier = std::sync::Barrier::new(2);
        let build = || {
            let slow = Faulty {
                sleep: Duration::from_millis(20),
                ..Faulty::new(usize::MAX, false)
            };
            barrier.wait();
            build_index(&corpus, &out, &slow, &batches_of_2())
        };
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(build);
            let b = s.spawn(build);
            (a.join().unwrap(), b.join().unwrap())
        });
        let (won, lost) = match (a, b) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            (a, b) => panic!("trial {trial}: expected exactly one success: {a:?} / {b:?}"),
        };
        assert_eq!(won.chunks, 10);
        match &lost {
            Error::Locked { lock, pid } => {
                assert_eq!(lock, &radit_docstore::lock_path(&out));
                assert!(pid.is_none_or(|p| p == std::process::id()), "{pid:?}");
            }
            other => panic!("trial {trial}: expected the lock error, got {other}"),
        }
        let msg = lost.to_string();
        assert!(msg.contains("another build holds"), "{msg}");
        assert!(msg.contains(&format!("idx{trial}.lock")), "{msg}");
        assert!(DocStore::open(&out).is_ok());
        // The lock is released with the build.
        let again = BuildOptions {
            overwrite: true,
            ..batches_of_2()
        };
        build_index(&corpus, &out, &HashEmbedder::new(8, 0), &again).unwrap();
    }
}

#[test]
fn corrupt_manifest_strings_are_clipped_in_errors() {
    // Found by radit-fuzz: a 60,000-character checksum, format or value came back whole.
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.jsonl");
    write(
        &corpus,
        &jsonl(&[("a", "A", "alpha beta"), ("b", "B", "gamma delta")]),
    );
    let index = dir.path().join("index");
    build_index(&corpus, &index, &HashEmbedder::new(8, 0), &silent()).unwrap();
    let path = index.join("manifest.json");
    let good = fs::read_to_string(&path).unwrap();
    let long = "x".repeat(60_000);
    let value: serde_json::Value = serde_json::from_str(&good).unwrap();
    let mut cases = Vec::new();
    let mut v = value.clone();
    v["format"] = long.clone().into();
    cases.push(v);
    let mut v = value.clone();
    v["files"]["chunks.jsonl"]["xxh3"] = long.clone().into();
    cases.push(v);
    let mut v = value.clone();
    v["counts"]["chunks"] = long.clone().into();
    cases.push(v);
    let mut v = value.clone();
    let entry = v["files"]["chunks.jsonl"].clone();
    v["files"][format!("../{long}")] = entry;
    cases.push(v);
    for v in cases {
        fs::write(&path, v.to_string()).unwrap();
        let e = DocStore::open(&index).unwrap_err().to_string();
        assert!(e.len() < 1000, "{} bytes: {}", e.len(), &e[..200]);
    }
    // A huge HNSW search list size in the manifest is harmless.
    let hnsw = BuildOptions {
        hnsw: Some(HnswParams::default()),
        overwrite: true,
        ..silent()
    };
    build_index(&corpus, &index, &HashEmbedder::new(8, 0), &hnsw).unwrap();
    let mut v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    v["ann"]["ef_search"] = (1u64 << 32).into();
    fs::write(&path, v.to_string()).unwrap();
    let store = DocStore::open(&index).unwrap();
    let q = HashEmbedder::new(8, 0).embed_one("alpha");
    let hits = store
        .search(
            &Queries::embeddings(&q),
            2,
            &SearchMode::Dense(Dense::Ann { ef: None }),
        )
        .unwrap();
    assert_eq!(hits[0].len(), 2);
}

/// Forty documents of 25–60 words: several chunks each at 20 words per chunk.
fn forty_docs(dir: &Path) -> PathBuf {
    let docs: Vec<(String, String, String)> = (0..40)
        .map(|i| {
            let text = format!(
                "{} shared tail words",
                words(&format!("d{i}w"), 25 + i % 36)
            );
            (i.to_string(), format!("T{i}"), text)
        })
        .collect();
    write_docs(dir, "forty.jsonl", &docs)
}

fn shard_options(shard: radit_util::shard::Shard) -> BuildOptions {
    BuildOptions {
        batch_size: 4,
        chunking: ChunkParams {
            max_words: 20,
            overlap: 5,
        },
        f16: true,
        hnsw: Some(HnswParams::default()),
        bm25: Some(Bm25Params::default()),
        shard,
        ..silent()
    }
}

fn shard(index: usize, count: usize) -> radit_util::shard::Shard {
    radit_util::shard::Shard::new(index, count).unwrap()
}

fn quiet_merge() -> radit_docstore::MergeOptions {
    radit_docstore::MergeOptions {
        progress: ProgressMode::Silent,
        ..Default::default()
    }
}

#[test]
fn a_merge_of_shards_is_byte_for_byte_the_single_process_build() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = forty_docs(dir.path());
    let embedder = HashEmbedder::new(16, 3);
    let reference = dir.path().join("single");
    let single = build_index(&corpus, &reference, &embedder, &shard_options(shard(0, 1))).unwrap();
    assert!(single.chunks > 60, "{} chunks", single.chunks);

    for count in [2, 3] {
        let out = dir.path().join(format!("merged-{count}"));
        let mut embedded = 0;
        for i in 0..count {
            let r = build_index(&corpus, &out, &embedder, &shard_options(shard(i, count))).unwrap();
            assert_eq!(r.out, radit_docstore::shard_dir(&out, shard(i, count)));
            embedded += r.embedded;
        }
        assert_eq!(embedded, single.chunks, "every chunk embedded once");
        assert!(!out.exists(), "shards do not make an index");
        let report = radit_docstore::merge_shards(&out, &quiet_merge()).unwrap();
        assert_eq!((report.shards, report.chunks), (count, single.chunks));
        assert_eq!(dir_files(&reference), dir_files(&out), "N = {count}");
        assert!(!radit_docstore::shards_dir(&out).exists());

        let (a, b) = (
            DocStore::open(&reference).unwrap(),
            DocStore::open(&out).unwrap(),
        );
        let q = embedder.embed_one("d7w3 d7w4 shared tail");
        for mode in ["exact", "ann", "bm25", "hybrid"] {
            let mode: SearchMode = mode.parse().unwrap();
            let queries = Queries::both(&q, &["d7w3 d7w4 shared tail"]);
            let (x, y) = (
                a.search(&queries, 10, &mode).unwrap(),
                b.search(&queries, 10, &mode).unwrap(),
            );
            let ids = |h: &[radit_docstore::Hit]| -> Vec<(u32, f32)> {
                h.iter().map(|h| (h.id, h.score)).collect()
            };
            assert_eq!(ids(&x[0]), ids(&y[0]), "{mode:?}");
        }
    }
}

#[test]
fn a_merge_names_missing_unfinished_corrupt_and_mismatched_shards() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = forty_docs(dir.path());
    let embedder = HashEmbedder::new(16, 3);
    let out = dir.path().join("idx");
    let merge = || {
        radit_docstore::merge_shards(&out, &quiet_merge())
            .unwrap_err()
            .to_string()
    };

    let err = merge();
    assert!(
        err.contains("holds no shards") && err.contains("--shard I/N"),
        "{err}"
    );

    build_index(&corpus, &out, &embedder, &shard_options(shard(0, 2))).unwrap();
    let err = merge();
    assert!(err.contains("shard 1/2 not finished"), "{err}");

    // A shard whose encoder fails partway is unfinished, and resumes from its batches.
    let faulty = Faulty {
        inner: HashEmbedder::new(16, 3),
        ..Faulty::new(2, false)
    };
    build_index(&corpus, &out, &faulty, &shard_options(shard(1, 2))).unwrap_err();
    let err = merge();
    assert!(err.contains("unfinished: shard-1-of-2"), "{err}");
    let resumed = build_index(&corpus, &out, &embedder, &shard_options(shard(1, 2))).unwrap();
    assert_eq!(resumed.resumed_from, 8, "two batches of 4 were kept");

    // Another split's shard beside them.
    let stray = build_index(&corpus, &out, &embedder, &shard_options(shard(0, 3))).unwrap();
    let err = merge();
    assert!(
        err.contains("different splits") && err.contains("N = 3"),
        "{err}"
    );
    fs::remove_dir_all(&stray.out).unwrap();

    // A shard built with other settings.
    let other = BuildOptions {
        chunking: ChunkParams {
            max_words: 30,
            overlap: 5,
        },
        overwrite: true,
        ..shard_options(shard(1, 2))
    };
    build_index(&corpus, &out, &embedder, &other).unwrap();
    let err = merge();
    assert!(
        err.contains("shard-1-of-2 was built with other settings"),
        "{err}"
    );
    let fixed = BuildOptions {
        overwrite: true,
        ..shard_options(shard(1, 2))
    };
    build_index(&corpus, &out, &embedder, &fixed).unwrap();

    // A corrupted embedding: detected by checksum, the shards are left as they are.
    let matrix = radit_docstore::shard_dir(&out, shard(1, 2)).join("embeddings.f32");
    let mut bytes = fs::read(&matrix).unwrap();
    bytes[17] ^= 0x40;
    fs::write(&matrix, &bytes).unwrap();
    let err = merge();
    assert!(
        err.contains("is corrupt") && err.contains("rebuild this shard"),
        "{err}"
    );
    assert!(!out.exists());
    bytes[17] ^= 0x40;
    fs::write(&matrix, &bytes).unwrap();

    radit_docstore::merge_shards(&out, &quiet_merge()).unwrap();
    let reference = dir.path().join("single");
    build_index(&corpus, &reference, &embedder, &shard_options(shard(0, 1))).unwrap();
    assert_eq!(dir_files(&reference), dir_files(&out));
    // A second merge into the finished index needs overwrite.
    build_index(&corpus, &out, &embedder, &shard_options(shard(0, 1))).unwrap_err();
}
