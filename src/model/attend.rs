//! Attention of a few query rows (decode steps: one token, or one per lock-step branch; small
//! tree batches) computed directly over the KV cache buffers.
//!
//! A decode step reads every cached key and value once per layer (~46 MB a step for the
//! default model at 1,000 positions), so this is a memory-bound pass that must use every
//! thread: the positions are cut into fixed chunks of [`CHUNK`] and each (kv head, chunk) is
//! one task, which scores the chunk's keys for all query heads of the group and rows at once,
//! takes their exponentials against the chunk's own maximum and sums the weighted values. The
//! partial results are then merged chunk by chunk, in order, rescaled to the overall maximum
//! (the usual split-softmax identity). Candle's path (two small batched matmuls and a softmax
//! tensor per layer) ran single-threaded at these shapes.
//!
//! A row's result depends only on its own query, mask row and the cache, never on the rows
//! beside it: chunk boundaries are fixed positions and rows never share sums, so lock-step
//! branches give the bits a single row would give on the same keys. The inner loops are plain
//! Rust compiled once per kernel path (AVX-512F, AVX2 + FMA, or the build's baseline).

use super::kernels::KernelPath;
use super::softmax::exp_non_positive;
use candle_core::{CpuStorage, Layout, Result, Storage, Tensor};
use rayon::prelude::*;

/// Most query rows (tokens) of a chunk that this path computes; larger chunks use candle's.
pub(crate) const FEW_ROWS_MAX: usize = 16;

/// Cached positions per task (fixed boundaries: position `t` is always in chunk `t / CHUNK`).
const CHUNK: usize = 256;

/// Below this many multiply-adds one thread computes the whole attention.
const PAR_MIN_MACS: usize = 1 << 16;

/// Shapes of one attention call.
#[derive(Clone, Copy)]
struct Dims {
    /// Query heads per kv head.
    groups: usize,
    /// Query rows (tokens).
    len: usize,
    /// Values per head.
    hd: usize,
    /// Cached positions (keys).
    total: usize,
}

/// A cache tensor `[1, n_kv, total, hd]` whose rows of `hd` values are contiguous, as a slice
/// with its start offset and kv-head stride.
struct Rows<'a> {
    data: &'a [f32],
    start: usize,
    head_stride: usize,
}

impl Rows<'_> {
    /// Positions `range` of kv head `h`, `hd` values each, one after the other.
    fn span(&self, h: usize, range: std::ops::Range<usize>, hd: usize) -> &[f32] {
        let at = self.start + h * self.head_stride;
        &self.data[at + range.start * hd..at + range.end * hd]
    }
}

/// `softmax(q·kᵀ · scale + mask) · v` for `q` `[1, heads, len, hd]`, `k`, `v` `[1, n_kv,
/// total, hd]` (rows of `hd` contiguous, e.g. views of the cache buffers) and an additive mask
/// `[groups * len, total]` (`None`: every position allowed); returns `[len, heads * hd]`.
/// `None` when this path does not apply (more than [`FEW_ROWS_MAX`] rows, tensors not f32 on
/// the CPU or not in that layout): the caller then uses candle's path.
pub(crate) fn attend_few(
    path: KernelPath,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: f32,
) -> Result<Option<Tensor>> {
    let (_, heads, len, hd) = q.dims4()?;
    let (_, n_kv, total, _) = k.dims4()?;
    if n_kv == 0
        || heads % n_kv != 0
        || len == 0
        || len > FEW_ROWS_MAX
        || hd == 0
        || total == 0
        || v.dims4()? != k.dims4()?
        || q.dim(3)? != k.dim(3)?
    {
        return Ok(None);
    }
    let dims = Dims {
        groups: heads / n_kv,
        len,
        hd,
        total,
    };
    let q = q.contiguous()?;
    let mask = match mask {
        Some(m) if m.dims2()? != (dims.groups * len, total) => return Ok(None),
        Some(m) => Some(m.contiguous()?),
        None => None,
    };
    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let mask_guard = mask.as_ref().map(|m| m.storage_and_layout());
    let (Some(qd), Some(kd), Some(vd)) = (cpu_f32(&qs), cpu_f32(&ks), cpu_f32(&vs)) else {
        return Ok(None);
    };
    let Some((q0, q1)) = ql.contiguous_offsets() else {
        return Ok(None);
    };
    let (Some(keys), Some(values)) = (rows(kl, kd, dims, n_kv), rows(vl, vd, dims, n_kv)) else {
        return Ok(None);
    };
    let mask_rows = match &mask_guard {
        Some((s, l)) => match (cpu_f32(s), l.contiguous_offsets()) {
            (Some(d), Some((a, b))) => Some(&d[a..b]),
            _ => return Ok(None),
        },
        None => None,
    };
    let path = path.or_portable();
    // Queries scaled once, in the order the tasks read them: kv head, group member, row.
    let scaled: Vec<f32> = qd[q0..q1].iter().map(|&x| x * scale).collect();
    let chunks = total.div_ceil(CHUNK);
    let job = Job {
        dims,
        q: &scaled,
        mask: mask_rows,
        keys: &keys,
        values: &values,
    };
    let task = |t: usize| job.run(path, t / chunks, t % chunks);
    let tasks = n_kv * chunks;
    let partials: Vec<Partial> =
        if heads * len * total * hd < PAR_MIN_MACS || rayon::current_num_threads() <= 1 {
            (0..tasks).map(task).collect()
        } else {
            (0..tasks).into_par_iter().map(task).collect()
        };
    drop((qs, ks, vs, mask_guard));
    let out = merge(&partials, dims, n_kv, chunks);
    Ok(Some(Tensor::from_vec(out, (len, heads * hd), q.device())?))
}

