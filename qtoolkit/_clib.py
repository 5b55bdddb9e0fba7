"""The only module that touches the cffi extension ``qtoolkit._native`` (its ``ffi``/``lib``).

Every wrapper checks dtype, shape, contiguity and lengths before handing a pointer to C: cffi
does not check them (a float64 array passes as twice as many floats). C status codes map to
exactly one exception class each. cffi releases the GIL around every call, so callers may run
these wrappers from a thread pool.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from ._version import __version__
from .errors import (
    QtkError,
    QtkImatrixRequiredError,
    QtkMemoryError,
    QtkNotImplementedError,
    QtkValueError,
)

try:
    from ._native import ffi, lib
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "qtoolkit's C extension (qtoolkit._native) is not built. Install the package with "
        "'pip install .' (or 'pip install -e .' for development)."
    ) from exc

_built_version = ffi.string(lib.qtk_version()).decode()
if _built_version != __version__:
    raise ImportError(
        f"qtoolkit's C extension is stale: it was built as version {_built_version}, "
        f"the Python package is {__version__}. Rebuild it with 'pip install -e .'."
    )

OK = lib.QTK_OK


def _status_error(status: int, what: str) -> QtkError:
    message = f"{what}: {ffi.string(lib.qtk_strerror(status)).decode()}"
    if status == lib.QTK_E_NOMEM:
        return QtkMemoryError(message)
    if status == lib.QTK_E_UNSUPPORTED:
        return QtkNotImplementedError(message)
    return QtkValueError(message)


def _check(status: int, what: str) -> None:
    if status != OK:
        raise _status_error(status, what)


class TypeTraits(NamedTuple):
    name: str            # ggml's spelling, e.g. "q4_K"
    block_size: int      # elements per block
    type_size: int       # bytes per block
    is_quantized: bool
    uses_imatrix: bool
    can_quantize: bool
    can_dequantize: bool


_traits_cache: dict = {}


def type_traits(type_id: int) -> Optional[TypeTraits]:
    """The C traits table's row for a GGUF type id, or None for an id that is not a ggml type."""
    type_id = int(type_id)
    if type_id not in _traits_cache:
        out = ffi.new("qtk_type_traits *")
        if lib.qtk_get_type_traits(type_id, out) != OK:
            _traits_cache[type_id] = None
        else:
            _traits_cache[type_id] = TypeTraits(
                ffi.string(out.name).decode(), int(out.blck_size), int(out.type_size),
                bool(out.is_quantized), bool(out.uses_imatrix), bool(out.can_quantize),
                bool(out.can_dequantize),
            )
    return _traits_cache[type_id]


def requires_imatrix(type_id: int) -> bool:
    """True for the types ggml quantizes only with importance weights (IQ2_XXS, IQ2_XS, IQ1_S)."""
    out = ffi.new("int *")
    _check(lib.qtk_type_requires_imatrix(int(type_id), out), f"type id {type_id}")
    return bool(out[0])


def imatrix_required_error(type_name: str) -> QtkImatrixRequiredError:
    """The error for quantizing to `type_name` without an importance matrix."""
    name = type_name.upper()
    return QtkImatrixRequiredError(
        f"{name} needs an importance matrix (imatrix): ggml defines {name} only with importance "
        "weights. Compute one with 'qtoolkit imatrix' (or llama.cpp's llama-imatrix) and pass it: "
        "--imatrix FILE on 'qtoolkit convert', imatrix=... in Python. Types that work without one: "
        "IQ2_S, IQ3_XXS, IQ3_S, IQ1_M, Q2_K, Q3_K and up.",
        qtype=name,
    )


def _implemented(type_id: int, dequant: bool = False) -> TypeTraits:
    traits = type_traits(type_id)
    if traits is None:
        raise QtkValueError(f"unknown type id {type_id}")
    if not (traits.can_dequantize if dequant else traits.can_quantize):
        raise QtkNotImplementedError(
            f"{'dequantize' if dequant else 'quantize'} is not implemented for {traits.name} in this version"
        )
    return traits


def _require(arr: np.ndarray, dtype, ndim: int, name: str, writable: bool = False) -> None:
    if not isinstance(arr, np.ndarray):
        raise QtkValueError(f"{name} must be a numpy array, got {type(arr).__name__}")
    if arr.dtype != dtype:
        raise QtkValueError(f"{name} must have dtype {np.dtype(dtype).name}, got {arr.dtype}")
    if arr.ndim != ndim:
        raise QtkValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if not arr.flags.c_contiguous:
        raise QtkValueError(f"{name} must be C-contiguous (use np.ascontiguousarray)")
    if writable and not arr.flags.writeable:
        raise QtkValueError(f"{name} must be writable")


