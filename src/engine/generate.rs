//! Text generation on the same engine: greedy or seeded sampling, stopping at end-of-turn
//! tokens, stop strings or a token budget.

use crate::error::{Error, Result};
use crate::formats::tokenizer::TextTokenizer;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Most tokens one generation may produce.
pub const MAX_NEW_TOKENS_LIMIT: usize = 8_192;

/// How to pick tokens and when to stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateOptions {
    /// Most new tokens (1..=[`MAX_NEW_TOKENS_LIMIT`]).
    pub max_tokens: usize,
    /// Softmax temperature; 0 = greedy.
    pub temperature: f64,
    /// Nucleus sampling threshold (0 < top_p ≤ 1).
    pub top_p: f64,
    /// Seed of the sampler (same seed, same text).
    pub seed: u64,
    /// Generation stops before the first occurrence of any of these strings.
    pub stop: Vec<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop: Vec::new(),
        }
    }
}

impl GenerateOptions {
    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        if self.max_tokens == 0 || self.max_tokens > MAX_NEW_TOKENS_LIMIT {
            return Err(Error::InvalidInput(format!(
                "max_tokens {} is outside 1..={MAX_NEW_TOKENS_LIMIT}",
                self.max_tokens
            )));
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::InvalidInput(format!(
                "temperature {} is invalid",
                self.temperature
            )));
        }
        if !(self.top_p.is_finite() && self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::InvalidInput(format!(
                "top_p {} is outside (0, 1]",
                self.top_p
            )));
        }
        if self.stop.iter().any(String::is_empty) {
            return Err(Error::InvalidInput("stop strings must not be empty".into()));
        }
        Ok(())
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model emitted an end-of-turn token.
    EndOfTurn,
    /// A stop string appeared.
    StopString,
    /// `max_tokens` were produced.
    MaxTokens,
    /// The context window is full.
    ContextFull,
}

/// Generated text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The new text (cut before a stop string; end-of-turn token excluded).
    pub text: String,
    /// The new token ids (end-of-turn token excluded).
    pub tokens: Vec<u32>,
    /// Why it ended.
    pub finish: FinishReason,
}

/// Picks the next token from logits.
pub(crate) struct Sampler {
    rng: rand::rngs::StdRng,
    temperature: f64,
    top_p: f64,
}

impl Sampler {
    pub(crate) fn new(opts: &GenerateOptions) -> Self {
        Self {
            rng: rand::rngs::StdRng::seed_from_u64(opts.seed),
            temperature: opts.temperature,
            top_p: opts.top_p,
        }
    }

    pub(crate) fn pick(&mut self, logits: &[f32]) -> u32 {
        let argmax = logits
            .iter()
            .enumerate()
            .fold(0, |best, (i, &x)| if x > logits[best] { i } else { best });
        if self.temperature == 0.0 {
            return argmax as u32;
        }
        let max = logits[argmax] as f64;
        let mut probs: Vec<(usize, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &x)| (i, ((x as f64 - max) / self.temperature).exp()))
            .collect();
        let total: f64 = probs.iter().map(|(_, p)| p).sum();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut kept = 0.0;
        let mut cut = probs.len();
        for (k, (_, p)) in probs.iter().enumerate() {
            kept += p / total;
            if kept >= self.top_p {
                cut = k + 1;
                break;
            }
        }
        probs.truncate(cut);
        let kept_total: f64 = probs.iter().map(|(_, p)| p).sum();
        let mut r = self.rng.random::<f64>() * kept_total;
        for &(i, p) in &probs {
            if r < p {
                return i as u32;
            }
            r -= p;
        }
        probs.last().map_or(argmax as u32, |&(i, _)| i as u32)
    }
}

/// Byte offset of the earliest stop string in `text`, if any.
pub(crate) fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter_map(|s| text.find(s.as_str())).min()
}

/// One sequence being generated: its sampler, the tokens so far, and when it has to stop.
/// [`Engine::generate`](super::Engine::generate) and the lock-step batch share it, so both
/// stop under exactly the same rules.
pub(crate) struct Decoding<'a> {
    sampler: Sampler,
    options: &'a GenerateOptions,
    prompt_len: usize,
    tokens: Vec<u32>,
    finish: Option<FinishReason>,
}

impl<'a> Decoding<'a> {
    /// Starts after a prompt of `prompt_len` tokens.
    pub(crate) fn new(options: &'a GenerateOptions, prompt_len: usize) -> Self {
        Self {
            sampler: Sampler::new(options),
            options,
            prompt_len,
            tokens: Vec::new(),
            finish: None,
        }
    }

    /// Picks the next token from `logits` (the distribution after the last token fed) and
    /// returns it when it has to be fed to the model, `None` once generation has ended.
    pub(crate) fn step(
        &mut self,
        logits: &[f32],
        tokenizer: &TextTokenizer,
        context: usize,
    ) -> Result<Option<u32>> {
        if self.finish.is_some() {
            return Ok(None);
        }
        let next = self.sampler.pick(logits);
        self.finish = if tokenizer.stop_ids().contains(&next) {
            Some(FinishReason::EndOfTurn)
        } else {
            self.tokens.push(next);
            if !self.options.stop.is_empty()
                && find_stop(&tokenizer.decode(&self.tokens)?, &self.options.stop).is_some()
            {
                Some(FinishReason::StopString)
            } else if self.tokens.len() >= self.options.max_tokens {
                Some(FinishReason::MaxTokens)
            } else if self.prompt_len + self.tokens.len() >= context {
                // Feeding `next` would leave no room for the token after it.
                Some(FinishReason::ContextFull)
            } else {
                None
            }
        };
        Ok(self.finish.is_none().then_some(next))
    }

    /// The generation so far (text cut before a stop string).
    pub(crate) fn finish(self, tokenizer: &TextTokenizer) -> Result<Generation> {
        let finish = self
            .finish
            .ok_or_else(|| Error::InvalidInput("generation was read before it ended".into()))?;
        let mut text = tokenizer.decode(&self.tokens)?;
        if let Some(cut) = find_stop(&text, &self.options.stop) {
            text.truncate(cut);
        }
        Ok(Generation {
            text,
            tokens: self.tokens,
            finish,
        })
    }
}
