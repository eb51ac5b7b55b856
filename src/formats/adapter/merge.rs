//! Folding an adapter into dense weights: `W ← W + scale · B · A` for every adapted
//! projection, the reference the run-time low-rank path is tested against and what merged
//! model export writes.

use super::lora::validated_modules;
use super::peft::PeftAdapter;
use crate::error::{Error, Result};
use crate::formats::weights::DenseCheckpoint;

/// Adds `adapter`'s updates to `checkpoint` (Hugging Face layout), after validating the adapter
/// against the checkpoint's configuration.
pub fn merge_into(
    checkpoint: &mut DenseCheckpoint,
    adapter: &PeftAdapter,
    name: &str,
) -> Result<()> {
    let modules = validated_modules(name, adapter, &checkpoint.config)?;
    for m in &modules {
        let key = format!("{}.weight", m.projection.hf_path(m.layer));
        let weight = checkpoint
            .tensors
            .get_mut(&key)
            .ok_or_else(|| Error::tensor(&key, "missing from the checkpoint"))?;
        for (w, d) in weight.data.iter_mut().zip(m.delta()) {
            *w += d;
        }
    }
    Ok(())
}
