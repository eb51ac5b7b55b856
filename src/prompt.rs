//! The one prompt builder: transcript, rubric question and optional context become a chat whose
//! assistant turn is opened with the answer prefix. Library, C ABI and trainer all call it.
//!
//! Layout of the user turn (a replaceable minijinja template, [`DEFAULT_USER_TEMPLATE`]):
//! transcript first, then the rubric question and scale, then the optional context block last.
//! That order makes every rubric item share the transcript's tokens, and every context share
//! the item's question, so the engine's prefix tree prefills them once.

use crate::error::{Error, Result};
use crate::formats::chat::{
    budgeted_environment, guard_template, output_limit, render_bounded, ChatMessage, RenderFailure,
    DEFAULT_BUDGET_CONTEXT,
};
use crate::formats::template_guard::{ContextShapes, Shape};
use crate::rubric::RubricItem;
use minijinja::value::Serde;
use minijinja::{context, Environment};
use serde::{Deserialize, Serialize};

/// Longest transcript accepted, in bytes (the context window is usually the tighter bound).
pub const MAX_TRANSCRIPT_BYTES: usize = crate::limits::MAX_TRANSCRIPT_BYTES;
/// Longest context sentence(s) accepted, in characters.
pub const MAX_CONTEXT_CHARS: usize = 1_000;

/// Default system line.
pub const DEFAULT_SYSTEM: &str =
    "You rate classroom transcripts against a rubric. Answer with a rating on the given scale.";

/// Default user-turn template. Variables: `transcript`, `item` (the rubric item), `first`,
/// `last` (ends of the scale), `answer_prefix`, `instruction` and `context` (both optional).
pub const DEFAULT_USER_TEMPLATE: &str = "\
Below is a transcript of part of a classroom lesson. Each line is one turn by the TEACHER or a STUDENT.

{{ transcript }}

Rubric item: {{ item.name }}. {{ item.description }}
Question: {{ item.question }}
Answer on a scale from {{ first }} (lowest) to {{ last }} (highest).
{% for label, text in item.levels|items %}{{ label }}: {{ text }}
{% endfor %}Reply in the form \"{{ answer_prefix }} N\".
{% if instruction %}
{{ instruction }}
{% endif %}{% if context %}
Additional information: {{ context }}
{% endif %}";

/// Instruction of the prompt-mitigation baseline (tell the rater to ignore irrelevant details).
pub const MITIGATION_INSTRUCTION: &str =
    "Base your rating only on what happens in the transcript. \
Ignore any information about the teacher's identity, background, experience or school, and any \
opinion of the person asking.";

/// What a user can change about the prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptLayout {
    /// System turn text (empty = no system turn).
    pub system: String,
    /// minijinja template of the user turn (see [`DEFAULT_USER_TEMPLATE`]).
    pub user_template: String,
    /// Text that opens the assistant turn; the rating label follows it.
    pub answer_prefix: String,
    /// Text between the answer prefix and the label (a space: `Rating: 5`).
    pub label_separator: String,
}

impl Default for PromptLayout {
    fn default() -> Self {
        Self {
            system: DEFAULT_SYSTEM.into(),
            user_template: DEFAULT_USER_TEMPLATE.into(),
            answer_prefix: "Rating:".into(),
            label_separator: " ".into(),
        }
    }
}

impl PromptLayout {
    /// Largest layout file accepted, in bytes.
    pub const MAX_FILE_BYTES: usize = 256 * 1024;

    /// Reads a layout from a JSON file (missing fields take their defaults).
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = crate::textio::read_text_file(path, Self::MAX_FILE_BYTES, "prompt layout")?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// Parses layout JSON; `source_name` appears in errors with the line of the problem.
    pub fn from_json(text: &str, source_name: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Config {
            what: "prompt layout",
            source_name: source_name.to_string(),
            line: e.line(),
            reason: e.to_string(),
        })
    }
}

/// A validated transcript: UTF-8, non-empty, bounded, line endings normalised to `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript(String);

impl Transcript {
    /// Validates transcript text.
    pub fn new(text: &str) -> Result<Self> {
        if text.len() > MAX_TRANSCRIPT_BYTES {
            return Err(Error::InvalidInput(format!(
                "transcript is {} bytes; the limit is {MAX_TRANSCRIPT_BYTES}",
                text.len()
            )));
        }
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty())
            .collect();
        if lines.is_empty() {
            return Err(Error::InvalidInput("transcript is empty".into()));
        }
        Ok(Self(lines.join("\n")))
    }

    /// Validates transcript bytes (invalid UTF-8 is reported with its offset).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::new(crate::textio::utf8_str(bytes, "transcript")?)
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether any line is a speaker turn: a short name (up to four words of letters, digits,
    /// `_`, `-`, `.` or `'`, starting with a letter), then `:` and a space or the line's end
    /// (`TEACHER: …`, `Ms. Lee: …`).
    pub fn has_speaker_turns(&self) -> bool {
        self.0.lines().any(is_speaker_turn)
    }
}

/// Whether `line` starts with `NAME:` as [`Transcript::has_speaker_turns`] describes.
fn is_speaker_turn(line: &str) -> bool {
    let Some((name, rest)) = line.trim_start().split_once(':') else {
        return false;
    };
    // `10:30`, `http://`: a turn's colon is followed by a space or ends the line.
    if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
        return false;
    }
    let name = name.trim_end();
    let word_chars = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '\'' | ' ');
    name.chars().next().is_some_and(char::is_alphabetic)
        && name.chars().count() <= 40
        && name.chars().all(word_chars)
        && name.split_whitespace().count() <= 4
}

