//! Dense f32 linear layers (`y = x · Wᵀ`) on the CPU, faster than candle's generic matmul for
//! the decoder's shapes: the weight is repacked once into cache-sized blocks of 32-column
//! panels, and a register tile runs over them, the work spread over the current rayon pool.
//!
//! One packed layout, three micro-kernels ([`KernelPath`]): AVX-512F (tiles of up to 12 rows ×
//! 32 columns), AVX2 + FMA (the same tiles run as sub-tiles of up to 6 rows × 16 columns) and a
//! portable plain-Rust kernel the compiler vectorises (any CPU, aarch64 included). The path is
//! chosen once per process ([`KernelPath::from_env`]: the fastest SIMD path the CPU supports, or
//! the one `DEBIAS_GUARD_KERNEL` forces; without AVX2/AVX-512F `auto` keeps candle's matmul,
//! which beats the portable kernel) and passed to [`PackedLinear::pack`]. The SIMD paths give
//! bit-identical results; the portable one differs by rounding (no fused multiply-add).
//!
//! Blocking, for `x [m, k] · Wᵀ [k, n]`:
//! - `k` is cut into blocks of at most `KC` (640) steps; the packed weight holds block after block,
//!   each the `ceil(n / 32)` panels of `kc × 32` values (so any run of panels of one block is
//!   one contiguous slice);
//! - rows of `x` go in tiles of at most 12, packed per block of `k` (`pack::pack_rows`);
//! - a task (rows × panels, run on one thread) walks its weight blocks of about 256 KiB
//!   (in L2) and runs each row tile (in L1) over all the panels of the block, while it
//!   prefetches the next block;
//! - one row (`m == 1`) streams the weights once instead (a matrix-vector product).
//!
//! Weights are held in one of three [`PackedFormat`]s: f32 panels; 8-bit panels (`q8/`: one
//! byte per value plus a scale and minimum per 32 steps of `k`) that few-row products (decode,
//! up to [`Q8_ROWS_MAX`] rows) read directly and larger ones dequantize a block of panels at a
//! time into the f32 layout above, so no f32 copy of the weights is kept; or 4-bit panels
//! (`q4/`, the same two uses, direct up to [`Q4_ROWS_MAX`] rows) whose direct products round
//! the activations to 8 bits and sum integer products, as llama.cpp does for its 4-bit types.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod format;
mod pack;
mod path;
mod portable;
mod q4;
mod q8;

pub use format::{PackedFormat, PACKED_ENV};
pub use path::{KernelPath, KernelPathError, KERNEL_ENV};

use pack::AlignedBuf;
use rayon::prelude::*;
use std::cell::RefCell;
use std::fmt;
use std::ops::Range;

/// Columns of `Wᵀ` per packed panel (two 16-lane registers).
const NR: usize = 32;
/// Most rows of `x` in one register tile.
const MR_MAX: usize = 12;
/// Steps of `k` per group in a packed block of rows (the micro-kernel's unrolling).
const KU: usize = 8;
/// Largest block of `k`: a row tile's packed block (`MR_MAX × KC` values, at most 30 KiB)
/// stays in L1 while the panels of a weight block stream past it.
const KC: usize = 640;
/// Bytes of packed weights per block of panels: stays in L2 (next to the one being
/// prefetched) while every row tile of a task runs over it.
const NC_BYTES: usize = 256 << 10;
/// Most row tiles per task (their packed rows of `x` stay in L2 next to the weight block).
const MC_TILES: usize = 32;
/// The same for 8- and 4-bit panels, whose blocks each task dequantizes once for all its
/// rows: more rows per task amortise that (the rows' packed tiles then stream from L3, which
/// the f32 micro-kernel keeps up with).
const MC_TILES_DEQUANT: usize = 96;
/// Below this many multiply-adds one thread does the whole product (no rayon hand-off).
const PAR_MIN_MACS: usize = 1 << 19;
/// Fixed cost of one parallel task, in multiply-add equivalents (hand-off, cache warm-up).
const TASK_COST_MACS: usize = 1 << 17;
/// Cost of bringing one f32 weight into a task, in multiply-add equivalents (`plan_grid`).
const F32_WEIGHT_COST: usize = 4;
/// The same for one 8-bit weight: read, dequantize, write and read back as f32.
const Q8_WEIGHT_COST: usize = 32;
/// Panels per task for the one-row (matrix-vector) product.
const GEMV_PANELS: usize = 32;
/// Most rows for which 8-bit weights are multiplied directly (bytes streamed once for all
/// rows); more rows dequantize blocks of panels into the f32 micro-kernel (measured:
/// docs/BENCHMARKS.md).
pub const Q8_ROWS_MAX: usize = 128;
/// Most rows for which 4-bit weights are multiplied directly, with the rows rounded to 8 bits:
/// decode steps of up to 16 lock-step branches. Larger products (prefill, the tails of a
/// scoring pass) dequantize blocks into the f32 micro-kernel and stay exact.
pub const Q4_ROWS_MAX: usize = 16;
/// Panels per parallel task of a few-row product on 8- or 4-bit panels.
const ROWS_PANELS: usize = 8;
/// Below this many multiply-adds one thread computes a few-row product on 8- or 4-bit panels.
const ROWS_PAR_MIN_MACS: usize = 1 << 18;

