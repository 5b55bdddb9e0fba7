"""What a model costs before any weight is read: ``qtoolkit plan``.

From ``config.json`` alone the converter's architecture code knows every GGUF tensor's name and
shape (:meth:`DecoderArch.plan_from_config`), and the preset rules of :mod:`qtoolkit.presets`
(through :func:`qtoolkit.converter.plan.tensor_types`, the converter's own planning step) give
every tensor's type. So the tensor data of each preset is known to the byte; the rest of the file
(metadata, tensor table, alignment) is exact when the folder has its ``tokenizer.json`` and an
estimate of a few megabytes otherwise.

From the same shapes: parameters in total and per token (a token runs ``top-k`` of each layer's
experts), the KV cache at a context length, and a ceiling on decode speed: every token reads all
always-active weights and ``k / n_expert`` of each expert tensor once, so memory bandwidth divided
by those bytes bounds tokens per second from above.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from .converter.archs import get_arch
from .converter.hfconfig import HFConfig
from .converter.plan import tensor_types
from .converter.source import model_metadata
from .converter.vocab import load_vocab
from .errors import QtkFileNotFoundError, QtkValueError
from .quants import QuantType, type_info
from .io.gguf_writer import file_layout
from .presets import PRESETS, TypeOptions, file_order, get_preset

# -- the model's shape ----------------------------------------------------------------------


@dataclass
class ModelShape:
    """A model as its config describes it: architecture, output tensors (names, shapes), metadata."""

    source: str
    cfg: Any
    arch: Any
    tensors: List[Any]                  # converter OutTensors, in file order
    metadata: Optional[List[Any]]       # exact GGUF metadata when the tokenizer was available
    name: str

    @property
    def n_expert(self) -> int:
        return self.arch.n_expert

    @property
    def n_expert_used(self) -> int:
        return self.arch.n_expert_used

    @property
    def tied(self) -> bool:
        return not any(t.name == "output.weight" for t in self.tensors)


def is_expert_tensor(name: str, ne: Sequence[int], n_expert: int) -> bool:
    """A stacked routed-expert tensor (``blk.N.ffn_*_exps.weight``, ne[2] = n_expert)."""
    return n_expert > 1 and "_exps." in name and len(ne) == 3 and ne[2] == n_expert


def load_shape(path: str) -> ModelShape:
    """A model folder (``config.json``, optional ``tokenizer.json``) or a ``config.json`` file."""
    if os.path.isdir(path):
        cfg = HFConfig.load(path)
        folder = path
    elif os.path.isfile(path):
        cfg = HFConfig.load_file(path)
        folder = os.path.dirname(os.path.abspath(path))
    else:
        raise QtkFileNotFoundError(f"{path}: no such model folder or config file")
    arch = get_arch(cfg)
    ap = arch.plan_from_config()
    order = {n: i for i, n in enumerate(file_order(t.name for t in ap.tensors))}
    tensors = sorted(ap.tensors, key=lambda t: order[t.name])
    metadata = None
    name = os.path.basename(os.path.normpath(folder)) or "model"
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "tokenizer.json")):
        vocab = load_vocab(path, arch.n_vocab, None, cfg.raw)
        metadata = model_metadata(name, arch, vocab, get_preset("F32").ftype)
    return ModelShape(path, cfg, arch, tensors, metadata, name)


def _estimated_metadata(shape: ModelShape) -> List[Any]:
    """The file's metadata with a stand-in tokenizer of the right size: byte-level BPE vocabularies
    average about 7 bytes per token and about 13 bytes per merge (Qwen2's 151,643 tokens, 151,387
    merges: 6.1 MB with their length fields). Used only when no tokenizer.json is at hand."""
    md = [("general.type", "model", 8, None), ("general.name", shape.name, 8, None),
          ("general.file_type", 0, 4, None), ("general.quantization_version", 2, 4, None)]
    md += [(k, v, t, None) for k, v, t in shape.arch.metadata()]
    n = shape.arch.n_vocab
    md += [("tokenizer.ggml.model", "gpt2", 8, None), ("tokenizer.ggml.pre", "qwen2", 8, None),
           ("tokenizer.ggml.tokens", ["x" * 7] * n, 9, 8), ("tokenizer.ggml.token_type", [1] * n, 9, 5),
           ("tokenizer.ggml.merges", ["x" * 13] * n, 9, 8),
           ("tokenizer.ggml.bos_token_id", 0, 4, None), ("tokenizer.ggml.eos_token_id", 0, 4, None),
           ("tokenizer.chat_template", "x" * 4096, 8, None)]
    return md


# -- costs of one type assignment -----------------------------------------------------------


def tensor_bytes(ne: Sequence[int], qtype: QuantType) -> int:
    info = type_info(qtype)
    n = 1
    for d in ne:
        n *= int(d)
    return n // info.block_size * info.type_size


def preset_types(shape: ModelShape, preset: str, has_imatrix: bool = False) -> Dict[str, QuantType]:
    """Every tensor's type under a preset: the converter's own planning step."""
    return tensor_types(shape.arch, shape.tensors, get_preset(preset), TypeOptions(has_imatrix=has_imatrix))


def costs(shape: ModelShape, types: Dict[str, QuantType]) -> Dict[str, Any]:
    """Bytes (tensor data, whole file), parameters and bytes read per token for one assignment."""
    rows = []
    elems = active_elems = data = per_token = 0
    for t in shape.tensors:
        n = t.n_elements
        b = tensor_bytes(t.ne, types[t.name])
        frac = 1.0
        if is_expert_tensor(t.name, t.ne, shape.n_expert):
            frac = shape.n_expert_used / shape.n_expert
        read = b * frac
        if t.name == "token_embd.weight" and not shape.tied:
            read = b / t.ne[1]   # an embedding lookup reads one row per token
        rows.append((t.name, tuple(t.ne), b))
        elems += n
        active_elems += n * frac
        data += b
        per_token += read
    md = shape.metadata if shape.metadata is not None else _estimated_metadata(shape)
    layout = file_layout(shape.arch.gguf_arch, md, rows)
    return {"tensor_bytes": data, "file_bytes": layout["file_bytes"], "header_bytes": layout["header_bytes"],
            "header_exact": shape.metadata is not None, "params_total": elems, "params_active": int(round(active_elems)),
            "bytes_per_token": int(round(per_token)), "bpw": 8.0 * data / elems}


def kv_cache_bytes(shape: ModelShape, ctx: int, kv_type: str = "F16") -> int:
    """llama.cpp's K and V caches for ``ctx`` positions (every layer, every KV head)."""
    q = QuantType[kv_type.upper()] if isinstance(kv_type, str) else QuantType(kv_type)
    a = shape.arch
    per_pos = a.n_layer * a.n_head_kv * a.head_dim * 2   # K and V, head_dim each
    info = type_info(q)
    return per_pos * ctx // info.block_size * info.type_size


