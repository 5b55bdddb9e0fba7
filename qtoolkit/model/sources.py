"""Where a model's tensors come from, by GGUF name, for the loader and the layer-major runner.

* :class:`GGUFSource`: a GGUF file, memory-mapped; every matrix is handed to the kernels in its
  stored (quantized) bytes, as llama.cpp does.
* :class:`HFSource`: a Hugging Face folder seen through the converter
  (:func:`qtoolkit.converter.source.open_model`: architecture, GGUF names, llama's Q/K row
  permutation, expert stacking); the weights keep their stored dtype (bf16, f16 or f32) and run
  with float32 activations (``f32_activations``), so a bf16 checkpoint is the full-precision
  reference without ever being widened as a whole.

Both report the bytes each tensor occupies (``nbytes``), can ask the OS for a set of tensors'
pages ahead of use (``prefetch``) and drop them from the resident set afterwards (``release``),
and refuse a file that changed since it was opened (``check_unchanged``, by size and mtime).
"""

from __future__ import annotations

import mmap
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..converter.source import model_metadata, open_model, tensor_stored
from ..errors import QtkFormatError, QtkIOError
from ..io.gguf_reader import GGUFFile
from ..io.gguf_writer import check_metadata
from ..presets import PRESETS
from ..quants import QuantType, type_info

Tensor = Tuple[np.ndarray, QuantType, Tuple[int, ...]]   # (data, type, ne)


class Source:
    """Tensors by GGUF name: ``get(name)`` -> (array, QuantType, ne) or None when absent.
    ``where`` (the file or folder) starts every error message; ``names()`` lists the tensors."""

    where = ""
    f32_activations = False   # float weights run with float32 activations (not ggml's companion format)
    metadata: Dict[str, object] = {}

    def names(self) -> List[str]:
        raise NotImplementedError

    def get(self, name: str) -> Optional[Tensor]:
        raise NotImplementedError

    def nbytes(self, name: str) -> int:
        """Bytes of the file(s) holding tensor ``name`` (0 when absent)."""
        raise NotImplementedError

    def prefetch(self, names: Iterable[str]) -> None:
        """Read the pages of ``names`` into memory now (the OS reads ahead; every page is touched)."""

    def release(self, names: Iterable[str]) -> None:
        """Drop the pages of ``names`` from this process's resident memory."""

    def files(self) -> List[str]:
        return []

    def check_unchanged(self) -> None:
        """Refuse a file that changed (size or modification time) since it was opened."""
        for path, (size, mtime) in self._stamps.items():
            try:
                st = os.stat(path)
            except OSError as exc:
                raise QtkIOError(f"{path}: cannot stat it any more: {exc}") from None
            if (st.st_size, st.st_mtime_ns) != (size, mtime):
                raise QtkIOError(f"{path}: the file changed while it was being read (size {size} -> {st.st_size} bytes, "
                                 "or its modification time); the results would mix two versions of the model")

    def _stamp(self) -> None:
        self._stamps = {}
        for path in self.files():
            st = os.stat(path)
            self._stamps[path] = (st.st_size, st.st_mtime_ns)

    def close(self) -> None:
        pass


def _touch(mapped, start: int, end: int) -> None:
    """Ask for pages [start, end) of a map and read one byte of each, so they are resident."""
    if end <= start or not isinstance(mapped, mmap.mmap):
        return
    page = mmap.PAGESIZE
    a = start // page * page
    try:
        mapped.madvise(mmap.MADV_WILLNEED, a, end - a)
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not Linux
        pass
    view = np.frombuffer(mapped, dtype=np.uint8, count=end - a, offset=a)
    int(view[::page].sum())


class GGUFSource(Source):
    def __init__(self, path: str):
        self.f = GGUFFile(path)
        self.where = path
        self.metadata = {k: kv.value for k, kv in self.f.kv.items()}
        self._stamp()

    def files(self) -> List[str]:
        return [self.f.path]

    def names(self) -> List[str]:
        return [t.name for t in self.f.tensors]

    def get(self, name: str) -> Optional[Tensor]:
        try:
            t = self.f.tensor(name)
        except QtkFormatError:
            return None
        try:
            q = QuantType(t.type_id)
        except ValueError:
            q = None
        if q is None or not type_info(q).can_dequantize:
            raise QtkFormatError(f"{self.f.path}: tensor {name} has type {t.type_name}, which qtoolkit cannot run") from None
        return self.f.data(t), q, tuple(t.ne)

    def nbytes(self, name: str) -> int:
        try:
            return self.f.tensor(name).nbytes
        except QtkFormatError:
            return 0

    def prefetch(self, names: Iterable[str]) -> None:
        for name in names:
            t = self.f.tensor(name)
            _touch(self.f.mapped, t.data_offset, t.data_offset + t.nbytes)

    def release(self, names: Iterable[str]) -> None:
        for name in names:
            self.f.release(self.f.tensor(name))

    def close(self) -> None:
        pass   # arrays of a loaded model view the map; it goes with the last of them


class HFSource(Source):
    f32_activations = True

    def __init__(self, model_dir: str):
        self.src = open_model(model_dir)
        self.where = model_dir
        md = model_metadata(self.src.name, self.src.arch, self.src.vocab, PRESETS["F32"].ftype)
        try:
            check_metadata(md, f"{self.src.cfg.path} (or the tokenizer files)")
        except BaseException:
            self.src.close()
            raise
        self.metadata = {k: v for k, v, _t, _s in md}
        self.metadata["general.architecture"] = self.src.arch.gguf_arch
        self.by_name = {t.name: t for t in self.src.tensors}
        self._stamp()

    @property
    def vocab(self):
        return self.src.vocab

    def dtype_name(self) -> str:
        """The checkpoint's weight dtype (that of its embedding), e.g. ``BF16``."""
        emb = self.by_name["token_embd.weight"]
        return self.src.checkpoint.info(emb.parts[0].source).dtype

    def files(self) -> List[str]:
        return sorted(self.src.checkpoint.files)

    def names(self) -> List[str]:
        return list(self.by_name)

    def get(self, name: str) -> Optional[Tensor]:
        out = self.by_name.get(name)
        if out is None:
            return None
        arr, q = tensor_stored(self.src.checkpoint, out)
        if q != QuantType.F32:
            arr = arr.view(np.uint8)   # the kernels' view: rows of stored bytes
        return arr, q, out.ne

    def sources(self, name: str) -> Sequence[str]:
        out = self.by_name.get(name)
        return sorted({p.source for p in out.parts}) if out is not None else ()

    def nbytes(self, name: str) -> int:
        ckpt = self.src.checkpoint
        return sum(ckpt.info(s).end - ckpt.info(s).start for s in self.sources(name))

    def prefetch(self, names: Iterable[str]) -> None:
        ckpt = self.src.checkpoint
        for name in names:
            for s in self.sources(name):
                sf, info = ckpt.where[s], ckpt.info(s)
                _touch(sf.mapped, info.start, info.end)

    def release(self, names: Iterable[str]) -> None:
        for name in names:
            for s in self.sources(name):
                self.src.checkpoint.release(s)

    def close(self) -> None:
        self.src.close()


def open_source(path: str) -> Source:
    """A GGUF file or a Hugging Face folder as a :class:`Source`."""
    return HFSource(path) if os.path.isdir(path) else GGUFSource(path)


def layer_names(src: Source, il: int) -> List[str]:
    """The tensors of block ``il``."""
    prefix = f"blk.{il}."
    return [n for n in src.names() if n.startswith(prefix)]
