//! Which micro-kernel multiplies the packed weights: detected once per process, or forced with
//! the `DEBIAS_GUARD_KERNEL` environment variable (see [`KernelPath::from_env`]).

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// Environment variable that forces a kernel path: `auto` (or unset/empty), `avx512`, `avx2`
/// or `portable`.
pub const KERNEL_ENV: &str = "DEBIAS_GUARD_KERNEL";

/// A packed f32 kernel implementation. Every path reads the same packed layout and sums each
/// output in the same order; AVX-512F and AVX2 give bit-identical results, the portable path
/// (separate multiply and add instead of fused) differs by rounding only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelPath {
    /// AVX-512F register tiles (x86-64).
    Avx512,
    /// AVX2 + FMA register tiles (x86-64).
    Avx2,
    /// Plain Rust the compiler vectorises for the build's baseline target (any CPU).
    Portable,
}

impl KernelPath {
    /// Every path, fastest first.
    pub const ALL: [KernelPath; 3] = [KernelPath::Avx512, KernelPath::Avx2, KernelPath::Portable];

    /// The path's name as `DEBIAS_GUARD_KERNEL` spells it (`avx512`, `avx2`, `portable`).
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Avx512 => "avx512",
            KernelPath::Avx2 => "avx2",
            KernelPath::Portable => "portable",
        }
    }

    /// The CPU features the path needs, for messages (`"AVX-512F"`, `"AVX2 + FMA"`, `"none"`).
    pub fn requires(self) -> &'static str {
        match self {
            KernelPath::Avx512 => "AVX-512F",
            KernelPath::Avx2 => "AVX2 + FMA",
            KernelPath::Portable => "none",
        }
    }

    /// `true` when the running CPU (and OS) can run this path.
    pub fn is_supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx512 => super::avx512::Avx512::detect().is_some(),
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => super::avx2::Avx2::detect().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            KernelPath::Avx512 | KernelPath::Avx2 => false,
            KernelPath::Portable => true,
        }
    }

    /// This path when the CPU runs it, else [`KernelPath::Portable`]: what code compiled once
    /// per path (attention, softmax, MLP activation) runs for a requested path.
    pub fn or_portable(self) -> KernelPath {
        if self.is_supported() {
            self
        } else {
            KernelPath::Portable
        }
    }

    /// The paths this CPU supports, fastest first (always ends with `Portable`).
    pub fn supported() -> Vec<KernelPath> {
        Self::ALL.into_iter().filter(|p| p.is_supported()).collect()
    }

    /// What `auto` picks: the fastest supported SIMD path, or `None` (candle's matmul) on CPUs
    /// with neither AVX-512F nor AVX2 + FMA, where candle's own SIMD gemm is faster than the
    /// portable kernel (measured on x86-64: docs/BENCHMARKS.md). `portable` is then only run
    /// when forced.
    pub fn auto() -> Option<KernelPath> {
        [KernelPath::Avx512, KernelPath::Avx2]
            .into_iter()
            .find(|p| p.is_supported())
    }

    /// Resolves a request (`auto`, empty, or a path name; ASCII case and surrounding spaces
    /// ignored) against this CPU: `Ok(None)` means candle's matmul (see [`KernelPath::auto`]).
    /// An unknown name, or a path the CPU cannot run, is an error whose text names the
    /// supported paths; nothing falls back silently.
    pub fn resolve(request: &str) -> Result<Option<KernelPath>, KernelPathError> {
        let request = request.trim();
        if request.is_empty() || request.eq_ignore_ascii_case("auto") {
            return Ok(Self::auto());
        }
        let path: KernelPath = request.parse()?;
        path.check().map(Some)
    }

    /// `Ok(self)` when the CPU supports the path, else an error naming the supported ones.
    pub fn check(self) -> Result<KernelPath, KernelPathError> {
        if self.is_supported() {
            Ok(self)
        } else {
            Err(KernelPathError(format!(
                "kernel path `{}` needs {}, which this CPU lacks (supported: {})",
                self.name(),
                self.requires(),
                supported_names()
            )))
        }
    }

    /// The process-wide path: `DEBIAS_GUARD_KERNEL` resolved with [`KernelPath::resolve`],
    /// read once on first use (later changes to the variable are not seen). Unset means `auto`.
    pub fn from_env() -> Result<Option<KernelPath>, KernelPathError> {
        static CHOSEN: OnceLock<Result<Option<KernelPath>, KernelPathError>> = OnceLock::new();
        CHOSEN
            .get_or_init(|| match std::env::var(KERNEL_ENV) {
                Ok(v) => KernelPath::resolve(&v)
                    .map_err(|e| KernelPathError(format!("{KERNEL_ENV}={v}: {}", e.0))),
                Err(std::env::VarError::NotPresent) => Ok(Self::auto()),
                Err(std::env::VarError::NotUnicode(_)) => Err(KernelPathError(format!(
                    "{KERNEL_ENV} is not valid UTF-8 (use auto, avx512, avx2 or portable)"
                ))),
            })
            .clone()
    }
}

fn supported_names() -> String {
    KernelPath::supported()
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for KernelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KernelPath {
    type Err = KernelPathError;

    /// Parses a path name (not `auto`; see [`KernelPath::resolve`]), ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                KernelPathError(format!(
                    "unknown kernel path `{s}` (use auto, avx512, avx2 or portable)"
                ))
            })
    }
}

/// A kernel path that is unknown or that the CPU cannot run; the text says which are supported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelPathError(String);

impl fmt::Display for KernelPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KernelPathError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in KernelPath::ALL {
            assert_eq!(p.name().parse::<KernelPath>(), Ok(p));
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!(" AVX2 ".parse::<KernelPath>(), Ok(KernelPath::Avx2));
        assert!("sse".parse::<KernelPath>().is_err());
        assert!("auto".parse::<KernelPath>().is_err());
    }

    #[test]
    fn resolve_requests() {
        assert_eq!(KernelPath::resolve(""), Ok(KernelPath::auto()));
        assert_eq!(KernelPath::resolve("Auto"), Ok(KernelPath::auto()));
        assert_eq!(
            KernelPath::resolve("portable"),
            Ok(Some(KernelPath::Portable))
        );
        let err = KernelPath::resolve("neon").unwrap_err().to_string();
        assert!(err.contains("unknown kernel path `neon`"), "{err}");
        for p in KernelPath::ALL {
            match KernelPath::resolve(p.name()) {
                Ok(got) => assert!(got == Some(p) && p.is_supported()),
                Err(e) => {
                    assert!(!p.is_supported());
                    assert!(e.to_string().contains("which this CPU lacks"), "{e}");
                }
            }
        }
        let supported = KernelPath::supported();
        assert_eq!(supported.last(), Some(&KernelPath::Portable));
        assert_eq!(
            KernelPath::auto(),
            supported
                .first()
                .copied()
                .filter(|&p| p != KernelPath::Portable)
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn detection_matches_cpuid() {
        assert_eq!(
            KernelPath::Avx512.is_supported(),
            is_x86_feature_detected!("avx512f")
        );
        assert_eq!(
            KernelPath::Avx2.is_supported(),
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        );
    }
}
