//! Exact label distributions: each label is tokenized as the continuation of the full prompt
//! text, scored by the chain rule over its tokens, and the labels are renormalised.

use super::tree::TokenQuery;
use crate::error::{Error, Result};
use crate::formats::tokenizer::TextTokenizer;
use serde::{Deserialize, Serialize};

/// A rendered prompt that ends with the answer prefix, and the labels that may follow it.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelPrompt {
    /// Full prompt text (chat template applied, answer prefix appended).
    pub text: String,
    /// Labels of the scale in ascending order.
    pub labels: Vec<String>,
    /// Numeric value of each label (same order).
    pub values: Vec<f64>,
    /// Text between the prompt and a label (e.g. a space).
    pub separator: String,
}

/// The model's distribution over a scale's labels for one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreDistribution {
    /// Labels in scale order.
    pub labels: Vec<String>,
    /// Probability of each label, renormalised over the labels (sums to 1).
    pub probs: Vec<f64>,
    /// Probability mass the labels had before renormalisation (0–1); low means the model is not
    /// answering in the expected format.
    pub label_mass: f64,
    /// Expected score `Σ p(label) · value(label)`.
    pub expected: f64,
    /// Index of the most probable label.
    pub argmax: usize,
    /// Tokens in the prompt (without any label).
    pub prompt_tokens: usize,
}

impl ScoreDistribution {
    /// The most probable label.
    pub fn argmax_label(&self) -> &str {
        &self.labels[self.argmax]
    }
}

/// Token sequences of one prompt's labels, ready for the prefix tree.
#[derive(Debug, Clone)]
pub(crate) struct TokenizedLabels {
    pub queries: Vec<TokenQuery>,
    pub prompt_tokens: usize,
}

/// Tokenizes `prompt + separator + label` for each label and checks that every label adds at
/// least one token and that no two labels tokenize alike.
pub(crate) fn tokenize_labels(
    tok: &TextTokenizer,
    prompt: &LabelPrompt,
) -> Result<TokenizedLabels> {
    if prompt.labels.is_empty() {
        return Err(Error::InvalidInput("the scale has no labels".into()));
    }
    if prompt.values.len() != prompt.labels.len() {
        return Err(Error::InvalidInput(
            "labels and values differ in length".into(),
        ));
    }
    let prompt_ids = tok.encode(&prompt.text)?;
    if prompt_ids.is_empty() {
        return Err(Error::InvalidInput("prompt tokenizes to nothing".into()));
    }
    let mut full = Vec::with_capacity(prompt.labels.len());
    for label in &prompt.labels {
        let ids = tok.encode(&format!("{}{}{}", prompt.text, prompt.separator, label))?;
        let common = common_prefix(&prompt_ids, &ids);
        if ids.len() <= common {
            return Err(Error::Label {
                label: label.clone(),
                reason: "adds no token after the prompt".into(),
            });
        }
        full.push(ids);
    }
    for i in 0..full.len() {
        for j in i + 1..full.len() {
            if full[i] == full[j] {
                return Err(Error::Label {
                    label: prompt.labels[j].clone(),
                    reason: format!("tokenizes exactly like label `{}`", prompt.labels[i]),
                });
            }
        }
    }
    // Score every label from the first position where any of them departs from the prompt's
    // own tokens; with a clean boundary (the usual case) that is the end of the prompt.
    let score_from = full
        .iter()
        .map(|ids| common_prefix(&prompt_ids, ids))
        .min()
        .unwrap_or(prompt_ids.len())
        .max(1);
    Ok(TokenizedLabels {
        queries: full
            .into_iter()
            .map(|tokens| TokenQuery { tokens, score_from })
            .collect(),
        prompt_tokens: prompt_ids.len(),
    })
}

/// Turns per-token log-probabilities of each label into a distribution.
///
/// A label whose tokens are a strict prefix of another's (`1` and `10`) only counts the mass of
/// stopping there: its probability is multiplied by one minus the probability of the tokens that
/// would continue it into a longer label.
///
/// A NaN or +∞ log-probability, or a mass that is not finite, is [`Error::NonFinite`]: a model
/// that computes NaN never yields a (uniform) distribution.
pub(crate) fn distribution(
    prompt: &LabelPrompt,
    labels: &TokenizedLabels,
    token_logprobs: &[Vec<f32>],
) -> Result<ScoreDistribution> {
    for (label, lps) in prompt.labels.iter().zip(token_logprobs) {
        if let Some(lp) = lps.iter().find(|lp| lp.is_nan() || **lp == f32::INFINITY) {
            return Err(Error::NonFinite {
                what: "label log-probability",
                reason: format!("{lp} for a token of label `{label}`"),
            });
        }
    }
    let seqs: Vec<&[u32]> = labels.queries.iter().map(|q| q.tokens.as_slice()).collect();
    let start = labels.queries[0].score_from;
    let mut mass: Vec<f64> = token_logprobs
        .iter()
        .map(|lps| lps.iter().map(|&lp| lp as f64).sum::<f64>().exp())
        .collect();
    for (i, seq) in seqs.iter().enumerate() {
        let mut continuing: Vec<(u32, f64)> = Vec::new();
        for (j, other) in seqs.iter().enumerate() {
            if other.len() > seq.len() && other.starts_with(seq) {
                let next = other[seq.len()];
                if !continuing.iter().any(|(t, _)| *t == next) {
                    let lp = token_logprobs[j][seq.len() - start] as f64;
                    continuing.push((next, lp.exp()));
                }
            }
        }
        let cont: f64 = continuing.iter().map(|(_, p)| p).sum();
        mass[i] *= (1.0 - cont).max(0.0);
    }
    let total: f64 = mass.iter().sum();
    if !total.is_finite() {
        return Err(Error::NonFinite {
            what: "label mass",
            reason: format!("{total} over labels {:?}", prompt.labels),
        });
    }
    let probs: Vec<f64> = if total > 0.0 {
        mass.iter().map(|m| m / total).collect()
    } else {
        vec![1.0 / mass.len() as f64; mass.len()]
    };
    let expected = probs.iter().zip(&prompt.values).map(|(p, v)| p * v).sum();
    let argmax = probs
        .iter()
        .enumerate()
        .fold(0, |best, (i, p)| if *p > probs[best] { i } else { best });
    Ok(ScoreDistribution {
        labels: prompt.labels.clone(),
        probs,
        label_mass: total,
        expected,
        argmax,
        prompt_tokens: labels.prompt_tokens,
    })
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
