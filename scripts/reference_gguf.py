#!/usr/bin/env python3
"""Independent GGUF files for checking our GGUF export: a Hugging Face base model, a PEFT LoRA
adapter and the merged model written with the `gguf` package (numpy only, no Rust), following
llama.cpp's conventions. llama.cpp then evaluates them (scripts/check_gguf_export.py) against
transformers + peft numbers (tests/fixtures/peft_reference.json), which checks the conventions
themselves; our Rust exporter can be compared with these files tensor by tensor.

Run with the .venv-peft interpreter (scripts/setup_peft_env.sh):

  python scripts/reference_gguf.py base    HF_DIR OUT.gguf
  python scripts/reference_gguf.py adapter HF_DIR ADAPTER_DIR OUT.gguf
  python scripts/reference_gguf.py merged  HF_DIR ADAPTER_DIR OUT.gguf

Conventions (llama.cpp's convert_hf_to_gguf.py / convert_lora_to_gguf.py and llama-adapter.cpp):
- llama q/k rows are reordered per head from Hugging Face's rotate-halves order to the
  adjacent-pair order llama.cpp's llama RoPE uses (row 2j <- j, 2j+1 <- j + head_dim/2); qwen2
  runs NeoX RoPE in llama.cpp and keeps Hugging Face's order.
- adapter tensors are `<base tensor>.lora_a` [r, in] and `.lora_b` [out, r] (numpy shapes); lora_b
  of llama q/k gets the same row reordering; general.type = adapter, adapter.type = lora.
- llama.cpp has one adapter-wide alpha and scales each pair by alpha / r (r per tensor), or by 1
  when alpha is 0. To carry per-module ranks/alphas and rsLoRA exactly, this writer folds each
  module's PEFT scaling into lora_b and stores adapter.lora.alpha = 0.
- llama3 `rope_scaling` becomes a `rope_freqs.weight` tensor of per-frequency divisors.
"""

import json
import math
import os
import re
import sys

import gguf
import numpy as np
from safetensors.numpy import load_file

LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
PRE_TOKENIZER = {"llama": "smollm", "qwen2": "qwen2"}


def gguf_name(hf_name):
    if hf_name in GLOBAL_NAMES:
        return GLOBAL_NAMES[hf_name]
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", hf_name)
    if not m or m.group(2) not in LAYER_NAMES:
        raise SystemExit(f"no GGUF name for tensor {hf_name}")
    return f"blk.{m.group(1)}.{LAYER_NAMES[m.group(2)]}"


def load_config(hf_dir):
    with open(os.path.join(hf_dir, "config.json")) as f:
        return json.load(f)


