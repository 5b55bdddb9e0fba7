"""Layer 3 of the tests: round-trip error ceilings per bit-width family, on deterministic data and on
hypothesis-drawn shapes and values (zeros, subnormals, constant blocks, large magnitudes, heavy tails)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qtoolkit import CustomQuant, QtkValueError, dequantize, quantize, type_info
from qtoolkit import QuantType as T

# family: (types, ceiling of sum((x-y)^2)/sum(x^2) on Gaussian data, ceiling of max|x-y| / max|x| per 256 elements)
# (IQ1_S, IQ2_XXS and IQ2_XS need importance weights: they get unit weights where a test gives none)
FAMILIES = {
    "ternary": ([T.TQ1_0, T.TQ2_0], 0.70, 0.51),
    "1-bit": ([T.IQ1_S, T.IQ1_M], 0.35, 1.2),
    "2-bit": ([T.Q2_K, CustomQuant(2, 32)], 0.12, 0.75),
    "2-bit codebook": ([T.IQ2_XXS, T.IQ2_XS, T.IQ2_S], 0.12, 0.8),
    "3-bit": ([T.Q3_K, CustomQuant(3, 64), CustomQuant(3, 64, True)], 0.035, 0.45),
    "3-bit codebook": ([T.IQ3_XXS, T.IQ3_S], 0.05, 0.55),
    "4-bit": ([T.Q4_0, T.Q4_1, T.Q4_K, T.IQ4_NL, T.IQ4_XS, CustomQuant(4, 32)], 0.009, 0.2),
    "5-bit": ([T.Q5_0, T.Q5_1, T.Q5_K, CustomQuant(5, 64)], 0.0025, 0.1),
    "6-bit": ([T.Q6_K, CustomQuant(6, 64)], 5e-4, 0.04),
    "8-bit": ([T.Q8_0, T.Q8_1, T.Q8_K, CustomQuant(8, 32)], 5e-5, 0.01),
    "16-bit": ([T.F16, T.BF16], 1e-5, 0.004),
}
ALL = [(fam, t) for fam, (types, _, _) in FAMILIES.items() for t in types]


def ids(case):
    fam, t = case
    return f"{fam}-{type_info(t).name}"


def qz(x, t, imatrix=None):
    """quantize(), with unit importance weights for the types that cannot do without them."""
    if imatrix is None and type_info(t).requires_imatrix:
        imatrix = np.ones(x.shape[-1], np.float32)
    return quantize(x, t, imatrix=imatrix)


def rel_sq_error(x, y):
    x = x.astype(np.float64)
    return float(np.sum((x - y) ** 2) / np.sum(x * x))


@pytest.mark.parametrize("case", ALL, ids=ids)
def test_gaussian_error_ceiling(case):
    fam, t = case
    x = np.random.default_rng(11).standard_normal((64, 1024)).astype(np.float32)
    y = dequantize(qz(x, t), t)
    assert rel_sq_error(x, y) < FAMILIES[fam][1]


@pytest.mark.parametrize("case", ALL, ids=ids)
def test_zeros_round_trip_exactly(case):
    _, t = case
    x = np.zeros((3, 512), np.float32)
    assert not dequantize(qz(x, t), t).any()


@pytest.mark.parametrize("case", ALL, ids=ids)
def test_importance_weights_lower_the_weighted_error(case):
    """Where a type uses importance weights, the error they weight must not grow when they are used."""
    _, t = case
    if not type_info(t).uses_imatrix:
        pytest.skip("this type ignores importance weights")
    rng = np.random.default_rng(12)
    x = rng.standard_normal((64, 512)).astype(np.float32)
    # ggml's IQ2_XXS search (whose bytes we reproduce) does not lower the weighted error for weights
    # this skewed (most near zero): it is held to the milder uniform(0, 1) weights
    power = 1 if t == T.IQ2_XXS else 4
    w = (rng.uniform(0, 1, 512) ** power).astype(np.float32)
    plain = dequantize(qz(x, t), t)  # unit weights for the types that need some
    weighted = dequantize(quantize(x, t, imatrix=w), t)

    def werr(y):
        return float(np.sum(w * (x - y) ** 2))

    assert werr(weighted) < werr(plain)


@st.composite
def tensors(draw):
    rows = draw(st.integers(1, 3))
    n = 256 * draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["gauss", "heavy", "constant", "zeros", "subnormal", "huge", "mixed"]))
    scale = 10.0 ** draw(st.floats(-2, 4))
    if kind == "gauss":
        x = rng.standard_normal((rows, n)) * scale
    elif kind == "heavy":
        x = rng.standard_t(1.2, (rows, n)).clip(-1e3, 1e3) * scale
    elif kind == "constant":
        x = np.full((rows, n), draw(st.floats(-3e4, 3e4)))
    elif kind == "zeros":
        x = np.zeros((rows, n))
    elif kind == "subnormal":
        x = rng.standard_normal((rows, n)) * 1e-40
    elif kind == "huge":
        x = rng.standard_normal((rows, n)) * 3e4  # magnitudes up to ~1e5
    else:
        x = rng.standard_normal((rows, n)) * 10.0 ** rng.uniform(-8, 4, (rows, n // 32)).repeat(32, axis=1)
    return x.astype(np.float32)


@pytest.mark.parametrize("case", ALL, ids=ids)
def test_hypothesis_round_trip(case):
    fam, t = case
    bound = FAMILIES[fam][2]

    @given(tensors())
    def check(x):
        try:
            q = qz(x, t)
        except QtkValueError as exc:
            # only magnitudes beyond an fp16 field's range may be refused, and never silently
            assert "too large" in str(exc) and np.abs(x).max() > 3e4
            return
        y = dequantize(q, t)
        assert np.isfinite(y).all()
        if not x.any():
            assert not y.any()
        blocks = np.abs(x).reshape(x.shape[0], -1, 256)
        err = np.abs(x - y).reshape(x.shape[0], -1, 256)
        amax = blocks.max(axis=-1)
        # the bound holds wherever the block's scale is a normal fp16/bf16 number
        ok = (amax > 1e-2) & (amax < 3e4)
        ratio = err.max(axis=-1)[ok] / amax[ok]
        assert (ratio <= bound).all(), float(ratio.max())

    check()


@pytest.mark.parametrize("group", [32, 64, 128])
@pytest.mark.parametrize("symmetric", [False, True])
def test_custom_quant_error_falls_as_bits_rise(group, symmetric):
    rng = np.random.default_rng(13)
    data = [rng.standard_normal((32, 1024)), rng.standard_t(3, (32, 1024)), rng.uniform(-1, 2, (32, 1024))]
    for x in data:
        x = x.astype(np.float32)
        errors = [rel_sq_error(x, dequantize(quantize(x, CustomQuant(b, group, symmetric)), CustomQuant(b, group, symmetric)))
                  for b in range(2, 9)]
        assert all(a > b for a, b in zip(errors, errors[1:])), errors


def test_custom_quant_competes_with_ggml_types_at_equal_bits():
    """A CustomQuant at ggml's bits per weight lands within reach of the ggml type (sanity of the search)."""
    x = np.random.default_rng(14).standard_normal((64, 1024)).astype(np.float32)

    def err(t):
        return rel_sq_error(x, dequantize(quantize(x, t), t))

    assert err(CustomQuant(4, 32)) < 1.1 * err(T.Q4_1)   # both 5.0 bpw, scale + min per 32
    assert err(CustomQuant(8, 32, True)) < 1.1 * err(T.Q8_0)  # both 8.5 bpw, symmetric
