#!/usr/bin/env bash
# Create the PyTorch + PEFT environment (.venv-torch) of the trainer's reference benchmark
# (scripts/bench_trainer_torch.py, `make bench-trainer-torch`). Safe to run repeatedly: it does
# nothing when the pinned versions are already installed.
#
# Usage: bash scripts/setup_torch_env.sh
# Env overrides: PYTHON (interpreter, default python3), TORCH_VERSION, TRANSFORMERS_VERSION,
#                PEFT_VERSION, GGUF_VERSION.
#
# The Linux torch wheel of the default package index is the CUDA build: it pulls the nvidia-*
# runtime packages (several GB) even on a CPU-only machine, and imports fine without a GPU.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-torch"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.15.0}"
TRANSFORMERS_VERSION="${TRANSFORMERS_VERSION:-5.23.0}"
PEFT_VERSION="${PEFT_VERSION:-0.21.2}"
GGUF_VERSION="${GGUF_VERSION:-0.19.0}"
WANT="torch==$TORCH_VERSION transformers==$TRANSFORMERS_VERSION"
WANT="$WANT peft==$PEFT_VERSION gguf==$GGUF_VERSION"

installed() {
    "$VENV/bin/python" - <<'PY' 2>/dev/null || true
import gguf, peft, torch, transformers
from importlib.metadata import version
print(" ".join(f"{p}=={version(p)}" for p in ("torch", "transformers", "peft", "gguf")))
PY
}

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating venv at $VENV"
    "$PYTHON" -m venv "$VENV"
fi

# Local version labels (2.15.0+cpu) count as the pinned version.
if [ "$(installed | sed 's/+[a-z0-9.]*//g')" = "$WANT" ]; then
    echo "already installed in $VENV: $WANT"
    exit 0
fi

echo "installing $WANT into $VENV (log: $VENV/install.log)"
start=$(date +%s)
# shellcheck disable=SC2086  # WANT is a list of requirements
"$VENV/bin/python" -m pip install --no-cache-dir $WANT > "$VENV/install.log" 2>&1 || {
    echo "install failed; last lines of $VENV/install.log:" >&2
    tail -n 40 "$VENV/install.log" >&2
    exit 1
}
echo "installed in $(( $(date +%s) - start ))s: $(installed); $(du -sh "$VENV" | cut -f1) on disk"
