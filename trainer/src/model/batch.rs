//! Token sequences to score and their batched, right-padded form.
//!
//! Each sequence is `prompt ++ response`; only response tokens are scored. Sequences of a batch
//! are padded on the right to the longest one. Under the causal mask a real token never sees a
//! later position, so right padding needs no attention mask of its own: padded positions are
//! simply never read (they only cost compute).

use crate::error::{Error, Result};
use debias_guard::model::ModelConfig;
use debias_guard::tokenizer::TextTokenizer;

/// Token id written into padded positions (any valid id works: padding is never read).
const PAD_TOKEN: u32 = 0;

/// One token sequence whose tokens from `response_start` on are scored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoredSequence {
    tokens: Vec<u32>,
    response_start: usize,
}

impl ScoredSequence {
    /// A sequence scored from `response_start` (at least one token before it and one from it on).
    pub fn new(tokens: Vec<u32>, response_start: usize) -> Result<Self> {
        if response_start == 0 || response_start >= tokens.len() {
            return Err(Error::Model(format!(
                "a scored sequence needs 1 <= response start ({response_start}) < length ({})",
                tokens.len()
            )));
        }
        Ok(Self {
            tokens,
            response_start,
        })
    }

    /// Tokenizes `prompt` and `prompt + response` exactly as the library would tokenize the
    /// full text (BOS and control tokens included), and scores the tokens that follow the
    /// prompt.
    ///
    /// The prompt is tokenized on its own only to find the boundary: the sequence is always the
    /// full text's tokens. When the boundary falls inside a token (the prompt's last token merges
    /// with the response's first), scoring starts at the first token where the two tokenizations
    /// differ, the same rule the library's label scoring uses.
    pub fn from_texts(tokenizer: &TextTokenizer, prompt: &str, response: &str) -> Result<Self> {
        if response.is_empty() {
            return Err(Error::Model("the response to score is empty".into()));
        }
        let prompt_ids = tokenizer.encode(prompt)?;
        let full = tokenizer.encode(&format!("{prompt}{response}"))?;
        let common = prompt_ids
            .iter()
            .zip(&full)
            .take_while(|(a, b)| a == b)
            .count();
        if common == 0 {
            return Err(Error::Model(
                "the prompt shares no leading token with prompt + response".into(),
            ));
        }
        if common >= full.len() {
            return Err(Error::Model(
                "the response adds no token after the prompt".into(),
            ));
        }
        Self::new(full, common)
    }

    /// All tokens, prompt then response.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Index of the first scored token.
    pub fn response_start(&self) -> usize {
        self.response_start
    }

    /// Number of scored tokens.
    pub fn response_len(&self) -> usize {
        self.tokens.len() - self.response_start
    }
}

/// Sequences padded into one `[batch, len]` grid, with the rows the scorer reads.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    tokens: Vec<u32>,
    batch: usize,
    len: usize,
    lengths: Vec<usize>,
    /// Flat index `b * len + p` of each position whose next-token distribution is scored.
    predict_rows: Vec<usize>,
    /// The token each of `predict_rows` must predict.
    targets: Vec<u32>,
    /// Which sequence each of `predict_rows` belongs to.
    owners: Vec<usize>,
}

impl TokenBatch {
    /// Pads `sequences` for `config`'s model, checking token ids and lengths against it.
    pub fn new(sequences: &[ScoredSequence], config: &ModelConfig) -> Result<Self> {
        if sequences.is_empty() {
            return Err(Error::Model("a batch needs at least one sequence".into()));
        }
        let len = sequences.iter().map(|s| s.tokens.len()).max().unwrap_or(0);
        if len > config.context_length {
            return Err(Error::Model(format!(
                "a sequence of {len} tokens exceeds the model's context of {}",
                config.context_length
            )));
        }
        let mut tokens = Vec::with_capacity(sequences.len() * len);
        let mut predict_rows = Vec::new();
        let mut targets = Vec::new();
        let mut owners = Vec::new();
        for (b, seq) in sequences.iter().enumerate() {
            if let Some(&bad) = seq
                .tokens
                .iter()
                .find(|&&t| t as usize >= config.vocab_size)
            {
                return Err(Error::Model(format!(
                    "sequence {b}: token id {bad} is outside the vocabulary of {}",
                    config.vocab_size
                )));
            }
            tokens.extend_from_slice(&seq.tokens);
            tokens.resize((b + 1) * len, PAD_TOKEN);
            for p in seq.response_start..seq.tokens.len() {
                predict_rows.push(b * len + p - 1);
                targets.push(seq.tokens[p]);
                owners.push(b);
            }
        }
        Ok(Self {
            tokens,
            batch: sequences.len(),
            len,
            lengths: sequences.iter().map(|s| s.tokens.len()).collect(),
            predict_rows,
            targets,
            owners,
        })
    }

    /// A batch that scores every position of one sequence but the last (for whole-sequence
    /// logits, e.g. parity checks): the prompt is the first token.
    pub fn whole(tokens: &[u32], config: &ModelConfig) -> Result<Self> {
        if tokens.len() < 2 {
            return Err(Error::Model(
                "a whole-sequence batch needs at least two tokens".into(),
            ));
        }
        Self::new(&[ScoredSequence::new(tokens.to_vec(), 1)?], config)
    }

    /// Number of sequences.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Padded length (longest sequence).
    pub fn padded_len(&self) -> usize {
        self.len
    }

    /// Real (unpadded) length of each sequence.
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    /// Padded token grid, row-major `[batch, padded_len]`.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Flat `b * padded_len + p` index of each position whose next token is scored, sequence
    /// by sequence.
    pub fn predict_rows(&self) -> &[usize] {
        &self.predict_rows
    }

    /// The token predicted at each of [`Self::predict_rows`].
    pub fn targets(&self) -> &[u32] {
        &self.targets
    }

    /// The sequence each of [`Self::predict_rows`] belongs to.
    pub fn owners(&self) -> &[usize] {
        &self.owners
    }

    /// Number of scored tokens of each sequence.
    pub fn response_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.batch];
        for &o in &self.owners {
            counts[o] += 1;
        }
        counts
    }
}