# -- the report -----------------------------------------------------------------------------

REPORT_PRESETS = ["BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "IQ4_XS", "Q3_K_L", "Q3_K_M",
                  "Q3_K_S", "IQ3_M", "IQ3_XXS", "Q2_K", "IQ2_M", "IQ2_XXS", "IQ1_M"]
NEEDS_IMATRIX = {"IQ3_XXS", "IQ3_XS", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S", "Q2_K_S"}


def estimate(path: str, preset: Optional[str] = None, target_bpw: Optional[float] = None, ram: Optional[int] = None,
         bandwidth: Optional[float] = None, ctx: Optional[int] = None, kv_type: str = "F16",
         headroom: Optional[int] = None, presets: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Sizes, parameters, memory and a decode-speed ceiling from a model's config (see module doc).

    ``preset`` (default Q4_K_M) or ``target_bpw`` selects the assignment reported at the top level
    (``file_bytes`` ...); every preset in ``presets`` gets a row. ``ram`` (bytes): whether each fits
    with ``headroom`` (default 5 % of ram) left for the OS and llama.cpp's compute buffers, and the
    largest file that would. ``bandwidth``: GB/s (10^9 bytes) for the speed ceiling. ``ctx``:
    context length of the KV cache (default: the model's maximum)."""
    if preset is not None and target_bpw is not None:
        raise QtkValueError("give a preset or a target bpw, not both")
    shape = load_shape(path)
    if ctx is None:
        ctx = shape.cfg.int("max_position_embeddings", 4096)
    if not isinstance(ctx, int) or ctx < 1:
        raise QtkValueError(f"ctx must be a positive integer, got {ctx!r}")
    if target_bpw is not None and not 1.0 <= float(target_bpw) <= 32.0:
        raise QtkValueError(f"target bpw must lie between 1 and 32, got {target_bpw!r}")
    if bandwidth is not None and not bandwidth > 0:
        raise QtkValueError(f"bandwidth must be positive (GB/s), got {bandwidth!r}")
    kv = kv_cache_bytes(shape, ctx, kv_type)
    if headroom is None and ram is not None:
        headroom = int(0.05 * ram)

    def row(name: str, c: Dict[str, Any]) -> Dict[str, Any]:
        r = {"name": name, **c, "kv_bytes": kv, "ram_bytes": c["file_bytes"] + kv}
        if ram is not None:
            r["fits"] = r["ram_bytes"] + headroom <= ram
        if bandwidth is not None:
            r["tok_s_ceiling"] = bandwidth * 1e9 / c["bytes_per_token"]
            r["tok_s_ceiling_full_ctx"] = bandwidth * 1e9 / (c["bytes_per_token"] + kv)
        return r

    rows = []
    for p in presets or REPORT_PRESETS:
        rows.append({**row(p, costs(shape, preset_types(shape, p, has_imatrix=p in NEEDS_IMATRIX))),
                     "needs_imatrix": p in NEEDS_IMATRIX})

    if target_bpw is not None:
        # the allocator fills the tensor data up to this many bits per weight; the parameter and
        # per-token figures are those of Q4_K_M scaled to it (the types are chosen later, from weights)
        ref = costs(shape, preset_types(shape, "Q4_K_M"))
        data = int(float(target_bpw) * ref["params_total"] / 8)
        scale = data / ref["tensor_bytes"]
        sel = {**ref, "tensor_bytes": data, "file_bytes": ref["file_bytes"] - ref["tensor_bytes"] + data,
               "bytes_per_token": int(ref["bytes_per_token"] * scale), "bpw": float(target_bpw)}
        top = row(f"bpw {float(target_bpw):g}", sel)
    else:
        name = get_preset(preset or "Q4_K_M").name
        top = next((r for r in rows if r["name"] == name), None) or {
            **row(name, costs(shape, preset_types(shape, name, has_imatrix=name in NEEDS_IMATRIX))),
            "needs_imatrix": name in NEEDS_IMATRIX}

    a = shape.arch
    out: Dict[str, Any] = {
        "model": path, "architecture": a.gguf_arch, "hf_architecture": shape.cfg.architecture,
        "n_layer": a.n_layer, "n_embd": a.n_embd, "n_head": a.n_head, "n_head_kv": a.n_head_kv,
        "head_dim": a.head_dim, "n_vocab": a.n_vocab, "n_expert": a.n_expert, "n_expert_used": a.n_expert_used,
        "n_ff": a.n_ff_exp if a.n_expert else a.n_ff, "tied_embeddings": shape.tied, "n_tensors": len(shape.tensors),
        "ctx": ctx, "kv_type": kv_type.upper(), "ram": ram, "headroom": headroom, "bandwidth_gb_s": bandwidth,
        "selected": top["name"],
        **{k: top[k] for k in ("file_bytes", "tensor_bytes", "header_bytes", "header_exact", "params_total",
                               "params_active", "bytes_per_token", "bpw", "kv_bytes", "ram_bytes")},
        "presets": rows,
    }
    for k in ("fits", "tok_s_ceiling", "tok_s_ceiling_full_ctx"):
        if k in top:
            out[k] = top[k]
    if ram is not None:
        room = ram - headroom - kv - top["header_bytes"]
        out["max_file_bytes"] = max(0, ram - headroom - kv)
        out["max_bpw"] = max(0.0, 8.0 * room / top["params_total"])
    return out


def preset_names() -> List[str]:
    return list(PRESETS)