/// One call of the micro-kernel: for every destination row `r` and `j < cols`,
/// `c[r][col + j] (+)= Σ_p A[r][p] · B[p][j]`, where `a` holds `A` (`rows × kc`) packed by
/// `pack::pack_rows` and `b` the `ceil(cols / NR)` consecutive panels of `B` (`kc × NR`
/// each); adds to `c` when `accumulate`, overwrites it otherwise. `prefetch` is data needed
/// soon after (pulled towards L2 meanwhile; may be empty).
struct Tile<'a> {
    a: &'a [f32],
    b: &'a [f32],
    kc: usize,
    col: usize,
    cols: usize,
    accumulate: bool,
    prefetch: &'a [f32],
}

/// Which micro-kernel runs the tiles (the CPU support already checked, for the SIMD ones).
#[derive(Clone, Copy, Debug)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512(avx512::Avx512),
    #[cfg(target_arch = "x86_64")]
    Avx2(avx2::Avx2),
    Portable,
}

impl Isa {
    /// The micro-kernel of `path`, when the CPU supports it.
    fn for_path(path: KernelPath) -> Option<Self> {
        match path {
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx512 => avx512::Avx512::detect().map(Isa::Avx512),
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => avx2::Avx2::detect().map(Isa::Avx2),
            #[cfg(not(target_arch = "x86_64"))]
            KernelPath::Avx512 | KernelPath::Avx2 => None,
            KernelPath::Portable => Some(Isa::Portable),
        }
    }

    /// The path this micro-kernel implements.
    fn path(self) -> KernelPath {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(_) => KernelPath::Avx512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(_) => KernelPath::Avx2,
            Isa::Portable => KernelPath::Portable,
        }
    }

    /// Runs one register tile into the rows `c` (each at least `t.col + t.cols` long).
    fn tile(self, t: &Tile<'_>, c: &mut [&mut [f32]]) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(isa) => isa.tile(t, c),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(isa) => isa.tile(t, c),
            Isa::Portable => portable::tile(t, c),
        }
    }

    /// `out[j] (+)= Σ_p x[p] · b[p * NR + j]` for `j < out.len() <= NR`, `p < x.len()`.
    fn gemv_panel(self, x: &[f32], b: &[f32], out: &mut [f32], accumulate: bool) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(isa) => isa.gemv_panel(x, b, out, accumulate),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(isa) => isa.gemv_panel(x, b, out, accumulate),
            Isa::Portable => portable::gemv_panel(x, b, out, accumulate),
        }
    }

    /// `out[r][j] += Σ_p x[r * k + p] · W[j, p]` for one 8-bit panel (levels `q`, scales `dm`,
    /// see `q8::Q8Panels`) and the `out.len()` rows of `x`, whose block sums are `xsum`.
    fn q8_rows(
        self,
        x: &[f32],
        k: usize,
        xsum: &[f32],
        q: &[u8],
        dm: &[f32],
        out: &mut [[f32; NR]],
    ) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(isa) => isa.q8_rows(x, k, xsum, q, dm, out),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(isa) => isa.q8_rows(x, k, xsum, q, dm, out),
            Isa::Portable => q8::portable::rows(x, k, xsum, q, dm, out),
        }
    }

    /// `out[r][j] += Σ_b dx_rb · Σ_s (d_j · q_sj + m_j) · qx_rs` for one 4-bit panel
    /// (levels `q`, scales `dm`, see `q4::Q4Panels`) and the `out.len()` rows of activations
    /// rounded to 8 bits (`xq`, scales `xd`, rounded block sums `xsum`; `blocks` blocks each).
    #[allow(clippy::too_many_arguments)]
    fn q4_rows(
        self,
        xq: &[i8],
        xd: &[f32],
        xsum: &[f32],
        blocks: usize,
        q: &[u8],
        dm: &[f32],
        out: &mut [[f32; NR]],
    ) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(isa) => isa.q4_rows(xq, xd, xsum, blocks, q, dm, out),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(isa) => isa.q4_rows(xq, xd, xsum, blocks, q, dm, out),
            Isa::Portable => q4::portable::rows(xq, xd, xsum, blocks, q, dm, out),
        }
    }
}

