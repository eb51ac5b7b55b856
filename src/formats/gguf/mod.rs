//! GGUF files: a bounds-checked parser of the header, metadata and tensor table, and
//! loading of single tensors into candle's quantized tensors without copying the whole file;
//! [`write_gguf`] writes models and adapters.

mod config;
mod reader;
mod value;
mod write;

pub use value::{MetadataExt, Value};
pub use write::write_gguf;

use crate::error::{Error, Result};
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QTensor};
use candle_core::Device;
use reader::Cursor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const GGUF_MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// Most dimensions a GGUF tensor may declare.
const MAX_DIMS: usize = 4;

/// Where one tensor lives in the file and what it holds.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Dimensions in candle's order (outermost first; GGUF stores them innermost first).
    pub dims: Vec<usize>,
    /// Storage type.
    pub dtype: GgmlDType,
    /// Byte offset relative to the start of the data section.
    pub offset: u64,
    /// Size in bytes, computed from dims and dtype.
    pub size: u64,
}

/// A parsed, memory-mapped GGUF file.
pub struct GgufFile {
    path: PathBuf,
    bytes: memmap2::Mmap,
    /// All metadata key/values.
    pub metadata: HashMap<String, Value>,
    tensors: HashMap<String, TensorInfo>,
    data_start: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Opens and validates a GGUF file (version 2 or 3): every tensor must lie inside the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: the map is read-only and private; the file is not modified by this process.
        let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        let (metadata, tensors, data_start) = parse(&bytes, &path)?;
        Ok(Self {
            path,
            bytes,
            metadata,
            tensors,
            data_start,
        })
    }

    /// The path this file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The table entry of a tensor, if present.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// Names of all tensors in the file.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Loads one tensor as stored (quantized types stay quantized).
    pub fn qtensor(&self, name: &str, device: &Device) -> Result<QTensor> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::tensor(name, "missing from the file"))?;
        let start = (self.data_start + info.offset) as usize;
        let raw = &self.bytes[start..start + info.size as usize];
        // candle reinterprets the bytes as blocks, which needs the blocks' alignment.
        let aligned;
        let raw = if (raw.as_ptr() as usize).is_multiple_of(8) {
            raw
        } else {
            aligned = AlignedBytes::copy_of(raw);
            aligned.as_slice()
        };
        qtensor_from_ggml(info.dtype, raw, info.dims.clone(), device)
            .map_err(|e| Error::tensor(name, e.to_string()))
    }
}

/// A copy of bytes in 8-byte aligned storage.
struct AlignedBytes {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBytes {
    fn copy_of(bytes: &[u8]) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            *word = u64::from_ne_bytes(buf);
        }
        Self {
            words,
            len: bytes.len(),
        }
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: the Vec<u64> owns at least `len` initialised bytes.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }
}

type Parsed = (HashMap<String, Value>, HashMap<String, TensorInfo>, u64);

