//! Reasoned mode: the model writes a short reasoning before its rating, and the rating
//! distribution is read after that reasoning. The prompt is the normal one (same builder) plus
//! one instruction, rendered with the assistant turn opened but without the answer prefix.

use crate::engine::{
    Engine, FinishReason, GenerateOptions, LabelPrompt, Progress, MAX_BATCH_KV_TOKENS,
    MAX_GENERATE_BATCH,
};
use crate::error::{Error, Result};
use crate::prompt::{PromptBuilder, Transcript};
use crate::rubric::RubricItem;
use serde::{Deserialize, Serialize};

/// Default bound on reasoning length, in tokens.
pub const DEFAULT_REASONING_TOKENS: usize = 96;
/// Largest reasoning length accepted, in tokens.
pub const MAX_REASONING_TOKENS: usize = 1_024;

/// How reasoning is generated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReasoningOptions {
    /// Most reasoning tokens (1..=[`MAX_REASONING_TOKENS`]).
    pub max_tokens: usize,
    /// Softmax temperature; 0 = greedy.
    pub temperature: f64,
    /// Nucleus sampling threshold (0 < top_p ≤ 1).
    pub top_p: f64,
    /// Sampler seed; every variant uses the same seed, so differences come from the context.
    pub seed: u64,
}

