//! Per-call attention state. Cloning is cheap (tensors are shared), which is what makes a fork
//! after a shared prefix free: appending never mutates a tensor another state can see.
//!
//! The state is bound to the adapter it was started with (or to none): keys and values computed
//! under one adapter can only ever be extended under that same adapter, because the forward pass
//! takes the adapter from the state.

use super::lora::LoraWeights;
use candle_core::Tensor;
use std::sync::Arc;

/// Keys and values of every layer for the tokens seen so far, and the adapter that made them.
#[derive(Debug, Clone, Default)]
pub struct KvState {
    pub(crate) layers: Vec<Option<(Tensor, Tensor)>>,
    pub(crate) len: usize,
    pub(crate) adapter: Option<Arc<LoraWeights>>,
}

impl KvState {
    /// An empty state for a model of `n_layers` blocks, run with `adapter` (or the base).
    pub fn new(n_layers: usize, adapter: Option<Arc<LoraWeights>>) -> Self {
        Self {
            layers: vec![None; n_layers],
            len: 0,
            adapter,
        }
    }

    /// The adapter every token of this state runs with (`None` = the base model).
    pub fn adapter(&self) -> Option<&Arc<LoraWeights>> {
        self.adapter.as_ref()
    }

    /// Number of tokens already in the state (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no token has been processed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A copy that can be extended independently (shares memory with `self`).
    pub fn fork(&self) -> Self {
        self.clone()
    }
}
