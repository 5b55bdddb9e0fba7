"""Importance-matrix files: what they hold and llama.cpp's two formats (docs/imatrix.md;
shared/docs/ggml-formats.md §5).

An importance matrix holds, for every weight tensor that a matrix multiplication reads, the sum
over the calibration tokens of the squared activation entering each input column, and how many
activation rows were summed. A stack of experts (``ne = [n, rows, n_expert]``) has one row of
sums and one count per expert: an expert's statistics count only the tokens routed to it.

* :class:`ImatrixStats` is that content, as collected or as read from a file.
* :func:`read_imatrix` / :func:`write_imatrix`: the GGUF format (``NAME.in_sum2`` ``[n, n_mat]``
  and ``NAME.counts`` ``[1, n_mat]``, both F32, plus ``imatrix.datasets``, ``imatrix.chunk_count``
  and ``imatrix.chunk_size``; ``general.type = imatrix``, no architecture) and the legacy ``.dat``
  format (per tensor ``mean × ncall`` and one call count, no per-expert counts).

What the quantizer makes of a file (weights per matrix, experts calibration did not reach) is
:mod:`qtoolkit.converter.importance`; computing one is :mod:`qtoolkit.imatrix`.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Dict, List, Optional, Sequence

import numpy as np

from ..errors import QtkFormatError, QtkIOError, QtkValueError
from .files import open_regular, unicode_name
from .gguf_writer import gguf_writer
from .output import ReplaceOnSuccess

log = logging.getLogger(__name__)

KEY_DATASETS = "imatrix.datasets"
KEY_CHUNK_COUNT = "imatrix.chunk_count"
KEY_CHUNK_SIZE = "imatrix.chunk_size"
SUM_SUFFIX = ".in_sum2"
COUNT_SUFFIX = ".counts"
MAX_COUNT = 2.0**53  # token counts beyond this are not counts (and would overflow the int64 view of them)
FORMATS = ("gguf", "dat")


@dataclass
class ImatrixStats:
    """What llama-imatrix collects, per weight tensor name:

    * ``sums[name]``: float ``(n_mat, n)``, the per-column sums of squared activations (n_mat = 1
      for a plain matrix, the number of experts for a stack). For a legacy ``.dat`` file the
      matrix count is unknown without the model, so the array is flat ``(n_mat × n,)`` and holds
      what the file holds: ``mean × ncall``.
    * ``counts[name]``: float64 ``(n_mat,)``, activation rows summed into each matrix (tokens; for
      an expert, the tokens routed to it). A legacy file has one count per tensor, ``(1,)`` = ncall.
    """

    sums: Dict[str, np.ndarray]
    counts: Dict[str, np.ndarray]
    datasets: List[str] = field(default_factory=list)
    chunk_count: int = 0
    chunk_size: int = 0
    legacy: bool = False
    path: Optional[str] = None

    @property
    def format(self) -> str:
        return "dat" if self.legacy else "gguf"

    def names(self) -> List[str]:
        return sorted(self.sums)

    def n_mat(self, name: str) -> Optional[int]:
        """Matrices in the tensor (experts), or None when a legacy file cannot tell."""
        if self.legacy:
            return None
        return int(self.counts[name].size)

    def expert_counts(self, name: str) -> Optional[np.ndarray]:
        """Per-matrix token counts (int64), or None for a legacy file (it keeps none per expert)."""
        if self.legacy:
            return None
        return np.rint(self.counts[name]).astype(np.int64)

    def means(self, name: str, n: Optional[int] = None, n_mat: Optional[int] = None) -> np.ndarray:
        """The quantizer's weights for a tensor as llama-quantize computes them from the file:
        float32 ``sums / count`` per matrix, all ones for a matrix with count 0 (GGUF); a legacy
        entry divided by its call count. Shape ``(n_mat, n)``."""
        s = self.sums[name]
        if self.legacy:
            ncall = float(self.counts[name][0])
            w = s / np.float32(ncall) if ncall > 0 else s.copy()
            if n is None or n_mat is None:
                return w.reshape(1, -1).astype(np.float32, copy=False)
            return np.ascontiguousarray(w, dtype=np.float32).reshape(n_mat, n)
        s32 = np.asarray(s, dtype=np.float32)
        c = np.rint(self.counts[name]).astype(np.float32)
        w = np.ones_like(s32)
        used = c > 0
        w[used] = s32[used] / c[used, None]
        return w


# -- reading ------------------------------------------------------------------------------------


def read_imatrix(path: str) -> ImatrixStats:
    """An importance-matrix file, GGUF or legacy ``.dat`` (told apart by the GGUF magic)."""
    path = os.fspath(path)
    f, _ = open_regular(path, "an importance-matrix file")
    try:
        with f:
            magic = f.read(4)
            buf = None if magic == b"GGUF" else magic + f.read()  # a legacy file is read whole, once
    except OSError as exc:  # an unreadable disk...
        raise QtkIOError(f"{path}: cannot read it: {exc}") from None
    stats = _read_gguf(path) if buf is None else _read_dat(path, buf)
    for name in stats.sums:
        s, c = stats.sums[name], stats.counts[name]
        if not (np.all(np.isfinite(s)) and np.all(np.isfinite(c))):
            raise QtkFormatError(f"{path}: importance entry for {name} contains NaN or Inf")
        if np.any(s < 0) or np.any(c < 0):
            raise QtkFormatError(f"{path}: importance entry for {name} has negative values")
    return stats


def _read_gguf(path: str) -> ImatrixStats:
    from .gguf_reader import GGUFFile

    with GGUFFile(path) as g:
        missing = [k for k in (KEY_DATASETS, KEY_CHUNK_COUNT, KEY_CHUNK_SIZE) if k not in g.kv]
        if missing:
            what = "a model file, not an importance matrix" if "general.architecture" in g.kv else "not an importance matrix"
            raise QtkFormatError(f"{path}: GGUF file without the {missing[0]!r} key ({what}; llama-quantize refuses it too)")
        ds = g.get(KEY_DATASETS)
        if not isinstance(ds, list) or not all(isinstance(d, str) for d in ds):
            raise QtkFormatError(f"{path}: {KEY_DATASETS} (offset {g.kv[KEY_DATASETS].offset}) is not an array of strings")
        for key in (KEY_CHUNK_COUNT, KEY_CHUNK_SIZE):
            v = g.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise QtkFormatError(f"{path}: {key} (offset {g.kv[key].offset}) = {v!r} is not a non-negative integer")
        by_name = {t.name: t for t in g.tensors}
        sums: Dict[str, np.ndarray] = {}
        counts: Dict[str, np.ndarray] = {}
        for tname, t in by_name.items():
            if tname.endswith(COUNT_SUFFIX):
                if tname[: -len(COUNT_SUFFIX)] + SUM_SUFFIX not in by_name:
                    raise QtkFormatError(f"{path}: {tname} has no matching {tname[: -len(COUNT_SUFFIX)]}{SUM_SUFFIX} tensor")
                continue
            if not tname.endswith(SUM_SUFFIX):
                continue
            base = tname[: -len(SUM_SUFFIX)]
            ct = by_name.get(base + COUNT_SUFFIX)
            if ct is None:
                raise QtkFormatError(f"{path}: {tname} has no matching {base}{COUNT_SUFFIX} tensor")
            if t.type_id != 0 or ct.type_id != 0:
                raise QtkFormatError(f"{path}: {tname} and {base}{COUNT_SUFFIX} must be F32")
            n = t.ne[0]
            n_mat = int(np.prod(t.ne[1:], dtype=np.int64)) if len(t.ne) > 1 else 1
            if ct.n_elements != n_mat:
                raise QtkFormatError(f"{path}: {base}{COUNT_SUFFIX} has {ct.n_elements} values for {n_mat} matrices")
            sums[base] = np.frombuffer(g.data(t).tobytes(), dtype="<f4").reshape(n_mat, n).astype(np.float32)
            counts[base] = np.frombuffer(g.data(ct).tobytes(), dtype="<f4").reshape(n_mat).astype(np.float64)
            if not (np.isfinite(counts[base]).all() and (counts[base] >= 0).all() and (counts[base] <= MAX_COUNT).all()):
                raise QtkFormatError(f"{path}: {base}{COUNT_SUFFIX} (data at offset {ct.data_offset}) has negative, NaN, "
                                     f"Inf or impossibly large (> 2^53) counts")
        return ImatrixStats(sums, counts, list(ds), int(g.get(KEY_CHUNK_COUNT)), int(g.get(KEY_CHUNK_SIZE)),
                            legacy=False, path=path)


def _read_dat(path: str, buf: bytes) -> ImatrixStats:
    size = len(buf)
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
    if n_entries < 1 or n_entries > size // 12:
        raise QtkFormatError(f"{path}: entry count {n_entries} at offset 0 is impossible (not an imatrix file?)")
    sums: Dict[str, np.ndarray] = {}
    counts: Dict[str, np.ndarray] = {}
    for i in range(n_entries):
        ln = take("<i", f"entry {i} name length")
        if ln <= 0 or pos + ln > size:
            raise QtkFormatError(f"{path}: entry {i} name length {ln} at offset {pos - 4} is invalid")
        name = buf[pos:pos + ln].decode("utf-8", errors="replace")
        if name in sums:
            raise QtkFormatError(f"{path}: entry {i} at offset {pos - 4} repeats the name {name!r}")
        pos += ln
        ncall = take("<i", f"{name} call count")
        nval = take("<i", f"{name} value count")
        if nval <= 0 or pos + 4 * nval > size:
            raise QtkFormatError(f"{path}: {name}: value count {nval} at offset {pos - 4} runs past the end of the file")
        sums[name] = np.frombuffer(buf, dtype="<f4", count=nval, offset=pos).astype(np.float32)
        counts[name] = np.array([max(ncall, 0)], dtype=np.float64)
        pos += 4 * nval
    chunks, datasets = 0, []
    if pos + 4 <= size:
        chunks = take("<i", "chunk count")
        if pos + 4 <= size:
            ln = take("<i", "dataset name length")
            if 0 < ln and pos + ln <= size:
                datasets = [buf[pos:pos + ln].decode("utf-8", errors="replace")]
    return ImatrixStats(sums, counts, datasets, chunks, 0, legacy=True, path=path)


# -- writing ------------------------------------------------------------------------------------


def write_imatrix(path: str, stats: ImatrixStats, fmt: Optional[str] = None, force: bool = False,
                  inputs: Sequence[Optional[str]] = ()) -> int:
    """Write ``stats`` as a GGUF (default; ``.dat`` suffix → legacy) importance matrix; returns
    the file size. Written as ``PATH.partial`` (created exclusively and locked while written, as
    the model writer does: a second writer of the same output is refused), flushed to disk and
    published, so no half-written file survives and no file created meanwhile is replaced
    (:class:`~qtoolkit.io.output.ReplaceOnSuccess`); ``inputs`` (the model, the text) are refused
    as the output."""
    path = os.fspath(path)
    fmt = fmt or ("dat" if path.endswith(".dat") else "gguf")
    if fmt not in FORMATS:
        raise QtkValueError(f"imatrix output format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if stats.legacy:
        raise QtkValueError(f"{stats.path}: a legacy .dat file has no per-expert counts; it cannot be rewritten")
    with ReplaceOnSuccess(path, force, "the importance matrix", inputs) as out:
        if fmt == "gguf":
            _write_gguf(out.file(), stats)
        else:
            with out.file() as f:
                _write_dat(f, stats)
    return out.size


def _write_gguf(fout: BinaryIO, stats: ImatrixStats) -> None:
    """``stats`` into ``fout`` (closed at the end) as llama.cpp's GGUF importance matrix."""
    import gguf

    w = gguf_writer(fout, None)  # an imatrix file has no general.architecture
    try:
        w.add_type(gguf.GGUFType.IMATRIX)
        w.add_array(KEY_DATASETS, [unicode_name(d) for d in stats.datasets])
        w.add_uint32(KEY_CHUNK_COUNT, int(stats.chunk_count))
        w.add_uint32(KEY_CHUNK_SIZE, int(stats.chunk_size))
        for name in stats.names():
            s = np.ascontiguousarray(stats.sums[name], dtype=np.float32)
            c = np.ascontiguousarray(stats.counts[name], dtype=np.float32).reshape(-1, 1)
            if s.ndim != 2 or s.shape[0] != c.shape[0]:
                raise QtkValueError(f"importance entry {name}: sums {s.shape} and counts {c.shape[:1]} do not agree")
            w.add_tensor(name + SUM_SUFFIX, s)          # ggml ne [n, n_mat]
            w.add_tensor(name + COUNT_SUFFIX, c)        # ggml ne [1, n_mat]
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
    finally:
        w.close()


