"""Writing a GGUF file as its tensors are produced, through gguf-py's ``GGUFWriter``.

The writer needs every tensor's name, shape and type before the first byte of data (they are
all in the header); a plan knows them, so the header is written first and each tensor's bytes are
then produced and written one piece at a time: ``GGUFWriter.write_tensor_data`` is handed a
:class:`StreamedTensor`, whose ``tofile`` runs the producer and writes its pieces (gguf-py's own
lazy tensors use the same ``tofile`` hook). Only one piece is in memory at a time.

Nothing half-written survives: the file is written as ``OUT.partial`` and renamed on success;
any error or Ctrl-C removes it, and an existing ``OUT`` is only replaced with ``force``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from .errors import QtkError, QtkFileExistsError, QtkFormatError
from .formats import QuantType, type_info

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


def check_output(out_path: str, force: bool) -> None:
    if os.path.isdir(out_path):
        raise QtkFileExistsError(f"{out_path}: is a directory; give a file name for the output")
    if os.path.exists(out_path) and not force:
        raise QtkFileExistsError(f"{out_path}: already exists; pass --force (force=True) to replace it")
    parent = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(parent):
        raise QtkError(f"{out_path}: the folder {parent} does not exist")


def write_gguf(out_path: str, arch: str, metadata: Sequence[Tuple[str, object, int, Optional[int]]],
               tensors: Sequence[TensorOut], force: bool = False, progress: Optional[Progress] = None) -> int:
    """Write a complete GGUF file; returns its size in bytes.

    ``metadata``: (key, value, GGUF value type id, array element type id or None), written in
    order after ``general.architecture``.
    """
    import gguf

    check_output(out_path, force)
    progress = progress or Progress()
    partial = out_path + ".partial"
    writer = None
    try:
        writer = gguf.GGUFWriter(partial, arch, endianess=gguf.GGUFEndian.LITTLE)
        for key, value, vtype, sub in metadata:
            if isinstance(value, np.ndarray):
                value = value.tolist()
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
        size = os.path.getsize(partial)
        os.replace(partial, out_path)
        return size
    except OSError as exc:
        raise QtkError(f"{out_path}: cannot write the output: {exc}") from exc
    finally:
        progress.close()
        if writer is not None:
            try:
                writer.close()
            except Exception:  # pragma: no cover
                pass
        if os.path.exists(partial):
            os.remove(partial)
            log.info("removed the unfinished %s", partial)
