//! `radit_eval::summary` end to end on synthetic inputs: the library side of `radit report`
//! (the CLI test runs the binary; this one checks the same output without it).

use std::path::Path;

use radit_eval::summary::{write_summary, SummaryError, SummaryRequest};
use radit_eval::{EvalConfig, EvalMetrics, EvalReport, QuestionRecord, RunInfo};

/// A synthetic report: `n` questions, EM/F1 from `score(i)`, the answer at rank `i % 12` of
/// 10 retrieved chunks (none for `i % 12 >= 10`).
fn synthetic_eval_report(label: &str, n: usize, score: impl Fn(usize) -> f64) -> String {
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
    };
    serde_json::to_string(&report).unwrap()
}

fn request(d: &Path, evals: Vec<String>, runs: Vec<String>) -> SummaryRequest {
    SummaryRequest {
        evals,
        runs,
        title: "Tiny study".into(),
        out: d.join("report"),
        command: "radit report --eval base=base.json".into(),
        resamples: 1000,
        seed: 0,
    }
}

#[test]
fn summary_writes_tables_paired_differences_and_svg_plots() {
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
    let run = d.join("run");
    for (stage, dev) in [("lm_ft", "dev/em"), ("round-1/r_ft", "dev/recall@5")] {
        std::fs::create_dir_all(run.join(stage)).unwrap();
        let mut lines = String::new();
        for step in 1..=5 {
            lines.push_str(&format!(
                "{{\"step\":{step},\"train/loss\":{}}}\n",
                3.0 / step as f64
            ));
        }
        lines.push_str(&format!("{{\"step\":5,\"{dev}\":0.5}}\n"));
        std::fs::write(run.join(stage).join("metrics.jsonl"), lines).unwrap();
    }
    let req = request(
        d,
        vec![
            format!("base={}", d.join("base.json").display()),
            format!("ft={}", d.join("ft.json").display()),
        ],
        vec![format!("tiny={}", run.display())],
    );
    let readme_path = write_summary(&req).unwrap();
    assert_eq!(readme_path, req.out.join("README.md"));
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    assert!(readme.starts_with("# Tiny study\n"), "{readme}");
    assert!(readme.contains(&req.command), "{readme}");
    assert!(
        readme
            .lines()
            .any(|l| l.starts_with("| ft | base | 60 | +0.333 [+")
                && l.matches("yes: the interval excludes 0").count() == 2),
        "{readme}"
    );
    assert!(
        readme.contains("| tiny | round-1/r_ft | 5 | 3.0000 → 0.6000 (0.6000) |"),
        "{readme}"
    );
    assert!(readme.contains("Stages: tiny round-1/r_ft."), "{readme}");
    for svg in [
        "metrics.svg",
        "recall-at-k.svg",
        "loss-lm_ft.svg",
        "loss-r_ft.svg",
        "dev-lm_ft.svg",
        "dev-r_ft.svg",
    ] {
        assert!(readme.contains(&format!("]({svg})")), "{svg}: {readme}");
        let text = std::fs::read_to_string(req.out.join(svg)).unwrap();
        assert!(text.trim_end().ends_with("</svg>"), "{svg}: {text}");
    }
}

#[test]
fn bad_requests_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let err = write_summary(&request(d, vec![], vec![])).unwrap_err();
    assert!(matches!(err, SummaryError::Argument(_)), "{err}");
    let err = write_summary(&request(d, vec!["nolabel".into()], vec![])).unwrap_err();
    assert!(err.to_string().contains("LABEL=PATH"), "{err}");
    let none = format!("x={}", d.join("none").display());
    let err = write_summary(&request(d, vec![], vec![none])).unwrap_err();
    assert!(err.to_string().starts_with("--run x: "), "{err}");
    assert!(err.to_string().ends_with("is not a directory"), "{err}");
    std::fs::write(d.join("not-a-report.json"), "{}").unwrap();
    let bad = format!("a={}", d.join("not-a-report.json").display());
    let err = write_summary(&request(d, vec![bad], vec![])).unwrap_err();
    assert!(matches!(err, SummaryError::NotEvalReport { .. }), "{err}");
    // Nothing is written for a request that fails before the output.
    assert!(!d.join("report").exists());
}
