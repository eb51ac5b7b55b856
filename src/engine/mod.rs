//! The engine: a loaded model, its tokenizer and chat template, and a thread pool. It turns
//! prompts into label distributions (sharing prefixes across variants) and generates text.
//! `Engine` is `Send + Sync`; every call keeps its own KV state, so one engine serves many
//! threads at once.

mod batch;
mod generate;
pub mod progress;
mod score;
mod tree;

pub use batch::{MAX_BATCH_KV_TOKENS, MAX_GENERATE_BATCH};
pub use generate::{FinishReason, GenerateOptions, Generation, MAX_NEW_TOKENS_LIMIT};
pub use progress::{observe, Observer, Progress};
pub use score::{LabelPrompt, ScoreDistribution};
pub use tree::{TokenQuery, TreeStats};

use crate::arch::ModelConfig;
use crate::error::{Error, Result};
use crate::formats::adapter::{MergedSource, PeftAdapter};
use crate::formats::chat::ChatTemplate;
use crate::formats::gguf::{GgufFile, MetadataExt};
use crate::formats::tokenizer::TextTokenizer;
use crate::formats::TensorSource;
use crate::model::kernels::{KernelPath, PackedFormat};
use crate::model::{DecoderModel, KvState, LoraWeights, WeightFormat, DEFAULT_PREFILL_CHUNK};
use crate::prompt::{PromptBuilder, PromptMessages, Transcript};
use crate::rubric::RubricItem;
use candle_core::Device;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Largest prefill chunk accepted (tokens); the attention mask of one chunk is
/// chunk × (context) floats per query group, so this bounds a call's scratch memory.
pub const MAX_PREFILL_CHUNK: usize = 4096;

/// Most worker threads an engine may start.
pub const MAX_THREADS: usize = 1024;

/// Most adapters one model may have loaded at once.
pub const MAX_ADAPTERS: usize = 256;

/// Longest adapter name (bytes).
pub const MAX_ADAPTER_NAME: usize = 256;

/// How to open a model.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Worker threads for this engine (0 = all available cores).
    pub threads: usize,
    /// How weights are held after loading.
    pub weight_format: WeightFormat,
    /// Tokens per prefill chunk (bounds the attention matrix to chunk × context).
    pub prefill_chunk: usize,
    /// Device to run on (CPU unless built with `cuda` / `metal`).
    pub device: Device,
    /// Kernel path for dense f32 weights on the CPU (`None` = the process-wide choice:
    /// `DEBIAS_GUARD_KERNEL`, else [`KernelPath::auto`]). A path the CPU cannot run makes
    /// [`Engine::open`] fail.
    pub kernel: Option<KernelPath>,
    /// Value format of the packed weights (`None` = the process-wide choice:
    /// `DEBIAS_GUARD_PACKED`, else [`PackedFormat::default`], 8-bit). See [`PackedFormat`].
    pub packed_format: Option<PackedFormat>,
    /// A PEFT adapter directory folded into the weights at load (`W + scale · B · A`): the
    /// adapter is always on and costs nothing per token. Merged projections are held as dense
    /// f32. Other adapters can still be loaded on top at run time.
    pub merge_adapter: Option<PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            threads: 0,
            weight_format: WeightFormat::Auto,
            prefill_chunk: DEFAULT_PREFILL_CHUNK,
            device: Device::Cpu,
            kernel: None,
            packed_format: None,
            merge_adapter: None,
        }
    }
}

impl EngineOptions {
    /// Checks the numbers before anything is loaded.
    pub fn validate(&self) -> Result<()> {
        if self.prefill_chunk == 0 || self.prefill_chunk > MAX_PREFILL_CHUNK {
            return Err(Error::InvalidInput(format!(
                "prefill_chunk {} is outside 1..={MAX_PREFILL_CHUNK}",
                self.prefill_chunk
            )));
        }
        if self.threads > MAX_THREADS {
            return Err(Error::InvalidInput(format!(
                "threads {} is above the limit of {MAX_THREADS}",
                self.threads
            )));
        }
        Ok(())
    }
}

/// A model ready to score and generate, with the adapter (if any) that this handle runs.
///
/// Cloning or [`Engine::with_adapter`] gives another handle on the same loaded weights, thread
/// pool and adapter registry; only the active adapter differs.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    active: Option<Arc<LoraWeights>>,
}

/// What every handle of one loaded model shares.
struct Shared {
    model: DecoderModel,
    tokenizer: TextTokenizer,
    chat: ChatTemplate,
    pool: rayon::ThreadPool,
    prefill_chunk: usize,
    path: PathBuf,
    merged_adapter: Option<PathBuf>,
    adapters: RwLock<BTreeMap<String, Arc<LoraWeights>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("path", &self.shared.path)
            .field("config", self.shared.model.config())
            .field("adapter", &self.active_adapter())
            .finish()
    }
}

