"""quant_error (qtk_quant_error): per-row weighted squared quantization error computed in C equals
the error of quantize + dequantize computed in numpy."""

import numpy as np
import pytest

from qtoolkit.errors import QtkImatrixRequiredError, QtkValueError
from qtoolkit.quants import dequantize, quant_error, quantize

TYPES = ["Q8_0", "Q6_K", "Q5_K", "Q4_K", "Q4_0", "IQ4_XS", "IQ4_NL", "Q3_K", "IQ3_S", "Q2_K", "IQ2_XS", "F16", "BF16"]


def _numpy_error(x, t, imatrix, weights):
    y = dequantize(quantize(x, t, imatrix=imatrix), t)
    d = x.astype(np.float64) - y.astype(np.float64)
    w = 1.0 if weights is None else weights.astype(np.float64)
    if np.ndim(w) == 2:  # per matrix
        w = w[:, None, :]
    return (d * d * w).sum(axis=-1)


@pytest.mark.parametrize("t", TYPES)
def test_matches_numpy(t):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((3, 16, 512)) * rng.random((3, 16, 1)) * 0.1).astype(np.float32)
    im = (rng.random((3, 512)) + 0.05).astype(np.float32)
    w = rng.random((3, 512)).astype(np.float32)
    for imatrix, weights in ((im, w), (im, None), (im[0], w[1])):
        got = quant_error(x, t, imatrix=imatrix, weights=weights)
        want = _numpy_error(x, t, imatrix, weights)
        assert got.shape == x.shape[:-1]
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-18)
    if t != "IQ2_XS":
        np.testing.assert_allclose(quant_error(x, t), _numpy_error(x, t, None, None), rtol=1e-9, atol=1e-18)


def test_threads_do_not_change_the_result():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 1024)).astype(np.float32)
    a = quant_error(x, "Q3_K", threads=1)
    b = quant_error(x, "Q3_K", threads=4)
    assert np.array_equal(a, b)


def test_errors():
    x = np.zeros((4, 256), np.float32)
    x[2, 7] = np.nan
    with pytest.raises(QtkValueError, match="row 2"):
        quant_error(x, "Q4_K")
    with pytest.raises(QtkImatrixRequiredError):
        quant_error(np.ones((1, 256), np.float32), "IQ2_XXS")
    with pytest.raises(QtkValueError):
        quant_error(np.ones((1, 100), np.float32), "Q4_K")
    with pytest.raises(QtkValueError):
        quant_error(np.ones((1, 256), np.float32), "Q4_K", weights=-np.ones(256, np.float32))
    with pytest.raises(QtkValueError):
        quant_error(np.ones((1, 256), np.float32), "Q4_K", weights=np.ones(128, np.float32))
