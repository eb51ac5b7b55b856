#!/usr/bin/env bash
# Create the Python reference environment (.venv-ref) used by the llama.cpp
# parity and benchmark scripts. Safe to run repeatedly: it does nothing when
# llama-cpp-python was already built with the same version and flags.
#
# Usage: bash scripts/setup_reference_env.sh
# Env overrides: PYTHON (interpreter, default python3),
#                LLAMA_CPP_PYTHON_VERSION (default 0.3.36),
#                CMAKE_ARGS (default -DGGML_NATIVE=ON),
#                CMAKE_BUILD_PARALLEL_LEVEL (default 2),
#                REF_EXTRA_CFLAGS (default: disable AMX on x86_64, see below).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-ref"
PYTHON="${PYTHON:-python3}"
LLAMA_VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"

# Build llama.cpp for this CPU, two compile jobs (small machines).
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"

# -march=native turns on Intel AMX where /proc/cpuinfo lists it, but inside
# our VMs the tile instructions fault (SIGSEGV in ggml_backend_amx_mul_mat on
# the first decode). Explicit -mno-amx-* wins over -march=native in GCC and
# Clang, so ggml falls back to its AVX-512/AVX2 kernels.
if [ -z "${REF_EXTRA_CFLAGS+x}" ]; then
    if [ "$(uname -m)" = "x86_64" ]; then
        REF_EXTRA_CFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    else
        REF_EXTRA_CFLAGS=""
    fi
fi
export CFLAGS="${CFLAGS:-} $REF_EXTRA_CFLAGS"
export CXXFLAGS="${CXXFLAGS:-} $REF_EXTRA_CFLAGS"

# Everything that changes the build; a differing stamp triggers a rebuild.
STAMP_FILE="$VENV/.llama-build-stamp"
STAMP="llama-cpp-python==$LLAMA_VERSION|$CMAKE_ARGS|$REF_EXTRA_CFLAGS|$(uname -m)"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating venv at $VENV"
    "$PYTHON" -m venv "$VENV"
fi

installed_version() {
    "$VENV/bin/python" - <<'PY' 2>/dev/null || true
import numpy  # noqa: F401  (must be importable too)
import llama_cpp
print(llama_cpp.__version__)
PY
}

if [ "$(installed_version)" = "$LLAMA_VERSION" ] \
    && [ "$(cat "$STAMP_FILE" 2>/dev/null)" = "$STAMP" ]; then
    echo "llama-cpp-python $LLAMA_VERSION and numpy already installed in $VENV"
    exit 0
fi

"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install numpy

echo "building llama-cpp-python==$LLAMA_VERSION"
echo "  CMAKE_ARGS=$CMAKE_ARGS  extra flags: ${REF_EXTRA_CFLAGS:-none}"
echo "  (takes ~8 minutes on 2 cores; log: $VENV/llama-build.log)"
start=$(date +%s)
"$VENV/bin/python" -m pip install --no-cache-dir --force-reinstall --no-deps \
    --verbose "llama-cpp-python==$LLAMA_VERSION" > "$VENV/llama-build.log" 2>&1 || {
    echo "build failed; last lines of $VENV/llama-build.log:" >&2
    tail -n 40 "$VENV/llama-build.log" >&2
    exit 1
}
# --no-deps above keeps numpy as installed; pull in the remaining deps now.
"$VENV/bin/python" -m pip install "llama-cpp-python==$LLAMA_VERSION" > /dev/null
echo "$STAMP" > "$STAMP_FILE"
echo "built in $(( $(date +%s) - start ))s; installed version: $(installed_version)"
