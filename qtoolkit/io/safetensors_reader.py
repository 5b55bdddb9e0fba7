"""A validating, memory-mapped reader for safetensors files (BF16 included, without torch).

The ``safetensors`` package's numpy loader cannot return BF16 tensors (numpy has no bfloat16), and
a model file from the internet deserves a header check before anything is mapped: this module
parses the header itself, checks every field against the file size, and maps tensor data lazily.
Errors name the file, the tensor and the field.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from typing import Dict, NamedTuple, Tuple

import numpy as np

from .files import open_regular
from ..errors import QtkFileNotFoundError, QtkFormatError, QtkIOError, QtkNotImplementedError

# safetensors dtype -> (bytes per element, numpy dtype used to map the raw data)
DTYPES = {
    "F64": (8, np.float64),
    "F32": (4, np.float32),
    "F16": (2, np.float16),
    "BF16": (2, np.uint16),
    "I64": (8, np.int64),
    "I32": (4, np.int32),
    "I16": (2, np.int16),
    "I8": (1, np.int8),
    "U8": (1, np.uint8),
    "BOOL": (1, np.bool_),
    "F8_E4M3": (1, np.uint8),
    "F8_E5M2": (1, np.uint8),
}
FLOAT_DTYPES = ("F32", "F16", "BF16")
MAX_HEADER = 100 * 1024 * 1024  # the safetensors spec's own limit


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs):
    """json object hook: a header that names a tensor twice is refused (json would keep the last)."""
    out = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


class TensorInfo(NamedTuple):
    name: str
    dtype: str
    shape: Tuple[int, ...]
    start: int  # absolute byte offset in the file
    end: int


class SafetensorsFile:
    """One .safetensors file: header parsed and validated at open, data mapped on first read."""

    def __init__(self, path: str):
        self.path = path
        f, self.size = open_regular(path, "a safetensors file")
        try:
            with f:
                head = f.read(8)
                if len(head) < 8:
                    raise QtkFormatError(f"{path}: truncated safetensors file ({self.size} bytes, no header length)")
                (hlen,) = struct.unpack("<Q", head)
                if hlen > MAX_HEADER or 8 + hlen > self.size:
                    raise QtkFormatError(
                        f"{path}: header length {hlen} at offset 0 exceeds the file ({self.size} bytes): truncated or not a safetensors file"
                    )
                raw = f.read(hlen)
        except OSError as exc:  # a read error
            raise QtkIOError(f"{path}: cannot read it: {exc}") from None
        try:
            header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
        except _DuplicateKey as exc:
            raise QtkFormatError(f"{path}: header (offset 8, {hlen} bytes) names {exc.args[0]!r} twice") from None
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, absurd nesting
            raise QtkFormatError(f"{path}: header (offset 8, {hlen} bytes) is not valid JSON: {exc}") from None
        if not isinstance(header, dict):
            raise QtkFormatError(f"{path}: header is not a JSON object")
        self.data_start = 8 + hlen
        data_size = self.size - self.data_start
        meta = header.pop("__metadata__", {}) or {}
        if not isinstance(meta, dict):
            raise QtkFormatError(f"{path}: __metadata__ is not an object")
        self.metadata = {str(k): str(v) for k, v in meta.items()}
        self.tensors: Dict[str, TensorInfo] = {}
        spans = []
        for name, entry in header.items():
            where = f"{path}: tensor {name!r}"
            if not isinstance(entry, dict):
                raise QtkFormatError(f"{where}: header entry is not an object")
            dtype = entry.get("dtype")
            if dtype not in DTYPES:
                raise QtkFormatError(f"{where}: unknown dtype {dtype!r}")
            shape = entry.get("shape")
            if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
                raise QtkFormatError(f"{where}: shape {shape!r} is not a list of non-negative integers")
            offs = entry.get("data_offsets")
            if (
                not isinstance(offs, list) or len(offs) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
                or not 0 <= offs[0] <= offs[1] <= data_size
            ):
                raise QtkFormatError(
                    f"{where}: data_offsets {offs!r} fall outside the data section ({data_size} bytes): the file is truncated or corrupt"
                )
            count, nonzero = 1, 1
            for s in shape:
                count *= s
                nonzero *= max(s, 1)
            if len(shape) > 8 or nonzero * DTYPES[dtype][0] > 2**62:
                raise QtkFormatError(f"{where}: shape {shape} is too large to be a tensor")
            nbytes = count * DTYPES[dtype][0]
            if offs[1] - offs[0] != nbytes:
                raise QtkFormatError(
                    f"{where}: shape {shape} of {dtype} needs {nbytes} bytes, data_offsets give {offs[1] - offs[0]}"
                )
            self.tensors[name] = TensorInfo(name, dtype, tuple(shape), self.data_start + offs[0], self.data_start + offs[1])
            spans.append((offs[0], offs[1], name))
        spans.sort()
        for (a0, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
            if b0 < a1:
                raise QtkFormatError(f"{path}: tensors {an!r} and {bn!r} overlap in the data section")
        self._map = None

    def _mapped(self):
        if self._map is None:
            try:
                with open(self.path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    if size != self.size:  # the header was checked against the old size
                        raise QtkFormatError(f"{self.path}: the file changed size ({self.size} -> {size} bytes) since it was opened")
                    self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if self.size else b""
            except OSError as exc:
                raise QtkIOError(f"{self.path}: cannot map it: {exc}") from None
        return self._map

    @property
    def mapped(self):
        """The read-only map of the whole file (mapped on first use)."""
        return self._mapped()

    def raw(self, name: str) -> np.ndarray:
        """The tensor as stored, mapped read-only (BF16 as uint16, FP8 as uint8)."""
        info = self.tensors.get(name)
        if info is None:
            raise QtkFormatError(f"{self.path}: no tensor {name!r}")
        itemsize, np_dtype = DTYPES[info.dtype]
        count = (info.end - info.start) // itemsize
        arr = np.frombuffer(self._mapped(), dtype=np.dtype(np_dtype).newbyteorder("<"), count=count, offset=info.start)
        return arr.reshape(info.shape)

    def read(self, name: str) -> np.ndarray:
        """The tensor converted to float32 (a new array; BF16 widened exactly)."""
        info = self.tensors.get(name)
        if info is None:
            raise QtkFormatError(f"{self.path}: no tensor {name!r}")
        if info.dtype.startswith("F8"):
            raise QtkNotImplementedError(
                f"{self.path}: tensor {name!r} is {info.dtype} (FP8); FP8 checkpoints are not yet supported"
            )
        raw = self.raw(name)
        if info.dtype == "BF16":
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float32)

    def release(self, name: str) -> None:
        """Drop the pages of one tensor from this process's memory (they stay in the page cache).

        Reading through a memory map makes every touched page count towards the resident set;
        a streaming converter calls this after each tensor so its footprint stays one tensor."""
        info = self.tensors.get(name)
        if info is None or self._map is None or isinstance(self._map, bytes) or info.end <= info.start:
            return
        page = mmap.PAGESIZE
        start = info.start // page * page
        try:
            self._map.madvise(mmap.MADV_DONTNEED, start, info.end - start)
        except (AttributeError, OSError, ValueError):  # pragma: no cover - not Linux
            pass

    def close(self) -> None:
        """Unmap now if no array still views the data; otherwise the map goes with the last view."""
        if self._map is not None and not isinstance(self._map, bytes):
            try:
                self._map.close()
            except BufferError:  # arrays still view the map; it is unmapped when they go
                pass
        self._map = None


def open_model_tensors(model_dir: str) -> Dict[str, SafetensorsFile]:
    """The safetensors files of a Hugging Face model directory (one file, or the shards listed in
    model.safetensors.index.json), opened and validated."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(index):
        try:
            with open(index, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or UTF-8
            raise QtkFormatError(f"{index}: cannot read the shard index: {exc}") from None
        weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
        if not isinstance(weight_map, dict):
            raise QtkFormatError(f"{index}: no weight_map object")
        files = {}
        for tensor, shard in weight_map.items():
            if not isinstance(shard, str) or not shard or os.path.basename(shard) != shard or shard in (".", ".."):
                raise QtkFormatError(
                    f"{index}: tensor {tensor!r} is said to be in {shard!r}, which is not a file name in the model folder"
                )
            path = os.path.join(model_dir, shard)
            if path not in files:
                if not os.path.exists(path):
                    raise QtkFileNotFoundError(f"{path}: shard listed in {index} (for tensor {tensor!r}) is missing")
                files[path] = SafetensorsFile(path)
            if tensor not in files[path].tensors:
                raise QtkFormatError(f"{path}: the index says it holds {tensor!r}, the file does not")
        return files
    if os.path.exists(single):
        return {single: SafetensorsFile(single)}
    found = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors")) if os.path.isdir(model_dir) else []
    if not found:
        raise QtkFileNotFoundError(f"{model_dir}: no model.safetensors or model.safetensors.index.json")
    return {os.path.join(model_dir, f): SafetensorsFile(os.path.join(model_dir, f)) for f in found}


class Checkpoint:
    """All tensors of a model folder (one file or shards) by name, headers validated at open."""

    def __init__(self, model_dir: str):
        self.model_dir = model_dir
        self.files = open_model_tensors(model_dir)
        self.where: Dict[str, SafetensorsFile] = {}
        for path, sf in self.files.items():
            for name in sf.tensors:
                if name in self.where:
                    raise QtkFormatError(f"{path}: tensor {name!r} is also in {self.where[name].path}")
                self.where[name] = sf

    @property
    def shapes(self) -> Dict[str, Tuple[int, ...]]:
        return {n: sf.tensors[n].shape for n, sf in self.where.items()}

    def info(self, name: str) -> TensorInfo:
        return self.where[name].tensors[name]

    def file_of(self, name: str) -> str:
        return self.where[name].path

    def raw(self, name: str) -> np.ndarray:
        return self.where[name].raw(name)

    def release(self, name: str) -> None:
        self.where[name].release(name)

    def close(self) -> None:
        for sf in self.files.values():
            sf.close()
