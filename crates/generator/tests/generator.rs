//! The answer-only loss on a tiny random Llama: which labels count, and that it trains.

use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Device;
use radit_generator::{answer_nll, LmTargets};
use radit_models::config::LlamaConfig;
use radit_models::{random_llama, Llama, PaddingSide, TokenBatch};

fn tiny(device: &Device) -> Llama {
    let config = LlamaConfig {
        vocab_size: 64,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 8,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: None,
        max_position_embeddings: 64,
        tie_word_embeddings: true,
        attention_bias: false,
        bos_token_id: None,
        eos_token_ids: vec![],
        architecture: "LlamaForCausalLM".into(),
    };
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
