//! Lock-step generation of several prompts that share a beginning (the variants of one
//! transcript): the longest common token prefix is prefilled once, the prompts' tails go in as
//! one token trie, then every step feeds one token per live branch in a single forward, all
//! reading the shared prefix's keys and values. A decoding step costs about one read of the
//! weights whether one branch is live or many, so the batch runs in little more than the time of
//! its longest member.

use super::generate::{Decoding, GenerateOptions, Generation};
use super::progress::Progress;
use super::Engine;
use crate::error::{Error, Result};
use crate::model::BranchState;
use std::collections::HashMap;

/// Most prompts one [`Engine::generate_many`] call accepts.
pub const MAX_GENERATE_BATCH: usize = 64;

/// Most tokens one batch may hold in its KV state: the shared prefix, every distinct tail token
/// and `max_tokens` per prompt (bounds the memory of a call).
pub const MAX_BATCH_KV_TOKENS: usize = 65_536;

impl Engine {
    /// Generates a continuation of each rendered prompt, all decoded together in lock step.
    ///
    /// Every prompt gets its own sampler seeded with `options.seed` (the same seed for all, so
    /// each result is what [`Engine::generate`] gives for that prompt alone, up to rounding
    /// in the last bits of the logits; with greedy decoding the tokens are the same). Results
    /// come in the order of `prompts`. Errors: an empty list or more than
    /// [`MAX_GENERATE_BATCH`] prompts, a prompt that tokenizes to nothing or fills the context,
    /// or a batch over [`MAX_BATCH_KV_TOKENS`].
    pub fn generate_many(
        &self,
        prompts: &[String],
        options: &GenerateOptions,
    ) -> Result<Vec<Generation>> {
        self.generate_many_with(prompts, options, Progress::NONE)
    }

    /// [`Engine::generate_many`], reporting decoding steps done of `options.max_tokens` to
    /// `progress` after every step (the full count when the last branch ends), and stopping
    /// with [`Error::Cancelled`] between steps when asked to.
    pub fn generate_many_with(
        &self,
        prompts: &[String],
        options: &GenerateOptions,
        progress: Progress<'_>,
    ) -> Result<Vec<Generation>> {
        options.validate()?;
        if prompts.is_empty() || prompts.len() > MAX_GENERATE_BATCH {
            return Err(Error::InvalidInput(format!(
                "generate_many takes 1..={MAX_GENERATE_BATCH} prompts, got {}",
                prompts.len()
            )));
        }
        let context = self.config().context_length;
        let mut tokenized = Vec::with_capacity(prompts.len());
        for (i, text) in prompts.iter().enumerate() {
            let tokens = self.shared.tokenizer.encode(text)?;
            if tokens.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "prompt {i} tokenizes to nothing"
                )));
            }
            if tokens.len() >= context {
                return Err(Error::ContextOverflow {
                    tokens: tokens.len() + 1,
                    context,
                });
            }
            tokenized.push(tokens);
        }
        let common = common_prefix(&tokenized);
        let tails = TailTrie::build(&tokenized, common);
        let kv_tokens = common + tails.tokens.len() + prompts.len() * options.max_tokens;
        if kv_tokens > MAX_BATCH_KV_TOKENS {
            return Err(Error::InvalidInput(format!(
                "the batch would hold {kv_tokens} tokens, above the limit of \
                 {MAX_BATCH_KV_TOKENS}; pass fewer prompts or fewer max_tokens"
            )));
        }
        self.shared
            .pool
            .install(|| self.run_batch(&tokenized, common, &tails, options, progress))
    }

    fn run_batch(
        &self,
        prompts: &[Vec<u32>],
        common: usize,
        tails: &TailTrie,
        options: &GenerateOptions,
        progress: Progress<'_>,
    ) -> Result<Vec<Generation>> {
        let steps = options.max_tokens as u64;
        progress.report(0, steps)?;
        let model = &self.shared.model;
        let tokenizer = &self.shared.tokenizer;
        let chunk = self.shared.prefill_chunk;
        let context = self.config().context_length;
        let mut kv = self.new_state()?;
        if common > 0 {
            model.forward(&prompts[0][..common], &mut kv, &[], chunk)?;
        }
        let mut state = BranchState::new(kv);
        let mut logits = model.forward_branches(
            &tails.tokens,
            &tails.parents,
            &tails.last,
            chunk,
            &mut state,
        )?;
        let mut decodings: Vec<Decoding<'_>> = prompts
            .iter()
            .map(|p| Decoding::new(options, p.len()))
            .collect();
        // Branch index and slot of its last token, for the branches `logits` has rows for.
        let mut live: Vec<(usize, usize)> = tails.last.iter().copied().enumerate().collect();
        let mut step = 0u64;
        while !live.is_empty() {
            progress.report(step, steps)?;
            step += 1;
            let rows = logits.to_vec2::<f32>()?;
            let first = state.slots();
            let mut next_live = Vec::with_capacity(live.len());
            let (mut tokens, mut parents) = (Vec::new(), Vec::new());
            for (&(branch, slot), row) in live.iter().zip(&rows) {
                if let Some(next) = decodings[branch].step(row, tokenizer, context)? {
                    next_live.push((branch, first + tokens.len()));
                    tokens.push(next);
                    parents.push(Some(slot));
                }
            }
            live = next_live;
            if !live.is_empty() {
                let read: Vec<usize> = (0..tokens.len()).collect();
                logits = model.forward_branches(&tokens, &parents, &read, chunk, &mut state)?;
            }
        }
        progress.report(steps, steps)?;
        decodings.into_iter().map(|d| d.finish(tokenizer)).collect()
    }
}

