//! The ensemble arithmetic against direct computations, the scoring variants, the bootstrap,
//! and the whole pipeline on a tiny random Llama, a tiny random BERT query encoder and a
//! four-document index.

use burn::tensor::Device;
use radit_data::{Example, ExampleKey, InstanceBuilder, InstanceConfig};
use radit_docstore::{
    build_index, BoxError, BuildOptions, Dense, DocStore, Embedder, EncoderIdentity, ProgressMode,
};
use radit_eval::{
    bootstrap_ci, contributions, ensemble_log_likelihood, logsumexp, markdown_table,
    retrieval_log_weights, EvalConfig, EvalError, EvalMetrics, EvalReport, Evaluator, Likelihood,
    Mode, QueryEncoder, QuestionRecord, RunInfo, Scoring,
};
use radit_generator::{LmScorer, PromptTokenizer, ScoreRequest};
use radit_models::{
    random_bert, random_llama, Bert, BertConfig, Encoder, Llama, LlamaConfig, Pooling,
    TextTokenizer,
};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

// ---------------------------------------------------------------- ensemble arithmetic

#[test]
fn logsumexp_is_stable_and_exact() {
    assert!(close(logsumexp(&[0.0, 0.0]), 2f64.ln(), 1e-12));
    assert!(close(
        logsumexp(&[1.0, 2.0, 3.0]),
        (1f64.exp() + 2f64.exp() + 3f64.exp()).ln(),
        1e-12
    ));
    // Far below exp's range: the direct sum would be ln(0) = -inf.
    let v = logsumexp(&[-1000.0, -1001.0]);
    assert!(close(v, -1000.0 + (1.0 + (-1f64).exp()).ln(), 1e-12), "{v}");
    assert_eq!(logsumexp(&[]), f64::NEG_INFINITY);
    assert_eq!(
        logsumexp(&[f64::NEG_INFINITY, f64::NEG_INFINITY]),
        f64::NEG_INFINITY
    );
    assert!(close(logsumexp(&[f64::NEG_INFINITY, -2.0]), -2.0, 1e-12));
}

#[test]
fn retrieval_weights_are_a_tempered_softmax() {
    let scores = [0.8f32, 0.5, 0.1];
    for tau in [0.05, 0.1, 1.0] {
        let log_w = retrieval_log_weights(&scores, tau);
        let direct: Vec<f64> = {
            let e: Vec<f64> = scores.iter().map(|&s| (f64::from(s) / tau).exp()).collect();
            let z: f64 = e.iter().sum();
            e.iter().map(|x| x / z).collect()
        };
        for (l, d) in log_w.iter().zip(&direct) {
            assert!(close(l.exp(), *d, 1e-12), "τ {tau}: {} vs {d}", l.exp());
        }
        let total: f64 = log_w.iter().map(|l| l.exp()).sum();
        assert!(close(total, 1.0, 1e-12));
    }
    // Lower temperature, sharper weights; a shift of all scores changes nothing.
    let sharp = retrieval_log_weights(&scores, 0.05)[0].exp();
    let flat = retrieval_log_weights(&scores, 1.0)[0].exp();
    assert!(sharp > flat && flat > 1.0 / 3.0);
    let shifted = retrieval_log_weights(&[10.8, 10.5, 10.1], 1.0);
    for (a, b) in shifted.iter().zip(retrieval_log_weights(&scores, 1.0)) {
        assert!(close(*a, b, 1e-6));
    }
    assert!(retrieval_log_weights(&[], 0.05).is_empty());
}

