//! Rubric items: what is rated and on which scale, loaded from small JSON files.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// The rubric shipped with the library (three classroom dimensions, each 1–7).
pub const DEFAULT_RUBRIC_JSON: &str = include_str!("../assets/rubric/default.json");

/// Largest rubric file accepted, in bytes.
pub const MAX_RUBRIC_BYTES: usize = 1 << 20;
/// Most labels a scale may have ([`crate::limits::MAX_LABELS_PER_ITEM`]).
pub const MAX_LABELS: usize = crate::limits::MAX_LABELS_PER_ITEM;

/// One dimension to rate, with its scale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RubricItem {
    /// Stable identifier (`snake_case`).
    pub id: String,
    /// Short human-readable title.
    pub name: String,
    /// What is being rated, in a sentence or two.
    pub description: String,
    /// The question put to the rater.
    pub question: String,
    /// The scale's labels in ascending order (e.g. `"1"`..`"7"`).
    pub labels: Vec<String>,
    /// Optional descriptors keyed by label.
    #[serde(default)]
    pub levels: BTreeMap<String, String>,
}

impl RubricItem {
    /// Checks ids, labels and level keys.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("item id is empty".into());
        }
        if self.question.trim().is_empty() {
            return Err(format!("item `{}` has an empty question", self.id));
        }
        if self.labels.is_empty() {
            return Err(format!("item `{}` has a scale with no labels", self.id));
        }
        if self.labels.len() > MAX_LABELS {
            return Err(format!(
                "item `{}` has more than {MAX_LABELS} labels",
                self.id
            ));
        }
        let mut seen = HashSet::new();
        for label in &self.labels {
            if label.trim().is_empty() || label.trim() != label {
                return Err(format!(
                    "item `{}` has an empty or padded label `{label}`",
                    self.id
                ));
            }
            if !seen.insert(label) {
                return Err(format!("item `{}` lists label `{label}` twice", self.id));
            }
        }
        if let Some(key) = self.levels.keys().find(|k| !self.labels.contains(k)) {
            return Err(format!(
                "item `{}` describes level `{key}`, which is not a label",
                self.id
            ));
        }
        Ok(())
    }

    /// Numeric value of each label: the label itself when every label is a number, else its
    /// 1-based position on the scale.
    pub fn label_values(&self) -> Vec<f64> {
        label_values(&self.labels)
    }
}

/// Numeric values of labels (see [`RubricItem::label_values`]).
pub fn label_values(labels: &[String]) -> Vec<f64> {
    let parsed: Option<Vec<f64>> = labels.iter().map(|l| l.parse::<f64>().ok()).collect();
    match parsed {
        Some(v) if v.iter().all(|x| x.is_finite()) => v,
        _ => (1..=labels.len()).map(|i| i as f64).collect(),
    }
}

/// A set of rubric items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rubric {
    /// Schema version (1).
    pub version: u32,
    /// The items, in order.
    pub items: Vec<RubricItem>,
}

impl Rubric {
    /// The built-in rubric.
    pub fn builtin() -> Self {
        Self::from_json(DEFAULT_RUBRIC_JSON, "<built-in rubric>").expect("built-in rubric is valid")
    }

    /// Reads and validates a rubric file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = crate::textio::read_text_file(path, MAX_RUBRIC_BYTES, "rubric")?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// Parses and validates rubric JSON; `source_name` appears in errors.
    pub fn from_json(text: &str, source_name: &str) -> Result<Self> {
        let err = |line: usize, reason: String| Error::Config {
            what: "rubric",
            source_name: source_name.to_string(),
            line,
            reason,
        };
        let rubric: Rubric =
            serde_json::from_str(text).map_err(|e| err(e.line(), e.to_string()))?;
        if rubric.version != 1 {
            return Err(err(
                0,
                format!("unsupported version {} (expected 1)", rubric.version),
            ));
        }
        if rubric.items.is_empty() {
            return Err(err(0, "no items".into()));
        }
        Error::check_limit(
            "rubric items",
            rubric.items.len(),
            crate::limits::MAX_RUBRIC_ITEMS,
        )?;
        let mut ids = HashSet::new();
        for item in &rubric.items {
            item.validate()
                .map_err(|r| err(line_of(text, &item.id), r))?;
            if !ids.insert(&item.id) {
                return Err(err(
                    line_of(text, &item.id),
                    format!("duplicate item id `{}`", item.id),
                ));
            }
        }
        Ok(rubric)
    }

    /// The item with the given id.
    pub fn item(&self, id: &str) -> Option<&RubricItem> {
        self.items.iter().find(|i| i.id == id)
    }
}

/// 1-based line of the first occurrence of `"needle"` in `text` (0 if absent).
pub(crate) fn line_of(text: &str, needle: &str) -> usize {
    let quoted = format!("\"{needle}\"");
    text.find(&quoted)
        .map(|pos| text[..pos].lines().count().max(1))
        .unwrap_or(0)
}
