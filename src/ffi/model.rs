//! `dg_model_t`: a loaded model (weights, tokenizer, chat template, worker pool) and the prompt
//! layout it renders rubric prompts with. Shared by any number of threads.

use super::error::{dg_error, dg_status, out_arg, run, write_out, Failure};
use super::owned::{arg_ref, arg_str, opt_ref, opt_str};
use crate::engine::{Engine, EngineOptions};
use crate::model::{WeightFormat, DEFAULT_PREFILL_CHUNK};
use crate::prompt::{PromptBuilder, PromptLayout};
use safer_ffi::c_char;
use safer_ffi::prelude::*;
use std::ffi::CString;
use std::ptr;
use std::time::Instant;

/// How weights are held in memory after loading (values of `dg_model_options_t.weight_format`).
#[ffi_export]
#[derive_ReprC]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum dg_weight_format {
    /// Dense f32 when the dequantized model fits in 3 GiB, else as stored in the file.
    Auto = 0,
    /// Dequantize every matrix to f32: exactly the file's values, the fastest kernels, the most
    /// memory.
    DenseF32 = 1,
    /// Keep quantized matrices quantized: the least memory.
    AsStored = 2,
}

/// Options of `dg_model_open`. Start from `dg_model_default_options()` and change what you
/// need; the strings are read during the call only.
#[derive_ReprC]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct dg_model_options {
    /// Worker threads of this model's pool; 0 = one per available core.
    pub threads: u32,
    /// Tokens per prefill chunk (bounds the attention matrix to chunk x context);
    /// 0 = the library default (512).
    pub prefill_chunk: u32,
    /// A `dg_weight_format_t` value; default `DG_WEIGHT_FORMAT_AUTO`.
    pub weight_format: u32,
    /// A PEFT LoRA adapter directory to load under the name `"default"` and run; NULL = none
    /// (the base model). More adapters: `dg_model_load_adapter` / `dg_model_with_adapter`.
    pub adapter_path: *const c_char,
    /// The prompt layout as JSON text (`system`, `user_template`, `answer_prefix`,
    /// `label_separator`; omitted keys keep their defaults); NULL = the default layout.
    pub prompt_layout_json: *const c_char,
    /// A prompt layout JSON file (the CLI's `--layout`), instead of `prompt_layout_json`;
    /// NULL = none. Setting both is `DG_STATUS_INVALID_ARGUMENT`.
    pub prompt_layout_path: *const c_char,
}

/// A loaded model, ready to score. Create it with `dg_model_open`, release it with
/// `dg_model_free`. Immutable once open: every scoring call takes a `const dg_model_t *` and may
/// run on many threads at once (calls queue on the model's worker pool).
#[derive_ReprC]
#[repr(opaque)]
pub struct dg_model {
    pub(crate) engine: Engine,
    pub(crate) builder: PromptBuilder,
    pub(crate) load_seconds: f64,
    architecture: CString,
}

/// Name under which `dg_model_options_t.adapter_path` is loaded.
pub const DEFAULT_ADAPTER_NAME: &str = "default";

impl dg_model {
    /// Another handle sharing this model's layout, with `engine` (a handle on the same weights).
    pub(crate) fn with_engine(&self, engine: Engine) -> Self {
        Self {
            engine,
            builder: self.builder.clone(),
            load_seconds: self.load_seconds,
            architecture: self.architecture.clone(),
        }
    }
}

/// Facts about an open model, written by `dg_model_get_info`.
#[derive_ReprC]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct dg_model_info {
    /// `general.architecture` of the file (`"llama"`, `"qwen2"`); owned by the model, valid
    /// until `dg_model_free`.
    pub architecture: *const c_char,
    /// Context window in tokens.
    pub context_length: usize,
    /// Rows of the token embedding.
    pub vocab_size: usize,
    /// Worker threads of the model's pool.
    pub threads: usize,
    /// Seconds `dg_model_open` took to load the file.
    pub load_seconds: f64,
}

/// The default model options: all cores, default prefill chunk, automatic weight format, no
/// adapter, default prompt layout (every pointer NULL). Thread-safe.
#[ffi_export]
pub fn dg_model_default_options() -> dg_model_options {
    dg_model_options {
        threads: 0,
        prefill_chunk: 0,
        weight_format: dg_weight_format::Auto as u32,
        adapter_path: ptr::null(),
        prompt_layout_json: ptr::null(),
        prompt_layout_path: ptr::null(),
    }
}

