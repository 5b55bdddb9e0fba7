"""ggml itself as a reference, through the shared libraries of ``llama-cpp-python`` (the ``compat``
extra). Used by the compatibility tests and the benchmarks, never by the library's own code paths.

``load()`` returns None when llama-cpp-python is not installed. Struct offsets are those of
llama-cpp-python 0.3.36 on 64-bit Linux (read from its headers, see docs/TEST-DATA in shared).
"""

from __future__ import annotations

import ctypes
import os
from typing import Optional

import numpy as np

_loaded = None


class GGML:
    """Thin ctypes access to ggml's quantizers and CPU kernels."""

    def __init__(self, libdir: str):
        mode = getattr(os, "RTLD_GLOBAL", 0)
        self.base = ctypes.CDLL(os.path.join(libdir, "libggml-base.so.0"), mode=mode)
        self.libdir = libdir
        b = self.base
        b.ggml_quantize_chunk.restype = ctypes.c_size_t
        b.ggml_quantize_chunk.argtypes = [
            ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
            ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
        ]
        b.ggml_get_type_traits.restype = ctypes.c_void_p
        b.ggml_get_type_traits.argtypes = [ctypes.c_int]
        b.ggml_row_size.restype = ctypes.c_size_t
        b.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
        b.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
        b.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
        self._cpu = None

    # -- type traits (struct ggml_type_traits: name@0 blck@8 interleave@16 size@24 quantized@32
    #    to_float@40 from_float_ref@48)
    def _traits(self, type_id: int) -> int:
        return self.base.ggml_get_type_traits(type_id)

    def type_name(self, type_id: int) -> str:
        p = ctypes.c_char_p.from_address(self._traits(type_id)).value
        return p.decode() if p else ""

    def block_size(self, type_id: int) -> int:
        return ctypes.c_int64.from_address(self._traits(type_id) + 8).value

    def type_size(self, type_id: int) -> int:
        return ctypes.c_size_t.from_address(self._traits(type_id) + 24).value

    def row_size(self, type_id: int, n: int) -> int:
        return self.base.ggml_row_size(type_id, n)

    def quantize_chunk(self, type_id: int, x: np.ndarray, imatrix: Optional[np.ndarray] = None) -> np.ndarray:
        """What llama-quantize writes: ggml_quantize_chunk over all rows of a 2-D float32 array."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        rows, n = x.shape
        out = np.zeros((rows, self.row_size(type_id, n)), dtype=np.uint8)
        imat = None
        if imatrix is not None:
            imatrix = np.ascontiguousarray(imatrix, dtype=np.float32)
            imat = imatrix.ctypes.data
        written = self.base.ggml_quantize_chunk(type_id, x.ctypes.data, out.ctypes.data, 0, rows, n, imat)
        assert written == out.size
        return out

    def from_float_ref(self, type_id: int, x: np.ndarray) -> np.ndarray:
        """ggml's quantize_row_<type>_ref over a 1-D float32 array (the activation formats' reference)."""
        x = np.ascontiguousarray(x, dtype=np.float32).ravel()
        fn_addr = ctypes.c_void_p.from_address(self._traits(type_id) + 48).value
        proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
        if fn_addr:
            fn = proto(fn_addr)
        else:  # Q8_K keeps its reference out of the traits table; it is exported by name
            fn = getattr(self.base, f"quantize_row_{self.type_name(type_id)}_ref")
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            fn.restype = None
        out = np.zeros(self.row_size(type_id, x.size), dtype=np.uint8)
        fn(x.ctypes.data, out.ctypes.data, x.size)
        return out

    def to_float(self, type_id: int, data: np.ndarray, n: int) -> np.ndarray:
        """ggml's dequantize_row_<type> for n elements."""
        data = np.ascontiguousarray(data, dtype=np.uint8)
        fn_addr = ctypes.c_void_p.from_address(self._traits(type_id) + 40).value
        if fn_addr:
            fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(fn_addr)
        else:
            fn = getattr(self.base, f"dequantize_row_{self.type_name(type_id)}")
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            fn.restype = None
        out = np.zeros(n, dtype=np.float32)
        fn(data.ctypes.data, out.ctypes.data, n)
        return out


def load() -> Optional[GGML]:
    """ggml from llama-cpp-python, or None when it is not installed."""
    global _loaded
    if _loaded is None:
        try:
            import llama_cpp  # noqa: F401
        except Exception:
            _loaded = False
            return None
        libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
        try:
            _loaded = GGML(libdir)
        except OSError:
            _loaded = False
    return _loaded or None