#[test]
fn ensemble_equals_the_direct_mixture() {
    let log_w = retrieval_log_weights(&[0.9, 0.7, 0.2], 0.1);
    let log_lm = [Some(-2.5), Some(-0.7), Some(-6.0)];
    let direct: f64 = log_w
        .iter()
        .zip(&log_lm)
        .map(|(w, l)| w.exp() * l.unwrap_or(f64::NEG_INFINITY).exp())
        .sum::<f64>()
        .ln();
    let ens = ensemble_log_likelihood(&log_w, &log_lm);
    assert!(close(ens, direct, 1e-12), "{ens} vs {direct}");
    // Shares: p_R p_LM / p, summing to one.
    let shares = contributions(&log_w, &log_lm);
    let sum: f64 = shares.iter().map(|s| s.unwrap()).sum();
    assert!(close(sum, 1.0, 1e-12));
    let first = log_w[0].exp() * (-2.5f64).exp() / direct.exp();
    assert!(close(shares[0].unwrap(), first, 1e-9));
    // An unscored chunk counts as p_LM = 0.
    let partial = [Some(-2.5), None, Some(-6.0)];
    let direct = (log_w[0].exp() * (-2.5f64).exp() + log_w[2].exp() * (-6f64).exp()).ln();
    assert!(close(
        ensemble_log_likelihood(&log_w, &partial),
        direct,
        1e-12
    ));
    assert_eq!(contributions(&log_w, &partial)[1], None);
    assert_eq!(
        ensemble_log_likelihood(&log_w, &[None, None, None]),
        f64::NEG_INFINITY
    );
    // One chunk of weight 1: the LM likelihood itself.
    assert_eq!(ensemble_log_likelihood(&[0.0], &[Some(-3.25)]), -3.25);
    // Long answers: every p_LM underflows in f64, the log-space mixture does not.
    let tiny = [Some(-800.0), Some(-801.0)];
    let w = [0.5f64.ln(), 0.5f64.ln()];
    let v = ensemble_log_likelihood(&w, &tiny);
    assert!(v.is_finite() && close(v, -800.0 + ((1.0 + (-1f64).exp()) / 2.0).ln(), 1e-12));
}

#[test]
fn scoring_variants_follow_their_formulas() {
    let l = Likelihood {
        log_p: -6.0,
        tokens: 3,
        chars: 4,
        closed_book_log_p: Some(-2.0),
    };
    assert_eq!(Scoring::Nll.score(&l), 6.0);
    assert_eq!(Scoring::NllToken.score(&l), 2.0);
    assert_eq!(Scoring::NllChar.score(&l), 1.5);
    // nll(y|x) − nll(y|closed book) = 6 − 2.
    assert_eq!(Scoring::NllComp.score(&l), 4.0);
    assert_eq!(
        Scoring::NllComp.score(&Likelihood {
            closed_book_log_p: None,
            ..l
        }),
        f64::INFINITY
    );
    let unscored = Likelihood {
        log_p: f64::NEG_INFINITY,
        ..l
    };
    for s in Scoring::ALL {
        assert_eq!(s.score(&unscored), f64::INFINITY);
        assert_eq!(s.name().parse::<Scoring>().unwrap(), s);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{}\"", s.name())
        );
    }
    assert!(matches!(
        "nll_tok".parse::<Scoring>(),
        Err(EvalError::Input(_))
    ));
    for m in Mode::ALL {
        assert_eq!(m.name().parse::<Mode>().unwrap(), m);
    }
    // A longer answer with the same likelihood is better per token and per character.
    let long = Likelihood {
        tokens: 6,
        chars: 12,
        ..l
    };
    assert!(Scoring::NllToken.score(&long) < Scoring::NllToken.score(&l));
    assert!(Scoring::NllChar.score(&long) < Scoring::NllChar.score(&l));
    assert_eq!(Scoring::Nll.score(&long), Scoring::Nll.score(&l));
}

#[test]
fn bootstrap_is_deterministic_and_brackets_the_mean() {
    let values: Vec<f64> = (0..40).map(|i| f64::from(u8::from(i % 3 == 0))).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let a = bootstrap_ci(&values, 1000, 0.95, 7);
    let b = bootstrap_ci(&values, 1000, 0.95, 7);
    assert_eq!(a, b);
    assert!(close(a.mean, mean, 1e-12));
    assert!(a.low < mean && mean < a.high, "{a:?}");
    assert!(a.low >= 0.0 && a.high <= 1.0);
    // Roughly ±1.96 standard errors.
    let se = (mean * (1.0 - mean) / values.len() as f64).sqrt();
    assert!(
        (a.high - a.low) > 2.0 * se && (a.high - a.low) < 6.0 * se,
        "{a:?}"
    );
    // Another seed, another draw (on values whose resample means hardly ever tie).
    let spread: Vec<f64> = (1..=40)
        .map(|i| (f64::from(i) * 0.618_034).fract())
        .collect();
    let c = bootstrap_ci(&spread, 1000, 0.95, 7);
    let d = bootstrap_ci(&spread, 1000, 0.95, 8);
    assert_eq!(c, bootstrap_ci(&spread, 1000, 0.95, 7));
    assert_ne!((c.low, c.high), (d.low, d.high));
    assert!(c.low < c.mean && c.mean < c.high && d.low < d.mean && d.mean < d.high);
    // A wider level gives a wider interval.
    let wide = bootstrap_ci(&values, 1000, 0.99, 7);
    assert!(wide.low <= a.low && wide.high >= a.high);
    // Constant values and no values.
    let flat = bootstrap_ci(&[0.5; 10], 1000, 0.95, 1);
    assert_eq!((flat.low, flat.mean, flat.high), (0.5, 0.5, 0.5));
    let none = bootstrap_ci(&[], 1000, 0.95, 1);
    assert_eq!((none.low, none.mean, none.high), (0.0, 0.0, 0.0));
}

