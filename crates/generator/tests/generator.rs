//! The answer-only loss on a tiny random Llama: which labels count, and that it trains.

use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Device;
use radit_generator::{answer_nll, LmTargets};
use radit_models::config::LlamaConfig;
use radit_models::{random_llama, Llama, PaddingSide, TokenBatch};

fn tiny(device: &Device) -> Llama {
    let config = LlamaConfig::new(64, 32, 64, 2, 4, 2);
    Llama::load(&random_llama(&config, 11), config, device).unwrap()
}

/// Two examples: background + question tokens, then answer tokens (mask 1), right-padded.
fn example() -> (TokenBatch, Vec<u8>) {
    let rows = vec![vec![5, 6, 7, 8, 9, 20, 21, 22], vec![10, 11, 12, 30, 31]];
    let answers = [vec![0, 0, 0, 0, 0, 1, 1, 1], vec![0, 0, 0, 1, 1]];
    let batch = TokenBatch::from_rows(&rows, 0, PaddingSide::Right).unwrap();
    let mut mask = vec![0u8; batch.batch_size * batch.seq_len];
    for (r, a) in answers.iter().enumerate() {
        mask[r * batch.seq_len..r * batch.seq_len + a.len()].copy_from_slice(a);
    }
    (batch, mask)
}

fn loss_value(model: &Llama, batch: &TokenBatch, targets: &LmTargets) -> f32 {
    answer_nll(model, batch, targets)
        .unwrap()
        .into_scalar::<f32>()
}

#[test]
fn loss_covers_answer_tokens_only() {
    let device = Device::flex();
    let model = tiny(&device);
    let (batch, mask) = example();
    let targets = LmTargets::from_answer_mask(&batch, &mask).unwrap();
    assert_eq!(targets.count(), 3.0 + 2.0);
    let base = loss_value(&model, &batch, &targets);
    assert!(base.is_finite() && base > 0.0);

    // Relabel every background/instruction/padding position: the loss must not move.
    let mut relabelled = targets.clone();
    for (t, w) in relabelled.targets.iter_mut().zip(&targets.weights) {
        if *w == 0.0 {
            *t = (*t + 17) % 64;
        }
    }
    assert_eq!(loss_value(&model, &batch, &relabelled), base);

    // Relabel one answer position: the loss must move.
    let mut wrong = targets.clone();
    let first_answer = targets.weights.iter().position(|&w| w == 1.0).unwrap();
    wrong.targets[first_answer] = (wrong.targets[first_answer] + 1) % 64;
    assert!((loss_value(&model, &batch, &wrong) - base).abs() > 1e-6);
}

