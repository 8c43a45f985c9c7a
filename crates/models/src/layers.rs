//! Building blocks shared by the decoder and the encoder, and helpers to turn host
//! tensors from a checkpoint into burn parameters.

use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear};
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{ModelError, Result};
use crate::weights::{HostTensor, TensorSource};

/// Root-mean-square normalization (Llama): `x / sqrt(mean(x²) + eps) * weight`.
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// Per-channel gain.
    pub weight: Param<Tensor<1>>,
    #[module(skip)]
    eps: f64,
}

impl RmsNorm {
    /// Loads `{prefix}.weight`.
    pub fn load(
        source: &dyn TensorSource,
        prefix: &str,
        dim: usize,
        eps: f64,
        device: &Device,
    ) -> Result<Self> {
        Ok(Self {
            weight: param1(
                source.read_shaped(&format!("{prefix}.weight"), &[dim])?,
                device,
            ),
            eps,
        })
    }

    /// Normalizes over the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let rms = x
            .clone()
            .square()
            .mean_dim(D - 1)
            .add_scalar(self.eps)
            .sqrt();
        x.div(rms).mul(self.weight.val().unsqueeze())
    }

    /// The epsilon added to the mean square.
    pub fn eps(&self) -> f64 {
        self.eps
    }
}

/// Layer normalization with affine parameters (BERT): biased variance, as PyTorch computes it.
#[derive(Module, Debug)]
pub struct LayerNorm {
    /// Per-channel gain.
    pub weight: Param<Tensor<1>>,
    /// Per-channel shift.
    pub bias: Param<Tensor<1>>,
    #[module(skip)]
    eps: f64,
}

impl LayerNorm {
    /// Loads `{prefix}.weight` and `{prefix}.bias` (or the older `gamma`/`beta` names).
    pub fn load(
        source: &dyn TensorSource,
        prefix: &str,
        dim: usize,
        eps: f64,
        device: &Device,
    ) -> Result<Self> {
        let (w, b) = if source.contains(&format!("{prefix}.gamma")) {
            ("gamma", "beta")
        } else {
            ("weight", "bias")
        };
        Ok(Self {
            weight: param1(
                source.read_shaped(&format!("{prefix}.{w}"), &[dim])?,
                device,
            ),
            bias: param1(
                source.read_shaped(&format!("{prefix}.{b}"), &[dim])?,
                device,
            ),
            eps,
        })
    }

    /// Normalizes over the last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let centered = x.clone().sub(x.mean_dim(D - 1));
        let var = centered.clone().square().mean_dim(D - 1);
        centered
            .div(var.add_scalar(self.eps).sqrt())
            .mul(self.weight.val().unsqueeze())
            .add(self.bias.val().unsqueeze())
    }
}

/// A 1-D parameter from a host tensor.
pub fn param1(t: HostTensor, device: &Device) -> Param<Tensor<1>> {
    let n = t.data.len();
    Param::from_tensor(Tensor::from_data(TensorData::new(t.data, [n]), device))
}

/// A 2-D parameter from a host tensor, kept in its stored `[rows, cols]` layout.
pub fn param2(t: HostTensor, device: &Device) -> Param<Tensor<2>> {
    let [rows, cols] = [t.shape[0], t.shape.get(1).copied().unwrap_or(1)];
    Param::from_tensor(Tensor::from_data(
        TensorData::new(t.data, [rows, cols]),
        device,
    ))
}

/// Loads a PyTorch `nn.Linear` (`weight` stored `[out, in]`) as a burn [`Linear`]
/// (`weight` held `[in, out]`). The transpose happens once, on the host.
pub fn load_linear(
    source: &dyn TensorSource,
    prefix: &str,
    d_in: usize,
    d_out: usize,
    bias: bool,
    device: &Device,
) -> Result<Linear> {
    let w = source.read_shaped(&format!("{prefix}.weight"), &[d_out, d_in])?;
    let weight = HostTensor {
        shape: vec![d_in, d_out],
        data: transpose(&w.data, d_out, d_in),
    };
    let bias = if bias {
        Some(param1(
            source.read_shaped(&format!("{prefix}.bias"), &[d_out])?,
            device,
        ))
    } else {
        None
    };
    Ok(Linear {
        weight: param2(weight, device),
        bias,
    })
}

/// Loads an embedding table `[rows, dim]`.
pub fn load_embedding(
    source: &dyn TensorSource,
    name: &str,
    rows: usize,
    dim: usize,
    device: &Device,
) -> Result<Embedding> {
    Ok(Embedding {
        weight: param2(source.read_shaped(name, &[rows, dim])?, device),
    })
}

/// Row-major transpose of a `[rows, cols]` matrix.
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; data.len()];
    // Blocked so both sides stay in cache for the large projection matrices.
    const B: usize = 32;
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for r in r0..(r0 + B).min(rows) {
                for c in c0..(c0 + B).min(cols) {
                    out[c * rows + r] = data[r * cols + c];
                }
            }
        }
    }
    out
}

/// Reads a tensor back to the host as f32.
pub fn to_host<const D: usize>(t: Tensor<D>) -> Result<HostTensor> {
    let shape = t.dims().to_vec();
    let data = t
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Readback(format!("{e:?}")))?;
    Ok(HostTensor { shape, data })
}

/// A linear layer's weight in PyTorch `[out, in]` layout, for export.
pub fn linear_to_torch(linear: &Linear) -> Result<(HostTensor, Option<HostTensor>)> {
    let w = to_host(linear.weight.val())?;
    let (d_in, d_out) = (w.shape[0], w.shape[1]);
    let weight = HostTensor {
        shape: vec![d_out, d_in],
        data: transpose(&w.data, d_in, d_out),
    };
    let bias = match &linear.bias {
        Some(b) => Some(to_host(b.val())?),
        None => None,
    };
    Ok((weight, bias))
}
