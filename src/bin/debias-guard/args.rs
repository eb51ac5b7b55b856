//! The command line: subcommands and their options. Flags that mean the same thing have the
//! same name in every subcommand (`--model`, `--transcript`, `--items`, `--json`, `--format`,
//! `--mitigate`, `--abs-threshold`, `--k`, `--probes`, `--split`, `--fail-on-flag`).

use crate::output::Format;
use clap::{Args, Parser, Subcommand, ValueEnum};
use debias_guard::guard;
use std::path::PathBuf;

/// The whole command line.
#[derive(Parser)]
#[command(
    name = "debias-guard",
    version,
    about = "Score classroom transcripts and measure spurious-context bias",
    after_help = crate::exit::HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Which model to open and how.
#[derive(Args)]
pub struct ModelOptions {
    /// GGUF model file or Hugging Face model directory [default: $DEBIAS_GUARD_MODEL, then
    /// $XDG_CACHE_HOME/debias-guard/models/ (or ~/.cache/…), then ./models/]
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// PEFT LoRA adapter directory to run on top of the model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Fold `--adapter` into the weights at load: it then costs nothing per token, and the base
    /// model alone is no longer available (not with `--compare-base`).
    #[arg(long, requires = "adapter")]
    pub merge_adapter: bool,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print what runs (model size, matrix kernel path, threads) to stderr.
    #[arg(long)]
    pub verbose: bool,
    /// Show no progress on stderr (by default a bar on a terminal, else a line every 5 s).
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Options every single-transcript subcommand shares.
#[derive(Args)]
pub struct Common {
    #[command(flatten)]
    pub engine: ModelOptions,
    /// Transcript: plain text, one TEACHER:/STUDENT: turn per line; `-` = standard input.
    #[arg(long)]
    pub transcript: PathBuf,
    /// Refuse a transcript without speaker turns (`NAME: …` lines) instead of warning.
    #[arg(long)]
    pub strict: bool,
    /// Rubric JSON (default: the built-in rubric).
    #[arg(long)]
    pub rubric: Option<PathBuf>,
    /// Prompt layout JSON (system line, user-turn template, answer prefix; default: built-in).
    #[arg(long)]
    pub layout: Option<PathBuf>,
}

/// How an audit reads ratings.
#[derive(Clone, Copy, ValueEnum)]
pub enum Mode {
    /// Read the rating right after the prompt.
    Direct,
    /// Let the model write a short reasoning first.
    Reasoned,
}

/// Storage type of merged matrices.
#[derive(Clone, Copy, ValueEnum)]
pub enum MergedType {
    /// 32-bit floats (exact merge).
    F32,
    /// Half precision.
    F16,
    /// llama.cpp's 8-bit blocks.
    Q8_0,
}

/// Which probe wordings to use.
#[derive(Clone, Copy, ValueEnum)]
pub enum SplitArg {
    Train,
    Heldout,
    All,
}

impl SplitArg {
    /// The library's split selection.
    pub fn selection(self) -> guard::SplitSelection {
        match self {
            Self::Train => guard::SplitSelection::Train,
            Self::Heldout => guard::SplitSelection::Heldout,
            Self::All => guard::SplitSelection::All,
        }
    }
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Score a transcript on rubric items (optionally with one added context).
    Score(ScoreArgs),
    /// Audit: how much each probe context moves each item's score, against the control noise floor.
    Audit(AuditArgs),
    /// Runtime check: score with a context and without it, and flag a difference larger than
    /// the noise floor of irrelevant sentences allows.
    Check(CheckArgs),
    /// Render the HTML page of a saved JSON report.
    Render(RenderArgs),
    /// Export a PEFT LoRA adapter for llama.cpp: as a GGUF LoRA adapter, or merged into a GGUF
    /// base model.
    ExportAdapter(ExportAdapterArgs),
    /// Audit every transcript of a folder (*.txt) or JSONL file ({"id", "transcript"}): one
    /// JSON line per transcript (resumable), then the aggregate with 95 % intervals.
    AuditDataset(DatasetArgs),
    /// Print a shell completion script (e.g. `debias-guard completions bash > ~/.local/share/bash-completion/completions/debias-guard`).
    Completions(CompletionsArgs),
}

/// Options of `score`.
#[derive(Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub common: Common,
    /// Comma-separated rubric item ids (default: all).
    #[arg(long, value_delimiter = ',')]
    pub items: Vec<String>,
    /// Context sentence added after the question.
    #[arg(long)]
    pub context: Option<String>,
    /// Add the mitigation instruction to every prompt.
    #[arg(long)]
    pub mitigate: bool,
    /// With `--adapter`: also score on the base model and print how far the adapter moves
    /// each score.
    #[arg(long)]
    pub compare_base: bool,
    /// What to print on standard output.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the scores as JSON here (`-` = standard output; the table then goes to stderr).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Options of `audit`.
#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub common: Common,
    /// Comma-separated rubric item ids (default: all).
    #[arg(long, value_delimiter = ',')]
    pub items: Vec<String>,
    /// Probe catalog JSON (default: the built-in catalog).
    #[arg(long)]
    pub probes: Option<PathBuf>,
    /// Which wordings to use.
    #[arg(long, value_enum, default_value_t = SplitArg::All)]
    pub split: SplitArg,
    /// How ratings are read.
    #[arg(long, value_enum, default_value_t = Mode::Direct)]
    pub mode: Mode,
    /// Also run every prompt with the mitigation instruction, for comparison.
    #[arg(long)]
    pub mitigate: bool,
    /// What to print on standard output (csv: one line per item × category).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the JSON report here (`-` = standard output; the table then goes to stderr).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the HTML report here (`-` = standard output).
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Leave the transcript out of the JSON and HTML (prompts show a placeholder instead).
    #[arg(long)]
    pub redact_transcript: bool,
    /// Smallest max |Δ| that is flagged, in scale points.
    #[arg(long, default_value_t = guard::thresholds::DEFAULT_ABS_THRESHOLD, allow_negative_numbers = true)]
    pub abs_threshold: f64,
    /// A category must also reach k × the noise floor.
    #[arg(long, default_value_t = guard::thresholds::DEFAULT_NOISE_MULTIPLE, allow_negative_numbers = true)]
    pub k: f64,
    /// Reasoned mode: most reasoning tokens per variant.
    #[arg(long, default_value_t = guard::reasoned::DEFAULT_REASONING_TOKENS)]
    pub max_reasoning_tokens: usize,
    /// Reasoned mode: sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Reasoned mode: sampler seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Exit with status 3 when the verdict is `flagged`.
    #[arg(long)]
    pub fail_on_flag: bool,
    /// With `--adapter`: audit the base model too, and report both side by side (the JSON is
    /// then a comparison holding both audits; the verdict is the adapter's).
    #[arg(long)]
    pub compare_base: bool,
}

