"""Layer 1 of the tests: qtoolkit's reference formats against independent oracles.

- dequantize is bit-identical to gguf-py's numpy dequantizers for every type gguf knows, and
  quantize byte-identical to gguf-py's quantizers where gguf-py has one;
- quantize is byte-identical to ggml's own quantizer (what llama-quantize writes), with and
  without importance weights: against committed golden vectors (tools/fixtures/make_golden.py) on every
  machine, and live against llama-cpp-python's ggml when it is installed.
"""

import numpy as np
import pytest
from gguf import GGMLQuantizationType as G
from gguf import quants as gq
from hypothesis import given
from hypothesis import strategies as st

from qtoolkit import QuantType as T
from qtoolkit import dequantize, quantize, type_info
from tests.support.paths import DATA

# the codebook types (their live ggml comparison is in test_iq.py: ggml's set-up for them is slow)
IQ_GRID_TYPES = [T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ3_XXS, T.IQ3_S, T.IQ1_S, T.IQ1_M]
# every type the C core implements that is stored in model files
FILE_TYPES = [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K,
              T.IQ4_NL, T.IQ4_XS, T.TQ1_0, T.TQ2_0] + IQ_GRID_TYPES
GGUF_DEQUANT = FILE_TYPES  # gguf-py dequantizes all of these
GGUF_QUANT = [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.TQ1_0, T.TQ2_0]


def bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def sample(seed, rows, blocks, t):
    rng = np.random.default_rng(seed)
    n = blocks * type_info(t).block_size
    x = rng.standard_normal((rows, n)) * 10.0 ** rng.uniform(-3, 2, (rows, 1))
    return x.astype(np.float32)


def quantize_any(x, t):
    """quantize(), with unit importance weights for the types that cannot do without."""
    w = np.ones(x.shape[-1], np.float32) if type_info(t).requires_imatrix else None
    return quantize(x, t, imatrix=w)


def random_blocks(seed, rows, blocks, t):
    """Arbitrary block bytes whose fp16 scale fields hold finite values (every quant pattern)."""
    info = type_info(t)
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (rows, blocks, info.type_size), dtype=np.uint8)
    # overwrite the fp16 fields with finite halves by quantizing real data's scales in place
    ref = quantize_any(sample(seed + 1, rows, blocks, t), t).reshape(rows, blocks, info.type_size)
    half_fields = {T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0], T.Q2_K: [80, 82],
                   T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208], T.IQ4_NL: [0], T.IQ4_XS: [0],
                   T.TQ1_0: [52], T.TQ2_0: [64], T.IQ2_XXS: [0], T.IQ2_XS: [0], T.IQ2_S: [0], T.IQ3_XXS: [0],
                   T.IQ3_S: [0], T.IQ1_S: [0]}
    for off in half_fields.get(t, []):
        raw[:, :, off:off + 2] = ref[:, :, off:off + 2]
    if t == T.IQ1_M:  # the fp16 scale is the top nibbles of the four u16 scale words (bytes 49, 51, 53, 55)
        for off in (49, 51, 53, 55):
            raw[:, :, off] = (raw[:, :, off] & 0x0F) | (ref[:, :, off] & 0xF0)
    if t == T.F16:
        raw = np.random.default_rng(seed).standard_normal((rows, blocks)).astype(np.float16).view(np.uint8)
        return raw.reshape(rows, -1)
    return raw.reshape(rows, -1)


# ---------------------------------------------------------------- gguf-py oracle


@pytest.mark.parametrize("t", GGUF_DEQUANT, ids=lambda t: t.name)
def test_dequantize_bit_identical_to_gguf(t):
    for data in (quantize_any(sample(1, 5, 9, t), t), random_blocks(2, 5, 9, t)):
        ours = dequantize(data, t)
        ref = gq.dequantize(data, G(int(t)))
        assert np.array_equal(bits(ours), bits(ref)), t.name


@pytest.mark.parametrize("t", GGUF_QUANT, ids=lambda t: t.name)
def test_quantize_byte_identical_to_gguf(t):
    x = sample(3, 7, 8, t)
    ref = gq.quantize(x, G(int(t)))
    ref = np.ascontiguousarray(ref).view(np.uint8).reshape(x.shape[0], -1)
    assert np.array_equal(quantize(x, t), ref)


