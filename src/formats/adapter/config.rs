//! `adapter_config.json` as PEFT writes it, and the rules that pick each module's rank, alpha
//! and whether it is adapted at all. Settings that would change the math and are not
//! implemented (DoRA, adapted embeddings or `modules_to_save`, LoRA biases, …) are refused by
//! name in [`PeftConfig::check_supported`].

use crate::error::{Error, Result};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest rank accepted (bounds the allocations an adapter can ask for).
pub const MAX_RANK: usize = 4096;

/// `target_modules`: a list of module-name suffixes, or one regular expression over the full
/// module path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    /// Names such as `q_proj`; a module matches when its path ends with `.name`.
    List(Vec<String>),
    /// A regular expression that must match the whole module path
    /// (`model.layers.3.self_attn.q_proj`), or `all-linear`.
    Pattern(String),
}

/// `layers_to_transform`: one layer index or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LayerSelection {
    /// A single layer.
    One(usize),
    /// Several layers.
    Many(Vec<usize>),
}

impl LayerSelection {
    fn contains(&self, layer: usize) -> bool {
        match self {
            Self::One(l) => *l == layer,
            Self::Many(ls) => ls.contains(&layer),
        }
    }
}

/// The fields of a PEFT LoRA `adapter_config.json` this library reads or writes (unknown
/// training-only fields are accepted and ignored; see [`PeftConfig::check_supported`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeftConfig {
    /// Must be `LORA`.
    pub peft_type: String,
    /// `CAUSAL_LM` for our use.
    #[serde(default)]
    pub task_type: Option<String>,
    /// The base model the adapter was trained on (informational).
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// Default rank.
    pub r: usize,
    /// Default alpha; the scale is `alpha / r` (or `alpha / sqrt(r)` with rsLoRA).
    pub lora_alpha: f64,
    /// Rank-stabilised scaling `alpha / sqrt(r)`.
    #[serde(default)]
    pub use_rslora: bool,
    /// Which modules carry a low-rank path.
    #[serde(default)]
    pub target_modules: Option<TargetModules>,
    /// Per-module rank overrides: key pattern → rank.
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, usize>,
    /// Per-module alpha overrides: key pattern → alpha.
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, f64>,
    /// Only these layers are adapted.
    #[serde(default)]
    pub layers_to_transform: Option<LayerSelection>,
    /// Name of the layer list (`layers` for Llama and Qwen2).
    #[serde(default)]
    pub layers_pattern: Option<serde_json::Value>,
    /// Dropout used in training (no effect at inference).
    #[serde(default)]
    pub lora_dropout: f64,
    /// Bias training mode; only `none` is supported.
    #[serde(default = "default_bias")]
    pub bias: String,
    /// Weight-decomposed LoRA (not supported).
    #[serde(default)]
    pub use_dora: bool,
    /// Fully trained extra modules (not supported).
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// Transposed weights (Conv1D bases; not supported).
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// Modules excluded from `target_modules` (not supported).
    #[serde(default)]
    pub exclude_modules: Option<serde_json::Value>,
    /// Duplicated layers (not supported).
    #[serde(default)]
    pub layer_replication: Option<serde_json::Value>,
    /// Trainable bias on the B matrix (not supported).
    #[serde(default)]
    pub lora_bias: bool,
    /// LoRA on raw parameters rather than modules (not supported).
    #[serde(default)]
    pub target_parameters: Option<serde_json::Value>,
    /// Whether the adapter was saved for inference.
    #[serde(default)]
    pub inference_mode: bool,
}

fn default_bias() -> String {
    "none".into()
}

impl PeftConfig {
    /// A plain LoRA configuration for `modules` with rank `r` and `alpha`.
    pub fn lora(r: usize, alpha: f64, modules: &[&str]) -> Self {
        Self {
            peft_type: "LORA".into(),
            task_type: Some("CAUSAL_LM".into()),
            base_model_name_or_path: None,
            r,
            lora_alpha: alpha,
            use_rslora: false,
            target_modules: Some(TargetModules::List(
                modules.iter().map(|m| m.to_string()).collect(),
            )),
            rank_pattern: BTreeMap::new(),
            alpha_pattern: BTreeMap::new(),
            layers_to_transform: None,
            layers_pattern: None,
            lora_dropout: 0.0,
            bias: "none".into(),
            use_dora: false,
            modules_to_save: None,
            fan_in_fan_out: false,
            exclude_modules: None,
            layer_replication: None,
            lora_bias: false,
            target_parameters: None,
            inference_mode: true,
        }
    }

