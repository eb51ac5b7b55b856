//! Where the model comes from when `--model` is not given: `$DEBIAS_GUARD_MODEL`, then the
//! per-user cache (`$XDG_CACHE_HOME/debias-guard/models/`, else `~/.cache/debias-guard/models/`),
//! then `models/` under the current directory (a checkout). A path that is given is checked
//! before it is opened, so a directory or a device gets a message instead of an OS error.

use debias_guard::{Error, Result};
use std::path::{Path, PathBuf};

/// File name of the default model.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Environment variable naming the model file or directory to use.
pub const MODEL_ENV: &str = "DEBIAS_GUARD_MODEL";

/// The per-user cache folder that may hold the default model.
pub fn cache_dir() -> Option<PathBuf> {
    let non_empty = |v: std::ffi::OsString| (!v.is_empty()).then(|| PathBuf::from(v));
    let base = std::env::var_os("XDG_CACHE_HOME")
        .and_then(non_empty)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(non_empty)
                .map(|h| h.join(".cache"))
        })?;
    Some(base.join("debias-guard").join("models"))
}

/// The model to open: `given` (checked), else the first of the default places that holds one.
pub fn resolve(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = given {
        check_model_path(path, "--model")?;
        return Ok(path.to_path_buf());
    }
    let mut tried = vec!["--model: not given".to_string()];
    match std::env::var_os(MODEL_ENV).filter(|v| !v.is_empty()) {
        Some(v) => {
            let path = PathBuf::from(v);
            check_model_path(&path, &format!("${MODEL_ENV}"))?;
            return Ok(path);
        }
        None => tried.push(format!("${MODEL_ENV}: not set")),
    }
    let mut places = Vec::new();
    match cache_dir() {
        Some(dir) => places.push(dir.join(DEFAULT_MODEL_FILE)),
        None => tried.push("user cache: neither $XDG_CACHE_HOME nor $HOME is set".into()),
    }
    places.push(Path::new("models").join(DEFAULT_MODEL_FILE));
    for path in places {
        if path.is_file() {
            return Ok(path);
        }
        tried.push(format!("{}: not found", path.display()));
    }
    let cache = cache_dir().map_or_else(
        || "~/.cache/debias-guard/models".to_string(),
        |d| d.display().to_string(),
    );
    Err(Error::InvalidInput(format!(
        "no model found. Tried, in order:\n  {}\nGet the default model ({DEFAULT_MODEL_FILE}) with \
         `scripts/fetch_model.sh {cache}` from a debias-guard checkout (it needs Python 3 and \
         pip), or pass --model FILE, or set {MODEL_ENV}=FILE",
        tried.join("\n  ")
    )))
}

/// Refuses a path that cannot be a model: missing, a directory without `config.json`, or
/// something that is neither a file nor a directory (a device, a pipe).
fn check_model_path(path: &Path, from: &str) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::InvalidInput(format!(
            "model {} (from {from}) cannot be read: {e}",
            path.display()
        ))
    })?;
    if meta.is_dir() {
        if debias_guard::hf::is_model_dir(path) {
            return Ok(());
        }
        return Err(Error::InvalidInput(format!(
            "model {} (from {from}) is a directory but not a Hugging Face model directory (no \
             config.json); give a GGUF file such as {}/{DEFAULT_MODEL_FILE}",
            path.display(),
            path.display()
        )));
    }
    if !meta.is_file() {
        return Err(Error::InvalidInput(format!(
            "model {} (from {from}) is not a regular file (a device or a pipe?); give a GGUF \
             file or a Hugging Face model directory",
            path.display()
        )));
    }
    Ok(())
}
