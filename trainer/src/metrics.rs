//! Per-optimiser-step training metrics, written as JSONL (`metrics.jsonl`) one line per step.

use crate::data::{read_jsonl_checked, write_jsonl, JsonlAppender};
use crate::error::{Error, Result};
use crate::loss::LossStats;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One optimiser step's metrics (losses and rewards are means over the step's pairs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Optimiser step, 1-based (the number of updates done so far).
    pub step: usize,
    /// Fractional epoch reached after this step.
    pub epoch: f64,
    /// Total loss.
    pub loss: f64,
    /// DPO term.
    pub dpo_loss: f64,
    /// SFT term (negative mean token log-prob of the gold answer).
    pub sft_loss: f64,
    /// Mean chosen-minus-rejected implicit reward.
    pub reward_margin: f64,
    /// Fraction of pairs whose margin is positive.
    pub reward_accuracy: f64,
    /// Mean implicit reward of the chosen answers.
    pub chosen_reward: f64,
    /// Mean implicit reward of the rejected answers.
    pub rejected_reward: f64,
    /// Mean policy log-prob of the chosen answers.
    pub chosen_logp: f64,
    /// Mean policy log-prob of the rejected answers.
    pub rejected_logp: f64,
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
        let n: usize = parts.iter().map(|(_, k)| k).sum();
        let avg = |f: fn(&LossStats) -> f64| {
            parts.iter().map(|(s, k)| f(s) * *k as f64).sum::<f64>() / n.max(1) as f64
        };
        Self {
            step,
            epoch,
            loss: avg(|s| s.loss),
            dpo_loss: avg(|s| s.dpo_loss),
            sft_loss: avg(|s| s.sft_loss),
            reward_margin: avg(|s| s.reward_margin),
            reward_accuracy: avg(|s| s.reward_accuracy),
            chosen_reward: avg(|s| s.chosen_reward),
            rejected_reward: avg(|s| s.rejected_reward),
            chosen_logp: avg(|s| s.chosen_logp),
            rejected_logp: avg(|s| s.rejected_logp),
            lr,
            grad_norm,
            tokens_per_s,
        }
    }
}

/// The metrics file of a run, appended to one line per step.
pub struct MetricsLog {
    out: JsonlAppender,
}

impl MetricsLog {
    /// Starts a new file at `path`.
    pub fn create(path: &Path) -> Result<Self> {
        Ok(Self {
            out: JsonlAppender::create(path)?,
        })
    }

    /// Continues the file of an interrupted run that resumes after step `done`: lines of later
    /// steps (written after the checkpoint) and a torn last line are dropped.
    pub fn resume(path: &Path, done: usize) -> Result<Self> {
        let (_, lines) = JsonlAppender::open_resumable(path)?;
        let mut kept = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let m: StepMetrics = serde_json::from_str(line).map_err(|e| Error::Record {
                path: path.to_path_buf(),
                line: i + 1,
                message: e.to_string(),
            })?;
            if m.step <= done {
                kept.push(m);
            }
        }
        write_jsonl(path, &kept)?;
        let (out, _) = JsonlAppender::open_resumable(path)?;
        Ok(Self { out })
    }

    /// Appends one step.
    pub fn append(&mut self, m: &StepMetrics) -> Result<()> {
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
        assert!((s.loss - 1.75).abs() < 1e-12);
    }
}
