#!/usr/bin/env python3
"""The engine against llama.cpp, side by side: one score per GGUF type, and greedy decoding.

1. Writes the default model in other GGUF types with llama.cpp's own quantizer
   (`llama_model_quantize`, requantizing the Q4_1 file: Q4_0, Q8_0, F32) into models/, once.
2. For each type, `rounds` times in turn: the engine's single score (`cargo bench --bench
   engine` with BENCH_MODEL, BENCH_ONLY_PATHS=1, the fastest kernel path), then llama.cpp's
   (`bench_llamacpp.py --modes single`) on the same prompt tokens.
3. `rounds` times in turn: the engine's greedy generation of 64 tokens on f32 and q8 panels
   (`cargo bench --bench decode`, case `single`), then llama.cpp's (`--modes generate`) on the
   same prompt; one decode step = (t(64) - t(1)) / 63.

Medians per arm; ratios engine / llama.cpp (< 1: the engine is faster). Prints the CPU and its
features and the load average. Run from the repository root inside the reference venv:

    .venv-ref/bin/python scripts/bench_vs_llamacpp.py [--rounds 3] [--types Q4_1,Q4_0,Q8_0,F32]

Results: target/bench/vs_llamacpp.json.
"""

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import llama_cpp

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"
FTYPES = {
    "Q4_1": None,
    "Q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0,
    "Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
    "F32": llama_cpp.LLAMA_FTYPE_ALL_F32,
}


def model_file(kind):
    """Path of the default model in GGUF type `kind`, written with llama.cpp's quantizer if missing."""
    if FTYPES[kind] is None:
        return BASE
    out = BASE.with_name(f"SmolLM2-135M-Instruct.{kind}.gguf")
    if not out.exists():
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = FTYPES[kind]
        params.allow_requantize = True
        params.nthread = 2
        status = llama_cpp.llama_model_quantize(
            str(BASE).encode(), str(out).encode(), ctypes.byref(params)
        )
        if status != 0:
            sys.exit(f"llama_model_quantize to {kind} failed ({status})")
    return out


def run(command, env=None):
    """Run a command from the repository root; exit with its output if it fails."""
    done = subprocess.run(
        command, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, command))} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def load_average():
    """The 1-minute load average."""
    return os.getloadavg()[0]


def cpu():
    """CPU name and SIMD features, as bench_llamacpp.py reports them."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_llamacpp import cpu_description  # noqa: E402

    return cpu_description()


def engine_single(path, runs):
    """Median seconds of the engine's single score on `path` (fastest kernel path)."""
    run(
        ["cargo", "bench", "--locked", "--bench", "engine"],
        {"BENCH_MODEL": str(path), "BENCH_ONLY_PATHS": "1", "BENCH_RUNS": str(runs),
         "BENCH_PATHS": "auto"},
    )
    paths = json.loads((ROOT / "target/bench/engine_paths.json").read_text())["kernel_paths"]
    return paths["paths"][paths["first"]]["median_s"], paths["first"]


def llama(mode, runs, out, model=None):
    """Result of one bench_llamacpp.py mode."""
    command = [sys.executable, "scripts/bench_llamacpp.py", "--modes", mode, "--runs", str(runs),
               "--out", str(out)]
    if model is not None:
        command += ["--model", str(model)]
    run(command)
    (result,) = json.loads(out.read_text())["results"]
    return result


def main():
    """Run the comparisons, print each result and write target/bench/vs_llamacpp.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per arm and round")
    parser.add_argument("--types", default="Q4_1,Q4_0,Q8_0,F32")
    parser.add_argument("--skip-generate", action="store_true")
    args = parser.parse_args()
    bench = ROOT / "target/bench"
    bench.mkdir(parents=True, exist_ok=True)
    report = {"cpu": cpu(), "threads": 2, "rounds": args.rounds, "load_before": load_average()}

    single = {}
    for kind in [k.strip() for k in args.types.split(",") if k.strip()]:
        path = model_file(kind)
        arms = {"engine_s": [], "llamacpp_s": []}
        for _ in range(args.rounds):
            seconds, path_name = engine_single(path, args.runs)
            arms["engine_s"].append(seconds)
            peer = llama("single", args.runs, bench / "vs_llamacpp_single.json", path)
            arms["llamacpp_s"].append(peer["seconds_median"])
        e, l = statistics.median(arms["engine_s"]), statistics.median(arms["llamacpp_s"])
        single[kind] = {**arms, "engine_median_s": e, "llamacpp_median_s": l, "ratio": e / l,
                        "kernel_path": path_name, "file": path.name}
        print(f"single score {kind}: engine {e:.3f} s ({path_name}), llama.cpp {l:.3f} s, "
              f"ratio {e / l:.2f}", flush=True)
    report["single"] = single
    if single:
        fastest = min(single, key=lambda k: single[k]["llamacpp_median_s"])
        report["llamacpp_fastest_type"] = fastest
        print(f"llama.cpp's fastest type: {fastest}; engine on Q4_1 / that: "
              f"{single.get('Q4_1', single[fastest])['engine_median_s'] / single[fastest]['llamacpp_median_s']:.2f}")

    if not args.skip_generate:
        arms = {"engine_f32_step_ms": [], "engine_q8_step_ms": [], "llamacpp_step_ms": []}
        agree = None
        for _ in range(args.rounds):
            run(["cargo", "bench", "--locked", "--bench", "decode"],
                {"BENCH_SKIP_KERNEL": "1", "BENCH_CASES": "single", "BENCH_RUNS": str(args.runs)})
            ours = json.loads((bench / "decode.json").read_text())["results"]["engine"]["cases"]["single"]
            arms["engine_f32_step_ms"].append(ours["f32_step_ms"])
            arms["engine_q8_step_ms"].append(ours["q8_step_ms"])
            peer = llama("generate", args.runs, bench / "vs_llamacpp_generate.json")
            arms["llamacpp_step_ms"].append(peer["decode_step_ms"])
            agree = (peer["leading_tokens_equal_to_engine"], peer["engine_tokens"])
        med = {k: statistics.median(v) for k, v in arms.items()}
        report["generate"] = {**arms, **{k + "_median": v for k, v in med.items()},
                              "leading_greedy_tokens_equal": agree}
        for arm in ("engine_f32_step_ms", "engine_q8_step_ms", "llamacpp_step_ms"):
            print(f"decode step {arm}: {med[arm]:.2f} ms ({1e3 / med[arm]:.1f} tokens/s)")
        print(f"greedy tokens equal to llama.cpp's: the first {agree[0]} of {agree[1]}")

    report["load_after"] = load_average()
    (bench / "vs_llamacpp.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"cpu: {report['cpu']['name']} ({' '.join(report['cpu']['features'])}); load average "
          f"{report['load_before']:.1f} -> {report['load_after']:.1f}; wrote target/bench/vs_llamacpp.json")


if __name__ == "__main__":
    main()
