//! Writing GGUF files (models and llama.cpp adapters) through candle's writer.

use crate::error::{Error, Result};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::QTensor;
use std::path::Path;

/// Writes metadata and tensors as a GGUF file (atomically: temp file, then rename).
pub fn write_gguf(
    path: &Path,
    metadata: &[(String, Value)],
    tensors: &[(String, QTensor)],
) -> Result<()> {
    let md_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tmp = path.with_extension("gguf.partial");
    let mut file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    gguf_file::write(&mut file, &md_refs, &t_refs)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    Ok(())
}
