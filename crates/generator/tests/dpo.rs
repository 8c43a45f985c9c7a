//! DPO on a tiny random Llama: the loss is the paper's formula, it trains, π = π_ref gives
//! exactly ln 2 at the start, both sides of a pair share the prompt, and the position resumes.

use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use radit_data::{BoxError, BuildReport, ExampleKey, InstanceBuilder, InstanceConfig, Tokenize};
use radit_generator::dpo::{dpo_logits, dpo_loss, pair_instances, DpoConfig, DpoObjective};
use radit_models::config::LlamaConfig;
use radit_models::{random_llama, Llama};
use radit_train::trainer::Objective;

const VOCAB: usize = 64;
const PAD: u32 = 0;

/// Characters folded into the tiny vocabulary; 1 is BOS and 2 EOS.
struct FoldTok;

impl Tokenize for FoldTok {
    fn encode(&self, text: &str) -> Result<Vec<u32>, BoxError> {
        Ok(text
            .chars()
            .map(|c| 3 + u32::from(c) % (VOCAB as u32 - 3))
            .collect())
    }
    fn bos_id(&self) -> Option<u32> {
        Some(1)
    }
    fn eos_id(&self) -> Option<u32> {
        Some(2)
    }
}

fn tiny(device: &Device) -> Llama {
    let config = LlamaConfig::new(VOCAB, 32, 64, 2, 4, 2);
    Llama::load(&random_llama(&config, 11), config, device).unwrap()
}

fn builder(max_len: usize) -> InstanceBuilder<FoldTok> {
    InstanceBuilder::new(
        FoldTok,
        InstanceConfig {
            max_len,
            add_bos: true,
            seed: 3,
        },
    )
    .unwrap()
}

/// (prompt, chosen, rejected, background) of answers with different lengths, so rows of a
/// micro-batch need padding.
const PREFERENCES: [(&str, &str, &str, &str); 5] = [
    (
        "Who opened Quorble Cafe?",
        "Ada Lint",
        "John",
        "Ada Lint opened it.",
    ),
    (
        "Where is Quorble Cafe?",
        "Lisbon",
        "in Porto, I think",
        "It is in Lisbon.",
    ),
    (
        "When did it open?",
        "1999",
        "last year",
        "It opened in 1999.",
    ),
    (
        "What does it serve?",
        "tea and pie",
        "pizza",
        "Tea and pie only.",
    ),
    (
        "Is it open on Sunday?",
        "no",
        "yes, always",
        "Closed on Sundays.",
    ),
];

fn objective(reference: &Llama, beta: f64, batch_size: usize) -> DpoObjective {
    let builder = builder(256);
    let mut report = BuildReport::default();
    let pairs = PREFERENCES
        .iter()
        .enumerate()
        .map(|(i, (p, c, r, bg))| {
            let key = ExampleKey {
                dataset: 0,
                example: i,
            };
            pair_instances(&builder, key, p, c, r, Some(bg), &mut report)
                .unwrap()
                .unwrap()
        })
        .collect();
    DpoObjective::new(
        reference,
        pairs,
        DpoConfig {
            beta,
            batch_size,
            seed: 5,
            pad_id: PAD,
        },
    )
    .unwrap()
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_scalar::<f32>()
}

#[test]
fn the_loss_of_hand_set_log_probs_is_the_formula() {
    let device = Device::flex();
    let t = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &device);
    let pc = [-1.0f32, -5.0, -2.0, -0.5];
    let pr = [-3.0f32, -1.0, -2.0, -40.0];
    let rc = [-2.0f32, -4.0, -1.0, -30.0];
    let rr = [-2.5f32, -2.0, -3.0, -1.0];
    for beta in [0.1, 0.5, 1.0, 20.0] {
        let expected: f64 = (0..4)
            .map(|i| {
                let z = beta
                    * ((f64::from(pc[i]) - f64::from(rc[i]))
                        - (f64::from(pr[i]) - f64::from(rr[i])));
                // −log σ(z) = log(1 + e^{−z}), written stably for either sign.
                if z >= 0.0 {
                    (-z).exp().ln_1p()
                } else {
                    -z + z.exp().ln_1p()
                }
            })
            .sum::<f64>()
            / 4.0;
        let z = dpo_logits(t(&pc), t(&pr), t(&rc), t(&rr), beta)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let z0 = beta * ((-1.0 + 2.0) - (-3.0 + 2.5));
        assert!((f64::from(z[0]) - z0).abs() < 1e-5, "{z:?}");
        let loss = scalar(dpo_loss(t(&pc), t(&pr), t(&rc), t(&rr), beta));
        assert!(loss.is_finite(), "beta {beta}: {loss}");
        assert!(
            (f64::from(loss) - expected).abs() < 1e-4 * expected.max(1.0),
            "beta {beta}: {loss} vs {expected}"
        );
    }
}

