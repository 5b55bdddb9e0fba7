"""Synthetic Hugging Face checkpoints (random weights) for tests and benchmarks.

Only numpy and safetensors: writes ``config.json`` (complete enough for transformers to load it),
``model.safetensors`` (or shards with an index), a small hand-made byte-level BPE
``tokenizer.json`` and ``tokenizer_config.json``. Weights are drawn with a fixed seed, so a
checkpoint is the same on every machine.

    python tools/synth_checkpoint.py OUT_DIR --arch qwen3moe --hidden 1024 --layers 4 ...
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Dict, Optional

import numpy as np

ARCHS = {
    # name: (HF class, model_type, moe style, qk_norm, qkv bias)
    "llama": ("LlamaForCausalLM", "llama", None, False, False),
    "mistral": ("MistralForCausalLM", "mistral", None, False, False),
    "mixtral": ("MixtralForCausalLM", "mixtral", "mixtral", False, False),
    "qwen2": ("Qwen2ForCausalLM", "qwen2", None, False, True),
    "qwen3": ("Qwen3ForCausalLM", "qwen3", None, True, False),
    "qwen3moe": ("Qwen3MoeForCausalLM", "qwen3_moe", "qwen", True, False),
    "qwen2moe": ("Qwen2MoeForCausalLM", "qwen2_moe", "qwen", False, True),
}

QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
                r"|\s+(?!\S)|\s+")


def _bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's byte -> printable character table used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def make_tokenizer(out_dir: str, n_vocab: int, style: str = "qwen2", merges_as_pairs: bool = False,
                   pre_regex: Optional[str] = None) -> Dict[str, int]:
    """A byte-level BPE tokenizer with 256 byte tokens, some merges and 3 special tokens.

    ``style``: "qwen2" (Qwen split regex), "llama-bpe" (Llama-3 regex, whole words first), "smaug-bpe"
    (Llama-3 regex, merges always), "gpt-2" (plain ByteLevel).
    Returns the special token ids."""
    b2u = _bytes_to_unicode()
    vocab = {b2u[b]: i for i, b in enumerate(range(256))}
    merges = []
    words = ["the", "and", "to", "of", "in", "is", "it", "he", "on", "at", "er", "an", "re", "th", "ou", "ing"]
    for w in words:
        for prefix in ("", "\u0120"):
            cur = prefix + w[0]
            if cur not in vocab:
                a, b = prefix, w[0]
                if a:
                    merges.append((a, b))
                    vocab[cur] = len(vocab)
            for ch in w[1:]:
                nxt = cur + ch
                if nxt not in vocab:
                    merges.append((cur, ch))
                    vocab[nxt] = len(vocab)
                cur = nxt
    n_special = 3
    if len(vocab) + n_special > n_vocab:
        raise ValueError(f"n_vocab {n_vocab} too small for the tokenizer ({len(vocab) + n_special})")
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    added = []
    for j, s in enumerate(specials):
        added.append({"id": len(vocab) + j, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True})
    if style == "gpt-2":
        pre = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    else:
        rx = pre_regex or (QWEN2_REGEX if style == "qwen2" else LLAMA3_REGEX)
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": rx}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        ]}
    tj = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None, "pre_tokenizer": pre,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": style == "llama-bpe",  # as Llama-3's tokenizer.json has it
                  "vocab": vocab,
                  "merges": [list(m) for m in merges] if merges_as_pairs else [" ".join(m) for m in merges]},
    }
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    ids = {"bos": len(vocab), "eos": len(vocab) + 2, "pad": len(vocab)}
    tc = {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>", "add_bos_token": False, "model_max_length": 4096,
        "chat_template": "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}",
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tc, f)
    return ids


def _to_dtype(x: np.ndarray, dtype: str):
    """(array, safetensors dtype) for numpy's save_file; BF16 is written by hand (numpy has none)."""
    if dtype == "f32":
        return x.astype(np.float32)
    if dtype == "f16":
        return x.astype(np.float16)
    u = x.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even


_ST_DTYPE = {"f32": ("F32", 4), "f16": ("F16", 2), "bf16": ("BF16", 2)}


def _save_safetensors(path: str, tensors: Dict[str, "Lazy"], dtype: str) -> None:
    """Write a safetensors file tensor by tensor (each is generated, converted, written, dropped),
    so a checkpoint of several GB never sits in memory."""
    st, size = _ST_DTYPE[dtype]
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, lz in tensors.items():
        n = size * int(np.prod(lz.shape, dtype=np.int64))
        header[name] = {"dtype": st, "shape": list(lz.shape), "data_offsets": [offset, offset + n]}
        offset += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for lz in tensors.values():
            f.write(np.ascontiguousarray(_to_dtype(lz(), dtype)).tobytes())