/// Runs a few-row product (`m` rows, `out` `[m, n]` row-major, overwritten) panel by panel:
/// `kernel(p, acc)` adds panel `p`'s 32 columns of every row into `acc` (`m` zeroed rows). The
/// panels are cut into tasks on the current rayon pool (one task when the product is small or
/// the pool has one thread), each owning its panels' columns of every row.
fn panel_rows(
    n: usize,
    k: usize,
    m: usize,
    out: &mut [f32],
    kernel: impl Fn(usize, &mut [[f32; NR]]) + Sync,
) {
    let panels = n.div_ceil(NR);
    let threads = rayon::current_num_threads();
    let tasks = if threads <= 1 || m * n * k < ROWS_PAR_MIN_MACS {
        1
    } else {
        panels
            .div_ceil(ROWS_PANELS)
            .next_multiple_of(threads)
            .min(panels)
    };
    let col = |t: usize| (part_start(t, panels, tasks) * NR).min(n);
    let mut segs: Vec<Vec<&mut [f32]>> = (0..tasks).map(|_| Vec::with_capacity(m)).collect();
    for line in out[..m * n].chunks_mut(n.max(1)) {
        let mut rest = line;
        for (t, seg) in segs.iter_mut().enumerate() {
            let (mine, tail) = rest.split_at_mut(col(t + 1) - col(t));
            seg.push(mine);
            rest = tail;
        }
    }
    let task = |(t, mut seg): (usize, Vec<&mut [f32]>)| {
        let first = part_start(t, panels, tasks);
        let mut acc = vec![[0f32; NR]; m];
        for p in first..part_start(t + 1, panels, tasks) {
            acc.iter_mut().for_each(|a| *a = [0.0; NR]);
            kernel(p, &mut acc);
            let c0 = (p - first) * NR;
            for (row, a) in seg.iter_mut().zip(&acc) {
                let cols = (row.len() - c0).min(NR);
                row[c0..c0 + cols].copy_from_slice(&a[..cols]);
            }
        }
    };
    if tasks == 1 {
        segs.into_iter().enumerate().for_each(task);
    } else {
        segs.into_par_iter().enumerate().for_each(task);
    }
}

/// Length of a packed block of `mr` rows × `kc` steps of `k` (see `pack::pack_rows`).
fn packed_rows_len(mr: usize, kc: usize) -> usize {
    kc.div_ceil(KU) * mr * KU
}

