#!/usr/bin/env python3
"""Check GGUF files we export (a base model plus a LoRA adapter, and/or a merged model) with
llama.cpp itself: evaluate our engine's tokens and compare llama.cpp's logits with ours.

Run with the .venv-ref interpreter (scripts/setup_reference_env.sh, llama-cpp-python 0.3.36):

  python scripts/check_gguf_export.py --engine-logits ENGINE.json \
      [--base BASE.gguf [--lora ADAPTER.gguf] [--lora-scale 1.0]] [--merged MERGED.gguf] \
      [--atol 1e-3 --rtol 1e-3] [--dump OUT.json]

ENGINE.json is {"tokens": [ids], "logits": [[vocab floats] per row], "positions": [row indices]}
("positions" optional, default every position), e.g. from
`cargo run --release --example engine_logits -- MODEL TOKENS_CSV OUT` with the adapter active.
Every model given (base, base + adapter, merged) is evaluated on the tokens in one batch from
an empty cache; each is compared with ENGINE.json, and base + adapter with merged when both are
given. Exit status 1 when any |ours - llama.cpp| > atol + rtol * |llama.cpp|, 2 when a file does
not load (llama.cpp's own log is then shown).

What llama.cpp expects of an adapter GGUF (llama-adapter.cpp): general.type "adapter",
adapter.type "lora", general.architecture equal to the base's, tensors `<base tensor>.lora_a`
with numpy shape [r, in] and `.lora_b` [out, r] (PEFT's layouts), and one adapter-wide
adapter.lora.alpha: each pair is scaled by lora_scale * alpha / r with r read per tensor, or by
lora_scale alone when alpha is 0. Per-module alphas, rsLoRA or rank_pattern therefore need the
scaling folded into lora_b. For llama, lora_b rows of attn_q / attn_k must be permuted like the
base q/k rows (GGUF llama stores them for adjacent-pair RoPE, Hugging Face for rotate-halves).
"""

import argparse
import json
import math
import multiprocessing
import queue as queue_module
import sys

import numpy as np
from llama_cpp import Llama, __version__ as LLAMA_CPP_VERSION

# ggml_type id of f32 (llama.h's enum ggml_type).
GGML_TYPE_F32 = 0


def load(model_path, n_ctx, threads, lora_path=None, lora_scale=1.0, verbose=False):
    return Llama(
        model_path=model_path,
        lora_path=lora_path,
        lora_scale=lora_scale,
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_ubatch=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=True,
        # f32 KV cache: the default f16 cache alone moves logits by ~1e-3.
        type_k=GGML_TYPE_F32,
        type_v=GGML_TYPE_F32,
        seed=0,
        verbose=verbose,
    )


