"""Which ggml types a tensor may get: types llama.cpp runs, whose block divides the row, and the
importance-matrix-only types only when an importance matrix is given."""

from __future__ import annotations

from typing import Iterable, List, Optional, Sequence

from ..errors import QtkValueError
from ..quants import QuantType, resolve, type_info

Q = QuantType

# every type llama.cpp stores and runs on a CPU, lowest bits first; the ternary TQ1_0/TQ2_0 are
# left out (they only suit weights trained to be ternary) and so are the activation formats
DEFAULT_TYPES: List[QuantType] = [
    Q.IQ1_S, Q.IQ1_M, Q.IQ2_XXS, Q.IQ2_XS, Q.IQ2_S, Q.Q2_K, Q.IQ3_XXS, Q.IQ3_S, Q.Q3_K, Q.IQ4_XS, Q.IQ4_NL,
    Q.Q4_0, Q.Q4_K, Q.Q4_1, Q.Q5_0, Q.Q5_K, Q.Q5_1, Q.Q6_K, Q.Q8_0, Q.BF16, Q.F16,
]
# llama-quantize refuses these without importance data (lc-2026, shared/docs/ggml-formats.md §4.5)
IMATRIX_ONLY = {Q.IQ1_S, Q.IQ1_M, Q.IQ2_XXS, Q.IQ2_XS, Q.IQ2_S, Q.IQ3_XXS}


def parse_types(items: Optional[Iterable]) -> Optional[List[QuantType]]:
    """``"Q2_K,Q4_K,q8_0"`` or a list of names/types -> QuantTypes (None stays None)."""
    if items is None:
        return None
    if isinstance(items, str):
        items = [s for s in items.replace(" ", ",").split(",") if s]
    out = []
    for it in items:
        q = resolve(it)
        if not isinstance(q, QuantType) or q not in DEFAULT_TYPES + [Q.TQ1_0, Q.TQ2_0, Q.F32]:
            raise QtkValueError(f"{it!r} is not a ggml weight type the allocator can choose")
        out.append(q)
    if not out:
        raise QtkValueError("the list of types to choose from is empty")
    return out


def candidates(ne0: int, has_imatrix: bool, types: Optional[Sequence[QuantType]] = None,
               runnable=None) -> List[QuantType]:
    """The types a tensor with rows of ``ne0`` elements may get, by increasing size.

    ``runnable``: an optional predicate (type -> bool) to keep only types some consumer can run."""
    out = []
    for t in types or DEFAULT_TYPES:
        if ne0 % type_info(t).block_size:
            continue
        if t in IMATRIX_ONLY and not has_imatrix:
            continue
        if runnable is not None and not runnable(t):
            continue
        out.append(t)
    return sorted(out, key=lambda t: (type_info(t).bits_per_weight, int(t)))


def qtoolkit_can_run(t: QuantType) -> bool:
    """Whether qtoolkit's own matmul kernels run this weight type (so ``qtoolkit compare`` can
    measure the result); llama.cpp runs all of DEFAULT_TYPES."""
    return type_info(t).can_matmul
