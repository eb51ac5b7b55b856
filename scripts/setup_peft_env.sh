#!/usr/bin/env bash
# Create the Python environment (.venv-peft) used by scripts/peft_reference.py:
# PyTorch (run on CPU), transformers, peft, safetensors and gguf, all installed
# from PyPI by package name at pinned versions. Safe to run repeatedly: it does
# nothing when the pinned versions are already installed.
#
# Usage: bash scripts/setup_peft_env.sh
# Env overrides: PYTHON (interpreter, default python3),
#                TORCH_VERSION, TRANSFORMERS_VERSION, PEFT_VERSION,
#                SAFETENSORS_VERSION, GGUF_VERSION, NUMPY_VERSION.
#
# Plain `pip install torch` pulls the CUDA build (~6 GB on disk); it runs on
# CPU without a GPU, which is all the reference scripts need.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-peft"
PYTHON="${PYTHON:-python3}"

PINS=(
    "torch==${TORCH_VERSION:-2.15.0}"
    "transformers==${TRANSFORMERS_VERSION:-5.24.0}"
    "peft==${PEFT_VERSION:-0.21.2}"
    "safetensors==${SAFETENSORS_VERSION:-0.8.0}"
    "gguf==${GGUF_VERSION:-0.19.0}"
    "numpy==${NUMPY_VERSION:-2.4.6}"
)
STAMP_FILE="$VENV/.peft-env-stamp"
STAMP="${PINS[*]}|$(uname -m)"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating venv at $VENV"
    "$PYTHON" -m venv "$VENV"
fi

if [ "$(cat "$STAMP_FILE" 2>/dev/null)" = "$STAMP" ]; then
    echo "pinned packages already installed in $VENV: ${PINS[*]}"
    exit 0
fi

start=$(date +%s)
"$VENV/bin/python" -m pip install --upgrade pip > /dev/null
echo "installing ${PINS[*]} (about 75 s and 6 GB with the default torch wheel)"
"$VENV/bin/python" -m pip install "${PINS[@]}"
"$VENV/bin/python" - <<'PY'
import gguf, peft, safetensors, torch, transformers
print("torch", torch.__version__, "| transformers", transformers.__version__,
      "| peft", peft.__version__, "| safetensors", safetensors.__version__)
PY
echo "$STAMP" > "$STAMP_FILE"
echo "installed in $(( $(date +%s) - start ))s"
