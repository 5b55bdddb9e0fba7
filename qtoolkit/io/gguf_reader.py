"""A validating GGUF reader: every count, length, dimension, type id and offset is checked
against the file size before anything is allocated or mapped.

A GGUF file from the internet can claim a 2^60-element array or a tensor past its end; this reader
refuses such files with an error that names the file, the field and its byte offset, and applies
the rules ggml's own loader applies (sequential aligned offsets, rows a multiple of the block,
names shorter than 64 bytes, no nested arrays). Tensor data is memory-mapped lazily.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set, Tuple

import numpy as np

from .files import open_regular
from ..errors import QtkFormatError, QtkIOError
from ..quants import QuantType, type_info

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_STRING = 1 << 30
MAX_ARRAY = 1 << 30
MAX_DIMS = 4
MAX_NAME = 63  # ggml: GGML_MAX_NAME (64) including the terminating NUL



def tensor_name_problem(name: str) -> Optional[str]:
    """Why ``name`` cannot be a tensor name (empty, longer than ggml's 63 bytes, a NUL or other
    control character, which a C string would cut or a terminal show, or a path separator or
    ``..``, which a tool saving tensors by name would follow), or None."""
    if not name:
        return "is empty"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME:
        return f"is longer than {MAX_NAME} bytes"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return "contains a NUL or another control character"
    if "/" in name or "\\" in name or name.startswith(".."):
        return "contains a path separator or starts with '..'"
    return None


# value type id -> (name, struct format or None for string/array)
VALUE_TYPES = {
    0: ("UINT8", "<B"), 1: ("INT8", "<b"), 2: ("UINT16", "<H"), 3: ("INT16", "<h"),
    4: ("UINT32", "<I"), 5: ("INT32", "<i"), 6: ("FLOAT32", "<f"), 7: ("BOOL", "<B"),
    8: ("STRING", None), 9: ("ARRAY", None), 10: ("UINT64", "<Q"), 11: ("INT64", "<q"), 12: ("FLOAT64", "<d"),
}
_NP = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1", 10: "<u8", 11: "<i8", 12: "<f8"}

# ggml types newer than qtoolkit's QuantType: id -> (name, block elements, block bytes)
_EXTRA_TYPES = {40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18), 42: ("Q2_0", 64, 18)}


def ggml_type(type_id: int) -> Optional[Tuple[str, int, int]]:
    """(name, block size, type size) of a ggml type id, or None for an unknown/removed id."""
    if type_id in _EXTRA_TYPES:
        return _EXTRA_TYPES[type_id]
    try:
        q = QuantType(type_id)
    except ValueError:
        return None
    info = type_info(q)
    return q.name, info.block_size, info.type_size


@dataclass
class KV:
    key: str
    type: int                 # value type id
    value: Any                # python scalar, str, list (strings) or numpy array (numbers)
    subtype: Optional[int] = None  # element type of an array
    offset: int = 0           # where the key starts in the file


@dataclass
class TensorEntry:
    name: str
    ne: Tuple[int, ...]       # ggml order
    type_id: int
    offset: int               # relative to the data section
    data_offset: int          # absolute file offset
    nbytes: int
    info_offset: int = 0      # where its tensor-info record starts

    @property
    def type_name(self) -> str:
        t = ggml_type(self.type_id)
        return t[0] if t else str(self.type_id)

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.ne, dtype=np.int64)) if self.ne else 1

    @property
    def shape(self) -> Tuple[int, ...]:
        """numpy order of the float tensor."""
        return tuple(reversed(self.ne))


class _Cursor:
    def __init__(self, path: str, buf, size: int):
        self.path, self.buf, self.size, self.pos = path, buf, size, 0

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise QtkFormatError(
                f"{self.path}: {what} at offset {self.pos} needs {n} bytes but the file has {self.size - self.pos} left "
                "(truncated or corrupt)"
            )

    def unpack(self, fmt: str, what: str):
        n = struct.calcsize(fmt)
        self.need(n, what)
        v = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return v[0] if len(v) == 1 else v

    def string(self, what: str) -> str:
        at = self.pos
        n = self.unpack("<Q", what + " length")
        if n > MAX_STRING:
            raise QtkFormatError(f"{self.path}: {what} at offset {at} claims {n} bytes (limit {MAX_STRING})")
        self.need(n, what)
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise QtkFormatError(f"{self.path}: {what} at offset {at} is not valid UTF-8: {exc}") from None


class GGUFFile:
    """A parsed and validated GGUF file. ``kv`` keeps file order; ``tensors`` too."""

    def __init__(self, path: str):
        self.path = path
        self._fh, self.size = open_regular(path, "a GGUF file")
        try:
            self._map = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ) if self.size else b""
        except (OSError, ValueError) as exc:  # not a regular file (a pipe, a device)
            self._fh.close()
            raise QtkIOError(f"{path}: cannot map it: {exc}") from None
        try:
            self._parse()
        except BaseException:
            self.close()
            raise

    # -- parsing -----------------------------------------------------------------------------
    def _parse(self) -> None:
        c = _Cursor(self.path, self._map, self.size)
        n_tensors, n_kv = self._parse_header(c)
        self._parse_metadata(c, n_kv)
        self.tensors: List[TensorEntry] = []
        names: Set[str] = set()
        for i in range(n_tensors):
            self.tensors.append(self._parse_tensor_info(c, i, names))
        self._place_data(c)
        self._by_name = {t.name: t for t in self.tensors}

    def _parse_header(self, c: _Cursor) -> Tuple[int, int]:
        """Magic, version, and the tensor and metadata counts (impossible counts refused early)."""
        c.need(4, "magic")
        magic = bytes(self._map[0:4])
        if magic != GGUF_MAGIC:
            raise QtkFormatError(f"{self.path}: not a GGUF file (magic {magic!r} at offset 0, expected b'GGUF')")
        c.pos = 4
        self.version = c.unpack("<I", "version")
        if self.version & 0xFFFF == 0:
            raise QtkFormatError(f"{self.path}: version field at offset 4 looks byte-swapped (big-endian files are not supported)")
        if self.version not in (2, 3):
            raise QtkFormatError(f"{self.path}: GGUF version {self.version} at offset 4 is not supported (2 or 3)")
        n_tensors = c.unpack("<Q", "tensor count")
        n_kv = c.unpack("<Q", "metadata count")
        # every tensor info needs >= 24 bytes and every KV >= 12: refuse impossible counts early
        if n_tensors > self.size // 24 or n_tensors >= 1 << 62:
            raise QtkFormatError(f"{self.path}: tensor count {n_tensors} at offset 8 is impossible for a {self.size}-byte file")
        if n_kv > self.size // 12 or n_kv >= 1 << 62:
            raise QtkFormatError(f"{self.path}: metadata count {n_kv} at offset 16 is impossible for a {self.size}-byte file")
        return n_tensors, n_kv

    def _parse_metadata(self, c: _Cursor, n_kv: int) -> None:
        """The key/value pairs (each key once, none empty) and the data alignment they set."""
        self.kv: Dict[str, KV] = {}
        for i in range(n_kv):
            at = c.pos
            key = c.string(f"metadata key #{i}")
            if not key:
                raise QtkFormatError(f"{self.path}: metadata key #{i} at offset {at} is empty")
            if key in self.kv:
                raise QtkFormatError(f"{self.path}: metadata key {key!r} at offset {at} appears twice")
            vtype = c.unpack("<I", f"type of {key!r}")
            value, sub = self._value(c, vtype, key)
            self.kv[key] = KV(key, vtype, value, sub, at)
        self.alignment = DEFAULT_ALIGNMENT
        if "general.alignment" in self.kv:
            kv = self.kv["general.alignment"]
            if kv.type != 4 or kv.value == 0 or kv.value & (kv.value - 1):
                raise QtkFormatError(
                    f"{self.path}: general.alignment at offset {kv.offset} must be a UINT32 power of two, got {kv.value!r}"
                )
            self.alignment = int(kv.value)

    def _parse_tensor_info(self, c: _Cursor, i: int, names: Set[str]) -> TensorEntry:
        """One tensor's name (not one of ``names``, which it joins), dimensions, type and offset, each checked."""
        at = c.pos
        name = c.string(f"tensor #{i} name")
        problem = tensor_name_problem(name)
        if problem:
            raise QtkFormatError(f"{self.path}: tensor name {name!r} at offset {at} {problem}")
        if name in names:
            raise QtkFormatError(f"{self.path}: tensor name {name!r} at offset {at} appears twice")
        names.add(name)
        nd = c.unpack("<I", f"tensor {name!r} dimension count")
        if not 1 <= nd <= MAX_DIMS:
            raise QtkFormatError(f"{self.path}: tensor {name!r} at offset {at} has {nd} dimensions (1 to {MAX_DIMS})")
        ne = tuple(c.unpack("<Q", f"tensor {name!r} dimension {d}") for d in range(nd))
        type_id = c.unpack("<I", f"tensor {name!r} type")
        offset = c.unpack("<Q", f"tensor {name!r} offset")
        t = ggml_type(type_id)
        if t is None:
            raise QtkFormatError(f"{self.path}: tensor {name!r} at offset {at} has unknown ggml type id {type_id}")
        tname, blck, tsize = t
        count = 1
        for d in ne:
            if d >= 1 << 62:
                raise QtkFormatError(f"{self.path}: tensor {name!r} at offset {at} has dimension {d}")
            count *= d
        if count >= 1 << 62:
            raise QtkFormatError(f"{self.path}: tensor {name!r} at offset {at} has {count} elements")
        if ne[0] % blck:
            raise QtkFormatError(
                f"{self.path}: tensor {name!r} at offset {at}: row length {ne[0]} is not a multiple of {tname}'s block {blck}"
            )
        if offset % self.alignment:
            raise QtkFormatError(f"{self.path}: tensor {name!r} offset {offset} is not a multiple of the alignment {self.alignment}")
        return TensorEntry(name, ne, type_id, offset, 0, count // blck * tsize, at)

    def _place_data(self, c: _Cursor) -> None:
        """Where each tensor's data lies: offsets must follow each other in tensor order, every
        tensor inside the file."""
        self.header_end = c.pos
        self.data_start = (c.pos + self.alignment - 1) // self.alignment * self.alignment
        expected = 0
        for t in self.tensors:
            if t.offset != expected:
                raise QtkFormatError(
                    f"{self.path}: tensor {t.name!r} (info at offset {t.info_offset}) has data offset {t.offset}, "
                    f"expected {expected}: offsets must follow each other in tensor order"
                )
            t.data_offset = self.data_start + t.offset
            if t.data_offset + t.nbytes > self.size:
                raise QtkFormatError(
                    f"{self.path}: tensor {t.name!r} data [{t.data_offset}, {t.data_offset + t.nbytes}) runs past the end "
                    f"of the file ({self.size} bytes): truncated"
                )
            expected += (t.nbytes + self.alignment - 1) // self.alignment * self.alignment

    def _value(self, c: _Cursor, vtype: int, key: str, in_array: bool = False):
        if vtype not in VALUE_TYPES:
            raise QtkFormatError(f"{self.path}: {key!r} at offset {c.pos - 4} has unknown value type {vtype}")
        name, fmt = VALUE_TYPES[vtype]
        if fmt is not None:
            v = c.unpack(fmt, f"value of {key!r}")
            return (bool(v) if vtype == 7 else v), None
        if vtype == 8:
            return c.string(f"value of {key!r}"), None
        if in_array:
            raise QtkFormatError(f"{self.path}: {key!r} at offset {c.pos} is a nested array (ggml refuses them)")
        sub = c.unpack("<I", f"array type of {key!r}")
        at = c.pos
        n = c.unpack("<Q", f"array length of {key!r}")
        if n > MAX_ARRAY:
            raise QtkFormatError(f"{self.path}: array {key!r} at offset {at} claims {n} elements (limit {MAX_ARRAY})")
        if sub not in VALUE_TYPES:
            raise QtkFormatError(f"{self.path}: array {key!r} at offset {at - 4} has unknown element type {sub}")
        if sub == 9:
            raise QtkFormatError(f"{self.path}: {key!r} at offset {at - 4} is a nested array (ggml refuses them)")
        if sub == 8:
            if n * 8 > c.size - c.pos:
                raise QtkFormatError(f"{self.path}: string array {key!r} at offset {at} claims {n} strings; the file is too short")
            return [c.string(f"element {j} of {key!r}") for j in range(n)], sub
        item = struct.calcsize(VALUE_TYPES[sub][1])
        c.need(n * item, f"array {key!r} data")
        arr = np.frombuffer(self._map, dtype=_NP[sub], count=n, offset=c.pos).copy()
        c.pos += n * item
        if sub == 7:
            arr = arr.astype(bool)
        return arr, sub

    # -- access ------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        kv = self.kv.get(key)
        return default if kv is None else kv.value

    def tensor(self, name: str) -> TensorEntry:
        if name not in self._by_name:
            raise QtkFormatError(f"{self.path}: no tensor {name!r}")
        return self._by_name[name]

    def data(self, name_or_entry) -> np.ndarray:
        """The tensor's bytes, memory-mapped read-only: uint8 of shape (..., rows, row_bytes)."""
        t = name_or_entry if isinstance(name_or_entry, TensorEntry) else self.tensor(name_or_entry)
        arr = np.frombuffer(self._map, dtype=np.uint8, count=t.nbytes, offset=t.data_offset)
        rows = t.shape[:-1] if len(t.ne) > 1 else ()
        return arr.reshape(tuple(rows) + (t.nbytes // max(1, int(np.prod(rows, dtype=np.int64))),))

    @property
    def mapped(self):
        """The read-only map of the whole file (for page-level prefetching)."""
        return self._map

    def release(self, t: TensorEntry) -> None:
        """Drop a tensor's pages from the resident set (see SafetensorsFile.release)."""
        if isinstance(self._map, mmap.mmap) and t.nbytes:
            start = t.data_offset // mmap.PAGESIZE * mmap.PAGESIZE
            try:
                self._map.madvise(mmap.MADV_DONTNEED, start, t.data_offset + t.nbytes - start)
            except (AttributeError, OSError, ValueError):  # pragma: no cover
                pass

    def close(self) -> None:
        if isinstance(getattr(self, "_map", None), mmap.mmap):
            try:
                self._map.close()
            except BufferError:  # arrays still view it; the OS unmaps at exit
                pass
        if getattr(self, "_fh", None) is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def value_type_name(t: int) -> str:
    return VALUE_TYPES.get(t, (str(t), None))[0]