/// At step 0 the policy is the reference, every logit is 0 and the loss is ln 2. The reference
/// is scored on the inference device in index order, the policy on the autodiff device in the
/// sampler's shuffled micro-batches (other rows, other padding), so this holds only if both
/// paths score the same tokens the same way.
#[test]
fn at_the_start_the_loss_is_ln_2() {
    let reference = tiny(&Device::flex());
    let policy = tiny(&Device::flex().autodiff());
    let mut objective = objective(&reference, 1.0, 2);
    let (c, r) = objective.reference(0).unwrap();
    assert!(c < 0.0 && r < 0.0 && c != r, "{c} {r}");
    let z = objective
        .logits(&policy, &[4, 0, 2, 1, 3])
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(z.iter().all(|v| v.abs() < 1e-5), "{z:?}");
    for step in 0..3 {
        let loss = scalar(objective.next_loss(&policy, step).unwrap().loss);
        assert!(
            (f64::from(loss) - std::f64::consts::LN_2).abs() < 1e-6,
            "step {step}: {loss}"
        );
    }
}

#[test]
fn adamw_steps_widen_the_margin_and_lower_the_loss() {
    let reference = tiny(&Device::flex());
    let mut policy = tiny(&Device::flex().autodiff());
    let mut objective = objective(&reference, 0.5, PREFERENCES.len());
    let all: Vec<usize> = (0..PREFERENCES.len()).collect();
    let mean_z = |objective: &DpoObjective, policy: &Llama| {
        scalar(objective.logits(policy, &all).unwrap().mean())
    };
    let first_loss = scalar(objective.loss(&policy, &all).unwrap());
    let first_z = mean_z(&objective, &policy);
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    for step in 0..10 {
        let loss = objective.next_loss(&policy, step).unwrap().loss;
        let grads = GradientsParams::from_grads(loss.backward(), &policy);
        policy = optim.step(1e-2, policy, grads);
    }
    let last_loss = scalar(objective.loss(&policy, &all).unwrap());
    let last_z = mean_z(&objective, &policy);
    assert!(
        last_loss < first_loss - 0.1,
        "loss {first_loss} -> {last_loss}"
    );
    assert!(last_z > first_z + 0.2, "margin {first_z} -> {last_z}");
}

#[test]
fn both_answers_of_a_pair_share_one_prompt_when_the_background_is_cut() {
    // Room for the instruction and either answer, but not the whole background.
    let builder = builder(60);
    let mut report = BuildReport::default();
    let key = ExampleKey {
        dataset: 0,
        example: 0,
    };
    let background = "a long background about the cafe ".repeat(4);
    let pair = pair_instances(
        &builder,
        key,
        "Who?",
        "Ada",
        "a much longer rejected answer",
        Some(&background),
        &mut report,
    )
    .unwrap()
    .unwrap();
    let (c, r) = (&pair.chosen, &pair.rejected);
    assert!(c.background_tokens_dropped > 0, "{report}");
    assert_eq!(c.prompt_len, r.prompt_len);
    assert_eq!(c.ids[..c.prompt_len], r.ids[..r.prompt_len]);
    assert_ne!(c.ids[c.prompt_len..], r.ids[r.prompt_len..]);
    for inst in [c, r] {
        assert!(inst.len() <= 60);
        assert_eq!(inst.answer_mask.len(), inst.len());
        assert!(inst.answer_mask[..inst.prompt_len].iter().all(|&m| m == 0));
        assert!(inst.answer_mask[inst.prompt_len..].iter().all(|&m| m == 1));
    }
    // A pair whose answer cannot fit is skipped, not an error.
    let too_long = "x".repeat(80);
    let skipped = pair_instances(&builder, key, "Who?", "Ada", &too_long, None, &mut report);
    assert!(skipped.unwrap().is_none());
}

#[test]
fn the_data_position_resumes_exactly() {
    let reference = tiny(&Device::flex());
    let policy = tiny(&Device::flex());
    let mut a = objective(&reference, 0.1, 2);
    for step in 0..4 {
        a.next_loss(&policy, step).unwrap();
    }
    let state = a.state().unwrap();
    let mut b = objective(&reference, 0.1, 2);
    b.restore(&state).unwrap();
    for step in 4..8 {
        let (x, y) = (
            scalar(a.next_loss(&policy, step).unwrap().loss),
            scalar(b.next_loss(&policy, step).unwrap().loss),
        );
        assert_eq!(x.to_bits(), y.to_bits(), "step {step}");
    }
    assert!(b.restore(b"not json").is_err());
}
