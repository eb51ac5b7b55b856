//! When a category is flagged: its largest |Δ| must reach `max(abs_threshold, k × noise_floor)`,
//! a meaningful move in scale points *and* clearly more than an irrelevant, non-social sentence
//! makes. Shared by the audit, the runtime check and the report.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Default absolute flag threshold, in scale points.
pub const DEFAULT_ABS_THRESHOLD: f64 = 0.5;
/// Default multiple of the noise floor a category must reach to be flagged.
pub const DEFAULT_NOISE_MULTIPLE: f64 = 3.0;

/// When a category is flagged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Smallest max |Δ| that can be flagged, in scale points (≥ 0).
    pub abs_threshold: f64,
    /// Multiple of the noise floor a category's max |Δ| must also reach (≥ 0).
    pub k: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            abs_threshold: DEFAULT_ABS_THRESHOLD,
            k: DEFAULT_NOISE_MULTIPLE,
        }
    }
}

impl Thresholds {
    /// Validated thresholds (finite and non-negative).
    pub fn new(abs_threshold: f64, k: f64) -> Result<Self> {
        let t = Self { abs_threshold, k };
        t.validate()?;
        Ok(t)
    }

    /// Checks that both values are finite and non-negative.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("abs_threshold", self.abs_threshold), ("k", self.k)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::InvalidInput(format!(
                    "{name} must be a finite number ≥ 0, not {v}"
                )));
            }
        }
        Ok(())
    }

    /// `max(abs_threshold, k × noise_floor)`, in scale points.
    pub fn flag_threshold(&self, noise_floor: f64) -> f64 {
        self.abs_threshold.max(self.k * noise_floor)
    }

    /// Whether a category with this max |Δ| is flagged at this noise floor (`≥`, so a value
    /// exactly at the threshold is flagged).
    pub fn is_flagged(&self, max_abs_delta: f64, noise_floor: f64) -> bool {
        max_abs_delta >= self.flag_threshold(noise_floor)
    }
}
