"""``qtoolkit.load(path)``: a GGUF file or a Hugging Face folder as a runnable :class:`Model`.

The tensors come from a :mod:`~.sources` source:

* GGUF (ours or llama.cpp's): the file is memory-mapped by :class:`~qtoolkit.io.gguf_reader.GGUFFile`;
  every matrix stays in its quantized bytes and is handed to the kernels as is.
* Hugging Face folder: the full-precision reference. The converter's view of the folder
  (:func:`qtoolkit.converter.source.open_model`: architecture registry, tensor names, llama's Q/K
  row permutation, expert stacking, tokenizer metadata) says which GGUF tensor each checkpoint
  tensor becomes; the weights keep their stored dtype (bf16 → f32 is exact) and run with float32
  activations and accumulation. So an HF folder and its F32 GGUF conversion are the same model,
  tensor for tensor, up to the order of float32 sums.

:func:`build_layer` builds one block, which is how the layer-major runner (:mod:`.runner`) holds a
single layer of a model bigger than memory at a time.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional, Tuple

import numpy as np

from ..errors import QtkError, QtkFileNotFoundError, QtkFormatError, QtkNotImplementedError
from ..presets import PRESETS
from ..quants import QuantType, dequantize
from .forward import Layer, Model
from .hparams import HParams
from .linear import Experts, Linear
from .sources import GGUFSource, HFSource, Source
from .tensors import EXPERT_STACKS, LINEARS, VECTORS, layer_tensor
from .tokenizer import Tokenizer

log = logging.getLogger(__name__)


def _vector(src: Source, name: str, n: int, required: bool = True) -> Optional[np.ndarray]:
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


def _linear(src: Source, name: str, rows: int, cols: int, threads, required: bool = True,
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
        return Linear(arr.reshape(rows, -1), q, cols, bias=b, threads=threads, act_f32=src.f32_activations)
    except QtkNotImplementedError:
        return Linear(_widened(arr, q, name), QuantType.F32, cols, bias=b, threads=threads)


def _widened(arr: np.ndarray, q: QuantType, name: str) -> np.ndarray:
    """A tensor whose type has no matmul kernel in this build, decoded to float32 once at load
    (the dequantizers cover every type; the activations then stay float32 for it)."""
    log.warning("no matmul kernel for %s in this build: %s runs dequantized to float32", q.name, name)
    return dequantize(np.ascontiguousarray(arr), q).reshape(arr.shape[:-1] + (-1,))


def _experts(src: Source, il: int, hp: HParams, threads) -> Experts:
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
        return Experts(*datas, types, hp.n_embd, n_ff, threads=threads, act_f32=src.f32_activations)
    except QtkNotImplementedError:
        wide = [_widened(d, q, name) if q != QuantType.F32 else d for d, q, name in zip(datas, types, names)]
        return Experts(*wide, [QuantType.F32] * 3, hp.n_embd, n_ff, threads=threads)


def _rows(src: Source, got, name: str) -> int:
    """The row count (ne[1]) of a matrix that sets a dimension (vocabulary, feed-forward width)."""
    ne = got[2]
    if len(ne) < 2 or any(d != 1 for d in ne[2:]) or ne[1] < 1:
        raise QtkFormatError(f"{src.where}: tensor {name} has dimensions {list(ne)}, expected a matrix [n_embd, rows]")
    return int(ne[1])


def _check_blocks(src: Source, hp: HParams) -> None:
    """block_count against the blk.N tensors present (llama.cpp refuses both missing and extra ones)."""
    blocks = set()
    for name in src.names():
        parts = name.split(".", 2)
        if len(parts) == 3 and parts[0] == "blk" and parts[1].isascii() and parts[1].isdigit():
            blocks.add(int(parts[1]))
    if len(blocks) != hp.n_layer or (blocks and (min(blocks) != 0 or max(blocks) != hp.n_layer - 1)):
        have = f"blocks {min(blocks)}..{max(blocks)} ({len(blocks)} distinct)" if blocks else "no blk.N tensors"
        raise QtkFormatError(f"{src.where}: {hp.arch}.block_count is {hp.n_layer}, but the file has {have}")


def build_model(src: Source, where: str, threads: Optional[int] = None, with_layers: bool = True) -> Model:
    """The model of ``src``: embeddings, head and (unless ``with_layers`` is False: None in their
    place, for the layer-major runner to build one at a time with :func:`build_layer`) every block."""
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
    layers = [build_layer(src, i, hp, where, threads) if with_layers else None for i in range(hp.n_layer)]
    output_norm = _vector(src, "output_norm.weight", D)
    return Model(hp, tok_embd, output, output_norm, layers, rope_freqs=rope_freqs, metadata=md, threads=threads)


def build_layer(src: Source, i: int, hp: HParams, where: str, threads) -> Layer:
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
    (the full-precision reference, in its stored dtype) as a :class:`Model` with its tokenizer.

    ``threads``: threads of the matmul kernels (default: one per core)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise QtkFileNotFoundError(f"{path}: no such file or directory")
    src = HFSource(path) if os.path.isdir(path) else GGUFSource(path)
    try:
        model = build_model(src, path, threads)
        model.tokenizer = tokenizer_of(src, path, model.n_vocab)
    except QtkError as exc:
        raise with_path(exc, path) from None
    finally:
        src.close()
    describe_source(model, src, path)
    return model


def tokenizer_of(src: Source, path: str, n_vocab: int) -> Tokenizer:
    """The tokenizer of a source: the folder's tokenizer.json with its BOS rule, or the GGUF
    vocabulary."""
    if isinstance(src, HFSource):
        vocab = src.vocab
        return Tokenizer.from_hf(path, add_bos=bool(vocab.add_special.get("bos", False)),
                                 bos_id=vocab.special_ids.get("bos"), eos_id=vocab.special_ids.get("eos"))
    return Tokenizer.from_gguf_metadata(src.metadata, path, n_vocab=n_vocab)


def describe_source(model: Model, src: Source, path: str) -> None:
    """``model.source`` ("hf" or "gguf"), ``file_type`` (a preset name, or the checkpoint dtype) and
    ``path``; a GGUF model keeps its mapped file alive."""
    model.path = path
    if isinstance(src, HFSource):
        model.source, model.file_type = "hf", src.dtype_name()
    else:
        model.source = "gguf"
        model.file_type = _file_type_name(src.metadata.get("general.file_type"))
        model._keep = src.f  # the mapped file lives as long as the model


def as_model(model: Any, threads: Optional[int] = None) -> Model:
    """``model`` itself when it is a loaded :class:`Model`, else :func:`load` of it (a path)."""
    return model if isinstance(model, Model) else load(model, threads=threads)


def with_path(exc: QtkError, path: str) -> QtkError:
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

