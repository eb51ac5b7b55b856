//! Several continuations of one shared prefix decoded in lock step: every appended token (a
//! "slot") attends to the shared prefix and to its own chain of ancestors among the slots, and
//! sits at position `prefix + depth`. Unlike [`DecoderModel::forward_tree`] the appended keys and
//! values stay in the state, so the next step can continue each branch from its last slot and
//! one pass over the weights serves every branch.
//!
//! Slots of different branches are interleaved in the state, in the order they were appended; a
//! branch's own slots always come in its order, so a row of attention sees the same keys in the
//! same order as a one-branch run would (the others are masked out).

use super::{DecoderModel, KvState};
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};

/// A KV state: a shared prefix, then appended slots that each continue the prefix or an earlier
/// slot. Cloning shares the tensors (a fork), as for [`KvState`].
#[derive(Debug, Clone)]
pub struct BranchState {
    kv: KvState,
    prefix: usize,
    parents: Vec<Option<usize>>,
    depth: Vec<usize>,
}

impl BranchState {
    /// Starts branches after everything already in `prefix` (which may be empty).
    pub fn new(prefix: KvState) -> Self {
        Self {
            prefix: prefix.len,
            kv: prefix,
            parents: Vec::new(),
            depth: Vec::new(),
        }
    }

    /// Tokens of the shared prefix.
    pub fn prefix_len(&self) -> usize {
        self.prefix
    }

    /// Slots appended after the prefix so far (all branches together).
    pub fn slots(&self) -> usize {
        self.parents.len()
    }

    /// Sequence position of a slot (prefix length + its depth), `None` for an unknown slot.
    pub fn position(&self, slot: usize) -> Option<usize> {
        self.depth.get(slot).map(|d| self.prefix + d)
    }
}

impl DecoderModel {
    /// Appends `tokens` to `state` as new slots: token `i` becomes slot `state.slots() + i` and
    /// continues slot `parents[i]` (an existing slot or an earlier token of this call; `None` =
    /// the end of the shared prefix). Runs in pieces of at most `chunk` tokens; returns logits
    /// `[read.len(), vocab]` for the listed indices into `tokens`.
    pub fn forward_branches(
        &self,
        tokens: &[u32],
        parents: &[Option<usize>],
        read: &[usize],
        chunk: usize,
        state: &mut BranchState,
    ) -> Result<Tensor> {
        let first = state.slots();
        if parents.len() != tokens.len()
            || parents
                .iter()
                .enumerate()
                .any(|(i, p)| p.is_some_and(|p| p >= first + i))
        {
            return Err(Error::InvalidInput(
                "each branch token must continue the prefix or an earlier slot".into(),
            ));
        }
        if let Some(&bad) = read.iter().find(|&&r| r >= tokens.len()) {
            return Err(Error::InvalidInput(format!(
                "read index {bad} is outside the {} new tokens",
                tokens.len()
            )));
        }
        if let Some(&bad) = tokens
            .iter()
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is outside the vocabulary"
            )));
        }
        let depths: Vec<usize> = {
            let mut d = Vec::with_capacity(tokens.len());
            for p in parents {
                d.push(match *p {
                    None => 0,
                    Some(s) if s < first => state.depth[s] + 1,
                    Some(s) => d[s - first] + 1,
                });
            }
            d
        };
        if let Some(deepest) = depths.iter().max() {
            let needed = state.prefix + deepest + 1;
            if needed > self.config.context_length {
                return Err(Error::ContextOverflow {
                    tokens: needed,
                    context: self.config.context_length,
                });
            }
        }
        let chunk = chunk.max(1);
        let groups = self.config.n_heads / self.config.n_kv_heads;
        let mut rows = Vec::new();
        for start in (0..tokens.len()).step_by(chunk) {
            let end = (start + chunk).min(tokens.len());
            state.parents.extend_from_slice(&parents[start..end]);
            state.depth.extend_from_slice(&depths[start..end]);
            let positions: Vec<usize> = depths[start..end]
                .iter()
                .map(|d| state.prefix + d)
                .collect();
            let mask = branch_mask(state, first + start, end - start, groups, &self.device)?;
            let hidden =
                self.run_blocks(&tokens[start..end], &positions, Some(&mask), &mut state.kv)?;
            state.kv.len += end - start;
            let local: Vec<u32> = read
                .iter()
                .filter(|&&r| (start..end).contains(&r))
                .map(|&r| (r - start) as u32)
                .collect();
            if !local.is_empty() {
                let n = local.len();
                rows.push(hidden.index_select(&Tensor::from_vec(local, n, &self.device)?, 0)?);
            }
        }
        if rows.is_empty() {
            return self.no_logits();
        }
        // Rows come chunk by chunk, so reorder them into the order of `read`.
        let hidden = Tensor::cat(&rows, 0)?;
        let mut order: Vec<usize> = (0..read.len()).collect();
        order.sort_by_key(|&i| (read[i] / chunk, i));
        let mut back = vec![0u32; read.len()];
        for (row, &i) in order.iter().enumerate() {
            back[i] = row as u32;
        }
        let hidden = hidden.index_select(&Tensor::from_vec(back, read.len(), &self.device)?, 0)?;
        self.logits_of(&hidden)
    }
}

/// Additive mask `[groups * len, past + len]` for slots `first..first + len` (whose parents and
/// depths are already recorded): each sees the prefix, itself and its ancestors.
fn branch_mask(
    state: &BranchState,
    first: usize,
    len: usize,
    groups: usize,
    device: &Device,
) -> Result<Tensor> {
    let total = state.prefix + first + len;
    let mut block = vec![f32::NEG_INFINITY; len * total];
    for i in 0..len {
        let row = &mut block[i * total..(i + 1) * total];
        row[..state.prefix].fill(0.0);
        let mut slot = Some(first + i);
        while let Some(s) = slot {
            row[state.prefix + s] = 0.0;
            slot = state.parents[s];
        }
    }
    let mut data = Vec::with_capacity(groups * block.len());
    for _ in 0..groups {
        data.extend_from_slice(&block);
    }
    Ok(Tensor::from_vec(data, (groups * len, total), device)?)
}