fn record(em: f64, rank: Option<usize>, correct: Option<bool>) -> QuestionRecord {
    QuestionRecord {
        id: "q".into(),
        question: "q?".into(),
        gold: vec!["a".into()],
        choices: Vec::new(),
        prediction: if em > 0.0 { "a".into() } else { "b".into() },
        em,
        f1: em,
        rouge_l: em,
        correct,
        log_p: Some(-1.0),
        score: Some(1.0),
        candidates: Vec::new(),
        chunks: Vec::new(),
        retrieved: 10,
        answer_rank: rank,
        gold_context: false,
    }
}

#[test]
fn metrics_aggregate_records_and_render() {
    let records = vec![
        record(1.0, Some(0), Some(true)),
        record(0.0, Some(3), Some(false)),
        record(1.0, None, None),
        record(0.0, Some(9), None),
    ];
    let config = EvalConfig::default();
    let m = EvalMetrics::compute(&records, &config);
    assert_eq!(m.count, 4);
    assert_eq!((m.em, m.f1, m.rouge_l), (0.5, 0.5, 0.5));
    assert_eq!((m.multiple_choice, m.accuracy), (2, Some(0.5)));
    let r = m.retrieval.as_ref().unwrap();
    assert_eq!(r.depth, 10);
    assert_eq!(r.recall_at.get(&1), Some(&0.25));
    assert_eq!(r.recall_at.get(&5), Some(&0.5));
    assert_eq!(r.recall_at.get(&10), Some(&0.75));
    assert!(close(r.mrr, (1.0 + 0.25 + 0.0 + 0.1) / 4.0, 1e-12));
    assert!(m.em_ci.low <= 0.5 && 0.5 <= m.em_ci.high);
    let report = EvalReport {
        run: RunInfo {
            label: "base".into(),
            ..RunInfo::default()
        },
        config,
        metrics: m,
        seconds: 1.0,
        questions: records,
        shard: None,
    };
    let json = serde_json::to_string(&report).unwrap();
    let back: EvalReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    let table = markdown_table(&[&report, &back]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].contains("EM [95% CI]") && lines[0].contains("R@10"));
    assert!(lines[2].starts_with("| base | ensemble | nll | 10 | 4 | 0.500 ["));
    assert_eq!(lines[0].matches('|').count(), lines[2].matches('|').count());
}

#[test]
fn jsonl_choices_are_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mc.jsonl");
    std::fs::write(
        &path,
        concat!(
            r#"{"question": "Color of the sky?", "answers": ["blue"], "choices": ["red", " blue ", "green"]}"#,
            "\n",
            r#"{"question": "Open?", "answers": "yes"}"#,
            "\n",
            r#"{"question": "Bad?", "answers": "x", "choices": [1, 2]}"#,
            "\n",
        ),
    )
    .unwrap();
    let ds = radit_data::load_dataset(&path, None).unwrap();
    assert_eq!(ds.examples.len(), 2);
    assert_eq!(ds.examples[0].choices, vec!["red", "blue", "green"]);
    assert!(ds.examples[1].choices.is_empty());
    assert_eq!(ds.report.skipped.len(), 1);
    // Serialized only when present.
    let open = serde_json::to_string(&ds.examples[1]).unwrap();
    assert!(!open.contains("choices"));
    let mc: Example =
        serde_json::from_str(&serde_json::to_string(&ds.examples[0]).unwrap()).unwrap();
    assert_eq!(mc, ds.examples[0]);
}

// ---------------------------------------------------------------- the pipeline, tiny models

