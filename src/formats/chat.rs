//! Chat templates: the Jinja template stored in the model (`tokenizer.chat_template`), rendered
//! with minijinja and Python-compatible string methods, so every model gets its own turn markers.

use crate::error::{Error, Result};
use minijinja::{context, Environment, ErrorKind};
use serde::Serialize;

/// Template used only when a model file carries none: ChatML turn markers.
pub const DEFAULT_CHAT_TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// Longest chat template accepted, in bytes.
const MAX_TEMPLATE_BYTES: usize = 1 << 20;

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The turn's text.
    pub content: String,
}

impl ChatMessage {
    /// A turn with the given role and text.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_string(),
            content: content.into(),
        }
    }
}

/// A compiled chat template plus the special-token texts it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source` (or [`DEFAULT_CHAT_TEMPLATE`] when `None`).
    pub fn new(source: Option<&str>, bos_token: &str, eos_token: &str) -> Result<Self> {
        let source = source.unwrap_or(DEFAULT_CHAT_TEMPLATE).to_string();
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(Error::ChatTemplate(format!(
                "template of {} bytes exceeds the {MAX_TEMPLATE_BYTES}-byte limit",
                source.len()
            )));
        }
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned("chat", source.clone())
            .map_err(|e| Error::ChatTemplate(describe(&e)))?;
        Ok(Self {
            env,
            source,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// Renders the conversation; with `add_generation_prompt` the text ends where the assistant
    /// turn's content begins.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| Error::ChatTemplate(describe(&e)))?;
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        })
        .map_err(|e| Error::ChatTemplate(describe(&e)))
    }

    /// The template source in use.
    pub fn source(&self) -> &str {
        &self.source
    }
}

fn describe(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!("{e} (template line {line})"),
        None => e.to_string(),
    }
}
