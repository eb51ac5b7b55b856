//! Preference pairs for Debiasing-DPO: the `pairs` subcommand.
//!
//! For each training example and each of its spurious contexts (the probe catalog's `train`
//! category wordings, optionally K per example), the model answers twice in reasoned mode
//! (the library's reasoning prompt, built by the one prompt builder): once without the context
//! (the neutral response, generated once per example and reused for all its contexts) and once
//! with it (the biased response). Each pair is written as one JSONL record: prompt = the
//! rendered prompt WITH the context, chosen = the neutral response, rejected = the biased
//! response, neutral_prompt = the rendered prompt WITHOUT the context, plus both ratings.
//!
//! Runs are resumable: ids already in the output file are skipped, and a last line cut short by
//! a kill is dropped before appending.
//!
//! - [`contexts`]: which contexts each example gets;
//! - [`respond`]: one response (reasoning + `Rating: N`).

pub mod contexts;
pub mod respond;

use crate::data::{Example, JsonlAppender, PreferencePair};
use crate::error::{Error, Result};
use crate::inputs::{progress_bar, InputFiles, ScoringInputs};
use debias_guard::guard::reasoned::{ReasoningOptions, MAX_REASONING_TOKENS};
use debias_guard::{Engine, EngineOptions, Transcript};
use respond::{RatingChoice, Response};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Default bound on each response's reasoning, in tokens (short, so a CPU run stays feasible).
pub const DEFAULT_MAX_TOKENS: usize = 80;

/// What to generate and where.
#[derive(Debug, Clone)]
pub struct PairsOptions {
    /// Model that writes the responses (GGUF file): the model that will be trained.
    pub model: PathBuf,
    /// Training examples (JSONL of [`Example`]).
    pub input: PathBuf,
    /// Output JSONL of [`PreferencePair`] (appended to when it exists: resume).
    pub output: PathBuf,
    /// Probe catalog, rubric and prompt layout files (default: the built-in ones).
    pub inputs: InputFiles,
    /// Contexts per example, drawn without replacement (None = every train wording).
    pub contexts_per_example: Option<usize>,
    /// Seed of the context draw and of sampling.
    pub seed: u64,
    /// Most reasoning tokens per response (1..=1024).
    pub max_tokens: usize,
    /// Sampling temperature; 0 = greedy (the rating is then the argmax label).
    pub temperature: f64,
    /// Nucleus sampling threshold (0 < top_p ≤ 1).
    pub top_p: f64,
    /// Use only the first N examples.
    pub limit: Option<usize>,
    /// Engine worker threads (0 = all cores).
    pub threads: usize,
    /// Show a progress bar (drawn only on a terminal).
    pub progress: bool,
}

impl PairsOptions {
    /// Options with defaults for everything but the three paths.
    pub fn new(model: PathBuf, input: PathBuf, output: PathBuf) -> Self {
        Self {
            model,
            input,
            output,
            inputs: InputFiles::default(),
            contexts_per_example: None,
            seed: 0,
            max_tokens: DEFAULT_MAX_TOKENS,
            temperature: 0.0,
            top_p: 1.0,
            limit: None,
            threads: 0,
            progress: true,
        }
    }

    fn reasoning(&self, seed: u64) -> ReasoningOptions {
        ReasoningOptions {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            seed,
        }
    }

    /// Checks ranges before anything is loaded.
    pub fn validate(&self) -> Result<()> {
        if self.max_tokens == 0 || self.max_tokens > MAX_REASONING_TOKENS {
            return Err(Error::Config(format!(
                "max-tokens {} is outside 1..={MAX_REASONING_TOKENS}",
                self.max_tokens
            )));
        }
        if self.contexts_per_example == Some(0) {
            return Err(Error::Config(
                "contexts-per-example must be at least 1".into(),
            ));
        }
        self.reasoning(self.seed).validate()?;
        Ok(())
    }
}