impl Engine {
    /// Opens a model: a GGUF file, or a Hugging Face directory (`config.json`, safetensors,
    /// `tokenizer.json`, `tokenizer_config.json`).
    pub fn open(path: impl AsRef<Path>, options: &EngineOptions) -> Result<Self> {
        let path = path.as_ref();
        options.validate()?;
        let kernel = match options.kernel {
            Some(k) => k.check().map(Some),
            None => KernelPath::from_env(),
        }
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
        let packed = match options.packed_format {
            Some(f) => f,
            None => PackedFormat::from_env().map_err(Error::InvalidInput)?,
        };
        let merge = match &options.merge_adapter {
            Some(dir) => Some(PeftAdapter::load(dir)?),
            None => None,
        };
        let build = |config: ModelConfig, source: &dyn TensorSource| -> Result<DecoderModel> {
            let merged;
            let source = match &merge {
                Some(adapter) => {
                    merged = MergedSource::new(source, &config, adapter, "merged adapter")?;
                    &merged as &dyn TensorSource
                }
                None => source,
            };
            DecoderModel::from_source_with_kernel(
                config,
                source,
                options.weight_format,
                &options.device,
                kernel,
                packed,
            )
        };
        let (model, tokenizer, template) = if crate::formats::hf::is_model_dir(path) {
            let dir = crate::formats::hf::HfModelDir::open(path)?;
            if !dir.config.tie_word_embeddings && dir.tensor_dims("output.weight").is_none() {
                return Err(Error::model_file(
                    path,
                    "lm_head.weight is missing and tie_word_embeddings is false",
                ));
            }
            let model = build(dir.config.model.clone(), &dir)?;
            (model, dir.tokenizer()?, dir.chat_template()?)
        } else {
            let file = GgufFile::open(path)?;
            let tokenizer = TextTokenizer::from_gguf(&file)?;
            let model = build(ModelConfig::from_gguf(&file)?, &file)?;
            let template = file
                .metadata
                .opt_str("tokenizer.chat_template")?
                .map(str::to_string);
            (model, tokenizer, template)
        };
        let tokenizer = tokenizer.with_context(model.config().context_length);
        if tokenizer.vocab_size() > model.config().vocab_size {
            return Err(Error::metadata(
                "vocab_size",
                format!(
                    "{} tokens but the embedding has {} rows",
                    tokenizer.vocab_size(),
                    model.config().vocab_size
                ),
            ));
        }
        let chat = ChatTemplate::new(
            template.as_deref(),
            tokenizer.bos_text().unwrap_or(""),
            tokenizer.eos_text().unwrap_or(""),
        )?
        .with_budget(
            format!("chat template of {}", path.display()),
            model.config().context_length,
        );
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.threads)
            .thread_name(|i| format!("debias-guard-{i}"))
            .build()
            .map_err(|e| {
                Error::InvalidInput(format!("cannot start {} threads: {e}", options.threads))
            })?;
        Ok(Self {
            shared: Arc::new(Shared {
                model,
                tokenizer,
                chat,
                pool,
                prefill_chunk: options.prefill_chunk,
                path: path.to_path_buf(),
                merged_adapter: options.merge_adapter.clone(),
                adapters: RwLock::new(BTreeMap::new()),
            }),
            active: None,
        })
    }

    /// Loads a PEFT LoRA adapter directory under `name`, checked against this model. Every
    /// handle of the model can then select it with [`Engine::with_adapter`].
    pub fn load_adapter(&self, name: &str, dir: impl AsRef<Path>) -> Result<()> {
        let adapter = PeftAdapter::load(dir)?;
        self.add_adapter(name, &adapter)
    }

    /// Registers an adapter already in memory under `name`.
    pub fn add_adapter(&self, name: &str, adapter: &PeftAdapter) -> Result<()> {
        if name.is_empty() || name.len() > MAX_ADAPTER_NAME {
            return Err(Error::InvalidInput(format!(
                "adapter names are 1..={MAX_ADAPTER_NAME} bytes"
            )));
        }
        let weights = LoraWeights::resolve(
            name,
            adapter,
            self.shared.model.config(),
            self.shared.model.device(),
        )?;
        let mut registry = self.registry_write();
        if registry.contains_key(name) {
            return Err(Error::adapter(
                name,
                "an adapter with this name is already loaded",
            ));
        }
        if registry.len() >= MAX_ADAPTERS {
            return Err(Error::adapter(
                name,
                format!("at most {MAX_ADAPTERS} adapters can be loaded at once"),
            ));
        }
        registry.insert(name.to_string(), Arc::new(weights));
        Ok(())
    }

    /// Removes an adapter from the registry (handles that already run it keep it alive).
    pub fn unload_adapter(&self, name: &str) -> Result<()> {
        self.registry_write()
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| Error::adapter(name, "no adapter is loaded under this name"))
    }

    /// Names of the loaded adapters.
    pub fn adapters(&self) -> Vec<String> {
        self.registry_read().keys().cloned().collect()
    }

    /// A handle on the same model running adapter `name` (`None` = the base model).
    pub fn with_adapter(&self, name: Option<&str>) -> Result<Engine> {
        let active = match name {
            None => None,
            Some(n) => Some(
                self.registry_read()
                    .get(n)
                    .cloned()
                    .ok_or_else(|| Error::adapter(n, "no adapter is loaded under this name"))?,
            ),
        };
        Ok(Self {
            shared: Arc::clone(&self.shared),
            active,
        })
    }

    /// The adapter this handle runs, if any.
    pub fn active_adapter(&self) -> Option<&str> {
        self.active.as_ref().map(|a| a.name())
    }

    fn registry_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<LoraWeights>>> {
        // A panic while holding the lock cannot leave the map half-updated (inserts and removes
        // are single calls), so a poisoned lock is still consistent.
        self.shared
            .adapters
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn registry_write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<LoraWeights>>> {
        self.shared
            .adapters
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// An empty KV state bound to this handle's adapter.
    fn new_state(&self) -> Result<KvState> {
        self.shared.model.new_state_with(self.active.clone())
    }

    /// The model file this engine was opened from.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The adapter directory folded into the weights at load ([`EngineOptions::merge_adapter`]).
    pub fn merged_adapter(&self) -> Option<&Path> {
        self.shared.merged_adapter.as_deref()
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &ModelConfig {
        self.shared.model.config()
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.shared.tokenizer
    }

    /// The chat template in use.
    pub fn chat_template(&self) -> &ChatTemplate {
        &self.shared.chat
    }

    /// The loaded decoder.
    pub fn model(&self) -> &DecoderModel {
        &self.shared.model
    }

    /// The kernel path multiplying the projections (`avx512`, `avx2`, `portable`), `None` when
    /// candle's matmul does (quantized weights, GPU).
    pub fn kernel_path(&self) -> Option<KernelPath> {
        self.shared.model.kernel_path()
    }

    /// The value format of the packed projections (`f32`, `q8`), `None` when none is packed
    /// (see [`Engine::kernel_path`]).
    pub fn packed_format(&self) -> Option<PackedFormat> {
        self.shared.model.packed_format()
    }

    /// Worker threads of this engine.
    pub fn threads(&self) -> usize {
        self.shared.pool.current_num_threads()
    }

    /// Renders a prompt with the model's chat template and appends the answer prefix.
    /// Control tokens written literally inside a message are refused (they would forge turns).
    pub fn render(&self, prompt: &PromptMessages) -> Result<String> {
        for m in &prompt.messages {
            if let Some(special) = self.shared.tokenizer.find_special_text(&m.content) {
                return Err(Error::InvalidInput(format!(
                    "the {} text contains the control token `{special}`",
                    m.role
                )));
            }
        }
        let mut text = self.shared.chat.render(&prompt.messages, true)?;
        text.push_str(&prompt.answer_prefix);
        Ok(text)
    }

    /// The label prompt for one transcript × rubric item × optional context, built by the one
    /// prompt builder and rendered with this model's chat template.
    pub fn rubric_prompt(
        &self,
        builder: &PromptBuilder,
        transcript: &Transcript,
        item: &RubricItem,
        context: Option<&str>,
        mitigate: bool,
    ) -> Result<LabelPrompt> {
        let max_bytes = self.shared.chat.max_output_bytes();
        let messages = builder.build_within(transcript, item, context, mitigate, max_bytes)?;
        Ok(LabelPrompt {
            text: self.render(&messages)?,
            labels: item.labels.clone(),
            values: item.label_values(),
            separator: messages.label_separator,
        })
    }

    /// Token ids of a text, as the model sees them.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        self.shared.tokenizer.encode(text)
    }

    /// Label distribution of one prompt.
    pub fn score(&self, prompt: &LabelPrompt) -> Result<ScoreDistribution> {
        Ok(self.score_many(std::slice::from_ref(prompt))?.0.remove(0))
    }

    /// Label distributions of many prompts in one prefix-shared pass (shared beginnings are
    /// prefilled once). Equal to scoring each prompt on its own.
    pub fn score_many(
        &self,
        prompts: &[LabelPrompt],
    ) -> Result<(Vec<ScoreDistribution>, TreeStats)> {
        self.score_many_with(prompts, Progress::NONE)
    }

    /// [`Engine::score_many`], reporting tokens run through the model (of the total the shared
    /// pass needs) to `progress` after every forward pass, and stopping with
    /// [`Error::Cancelled`] between passes when asked to.
    pub fn score_many_with(
        &self,
        prompts: &[LabelPrompt],
        progress: Progress<'_>,
    ) -> Result<(Vec<ScoreDistribution>, TreeStats)> {
        self.score_with(prompts, true, progress)
    }

    /// Label distributions with every label sequence evaluated from scratch (no sharing);
    /// the reference the prefix-shared path is tested against.
    pub fn score_from_scratch(&self, prompts: &[LabelPrompt]) -> Result<Vec<ScoreDistribution>> {
        Ok(self.score_with(prompts, false, Progress::NONE)?.0)
    }

    fn score_with(
        &self,
        prompts: &[LabelPrompt],
        shared: bool,
        progress: Progress<'_>,
    ) -> Result<(Vec<ScoreDistribution>, TreeStats)> {
        let tokenized: Vec<_> = prompts
            .iter()
            .map(|p| score::tokenize_labels(&self.shared.tokenizer, p))
            .collect::<Result<_>>()?;
        let queries: Vec<TokenQuery> = tokenized.iter().flat_map(|t| t.queries.clone()).collect();
        let (logprobs, stats) = if shared {
            self.evaluate_with(&queries, progress)?
        } else {
            let mut all = Vec::with_capacity(queries.len());
            let mut stats = TreeStats::default();
            for q in &queries {
                let (mut lp, s) = self.evaluate(std::slice::from_ref(q))?;
                all.push(lp.remove(0));
                stats.tokens_evaluated += s.tokens_evaluated;
                stats.tokens_requested += s.tokens_requested;
            }
            (all, stats)
        };
        let mut offset = 0;
        let dists = prompts
            .iter()
            .zip(&tokenized)
            .map(|(p, t)| {
                let n = t.queries.len();
                let d = score::distribution(p, t, &logprobs[offset..offset + n]);
                offset += n;
                d
            })
            .collect::<Result<_>>()?;
        Ok((dists, stats))
    }

    /// Per-token log-probabilities of token sequences, sharing common prefixes.
    pub fn evaluate(&self, queries: &[TokenQuery]) -> Result<(Vec<Vec<f32>>, TreeStats)> {
        self.evaluate_with(queries, Progress::NONE)
    }

    /// [`Engine::evaluate`] with progress in tokens run (see [`Engine::score_many_with`]).
    pub fn evaluate_with(
        &self,
        queries: &[TokenQuery],
        progress: Progress<'_>,
    ) -> Result<(Vec<Vec<f32>>, TreeStats)> {
        self.shared.pool.install(|| {
            tree::evaluate(
                &self.shared.model,
                &self.new_state()?,
                queries,
                self.shared.prefill_chunk,
                progress,
            )
        })
    }

    /// Logits `[positions.len(), vocab]` of one token sequence, for checks against other engines.
    pub fn logits(&self, tokens: &[u32], positions: &[usize]) -> Result<Vec<Vec<f32>>> {
        self.shared.pool.install(|| {
            let mut state = self.new_state()?;
            let t = self.shared.model.forward(
                tokens,
                &mut state,
                positions,
                self.shared.prefill_chunk,
            )?;
            Ok(t.to_vec2::<f32>()?)
        })
    }

    /// Generates a continuation of `prompt_text` (already rendered).
    pub fn generate(&self, prompt_text: &str, options: &GenerateOptions) -> Result<Generation> {
        options.validate()?;
        let prompt = self.shared.tokenizer.encode(prompt_text)?;
        if prompt.is_empty() {
            return Err(Error::InvalidInput("prompt tokenizes to nothing".into()));
        }
        let context = self.config().context_length;
        if prompt.len() >= context {
            return Err(Error::ContextOverflow {
                tokens: prompt.len() + 1,
                context,
            });
        }
        self.shared.pool.install(|| {
            let mut state = self.new_state()?;
            let tokenizer = &self.shared.tokenizer;
            let mut decoding = generate::Decoding::new(options, prompt.len());
            let mut logits = self.shared.model.forward(
                &prompt,
                &mut state,
                &[prompt.len() - 1],
                self.shared.prefill_chunk,
            )?;
            while let Some(next) =
                decoding.step(&logits.squeeze(0)?.to_vec1::<f32>()?, tokenizer, context)?
            {
                logits = self.shared.model.forward(&[next], &mut state, &[0], 1)?;
            }
            decoding.finish(tokenizer)
        })
    }
}