def _write_dat(f: BinaryIO, stats: ImatrixStats) -> None:
    """The legacy layout: per tensor ``mean × ncall`` with ``ncall = ceil(max count / chunk_size)``;
    an expert with count 0 is stored as ``1 × ncall``; tensors without any data are left out
    (what llama-imatrix's ``--output-format dat`` writes)."""
    chunk = max(1, int(stats.chunk_size))
    out = []
    for name in stats.names():
        c = np.rint(np.asarray(stats.counts[name], dtype=np.float64))
        if not np.any(c > 0):
            log.warning("importance entry %s has no data; the legacy format leaves it out", name)
            continue
        s = np.asarray(stats.sums[name], dtype=np.float32).reshape(c.size, -1)
        ncall = int((int(c.max()) + chunk - 1) // chunk)
        cf = c.astype(np.float32)
        vals = np.ones_like(s)
        used = cf > 0
        vals[used] = s[used] / cf[used, None]
        vals *= np.float32(ncall)
        nb = name.encode()
        out.append(struct.pack("<i", len(nb)) + nb + struct.pack("<ii", ncall, vals.size) + vals.astype("<f4").tobytes())
    if not out:
        raise QtkValueError("the importance matrix has no data for any tensor; nothing to write in the legacy format")
    ds = (stats.datasets[-1] if stats.datasets else "").encode()
    f.write(struct.pack("<i", len(out)))
    for blob in out:
        f.write(blob)
    f.write(struct.pack("<i", int(stats.chunk_count)))
    f.write(struct.pack("<i", len(ds)) + ds)