/// Command-line arguments of `pairs`.
#[derive(Debug, Clone, clap::Args)]
pub struct PairsArgs {
    /// Model that writes the responses (GGUF file).
    #[arg(long, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    pub model: PathBuf,
    /// Training examples (JSONL).
    #[arg(long)]
    pub input: PathBuf,
    /// Output pairs (JSONL; resumed when it exists).
    #[arg(long)]
    pub output: PathBuf,
    /// Probe catalog, rubric and prompt layout files.
    #[command(flatten)]
    pub inputs: InputFiles,
    /// Contexts drawn per example (default: every train wording).
    #[arg(long)]
    pub contexts_per_example: Option<usize>,
    /// Seed of the context draw and of sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Most reasoning tokens per response.
    #[arg(long, default_value_t = DEFAULT_MAX_TOKENS)]
    pub max_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Use only the first N examples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

impl From<PairsArgs> for PairsOptions {
    fn from(a: PairsArgs) -> Self {
        Self {
            model: a.model,
            input: a.input,
            output: a.output,
            inputs: a.inputs,
            contexts_per_example: a.contexts_per_example,
            seed: a.seed,
            max_tokens: a.max_tokens,
            temperature: a.temperature,
            top_p: a.top_p,
            limit: a.limit,
            threads: a.threads,
            progress: true,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PairsSummary {
    /// Examples read (after `limit`).
    pub examples: usize,
    /// Examples whose pairs were all in the file already.
    pub examples_skipped: usize,
    /// Pairs written by this run.
    pub pairs_written: usize,
    /// Pairs found in the output file at start.
    pub pairs_already_done: usize,
    /// Responses generated (neutral + biased).
    pub generations: usize,
    /// Pairs written by this run whose biased rating differs from the neutral one.
    pub ratings_changed: usize,
    /// Wall time, in seconds.
    pub seconds: f64,
}

/// The id of the pair of one example and one context.
pub fn pair_id(example_id: &str, context_id: &str) -> String {
    format!("{example_id}/{context_id}")
}

/// Generates the pairs and appends them to the output file; returns what was done.
pub fn run(opts: &PairsOptions) -> Result<PairsSummary> {
    let started = Instant::now();
    opts.validate()?;
    let ScoringInputs {
        catalog,
        rubric,
        builder,
    } = opts.inputs.load()?;
    let contexts = contexts::train_contexts(&catalog);
    if contexts.is_empty() {
        return Err(Error::Config(
            "the probe catalog has no train category wordings".into(),
        ));
    }
    let mut examples = crate::data::read_examples(&opts.input)?;
    if let Some(limit) = opts.limit {
        examples.truncate(limit);
    }
    if examples.is_empty() {
        return Err(Error::File {
            path: opts.input.clone(),
            message: "no training examples".into(),
        });
    }
    // Validate every example before the (slow) generation starts.
    let mut work = Vec::with_capacity(examples.len());
    for (i, ex) in examples.iter().enumerate() {
        let bad = |message: String| Error::Record {
            path: opts.input.clone(),
            line: i + 1,
            message: format!("example `{}`: {message}", ex.id),
        };
        let transcript = Transcript::new(&ex.transcript).map_err(|e| bad(e.to_string()))?;
        let item = rubric
            .item(&ex.item)
            .ok_or_else(|| bad(format!("rubric item `{}` is not in the rubric", ex.item)))?;
        let picked =
            contexts::pick_contexts(contexts.len(), opts.contexts_per_example, opts.seed, &ex.id);
        work.push((ex, transcript, item, picked));
    }

    if let Some(parent) = opts.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let (mut out, kept) = JsonlAppender::open_resumable(&opts.output)?;
    let done = done_ids(&opts.output, &kept)?;
    let mut summary = PairsSummary {
        examples: work.len(),
        pairs_already_done: done.len(),
        ..PairsSummary::default()
    };
    let engine = Engine::open(
        &opts.model,
        &EngineOptions {
            threads: opts.threads,
            ..EngineOptions::default()
        },
    )?;

    // Counted in pairs (contexts per example), the unit of the output file.
    let bar = progress_bar(
        opts.progress,
        work.iter().map(|w| w.3.len() as u64).sum(),
        "{spinner} pairs [{bar:30}] {pos}/{len} pairs {elapsed} (eta {eta})",
    );
    for (ex, transcript, item, picked) in &work {
        let todo: Vec<_> = picked
            .iter()
            .map(|&k| &contexts[k])
            .filter(|c| !done.contains(&pair_id(&ex.id, &c.id)))
            .collect();
        bar.inc((picked.len() - todo.len()) as u64);
        if todo.is_empty() {
            summary.examples_skipped += 1;
            continue;
        }
        let seed = contexts::example_seed(opts.seed, &ex.id);
        let reasoning = opts.reasoning(seed);
        // Neutral and every picked context decode together, done ones included: the batch is
        // then the same whether or not the run was resumed, so resumed pairs get the same text.
        let variants: Vec<Option<&str>> = std::iter::once(None)
            .chain(picked.iter().map(|&k| Some(contexts[k].text.as_str())))
            .collect();
        let drafts =
            respond::draft_many(&engine, &builder, transcript, item, &variants, &reasoning)?;
        summary.generations += drafts.len();
        let choice = if opts.temperature == 0.0 {
            RatingChoice::Argmax
        } else {
            RatingChoice::Sample(seed)
        };
        let choices = vec![choice; drafts.len()];
        // Every variant is rated in one shared pass, done ones included (same numbers on resume);
        // then only the neutral response and the pairs still to write are kept.
        let mut responses = std::iter::once(true)
            .chain(
                picked
                    .iter()
                    .map(|&k| !done.contains(&pair_id(&ex.id, &contexts[k].id))),
            )
            .zip(respond::finish_all(&engine, drafts, item, &choices)?)
            .filter_map(|(keep, r)| keep.then_some(r));
        let neutral = responses.next().ok_or_else(|| {
            Error::Model("the engine returned no rating for the neutral response".into())
        })?;
        for (c, biased) in todo.iter().zip(responses) {
            let pair = make_pair(ex, &c.id, &neutral, biased);
            if pair.biased_rating != pair.neutral_rating {
                summary.ratings_changed += 1;
            }
            // One flushed line per pair: a kill leaves at most one torn line, dropped on resume.
            out.append(&pair)?;
            summary.pairs_written += 1;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// One record from the neutral and the biased response of an example.
fn make_pair(
    ex: &Example,
    context_id: &str,
    neutral: &Response,
    biased: Response,
) -> PreferencePair {
    PreferencePair {
        id: pair_id(&ex.id, context_id),
        example_id: ex.id.clone(),
        context_id: context_id.to_string(),
        prompt: biased.prompt,
        chosen: neutral.text.clone(),
        rejected: biased.text,
        neutral_prompt: neutral.prompt.clone(),
        gold: ex.gold,
        neutral_rating: rating_u8(neutral.rating),
        biased_rating: rating_u8(biased.rating),
        neutral_expected: Some(neutral.expected),
        biased_expected: Some(biased.expected),
    }
}

/// A label value as a whole rating, when it is one (0..=255).
fn rating_u8(value: f64) -> Option<u8> {
    (value.fract() == 0.0 && (0.0..=255.0).contains(&value)).then_some(value as u8)
}

/// Ids of the records an interrupted run left in the output file.
fn done_ids(path: &Path, lines: &[String]) -> Result<HashSet<String>> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: String,
    }
    let mut done = HashSet::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let record: IdOnly = serde_json::from_str(line).map_err(|e| Error::Record {
            path: path.to_path_buf(),
            line: i + 1,
            message: format!("not a pair record ({e}); move the file away to start over"),
        })?;
        done.insert(record.id);
    }
    Ok(done)
}
