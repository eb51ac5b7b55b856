//! Log-probabilities of response tokens given their prompts, batched and differentiable.
//!
//! Only the rows that predict a response token go through the final norm and the LM head, so
//! the vocabulary-wide output costs `response tokens × vocab`, not `all tokens × vocab`.

use super::batch::TokenBatch;
use super::decoder::Decoder;
use super::lora::LoraAdapter;
use crate::error::Result;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

/// Per-token log-probabilities of every scored token of a batch.
#[derive(Debug, Clone)]
pub struct TokenLogProbs {
    /// `log p(token | earlier tokens)`, `[scored tokens]`, sequence by sequence.
    pub values: Tensor<1>,
    /// The sequence each value belongs to.
    pub owners: Vec<usize>,
    /// Number of sequences in the batch.
    pub batch: usize,
}

/// Per-sequence sums of response log-probabilities.
#[derive(Debug, Clone)]
pub struct SequenceLogProbs {
    /// Sum over each sequence's response tokens, `[batch]` (differentiable).
    pub sum: Tensor<1>,
    /// Sum divided by the token count, `[batch]` (differentiable).
    pub mean: Tensor<1>,
    /// Number of response tokens of each sequence.
    pub count: Vec<usize>,
}

impl TokenLogProbs {
    /// Sums the values per sequence (a `[batch, tokens]` 0/1 matrix times the values).
    pub fn per_sequence(&self) -> SequenceLogProbs {
        let n = self.owners.len();
        let mut member = vec![0f32; self.batch * n];
        let mut count = vec![0usize; self.batch];
        for (j, &o) in self.owners.iter().enumerate() {
            member[o * n + j] = 1.0;
            count[o] += 1;
        }
        let device = self.values.device();
        let member = Tensor::<2>::from_data(TensorData::new(member, [self.batch, n]), &device);
        let sum = member
            .matmul(self.values.clone().reshape([n, 1]))
            .reshape([self.batch]);
        let counts: Vec<f32> = count.iter().map(|&c| c.max(1) as f32).collect();
        let counts = Tensor::<1>::from_data(TensorData::new(counts, [self.batch]), &device);
        SequenceLogProbs {
            mean: sum.clone() / counts,
            sum,
            count,
        }
    }

    /// Mean over all scored tokens of the batch, `[1]` (e.g. an SFT token-mean NLL is its
    /// negative).
    pub fn token_mean(&self) -> Tensor<1> {
        self.values.clone().mean()
    }
}

/// Log-probabilities of each scored token of `batch`, with `adapter` (or the base model).
pub fn token_logprobs(
    decoder: &Decoder,
    batch: &TokenBatch,
    adapter: Option<&LoraAdapter>,
) -> Result<TokenLogProbs> {
    let hidden = decoder.hidden_states(batch, adapter)?;
    let logits = decoder.logits_at(hidden, batch.predict_rows())?;
    let n = batch.targets().len();
    let targets: Vec<i64> = batch.targets().iter().map(|&t| t as i64).collect();
    let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [n, 1]), decoder.device());
    let values = log_softmax(logits, 1).gather(1, targets).reshape([n]);
    Ok(TokenLogProbs {
        values,
        owners: batch.owners().to_vec(),
        batch: batch.sequence_count(),
    })
}

/// Summed and mean log-probabilities of each sequence's response, with `adapter` (or the base
/// model).
pub fn sequence_logprobs(
    decoder: &Decoder,
    batch: &TokenBatch,
    adapter: Option<&LoraAdapter>,
) -> Result<SequenceLogProbs> {
    Ok(token_logprobs(decoder, batch, adapter)?.per_sequence())
}
