//! Per-optimiser-step training metrics, written as JSONL (`metrics.jsonl`) one line per step.

use crate::data::{read_jsonl_checked, write_jsonl, JsonlAppender};
use crate::error::{Error, Result};
use crate::loss::LossStats;
use crate::train::validation::ValidationPoint;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One optimiser step's metrics (losses and rewards are means over the step's pairs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Optimiser step, 1-based (the number of updates done so far).
    pub step: usize,
    /// Fractional epoch reached after this step.
    pub epoch: f64,
    /// Loss terms and their summaries, means over the step's micro-batches weighted by their
    /// pair (or group) counts (flattened into the JSON line).
    #[serde(flatten)]
    pub stats: LossStats,
    /// Learning rate used for this step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens processed by the policy forward passes per second of wall time.
    pub tokens_per_s: f64,
}

impl StepMetrics {
    /// Combines the loss summaries of a step's micro-batches (weighted by their pair counts)
    /// with the step's bookkeeping values.
    pub fn from_parts(
        step: usize,
        epoch: f64,
        parts: &[(LossStats, usize)],
        lr: f64,
        grad_norm: f64,
        tokens_per_s: f64,
    ) -> Self {
        Self {
            step,
            epoch,
            stats: LossStats::weighted_mean(parts),
            lr,
            grad_norm,
            tokens_per_s,
        }
    }
}

/// A JSONL record that belongs to one optimiser step.
pub trait StepRecord: Serialize + DeserializeOwned {
    /// The optimiser step the record was written after.
    fn step(&self) -> usize;
}

impl StepRecord for StepMetrics {
    fn step(&self) -> usize {
        self.step
    }
}

impl StepRecord for ValidationPoint {
    fn step(&self) -> usize {
        self.step
    }
}

/// A per-step JSONL file of a run (metrics, validation), appended to one line at a time.
pub struct StepLog<T> {
    out: JsonlAppender,
    kept: Vec<T>,
}

/// The metrics file of a run, one line per step.
pub type MetricsLog = StepLog<StepMetrics>;

impl<T: StepRecord> StepLog<T> {
    /// Starts a new file at `path`.
    pub fn create(path: &Path) -> Result<Self> {
        Ok(Self {
            out: JsonlAppender::create(path)?,
            kept: Vec::new(),
        })
    }

    /// Continues the file of an interrupted run that resumes after step `done`: lines of later
    /// steps (written after the checkpoint) and a torn last line are dropped.
    pub fn resume(path: &Path, done: usize) -> Result<Self> {
        let (_, lines) = JsonlAppender::open_resumable(path)?;
        let mut kept = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let m: T = serde_json::from_str(line).map_err(|e| Error::Record {
                path: path.to_path_buf(),
                line: i + 1,
                message: e.to_string(),
            })?;
            if m.step() <= done {
                kept.push(m);
            }
        }
        write_jsonl(path, &kept)?;
        let (out, _) = JsonlAppender::open_resumable(path)?;
        Ok(Self { out, kept })
    }

    /// The records a resumed file kept (empty for a new file).
    pub fn kept(&self) -> &[T] {
        &self.kept
    }

    /// Appends one record.
    pub fn append(&mut self, m: &T) -> Result<()> {
        self.out.append(m)
    }
}

/// Reads a metrics file back (for plots).
pub fn read_metrics(path: &Path) -> Result<Vec<StepMetrics>> {
    read_jsonl_checked(path, |_: &StepMetrics| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(step: usize) -> StepMetrics {
        let s = LossStats {
            loss: step as f64,
            ..Default::default()
        };
        StepMetrics::from_parts(step, 0.1 * step as f64, &[(s, 2)], 1e-4, 0.5, 100.0)
    }

    #[test]
    fn resume_drops_steps_after_the_checkpoint() {
        let dir = std::env::temp_dir().join(format!("dg-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.jsonl");
        let mut log = MetricsLog::create(&path).unwrap();
        for k in 1..=5 {
            log.append(&m(k)).unwrap();
        }
        drop(log);
        let mut log = MetricsLog::resume(&path, 3).unwrap();
        log.append(&m(4)).unwrap();
        let back = read_metrics(&path).unwrap();
        assert_eq!(
            back.iter().map(|x| x.step).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(back[3], m(4));
    }

    #[test]
    fn micro_batches_are_weighted_by_their_pairs() {
        let a = LossStats {
            loss: 1.0,
            ..Default::default()
        };
        let b = LossStats {
            loss: 4.0,
            ..Default::default()
        };
        let s = StepMetrics::from_parts(1, 0.0, &[(a, 3), (b, 1)], 0.0, 0.0, 0.0);
        assert!((s.stats.loss - 1.75).abs() < 1e-12);
    }
}
