#!/usr/bin/env python3
"""Reference logits from transformers + peft for Hugging Face base models and PEFT LoRA adapters.

Two modes (run with the .venv-peft interpreter, see scripts/setup_peft_env.sh):

  fixtures   python scripts/peft_reference.py --fixtures target/adapter-fixtures \
                 --out tests/fixtures/peft_reference.json
             Reads manifest.json written by `cargo run --release -p debias-guard-testkit --bin make_adapter_fixtures`,
             evaluates every base model without and every adapter with its LoRA weights, checks
             that peft adapted exactly the modules (with the rank and scaling) the manifest lists
             and that tokenizer.json encodes the case text to the manifest's ids, and writes the
             sha256 of every input file, the token ids, a few full logit rows and the
             next-token log-probability at every position.

  compare    python scripts/peft_reference.py --base BASE_DIR [--roundtrip ADAPTER_DIR] \
                 --engine-logits ENGINE.json [--atol 1e-3 --rtol 1e-3]
             Evaluates BASE_DIR (with the PEFT adapter in ADAPTER_DIR when given; BASE_DIR may
             then be omitted if adapter_config.json's base_model_name_or_path is a folder) on the
             tokens of ENGINE.json and compares with its logits. ENGINE.json holds
             {"tokens": [ids], "logits": [[vocab floats] per row], "positions": [row indices]}
             where "positions" is optional (default: every position 0..len(tokens)-1).
             Exits 1 when any |ours - ref| > atol + rtol * |ref|.
"""

import argparse
import hashlib
import json
import math
import os
import re
import sys

import torch
import peft
import transformers
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

# Rows of full logits kept in the fixture (first, middle, last of the 12-token cases).
DEFAULT_ROWS = (0, 6, 11)
# Significant digits kept for fixture floats (f32 carries about 7).
DIGITS = 7


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def folder_hashes(root, rel):
    """sha256 of every file in root/rel, keyed by its path relative to root."""
    out = {}
    for name in sorted(os.listdir(os.path.join(root, rel))):
        path = os.path.join(root, rel, name)
        if os.path.isfile(path):
            out[f"{rel}/{name}"] = sha256(path)
    return out


def rounded(values):
    return [float(f"{v:.{DIGITS}g}") for v in values]


def compact_number_lists(text):
    """Puts every list of plain numbers on one line (indented JSON otherwise spends a line per float)."""
    return re.sub(
        r"\[\s*(-?[0-9][-0-9.eE+,\s]*?)\s*\]",
        lambda m: "[" + ",".join(x.strip() for x in m.group(1).split(",")) + "]",
        text,
    )


def load_base(base_dir):
    # transformers 5 names the argument `dtype`; 4.x called it `torch_dtype`.
    major = int(transformers.__version__.split(".")[0])
    kwargs = {"dtype": torch.float32} if major >= 5 else {"torch_dtype": torch.float32}
    model = AutoModelForCausalLM.from_pretrained(base_dir, **kwargs)
    return model.eval()


@torch.no_grad()
def forward_logits(model, tokens):
    ids = torch.tensor([tokens], dtype=torch.long)
    return model(input_ids=ids).logits[0].to(torch.float32)


def next_token_logprobs(logits, tokens):
    logp = torch.log_softmax(logits.double(), dim=-1)
    return [logp[i, tokens[i + 1]].item() for i in range(len(tokens) - 1)]


def sanity_check(name, logits):
    """Fails on NaN/inf and on nearly flat or nearly one-hot rows (useless as a reference)."""
    if not torch.isfinite(logits).all():
        raise SystemExit(f"{name}: non-finite logits")
    std = logits.std(dim=-1)
    probs = torch.softmax(logits.double(), dim=-1)
    top = probs.max(dim=-1).values
    if std.min().item() < 0.1 or top.max().item() > 0.99:
        raise SystemExit(f"{name}: degenerate logits (row std min {std.min():.3g}, top prob max {top.max():.3g})")
    return {"row_std_min": std.min().item(), "top_prob_max": top.max().item()}


