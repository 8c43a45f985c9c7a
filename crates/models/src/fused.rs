//! radit's own kernels for hot elementwise chains, as one burn backend extension.
//!
//! burn-flex computes the exact (erf) GELU and its backward one element at a time through
//! libm's scalar `erff` and `expf`; on W2 (BERT R-ft) that was about a quarter of a training
//! step. [`gelu`] is the same function with the CPU path vectorized: a rational erf and a
//! polynomial exp, both branch-free, compiled for AVX-512 when the CPU has it and split over
//! the rayon pool. Other backends (wgpu through CubeCL) keep burn's own GELU, and autodiff
//! routes the backward through [`FusedOps::gelu_erf_backward`], so the model code is one call
//! on every device.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::ops::ActivationOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, Cube, Dispatch, Flex, TensorMetadata};
use burn::tensor::{DType, Tensor, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;

/// Operations radit fuses itself. Every method has a default built from burn's own ops, so a
/// backend without a kernel of ours still runs the model.
#[backend_extension(Flex, Cube, Autodiff)]
pub trait FusedOps: Backend {
    /// `gelu(x) = x · Φ(x)`, Φ the standard normal CDF through erf (BERT's GELU, not the tanh
    /// approximation).
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    /// `grad · gelu'(x)`, with `gelu'(x) = Φ(x) + x · φ(x)`.
    fn gelu_erf_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu_backward(x, grad)
    }

    /// `silu(x) = x · σ(x)` (Llama's MLP gate).
    fn silu_fused(x: FloatTensor<Self>) -> FloatTensor<Self> {
        silu_composed::<Self>(x)
    }

    /// `grad · silu'(x)`, with `silu'(x) = σ(x) · (1 + x · (1 − σ(x)))`.
    fn silu_fused_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        silu_backward_composed::<Self>(x, grad)
    }

    /// Softmax over the last dimension (the backend's own kernel).
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let last = x.shape().num_dims() - 1;
        Self::softmax(x, last)
    }

    /// The softmax backward from its output `y`: `y ⊙ (grad − Σ_last grad ⊙ y)`.
    fn softmax_last_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        softmax_backward_composed::<Self>(y, grad)
    }
}

/// The softmax backward from burn's ops.
fn softmax_backward_composed<B: Backend>(
    y: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let last = y.shape().num_dims() - 1;
    let dot = B::float_sum_dim(B::float_mul(grad.clone(), y.clone()), last);
    B::float_mul(y, B::float_sub(grad, dot))
}

/// SiLU from burn's ops (backends without a kernel of ours).
fn silu_composed<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    B::float_mul(x.clone(), B::sigmoid(x))
}

/// SiLU's backward from burn's ops.
fn silu_backward_composed<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    let s = B::sigmoid(x.clone());
    let one_minus = B::float_add_scalar(B::float_neg(s.clone()), 1.0f32.into());
    let inner = B::float_add_scalar(B::float_mul(x, one_minus), 1.0f32.into());
    B::float_mul(grad, B::float_mul(s, inner))
}

/// The exact GELU of `x` (see [`FusedOps::gelu_erf`]), differentiable on autodiff devices.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::gelu_erf(x.into_dispatch()))
}

/// `silu(x) = x · σ(x)` of `x` (see [`FusedOps::silu_fused`]), differentiable on autodiff
/// devices.
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::silu_fused(x.into_dispatch()))
}

/// Softmax of `x` over its last dimension, differentiable on autodiff devices with a
/// one-pass backward (burn's autodiff differentiates its softmax op by op, through a scalar
/// `exp` on the CPU).
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::softmax_last(x.into_dispatch()))
}

/// CubeCL runtimes (wgpu): burn's kernels.
impl FusedOps for Cube {}

impl FusedOps for Flex {
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        flex_unary(Kernel::GeluForward, x, Self::gelu)
    }

    fn gelu_erf_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        flex_with_grad(Kernel::GeluBackward, x, grad, Self::gelu_backward)
    }

    fn silu_fused(x: FloatTensor<Self>) -> FloatTensor<Self> {
        flex_unary(Kernel::SiluForward, x, silu_composed::<Self>)
    }

    fn silu_fused_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        flex_with_grad(
            Kernel::SiluBackward,
            x,
            grad,
            silu_backward_composed::<Self>,
        )
    }

    fn softmax_last_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let shape = y.shape();
        let row = shape[shape.num_dims() - 1];
        flex_with_grad(
            Kernel::SoftmaxBackward { row },
            y,
            grad,
            softmax_backward_composed::<Self>,
        )
    }
}

