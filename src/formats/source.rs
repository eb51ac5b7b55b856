//! Where a decoder's tensors come from. Tensors are addressed by their GGUF names
//! (`blk.3.attn_q.weight`), whatever the file format; each format maps them to its own.

use crate::error::Result;
use crate::formats::gguf::GgufFile;
use candle_core::quantized::QTensor;
use candle_core::Device;

/// A store of named tensors that a [`super::DecoderModel`] can be built from.
pub trait TensorSource {
    /// Dimensions (outermost first) of a tensor, or `None` when absent.
    fn tensor_dims(&self, name: &str) -> Option<Vec<usize>>;

    /// Loads one tensor (quantized types stay quantized; float types may come as f32).
    fn load_tensor(&self, name: &str, device: &Device) -> Result<QTensor>;

    /// Names of every tensor in the store (GGUF naming).
    fn names(&self) -> Vec<String>;
}

impl TensorSource for GgufFile {
    fn tensor_dims(&self, name: &str) -> Option<Vec<usize>> {
        self.tensor_info(name).map(|t| t.dims.clone())
    }

    fn load_tensor(&self, name: &str, device: &Device) -> Result<QTensor> {
        self.qtensor(name, device)
    }

    fn names(&self) -> Vec<String> {
        self.tensor_names().map(str::to_string).collect()
    }
}
