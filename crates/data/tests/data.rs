//! End-to-end tests of radit-data with a character-level fake tokenizer: every char is its
//! own token, so token sequences decode back to the exact prompt text.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use radit_data::*;

const BOS: u32 = 0x11_0000;
const EOS: u32 = 0x11_0001;
const PAD: u32 = 0x11_0002;

struct CharTok {
    bos: bool,
}

impl Tokenize for CharTok {
    fn encode(&self, text: &str) -> Result<Vec<u32>, BoxError> {
        if text.contains('\u{7}') {
            return Err("bell character refused".into());
        }
        Ok(text.chars().map(u32::from).collect())
    }
    fn bos_id(&self) -> Option<u32> {
        self.bos.then_some(BOS)
    }
    fn eos_id(&self) -> Option<u32> {
        Some(EOS)
    }
}

fn decode(ids: &[u32]) -> String {
    ids.iter()
        .map(|&i| match i {
            BOS => "<s>".to_string(),
            EOS => "</s>".to_string(),
            PAD => "<pad>".to_string(),
            c => char::from_u32(c).map(String::from).unwrap_or_default(),
        })
        .collect()
}

fn write_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(content.as_bytes()).unwrap();
    path
}

fn example(q: &str, a: &str) -> Example {
    Example {
        id: q.into(),
        question: q.into(),
        answers: vec![a.into()],
        context: None,
        choices: Vec::new(),
    }
}

fn key(example: usize) -> ExampleKey {
    ExampleKey {
        dataset: 0,
        example,
    }
}

fn builder(max_len: usize, add_bos: bool, seed: u64) -> InstanceBuilder<CharTok> {
    InstanceBuilder::new(
        CharTok { bos: add_bos },
        InstanceConfig {
            max_len,
            add_bos,
            seed,
        },
    )
    .unwrap()
}

// ---------------------------------------------------------------- datasets

#[test]
fn jsonl_with_configured_fields_and_reported_skips() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "rc.jsonl",
        concat!(
            r#"{"qid": 7, "instruction": "Who?", "output": ["Ann", "Anne"], "passage": "Ann did it."}"#,
            "\n\n",
            r#"{"qid": "b", "instruction": "What?", "output": "thing"}"#,
            "\n",
            r#"{"qid": "c", "instruction": "Missing answer"}"#,
            "\n",
            "not json\n",
            r#"{"qid": "d", "instruction": "Empty list", "output": []}"#,
            "\n",
            r#"{"instruction": "No id", "output": {"text": ["x"]}}"#,
            "\n",
        ),
    );
    let fields = JsonlFields {
        question: "instruction".into(),
        answers: "output".into(),
        id: Some("qid".into()),
        context: Some("passage".into()),
        choices: None,
    };
    let ds = load_jsonl(&path, &fields).unwrap();
    assert_eq!(ds.name, "rc");
    assert_eq!(ds.len(), 3);
    assert_eq!(ds.examples[0].id, "7");
    assert_eq!(ds.examples[0].answers, vec!["Ann", "Anne"]);
    assert_eq!(ds.examples[0].target(), Some("Ann"));
    assert_eq!(ds.examples[0].context.as_deref(), Some("Ann did it."));
    assert_eq!(ds.examples[1].answers, vec!["thing"]);
    assert_eq!(ds.examples[1].context, None);
    assert_eq!(ds.examples[2].id, "rc:7");
    let r = &ds.report;
    assert_eq!((r.lines, r.loaded, r.skipped.len()), (6, 3, 3));
    let lines: Vec<usize> = r.skipped.iter().map(|s| s.line).collect();
    assert_eq!(lines, vec![4, 5, 6]);
    let msg = r.skipped[0].to_string();
    assert!(msg.contains("rc.jsonl:4:"), "{msg}");
    assert!(msg.contains("missing field `output`"), "{msg}");
    assert!(r.skipped[1].reason.contains("invalid JSON"));
    assert!(r.skipped[2].reason.contains("no non-empty answer"));
}

