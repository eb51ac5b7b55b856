//! Cluster bootstrap intervals: pure functions of the data, a seed and a resample count.
//!
//! Records of one transcript are not independent (they share the text every probe is added
//! to), so the unit drawn with replacement is the transcript: each resample draws as many
//! transcripts as there are, and every record of a drawn transcript goes in, as often as it was
//! drawn. A statistic is any function of a multiset of record indices; evaluating two
//! conditions' statistics on the same resamples gives a paired interval (reductions against
//! the base), and averaging several seeds' statistics within each resample gives the pooled
//! interval of a mean over seeds. Intervals are percentile intervals (type 7, as numpy).

use serde::{Deserialize, Serialize};

/// Default number of resamples.
pub const DEFAULT_RESAMPLES: usize = 2_000;
/// Default seed of the resampling generator.
pub const DEFAULT_SEED: u64 = 20_240_611;
/// Coverage of the reported intervals.
pub const CONFIDENCE: f64 = 0.95;

/// A point estimate with its 95 % bootstrap percentile interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The statistic on the data as measured; `null` when undefined (no data, constant scores).
    pub point: Option<f64>,
    /// `[low, high]` percentile interval; `null` when the point or too many resamples are undefined.
    pub ci95: Option<[f64; 2]>,
}

impl Estimate {
    /// A point estimate without an interval.
    pub fn point_only(point: Option<f64>) -> Self {
        Self { point, ci95: None }
    }
}

/// Settings of the bootstrap; stored in the report so its intervals can be reproduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapOptions {
    /// Number of resamples (0 = no intervals).
    pub resamples: usize,
    /// Seed of the resampling generator.
    pub seed: u64,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        Self {
            resamples: DEFAULT_RESAMPLES,
            seed: DEFAULT_SEED,
        }
    }
}

/// The resamples of one set of records, drawn once by cluster and shared by every statistic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterResamples {
    /// Number of records.
    records: usize,
    /// Number of clusters (transcripts).
    clusters: usize,
    /// Record indices of each resample (a multiset: drawn clusters' records, repeated as drawn).
    draws: Vec<Vec<usize>>,
}

impl ClusterResamples {
    /// Groups records by `keys` (one key per record, equal keys = one cluster) and draws
    /// `options.resamples` resamples of the clusters with replacement. The draws depend only on
    /// the grouping (clusters numbered in order of first appearance), the count and the seed.
    /// With fewer than two clusters nothing can vary: no resamples are drawn (no intervals).
    pub fn new<K: PartialEq>(keys: &[K], options: &BootstrapOptions) -> Self {
        let clusters = clusters_of(keys);
        let mut rng = SplitMix64::new(options.seed);
        let draws = if clusters.len() < 2 {
            Vec::new()
        } else {
            (0..options.resamples)
                .map(|_| {
                    let mut idx = Vec::with_capacity(keys.len());
                    for _ in 0..clusters.len() {
                        idx.extend_from_slice(&clusters[rng.below(clusters.len())]);
                    }
                    idx
                })
                .collect()
        };
        Self {
            records: keys.len(),
            clusters: clusters.len(),
            draws,
        }
    }

    /// Number of records.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Number of clusters.
    pub fn clusters(&self) -> usize {
        self.clusters
    }

    /// The record indices of every resample.
    pub fn draws(&self) -> &[Vec<usize>] {
        &self.draws
    }

    /// `stat` on every record (the point) and on every resample (the 95 % percentile
    /// interval). The interval is left out when the point is undefined or when the statistic is
    /// undefined on more than 5 % of the resamples (e.g. a correlation of constant scores).
    pub fn estimate(&self, stat: impl Fn(&[usize]) -> Option<f64>) -> Estimate {
        let all: Vec<usize> = (0..self.records).collect();
        let point = stat(&all).filter(|v| v.is_finite());
        if point.is_none() || self.draws.is_empty() {
            return Estimate::point_only(point);
        }
        let mut values: Vec<f64> = self
            .draws
            .iter()
            .filter_map(|idx| stat(idx))
            .filter(|v| v.is_finite())
            .collect();
        if (values.len() as f64) < 0.95 * self.draws.len() as f64 {
            return Estimate::point_only(point);
        }
        values.sort_by(f64::total_cmp);
        let tail = (1.0 - CONFIDENCE) / 2.0;
        Estimate {
            point,
            ci95: Some([percentile(&values, tail), percentile(&values, 1.0 - tail)]),
        }
    }
}

