#!/usr/bin/env python3
"""Peer benchmark: prompt evaluation speed of llama.cpp (via llama-cpp-python).

The input holds a neutral prompt and a few context variants that share a long
prefix. Four modes are timed, each in its own subprocess so that the reported
peak RSS belongs to that mode alone:

  single           evaluate the neutral prompt from scratch, read last logits
  scratch-all      evaluate every variant from scratch
  prefix-reuse     evaluate the common token prefix once, llm.save_state(),
                   then per variant llm.load_state() and evaluate the rest
  prefix-reuse-kv  like prefix-reuse, but instead of save/load_state (which
                   in llama-cpp-python also copies a large logits buffer) the
                   KV cache is truncated back to the prefix in place
  generate         greedy generation after the first prompt: timed with
                   max_tokens and with 1 token, so one decode step is
                   (t(N) - t(1)) / (N - 1); reads target/bench/generate_prompt.json
                   (written by `cargo bench --bench decode`), whose
                   engine_greedy_tokens are compared with llama.cpp's

Run inside the reference venv (see scripts/setup_reference_env.sh):

    .venv-ref/bin/python scripts/bench_llamacpp.py \
        --prompts target/bench/prompts.json --out target/bench/llamacpp.json
"""

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import llama_cpp
from llama_cpp import Llama

REPO_ROOT = Path(__file__).resolve().parent.parent
MODES = ["single", "scratch-all", "prefix-reuse", "prefix-reuse-kv", "generate"]
# Modes run by default (generate needs its own prompt file).
DEFAULT_MODES = MODES[:4]
GENERATE_PROMPT = REPO_ROOT / "target/bench/generate_prompt.json"


