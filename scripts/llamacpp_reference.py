#!/usr/bin/env python3
"""Compute llama.cpp reference scores for the Rust parity tests.

For every prompt in the input file, each candidate continuation (" 1" .. " 7")
is appended to the prompt text, the full sequence is evaluated from scratch by
llama.cpp (through llama-cpp-python) and the natural-log probability of every
continuation token is read from the logits. The per-label probabilities are
then renormalised over the label set, exactly as the Rust scorer does.

Run inside the reference venv (see scripts/setup_reference_env.sh):

    .venv-ref/bin/python scripts/llamacpp_reference.py \
        --prompts tests/fixtures/parity_prompts.json \
        --out tests/fixtures/llamacpp_reference.json
"""

import argparse
import hashlib
import json
import math
import platform
import re
import sys
from pathlib import Path

import numpy as np
import llama_cpp
from llama_cpp import Llama

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED = 1234


def parse_args():
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--prompts",
        type=Path,
        default=REPO_ROOT / "tests/fixtures/parity_prompts.json",
        help="input JSON with the model name and the prompts",
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
        default=REPO_ROOT / "tests/fixtures/llamacpp_reference.json",
        help="where to write the reference JSON",
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    return parser.parse_args()


def sha256_of(path):
    """Return the hex sha256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def common_prefix_len(a, b):
    """Length of the longest common prefix of two token lists."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def wants_bos(llm):
    """Whether the vocabulary asks for a BOS token to be prepended."""
    return bool(llama_cpp.llama_vocab_get_add_bos(llama_cpp.llama_model_get_vocab(llm.model)))


def tokenize(llm, text, add_bos):
    """Tokenize text, parsing control tokens such as <|im_start|> as special."""
    return llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)


def tokenize_all(llm, prompts, add_bos):
    """Tokenize every prompt text and every text+continuation.

    Returns a list (one entry per prompt) of (prompt_tokens, [label_tokens...]).
    """
    result = []
    for prompt in prompts:
        text = prompt["text"]
        prompt_tokens = tokenize(llm, text, add_bos)
        label_tokens = [tokenize(llm, text + c, add_bos) for c in prompt["continuations"]]
        result.append((prompt_tokens, label_tokens))
    return result


def load_model(model_path, n_ctx, threads):
    """Load the model with a context big enough for the longest sequence.

    n_batch and n_ubatch equal n_ctx so that every sequence is decoded in a
    single forward pass.
    """
    return Llama(
        model_path=str(model_path),
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_ubatch=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=True,
        seed=SEED,
        verbose=False,
    )


def log_softmax(logits):
    """Natural-log softmax of one row of logits, computed in float64."""
    row = np.asarray(logits, dtype=np.float64)
    shifted = row - row.max()
    return shifted - math.log(np.exp(shifted).sum())


def continuation_logprobs(llm, tokens, start):
    """Evaluate `tokens` from scratch; return log P(tokens[i] | tokens[:i]) for i >= start."""
    if start < 1:
        raise ValueError("continuation starts at token 0: nothing to condition on")
    llm.reset()
    llm.eval(tokens)
    return [float(log_softmax(llm.scores[i - 1])[tokens[i]]) for i in range(start, len(tokens))]


def score_prompt(llm, prompt, prompt_tokens, label_tokens):
    """Score one prompt: per-label log-probs, renormalised distribution, summary."""
    labels = []
    for label, tokens in zip(prompt["labels"], label_tokens):
        start = common_prefix_len(prompt_tokens, tokens)
        token_logprobs = continuation_logprobs(llm, tokens, start)
        labels.append(
            {
                "label": label,
                "tokens": tokens,
                "continuation_start": start,
                "token_logprobs": token_logprobs,
                "logprob": sum(token_logprobs),
            }
        )
    probs = [math.exp(entry["logprob"]) for entry in labels]
    label_mass = sum(probs)
    distribution = [p / label_mass for p in probs]
    expected = sum(p * float(label) for p, label in zip(distribution, prompt["labels"]))
    argmax = prompt["labels"][int(np.argmax(distribution))]
    return {
        "id": prompt["id"],
        "prompt_tokens": prompt_tokens,
        "labels": labels,
        "label_mass": label_mass,
        "distribution": distribution,
        "expected_score": expected,
        "argmax_label": argmax,
    }


def to_json(value):
    """Pretty-print JSON but keep lists of numbers on one line (small, diffable)."""
    text = json.dumps(value, indent=1)
    return re.sub(
        r"\[\s*([-0-9.eE+,\s]+?)\s*\]",
        lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
        text,
    )


def main():
    """Tokenize, size the context, score every prompt and write the JSON."""
    args = parse_args()
    spec = json.loads(args.prompts.read_text())
    model_path = args.model or REPO_ROOT / "models" / spec["model"]
    prompts = spec["prompts"]

    vocab = Llama(model_path=str(model_path), vocab_only=True, n_ctx=64, verbose=False)
    add_bos = wants_bos(vocab)
    tokenized = tokenize_all(vocab, prompts, add_bos)
    del vocab

    longest = max(len(t) for _, labels in tokenized for t in labels)
    n_ctx = max(64, -(-longest // 64) * 64)
    llm = load_model(model_path, n_ctx, args.threads)

    results = []
    for prompt, (prompt_tokens, label_tokens) in zip(prompts, tokenized):
        result = score_prompt(llm, prompt, prompt_tokens, label_tokens)
        results.append(result)
        print(
            f"{result['id']}: expected={result['expected_score']:.4f} "
            f"argmax={result['argmax_label']} mass={result['label_mass']:.4g}",
            file=sys.stderr,
        )

    output = {
        "llama_cpp_version": llama_cpp.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "model": model_path.name,
        "model_sha256": sha256_of(model_path),
        "add_bos": add_bos,
        "n_ctx": n_ctx,
        "n_threads": args.threads,
        "seed": SEED,
        "prompts": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(to_json(output) + "\n")
    print(f"wrote {args.out} ({len(results)} prompts)", file=sys.stderr)


if __name__ == "__main__":
    main()