class Lazy:
    """A tensor drawn from the shared generator when it is written (so order = file order)."""

    def __init__(self, shape, fn):
        self.shape, self.fn = tuple(shape), fn

    def __call__(self):
        return self.fn()


def make_checkpoint(out_dir: str, arch: str = "qwen3moe", hidden: int = 256, layers: int = 2, heads: int = 4,
                    kv_heads: int = 2, head_dim: Optional[int] = None, ff: int = 512, experts: int = 4, top_k: int = 2,
                    moe_ff: int = 256, shared_ff: int = 512, vocab: int = 320, dtype: str = "bf16",
                    tied: Optional[bool] = None, fused_experts: bool = False, shards: int = 1, seed: int = 0,
                    scale: float = 0.02, tokenizer_style: Optional[str] = None, rope_scaling: Optional[dict] = None,
                    spell_new: bool = False) -> str:
    """Write a random checkpoint of ``arch`` into ``out_dir``; returns out_dir."""
    hf_class, model_type, moe, qk_norm, qkv_bias = ARCHS[arch]
    os.makedirs(out_dir, exist_ok=True)
    hd = head_dim or hidden // heads
    if tied is None:
        tied = arch in ("qwen3", "qwen3moe")
    if arch == "qwen2moe":
        tied = False
    rng = np.random.default_rng(seed)

    def w(*shape, s=scale):
        return Lazy(shape, lambda: rng.standard_normal(shape, dtype=np.float32) * np.float32(s))

    def norm(n):
        return Lazy((n,), lambda: np.float32(1.0) + np.float32(0.1) * rng.standard_normal(n, dtype=np.float32))

    t: Dict[str, Lazy] = {"model.embed_tokens.weight": w(vocab, hidden, s=0.5), "model.norm.weight": norm(hidden)}
    if not tied:
        t["lm_head.weight"] = w(vocab, hidden, s=0.1)
    for i in range(layers):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = norm(hidden)
        t[p + "post_attention_layernorm.weight"] = norm(hidden)
        t[p + "self_attn.q_proj.weight"] = w(heads * hd, hidden, s=0.1)
        t[p + "self_attn.k_proj.weight"] = w(kv_heads * hd, hidden, s=0.1)
        t[p + "self_attn.v_proj.weight"] = w(kv_heads * hd, hidden, s=0.1)
        t[p + "self_attn.o_proj.weight"] = w(hidden, heads * hd, s=0.1)
        if qkv_bias:
            t[p + "self_attn.q_proj.bias"] = w(heads * hd, s=0.1)
            t[p + "self_attn.k_proj.bias"] = w(kv_heads * hd, s=0.1)
            t[p + "self_attn.v_proj.bias"] = w(kv_heads * hd, s=0.1)
        if qk_norm:
            t[p + "self_attn.q_norm.weight"] = norm(hd)
            t[p + "self_attn.k_norm.weight"] = norm(hd)
        if moe is None:
            t[p + "mlp.gate_proj.weight"] = w(ff, hidden, s=0.1)
            t[p + "mlp.up_proj.weight"] = w(ff, hidden, s=0.1)
            t[p + "mlp.down_proj.weight"] = w(hidden, ff, s=0.1)
        elif moe == "mixtral":
            t[p + "block_sparse_moe.gate.weight"] = w(experts, hidden, s=0.5)
            for e in range(experts):
                q = f"{p}block_sparse_moe.experts.{e}."
                t[q + "w1.weight"] = w(ff, hidden, s=0.1)
                t[q + "w3.weight"] = w(ff, hidden, s=0.1)
                t[q + "w2.weight"] = w(hidden, ff, s=0.1)
        else:
            t[p + "mlp.gate.weight"] = w(experts, hidden, s=0.5)
            if fused_experts:
                t[p + "mlp.experts.gate_up_proj"] = w(experts, 2 * moe_ff, hidden, s=0.1)
                t[p + "mlp.experts.down_proj"] = w(experts, hidden, moe_ff, s=0.1)
            else:
                for e in range(experts):
                    q = f"{p}mlp.experts.{e}."
                    t[q + "gate_proj.weight"] = w(moe_ff, hidden, s=0.1)
                    t[q + "up_proj.weight"] = w(moe_ff, hidden, s=0.1)
                    t[q + "down_proj.weight"] = w(hidden, moe_ff, s=0.1)
            if arch == "qwen2moe":
                t[p + "mlp.shared_expert.gate_proj.weight"] = w(shared_ff, hidden, s=0.1)
                t[p + "mlp.shared_expert.up_proj.weight"] = w(shared_ff, hidden, s=0.1)
                t[p + "mlp.shared_expert.down_proj.weight"] = w(hidden, shared_ff, s=0.1)
                t[p + "mlp.shared_expert_gate.weight"] = w(1, hidden, s=0.1)

    style = tokenizer_style or ("llama-bpe" if arch in ("llama", "mistral", "mixtral") else "qwen2")
    ids = make_tokenizer(out_dir, vocab, style)
    torch_dtype = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[dtype]
    cfg = {
        "architectures": [hf_class], "model_type": model_type, "hidden_size": hidden, "intermediate_size": ff,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "head_dim": hd, "rms_norm_eps": 1e-6, "max_position_embeddings": 4096, "vocab_size": vocab,
        "tie_word_embeddings": tied, "hidden_act": "silu", "initializer_range": 0.02, "use_cache": True,
        "bos_token_id": ids["bos"], "eos_token_id": ids["eos"], "attention_dropout": 0.0,
    }
    if spell_new:
        cfg["dtype"] = torch_dtype
        cfg["rope_parameters"] = dict({"rope_theta": 10000.0, "rope_type": "default"}, **(rope_scaling or {}))
    else:
        cfg["torch_dtype"] = torch_dtype
        cfg["rope_theta"] = 10000.0
        if rope_scaling:
            cfg["rope_scaling"] = rope_scaling
    if arch in ("llama", "mistral", "mixtral", "qwen3", "qwen3moe"):
        cfg["attention_bias"] = False
    if arch == "llama":
        cfg["mlp_bias"] = False
    if arch in ("mistral", "mixtral"):
        cfg["sliding_window"] = None
    if arch == "mixtral":
        cfg["num_local_experts" if not spell_new else "num_local_experts"] = experts
        cfg["num_experts_per_tok"] = top_k
        cfg["router_aux_loss_coef"] = 0.0
        cfg["output_router_logits"] = False
    if moe == "qwen":
        cfg["num_local_experts" if spell_new else "num_experts"] = experts
        if spell_new:
            cfg["num_experts"] = experts  # transformers reads this name; the converter accepts both
        cfg["num_experts_per_tok"] = top_k
        cfg["moe_intermediate_size"] = moe_ff
        cfg["decoder_sparse_step"] = 1
        cfg["mlp_only_layers"] = []
        cfg["norm_topk_prob"] = arch == "qwen3moe"
        cfg["router_aux_loss_coef"] = 0.0
        cfg["output_router_logits"] = False
    if arch == "qwen2moe":
        cfg["shared_expert_intermediate_size"] = shared_ff
        cfg["qkv_bias"] = True
    if arch in ("qwen2", "qwen3", "qwen3moe", "qwen2moe"):
        cfg["use_sliding_window"] = False
        cfg["sliding_window"] = None
        cfg["max_window_layers"] = layers
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)

    conv = t
    names = list(conv)
    if shards <= 1:
        _save_safetensors(os.path.join(out_dir, "model.safetensors"), conv, dtype)
    else:
        per = (len(names) + shards - 1) // shards
        weight_map = {}
        for s in range(shards):
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: conv[n] for n in names[s * per:(s + 1) * per]}
            _save_safetensors(os.path.join(out_dir, fname), part, dtype)
            weight_map.update({n: fname for n in part})
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f)
    return out_dir


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--arch", default="qwen3moe", choices=sorted(ARCHS))
    for name, default in (("hidden", 256), ("layers", 2), ("heads", 4), ("kv-heads", 2), ("ff", 512), ("experts", 4),
                          ("top-k", 2), ("moe-ff", 256), ("shared-ff", 512), ("vocab", 320), ("shards", 1), ("seed", 0)):
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--head-dim", type=int, default=None)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"])
    args = ap.parse_args(argv)
    make_checkpoint(args.out_dir, args.arch, args.hidden, args.layers, args.heads, args.kv_heads, args.head_dim,
                    args.ff, args.experts, args.top_k, args.moe_ff, args.shared_ff, args.vocab, args.dtype,
                    shards=args.shards, seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
