//! `tokenizer.json` + `tokenizer_config.json` → [`TextTokenizer`] and chat template.

use super::paths::existing_file;
use super::HfConfig;
use crate::error::{Error, Result};
use crate::formats::tokenizer::TextTokenizer;
use crate::textio::read_text_file;
use std::path::Path;

/// Largest `tokenizer.json` accepted.
const MAX_TOKENIZER_BYTES: usize = 64 << 20;
/// Largest `tokenizer_config.json` or template file accepted.
const MAX_TOKENIZER_CONFIG_BYTES: usize = 8 << 20;

/// Loads the tokenizer of a model directory.
pub fn load(dir: &Path, config: &HfConfig) -> Result<TextTokenizer> {
    let path = existing_file(dir, "tokenizer.json")?
        .ok_or_else(|| Error::model_file(dir, "no tokenizer.json"))?;
    let text = read_text_file(&path, MAX_TOKENIZER_BYTES, "tokenizer.json")?;
    let inner = tokenizers::Tokenizer::from_bytes(text.as_bytes())
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
    let settings = tokenizer_config(dir)?;
    let id_of = |key: &str| -> Result<Option<u32>> {
        match settings
            .as_ref()
            .and_then(|s| s.get(key))
            .and_then(token_text)
        {
            None => Ok(None),
            Some(text) => inner.token_to_id(text).map(Some).ok_or_else(|| {
                Error::Tokenizer(format!("{key} `{text}` is not in the vocabulary"))
            }),
        }
    };
    let bos = id_of("bos_token")?.or(config.bos_token_id);
    let mut stop = config.eos_token_ids.clone();
    stop.extend(id_of("eos_token")?);
    let add_bos = settings
        .as_ref()
        .and_then(|s| s.get("add_bos_token"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    TextTokenizer::from_tokenizer(inner, bos, add_bos, stop)
}

/// The chat template: `chat_template.jinja`, else `chat_template` of `tokenizer_config.json`
/// (a string, or a list of named templates of which `default` is taken).
pub fn chat_template(dir: &Path) -> Result<Option<String>> {
    if let Some(jinja) = existing_file(dir, "chat_template.jinja")? {
        return read_text_file(&jinja, MAX_TOKENIZER_CONFIG_BYTES, "chat template").map(Some);
    }
    let Some(settings) = tokenizer_config(dir)? else {
        return Ok(None);
    };
    Ok(match settings.get("chat_template") {
        Some(serde_json::Value::String(t)) => Some(t.clone()),
        Some(serde_json::Value::Array(named)) => named
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(|t| t.as_str())
            .map(str::to_string),
        _ => None,
    })
}

fn tokenizer_config(dir: &Path) -> Result<Option<serde_json::Value>> {
    let Some(path) = existing_file(dir, "tokenizer_config.json")? else {
        return Ok(None);
    };
    let text = read_text_file(&path, MAX_TOKENIZER_CONFIG_BYTES, "tokenizer_config.json")?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::model_file(&path, format!("invalid JSON: {e}")))
}

/// A special token given as a string or as `{"content": ...}`.
fn token_text(value: &serde_json::Value) -> Option<&str> {
    value
        .as_str()
        .or_else(|| value.get("content").and_then(|c| c.as_str()))
}
