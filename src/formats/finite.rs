//! Finite checks on raw GGML tensor bytes, run once at load on every tensor the decoder reads.
//!
//! Float tensors (F32, F16, BF16) are checked value by value. A quantized value is a small
//! integer times its block's scale(s) (plus a minimum), so when every f16 scale is finite every
//! dequantized value is finite too (|q| ≤ 255, |d| ≤ 65504): only the 2–4 scale bytes of each
//! block are read, never the dequantized tensor.

use candle_core::quantized::GgmlDType;

/// Largest |scale| accepted for an f32 block scale (Q8_K): 256 quanta of it stay finite.
const MAX_F32_SCALE: f32 = f32::MAX / 256.0;

/// Where the first non-finite number of a tensor is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NonFiniteAt {
    /// `value` (float tensors) or `block scale` (quantized tensors).
    pub kind: &'static str,
    /// Element index (float tensors) or block index (quantized tensors).
    pub index: usize,
    /// The offending number.
    pub value: f32,
}

impl std::fmt::Display for NonFiniteAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.kind == "value" {
            format!("value {} at index {}", self.value, self.index)
        } else {
            format!("{} {} of block {}", self.kind, self.value, self.index)
        };
        write!(f, "{what} is not finite")
    }
}

/// Byte offsets of the f16 scales inside one block of a quantized type (`d`, and `m`/`dmin`
/// where the type has one), as laid out by ggml.
fn f16_scale_offsets(dtype: GgmlDType) -> &'static [usize] {
    match dtype {
        GgmlDType::Q4_0 | GgmlDType::Q5_0 | GgmlDType::Q8_0 => &[0],
        GgmlDType::Q4_1 | GgmlDType::Q5_1 | GgmlDType::Q8_1 => &[0, 2],
        GgmlDType::Q4K | GgmlDType::Q5K => &[0, 2],
        GgmlDType::Q2K => &[80, 82],
        GgmlDType::Q3K => &[108],
        GgmlDType::Q6K => &[208],
        _ => &[],
    }
}

fn f16_at(raw: &[u8], at: usize) -> half::f16 {
    half::f16::from_le_bytes([raw[at], raw[at + 1]])
}

/// The first non-finite value (float types) or block scale (quantized types) of a tensor
/// stored as `raw` bytes of `dtype`; `None` when all are finite. A trailing partial block is
/// ignored (the parser has already checked sizes).
pub fn first_non_finite(dtype: GgmlDType, raw: &[u8]) -> Option<NonFiniteAt> {
    let value = |index, value| NonFiniteAt {
        kind: "value",
        index,
        value,
    };
    match dtype {
        GgmlDType::F32 => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .enumerate()
            .find(|(_, v)| !v.is_finite())
            .map(|(i, v)| value(i, v)),
        GgmlDType::F16 => raw
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]))
            .enumerate()
            .find(|(_, v)| !v.is_finite())
            .map(|(i, v)| value(i, v.to_f32())),
        GgmlDType::BF16 => raw
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]))
            .enumerate()
            .find(|(_, v)| !v.is_finite())
            .map(|(i, v)| value(i, v.to_f32())),
        GgmlDType::Q8K => raw
            .chunks_exact(dtype.type_size())
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .enumerate()
            .find(|(_, d)| !d.is_finite() || d.abs() > MAX_F32_SCALE)
            .map(|(index, value)| NonFiniteAt {
                kind: "block scale",
                index,
                value,
            }),
        _ => {
            let offsets = f16_scale_offsets(dtype);
            raw.chunks_exact(dtype.type_size())
                .enumerate()
                .find_map(|(index, block)| {
                    offsets
                        .iter()
                        .map(|&at| f16_at(block, at))
                        .find(|s| !s.is_finite())
                        .map(|s| NonFiniteAt {
                            kind: "block scale",
                            index,
                            value: s.to_f32(),
                        })
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    fn quantized(dtype: GgmlDType) -> Vec<u8> {
        let values: Vec<f32> = (0..512).map(|i| (i as f32 * 0.37).sin()).collect();
        let t = Tensor::from_vec(values, (2, 256), &Device::Cpu).unwrap();
        QTensor::quantize(&t, dtype)
            .unwrap()
            .data()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn every_scale_of_every_quantized_type_is_found() {
        let types = [
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q5_1,
            GgmlDType::Q8_0,
            GgmlDType::Q2K,
            GgmlDType::Q3K,
            GgmlDType::Q4K,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
        ];
        let nan = half::f16::NAN.to_le_bytes();
        for dtype in types {
            let clean = quantized(dtype);
            assert_eq!(first_non_finite(dtype, &clean), None, "{dtype:?}");
            for &at in f16_scale_offsets(dtype) {
                let mut raw = clean.clone();
                let block = 1;
                let pos = block * dtype.type_size() + at;
                raw[pos..pos + 2].copy_from_slice(&nan);
                let found = first_non_finite(dtype, &raw).expect("found");
                assert_eq!((found.kind, found.index), ("block scale", 1), "{dtype:?}");
                assert!(found.value.is_nan());
            }
        }
    }

    #[test]
    fn float_values_are_checked_one_by_one() {
        let mut raw: Vec<u8> = [1f32, 2.0, f32::INFINITY, 4.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let found = first_non_finite(GgmlDType::F32, &raw).unwrap();
        assert_eq!((found.index, found.value), (2, f32::INFINITY));
        assert_eq!(found.to_string(), "value inf at index 2 is not finite");
        raw[8..12].copy_from_slice(&3f32.to_le_bytes());
        assert_eq!(first_non_finite(GgmlDType::F32, &raw), None);
        let halves: Vec<u8> = [half::f16::ONE, half::f16::NEG_INFINITY]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(first_non_finite(GgmlDType::F16, &halves).unwrap().index, 1);
    }
}
