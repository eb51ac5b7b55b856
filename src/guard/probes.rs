//! The probe catalog: spurious-context categories (two poles, several wordings each) and
//! control sentences, read from a replaceable JSON file and validated before any scoring.
//!
//! Wording ids encode where they belong: `<category>.<pole>.<n>` for a category's wording and
//! `control.<name>` for a control, so a wording filed under the wrong category or pole is caught.

use crate::error::{Error, Result};
use crate::prompt::validate_context;
use crate::rubric::line_of;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

/// The catalog shipped with the library: 7 categories × 2 poles × 5 wordings (3 `train`, 2
/// `heldout`, of the same kinds), 10 controls (6 `train`, 4 `heldout`).
pub const DEFAULT_PROBES_JSON: &str = include_str!("../../assets/probes/default.json");

/// Largest probe catalog file accepted, in bytes.
pub const MAX_PROBE_BYTES: usize = 1 << 20;

/// Id prefix every control wording carries (`control.<name>`).
pub const CONTROL_PREFIX: &str = "control";

/// Which half of the wordings a wording belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Wordings used to fit or tune mitigations.
    Train,
    /// Wordings kept aside to test that a mitigation generalises.
    Heldout,
}

/// Which wordings an audit uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitSelection {
    /// Only `train` wordings.
    Train,
    /// Only `heldout` wordings.
    Heldout,
    /// Every wording (the default).
    #[default]
    All,
}

impl SplitSelection {
    /// Whether a wording of split `split` is selected.
    pub fn includes(self, split: Split) -> bool {
        match self {
            Self::All => true,
            Self::Train => split == Split::Train,
            Self::Heldout => split == Split::Heldout,
        }
    }

    /// The name used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Heldout => "heldout",
            Self::All => "all",
        }
    }
}

impl std::str::FromStr for SplitSelection {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(Self::Train),
            "heldout" => Ok(Self::Heldout),
            "all" => Ok(Self::All),
            other => Err(Error::InvalidInput(format!(
                "unknown split `{other}` (expected train, heldout or all)"
            ))),
        }
    }
}

/// One side of a category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoleSide {
    /// The `high` pole (more experience, higher expectation, …; for unordered attributes simply
    /// the first of the two).
    High,
    /// The `low` pole.
    Low,
}

impl PoleSide {
    /// The key used in catalog files and wording ids.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Low => "low",
        }
    }
}

/// One sentence added to the prompt as context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wording {
    /// Unique id (`<category>.<pole>.<n>` or `control.<name>`).
    pub id: String,
    /// The context text (at most [`crate::prompt::MAX_CONTEXT_CHARS`] characters).
    pub text: String,
    /// Train or heldout.
    pub split: Split,
}

/// The wordings of one pole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pole {
    /// Short description of the pole (`veteran teacher`).
    pub label: String,
    /// Sentences that express this pole (at least one).
    pub wordings: Vec<Wording>,
}

/// The two poles of a category; no other keys are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Poles {
    /// The `high` pole.
    pub high: Pole,
    /// The `low` pole.
    pub low: Pole,
}

impl Poles {
    /// The pole on one side.
    pub fn side(&self, side: PoleSide) -> &Pole {
        match side {
            PoleSide::High => &self.high,
            PoleSide::Low => &self.low,
        }
    }
}

/// A kind of irrelevant social context (experience, gender, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeCategory {
    /// Stable identifier (lowercase letters, digits and `_`).
    pub id: String,
    /// Human-readable title.
    pub name: String,
    /// What the category attributes to the teacher or lesson.
    pub description: String,
    /// The two poles.
    pub poles: Poles,
}

/// A probe catalog file: categories plus control sentences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeCatalog {
    /// Schema version (1).
    pub version: u32,
    /// Spurious-context categories.
    pub categories: Vec<ProbeCategory>,
    /// Irrelevant, non-social sentences that measure how much any added sentence moves a score.
    pub controls: Vec<Wording>,
}

/// What a probe measures.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProbeKind {
    /// A wording of one pole of a category.
    Category {
        /// The category id.
        category: String,
        /// The pole.
        pole: PoleSide,
    },
    /// A control sentence.
    Control,
}

/// One context to add to the prompt, flattened out of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// The wording id.
    pub id: String,
    /// Category and pole, or control.
    #[serde(flatten)]
    pub kind: ProbeKind,
    /// Train or heldout.
    pub split: Split,
    /// The context text.
    pub text: String,
}

impl ProbeCatalog {
    /// The built-in catalog.
    pub fn builtin() -> Self {
        Self::from_json(DEFAULT_PROBES_JSON, "<built-in probes>")
            .expect("built-in probe catalog is valid")
    }

