//! Per-call attention state. Cloning is cheap (tensors are shared), which is what makes a fork
//! after a shared prefix free: appending never mutates a tensor another state can see.

use candle_core::Tensor;

/// Keys and values of every layer for the tokens seen so far.
#[derive(Debug, Clone, Default)]
pub struct KvState {
    pub(crate) layers: Vec<Option<(Tensor, Tensor)>>,
    pub(crate) len: usize,
}

impl KvState {
    /// An empty state for a model of `n_layers` blocks.
    pub fn new(n_layers: usize) -> Self {
        Self {
            layers: vec![None; n_layers],
            len: 0,
        }
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
