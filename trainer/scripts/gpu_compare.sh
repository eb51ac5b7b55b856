#!/usr/bin/env bash
# Train a few steps on the GPU (Vulkan) and on the CPU from the same starting point (same model, pairs,
# seed and options) and compare the per-step metrics. Run it on a machine with a GPU and a Vulkan driver.
#
# Usage: trainer/scripts/gpu_compare.sh [MODEL] [PAIRS]
#   MODEL  base model (GGUF file or Hugging Face directory); default models/SmolLM2-135M-Instruct.Q4_1.gguf
#   PAIRS  preference pairs JSONL; default: built here (synth -> pairs on MODEL, a few examples)
# Env: STEPS (optimiser steps, default 3), TOL (largest accepted |cpu - gpu| per metric, default 2e-3),
#      WORK (scratch directory, default target/gpu_compare), DEVICE (vulkan or cuda; cpu compares the CPU
#      with itself, a check of this script).
set -euo pipefail
cd "$(dirname "$0")/../.."

MODEL="${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
PAIRS="${2:-}"
STEPS="${STEPS:-3}"
TOL="${TOL:-2e-3}"
WORK="${WORK:-target/gpu_compare}"
DEVICE="${DEVICE:-vulkan}"
BIN=target/release/debias-guard-trainer

case "$DEVICE" in
    vulkan | cuda) cargo build --release --locked -p debias-guard-trainer --features "$DEVICE" ;;
    *) cargo build --release --locked -p debias-guard-trainer ;; # DEVICE=cpu: a self-check of this script
esac
mkdir -p "$WORK"
if [[ -z "$PAIRS" ]]; then
    "$BIN" synth --out "$WORK/data" --seed 0 --transcripts 20 --items instructional_dialogue
    PAIRS="$WORK/pairs.jsonl"
    "$BIN" pairs --model "$MODEL" --input "$WORK/data/train.jsonl" --output "$PAIRS" \
        --limit $((2 * STEPS)) --contexts-per-example 1 --max-tokens 48
fi

# Runs go to $WORK/run-cpu (reference) and $WORK/run-$DEVICE-candidate.
for run in cpu "$DEVICE-candidate"; do
    dev="${run%-candidate}"
    rm -rf "$WORK/run-$run"
    start=$SECONDS
    "$BIN" train --model "$MODEL" --pairs "$PAIRS" --out "$WORK/run-$run" \
        --device "$dev" --micro-batch 1 --grad-accum 2 --epochs 1 --max-pairs $((2 * STEPS)) \
        --seed 0 --lr 1e-4 --no-export
    echo "$run: $((SECONDS - start)) s wall"
done

python3 - "$WORK/run-cpu/metrics.jsonl" "$WORK/run-$DEVICE-candidate/metrics.jsonl" "$TOL" <<'PY'
import json, sys
cpu, gpu, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
read = lambda p: [json.loads(l) for l in open(p) if l.strip()]
a, b = read(cpu), read(gpu)
assert len(a) == len(b) and a, f"step counts differ: {len(a)} vs {len(b)}"
worst = 0.0
keys = ["loss", "dpo_loss", "sft_loss", "reward_margin", "chosen_logp", "rejected_logp", "grad_norm"]
for x, y in zip(a, b):
    diffs = {k: abs(x[k] - y[k]) / max(1.0, abs(x[k])) for k in keys}
    worst = max(worst, max(diffs.values()))
    print(f"step {x['step']}: " + "  ".join(f"{k} {x[k]:.5f}/{y[k]:.5f}" for k in keys[:3]))
print(f"largest relative difference: {worst:.2e} (tolerance {tol:g})")
sys.exit(0 if worst <= tol else 1)
PY
