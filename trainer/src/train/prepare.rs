//! Training data made ready for the model: tokenized pairs or rating groups, and the base model.

use crate::consistency::RatingGroup;
use crate::data::PreferencePair;
use crate::error::{Error, Result};
use crate::loss::{self, Objective};
use crate::model::{Decoder, ScoredSequence};
use burn::tensor::{Device, Tensor, TensorData};
use debias_guard::tokenizer::TextTokenizer;
use debias_guard::weights::DenseCheckpoint;
use std::path::Path;

/// A pair ready to train on: token sequences and cached reference log-probs.
#[derive(Debug, Clone)]
pub struct PreparedPair {
    /// Prompt with context + the preferred answer.
    pub chosen: ScoredSequence,
    /// Prompt with context + the dispreferred answer.
    pub rejected: ScoredSequence,
    /// Neutral prompt + `Rating: {gold}`.
    pub sft: ScoredSequence,
    /// Summed reference log-probs of (chosen, rejected) answers.
    pub reference: (f32, f32),
}

/// Tokenizes the pairs for the objective (reference log-probs are filled in later); with
/// `append_eos`, the tokenizer's end-of-turn token follows chosen, rejected and the SFT target,
/// so the model also learns where an answer stops.
pub fn tokenize_pairs(
    tokenizer: &TextTokenizer,
    objective: Objective,
    pairs: &[PreferencePair],
    append_eos: bool,
) -> Result<Vec<PreparedPair>> {
    let eos = if append_eos {
        tokenizer.eos_text().unwrap_or_default()
    } else {
        ""
    };
    pairs
        .iter()
        .map(|p| {
            let named = |e: Error| Error::Config(format!("pair `{}`: {e}", p.id));
            let (chosen, rejected) = loss::select_answers(objective, p)?;
            let answer = |prompt: &str, text: &str| {
                ScoredSequence::from_texts(tokenizer, prompt, &format!("{text}{eos}"))
            };
            Ok(PreparedPair {
                chosen: answer(&p.prompt, chosen).map_err(named)?,
                rejected: answer(&p.prompt, rejected).map_err(named)?,
                sft: answer(&p.neutral_prompt, &p.sft_target()).map_err(named)?,
                reference: (0.0, 0.0),
            })
        })
        .collect()
}

/// What a run trains on: preference pairs (DPO / SFT objectives) or rating groups
/// (`consistency`).
#[derive(Debug, Clone)]
pub enum TrainData {
    /// Tokenized preference pairs.
    Pairs(Vec<PreparedPair>),
    /// Direct-mode rating groups, one per example.
    Groups(Vec<RatingGroup>),
}

impl TrainData {
    /// Number of pairs or groups (the unit of batches and epochs).
    pub fn len(&self) -> usize {
        match self {
            Self::Pairs(p) => p.len(),
            Self::Groups(g) => g.len(),
        }
    }

    /// Whether there is nothing to train on.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A stable 64-bit FNV-1a digest of the token sequences (detects changed data on resume).
    pub fn digest(&self) -> String {
        match self {
            Self::Pairs(p) => data_digest(p),
            Self::Groups(g) => sequences_digest(g.iter().flat_map(|g| g.sequences.iter())),
        }
    }
}

/// A stable 64-bit FNV-1a digest of the token sequences trained on (detects changed data on resume).
pub fn data_digest(prepared: &[PreparedPair]) -> String {
    sequences_digest(
        prepared
            .iter()
            .flat_map(|p| [&p.chosen, &p.rejected, &p.sft]),
    )
}

fn sequences_digest<'a>(sequences: impl Iterator<Item = &'a ScoredSequence>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: u64| {
        for b in x.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for s in sequences {
        eat(s.tokens().len() as u64);
        eat(s.response_start() as u64);
        s.tokens().iter().for_each(|&t| eat(u64::from(t)));
    }
    format!("{h:016x}")
}

/// Loads the base model: the decoder on `device` and the tokenizer.
pub fn load_base(path: &Path, device: &Device) -> Result<(Decoder, TextTokenizer)> {
    let tokenizer = TextTokenizer::open(path)?;
    let decoder = Decoder::from_checkpoint(DenseCheckpoint::load(path)?, device)?;
    Ok((decoder, tokenizer))
}

pub(super) fn tensor1(values: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}