#[test]
fn adamw_steps_reduce_the_answer_loss() {
    let device = Device::flex().autodiff();
    let mut model = tiny(&device);
    let (batch, mask) = example();
    let targets = LmTargets::from_answer_mask(&batch, &mask).unwrap();
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    let first = loss_value(&model, &batch, &targets);
    for _ in 0..20 {
        let loss = answer_nll(&model, &batch, &targets).unwrap();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    let last = loss_value(&model, &batch, &targets);
    assert!(last < first * 0.5, "loss {first} -> {last}");
}

/// The sliced computation (only answer positions through the LM head) against the plain one.
#[test]
fn target_log_likelihood_equals_full_softmax_reference() {
    use burn::tensor::activation::log_softmax;
    let device = Device::flex();
    let model = tiny(&device);
    let (batch, mask) = example();
    let targets = LmTargets::from_answer_mask(&batch, &mask).unwrap();
    let ours = radit_generator::target_log_likelihood(&model, &batch, &targets)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let full = log_softmax(model.forward(&batch).unwrap(), 2)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let (t, v) = (batch.seq_len, 64);
    let mut reference = vec![0.0f32; batch.batch_size];
    for i in 0..batch.batch_size * t {
        if targets.weights[i] != 0.0 {
            reference[i / t] += full[i * v + targets.targets[i] as usize];
        }
    }
    for (a, b) in ours.iter().zip(&reference) {
        assert!((a - b).abs() < 1e-4, "{ours:?} vs {reference:?}");
    }
}

mod trainer {
    use super::*;
    use radit_generator::lora::{apply_lora, parameter_counts, LoraConfig};
    use radit_generator::trainer::{train_lm, BatchSource};
    use radit_train::checkpoint::BestMetric;
    use radit_train::metrics::MetricLogger;
    use radit_train::schedule::LrSchedule;
    use radit_train::trainer::{
        clip_global_norm, BoxError, OptimizerConfig, Outcome, RunContext, TrainConfig, TrainerState,
    };

    /// Eight fixed micro-batches served round-robin; the position is the checkpointed state.
    struct Cycle {
        batches: Vec<(TokenBatch, Vec<u8>)>,
        next: usize,
    }

    impl Cycle {
        fn new() -> Self {
            let batches = (0..8u32)
                .map(|k| {
                    let rows = vec![
                        vec![1 + k, 2, 3, 4, 10 + k, 11 + k],
                        vec![5, 6 + k, 7, 20 + k, 21],
                    ];
                    let batch = TokenBatch::from_rows(&rows, 0, PaddingSide::Right).unwrap();
                    let mut mask = vec![0u8; 12];
                    mask[4..6].copy_from_slice(&[1, 1]);
                    mask[6 + 3..6 + 5].copy_from_slice(&[1, 1]);
                    (batch, mask)
                })
                .collect();
            Self { batches, next: 0 }
        }
    }

    impl BatchSource for Cycle {
        fn next_batch(&mut self) -> Result<(TokenBatch, Vec<u8>), BoxError> {
            let b = self.batches[self.next % self.batches.len()].clone();
            self.next += 1;
            Ok(b)
        }
        fn state(&self) -> Result<Vec<u8>, BoxError> {
            Ok((self.next as u64).to_le_bytes().to_vec())
        }
        fn restore(&mut self, state: &[u8]) -> Result<(), BoxError> {
            self.next = u64::from_le_bytes(state.try_into()?) as usize;
            Ok(())
        }
    }

    fn config(max_steps: u64) -> TrainConfig {
        TrainConfig {
            lr: 5e-3,
            weight_decay: 0.01,
            optimizer: OptimizerConfig::default(),
            schedule: LrSchedule::Cosine {
                warmup_steps: 2,
                total_steps: Some(6),
                min_lr_ratio: 0.1,
            },
            max_steps,
            grad_accum: 2,
            max_grad_norm: Some(1.0),
            save_every: Some(2),
            keep_last: 2,
            save_every_minutes: None,
            eval_every: None,
            best_metric: BestMetric::default(),
            early_stopping_patience: None,
            divergence: Default::default(),
            optimizer_state_dtype: Default::default(),
        }
    }

    /// Every weight by name (parameter ids differ between runs, values must not).
    fn weights(model: &Llama) -> Vec<(String, Vec<f32>)> {
        radit_models::export::llama_tensors(model)
            .unwrap()
            .into_iter()
            .map(|(name, t)| (name, t.data))
            .collect()
    }

    fn run(
        dir: &std::path::Path,
        cfg: &TrainConfig,
        resume: bool,
    ) -> Result<(Llama, TrainerState, Outcome), String> {
        run_with(dir, cfg, resume, None)
    }

    fn run_with(
        dir: &std::path::Path,
        cfg: &TrainConfig,
        resume: bool,
        lora: Option<&LoraConfig>,
    ) -> Result<(Llama, TrainerState, Outcome), String> {
        let device = Device::flex().autodiff();
        let model = match lora {
            Some(l) => apply_lora(tiny(&device), l).map_err(|e| e.to_string())?,
            None => tiny(&device),
        };
        let mut logger = MetricLogger::new();
        let ctx = RunContext {
            run_dir: dir,
            resume,
            extra_files: &[("recipe.toml", b"x = 1")],
            logger: &mut logger,
            stop: None,
            evaluate: None,
        };
        train_lm(model, &mut Cycle::new(), cfg, ctx).map_err(|e| e.to_string())
    }

    #[test]
    fn lora_trains_only_adapted_projections_and_resumes_exactly() {
        let lora = LoraConfig {
            rank: 2,
            alpha: 4.0,
            targets: vec!["q_proj".into(), "v_proj".into()],
            seed: 3,
        };
        let device = Device::flex().autodiff();
        let adapted = apply_lora(tiny(&device), &lora).unwrap();
        let (trainable, total) = parameter_counts(&adapted);
        // 2 layers × (q: 32→32, v: 32→16 with 2 KV heads of 8) × rank 2 adapters.
        assert_eq!(
            trainable,
            2 * (2 * (32 + 32) + 2 * (32 + 16)),
            "{trainable} of {total}"
        );
        let base = weights(&tiny(&Device::flex()));

        let straight_dir = tempfile::tempdir().unwrap();
        let (straight, straight_state, _) =
            run_with(straight_dir.path(), &config(6), false, Some(&lora)).unwrap();
        // Steps 0 and 4 see the same two micro-batches (8 batches, 2 per step).
        assert!(
            straight_state.losses[4] < straight_state.losses[0],
            "{:?}",
            straight_state.losses
        );
        let trained = weights(&straight);
        for ((name, before), (_, after)) in base.iter().zip(&trained) {
            let adapted = name.contains("q_proj") || name.contains("v_proj");
            assert_eq!(
                before != after,
                adapted,
                "{name}: changed = {}",
                before != after
            );
        }

        let split_dir = tempfile::tempdir().unwrap();
        run_with(split_dir.path(), &config(3), false, Some(&lora)).unwrap();
        let (resumed, resumed_state, _) =
            run_with(split_dir.path(), &config(6), true, Some(&lora)).unwrap();
        assert_eq!(resumed_state.losses, straight_state.losses);
        assert_eq!(weights(&resumed), trained);
        let err = apply_lora(
            tiny(&device),
            &LoraConfig {
                targets: vec!["qproj".into()],
                ..LoraConfig::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("qproj") && err.contains("q_proj"), "{err}");
    }

    #[test]
    fn resumed_run_equals_uninterrupted_run_bitwise() {
        let straight_dir = tempfile::tempdir().unwrap();
        let (straight, straight_state, outcome) =
            run(straight_dir.path(), &config(6), false).unwrap();
        assert_eq!(outcome, Outcome::Finished);
        assert_eq!(straight_state.losses.len(), 6);
        assert!(straight_state.losses[5] < straight_state.losses[0]);

        let split_dir = tempfile::tempdir().unwrap();
        run(split_dir.path(), &config(3), false).unwrap();
        assert!(split_dir
            .path()
            .join("checkpoints/step-00000003/recipe.toml")
            .is_file());
        // A fresh process would start from the base weights and a fresh data source.
        let (resumed, resumed_state, _) = run(split_dir.path(), &config(6), true).unwrap();
        assert_eq!(resumed_state.losses, straight_state.losses);
        assert_eq!(weights(&resumed), weights(&straight));
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let device = Device::flex().autodiff();
        let model = tiny(&device);
        let (batch, mask) = example();
        let targets = LmTargets::from_answer_mask(&batch, &mask).unwrap();
        let loss = answer_nll(&model, &batch, &targets).unwrap();
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let (model, before) = clip_global_norm(model, &mut grads, None);
        assert!(before > 0.01, "norm {before}");
        let (model, again) = clip_global_norm(model, &mut grads, Some(before / 4.0));
        assert_eq!(again, before);
        let (_, after) = clip_global_norm(model, &mut grads, None);
        assert!(
            (after - before / 4.0).abs() < 1e-3 * before,
            "{before} -> {after}"
        );
    }

    #[test]
    fn exploding_loss_stops_with_the_last_good_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(40);
        cfg.lr = 1e6;
        cfg.max_grad_norm = None;
        cfg.schedule = LrSchedule::Constant { warmup_steps: 0 };
        let err = run(dir.path(), &cfg, false).unwrap_err();
        assert!(err.contains("loss became"), "{err}");
    }

    #[test]
    fn evaluation_keeps_the_best_checkpoint_and_stops_early() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(10);
        // The default schedule's total of 6 would end before these 10 steps.
        cfg.schedule = LrSchedule::Constant { warmup_steps: 0 };
        cfg.eval_every = Some(1);
        cfg.early_stopping_patience = Some(2);
        cfg.keep_last = 1;
        cfg.save_every = Some(100);
        let scores = [0.5, 0.6, 0.4, 0.3, 0.9];
        let mut calls = 0;
        let mut evaluator = |_: &Llama| -> Result<Vec<(String, f64)>, BoxError> {
            calls += 1;
            Ok(vec![("dev/em".to_string(), scores[calls - 1])])
        };
        let device = Device::flex().autodiff();
        let mut logger = MetricLogger::new();
        let ctx = RunContext {
            run_dir: dir.path(),
            resume: false,
            extra_files: &[],
            logger: &mut logger,
            stop: None,
            evaluate: Some(&mut evaluator),
        };
        let (_, state, outcome) = train_lm(tiny(&device), &mut Cycle::new(), &cfg, ctx).unwrap();
        assert_eq!(outcome, Outcome::EarlyStopped);
        assert_eq!(state.step, 4);
        assert_eq!(state.best, Some((0.6, 2)));
        let kept: Vec<String> = std::fs::read_dir(dir.path().join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("step-"))
            .collect();
        // keep_last = 1: the newest step directory, and the best in checkpoints/best.
        assert_eq!(kept, vec!["step-00000004".to_string()]);
        let best_dir = dir.path().join("checkpoints/best");
        assert_eq!(state.best_checkpoint.as_deref(), Some(best_dir.as_path()));
        let best = radit_train::checkpoint::Checkpoint::open(&best_dir).unwrap();
        assert_eq!(best.step(), 2);
    }
}
