//! How packed weights hold their values: f32, 8-bit blocks (see the `q8` module) or 4-bit
//! blocks (the `q4` module); chosen per engine (`EngineOptions::packed_format`) or for the
//! process with `DEBIAS_GUARD_PACKED`.

use std::fmt;
use std::str::FromStr;

/// Environment variable that chooses the packed format: `q8` (or unset/empty/`auto`), `q4` or
/// `f32`.
pub const PACKED_ENV: &str = "DEBIAS_GUARD_PACKED";

/// The value format of packed weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PackedFormat {
    /// 32-bit floats: exactly the dequantized values (4 bytes a weight).
    F32,
    /// One byte a weight on a 255-level grid per 32 values of a row (f32 scale and minimum),
    /// 1.25 bytes a weight, for every matrix whose values the grid holds to f32 rounding:
    /// weights dequantized from Q4_1 or Q8_0 blocks (the default model's file) and most Q4_0
    /// ones. Other matrices (F16, BF16, f32, merged adapters) stay f32, so this format never
    /// changes a weight. Few-row products (decode) read the bytes directly; larger ones
    /// dequantize blocks on the fly into the f32 kernel.
    #[default]
    Q8,
    /// Half a byte a weight on a 16-level grid per 32 values of a row (f32 scale and minimum),
    /// 0.75 bytes a weight, for every matrix whose values such a grid holds to f32 rounding
    /// (weights dequantized from Q4_1 or Q4_0 blocks); other matrices fall back to [`Q8`] or
    /// f32, so the weights are never changed. **Not exact:** products of up to
    /// `Q4_ROWS_MAX` (16) rows — decode steps — round the activations to 8 bits per 32 values
    /// and sum integer products, as llama.cpp does for its 4-bit types: 1.3–1.7× the
    /// decoding speed of [`Q8`], for a rounding noise in the logits of what is generated
    /// (measured in docs/BENCHMARKS.md). Larger products (prefill, scoring passes) are exact,
    /// as in [`Q8`].
    ///
    /// [`Q8`]: PackedFormat::Q8
    Q4,
}

impl PackedFormat {
    /// Every format, widest first.
    pub const ALL: [PackedFormat; 3] = [PackedFormat::F32, PackedFormat::Q8, PackedFormat::Q4];

    /// The name `DEBIAS_GUARD_PACKED` and the CLI use (`f32`, `q8`, `q4`).
    pub fn name(self) -> &'static str {
        match self {
            PackedFormat::F32 => "f32",
            PackedFormat::Q8 => "q8",
            PackedFormat::Q4 => "q4",
        }
    }

    /// The format `DEBIAS_GUARD_PACKED` asks for (unset, empty or `auto`: the default), or an
    /// error naming the accepted values.
    pub fn from_env() -> Result<PackedFormat, String> {
        match std::env::var(PACKED_ENV) {
            Ok(v) if v.trim().is_empty() || v.trim().eq_ignore_ascii_case("auto") => {
                Ok(Self::default())
            }
            Ok(v) => v.parse().map_err(|e| format!("{PACKED_ENV}={v}: {e}")),
            Err(std::env::VarError::NotPresent) => Ok(Self::default()),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                "{PACKED_ENV} is not valid UTF-8 (use f32, q8 or q4)"
            )),
        }
    }
}

impl fmt::Display for PackedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PackedFormat {
    type Err = String;

    /// Parses `f32`, `q8` or `q4`, ignoring ASCII case and surrounding spaces.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PackedFormat::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown packed format `{s}` (use f32, q8 or q4)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in PackedFormat::ALL {
            assert_eq!(f.name().parse::<PackedFormat>(), Ok(f));
            assert_eq!(f.to_string(), f.name());
        }
        assert_eq!(" Q8 ".parse::<PackedFormat>(), Ok(PackedFormat::Q8));
        assert!("q2".parse::<PackedFormat>().is_err());
    }
}
