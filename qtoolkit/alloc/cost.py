"""What a bit allocation will cost, from the checkpoint's headers alone (``convert --target-size
... --dry-run``): passes over the checkpoint, bytes to read, compute in calibration passes and
multiply-adds, and peak memory (docs/allocation.md, "Cost").

The streamed pass (alloc/streamed.py) reads the checkpoint once (the embedding and the head twice)
and computes one calibration pass, the probe streams (:func:`~.streamed.pass_plan`) and one pass
per anchor. Its resident memory is the layer-major runner's bound: two blocks in their stored
dtype (one in use, the next read ahead), plus one tensor widened to float32 with its probe copy,
the hidden states of the calibration chunks, the anchors and the streams (unless they spill to
disk above ``max_memory``), the head's log-probabilities of the probe chunks, and the
interpreter's own footprint.
"""

from __future__ import annotations

import os
import re
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence

from ..converter.plan import Plan
from ..model.chunks import chunk_plan
from ..model.runner import RUN_OVERHEAD
from ..model.tokenizer import Tokenizer
from .allocate import AllocOptions, Target, prepare
from .streamed import COMPUTE_BUDGET, model_layer_units, pass_plan


def _widths(arch) -> SimpleNamespace:
    n_expert = int(getattr(arch, "n_expert", 0) or 0)
    return SimpleNamespace(n_layer=arch.n_layer, n_embd=arch.n_embd, head_dim=arch.head_dim, n_head=arch.n_head,
                           n_head_kv=arch.n_head_kv, is_moe=n_expert > 0, n_expert_used=arch.n_expert_used)


def checkpoint_layout(plan) -> Dict[str, Any]:
    """Bytes of the checkpoint: in total, per block (by the output tensors' source tensors), and
    of the embedding and the head."""
    ck = plan.checkpoint
    sizes = {}
    for name in ck.where:
        info = ck.info(name)
        sizes[name] = info.end - info.start
    per_layer: Dict[int, int] = {}
    outer = 0
    largest = 0
    for pt in plan.tensors:
        o = pt.out
        srcs = {p.source for p in o.parts}
        b = sum(sizes.get(s, 0) for s in srcs)
        largest = max(largest, o.n_elements)
        m = re.match(r"^blk\.(\d+)\.", o.name)
        if m is None:
            outer += b
        else:
            per_layer[int(m.group(1))] = per_layer.get(int(m.group(1)), 0) + b
    return {"bytes": sum(sizes.values()), "layers": per_layer, "outer_bytes": outer,
            "largest_tensor_elements": largest}


def pass_cost(plan, free: Sequence, n_chunks: int, ctx: int, reference: bool, probe_bpw, probe_layers: Optional[int],
              probe_chunks: Optional[int], max_probes: int, n_anchors: int, budget: float = COMPUTE_BUDGET,
              max_memory: Optional[int] = None, reference_bytes: Optional[int] = None) -> Dict[str, Any]:
    """The streamed pass's cost (module doc); ``free``: the allocator's free tensor plans (names,
    shapes and candidate types; no errors needed)."""
    arch = plan.arch
    hp = _widths(arch)
    sp, head_layers = pass_plan(hp, arch.n_vocab, free, n_chunks, reference, probe_bpw, probe_layers, probe_chunks,
                                budget, max_probes, n_anchors)
    lay = checkpoint_layout(plan)
    n_pc = min(sp.probe_chunks, n_chunks)
    D = hp.n_embd
    hidden = (n_chunks * (1 + n_anchors) + sp.streams * n_pc) * ctx * D * 4
    spill = max_memory is not None and hidden > max_memory
    largest_layer = max(lay["layers"].values()) if lay["layers"] else 0
    scored = ctx - 1 - ctx // 2
    logp = (n_pc + 2) * scored * arch.n_vocab * 8        # the probe chunks' base log-probabilities + two at work
    tensor_f32 = 2 * lay["largest_tensor_elements"] * 4  # one tensor widened, and its probe copy
    peak = 2 * largest_layer + tensor_f32 + (0 if spill else hidden) + logp + RUN_OVERHEAD
    if reference:
        # the model read is the GGUF reference; every free tensor's float32 weights come from the checkpoint
        read = (reference_bytes or 0) + lay["bytes"]
    else:
        read = lay["bytes"] + lay["outer_bytes"]
    base_macs = n_chunks * ctx * (hp.n_layer + head_layers) * model_layer_units(hp, free)
    streams = sp.cost
    return {"passes": 1, "checkpoint_bytes": lay["bytes"], "bytes_to_read": int(read),
            "reads_of_checkpoint": round(read / lay["bytes"], 3) if lay["bytes"] else None,
            "calibration_chunks": n_chunks, "ctx": ctx, "probe_chunks": n_pc, "probe_layers": sp.band,
            "streams": sp.streams, "anchors": n_anchors,
            "compute_passes": round(1.0 + streams + n_anchors, 2),
            "compute_breakdown": {"calibration": 1.0, "streams": round(streams, 2), "anchors": float(n_anchors)},
            "multiply_adds": float(base_macs * (1.0 + streams + n_anchors)),
            "hidden_bytes": int(hidden), "hidden_spilled": bool(spill), "largest_layer_bytes": int(largest_layer),
            "peak_memory_bytes": int(peak)}


