"""A Hugging Face model folder seen as the GGUF tensors llama.cpp expects.

:func:`open_model` reads ``config.json``, the safetensors headers and the tokenizer, picks the
architecture and checks every checkpoint tensor's name, dtype and shape against what the config
implies; nothing but headers is read. The result, a :class:`ModelSource`, knows each output
tensor (GGUF name, shape, and which checkpoint rows it is made of) and the model's metadata.
:func:`rows_f32` and :func:`tensor_f32` then read an output tensor's weights as float32, with
llama's Q/K row permutation and expert stacking applied, exactly as an F32 conversion writes them.

The converter plans and writes from a source; the inference loop runs a source as the
full-precision reference (``qtoolkit.load`` of a folder), so the two see the same model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Tuple

import numpy as np

from ..errors import QtkFormatError, QtkNotImplementedError, QtkValueError
from ..quants import QuantType, dequantize
from ..io.files import unicode_name
from ..io.safetensors_reader import FLOAT_DTYPES, Checkpoint
from .archs import get_arch
from .archs.base import OutTensor, Part, permute_rows
from .hfconfig import HFConfig
from .vocab import Vocab, load_vocab

SLAB_ELEMENTS = 1 << 20  # rows are read and widened in slabs of about this many weights (4 MB of f32)
QUANTIZATION_VERSION = 2

Metadata = List[Tuple[str, object, int, Optional[int]]]   # (key, value, GGUF type, array element type)


@dataclass
class ModelSource:
    """An opened Hugging Face folder: its config, architecture, checkpoint (headers validated),
    output tensors in the architecture's order, and vocabulary."""

    model_dir: str
    cfg: HFConfig
    arch: Any
    checkpoint: Checkpoint
    tensors: List[OutTensor]
    vocab: Vocab

    def tensor(self, name: str) -> OutTensor:
        for t in self.tensors:
            if t.name == name:
                return t
        raise QtkValueError(f"{self.model_dir}: the model has no tensor {name}")

    @property
    def name(self) -> str:
        return unicode_name(os.path.basename(os.path.normpath(self.model_dir))) or "model"

    def close(self) -> None:
        self.checkpoint.close()


def open_model(model_dir: str, tokenizer_pre: Optional[str] = None) -> ModelSource:
    """Open and validate a Hugging Face model folder (headers only); see the module doc."""
    cfg = HFConfig.load(model_dir)
    arch = get_arch(cfg)
    ckpt = Checkpoint(model_dir)
    try:
        shapes = ckpt.shapes
        ap = arch.plan(shapes)
        _check_tensors(model_dir, cfg, arch, ckpt, ap)
        vocab = load_vocab(model_dir, arch.n_vocab, tokenizer_pre, cfg.raw)
    except BaseException:
        ckpt.close()
        raise
    return ModelSource(model_dir, cfg, arch, ckpt, list(ap.tensors), vocab)


def _check_tensors(model_dir: str, cfg: HFConfig, arch, ckpt: Checkpoint, ap) -> None:
    """Every tensor the architecture needs, with the dtype and shape config.json implies, and no
    tensor it does not use."""
    shapes = ckpt.shapes
    for name, shape in ap.expected.items():
        if name not in shapes:
            raise QtkFormatError(f"{model_dir}: the checkpoint has no tensor {name!r}, which {cfg.architecture} needs")
        info = ckpt.info(name)
        if info.dtype not in FLOAT_DTYPES:
            if info.dtype.startswith("F8"):
                raise QtkNotImplementedError(
                    f"{ckpt.file_of(name)}: tensor {name!r} is {info.dtype} (FP8); FP8 checkpoints are not yet supported"
                )
            raise QtkNotImplementedError(
                f"{ckpt.file_of(name)}: tensor {name!r} has dtype {info.dtype}; only F32, F16 and BF16 weights are supported"
            )
        if tuple(info.shape) != tuple(shape):
            raise QtkFormatError(
                f"{ckpt.file_of(name)}: tensor {name!r} has shape {list(info.shape)}, but {cfg.path} implies "
                f"{list(shape)} (hidden_size={arch.n_embd}, heads={arch.n_head}/{arch.n_head_kv}, head_dim={arch.head_dim}, "
                f"vocab_size={arch.n_vocab})"
            )
    unused = sorted(set(shapes) - set(ap.expected) - set(ap.ignored))
    if unused:
        more = f" and {len(unused) - 5} more" if len(unused) > 5 else ""
        raise QtkFormatError(
            f"{model_dir}: checkpoint tensors that {cfg.architecture} does not use: {', '.join(unused[:5])}{more} "
            "(a different architecture, or layers beyond num_hidden_layers?)"
        )


