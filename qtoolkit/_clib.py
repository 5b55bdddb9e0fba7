"""The only module that touches the cffi extension ``qtoolkit._native`` (its ``ffi``/``lib``).

Every wrapper checks dtype, shape, contiguity and lengths before handing a pointer to C: cffi
does not check them (a float64 array passes as twice as many floats). C status codes map to
exactly one exception class each. cffi releases the GIL around every call, so callers may run
these wrappers from a thread pool.
"""

from __future__ import annotations

import logging
import os
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

# QTK_ISA is read once by the C core, which cannot report a misspelling: say it here.
_ISA_WORDS = ("ref", "baseline", "scalar", "vec", "avx2", "neon")
if os.environ.get("QTK_ISA") and os.environ["QTK_ISA"] not in _ISA_WORDS:
    logging.getLogger("qtoolkit").warning(
        "QTK_ISA=%s is not one of %s; it is ignored", os.environ["QTK_ISA"], ", ".join(_ISA_WORDS)
    )


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
    can_matmul: bool     # qtk_matmul runs weights of this type


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
                bool(out.can_dequantize), bool(out.can_matmul),
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


def quant_error_rows(type_id: int, x: np.ndarray, out: np.ndarray, imatrix=None, weights=None, row0: int = 0) -> None:
    """out[r] (float64) = sum_j weights_j (x[r, j] - dequantize(quantize(x[r]))_j)^2 for float32 x [rows, n]."""
    _require(x, np.float32, 2, "x")
    _require(out, np.float64, 1, "out", writable=True)
    traits = _implemented(type_id)
    _implemented(type_id, dequant=True)
    rows, n = x.shape
    if n % traits.block_size:
        raise QtkValueError(f"row length {n} is not a multiple of the block size {traits.block_size}")
    if out.shape != (rows,):
        raise QtkValueError(f"out has shape {out.shape}, expected {(rows,)}")
    qw = _check_imatrix(imatrix, n)
    if weights is None:
        ew = ffi.NULL
    else:
        _require(weights, np.float32, 1, "weights")
        if weights.shape[0] != n:
            raise QtkValueError(f"weights has {weights.shape[0]} values, the rows have {n} columns")
        ew = ffi.from_buffer("float[]", weights)
    if imatrix is None and requires_imatrix(type_id):
        raise imatrix_required_error(traits.name)
    bad = ffi.new("int64_t *", -1)
    status = lib.qtk_quant_error(int(type_id), ffi.from_buffer("float[]", x), rows, n, qw, ew,
                                 ffi.from_buffer("double[]", out, require_writable=True), bad)
    if status != OK:
        _raise_quantize(status, int(bad[0]), row0, f"quantization error of {traits.name}",
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


# -- instruction sets and matmul -----------------------------------------------------------

def isa_names() -> list:
    """Every ISA name this build knows, lowest first."""
    return [ffi.string(lib.qtk_isa_name(i)).decode() for i in range(lib.QTK_ISA_COUNT)]


def _isa_id(name: str) -> int:
    names = isa_names()
    if not isinstance(name, str) or name.lower() not in names:
        raise QtkValueError(f"unknown instruction set {name!r}; known: {', '.join(names)}")
    return names.index(name.lower())


def active_isa() -> str:
    return ffi.string(lib.qtk_isa_name(lib.qtk_active_isa())).decode()


def available_isas() -> list:
    return [n for i, n in enumerate(isa_names()) if lib.qtk_isa_available(i)]


def supported_isas() -> list:
    return [n for i, n in enumerate(isa_names()) if lib.qtk_isa_supported(i)]


def set_isa(name: str) -> None:
    isa = _isa_id(name)
    status = lib.qtk_set_isa(isa)
    if status == lib.QTK_E_UNSUPPORTED:
        why = "capped by QTK_ISA" if lib.qtk_isa_supported(isa) else "not supported by this CPU or build"
        raise QtkNotImplementedError(f"instruction set {name!r} is not available ({why}); available: {', '.join(available_isas())}")
    _check(status, f"set_isa({name!r})")


def wtype(type_id: int = 0, custom=None, act_f32: bool = False):
    """A ``qtk_wtype`` for a GGUF type id, or for CustomQuant parameters (bits, group, symmetric).

    ``act_f32=True`` runs the matmul on float32 activations with float32 products (QTK_ACT_F32)
    instead of the type's companion format: BF16 weights then stay bf16 in memory but are not met
    by bf16-rounded activations (what a bf16 checkpoint's full-precision run needs); F32 and F16
    take float32 activations anyway. Any other type refuses it (QtkNotImplementedError, raised by
    the first call that uses the wtype)."""
    wt = ffi.new("qtk_wtype *")
    if custom is not None:
        wt.type = lib.QTK_TYPE_CUSTOM
        wt.bits, wt.group, wt.symmetric = int(custom[0]), int(custom[1]), int(bool(custom[2]))
    else:
        wt.type = int(type_id)
    wt.act = lib.QTK_ACT_F32 if act_f32 else lib.QTK_ACT_COMPANION
    return wt


def _check_wtype(status: int, wt) -> None:
    if status == lib.QTK_E_UNSUPPORTED and wt.act == lib.QTK_ACT_F32:
        # (an unknown type id is QTK_E_TYPE, so a non-custom id here has traits)
        name = "CustomQuant" if wt.type == lib.QTK_TYPE_CUSTOM else type_traits(wt.type).name
        raise QtkNotImplementedError(f"float32 activations (act_f32) are for F32, F16 and BF16 weights, not {name}")
    _check(status, "matmul weight type")


def wtype_row_bytes(wt, n: int) -> int:
    out = ffi.new("int64_t *")
    _check_wtype(lib.qtk_wtype_row_bytes(wt, n, out), wt)
    return int(out[0])


def activation_row_bytes(wt, n: int) -> int:
    out = ffi.new("int64_t *")
    _check_wtype(lib.qtk_activation_row_bytes(wt, n, out), wt)
    return int(out[0])


def _fptr(a):
    return ffi.from_buffer("float[]", a)


def _fout(a):
    return ffi.from_buffer("float[]", a, require_writable=True)


def matmul(wt, w: np.ndarray, x: np.ndarray, out: np.ndarray, threads: int) -> None:
    """out[t, r] = row r of w (uint8 [rows, row_bytes]) . x[t] (float32 [tokens, n])."""
    _require(w, np.uint8, 2, "w")
    _require(x, np.float32, 2, "x")
    _require(out, np.float32, 2, "out", writable=True)
    rows, tokens, n = w.shape[0], x.shape[0], x.shape[1]
    if w.shape[1] != wtype_row_bytes(wt, n) or out.shape != (tokens, rows):
        raise QtkValueError(f"matmul shapes do not agree: w {w.shape}, x {x.shape}, out {out.shape}")
    _check(lib.qtk_matmul(wt, ffi.from_buffer(w), rows, n, _fptr(x), tokens, _fout(out), int(threads)), "matmul")


def moe_matmul(wt, w: np.ndarray, x: np.ndarray, ids: np.ndarray, out: np.ndarray, threads: int) -> None:
    _require(w, np.uint8, 3, "w")
    _require(x, np.float32, 2, "x")
    _require(ids, np.int32, 2, "expert_ids")
    _require(out, np.float32, 3, "out", writable=True)
    n_experts, rows = w.shape[0], w.shape[1]
    tokens, n = x.shape
    k = ids.shape[1]
    if w.shape[2] != wtype_row_bytes(wt, n) or ids.shape[0] != tokens or out.shape != (tokens, k, rows):
        raise QtkValueError(f"moe_matmul shapes do not agree: w {w.shape}, x {x.shape}, expert_ids {ids.shape}")
    _check(
        lib.qtk_moe_matmul(wt, ffi.from_buffer(w), n_experts, rows, n, _fptr(x), tokens,
                           ffi.from_buffer("int32_t[]", ids), k, _fout(out), int(threads)),
        "moe_matmul",
    )


def moe_ffn(wts, gate, up, down, x, ids, weights, out, threads: int) -> None:
    for a, name in ((gate, "gate"), (up, "up"), (down, "down")):
        _require(a, np.uint8, 3, name)
    _require(x, np.float32, 2, "x")
    _require(ids, np.int32, 2, "expert_ids")
    _require(weights, np.float32, 2, "expert_weights")
    _require(out, np.float32, 2, "out", writable=True)
    n_experts, n_ff = gate.shape[0], gate.shape[1]
    tokens, n_embd = x.shape
    k = ids.shape[1]
    ok = (
        up.shape[:2] == (n_experts, n_ff) and down.shape[:2] == (n_experts, n_embd)
        and gate.shape[2] == wtype_row_bytes(wts[0], n_embd) and up.shape[2] == wtype_row_bytes(wts[1], n_embd)
        and down.shape[2] == wtype_row_bytes(wts[2], n_ff)
        and ids.shape == (tokens, k) and weights.shape == (tokens, k) and out.shape == (tokens, n_embd)
    )
    if not ok:
        raise QtkValueError(
            f"moe_ffn shapes do not agree: gate {gate.shape}, up {up.shape}, down {down.shape}, x {x.shape}, "
            f"expert_ids {ids.shape}, expert_weights {weights.shape}"
        )
    _check(
        lib.qtk_moe_ffn(wts[0], wts[1], wts[2], ffi.from_buffer(gate), ffi.from_buffer(up), ffi.from_buffer(down),
                        n_experts, n_ff, n_embd, _fptr(x), tokens, ffi.from_buffer("int32_t[]", ids),
                        _fptr(weights), k, _fout(out), int(threads)),
        "moe_ffn",
    )


def quantize_activation(wt, x: np.ndarray) -> np.ndarray:
    """One activation row in the format the weight type takes: its companion format, or float32
    bytes for act_f32 (for tests)."""
    _require(x, np.float32, 1, "x")
    nbytes = activation_row_bytes(wt, x.shape[0])
    y = np.empty(nbytes, dtype=np.uint8)
    _check(lib.qtk_quantize_activation(wt, _fptr(x), x.shape[0], ffi.from_buffer(y, require_writable=True), nbytes),
           "quantize activation")
    return y


def vec_dot(wt, n: int, w_row: np.ndarray, y: np.ndarray) -> float:
    """The active dot kernel on one weight row and one quantized activation row (for tests)."""
    _require(w_row, np.uint8, 1, "w_row")
    _require(y, np.uint8, 1, "y")
    if w_row.shape[0] != wtype_row_bytes(wt, n) or y.shape[0] != activation_row_bytes(wt, n):
        raise QtkValueError("vec_dot: row lengths do not match n")
    out = ffi.new("float *")
    _check(lib.qtk_vec_dot(wt, n, ffi.from_buffer(w_row), ffi.from_buffer(y), out), "vec_dot")
    return float(out[0])


def read_bandwidth(nbytes: int, reps: int, threads: int) -> float:
    out = ffi.new("double *")
    _check(lib.qtk_read_bandwidth(int(nbytes), int(reps), int(threads), out), "read_bandwidth")
    return float(out[0])


# -- weights bound once, for inference loops ---------------------------------------------------
# An inference step calls the same matrices thousands of times with one token: these objects
# check a weight's type, shape and buffer once, so a call only checks the activation.

class BoundMatmul:
    """``out = x @ W.T`` for one weight matrix (uint8 ``[rows, row_bytes]`` of type id ``type_id``);
    ``act_f32`` as for :func:`wtype` (float32 activations: F32, F16 and BF16 weights only)."""

    __slots__ = ("wt", "w", "wbuf", "rows", "n")

    def __init__(self, type_id: int, w: np.ndarray, n: int, act_f32: bool = False):
        _require(w, np.uint8, 2, "w")
        self.wt = wtype(type_id, act_f32=act_f32)
        if w.shape[1] != wtype_row_bytes(self.wt, n):
            raise QtkValueError(f"weight rows of {w.shape[1]} bytes do not hold {n} values of type {type_id}")
        self.w, self.wbuf, self.rows, self.n = w, ffi.from_buffer(w), w.shape[0], n

    def __call__(self, x: np.ndarray, threads: int) -> np.ndarray:
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != self.n or not x.flags.c_contiguous:
            raise QtkValueError(f"x must be C-contiguous float32 [tokens, {self.n}], got {x.dtype} {x.shape}")
        out = np.empty((x.shape[0], self.rows), dtype=np.float32)
        _check(lib.qtk_matmul(self.wt, self.wbuf, self.rows, self.n, ffi.from_buffer("float[]", x), x.shape[0],
                              ffi.from_buffer("float[]", out, require_writable=True), int(threads)), "matmul")
        return out


class BoundMoeFFN:
    """The fused expert FFN of one MoE layer (see :func:`moe_ffn`) with its three stacks bound;
    ``act_f32`` (see :func:`wtype`): one flag for all three projections, or one per projection."""

    __slots__ = ("wts", "mats", "bufs", "n_expert", "n_ff", "n_embd")

    def __init__(self, type_ids, gate: np.ndarray, up: np.ndarray, down: np.ndarray, n_embd: int, n_ff: int,
                 act_f32: bool = False):
        for a, name in ((gate, "gate"), (up, "up"), (down, "down")):
            _require(a, np.uint8, 3, name)
        flags = tuple(act_f32) if isinstance(act_f32, (tuple, list)) else (act_f32,) * 3
        self.wts = tuple(wtype(t, act_f32=bool(f)) for t, f in zip(type_ids, flags))
        E = gate.shape[0]
        ok = (up.shape[:2] == gate.shape[:2] == (E, n_ff) and down.shape[:2] == (E, n_embd)
              and gate.shape[2] == wtype_row_bytes(self.wts[0], n_embd) and up.shape[2] == wtype_row_bytes(self.wts[1], n_embd)
              and down.shape[2] == wtype_row_bytes(self.wts[2], n_ff))
        if not ok:
            raise QtkValueError(f"gate {gate.shape}, up {up.shape} and down {down.shape} do not form one expert FFN")
        self.mats = (gate, up, down)
        self.bufs = tuple(ffi.from_buffer(a) for a in self.mats)
        self.n_expert, self.n_ff, self.n_embd = E, n_ff, n_embd

    def __call__(self, x: np.ndarray, ids: np.ndarray, weights: np.ndarray, threads: int) -> np.ndarray:
        T = x.shape[0] if x.ndim == 2 else -1
        if (x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != self.n_embd or not x.flags.c_contiguous
                or ids.dtype != np.int32 or ids.ndim != 2 or ids.shape[0] != T or not ids.flags.c_contiguous
                or weights.dtype != np.float32 or weights.shape != ids.shape or not weights.flags.c_contiguous):
            raise QtkValueError("moe_ffn: x must be float32 [tokens, n_embd], ids int32 and weights float32 [tokens, k]")
        if ids.size and (ids.min() < 0 or ids.max() >= self.n_expert):
            raise QtkValueError(f"expert ids must lie in [0, {self.n_expert})")
        out = np.empty((T, self.n_embd), dtype=np.float32)
        _check(lib.qtk_moe_ffn(self.wts[0], self.wts[1], self.wts[2], self.bufs[0], self.bufs[1], self.bufs[2],
                               self.n_expert, self.n_ff, self.n_embd, ffi.from_buffer("float[]", x), T,
                               ffi.from_buffer("int32_t[]", ids), ffi.from_buffer("float[]", weights), ids.shape[1],
                               ffi.from_buffer("float[]", out, require_writable=True), int(threads)), "moe_ffn")
        return out