/// The f32 data of a CPU storage.
fn cpu_f32(s: &Storage) -> Option<&[f32]> {
    match s {
        Storage::Cpu(CpuStorage::F32(v)) => Some(v),
        _ => None,
    }
}

/// `data` as rows of `hd` values per position and kv head, if its layout is that and it
/// holds every row.
fn rows<'a>(l: &Layout, data: &'a [f32], dims: Dims, n_kv: usize) -> Option<Rows<'a>> {
    let s = l.stride();
    let fits = s[3] == 1
        && s[2] == dims.hd
        && s[1] >= dims.total * dims.hd
        && l.start_offset() + (n_kv - 1) * s[1] + dims.total * dims.hd <= data.len();
    fits.then_some(Rows {
        data,
        start: l.start_offset(),
        head_stride: s[1],
    })
}

/// One chunk's share of every row of one kv head: for row `r` (group member `g`, token `i`:
/// `r = g * len + i`), the largest score `max[r]`, `sum[r] = Σ exp(s - max[r])` and
/// `out[r * hd..]` = the values weighted by those exponentials. A row with no allowed
/// position in the chunk has `max = -inf`, `sum = 0` and zero values.
struct Partial {
    max: Vec<f32>,
    sum: Vec<f32>,
    out: Vec<f32>,
}

/// What every task reads.
struct Job<'a> {
    dims: Dims,
    /// Scaled queries `[heads, len, hd]`.
    q: &'a [f32],
    /// Mask rows `[groups * len, total]`, or `None`.
    mask: Option<&'a [f32]>,
    keys: &'a Rows<'a>,
    values: &'a Rows<'a>,
}

impl Job<'_> {
    /// The partial of kv head `h` over chunk `c`, compiled for `path`'s instructions
    /// (supported by the CPU: checked by the caller).
    fn run(&self, path: KernelPath, h: usize, c: usize) -> Partial {
        match path {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the caller checked that the CPU supports the path's features; the
            // function is safe Rust.
            KernelPath::Avx512 => unsafe { run_avx512(self, h, c) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            KernelPath::Avx2 => unsafe { run_avx2(self, h, c) },
            _ => self.body(h, c),
        }
    }

    /// The arithmetic, inlined into each path's compilation of it.
    #[inline(always)]
    fn body(&self, h: usize, c: usize) -> Partial {
        let Dims {
            groups,
            len,
            hd,
            total,
        } = self.dims;
        let range = c * CHUNK..((c + 1) * CHUNK).min(total);
        let width = range.len();
        let rows = groups * len;
        let keys = self.keys.span(h, range.clone(), hd);
        let values = self.values.span(h, range.clone(), hd);
        // The group's query rows are adjacent in `q` (heads h·groups .. (h+1)·groups).
        let q = &self.q[h * rows * hd..(h + 1) * rows * hd];
        let mut scores = vec![f32::NEG_INFINITY; rows * width];
        for (r, (qr, sr)) in q
            .chunks_exact(hd)
            .zip(scores.chunks_exact_mut(width))
            .enumerate()
        {
            let mask = self.mask.map(|m| &m[r * total + range.start..][..width]);
            for (t, (key, s)) in keys.chunks_exact(hd).zip(sr.iter_mut()).enumerate() {
                let add = mask.map_or(0.0, |m| m[t]);
                if add != f32::NEG_INFINITY {
                    *s = dot(qr, key) + add;
                }
            }
        }
        let mut max = vec![f32::NEG_INFINITY; rows];
        let mut sum = vec![0f32; rows];
        for ((sr, m), z) in scores.chunks_exact_mut(width).zip(&mut max).zip(&mut sum) {
            *m = sr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if *m == f32::NEG_INFINITY {
                sr.fill(0.0);
                continue;
            }
            let top = *m;
            sr.iter_mut().for_each(|s| *s = exp_non_positive(*s - top));
            *z = sr.iter().sum();
        }
        let mut out = vec![0f32; rows * hd];
        for (t, value) in values.chunks_exact(hd).enumerate() {
            for (o, sr) in out.chunks_exact_mut(hd).zip(scores.chunks_exact(width)) {
                let e = sr[t];
                if e != 0.0 {
                    o.iter_mut().zip(value).for_each(|(o, &v)| *o += e * v);
                }
            }
        }
        Partial { max, sum, out }
    }
}

