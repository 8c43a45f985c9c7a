//! R-ft on tiny models: loss gradients and properties, the objective end to end, resume.

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use radit_retriever::loss::{LossBatch, LossParams, LossRegistry, RetrieverLoss};

const B: usize = 3;
const K: usize = 4;

fn host2(t: Tensor<2>) -> Vec<f32> {
    radit_models::layers::to_host(t).unwrap().data
}

fn tensor2(data: Vec<f32>, device: &Device) -> Tensor<2> {
    let n = data.len() / K;
    Tensor::from_data(TensorData::new(data, [n, K]), device)
}

/// A batch of constants (generator scores, LOO scores, positives) around `logits`.
fn batch_with(logits: Tensor<2>, device: &Device) -> LossBatch {
    let lm = vec![
        -3.0, -1.0, -6.0, -2.5, //
        -0.5, -4.0, -4.5, -0.7, //
        -9.0, -8.0, -2.0, -5.0,
    ];
    let tokens = vec![3.0, 3.0, 3.0, 3.0, 2.0, 2.0, 2.0, 2.0, 5.0, 5.0, 5.0, 5.0];
    let loo = vec![
        -2.0, -5.0, -1.5, -1.8, //
        -3.0, -0.9, -1.0, -2.0, //
        -1.0, -1.2, -6.0, -1.1,
    ];
    let positive = vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0];
    LossBatch {
        retriever_logits: logits,
        lm_logprob: tensor2(lm, device),
        answer_tokens: tensor2(tokens, device),
        loo_logprob: Some(tensor2(loo, device)),
        positive: Some(tensor2(positive, device)),
        human: None,
        human_weight: 0.0,
    }
}

fn loss_value(loss: &dyn RetrieverLoss, logits: Vec<f32>) -> f64 {
    let device = Device::flex();
    let batch = batch_with(tensor2(logits, &device), &device);
    f64::from(loss.loss(&batch).unwrap().into_scalar::<f32>())
}

fn all_losses() -> Vec<Box<dyn RetrieverLoss>> {
    let registry = LossRegistry::builtin();
    let mut out = Vec::new();
    for name in registry.names() {
        out.push(registry.build(name, &LossParams::default()).unwrap());
    }
    // Both KL directions and every signal of `lsr`, at a temperature where targets are soft.
    for (signal, direction) in [
        ("logprob", "target_retriever"),
        ("mean_logprob", "retriever_target"),
        ("prob", "target_retriever"),
    ] {
        let params: LossParams = serde_json::from_value(serde_json::json!({
            "signal": signal, "direction": direction, "temperature": 0.5
        }))
        .unwrap();
        out.push(registry.build("lsr", &params).unwrap());
    }
    out
}

#[test]
fn every_loss_has_the_gradient_of_its_value() {
    let logits = vec![
        0.3, -0.2, 1.1, 0.0, //
        -0.7, 0.4, 0.9, -1.3, //
        0.2, 0.25, -0.4, 0.8,
    ];
    let device = Device::flex().autodiff();
    for loss in all_losses() {
        let x = tensor2(logits.clone(), &device).require_grad();
        let value = loss.loss(&batch_with(x.clone(), &device)).unwrap();
        let grads = value.backward();
        let analytic = host2(x.grad(&grads).unwrap());
        let eps = 1e-2f32;
        for i in 0..logits.len() {
            let mut plus = logits.clone();
            plus[i] += eps;
            let mut minus = logits.clone();
            minus[i] -= eps;
            let numeric = (loss_value(loss.as_ref(), plus) - loss_value(loss.as_ref(), minus))
                / (2.0 * f64::from(eps));
            let a = f64::from(analytic[i]);
            assert!(
                (a - numeric).abs() <= 2e-3 + 2e-2 * numeric.abs(),
                "{loss:?} ∂/∂logit[{i}]: analytic {a}, numeric {numeric}"
            );
        }
    }
}

