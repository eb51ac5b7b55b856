//! `config.json` of a Hugging Face Llama or Qwen2 checkpoint → [`ModelConfig`]. Anything that
//! would change the math and is not implemented (attention or MLP biases on Llama, another
//! activation, an unknown RoPE scaling) is an error, not a silent approximation.

use crate::arch::{Architecture, ModelConfig, RopeScaling};
use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// Largest `config.json` accepted.
const MAX_CONFIG_BYTES: usize = 1 << 20;

/// The fields of `config.json` this library reads.
#[derive(Debug, Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    max_position_embeddings: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    hidden_act: Option<String>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    tie_word_embeddings: Option<bool>,
    bos_token_id: Option<serde_json::Value>,
    eos_token_id: Option<serde_json::Value>,
}

/// What `config.json` says beyond the shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct HfConfig {
    /// The decoder's hyper-parameters (RoPE over halves, as Hugging Face stores q/k).
    pub model: ModelConfig,
    /// Whether the output projection reuses the embedding (`tie_word_embeddings`).
    pub tie_word_embeddings: bool,
    /// `bos_token_id`, if given.
    pub bos_token_id: Option<u32>,
    /// `eos_token_id` (one id or a list).
    pub eos_token_ids: Vec<u32>,
}

impl HfConfig {
    /// Reads and validates `config.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::textio::read_text_file(path, MAX_CONFIG_BYTES, "config.json")?;
        Self::parse(&text, path)
    }

    /// Parses the text of `config.json` (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::model_file(path, reason);
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| bad(format!("invalid config.json: {e}")))?;
        let architecture = match raw.model_type.as_deref() {
            Some(name) => Architecture::from_hf_model_type(name)?,
            None => return Err(bad("config.json has no model_type".into())),
        };
        if let Some(act) = raw.hidden_act.as_deref().filter(|a| *a != "silu") {
            return Err(bad(format!(
                "hidden_act `{act}` is not supported (only silu)"
            )));
        }
        if raw.attention_bias == Some(true) && !architecture.family().qkv_bias {
            return Err(bad("attention_bias = true is not supported".into()));
        }
        if raw.mlp_bias == Some(true) {
            return Err(bad("mlp_bias = true is not supported".into()));
        }
        let n_heads = raw.num_attention_heads;
        let head_dim = raw
            .head_dim
            .unwrap_or(raw.hidden_size.checked_div(n_heads).unwrap_or(0));
        let mut model = ModelConfig {
            architecture,
            hidden_size: raw.hidden_size,
            n_layers: raw.num_hidden_layers,
            n_heads,
            n_kv_heads: raw.num_key_value_heads.unwrap_or(n_heads),
            head_dim,
            ffn_size: raw.intermediate_size,
            vocab_size: raw.vocab_size,
            context_length: raw.max_position_embeddings.unwrap_or(2048),
            rms_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_base: raw.rope_theta.unwrap_or(10_000.0),
            rope_interleaved: false,
            rope_linear_scale: 1.0,
            rope_freq_factors: None,
        };
        model.validate()?;
        if let Some(scaling) = raw.rope_scaling.as_ref().filter(|v| !v.is_null()) {
            apply_rope_scaling(&mut model, scaling).map_err(bad)?;
            model.validate()?;
        }
        Ok(Self {
            model,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            bos_token_id: token_ids(raw.bos_token_id.as_ref(), "bos_token_id")
                .map_err(bad)?
                .first()
                .copied(),
            eos_token_ids: token_ids(raw.eos_token_id.as_ref(), "eos_token_id").map_err(bad)?,
        })
    }
}

/// Applies a `rope_scaling` block: `linear` scales positions, `llama3` divides each frequency
/// by a factor that moves smoothly from 1 (short wavelengths) to `factor` (long ones).
fn apply_rope_scaling(
    model: &mut ModelConfig,
    scaling: &serde_json::Value,
) -> std::result::Result<(), String> {
    let kind = scaling
        .get("rope_type")
        .or_else(|| scaling.get("type"))
        .and_then(|v| v.as_str())
        .ok_or("rope_scaling has no rope_type")?;
    let number = |key: &str| -> std::result::Result<f64, String> {
        scaling
            .get(key)
            .and_then(|v| v.as_f64())
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or(format!("rope_scaling.{key} must be a positive number"))
    };
    if kind == "default" {
        return Ok(());
    }
    let supported = model.architecture.family().hf_rope_scalings;
    let Some(&known) = supported.iter().find(|s| s.name() == kind) else {
        let names: Vec<&str> = supported.iter().map(|s| s.name()).collect();
        return Err(format!(
            "rope_scaling type `{kind}` is not supported (supported: {})",
            names.join(", ")
        ));
    };
    match known {
        RopeScaling::Linear => {
            model.rope_linear_scale = number("factor")?;
            Ok(())
        }
        RopeScaling::Llama3 => {
            let factor = number("factor")?;
            let low = number("low_freq_factor")?;
            let high = number("high_freq_factor")?;
            let original = number("original_max_position_embeddings")?;
            if high <= low {
                return Err("rope_scaling.high_freq_factor must exceed low_freq_factor".into());
            }
            let base_freqs = model.rope_inv_freq();
            let low_wavelen = original / low;
            let high_wavelen = original / high;
            let factors = base_freqs
                .iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f as f64;
                    if wavelen < high_wavelen {
                        1.0
                    } else if wavelen > low_wavelen {
                        factor as f32
                    } else {
                        let smooth = (original / wavelen - low) / (high - low);
                        (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
                    }
                })
                .collect();
            model.rope_freq_factors = Some(factors);
            Ok(())
        }
    }
}

/// One token id or a list of them.
fn token_ids(
    value: Option<&serde_json::Value>,
    key: &str,
) -> std::result::Result<Vec<u32>, String> {
    let one = |v: &serde_json::Value| {
        v.as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or(format!("{key} must be a token id or a list of them"))
    };
    match value {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items.iter().map(one).collect(),
        Some(v) => Ok(vec![one(v)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA3: &str = r#"{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": 300, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "hidden_act": "silu", "eos_token_id": [1, 2],
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}"#;

    #[test]
    fn llama3_scaling_keeps_short_and_divides_long_wavelengths() {
        let c = HfConfig::parse(LLAMA3, Path::new("config.json")).expect("parses");
        assert!(!c.model.rope_interleaved);
        assert_eq!(c.eos_token_ids, [1, 2]);
        let f = c.model.rope_freq_factors.expect("factors");
        assert_eq!(f.len(), 8);
        assert_eq!(f[0], 1.0);
        assert_eq!(*f.last().unwrap(), 8.0);
        assert!(f.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn unsupported_settings_are_named() {
        let gelu = LLAMA3.replace("\"silu\"", "\"gelu\"");
        let err = HfConfig::parse(&gelu, Path::new("c.json")).unwrap_err();
        assert!(err.to_string().contains("gelu"), "{err}");
        let yarn = LLAMA3.replace("\"llama3\"", "\"yarn\"");
        let err = HfConfig::parse(&yarn, Path::new("c.json")).unwrap_err();
        assert!(err.to_string().contains("yarn"), "{err}");
        let gpt = LLAMA3.replace("\"llama\"", "\"gpt2\"");
        assert!(matches!(
            HfConfig::parse(&gpt, Path::new("c.json")),
            Err(Error::UnsupportedArchitecture(_))
        ));
        let bad = LLAMA3.replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 3");
        assert!(HfConfig::parse(&bad, Path::new("c.json")).is_err());
    }
}
