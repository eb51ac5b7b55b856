//! Helpers shared by the benchmarks: settings from the environment, the context set the engine
//! benches score, the median and the machine's load.
#![allow(dead_code)]

use debias_guard::guard::probes::{PoleSide, ProbeKind};
use debias_guard::{ProbeCatalog, SplitSelection};

/// The default model every real-model bench runs on.
pub const MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The model file the engine benches open: `$BENCH_MODEL` (e.g. the same model in another GGUF
/// type, for the comparison with llama.cpp per file type), else [`MODEL`].
pub fn model_path() -> String {
    std::env::var("BENCH_MODEL").unwrap_or_else(|_| MODEL.to_string())
}
/// The transcript every real-model bench scores.
pub const TRANSCRIPT: &str = "assets/transcripts/fractions_discussion.txt";

/// `key` from the environment as a number, or `default`.
pub fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The first wording of each category's high pole, then the first control: 8 contexts, as
/// `(probe id, text)`.
pub fn contexts() -> Vec<(String, String)> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    let mut control = None;
    for probe in ProbeCatalog::builtin().probes(SplitSelection::All) {
        match &probe.kind {
            ProbeKind::Category {
                category,
                pole: PoleSide::High,
            } if !seen.contains(category) => {
                seen.push(category.clone());
                out.push((probe.id, probe.text));
            }
            ProbeKind::Control if control.is_none() => control = Some((probe.id, probe.text)),
            _ => {}
        }
    }
    out.extend(control);
    out.truncate(8);
    out
}

/// Median of `xs` (the mean of the middle two for an even count).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    debias_guard::stats::bootstrap::percentile(&xs, 0.5)
}

/// `/proc/loadavg`, or `?` where there is none.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(|_| "?".into(), |s| s.trim().to_string())
}

/// Deterministic values in [-1, 1) (xorshift), the same stream for the same seed.
pub fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}