thread_local! {
    /// Per-thread scratch for packed blocks of `x`, reused across calls.
    static PACK_BUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Per-thread scratch for a block of 8-bit panels dequantized to f32.
    static DEQ_BUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Quantizes `w` (`[n, k]`, row-major, `w.len() >= n * k`) panel by panel on the current rayon
/// pool into blocks of `BK` (32) steps: `block_bytes` level bytes and `2 * NR` scales (`d` of
/// each column, then `m`) per block of each panel. `grid(values, levels)` fits one block of one
/// row (`None`: no grid holds it, and the whole matrix is refused); `store(block, s, j, level)`
/// writes the level of step `s`, column `j` into the block's bytes. Returns levels and scales.
fn quantize_panels(
    w: &[f32],
    (n, k): (usize, usize),
    block_bytes: usize,
    grid: impl Fn(&[f32], &mut [u8]) -> Option<(f32, f32)> + Sync,
    store: impl Fn(&mut [u8], usize, usize, u8) + Sync,
) -> Option<(Vec<u8>, Vec<f32>)> {
    const BK: usize = 32;
    let len = n.checked_mul(k).expect("n * k overflows");
    assert!(
        w.len() >= len,
        "weight has {} values, need {n} x {k}",
        w.len()
    );
    let (panels, blocks) = (n.div_ceil(NR), k.div_ceil(BK));
    let scales = 2 * NR;
    let mut q = vec![0u8; panels * blocks * block_bytes];
    let mut dm = vec![0f32; panels * blocks * scales];
    let exact = q
        .par_chunks_mut((blocks * block_bytes).max(1))
        .zip(dm.par_chunks_mut((blocks * scales).max(1)))
        .enumerate()
        .all(|(p, (qp, dmp))| {
            let mut levels = [0u8; BK];
            for j in 0..NR.min(n - p * NR) {
                let row = &w[(p * NR + j) * k..(p * NR + j + 1) * k];
                for b in 0..blocks {
                    let steps = &row[b * BK..((b + 1) * BK).min(k)];
                    let Some((d, m)) = grid(steps, &mut levels[..steps.len()]) else {
                        return false;
                    };
                    let qb = &mut qp[b * block_bytes..(b + 1) * block_bytes];
                    for (s, &l) in levels[..steps.len()].iter().enumerate() {
                        store(qb, s, j, l);
                    }
                    dmp[b * scales + j] = d;
                    dmp[b * scales + NR + j] = m;
                }
            }
            true
        });
    exact.then_some((q, dm))
}

/// Largest error of a weight on its grid, relative to its block's largest magnitude, for a
/// block to count as held exactly (a few f32 roundings; half a level would be far more).
const GRID_EXACT: f32 = 4e-6;

/// Scale `d` and minimum `m` of a grid `d · l + m` (`l` in `0..=top`) that holds every value of
/// one block to f32 rounding, the levels written to `levels`: first the grid from the block's
/// minimum to its maximum (which holds blocks whose extremes are both levels, as Q4_1's are),
/// else the grid `other(lo, hi)` gives (the format's symmetric grid). `None` when neither holds
/// the block; a block of one repeated value (or none) is level 0 at `m` = that value.
fn fit_block(
    vals: &[f32],
    levels: &mut [u8],
    top: f32,
    other: impl Fn(f32, f32) -> (f32, f32),
) -> Option<(f32, f32)> {
    let (lo, hi) = vals
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if vals.is_empty() || hi <= lo {
        levels.fill(0);
        return Some((0.0, if lo.is_finite() { lo } else { 0.0 }));
    }
    let limit = GRID_EXACT * lo.abs().max(hi.abs());
    let holds = |(d, m): (f32, f32), levels: &mut [u8]| -> bool {
        let mut worst = 0.0f32;
        for (l, &v) in levels.iter_mut().zip(vals) {
            *l = round_nearest((v - m) / d).clamp(0.0, top) as u8;
            worst = worst.max((d * f32::from(*l) + m - v).abs());
        }
        worst <= limit
    };
    let span = ((hi - lo) / top, lo);
    if holds(span, levels) {
        return Some(span);
    }
    let other = other(lo, hi);
    holds(other, levels).then_some(other)
}

/// `v` rounded to the nearest integer, ties to even, for |v| < 2²²: adding and subtracting
/// 1.5 · 2²³ rounds in the FPU's default mode, a plain add the compiler vectorises
/// (`f32::round` is a libm call per value on baseline x86-64, which made rounding cost more
/// than the arithmetic around it, at load and per decode step).
#[inline(always)]
fn round_nearest(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

/// Start of part `i` when `total` items are cut into `parts` parts whose sizes differ by at
/// most one (larger parts first).
fn part_start(i: usize, total: usize, parts: usize) -> usize {
    i * (total / parts) + i.min(total % parts)
}

/// How a [`PackedLinear`] holds its values.
#[derive(Clone)]
enum Storage {
    /// f32 panels, block of `k` after block (see `pack::pack_weights`).
    F32(AlignedBuf),
    /// 8-bit panels (see `q8::Q8Panels`).
    Q8(q8::Q8Panels),
    /// 4-bit panels (see `q4::Q4Panels`).
    Q4(q4::Q4Panels),
}

/// A weight matrix `W` (`[n, k]`: `n` output features, `k` input features, row-major)
/// repacked for the kernel, so that [`PackedLinear::forward`] computes `x · Wᵀ`.
#[derive(Clone)]
pub struct PackedLinear {
    n: usize,
    k: usize,
    /// Blocks of `k` (see `pack::pack_weights`).
    k_blocks: usize,
    storage: Storage,
    isa: Isa,
}

impl fmt::Debug for PackedLinear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackedLinear")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("isa", &self.isa)
            .field("format", &self.format())
            .finish_non_exhaustive()
    }
}