/// The report names file:line and the reason of each skipped line (the first
/// `REPORT_LIST_LIMIT`, then a count), which is what the CLI prints.
#[test]
fn report_lists_skipped_lines_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("{\"question\": \"q\", \"answers\": \"a\"}\n");
    for i in 0..13 {
        text.push_str(&format!("bad line {i}\n"));
    }
    text.push_str("{\"question\": \"q2\"}\n");
    let path = write_file(dir.path(), "many.jsonl", &text);
    let ds = load_dataset(&path, None).unwrap();
    assert_eq!((ds.report.loaded, ds.report.skipped.len()), (1, 14));
    assert!(ds.report.has_warnings());
    let shown = ds.report.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert!(
        lines[0].ends_with("many.jsonl: 1 example(s) loaded, 14 malformed line(s) skipped"),
        "{shown}"
    );
    assert_eq!(lines.len(), 1 + REPORT_LIST_LIMIT + 1, "{shown}");
    assert!(
        lines[1].contains("many.jsonl:2: invalid JSON: expected value"),
        "{shown}"
    );
    assert!(lines[10].contains("many.jsonl:11: invalid JSON"), "{shown}");
    assert_eq!(lines[11], "  ... and 4 more malformed line(s)", "{shown}");
    // A clean file has nothing to warn about.
    let clean = write_file(
        dir.path(),
        "ok.jsonl",
        "{\"question\": \"q\", \"answers\": \"a\"}\n",
    );
    let ds = load_dataset(&clean, None).unwrap();
    assert!(!ds.report.has_warnings());
    assert_eq!(ds.report.to_string().lines().count(), 1);
}

/// A UTF-8 byte-order mark must not cost the first example (it used to make line 1
/// invalid JSON, and glue itself to the first TSV question).
#[test]
fn utf8_bom_does_not_cost_the_first_example() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = write_file(
        dir.path(),
        "bom.jsonl",
        "\u{feff}{\"question\": \"first?\", \"answers\": [\"a\"]}\n{\"question\": \"second?\", \"answers\": \"b\"}\n",
    );
    let ds = load_dataset(&jsonl, None).unwrap();
    assert_eq!(ds.len(), 2, "{}", ds.report);
    assert!(ds.report.skipped.is_empty(), "{}", ds.report);
    assert_eq!(ds.examples[0].question, "first?");
    let tsv = write_file(
        dir.path(),
        "bom.tsv",
        "\u{feff}who wrote hamlet\t['Shakespeare']\nsecond\t['b']\n",
    );
    let ds = load_dataset(&tsv, None).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.examples[0].question, "who wrote hamlet");
    // Only a leading mark is dropped: one inside the text stays.
    let mid = write_file(dir.path(), "mid.tsv", "a\u{feff}b\t['x']\n");
    assert_eq!(
        load_dataset(&mid, None).unwrap().examples[0].question,
        "a\u{feff}b"
    );
}

/// Duplicates (same id, or same question and answers) are kept but reported with their lines.
#[test]
fn duplicates_are_kept_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "dups.jsonl",
        concat!(
            r#"{"id": "x", "question": "Who?", "answers": ["Ann"]}"#,
            "\n",
            r#"{"id": "y", "question": "What?", "answers": "thing"}"#,
            "\n",
            r#"{"id": "x", "question": "Where?", "answers": "here"}"#,
            "\n",
            r#"{"question": "Who?", "answers": ["Ann"]}"#,
            "\n",
            r#"{"question": "Who?", "answers": ["Anne"]}"#,
            "\n",
        ),
    );
    let ds = load_dataset(&path, None).unwrap();
    assert_eq!(ds.len(), 5, "duplicates are kept");
    let d = &ds.report.duplicates;
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(
        (d[0].kind, d[0].key.as_str(), d[0].lines.as_slice()),
        (DuplicateKind::Id, "x", [1, 3].as_slice())
    );
    assert_eq!(
        (d[1].kind, d[1].key.as_str(), d[1].lines.as_slice()),
        (DuplicateKind::QuestionAndAnswers, "Who?", [1, 4].as_slice())
    );
    assert!(ds.report.has_warnings() && ds.report.skipped.is_empty());
    let shown = ds.report.to_string();
    assert!(
        shown.contains("2 group(s) of duplicate records (kept)")
            && shown.contains("dups.jsonl: duplicate id \"x\" on lines 1, 3")
            && shown.contains("duplicate question and answers \"Who?\" on lines 1, 4"),
        "{shown}"
    );
    // TSV ids come from line numbers: only content duplicates exist there.
    let tsv = write_file(dir.path(), "d.tsv", "q\t['a']\nq\t['a']\nq\t['b']\n");
    let ds = load_dataset(&tsv, None).unwrap();
    assert_eq!(ds.len(), 3);
    assert_eq!(ds.report.duplicates.len(), 1);
    assert_eq!(ds.report.duplicates[0].lines, vec![1, 2]);
}

#[test]
fn empty_dataset_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write_file(dir.path(), "empty.jsonl", "\n\n");
    let err = load_dataset(&empty, None).unwrap_err();
    assert!(
        matches!(err, DataError::EmptyDataset { skipped: 0, .. }),
        "{err}"
    );
    let bad = write_file(dir.path(), "bad.jsonl", "{\"question\": \"q\"}\n");
    let err = load_dataset(&bad, None).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("empty dataset") && msg.contains("line 1"),
        "{msg}"
    );
    let unknown = write_file(dir.path(), "x.csv", "a,b\n");
    assert!(matches!(
        load_dataset(&unknown, None),
        Err(DataError::UnknownFormat { .. })
    ));
    assert!(matches!(
        load_dataset(&dir.path().join("missing.jsonl"), None),
        Err(DataError::Io { .. })
    ));
}

