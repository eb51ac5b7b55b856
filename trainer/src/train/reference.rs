//! Reference log-probs of every pair's chosen and rejected answers (adapter off), computed once
//! and cached next to the run.

use super::prepare::PreparedPair;
use crate::error::{Error, Result};
use crate::loss::read_f32;
use crate::model::{sequence_logprobs, Decoder, ScoredSequence, TokenBatch};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Summed (chosen, rejected) response log-probs of each pair under the base model (adapter
/// off), `chunk` pairs per forward pass, each pair's shared prompt computed once.
fn reference_logps(
    decoder: &Decoder,
    pairs: &[PreparedPair],
    chunk: usize,
) -> Result<Vec<(f32, f32)>> {
    let mut out = Vec::with_capacity(pairs.len());
    for part in pairs.chunks(chunk.max(1)) {
        let groups: Vec<[ScoredSequence; 2]> = part
            .iter()
            .map(|p| [p.chosen.clone(), p.rejected.clone()])
            .collect();
        let rows: Vec<&[ScoredSequence]> = groups.iter().map(|g| g.as_slice()).collect();
        let batch = TokenBatch::packed(&rows, decoder.config())?;
        let lp = sequence_logprobs(decoder, &batch, None)?;
        let sums = read_f32(&lp.sum.detach())?;
        out.extend(sums.chunks_exact(2).map(|r| (r[0], r[1])));
    }
    Ok(out)
}

/// Key of the reference cache: the data digest, the base model path and its size, so a cache
/// left by a run on another model is not reused.
pub fn reference_cache_key(data_digest: &str, model: &Path) -> String {
    let size = std::fs::metadata(model).map(|m| m.len()).unwrap_or(0);
    format!("{data_digest}|{}|{size}", model.display())
}

/// Cache file of the reference log-probs.
#[derive(Debug, Serialize, Deserialize)]
struct ReferenceCache {
    key: String,
    chosen_rejected: Vec<(f32, f32)>,
}

/// Fills `reference` of every pair: from `{out}/reference_logps.json` when its key matches `key`
/// (see [`reference_cache_key`]), else computed with the adapter off (then cached).
pub fn fill_reference(
    decoder: &Decoder,
    prepared: &mut [PreparedPair],
    key: &str,
    out: &Path,
    chunk: usize,
) -> Result<()> {
    let path = out.join("reference_logps.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(cache) = serde_json::from_str::<ReferenceCache>(&text) {
            if cache.key == key && cache.chosen_rejected.len() == prepared.len() {
                for (p, r) in prepared.iter_mut().zip(cache.chosen_rejected) {
                    p.reference = r;
                }
                return Ok(());
            }
        }
    }
    let lp = reference_logps(decoder, prepared, chunk)?;
    for (p, r) in prepared.iter_mut().zip(lp) {
        p.reference = r;
    }
    let cache = ReferenceCache {
        key: key.to_string(),
        chosen_rejected: prepared.iter().map(|p| p.reference).collect(),
    };
    let text = serde_json::to_string(&cache)
        .map_err(|e| Error::Config(format!("cannot encode the reference cache: {e}")))?;
    let tmp = crate::data::temp_path(&path);
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}