/// `kernel` over a dense f32 copy of `x`; `fallback` (burn's op) for other dtypes.
fn flex_unary(
    kernel: Kernel,
    x: FlexTensor,
    fallback: impl FnOnce(FlexTensor) -> FlexTensor,
) -> FlexTensor {
    if x.dtype() != DType::F32 {
        return fallback(x);
    }
    let x = contiguous(x);
    let Some(input) = x.as_slice::<f32>() else {
        return fallback(x);
    };
    let mut out = vec![0.0f32; input.len()];
    parallel_map(kernel, input, None, &mut out);
    FlexTensor::from_data(TensorData::new(out, x.layout().shape().clone()))
}

/// `kernel` over `x` and its incoming gradient; `fallback` for other dtypes or shapes.
fn flex_with_grad(
    kernel: Kernel,
    x: FlexTensor,
    grad: FlexTensor,
    fallback: impl FnOnce(FlexTensor, FlexTensor) -> FlexTensor,
) -> FlexTensor {
    if x.dtype() != DType::F32 || grad.dtype() != DType::F32 || x.shape() != grad.shape() {
        return fallback(x, grad);
    }
    let (x, grad) = (contiguous(x), contiguous(grad));
    let (Some(input), Some(g)) = (x.as_slice::<f32>(), grad.as_slice::<f32>()) else {
        return fallback(x, grad);
    };
    let mut out = vec![0.0f32; input.len()];
    parallel_map(kernel, input, Some(g), &mut out);
    FlexTensor::from_data(TensorData::new(out, x.layout().shape().clone()))
}

/// The elementwise ops of [`FusedOps`] with an autodiff node: the forward keeps its input,
/// the backward calls the op's `_backward` method of the inner backend.
macro_rules! unary_with_backward {
    ($name:ident, $node:ident, $backward:ident) => {
        fn $name(x: FloatTensor<Self>) -> FloatTensor<Self> {
            #[derive(Debug)]
            struct $node;

            impl<B: Backend + FusedOps> Backward<B, 1> for $node {
                type State = NodeId;

                fn backward(
                    self,
                    ops: Ops<Self::State, 1>,
                    grads: &mut Gradients,
                    checkpointer: &mut Checkpointer,
                ) {
                    let input = checkpointer.retrieve_node_output(ops.state);
                    unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                        B::$backward(input, grad)
                    });
                }
            }

            // Compute-bound: the input is kept for the backward rather than recomputed.
            match $node.prepare::<C>([x.node()]).compute_bound().stateful() {
                OpsKind::Tracked(mut prep) => {
                    let state = prep.checkpoint(&x);
                    prep.finish(state, B::$name(x.into_primitive()))
                }
                OpsKind::UnTracked(prep) => prep.finish(B::$name(x.into_primitive())),
            }
        }
    };
}

impl<B: Backend + FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    unary_with_backward!(gelu_erf, GeluErf, gelu_erf_backward);
    unary_with_backward!(silu_fused, SiluFused, silu_fused_backward);

    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SoftmaxLast;

        impl<B: Backend + FusedOps> Backward<B, 1> for SoftmaxLast {
            /// The softmax output: all its backward needs.
            type State = FloatTensor<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let y = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::softmax_last_backward(y, grad)
                });
            }
        }

        match SoftmaxLast
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::softmax_last(x.into_primitive());
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::softmax_last(x.into_primitive())),
        }
    }
}

/// `x` itself when it is dense from offset 0, else a contiguous copy.
fn contiguous(x: FlexTensor) -> FlexTensor {
    if x.is_contiguous() && x.layout().start_offset() == 0 {
        x
    } else {
        x.to_contiguous()
    }
}

/// Elements per rayon task: large enough that a task costs more than its scheduling.
const TASK: usize = 1 << 14;

