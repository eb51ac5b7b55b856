//! The generated part of the fuzz corpus: valid tiny fixtures and the malformed files of
//! issue 14 that are too large to commit (NaN/Inf in norm weights and Q8_0 scales,
//! overlapping GGUF tensors, changed tensor types, a shard link leaving the model folder,
//! unbounded adapters, a huge rubric and catalog), built from the tiny models with the
//! [`hostile`](crate::hostile) helpers. The corpus replay test runs them next to the committed
//! files under `tests/corpus/<target>/`; `make fuzz-seeds` writes both as fuzzing seeds.
//!
//! Names say what is expected: `bad-*` must give a typed error, `ok-*` must succeed.

use crate::fuzz_entry::{make_bundle, Target, LINK_MARK};
use crate::gguf::{tiny_adapter, tiny_gguf_parts, write_gguf, GgufParts, TinySpec};
use crate::hf::{write_tiny_hf_model, HfModelSpec};
use crate::hostile;
use crate::scratch_dir;
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::GgmlDType;
use debias_guard::adapter::{PeftAdapter, PeftConfig};
use debias_guard::{Error, ProbeCatalog, Result};
use std::path::Path;

/// One generated input of a fuzz target.
#[derive(Debug, Clone)]
pub struct Case {
    /// The target whose entry function reads it.
    pub target: Target,
    /// File name (`bad-…` or `ok-…`).
    pub name: String,
    /// The input bytes.
    pub bytes: Vec<u8>,
}

/// The committed corpus folder of `target`: `tests/corpus/<name>/` of the workspace.
pub fn committed_dir(target: Target) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/corpus")
        .join(target.name())
}

/// Every committed case (`tests/corpus/<target>/*`, sorted by name), for all targets.
pub fn committed_cases() -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    for target in Target::ALL {
        let dir = committed_dir(target);
        let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            cases.push(Case {
                target,
                name,
                bytes,
            });
        }
    }
    Ok(cases)
}

/// Every generated case, for all targets (about 2 MB in all; a few seconds to build).
pub fn generated_cases() -> Result<Vec<Case>> {
    // The builders share scratch files: one caller at a time.
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let mut cases = gguf_cases()?;
    cases.extend(hf_cases()?);
    cases.extend(adapter_cases()?);
    cases.extend(json_cases()?);
    Ok(cases)
}

fn case(target: Target, name: &str, bytes: Vec<u8>) -> Case {
    Case {
        target,
        name: name.to_string(),
        bytes,
    }
}

/// The bytes of a GGUF file written from `parts`.
fn gguf_bytes(parts: &GgufParts) -> Result<Vec<u8>> {
    let path = scratch_dir("corpus-gguf").join("model.gguf");
    write_gguf(&path, &parts.0, &parts.1)?;
    std::fs::read(&path).map_err(|e| Error::io(&path, e))
}

/// The tiny model with matrices stored as `dtype`.
fn tiny_parts(dtype: GgmlDType) -> Result<GgufParts> {
    tiny_gguf_parts(&TinySpec {
        dtype,
        ..TinySpec::default()
    })
}

/// The tiny model with `bytes` written over the raw bytes of tensor `name` at `at`.
fn with_bytes_at(name: &str, dtype: GgmlDType, at: usize, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut parts = tiny_parts(GgmlDType::F32)?;
    hostile::edit_tensor_bytes(&mut parts, name, dtype, |raw| {
        raw[at..at + bytes.len()].copy_from_slice(bytes)
    })?;
    gguf_bytes(&parts)
}

/// The tiny model's file with its tensor table patched by `patch`.
fn patched(dtype: GgmlDType, patch: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<Vec<u8>> {
    let mut bytes = gguf_bytes(&tiny_parts(dtype)?)?;
    patch(&mut bytes)?;
    Ok(bytes)
}

/// An f16 +infinity, little-endian.
const F16_INF: [u8; 2] = [0x00, 0x7c];

fn gguf_cases() -> Result<Vec<Case>> {
    let t = Target::GgufModel;
    let q8_block = GgmlDType::Q8_0.type_size();
    let mut doubling = tiny_parts(GgmlDType::F32)?;
    doubling.0.retain(|(k, _)| k != "tokenizer.chat_template");
    doubling.0.push((
        "tokenizer.chat_template".into(),
        Value::String(
            "{% set ns = namespace(s=messages[0].content) %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"
                .into(),
        ),
    ));
    Ok(vec![
        case(
            t,
            "ok-tiny-f32.gguf",
            gguf_bytes(&tiny_parts(GgmlDType::F32)?)?,
        ),
        case(
            t,
            "ok-tiny-q4_1.gguf",
            gguf_bytes(&tiny_parts(GgmlDType::Q4_1)?)?,
        ),
        case(
            t,
            "bad-nan-output-norm.gguf",
            with_bytes_at(
                "output_norm.weight",
                GgmlDType::F32,
                12,
                &f32::NAN.to_le_bytes(),
            )?,
        ),
        case(
            t,
            "bad-inf-attn-norm.gguf",
            with_bytes_at(
                "blk.0.attn_norm.weight",
                GgmlDType::F32,
                0,
                &f32::INFINITY.to_le_bytes(),
            )?,
        ),
        case(
            t,
            "bad-nan-q8_0-scale.gguf",
            with_bytes_at(
                "token_embd.weight",
                GgmlDType::Q8_0,
                2 * q8_block,
                &hostile::F16_NAN,
            )?,
        ),
        case(
            t,
            "bad-inf-q8_0-scale.gguf",
            with_bytes_at("blk.1.ffn_down.weight", GgmlDType::Q8_0, q8_block, &F16_INF)?,
        ),
        case(
            t,
            "bad-overlapping-tensors.gguf",
            patched(GgmlDType::F32, |b| {
                let first = hostile::tensor_offset(b, "blk.0.attn_q.weight")?;
                hostile::set_tensor_offset(b, "blk.1.attn_q.weight", first)
            })?,
        ),
        case(
            t,
            "bad-type-runs-into-next.gguf",
            patched(GgmlDType::F16, |b| {
                hostile::set_tensor_type(b, "blk.0.ffn_up.weight", 0)
            })?,
        ),
        case(
            t,
            "bad-type-leaves-gap.gguf",
            patched(GgmlDType::F32, |b| {
                hostile::set_tensor_type(b, "blk.0.ffn_up.weight", 1)
            })?,
        ),
        case(t, "bad-template-doubling.gguf", gguf_bytes(&doubling)?),
    ])
}

/// Every file of `dir` (sorted by name) as a bundle.
pub fn dir_bundle(dir: &Path) -> Result<Vec<u8>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut files = Vec::new();
    for name in names {
        let path = dir.join(&name);
        files.push((name, std::fs::read(&path).map_err(|e| Error::io(&path, e))?));
    }
    let entries: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    Ok(make_bundle(&entries))
}

