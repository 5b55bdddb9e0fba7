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
from .model.runner import RUN_OVERHEAD
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
             headroom: Optional[int] = None, presets: Optional[Sequence[str]] = None, disk: Optional[float] = None,
             eval_chunks: Optional[int] = None, eval_ctx: int = 512, threads: Optional[int] = None,
             gflops: Optional[float] = None) -> Dict[str, Any]:
    """Sizes, parameters, memory and a decode-speed ceiling from a model's config (see module doc).

    ``preset`` (default Q4_K_M) or ``target_bpw`` selects the assignment reported at the top level
    (``file_bytes`` ...); every preset in ``presets`` gets a row. ``ram`` (bytes): whether each fits
    with ``headroom`` (default 5 % of ram) left for the OS and llama.cpp's compute buffers, and the
    largest file that would. ``bandwidth``: GB/s (10^9 bytes) for the speed ceiling. ``ctx``:
    context length of the KV cache (default: the model's maximum).

    ``disk`` (GB/s) or ``eval_chunks``: also the time and memory of ``compare`` / ``imatrix`` /
    ``perplexity`` runs on ``eval_chunks`` (default 40) chunks of ``eval_ctx`` tokens
    (:func:`run_estimates`), computing at ``gflops`` (default: measured here on ``threads``)."""
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
    if disk is not None or eval_chunks is not None:
        if disk is not None and not disk > 0:
            raise QtkValueError(f"disk read speed must be positive (GB/s), got {disk!r}")
        qname = top["name"] if target_bpw is None else "Q4_K_M"
        qtypes = preset_types(shape, qname, has_imatrix=qname in NEEDS_IMATRIX)
        default = get_preset(qname).default
        rep = default.name if type_info(default).is_quantized else "Q8_0"
        n_chunks = eval_chunks or 40
        speed = {} if gflops else measured_speed(shape, n_chunks, eval_ctx, threads, rep)
        max_memory = int(0.5 * (ram - headroom)) if ram is not None else None
        out["runs"] = run_estimates(shape, qtypes, top["file_bytes"], n_chunks, eval_ctx, disk, speed, max_memory,
                                    gflops)
        out["runs"]["threads"] = threads
        out["runs"]["quant_kernel"] = rep
    return out


# -- the layer-major runs (compare, imatrix, perplexity) ----------------------------------------

_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def _layer_bytes(shape: ModelShape, types: Optional[Dict[str, QuantType]], elem_bytes: int) -> Dict[int, int]:
    """Bytes of each block, in ``types`` (a GGUF file) or at ``elem_bytes`` per weight (a checkpoint)."""
    out: Dict[int, int] = {}
    for t in shape.tensors:
        if not t.name.startswith("blk."):
            continue
        il = int(t.name.split(".")[1])
        b = tensor_bytes(t.ne, types[t.name]) if types is not None else t.n_elements * elem_bytes
        out[il] = out.get(il, 0) + b
    return out


def _run_flops(shape: ModelShape, tokens: int, ctx: int, params_active: int) -> float:
    """Floating-point operations of one model over ``tokens`` (chunks of ``ctx``): two per active
    weight and token, the causal attention's products, the head on the scored half."""
    a = shape.arch
    attention = 2 * 2 * a.n_head * a.head_dim * (ctx / 2) * a.n_layer   # per token: q.k and p.v over half the context
    head = 2 * a.n_vocab * a.n_embd * 0.5
    return tokens * (2.0 * params_active + attention + head)


def _best(fn, repeat: int = 3) -> float:
    import time as _time

    best = float("inf")
    for _ in range(repeat):
        t0 = _time.perf_counter()
        fn()
        best = min(best, _time.perf_counter() - t0)
    return best


