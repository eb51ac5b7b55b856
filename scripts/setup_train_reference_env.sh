#!/usr/bin/env bash
# Create the PyTorch environment (.venv-train-ref) of the trainer's references:
# scripts/dpo_loss_reference.py (torch only) and scripts/bench_trainer_torch.py (`make
# bench-trainer-torch`: torch + transformers + peft + gguf). Installed by package name at pinned
# versions; runs on the CPU (the Linux torch wheel is the CUDA build, several GB with its nvidia-*
# packages, and imports fine without a GPU). Not part of CI: the loss fixture it produces
# (trainer/tests/fixtures/dpo_loss_reference.json) is committed.
#
# Usage: bash scripts/setup_train_reference_env.sh
# Env overrides: PYTHON (interpreter, default python3), TORCH_VERSION, TRANSFORMERS_VERSION,
#                PEFT_VERSION, GGUF_VERSION.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-train-ref"
PYTHON="${PYTHON:-python3}"
PIN="torch==${TORCH_VERSION:-2.15.0} transformers==${TRANSFORMERS_VERSION:-5.23.0}"
PIN="$PIN peft==${PEFT_VERSION:-0.21.2} gguf==${GGUF_VERSION:-0.19.0}"
STAMP_FILE="$VENV/.train-ref-stamp"

if [[ -f "$STAMP_FILE" && "$(cat "$STAMP_FILE")" == "$PIN" ]]; then
    echo "$VENV is ready ($PIN)"
    exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# shellcheck disable=SC2086  # PIN is a list of requirements
"$VENV/bin/python" -m pip install --quiet $PIN
echo "$PIN" > "$STAMP_FILE"
echo "$VENV is ready ($PIN)"
