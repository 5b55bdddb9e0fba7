"""The public Python API: types, names, shape rules, errors, threads."""

import subprocess
import sys

import gguf
import numpy as np
import pytest

import qtoolkit
from qtoolkit import CustomQuant, QtkError, QtkTypeError, QtkValueError, QuantType, dequantize, quantize, type_info

IMPLEMENTED = [t for t in QuantType if qtoolkit.type_info(t).can_quantize]


def test_public_api_is_listed():
    for name in qtoolkit.__all__:
        assert hasattr(qtoolkit, name), name
    for name in ("quantize", "dequantize", "type_info", "QuantType", "CustomQuant", "QtkError"):
        assert name in qtoolkit.__all__


def test_quant_type_ids_match_gguf():
    for t in QuantType:
        assert gguf.GGMLQuantizationType[t.name].value == int(t)


def test_type_sizes_match_gguf():
    for t in QuantType:
        info = type_info(t)
        blck, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(int(t))]
        if t == QuantType.Q8_1:  # gguf-py lists Q8_1 as 40 bytes; ggml's block_q8_1 is 36
            assert (info.block_size, info.type_size) == (32, 36)
            continue
        assert (info.block_size, info.type_size) == (blck, size), t.name


def test_every_issue_type_is_implemented():
    wanted = ("F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1 Q2_K Q3_K Q4_K Q5_K Q6_K Q8_K IQ4_NL IQ4_XS TQ1_0 TQ2_0 "
              "IQ2_XXS IQ2_XS IQ2_S IQ3_XXS IQ3_S IQ1_S IQ1_M")
    assert {t.name for t in IMPLEMENTED} == set(wanted.split())


@pytest.mark.parametrize("spelling", ["q4_k", "Q4_K", " Q4_k ", QuantType.Q4_K, 12])
def test_type_names_in_any_case(spelling):
    x = np.ones((2, 256), np.float32)
    assert quantize(x, spelling).shape == (2, 144)


def test_unknown_type_name_lists_the_known_ones():
    with pytest.raises(QtkValueError, match="known types: .*Q4_K"):
        quantize(np.ones(32, np.float32), "q4_kk")
    with pytest.raises(QtkValueError):
        quantize(np.ones(32, np.float32), 4)  # a removed id


def test_type_info_bits_per_weight():
    assert type_info("Q4_K").bits_per_weight == 4.5
    assert type_info("Q2_K").bits_per_weight == 2.625
    assert type_info("IQ4_XS").bits_per_weight == 4.25
    assert type_info(CustomQuant(3, 64)).bits_per_weight == 3 + 32 / 64
    assert type_info(CustomQuant(3, 64, symmetric=True)).bits_per_weight == 3 + 16 / 64


@pytest.mark.parametrize("t", IMPLEMENTED, ids=lambda t: t.name)
def test_shape_rule_matches_gguf(t):
    info = type_info(t)
    x = np.random.default_rng(0).standard_normal((2, 3, 512)).astype(np.float32)
    q = quantize(x, t, imatrix=np.ones(512, np.float32) if info.requires_imatrix else None)
    assert q.dtype == np.uint8
    assert q.shape == (2, 3, 512 // info.block_size * info.type_size)
    if t != QuantType.Q8_1:
        gt = gguf.GGMLQuantizationType(int(t))
        assert q.shape == gguf.quants.quant_shape_to_byte_shape(x.shape, gt)
    y = dequantize(q, t)
    assert y.shape == x.shape and y.dtype == np.float32


def test_one_dimensional_and_empty_inputs():
    x = np.linspace(-1, 1, 64, dtype=np.float32)
    assert quantize(x, "Q8_0").shape == (68,)
    assert dequantize(quantize(x, "Q8_0"), "Q8_0").shape == (64,)
    empty = np.zeros((0, 256), np.float32)
    assert quantize(empty, "Q4_K").shape == (0, 144)
    assert quantize(np.zeros((3, 0), np.float32), "Q4_K").shape == (3, 0)


def test_wrong_dtype_is_refused():
    with pytest.raises(QtkTypeError, match="astype"):
        quantize(np.ones((2, 32), np.int32), "Q8_0")
    with pytest.raises(QtkTypeError):
        quantize([1.0] * 32, "Q8_0")
    with pytest.raises(QtkTypeError, match="uint8"):
        dequantize(np.ones((2, 34), np.int8), "Q8_0")


def test_float64_and_float16_inputs_are_converted():
    x = np.random.default_rng(1).standard_normal((4, 64))
    assert np.array_equal(quantize(x, "Q4_0"), quantize(x.astype(np.float32), "Q4_0"))
    assert np.array_equal(quantize(x.astype(np.float16), "Q8_0"), quantize(x.astype(np.float16).astype(np.float32), "Q8_0"))


def test_non_contiguous_is_refused_with_advice():
    x = np.ones((64, 64), np.float32)[:, ::2]
    with pytest.raises(QtkValueError, match="ascontiguousarray"):
        quantize(x, "Q8_0")


def test_row_length_not_a_multiple_of_the_block():
    with pytest.raises(QtkValueError, match="multiple of Q4_K's block size 256"):
        quantize(np.ones((2, 300), np.float32), "Q4_K")
    with pytest.raises(QtkValueError, match="multiple"):
        dequantize(np.zeros((2, 100), np.uint8), "Q4_K")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("t", ["Q4_K", "Q8_0", "F16", "IQ4_XS", CustomQuant(4, 32)], ids=str)
def test_non_finite_input_names_the_row(bad, t):
    x = np.ones((100, 256), np.float32)
    x[73, 5] = bad
    with pytest.raises(QtkValueError, match="row 73 holds NaN or Inf"):
        quantize(x, t, threads=2)
    with pytest.raises(QtkError):
        quantize(x, t, threads=1)


def test_values_that_overflow_the_fp16_scale_are_refused():
    x = np.full((2, 32), -1e5, np.float32)
    with pytest.raises(QtkValueError, match="too large"):
        quantize(x, "Q4_1")  # the fp16 min would be -inf
    assert np.isfinite(dequantize(quantize(x, "Q8_0"), "Q8_0")).all()  # Q8_0's scale fits


def test_imatrix_shapes_and_values():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 256)).astype(np.float32)
    w = rng.uniform(0.1, 2, 256).astype(np.float32)
    per_expert = rng.uniform(0.1, 2, (3, 256)).astype(np.float32)
    q_all = quantize(x, "Q4_K", imatrix=w)
    q_exp = quantize(x, "Q4_K", imatrix=per_expert)
    for e in range(3):
        assert np.array_equal(q_all[e], quantize(x[e], "Q4_K", imatrix=w))
        assert np.array_equal(q_exp[e], quantize(x[e], "Q4_K", imatrix=per_expert[e]))
    with pytest.raises(QtkValueError, match="imatrix"):
        quantize(x, "Q4_K", imatrix=w[:100])
    with pytest.raises(QtkValueError, match="non-negative"):
        quantize(x[0], "Q4_K", imatrix=-w)
    bad = w.copy()
    bad[3] = np.nan
    with pytest.raises(QtkValueError, match="finite"):
        quantize(x[0], "Q4_K", imatrix=bad)