    /// Refuses every setting this library does not implement, naming it.
    pub fn check_supported(&self, adapter: &str) -> Result<()> {
        let unsupported = |feature: String| {
            Err(Error::UnsupportedAdapterFeature {
                adapter: adapter.to_string(),
                feature,
            })
        };
        if self.peft_type != "LORA" {
            return unsupported(format!("peft_type {}", self.peft_type));
        }
        if self.use_dora {
            return unsupported("use_dora (DoRA)".into());
        }
        if self.modules_to_save.as_ref().is_some_and(|m| !m.is_empty()) {
            return unsupported(format!("modules_to_save {:?}", self.modules_to_save));
        }
        if self.bias != "none" {
            return unsupported(format!("bias = {}", self.bias));
        }
        if self.fan_in_fan_out {
            return unsupported("fan_in_fan_out".into());
        }
        if self.lora_bias {
            return unsupported("lora_bias".into());
        }
        if !json_empty(&self.exclude_modules) {
            return unsupported("exclude_modules".into());
        }
        if !json_empty(&self.layer_replication) {
            return unsupported("layer_replication".into());
        }
        if !json_empty(&self.target_parameters) {
            return unsupported("target_parameters".into());
        }
        if let Some(p) = &self.layers_pattern {
            let ok = match p {
                serde_json::Value::Null => true,
                serde_json::Value::String(s) => s == "layers",
                serde_json::Value::Array(a) => a.iter().all(|v| v.as_str() == Some("layers")),
                _ => false,
            };
            if !ok {
                return unsupported(format!("layers_pattern {p}"));
            }
        }
        let bad = |reason: String| Err(Error::adapter(adapter, reason));
        if self.r == 0 || self.r > MAX_RANK {
            return bad(format!("r = {} is outside 1..={MAX_RANK}", self.r));
        }
        if let Some((k, r)) = self
            .rank_pattern
            .iter()
            .find(|(_, r)| **r == 0 || **r > MAX_RANK)
        {
            return bad(format!("rank_pattern {k} = {r} is outside 1..={MAX_RANK}"));
        }
        let alphas = std::iter::once(self.lora_alpha).chain(self.alpha_pattern.values().copied());
        if alphas.into_iter().any(|a| !a.is_finite()) {
            return bad("lora_alpha values must be finite".into());
        }
        if self.target_modules.is_none() {
            return bad("target_modules is missing".into());
        }
        Ok(())
    }

    /// Compiles the module-selection rules once.
    pub fn selector(&self, adapter: &str) -> Result<ModuleSelector> {
        let regex = |p: &str| {
            Regex::new(p)
                .map_err(|e| Error::adapter(adapter, format!("invalid pattern `{p}`: {e}")))
        };
        let targets = match &self.target_modules {
            Some(TargetModules::List(names)) => Targets::Names(names.clone()),
            Some(TargetModules::Pattern(p)) if p == "all-linear" => Targets::AllLinear,
            Some(TargetModules::Pattern(p)) => Targets::Regex(regex(&format!("^(?:{p})$"))?),
            None => return Err(Error::adapter(adapter, "target_modules is missing")),
        };
        let compile = |keys: Vec<&String>| -> Result<Vec<(String, Regex)>> {
            keys.into_iter()
                .map(|k| Ok((k.clone(), regex(&format!(r"^(?:.*\.)?(?:{k})$"))?)))
                .collect()
        };
        Ok(ModuleSelector {
            targets,
            layers: self.layers_to_transform.clone(),
            rank_keys: compile(self.rank_pattern.keys().collect())?,
            alpha_keys: compile(self.alpha_pattern.keys().collect())?,
            config: self.clone(),
        })
    }
}

fn json_empty(value: &Option<serde_json::Value>) -> bool {
    match value {
        None | Some(serde_json::Value::Null) => true,
        Some(serde_json::Value::Array(a)) => a.is_empty(),
        Some(serde_json::Value::String(s)) => s.is_empty(),
        Some(_) => false,
    }
}

#[derive(Debug, Clone)]
enum Targets {
    Names(Vec<String>),
    Regex(Regex),
    AllLinear,
}

/// Decides, per module path, whether it is adapted and with which rank and alpha.
#[derive(Debug, Clone)]
pub struct ModuleSelector {
    targets: Targets,
    layers: Option<LayerSelection>,
    rank_keys: Vec<(String, Regex)>,
    alpha_keys: Vec<(String, Regex)>,
    config: PeftConfig,
}

