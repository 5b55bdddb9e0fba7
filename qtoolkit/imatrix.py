"""Importance matrices from llama-imatrix: the GGUF format (``NAME.in_sum2`` + ``NAME.counts``)
and the legacy ``.dat`` format, as per-matrix weights for the quantizer.

For a weight tensor of ``ne = [n, rows, n_mat]`` the quantizer needs ``n_mat`` rows of ``n``
non-negative weights (one per input column, per expert). GGUF files keep per-expert counts, so
an expert that calibration never routed to (count 0) gets uniform weights (all ones) instead of
a division by zero; legacy files have one count per tensor (their writer already stores 1.0 for
unused experts). See shared/docs/ggml-formats.md §5.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from .errors import QtkFileNotFoundError, QtkFormatError

log = logging.getLogger(__name__)


@dataclass
class Imatrix:
    path: str
    format: str                                   # "gguf" or "dat"
    entries: Dict[str, np.ndarray]                # tensor name -> float32 (n_mat, n) or flat (legacy)
    datasets: List[str] = field(default_factory=list)
    chunk_count: int = 0
    zero_count_experts: Dict[str, List[int]] = field(default_factory=dict)

    def weights(self, name: str, n: int, n_mat: int) -> Optional[np.ndarray]:
        """(n_mat, n) weights for a tensor, None when the file has no entry for it."""
        w = self.entries.get(name)
        if w is None:
            return None
        if w.size != n * n_mat:
            raise QtkFormatError(
                f"{self.path}: importance entry for {name} has {w.size} values, the tensor needs {n} x {n_mat} = {n * n_mat}"
            )
        return np.ascontiguousarray(w, dtype=np.float32).reshape(n_mat, n)


def load_imatrix(path: str) -> Imatrix:
    if not os.path.isfile(path):
        raise QtkFileNotFoundError(f"{path}: no such importance-matrix file")
    with open(path, "rb") as f:
        magic = f.read(4)
    im = _load_gguf(path) if magic == b"GGUF" else _load_dat(path)
    for name, w in im.entries.items():
        if not np.all(np.isfinite(w)):
            raise QtkFormatError(f"{path}: importance entry for {name} contains NaN or Inf")
        if np.any(w < 0):
            raise QtkFormatError(f"{path}: importance entry for {name} has negative values")
    return im


def _load_gguf(path: str) -> Imatrix:
    from .gguf_read import GGUFFile

    with GGUFFile(path) as g:
        for key in ("imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"):
            if key not in g.kv:
                raise QtkFormatError(f"{path}: GGUF importance matrix without the {key!r} key")
        ds, chunks = g.get("imatrix.datasets"), g.get("imatrix.chunk_count")
        if not isinstance(ds, list) or not all(isinstance(d, str) for d in ds):
            raise QtkFormatError(f"{path}: imatrix.datasets (offset {g.kv['imatrix.datasets'].offset}) is not an array of strings")
        for key in ("imatrix.chunk_count", "imatrix.chunk_size"):
            v = g.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise QtkFormatError(f"{path}: {key} (offset {g.kv[key].offset}) = {v!r} is not a non-negative integer")
        entries: Dict[str, np.ndarray] = {}
        zero: Dict[str, List[int]] = {}
        by_name = {t.name: t for t in g.tensors}
        for tname, t in by_name.items():
            if not tname.endswith(".in_sum2"):
                continue
            base = tname[: -len(".in_sum2")]
            ct = by_name.get(base + ".counts")
            if ct is None:
                raise QtkFormatError(f"{path}: {tname} has no matching {base}.counts tensor")
            if t.type_id != 0 or ct.type_id != 0:
                raise QtkFormatError(f"{path}: {tname} / {base}.counts must be F32")
            n = t.ne[0]
            n_mat = int(np.prod(t.ne[1:], dtype=np.int64)) if len(t.ne) > 1 else 1
            if ct.n_elements != n_mat:
                raise QtkFormatError(f"{path}: {base}.counts has {ct.n_elements} values for {n_mat} matrices")
            sums = np.frombuffer(g.data(t).tobytes(), dtype="<f4").reshape(n_mat, n).astype(np.float32)
            counts = np.frombuffer(g.data(ct).tobytes(), dtype="<f4").reshape(n_mat).astype(np.float32)
            if not (np.isfinite(counts).all() and (counts >= 0).all()):
                raise QtkFormatError(f"{path}: {base}.counts (data at offset {ct.data_offset}) has negative, NaN or Inf counts")
            w = np.ones((n_mat, n), dtype=np.float32)
            used = counts > 0
            with np.errstate(over="ignore", invalid="ignore"):  # Inf/NaN results are refused below
                w[used] = sums[used] / counts[used, None]
            if (~used).any():
                zero[base] = [int(i) for i in np.nonzero(~used)[0]]
            entries[base] = w
        return Imatrix(path, "gguf", entries, list(ds), int(chunks), zero)


def _load_dat(path: str) -> Imatrix:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        buf = f.read()
    pos = 0

    def take(fmt: str, what: str):
        nonlocal pos
        n = struct.calcsize(fmt)
        if pos + n > size:
            raise QtkFormatError(f"{path}: {what} at offset {pos} runs past the end of the file ({size} bytes)")
        v = struct.unpack_from(fmt, buf, pos)
        pos += n
        return v[0]

    n_entries = take("<i", "entry count")
    if n_entries < 0 or n_entries > size // 12:
        raise QtkFormatError(f"{path}: entry count {n_entries} at offset 0 is impossible (not an imatrix file?)")
    entries: Dict[str, np.ndarray] = {}
    for i in range(n_entries):
        ln = take("<i", f"entry {i} name length")
        if ln <= 0 or pos + ln > size:
            raise QtkFormatError(f"{path}: entry {i} name length {ln} at offset {pos - 4} is invalid")
        name = buf[pos:pos + ln].decode("utf-8", errors="replace")
        if name in entries:
            raise QtkFormatError(f"{path}: entry {i} at offset {pos - 4} repeats the name {name!r}")
        pos += ln
        ncall = take("<i", f"{name} call count")
        nval = take("<i", f"{name} value count")
        if nval <= 0 or pos + 4 * nval > size:
            raise QtkFormatError(f"{path}: {name}: value count {nval} at offset {pos - 4} runs past the end of the file")
        vals = np.frombuffer(buf, dtype="<f4", count=nval, offset=pos).astype(np.float32)
        pos += 4 * nval
        if ncall > 0:
            with np.errstate(over="ignore", invalid="ignore"):  # Inf/NaN results are refused by load_imatrix
                vals = vals / np.float32(ncall)
        entries[name] = vals
    chunks, datasets = 0, []
    if pos + 4 <= size:
        chunks = take("<i", "chunk count")
        if pos + 4 <= size:
            ln = take("<i", "dataset name length")
            if 0 < ln and pos + ln <= size:
                datasets = [buf[pos:pos + ln].decode("utf-8", errors="replace")]
    return Imatrix(path, "dat", entries, datasets, chunks)
