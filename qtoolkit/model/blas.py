"""The thread count of numpy's BLAS (OpenBLAS), for the process that runs quantized models.

The dequant-matmul kernels have their own thread pool; numpy's OpenBLAS (used here only for
attention and the small float32 router) has another. On a machine with few cores the two pools'
waiting threads compete, which made a 2-thread prompt pass several times slower than a 1-thread
one in tools/bench/bench_infer.py. The CLI therefore gives OpenBLAS one thread when every model it runs
is a GGUF file. Setting ``OPENBLAS_NUM_THREADS=1`` before Python starts does the same for API users.
"""

from __future__ import annotations

import ctypes
import logging
import re

log = logging.getLogger(__name__)

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
            "openblas_set_num_threads")


def set_blas_threads(n: int) -> bool:
    """Set the thread count of every OpenBLAS loaded in this process; False when none was found."""
    import numpy  # noqa: F401  (loads numpy's OpenBLAS)

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = sorted(set(re.findall(r"(/\S*openblas\S*\.so[\d.]*)\s*$", f.read(), flags=re.M)))
    except OSError:
        return False
    done = False
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.argtypes = [ctypes.c_int]
                fn.restype = None
                fn(int(n))
                done = True
                log.debug("%s: %s(%d)", path, name, n)
                break
    return done