/// One unit of parallel work: a block of row tiles times a block of panels, with the output
/// segments it owns (`rows[i]` = row `row0 + i`, the columns of its panels only).
struct Task<'a> {
    row0: usize,
    tiles: Range<usize>,
    panels: Range<usize>,
    rows: Vec<&'a mut [f32]>,
}

impl PackedLinear {
    /// Packs `w` (`[n, k]`, row-major; `w.len() >= n * k`) for the micro-kernel of `path`: a
    /// copy of `n` rounded up to 32 × `k` values, made on the current rayon pool (every path
    /// reads the same layout). `None` when the CPU cannot run `path`.
    pub fn pack(w: &[f32], n: usize, k: usize, path: KernelPath) -> Option<Self> {
        Isa::for_path(path).map(|isa| Self::pack_with(w, n, k, isa))
    }

    /// Packs `w` like [`PackedLinear::pack`] for [`KernelPath::Portable`], which every CPU runs.
    pub fn pack_portable(w: &[f32], n: usize, k: usize) -> Self {
        Self::pack_with(w, n, k, Isa::Portable)
    }

    /// Packs `w` (`[n, k]`, row-major, finite values) in `format` for the micro-kernels of
    /// `path`; `None` when the CPU cannot run `path`. 8-bit (4-bit) panels are made only when
    /// they hold every value to f32 rounding (see [`PackedFormat::Q8`], [`PackedFormat::Q4`]);
    /// otherwise the weight is packed in the next wider format that does (4-bit → 8-bit → f32;
    /// [`PackedLinear::format`] says which).
    pub fn pack_as(
        w: &[f32],
        n: usize,
        k: usize,
        path: KernelPath,
        format: PackedFormat,
    ) -> Option<Self> {
        let isa = Isa::for_path(path)?;
        let q4 = match format {
            PackedFormat::Q4 => q4::Q4Panels::quantize(w, n, k).map(Storage::Q4),
            PackedFormat::Q8 | PackedFormat::F32 => None,
        };
        let quantized = match (q4, format) {
            (Some(q4), _) => Some(q4),
            (None, PackedFormat::Q8 | PackedFormat::Q4) => {
                q8::Q8Panels::quantize(w, n, k).map(Storage::Q8)
            }
            (None, PackedFormat::F32) => None,
        };
        Some(match quantized {
            Some(storage) => Self {
                n,
                k,
                k_blocks: k.div_ceil(KC).max(1),
                storage,
                isa,
            },
            None => Self::pack_with(w, n, k, isa),
        })
    }

    fn pack_with(w: &[f32], n: usize, k: usize, isa: Isa) -> Self {
        let len = n.checked_mul(k).expect("n * k overflows");
        assert!(
            w.len() >= len,
            "weight has {} values, need {n} x {k}",
            w.len()
        );
        let k_blocks = k.div_ceil(KC).max(1);
        let packed = pack::pack_weights(
            &w[..len],
            n,
            k,
            |kb| part_start(kb, k, k_blocks)..part_start(kb + 1, k, k_blocks),
            k_blocks,
        );
        Self {
            n,
            k,
            k_blocks,
            storage: Storage::F32(packed),
            isa,
        }
    }

    /// How the values are held.
    pub fn format(&self) -> PackedFormat {
        match self.storage {
            Storage::F32(_) => PackedFormat::F32,
            Storage::Q8(_) => PackedFormat::Q8,
            Storage::Q4(_) => PackedFormat::Q4,
        }
    }

