//! The attention softmax of a chunk, in place: the additive mask added, each row's maximum
//! subtracted, exponentials by a polynomial the compiler vectorises, and the row scaled to sum
//! to one — one pass over the scores instead of candle's mask addition (a new tensor) and
//! softmax (a libm `expf` call per score, the largest single cost of a prefill after the
//! matrix products).
//!
//! Rows run in parallel on the current rayon pool; a row's result depends only on its own
//! scores and mask row. The arithmetic is plain Rust compiled once per kernel path (AVX-512F,
//! AVX2 + FMA, or the build's baseline) and gives the same bits on each.

use super::kernels::KernelPath;
use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Result, Storage, Tensor};
use rayon::prelude::*;

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 16;

/// Running sums of a row (independent lanes, so the compiler keeps them in vector registers).
const LANES: usize = 16;

/// Turns `scores` (`[.., rows, total]`, contiguous f32 on the CPU) into `softmax(scores +
/// mask)` along the last axis, in place; `mask` is `[rows, total]` (the same for every leading
/// index) or `None`. Returns `false`, touching nothing, when the tensors are not in that form
/// (the caller then uses candle's ops). A row with no allowed position becomes zeros; scores
/// after a row's last allowed position are not read.
pub(crate) fn softmax_in_place(
    scores: &Tensor,
    mask: Option<&Tensor>,
    path: KernelPath,
) -> Result<bool> {
    let dims = scores.dims();
    let (Some(&total), true) = (dims.last(), dims.len() >= 2) else {
        return Ok(false);
    };
    let rows = dims[dims.len() - 2];
    let f32_cpu = scores.dtype() == DType::F32 && scores.device().is_cpu();
    if total == 0 || rows == 0 || !scores.is_contiguous() || !f32_cpu {
        return Ok(false);
    }
    let mask = match mask {
        Some(m) if m.dims() != [rows, total] || !m.is_contiguous() => return Ok(false),
        other => other,
    };
    let guard = mask.map(|m| m.storage_and_layout());
    let mask_data = match &guard {
        Some((storage, l)) => match (&**storage, l.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(d)), Some((a, b))) => Some(&d[a..b]),
            _ => return Ok(false),
        },
        None => None,
    };
    let path = path.or_portable();
    let op = Softmax {
        mask: mask_data,
        rows,
        total,
        path,
    };
    scores.inplace_op1(&op)?;
    Ok(true)
}

/// The in-place op: what it needs to find each row's mask row.
struct Softmax<'a> {
    mask: Option<&'a [f32]>,
    rows: usize,
    total: usize,
    path: KernelPath,
}

impl InplaceOp1 for Softmax<'_> {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        // `softmax_in_place` checked both before calling.
        let (CpuStorage::F32(data), Some((a, b))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("masked-softmax needs contiguous f32 scores");
        };
        let (rows, total, path, mask) = (self.rows, self.total, self.path, self.mask);
        let task = |(t, block): (usize, &mut [f32])| {
            for (i, row) in block.chunks_exact_mut(total).enumerate() {
                let r = (t * ROWS_PER_TASK + i) % rows;
                let m = mask.map(|m| &m[r * total..(r + 1) * total]);
                softmax_row(path, row, m);
            }
        };
        let data = &mut data[a..b];
        if rayon::current_num_threads() > 1 && data.len() > ROWS_PER_TASK * total {
            data.par_chunks_mut(ROWS_PER_TASK * total)
                .enumerate()
                .for_each(task);
        } else {
            data.chunks_mut(ROWS_PER_TASK * total)
                .enumerate()
                .for_each(task);
        }
        Ok(())
    }
}

/// One row, compiled for `path`'s instructions (supported by the CPU: checked by the caller).
fn softmax_row(path: KernelPath, row: &mut [f32], mask: Option<&[f32]>) {
    match path {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked that the CPU supports the path's features; the function
        // is safe Rust.
        KernelPath::Avx512 => unsafe { row_avx512(row, mask) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        KernelPath::Avx2 => unsafe { row_avx2(row, mask) },
        _ => row_body(row, mask),
    }
}

/// The arithmetic of one row, inlined into each path's compilation of it. Positions after the
/// mask row's last allowed one (a causal chunk's future: a third of a long prompt's scores)
/// are set to zero without being read.
#[inline(always)]
fn row_body(row: &mut [f32], mask: Option<&[f32]>) {
    let visible = mask.map_or(row.len(), |m| {
        m.iter()
            .rposition(|&v| v != f32::NEG_INFINITY)
            .map_or(0, |last| last + 1)
    });
    let (row, hidden) = row.split_at_mut(visible);
    hidden.fill(0.0);
    if let Some(m) = mask {
        row.iter_mut().zip(m).for_each(|(s, &m)| *s += m);
    }
    let mut top = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (t, &s) in top.iter_mut().zip(c) {
            *t = t.max(s);
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&top)
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    let mut sums = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (z, s) in sums.iter_mut().zip(c.iter_mut()) {
            *s = exp_non_positive(*s - max);
            *z += *s;
        }
    }
    let mut tail = 0f32;
    for s in chunks.into_remainder() {
        *s = exp_non_positive(*s - max);
        tail += *s;
    }
    let inv = 1.0 / (sums.iter().sum::<f32>() + tail);
    row.iter_mut().for_each(|s| *s *= inv);
}

/// [`row_body`] compiled for AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn row_avx512(row: &mut [f32], mask: Option<&[f32]>) {
    row_body(row, mask)
}

/// [`row_body`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn row_avx2(row: &mut [f32], mask: Option<&[f32]>) {
    row_body(row, mask)
}