#[test]
fn dpr_tsv_parses_tolerantly() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "topics.txt",
        concat!(
            "who wrote hamlet\t['William Shakespeare', 'Shakespeare']\n",
            "what's the \"big apple\"\t[\"New York\", 'NYC']\n",
            "\"which film has \"\"Rosebud\"\"?\"\t\"['Citizen Kane', '\"\"Kane\"\"']\"\n",
            "no tab here\n",
            "broken list\t['a', \n",
            "empty answers\t[]\n",
            "escaped\t['O\\'Neil', 'caf\\xe9']\n",
        ),
    );
    let ds = load_dataset(&path, None).unwrap();
    assert_eq!(ds.len(), 4);
    assert_eq!(
        ds.examples[0].answers,
        vec!["William Shakespeare", "Shakespeare"]
    );
    assert_eq!(ds.examples[1].question, "what's the \"big apple\"");
    assert_eq!(ds.examples[2].question, "which film has \"Rosebud\"?");
    assert_eq!(ds.examples[2].answers, vec!["Citizen Kane", "\"Kane\""]);
    assert_eq!(ds.examples[3].answers, vec!["O'Neil", "café"]);
    assert_eq!(ds.examples[0].id, "topics:1");
    let lines: Vec<usize> = ds.report.skipped.iter().map(|s| s.line).collect();
    assert_eq!(lines, vec![4, 5, 6]);
}

#[test]
fn synthetic_dataset_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/synthetic");
    let train = load_dataset(&root.join("train.jsonl"), None).unwrap();
    let dev = load_dataset(&root.join("dev.jsonl"), None).unwrap();
    assert_eq!((train.len(), dev.len()), (600, 150));
    assert!(train.report.skipped.is_empty() && dev.report.skipped.is_empty());
    let train_q: std::collections::HashSet<_> =
        train.examples.iter().map(|e| &e.question).collect();
    assert!(dev.examples.iter().all(|e| !train_q.contains(&e.question)));
}

#[test]
fn holdout_split_is_deterministic_and_disjoint() {
    let examples: Vec<Example> = (0..50).map(|i| example(&format!("q{i}"), "a")).collect();
    let ds = Dataset {
        name: "d".into(),
        examples,
        report: LoadReport::default(),
    };
    let (rest, held) = ds.clone().split_holdout(10, 3);
    let (rest2, held2) = ds.split_holdout(10, 3);
    assert_eq!((rest.len(), held.len()), (40, 10));
    assert_eq!((&rest, &held), (&rest2, &held2));
    assert!(held.examples.iter().all(|h| !rest.examples.contains(h)));
}

// ---------------------------------------------------------------- instances

#[test]
fn instances_follow_the_radit_prompt_with_answer_only_mask() {
    let b = builder(512, true, 11);
    let ex = example("Who built the tower?", "Ann Lee");
    let mut report = BuildReport::default();
    let chunks = ["Chunk one.", "Chunk two.", "Chunk three."];
    let insts = b.instances(key(5), &ex, &chunks, &mut report).unwrap();
    assert_eq!(insts.len(), 3);
    assert_eq!(
        (report.examples, report.instances, report.truncated),
        (1, 3, 0)
    );
    let m = markers(11, key(5));
    for (j, inst) in insts.iter().enumerate() {
        assert_eq!(inst.chunk, Some(j));
        let text = decode(&inst.ids);
        assert_eq!(
            text,
            format!(
                "<s>Background: {}\n\n{}Who built the tower?\n{}Ann Lee</s>",
                chunks[j], m.instruction, m.answer
            )
        );
        // The mask covers exactly " Ann Lee" and EOS (the marker's space starts the answer).
        let answer: Vec<u32> = inst
            .ids
            .iter()
            .zip(&inst.answer_mask)
            .filter(|(_, &m)| m == 1)
            .map(|(&t, _)| t)
            .collect();
        assert_eq!(decode(&answer), " Ann Lee</s>");
        assert_eq!(inst.answer_mask.len(), inst.ids.len());
        assert!(inst.answer_mask[..inst.prompt_len].iter().all(|&m| m == 0));
    }
}