const DOCS: [(&str, &str); 4] = [
    ("Velmora", "Velmora was founded by Anna Brook in 1801 ."),
    ("Lyskholm", "Lyskholm lies on the Herb River near the sea ."),
    (
        "Bristeth pump",
        "The Bristeth pump was invented in 1893 by Ola Finn .",
    ),
    ("Mokrou", "Mokrou plays the lute and sings in the evening ."),
];

/// A word-level tokenizer over every word the tests use (others map to `<unk>`).
fn tokenizer() -> TextTokenizer {
    let mut words: Vec<String> = vec!["<pad>".into(), "<unk>".into()];
    let extra = "Background Q Question A Answer : ? . Who founded In what year was invented \
                 On which river does lie instrument play";
    let texts = DOCS
        .iter()
        .flat_map(|(t, x)| [*t, *x])
        .chain(std::iter::once(extra));
    for text in texts {
        for w in text.split_whitespace() {
            let w = w.trim_end_matches([':', '?']);
            if !w.is_empty() && !words.iter().any(|x| x == w) {
                words.push(w.to_string());
            }
        }
    }
    radit_models::word_level_tokenizer(&words).unwrap()
}

struct Tiny {
    llama: Llama,
    tokenizer: TextTokenizer,
    encoder: Encoder,
    store: DocStore,
    _dir: tempfile::TempDir,
}

/// Wraps the tiny encoder for index building.
struct TinyEmbedder<'a>(&'a Encoder);

impl Embedder for TinyEmbedder<'_> {
    fn identity(&self) -> EncoderIdentity {
        EncoderIdentity {
            source: "tiny".into(),
            weights_hash: "tiny".into(),
            pooling: "mean".into(),
            normalize: true,
            dim: self.dim(),
            max_tokens: Some(self.0.max_length),
        }
    }
    fn dim(&self) -> usize {
        self.0.model.config().hidden_size
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BoxError> {
        Ok(self.0.embed(texts)?)
    }
}

fn tiny() -> Tiny {
    let device = Device::flex();
    let tokenizer = tokenizer();
    let vocab = tokenizer.vocab_size();
    let config = LlamaConfig::new(vocab, 32, 64, 2, 4, 2);
    let llama = Llama::load(&random_llama(&config, 11), config, &device).unwrap();
    let bert_config = BertConfig {
        vocab_size: vocab,
        hidden_size: 16,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 32,
        max_position_embeddings: 64,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        pad_token_id: 0,
    };
    let encoder = Encoder {
        model: Bert::load(&random_bert(&bert_config, 5), bert_config, &device).unwrap(),
        tokenizer: tokenizer.clone(),
        pooling: Pooling::Mean,
        normalize: true,
        max_length: 64,
        source: "tiny".into(),
        weights_hash: "tiny".into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    let lines: Vec<String> = DOCS
        .iter()
        .enumerate()
        .map(|(i, (title, text))| {
            serde_json::json!({"id": format!("d{i}"), "title": title, "text": text}).to_string()
        })
        .collect();
    std::fs::write(&corpus, lines.join("\n")).unwrap();
    let index = dir.path().join("index");
    let options = BuildOptions {
        progress: ProgressMode::Silent,
        ..BuildOptions::default()
    };
    build_index(&corpus, &index, &TinyEmbedder(&encoder), &options).unwrap();
    let store = DocStore::open(&index).unwrap();
    assert_eq!(store.len(), 4);
    Tiny {
        llama,
        tokenizer,
        encoder,
        store,
        _dir: dir,
    }
}

fn builder(tok: &TextTokenizer) -> InstanceBuilder<PromptTokenizer<'_>> {
    InstanceBuilder::new(
        PromptTokenizer(tok),
        InstanceConfig {
            max_len: 96,
            add_bos: false,
            seed: 3,
        },
    )
    .unwrap()
}

fn mc_example() -> Example {
    Example {
        id: "mc".into(),
        question: "Who founded Velmora?".into(),
        answers: vec!["Anna Brook".into()],
        context: None,
        choices: vec!["Herb River".into(), "Anna Brook".into(), "1893".into()],
    }
}

fn config(mode: Mode, scoring: Scoring, k: usize) -> EvalConfig {
    EvalConfig {
        mode,
        scoring,
        k,
        retriever_temperature: 0.5,
        answer_tokens: 3,
        batch_size: 4,
        ..EvalConfig::default()
    }
}

