//! Malformed variants of the tiny fixtures, for the hostile-input tests: tensors with edited
//! bytes (NaN values or block scales), GGUF files whose tensor table is patched after writing
//! (overlapping ranges, a changed type); [`corpus`](crate::corpus) gathers such files for the
//! corpus replay test and the fuzzing seeds.

use crate::gguf::GgufParts;
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QTensor};
use candle_core::Device;
use debias_guard::{Error, Result};

/// Stores tensor `name` of `parts` as `dtype` (re-quantized from its values), then lets `edit`
/// change its raw bytes (e.g. write a NaN block scale).
pub fn edit_tensor_bytes(
    parts: &mut GgufParts,
    name: &str,
    dtype: GgmlDType,
    edit: impl FnOnce(&mut Vec<u8>),
) -> Result<()> {
    let slot = parts
        .1
        .iter_mut()
        .find(|(n, _)| n == name)
        .ok_or_else(|| Error::InvalidInput(format!("no tensor {name}")))?;
    let dims = slot.1.shape().dims().to_vec();
    let values = slot.1.dequantize(&Device::Cpu)?;
    let mut raw = QTensor::quantize(&values, dtype)?.data()?.to_vec();
    edit(&mut raw);
    slot.1 = qtensor_from_ggml(dtype, &raw, dims, &Device::Cpu)?;
    Ok(())
}

/// Writes f16 NaN over the first scale (`d`, at byte 0) of block `block` of raw Q4/Q5/Q8_0
/// bytes.
pub fn nan_block_scale(raw: &mut [u8], dtype: GgmlDType, block: usize) {
    let at = block * dtype.type_size();
    raw[at..at + 2].copy_from_slice(&F16_NAN);
}

/// An f16 quiet NaN, little-endian.
pub const F16_NAN: [u8; 2] = [0x00, 0x7e];

fn word(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

/// Where the tensor-table entry of `name` sits in a GGUF file: the byte offsets of its type id
/// and of its data offset (found by the entry's length-prefixed name).
pub fn tensor_entry(bytes: &[u8], name: &str) -> Result<(usize, usize)> {
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    let mut at = None;
    for i in 0..bytes.len().saturating_sub(needle.len()) {
        if bytes[i..i + needle.len()] == needle[..] {
            // The metadata may hold the same string; the table entry follows with n_dims ≤ 4.
            let after = i + needle.len();
            let n_dims = u32::from_le_bytes(word(&bytes[after..after + 4])) as usize;
            if (1..=4).contains(&n_dims) {
                at = Some((after, n_dims));
            }
        }
    }
    let (after, n_dims) =
        at.ok_or_else(|| Error::InvalidInput(format!("no table entry for {name}")))?;
    let type_at = after + 4 + 8 * n_dims;
    Ok((type_at, type_at + 4))
}

/// Reads the data offset of `name`'s table entry.
pub fn tensor_offset(bytes: &[u8], name: &str) -> Result<u64> {
    let (_, off) = tensor_entry(bytes, name)?;
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[off..off + 8]);
    Ok(u64::from_le_bytes(b))
}

/// Overwrites the data offset of `name`'s table entry.
pub fn set_tensor_offset(bytes: &mut [u8], name: &str, offset: u64) -> Result<()> {
    let (_, off) = tensor_entry(bytes, name)?;
    bytes[off..off + 8].copy_from_slice(&offset.to_le_bytes());
    Ok(())
}

/// Overwrites the GGML type id of `name`'s table entry.
pub fn set_tensor_type(bytes: &mut [u8], name: &str, type_id: u32) -> Result<()> {
    let (ty, _) = tensor_entry(bytes, name)?;
    bytes[ty..ty + 4].copy_from_slice(&type_id.to_le_bytes());
    Ok(())
}