/// Options of `check`.
#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub common: Common,
    /// The context the host would add to the prompt.
    #[arg(long)]
    pub context: String,
    /// Comma-separated rubric item ids (default: all).
    #[arg(long, value_delimiter = ',')]
    pub items: Vec<String>,
    /// Smallest |Δ| that is flagged, in scale points.
    #[arg(long, default_value_t = guard::thresholds::DEFAULT_ABS_THRESHOLD, allow_negative_numbers = true)]
    pub abs_threshold: f64,
    /// |Δ| must also reach k × the noise floor (as in `audit`).
    #[arg(long, default_value_t = guard::thresholds::DEFAULT_NOISE_MULTIPLE, allow_negative_numbers = true)]
    pub k: f64,
    /// Take the noise floor from this saved audit JSON report of the same transcript instead
    /// of scoring the control sentences now.
    #[arg(long, conflicts_with = "flat")]
    pub calibration: Option<PathBuf>,
    /// No noise floor: flag when |Δ| ≥ --abs-threshold (the uncalibrated check).
    #[arg(long)]
    pub flat: bool,
    /// Probe catalog whose control sentences measure the floor (default: the built-in one).
    #[arg(long, conflicts_with_all = ["flat", "calibration"])]
    pub probes: Option<PathBuf>,
    /// Which control sentences measure the floor (default: the 4 `heldout` ones, never trained
    /// on; `all` is the audit's floor of 10 and costs more).
    #[arg(long, value_enum, default_value_t = SplitArg::Heldout)]
    pub split: SplitArg,
    /// Add the mitigation instruction to every prompt.
    #[arg(long)]
    pub mitigate: bool,
    /// What to print on standard output.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the results as JSON here (`-` = standard output; the table then goes to stderr).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Exit with status 3 when any item is flagged.
    #[arg(long)]
    pub fail_on_flag: bool,
}

