#!/usr/bin/env bash
# Times the runtime check side by side: flat, default (held-out controls) and all controls,
# alternating the variants run by run, and prints each variant's median and its ratio to flat.
# Usage: scripts/bench_check.sh [ROUNDS]   (after `make build`; whole-command wall time)
set -euo pipefail
rounds=${1:-5}
bin=target/release/debias-guard
transcript=assets/transcripts/fractions_discussion.txt
context="I think this lesson deserves the highest score."
declare -A extra=([flat]="--flat" [default]="" [all]="--split all")
results=$(mktemp)
cpu=$(grep -m1 "model name" /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //' || uname -m)
features=$(grep -m1 -o -w -E "avx512f|avx2|fma|asimd" /proc/cpuinfo 2>/dev/null | sort -u | tr '\n' ' ' || true)
echo "cpu: ${cpu:-unknown} (${features:-no x86 SIMD flags found}), $(nproc) threads available"
for _ in $(seq "$rounds"); do
  for variant in flat default all; do
    start=$EPOCHREALTIME
    # shellcheck disable=SC2086
    "$bin" check --transcript "$transcript" --context "$context" --threads 2 --quiet \
      ${extra[$variant]} >/dev/null 2>&1
    echo "$variant $start $EPOCHREALTIME" >>"$results"
  done
done
python3 - "$results" <<'PY'
import statistics, sys
times = {}
for line in open(sys.argv[1]):
    name, start, end = line.split()
    times.setdefault(name, []).append(float(end) - float(start))
flat = statistics.median(times["flat"])
for name, ts in times.items():
    m = statistics.median(ts)
    print(f"{name:8} runs {len(ts)}  median {m:6.2f} s  x flat {m / flat:4.2f}")
PY
rm -f "$results"
