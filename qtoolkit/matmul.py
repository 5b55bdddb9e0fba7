"""Dequant-matmul on quantized weights: dense, Mixture-of-Experts, and the fused MoE feed-forward,
plus the run-time instruction-set (ISA) choice of the C kernels.

The weights stay quantized (``uint8`` rows as :func:`qtoolkit.quantize` returns them); each
activation row is quantized once per call to the weight type's companion format, as ggml does on
CPU (see docs/matmul.md). Work is spread over a C thread pool by output rows only, so results do
not depend on ``threads``.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _clib
from .errors import QtkTypeError, QtkValueError
from .quants import MAX_THREADS, CustomQuant, QType, QuantType, resolve, type_info

__all__ = [
    "matmul",
    "moe_matmul",
    "moe_ffn",
    "active_isa",
    "available_isas",
    "supported_isas",
    "set_isa",
    "memory_read_bandwidth",
]


# -- instruction sets -----------------------------------------------------------------------

def active_isa() -> str:
    """The instruction set whose kernels run now: ``"ref"`` (portable C), ``"avx2"`` or ``"neon"``."""
    return _clib.active_isa()


def available_isas() -> List[str]:
    """Instruction sets this build and CPU can run, lowest first, capped by ``QTK_ISA`` if set."""
    return _clib.available_isas()


def supported_isas() -> List[str]:
    """Instruction sets this build and CPU could run, ignoring the ``QTK_ISA`` cap."""
    return _clib.supported_isas()


def set_isa(name: str) -> None:
    """Switch the kernels for the whole process (e.g. ``set_isa("ref")`` to compare with the
    reference). Only an available ISA can be chosen; ``QTK_ISA`` caps what is available."""
    _clib.set_isa(name)


# -- helpers --------------------------------------------------------------------------------

def weight_type(q: Union[QuantType, CustomQuant], f32_activations: bool = False):
    """The C kernels' description of a weight type (a ggml type or a CustomQuant); with
    ``f32_activations``, float weights (BF16) run with float32 activations instead of ggml's pairing."""
    if isinstance(q, CustomQuant):
        return _clib.wtype(custom=(q.bits, q.group_size, q.symmetric), act_f32=f32_activations)
    return _clib.wtype(int(q), act_f32=f32_activations)


def _threads(threads: Optional[int]) -> int:
    if threads is None:
        return 0  # the C pool uses one thread per available core
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= MAX_THREADS:
        raise QtkValueError(f"threads must be an integer from 1 to {MAX_THREADS} or None, got {threads!r}")
    return int(threads)


def _weights(w, q, ndim: int, name: str) -> Tuple[np.ndarray, int]:
    """uint8 weights of ``ndim`` dims and the row length n they hold."""
    if not isinstance(w, np.ndarray):
        raise QtkTypeError(f"{name} must be a numpy array, got {type(w).__name__}")
    if w.dtype != np.uint8:
        plain = {QuantType.F32: np.float32, QuantType.F16: np.float16}
        if not isinstance(q, CustomQuant) and plain.get(q) == w.dtype and w.ndim >= 1:
            w = np.ascontiguousarray(w).view(np.uint8)
        else:
            raise QtkTypeError(f"{name} must be uint8 (quantized rows as qtoolkit.quantize returns), got {w.dtype}")
    if w.ndim != ndim:
        raise QtkValueError(f"{name} must be {ndim}-D, got shape {w.shape}")
    w = np.ascontiguousarray(w)
    info = type_info(q)
    if w.shape[-1] % info.type_size:
        raise QtkValueError(f"{name} rows of {w.shape[-1]} bytes are not whole {info.name} blocks of {info.type_size} bytes")
    return w, w.shape[-1] // info.type_size * info.block_size


