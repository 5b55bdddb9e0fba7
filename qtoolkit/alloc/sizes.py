"""Bytes of tensors and files as the allocator counts them (GGUF's layout: padded tensor data)."""

from __future__ import annotations

from typing import Dict

from ..io.gguf_writer import file_layout
from ..quants import QuantType, type_info

BASE_PRESETS = ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0")
ALIGN = 32


def pad(n: int) -> int:
    """``n`` bytes padded to GGUF's tensor alignment."""
    return (n + ALIGN - 1) // ALIGN * ALIGN


def type_bytes(n: int, t: QuantType) -> int:
    """Bytes of ``n`` weights of type ``t``."""
    info = type_info(t)
    return n // info.block_size * info.type_size


def file_bytes(plan, outs, types: Dict[str, QuantType]) -> int:
    """The GGUF file's bytes with every tensor of ``outs`` at its type in ``types``."""
    return file_layout(plan.arch.gguf_arch, plan.metadata,
                       [(o.name, o.ne, type_bytes(o.n_elements, types[o.name])) for o in outs])["file_bytes"]
