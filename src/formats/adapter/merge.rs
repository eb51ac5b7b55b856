//! Folding an adapter into dense weights: `W ← W + scale · B · A` for every adapted
//! projection, the reference the run-time low-rank path is tested against and what merged
//! model export writes.

use super::lora::validated_modules;
use super::peft::PeftAdapter;
use crate::arch::names::rows_halves_to_pairs;
use crate::arch::ModelConfig;
use crate::error::{Error, Result};
use crate::formats::weights::DenseCheckpoint;
use crate::formats::TensorSource;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

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

/// A tensor source that serves a base model's tensors with an adapter folded into its adapted
/// projections (`W + scale · B · A`, computed in f32 when the tensor is loaded). Loading a model
/// from it gives the merged model without writing a file: an adapter that is always on then
/// costs nothing per token. Merged projections are dense f32 whatever the base stores.
pub struct MergedSource<'a> {
    base: &'a dyn TensorSource,
    /// Update of each adapted tensor (GGUF name), rows in the base's order, `[out, in]`.
    deltas: HashMap<String, Vec<f32>>,
}

impl<'a> MergedSource<'a> {
    /// Validates `adapter` against `config` (the base's configuration, as the model will be
    /// built from it) and prepares the updates.
    pub fn new(
        base: &'a dyn TensorSource,
        config: &ModelConfig,
        adapter: &PeftAdapter,
        name: &str,
    ) -> Result<Self> {
        let modules = validated_modules(name, adapter, config)?;
        let mut deltas = HashMap::with_capacity(modules.len());
        for m in &modules {
            let (_, inp) = m.projection.shape(config);
            let delta = m.delta();
            let delta = match m.projection.permuted_heads(config) {
                Some(heads) => rows_halves_to_pairs(&delta, heads, inp),
                None => delta,
            };
            let key = format!("blk.{}.{}.weight", m.layer, m.projection.gguf_stem());
            deltas.insert(key, delta);
        }
        Ok(Self { base, deltas })
    }
}

impl TensorSource for MergedSource<'_> {
    fn tensor_dims(&self, name: &str) -> Option<Vec<usize>> {
        self.base.tensor_dims(name)
    }

    fn load_tensor(&self, name: &str, device: &Device) -> Result<QTensor> {
        let stored = self.base.load_tensor(name, device)?;
        let Some(delta) = self.deltas.get(name) else {
            return Ok(stored);
        };
        let dense = stored.dequantize(device)?.to_dtype(DType::F32)?;
        let shape = dense.dims().to_vec();
        let mut w = dense.flatten_all()?.to_vec1::<f32>()?;
        if w.len() != delta.len() {
            return Err(Error::tensor(
                name,
                format!(
                    "has {} values but the adapter's update has {}",
                    w.len(),
                    delta.len()
                ),
            ));
        }
        for (x, d) in w.iter_mut().zip(delta) {
            *x += d;
        }
        let merged = Tensor::from_vec(w, shape, device)?;
        Ok(QTensor::quantize(&merged, GgmlDType::F32)?)
    }

    fn names(&self) -> Vec<String> {
        self.base.names()
    }
}