impl Default for ReasoningOptions {
    fn default() -> Self {
        Self {
            max_tokens: DEFAULT_REASONING_TOKENS,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

impl ReasoningOptions {
    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        if self.max_tokens == 0 || self.max_tokens > MAX_REASONING_TOKENS {
            return Err(Error::InvalidInput(format!(
                "reasoning max_tokens {} is outside 1..={MAX_REASONING_TOKENS}",
                self.max_tokens
            )));
        }
        self.generate_options("Rating:").validate()
    }

    fn generate_options(&self, answer_prefix: &str) -> GenerateOptions {
        GenerateOptions {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            stop: vec![answer_prefix.to_string()],
        }
    }
}

/// The instruction appended to the user turn in reasoned mode (`{prefix}` is the answer prefix).
pub const REASONING_INSTRUCTION: &str = "Before rating, reason briefly: write at most three \
sentences about what the transcript shows for this item. Then give your answer on a new line \
as \"{prefix} N\".";

/// One variant's reasoning and the prompt its rating is read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Reasoned {
    /// Rendered prompt the reasoning was generated from (assistant turn open, no answer prefix).
    pub prompt_text: String,
    /// The generated reasoning (cut at the answer prefix or the first control token).
    pub reasoning: String,
    /// Why generation ended.
    pub finish: FinishReason,
    /// `prompt_text + reasoning + "\n" + answer_prefix`, ready to score.
    pub label_prompt: LabelPrompt,
}

/// The rendered reasoning prompt for one transcript × item × optional context.
pub fn reasoning_prompt(
    engine: &Engine,
    builder: &PromptBuilder,
    transcript: &Transcript,
    item: &RubricItem,
    context: Option<&str>,
    mitigate: bool,
) -> Result<String> {
    let max_bytes = engine.chat_template().max_output_bytes();
    let mut prompt = builder.build_within(transcript, item, context, mitigate, max_bytes)?;
    let instruction = REASONING_INSTRUCTION.replace("{prefix}", &prompt.answer_prefix);
    let user = prompt
        .messages
        .iter_mut()
        .rev()
        .find(|m| m.role == "user")
        .ok_or_else(|| Error::InvalidInput("the prompt has no user turn".into()))?;
    user.content.push_str("\n\n");
    user.content.push_str(&instruction);
    // `render` refuses control tokens in the messages and appends the answer prefix; the
    // reasoning goes where that prefix would be.
    let rendered = engine.render(&prompt)?;
    let text = rendered
        .strip_suffix(&prompt.answer_prefix)
        .unwrap_or(&rendered);
    Ok(text.to_string())
}

/// The label prompt read after a reasoning: `prompt_text + reasoning + "\n" + answer_prefix`
/// (without the newline when the reasoning is empty).
pub fn label_prompt_after(
    prompt_text: &str,
    reasoning: &str,
    item: &RubricItem,
    builder: &PromptBuilder,
) -> LabelPrompt {
    let layout = builder.layout();
    let mut text = String::with_capacity(prompt_text.len() + reasoning.len() + 16);
    text.push_str(prompt_text);
    if !reasoning.is_empty() {
        text.push_str(reasoning);
        text.push('\n');
    }
    text.push_str(&layout.answer_prefix);
    LabelPrompt {
        text,
        labels: item.labels.clone(),
        values: item.label_values(),
        separator: layout.label_separator.clone(),
    }
}

/// Generates one variant's reasoning and builds the prompt its rating is read from.
pub fn reason(
    engine: &Engine,
    builder: &PromptBuilder,
    transcript: &Transcript,
    item: &RubricItem,
    context: Option<&str>,
    mitigate: bool,
    options: &ReasoningOptions,
) -> Result<Reasoned> {
    Ok(reason_many(
        engine,
        builder,
        transcript,
        item,
        &[context],
        mitigate,
        options,
    )?
    .remove(0))
}

/// Generates the reasoning of several variants of one transcript × item (one per entry of
/// `contexts`, `None` = neutral) decoded together in lock step ([`Engine::generate_many`]: the
/// shared transcript is read once per step for all of them), in the order of `contexts`. Each
/// result is what [`reason`] gives for that context alone (same seed; greedy gives the same
/// text). Long lists run in several batches within the engine's limits.
pub fn reason_many(
    engine: &Engine,
    builder: &PromptBuilder,
    transcript: &Transcript,
    item: &RubricItem,
    contexts: &[Option<&str>],
    mitigate: bool,
    options: &ReasoningOptions,
) -> Result<Vec<Reasoned>> {
    reason_many_with(
        engine,
        builder,
        transcript,
        item,
        contexts,
        mitigate,
        options,
        Progress::NONE,
    )
}

/// [`reason_many`], reporting decoding steps to `progress` (`max_tokens` per lock-step batch,
/// the batches in equal shares of one range) and stopping with `Error::Cancelled` between
/// steps when asked to.
#[allow(clippy::too_many_arguments)]
pub fn reason_many_with(
    engine: &Engine,
    builder: &PromptBuilder,
    transcript: &Transcript,
    item: &RubricItem,
    contexts: &[Option<&str>],
    mitigate: bool,
    options: &ReasoningOptions,
    progress: Progress<'_>,
) -> Result<Vec<Reasoned>> {
    options.validate()?;
    if contexts.is_empty() {
        return Err(Error::InvalidInput("no variant to reason about".into()));
    }
    let prompts: Vec<String> = contexts
        .iter()
        .map(|&c| reasoning_prompt(engine, builder, transcript, item, c, mitigate))
        .collect::<Result<_>>()?;
    let mut longest = 0;
    for p in &prompts {
        longest = longest.max(engine.tokenize(p)?.len());
    }
    // Conservative: as if no token were shared, every prompt in full plus its reasoning.
    let per_batch =
        (MAX_BATCH_KV_TOKENS / (longest + options.max_tokens)).clamp(1, MAX_GENERATE_BATCH);
    let generate = options.generate_options(&builder.layout().answer_prefix);
    let mut out = Vec::with_capacity(prompts.len());
    let batches = prompts.len().div_ceil(per_batch) as u64;
    for (b, batch) in prompts.chunks(per_batch).enumerate() {
        let part = progress.part(b as u64, 1, batches);
        let generations = engine.generate_many_with(batch, &generate, part)?;
        for (prompt_text, generation) in batch.iter().zip(generations) {
            let reasoning = clean_reasoning(engine, &generation.text);
            let label_prompt = label_prompt_after(prompt_text, &reasoning, item, builder);
            out.push(Reasoned {
                prompt_text: prompt_text.clone(),
                reasoning,
                finish: generation.finish,
                label_prompt,
            });
        }
    }
    Ok(out)
}

/// Cuts the text at the first control token written in it (a turn marker would end the
/// assistant's turn) and trims trailing whitespace.
fn clean_reasoning(engine: &Engine, text: &str) -> String {
    let mut cut = text.len();
    while let Some(special) = engine.tokenizer().find_special_text(&text[..cut]) {
        match text[..cut].find(special) {
            Some(pos) => cut = pos,
            None => break,
        }
    }
    text[..cut].trim_end().to_string()
}