/// Length of the longest token prefix all prompts share, kept below the shortest prompt so that
/// every prompt has at least one tail token (whose row gives its first distribution).
fn common_prefix(prompts: &[Vec<u32>]) -> usize {
    let shortest = prompts.iter().map(Vec::len).min().unwrap_or(0);
    let first = &prompts[0];
    let mut n = 0;
    while n + 1 < shortest && prompts.iter().all(|p| p[n] == first[n]) {
        n += 1;
    }
    n
}

/// The prompts' tails after the common prefix as a trie: equal leading tail tokens are one slot.
/// Slots are in creation order, so a parent always precedes its children.
struct TailTrie {
    tokens: Vec<u32>,
    parents: Vec<Option<usize>>,
    /// Slot of each prompt's last token.
    last: Vec<usize>,
}

impl TailTrie {
    fn build(prompts: &[Vec<u32>], common: usize) -> Self {
        let mut trie = Self {
            tokens: Vec::new(),
            parents: Vec::new(),
            last: Vec::with_capacity(prompts.len()),
        };
        let mut children: HashMap<(Option<usize>, u32), usize> = HashMap::new();
        for prompt in prompts {
            let mut at = None;
            for &t in &prompt[common..] {
                let slot = *children.entry((at, t)).or_insert_with(|| {
                    trie.tokens.push(t);
                    trie.parents.push(at);
                    trie.tokens.len() - 1
                });
                at = Some(slot);
            }
            // `common` is below every prompt's length, so each tail has a token.
            trie.last.push(at.unwrap_or(0));
        }
        trie
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_leaves_every_prompt_a_tail_token() {
        assert_eq!(common_prefix(&[vec![1, 2, 3], vec![1, 2, 4]]), 2);
        assert_eq!(common_prefix(&[vec![1, 2, 3], vec![1, 2, 3]]), 2);
        assert_eq!(common_prefix(&[vec![1, 2], vec![1, 2, 3]]), 1);
        assert_eq!(common_prefix(&[vec![5], vec![6]]), 0);
        assert_eq!(common_prefix(&[vec![7, 8, 9]]), 2);
    }

    #[test]
    fn tails_share_equal_leading_tokens() {
        let prompts = [
            vec![1, 2, 3, 4],
            vec![1, 2, 3, 5],
            vec![1, 2, 6],
            vec![1, 2, 3, 4],
        ];
        let trie = TailTrie::build(&prompts, 2);
        // 3, 4, 5 and 6: the shared `3` once, the repeated prompt adds nothing.
        assert_eq!(trie.tokens, vec![3, 4, 5, 6]);
        assert_eq!(trie.parents, vec![None, Some(0), Some(0), None]);
        assert_eq!(trie.last, vec![1, 2, 3, 1]);
    }
}
