#!/usr/bin/env bash
# Side-by-side speed of two trainer builds: each runs the same short `train` command RUNS times,
# alternating, so both see the same machine load; prints per-run wall time, per-step tokens/s and loss,
# then the medians. Keep a copy of the old binary before rebuilding (or copy it from /proc/PID/exe).
#
# Usage: trainer/scripts/compare_builds.sh OLD_BIN NEW_BIN PAIRS [MODEL]
#   PAIRS  preference pairs JSONL (the first PAIRS_USED pairs are trained on, default 4)
#   MODEL  base model; default models/SmolLM2-135M-Instruct.Q4_1.gguf
# Env: RUNS (default 3), GRAD_ACCUM (default 2), WORK (default target/compare_builds).
set -euo pipefail
cd "$(dirname "$0")/../.."

OLD="$1"; NEW="$2"; PAIRS="$3"
MODEL="${4:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
RUNS="${RUNS:-3}"; GRAD_ACCUM="${GRAD_ACCUM:-2}"; PAIRS_USED="${PAIRS_USED:-4}"
WORK="${WORK:-target/compare_builds}"
rm -rf "$WORK" && mkdir -p "$WORK"
head -n "$PAIRS_USED" "$PAIRS" > "$WORK/pairs.jsonl"

for i in $(seq 1 "$RUNS"); do
  for build in old new; do
    bin="$OLD"; [ "$build" = new ] && bin="$NEW"
    out="$WORK/$build-$i"
    start=$(date +%s.%N)
    "$bin" train --model "$MODEL" --pairs "$WORK/pairs.jsonl" --out "$out" --grad-accum "$GRAD_ACCUM" \
      --epochs 1 --no-export --seed 7 --lr 2e-4 > "$out.log" 2>&1
    end=$(date +%s.%N)
    echo "$build $i $start $end" >> "$WORK/walls.txt"
  done
done

python3 - "$WORK" <<'PY'
import json, statistics, sys
work = sys.argv[1]
rows = {"old": [], "new": []}
for line in open(f"{work}/walls.txt"):
    build, i, start, end = line.split()
    steps = [json.loads(l) for l in open(f"{work}/{build}-{i}/metrics.jsonl")]
    rows[build].append((float(end) - float(start), steps))
    print(build, i, f"wall {float(end) - float(start):.1f} s",
          " ".join(f"step{s['step']} {s['tokens_per_s']:.1f} tok/s loss {s['loss']:.9f}" for s in steps))
for build, runs in rows.items():
    wall = statistics.median(r[0] for r in runs)
    per_step = [statistics.median(r[1][k]["tokens_per_s"] for r in runs) for k in range(len(runs[0][1]))]
    print(f"median {build}: wall {wall:.1f} s, tok/s per step {[round(x, 1) for x in per_step]}")
PY