fn hf_cases() -> Result<Vec<Case>> {
    let t = Target::HfDir;
    let root = scratch_dir("corpus-hf");
    let single = root.join("single");
    write_tiny_hf_model(&single, &HfModelSpec::default())?;
    let sharded = root.join("sharded");
    let spec = HfModelSpec {
        shards: 2,
        ..HfModelSpec::default()
    };
    write_tiny_hf_model(&sharded, &spec)?;
    let ok_sharded = dir_bundle(&sharded)?;
    // The second shard replaced by a link to a copy outside the model folder.
    let shard = "model-00002-of-00002.safetensors";
    let shard_bytes =
        std::fs::read(sharded.join(shard)).map_err(|e| Error::io(sharded.join(shard), e))?;
    std::fs::remove_file(sharded.join(shard)).map_err(|e| Error::io(sharded.join(shard), e))?;
    let mut link = LINK_MARK.to_vec();
    link.extend_from_slice(b"../outside.safetensors");
    let mut escaping = dir_bundle(&sharded)?;
    escaping.push(b'\n');
    escaping.extend_from_slice(&make_bundle(&[
        (shard, &link),
        ("../outside.safetensors", &shard_bytes),
    ]));
    Ok(vec![
        case(t, "ok-tiny-hf.bundle", dir_bundle(&single)?),
        case(t, "ok-tiny-hf-sharded.bundle", ok_sharded),
        case(t, "bad-shard-link-outside.bundle", escaping),
    ])
}

fn adapter_cases() -> Result<Vec<Case>> {
    let t = Target::PeftAdapter;
    let config = crate::fuzz_entry::tiny_base_config();
    let plain = tiny_adapter(config, PeftConfig::lora(4, 8.0, &["q_proj", "v_proj"]), 3)?;
    let mut huge_alpha = plain.clone();
    huge_alpha.config.lora_alpha = 1e308;
    let mut huge_values = plain.clone();
    if let Some(a) = huge_values.tensors.values_mut().next() {
        a.data.iter_mut().for_each(|v| *v = 1e38);
    }
    let bundle = |name: &str, adapter: &PeftAdapter| -> Result<Case> {
        let dir = scratch_dir("corpus-adapter").join(name);
        adapter.save(&dir)?;
        Ok(case(t, name, dir_bundle(&dir)?))
    };
    Ok(vec![
        bundle("ok-tiny-adapter.bundle", &plain)?,
        bundle("bad-huge-lora-alpha.bundle", &huge_alpha)?,
        bundle("bad-huge-lora-values.bundle", &huge_values)?,
    ])
}

fn json_cases() -> Result<Vec<Case>> {
    let t = Target::JsonFiles;
    let builtin_rubric = debias_guard::rubric::DEFAULT_RUBRIC_JSON.as_bytes();
    let builtin_probes = debias_guard::guard::probes::DEFAULT_PROBES_JSON.as_bytes();
    let items: Vec<String> = (0..5000)
        .map(|i| {
            format!(
                r#"{{"id": "item{i}", "name": "Item {i}", "description": "d", "question": "How good?", "labels": ["1", "2", "3"]}}"#
            )
        })
        .collect();
    let huge_rubric = format!(r#"{{"version": 1, "items": [{}]}}"#, items.join(","));
    let mut catalog: serde_json::Value = serde_json::from_str(
        &serde_json::to_string(&ProbeCatalog::builtin())
            .map_err(|e| Error::InvalidInput(e.to_string()))?,
    )
    .map_err(|e| Error::InvalidInput(e.to_string()))?;
    if let Some(controls) = catalog["controls"].as_array_mut() {
        let template = controls[0].clone();
        while controls.len() <= debias_guard::limits::MAX_PROBE_WORDINGS {
            let mut w = template.clone();
            w["id"] = format!("control.extra{}", controls.len()).into();
            controls.push(w);
        }
    }
    Ok(vec![
        case(
            t,
            "ok-builtin-rubric-and-probes.bundle",
            make_bundle(&[
                ("rubric.json", builtin_rubric),
                ("probes.json", builtin_probes),
            ]),
        ),
        case(
            t,
            "bad-huge-rubric.bundle",
            make_bundle(&[("rubric.json", huge_rubric.as_bytes())]),
        ),
        case(
            t,
            "bad-huge-probe-catalog.bundle",
            make_bundle(&[("probes.json", catalog.to_string().as_bytes())]),
        ),
    ])
}