def model_metadata(name: str, arch, vocab, file_type: int) -> Metadata:
    """The GGUF metadata of a conversion, before any ``quantize.*`` keys: ``general.*``, the
    architecture's hyper-parameters and the tokenizer."""
    md: Metadata = [
        ("general.type", "model", 8, None),
        ("general.name", name, 8, None),
        ("general.file_type", file_type, 4, None),
        ("general.quantization_version", QUANTIZATION_VERSION, 4, None),
    ]
    md += [(k, v, t, None) for k, v, t in arch.metadata()]
    md += vocab.metadata()
    return md


# -- reading weights -------------------------------------------------------------------------


def rows_f32(ckpt: Checkpoint, part: Part, out_name: str) -> Iterator[np.ndarray]:
    """The part's rows as float32 slabs (2-D), or the whole 1-D tensor; NaN/Inf refused, naming
    the checkpoint file, tensor, row and column."""
    raw = ckpt.raw(part.source)
    dtype = ckpt.info(part.source).dtype
    if part.index is not None:
        raw = raw[part.index]
    if part.rows is not None:
        raw = raw[part.rows[0]:part.rows[1]]
    if part.reshape_1d:
        raw = raw.reshape(-1)
    perm = None
    if raw.ndim == 1:
        slabs = [(0, raw)]
    else:
        n_rows, n_cols = raw.shape
        perm = permute_rows(n_rows, part.permute_heads) if part.permute_heads else None
        step = max(1, SLAB_ELEMENTS // max(1, n_cols))
        if perm is not None:
            hd = n_rows // part.permute_heads
            step = max(hd, step // hd * hd)  # whole heads per slab
        slabs = ((r, raw[perm[r:r + step]] if perm is not None else raw[r:r + step]) for r in range(0, n_rows, step))
    for r0, block in slabs:
        block = np.ascontiguousarray(block)
        if dtype == "F32":
            x = block.astype(np.float32, copy=False)
        else:
            qt = QuantType.BF16 if dtype == "BF16" else QuantType.F16
            x = dequantize(block.view(np.uint8), qt, threads=1)  # memory-bound: one thread is as fast
        if not np.isfinite(x).all():
            raise _nonfinite(ckpt, part, out_name, x, r0, perm)
        yield x


def _nonfinite(ckpt: Checkpoint, part: Part, out_name: str, x: np.ndarray, r0: int, perm) -> QtkValueError:
    bad = np.argwhere(~np.isfinite(x))[0]
    if x.ndim == 2:
        row = r0 + int(bad[0])
        row = int(perm[row]) if perm is not None else row  # the checkpoint's row, not ours
        row += part.rows[0] if part.rows is not None else 0
        where = f"row {row}, column {int(bad[1])}"
    else:
        where = f"element {int(bad[0])}"
    expert = f" (expert {part.index})" if part.index is not None else ""
    return QtkValueError(
        f"{ckpt.file_of(part.source)}: tensor {part.source!r}{expert} has a NaN or Inf at {where}; "
        f"refusing to write {out_name}"
    )


def tensor_f32(ckpt: Checkpoint, out: OutTensor) -> np.ndarray:
    """One output tensor as float32, exactly as an F32 conversion writes it (names, llama's Q/K
    row permutation and expert stacking applied); its source pages are released afterwards."""
    if out.const is not None:
        return np.ascontiguousarray(out.const, dtype=np.float32)
    mats = []
    for part in out.parts:
        slabs = list(rows_f32(ckpt, part, out.name))
        mats.append(slabs[0] if len(slabs) == 1 else np.concatenate(slabs, axis=0))
        ckpt.release(part.source)
    arr = mats[0] if len(out.shape) < 3 else np.stack(mats)
    return np.ascontiguousarray(arr.reshape(out.shape), dtype=np.float32)



# -- weights in their stored dtype -------------------------------------------------------------

STORED_TYPES = {"F32": QuantType.F32, "F16": QuantType.F16, "BF16": QuantType.BF16}
_NUMPY = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def _first_nonfinite(raw: np.ndarray, dtype: str) -> Optional[Tuple[int, ...]]:
    """Index of the first NaN or Inf of a stored tensor (BF16 as uint16), scanning slabs."""
    flat = raw.reshape(-1, raw.shape[-1]) if raw.ndim > 1 else raw.reshape(1, -1)
    step = max(1, SLAB_ELEMENTS // max(1, flat.shape[1]))
    for r in range(0, flat.shape[0], step):
        block = flat[r:r + step]
        bad = (block & 0x7F80) == 0x7F80 if dtype == "BF16" else ~np.isfinite(block)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            return (r + int(i), int(j)) if raw.ndim > 1 else (int(j),)
    return None


def tensor_stored(ckpt: Checkpoint, out: OutTensor) -> Tuple[np.ndarray, QuantType]:
    """One output tensor in its checkpoint dtype (F32, F16, or BF16 as uint16), laid out as the
    GGUF tensor (llama's Q/K row permutation, experts stacked), NaN/Inf refused naming the file,
    tensor, row and column. A view of the mapped file where the layout allows it, else one copy
    (the source pages are released once copied). Mixed dtypes fall back to float32."""
    if out.const is not None:
        return np.ascontiguousarray(out.const, dtype=np.float32), QuantType.F32
    dtypes = {ckpt.info(p.source).dtype for p in out.parts}
    if len(dtypes) != 1:
        return tensor_f32(ckpt, out), QuantType.F32
    dtype = dtypes.pop()
    mats = []
    for part in out.parts:
        raw = ckpt.raw(part.source)
        if part.index is not None:
            raw = raw[part.index]
        if part.rows is not None:
            raw = raw[part.rows[0]:part.rows[1]]
        if part.reshape_1d:
            raw = raw.reshape(-1)
        if part.permute_heads:
            raw = raw[permute_rows(raw.shape[0], part.permute_heads)]
        bad = _first_nonfinite(raw, dtype)
        if bad is not None:
            where = f"row {bad[0]}, column {bad[1]}" if len(bad) == 2 else f"element {bad[0]}"
            if len(bad) == 2 and part.permute_heads:
                where = f"row {int(permute_rows(raw.shape[0], part.permute_heads)[bad[0]])}, column {bad[1]}"
            expert = f" (expert {part.index})" if part.index is not None else ""
            raise QtkValueError(f"{ckpt.file_of(part.source)}: tensor {part.source!r}{expert} has a NaN or Inf at "
                                f"{where}; refusing to run {out.name}")
        mats.append(raw)
    if len(out.shape) == 3:
        arr = np.empty((len(mats),) + mats[0].shape, dtype=_NUMPY[dtype])
        for e, (m, part) in enumerate(zip(mats, out.parts)):
            arr[e] = m
            if part.index is None:
                ckpt.release(part.source)
        if out.parts[0].index is not None:
            ckpt.release(out.parts[0].source)
    else:
        arr = np.ascontiguousarray(mats[0].reshape(out.shape))
        if out.parts[0].permute_heads:
            ckpt.release(out.parts[0].source)
    return arr, STORED_TYPES[dtype]
