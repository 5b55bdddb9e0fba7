"""Quantization types and the array-level API: QuantType, CustomQuant, type_info, quantize,
dequantize.

Shape rule (the same as ``gguf.quants``): quantizing a float array ``[..., n]`` gives uint8
``[..., n // block_size * type_size]``; dequantizing inverts it. Rows (the last axis) are
independent, so they are spread over a thread pool; the C calls release the GIL and the result
does not depend on the number of threads.
"""

from __future__ import annotations

import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import IntEnum
from typing import Optional, Tuple, Union

import numpy as np

from . import _clib
from .errors import QtkFormatError, QtkNotImplementedError, QtkTypeError, QtkValueError


class QuantType(IntEnum):
    """ggml tensor types, named as ggml names them, valued by their GGUF type id."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39


@dataclass(frozen=True)
class CustomQuant:
    """A quantization type of any bit-width from 2 to 8 and any group size that is a multiple of 8.

    Each group of ``group_size`` weights stores an fp16 scale ``d`` (and, unless ``symmetric``, an
    fp16 min ``m``) followed by exactly ``bits`` bits per weight. Values are ``d * q + m``
    (asymmetric) or ``d * (q - 2**(bits-1))`` (symmetric). The scale and min minimise the squared
    error, weighted by the importance matrix when one is given.

    CustomQuant is not a ggml format: llama.cpp cannot read it and it cannot be written into a
    GGUF file. Store it with :meth:`serialize` instead.
    """

    bits: int
    group_size: int
    symmetric: bool = False

    def __post_init__(self):
        if not isinstance(self.bits, (int, np.integer)) or not 2 <= self.bits <= 8:
            raise QtkValueError(f"CustomQuant bits must be an integer from 2 to 8, got {self.bits!r}")
        if (
            not isinstance(self.group_size, (int, np.integer))
            or self.group_size < 8
            or self.group_size % 8
            or self.group_size > 1024
        ):
            raise QtkValueError(
                f"CustomQuant group_size must be a multiple of 8 from 8 to 1024, got {self.group_size!r}"
            )
        object.__setattr__(self, "bits", int(self.bits))
        object.__setattr__(self, "group_size", int(self.group_size))
        object.__setattr__(self, "symmetric", bool(self.symmetric))

    @property
    def name(self) -> str:
        return f"custom_b{self.bits}_g{self.group_size}{'_sym' if self.symmetric else ''}"

    @property
    def block_size(self) -> int:
        return self.group_size

    @property
    def type_size(self) -> int:
        return _clib.custom_block_bytes(self.bits, self.group_size, self.symmetric)

    # -- serialised form -------------------------------------------------------------------
    _MAGIC = b"QTKCQ001"

    def serialize(self, data: np.ndarray, shape: Tuple[int, ...]) -> bytes:
        """Self-describing bytes for quantized ``data`` of a float tensor of ``shape``.

        Layout (little-endian): magic ``QTKCQ001``; u8 bits; u8 symmetric; u16 0; u32 group size;
        u32 ndim; ndim x u64 dims of the float tensor (last = row length); then the blocks, rows
        one after another. See docs/formats.md.
        """
        shape = tuple(int(s) for s in shape)
        expected = _quantized_shape(shape, self)
        data = np.asarray(data)
        if data.dtype != np.uint8 or data.shape != expected:
            raise QtkValueError(f"data must be uint8 of shape {expected} for a {shape} tensor, got {data.dtype} {data.shape}")
        header = self._MAGIC + struct.pack("<BBHII", self.bits, int(self.symmetric), 0, self.group_size, len(shape))
        header += struct.pack(f"<{len(shape)}Q", *shape)
        return header + np.ascontiguousarray(data).tobytes()

    @classmethod
    def deserialize(cls, blob: bytes) -> Tuple["CustomQuant", np.ndarray, Tuple[int, ...]]:
        """Inverse of :meth:`serialize`: (type, uint8 data, float shape)."""
        blob = memoryview(blob)
        if len(blob) < 20 or bytes(blob[:8]) != cls._MAGIC:
            raise QtkFormatError("not a CustomQuant blob (bad magic)")
        bits, sym, _, group, ndim = struct.unpack_from("<BBHII", blob, 8)
        if ndim < 1 or ndim > 8 or len(blob) < 20 + 8 * ndim:
            raise QtkFormatError(f"CustomQuant blob: bad dimension count {ndim}")
        shape = struct.unpack_from(f"<{ndim}Q", blob, 20)
        qtype = cls(bits, group, bool(sym))
        qshape = _quantized_shape(shape, qtype)
        payload = blob[20 + 8 * ndim:]
        if len(payload) != int(np.prod(qshape)):
            raise QtkFormatError(f"CustomQuant blob: {len(payload)} payload bytes, expected {int(np.prod(qshape))}")
        return qtype, np.frombuffer(payload, dtype=np.uint8).reshape(qshape).copy(), tuple(shape)


QType = Union[QuantType, CustomQuant, str, int]


@dataclass(frozen=True)
class TypeInfo:
    name: str              # "Q4_K", "IQ4_XS", or a CustomQuant's name
    block_size: int        # elements per block
    type_size: int         # bytes per block
    bits_per_weight: float
    is_quantized: bool
    uses_imatrix: bool     # importance weights change the result
    requires_imatrix: bool = False  # quantizing needs importance weights (IQ2_XXS, IQ2_XS, IQ1_S)
    can_quantize: bool = True       # this build quantizes to the type
    can_dequantize: bool = True     # ... and dequantizes it
    can_matmul: bool = True         # ... and runs matmul kernels on weights of the type


def resolve(qtype: QType) -> Union[QuantType, CustomQuant]:
    """A QuantType or CustomQuant from a QuantType, CustomQuant, GGUF id or name in any case."""
    if isinstance(qtype, CustomQuant):
        return qtype
    if isinstance(qtype, QuantType):
        return qtype
    if isinstance(qtype, str):
        key = qtype.strip().upper()
        if key in QuantType.__members__:
            return QuantType[key]
        known = ", ".join(m for m in QuantType.__members__)
        raise QtkValueError(f"unknown quantization type {qtype!r}; known types: {known} (or a CustomQuant)")
    if isinstance(qtype, (int, np.integer)) and not isinstance(qtype, bool):
        try:
            return QuantType(int(qtype))
        except ValueError:
            raise QtkValueError(f"unknown GGUF type id {int(qtype)}") from None
    raise QtkTypeError(f"qtype must be a QuantType, CustomQuant, type name or GGUF id, got {type(qtype).__name__}")


def ggml_type_id(qtype: QType) -> int:
    """The GGUF type id of a type; CustomQuant has none and is refused with an explanation."""
    q = resolve(qtype)
    if isinstance(q, CustomQuant):
        raise QtkValueError(
            f"{q.name} is a qtoolkit CustomQuant, not a ggml type: it cannot be stored in a GGUF file "
            "(llama.cpp could not read it). Pick a ggml type such as Q4_K, or store it with CustomQuant.serialize()."
        )
    return int(q)


def type_info(qtype: QType) -> TypeInfo:
    """Block size, bytes per block and bits per weight of a type."""
    q = resolve(qtype)
    if isinstance(q, CustomQuant):
        size = q.type_size
        return TypeInfo(q.name, q.group_size, size, 8.0 * size / q.group_size, True, True)
    t = _clib.type_traits(int(q))
    if t is None:  # pragma: no cover - QuantType and the C table list the same ids
        raise QtkValueError(f"type {q.name} is missing from the C traits table")
    return TypeInfo(q.name, t.block_size, t.type_size, 8.0 * t.type_size / t.block_size, t.is_quantized, t.uses_imatrix,
                    _clib.requires_imatrix(int(q)), t.can_quantize, t.can_dequantize, t.can_matmul)


def producible_type(value, what: str) -> QuantType:
    """The ggml type ``value`` names (a name in any case, a GGUF id or a QuantType), refused unless
    this build can quantize to it; errors start with ``what`` (e.g. ``--output-tensor-type``)."""
    q = resolve(value)
    if not isinstance(q, QuantType):
        raise QtkValueError(f"{what}: {value!r} is not a ggml type")
    if not type_info(q).can_quantize:
        raise QtkNotImplementedError(f"{what}: qtoolkit cannot produce {q.name} yet")
    return q


def _quantized_shape(shape, q) -> Tuple[int, ...]:
    info = type_info(q)
    n = shape[-1] if len(shape) else 0
    if len(shape) == 0 or n % info.block_size:
        raise QtkValueError(
            f"the last dimension ({n if len(shape) else 'none'}) must be a multiple of "
            f"{info.name}'s block size {info.block_size}; pad the rows or pick a type with a smaller block"
        )
    return tuple(shape[:-1]) + (n // info.block_size * info.type_size,)


def row_bytes(qtype: QType, n: int) -> int:
    """Bytes of one quantized row of n elements."""
    return _quantized_shape((n,), resolve(qtype))[0]


# -- thread pool -----------------------------------------------------------------------------

_pools: dict = {}
MAX_THREADS = 4096  # a thread count above this is a typo (the C pool takes an int; 99999999999 overflowed it)


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _pool(threads: int) -> ThreadPoolExecutor:
    if threads not in _pools:
        _pools[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="qtk")
    return _pools[threads]


# below this many elements a call runs on the calling thread
_PARALLEL_MIN_ELEMENTS = 1 << 16


def run_rows(fn, rows: int, elements: int, threads: Optional[int]) -> None:
    """Call fn(start, stop) over [0, rows) in contiguous chunks, on `threads` threads.

    The first error in row order is raised (so the row it names is the first bad row)."""
    if threads is None:
        threads = default_threads()
    if not isinstance(threads, (int, np.integer)) or not 1 <= threads <= MAX_THREADS:
        raise QtkValueError(f"threads must be an integer from 1 to {MAX_THREADS}, got {threads!r}")
    threads = int(min(threads, rows)) if rows else 1
    if threads <= 1 or elements < _PARALLEL_MIN_ELEMENTS:
        fn(0, rows)
        return
    chunks = min(rows, threads * 4)
    bounds = [rows * i // chunks for i in range(chunks + 1)]
    futures = [_pool(threads).submit(fn, bounds[i], bounds[i + 1]) for i in range(chunks)]
    for f in futures:
        f.result()


# -- quantize / dequantize -----------------------------------------------------------------


def _as_float32_rows(x) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise QtkTypeError(f"x must be a numpy array of floats, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise QtkTypeError(
            f"x must hold floats (float16/32/64), got dtype {x.dtype}; convert it with x.astype(np.float32)"
        )
    if not x.flags.c_contiguous:
        raise QtkValueError("x must be C-contiguous; pass np.ascontiguousarray(x)")
    if x.ndim == 0:
        raise QtkValueError("x must have at least one dimension (the row)")
    return x if x.dtype == np.float32 else x.astype(np.float32)


def _imatrix_rows(imatrix, x: np.ndarray):
    """Importance weights per matrix: None, [n] for all rows, or x.shape[:-2] + [n] (per expert)."""
    if imatrix is None:
        return None
    w = np.ascontiguousarray(imatrix, dtype=np.float32)
    n = x.shape[-1]
    if w.shape == (n,):
        return w
    if x.ndim >= 3 and w.shape == x.shape[:-2] + (n,):
        return w.reshape(-1, n)
    raise QtkValueError(
        f"imatrix shape {w.shape} does not fit x of shape {x.shape}: give one weight per column ({n},)"
        + (f" or one row per matrix {x.shape[:-2] + (n,)}" if x.ndim >= 3 else "")
    )


def quantize(x: np.ndarray, qtype: QType, imatrix: Optional[np.ndarray] = None, threads: Optional[int] = None) -> np.ndarray:
    """Quantize float rows ``x[..., n]`` to ``qtype``; returns uint8 ``[..., n // block * type_size]``.

    ``imatrix``: importance weights, one per column (``[n]``), or one row per matrix of a stacked
    tensor (``x.shape[:-2] + (n,)``, e.g. per expert). Types that ignore them (Q8_0, TQ*, floats)
    accept and ignore them, as ggml does. NaN/Inf in ``x`` is refused, naming the first bad row.
    """
    q = resolve(qtype)
    x = _as_float32_rows(x)
    out_shape = _quantized_shape(x.shape, q)
    n = x.shape[-1]
    rows = int(np.prod(x.shape[:-1], dtype=np.int64))
    rows2d = x.reshape(rows, n)
    out = np.empty(out_shape, dtype=np.uint8)
    out2d = out.reshape(rows, out_shape[-1])
    w = _imatrix_rows(imatrix, x)
    per_matrix = w is not None and w.ndim == 2
    rows_per_matrix = x.shape[-2] if per_matrix else 0

    def work(start: int, stop: int) -> None:
        if start == stop:
            return
        if per_matrix:  # split at matrix boundaries so each part gets its own weights
            r = start
            while r < stop:
                m = r // rows_per_matrix
                end = min(stop, (m + 1) * rows_per_matrix)
                _quantize_part(q, rows2d[r:end], out2d[r:end], w[m], r)
                r = end
        else:
            _quantize_part(q, rows2d[start:stop], out2d[start:stop], w, start)

    run_rows(work, rows2d.shape[0], x.size, threads)
    return out


def quant_error(x: np.ndarray, qtype: QType, imatrix: Optional[np.ndarray] = None,
                weights: Optional[np.ndarray] = None, threads: Optional[int] = None) -> np.ndarray:
    """Squared quantization error of every row of ``x[..., n]``: float64 ``x.shape[:-1]`` with
    ``sum_j weights_j (x_j - y_j)^2``, where ``y = dequantize(quantize(x, qtype, imatrix))``.

    Computed row by row in C without keeping the quantized tensor. ``imatrix`` is what the quantizer
    sees (as in :func:`quantize`: ``[n]`` or one row per matrix); ``weights`` weigh the error
    columns the same way (None: plain squared error). ggml types only."""
    q = resolve(qtype)
    if isinstance(q, CustomQuant):
        raise QtkValueError("quant_error takes ggml types only")
    x = _as_float32_rows(x)
    _quantized_shape(x.shape, q)
    n = x.shape[-1]
    rows = int(np.prod(x.shape[:-1], dtype=np.int64))
    rows2d = x.reshape(rows, n)
    out = np.zeros(rows, dtype=np.float64)
    w = _imatrix_rows(imatrix, x)
    ew = _imatrix_rows(weights, x)
    per_matrix = (w is not None and w.ndim == 2) or (ew is not None and ew.ndim == 2)
    rows_per_matrix = x.shape[-2] if per_matrix else max(rows, 1)

    def pick(v, m):
        return v[m] if v is not None and v.ndim == 2 else v

    def work(start: int, stop: int) -> None:
        r = start
        while r < stop:
            m = r // rows_per_matrix
            end = min(stop, (m + 1) * rows_per_matrix)
            _clib.quant_error_rows(int(q), rows2d[r:end], out[r:end], pick(w, m), pick(ew, m), r)
            r = end

    run_rows(work, rows, x.size, threads)
    return out.reshape(x.shape[:-1])


def _quantize_part(q, x2d, out2d, w, row0):
    if isinstance(q, CustomQuant):
        _clib.custom_quantize_rows(q.bits, q.group_size, q.symmetric, x2d, out2d, w, row0)
    else:
        _clib.quantize_rows(int(q), x2d, out2d, w, row0)


def dequantize(data: np.ndarray, qtype: QType, threads: Optional[int] = None) -> np.ndarray:
    """Inverse of :func:`quantize`: uint8 ``[..., row_bytes]`` -> float32 ``[..., n]``."""
    q = resolve(qtype)
    info = type_info(q)
    if not isinstance(data, np.ndarray):
        raise QtkTypeError(f"data must be a numpy array, got {type(data).__name__}")
    if data.dtype != np.uint8:
        plain = {QuantType.F32: np.float32, QuantType.F16: np.float16}
        if not isinstance(q, CustomQuant) and plain.get(q) == data.dtype:
            data = data.view(np.uint8)  # a float tensor as the gguf reader returns it
        else:
            raise QtkTypeError(f"data must be uint8 (the quantized bytes), got dtype {data.dtype}")
    if not data.flags.c_contiguous:
        raise QtkValueError("data must be C-contiguous; pass np.ascontiguousarray(data)")
    if data.ndim == 0 or data.shape[-1] % info.type_size:
        raise QtkValueError(
            f"the last dimension of data ({data.shape[-1] if data.ndim else 'none'}) must be a multiple of "
            f"{info.name}'s block bytes {info.type_size}"
        )
    n = data.shape[-1] // info.type_size * info.block_size
    out = np.empty(data.shape[:-1] + (n,), dtype=np.float32)
    rows = int(np.prod(data.shape[:-1], dtype=np.int64))
    d2 = data.reshape(rows, data.shape[-1])
    o2 = out.reshape(rows, n)

    def work(start: int, stop: int) -> None:
        if start == stop:
            return
        if isinstance(q, CustomQuant):
            _clib.custom_dequantize_rows(q.bits, q.group_size, q.symmetric, d2[start:stop], o2[start:stop])
        else:
            _clib.dequantize_rows(int(q), d2[start:stop], o2[start:stop])

    run_rows(work, d2.shape[0], out.size, threads)
    return out
