"""``qtoolkit.load(path)``: a GGUF file or a Hugging Face folder as a runnable :class:`Model`.

* GGUF (ours or llama.cpp's): the file is memory-mapped by :class:`~qtoolkit.io.gguf_reader.GGUFFile`;
  every matrix stays in its quantized bytes and is handed to the kernels as is.
* Hugging Face folder: the full-precision reference. The converter's view of the folder
  (:func:`qtoolkit.converter.source.open_model`: architecture registry, tensor names, llama's Q/K
  row permutation, expert stacking, tokenizer metadata) says which GGUF tensor each checkpoint
  tensor becomes; the weights are widened to float32 (bf16 → f32 is exact) and run in float32. So
  an HF folder and its F32 GGUF conversion are the same model, tensor for tensor.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional, Tuple

import numpy as np

from ..converter.source import model_metadata, open_model, tensor_f32
from ..errors import QtkError, QtkFileNotFoundError, QtkFormatError, QtkNotImplementedError
from ..quants import QuantType, dequantize, type_info
from ..io.gguf_reader import GGUFFile
from ..io.gguf_writer import check_metadata
from ..presets import PRESETS
from .forward import Layer, Model
from .hparams import HParams
from .linear import Experts, Linear
from .tensors import EXPERT_STACKS, LINEARS, VECTORS, layer_tensor
from .tokenizer import Tokenizer

log = logging.getLogger(__name__)


class _Source:
    """Tensors by GGUF name: ``get(name)`` -> (array, QuantType, ne) or None when absent.
    ``where`` (the file or folder) starts every error message; ``names()`` lists the tensors."""

    where = ""

    def names(self):
        raise NotImplementedError

    def get(self, name: str) -> Optional[Tuple[np.ndarray, QuantType, Tuple[int, ...]]]:
        raise NotImplementedError


class _GGUFSource(_Source):
    def __init__(self, path: str):
        self.f = GGUFFile(path)
        self.where = path
        self.metadata = {k: kv.value for k, kv in self.f.kv.items()}

    def names(self):
        return [t.name for t in self.f.tensors]

    def get(self, name):
        try:
            t = self.f.tensor(name)
        except QtkFormatError:
            return None
        try:
            q = QuantType(t.type_id)
        except ValueError:
            q = None
        if q is None or not type_info(q).can_dequantize:
            raise QtkFormatError(f"{self.f.path}: tensor {name} has type {t.type_name}, which qtoolkit cannot run") from None
        return self.f.data(t), q, tuple(t.ne)


class _HFSource(_Source):
    def __init__(self, model_dir: str):
        self.src = open_model(model_dir)
        self.where = model_dir
        md = model_metadata(self.src.name, self.src.arch, self.src.vocab, PRESETS["F32"].ftype)
        try:
            check_metadata(md, f"{self.src.cfg.path} (or the tokenizer files)")
        except BaseException:
            self.src.close()
            raise
        self.metadata = {k: v for k, v, _t, _s in md}
        self.metadata["general.architecture"] = self.src.arch.gguf_arch
        self.by_name = {t.name: t for t in self.src.tensors}

    def names(self):
        return list(self.by_name)

    def get(self, name):
        out = self.by_name.get(name)
        if out is None:
            return None
        return tensor_f32(self.src.checkpoint, out), QuantType.F32, out.ne

    def close(self):
        self.src.close()


def _vector(src: _Source, name: str, n: int, required: bool = True) -> Optional[np.ndarray]:
    got = src.get(name)
    if got is None:
        if required:
            raise QtkFormatError(f"{src.where}: the model has no tensor {name}")
        return None
    arr, q, ne = got
    if q == QuantType.F32:
        v = np.asarray(arr).view(np.float32) if arr.dtype == np.uint8 else np.asarray(arr, dtype=np.float32)
    else:
        v = dequantize(np.ascontiguousarray(arr), q)
    v = np.ascontiguousarray(v.reshape(-1), dtype=np.float32)
    if v.size != n:
        raise QtkFormatError(f"{src.where}: tensor {name} has {v.size} elements, expected {n}")
    return v


def _linear(src: _Source, name: str, rows: int, cols: int, threads, required: bool = True,
            bias: Optional[str] = None) -> Optional[Linear]:
    got = src.get(name)
    if got is None:
        if required:
            raise QtkFormatError(f"{src.where}: the model has no tensor {name}")
        return None
    arr, q, ne = got
    if tuple(ne[:2]) != (cols, rows) or any(d != 1 for d in ne[2:]):
        raise QtkFormatError(f"{src.where}: tensor {name} has dimensions {list(ne)}, expected [{cols}, {rows}]")
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


def _experts(src: _Source, il: int, hp: HParams, threads) -> Experts:
    datas, types, n_ff = [], [], None
    names = [layer_tensor(il, short) for short in EXPERT_STACKS]   # gate, up, down
    for j, name in enumerate(names):
        got = src.get(name)
        if got is None:
            raise QtkFormatError(f"{src.where}: the model has no tensor {name}")
        arr, q, ne = got
        if len(ne) != 3 or ne[2] != hp.n_expert:
            raise QtkFormatError(f"{src.where}: tensor {name} has dimensions {list(ne)}, expected 3 with {hp.n_expert} experts")
        if j == 0:
            n_ff = ne[1]
            if n_ff < 1:
                raise QtkFormatError(f"{src.where}: tensor {name} has dimensions {list(ne)}: no expert rows")
        want = (hp.n_embd, n_ff) if j < 2 else (n_ff, hp.n_embd)
        if tuple(ne[:2]) != want:
            raise QtkFormatError(f"{src.where}: tensor {name} has dimensions {list(ne)}, expected {list(want) + [hp.n_expert]}")
        datas.append(arr.reshape(ne[2], ne[1], -1))
        types.append(q)
    try:
        return Experts(*datas, types, hp.n_embd, n_ff, threads=threads)
    except QtkNotImplementedError:
        wide = [_widened(d, q, name) if q != QuantType.F32 else d for d, q, name in zip(datas, types, names)]
        return Experts(*wide, [QuantType.F32] * 3, hp.n_embd, n_ff, threads=threads)


def _rows(src: _Source, got, name: str) -> int:
    """The row count (ne[1]) of a matrix that sets a dimension (vocabulary, feed-forward width)."""
    ne = got[2]
    if len(ne) < 2 or any(d != 1 for d in ne[2:]) or ne[1] < 1:
        raise QtkFormatError(f"{src.where}: tensor {name} has dimensions {list(ne)}, expected a matrix [n_embd, rows]")
    return int(ne[1])


def _check_blocks(src: _Source, hp: HParams) -> None:
    """block_count against the blk.N tensors present (llama.cpp refuses both missing and extra ones)."""
    blocks = set()
    for name in src.names():
        parts = name.split(".", 2)
        if len(parts) == 3 and parts[0] == "blk" and parts[1].isascii() and parts[1].isdigit():
            blocks.add(int(parts[1]))
    if len(blocks) != hp.n_layer or (blocks and (min(blocks) != 0 or max(blocks) != hp.n_layer - 1)):
        have = f"blocks {min(blocks)}..{max(blocks)} ({len(blocks)} distinct)" if blocks else "no blk.N tensors"
        raise QtkFormatError(f"{src.where}: {hp.arch}.block_count is {hp.n_layer}, but the file has {have}")


def build_model(src: _Source, where: str, threads: Optional[int] = None) -> Model:
    md = src.metadata
    hp = HParams.from_metadata(md, where)
    _check_blocks(src, hp)
    D = hp.n_embd
    embd = src.get("token_embd.weight")
    if embd is None:
        raise QtkFormatError(f"{where}: no token_embd.weight")
    n_vocab = _rows(src, embd, "token_embd.weight")
    tok_embd = _linear(src, "token_embd.weight", n_vocab, D, threads)
    output = _linear(src, "output.weight", n_vocab, D, threads, required=False) or tok_embd
    rope_freqs = _vector(src, "rope_freqs.weight", hp.n_rot // 2, required=False)
    layers = [_layer(src, i, hp, where, threads) for i in range(hp.n_layer)]
    output_norm = _vector(src, "output_norm.weight", D)
    return Model(hp, tok_embd, output, output_norm, layers, rope_freqs=rope_freqs, metadata=md, threads=threads)


def _layer(src: _Source, i: int, hp: HParams, where: str, threads) -> Layer:
    """Block ``i``: every tensor by its GGUF name (:mod:`.tensors`), shapes checked."""
    D, H, Hkv, hd, hdv = hp.n_embd, hp.n_head, hp.n_head_kv, hp.head_dim, hp.head_dim_v
    L = Layer()

    def lin(attr: str, rows: int, cols: int, bias: bool = True) -> Linear:
        name = layer_tensor(i, LINEARS[attr])
        return _linear(src, name, rows, cols, threads, bias=name[:-len("weight")] + "bias" if bias else None)

    def vec(attr: str, n: int, required: bool = True) -> Optional[np.ndarray]:
        return _vector(src, layer_tensor(i, VECTORS[attr]), n, required=required)

    L.attn_norm = vec("attn_norm", D)
    L.wq = lin("wq", H * hd, D)
    L.wk = lin("wk", Hkv * hd, D)
    L.wv = lin("wv", Hkv * hdv, D)
    L.wo = lin("wo", D, H * hdv)
    L.q_norm = vec("q_norm", hd, required=False)
    L.k_norm = vec("k_norm", hd, required=False)
    L.ffn_norm = vec("ffn_norm", D)
    if hp.is_moe:
        L.router = lin("router", hp.n_expert, D, bias=False)
        L.experts = _experts(src, i, hp, threads)
        name = layer_tensor(i, LINEARS["shexp_gate"])
        sh = src.get(name)
        if sh is not None:
            Fs = _rows(src, sh, name)
            L.shexp_gate = lin("shexp_gate", Fs, D, bias=False)
            L.shexp_up = lin("shexp_up", Fs, D, bias=False)
            L.shexp_down = lin("shexp_down", D, Fs, bias=False)
            L.shexp_inp = vec("shexp_inp", D)
    else:
        name = layer_tensor(i, LINEARS["ffn_gate"])
        g = src.get(name)
        if g is None:
            raise QtkFormatError(f"{where}: no {name}")
        F = _rows(src, g, name)
        L.ffn_gate = lin("ffn_gate", F, D)
        L.ffn_up = lin("ffn_up", F, D)
        L.ffn_down = lin("ffn_down", D, F)
    return L


def load(path: str, threads: Optional[int] = None) -> Model:
    """A GGUF file (memory-mapped; quantized weights used as they are) or a Hugging Face folder
    (float32 reference) as a :class:`Model` with its tokenizer.

    ``threads``: threads of the matmul kernels (default: one per core)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        src: Any = _HFSource(path)
        try:
            model = build_model(src, path, threads)
        except QtkError as exc:
            raise _naming(exc, path) from None
        finally:
            src.close()
        vocab = src.src.vocab
        model.tokenizer = Tokenizer.from_hf(path, add_bos=bool(vocab.add_special.get("bos", False)),
                                            bos_id=vocab.special_ids.get("bos"), eos_id=vocab.special_ids.get("eos"))
        model.source, model.file_type, model.path = "hf", "F32", path
        return model
    if not os.path.exists(path):
        raise QtkFileNotFoundError(f"{path}: no such file or directory")
    src = _GGUFSource(path)
    try:
        model = build_model(src, path, threads)
        model.tokenizer = Tokenizer.from_gguf_metadata(src.metadata, path, n_vocab=model.n_vocab)
    except QtkError as exc:
        raise _naming(exc, path) from None
    model.source, model.path = "gguf", path
    model.file_type = _file_type_name(src.metadata.get("general.file_type"))
    model._keep = src.f  # the mapped file lives as long as the model
    return model


def as_model(model: Any, threads: Optional[int] = None) -> Model:
    """``model`` itself when it is a loaded :class:`Model`, else :func:`load` of it (a path)."""
    return model if isinstance(model, Model) else load(model, threads=threads)


def _naming(exc: QtkError, path: str) -> QtkError:
    """``exc`` with the file named (errors of the kernels' binding checks do not know it)."""
    if path in str(exc):
        return exc
    try:
        return type(exc)(f"{path}: {exc}")
    except TypeError:  # pragma: no cover - a subclass with another constructor
        return exc


def _file_type_name(ftype: Any) -> str:
    if isinstance(ftype, (int, np.integer)) and not isinstance(ftype, bool):
        for name, p in PRESETS.items():
            if p.ftype == ftype:
                return name
    return f"ftype {ftype}" if ftype is not None else "unknown"

