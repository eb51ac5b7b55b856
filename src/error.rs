//! The one error type of the library: every fallible call returns [`Result`].

use std::path::PathBuf;

/// Everything that can go wrong, with enough context (file, key, tensor, line) to act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// A GGUF file is structurally invalid (bad magic, truncated, out-of-range sizes).
    #[error("invalid GGUF file {path}: {reason} (at byte {offset})")]
    GgufFormat {
        /// The file being parsed.
        path: PathBuf,
        /// Byte offset where the problem was found.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A metadata key the model needs is absent or has the wrong type.
    #[error("GGUF metadata key `{key}`: {reason}")]
    Metadata {
        /// The metadata key.
        key: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The file declares an architecture this library does not implement.
    #[error("unsupported model architecture `{0}` (supported: llama, qwen2)")]
    UnsupportedArchitecture(String),
    /// A tensor uses a GGML type this library cannot load.
    #[error("tensor `{tensor}` uses unsupported GGML type id {type_id}")]
    UnsupportedTensorType {
        /// The tensor name.
        tensor: String,
        /// The raw GGML type id.
        type_id: u32,
    },
    /// A tensor is missing, or its shape does not match the model's metadata.
    #[error("tensor `{tensor}`: {reason}")]
    Tensor {
        /// The tensor name as stored in the file.
        tensor: String,
        /// What was wrong.
        reason: String,
    },
    /// The tokenizer metadata is incomplete or uses an unknown pre-tokenizer.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template failed to parse or render.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// A rubric, prompt layout or probe file is malformed.
    #[error("{what} {source_name}, line {line}: {reason}")]
    Config {
        /// Kind of file (`rubric`, `probe catalog`, …).
        what: &'static str,
        /// File name or `<inline>`.
        source_name: String,
        /// 1-based line of the problem (0 when not known).
        line: usize,
        /// What was wrong.
        reason: String,
    },
    /// Input text is not valid UTF-8.
    #[error("{what} is not valid UTF-8 (first bad byte at offset {offset})")]
    InvalidUtf8 {
        /// Which argument.
        what: &'static str,
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// An input value is outside what the call accepts (empty transcript, bad option, …).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A prompt does not fit the model's context window.
    #[error("prompt of {tokens} tokens does not fit the context window of {context} tokens")]
    ContextOverflow {
        /// Tokens needed.
        tokens: usize,
        /// The model's context length.
        context: usize,
    },
    /// A label of the scale is malformed or tokenizes badly.
    #[error("label `{label}`: {reason}")]
    Label {
        /// The label text.
        label: String,
        /// What was wrong.
        reason: String,
    },
    /// A Hugging Face model directory is incomplete or malformed (config, index, safetensors).
    #[error("model {path}: {reason}")]
    ModelFile {
        /// The file or directory at fault.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A LoRA adapter is malformed or does not fit the base model.
    #[error("adapter {adapter}: {reason}")]
    Adapter {
        /// The adapter's name or directory.
        adapter: String,
        /// What was wrong.
        reason: String,
    },
    /// A LoRA adapter uses a feature this library does not implement (named, never ignored).
    #[error("adapter {adapter} uses {feature}, which is not supported")]
    UnsupportedAdapterFeature {
        /// The adapter's name or directory.
        adapter: String,
        /// The feature (`use_dora`, `modules_to_save`, …).
        feature: String,
    },
    /// A template render ran past its instruction (fuel) or output-size budget, or the template
    /// was refused before compiling (`formats::template_guard`).
    #[error("{template}: {reason}")]
    TemplateBudget {
        /// The template's source (model file and key, or `prompt layout user_template`).
        template: String,
        /// Which budget was exceeded, and its size.
        reason: String,
    },
    /// The model computed a NaN or infinite value where a probability was expected (its
    /// weights or adapter are not sound); never turned into a distribution.
    #[error("non-finite {what}: {reason}")]
    NonFinite {
        /// The quantity (`label log-probability`, `label mass`, …).
        what: &'static str,
        /// Where it occurred.
        reason: String,
    },
    /// A documented work limit ([`crate::limits`]) was exceeded; checked before any model work.
    #[error("{limit}: {requested} exceeds the limit of {max}")]
    WorkLimit {
        /// The limit's name (`rubric items`, `tokenizer input bytes`, …).
        limit: &'static str,
        /// What the input asks for.
        requested: usize,
        /// The most allowed.
        max: usize,
    },
    /// The caller cancelled the call (a progress callback returned `false`, or its cancel flag
    /// was set); nothing was returned.
    #[error("cancelled by the caller")]
    Cancelled,
    /// An error from the tensor backend.
    #[error("tensor backend: {0}")]
    Backend(#[from] candle_core::Error),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn tensor(tensor: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Tensor {
            tensor: tensor.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn model_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::ModelFile {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn adapter(adapter: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Adapter {
            adapter: adapter.into(),
            reason: reason.into(),
        }
    }

    /// `Err(WorkLimit)` when `requested > max`.
    pub(crate) fn check_limit(limit: &'static str, requested: usize, max: usize) -> Result<()> {
        if requested > max {
            return Err(Self::WorkLimit {
                limit,
                requested,
                max,
            });
        }
        Ok(())
    }

    pub(crate) fn metadata(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Metadata {
            key: key.into(),
            reason: reason.into(),
        }
    }
}