/// Merges the chunks' partials (in chunk order) into `[len, heads * hd]`.
fn merge(partials: &[Partial], dims: Dims, n_kv: usize, chunks: usize) -> Vec<f32> {
    let Dims {
        groups, len, hd, ..
    } = dims;
    let heads = n_kv * groups;
    let mut out = vec![0f32; len * heads * hd];
    let mut acc = vec![0f32; hd];
    for h in 0..n_kv {
        let parts = &partials[h * chunks..(h + 1) * chunks];
        for r in 0..groups * len {
            let (g, i) = (r / len, r % len);
            let top = parts
                .iter()
                .map(|p| p.max[r])
                .fold(f32::NEG_INFINITY, f32::max);
            let dst = &mut out[(i * heads + h * groups + g) * hd..][..hd];
            if top == f32::NEG_INFINITY {
                // No allowed position at all (never in a decoder): zero, as candle gives NaN.
                dst.fill(0.0);
                continue;
            }
            acc.fill(0.0);
            let mut z = 0f32;
            for p in parts.iter().filter(|p| p.max[r] != f32::NEG_INFINITY) {
                let w = exp_non_positive(p.max[r] - top);
                z += w * p.sum[r];
                acc.iter_mut()
                    .zip(&p.out[r * hd..(r + 1) * hd])
                    .for_each(|(a, &o)| *a += w * o);
            }
            let inv = 1.0 / z;
            dst.iter_mut().zip(&acc).for_each(|(d, &a)| *d = a * inv);
        }
    }
    out
}

/// `Σ a·b` in 8 running sums (kept in one vector register; fewer steps to add them up than
/// 16 for the short rows of a head).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// [`Job::body`] compiled for AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn run_avx512(job: &Job<'_>, h: usize, c: usize) -> Partial {
    job.body(h, c)
}

