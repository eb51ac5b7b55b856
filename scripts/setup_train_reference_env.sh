#!/usr/bin/env bash
# Create the Python environment (.venv-train-ref) used by scripts/dpo_loss_reference.py: PyTorch only,
# installed from PyPI by package name at a pinned version (runs on CPU). Not part of CI: the fixture it
# produces (trainer/tests/fixtures/dpo_loss_reference.json) is committed.
#
# Usage: bash scripts/setup_train_reference_env.sh
# Env overrides: PYTHON (interpreter, default python3), TORCH_VERSION.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-train-ref"
PYTHON="${PYTHON:-python3}"
PIN="torch==${TORCH_VERSION:-2.15.0}"
STAMP_FILE="$VENV/.train-ref-stamp"

if [[ -f "$STAMP_FILE" && "$(cat "$STAMP_FILE")" == "$PIN" ]]; then
    echo "$VENV is ready ($PIN)"
    exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "$PIN"
echo "$PIN" > "$STAMP_FILE"
echo "$VENV is ready ($PIN)"
