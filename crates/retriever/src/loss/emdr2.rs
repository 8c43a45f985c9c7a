//! `emdr2`: end-to-end training of the retriever as a latent variable (Sachan et al., 2021),
//! with the generator frozen.
//!
//! ```text
//! loss = − log Σ_k p_R(c_k | x) · p_LM(y | c_k ∘ x)
//!      = − logsumexp_k( log p_R(c_k | x) + log p_LM(y | c_k ∘ x) )
//! ```
//! computed in log space so that tiny continuation probabilities do not underflow. It is
//! minimised by putting all retrieval mass on the chunk with the highest `p_LM`.

use burn::tensor::activation::log_softmax;
use burn::tensor::Tensor;

use super::{LossBatch, LossError, RetrieverLoss};

/// The `emdr2` loss (no parameters).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Emdr2;

impl RetrieverLoss for Emdr2 {
    fn name(&self) -> &'static str {
        "emdr2"
    }
    fn loss(&self, batch: &LossBatch) -> Result<Tensor<1>, LossError> {
        let [b, _] = batch.retriever_logits.dims();
        let joint = log_softmax(batch.retriever_logits.clone(), 1).add(batch.lm_logprob.clone());
        // logsumexp with the row maximum factored out (the max is a constant shift: detached).
        let max = joint.clone().detach().max_dim(1);
        let lse = joint.sub(max.clone()).exp().sum_dim(1).log().add(max);
        Ok(lse.sum().neg().div_scalar(b.max(1) as f64))
    }
}
