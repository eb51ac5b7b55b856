//! Chat templates: the Jinja template stored in the model (`tokenizer.chat_template`), rendered
//! with minijinja and Python-compatible string methods, so every model gets its own turn markers.
//!
//! Templates come from files users bring, so every render (here and in the prompt layout) runs
//! under a budget: [`TEMPLATE_FUEL`] minijinja fuel (instructions and data: minijinja 3 charges
//! every string a template builds and its output, so `s ~ s` in a loop runs out of fuel before it
//! runs out of memory) and an output size of [`BYTES_PER_CONTEXT_TOKEN`] × the model's context
//! length; past either it is [`Error::TemplateBudget`], never a hang or an unbounded allocation.
//! What fuel does not see (list joins, text of shared lists, chains too deep to compile) is
//! refused before compiling by [`template_guard`](super::template_guard).

use super::template_fuel;
use super::template_guard::{self, ContextShapes, Shape};
use crate::error::{Error, Result};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{context, Environment, ErrorKind, Template, Value};
use serde::Serialize;
use std::io;

/// Fuel of one render (minijinja 3): one per instruction executed and one per 64 bytes of data
/// the template creates (strings and lists from operators, filters, output), so it bounds
/// both time and memory: at most about 64 MiB. A chat template over a few messages needs a
/// few thousand.
pub const TEMPLATE_FUEL: u64 = 1_000_000;

/// Rendered bytes allowed per token of context window: far more than any token's text, so a
/// rendering over the limit could never fit the window.
pub const BYTES_PER_CONTEXT_TOKEN: usize = 256;

/// Context length assumed for the output limit of a template not bound to a model.
pub const DEFAULT_BUDGET_CONTEXT: usize = 131_072;

/// Largest rendering, in bytes, of a template for a model with `context_length` tokens.
pub fn output_limit(context_length: usize) -> usize {
    context_length
        .max(1)
        .saturating_mul(BYTES_PER_CONTEXT_TOKEN)
}

/// Widest `tojson` indent accepted; chat templates use 2 or 4.
pub const MAX_JSON_INDENT: usize = 16;

/// An environment with the render budget's fuel set and the built-in `tojson` replaced by
/// [`bounded_tojson`]; printing, `string`, `join` and Python-style methods charge their
/// input's text first ([`template_fuel`](super::template_fuel)).
pub(crate) fn budgeted_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.add_filter("tojson", bounded_tojson);
    env.add_filter("string", template_fuel::charged_string);
    env.add_filter("join", template_fuel::charged_join);
    env.set_formatter(template_fuel::charged_formatter);
    env.set_unknown_method_callback(template_fuel::charged_method);
    env
}

/// Runs the [static check](template_guard) on a template about to be compiled.
pub(crate) fn guard_template(
    source: &str,
    syntax: SyntaxConfig,
    context: &ContextShapes,
    origin: &str,
) -> Result<()> {
    template_guard::check_template(source, syntax, context).map_err(|refusal| {
        Error::TemplateBudget {
            template: origin.to_string(),
            reason: refusal.to_string(),
        }
    })
}

/// minijinja's `tojson` with its indent bounded by [`MAX_JSON_INDENT`] and its output charged
/// as fuel. (minijinja 3.1 writes an unbounded indent space by space before charging it, so
/// `tojson(indent=10**11)` ran for minutes: a finding of the `chat_template` fuzz target.)
fn bounded_tojson(
    state: &minijinja::State,
    value: &Value,
    indent: Option<Value>,
    kwargs: minijinja::value::Kwargs,
) -> std::result::Result<Value, minijinja::Error> {
    let requested = match &indent {
        Some(v) => Some(v.clone()),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    // `true` means 2; numbers beyond usize are refused by `tojson` itself.
    let width = requested
        .as_ref()
        .filter(|v| v.kind() != minijinja::value::ValueKind::Bool)
        .and_then(Value::as_usize);
    if let Some(width) = width {
        if width > MAX_JSON_INDENT {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson indent {width} exceeds {MAX_JSON_INDENT}"),
            ));
        }
    }
    template_fuel::charge_text_of(state, value)?;
    let json = minijinja::filters::tojson(value, indent, kwargs)?;
    let bytes = json.as_str().map_or(0, str::len) as u64;
    state.consume_fuel(bytes / 64)?;
    Ok(json)
}