#[test]
fn gold_context_replaces_chunks_and_bos_is_optional() {
    let b = builder(512, false, 0);
    let mut ex = example("Q?", "yes");
    ex.context = Some("Gold passage.".into());
    let mut report = BuildReport::default();
    let insts = b
        .instances(key(0), &ex, &["retrieved"], &mut report)
        .unwrap();
    assert_eq!(insts.len(), 1);
    assert_eq!(insts[0].chunk, None);
    let text = decode(&insts[0].ids);
    assert!(text.starts_with("Background: Gold passage.\n\n"), "{text}");
    assert!(!text.contains("<s>"));
    // No chunks and no context: closed-book instance.
    let insts = b
        .instances(key(1), &example("Q?", "yes"), &[] as &[&str], &mut report)
        .unwrap();
    assert!(!decode(&insts[0].ids).contains("Background"));
}

#[test]
fn markers_vary_per_example_and_repeat_per_seed() {
    let b = builder(512, false, 42);
    let ex = example("Q?", "a");
    let mut seen = std::collections::HashSet::new();
    for e in 0..40 {
        let mut r = BuildReport::default();
        let x = b.instances(key(e), &ex, &["c"], &mut r).unwrap();
        let y = b.instances(key(e), &ex, &["c"], &mut r).unwrap();
        assert_eq!(x, y);
        let text = decode(&x[0].ids);
        let q = if text.contains("Question: ") {
            "Question"
        } else {
            "Q"
        };
        let a = if text.contains("Answer: ") {
            "Answer"
        } else {
            "A"
        };
        seen.insert((q, a));
    }
    assert_eq!(seen.len(), 4);
}

#[test]
fn long_background_is_truncated_never_the_answer() {
    let long_chunk = "x".repeat(500);
    let ex = example("Why?", "because");
    let b = builder(100, true, 1);
    let mut report = BuildReport::default();
    let insts = b
        .instances(key(0), &ex, &[long_chunk.as_str(), "short"], &mut report)
        .unwrap();
    assert_eq!(insts.len(), 2);
    let inst = &insts[0];
    assert_eq!(inst.len(), 100);
    let text = decode(&inst.ids);
    assert!(text.starts_with("<s>Background: xxx"), "{text}");
    assert!(text.ends_with("Why?\nA: because</s>") || text.ends_with("Why?\nAnswer: because</s>"));
    assert!(inst.background_tokens_dropped > 0);
    let kept = text.matches('x').count();
    // The chunk segment is " xxx…": its leading space is kept with the first x's.
    assert_eq!(1 + kept + inst.background_tokens_dropped, 1 + 500);
    assert_eq!(report.truncated, 1);
    assert_eq!(report.truncated_tokens, inst.background_tokens_dropped);
    assert_eq!(insts[1].background_tokens_dropped, 0);
}

#[test]
fn background_dropped_or_instance_skipped_when_nothing_fits() {
    let ex = example("Why?", "because");
    // Instruction + answer fit, but not even "Background:" and the separator.
    let b = builder(30, false, 1);
    let mut report = BuildReport::default();
    let insts = b
        .instances(key(0), &ex, &["some chunk"], &mut report)
        .unwrap();
    assert_eq!(insts.len(), 1);
    assert!(!decode(&insts[0].ids).contains("Background"));
    assert_eq!(insts[0].background_tokens_dropped, " some chunk".len());
    assert_eq!(report.truncated, 1);
    // Question too long for any background: reported skip, not an error.
    let b = builder(20, false, 1);
    let mut report = BuildReport::default();
    let long_q = example(&"y".repeat(40), "z");
    let insts = b
        .instances(key(0), &long_q, &["a", "b"], &mut report)
        .unwrap();
    assert!(insts.is_empty());
    assert_eq!(report.skipped.len(), 2);
    assert!(report.skipped[0].to_string().contains("exceed max_len 20"));
    assert!(report.to_string().contains("2 skipped"));
}

#[test]
fn tokenizer_errors_surface() {
    let b = builder(100, false, 0);
    let mut r = BuildReport::default();
    let err = b
        .instances(key(0), &example("bad \u{7}", "a"), &["c"], &mut r)
        .unwrap_err();
    assert!(matches!(err, DataError::Tokenizer(_)));
    assert!(InstanceBuilder::new(
        CharTok { bos: false },
        InstanceConfig {
            max_len: 0,
            add_bos: false,
            seed: 0
        }
    )
    .is_err());
}

#[test]
fn chat_template_hook() {
    let chat: Arc<dyn ChatRender> = Arc::new(|u: &str| -> Result<String, BoxError> {
        Ok(format!("<|user|>\n{u}<|end|>\n<|assistant|>\n"))
    });
    let b = builder(90, false, 3).with_style(PromptStyle::Chat(chat));
    let mut r = BuildReport::default();
    let ex = example("Who?", "Bo");
    let insts = b
        .instances(key(0), &ex, &["c".repeat(100)], &mut r)
        .unwrap();
    let text = decode(&insts[0].ids);
    assert_eq!(insts[0].len(), 90);
    assert!(text.starts_with("<|user|>\nBackground: ccc"), "{text}");
    assert!(text.contains("Who?\n<|end|>\n<|assistant|>\nA"), "{text}");
    assert!(text.ends_with(": Bo</s>"), "{text}");
    assert_eq!(r.truncated, 1);
}