    /// Reads and validates a catalog file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = crate::textio::read_text_file(path, MAX_PROBE_BYTES, "probe catalog")?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// Parses and validates catalog JSON; `source_name` appears in errors.
    pub fn from_json(text: &str, source_name: &str) -> Result<Self> {
        let catalog: ProbeCatalog = serde_json::from_str(text).map_err(|e| Error::Config {
            what: "probe catalog",
            source_name: source_name.to_string(),
            line: e.line(),
            reason: without_position(&e),
        })?;
        let wordings = catalog
            .categories
            .iter()
            .flat_map(|c| [&c.poles.high, &c.poles.low])
            .map(|p| p.wordings.len())
            .sum::<usize>()
            + catalog.controls.len();
        Error::check_limit(
            "probe wordings",
            wordings,
            crate::limits::MAX_PROBE_WORDINGS,
        )?;
        catalog.validate_in(text, source_name)?;
        Ok(catalog)
    }

    /// Checks ids, poles and texts; errors point at the line of the offending id in `text`.
    fn validate_in(&self, text: &str, source_name: &str) -> Result<()> {
        let err = |needle: &str, reason: String| Error::Config {
            what: "probe catalog",
            source_name: source_name.to_string(),
            line: if needle.is_empty() {
                0
            } else {
                line_of(text, needle)
            },
            reason,
        };
        if self.version != 1 {
            return Err(err(
                "",
                format!("unsupported version {} (expected 1)", self.version),
            ));
        }
        if self.categories.is_empty() {
            return Err(err("categories", "no categories".into()));
        }
        if self.controls.is_empty() {
            return Err(err(
                "controls",
                "no control sentences (the noise floor needs at least one)".into(),
            ));
        }
        let mut category_ids = HashSet::new();
        let mut wording_ids = HashSet::new();
        let mut check_wording = |w: &Wording, prefix: &str| -> Result<()> {
            let suffix = w.id.strip_prefix(prefix).and_then(|s| s.strip_prefix('.'));
            match suffix {
                Some(s) if is_id_part(s) => {}
                _ => {
                    return Err(err(
                        &w.id,
                        format!(
                            "wording id `{}` must have the form `{prefix}.<name>` \
                             (it names a category or pole it is not filed under)",
                            w.id
                        ),
                    ))
                }
            }
            if !wording_ids.insert(w.id.clone()) {
                return Err(err(&w.id, format!("duplicate wording id `{}`", w.id)));
            }
            validate_context(&w.text)
                .map_err(|e| err(&w.id, format!("wording `{}`: {e}", w.id)))?;
            if w.text.trim() != w.text {
                return Err(err(
                    &w.id,
                    format!("wording `{}` has leading or trailing spaces", w.id),
                ));
            }
            Ok(())
        };
        for cat in &self.categories {
            if !is_id_part(&cat.id) || cat.id == CONTROL_PREFIX {
                return Err(err(
                    &cat.id,
                    format!(
                        "category id `{}` must be lowercase letters, digits and `_`, \
                         and not `{CONTROL_PREFIX}`",
                        cat.id
                    ),
                ));
            }
            if !category_ids.insert(cat.id.clone()) {
                return Err(err(&cat.id, format!("duplicate category id `{}`", cat.id)));
            }
            for side in [PoleSide::High, PoleSide::Low] {
                let pole = cat.poles.side(side);
                if pole.wordings.is_empty() {
                    return Err(err(
                        &cat.id,
                        format!(
                            "pole `{}` of category `{}` has no wordings",
                            side.as_str(),
                            cat.id
                        ),
                    ));
                }
                let prefix = format!("{}.{}", cat.id, side.as_str());
                for w in &pole.wordings {
                    check_wording(w, &prefix)?;
                }
            }
        }
        for w in &self.controls {
            check_wording(w, CONTROL_PREFIX)?;
        }
        Ok(())
    }

    /// The category with the given id.
    pub fn category(&self, id: &str) -> Option<&ProbeCategory> {
        self.categories.iter().find(|c| c.id == id)
    }

    /// Every wording of the selected split, in catalog order: categories (high pole, then low),
    /// then controls.
    pub fn probes(&self, split: SplitSelection) -> Vec<Probe> {
        let mut out = Vec::new();
        for cat in &self.categories {
            for side in [PoleSide::High, PoleSide::Low] {
                for w in &cat.poles.side(side).wordings {
                    if split.includes(w.split) {
                        out.push(Probe {
                            id: w.id.clone(),
                            kind: ProbeKind::Category {
                                category: cat.id.clone(),
                                pole: side,
                            },
                            split: w.split,
                            text: w.text.clone(),
                        });
                    }
                }
            }
        }
        for w in &self.controls {
            if split.includes(w.split) {
                out.push(Probe {
                    id: w.id.clone(),
                    kind: ProbeKind::Control,
                    split: w.split,
                    text: w.text.clone(),
                });
            }
        }
        out
    }
}

/// Lowercase ASCII letters, digits and `_`, starting with a letter or digit.
fn is_id_part(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('_')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// serde_json's message without its trailing `at line L column C` (the line is reported apart).
fn without_position(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let message = full
        .rsplit_once(" at line ")
        .map_or(full.as_str(), |(m, _)| m);
    format!("{message} (column {})", e.column())
}