def llama3_inv_freq(config):
    """Expected inverse RoPE frequencies with llama3 scaling, computed here from the formula."""
    scaling = config["rope_scaling"]
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    base = config["rope_theta"]
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_ctx = scaling["original_max_position_embeddings"]
    out = []
    for i in range(head_dim // 2):
        freq = 1.0 / base ** (2 * i / head_dim)
        wavelen = 2 * math.pi / freq
        if wavelen < old_ctx / high:
            out.append(freq)
        elif wavelen > old_ctx / low:
            out.append(freq / factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append((1 - smooth) * freq / factor + smooth * freq)
    return out


def check_rope(name, model, base_dir):
    """Confirms transformers applied the llama3 rope_scaling block (it must not be ignored)."""
    with open(os.path.join(base_dir, "config.json")) as f:
        config = json.load(f)
    if not config.get("rope_scaling"):
        return
    got = model.model.rotary_emb.inv_freq.double().tolist()
    want = llama3_inv_freq(config)
    diff = max(abs(a - b) / b for a, b in zip(got, want))
    if len(got) != len(want) or diff > 1e-5:
        raise SystemExit(f"{name}: transformers' inv_freq {got} differs from llama3 scaling {want}")


def check_tokens(name, base_dir, text, tokens):
    tok = AutoTokenizer.from_pretrained(base_dir)
    got = tok(text, add_special_tokens=False)["input_ids"]
    if got != tokens:
        raise SystemExit(f"{name}: tokenizer.json encodes the case text to {got}, manifest says {tokens}")


def apply_adapter(model, adapter_dir):
    """Wraps model with the adapter and checks that every stored tensor landed in a module."""
    wrapped = PeftModel.from_pretrained(model, adapter_dir).eval()
    stored = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    state = wrapped.state_dict()
    for key, value in stored.items():
        live_key = key.replace(".lora_A.weight", ".lora_A.default.weight").replace(
            ".lora_B.weight", ".lora_B.default.weight"
        )
        if live_key not in state:
            raise SystemExit(f"{adapter_dir}: {key} was not loaded by peft (no module {live_key})")
        if not torch.equal(state[live_key], value):
            raise SystemExit(f"{adapter_dir}: {key} differs after loading")
    live = [k for k in state if ".lora_A.default.weight" in k]
    if len(live) * 2 != len(stored):
        raise SystemExit(f"{adapter_dir}: peft adapted {len(live)} modules, file holds {len(stored) // 2}")
    return wrapped


def check_modules(name, wrapped, expected):
    """Checks peft's resolved targets, ranks and scalings against the generator's manifest."""
    inner = wrapped.base_model.model
    got = {}
    for module_name, module in inner.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            got[module_name] = (module.r["default"], module.scaling["default"])
    want = {m["module"]: (m["r"], m["scaling"]) for m in expected}
    if set(got) != set(want):
        raise SystemExit(f"{name}: peft adapted {sorted(got)}, manifest lists {sorted(want)}")
    for key, (r, scaling) in want.items():
        if got[key][0] != r or abs(got[key][1] - scaling) > 1e-9:
            raise SystemExit(f"{name}: {key} has r/scaling {got[key]} in peft, manifest says {(r, scaling)}")


def build_fixture(args):
    root = args.fixtures
    with open(os.path.join(root, "manifest.json")) as f:
        manifest = json.load(f)
    rows = [int(r) for r in args.rows.split(",")]
    out = {
        "generator": "cargo run --release -p debias-guard-testkit --bin make_adapter_fixtures (debias_guard_testkit::hf)",
        "reference": "scripts/peft_reference.py",
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
        "rows": rows,
        "bases": {},
        "adapters": {},
    }
    base_logits = {}
    for name, case in manifest["bases"].items():
        base_dir = os.path.join(root, case["dir"])
        tokens = case["tokens"]
        if max(rows) >= len(tokens):
            raise SystemExit(f"{name}: row {max(rows)} is outside the {len(tokens)} tokens")
        check_tokens(name, base_dir, case["text"], tokens)
        model = load_base(base_dir)
        check_rope(name, model, base_dir)
        logits = forward_logits(model, tokens)
        stats = sanity_check(name, logits)
        base_logits[name] = logits
        out["bases"][name] = {
            "dir": case["dir"],
            "files": folder_hashes(root, case["dir"]),
            "tokens": tokens,
            "logits": [rounded(logits[r].tolist()) for r in rows],
            "next_token_logprobs": rounded(next_token_logprobs(logits, tokens)),
        }
        print(f"base {name}: {len(tokens)} tokens, vocab {logits.shape[1]}, "
              f"row std min {stats['row_std_min']:.3f}, top prob max {stats['top_prob_max']:.3f}")
    for name, case in manifest["adapters"].items():
        base = manifest["bases"][case["base"]]
        tokens = base["tokens"]
        model = load_base(os.path.join(root, base["dir"]))
        wrapped = apply_adapter(model, os.path.join(root, case["dir"]))
        check_modules(name, wrapped, case["modules"])
        logits = forward_logits(wrapped, tokens)
        sanity_check(name, logits)
        delta = (logits - base_logits[case["base"]]).abs().max().item()
        if delta < 1e-2:
            raise SystemExit(f"{name}: the adapter barely changes the logits (max {delta:.3g})")
        files = folder_hashes(root, case["dir"])
        files.update(out["bases"][case["base"]]["files"])
        out["adapters"][name] = {
            "dir": case["dir"],
            "base": case["base"],
            "files": dict(sorted(files.items())),
            "logits": [rounded(logits[r].tolist()) for r in rows],
            "next_token_logprobs": rounded(next_token_logprobs(logits, tokens)),
            "max_abs_delta_vs_base": float(f"{delta:.4g}"),
        }
        print(f"adapter {name} on {case['base']}: {len(case['modules'])} modules, "
              f"max |logit change| vs base {delta:.3f}")
    text = compact_number_lists(json.dumps(out, indent=1)) + "\n"
    with open(args.out + ".partial", "w") as f:
        f.write(text)
    os.replace(args.out + ".partial", args.out)
    print(f"wrote {args.out} ({len(text) / 1024:.0f} KiB)")


def compare(args):
    with open(args.engine_logits) as f:
        ours = json.load(f)
    tokens = ours["tokens"]
    positions = ours.get("positions", list(range(len(tokens))))
    if len(positions) != len(ours["logits"]):
        raise SystemExit(f"{args.engine_logits}: {len(ours['logits'])} logit rows for {len(positions)} positions")
    base_dir = args.base
    if base_dir is None and args.roundtrip:
        with open(os.path.join(args.roundtrip, "adapter_config.json")) as f:
            base_dir = json.load(f).get("base_model_name_or_path")
    if not base_dir or not os.path.isdir(base_dir):
        raise SystemExit("no base model folder: pass --base DIR")
    model = load_base(base_dir)
    if args.roundtrip:
        model = apply_adapter(model, args.roundtrip)
    ref = forward_logits(model, tokens)
    worst_abs, worst_excess, where = 0.0, -math.inf, None
    for row, pos in zip(ours["logits"], positions):
        got = torch.tensor(row, dtype=torch.float32)
        if got.shape != ref[pos].shape:
            raise SystemExit(f"row for position {pos} has {got.shape[0]} logits, reference {ref.shape[1]}")
        diff = (got - ref[pos]).abs()
        excess = diff - (args.atol + args.rtol * ref[pos].abs())
        worst_abs = max(worst_abs, diff.max().item())
        i = int(excess.argmax())
        if excess[i].item() > worst_excess:
            worst_excess, where = excess[i].item(), (pos, i, got[i].item(), ref[pos][i].item())
    pos, tok, a, b = where
    rel = abs(a - b) / max(abs(b), 1e-12)
    label = f"adapter {args.roundtrip} on {base_dir}" if args.roundtrip else base_dir
    print(f"{label}: {len(positions)} rows, max |diff| {worst_abs:.3g}; "
          f"worst vs tolerance at position {pos} token {tok}: ours {a:.6g} ref {b:.6g} (rel {rel:.3g})")
    if worst_excess > 0:
        print(f"FAIL: beyond atol {args.atol} + rtol {args.rtol} * |ref|", file=sys.stderr)
        sys.exit(1)
    print("OK")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fixtures", help="folder written by the testkit binary make_adapter_fixtures")
    p.add_argument("--out", default="tests/fixtures/peft_reference.json")
    p.add_argument("--rows", default=",".join(map(str, DEFAULT_ROWS)), help="positions whose full logits are kept")
    p.add_argument("--base", help="Hugging Face base model folder (compare mode)")
    p.add_argument("--roundtrip", metavar="ADAPTER_DIR", help="PEFT adapter folder applied on --base")
    p.add_argument("--engine-logits", help="our engine's logits JSON (compare mode)")
    p.add_argument("--atol", type=float, default=1e-3)
    p.add_argument("--rtol", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.fixtures:
        build_fixture(args)
    elif args.engine_logits:
        compare(args)
    else:
        p.error("pass --fixtures DIR, or --engine-logits FILE with --base and/or --roundtrip")


if __name__ == "__main__":
    main()