def llama_logits(model_path, tokens, threads, lora_path, lora_scale, verbose):
    """llama.cpp logits [len(tokens), vocab] for `tokens` decoded from scratch in one batch."""
    n_ctx = max(64, -(-len(tokens) // 64) * 64)
    llm = load(model_path, n_ctx, threads, lora_path, lora_scale, verbose)
    if max(tokens) >= llm.n_vocab():
        raise ValueError(f"token {max(tokens)} is outside the vocabulary of {llm.n_vocab()}")
    llm.reset()
    llm.eval(tokens)
    logits = np.array(llm.scores[: len(tokens)], dtype=np.float64)
    llm.close()
    return logits


def child(queue, call):
    try:
        queue.put(("ok", llama_logits(*call)))
    except (ValueError, RuntimeError) as e:
        queue.put(("error", str(e)))


def evaluate(label, model_path, tokens, threads, lora_path=None, lora_scale=1.0):
    """Runs llama_logits in a child process: llama.cpp can crash outright on a malformed file
    (a model GGUF passed as adapter segfaults), which is reported here as exit status 2."""
    ctx = multiprocessing.get_context("spawn")
    for verbose in (False, True):
        queue = ctx.Queue()
        proc = ctx.Process(target=child, args=(queue, (model_path, tokens, threads, lora_path, lora_scale, verbose)))
        proc.start()
        status, value = "crash", None
        while True:
            try:
                status, value = queue.get(timeout=0.5)
                break
            except queue_module.Empty:
                if not proc.is_alive():
                    break
        proc.join()
        if status == "ok":
            return value
        if status == "crash":
            value = f"llama.cpp exited with status {proc.exitcode} (a crash: is it the right kind of GGUF?)"
        if verbose:
            break
        print(f"{label}: llama.cpp could not evaluate it: {value}; retrying with llama.cpp's log:", file=sys.stderr)
    sys.exit(2)


def compare(label, ours_rows, positions, ref, atol, rtol):
    """Prints max abs/rel differences of ours_rows vs ref[positions]; True when within tolerance."""
    worst_abs, worst_rel, worst_excess, where = 0.0, 0.0, -math.inf, None
    for row, pos in zip(ours_rows, positions):
        got = np.asarray(row, dtype=np.float64)
        want = ref[pos]
        if got.shape != want.shape:
            raise SystemExit(f"{label}: row for position {pos} has {got.shape[0]} logits, llama.cpp {want.shape[0]}")
        diff = np.abs(got - want)
        rel = diff / np.maximum(np.abs(want), 1e-6)
        excess = diff - (atol + rtol * np.abs(want))
        worst_abs = max(worst_abs, float(diff.max()))
        worst_rel = max(worst_rel, float(rel[diff > atol].max()) if (diff > atol).any() else 0.0)
        i = int(excess.argmax())
        if excess[i] > worst_excess:
            worst_excess, where = float(excess[i]), (pos, i, float(got[i]), float(want[i]))
    pos, tok, a, b = where
    verdict = "OK" if worst_excess <= 0 else f"FAIL (beyond atol {atol} + rtol {rtol} * |ref|)"
    print(f"{label}: {len(positions)} rows, max |diff| {worst_abs:.3g}, max rel diff where |diff| > atol "
          f"{worst_rel:.3g}; worst at position {pos} token {tok}: {a:.6g} vs {b:.6g} -> {verdict}")
    return worst_excess <= 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine-logits", required=True, help="our engine's logits JSON")
    p.add_argument("--base", help="base model GGUF")
    p.add_argument("--lora", help="LoRA adapter GGUF applied on --base")
    p.add_argument("--lora-scale", type=float, default=1.0)
    p.add_argument("--merged", help="merged model GGUF")
    p.add_argument("--atol", type=float, default=1e-3)
    p.add_argument("--rtol", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dump", help="write llama.cpp's logits (first model given) in the engine JSON shape")
    args = p.parse_args()
    if not args.base and not args.merged:
        p.error("pass --base (optionally with --lora) and/or --merged")
    if args.lora and not args.base:
        p.error("--lora needs --base")

    with open(args.engine_logits) as f:
        ours = json.load(f)
    tokens = ours["tokens"]
    positions = ours.get("positions", list(range(len(tokens))))
    if not tokens or len(positions) != len(ours["logits"]):
        raise SystemExit(f"{args.engine_logits}: {len(ours['logits'])} logit rows for {len(positions)} positions")
    if any(not 0 <= pos < len(tokens) for pos in positions):
        raise SystemExit(f"{args.engine_logits}: a position is outside the {len(tokens)} tokens")
    print(f"llama-cpp-python {LLAMA_CPP_VERSION}, {len(tokens)} tokens")

    results = {}
    if args.base:
        label = f"base {args.base} + lora {args.lora} (scale {args.lora_scale})" if args.lora else f"base {args.base}"
        results[label] = evaluate(label, args.base, tokens, args.threads, args.lora, args.lora_scale)
    if args.merged:
        label = f"merged {args.merged}"
        results[label] = evaluate(label, args.merged, tokens, args.threads)

    ok = True
    for label, ref in results.items():
        ok &= compare(label, ours["logits"], positions, ref, args.atol, args.rtol)
    if len(results) == 2:
        (la, a), (lb, b) = results.items()
        ok &= compare(f"llama.cpp {la} vs {lb}", a.tolist(), list(range(len(tokens))), b, args.atol, args.rtol)

    if args.dump:
        ref = next(iter(results.values()))
        out = {"tokens": tokens, "positions": list(range(len(tokens))), "logits": ref.astype(np.float32).tolist(),
               "llama_cpp_python": LLAMA_CPP_VERSION}
        with open(args.dump, "w") as f:
            json.dump(out, f)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