#[test]
fn kl_losses_vanish_when_the_retriever_matches_the_target() {
    let registry = LossRegistry::builtin();
    let lm = [
        -3.0f32, -1.0, -6.0, -2.5, -0.5, -4.0, -4.5, -0.7, -9.0, -8.0, -2.0, -5.0,
    ];
    let tokens = [
        3.0f32, 3.0, 3.0, 3.0, 2.0, 2.0, 2.0, 2.0, 5.0, 5.0, 5.0, 5.0,
    ];
    let loo = [
        -2.0f32, -5.0, -1.5, -1.8, -3.0, -0.9, -1.0, -2.0, -1.0, -1.2, -6.0, -1.1,
    ];
    let cases: Vec<(&str, serde_json::Value, Vec<f32>)> = vec![
        (
            "lsr",
            serde_json::json!({"signal": "logprob", "temperature": 0.5}),
            lm.iter().map(|v| v / 0.5).collect(),
        ),
        (
            "lsr",
            serde_json::json!({"signal": "prob", "temperature": 0.1, "direction": "target_retriever"}),
            lm.iter().map(|v| v.exp() / 0.1).collect(),
        ),
        (
            "replug",
            serde_json::json!({"beta": 0.2}),
            lm.iter().map(|v| v.exp() / 0.2).collect(),
        ),
        (
            "pdist",
            serde_json::json!({"temperature": 2.0}),
            lm.iter().zip(tokens).map(|(v, t)| v / t / 2.0).collect(),
        ),
        (
            "loop",
            serde_json::json!({"temperature": 1.0}),
            loo.iter().map(|v| -v).collect(),
        ),
    ];
    for (name, params, matching_logits) in cases {
        let params: LossParams = serde_json::from_value(params).unwrap();
        let loss = registry.build(name, &params).unwrap();
        let at_target = loss_value(loss.as_ref(), matching_logits);
        assert!(at_target.abs() < 1e-5, "{name}: {at_target}");
        let elsewhere = loss_value(loss.as_ref(), vec![0.0; B * K]);
        assert!(
            elsewhere > 1e-3,
            "{name} is not positive off target: {elsewhere}"
        );
    }
}

#[test]
fn emdr2_is_minimised_by_all_mass_on_the_best_chunk() {
    let emdr2 = LossRegistry::builtin()
        .build("emdr2", &LossParams::default())
        .unwrap();
    // Rows' best chunks (by lm_logprob): 1, 0, 2.
    let best = [1usize, 0, 2];
    let peaked: Vec<f32> = (0..B * K)
        .map(|i| if best[i / K] == i % K { 30.0 } else { 0.0 })
        .collect();
    let optimum = loss_value(emdr2.as_ref(), peaked);
    // −mean of the rows' best log-likelihoods.
    assert!(
        (optimum - (1.0 + 0.5 + 2.0) / 3.0).abs() < 1e-4,
        "{optimum}"
    );
    let mut rng = 7u64;
    for _ in 0..50 {
        let logits: Vec<f32> = (0..B * K)
            .map(|_| {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0
            })
            .collect();
        assert!(loss_value(emdr2.as_ref(), logits) >= optimum - 1e-6);
    }
}

#[test]
fn infonce_needs_positives_and_ignores_rows_without_one() {
    let infonce = LossRegistry::builtin()
        .build("infonce", &LossParams::default())
        .unwrap();
    assert!(infonce.requires().positive);
    let device = Device::flex();
    let logits = tensor2(vec![0.0; B * K], &device);
    let mut batch = batch_with(logits, &device);
    // Two rows have a positive; with uniform logits each contributes log K.
    let value = f64::from(infonce.loss(&batch).unwrap().into_scalar::<f32>());
    assert!((value - (K as f64).ln()).abs() < 1e-5, "{value}");
    batch.positive = None;
    let err = infonce.loss(&batch).unwrap_err().to_string();
    assert!(err.contains("positive"), "{err}");
}

#[test]
fn registry_errors_name_the_loss_and_the_choices() {
    let registry = LossRegistry::builtin();
    let err = registry
        .build("lsrr", &LossParams::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lsrr") && err.contains("lsr, ") && err.contains("infonce"),
        "{err}"
    );
    let params: LossParams =
        serde_json::from_value(serde_json::json!({"temprature": 0.1})).unwrap();
    let err = registry.build("lsr", &params).unwrap_err().to_string();
    assert!(
        err.contains("temprature") && err.contains("temperature"),
        "{err}"
    );
    let params: LossParams = serde_json::from_value(serde_json::json!({"beta": 0.1})).unwrap();
    let err = registry.build("emdr2", &params).unwrap_err().to_string();
    assert!(err.contains("no parameters"), "{err}");
    let params: LossParams =
        serde_json::from_value(serde_json::json!({"temperature": 0.0})).unwrap();
    assert!(registry.build("pdist", &params).is_err());
}