#[test]
fn eval_prompt_reserves_room() {
    let b = builder(64, false, 0);
    let p = b
        .prompt(key(0), "Who?", Some(&"w".repeat(200)), 16)
        .unwrap()
        .unwrap();
    assert_eq!(p.ids.len(), 48);
    let text = decode(&p.ids);
    assert!(
        text.ends_with("Who?\nA:") || text.ends_with("Who?\nAnswer:"),
        "{text}"
    );
    assert!(b.prompt(key(0), "Who?", None, 64).unwrap().is_none());
}

// ---------------------------------------------------------------- batches

fn sample_instances() -> Vec<Instance> {
    let b = builder(64, true, 9);
    let mut r = BuildReport::default();
    let mut out = Vec::new();
    for e in 0..6 {
        let ex = example(&format!("q{e}"), &"a".repeat(e + 1));
        out.extend(
            b.instances(key(e), &ex, &[format!("chunk {e}")], &mut r)
                .unwrap(),
        );
    }
    out
}

#[test]
fn padded_batch_layout() {
    let insts = sample_instances();
    let batch = pad_batch(&insts, &[0, 5, 2], PAD, None).unwrap();
    let longest = [0, 5, 2].iter().map(|&i| insts[i].len()).max().unwrap();
    assert_eq!((batch.rows, batch.seq_len), (3, longest));
    for (r, &i) in [0usize, 5, 2].iter().enumerate() {
        let row = r * batch.seq_len..(r + 1) * batch.seq_len;
        let n = insts[i].len();
        assert_eq!(
            &batch.ids[row.start..row.start + n],
            insts[i].ids.as_slice()
        );
        assert!(batch.ids[row.start + n..row.end].iter().all(|&t| t == PAD));
        assert_eq!(
            batch.mask[row.clone()].iter().filter(|&&m| m == 1).count(),
            n
        );
        assert_eq!(
            &batch.answer_mask[row.start..row.start + n],
            insts[i].answer_mask.as_slice()
        );
        assert!(batch.segment_ids[row.start..row.start + n]
            .iter()
            .all(|&s| s == 1));
        assert!(batch.segment_ids[row.start + n..row.end]
            .iter()
            .all(|&s| s == 0));
        assert_eq!(batch.positions[row.start + n - 1], n as u32 - 1);
    }
    assert_eq!(batch.row_instances, vec![vec![0], vec![5], vec![2]]);
    assert!(matches!(
        pad_batch(&insts, &[0], PAD, Some(3)),
        Err(DataError::InstanceTooLong { .. })
    ));
    assert!(matches!(
        pad_batch(&insts, &[99], PAD, None),
        Err(DataError::IndexOutOfRange { .. })
    ));
}

#[test]
fn packed_batch_keeps_segments_apart() {
    let insts = sample_instances();
    let max_len = 128;
    let order = [3, 1, 4, 0, 5, 2];
    let batch = packed_batch(&insts, &order, max_len, PAD).unwrap();
    assert_eq!(batch.seq_len, max_len);
    assert!(batch.rows < order.len(), "packing must save rows");
    let flat: Vec<usize> = batch.row_instances.iter().flatten().copied().collect();
    assert_eq!(flat, order);
    for (r, row) in batch.row_instances.iter().enumerate() {
        let mut at = r * max_len;
        for (s, &i) in row.iter().enumerate() {
            let n = insts[i].len();
            assert_eq!(&batch.ids[at..at + n], insts[i].ids.as_slice());
            assert_eq!(
                &batch.answer_mask[at..at + n],
                insts[i].answer_mask.as_slice()
            );
            assert!(batch.segment_ids[at..at + n]
                .iter()
                .all(|&x| x == s as u32 + 1));
            let pos: Vec<u32> = (0..n as u32).collect();
            assert_eq!(&batch.positions[at..at + n], pos.as_slice());
            at += n;
        }
        assert!(at <= (r + 1) * max_len);
        assert!(batch.mask[at..(r + 1) * max_len].iter().all(|&m| m == 0));
    }
    assert_eq!(
        batch.target_tokens(),
        insts
            .iter()
            .map(|i| i.answer_mask.iter().filter(|&&m| m == 1).count())
            .sum::<usize>()
    );
    assert_eq!(
        pack_rows(&[3, 3, 5, 1, 9], 6),
        vec![vec![0, 1], vec![2, 3], vec![4]]
    );
}

