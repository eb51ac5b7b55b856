//! What `pairs` and `eval` both read before scoring: the probe catalog, the rubric and the prompt
//! builder (each from its file or the library's built-in one), the command-line flags that name
//! those files, and their progress bar.

use crate::error::Result;
use debias_guard::guard::ProbeCatalog;
use debias_guard::{PromptBuilder, PromptLayout, Rubric};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;

/// The probe catalog, rubric and prompt builder of a run.
#[derive(Debug)]
pub struct ScoringInputs {
    /// Spurious-context wordings and controls.
    pub catalog: ProbeCatalog,
    /// The items the examples' `item` ids refer to.
    pub rubric: Rubric,
    /// The one prompt builder.
    pub builder: PromptBuilder,
}

/// The files a run takes its probe catalog, rubric and prompt layout from (`None`: the library's
/// built-in one); flattened into the `pairs` and `eval` command lines.
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
pub struct InputFiles {
    /// Probe catalog JSON (default: built-in).
    #[arg(long)]
    pub probes: Option<PathBuf>,
    /// Rubric JSON the examples' item ids refer to (default: built-in).
    #[arg(long)]
    pub rubric: Option<PathBuf>,
    /// Prompt layout JSON (default: built-in).
    #[arg(long)]
    pub layout: Option<PathBuf>,
}

impl InputFiles {
    /// Loads each file given, or takes the library's built-in catalog, rubric and layout.
    pub fn load(&self) -> Result<ScoringInputs> {
        Ok(ScoringInputs {
            catalog: match &self.probes {
                Some(p) => ProbeCatalog::load(p)?,
                None => ProbeCatalog::builtin(),
            },
            rubric: match &self.rubric {
                Some(p) => Rubric::load(p)?,
                None => Rubric::builtin(),
            },
            builder: match &self.layout {
                Some(p) => PromptBuilder::new(PromptLayout::load(p)?)?,
                None => PromptBuilder::default(),
            },
        })
    }
}

/// A progress bar on stderr with indicatif's `template`, drawn only when stderr is a terminal
/// and `enabled` is set. It redraws on its own twice a second (elapsed time, spinner), so a
/// long unit of work never leaves it frozen.
pub fn progress_bar(enabled: bool, total: u64, template: &str) -> ProgressBar {
    let target = if enabled {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    if enabled {
        bar.enable_steady_tick(std::time::Duration::from_millis(500));
    }
    bar
}
