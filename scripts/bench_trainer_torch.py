#!/usr/bin/env python3
"""PyTorch + PEFT reference for the burn trainer's step benchmark (trainer/benches/train_step.rs).

Times the same two pieces of work as `make bench-trainer`, on the same model and token counts:

  reference pass    forward of chosen and rejected with the adapter disabled, no autograd graph,
                    summed log-probs of each sequence's scored tokens;
  train micro-batch forward of chosen, rejected and SFT with the LoRA adapter, the Debiasing-DPO
                    loss (sigmoid DPO with beta 0.1 against the reference log-probs, plus 0.1 x
                    the SFT token-mean NLL), backward into the adapter.

The token sequences are the burn bench's (the same xorshift generator and seeds 1, 2, 3, each
scored over its last quarter). Like the burn decoder, the LM head is applied to the scored
positions only. The sequences run as plain rows of one batch ([2, T] and [3, T]); the burn bench
runs the reference pass as plain rows too and the micro-batch as one packed row (its three random
sequences share no prefix, so both compute the same 3 T token positions).

Model: the default GGUF file, read by transformers (`gguf_file=`) and dequantized to float32 —
the same weights the burn trainer dequantizes. LoRA: rank 16, alpha 32, no dropout, on the seven
projections q, k, v, o, gate, up, down (the trainer's default `LoraConfig`).

Usage: .venv-train-ref/bin/python scripts/bench_trainer_torch.py [--tokens 512] [--runs 5]
           [--threads 2] [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]
           [--out target/bench/trainer_torch.json]
Defaults follow the burn bench's environment: BENCH_TOKENS, BENCH_RUNS, BENCH_MODEL and
RAYON_NUM_THREADS (else 2 threads).
"""
import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from importlib.metadata import version
from pathlib import Path

import torch
import torch.nn.functional as F

MASK64 = (1 << 64) - 1
BETA = 0.1
SFT_WEIGHT = 0.1
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def bench_sequence(seed, length, vocab):
    """The burn bench's pseudo-random tokens (xorshift64 seeded with seed * golden ratio | 1)."""
    state = ((seed * 0x9E3779B97F4A7C15) & MASK64) | 1
    tokens = []
    for _ in range(length):
        state ^= (state << 13) & MASK64
        state ^= state >> 7
        state ^= (state << 17) & MASK64
        tokens.append(state % vocab)
    return tokens


def load_model(path, attn):
    """The GGUF model as a float32 transformers model with a LoRA adapter on every projection."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    path = Path(path)
    base = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32, attn_implementation=attn
    )
    config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS, bias="none")
    model = get_peft_model(base, config)
    model.train()  # no dropout anywhere in this model; train mode matches a training step
    return model


def scored_logps(model, ids, start, adapter):
    """Summed and mean log-probs of tokens start.. of each row of ids ([B, T]).

    The decoder runs without its LM head; the final norm's output at positions start-1 .. T-2
    goes through the head, as the burn decoder's `logits_at` does for the rows it scores.
    """
    causal_lm = model.get_base_model()
    ctx = contextlib.nullcontext() if adapter else model.disable_adapter()
    with ctx:
        hidden = causal_lm.model(input_ids=ids, use_cache=False).last_hidden_state
    logits = causal_lm.lm_head(hidden[:, start - 1 : -1])
    logp = logits.log_softmax(-1).gather(-1, ids[:, start:, None]).squeeze(-1)
    return logp.sum(-1), logp.mean(-1)


def timed(runs, fn):
    """One warm-up call, then the wall time of `runs` calls, in seconds."""
    fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def summary(name, tokens, samples):
    median = statistics.median(samples)
    print(
        f"{name:<34} median {median * 1e3:>8.1f} ms   ({min(samples) * 1e3:.1f}–"
        f"{max(samples) * 1e3:.1f})   {tokens / median:>8.0f} tokens/s"
    )
    return {
        "tokens": tokens,
        "median_ms": median * 1e3,
        "min_ms": min(samples) * 1e3,
        "max_ms": max(samples) * 1e3,
        "samples_ms": [s * 1e3 for s in samples],
        "tokens_per_s": tokens / median,
    }


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    env = os.environ
    root = Path(__file__).resolve().parent.parent
    default_model = root / "models/SmolLM2-135M-Instruct.Q4_1.gguf"
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=env.get("BENCH_MODEL", str(default_model)))
    p.add_argument("--tokens", type=int, default=int(env.get("BENCH_TOKENS", 512)))
    p.add_argument("--runs", type=int, default=int(env.get("BENCH_RUNS", 5)))
    p.add_argument("--threads", type=int, default=int(env.get("RAYON_NUM_THREADS", 2)))
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"],
                   help="transformers attention implementation")
    p.add_argument("--out", default=str(root / "target/bench/trainer_torch.json"))
    args = p.parse_args()
    length, runs = max(args.tokens, 8), max(args.runs, 1)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model(args.model, args.attn)
    cfg = model.get_base_model().config
    start = length - length // 4
    ids = torch.tensor(
        [bench_sequence(s, length, cfg.vocab_size) for s in (1, 2, 3)], dtype=torch.long
    )
    trainable = sum(t.numel() for t in model.parameters() if t.requires_grad)
    print(
        f"model {args.model} ({cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}), "
        f"{length} tokens per sequence, {runs} runs, threads {torch.get_num_threads()}, "
        f"attention {args.attn}, {trainable} trainable parameters"
    )

    pair = ids[:2]

    def reference_pass():
        with torch.no_grad():
            s, _ = scored_logps(model, pair, start, adapter=False)
        return s

    reference = reference_pass()

    def train_micro_batch():
        model.zero_grad(set_to_none=True)
        s, m = scored_logps(model, ids, start, adapter=True)
        logits = (s[0] - reference[0]) - (s[1] - reference[1])
        loss = -F.logsigmoid(BETA * logits) + SFT_WEIGHT * -m[2]
        loss.backward()
        return loss

    loss = train_micro_batch()
    print(f"reference log-probs {reference[0].item():.3f} {reference[1].item():.3f}, "
          f"loss {loss.item():.6f}")
    results = {
        "reference_pass": summary("reference pass (2 sequences)", 2 * length,
                                  timed(runs, reference_pass)),
        "train_micro_batch": summary("train micro-batch (3 sequences)", 3 * length,
                                     timed(runs, train_micro_batch)),
    }
    record = {
        "model": str(args.model),
        "tokens_per_sequence": length,
        "scored_per_sequence": length - start,
        "runs": runs,
        "threads": torch.get_num_threads(),
        "attention": args.attn,
        "trainable_parameters": trainable,
        "cpu": cpu_name(),
        "versions": {p: version(p) for p in ("torch", "transformers", "peft", "gguf")},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "reference_logps": [reference[0].item(), reference[1].item()],
        "loss": loss.item(),
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
