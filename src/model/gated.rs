//! The gated MLP's activation, `silu(gate) · up`, in one pass over rows on the rayon pool.
//!
//! candle computes it as two element-wise ops, each a new tensor, each run on candle's own
//! spinning thread pool beside ours once a prefill chunk makes it large (and `silu` calls libm's
//! `expf` per value). Here the exponential is the softmax's vectorised polynomial, and the
//! arithmetic is plain Rust compiled once per kernel path with the same bits on each.

use super::kernels::KernelPath;
use super::softmax::exp_non_positive;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Values per parallel task.
const VALUES_PER_TASK: usize = 16 * 1024;

/// `silu(gate) · up` for two contiguous f32 CPU tensors of one shape, or `None` when they are
/// not in that form (the caller then uses candle's ops).
pub(crate) fn silu_mul(gate: &Tensor, up: &Tensor, path: KernelPath) -> Result<Option<Tensor>> {
    let cpu_f32 = |t: &Tensor| t.dtype() == DType::F32 && t.device().is_cpu() && t.is_contiguous();
    if gate.dims() != up.dims() || !cpu_f32(gate) || !cpu_f32(up) {
        return Ok(None);
    }
    let path = path.or_portable();
    gate.apply_op2_no_bwd(up, &SiluMul { path }).map(Some)
}

/// The op: which instructions to compile the arithmetic for.
struct SiluMul {
    path: KernelPath,
}

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "silu-mul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(g), CpuStorage::F32(u)) = (s1, s2) else {
            candle_core::bail!("silu-mul needs f32 inputs");
        };
        let (Some((g0, g1)), Some((u0, u1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("silu-mul needs contiguous inputs");
        };
        let (g, u) = (&g[g0..g1], &u[u0..u1]);
        if g.len() != u.len() {
            candle_core::bail!("silu-mul needs inputs of one shape");
        }
        let mut out = vec![0f32; g.len()];
        let path = self.path;
        let task = |((o, g), u): ((&mut [f32], &[f32]), &[f32])| values(path, o, g, u);
        if rayon::current_num_threads() > 1 && out.len() > VALUES_PER_TASK {
            out.par_chunks_mut(VALUES_PER_TASK)
                .zip(g.par_chunks(VALUES_PER_TASK))
                .zip(u.par_chunks(VALUES_PER_TASK))
                .for_each(task);
        } else {
            task(((&mut out, g), u));
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// One slice, compiled for `path`'s instructions (supported by the CPU: checked by the caller).
fn values(path: KernelPath, out: &mut [f32], gate: &[f32], up: &[f32]) {
    match path {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked that the CPU supports the path's features; the function
        // is safe Rust.
        KernelPath::Avx512 => unsafe { values_avx512(out, gate, up) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        KernelPath::Avx2 => unsafe { values_avx2(out, gate, up) },
        _ => values_body(out, gate, up),
    }
}

/// `out = silu(gate) · up`, with `silu(x) = x / (1 + e⁻ˣ)` written through `t = e^(−|x|)` so
/// that the exponential's argument is never positive: `x / (1 + t)` for `x ≥ 0`, `x·t / (1 + t)`
/// below.
#[inline(always)]
fn values_body(out: &mut [f32], gate: &[f32], up: &[f32]) {
    for ((o, &x), &u) in out.iter_mut().zip(gate).zip(up) {
        let t = exp_non_positive(-x.abs());
        let numerator = if x >= 0.0 { x } else { x * t };
        *o = numerator / (1.0 + t) * u;
    }
}

/// [`values_body`] compiled for AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn values_avx512(out: &mut [f32], gate: &[f32], up: &[f32]) {
    values_body(out, gate, up)
}

/// [`values_body`] compiled for AVX2 + FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn values_avx2(out: &mut [f32], gate: &[f32], up: &[f32]) {
    values_body(out, gate, up)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn inputs(n: usize) -> (Tensor, Tensor) {
        let g: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 2001) as f32 - 1000.0) / 37.0)
            .collect();
        let u: Vec<f32> = (0..n).map(|i| ((i * 31 % 17) as f32 - 8.0) / 3.0).collect();
        (
            Tensor::from_vec(g, (n / 50, 50), &Device::Cpu).unwrap(),
            Tensor::from_vec(u, (n / 50, 50), &Device::Cpu).unwrap(),
        )
    }

    #[test]
    fn matches_the_definition_with_the_same_bits_on_every_path() {
        // Large enough for several parallel tasks; gates from −27 to 27, and the extremes.
        let (g, u) = inputs(50 * 1000);
        let (gv, uv): (Vec<f32>, Vec<f32>) = (
            g.flatten_all().unwrap().to_vec1().unwrap(),
            u.flatten_all().unwrap().to_vec1().unwrap(),
        );
        let mut first: Option<Vec<f32>> = None;
        for path in KernelPath::supported() {
            let got = silu_mul(&g, &u, path).unwrap().expect("handled");
            assert_eq!(got.dims(), g.dims());
            let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
            for ((&o, &x), &y) in got.iter().zip(&gv).zip(&uv) {
                let (x, y) = (x as f64, y as f64);
                let want = x / (1.0 + (-x).exp()) * y;
                assert!(
                    (o as f64 - want).abs() <= 1e-6 * want.abs() + 1e-30,
                    "{path}: silu({x})·{y} = {o}, want {want}"
                );
            }
            match &first {
                None => first = Some(got),
                Some(f) => assert_eq!(&got, f, "{path}"),
            }
        }
        let edge = Tensor::new(&[0f32, -0.0, 200.0, -200.0, f32::NAN], &Device::Cpu).unwrap();
        let ones = Tensor::ones(5, DType::F32, &Device::Cpu).unwrap();
        let got: Vec<f32> = silu_mul(&edge, &ones, KernelPath::Portable)
            .unwrap()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(&got[..4], &[0.0, 0.0, 200.0, 0.0]);
        assert!(got[4].is_nan());
    }

    #[test]
    fn leaves_other_forms_to_candle() {
        let (g, u) = inputs(100);
        let strided = g.t().unwrap();
        assert!(silu_mul(&strided, &u.t().unwrap(), KernelPath::Portable)
            .unwrap()
            .is_none());
        let other = u.narrow(0, 0, 1).unwrap();
        assert!(silu_mul(&g, &other, KernelPath::Portable)
            .unwrap()
            .is_none());
    }
}