def allocation_cost(plan: Plan, calib_text: str, target: Target, opts: AllocOptions) -> Dict[str, Any]:
    """What :func:`~.allocate.allocate_plan` with these options will cost (module doc), from the
    headers, the tokenizer and the calibration text alone: nothing is calibrated."""
    st = prepare(plan, target, opts)
    free, anchors = st.free, st.anchors
    n_tokens = len(Tokenizer.from_hf(plan.model_dir).encode(calib_text))
    n = chunk_plan(n_tokens, opts.calib_ctx, opts.calib_chunks)
    ref_bytes = os.path.getsize(opts.reference) if opts.reference else None
    full = opts.probes == "full"
    c = pass_cost(plan, free, n, opts.calib_ctx, opts.reference is not None, opts.probe_bpw, opts.probe_layers,
                  n if full else opts.probe_chunks, opts.max_probes, len(anchors),
                  budget=float("inf") if full else opts.compute_budget, max_memory=opts.max_memory,
                  reference_bytes=ref_bytes)
    c["probes"] = opts.probes
    c["anchor_files"] = list(anchors)
    if full:   # the model held in memory, every layer's input of every chunk kept
        c["peak_memory_bytes"] = int((ref_bytes or c["checkpoint_bytes"]) + n * (plan.arch.n_layer + 1)
                                     * opts.calib_ctx * plan.arch.n_embd * 4 + RUN_OVERHEAD)
    return c


def format_cost(c: Dict[str, Any]) -> List[str]:
    """The cost as lines for the CLI."""
    gb = 1e9
    br = c["compute_breakdown"]
    return [
        f"allocation cost (estimated before starting): {c['passes']} pass over the checkpoint, "
        f"{c['bytes_to_read'] / gb:.2f} GB to read ({c['reads_of_checkpoint']} x the checkpoint's "
        f"{c['checkpoint_bytes'] / gb:.2f} GB)",
        f"  compute: {c['compute_passes']} calibration passes (calibration 1, probe streams {br['streams']}, "
        f"anchors {br['anchors']:g}) = {c['multiply_adds'] / 1e12:.2f} T multiply-adds; "
        f"{c['calibration_chunks']} chunks of {c['ctx']} tokens, {c['streams']} probe streams on "
        f"{c['probe_chunks']} chunks, bands of {c['probe_layers']} layer(s)",
        f"  peak memory: {c['peak_memory_bytes'] / gb:.2f} GB (two blocks of {c['largest_layer_bytes'] / gb:.2f} GB, "
        f"hidden states {c['hidden_bytes'] / gb:.2f} GB{' spilled to disk' if c['hidden_spilled'] else ''})",
    ]