/// The elementwise kernels of this module.
#[derive(Clone, Copy)]
enum Kernel {
    /// `gelu(x)`.
    GeluForward,
    /// `g · gelu'(x)`.
    GeluBackward,
    /// `silu(x)`.
    SiluForward,
    /// `g · silu'(x)`.
    SiluBackward,
    /// The softmax backward from its output, rows of `row` elements.
    SoftmaxBackward {
        /// Row length (the softmax dimension).
        row: usize,
    },
}

impl Kernel {
    /// Runs the kernel's lane loop; inlined into each caller, so the loop is compiled (and
    /// vectorized) for the caller's target features.
    #[inline(always)]
    fn run(self, x: &[f32], g: &[f32], out: &mut [f32]) {
        match self {
            Kernel::GeluForward => gelu_forward_lanes(x, out),
            Kernel::GeluBackward => gelu_backward_lanes(x, g, out),
            Kernel::SiluForward => silu_forward_lanes(x, out),
            Kernel::SiluBackward => silu_backward_lanes(x, g, out),
            Kernel::SoftmaxBackward { row } => softmax_backward_rows(row, x, g, out),
        }
    }

    /// Elements per rayon task: whole rows for a row kernel.
    fn task(self) -> usize {
        match self {
            Kernel::SoftmaxBackward { row } => (TASK / row.max(1)).max(1) * row.max(1),
            _ => TASK,
        }
    }
}

/// Runs `kernel` over `input` (and `grad`, element for element) into `out`, in tasks of
/// [`TASK`] elements on the rayon pool.
fn parallel_map(kernel: Kernel, input: &[f32], grad: Option<&[f32]>, out: &mut [f32]) {
    let task = kernel.task();
    let run = |(i, out): (usize, &mut [f32])| {
        let start = i * task;
        let x = &input[start..start + out.len()];
        let g = grad.map_or(&[][..], |g| &g[start..start + out.len()]);
        dispatch(kernel, x, g, out);
    };
    if out.len() <= task {
        run((0, out));
    } else {
        out.par_chunks_mut(task).enumerate().for_each(run);
    }
}

/// Runs `kernel` compiled for AVX-512 when the CPU has it (the same code, wider lanes).
fn dispatch(kernel: Kernel, x: &[f32], g: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports every feature the function is compiled for (checked
            // just above); its body is safe code.
            unsafe { avx512(kernel, x, g, out) };
            return;
        }
    }
    kernel.run(x, g, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn avx512(kernel: Kernel, x: &[f32], g: &[f32], out: &mut [f32]) {
    kernel.run(x, g, out);
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2π).
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// `gelu(x)` for every element.
#[inline(always)]
fn gelu_forward_lanes(x: &[f32], out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(x) {
        *o = 0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2));
    }
}

/// `g · gelu'(x)` for every element.
#[inline(always)]
fn gelu_backward_lanes(x: &[f32], g: &[f32], out: &mut [f32]) {
    for ((o, &x), &g) in out.iter_mut().zip(x).zip(g) {
        let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
        let pdf = INV_SQRT_2PI * exp(-0.5 * x * x);
        *o = g * (cdf + x * pdf);
    }
}

/// `y ⊙ (g − Σ g ⊙ y)` for every row of `row` elements (`y` the softmax output). The row sum
/// is kept in 16 partial sums, so it vectorizes (a reassociation of the sum).
#[inline(always)]
fn softmax_backward_rows(row: usize, y: &[f32], g: &[f32], out: &mut [f32]) {
    if row == 0 {
        return; // An empty softmax dimension: no element, nothing to write.
    }
    for ((y, g), out) in y
        .chunks_exact(row)
        .zip(g.chunks_exact(row))
        .zip(out.chunks_exact_mut(row))
    {
        let mut partial = [0.0f32; 16];
        let (y16, y_tail) = y.split_at(row - row % 16);
        let (g16, g_tail) = g.split_at(row - row % 16);
        for (y, g) in y16.chunks_exact(16).zip(g16.chunks_exact(16)) {
            for l in 0..16 {
                partial[l] += y[l] * g[l];
            }
        }
        let tail: f32 = y_tail.iter().zip(g_tail).map(|(y, g)| y * g).sum();
        let dot = partial.iter().sum::<f32>() + tail;
        for ((o, &y), &g) in out.iter_mut().zip(y).zip(g) {
            *o = y * (g - dot);
        }
    }
}