    /// Row `j < n` of `W` (`k` values, as packed: f32 rounding for 8-bit panels) into the
    /// first `k` values of `out`; used to read a tied embedding table from its output copy.
    ///
    /// # Panics
    /// When `j >= n` or `out.len() < k`.
    pub fn row(&self, j: usize, out: &mut [f32]) {
        assert!(j < self.n, "row {j} of {}", self.n);
        assert!(
            out.len() >= self.k,
            "out has {} values, need {}",
            out.len(),
            self.k
        );
        match &self.storage {
            Storage::Q8(q) => q.row(j, out),
            Storage::Q4(q) => q.row(j, out),
            Storage::F32(_) => {
                let (p, col) = (j / NR, j % NR);
                for kb in 0..self.k_blocks {
                    let ks = self.k_range(kb);
                    let panel = self.block(kb, p..p + 1);
                    for (o, step) in out[ks].iter_mut().zip(panel.chunks_exact(NR)) {
                        *o = step[col];
                    }
                }
            }
        }
    }

    /// Bytes of packed values held.
    pub fn bytes(&self) -> usize {
        match &self.storage {
            Storage::F32(buf) => std::mem::size_of_val(buf.as_slice()),
            Storage::Q8(q) => q.bytes(),
            Storage::Q4(q) => q.bytes(),
        }
    }

    /// Output features (rows of `W`).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features (columns of `W`).
    pub fn k(&self) -> usize {
        self.k
    }

    /// The micro-kernel this weight was packed for.
    pub fn path(&self) -> KernelPath {
        self.isa.path()
    }

    /// `out[i, j] = Σ_p x[i, p] · W[j, p]` for `i < m`, `j < n`: `x` is `[m, k]` and `out`
    /// `[m, n]`, both row-major; the first `m * n` values of `out` are overwritten. Runs on
    /// the current rayon pool when the product is large enough to share.
    ///
    /// # Panics
    /// When `x.len() < m * k` or `out.len() < m * n`.
    pub fn forward(&self, x: &[f32], m: usize, out: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        let x_len = m.checked_mul(k).expect("m * k overflows");
        let out_len = m.checked_mul(n).expect("m * n overflows");
        assert!(x.len() >= x_len, "x has {} values, need {m} x {k}", x.len());
        assert!(
            out.len() >= out_len,
            "out has {} values, need {m} x {n}",
            out.len()
        );
        let (x, out) = (&x[..x_len], &mut out[..out_len]);
        if out_len == 0 {
            return;
        }
        match &self.storage {
            _ if k == 0 => out.fill(0.0),
            Storage::Q8(q) if m <= Q8_ROWS_MAX => q.rows(self.isa, x, m, out),
            Storage::Q4(q) if m <= Q4_ROWS_MAX => q.rows(self.isa, x, m, out),
            Storage::F32(_) if m == 1 => self.gemv(x, out),
            _ => self.gemm(x, m, out),
        }
    }

    /// Steps of `k` in block `kb`.
    fn k_range(&self, kb: usize) -> Range<usize> {
        part_start(kb, self.k, self.k_blocks)..part_start(kb + 1, self.k, self.k_blocks)
    }

    /// Panels `panels` of block `kb` of f32 panels: one slice, `kc × NR` values per panel
    /// (empty for 8- and 4-bit panels, which [`PackedLinear::block_in`] dequantizes).
    fn block(&self, kb: usize, panels: Range<usize>) -> &[f32] {
        let Storage::F32(packed) = &self.storage else {
            return &[];
        };
        let ks = self.k_range(kb);
        let base = ks.start * self.n.div_ceil(NR) * NR;
        let per = ks.len() * NR;
        &packed.as_slice()[base + panels.start * per..base + panels.end * per]
    }