# ---------------------------------------------------------------- ggml golden vectors


def golden_cases():
    import os

    path = os.path.join(DATA, "ggml_golden.npz")
    with np.load(path) as f:
        return sorted(k for k in f.files if k.startswith("q/"))


@pytest.mark.parametrize("key", golden_cases())
def test_quantize_byte_identical_to_ggml_golden(golden, key):
    _, tname, dist, mode = key.split("/")
    x = golden[f"x/{dist}"]
    imatrix = golden[f"imatrix/{dist}"] if mode == "imatrix" else None
    ours = quantize(x, tname, imatrix=imatrix)
    ref = golden[key]
    bad_rows = np.nonzero((ours != ref).any(axis=1))[0]
    assert bad_rows.size == 0, f"{key}: rows {bad_rows.tolist()} differ from ggml"


@pytest.mark.parametrize("tname", ["Q8_0", "Q8_1", "Q8_K"])
def test_activation_formats_match_ggml_golden(golden, tname):
    for dist in ("normal", "heavy", "mixed", "subnormal"):
        x = golden[f"x/{dist}"].ravel()
        assert np.array_equal(quantize(x, tname), golden[f"act/{tname}/{dist}"]), dist


def test_golden_covers_every_file_type(golden):
    for t in FILE_TYPES:
        for mode in ("plain", "imatrix"):
            if mode == "plain" and type_info(t).requires_imatrix:
                assert f"q/{t.name}/mixed/{mode}" not in golden  # ggml would abort
                continue
            assert f"q/{t.name}/mixed/{mode}" in golden
            if t in IQ_GRID_TYPES:
                assert f"q/{t.name}/iqedge/{mode}" in golden


# ---------------------------------------------------------------- live ggml (compat extra)

finite = st.floats(allow_nan=False, allow_infinity=False, width=32)


@st.composite
def weight_rows(draw, t):
    blck = type_info(t).block_size
    rows = draw(st.integers(1, 4))
    blocks = draw(st.integers(1, 3 if blck == 256 else 12))
    n = blocks * blck
    kind = draw(st.sampled_from(["normal", "heavy", "scaled", "sparse", "constant", "values"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "normal":
        x = rng.standard_normal((rows, n))
    elif kind == "heavy":
        x = rng.standard_t(1.5, (rows, n)).clip(-3e4, 3e4)
    elif kind == "scaled":
        x = rng.standard_normal((rows, n)) * 10.0 ** draw(st.floats(-38, 4))
    elif kind == "sparse":
        x = rng.standard_normal((rows, n)) * (rng.random((rows, n)) < 0.1)
    elif kind == "constant":
        x = np.full((rows, n), draw(st.floats(-6e4, 6e4, width=32)))
    else:
        vals = draw(st.lists(st.floats(-6e4, 6e4, width=32), min_size=1, max_size=8))
        x = rng.choice(np.array(vals), (rows, n))
    w = None
    if draw(st.booleans()):
        w = (rng.uniform(0, 3, n) ** draw(st.sampled_from([1, 2, 4]))).astype(np.float32)
    return x.astype(np.float32), w


@pytest.mark.parametrize("t", [t for t in FILE_TYPES if t not in IQ_GRID_TYPES], ids=lambda t: t.name)
def test_quantize_byte_identical_to_live_ggml(ggml, t):
    @given(weight_rows(t))
    def check(case):
        x, w = case
        try:
            ours = quantize(x, t, imatrix=w)
        except ValueError as exc:  # values ggml would store as an infinite fp16 scale
            assert "too large" in str(exc)
            return
        ref = ggml.quantize_chunk(int(t), x, w)
        assert np.array_equal(ours, ref)

    check()


@pytest.mark.parametrize("t", FILE_TYPES + [T.Q8_K], ids=lambda t: t.name)
def test_dequantize_bit_identical_to_live_ggml(ggml, t):
    data = random_blocks(7, 3, 4, t) if t != T.Q8_K else quantize(sample(7, 3, 4, t), t)
    ours = dequantize(data, t)
    n = ours.shape[1]
    for r in range(data.shape[0]):
        assert np.array_equal(bits(ours[r]), bits(ggml.to_float(int(t), data[r], n)))