def _check_imatrix(imatrix, n_per_row: int):
    if imatrix is None:
        return ffi.NULL
    _require(imatrix, np.float32, 1, "imatrix")
    if imatrix.shape[0] != n_per_row:
        raise QtkValueError(f"imatrix has {imatrix.shape[0]} values, the rows have {n_per_row} columns")
    return ffi.from_buffer("float[]", imatrix)


def _raise_quantize(status: int, bad_row: int, row0: int, what: str, missing_imatrix_type: str = "") -> None:
    if status == lib.QTK_E_NONFINITE:
        raise QtkValueError(
            f"{what}: row {row0 + bad_row} holds NaN or Inf; clean the weights first "
            "(qtoolkit refuses to quantize non-finite values)"
        )
    if status == lib.QTK_E_OVERFLOW:
        raise QtkValueError(
            f"{what}: row {row0 + bad_row} has values too large for this format's 16-bit "
            "float scale (it would store Inf); use F32 or a format without an fp16 min/scale"
        )
    if status == lib.QTK_E_IMATRIX:
        if missing_imatrix_type:
            raise imatrix_required_error(missing_imatrix_type)
        raise QtkValueError(f"{what}: importance weights must be finite and non-negative")
    _check(status, what)


def quantize_rows(type_id: int, x: np.ndarray, out: np.ndarray, imatrix=None, row0: int = 0) -> None:
    """Quantize the rows of x (float32 [rows, n]) into out (uint8 [rows, row_bytes])."""
    _require(x, np.float32, 2, "x")
    _require(out, np.uint8, 2, "out", writable=True)
    traits = _implemented(type_id)
    blck, size = traits.block_size, traits.type_size
    rows, n = x.shape
    if n % blck:
        raise QtkValueError(f"row length {n} is not a multiple of the block size {blck}")
    if out.shape != (rows, n // blck * size):
        raise QtkValueError(f"out has shape {out.shape}, expected {(rows, n // blck * size)}")
    qw = _check_imatrix(imatrix, n)
    if imatrix is None and requires_imatrix(type_id):
        raise imatrix_required_error(traits.name)
    bad = ffi.new("int64_t *", -1)
    status = lib.qtk_quantize(
        int(type_id), ffi.from_buffer("float[]", x), ffi.from_buffer(out, require_writable=True),
        rows, n, qw, bad,
    )
    if status != OK:
        _raise_quantize(status, int(bad[0]), row0, f"quantize to {traits.name}",
                        traits.name if imatrix is None else "")


def dequantize_rows(type_id: int, data: np.ndarray, out: np.ndarray) -> None:
    """Dequantize data (uint8 [rows, row_bytes]) into out (float32 [rows, n])."""
    _require(data, np.uint8, 2, "data")
    _require(out, np.float32, 2, "out", writable=True)
    traits = _implemented(type_id, dequant=True)
    blck, size = traits.block_size, traits.type_size
    rows, n = out.shape
    if n % blck or data.shape != (rows, n // blck * size):
        raise QtkValueError(f"data shape {data.shape} does not hold {rows} rows of {n} {traits.name} values")
    _check(
        lib.qtk_dequantize(int(type_id), ffi.from_buffer(data), ffi.from_buffer("float[]", out, require_writable=True), rows, n),
        f"dequantize {traits.name}",
    )


def custom_block_bytes(bits: int, group: int, symmetric: bool) -> int:
    out = ffi.new("int64_t *")
    _check(lib.qtk_custom_block_bytes(bits, group, int(symmetric), out), "CustomQuant parameters")
    return int(out[0])


def custom_quantize_rows(bits, group, symmetric, x, out, imatrix=None, row0: int = 0) -> None:
    _require(x, np.float32, 2, "x")
    _require(out, np.uint8, 2, "out", writable=True)
    rows, n = x.shape
    if n % group:
        raise QtkValueError(f"row length {n} is not a multiple of the group size {group}")
    block = custom_block_bytes(bits, group, symmetric)
    if out.shape != (rows, n // group * block):
        raise QtkValueError(f"out has shape {out.shape}, expected {(rows, n // group * block)}")
    qw = _check_imatrix(imatrix, n)
    bad = ffi.new("int64_t *", -1)
    status = lib.qtk_custom_quantize(
        bits, group, int(symmetric), ffi.from_buffer("float[]", x),
        ffi.from_buffer(out, require_writable=True), rows, n, qw, bad,
    )
    if status != OK:
        _raise_quantize(status, int(bad[0]), row0, "CustomQuant quantize")


def custom_dequantize_rows(bits, group, symmetric, data, out) -> None:
    _require(data, np.uint8, 2, "data")
    _require(out, np.float32, 2, "out", writable=True)
    rows, n = out.shape
    block = custom_block_bytes(bits, group, symmetric)
    if n % group or data.shape != (rows, n // group * block):
        raise QtkValueError(f"data shape {data.shape} does not hold {rows} rows of {n} values")
    _check(
        lib.qtk_custom_dequantize(
            bits, group, int(symmetric), ffi.from_buffer(data),
            ffi.from_buffer("float[]", out, require_writable=True), rows, n,
        ),
        "CustomQuant dequantize",
    )


# ---------------------------------------------------------------- quantizer variants (fastq)


def quantizer_variants() -> dict:
    """{name: available} for every quantizer variant: "ref" (the portable reference row
    functions), "vec" (lane code at the baseline ISA), "avx2". Available = built, run by this CPU,
    and not above the QTK_ISA cap. All variants write identical bytes."""
    return {
        ffi.string(lib.qtk_fastq_name(v)).decode(): bool(lib.qtk_fastq_available(v))
        for v in range(lib.QTK_FASTQ_COUNT)
    }


def quantizer_variant() -> str:
    """Name of the quantizer variant in use."""
    return ffi.string(lib.qtk_fastq_name(lib.qtk_fastq_variant())).decode()


def quantizer_variant_supported(name: str) -> bool:
    """Whether this build and CPU can run the variant (the QTK_ISA cap not considered)."""
    return bool(lib.qtk_fastq_supported(_variant_id(name)))


def _variant_id(name: str) -> int:
    for v in range(lib.QTK_FASTQ_COUNT):
        if ffi.string(lib.qtk_fastq_name(v)).decode() == name:
            return v
    raise QtkValueError(f"unknown quantizer variant {name!r}")


def set_quantizer_variant(name: str) -> None:
    """Force a quantizer variant for the whole process (tests, benchmarks)."""
    status = lib.qtk_fastq_set_variant(_variant_id(name))
    if status == lib.QTK_E_UNSUPPORTED:
        raise QtkNotImplementedError(f"quantizer variant {name!r} is not available here (CPU or QTK_ISA)")
    _check(status, "set quantizer variant")


# -- the IQ codebook formats (tables and reference dot products, for tests and tools) ----------


def iq_grid(type_id: int) -> np.ndarray:
    """The codebook of an IQ type as int16 [entries, width] (IQ1_S and IQ1_M share one)."""
    entries, width = ffi.new("int64_t *"), ffi.new("int64_t *")
    _check(lib.qtk_iq_grid(int(type_id), ffi.NULL, 0, entries, width), f"grid of type {type_id}")
    out = np.empty((int(entries[0]), int(width[0])), dtype=np.int16)
    _check(lib.qtk_iq_grid(int(type_id), ffi.from_buffer("int16_t[]", out, require_writable=True), out.size,
                           entries, width), f"grid of type {type_id}")
    return out


def iq_ksigns() -> np.ndarray:
    """The 128 sign patterns of IQ2_XXS / IQ2_XS / IQ3_XXS."""
    out = np.empty(128, dtype=np.uint8)
    _check(lib.qtk_iq_ksigns(ffi.from_buffer(out, require_writable=True), out.size), "ksigns")
    return out


def iq1_delta() -> float:
    out = ffi.new("float *")
    _check(lib.qtk_iq1_delta(out), "IQ1 delta")
    return float(out[0])


def iq_vec_dot_ref(type_id: int, w_row: np.ndarray, y_row: np.ndarray, n: int) -> float:
    """Reference dot product of one IQ row (uint8 bytes) with one Q8_K activation row (uint8 bytes)."""
    _require(w_row, np.uint8, 1, "w_row")
    _require(y_row, np.uint8, 1, "y_row")
    traits = _implemented(type_id)
    q8k = type_traits(15)
    if n % traits.block_size or w_row.size != n // traits.block_size * traits.type_size:
        raise QtkValueError(f"w_row has {w_row.size} bytes, not one {traits.name} row of {n}")
    if y_row.size != n // q8k.block_size * q8k.type_size:
        raise QtkValueError(f"y_row has {y_row.size} bytes, not one q8_K row of {n}")
    out = ffi.new("float *")
    _check(lib.qtk_iq_vec_dot_ref(int(type_id), n, ffi.from_buffer(w_row), ffi.from_buffer(y_row), out),
           f"dot {traits.name} x q8_K")
    return float(out[0])