mod encoder {
    //! Gradients through a tiny BERT query encoder, and the R-ft objective end to end.
    use super::*;
    use radit_models::{random_bert, Bert, BertConfig, Encoder, Pooling, TextTokenizer};

    pub fn tiny_tokenizer(vocab: usize) -> TextTokenizer {
        radit_models::numbered_word_tokenizer(vocab).unwrap()
    }

    pub fn tiny_bert_config() -> BertConfig {
        BertConfig {
            vocab_size: 64,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 32,
            max_position_embeddings: 64,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
        }
    }

    pub fn tiny_encoder(device: &Device, seed: u64) -> Encoder {
        let config = tiny_bert_config();
        Encoder {
            model: Bert::load(&random_bert(&config, seed), config, device).unwrap(),
            tokenizer: tiny_tokenizer(64),
            pooling: Pooling::Mean,
            normalize: true,
            max_length: 64,
            source: "tiny".into(),
            weights_hash: format!("tiny-{seed}"),
        }
    }

    /// Moves every float parameter by `scale · direction(param)`, with a direction drawn
    /// per parameter from a fixed seed.
    struct Nudge {
        scale: f64,
    }

    impl ModuleMapper for Nudge {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let value = param.val();
            let direction = direction_like(&value);
            param.map(|t| t.add(direction.mul_scalar(self.scale)))
        }
    }

    fn direction_like<const D: usize>(t: &Tensor<D>) -> Tensor<D> {
        // Deterministic pseudo-random direction from the tensor's shape.
        let n: usize = t.dims().iter().product();
        let mut state = n as u64 ^ 0x9e37_79b9;
        let values: Vec<f32> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        Tensor::from_data(TensorData::new(values, t.dims()), &t.device())
    }

    struct DirectionalGrad<'a> {
        grads: &'a GradientsParams,
        total: f64,
    }

    impl burn::module::ModuleVisitor for DirectionalGrad<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let d = direction_like(&param.val()).to_device(&g.device());
                self.total += f64::from(g.mul(d).sum().into_scalar::<f32>());
            }
        }
    }

    fn encoder_loss(
        loss: &dyn RetrieverLoss,
        encoder: &Encoder,
        model: &Bert,
        docs: &Tensor<3>,
    ) -> Tensor<1> {
        let device = model.device();
        let queries = ["w5 w6 w7", "w9 w10 w11 w12", "w20 w3"];
        let q = encoder.embed_tensor_with(model, &queries).unwrap();
        let logits = q
            .reshape([B, 1, 16])
            .mul(docs.clone().to_device(&device))
            .sum_dim(2)
            .reshape([B, K])
            .div_scalar(0.1);
        loss.loss(&batch_with(logits, &device)).unwrap()
    }

    #[test]
    fn every_loss_trains_the_encoder_along_its_gradient() {
        let device = Device::flex().autodiff();
        let encoder = tiny_encoder(&device, 3);
        let docs = direction_like(&Tensor::<3>::zeros([B, K, 16], &Device::flex())).mul_scalar(4.0);
        for loss in all_losses() {
            let model = encoder.model.clone();
            let value = encoder_loss(loss.as_ref(), &encoder, &model, &docs);
            let grads = GradientsParams::from_grads(value.backward(), &model);
            let mut visitor = DirectionalGrad {
                grads: &grads,
                total: 0.0,
            };
            model.visit(&mut visitor);
            let plain = encoder.model.valid();
            let at = |scale: f64| {
                let moved = plain.clone().map(&mut Nudge { scale });
                f64::from(encoder_loss(loss.as_ref(), &encoder, &moved, &docs).into_scalar::<f32>())
            };
            let central = |eps: f64| (at(eps) - at(-eps)) / (2.0 * eps);
            // Richardson extrapolation cancels the O(eps²) error of central differences: the
            // direction moves every weight at once, so the loss is far from linear.
            let eps = 1e-3;
            let numeric = (4.0 * central(eps / 2.0) - central(eps)) / 3.0;
            assert!(
                numeric.abs() > 1e-2,
                "{loss:?}: the direction barely moves the loss ({numeric}); the check is void"
            );
            assert!(
                (visitor.total - numeric).abs() <= 1e-2 * numeric.abs(),
                "{loss:?}: directional derivative {} vs finite difference {numeric}",
                visitor.total
            );
        }
    }
}
