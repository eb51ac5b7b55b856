//! Safetensors files: memory-mapped and validated on open (the `safetensors` crate checks the
//! header size, that offsets are contiguous and that every tensor's bytes match its shape and
//! type and lie inside the file), read as f32, and written atomically.

use crate::error::{Error, Result};
use safetensors::tensor::{Dtype, Metadata, TensorInfo};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One memory-mapped, validated `.safetensors` file.
pub struct SafetensorsFile {
    path: PathBuf,
    bytes: memmap2::Mmap,
    data_start: usize,
    metadata: Metadata,
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("path", &self.path)
            .finish()
    }
}

impl SafetensorsFile {
    /// Opens and validates a file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: read-only private map of a file this process does not modify.
        let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        let (header, metadata) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::model_file(&path, format!("invalid safetensors file: {e}")))?;
        Ok(Self {
            path,
            bytes,
            data_start: 8 + header,
            metadata,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names of every tensor in the file.
    pub fn names(&self) -> Vec<String> {
        self.metadata.offset_keys()
    }

    /// Shape and type of a tensor, if present.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.metadata.info(name)
    }

    /// The free-form `__metadata__` map of the header.
    pub fn header_metadata(&self) -> Option<&HashMap<String, String>> {
        self.metadata.metadata().as_ref()
    }

    /// A tensor's values converted to f32 (from F32, F16 or BF16), row-major, with its shape.
    pub fn f32_tensor(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let info = self
            .info(name)
            .ok_or_else(|| Error::tensor(name, format!("missing from {}", self.path.display())))?;
        let (start, end) = info.data_offsets;
        // Offsets were validated against the file length when it was opened.
        let raw = &self.bytes[self.data_start + start..self.data_start + end];
        let values = match info.dtype {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::tensor(
                    name,
                    format!("type {other:?} is not supported (F32, F16, BF16)"),
                ))
            }
        };
        Ok((info.shape.clone(), values))
    }
}

/// Storage type for [`write_safetensors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreDtype {
    /// 32-bit floats (exact).
    #[default]
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
}

/// A tensor to write: name, shape and row-major values.
#[derive(Debug, Clone, Copy)]
pub struct NamedTensor<'a> {
    /// Tensor name.
    pub name: &'a str,
    /// Dimensions, outermost first.
    pub shape: &'a [usize],
    /// Row-major values (`shape` product of them).
    pub data: &'a [f32],
}

/// Writes tensors to `path` as safetensors, through a temporary file renamed into place, so a
/// reader never sees a half-written file.
pub fn write_safetensors(
    path: &Path,
    tensors: &[NamedTensor<'_>],
    dtype: StoreDtype,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let mut views = Vec::with_capacity(tensors.len());
    for t in tensors {
        if t.shape.iter().product::<usize>() != t.data.len() {
            return Err(Error::InvalidInput(format!(
                "tensor {} has {} values for shape {:?}",
                t.name,
                t.data.len(),
                t.shape
            )));
        }
        let (st_dtype, bytes): (Dtype, Vec<u8>) = match dtype {
            StoreDtype::F32 => (
                Dtype::F32,
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            StoreDtype::F16 => (
                Dtype::F16,
                t.data
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
            StoreDtype::BF16 => (
                Dtype::BF16,
                t.data
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
        };
        views.push((t.name.to_string(), st_dtype, t.shape.to_vec(), bytes));
    }
    let tensor_views = views
        .iter()
        .map(|(name, dt, shape, bytes)| {
            safetensors::tensor::TensorView::new(*dt, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::InvalidInput(format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(tensor_views, metadata)
        .map_err(|e| Error::InvalidInput(format!("cannot serialize tensors: {e}")))?;
    write_atomically(path, &bytes)
}

/// Writes `bytes` to `path` via a temporary sibling file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidInput(format!("{} is not a file path", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back_each_dtype() {
        let dir = std::env::temp_dir().join(format!("dg-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data = [0.5f32, -1.25, 3.0, 0.0, 2.5, -0.75];
        for dtype in [StoreDtype::F32, StoreDtype::F16, StoreDtype::BF16] {
            let path = dir.join(format!("{dtype:?}.safetensors"));
            let t = NamedTensor {
                name: "w",
                shape: &[2, 3],
                data: &data,
            };
            write_safetensors(&path, &[t], dtype, None).unwrap();
            let file = SafetensorsFile::open(&path).unwrap();
            let (shape, back) = file.f32_tensor("w").unwrap();
            assert_eq!(shape, [2, 3]);
            assert_eq!(back, data, "{dtype:?} values are exactly representable");
        }
        let truncated = dir.join("truncated.safetensors");
        let whole = std::fs::read(dir.join("F32.safetensors")).unwrap();
        std::fs::write(&truncated, &whole[..whole.len() - 3]).unwrap();
        let err = SafetensorsFile::open(&truncated).unwrap_err();
        assert!(matches!(err, Error::ModelFile { .. }), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
