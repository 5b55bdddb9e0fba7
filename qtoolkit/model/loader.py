"""``qtoolkit.load(path)``: a GGUF file or a Hugging Face folder as a runnable :class:`Model`.

* GGUF (ours or llama.cpp's): the file is memory-mapped by :class:`~qtoolkit.gguf_read.GGUFFile`;
  every matrix stays in its quantized bytes and is handed to the kernels as is.
* Hugging Face folder: the full-precision reference. The converter's own plan
  (:func:`qtoolkit.converter.core.build_plan`: architecture registry, tensor names, llama's Q/K row
  permutation, expert stacking, tokenizer metadata) says which GGUF tensor each checkpoint tensor
  becomes; the weights are widened to float32 (bf16 → f32 is exact) and run in float32. So an HF
  folder and its F32 GGUF conversion are the same model, tensor for tensor.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional, Tuple

import numpy as np

from ..errors import QtkFileNotFoundError, QtkFormatError, QtkNotImplementedError
from ..formats import QuantType, dequantize
from .forward import Layer, Model
from .hparams import HParams
from .linear import Experts, Linear
from .tokenizer import Tokenizer

log = logging.getLogger(__name__)


class _Source:
    """Tensors by GGUF name: ``get(name)`` -> (array, QuantType, ne) or None when absent."""

    def get(self, name: str) -> Optional[Tuple[np.ndarray, QuantType, Tuple[int, ...]]]:
        raise NotImplementedError


class _GGUFSource(_Source):
    def __init__(self, path: str):
        from ..gguf_read import GGUFFile

        self.f = GGUFFile(path)
        self.metadata = {k: kv.value for k, kv in self.f.kv.items()}

    def get(self, name):
        try:
            t = self.f.tensor(name)
        except QtkFormatError:
            return None
        try:
            q = QuantType(t.type_id)
        except ValueError:
            raise QtkFormatError(f"{self.f.path}: tensor {name} has type {t.type_name}, which qtoolkit cannot run") from None
        return self.f.data(t), q, tuple(t.ne)


class _HFSource(_Source):
    def __init__(self, model_dir: str, threads: Optional[int]):
        from ..converter.core import ConvertOptions, build_plan, tensor_f32

        self._tensor_f32 = tensor_f32
        self.plan = build_plan(model_dir, ConvertOptions(qtype="F32", threads=threads))
        self.metadata = {k: v for k, v, _t, _s in self.plan.metadata}
        self.metadata["general.architecture"] = self.plan.arch.gguf_arch
        self.by_name = {pt.out.name: pt.out for pt in self.plan.tensors}
        self.threads = threads

    def get(self, name):
        out = self.by_name.get(name)
        if out is None:
            return None
        return self._tensor_f32(self.plan, out), QuantType.F32, out.ne

    def close(self):
        self.plan.checkpoint.close()


def _vector(src: _Source, name: str, n: int, required: bool = True) -> Optional[np.ndarray]:
    got = src.get(name)
    if got is None:
        if required:
            raise QtkFormatError(f"the model has no tensor {name}")
        return None
    arr, q, ne = got
    if q == QuantType.F32:
        v = np.asarray(arr).view(np.float32) if arr.dtype == np.uint8 else np.asarray(arr, dtype=np.float32)
    else:
        v = dequantize(np.ascontiguousarray(arr), q)
    v = np.ascontiguousarray(v.reshape(-1), dtype=np.float32)
    if v.size != n:
        raise QtkFormatError(f"tensor {name} has {v.size} elements, expected {n}")
    return v


def _linear(src: _Source, name: str, rows: int, cols: int, threads, required: bool = True,
            bias: Optional[str] = None) -> Optional[Linear]:
    got = src.get(name)
    if got is None:
        if required:
            raise QtkFormatError(f"the model has no tensor {name}")
        return None
    arr, q, ne = got
    if tuple(ne[:2]) != (cols, rows) or any(d != 1 for d in ne[2:]):
        raise QtkFormatError(f"tensor {name} has dimensions {list(ne)}, expected [{cols}, {rows}]")
    b = _vector(src, bias, rows, required=False) if bias else None
    try:
        return Linear(arr.reshape(rows, -1), q, cols, bias=b, threads=threads)
    except QtkNotImplementedError:
        return Linear(_widened(arr, q, name), QuantType.F32, cols, bias=b, threads=threads)


def _widened(arr: np.ndarray, q: QuantType, name: str) -> np.ndarray:
    """A tensor whose type has no matmul kernel in this build, decoded to float32 once at load
    (the dequantizers cover every type; the activations then stay float32 for it)."""
    log.warning("no matmul kernel for %s in this build: %s runs dequantized to float32", q.name, name)
    return dequantize(np.ascontiguousarray(arr), q).reshape(arr.shape[:-1] + (-1,))


def _experts(src: _Source, prefix: str, hp: HParams, threads) -> Experts:
    datas, types, n_ff = [], [], None
    for proj in ("gate", "up", "down"):
        name = f"{prefix}ffn_{proj}_exps.weight"
        got = src.get(name)
        if got is None:
            raise QtkFormatError(f"the model has no tensor {name}")
        arr, q, ne = got
        if len(ne) != 3 or ne[2] != hp.n_expert:
            raise QtkFormatError(f"tensor {name} has dimensions {list(ne)}, expected 3 with {hp.n_expert} experts")
        if proj == "gate":
            n_ff = ne[1]
        want = (hp.n_embd, n_ff) if proj != "down" else (n_ff, hp.n_embd)
        if tuple(ne[:2]) != want:
            raise QtkFormatError(f"tensor {name} has dimensions {list(ne)}, expected {list(want) + [hp.n_expert]}")
        datas.append(arr.reshape(ne[2], ne[1], -1))
        types.append(q)
    try:
        return Experts(*datas, types, hp.n_embd, n_ff, threads=threads)
    except QtkNotImplementedError:
        wide = [_widened(d, q, f"{prefix}ffn_{proj}_exps.weight") if q != QuantType.F32 else d
                for d, q, proj in zip(datas, types, ("gate", "up", "down"))]
        return Experts(*wide, [QuantType.F32] * 3, hp.n_embd, n_ff, threads=threads)


def build_model(src: _Source, where: str, threads: Optional[int] = None) -> Model:
    md = src.metadata
    hp = HParams.from_metadata(md, where)
    D, H, Hkv, hd, hdv = hp.n_embd, hp.n_head, hp.n_head_kv, hp.head_dim, hp.head_dim_v
    embd = src.get("token_embd.weight")
    if embd is None:
        raise QtkFormatError(f"{where}: no token_embd.weight")
    n_vocab = int(embd[2][1])
    tok_embd = _linear(src, "token_embd.weight", n_vocab, D, threads)
    output = _linear(src, "output.weight", n_vocab, D, threads, required=False) or tok_embd
    rope_freqs = _vector(src, "rope_freqs.weight", hp.n_rot // 2, required=False)
    layers = []
    for i in range(hp.n_layer):
        b = f"blk.{i}."
        L = Layer()
        L.attn_norm = _vector(src, b + "attn_norm.weight", D)
        L.wq = _linear(src, b + "attn_q.weight", H * hd, D, threads, bias=b + "attn_q.bias")
        L.wk = _linear(src, b + "attn_k.weight", Hkv * hd, D, threads, bias=b + "attn_k.bias")
        L.wv = _linear(src, b + "attn_v.weight", Hkv * hdv, D, threads, bias=b + "attn_v.bias")
        L.wo = _linear(src, b + "attn_output.weight", D, H * hdv, threads, bias=b + "attn_output.bias")
        L.q_norm = _vector(src, b + "attn_q_norm.weight", hd, required=False)
        L.k_norm = _vector(src, b + "attn_k_norm.weight", hd, required=False)
        L.ffn_norm = _vector(src, b + "ffn_norm.weight", D)
        if hp.is_moe:
            L.router = _linear(src, b + "ffn_gate_inp.weight", hp.n_expert, D, threads)
            L.experts = _experts(src, b, hp, threads)
            sh = src.get(b + "ffn_gate_shexp.weight")
            if sh is not None:
                Fs = int(sh[2][1])
                L.shexp_gate = _linear(src, b + "ffn_gate_shexp.weight", Fs, D, threads)
                L.shexp_up = _linear(src, b + "ffn_up_shexp.weight", Fs, D, threads)
                L.shexp_down = _linear(src, b + "ffn_down_shexp.weight", D, Fs, threads)
                L.shexp_inp = _vector(src, b + "ffn_gate_inp_shexp.weight", D)
        else:
            g = src.get(b + "ffn_gate.weight")
            if g is None:
                raise QtkFormatError(f"{where}: no {b}ffn_gate.weight")
            F = int(g[2][1])
            L.ffn_gate = _linear(src, b + "ffn_gate.weight", F, D, threads, bias=b + "ffn_gate.bias")
            L.ffn_up = _linear(src, b + "ffn_up.weight", F, D, threads, bias=b + "ffn_up.bias")
            L.ffn_down = _linear(src, b + "ffn_down.weight", D, F, threads, bias=b + "ffn_down.bias")
        layers.append(L)
    output_norm = _vector(src, "output_norm.weight", D)
    return Model(hp, tok_embd, output, output_norm, layers, rope_freqs=rope_freqs, metadata=md, threads=threads)


def load(path: str, threads: Optional[int] = None) -> Model:
    """A GGUF file (memory-mapped; quantized weights used as they are) or a Hugging Face folder
    (float32 reference) as a :class:`Model` with its tokenizer.

    ``threads``: threads of the matmul kernels (default: one per core)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        src: Any = _HFSource(path, threads)
        try:
            model = build_model(src, path, threads)
        finally:
            src.close()
        model.tokenizer = Tokenizer.from_hf(path, add_bos=bool(src.plan.vocab.add_special.get("bos", False)),
                                            bos_id=src.plan.vocab.special_ids.get("bos"),
                                            eos_id=src.plan.vocab.special_ids.get("eos"))
        model.source, model.file_type, model.path = "hf", "F32", path
        return model
    if not os.path.exists(path):
        raise QtkFileNotFoundError(f"{path}: no such file or directory")
    src = _GGUFSource(path)
    model = build_model(src, path, threads)
    model.tokenizer = Tokenizer.from_gguf_metadata(src.metadata, path)
    model.source, model.path = "gguf", path
    model.file_type = _file_type_name(src.metadata.get("general.file_type"))
    model._keep = src.f  # the mapped file lives as long as the model
    return model


def _file_type_name(ftype: Any) -> str:
    from ..presets import PRESETS

    for name, p in PRESETS.items():
        if p.ftype == ftype:
            return name
    return f"ftype {ftype}" if ftype is not None else "unknown"