def parse_args():
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--prompts",
        type=Path,
        default=REPO_ROOT / "target/bench/prompts.json",
        help="input JSON: {model, variants: [{id, text}, ...]}, first is neutral",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="GGUF file (default: models/<model named in the prompts file>)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "target/bench/llamacpp.json",
        help="where to write the results JSON",
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs per mode")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--n-batch", type=int, default=512, help="n_batch = n_ubatch")
    parser.add_argument(
        "--modes",
        default=",".join(DEFAULT_MODES),
        help="comma-separated subset of " + ", ".join(MODES),
    )
    parser.add_argument(
        "--max-tokens", type=int, default=None, help="generate: tokens (default: the prompt file's)"
    )
    # Internal: run one mode in this process and print its result as JSON.
    parser.add_argument("--child-mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--n-ctx", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def model_path_for(args, spec):
    """Resolve the GGUF path from --model or the model named in the input."""
    return args.model or REPO_ROOT / "models" / spec["model"]


def peak_rss_mib():
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_description():
    """The CPU's model name and the SIMD features the kernels care about (Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"name": platform.processor() or platform.machine(), "features": []}
    name, flags = platform.machine(), set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name == platform.machine():
            name = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = set(value.split())
    wanted = ["avx512f", "avx512_vnni", "avx_vnni", "avx2", "fma", "asimd", "asimddp", "sve"]
    return {"name": name, "features": [f for f in wanted if f in flags]}


def common_prefix_len(sequences):
    """Length of the longest token prefix shared by all sequences."""
    n = 0
    for column in zip(*sequences):
        if any(token != column[0] for token in column):
            break
        n += 1
    return n


def tokenize_variants(model_path, variants):
    """Tokenize every variant with a vocab-only model (BOS as the vocab says)."""
    vocab = Llama(model_path=str(model_path), vocab_only=True, n_ctx=64, verbose=False)
    add_bos = bool(
        llama_cpp.llama_vocab_get_add_bos(llama_cpp.llama_model_get_vocab(vocab.model))
    )
    return [
        vocab.tokenize(v["text"].encode("utf-8"), add_bos=add_bos, special=True)
        for v in variants
    ]


def load_model(model_path, n_ctx, args):
    """Load the model for timing: last-token logits only."""
    return Llama(
        model_path=str(model_path),
        n_ctx=n_ctx,
        n_batch=args.n_batch,
        n_ubatch=args.n_batch,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        logits_all=False,
        seed=1234,
        verbose=False,
    )


def last_logits(llm):
    """Copy of the logits of the last evaluated token."""
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()


def eval_from_scratch(llm, tokens):
    """Clear the context, evaluate all tokens, return the last logits."""
    llm.reset()
    llm.eval(tokens)
    return last_logits(llm)


def split_prefix(token_lists):
    """Shared prefix length, leaving at least one token per variant to evaluate."""
    return min(common_prefix_len(token_lists), min(len(t) for t in token_lists) - 1)


def run_single(llm, token_lists):
    """Mode `single`: the neutral prompt from scratch."""
    return [eval_from_scratch(llm, token_lists[0])], len(token_lists[0])


def run_scratch_all(llm, token_lists):
    """Mode `scratch-all`: every variant from scratch."""
    logits = [eval_from_scratch(llm, tokens) for tokens in token_lists]
    return logits, sum(len(t) for t in token_lists)


def run_prefix_reuse(llm, token_lists):
    """Mode `prefix-reuse`: prefix once, then save_state/load_state per variant."""
    prefix = split_prefix(token_lists)
    llm.reset()
    llm.eval(token_lists[0][:prefix])
    state = llm.save_state()
    logits = []
    for tokens in token_lists:
        llm.load_state(state)
        llm.eval(tokens[prefix:])
        logits.append(last_logits(llm))
    return logits, prefix + sum(len(t) - prefix for t in token_lists)


def run_prefix_reuse_kv(llm, token_lists):
    """Mode `prefix-reuse-kv`: prefix once, then truncate the KV cache per variant.

    Llama.eval() drops every KV cell at positions >= llm.n_tokens before it
    decodes, so rewinding n_tokens to the prefix length reuses the prefix.
    """
    prefix = split_prefix(token_lists)
    llm.reset()
    llm.eval(token_lists[0][:prefix])
    logits = []
    for tokens in token_lists:
        llm.n_tokens = prefix
        llm.eval(tokens[prefix:])
        logits.append(last_logits(llm))
    return logits, prefix + sum(len(t) - prefix for t in token_lists)


def greedy_generate(llm, tokens, max_tokens, timing=None):
    """Evaluate `tokens`, then pick the most probable next token `max_tokens` times. With a
    `timing` list, appends the seconds the decode steps after the first token took."""
    llm.reset()
    llm.eval(tokens)
    out = []
    for i in range(max_tokens):
        out.append(int(np.argmax(last_logits(llm))))
        if i == 0:
            decode_start = time.perf_counter()
        if i + 1 < max_tokens:
            llm.eval(out[-1:])
    if timing is not None:
        timing.append(time.perf_counter() - decode_start)
    return out


def generate_main(args, spec, token_lists, llm):
    """Mode `generate`: seconds for max_tokens and for 1 token, alternating; one decode step."""
    max_tokens = args.max_tokens or spec.get("max_tokens", 64)
    prompt = token_lists[0]
    greedy_generate(llm, prompt, max_tokens)  # warm-up
    full, first, decode = [], [], []
    generated = []
    for run in range(args.runs):
        for n in ([max_tokens, 1] if run % 2 == 0 else [1, max_tokens]):
            start = time.perf_counter()
            tokens = greedy_generate(llm, prompt, n, decode if n == max_tokens else None)
            (full if n == max_tokens else first).append(time.perf_counter() - start)
            if n == max_tokens:
                generated = tokens
    full_median, first_median = statistics.median(full), statistics.median(first)
    step_s = (full_median - first_median) / (max_tokens - 1)
    engine_tokens = spec.get("engine_greedy_tokens")
    agree = None
    if engine_tokens is not None:
        agree = 0
        for a, b in zip(generated, engine_tokens):
            if a != b:
                break
            agree += 1
    return {
        "mode": "generate",
        "runs": args.runs,
        "prompt_tokens": len(prompt),
        "max_tokens": max_tokens,
        "seconds_median": full_median,
        "seconds_all": full,
        "prefill_and_first_token_median_s": first_median,
        "prefill_and_first_token_all_s": first,
        "decode_step_ms": step_s * 1e3,
        # The decode steps timed inside each full run (no prefill in the difference): steadier
        # when the prefill time scatters.
        "decode_step_ms_direct_median": statistics.median(decode) / (max_tokens - 1) * 1e3,
        "decode_step_ms_direct_all": [d / (max_tokens - 1) * 1e3 for d in decode],
        "decode_tokens_per_s": 1.0 / step_s if step_s > 0 else None,
        "greedy_tokens": generated,
        "leading_tokens_equal_to_engine": agree,
        "engine_tokens": len(engine_tokens) if engine_tokens is not None else None,
        "peak_rss_mib": peak_rss_mib(),
    }


RUNNERS = {
    "single": run_single,
    "scratch-all": run_scratch_all,
    "prefix-reuse": run_prefix_reuse,
    "prefix-reuse-kv": run_prefix_reuse_kv,
}


def time_runs(runner, llm, token_lists, runs):
    """One warm-up, then `runs` timed calls; returns (seconds list, last output)."""
    runner(llm, token_lists)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        output = runner(llm, token_lists)
        seconds.append(time.perf_counter() - start)
    return seconds, output


def max_diff_vs_scratch(llm, token_lists, logits):
    """Largest |logit difference| between a mode's outputs and from-scratch evaluation."""
    diffs = [
        float(np.abs(eval_from_scratch(llm, tokens) - got).max())
        for tokens, got in zip(token_lists, logits)
    ]
    return max(diffs)


def child_main(args):
    """Measure one mode in this process and print its result as JSON on stdout."""
    spec = json.loads(prompts_for(args, args.child_mode).read_text())
    model_path = model_path_for(args, spec)
    token_lists = tokenize_variants(model_path, spec["variants"])
    if args.child_mode in ("single", "generate"):
        token_lists = token_lists[:1]
    rss_before_load = peak_rss_mib()
    llm = load_model(model_path, args.n_ctx, args)
    rss_after_load = peak_rss_mib()
    if args.child_mode == "generate":
        print(json.dumps(generate_main(args, spec, token_lists, llm)))
        return

    seconds, (logits, evaluated) = time_runs(
        RUNNERS[args.child_mode], llm, token_lists, args.runs
    )
    median = statistics.median(seconds)
    prompt_tokens = sum(len(t) for t in token_lists)
    result = {
        "mode": args.child_mode,
        "runs": args.runs,
        "seconds_median": median,
        "seconds_min": min(seconds),
        "seconds_all": seconds,
        "prompts": len(token_lists),
        "prompt_tokens": prompt_tokens,
        "tokens_evaluated": evaluated,
        "prompt_tokens_per_s": prompt_tokens / median,
        "evaluated_tokens_per_s": evaluated / median,
        "peak_rss_mib": peak_rss_mib(),
        "peak_rss_after_load_mib": rss_after_load,
        "peak_rss_before_load_mib": rss_before_load,
    }
    if args.child_mode.startswith("prefix"):
        result["shared_prefix_tokens"] = split_prefix(token_lists)
        result["max_abs_logit_diff_vs_scratch"] = max_diff_vs_scratch(llm, token_lists, logits)
    print(json.dumps(result))


def prompts_for(args, mode):
    """The input file of `mode`: the generation prompt for `generate`, else --prompts."""
    return GENERATE_PROMPT if mode == "generate" else args.prompts


def run_child(args, mode, n_ctx):
    """Run one mode in a fresh interpreter and return its parsed result."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child-mode", mode,
        "--n-ctx", str(n_ctx),
        "--prompts", str(args.prompts),
        "--runs", str(args.runs),
        "--max-tokens", str(args.max_tokens or 0),
        "--threads", str(args.threads),
        "--n-batch", str(args.n_batch),
    ]
    if args.model:
        command += ["--model", str(args.model)]
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"mode {mode} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_summary(report):
    """Readable table of the results."""
    print(
        f"llama-cpp-python {report['llama_cpp_version']}, {report['model']}, "
        f"threads={report['n_threads']}, n_batch={report['n_batch']}, "
        f"median of {report['runs']} runs after 1 warm-up"
    )
    cpu = report["cpu"]
    print(f"cpu: {cpu['name']} ({' '.join(cpu['features']) or 'no listed SIMD features'})")
    print(f"variants={report['variants']}, tokens per variant={report['variant_tokens']}")
    header = f"{'mode':<16} {'median s':>9} {'prompt tok':>10} {'eval tok':>9} {'prompt tok/s':>13} {'peak RSS MiB':>13}"
    print(header)
    print("-" * len(header))
    for r in report["results"]:
        if r["mode"] == "generate":
            continue
        print(
            f"{r['mode']:<16} {r['seconds_median']:>9.4f} {r['prompt_tokens']:>10} "
            f"{r['tokens_evaluated']:>9} {r['prompt_tokens_per_s']:>13.1f} {r['peak_rss_mib']:>13.1f}"
        )
    for r in report["results"]:
        if r["mode"] == "generate":
            print(
                f"generate: {r['prompt_tokens']} prompt tokens + {r['max_tokens']} greedy tokens "
                f"{r['seconds_median']:.3f} s, prefill + first token "
                f"{r['prefill_and_first_token_median_s']:.3f} s, decode step "
                f"{r['decode_step_ms']:.2f} ms ({r['decode_tokens_per_s']:.1f} tokens/s; timed "
                f"directly {r['decode_step_ms_direct_median']:.2f} ms); "
                f"first {r['leading_tokens_equal_to_engine']} tokens equal the engine's"
            )
    for r in report["results"]:
        if "max_abs_logit_diff_vs_scratch" in r:
            print(
                f"{r['mode']}: shared prefix {r['shared_prefix_tokens']} tokens, "
                f"max |logit diff| vs scratch {r['max_abs_logit_diff_vs_scratch']:.3g}"
            )


def parent_main(args):
    """Tokenize once for sizing, run each mode in a subprocess, write and print."""
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        sys.exit(f"unknown mode(s): {unknown}; choose from {MODES}")
    results = []
    for mode in modes:
        spec = json.loads(prompts_for(args, mode).read_text())
        model_path = model_path_for(args, spec)
        token_lists = tokenize_variants(model_path, spec["variants"])
        extra = (args.max_tokens or spec.get("max_tokens", 64)) if mode == "generate" else 1
        n_ctx = max(256, -(-(max(len(t) for t in token_lists) + extra) // 256) * 256)
        print(f"running {mode} ...", file=sys.stderr, flush=True)
        results.append(run_child(args, mode, n_ctx))

    report = {
        "engine": "llama.cpp (llama-cpp-python)",
        "llama_cpp_version": llama_cpp.__version__,
        "python_version": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu_description(),
        "model": model_path.name,
        "n_threads": args.threads,
        "n_batch": args.n_batch,
        "n_ctx": n_ctx,
        "runs": args.runs,
        "variants": [v["id"] for v in spec["variants"]],
        "variant_tokens": [len(t) for t in token_lists],
        "peak_rss_note": "ru_maxrss of a separate process per mode (model load included)",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print_summary(report)
    print(f"wrote {args.out}")


def main():
    """Dispatch to the per-mode child or the orchestrating parent."""
    args = parse_args()
    if args.child_mode:
        child_main(args)
    else:
        parent_main(args)


if __name__ == "__main__":
    main()