    /// [`PackedLinear::block`] in any format: 8- and 4-bit panels are dequantized into
    /// `scratch`.
    fn block_in<'a>(
        &'a self,
        kb: usize,
        panels: Range<usize>,
        scratch: &'a mut Vec<f32>,
    ) -> &'a [f32] {
        match &self.storage {
            Storage::F32(_) => self.block(kb, panels),
            Storage::Q8(_) | Storage::Q4(_) => {
                let ks = self.k_range(kb);
                let len = panels.len() * ks.len() * NR;
                if scratch.len() < len {
                    scratch.resize(len, 0.0);
                }
                let dst = &mut scratch[..len];
                match &self.storage {
                    Storage::Q8(q) => q.dequantize(self.isa, ks, panels, dst),
                    Storage::Q4(q) => q.dequantize(self.isa, ks, panels, dst),
                    Storage::F32(_) => unreachable!("f32 panels are read in place"),
                }
                &scratch[..len]
            }
        }
    }

    /// One row: stream every panel once, block of `k` after block.
    fn gemv(&self, x: &[f32], out: &mut [f32]) {
        let panels = self.n.div_ceil(NR);
        let run = |first: usize, seg: &mut [f32]| {
            for kb in 0..self.k_blocks {
                let ks = self.k_range(kb);
                let (xs, kc) = (&x[ks.clone()], ks.len());
                let block = self.block(kb, first..first + seg.len().div_ceil(NR));
                for (o, b) in seg.chunks_mut(NR).zip(block.chunks_exact(kc * NR)) {
                    self.isa.gemv_panel(xs, b, o, kb > 0);
                }
            }
        };
        let threads = rayon::current_num_threads();
        if threads <= 1 || self.n * self.k < PAR_MIN_MACS {
            return run(0, out);
        }
        let tasks = panels.div_ceil(GEMV_PANELS).next_multiple_of(threads);
        let per = panels.div_ceil(tasks.min(panels));
        out.par_chunks_mut(per * NR)
            .enumerate()
            .for_each(|(i, seg)| run(i * per, seg));
    }

    /// Several rows: a grid of tasks (row-tile blocks × panel blocks) over the rayon pool.
    fn gemm(&self, x: &[f32], m: usize, out: &mut [f32]) {
        let n = self.n;
        let tiles = m.div_ceil(MR_MAX);
        let panels = n.div_ceil(NR);
        let threads = rayon::current_num_threads();
        let sequential = threads <= 1 || m * n * self.k < PAR_MIN_MACS;
        let (m_parts, n_parts) = if sequential {
            (tiles.div_ceil(MC_TILES), 1)
        } else {
            let (weight_cost, most_tiles) = match self.storage {
                Storage::F32(_) => (F32_WEIGHT_COST, MC_TILES),
                Storage::Q8(_) | Storage::Q4(_) => (Q8_WEIGHT_COST, MC_TILES_DEQUANT),
            };
            plan_grid(tiles, panels, self.k, threads, weight_cost, most_tiles)
        };

        // The tasks, then each output row cut into their column segments.
        let tile_start = |t: usize| part_start(t, m, tiles);
        let col_start = |j: usize| (part_start(j, panels, n_parts) * NR).min(n);
        let mut tasks: Vec<Task<'_>> = Vec::with_capacity(m_parts * n_parts);
        for i in 0..m_parts {
            let (t0, t1) = (
                part_start(i, tiles, m_parts),
                part_start(i + 1, tiles, m_parts),
            );
            for j in 0..n_parts {
                tasks.push(Task {
                    row0: tile_start(t0),
                    tiles: t0..t1,
                    panels: part_start(j, panels, n_parts)..part_start(j + 1, panels, n_parts),
                    rows: Vec::with_capacity(tile_start(t1) - tile_start(t0)),
                });
            }
        }
        let mut block = 0;
        for (r, line) in out.chunks_mut(n).enumerate() {
            while r >= tile_start(tasks[block * n_parts].tiles.end) {
                block += 1;
            }
            let mut rest = line;
            for j in 0..n_parts {
                let (seg, tail) = rest.split_at_mut(col_start(j + 1) - col_start(j));
                tasks[block * n_parts + j].rows.push(seg);
                rest = tail;
            }
        }

        let run = |task: Task<'_>| {
            PACK_BUF.with(|buf| {
                DEQ_BUF.with(|deq| match (buf.try_borrow_mut(), deq.try_borrow_mut()) {
                    (Ok(mut buf), Ok(mut deq)) => self.run_task(x, m, task, &mut buf, &mut deq),
                    _ => self.run_task(x, m, task, &mut Vec::new(), &mut Vec::new()),
                })
            })
        };
        if sequential {
            tasks.into_iter().for_each(run);
        } else {
            tasks.into_par_iter().for_each(run);
        }
    }

    /// Computes one task: for each block of `k`, pack the task's rows of `x`; then for each
    /// block of panels (in L2), run every row tile (in L1) over all of the block's panels,
    /// prefetching the next block meanwhile (one piece per tile).
    fn run_task(
        &self,
        x: &[f32],
        m: usize,
        mut task: Task<'_>,
        buf: &mut Vec<f32>,
        deq: &mut Vec<f32>,
    ) {
        let (n, k) = (self.n, self.k);
        let tiles = m.div_ceil(MR_MAX);
        let tile_start = |t: usize| part_start(t, m, tiles);
        let need = packed_rows_len(task.rows.len(), k.div_ceil(self.k_blocks));
        if buf.len() < need {
            buf.resize(need, 0.0);
        }
        // Blocks of weights in the order they are used: (block of k, panels).
        let mut blocks: Vec<(usize, Range<usize>)> = Vec::new();
        for kb in 0..self.k_blocks {
            let most = (NC_BYTES / (self.k_range(kb).len() * NR * 4)).max(1);
            let count = task.panels.len().div_ceil(most);
            for i in 0..count {
                let (p0, p1) = (
                    part_start(i, task.panels.len(), count),
                    part_start(i + 1, task.panels.len(), count),
                );
                blocks.push((kb, task.panels.start + p0..task.panels.start + p1));
            }
        }
        let col_base = task.panels.start * NR;
        let n_tiles = task.tiles.len();
        for (i, (kb, ps)) in blocks.iter().enumerate() {
            let kc = self.k_range(*kb).len();
            // Tile t's packed block starts where the previous tiles' blocks end.
            let offset = |t: usize| packed_rows_len(tile_start(t) - task.row0, kc);
            if i == 0 || blocks[i - 1].0 != *kb {
                let k0 = self.k_range(*kb).start;
                for t in task.tiles.clone() {
                    let rows = &x[tile_start(t) * k..tile_start(t + 1) * k];
                    pack::pack_rows(rows, k, k0, kc, &mut buf[offset(t)..offset(t + 1)]);
                }
            }
            let b = self.block_in(*kb, ps.clone(), deq);
            let next = blocks
                .get(i + 1)
                .map_or(&[][..], |(kb2, ps2)| self.block(*kb2, ps2.clone()));
            let piece = next.len().div_ceil(n_tiles);
            let (c0, c1) = (ps.start * NR - col_base, (ps.end * NR).min(n) - col_base);
            for (j, t) in task.tiles.clone().enumerate() {
                let rows = tile_start(t) - task.row0..tile_start(t + 1) - task.row0;
                let tile = Tile {
                    a: &buf[offset(t)..offset(t + 1)],
                    b,
                    kc,
                    col: c0,
                    cols: c1 - c0,
                    accumulate: *kb > 0,
                    prefetch: &next[(j * piece).min(next.len())..((j + 1) * piece).min(next.len())],
                };
                self.isa.tile(&tile, &mut task.rows[rows]);
            }
        }
    }
}