fn parse(bytes: &[u8], path: &Path) -> Result<Parsed> {
    let mut cur = Cursor::new(bytes, path);
    if bytes.len() < 4 || &bytes[..4] != GGUF_MAGIC {
        return Err(cur.error("not a GGUF file (bad magic)"));
    }
    cur.u32()?;
    let version = cur.u32()?;
    if !(2..=3).contains(&version) {
        return Err(cur.error(format!("unsupported GGUF version {version} (need 2 or 3)")));
    }
    let tensor_count = cur.count("tensor", 24)?;
    let kv_count = cur.count("metadata", 13)?;
    let mut metadata = HashMap::with_capacity(kv_count);
    for _ in 0..kv_count {
        let key = cur.string()?;
        let type_id = cur.u32()?;
        let value = cur.value(type_id, 0)?;
        metadata.insert(key, value);
    }
    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 16 => a,
            _ => return Err(cur.error(format!("invalid general.alignment {v:?}"))),
        },
    };
    let mut infos = Vec::with_capacity(tensor_count);
    for _ in 0..tensor_count {
        let name = cur.string()?;
        let n_dims = cur.u32()? as usize;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(cur.error(format!("tensor `{name}` has {n_dims} dimensions")));
        }
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            let d = cur.u64()?;
            if d == 0 || d > u32::MAX as u64 {
                return Err(cur.error(format!("tensor `{name}` has dimension {d}")));
            }
            dims.push(d as usize);
        }
        dims.reverse();
        let type_id = cur.u32()?;
        let dtype = dtype_from_id(type_id).ok_or_else(|| Error::UnsupportedTensorType {
            tensor: name.clone(),
            type_id,
        })?;
        let offset = cur.u64()?;
        if offset % alignment != 0 {
            return Err(cur.error(format!("tensor `{name}` offset {offset} is not aligned")));
        }
        let size = tensor_bytes(&dims, dtype).ok_or_else(|| {
            cur.error(format!(
                "tensor `{name}` shape {dims:?} is not a whole number of {dtype:?} blocks"
            ))
        })?;
        infos.push((
            name,
            TensorInfo {
                dims,
                dtype,
                offset,
                size,
            },
        ));
    }
    let data_start = (cur.position() as u64).div_ceil(alignment) * alignment;
    let data_len = (bytes.len() as u64).saturating_sub(data_start);
    let mut tensors = HashMap::with_capacity(infos.len());
    for (name, info) in infos {
        let end = info.offset.checked_add(info.size);
        if end.is_none_or(|end| end > data_len) {
            return Err(Error::GgufFormat {
                path: path.to_path_buf(),
                offset: data_start + info.offset,
                reason: format!(
                    "tensor `{name}` ({} bytes at data offset {}) extends past the end of the file",
                    info.size, info.offset
                ),
            });
        }
        if tensors.insert(name.clone(), info).is_some() {
            return Err(cur.error(format!("tensor `{name}` appears twice")));
        }
    }
    check_layout(&tensors, alignment, data_len).map_err(|reason| Error::GgufFormat {
        path: path.to_path_buf(),
        offset: data_start,
        reason,
    })?;
    Ok((metadata, tensors, data_start))
}

/// Checks that the tensors tile the data section as GGUF writers lay it out: in offset order,
/// each one starts where the previous one ends, rounded up to `alignment`, and the section
/// ends within `alignment` bytes of the last one. So byte ranges never overlap, and each
/// tensor's size, computed from its type's block size, accounts for exactly the bytes it
/// occupies: a type changed to a larger one runs into its neighbour, a smaller one leaves a
/// gap, and both are refused (either would read another tensor's bytes, or garbage, as
/// weights).
fn check_layout(
    tensors: &HashMap<String, TensorInfo>,
    alignment: u64,
    data_len: u64,
) -> std::result::Result<(), String> {
    let mut by_offset: Vec<(&String, &TensorInfo)> = tensors.iter().collect();
    by_offset.sort_by_key(|(name, t)| (t.offset, name.as_str()));
    let mut expected = 0u64;
    let mut previous: Option<&str> = None;
    for (name, t) in by_offset {
        let after = previous.map_or(String::new(), |p| format!(" after tensor `{p}`"));
        if t.offset < expected {
            return Err(format!(
                "tensor `{name}` at data offset {} overlaps the bytes{after}, which end at {expected}",
                t.offset
            ));
        }
        if t.offset > expected {
            return Err(format!(
                "tensor `{name}` at data offset {} leaves {} unexplained bytes{after} (its type and shape do not account for the bytes before it)",
                t.offset,
                t.offset - expected
            ));
        }
        expected = (t.offset + t.size).div_ceil(alignment) * alignment;
        previous = Some(name);
    }
    if data_len > expected {
        return Err(format!(
            "{} bytes after the last tensor `{}` belong to no tensor",
            data_len - expected,
            previous.unwrap_or("")
        ));
    }
    Ok(())
}

/// Bytes taken by a tensor of `dims` elements of `dtype`, if it is a whole number of blocks.
fn tensor_bytes(dims: &[usize], dtype: GgmlDType) -> Option<u64> {
    let elems = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))?;
    let block = dtype.block_size() as u64;
    let row = *dims.last()? as u64;
    if !row.is_multiple_of(block) {
        return None;
    }
    (elems / block).checked_mul(dtype.type_size() as u64)
}

/// Maps a GGML type id (as in `ggml.h`) to candle's type.
pub fn dtype_from_id(id: u32) -> Option<GgmlDType> {
    Some(match id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}