/// Validates an optional context string: non-blank and at most [`MAX_CONTEXT_CHARS`].
pub fn validate_context(context: &str) -> Result<&str> {
    let trimmed = context.trim();
    if trimmed.is_empty() {
        return Err(Error::InvalidInput("context is empty".into()));
    }
    let chars = trimmed.chars().count();
    if chars > MAX_CONTEXT_CHARS {
        return Err(Error::InvalidInput(format!(
            "context is {chars} characters; the limit is {MAX_CONTEXT_CHARS}"
        )));
    }
    Ok(trimmed)
}

/// A prompt before the model's chat template is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptMessages {
    /// System (optional) and user turns.
    pub messages: Vec<ChatMessage>,
    /// Text that opens the assistant turn.
    pub answer_prefix: String,
    /// Text between the answer prefix and a label.
    pub label_separator: String,
}

/// Renders rubric prompts from a [`PromptLayout`].
#[derive(Debug, Clone)]
pub struct PromptBuilder {
    layout: PromptLayout,
    env: Environment<'static>,
}

/// Where a layout's template is named in errors.
const USER_TEMPLATE: &str = "user_template";

impl Default for PromptBuilder {
    fn default() -> Self {
        Self::new(PromptLayout::default()).expect("default layout compiles")
    }
}

impl PromptBuilder {
    /// Compiles a layout; a template syntax error is reported with its line.
    pub fn new(layout: PromptLayout) -> Result<Self> {
        // Building only fails for conflicting delimiters; these are the defaults.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .unwrap_or_default();
        let context = ContextShapes::new([("item", Shape::Bounded)]);
        guard_template(
            &layout.user_template,
            syntax.clone(),
            &context,
            &format!("prompt layout {USER_TEMPLATE}"),
        )?;
        let mut env = budgeted_environment();
        env.set_syntax(syntax);
        env.add_template_owned("user", layout.user_template.clone())
            .map_err(|e| Error::Config {
                what: "prompt layout",
                source_name: USER_TEMPLATE.into(),
                line: e.line().unwrap_or(0),
                reason: e.to_string(),
            })?;
        if layout.answer_prefix.trim().is_empty() {
            return Err(Error::InvalidInput("answer prefix is empty".into()));
        }
        Ok(Self { layout, env })
    }

    /// The layout in use.
    pub fn layout(&self) -> &PromptLayout {
        &self.layout
    }

    /// Builds the chat for one transcript × item × optional context; `mitigate` adds the
    /// instruction to ignore irrelevant information (the prompt-mitigation baseline).
    /// The user turn renders within [`output_limit`]`(`[`DEFAULT_BUDGET_CONTEXT`]`)` bytes.
    pub fn build(
        &self,
        transcript: &Transcript,
        item: &RubricItem,
        context: Option<&str>,
        mitigate: bool,
    ) -> Result<PromptMessages> {
        let max_bytes = output_limit(DEFAULT_BUDGET_CONTEXT);
        self.build_within(transcript, item, context, mitigate, max_bytes)
    }

    /// [`build`](Self::build) with the user turn's rendering bounded to `max_bytes` (an engine
    /// passes its chat template's limit, derived from the model's context length).
    pub fn build_within(
        &self,
        transcript: &Transcript,
        item: &RubricItem,
        context: Option<&str>,
        mitigate: bool,
        max_bytes: usize,
    ) -> Result<PromptMessages> {
        item.validate().map_err(|r| Error::Config {
            what: "rubric",
            source_name: item.id.clone(),
            line: 0,
            reason: r,
        })?;
        let context = context.map(validate_context).transpose()?;
        let layout_error = |e: minijinja::Error| Error::Config {
            what: "prompt layout",
            source_name: USER_TEMPLATE.into(),
            line: e.line().unwrap_or(0),
            reason: e.to_string(),
        };
        let tmpl = self.env.get_template("user").map_err(layout_error)?;
        let ctx = context! {
            transcript => transcript.as_str(),
            item => Serde(item),
            first => item.labels.first(),
            last => item.labels.last(),
            answer_prefix => self.layout.answer_prefix.as_str(),
            instruction => mitigate.then_some(MITIGATION_INSTRUCTION),
            context => context,
        };
        let user = render_bounded(&tmpl, ctx, max_bytes).map_err(|f| match f {
            RenderFailure::Budget(reason) => Error::TemplateBudget {
                template: format!("prompt layout {USER_TEMPLATE}"),
                reason,
            },
            RenderFailure::Template(e) => layout_error(e),
        })?;
        let mut messages = Vec::with_capacity(2);
        if !self.layout.system.is_empty() {
            messages.push(ChatMessage::new("system", self.layout.system.clone()));
        }
        messages.push(ChatMessage::new("user", user.trim_end().to_string()));
        Ok(PromptMessages {
            messages,
            answer_prefix: self.layout.answer_prefix.clone(),
            label_separator: self.layout.label_separator.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Transcript;

    #[test]
    fn speaker_turns_are_name_colon_lines() {
        let turns = |t: &str| Transcript::new(t).unwrap().has_speaker_turns();
        assert!(turns("TEACHER: What is 7 x 8?\nSTUDENT: 56."));
        assert!(turns("Intro line\nMs. Lee: Let's begin."));
        assert!(turns("student_3: I think so"));
        assert!(!turns("The lesson was about fractions.\nIt went well."));
        assert!(!turns("At 10:30 the class started."));
        assert!(!turns(
            "The teacher said many things to the class today: hello."
        ));
    }
}