/// Chooses how many row blocks and panel blocks to cut a product of `tiles` row tiles ×
/// `panels` panels (depth `k`) into for `threads` threads, at most `most_tiles` row tiles a
/// task: the grid with the smallest estimated finishing time, counting whole waves of the
/// largest task (so a grid that leaves a thread idle costs what it should) plus a fixed cost
/// per task and the repeated work each extra block brings (re-packing rows of `x` per panel
/// block, re-reading weights per row block, `weight_cost` multiply-adds a weight: dequantizing
/// 8-bit panels costs more). Near-ties go to the grid with more tasks, which a core busy with
/// other work holds up less.
fn plan_grid(
    tiles: usize,
    panels: usize,
    k: usize,
    threads: usize,
    weight_cost: usize,
    most_tiles: usize,
) -> (usize, usize) {
    let most = 8 * threads;
    // (estimated cost, tasks, row parts, panel parts)
    let mut best = (usize::MAX, 0, 1, 1);
    for mp in tiles.div_ceil(most_tiles)..=tiles.min(most) {
        for np in 1..=panels.min(most / mp) {
            let tasks = mp * np;
            let (tile_most, panel_most) = (tiles.div_ceil(mp), panels.div_ceil(np));
            let rows = tile_most * MR_MAX;
            let task_macs = rows * panel_most * NR * k
                + TASK_COST_MACS
                + rows * k * 8 // packing its rows of x
                + panel_most * NR * k * weight_cost; // streaming its weights in
            let cost = tasks.div_ceil(threads) * task_macs;
            // Clearly better (by 2%), or about as good with more tasks.
            let better = cost * 50 < best.0.saturating_mul(49);
            let as_good_finer = cost * 50 <= best.0.saturating_mul(51) && tasks > best.1;
            if better || as_good_finer {
                best = (best.0.min(cost), tasks, mp, np);
            }
        }
    }
    (best.2, best.3)
}

#[cfg(test)]
pub(crate) mod tests;