// ---------------------------------------------------------------- mixture and sampler

/// Fake instance list: dataset d has sizes[d] examples with k instances each.
fn grouped(sizes: &[usize], k: usize) -> Vec<Instance> {
    let mut out = Vec::new();
    for (d, &n) in sizes.iter().enumerate() {
        for e in 0..n {
            for c in 0..k {
                out.push(Instance {
                    key: ExampleKey {
                        dataset: d,
                        example: e,
                    },
                    chunk: Some(c),
                    ids: vec![1, 2],
                    answer_mask: vec![0, 1],
                    prompt_len: 1,
                    background_tokens_dropped: 0,
                });
            }
        }
    }
    out
}

#[test]
fn mixture_caps_large_datasets_per_epoch() {
    let sel0 = mixture_selection(&[10, 100, 30], Some(30), 5, 0);
    let sel1 = mixture_selection(&[10, 100, 30], Some(30), 5, 1);
    assert_eq!(
        sel0.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![10, 30, 30]
    );
    assert_eq!(sel0[0], (0..10).collect::<Vec<_>>());
    assert_eq!(sel0[2], (0..30).collect::<Vec<_>>());
    assert_ne!(sel0[1], sel1[1], "the capped subset changes with the epoch");
    assert_eq!(sel0, mixture_selection(&[10, 100, 30], Some(30), 5, 0));
    let mut uniq = sel0[1].clone();
    uniq.dedup();
    assert_eq!(uniq.len(), 30);

    let insts = grouped(&[10, 100], 3);
    let s = Sampler::from_instances(
        &insts,
        SamplerConfig {
            batch_size: 8,
            seed: 5,
            cap: Some(20),
            drop_last: false,
        },
    )
    .unwrap();
    let order = s.epoch_order(0);
    assert_eq!(order.len(), (10 + 20) * 3);
    let from_big = order.iter().filter(|&&i| insts[i].key.dataset == 1).count();
    assert_eq!(from_big, 60);
}

#[test]
fn epochs_cover_every_instance_once_in_shuffled_order() {
    let insts = grouped(&[7, 5], 2);
    let mut s = Sampler::from_instances(
        &insts,
        SamplerConfig {
            batch_size: 5,
            seed: 1,
            cap: None,
            drop_last: false,
        },
    )
    .unwrap();
    assert_eq!(s.batches_in_epoch(0), 5);
    let mut seen = Vec::new();
    for _ in 0..5 {
        let b = s.next_batch();
        assert_eq!(b.epoch, 0);
        seen.extend(b.indices);
    }
    assert_ne!(seen, (0..24).collect::<Vec<_>>(), "order is shuffled");
    seen.sort_unstable();
    assert_eq!(seen, (0..24).collect::<Vec<_>>());
    let next = s.next_batch();
    assert_eq!((next.epoch, next.indices.len()), (1, 5));
    assert_ne!(s.epoch_order(0), s.epoch_order(1));
}

#[test]
fn drop_last_skips_the_partial_batch() {
    let insts = grouped(&[11], 1);
    let mut s = Sampler::from_instances(
        &insts,
        SamplerConfig {
            batch_size: 4,
            seed: 2,
            cap: None,
            drop_last: true,
        },
    )
    .unwrap();
    assert_eq!(s.batches_in_epoch(0), 2);
    let sizes: Vec<(u64, usize)> = (0..5)
        .map(|_| {
            let b = s.next_batch();
            (b.epoch, b.indices.len())
        })
        .collect();
    assert_eq!(sizes, vec![(0, 4), (0, 4), (1, 4), (1, 4), (2, 4)]);
}

#[test]
fn restored_sampler_continues_with_the_same_batches() {
    let insts = grouped(&[13, 40], 3);
    let config = SamplerConfig {
        batch_size: 7,
        seed: 1234,
        cap: Some(25),
        drop_last: false,
    };
    let mut full = Sampler::from_instances(&insts, config.clone()).unwrap();
    let reference: Vec<SampledBatch> = (0..60).map(|_| full.next_batch()).collect();
    // Interrupt at several points, including epoch boundaries (114 instances = 17 batches).
    for stop in [0usize, 1, 16, 17, 18, 33, 59] {
        let mut first = Sampler::from_instances(&insts, config.clone()).unwrap();
        for b in reference.iter().take(stop) {
            assert_eq!(&first.next_batch(), b);
        }
        let saved = serde_json::to_string(&first.state()).unwrap();
        drop(first);
        let state: SamplerState = serde_json::from_str(&saved).unwrap();
        let mut resumed = Sampler::from_instances(&insts, config.clone()).unwrap();
        resumed.restore(state).unwrap();
        for b in reference.iter().skip(stop) {
            assert_eq!(&resumed.next_batch(), b, "stop at {stop}");
        }
    }
    let mut s = Sampler::from_instances(&insts, config).unwrap();
    assert!(matches!(
        s.restore(SamplerState {
            epoch: 0,
            cursor: 10_000
        }),
        Err(DataError::BadSamplerState { .. })
    ));
}

