"""Sizes as people write them: ``85G`` (GiB), ``91GB`` (10^9 bytes), ``2.5M``; and back."""

from __future__ import annotations

import re
from typing import Any

from .errors import QtkValueError

_UNITS = {"": 1, "B": 1,
          "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
          "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40,
          "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12}


def parse_size(text: Any, what: str = "size") -> int:
    """Bytes from ``"85G"``, ``"85GiB"``, ``"91.3GB"``, ``"1500000"``.

    A bare K/M/G/T suffix is binary (as ``ls -h`` and RAM sizes: 128G = 128 GiB); KB/MB/GB/TB are
    decimal (as disk and download sizes); KiB/MiB/GiB/TiB are binary."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
        if not m or m.group(2).upper() not in _UNITS:
            raise QtkValueError(f"{what}: cannot read {text!r} as a size; write e.g. 85G (GiB), 91GB (10^9 bytes) or 2.5M")
        value, unit = float(m.group(1)), m.group(2).upper()
    n = int(round(value * _UNITS[unit]))
    if n <= 0:
        raise QtkValueError(f"{what}: must be positive, got {text!r}")
    return n


def human(n: float, binary: bool = False) -> str:
    """``470.29 GB`` (decimal) or ``437.99 GiB`` (binary)."""
    base, units = (1024.0, ["B", "KiB", "MiB", "GiB", "TiB"]) if binary else (1000.0, ["B", "kB", "MB", "GB", "TB"])
    x = float(n)
    for u in units:
        if abs(x) < base or u == units[-1]:
            return f"{x:.0f} {u}" if u == "B" else f"{x:.2f} {u}"
        x /= base
    return f"{x:.2f} {units[-1]}"  # pragma: no cover