/// σ(x) = 1 / (1 + e^−x), with the vectorizable [`exp`].
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `silu(x)` for every element.
#[inline(always)]
fn silu_forward_lanes(x: &[f32], out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(x) {
        *o = x * sigmoid(x);
    }
}

/// `g · silu'(x)` for every element.
#[inline(always)]
fn silu_backward_lanes(x: &[f32], g: &[f32], out: &mut [f32]) {
    for ((o, &x), &g) in out.iter_mut().zip(x).zip(g) {
        let s = sigmoid(x);
        *o = g * s * (1.0 + x * (1.0 - s));
    }
}

/// erf for f32, branch-free: `x · P(x²) / Q(x²)` on `x` clamped to ±3.925 (beyond it erf is
/// ±1 in f32), the rational minimax form XLA and Eigen use for single precision. Absolute
/// error 1.1e-7 in exact arithmetic, below 6e-7 (a few f32 ulps) as evaluated here (tested
/// against libm's f64 erf).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-3.925, 3.925);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906e-4;
    p = p * x2 - 2.954_600_1e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
}

/// e^x for f32, branch-free: `x = n·ln2 + r` with |r| ≤ ln2/2 (ln2 split in two for an exact
/// product), a degree-6 Taylor polynomial for e^r, and 2^n put in the exponent bits. Inputs
/// are clamped to [-87, 88] (the normal f32 range). Relative error below 3e-7.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and removing 1.5·2^23 rounds to the nearest integer without a branch.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn erf_and_exp_match_libm() {
        let mut worst_erf = 0.0f64;
        let mut worst_exp = 0.0f64;
        for i in -120_000..=120_000 {
            let x = i as f32 * 5e-5; // [-6, 6]
            let erf_err = (f64::from(erf(x)) - libm::erf(f64::from(x))).abs();
            worst_erf = worst_erf.max(erf_err);
            let y = x * 14.0; // [-84, 84]
            let reference = libm::exp(f64::from(y));
            worst_exp = worst_exp.max((f64::from(exp(y)) - reference).abs() / reference);
        }
        assert!(worst_erf < 6e-7, "erf: worst absolute error {worst_erf:e}");
        assert!(worst_exp < 3e-7, "exp: worst relative error {worst_exp:e}");
        assert!((erf(f32::INFINITY) - 1.0).abs() < 6e-7);
        assert!((erf(f32::NEG_INFINITY) + 1.0).abs() < 6e-7);
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
        // A NaN stays NaN, so a diverging run is still caught downstream.
        assert!(erf(f32::NAN).is_nan() && exp(f32::NAN).is_nan());
    }

    type Backward = fn(FloatTensor<Dispatch>, FloatTensor<Dispatch>) -> FloatTensor<Dispatch>;

    /// The kernels against the definition in f64, on lengths around the task size (one task,
    /// several, a ragged tail).
    #[test]
    fn flex_kernels_and_their_backwards_match_the_definitions() {
        let gelu_value = |x: f64| x * 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
        let gelu_slope = |x: f64| {
            let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
            cdf + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
        };
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let silu_value = |x: f64| x * sigmoid(x);
        let silu_slope = |x: f64| sigmoid(x) * (1.0 + x * (1.0 - sigmoid(x)));
        for n in [7, TASK, 3 * TASK + 5] {
            assert_kernel_matches(
                n,
                "gelu",
                gelu,
                <Dispatch as FusedOps>::gelu_erf_backward,
                &gelu_value,
                &gelu_slope,
            );
            assert_kernel_matches(
                n,
                "silu",
                silu,
                <Dispatch as FusedOps>::silu_fused_backward,
                &silu_value,
                &silu_slope,
            );
        }
    }

    /// `forward` and `backward` on `n` inputs in [-5, 5] against `value` and `slope` in f64.
    fn assert_kernel_matches(
        n: usize,
        name: &str,
        forward: fn(Tensor<1>) -> Tensor<1>,
        backward: Backward,
        value: &dyn Fn(f64) -> f64,
        slope: &dyn Fn(f64) -> f64,
    ) {
        let device = Device::flex();
        let xs: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 2001) as f32 / 200.0 - 5.0)
            .collect();
        let gs: Vec<f32> = (0..n).map(|i| ((i % 13) as f32 - 6.0) / 3.0).collect();
        let x = Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &device);
        let g = Tensor::<1>::from_data(TensorData::new(gs.clone(), [n]), &device);
        let y = forward(x.clone()).into_data().try_to_vec::<f32>().unwrap();
        let dx = Tensor::<1>::from_dispatch(backward(x.into_dispatch(), g.into_dispatch()))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for i in 0..n {
            let x = f64::from(xs[i]);
            assert!(
                (f64::from(y[i]) - value(x)).abs() < 2e-6,
                "{name}({x}) = {}",
                y[i]
            );
            let want = f64::from(gs[i]) * slope(x);
            assert!((f64::from(dx[i]) - want).abs() < 4e-6, "{name}'({x})");
        }
    }

    /// Autodiff through [`gelu`] and [`silu`] gives burn's own gradients (from a
    /// non-contiguous input too).
    #[test]
    fn the_gradients_match_burns_activations() {
        type Activation = fn(Tensor<2>) -> Tensor<2>;
        let pairs: [(Activation, Activation); 2] = [
            (gelu, burn::tensor::activation::gelu),
            (silu, burn::tensor::activation::silu),
        ];
        for (ours, burns) in pairs {
            assert_same_gradient(ours, burns);
        }
    }

    /// The fused softmax against burn's, value and gradient, on attention-shaped scores with
    /// masked keys (the additive −1e9 bias) and from a non-contiguous view.
    #[test]
    fn softmax_and_its_gradient_match_burns() {
        let device = Device::flex().autodiff();
        let (rows, keys) = (6, 37);
        let data: Vec<f32> = (0..rows * keys)
            .map(|i| {
                let (r, k) = (i / keys, i % keys);
                if k > r * 6 {
                    -1.0e9
                } else {
                    ((i * 7919) % 101) as f32 / 25.0 - 2.0
                }
            })
            .collect();
        let weights = Tensor::<3>::from_data(
            TensorData::new(
                (0..rows * keys).map(|i| (i % 7) as f32 - 3.0).collect(),
                [1, rows, keys],
            ),
            &device,
        );
        let run = |ours: bool| {
            let x = Tensor::<3>::from_data(TensorData::new(data.clone(), [rows, 1, keys]), &device)
                .require_grad();
            let t = x.clone().swap_dims(0, 1);
            let y = if ours {
                softmax_last(t)
            } else {
                burn::tensor::activation::softmax(t, 2)
            };
            let values = y.clone().into_data().try_to_vec::<f32>().unwrap();
            let grads = y.mul(weights.clone()).sum().backward();
            let grad = x
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            (values, grad)
        };
        let (ours, ours_grad) = run(true);
        let (burns, burns_grad) = run(false);
        for (a, b) in ours.iter().zip(&burns) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        for (a, b) in ours_grad.iter().zip(&burns_grad) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // Masked keys get exactly no weight and no gradient.
        assert_eq!(ours[keys - 1], 0.0);
        assert_eq!(ours_grad[keys - 1], 0.0);
    }

    fn assert_same_gradient(
        ours_fn: fn(Tensor<2>) -> Tensor<2>,
        burns_fn: fn(Tensor<2>) -> Tensor<2>,
    ) {
        let device = Device::flex().autodiff();
        let data: Vec<f32> = (0..96).map(|i| (i as f32 - 48.0) / 9.0).collect();
        let grad_of = |ours: bool| {
            let x = Tensor::<2>::from_data(TensorData::new(data.clone(), [8, 12]), &device)
                .require_grad();
            let t = x.clone().swap_dims(0, 1);
            let y = if ours { ours_fn(t) } else { burns_fn(t) };
            let weights = Tensor::<2>::from_data(
                TensorData::new((0..96).map(|i| (i % 5) as f32 - 2.0).collect(), [12, 8]),
                &device,
            );
            let loss = y.mul(weights).sum();
            let grads = loss.backward();
            let value = loss.into_scalar::<f32>();
            let grad = x
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            (value, grad)
        };
        let (ours, ours_grad) = grad_of(true);
        let (burns, burns_grad) = grad_of(false);
        assert!((ours - burns).abs() < 1e-4, "{ours} vs {burns}");
        for (a, b) in ours_grad.iter().zip(&burns_grad) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