#[test]
fn sampler_rejects_bad_configs() {
    let insts = grouped(&[3], 1);
    let cfg = |batch_size, cap| SamplerConfig {
        batch_size,
        seed: 0,
        cap,
        drop_last: false,
    };
    assert!(Sampler::from_instances(&insts, cfg(0, None)).is_err());
    assert!(Sampler::from_instances(&insts, cfg(2, Some(0))).is_err());
    assert!(Sampler::from_instances(&[], cfg(2, None)).is_err());
}

// ---------------------------------------------------------------- end to end

#[test]
fn synthetic_file_to_batches() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/synthetic");
    let train = load_dataset(&root.join("train.jsonl"), None).unwrap();
    let b = builder(128, true, 7);
    let mut report = BuildReport::default();
    let mut instances = Vec::new();
    for (e, ex) in train.examples.iter().enumerate().take(50) {
        // Stand-in for retrieval: two fixed chunks per example.
        let chunks = [
            format!("Doc about {}.", ex.question),
            "Unrelated text.".to_string(),
        ];
        instances.extend(b.instances(key(e), ex, &chunks, &mut report).unwrap());
    }
    assert_eq!(report.instances, 100);
    assert!(report.skipped.is_empty());
    let mut sampler = Sampler::from_instances(
        &instances,
        SamplerConfig {
            batch_size: 8,
            seed: 7,
            cap: Some(7_500),
            drop_last: true,
        },
    )
    .unwrap();
    let step = sampler.next_batch();
    let batch = packed_batch(&instances, &step.indices, 128, PAD).unwrap();
    assert_eq!(batch.row_instances.iter().flatten().count(), 8);
    assert!(batch.target_tokens() > 0);
    assert_eq!(batch.ids.len(), batch.rows * 128);
}

#[test]
fn whole_dataset_with_a_retrieval_callback() {
    let mut with_ctx = example("Read it?", "yes");
    with_ctx.context = Some("Gold.".into());
    let ds = Dataset {
        name: "d".into(),
        examples: vec![example("Q1?", "a"), with_ctx, example("Q3?", "c")],
        report: LoadReport::default(),
    };
    let b = builder(256, false, 0);
    let mut calls = 0;
    let mut report = BuildReport::default();
    let insts = b
        .instances_for_dataset(
            2,
            &ds,
            |ex| {
                calls += 1;
                Ok(vec![format!("about {}", ex.question); 3])
            },
            &mut report,
        )
        .unwrap();
    assert_eq!(calls, 2);
    assert_eq!(insts.len(), 3 + 1 + 3);
    assert!(insts.iter().all(|i| i.key.dataset == 2));
    assert_eq!(insts[3].key.example, 1);
    let err = b
        .instances_for_dataset(0, &ds, |_| Err("index missing".into()), &mut report)
        .unwrap_err();
    assert!(
        err.to_string().contains("retrieval failed for example Q1?"),
        "{err}"
    );
}

// ---------------------------------------------------------------- real QA files

/// The asset directory: `$RADIT_ASSETS`, else `$HOME/.cache/radit/assets`.
fn assets_root() -> PathBuf {
    std::env::var_os("RADIT_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/radit/assets")
        })
}