def measured_speed(shape: ModelShape, chunks: int, ctx: int, threads: Optional[int] = None,
                   quant: str = "Q4_K") -> Dict[str, Dict[str, float]]:
    """Seconds per token of one layer, measured on this machine by running the inference loop's own
    code on a layer of the model's widths (random weights): the attention of a chunk of ``ctx``
    tokens (projections, norms, RoPE, the products), the router, and the experts as the
    layer-major runner calls them (each expert given the rows it gets from ``chunks * ctx``
    tokens; enough distinct experts that their weights come from memory, not cache), or the dense
    feed-forward; for the checkpoint (BF16 weights, float32 activations) and for ``quant`` weights."""
    import numpy as np

    from .model.forward import Layer, Model, rms_norm
    from .model.hparams import HParams
    from .model.linear import Experts, Linear
    from .quants import QuantType as Q
    from .quants import quantize

    a = shape.arch
    md = {k: v for k, v, _ in a.metadata()}
    md["general.architecture"] = a.gguf_arch
    hp = HParams.from_metadata(md, "the plan")
    D, H, Hkv, hd = hp.n_embd, hp.n_head, hp.n_head_kv, hp.head_dim
    rng = np.random.default_rng(0)

    def lin(rows: int, cols: int, qt: str, bias: bool = False) -> Linear:
        w = quantize(rng.standard_normal((rows, cols)).astype(np.float32) * np.float32(0.02), qt)
        return Linear(w, Q[qt], cols, threads=threads, act_f32=qt == "BF16")

    def stack(n: int, rows: int, cols: int, qt: str) -> np.ndarray:
        one = quantize(rng.standard_normal((rows, cols)).astype(np.float32) * np.float32(0.02), qt)
        return np.ascontiguousarray(np.broadcast_to(one, (n,) + one.shape))   # n distinct copies in memory

    x = rng.standard_normal((ctx, D)).astype(np.float32)
    out: Dict[str, Dict[str, float]] = {}
    for kind, qt in (("checkpoint", "BF16"), ("quantized", quant)):
        L = Layer()
        L.attn_norm = L.ffn_norm = np.ones(D, np.float32)
        L.wq, L.wk, L.wv = lin(H * hd, D, qt), lin(Hkv * hd, D, qt), lin(Hkv * hp.head_dim_v, D, qt)
        L.wo = lin(D, H * hp.head_dim_v, qt)
        if a.qk_norm:
            L.q_norm = L.k_norm = np.ones(hd, np.float32)
        m = Model(hp, L.wq, L.wq, np.ones(D, np.float32), [L], threads=threads)
        k_store = np.empty((Hkv, ctx, hd), np.float32)
        v_store = np.empty((Hkv, ctx, hp.head_dim_v), np.float32)
        attention = _best(lambda: m.attend(L, rms_norm(x, L.attn_norm, hp.eps), k_store, v_store, 0)) / ctx
        if hp.is_moe:
            F, k = a.n_ff_exp, hp.n_expert_used
            L.router = Linear(rng.standard_normal((hp.n_expert, D)).astype(np.float32), Q.F32, D, threads=threads)
            route = _best(lambda: m.route(L, rms_norm(x, L.ffn_norm, hp.eps))) / ctx
            per_expert = max(8, min(256, chunks * ctx * k // hp.n_expert))
            one = 3 * F * D * type_info(Q[qt]).type_size // type_info(Q[qt]).block_size
            E_b = int(min(hp.n_expert, max(k, 4, (64 << 20) // max(1, one) + 1)))
            T = max(1, per_expert * E_b // k)
            L.experts = Experts(stack(E_b, F, D, qt), stack(E_b, F, D, qt), stack(E_b, D, F, qt), [Q[qt]] * 3, D, F,
                                threads=threads, act_f32=qt == "BF16")
            ids = ((np.arange(T)[:, None] + np.arange(k)[None, :]) % E_b).astype(np.int32)
            w = np.full((T, k), 1.0 / k, np.float32)
            xt = rng.standard_normal((T, D)).astype(np.float32)
            ffn = route + _best(lambda: m.experts(L, xt, ids, w)) / T
        else:
            L.ffn_gate, L.ffn_up, L.ffn_down = lin(a.n_ff, D, qt), lin(a.n_ff, D, qt), lin(D, a.n_ff, qt)
            ffn = _best(lambda: m.ffn(L, rms_norm(x, L.ffn_norm, hp.eps))) / ctx
        head_rows = lin(min(a.n_vocab, 4096), D, qt)
        head = _best(lambda: head_rows(x)) / ctx * (a.n_vocab / min(a.n_vocab, 4096))
        out[kind] = {"attention": attention, "ffn": ffn, "head": head}
    return out


def run_estimates(shape: ModelShape, quant_types: Dict[str, QuantType], quant_file_bytes: int, chunks: int,
                  ctx: int, disk_gbps: Optional[float], speed: Dict[str, Dict[str, float]],
                  max_memory: Optional[int] = None, gflops: Optional[float] = None) -> Dict[str, Any]:
    """Memory, bytes read and time of the layer-major runs on ``chunks`` chunks of ``ctx`` tokens:
    ``compare`` (the checkpoint against the quantized file), ``imatrix`` (on the checkpoint) and
    ``perplexity`` (of the quantized file). Peak memory: two layers of each model (one in use, the
    next read ahead), the hidden states unless they spill (above ``max_memory``), and
    ``RUN_OVERHEAD``. Time: the bytes at ``disk_gbps`` (reading overlaps computing; the sum is
    reported as the upper figure) plus the compute, from the measured seconds per token of each
    part of a layer (:func:`measured_speed`), or from ``gflops`` when given (another machine)."""
    elem = _DTYPE_BYTES.get(str(shape.cfg.dtype or "bfloat16"), 2)
    src_layers = _layer_bytes(shape, None, elem)
    q_layers = _layer_bytes(shape, quant_types, 0)
    src_bytes = sum(t.n_elements for t in shape.tensors) * elem
    c = costs(shape, quant_types)
    tokens = chunks * ctx
    hidden = tokens * shape.arch.n_embd * 4
    a = shape.arch

    def compute(kind: str) -> float:
        if gflops:
            return _run_flops(shape, tokens, ctx, c["params_active"]) / (gflops * 1e9)
        sp = speed[kind]
        return tokens * (a.n_layer * (sp["attention"] + sp["ffn"]) + 0.5 * sp["head"])

    def one(kind: str, reads: List[int], layers: List[Dict[int, int]], kinds: List[str]) -> Dict[str, Any]:
        hid = hidden * len(layers)
        spill = max_memory is not None and hid > max_memory
        peak = sum(2 * max(L.values()) for L in layers) + (0 if spill else hid) + RUN_OVERHEAD
        read_s = sum(reads) / (disk_gbps * 1e9) if disk_gbps else None
        compute_s = sum(compute(k) for k in kinds)
        return {"run": kind, "peak_memory_bytes": int(peak), "largest_layer_bytes": [max(L.values()) for L in layers],
                "hidden_bytes": hid, "hidden_spilled": spill, "bytes_read": int(sum(reads)),
                "read_seconds": read_s, "compute_seconds": compute_s,
                "seconds": (read_s or 0.0) + compute_s}

    return {"chunks": chunks, "ctx": ctx, "tokens": tokens, "disk_gb_s": disk_gbps, "speed": speed, "gflops": gflops,
            "checkpoint_bytes": src_bytes, "quant_bytes": quant_file_bytes,
            "compare": one("compare", [src_bytes, quant_file_bytes], [src_layers, q_layers], ["checkpoint", "quantized"]),
            "imatrix": one("imatrix", [src_bytes], [src_layers], ["checkpoint"]),
            "perplexity": one("perplexity", [quant_file_bytes], [q_layers], ["quantized"])}


def preset_names() -> List[str]:
    return list(PRESETS)
