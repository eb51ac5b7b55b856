//! One model response in reasoned mode: the library's reasoning prompt, the model's own
//! reasoning (generation stops where it starts writing the answer prefix), and the rating read
//! from the label distribution after that reasoning, appended as `"\nRating: N"`.
//!
//! The rating is always taken from the distribution rather than from generated text: with
//! greedy decoding its argmax is what the model would write next whenever its top token is a
//! label, and when the model ends its turn or runs out of tokens without a rating the
//! distribution still gives one, so every response ends with a parsable `Rating: N`.

use crate::error::Result;
use debias_guard::engine::{FinishReason, LabelPrompt, ScoreDistribution};
use debias_guard::guard::reasoned::{self, ReasoningOptions};
use debias_guard::{Engine, PromptBuilder, RubricItem, Transcript};
use rand::{Rng, SeedableRng};

/// A generated reasoning before its rating is read.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// Rendered prompt (chat template, assistant turn open).
    pub prompt: String,
    /// The model's reasoning (may be empty).
    pub reasoning: String,
    /// Why generation ended.
    pub finish: FinishReason,
    /// `prompt + reasoning + "\n" + answer prefix`, to read the rating from.
    pub label_prompt: LabelPrompt,
}

/// A finished response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Rendered prompt the response answers.
    pub prompt: String,
    /// Reasoning followed by the rating line (`…\nRating: 4`).
    pub text: String,
    /// The rating label written at the end.
    pub label: String,
    /// Its numeric value.
    pub rating: f64,
    /// Expected score of the label distribution after the reasoning (scale points).
    pub expected: f64,
    /// Why reasoning generation ended.
    pub finish: FinishReason,
}

/// Generates the reasoning for one transcript × item × optional context.
pub fn draft(
    engine: &Engine,
    builder: &PromptBuilder,
    transcript: &Transcript,
    item: &RubricItem,
    context: Option<&str>,
    options: &ReasoningOptions,
) -> Result<Draft> {
    let r = reasoned::reason(engine, builder, transcript, item, context, false, options)?;
    Ok(Draft {
        prompt: r.prompt_text,
        reasoning: r.reasoning,
        finish: r.finish,
        label_prompt: r.label_prompt,
    })
}

/// Generates the reasoning of several variants of one transcript × item (`None` = neutral)
/// decoded together in lock step, in the order of `contexts`; each equals [`draft`] of that
/// context alone (same seed; greedy gives the same text).
pub fn draft_many(
    engine: &Engine,
    builder: &PromptBuilder,
    transcript: &Transcript,
    item: &RubricItem,
    contexts: &[Option<&str>],
    options: &ReasoningOptions,
) -> Result<Vec<Draft>> {
    let reasoned =
        reasoned::reason_many(engine, builder, transcript, item, contexts, false, options)?;
    Ok(reasoned
        .into_iter()
        .map(|r| Draft {
            prompt: r.prompt_text,
            reasoning: r.reasoning,
            finish: r.finish,
            label_prompt: r.label_prompt,
        })
        .collect())
}

/// How the rating label is chosen from the distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RatingChoice {
    /// The most probable label (greedy runs).
    Argmax,
    /// A label drawn from the distribution with this seed (sampling runs).
    Sample(u64),
}

/// Index of the chosen label.
pub fn choose_label(dist: &ScoreDistribution, choice: RatingChoice) -> usize {
    match choice {
        RatingChoice::Argmax => dist.argmax,
        RatingChoice::Sample(seed) => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut r: f64 = rng.random::<f64>();
            for (i, p) in dist.probs.iter().enumerate() {
                if r < *p {
                    return i;
                }
                r -= p;
            }
            dist.argmax
        }
    }
}

/// Completes a draft with the chosen rating: the response text is exactly what follows
/// `draft.prompt` in `label_prompt.text + separator + label`.
pub fn finish(
    draft: Draft,
    dist: &ScoreDistribution,
    item: &RubricItem,
    choice: RatingChoice,
) -> Response {
    let index = choose_label(dist, choice);
    let label = dist.labels[index].clone();
    let values = item.label_values();
    let after_prompt = draft
        .label_prompt
        .text
        .strip_prefix(&draft.prompt)
        .unwrap_or(&draft.label_prompt.text);
    let text = format!("{after_prompt}{}{label}", draft.label_prompt.separator);
    Response {
        prompt: draft.prompt,
        text,
        rating: values.get(index).copied().unwrap_or(f64::NAN),
        label,
        expected: dist.expected,
        finish: draft.finish,
    }
}

/// Reads every draft's rating distribution in one prefix-shared pass ([`Engine::score_many`]:
/// the transcript the drafts share is run once, not once per draft) and completes each. The last
/// digits of a distribution depend on which drafts share the pass, so a caller passes the same
/// drafts on every run — a resumed run included — and drops the ones it does not need afterwards.
pub fn finish_all(
    engine: &Engine,
    drafts: Vec<Draft>,
    item: &RubricItem,
    choices: &[RatingChoice],
) -> Result<Vec<Response>> {
    let prompts: Vec<_> = drafts.iter().map(|d| d.label_prompt.clone()).collect();
    let (dists, _) = engine.score_many(&prompts)?;
    Ok(drafts
        .into_iter()
        .zip(dists.iter().zip(choices))
        .map(|(d, (dist, &c))| finish(d, dist, item, c))
        .collect())
}