def _activations(x, n: int, name: str = "x") -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise QtkTypeError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise QtkTypeError(f"{name} must hold floats, got dtype {x.dtype}")
    if x.shape[-1:] != (n,):
        raise QtkValueError(f"{name} has shape {x.shape}; its last dimension must be the weights' row length {n}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _expert_ids(ids, tokens: int, n_experts: int) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise QtkTypeError(f"expert_ids must hold integers, got dtype {ids.dtype}")
    if ids.ndim != 2 or ids.shape[0] != tokens or ids.shape[1] < 1:
        raise QtkValueError(f"expert_ids must be [tokens={tokens}, k], got shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= n_experts):
        raise QtkValueError(f"expert_ids must lie in [0, {n_experts}), got values {ids.min()}..{ids.max()}")
    return np.ascontiguousarray(ids, dtype=np.int32)


# -- the API --------------------------------------------------------------------------------

def matmul(w: np.ndarray, qtype: QType, x: np.ndarray, threads: Optional[int] = None,
           f32_activations: bool = False) -> np.ndarray:
    """``x @ W.T`` with W kept quantized.

    ``w``: uint8 ``[rows, row_bytes]`` of ``qtype`` (as :func:`qtoolkit.quantize` returns);
    ``x``: floats ``[n]`` (one token: a gemv) or ``[tokens, n]`` (a blocked gemm). Returns float32
    ``[rows]`` or ``[tokens, rows]``. ``threads``: default one per available core; the result does
    not depend on it. ``f32_activations``: BF16 weights with float32 activations (the way a
    checkpoint's full-precision reference runs) instead of ggml's BF16 activations; F32 and F16
    weights always take float32 activations; other types refuse it.
    """
    q = resolve(qtype)
    w, n = _weights(w, q, 2, "w")
    x = _activations(x, n)
    x2 = x.reshape(-1, n) if x.ndim == 1 else x
    if x2.ndim != 2:
        raise QtkValueError(f"x must be [n] or [tokens, n], got shape {x.shape}")
    out = np.empty((x2.shape[0], w.shape[0]), dtype=np.float32)
    _clib.matmul(weight_type(q, f32_activations), w, x2, out, _threads(threads))
    return out[0] if x.ndim == 1 else out


def moe_matmul(w: np.ndarray, qtype: QType, x: np.ndarray, expert_ids, threads: Optional[int] = None) -> np.ndarray:
    """Mixture-of-Experts matmul (ggml's ``mul_mat_id``).

    ``w``: stacked experts, uint8 ``[n_experts, rows, row_bytes]``; ``x``: floats ``[tokens, n]``;
    ``expert_ids``: integers ``[tokens, k]``. Returns float32 ``[tokens, k, rows]`` with
    ``out[t, j] = matmul(w[expert_ids[t, j]], qtype, x[t])`` bit for bit. Only routed experts are
    read, and the tokens routed to one expert are computed as one gemm.
    """
    q = resolve(qtype)
    w, n = _weights(w, q, 3, "w")
    x = _activations(x, n)
    if x.ndim != 2:
        raise QtkValueError(f"x must be [tokens, n], got shape {x.shape}")
    ids = _expert_ids(expert_ids, x.shape[0], w.shape[0])
    out = np.empty((x.shape[0], ids.shape[1], w.shape[1]), dtype=np.float32)
    _clib.moe_matmul(weight_type(q), w, x, ids, out, _threads(threads))
    return out


def moe_ffn(
    gate: np.ndarray,
    up: np.ndarray,
    down: np.ndarray,
    qtypes: Union[QType, Sequence[QType]],
    x: np.ndarray,
    expert_ids,
    expert_weights,
    threads: Optional[int] = None,
) -> np.ndarray:
    """The fused expert feed-forward of one MoE layer:
    ``out[t] = sum_j expert_weights[t, j] * down_e(silu(gate_e x[t]) * up_e x[t])``, ``e = expert_ids[t, j]``.

    ``gate``, ``up``: uint8 ``[n_experts, n_ff, row_bytes]`` (rows of length n_embd); ``down``: uint8
    ``[n_experts, n_embd, row_bytes]`` (rows of length n_ff); ``qtypes``: one type for all three or
    ``(gate_type, up_type, down_type)``; ``x``: floats ``[tokens, n_embd]``. Returns float32
    ``[tokens, n_embd]``. The hidden vector is quantized to down's companion format, as ggml does;
    the sum over j runs in order j = 0..k-1.
    """
    if isinstance(qtypes, (list, tuple)):
        if len(qtypes) != 3:
            raise QtkValueError("qtypes must be one type or (gate_type, up_type, down_type)")
        qs = tuple(resolve(q) for q in qtypes)
    else:
        qs = (resolve(qtypes),) * 3
    gate, n_embd = _weights(gate, qs[0], 3, "gate")
    up, n_embd_u = _weights(up, qs[1], 3, "up")
    down, n_ff = _weights(down, qs[2], 3, "down")
    if n_embd_u != n_embd or up.shape[:2] != gate.shape[:2] or gate.shape[1] != n_ff:
        raise QtkValueError(f"gate {gate.shape}, up {up.shape} and down {down.shape} do not form one expert FFN")
    if down.shape[:2] != (gate.shape[0], n_embd):
        raise QtkValueError(f"down must be [n_experts={gate.shape[0]}, n_embd={n_embd}, ...], got {down.shape}")
    x = _activations(x, n_embd)
    if x.ndim != 2:
        raise QtkValueError(f"x must be [tokens, n_embd], got shape {x.shape}")
    ids = _expert_ids(expert_ids, x.shape[0], gate.shape[0])
    wts = np.ascontiguousarray(expert_weights, dtype=np.float32)
    if wts.shape != ids.shape:
        raise QtkValueError(f"expert_weights must have the shape of expert_ids {ids.shape}, got {wts.shape}")
    out = np.empty((x.shape[0], n_embd), dtype=np.float32)
    _clib.moe_ffn(tuple(weight_type(q) for q in qs), gate, up, down, x, ids, wts, out, _threads(threads))
    return out


def memory_read_bandwidth(nbytes: int = 1 << 30, reps: int = 5, threads: Optional[int] = None) -> float:
    """Best of ``reps`` reads of an ``nbytes`` buffer on ``threads`` threads, in GB/s (1e9 B/s)."""
    return _clib.read_bandwidth(nbytes, reps, _threads(threads))