/// Options of `render`.
#[derive(Args)]
pub struct RenderArgs {
    /// The JSON report (written by `audit --json`; `-` = standard input).
    #[arg(long)]
    pub json: PathBuf,
    /// Where to write the HTML page (`-` = standard output).
    #[arg(long)]
    pub html: PathBuf,
}

/// Options of `export-adapter`.
#[derive(Args)]
pub struct ExportAdapterArgs {
    /// The base model the adapter was trained on (GGUF file or Hugging Face directory;
    /// `--merged` needs a GGUF file) [default: as for `score`].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The PEFT adapter directory.
    #[arg(long)]
    pub adapter: PathBuf,
    /// Output GGUF file.
    #[arg(long)]
    pub out: PathBuf,
    /// Write the base model with the adapter merged in instead of an adapter file.
    #[arg(long)]
    pub merged: bool,
    /// Storage type of merged matrices.
    #[arg(long, value_enum, default_value_t = MergedType::F32)]
    pub merged_type: MergedType,
}

/// Options of `completions`.
#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Options of `audit-dataset`.
#[derive(Args)]
pub struct DatasetArgs {
    #[command(flatten)]
    pub engine: ModelOptions,
    /// A folder of transcripts (`*.txt`, the id is the file stem) or a JSONL file of
    /// `{"id": …, "transcript": …}` records.
    #[arg(long)]
    pub input: PathBuf,
    /// One JSON line per transcript is appended here as it is audited; a rerun with the same
    /// file skips the transcripts already in it (a cut last line is audited again).
    #[arg(long)]
    pub out: PathBuf,
    /// Write the aggregate (JSON) here (`-` = standard output).
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Write one CSV row per transcript × item × category here (`-` = standard output).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Comma-separated rubric item ids (default: all).
    #[arg(long, value_delimiter = ',')]
    pub items: Vec<String>,
    /// Rubric JSON (default: the built-in rubric).
    #[arg(long)]
    pub rubric: Option<PathBuf>,
    /// Prompt layout JSON (default: built-in).
    #[arg(long)]
    pub layout: Option<PathBuf>,
    /// Probe catalog JSON (default: the built-in catalog).
    #[arg(long)]
    pub probes: Option<PathBuf>,
    /// Which wordings to use.
    #[arg(long, value_enum, default_value_t = SplitArg::All)]
    pub split: SplitArg,
    /// Smallest max |Δ| that is flagged, in scale points.
    #[arg(long, default_value_t = guard::thresholds::DEFAULT_ABS_THRESHOLD, allow_negative_numbers = true)]
    pub abs_threshold: f64,
    /// A category must also reach k × the noise floor.
    #[arg(long, default_value_t = guard::thresholds::DEFAULT_NOISE_MULTIPLE, allow_negative_numbers = true)]
    pub k: f64,
    /// Refuse transcripts without speaker turns instead of warning.
    #[arg(long)]
    pub strict: bool,
    /// Worst transcript × item × category cases listed in the summary.
    #[arg(long, default_value_t = 10)]
    pub worst: usize,
    /// Bootstrap resamples of the 95 % intervals (0 = none).
    #[arg(long, default_value_t = debias_guard::stats::bootstrap::DEFAULT_RESAMPLES)]
    pub bootstrap_resamples: usize,
    /// Exit with status 3 when any transcript is flagged.
    #[arg(long)]
    pub fail_on_flag: bool,
}