/// Opens a model: a GGUF file or a Hugging Face model directory (`config.json`, safetensors,
/// `tokenizer.json`, `tokenizer_config.json`).
///
/// `path`: the model (UTF-8, NUL-terminated). `options`: NULL for the defaults.
/// On success writes a new model to `*out_model`; release it with `dg_model_free`.
/// Returns `DG_STATUS_OK`, or `DG_STATUS_NULL_ARGUMENT`, `DG_STATUS_INVALID_UTF8`,
/// `DG_STATUS_INVALID_ARGUMENT` (bad option value), `DG_STATUS_ADAPTER_INVALID` or
/// `DG_STATUS_NOT_SUPPORTED` (the adapter), `DG_STATUS_IO`, `DG_STATUS_MODEL_INVALID`,
/// `DG_STATUS_MODEL_UNSUPPORTED`,
/// `DG_STATUS_CONFIG` (bad prompt layout), `DG_STATUS_BACKEND` or `DG_STATUS_PANIC`.
/// (`DG_STATUS_IO` also covers the prompt layout file.)
/// Thread-safe; loading takes seconds for large files.
#[ffi_export]
pub unsafe fn dg_model_open(
    path: *const c_char,
    options: *const dg_model_options,
    out_model: *mut *mut dg_model,
    error: *mut *mut dg_error,
) -> dg_status {
    run(error, || {
        let out = out_arg(out_model, "out_model")?;
        // SAFETY: pointer arguments follow the header's conventions (NULL or valid).
        let (path, options) = unsafe { (arg_str(path, "path")?, opt_ref(options, "options")?) };
        let options = options
            .copied()
            .unwrap_or_else(|| dg_model_default_options());
        // SAFETY: as above.
        let (adapter, layout_json, layout_path) = unsafe {
            (
                opt_str(options.adapter_path, "options->adapter_path")?,
                opt_str(options.prompt_layout_json, "options->prompt_layout_json")?,
                opt_str(options.prompt_layout_path, "options->prompt_layout_path")?,
            )
        };
        let weight_format = match options.weight_format {
            0 => WeightFormat::Auto,
            1 => WeightFormat::DenseF32,
            2 => WeightFormat::AsStored,
            other => {
                return Err(Failure::invalid(format!(
                    "options->weight_format {other} is not a dg_weight_format_t value (0, 1 or 2)"
                )))
            }
        };
        let layout = match (layout_json, layout_path) {
            (None, None) => PromptLayout::default(),
            (Some(json), None) => PromptLayout::from_json(json, "options->prompt_layout_json")?,
            (None, Some(path)) => PromptLayout::load(path)?,
            (Some(_), Some(_)) => {
                return Err(Failure::invalid(
                    "set options->prompt_layout_json or options->prompt_layout_path, not both",
                ))
            }
        };
        let builder = PromptBuilder::new(layout)?;
        let engine_options = EngineOptions {
            threads: options.threads as usize,
            prefill_chunk: match options.prefill_chunk {
                0 => DEFAULT_PREFILL_CHUNK,
                n => n as usize,
            },
            weight_format,
            ..Default::default()
        };
        let started = Instant::now();
        let mut engine = Engine::open(path, &engine_options)?;
        if let Some(dir) = adapter {
            engine.load_adapter(DEFAULT_ADAPTER_NAME, dir)?;
            engine = engine.with_adapter(Some(DEFAULT_ADAPTER_NAME))?;
        }
        let load_seconds = started.elapsed().as_secs_f64();
        let architecture = super::owned::c_string(engine.config().architecture.key_prefix());
        let model = dg_model {
            engine,
            builder,
            load_seconds,
            architecture,
        };
        write_out(out, super::handle::register(model));
        Ok(())
    })
}

/// Writes facts about an open model to `*out_info`.
/// Returns `DG_STATUS_OK` or `DG_STATUS_NULL_ARGUMENT`. Thread-safe.
#[ffi_export]
pub unsafe fn dg_model_get_info(
    model: *const dg_model,
    out_info: *mut dg_model_info,
    error: *mut *mut dg_error,
) -> dg_status {
    run(error, || {
        let out = out_arg(out_info, "out_info")?;
        // SAFETY: NULL or a live model (header conventions).
        let model = unsafe { arg_ref(model, "model")? };
        let config = model.engine.config();
        write_out(
            out,
            dg_model_info {
                architecture: model.architecture.as_ptr().cast(),
                context_length: config.context_length,
                vocab_size: config.vocab_size,
                threads: model.engine.threads(),
                load_seconds: model.load_seconds,
            },
        );
        Ok(())
    })
}

/// The matrix kernel the model's dense f32 projections run on: `"avx512"`, `"avx2"`,
/// `"portable"`, or `"candle"` (quantized weights, another device, or a build without our
/// kernels). Chosen at load from the CPU's features (`DEBIAS_GUARD_KERNEL` forces one). Static:
/// never free it. Returns NULL for a NULL, freed or mistyped handle. Thread-safe.
#[ffi_export]
pub unsafe fn dg_model_kernel_path(model: *const dg_model) -> *const c_char {
    let name = |model: &dg_model| -> &'static [u8] {
        match model.engine.kernel_path() {
            Some(crate::model::kernels::KernelPath::Avx512) => b"avx512\0",
            Some(crate::model::kernels::KernelPath::Avx2) => b"avx2\0",
            Some(crate::model::kernels::KernelPath::Portable) => b"portable\0",
            None => b"candle\0",
        }
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: NULL or a live model (header conventions); checked by `arg_ref`.
        match unsafe { arg_ref(model, "model") } {
            Ok(m) => name(m).as_ptr().cast(),
            Err(_) => ptr::null(),
        }
    }))
    .unwrap_or(ptr::null())
}

/// Releases a model and its worker pool. NULL is ignored. No other call may be using the model
/// (free it after every thread is done with it); results already returned stay valid.
#[ffi_export]
pub unsafe fn dg_model_free(model: *mut dg_model) {
    // Only a live model handle is freed: NULL, a second free or another handle type is ignored.
    super::error::quietly(|| drop(super::handle::unregister(model)));
}