/// `log p_LM(choice | background ∘ x)` straight from the scorer (key `(1, 0)`).
fn lm_logprob(
    t: &Tiny,
    b: &InstanceBuilder<PromptTokenizer<'_>>,
    question: &str,
    answer: &str,
    background: Option<String>,
) -> (f64, u32) {
    let example = Example {
        id: "direct".into(),
        question: question.into(),
        answers: vec![answer.into()],
        context: None,
        choices: Vec::new(),
    };
    let scorer = LmScorer::new(&t.llama, b, t.tokenizer.pad_id(), "direct", 1);
    let request = ScoreRequest {
        key: ExampleKey {
            dataset: 1,
            example: 0,
        },
        example: &example,
        background,
    };
    let s = scorer.score(&[request], None).unwrap()[0].unwrap();
    (f64::from(s.logprob), s.tokens)
}

fn evaluator<'a>(
    t: &'a Tiny,
    b: &'a InstanceBuilder<PromptTokenizer<'a>>,
    config: EvalConfig,
) -> Evaluator<'a, PromptTokenizer<'a>> {
    Evaluator::new(&t.llama, &t.tokenizer, b, config)
        .unwrap()
        .with_retrieval(&t.store, QueryEncoder::base(&t.encoder))
}

#[test]
fn pipeline_ensemble_matches_a_direct_computation_for_every_scoring() {
    let t = tiny();
    let b = builder(&t.tokenizer);
    let example = mc_example();
    // Retrieval done by hand: embed, exact search, chunk texts.
    let q = t
        .encoder
        .embed(&[example.question.as_str()])
        .unwrap()
        .concat();
    let hits = t.store.search_dense(&q, 3, Dense::Exact).unwrap().remove(0);
    let backgrounds: Vec<String> = hits
        .iter()
        .map(|h| t.store.chunk(h.id).unwrap().background_text())
        .collect();
    let weights: Vec<f64> = {
        let e: Vec<f64> = hits
            .iter()
            .map(|h| (f64::from(h.score) / 0.5).exp())
            .collect();
        let z: f64 = e.iter().sum();
        e.iter().map(|x| x / z).collect()
    };
    for scoring in Scoring::ALL {
        let ev = evaluator(&t, &b, config(Mode::Ensemble, scoring, 3));
        let rec = ev.answer(0, &example).unwrap();
        assert_eq!(rec.chunks.len(), 3);
        assert_eq!(rec.retrieved, 4, "depth 10 capped by the 4 chunks");
        for (c, (h, w)) in rec.chunks.iter().zip(hits.iter().zip(&weights)) {
            assert_eq!(c.id, h.id);
            assert!(close(c.weight, *w, 1e-6), "{} vs {w}", c.weight);
        }
        let mut expected_scores = Vec::new();
        for (cand, choice) in rec.candidates.iter().zip(&example.choices) {
            assert_eq!(&cand.text, choice);
            let mut p = 0.0;
            let mut tokens = 0;
            for (bg, w) in backgrounds.iter().zip(&weights) {
                let (lp, n) = lm_logprob(&t, &b, &example.question, choice, Some(bg.clone()));
                p += w * lp.exp();
                tokens = n;
            }
            let log_p = p.ln();
            let got = cand.log_p.unwrap();
            assert!(close(got, log_p, 1e-5), "{scoring}: {got} vs {log_p}");
            let (closed, _) = lm_logprob(&t, &b, &example.question, choice, None);
            let expected = match scoring {
                Scoring::Nll => -log_p,
                Scoring::NllToken => -log_p / f64::from(tokens),
                Scoring::NllChar => -log_p / choice.chars().count() as f64,
                Scoring::NllComp => -log_p + closed,
            };
            assert!(close(cand.score.unwrap(), expected, 1e-5), "{scoring}");
            expected_scores.push(expected);
        }
        let best = (0..expected_scores.len())
            .min_by(|&a, &b| expected_scores[a].total_cmp(&expected_scores[b]))
            .unwrap();
        assert_eq!(rec.prediction, example.choices[best], "{scoring}");
        assert_eq!(rec.correct, Some(rec.prediction == "Anna Brook"));
        assert_eq!(rec.em, f64::from(u8::from(rec.prediction == "Anna Brook")));
        // The prediction's per-chunk likelihoods and shares.
        let shares: f64 = rec.chunks.iter().map(|c| c.contribution.unwrap()).sum();
        assert!(close(shares, 1.0, 1e-9));
        let weight_sum: f64 = rec.chunks.iter().map(|c| c.weight).sum();
        assert!(close(weight_sum, 1.0, 1e-9));
        let (lp0, _) = lm_logprob(
            &t,
            &b,
            &example.question,
            &rec.prediction,
            Some(backgrounds[0].clone()),
        );
        assert!(close(rec.chunks[0].log_p_lm.unwrap(), lp0, 1e-6));
    }
}