/// `eˣ` for `x ≤ 0` (a softmax numerator), to about 2 ulp: `x = n·ln 2 + r`, a degree-6
/// polynomial for `eʳ`, and `2ⁿ` built in the exponent bits. Plain arithmetic, so a loop of it
/// vectorises (`f32::exp` is a libm call per value). Below −87 (−∞ included) it returns 0; NaN
/// stays NaN.
#[inline(always)]
pub(crate) fn exp_non_positive(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    let x = if x < -87.0 { -87.0 } else { x };
    let n = (x * std::f32::consts::LOG2_E + MAGIC) - MAGIC;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let y = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x <= -87.0 {
        0.0
    } else {
        y * scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn exp_is_close_to_libm_and_keeps_nan() {
        let mut worst = 0f64;
        for i in 0..86_900 {
            let x = -(i as f32) / 1000.0;
            let (got, want) = (exp_non_positive(x) as f64, (x as f64).exp());
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 1e-6, "{worst}");
        assert_eq!(exp_non_positive(0.0), 1.0);
        assert_eq!(exp_non_positive(-100.0), 0.0);
        assert_eq!(exp_non_positive(f32::NEG_INFINITY), 0.0);
        assert!(exp_non_positive(f32::NAN).is_nan());
    }

    /// Scores `[2, rows, total]` and a causal-style mask with a fully hidden row.
    fn case(rows: usize, total: usize) -> (Tensor, Tensor) {
        let dev = Device::Cpu;
        let data: Vec<f32> = (0..2 * rows * total)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let mut mask = vec![0f32; rows * total];
        for r in 0..rows {
            for t in 0..total {
                if t > total - rows + r || r == 1 {
                    mask[r * total + t] = f32::NEG_INFINITY;
                }
            }
        }
        (
            Tensor::from_vec(data, (2, rows, total), &dev).unwrap(),
            Tensor::from_vec(mask, (rows, total), &dev).unwrap(),
        )
    }

    #[test]
    fn matches_the_definition_on_every_path() {
        for &(rows, total) in &[(3, 5), (20, 37), (40, 300)] {
            let (scores, mask) = case(rows, total);
            let want: Vec<f32> = {
                let s = scores
                    .broadcast_add(&mask)
                    .unwrap()
                    .to_vec3::<f32>()
                    .unwrap();
                s.into_iter()
                    .flatten()
                    .flat_map(|row| {
                        let max = row
                            .iter()
                            .copied()
                            .fold(f64::NEG_INFINITY, |a, b| a.max(b as f64));
                        if max == f64::NEG_INFINITY {
                            return vec![0f32; row.len()];
                        }
                        let e: Vec<f64> = row.iter().map(|&x| (x as f64 - max).exp()).collect();
                        let z: f64 = e.iter().sum();
                        e.iter().map(|v| (v / z) as f32).collect()
                    })
                    .collect()
            };
            let mut first: Option<Vec<f32>> = None;
            for path in KernelPath::supported() {
                let t = scores.copy().unwrap();
                assert!(softmax_in_place(&t, Some(&mask), path).unwrap());
                let got: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
                for (a, b) in got.iter().zip(&want) {
                    assert!((a - b).abs() <= 1e-6, "{path} {rows}x{total}: {a} vs {b}");
                }
                // Same source arithmetic on every path: the same bits.
                match &first {
                    None => first = Some(got),
                    Some(f) => assert_eq!(&got, f, "{path}"),
                }
            }
        }
    }

    #[test]
    fn no_mask_matches_candle_and_nan_propagates() {
        let (scores, _) = case(4, 50);
        let want = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        let t = scores.copy().unwrap();
        assert!(softmax_in_place(&t, None, KernelPath::Portable).unwrap());
        let diff = (t - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
        let mut data = vec![0.5f32; 8];
        data[3] = f32::NAN;
        let t = Tensor::from_vec(data, (1, 8), &Device::Cpu).unwrap();
        assert!(softmax_in_place(&t, None, KernelPath::Portable).unwrap());
        assert!(t.to_vec2::<f32>().unwrap()[0].iter().all(|v| v.is_nan()));
    }

    #[test]
    fn hidden_future_is_never_read() {
        let (scores, mask) = case(6, 40);
        let want = scores.copy().unwrap();
        assert!(softmax_in_place(&want, Some(&mask), KernelPath::Portable).unwrap());
        // NaN where the mask hides the rest of a row: the result must not change.
        let mut data: Vec<f32> = scores.flatten_all().unwrap().to_vec1().unwrap();
        let mask_rows = mask.to_vec2::<f32>().unwrap();
        for (i, v) in data.iter_mut().enumerate() {
            let (r, t) = ((i / 40) % 6, i % 40);
            if mask_rows[r][t..].iter().all(|&m| m == f32::NEG_INFINITY) {
                *v = f32::NAN;
            }
        }
        let t = Tensor::from_vec(data, (2, 6, 40), &Device::Cpu).unwrap();
        for path in KernelPath::supported() {
            let got = t.copy().unwrap();
            assert!(softmax_in_place(&got, Some(&mask), path).unwrap());
            let (got, want): (Vec<f32>, Vec<f32>) = (
                got.flatten_all().unwrap().to_vec1().unwrap(),
                want.flatten_all().unwrap().to_vec1().unwrap(),
            );
            assert_eq!(got, want, "{path}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_handle() {
        let (scores, mask) = case(4, 10);
        let wrong = mask.narrow(1, 0, 9).unwrap();
        assert!(!softmax_in_place(&scores, Some(&wrong), KernelPath::Portable).unwrap());
        let strided = scores.transpose(1, 2).unwrap();
        assert!(!softmax_in_place(&strided, None, KernelPath::Portable).unwrap());
    }
}