@pytest.mark.parametrize("t", ["Q4_K", "Q6_K", "IQ4_NL", "Q5_0", CustomQuant(3, 64)], ids=str)
def test_result_does_not_depend_on_thread_count(t):
    x = np.random.default_rng(3).standard_normal((301, 512)).astype(np.float32)
    w = np.random.default_rng(4).uniform(0, 1, 512).astype(np.float32)
    ref = quantize(x, t, imatrix=w, threads=1)
    for threads in (2, 3, 8):
        assert np.array_equal(quantize(x, t, imatrix=w, threads=threads), ref)
    assert np.array_equal(dequantize(ref, t, threads=1), dequantize(ref, t, threads=4))


def test_bad_thread_count():
    with pytest.raises(QtkValueError, match="threads"):
        quantize(np.ones((4, 32), np.float32), "Q8_0", threads=0)


def test_custom_quant_validation_and_gguf_refusal():
    for bad in [(1, 32), (9, 32), (4, 12), (4, 0), (4, 2048)]:
        with pytest.raises(QtkValueError):
            CustomQuant(*bad)
    with pytest.raises(QtkValueError, match="cannot be stored in a GGUF file"):
        qtoolkit.quants.ggml_type_id(CustomQuant(3, 64))
    assert qtoolkit.quants.ggml_type_id("q4_k") == 12


def test_custom_quant_bit_packing_is_exact():
    for bits in range(2, 9):
        for group in (8, 24, 64, 256):
            for sym in (False, True):
                q = CustomQuant(bits, group, sym)
                assert q.type_size == (2 if sym else 4) + group * bits // 8
                x = np.random.default_rng(bits).standard_normal((2, group * 3)).astype(np.float32)
                assert quantize(x, q).shape == (2, 3 * q.type_size)


def test_custom_quant_serialised_form_round_trips():
    q = CustomQuant(5, 96)
    x = np.random.default_rng(5).standard_normal((4, 7, 192)).astype(np.float32)
    data = quantize(x, q)
    blob = q.serialize(data, x.shape)
    assert blob[:8] == b"QTKCQ001"
    q2, data2, shape = CustomQuant.deserialize(blob)
    assert q2 == q and shape == x.shape and np.array_equal(data2, data)
    with pytest.raises(qtoolkit.QtkFormatError):
        CustomQuant.deserialize(blob[:-1])
    with pytest.raises(qtoolkit.QtkFormatError):
        CustomQuant.deserialize(b"XXXX" + blob[4:])


def test_exceptions_are_builtin_compatible():
    with pytest.raises(ValueError):
        quantize(np.ones((2, 33), np.float32), "Q8_0")
    with pytest.raises(TypeError):
        quantize(np.ones((2, 32), np.int64), "Q8_0")
    assert issubclass(QtkValueError, QtkError)


def test_stale_build_is_refused():
    # the binding compares the version compiled into the extension with the package's at import
    code = (
        "import importlib, qtoolkit._version as v, qtoolkit._clib as c\n"
        "v.__version__ = '0.0.0-other'\n"
        "try:\n    importlib.reload(c)\nexcept ImportError as e:\n    print('refused:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "refused:" in out and "stale" in out