#[test]
fn concat_and_closed_book_score_a_single_prompt() {
    let t = tiny();
    let b = builder(&t.tokenizer);
    let example = mc_example();
    let closed = evaluator(&t, &b, config(Mode::ClosedBook, Scoring::Nll, 3))
        .answer(0, &example)
        .unwrap();
    assert!(closed.chunks.is_empty() && closed.retrieved == 0);
    for (cand, choice) in closed.candidates.iter().zip(&example.choices) {
        let (lp, _) = lm_logprob(&t, &b, &example.question, choice, None);
        assert!(close(cand.log_p.unwrap(), lp, 1e-6));
    }
    // nll_comp in closed-book mode: every candidate scores 0, the first wins.
    let comp = evaluator(&t, &b, config(Mode::ClosedBook, Scoring::NllComp, 3))
        .answer(0, &example)
        .unwrap();
    assert!(comp.candidates.iter().all(|c| c.score == Some(0.0)));
    assert_eq!(comp.prediction, example.choices[0]);

    let concat = evaluator(&t, &b, config(Mode::Concat, Scoring::Nll, 2))
        .answer(0, &example)
        .unwrap();
    assert_eq!(concat.chunks.len(), 2);
    assert!(concat.chunks.iter().all(|c| c.log_p_lm.is_none()));
    let joined = concat
        .chunks
        .iter()
        .map(|c| t.store.chunk(c.id).unwrap().background_text())
        .collect::<Vec<_>>()
        .join("\n\n");
    for (cand, choice) in concat.candidates.iter().zip(&example.choices) {
        let (lp, _) = lm_logprob(&t, &b, &example.question, choice, Some(joined.clone()));
        assert!(close(cand.log_p.unwrap(), lp, 1e-6));
    }

    // Without an index only closed-book evaluation runs.
    let bare = Evaluator::new(
        &t.llama,
        &t.tokenizer,
        &b,
        config(Mode::Ensemble, Scoring::Nll, 3),
    )
    .unwrap();
    assert!(matches!(bare.answer(0, &example), Err(EvalError::Input(_))));
    let bad = EvalConfig {
        retriever_temperature: 0.0,
        ..EvalConfig::default()
    };
    assert!(Evaluator::new(&t.llama, &t.tokenizer, &b, bad).is_err());
}