def load_tensors(hf_dir):
    index = os.path.join(hf_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors = {}
    for name in files:
        # safetensors.numpy has no bfloat16: read every file through torch-free bytes.
        tensors.update(read_safetensors_f32(os.path.join(hf_dir, name)))
    return tensors


def read_safetensors_f32(path):
    """Reads a safetensors file into float32 numpy arrays (f32, f16 and bf16 storage)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        chunk = body[start:end]
        if info["dtype"] == "F32":
            arr = np.frombuffer(chunk, dtype="<f4")
        elif info["dtype"] == "F16":
            arr = np.frombuffer(chunk, dtype="<f2").astype(np.float32)
        elif info["dtype"] == "BF16":
            arr = (np.frombuffer(chunk, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit(f"{path}: {name} has unsupported dtype {info['dtype']}")
        out[name] = arr.reshape(info["shape"]).astype(np.float32)
    return out


def head_dim(config):
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


def halves_to_pairs(rows, n_heads):
    """Reorders the rows of each head from rotate-halves to adjacent pairs: 2j <- j, 2j+1 <- j + d/2."""
    d = rows.shape[0] // n_heads
    return rows.reshape(n_heads, 2, d // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def to_llama_cpp_rows(config, gguf_tensor_name, rows):
    """Applies the q/k row reordering where llama.cpp needs it (llama only)."""
    if config["model_type"] != "llama":
        return rows
    if gguf_tensor_name.endswith("attn_q.weight"):
        return halves_to_pairs(rows, config["num_attention_heads"])
    if gguf_tensor_name.endswith("attn_k.weight"):
        return halves_to_pairs(rows, config["num_key_value_heads"])
    return rows


def llama3_rope_factors(config):
    """Per-frequency divisors of llama3 rope_scaling (what llama.cpp reads from rope_freqs)."""
    s = config["rope_scaling"]
    d = head_dim(config)
    old_ctx = s["original_max_position_embeddings"]
    low_wavelen = old_ctx / s["low_freq_factor"]
    high_wavelen = old_ctx / s["high_freq_factor"]
    factors = []
    for i in range(d // 2):
        freq = 1.0 / config["rope_theta"] ** (2 * i / d)
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(s["factor"])
        else:
            smooth = (old_ctx / wavelen - s["low_freq_factor"]) / (s["high_freq_factor"] - s["low_freq_factor"])
            factors.append(1.0 / ((1 - smooth) / s["factor"] + smooth))
    return np.array(factors, dtype=np.float32)


def add_tokenizer(writer, hf_dir, config):
    with open(os.path.join(hf_dir, "tokenizer.json")) as f:
        tok = json.load(f)
    vocab = tok["model"]["vocab"]
    size = config["vocab_size"]
    tokens = [None] * size
    types = [gguf.TokenType.NORMAL] * size
    for text, i in vocab.items():
        tokens[i] = text
    for added in tok.get("added_tokens", []):
        tokens[added["id"]] = added["content"]
        if added.get("special"):
            types[added["id"]] = gguf.TokenType.CONTROL
    if any(t is None for t in tokens):
        raise SystemExit(f"{hf_dir}: tokenizer.json leaves ids without a token")
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(PRE_TOKENIZER[config["model_type"]])
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_token_types(types)
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])
    writer.add_add_bos_token(False)
    with open(os.path.join(hf_dir, "tokenizer_config.json")) as f:
        template = json.load(f).get("chat_template")
    if template:
        writer.add_chat_template(template)


def add_model_metadata(writer, config):
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(config["rope_theta"])
    writer.add_rope_dimension_count(head_dim(config))
    writer.add_vocab_size(config["vocab_size"])


def lora_deltas(config, adapter_dir):
    """PEFT pairs keyed by GGUF base tensor name: (A [r, in], B [out, r] scaled by the module's
    PEFT scaling), with peft's own rank/alpha resolution read back from a PeftConfig."""
    from peft import LoraConfig
    from peft.utils.other import get_pattern_key

    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        cfg = LoraConfig(**{k: v for k, v in json.load(f).items() if k in LoraConfig.__dataclass_fields__})
    stored = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    pairs = {}
    for key, a in stored.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key[len("base_model.model.") : -len(".lora_A.weight")]
        b = stored[key.replace(".lora_A.", ".lora_B.")]
        r = cfg.rank_pattern.get(get_pattern_key(cfg.rank_pattern.keys(), module), cfg.r)
        alpha = cfg.alpha_pattern.get(get_pattern_key(cfg.alpha_pattern.keys(), module), cfg.lora_alpha)
        if r != a.shape[0]:
            raise SystemExit(f"{key}: rank {a.shape[0]} in the file, {r} by the config")
        scaling = alpha / math.sqrt(r) if cfg.use_rslora else alpha / r
        name = gguf_name(module + ".weight")
        pairs[name] = (a.astype(np.float32), (b * scaling).astype(np.float32))
    return pairs


def write_base(hf_dir, out, adapter_dir=None):
    config = load_config(hf_dir)
    tensors = load_tensors(hf_dir)
    deltas = lora_deltas(config, adapter_dir) if adapter_dir else {}
    writer = gguf.GGUFWriter(out, config["model_type"])
    writer.add_name("debias-guard reference GGUF" + (" (merged)" if adapter_dir else ""))
    add_model_metadata(writer, config)
    add_tokenizer(writer, hf_dir, config)
    for hf_name, value in tensors.items():
        name = gguf_name(hf_name)
        if name in deltas:
            a, b = deltas.pop(name)
            value = value + b @ a
        writer.add_tensor(name, to_llama_cpp_rows(config, name, value))
    if deltas:
        raise SystemExit(f"adapter modules with no base tensor: {sorted(deltas)}")
    if config.get("rope_scaling"):
        writer.add_tensor("rope_freqs.weight", llama3_rope_factors(config))
    finish(writer)


def write_adapter(hf_dir, adapter_dir, out):
    config = load_config(hf_dir)
    writer = gguf.GGUFWriter(out, config["model_type"])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 0.0)  # scaling already folded into lora_b
    for name, (a, b) in lora_deltas(config, adapter_dir).items():
        writer.add_tensor(f"{name}.lora_a", a)
        writer.add_tensor(f"{name}.lora_b", to_llama_cpp_rows(config, name, b))
    finish(writer)


def finish(writer):
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main():
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "base":
        write_base(args[1], args[2])
    elif len(args) == 4 and args[0] == "adapter":
        write_adapter(args[1], args[2], args[3])
    elif len(args) == 4 and args[0] == "merged":
        write_base(args[1], args[3], adapter_dir=args[2])
    else:
        raise SystemExit(__doc__)
    print(f"wrote {args[-1]}")


if __name__ == "__main__":
    main()