/// [`Job::body`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn run_avx2(job: &Job<'_>, h: usize, c: usize) -> Partial {
    job.body(h, c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::tests::values;
    use candle_core::Device;

    /// The same attention in f64, straight from the definition.
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: &[f32],
        (heads, n_kv, len, hd, total): (usize, usize, usize, usize, usize),
    ) -> Vec<f64> {
        let groups = heads / n_kv;
        let mut out = vec![0f64; len * heads * hd];
        for h in 0..heads {
            let kvh = h / groups;
            for i in 0..len {
                let m = &mask[((h % groups) * len + i) * total..][..total];
                let s: Vec<f64> = (0..total)
                    .map(|t| {
                        let d: f64 = (0..hd)
                            .map(|j| {
                                f64::from(q[(h * len + i) * hd + j])
                                    * f64::from(k[(kvh * total + t) * hd + j])
                            })
                            .sum();
                        d / (hd as f64).sqrt() + f64::from(m[t])
                    })
                    .collect();
                let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                let z: f64 = e.iter().sum();
                for j in 0..hd {
                    out[i * heads * hd + h * hd + j] = (0..total)
                        .map(|t| e[t] / z * f64::from(v[(kvh * total + t) * hd + j]))
                        .sum();
                }
            }
        }
        out
    }

    /// `attend_few` on `path` as a flat vector.
    fn run(
        path: KernelPath,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        scale: f32,
    ) -> Vec<f32> {
        attend_few(path, q, k, v, mask, scale)
            .unwrap()
            .expect("f32 CPU tensors")
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn matches_the_definition_on_every_path_with_masks_chunks_and_cache_views() {
        let dev = Device::Cpu;
        let (heads, n_kv, hd) = (6, 2, 40);
        // Totals below, at and across chunk boundaries (several chunks merged).
        for &(len, total) in &[
            (1, 1),
            (1, 37),
            (3, 20),
            (1, CHUNK),
            (2, 2 * CHUNK + 9),
            (FEW_ROWS_MAX, 300),
        ] {
            let q = values(heads * len * hd, 1);
            // The cache as a view of a larger buffer (spare room past `total`).
            let cap = total + 7;
            let kbuf =
                Tensor::from_vec(values(n_kv * cap * hd, 2), (1, n_kv, cap, hd), &dev).unwrap();
            let vbuf =
                Tensor::from_vec(values(n_kv * cap * hd, 3), (1, n_kv, cap, hd), &dev).unwrap();
            let (k, v) = (
                kbuf.narrow(2, 0, total).unwrap(),
                vbuf.narrow(2, 0, total).unwrap(),
            );
            let kd: Vec<f32> = k.flatten_all().unwrap().to_vec1().unwrap();
            let vd: Vec<f32> = v.flatten_all().unwrap().to_vec1().unwrap();
            // Causal-style mask with holes: row i sees 0..=total - len + i, minus position 1
            // and, for the first row, the whole first chunk (a chunk with nothing allowed).
            let groups = heads / n_kv;
            let mut mask = vec![0f32; groups * len * total];
            for g in 0..groups {
                for i in 0..len {
                    for t in 0..total {
                        let hidden_chunk = i == 0 && t < CHUNK && total > CHUNK + 1;
                        if t > total - len + i || (t == 1 && total > 2) || hidden_chunk {
                            mask[(g * len + i) * total + t] = f32::NEG_INFINITY;
                        }
                    }
                }
            }
            let want = reference(&q, &kd, &vd, &mask, (heads, n_kv, len, hd, total));
            let qt = Tensor::from_vec(q.clone(), (1, heads, len, hd), &dev).unwrap();
            let mt = Tensor::from_vec(mask, (groups * len, total), &dev).unwrap();
            let scale = 1.0 / (hd as f32).sqrt();
            let paths = KernelPath::supported();
            let first = run(paths[0], &qt, &k, &v, Some(&mt), scale);
            for &path in &paths {
                let got = run(path, &qt, &k, &v, Some(&mt), scale);
                assert_eq!(got.len(), len * heads * hd);
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        (f64::from(*a) - b).abs() < 1e-5,
                        "{path} len {len} total {total}: {a} vs {b}"
                    );
                }
                // Same source arithmetic on every path: the same bits.
                assert_eq!(got, first, "{path} len {len} total {total}");
            }
            // A row alone gives the bits it gives among others.
            if len > 1 {
                let last = qt.narrow(2, len - 1, 1).unwrap();
                let mlast = Tensor::cat(
                    &(0..groups)
                        .map(|g| mt.narrow(0, g * len + len - 1, 1).unwrap())
                        .collect::<Vec<_>>(),
                    0,
                )
                .unwrap();
                let alone = run(paths[0], &last, &k, &v, Some(&mlast), scale);
                let heads_hd = heads * hd;
                assert_eq!(&first[(len - 1) * heads_hd..], &alone[..], "len {len}");
            }
        }
    }

    #[test]
    fn no_mask_equals_an_all_zero_mask() {
        let dev = Device::Cpu;
        let (heads, n_kv, hd, total) = (4, 2, 16, 2 * CHUNK + 3);
        let q = Tensor::from_vec(values(heads * hd, 4), (1, heads, 1, hd), &dev).unwrap();
        let k = Tensor::from_vec(values(n_kv * total * hd, 5), (1, n_kv, total, hd), &dev).unwrap();
        let v = Tensor::from_vec(values(n_kv * total * hd, 6), (1, n_kv, total, hd), &dev).unwrap();
        let zeros = Tensor::zeros((2, total), candle_core::DType::F32, &dev).unwrap();
        let path = KernelPath::Portable;
        assert_eq!(
            run(path, &q, &k, &v, None, 0.3),
            run(path, &q, &k, &v, Some(&zeros), 0.3)
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 4, 1, 8), candle_core::DType::F32, &dev).unwrap();
        let k = Tensor::zeros((1, 2, 5, 8), candle_core::DType::F32, &dev).unwrap();
        // Keys transposed: rows of hd are not contiguous.
        let kt = Tensor::zeros((1, 2, 8, 5), candle_core::DType::F32, &dev)
            .unwrap()
            .transpose(2, 3)
            .unwrap();
        assert!(attend_few(KernelPath::Portable, &q, &kt, &kt, None, 1.0)
            .unwrap()
            .is_none());
        // Too many rows.
        let many =
            Tensor::zeros((1, 4, FEW_ROWS_MAX + 1, 8), candle_core::DType::F32, &dev).unwrap();
        assert!(attend_few(KernelPath::Portable, &many, &k, &k, None, 1.0)
            .unwrap()
            .is_none());
        // A mask of the wrong shape, and f16 caches.
        let bad_mask = Tensor::zeros((3, 5), candle_core::DType::F32, &dev).unwrap();
        assert!(
            attend_few(KernelPath::Portable, &q, &k, &k, Some(&bad_mask), 1.0)
                .unwrap()
                .is_none()
        );
        let f16 = k.to_dtype(candle_core::DType::F16).unwrap();
        assert!(attend_few(KernelPath::Portable, &q, &f16, &f16, None, 1.0)
            .unwrap()
            .is_none());
    }
}