/// Record indices grouped by equal key, clusters in order of first appearance.
pub fn clusters_of<K: PartialEq>(keys: &[K]) -> Vec<Vec<usize>> {
    let mut firsts: Vec<&K> = Vec::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        match firsts.iter().position(|f| *f == k) {
            Some(c) => out[c].push(i),
            None => {
                firsts.push(k);
                out.push(vec![i]);
            }
        }
    }
    out
}

/// Quantile `q` (0–1) of ascending `sorted` values by linear interpolation between closest
/// ranks (type 7); NaN for an empty slice.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let h = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

/// Mean of `values` at the (possibly repeated) indices `idx`; `None` when `idx` is empty or a
/// value is not finite.
pub fn mean_at(values: &[f64], idx: &[usize]) -> Option<f64> {
    if idx.is_empty() {
        return None;
    }
    let mut sum = 0.0;
    for &i in idx {
        sum += values.get(i).copied().filter(|v| v.is_finite())?;
    }
    Some(sum / idx.len() as f64)
}

/// `values` at the indices `idx`, in that order.
pub fn gather(values: &[f64], idx: &[usize]) -> Vec<f64> {
    idx.iter().filter_map(|&i| values.get(i).copied()).collect()
}

/// Reduction of `condition` against `base` in percent, `(base − condition) / base × 100`;
/// `None` when either is missing or the base is not positive.
pub fn reduction_percent(base: Option<f64>, condition: Option<f64>) -> Option<f64> {
    let (b, c) = (base?, condition?);
    (b > 0.0 && c.is_finite()).then(|| (b - c) / b * 100.0)
}

/// Mean of per-member values; `None` if any member is undefined (or there are none).
pub fn mean_of_members(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let mut n = 0usize;
    let mut sum = 0.0;
    for v in values {
        sum += v?;
        n += 1;
    }
    (n > 0).then(|| sum / n as f64)
}

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny generator whose stream is fixed by its seed
/// alone, so intervals do not change when a dependency does.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform index in `0..n` (`n` > 0) by multiply-shift (bias below 2⁻⁶⁴·n).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_eq!(percentile(&v, 1.0), 5.0);
        assert!((percentile(&v, 0.1) - 1.4).abs() < 1e-12);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn splitmix_matches_its_reference_stream() {
        // First outputs for seed 1234567 from the reference implementation.
        let mut r = SplitMix64::new(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn clusters_keep_first_appearance_order() {
        let keys = ["b", "a", "b", "c", "a"];
        assert_eq!(clusters_of(&keys), vec![vec![0, 2], vec![1, 4], vec![3]]);
    }

    #[test]
    fn one_cluster_gives_no_interval() {
        let rs = ClusterResamples::new(&["a", "a", "a"], &BootstrapOptions::default());
        assert!(rs.draws().is_empty());
        let e = rs.estimate(|idx| mean_at(&[1.0, 2.0, 3.0], idx));
        assert_eq!(e, Estimate::point_only(Some(2.0)));
    }

    #[test]
    fn reductions_and_member_means() {
        assert_eq!(reduction_percent(Some(0.5), Some(0.1)), Some(80.0));
        assert_eq!(reduction_percent(Some(0.0), Some(0.1)), None);
        assert_eq!(mean_of_members([Some(1.0), Some(3.0)]), Some(2.0));
        assert_eq!(mean_of_members([Some(1.0), None]), None);
        assert_eq!(mean_at(&[1.0, 2.0, 4.0], &[2, 2, 0]), Some(3.0));
    }
}
