"""matmul / moe_matmul / moe_ffn: API checks, Mixture-of-Experts equal to the per-token loop bit for
bit, results independent of the thread count, concurrency, ISA selection and QTK_ISA."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import qtoolkit as q
from qtoolkit import QtkNotImplementedError, QtkTypeError, QtkValueError
from tests.support.paths import ROOT

MOE_TYPES = ["Q4_K", "Q8_0", "Q4_1", "IQ4_XS", "F16", q.CustomQuant(4, 32), "IQ2_XXS", "IQ2_S", "IQ3_XXS", "IQ1_M"]


def _ids(values):
    if not isinstance(values, (list, tuple)):
        return values.name if isinstance(values, q.CustomQuant) else str(values)
    return [v.name if isinstance(v, q.CustomQuant) else v for v in values]


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def qz(x, qtype):
    """quantize, with importance weights for the types that need them (IQ2_XXS, IQ2_XS, IQ1_S)."""
    if not isinstance(qtype, q.CustomQuant) and q.type_info(qtype).requires_imatrix:
        return q.quantize(x, qtype, imatrix=np.linspace(0.5, 2.0, x.shape[-1], dtype=np.float32))
    return q.quantize(x, qtype)


def silu(v):
    return v / (1.0 + np.exp(-v))


# ---------------------------------------------------------------- dense

def test_matmul_shapes_and_dtypes():
    rng = np.random.default_rng(0)
    w = q.quantize(rand(rng, 6, 256), "Q4_K")
    assert q.matmul(w, "Q4_K", rand(rng, 256)).shape == (6,)
    assert q.matmul(w, q.QuantType.Q4_K, rand(rng, 4, 256)).shape == (4, 6)
    out64 = q.matmul(w, "q4_k", rand(rng, 2, 256).astype(np.float64))
    assert out64.dtype == np.float32
    assert q.matmul(w, "Q4_K", np.zeros((0, 256), np.float32)).shape == (0, 6)
    wf = rand(rng, 3, 40)
    assert np.allclose(q.matmul(wf, "F32", rand(rng, 40) * 0 + 1), wf.sum(1), rtol=1e-5)


def test_matmul_rejects_bad_input():
    rng = np.random.default_rng(1)
    w = q.quantize(rand(rng, 6, 256), "Q4_K")
    with pytest.raises(QtkValueError):
        q.matmul(w, "Q4_K", rand(rng, 255))
    with pytest.raises(QtkTypeError):
        q.matmul(w.astype(np.int16), "Q4_K", rand(rng, 256))
    with pytest.raises(QtkTypeError):
        q.matmul(w, "Q4_K", np.ones(256, np.int32))
    with pytest.raises(QtkValueError):
        q.matmul(w[:, :-1], "Q4_K", rand(rng, 256))
    with pytest.raises(QtkValueError):
        q.matmul(w, "Q4_K", rand(rng, 256), threads=0)
    with pytest.raises(QtkNotImplementedError):
        q.matmul(q.quantize(rand(rng, 2, 256), "Q8_K"), "Q8_K", rand(rng, 256))


@pytest.mark.parametrize("qtype", ["Q4_K", "Q8_0", "Q6_K", "F32", q.CustomQuant(3, 24), "IQ2_XS", "IQ3_S", "IQ1_S"],
                         ids=_ids)
def test_results_do_not_depend_on_threads(isa, qtype):
    rng = np.random.default_rng(2)
    n = 768 if not isinstance(qtype, q.CustomQuant) else 24 * 32
    w = qz(rand(rng, 1000, n), qtype)
    for x in (rand(rng, n), rand(rng, 13, n)):
        base = q.matmul(w, qtype, x, threads=1)
        for threads in (2, 3, 7):
            assert np.array_equal(q.matmul(w, qtype, x, threads=threads), base)


def test_concurrent_callers_get_their_own_results():
    rng = np.random.default_rng(3)
    w = q.quantize(rand(rng, 2000, 512), "Q4_K")
    xs = [rand(rng, 3, 512) for _ in range(6)]
    expected = [q.matmul(w, "Q4_K", x, threads=1) for x in xs]
    results = [None] * len(xs)

    def work(i):
        for _ in range(5):
            results[i] = q.matmul(w, "Q4_K", xs[i], threads=2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, exp in zip(results, expected):
        assert np.array_equal(got, exp)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_pool_works_in_a_forked_child():
    """A child forked after the pool started (multiprocessing's default on Linux) gets its own pool."""
    rng = np.random.default_rng(9)
    w = q.quantize(rand(rng, 512, 256), "Q8_0")
    x = rand(rng, 5, 256)
    expected = q.matmul(w, "Q8_0", x, threads=2)   # starts the parent's workers
    pid = os.fork()
    if pid == 0:  # child: exit code 0 only if the threaded call returns the same bits
        ok = False
        try:
            import signal

            signal.alarm(30)  # a pool waiting for the parent's workers would hang: die instead
            ok = np.array_equal(q.matmul(w, "Q8_0", x, threads=2), expected)
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# ---------------------------------------------------------------- Mixture of Experts

@pytest.mark.parametrize("qtype", MOE_TYPES, ids=_ids(MOE_TYPES))
def test_moe_matmul_equals_per_token_loop(isa, qtype):
    rng = np.random.default_rng(4)
    n_experts, rows, n, tokens, k = 9, 70, 256, 11, 3
    w = qz(rand(rng, n_experts, rows, n), qtype)
    x = rand(rng, tokens, n)
    ids = np.stack([rng.choice(n_experts, k, replace=False) for _ in range(tokens)]).astype(np.int32)
    ids[0] = [4, 4, 2]  # a repeated expert is allowed
    out = q.moe_matmul(w, qtype, x, ids)
    assert out.shape == (tokens, k, rows)
    for t in range(tokens):
        for j in range(k):
            assert np.array_equal(out[t, j], q.matmul(w[ids[t, j]], qtype, x[t]))
    for threads in (1, 2, 5):
        assert np.array_equal(q.moe_matmul(w, qtype, x, ids.astype(np.int64), threads=threads), out)


@pytest.mark.parametrize("qtype", ["Q4_K", "Q6_K", "Q2_K", "IQ4_XS", "F16", "IQ2_XS"])
def test_moe_matmul_many_tokens_per_expert(isa, qtype):
    """Experts with 8+ tokens (full eight-token chunks), 4-7 (a padded chunk) and 1-3 (the gemv
    kernels) in one call, rows not a multiple of 8: still the per-token loop, bit for bit."""
    rng = np.random.default_rng(11)
    n_experts, rows, n, tokens, k = 4, 45, 512, 29, 2
    w = qz(rand(rng, n_experts, rows, n), qtype)
    x = rand(rng, tokens, n)
    ids = np.zeros((tokens, k), np.int32)
    ids[:, 0] = 0                                  # expert 0: all 29 tokens
    ids[:, 1] = np.where(np.arange(tokens) < 6, 1, np.where(np.arange(tokens) < 8, 2, 3))   # 6, 2, 21 tokens
    out = q.moe_matmul(w, qtype, x, ids)
    for t in range(tokens):
        for j in range(k):
            assert np.array_equal(out[t, j], q.matmul(w[ids[t, j]], qtype, x[t]))
    for threads in (2, 3):
        assert np.array_equal(q.moe_matmul(w, qtype, x, ids, threads=threads), out)


def test_moe_matmul_reads_only_routed_experts():
    """An unrouted expert full of garbage (NaN scales) does not reach the result."""
    rng = np.random.default_rng(5)
    w = q.quantize(rand(rng, 4, 32, 256), "Q4_K")
    w[2] = 0xFF  # fp16 scales of 0xFFFF are NaN
    ids = np.array([[0, 1], [3, 1]], np.int32)
    out = q.moe_matmul(w, "Q4_K", rand(rng, 2, 256), ids)
    assert np.isfinite(out).all()


def test_moe_rejects_bad_ids():
    rng = np.random.default_rng(6)
    w = q.quantize(rand(rng, 4, 8, 256), "Q8_0")
    x = rand(rng, 2, 256)
    with pytest.raises(QtkValueError):
        q.moe_matmul(w, "Q8_0", x, np.array([[0, 4], [1, 2]]))
    with pytest.raises(QtkValueError):
        q.moe_matmul(w, "Q8_0", x, np.array([[0, -1], [1, 2]]))
    with pytest.raises(QtkValueError):
        q.moe_matmul(w, "Q8_0", x, np.array([[0, 1]]))
    with pytest.raises(QtkTypeError):
        q.moe_matmul(w, "Q8_0", x, np.array([[0.0, 1.0], [1.0, 2.0]]))


@pytest.mark.parametrize("qtypes", [("Q4_K", "Q4_K", "Q6_K"), "Q8_0", ("IQ4_XS", "Q5_K", "Q4_0"), "F32",
                                    (q.CustomQuant(4, 32), "Q4_K", q.CustomQuant(5, 64, True)),
                                    ("IQ2_XXS", "IQ3_S", "IQ1_M"), ("IQ2_XS", "IQ2_S", "IQ3_XXS"), "IQ1_S"],
                         ids=["q4k-q6k", "q8_0", "mixed", "f32", "custom", "iq-a", "iq-b", "iq1_s"])
def test_moe_ffn(isa, qtypes):
    rng = np.random.default_rng(7)
    n_experts, n_embd, n_ff, tokens, k = 6, 256, 512, 9, 2
    ts = qtypes if isinstance(qtypes, tuple) else (qtypes,) * 3
    gate = qz(rand(rng, n_experts, n_ff, n_embd, scale=0.1), ts[0])
    up = qz(rand(rng, n_experts, n_ff, n_embd, scale=0.1), ts[1])
    down = qz(rand(rng, n_experts, n_embd, n_ff, scale=0.1), ts[2])
    x = rand(rng, tokens, n_embd)
    ids = np.stack([rng.choice(n_experts, k, replace=False) for _ in range(tokens)]).astype(np.int32)
    wts = rng.random((tokens, k)).astype(np.float32)
    out = q.moe_ffn(gate, up, down, qtypes, x, ids, wts)
    assert out.shape == (tokens, n_embd) and out.dtype == np.float32
    # the same composition in numpy from matmul calls (expf vs np.exp may differ in the last bit)
    exp = np.zeros((tokens, n_embd), np.float64)
    for t in range(tokens):
        for j in range(k):
            e = ids[t, j]
            h = (silu(q.matmul(gate[e], ts[0], x[t])) * q.matmul(up[e], ts[1], x[t])).astype(np.float32)
            exp[t] += wts[t, j] * q.matmul(down[e], ts[2], h).astype(np.float64)
    assert ((exp - out) ** 2).sum() / (exp ** 2).sum() < 1e-8
    # bit for bit: per token alone, and any thread count
    for t in (0, 5):
        assert np.array_equal(q.moe_ffn(gate, up, down, qtypes, x[t:t + 1], ids[t:t + 1], wts[t:t + 1])[0], out[t])
    for threads in (1, 2, 3):
        assert np.array_equal(q.moe_ffn(gate, up, down, qtypes, x, ids, wts, threads=threads), out)


def test_moe_ffn_rejects_mismatched_shapes():
    rng = np.random.default_rng(8)
    gate = q.quantize(rand(rng, 2, 64, 256), "Q8_0")
    down = q.quantize(rand(rng, 2, 256, 64), "Q8_0")
    x = rand(rng, 1, 256)
    ids = np.array([[0, 1]], np.int32)
    with pytest.raises(QtkValueError):
        q.moe_ffn(gate, gate, down[:, :128], "Q8_0", x, ids, np.ones((1, 2), np.float32))
    with pytest.raises(QtkValueError):
        q.moe_ffn(gate, gate, down, "Q8_0", x, ids, np.ones((1, 3), np.float32))
    with pytest.raises(QtkValueError):
        q.moe_ffn(gate, gate, down, ("Q8_0", "Q8_0"), x, ids, np.ones((1, 2), np.float32))


# ---------------------------------------------------------------- instruction sets

def test_isa_api():
    avail = q.available_isas()
    assert "ref" in avail and q.active_isa() in avail
    assert q.active_isa() == avail[-1]
    with pytest.raises(QtkValueError):
        q.set_isa("sse9")
    for name in ("avx2", "neon"):
        if name not in avail:
            with pytest.raises(QtkNotImplementedError):
                q.set_isa(name)


def _run(code, env_isa):
    env = dict(os.environ)
    env.pop("QTK_ISA", None)
    if env_isa is not None:
        env["QTK_ISA"] = env_isa
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT, check=True).stdout


def test_qtk_isa_env_only_lowers():
    code = "import qtoolkit as q; print(q.active_isa(), ','.join(q.available_isas()))"
    best = _run(code, None).split()[0]
    assert _run(code, "ref").split() == ["ref", "ref"]
    assert _run(code, "bogus").split()[0] == best          # unknown: ignored
    assert _run(code, "neon" if best != "neon" else "avx2").split()[0] in ("ref", best)  # never raises


def test_cli_info_prints_kernels(capsys):
    from qtoolkit.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"kernels: {q.active_isa()}" in out
    import json

    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["isa"]["active"] == q.active_isa() and "ref" in data["isa"]["available"]


def test_memory_read_bandwidth_is_positive():
    assert q.memory_read_bandwidth(1 << 22, reps=2, threads=2) > 0.0
