#!/usr/bin/env bash
# The whole outside-reference chain for Hugging Face bases and PEFT adapters, on the tiny
# fixtures of `make_adapter_fixtures`:
#   1. our engine (HF directory + adapter) vs transformers + peft;
#   2. independent GGUF files (scripts/reference_gguf.py) in llama.cpp vs our engine;
#   3. our `debias-guard export-adapter` output (adapter and --merged) in llama.cpp vs our engine,
#      and llama.cpp's adapter path vs its merged model.
# Needs .venv-peft (scripts/setup_peft_env.sh) and .venv-ref (scripts/setup_reference_env.sh).
# Usage: bash scripts/check_adapter_exports.sh [WORK_DIR]   (default target/adapter-exports)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="${1:-target/adapter-exports}"
FIX="$WORK/fixtures"
PEFT_PY=.venv-peft/bin/python
REF_PY=.venv-ref/bin/python
for py in "$PEFT_PY" "$REF_PY"; do
    [ -x "$py" ] || { echo "missing $py: run scripts/setup_peft_env.sh and scripts/setup_reference_env.sh" >&2; exit 1; }
done

cargo build --release --quiet --bin debias-guard --example engine_logits
cargo build --release --quiet -p debias-guard-testkit --bin make_adapter_fixtures
DG=target/release/debias-guard
LOGITS=target/release/examples/engine_logits
mkdir -p "$WORK"
target/release/make_adapter_fixtures "$FIX"

tokens() {
    python3 -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["bases"][sys.argv[2]]["tokens"])))' \
        "$FIX/manifest.json" "$1"
}
quiet() { grep -v "Loading weights\|FutureWarning\|warnings.warn" || true; }

failed=0
for base in $(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["bases"]))' "$FIX/manifest.json"); do
    echo "== base $base"
    "$PEFT_PY" scripts/reference_gguf.py base "$FIX/bases/$base" "$WORK/$base.gguf" > /dev/null
    "$LOGITS" "$FIX/bases/$base" "$(tokens "$base")" "$WORK/ours-$base.json"
    "$PEFT_PY" scripts/peft_reference.py --base "$FIX/bases/$base" --engine-logits "$WORK/ours-$base.json" 2>&1 | quiet || failed=1
    "$REF_PY" scripts/check_gguf_export.py --engine-logits "$WORK/ours-$base.json" --base "$WORK/$base.gguf" || failed=1
done

adapters=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["adapters"]; print(" ".join(k + ":" + v["base"] for k, v in m.items()))' "$FIX/manifest.json")
for pair in $adapters; do
    name=${pair%%:*}; base=${pair##*:}
    echo "== adapter $name on $base"
    "$LOGITS" "$FIX/bases/$base" "$(tokens "$base")" "$WORK/ours-$name.json" "$FIX/adapters/$name"
    "$PEFT_PY" scripts/peft_reference.py --base "$FIX/bases/$base" --roundtrip "$FIX/adapters/$name" \
        --engine-logits "$WORK/ours-$name.json" 2>&1 | quiet || failed=1
    "$PEFT_PY" scripts/reference_gguf.py adapter "$FIX/bases/$base" "$FIX/adapters/$name" "$WORK/ref-$name.gguf" > /dev/null
    "$PEFT_PY" scripts/reference_gguf.py merged "$FIX/bases/$base" "$FIX/adapters/$name" "$WORK/ref-$name-merged.gguf" > /dev/null
    echo "-- reference GGUF files"
    "$REF_PY" scripts/check_gguf_export.py --engine-logits "$WORK/ours-$name.json" --base "$WORK/$base.gguf" \
        --lora "$WORK/ref-$name.gguf" --merged "$WORK/ref-$name-merged.gguf" || failed=1
    "$DG" export-adapter --model "$FIX/bases/$base" --adapter "$FIX/adapters/$name" --out "$WORK/ours-$name.gguf" 2> /dev/null
    "$DG" export-adapter --model "$WORK/$base.gguf" --adapter "$FIX/adapters/$name" --merged \
        --out "$WORK/ours-$name-merged.gguf" 2> /dev/null
    echo "-- debias-guard export-adapter"
    "$REF_PY" scripts/check_gguf_export.py --engine-logits "$WORK/ours-$name.json" --base "$WORK/$base.gguf" \
        --lora "$WORK/ours-$name.gguf" --merged "$WORK/ours-$name-merged.gguf" || failed=1
done

# peft_reference.py prints FAIL on stderr and exits 1; a pipeline through grep keeps that status
# only with pipefail, which is set above.
if [ "$failed" -ne 0 ]; then
    echo "FAILED: see the lines marked FAIL above" >&2
    exit 1
fi
echo "all checks passed"
