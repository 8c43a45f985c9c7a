use std::collections::BTreeMap;
use std::fs;

use radit_train::checkpoint::{
    BestMetric, Checkpoint, CheckpointError, CheckpointManager, MetricMode, Retention,
};

fn metrics(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn steps(m: &CheckpointManager) -> Vec<u64> {
    m.list().unwrap().into_iter().map(|(s, _)| s).collect()
}

#[test]
fn save_then_latest_valid_reads_back() {
    let run = tempfile::tempdir().unwrap();
    let mut m = CheckpointManager::new(run.path(), Retention::default());
    assert!(m.latest_valid().unwrap().checkpoint.is_none());
    let weights = vec![7u8; 3_000_000];
    let saved = m
        .save(
            12,
            &[
                ("model.bpk", &weights),
                ("optim/adam.bin", b"adam"),
                ("recipe.toml", b"name = \"x\"\n"),
            ],
            &metrics(&[("train/loss", 1.5), ("dev/em", f64::NAN)]),
        )
        .unwrap();
    assert_eq!(saved.dir, run.path().join("checkpoints/step-00000012"));
    assert!(saved.warnings.is_empty() && saved.pruned.is_empty());

    let latest = m.latest_valid().unwrap();
    assert!(latest.skipped.is_empty());
    let c = latest.checkpoint.unwrap();
    assert_eq!(c.step(), 12);
    assert_eq!(c.dir(), saved.dir);
    assert_eq!(c.metrics()["train/loss"], 1.5);
    assert!(c.metrics()["dev/em"].is_nan());
    assert_eq!(c.read("model.bpk").unwrap(), weights);
    assert_eq!(c.read("optim/adam.bin").unwrap(), b"adam");
    assert_eq!(
        c.file_names().collect::<Vec<_>>(),
        vec!["model.bpk", "optim/adam.bin", "recipe.toml"]
    );
    let err = c.read("nope").unwrap_err();
    assert!(
        err.to_string()
            .contains("has no file `nope` (it has: model.bpk, optim/adam.bin, recipe.toml)"),
        "{err}"
    );

    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(saved.dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["format_version"], 1);
    assert_eq!(manifest["step"], 12);
    assert!(manifest["created_utc"].as_str().unwrap().ends_with('Z'));
    assert_eq!(manifest["files"][0]["size"], 3_000_000);
    assert_eq!(manifest["files"][0]["xxh3_64"].as_str().unwrap().len(), 16);
    assert!(manifest["metrics"]["dev/em"].is_null());
}

#[test]
fn corrupt_and_incomplete_checkpoints_are_skipped_with_reasons() {
    let run = tempfile::tempdir().unwrap();
    let mut m = CheckpointManager::new(
        run.path(),
        Retention {
            keep_last: 10,
            best: None,
        },
    );
    for step in [100, 200, 300, 400] {
        m.save(
            step,
            &[
                ("model.bin", format!("weights {step}").as_bytes()),
                ("rng", b"r"),
            ],
            &BTreeMap::new(),
        )
        .unwrap();
    }
    // 400: a file is missing. 300: a file is corrupt (same size). 200: truncated manifest.
    fs::remove_file(m.dir_for(400).join("rng")).unwrap();
    fs::write(m.dir_for(300).join("model.bin"), b"weights 999").unwrap();
    let man = m.dir_for(200).join("manifest.json");
    let text = fs::read(&man).unwrap();
    fs::write(&man, &text[..text.len() / 2]).unwrap();
    // A leftover of a crashed save, and a directory without a manifest.
    fs::create_dir_all(m.checkpoints_dir().join(".tmp-step-00000500-1-2")).unwrap();
    fs::write(
        m.checkpoints_dir().join(".tmp-step-00000500-1-2/model.bin"),
        b"half",
    )
    .unwrap();
    fs::create_dir_all(m.dir_for(450)).unwrap();

    let latest = m.latest_valid().unwrap();
    assert_eq!(latest.checkpoint.as_ref().map(|c| c.step()), Some(100));
    let reasons: Vec<String> = latest.skipped.iter().map(|s| s.to_string()).collect();
    assert_eq!(reasons.len(), 4, "{reasons:#?}");
    assert!(
        reasons[0].contains("step-00000450") && reasons[0].contains("has no manifest.json"),
        "{}",
        reasons[0]
    );
    assert!(
        reasons[1].contains("step-00000400 is missing file `rng` listed in its manifest"),
        "{}",
        reasons[1]
    );
    assert!(matches!(
        latest.skipped[2].error,
        CheckpointError::ChecksumMismatch { .. }
    ));
    assert!(
        reasons[2].contains("file `model.bin` is corrupt"),
        "{}",
        reasons[2]
    );
    assert!(
        reasons[3].contains("bad manifest.json: not JSON"),
        "{}",
        reasons[3]
    );
    // The temp dir is gone.
    assert!(!m.checkpoints_dir().join(".tmp-step-00000500-1-2").exists());

    // Saving the same step as a corrupt checkpoint replaces it.
    m.save(
        400,
        &[("model.bin", b"weights 400"), ("rng", b"r")],
        &BTreeMap::new(),
    )
    .unwrap();
    assert_eq!(m.latest_valid().unwrap().checkpoint.unwrap().step(), 400);
}

#[test]
fn truncated_file_and_renamed_dir() {
    let run = tempfile::tempdir().unwrap();
    let mut m = CheckpointManager::new(run.path(), Retention::default());
    m.save(5, &[("a", b"abcdef")], &BTreeMap::new()).unwrap();
    fs::write(m.dir_for(5).join("a"), b"abc").unwrap();
    let l = m.latest_valid().unwrap();
    assert!(l.checkpoint.is_none());
    assert!(l.skipped[0]
        .to_string()
        .contains("file `a` has 3 bytes, the manifest says 6"));
    // A checkpoint copied to another step's name is refused.
    m.save(6, &[("a", b"abcdef")], &BTreeMap::new()).unwrap();
    fs::rename(m.dir_for(6), m.dir_for(7)).unwrap();
    let l = m.latest_valid().unwrap();
    assert!(
        l.skipped[0].to_string().contains("is for step 6"),
        "{}",
        l.skipped[0]
    );
}

#[test]
fn retention_keeps_last_n_and_best() {
    let run = tempfile::tempdir().unwrap();
    let mut m = CheckpointManager::new(
        run.path(),
        Retention {
            keep_last: 2,
            best: Some(BestMetric {
                name: "dev/em".into(),
                mode: MetricMode::Max,
            }),
        },
    );
    let em = [(10, 0.1), (20, 0.7), (30, 0.3), (40, 0.2), (50, 0.6)];
    for (step, v) in em {
        m.save(step, &[("w", b"w")], &metrics(&[("dev/em", v)]))
            .unwrap();
    }
    // The best (20) is kept in best/, outside the keep-last window.
    assert_eq!(steps(&m), vec![40, 50]);
    assert_eq!(
        m.best().unwrap().map(|b| (b.0, b.2)),
        Some((20, m.best_dir()))
    );
    assert_eq!(Checkpoint::open(&m.best_dir()).unwrap().step(), 20);
    let saved = m
        .save(60, &[("w", b"w")], &metrics(&[("dev/em", 0.9)]))
        .unwrap();
    assert_eq!(steps(&m), vec![50, 60]);
    assert_eq!(saved.pruned, vec![m.dir_for(40)]);
    assert_eq!(saved.best, Some(m.best_dir()));
    assert_eq!(m.best_step(), Some(60));

    // Min mode, and a checkpoint without the metric is never "best".
    let run = tempfile::tempdir().unwrap();
    let mut m = CheckpointManager::new(
        run.path(),
        Retention {
            keep_last: 1,
            best: Some(BestMetric {
                name: "dev/loss".into(),
                mode: MetricMode::Min,
            }),
        },
    );
    m.save(1, &[("w", b"w")], &metrics(&[("dev/loss", 2.0)]))
        .unwrap();
    m.save(2, &[("w", b"w")], &metrics(&[("dev/loss", 1.0)]))
        .unwrap();
    m.save(3, &[("w", b"w")], &metrics(&[("dev/loss", 3.0)]))
        .unwrap();
    m.save(4, &[("w", b"w")], &BTreeMap::new()).unwrap();
    assert_eq!(steps(&m), vec![4]);
    assert_eq!(m.best_step(), Some(2));
}

#[test]
fn a_tie_keeps_the_earlier_best_and_keep_last_cannot_remove_it() {
    let run = tempfile::tempdir().unwrap();
    let mut m = CheckpointManager::new(
        run.path(),
        Retention {
            keep_last: 1,
            best: Some(BestMetric::default()),
        },
    );
    m.save(2, &[("w", b"2")], &metrics(&[("dev/em", 0.7)]))
        .unwrap();
    let saved = m
        .save(4, &[("w", b"4")], &metrics(&[("dev/em", 0.7)]))
        .unwrap();
    assert_eq!(saved.best, None);
    m.save(6, &[("w", b"6")], &metrics(&[("dev/em", f64::NAN)]))
        .unwrap();
    assert_eq!(steps(&m), vec![6]);
    let best = Checkpoint::open(&m.best_dir()).unwrap();
    assert_eq!((best.step(), best.read("w").unwrap()), (2, b"2".to_vec()));
    assert_eq!(best.metrics()["dev/em"], 0.7);
    // Resume picks the newest step, never best/.
    let latest = m.latest_valid().unwrap();
    assert_eq!(latest.checkpoint.unwrap().step(), 6);
    assert!(latest.skipped.is_empty());
}

#[test]
fn an_interrupted_best_replacement_is_undone() {
    let run = tempfile::tempdir().unwrap();
    let mut m = CheckpointManager::new(
        run.path(),
        Retention {
            keep_last: 3,
            best: None,
        },
    );
    m.save(1, &[("w", b"1")], &BTreeMap::new()).unwrap();
    m.save(2, &[("w", b"2")], &BTreeMap::new()).unwrap();
    m.promote_best(1).unwrap();
    m.promote_best(2).unwrap();
    assert_eq!(m.best_step(), Some(2));
    // A crash between "move the old best aside" and "rename the new one into place".
    fs::rename(m.best_dir(), m.checkpoints_dir().join(".best.old-4711")).unwrap();
    fs::create_dir(m.checkpoints_dir().join(".tmp-best-00000003-1-1")).unwrap();
    let latest = m.latest_valid().unwrap();
    assert_eq!(latest.checkpoint.unwrap().step(), 2);
    assert_eq!(Checkpoint::open(&m.best_dir()).unwrap().step(), 2);
    let mut left: Vec<String> = fs::read_dir(m.checkpoints_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["best", "step-00000001", "step-00000002"]);
    // A step that was never saved cannot become the best.
    assert!(m.promote_best(9).is_err());
}

#[test]
fn keep_last_zero_still_keeps_the_newest() {
    let run = tempfile::tempdir().unwrap();
    let mut m = CheckpointManager::new(
        run.path(),
        Retention {
            keep_last: 0,
            best: None,
        },
    );
    m.save(1, &[("w", b"1")], &BTreeMap::new()).unwrap();
    m.save(2, &[("w", b"2")], &BTreeMap::new()).unwrap();
    assert_eq!(steps(&m), vec![2]);
}

#[test]
fn just_saved_survives_even_below_a_newer_step() {
    // A run resumed from step 100 (because 300 was corrupt) saves 200: 200 must survive.
    let run = tempfile::tempdir().unwrap();
    let mut m = CheckpointManager::new(
        run.path(),
        Retention {
            keep_last: 1,
            best: None,
        },
    );
    m.save(300, &[("w", b"3")], &BTreeMap::new()).unwrap();
    m.save(200, &[("w", b"2")], &BTreeMap::new()).unwrap();
    assert_eq!(steps(&m), vec![200, 300]);
}

#[test]
fn bad_file_names_are_rejected() {
    let run = tempfile::tempdir().unwrap();
    let mut m = CheckpointManager::new(run.path(), Retention::default());
    for name in [
        "",
        "/abs",
        "../up",
        "a/../b",
        "./a",
        "manifest.json",
        "a\\b",
        "dir/",
    ] {
        let err = m.save(1, &[(name, b"x")], &BTreeMap::new()).unwrap_err();
        assert!(
            matches!(err, CheckpointError::InvalidName { .. }),
            "{name}: {err}"
        );
    }
    let err = m
        .save(1, &[("a", b"x"), ("a", b"y")], &BTreeMap::new())
        .unwrap_err();
    assert!(err.to_string().contains("given twice"));
    assert!(m.list().unwrap().is_empty());
}

#[test]
fn unwritable_run_dir_is_an_error() {
    let run = tempfile::tempdir().unwrap();
    let file = run.path().join("file");
    fs::write(&file, b"x").unwrap();
    let mut m = CheckpointManager::new(&file, Retention::default());
    let err = m.save(1, &[("w", b"1")], &BTreeMap::new()).unwrap_err();
    assert!(err.to_string().starts_with("cannot create"), "{err}");
}
