"""The error table of the bit allocator: for a tensor and each candidate type, the squared
quantization error weighted by the calibration's activation statistics (``quant_error`` in C, on
sampled rows, one matrix at a time), so no quantized or dequantized copy of the tensor is made."""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from ..quants import QuantType, quant_error


def sample_rows(n_rows: int, n_mat: int, max_rows: int) -> np.ndarray:
    """Evenly spaced rows of every matrix (at least 4 each), about ``max_rows`` in all."""
    k = min(n_rows, max(4, max_rows // max(n_mat, 1)))
    return np.unique(np.linspace(0, n_rows - 1, k).round().astype(np.int64))


def tensor_errors(w: np.ndarray, types: Sequence[QuantType], col_w: Optional[np.ndarray], row_w: Optional[np.ndarray],
                  q_im: Optional[np.ndarray], max_rows: int, threads: Optional[int]) -> List[float]:
    """Weighted squared error of ``w`` (float32, ``[rows, cols]`` or ``[n_mat, rows, cols]``) at
    every type of ``types``; ``col_w`` ``[n_mat or 1, cols]`` weighs columns, ``row_w`` ``[rows]``
    rows, ``q_im`` is what the quantizer sees (one row per matrix). Sampled rows are scaled up."""
    w3 = w.reshape((-1,) + w.shape[-2:])
    n_mat, n_rows, _ = w3.shape
    rows = sample_rows(n_rows, n_mat, max_rows)
    scale = n_rows / rows.size
    out = []
    for t in types:
        total = 0.0
        for m in range(n_mat):
            qi = None if q_im is None else q_im[m]
            cw = None if col_w is None else col_w[m if col_w.shape[0] > 1 else 0]
            e = quant_error(np.ascontiguousarray(w3[m][rows]), t, imatrix=qi, weights=cw, threads=threads)
            total += float(np.dot(e, row_w[rows]) if row_w is not None else e.sum()) * scale
        out.append(total)
    return out