/// Jinja's `trim_blocks` + `lstrip_blocks` (as chat templates are rendered by Hugging Face).
fn trimmed_syntax() -> SyntaxConfig {
    // Building only fails for conflicting delimiters; these are the defaults.
    SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .unwrap_or_default()
}

/// Why a budgeted render failed.
pub(crate) enum RenderFailure {
    /// Out of fuel or over the output limit (the text says which, with the limit).
    Budget(String),
    /// Any other template error.
    Template(minijinja::Error),
}

/// Renders `tmpl` into at most `max_bytes` bytes, under the environment's fuel.
pub(crate) fn render_bounded(
    tmpl: &Template<'_, '_>,
    ctx: Value,
    max_bytes: usize,
) -> std::result::Result<String, RenderFailure> {
    let mut out = BoundedWriter {
        buf: Vec::new(),
        max_bytes,
        overflow: false,
    };
    match tmpl.render_captured_to(ctx, &mut out) {
        Ok(_) => String::from_utf8(out.buf).map_err(|_| {
            RenderFailure::Template(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "rendering is not UTF-8",
            ))
        }),
        Err(_) if out.overflow => Err(RenderFailure::Budget(format!(
            "rendering exceeds the output limit of {max_bytes} bytes"
        ))),
        Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(RenderFailure::Budget(format!(
            "rendering exceeds the budget of {TEMPLATE_FUEL} template instructions (or 64-byte units of data)"
        ))),
        Err(e) => Err(RenderFailure::Template(e)),
    }
}

/// A byte sink that refuses to grow past `max_bytes`.
struct BoundedWriter {
    buf: Vec<u8>,
    max_bytes: usize,
    overflow: bool,
}

impl io::Write for BoundedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > self.max_bytes {
            self.overflow = true;
            return Err(io::Error::other("output limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

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
    origin: String,
    max_output_bytes: usize,
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
        let context = ContextShapes::new([("messages", Shape::Bounded)]);
        guard_template(&source, trimmed_syntax(), &context, "chat template")?;
        let mut env = budgeted_environment();
        env.set_syntax(trimmed_syntax());
        env.add_function(
            "raise_exception",
            |state: &minijinja::State,
             msg: Value|
             -> std::result::Result<String, minijinja::Error> {
                template_fuel::charge_text_of(state, &msg)?;
                Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    msg.to_string(),
                ))
            },
        );
        env.add_template_owned("chat", source.clone())
            .map_err(|e| Error::ChatTemplate(describe(&e)))?;
        Ok(Self {
            env,
            source,
            origin: "chat template".into(),
            max_output_bytes: output_limit(DEFAULT_BUDGET_CONTEXT),
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
        let ctx = context! {
            messages => Serde(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
        };
        render_bounded(&tmpl, ctx, self.max_output_bytes).map_err(|f| match f {
            RenderFailure::Budget(reason) => Error::TemplateBudget {
                template: self.origin.clone(),
                reason,
            },
            RenderFailure::Template(e) => Error::ChatTemplate(describe(&e)),
        })
    }

    /// Names where the template came from (used in budget errors) and bounds its rendering to
    /// [`output_limit`]`(context_length)` bytes.
    pub fn with_budget(mut self, origin: impl Into<String>, context_length: usize) -> Self {
        self.origin = origin.into();
        self.max_output_bytes = output_limit(context_length);
        self
    }

    /// Largest rendering accepted, in bytes.
    pub fn max_output_bytes(&self) -> usize {
        self.max_output_bytes
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
