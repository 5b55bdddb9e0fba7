"""Writing a GGUF file as its tensors are produced, through gguf-py's ``GGUFWriter``.

The writer needs every tensor's name, shape and type before the first byte of data (they are
all in the header); a plan knows them, so the header is written first and each tensor's bytes are
then produced and written one piece at a time: ``GGUFWriter.write_tensor_data`` is handed a
:class:`StreamedTensor`, whose ``tofile`` runs the producer and writes its pieces (gguf-py's own
lazy tensors use the same ``tofile`` hook). Only one piece is in memory at a time.

Nothing half-written survives: the file is written as ``OUT.partial`` and renamed on success
(:class:`qtoolkit.io.output.ReplaceOnSuccess`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from ..errors import QtkFormatError, QtkValueError
from ..quants import QuantType, type_info
from .gguf_reader import tensor_name_problem
from .output import ReplaceOnSuccess

log = logging.getLogger(__name__)

Producer = Callable[[], Iterator[np.ndarray]]  # yields uint8 (or any) arrays whose bytes follow each other


@dataclass
class TensorOut:
    name: str
    ne: Tuple[int, ...]      # ggml order
    type: QuantType
    produce: Optional[Producer] = None

    @property
    def nbytes(self) -> int:
        info = type_info(self.type)
        n = int(np.prod(self.ne, dtype=np.int64))
        return n // info.block_size * info.type_size


class Progress:
    """Callbacks of a long write; the CLI implements them with tqdm, the library default is silent."""

    def start(self, total_bytes: int, n_tensors: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def tensor_done(self, name: str) -> None: ...
    def close(self) -> None: ...


class StreamedTensor:
    """Duck-types the two things ``GGUFWriter.write_tensor_data`` uses of an array: ``nbytes`` and
    ``tofile``. ``tofile`` pulls the pieces from the producer and writes them as they come."""

    def __init__(self, t: TensorOut, progress: Progress):
        self.t = t
        self.nbytes = t.nbytes
        self.progress = progress
        self.written = 0

    def tofile(self, fout) -> None:
        for piece in self.t.produce():
            piece = np.ascontiguousarray(piece)
            fout.write(memoryview(piece).cast("B"))
            self.written += piece.nbytes
            self.progress.advance(piece.nbytes)
        if self.written != self.nbytes:
            raise QtkFormatError(f"internal error: tensor {self.t.name} produced {self.written} bytes, expected {self.nbytes}")


_INT_RANGES = {0: (0, 2**8), 1: (-2**7, 2**7), 2: (0, 2**16), 3: (-2**15, 2**15), 4: (0, 2**32),
               5: (-2**31, 2**31), 10: (0, 2**64), 11: (-2**63, 2**63)}
_TYPE_NAMES = {0: "UINT8", 1: "INT8", 2: "UINT16", 3: "INT16", 4: "UINT32", 5: "INT32", 10: "UINT64", 11: "INT64"}


def check_metadata(metadata: Sequence[Tuple[str, object, int, Optional[int]]], where: str) -> None:
    """Every integer value fits its GGUF type and every finite FLOAT32 value fits a float32 (a
    config's 10^20 context length must be an error that names it, not a struct.error from the
    writer). Arrays are checked element by element (numpy arrays at once). Strings must be valid
    Unicode (a lone surrogate from a JSON escape such as ``"\\ud800"`` has no UTF-8 form)."""
    for key, value, vtype, sub in metadata:
        t = sub if vtype == 9 else vtype
        if t == _STRING:
            _check_strings(key, value if vtype == 9 else [value], where)
            continue
        if t not in _INT_RANGES and t != 6:
            continue
        values = value if vtype == 9 else [value]
        if isinstance(values, np.ndarray):
            ok = _array_fits(values, t)
        else:
            ok = all(_fits(v, t) for v in values)
        if not ok:
            shown = repr(value) if vtype != 9 else "some of its values"
            raise QtkValueError(f"{where}: metadata {key} = {shown} does not fit a GGUF {_TYPE_NAMES.get(t, 'FLOAT32')}")


def check_tensor_names(names: Sequence[str], where: str) -> None:
    """Every name is one the reader accepts (:func:`~.gguf_reader.tensor_name_problem`), once."""
    seen = set()
    for name in names:
        problem = tensor_name_problem(name)
        if problem:
            raise QtkValueError(f"{where}: tensor name {name!r} {problem}")
        if name in seen:
            raise QtkValueError(f"{where}: tensor name {name!r} appears twice")
        seen.add(name)


_FLT_MAX = 3.4028234663852886e38


def _check_strings(key: str, values, where: str) -> None:
    for i, v in enumerate(values):
        if isinstance(v, bytes):
            continue
        try:
            v.encode("utf-8")
        except (UnicodeEncodeError, AttributeError):
            at = f" [{i}]" if len(values) > 1 or i else ""
            shown = ascii(v) if isinstance(v, str) and len(v) <= 40 else "a value that"
            raise QtkValueError(f"{where}: metadata {key}{at} = {shown} is not valid Unicode text "
                                "(a lone surrogate?); GGUF strings are UTF-8") from None


def _fits(v, t: int) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return False
    if t in _INT_RANGES:
        lo, hi = _INT_RANGES[t]
        return isinstance(v, (int, np.integer)) and lo <= v < hi
    return isinstance(v, (int, float, np.integer, np.floating)) and not (math.isfinite(v) and abs(v) > _FLT_MAX)


def _array_fits(a: np.ndarray, t: int) -> bool:
    if not a.size:
        return True
    if t in _INT_RANGES:
        lo, hi = _INT_RANGES[t]
        return a.dtype.kind in "iu" and lo <= int(a.min()) and int(a.max()) < hi
    if a.dtype.kind not in "iuf":
        return False
    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    return not finite.size or float(np.abs(finite).max()) <= _FLT_MAX

ALIGNMENT = 32  # GGUF's default data alignment (gguf-py writes no general.alignment key for it)
_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


def _pad(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def _value_bytes(value, vtype: int, sub: Optional[int]) -> int:
    if vtype == _STRING:
        return 8 + len(value.encode("utf-8") if isinstance(value, str) else value)
    if vtype == _ARRAY:
        items = value.tolist() if isinstance(value, np.ndarray) else value
        if sub in _SCALAR_BYTES:
            return 4 + 8 + len(items) * _SCALAR_BYTES[sub]
        return 4 + 8 + sum(_value_bytes(v, sub, None) for v in items)
    return _SCALAR_BYTES[vtype]


def file_layout(arch: str, metadata: Sequence[Tuple[str, object, int, Optional[int]]],
                tensors: Sequence[Tuple[str, Sequence[int], int]]) -> Dict[str, int]:
    """Byte counts of the GGUF file :func:`write_gguf` would write, without writing it.

    ``tensors``: (name, ne, data bytes). Returns ``header_bytes`` (magic to the end of the padded
    tensor table), ``data_bytes`` (tensor data without padding), ``padding_bytes`` and
    ``file_bytes`` (the exact file size)."""
    kvs = [("general.architecture", arch, _STRING, None)] + list(metadata)
    head = 4 + 4 + 8 + 8
    for key, value, vtype, sub in kvs:
        head += 8 + len(key.encode("utf-8")) + 4 + _value_bytes(value, vtype, sub)
    for name, ne, _ in tensors:
        head += 8 + len(name.encode("utf-8")) + 4 + 8 * len(ne) + 4 + 8
    header = _pad(head)
    data = sum(int(n) for _, _, n in tensors)
    padded = sum(_pad(int(n)) for _, _, n in tensors)
    return {"header_bytes": header, "data_bytes": data, "padding_bytes": padded - data + header - head,
            "file_bytes": header + padded}


def gguf_writer(fileobj, arch: Optional[str]):
    """gguf-py's ``GGUFWriter`` writing into ``fileobj`` (an open binary file, which it closes)
    instead of opening a path itself; ``arch`` None writes no ``general.architecture``."""
    import gguf
    from gguf.gguf_writer import WriterState

    class _FileWriter(gguf.GGUFWriter):
        def open_output_file(self, path=None) -> None:
            if self.fout is None:
                self.fout = [fileobj]
                self.state = WriterState.EMPTY

        def add_architecture(self) -> None:
            if arch is not None:
                super().add_architecture()

    return _FileWriter(None, arch or "", endianess=gguf.GGUFEndian.LITTLE)


def write_gguf(out_path: str, arch: str, metadata: Sequence[Tuple[str, object, int, Optional[int]]],
               tensors: Sequence[TensorOut], force: bool = False, progress: Optional[Progress] = None,
               inputs: Sequence[Optional[str]] = ()) -> int:
    """Write a complete GGUF file; returns its size in bytes.

    ``metadata``: (key, value, GGUF value type id, array element type id or None), written in
    order after ``general.architecture``.

    The file is written as ``OUT.partial``, flushed to disk and renamed to ``OUT`` when complete,
    so ``OUT`` is either absent, the old file, or the new complete one. ``OUT.partial`` is locked
    while it is written: a second writer of the same output is refused; a ``.partial`` left by a
    killed run (its lock died with it) is overwritten. On any error or Ctrl-C it is removed.
    ``inputs``: the files (or folders) the output was made from, which it must not replace.
    Metadata and tensor names are checked first (:func:`check_metadata`, :func:`check_tensor_names`).
    """
    import gguf

    out = ReplaceOnSuccess(out_path, force, "the output", inputs)
    check_metadata(metadata, out_path)
    check_tensor_names([t.name for t in tensors], out_path)
    progress = progress or Progress()
    writer = None
    with out:
        try:
            writer = gguf_writer(out.file(), arch)
            for key, value, vtype, sub in metadata:
                if isinstance(value, np.ndarray):
                    value = value.tolist()
                if key == "general.alignment":  # the key alone would not change gguf-py's padding
                    writer.add_custom_alignment(int(value))
                    continue
                writer.add_key_value(key, value, gguf.GGUFValueType(vtype),
                                     sub_type=gguf.GGUFValueType(sub) if sub is not None else None)
            for t in tensors:
                raw = gguf.GGMLQuantizationType(int(t.type))
                # shape in numpy order, as bytes: gguf-py converts the last axis back to elements
                info = type_info(t.type)
                byte_shape = tuple(reversed(t.ne[1:])) + (t.ne[0] // info.block_size * info.type_size,)
                writer.add_tensor_info(t.name, byte_shape, np.dtype(np.uint8), t.nbytes, raw_dtype=raw)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            progress.start(sum(t.nbytes for t in tensors), len(tensors))
            for t in tensors:
                writer.write_tensor_data(StreamedTensor(t, progress), tensor_endianess=gguf.GGUFEndian.LITTLE)
                progress.tensor_done(t.name)
            writer.close()
            writer = None
        finally:
            progress.close()
            if writer is not None:
                try:
                    writer.close()
                except Exception:  # pragma: no cover - e.g. the flush of a full disk fails again
                    pass
    return out.size