/// Non-blank lines of a file, counted independently of the loader.
fn non_blank_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// The bundled NQ and TriviaQA dev sets (DPR TSV, from `scripts/fetch-assets.sh`) load in full:
/// every line parses, including TriviaQA's CSV-quoted lines (doubled quotes, sometimes quoted
/// twice), and no question or answer keeps CSV quoting residue.
#[test]
fn real_nq_and_triviaqa_dev_files_load_in_full() {
    let qa = assets_root().join("qa");
    let files = [
        ("topics.nq.dev.txt", 8_757),
        ("topics.dpr.trivia.dev.txt", 8_837),
    ];
    if files.iter().any(|(name, _)| !qa.join(name).is_file()) {
        assert!(
            std::env::var("RADIT_REQUIRE_ASSETS").as_deref() != Ok("1"),
            "QA assets missing under {}; run scripts/fetch-assets.sh",
            qa.display()
        );
        eprintln!(
            "skipping: QA assets missing under {} (run scripts/fetch-assets.sh)",
            qa.display()
        );
        return;
    }
    for (name, expected) in files {
        let path = qa.join(name);
        let ds = load_dataset(&path, Some(&DatasetFormat::DprTsv)).unwrap();
        for s in &ds.report.skipped {
            eprintln!("{s}");
        }
        let lines = non_blank_lines(&path);
        assert_eq!(lines, expected, "{}", path.display());
        assert_eq!(ds.report.lines, lines, "{}", ds.report);
        assert_eq!(ds.len() + ds.report.skipped.len(), lines, "{}", ds.report);
        assert!(ds.report.skipped.is_empty(), "{}", ds.report);
        assert_eq!(ds.len(), expected, "{}", ds.report);
        for e in &ds.examples {
            assert!(!e.question.is_empty() && !e.answers.is_empty(), "{e:?}");
            let residue = e.question.starts_with('"') && e.question.ends_with('"')
                || e.question.contains("\"\"");
            assert!(
                !residue,
                "{}: question keeps CSV quoting: {:?}",
                e.id, e.question
            );
            for a in &e.answers {
                assert!(
                    !a.contains("\"\""),
                    "{}: answer keeps CSV quoting: {a:?}",
                    e.id
                );
            }
        }
        let by_id = |id: &str| ds.examples.iter().find(|e| e.id == id).unwrap();
        if name == "topics.nq.dev.txt" {
            let e = by_id("topics.nq.dev:1");
            assert_eq!(e.question, "who sings does he love me with reba");
            assert_eq!(e.answers, vec!["Linda Davis"]);
        } else {
            // Question quoted twice.
            let e = by_id("topics.dpr.trivia.dev:27");
            assert_eq!(
                e.question,
                "What was the name of the \"girl with kaleidoscope eyes\" in a Beatles song?"
            );
            assert_eq!(e.answers, vec!["Lucy Lucia", "Lucy", "LUCY"]);
            // Answer field quoted once, an answer inside quoted again.
            let e = by_id("topics.dpr.trivia.dev:3334");
            assert!(e.answers.iter().any(|a| a == "Macbeth in \"Macbeth\""));
            // `""Gentleman's sport""` inside a quoted answer field.
            let e = by_id("topics.dpr.trivia.dev:3");
            assert!(e.answers.iter().any(|a| a == "Gentleman's sport"));
            assert!(e.answers.iter().any(|a| a == "Boxing"));
        }
    }
}

/// Answerability of the real QA dev sets against the bundled Wikipedia summaries (~10k texts,
/// ~0.8M words): the n-gram index agrees with direct matching and runs at this scale.
#[test]
fn real_answerability_over_wikipedia_summaries() {
    let root = assets_root();
    let corpus = root.join("wikipedia-summaries/summaries_en-us.json");
    let qa = [
        root.join("qa/topics.nq.dev.txt"),
        root.join("qa/topics.dpr.trivia.dev.txt"),
    ];
    if !corpus.is_file() || qa.iter().any(|p| !p.is_file()) {
        assert!(
            std::env::var("RADIT_REQUIRE_ASSETS").as_deref() != Ok("1"),
            "assets missing under {}; run scripts/fetch-assets.sh",
            root.display()
        );
        eprintln!(
            "skipping: assets missing under {} (run scripts/fetch-assets.sh)",
            root.display()
        );
        return;
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&corpus).unwrap()).unwrap();
    let texts: Vec<&str> = json
        .as_object()
        .unwrap()
        .values()
        .filter_map(|v| v.get("extract")?.as_str())
        .collect();
    assert!(texts.len() > 10_000, "{}", texts.len());
    let t0 = std::time::Instant::now();
    let index = AnswerIndex::new(&texts);
    let built = t0.elapsed();
    let examples: Vec<Example> = qa
        .iter()
        .flat_map(|p| load_dataset(p, None).unwrap().examples)
        .collect();
    let t1 = std::time::Instant::now();
    let answerable: Vec<bool> = examples.iter().map(|e| index.any(&e.answers)).collect();
    let looked_up = t1.elapsed();
    let count = answerable.iter().filter(|&&a| a).count();
    eprintln!(
        "{index:?}: built in {built:?}; {count} of {} questions answerable, looked up in {looked_up:?}",
        examples.len()
    );
    assert_eq!(examples.len(), 8_757 + 8_837);
    assert!(count > 0 && count < examples.len());
    // Direct matching agrees on a sample (answers of at most max_words normalized words).
    let sample: Vec<usize> = (0..examples.len()).step_by(examples.len() / 16).collect();
    for &i in &sample {
        let short: Vec<&String> = examples[i]
            .answers
            .iter()
            .filter(|a| normalize_tokens(a).len() <= index.max_words())
            .collect();
        let direct = first_answer_rank(&texts, &short).is_some();
        assert_eq!(answerable[i], direct, "{:?}", examples[i]);
    }
}