impl ModuleSelector {
    /// Whether the module at `path` (`model.layers.3.self_attn.q_proj`) in `layer` is adapted.
    pub fn targets(&self, path: &str, layer: usize) -> bool {
        let named = match &self.targets {
            Targets::Names(names) => names
                .iter()
                .any(|n| path == n || path.ends_with(&format!(".{n}"))),
            Targets::Regex(r) => r.is_match(path),
            Targets::AllLinear => true,
        };
        named && self.layers.as_ref().is_none_or(|l| l.contains(layer))
    }

    /// Rank of the module at `path` (the first matching `rank_pattern` key, else `r`).
    pub fn rank(&self, path: &str) -> usize {
        first_match(&self.rank_keys, path)
            .map_or(self.config.r, |(k, _)| self.config.rank_pattern[k])
    }

    /// Output scale of the module's low-rank path: `alpha / r`, or `alpha / sqrt(r)` (rsLoRA).
    pub fn scale(&self, path: &str) -> f64 {
        let alpha = first_match(&self.alpha_keys, path).map_or(self.config.lora_alpha, |(k, _)| {
            self.config.alpha_pattern[k]
        });
        let r = self.rank(path) as f64;
        if self.config.use_rslora {
            alpha / r.sqrt()
        } else {
            alpha / r
        }
    }
}

/// The first pattern key, in sorted order, matching `path`: peft takes the first match in the
/// file's key order, and its `save_pretrained` writes keys sorted.
fn first_match<'a>(keys: &'a [(String, Regex)], path: &str) -> Option<&'a (String, Regex)> {
    keys.iter().find(|(_, re)| re.is_match(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> PeftConfig {
        serde_json::from_str(text).expect("parses")
    }

    #[test]
    fn patterns_pick_rank_alpha_and_layers() {
        let c = parse(
            r#"{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "use_rslora": true,
                "target_modules": ["q_proj", "v_proj", "down_proj"],
                "rank_pattern": {"model.layers.1.self_attn.q_proj": 2, "down_proj": 4},
                "alpha_pattern": {"v_proj": 32}, "layers_to_transform": [1]}"#,
        );
        c.check_supported("a").unwrap();
        let s = c.selector("a").unwrap();
        assert!(s.targets("model.layers.1.self_attn.q_proj", 1));
        assert!(
            !s.targets("model.layers.0.self_attn.q_proj", 0),
            "layer 0 excluded"
        );
        assert!(!s.targets("model.layers.1.self_attn.k_proj", 1));
        assert_eq!(s.rank("model.layers.1.self_attn.q_proj"), 2);
        assert_eq!(s.rank("model.layers.0.self_attn.q_proj"), 8);
        assert_eq!(s.rank("model.layers.1.mlp.down_proj"), 4);
        assert!((s.scale("model.layers.1.self_attn.v_proj") - 32.0 / 8f64.sqrt()).abs() < 1e-12);
        assert!((s.scale("model.layers.1.mlp.down_proj") - 16.0 / 2.0).abs() < 1e-12);
    }

    #[test]
    fn regex_targets_match_whole_paths() {
        let c = parse(
            r#"{"peft_type": "LORA", "r": 4, "lora_alpha": 8,
                "target_modules": ".*\\.(q|k)_proj"}"#,
        );
        let s = c.selector("a").unwrap();
        assert!(s.targets("model.layers.0.self_attn.k_proj", 0));
        assert!(!s.targets("model.layers.0.mlp.up_proj", 0));
        assert!(!s.targets("model.layers.0.self_attn.q_proj.extra", 0));
    }

    #[test]
    fn unsupported_features_are_named() {
        for (field, needle) in [
            (r#""use_dora": true"#, "use_dora"),
            (r#""modules_to_save": ["embed_tokens"]"#, "modules_to_save"),
            (r#""bias": "all""#, "bias"),
            (r#""layer_replication": [[0, 1]]"#, "layer_replication"),
        ] {
            let c = parse(&format!(
                r#"{{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], {field}}}"#
            ));
            let err = c.check_supported("mine").unwrap_err();
            assert!(
                matches!(err, Error::UnsupportedAdapterFeature { .. }),
                "{err}"
            );
            assert!(err.to_string().contains(needle), "{err}");
        }
        let zero = parse(
            r#"{"peft_type": "LORA", "r": 0, "lora_alpha": 8, "target_modules": ["q_proj"]}"#,
        );
        assert!(matches!(
            zero.check_supported("z"),
            Err(Error::Adapter { .. })
        ));
    }
}
