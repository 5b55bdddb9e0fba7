"""BF16 weights with float32 activations (qtk_wtype.act = QTK_ACT_F32, ``act_f32=True`` in _clib).

The full-precision way to run a checkpoint stored in bf16: the weights stay bf16 in memory, each
is widened exactly inside the kernel, the activations stay float32 and the products are summed in
float32 (the reference: in float64, rounded once). On every ISA:

* against float64 numpy on the widened weights, normalised error < 5e-7, on lengths around the
  kernels' 8-wide steps, row counts around the 4 x 1 / 3 x 4 register tiles, 1..9 and 64 tokens;
* a token's result bit-identical alone (gemv), in a prompt (gemm tiles), through vec_dot,
  moe_matmul, moe_ffn and BoundMatmul, and for any thread count;
* the F32 path on the widened weights within float32 rounding; F32 / F16 unchanged by the flag;
* every other type refuses the flag (QTK_E_UNSUPPORTED), and the default is today's BF16 x BF16.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qtoolkit as q
from qtoolkit import QtkNotImplementedError
from qtoolkit import _clib
from qtoolkit._clib import ffi, lib

BF16, F16, F32 = int(q.QuantType.BF16), int(q.QuantType.F16), int(q.QuantType.F32)
# around the 8-wide steps of the AVX2 / NEON loops (tails of 0..7) and a model's width
LENGTHS = [1, 7, 8, 9, 15, 16, 17, 24, 40, 72, 256, 264, 517, 4096]
TOKENS = list(range(1, 10)) + [64]
TOLERANCE = 5e-7


def normalised_error(exact, got):
    exact = np.asarray(exact, dtype=np.float64)
    den = float((exact ** 2).sum())
    num = float(((exact - np.asarray(got, dtype=np.float64)) ** 2).sum())
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return num / den


def bf16_weights(rng, shape, scale=1.0):
    """bf16 bytes (uint8 [..., 2n]) and their exact float32 values."""
    w = (rng.standard_normal(shape) * rng.uniform(0.2, 2.0, shape[:-1] + (1,)) * scale).astype(np.float32)
    wb = q.quantize(w, "BF16")
    return wb, q.dequantize(wb, "BF16")


def mm(wb, x, threads=1, type_id=BF16, act_f32=True):
    out = np.empty((x.shape[0], wb.shape[0]), np.float32)
    _clib.matmul(_clib.wtype(type_id, act_f32=act_f32), wb, x, out, threads)
    return out


def moe_mm(wb, x, ids, threads=1):
    out = np.empty((x.shape[0], ids.shape[1], wb.shape[1]), np.float32)
    _clib.moe_matmul(_clib.wtype(BF16, act_f32=True), wb, x, ids, out, threads)
    return out


def row_bytes(type_id, n, act_f32):
    wt = _clib.wtype(type_id, act_f32=act_f32)
    return _clib.wtype_row_bytes(wt, n), _clib.activation_row_bytes(wt, n)


# ---------------------------------------------------------------- the flag itself

def test_sizes_and_default():
    for n in (1, 8, 517):
        assert row_bytes(BF16, n, True) == (2 * n, 4 * n)      # bf16 weights, float32 activations
        assert row_bytes(BF16, n, False) == (2 * n, 2 * n)     # the default: ggml's BF16 x BF16
        assert row_bytes(F16, n, True) == row_bytes(F16, n, False) == (2 * n, 4 * n)
        assert row_bytes(F32, n, True) == row_bytes(F32, n, False) == (4 * n, 4 * n)
    assert _clib.wtype(BF16).act == lib.QTK_ACT_COMPANION == 0
    assert _clib.wtype(BF16, act_f32=True).act == lib.QTK_ACT_F32 == 1
    assert _clib.BoundMatmul(BF16, np.zeros((2, 16), np.uint8), 8).wt.act == lib.QTK_ACT_COMPANION


def _status(wt, n=256):
    return lib.qtk_wtype_row_bytes(wt, n, ffi.new("int64_t *"))


@pytest.mark.parametrize("qtype", [t for t in q.QuantType if t not in (q.QuantType.F32, q.QuantType.F16,
                                                                         q.QuantType.BF16)],
                         ids=lambda t: t.name)
def test_other_types_refuse_float32_activations(qtype):
    """QTK_E_UNSUPPORTED from every qtk_wtype function for a type with matmul kernels; a type
    without them stays what it was."""
    wt, wt0 = _clib.wtype(int(qtype), act_f32=True), _clib.wtype(int(qtype))
    if not q.type_info(qtype).can_matmul:
        assert _status(wt) == _status(wt0) != lib.QTK_OK
        return
    n = 256
    assert _status(wt0) == lib.QTK_OK and _status(wt) == lib.QTK_E_UNSUPPORTED
    assert lib.qtk_activation_row_bytes(wt, n, ffi.new("int64_t *")) == lib.QTK_E_UNSUPPORTED
    x = np.ones((1, n), np.float32)
    w = np.zeros((1, _clib.wtype_row_bytes(wt0, n)), np.uint8)
    out = np.empty((1, 1), np.float32)
    assert lib.qtk_matmul(wt, ffi.from_buffer(w), 1, n, ffi.from_buffer("float[]", x), 1,
                          ffi.from_buffer("float[]", out, require_writable=True), 1) == lib.QTK_E_UNSUPPORTED
    assert lib.qtk_quantize_activation(wt, ffi.from_buffer("float[]", x), n, ffi.new("uint8_t[]", 4 * n),
                                       4 * n) == lib.QTK_E_UNSUPPORTED
    assert lib.qtk_vec_dot(wt, n, ffi.from_buffer(w), ffi.new("uint8_t[]", 4 * n),
                           ffi.new("float *")) == lib.QTK_E_UNSUPPORTED
    with pytest.raises(QtkNotImplementedError, match="act_f32"):
        _clib.BoundMatmul(int(qtype), w, n, act_f32=True)


def test_refusals_of_custom_ffn_and_bad_act_values():
    assert _status(_clib.wtype(custom=(4, 32, False), act_f32=True)) == lib.QTK_E_UNSUPPORTED
    assert _status(_clib.wtype(custom=(4, 32, False))) == lib.QTK_OK
    for act in (2, -1, 1000):
        wt = _clib.wtype(BF16)
        wt.act = act
        assert _status(wt) == lib.QTK_E_ARG
    rng = np.random.default_rng(0)
    gate = q.quantize(rng.standard_normal((2, 64, 256)).astype(np.float32), "Q8_0")
    down = q.quantize(rng.standard_normal((2, 256, 64)).astype(np.float32), "Q8_0")
    with pytest.raises(QtkNotImplementedError, match="q8_0"):
        _clib.BoundMoeFFN([8, 8, 8], gate, gate, down, 256, 64, act_f32=True)
    # moe_ffn checks each projection's own wtype: a quantized down with the flag is refused
    wts = (_clib.wtype(BF16, act_f32=True), _clib.wtype(BF16, act_f32=True), _clib.wtype(8, act_f32=True))
    assert lib.qtk_moe_ffn(wts[0], wts[1], wts[2], ffi.NULL, ffi.NULL, ffi.NULL, 2, 64, 256, ffi.NULL, 1, ffi.NULL,
                           ffi.NULL, 1, ffi.NULL, 1) == lib.QTK_E_UNSUPPORTED


def test_activation_row_is_the_float32_row(isa):
    rng = np.random.default_rng(1)
    wt = _clib.wtype(BF16, act_f32=True)
    for n in LENGTHS:
        x = rng.standard_normal(n).astype(np.float32)
        x[:: 5] = np.float32(1.0) + np.float32(2.0 ** -20)   # not a bf16 value: must survive untouched
        assert np.array_equal(_clib.quantize_activation(wt, x), x.view(np.uint8))


# ---------------------------------------------------------------- accuracy

@pytest.mark.parametrize("n", LENGTHS)
def test_against_float64_on_the_widened_weights(isa, n):
    rng = np.random.default_rng(n)
    rows = 13 if n < 4096 else 5
    wb, wd = bf16_weights(rng, (rows, n))
    x = rng.standard_normal((max(TOKENS), n)).astype(np.float32)
    exact = x.astype(np.float64) @ wd.astype(np.float64).T
    for tokens in TOKENS:
        got = mm(wb, x[:tokens])
        err = normalised_error(exact[:tokens], got)
        assert err < TOLERANCE, f"{tokens} tokens: normalised error {err:.3g}"
        if isa == "ref":   # the reference sums in float64 and rounds once
            assert err < 1e-13, f"{tokens} tokens: normalised error {err:.3g}"


def test_more_exact_than_the_bf16_activation_path(isa):
    """The flag takes effect: today's path rounds the activations to bf16 (ggml's pairing, kept as
    the default), ~1e-6 of normalised error; float32 activations leave only float32 rounding."""
    rng = np.random.default_rng(2)
    n = 1024
    wb, wd = bf16_weights(rng, (40, n))
    x = rng.standard_normal((9, n)).astype(np.float32)
    exact = x.astype(np.float64) @ wd.astype(np.float64).T
    e_f32 = normalised_error(exact, mm(wb, x))
    e_bf16 = normalised_error(exact, mm(wb, x, act_f32=False))
    assert e_bf16 > 1e-7 and e_f32 < e_bf16 / 1000, (e_f32, e_bf16)
    assert np.array_equal(mm(wb, x, act_f32=False), q.matmul(wb, "BF16", x))   # the public default


@pytest.mark.parametrize("n", [8, 17, 264, 517])
def test_equals_the_f32_path_on_the_widened_weights(isa, n):
    rng = np.random.default_rng(3)
    wb, wd = bf16_weights(rng, (11, n))
    x = rng.standard_normal((64, n)).astype(np.float32)
    for tokens in (1, 4, 64):
        f32 = mm(wd.view(np.uint8), x[:tokens], type_id=F32, act_f32=False)
        assert normalised_error(f32, mm(wb, x[:tokens])) < 1e-10
    # F32 and F16 take float32 activations already: the flag changes nothing
    wh = q.quantize(wd, "F16")
    for type_id, w in ((F32, wd.view(np.uint8)), (F16, wh)):
        assert np.array_equal(mm(w, x, type_id=type_id, act_f32=True), mm(w, x, type_id=type_id, act_f32=False))


VALUE_KINDS = ["normal", "tiny", "large", "heavy", "constant", "sparse", "zeros"]


def make_values(kind, shape, rng):
    if kind == "normal":
        return rng.standard_normal(shape)
    if kind == "tiny":
        return rng.standard_normal(shape) * 1e-6
    if kind == "large":
        return rng.standard_normal(shape) * 300.0
    if kind == "heavy":
        return np.clip(rng.standard_cauchy(shape), -1e4, 1e4)
    if kind == "constant":
        return np.full(shape, 0.75)
    if kind == "sparse":
        return rng.standard_normal(shape) * (rng.random(shape) < 0.05)
    return np.zeros(shape)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1, 40), tokens=st.integers(1, 9), n=st.integers(1, 600),
       wkind=st.sampled_from(VALUE_KINDS), xkind=st.sampled_from(VALUE_KINDS), seed=st.integers(0, 2 ** 31))
def test_hypothesis(isa, rows, tokens, n, wkind, xkind, seed):
    rng = np.random.default_rng(seed)
    wb = q.quantize(make_values(wkind, (rows, n), rng).astype(np.float32), "BF16")
    wd = q.dequantize(wb, "BF16").astype(np.float64)
    x = make_values(xkind, (tokens, n), rng).astype(np.float32)
    got = mm(wb, x)
    assert got.shape == (tokens, rows) and got.dtype == np.float32
    assert normalised_error(x.astype(np.float64) @ wd.T, got) < TOLERANCE
    q.set_isa("ref")
    try:
        ref = mm(wb, x)
    finally:
        q.set_isa(isa)
    assert normalised_error(ref, got) < TOLERANCE


# ---------------------------------------------------------------- the same bits on every path

@pytest.mark.parametrize("n", [9, 264, 517])
def test_token_alone_equals_prompt_vec_dot_moe_and_bound(isa, n):
    """A token alone (gemv: 4 x 1 tiles), inside prompts of every remainder (3 x 4, 4 x 2, 3 x 3
    tiles and the leftovers), through vec_dot, BoundMatmul and moe_matmul: the same bits, on row
    counts around the tile heights."""
    rng = np.random.default_rng(4)
    wb, _ = bf16_weights(rng, (203, n))
    x = rng.standard_normal((64, n)).astype(np.float32)
    alone = np.stack([mm(wb, x[t:t + 1])[0] for t in range(64)])
    for tokens in (64, 37, 12, 9, 8, 7, 6, 5, 4, 3, 2):
        assert np.array_equal(mm(wb, x[:tokens]), alone[:tokens]), f"{tokens} tokens"
    for rows in range(1, 14):
        assert np.array_equal(mm(wb[:rows], x[:9]), alone[:9, :rows]), f"{rows} rows"
    bound = _clib.BoundMatmul(BF16, wb, n, act_f32=True)
    assert np.array_equal(bound(x, 1), alone) and np.array_equal(bound(x[3:4], 1), alone[3:4])
    wt = _clib.wtype(BF16, act_f32=True)
    y = _clib.quantize_activation(wt, x[5])
    dots = np.array([_clib.vec_dot(wt, n, wb[r], y) for r in range(0, 203, 7)], np.float32)
    assert np.array_equal(dots, alone[5, 0:203:7])
    # moe_matmul: four experts, expert e the rows [e * 50, e * 50 + 50) of the same matrix
    stack = np.ascontiguousarray(wb[:200].reshape(4, 50, -1))
    ids = np.stack([rng.choice(4, 2, replace=False) for _ in range(64)]).astype(np.int32)
    ids[:20, 0] = 1                                      # one expert with many tokens
    out = moe_mm(stack, x, ids)
    for t in range(64):
        for j in range(2):
            e = ids[t, j]
            assert np.array_equal(out[t, j], alone[t, e * 50:e * 50 + 50]), f"token {t}, slot {j}"


def test_results_do_not_depend_on_threads(isa):
    rng = np.random.default_rng(5)
    n = 264
    wb, _ = bf16_weights(rng, (203, n))
    x = rng.standard_normal((64, n)).astype(np.float32)
    stack = np.ascontiguousarray(wb[:200].reshape(4, 50, -1))
    ids = rng.integers(0, 4, (64, 2)).astype(np.int32)
    for tokens in (1, 3, 64):
        one, moe = mm(wb, x[:tokens], threads=1), moe_mm(stack, x[:tokens], ids[:tokens], threads=1)
        for threads in (2, 3, 5, 0):
            assert np.array_equal(mm(wb, x[:tokens], threads=threads), one), f"{tokens} tokens, {threads} threads"
            assert np.array_equal(moe_mm(stack, x[:tokens], ids[:tokens], threads=threads), moe)


def silu(v):
    return v / (1.0 + np.exp(-v))


@pytest.mark.parametrize("mixed", [False, True], ids=["bf16", "bf16-f16-f32"])
def test_moe_ffn(isa, mixed):
    """The fused expert FFN with every projection on float32 activations: the composition of the
    matmuls, a token alone the same bits as in the batch, any thread count; and the F32 FFN on the
    widened weights within float32 rounding."""
    rng = np.random.default_rng(6)
    n_experts, n_embd, n_ff, tokens, k = 5, 264, 136, 64, 2
    gate, gd = bf16_weights(rng, (n_experts, n_ff, n_embd), 0.1)
    up, ud = bf16_weights(rng, (n_experts, n_ff, n_embd), 0.1)
    down, dd = bf16_weights(rng, (n_experts, n_embd, n_ff), 0.1)
    x = rng.standard_normal((tokens, n_embd)).astype(np.float32)
    ids = np.stack([rng.choice(n_experts, k, replace=False) for _ in range(tokens)]).astype(np.int32)
    ids[:30, 0] = 2
    wts = rng.random((tokens, k)).astype(np.float32)
    if mixed:   # each projection its own wtype: F16 up, F32 down, BF16 x F32 gate
        up = q.quantize(ud, "F16")
        ud = q.dequantize(up, "F16")
        down = np.ascontiguousarray(dd).view(np.uint8)
        types = (BF16, F16, F32)
        wtypes = tuple(_clib.wtype(t, act_f32=True) for t in types)

        def ffn(xx, ii, ww, threads=1):
            out = np.empty((xx.shape[0], n_embd), np.float32)
            _clib.moe_ffn(wtypes, gate, up, down, xx, ii, ww, out, threads)
            return out
    else:
        types = (BF16, BF16, BF16)
        bound = _clib.BoundMoeFFN(types, gate, up, down, n_embd, n_ff, act_f32=True)

        def ffn(xx, ii, ww, threads=1):
            return bound(xx, ii, ww, threads)
    out = ffn(x, ids, wts)
    mats = [_clib.BoundMatmul(t, np.ascontiguousarray(m[e]), cols, act_f32=True)
            for e in range(n_experts) for t, m, cols in zip(types, (gate, up, down), (n_embd, n_embd, n_ff))]
    exp = np.zeros((tokens, n_embd), np.float64)
    for t in range(tokens):
        for j in range(k):
            g, u, d = mats[3 * ids[t, j]:3 * ids[t, j] + 3]
            h = (silu(g(x[t:t + 1], 1)) * u(x[t:t + 1], 1)).astype(np.float32)
            exp[t] += wts[t, j] * d(h, 1)[0].astype(np.float64)
    assert normalised_error(exp, out) < 1e-8    # expf vs np.exp may differ in the last bit
    for t in (0, 7, 63):
        assert np.array_equal(ffn(x[t:t + 1], ids[t:t + 1], wts[t:t + 1])[0], out[t])
    for threads in (2, 3, 0):
        assert np.array_equal(ffn(x, ids, wts, threads), out)
    f32 = [np.ascontiguousarray(m).view(np.uint8) for m in (gd, ud, dd)]
    ref32 = np.empty_like(out)
    _clib.moe_ffn(tuple(_clib.wtype(F32) for _ in range(3)), *f32, x, ids, wts, ref32, 1)
    assert normalised_error(ref32, out) < 1e-10