#[test]
fn free_generation_is_rescored_and_reported() {
    let t = tiny();
    let b = builder(&t.tokenizer);
    let open = |id: &str, q: &str, a: &str| Example {
        id: id.into(),
        question: q.into(),
        answers: vec![a.into()],
        context: None,
        choices: Vec::new(),
    };
    let examples = vec![
        open("a", "Who founded Velmora?", "Anna Brook"),
        open("b", "On which river does Lyskholm lie?", "Herb River"),
        open("c", "In what year was the Bristeth pump invented?", "1893"),
        mc_example(),
    ];
    let ev = evaluator(&t, &b, config(Mode::Ensemble, Scoring::NllToken, 2));
    let mut calls = Vec::new();
    let report = ev
        .evaluate(&examples, RunInfo::default(), &mut |d, n| {
            calls.push((d, n))
        })
        .unwrap();
    assert_eq!(calls.last(), Some(&(4, 4)));
    assert_eq!(report.metrics.count, 4);
    for (rec, ex) in report.questions.iter().zip(&examples) {
        assert_eq!(rec.id, ex.id);
        if ex.choices.is_empty() {
            // One decoded answer per chunk at most, each distinct; the best is predicted.
            assert!(!rec.candidates.is_empty() && rec.candidates.len() <= 2);
            assert!(rec.candidates.iter().any(|c| c.text == rec.prediction));
            let best = rec
                .candidates
                .iter()
                .filter_map(|c| c.score)
                .fold(f64::INFINITY, f64::min);
            assert_eq!(rec.score, Some(best));
            assert_eq!(rec.correct, None);
        }
    }
    let m = &report.metrics;
    let em: f64 = report.questions.iter().map(|r| r.em).sum::<f64>() / 4.0;
    assert!(close(m.em, em, 1e-12) && m.em_ci.low <= m.em && m.em <= m.em_ci.high);
    assert_eq!(m.multiple_choice, 1);
    let r = m.retrieval.as_ref().unwrap();
    assert_eq!((r.depth, r.questions), (4, 4));
    assert_eq!(r.recall_at.keys().copied().collect::<Vec<_>>(), vec![1]);
    // Deterministic, and the JSON round-trips.
    let again = ev
        .evaluate(&examples, RunInfo::default(), &mut |_, _| {})
        .unwrap();
    assert_eq!(again.questions, report.questions);
    // (serde_json's float parsing may differ from the printed value in the last bit.)
    let json = serde_json::to_string(&report).unwrap();
    let back: EvalReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back.config, report.config);
    assert_eq!(back.metrics.count, 4);
    for (a, b) in back.questions.iter().zip(&report.questions) {
        assert_eq!(
            (&a.prediction, a.chunks.len()),
            (&b.prediction, b.chunks.len())
        );
        assert!(close(a.log_p.unwrap(), b.log_p.unwrap(), 1e-12));
    }
    assert!(report
        .to_markdown()
        .contains("| ensemble | nll_token | 2 | 4 |"));
}

/// Shard reports merge into the report of the whole evaluation: questions in data order,
/// metrics and bootstrap intervals over all of them; incomplete or mixed sets are refused.
#[test]
fn shard_reports_merge_into_the_whole_report() {
    use radit_eval::{merge_reports, ShardInfo};
    let records: Vec<QuestionRecord> = (0..23)
        .map(|i| QuestionRecord {
            id: format!("q{i}"),
            ..record(f64::from(u8::from(i % 3 != 0)), Some(i % 5), None)
        })
        .collect();
    let config = EvalConfig {
        bootstrap_seed: 3,
        ..EvalConfig::default()
    };
    let run = RunInfo {
        label: "LM-ft".into(),
        ..RunInfo::default()
    };
    let whole = EvalReport {
        run: run.clone(),
        config: config.clone(),
        metrics: EvalMetrics::compute(&records, &config),
        seconds: 3.0,
        questions: records.clone(),
        shard: None,
    };
    let part = |index: usize, count: usize| {
        let s = radit_util::shard::Shard::new(index, count).unwrap();
        let range = s.range(records.len());
        let questions = records[range.clone()].to_vec();
        EvalReport {
            run: run.clone(),
            config: config.clone(),
            metrics: EvalMetrics::compute(&questions, &config),
            seconds: 1.0,
            questions,
            shard: Some(ShardInfo {
                index,
                count,
                first: range.start,
                end: range.end,
                total: records.len(),
            }),
        }
    };
    // Any order in.
    let merged = merge_reports(vec![part(2, 3), part(0, 3), part(1, 3)]).unwrap();
    assert_eq!(merged, whole);
    assert_ne!(
        part(0, 3).metrics,
        whole.metrics,
        "a shard's metrics are its own"
    );

    let err = |parts: Vec<EvalReport>| merge_reports(parts).unwrap_err().to_string();
    assert!(err(vec![part(0, 3), part(2, 3)]).contains("missing: 1/3"));
    assert!(err(vec![part(0, 2), part(0, 2), part(1, 2)]).contains("given twice"));
    assert!(err(vec![part(0, 2), part(1, 3)]).contains("does not belong"));
    assert!(err(vec![whole.clone(), part(0, 1)]).contains("without a `shard` field"));
    let mut other_model = part(1, 2);
    other_model.run.label = "base".into();
    assert!(err(vec![part(0, 2), other_model]).contains("other models"));
    let mut other_k = part(1, 2);
    other_k.config.k = 7;
    assert!(err(vec![part(0, 2), other_k]).contains("other settings"));
    let mut short = part(1, 2);
    short.questions.pop();
    assert!(err(vec![part(0, 2), short]).contains("records"));
    assert!(err(Vec::new()).contains("no shard reports"));
}
