//! Training checkpoints: the adapter (PEFT files), the optimiser moments, and the run state, in one
//! directory that is replaced atomically.
//!
//! Layout of `{out}/checkpoint/`: `adapter_config.json` + `adapter_model.safetensors` (PEFT),
//! `optimizer.bpk` (burn's optimiser record), `state.json` ([`TrainState`]). A new checkpoint is
//! written to `checkpoint.tmp/`, the old one is renamed to `checkpoint.old/`, the new one into
//! place, then the old one removed; a crash between the renames leaves `checkpoint.old/`, which
//! [`find`] falls back to.

use super::RunConfig;
use crate::error::{Error, Result};
use crate::model::{load_peft, save_peft, LoraAdapter};
use crate::optim::{OptimConfig, Optimiser};
use burn::tensor::Device;
use debias_guard::model::ModelConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Optimiser state file inside a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
/// Run state file inside a checkpoint.
pub const STATE_FILE: &str = "state.json";

/// Where the run stands: enough to continue exactly where it stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimiser steps done.
    pub step: usize,
    /// Steps of the whole run.
    pub total_steps: usize,
    /// The run's options (a resume must use the same).
    pub run: RunConfig,
    /// Digest of the training pairs as trained on (a resume must use the same data).
    pub data_digest: String,
}

fn ckpt_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Writes a checkpoint into `dir` (`{out}/checkpoint`), replacing any previous one atomically.
pub fn save(
    dir: &Path,
    adapter: &LoraAdapter,
    optimiser: &Optimiser,
    state: &TrainState,
    base_model: &str,
) -> Result<()> {
    let tmp = dir.with_extension("tmp");
    let old = dir.with_extension("old");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    save_peft(adapter, &tmp, base_model)?;
    optimiser.save(&tmp.join(OPTIMIZER_FILE))?;
    let text = serde_json::to_string_pretty(state)
        .map_err(|e| ckpt_err(&tmp, format!("cannot encode state: {e}")))?;
    let state_path = tmp.join(STATE_FILE);
    std::fs::write(&state_path, text).map_err(|e| Error::io(&state_path, e))?;
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::io(&tmp, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}

/// The checkpoint directory to resume from: `dir`, or `dir.old` left by an interrupted swap.
pub fn find(dir: &Path) -> Result<PathBuf> {
    if dir.join(STATE_FILE).exists() {
        return Ok(dir.to_path_buf());
    }
    let old = dir.with_extension("old");
    if old.join(STATE_FILE).exists() {
        return Ok(old);
    }
    Err(ckpt_err(
        dir,
        "no checkpoint to resume from (run without --resume first)",
    ))
}

/// Reads the run state of a checkpoint.
pub fn read_state(dir: &Path) -> Result<TrainState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| ckpt_err(&path, e.to_string()))
}

/// Loads the adapter, optimiser and state of a checkpoint.
pub fn load(
    dir: &Path,
    model: &ModelConfig,
    optim: &OptimConfig,
    device: &Device,
) -> Result<(LoraAdapter, Optimiser, TrainState)> {
    let state = read_state(dir)?;
    let adapter = load_peft(dir, model, device)?;
    let optimiser = Optimiser::load(optim, &dir.join(OPTIMIZER_FILE))?;
    Ok((adapter, optimiser, state))
}
