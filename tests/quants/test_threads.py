"""The C kernels called from many Python threads at once (cffi releases the GIL): every call gets
exactly the result it gets alone. Quantize (with and without importance weights) and dequantize
for every type the C core can quantize, matmul, moe_matmul and the fused moe_ffn, each with
several C thread counts, interleaved in a different order on every thread. CI also runs this
file under AddressSanitizer + UBSan (.ci/run), where a shared scratch buffer or a race on the
thread pool's bookkeeping would show up as a report, not only as a wrong bit."""

import threading

import numpy as np
import pytest

import qtoolkit as q
from qtoolkit import _clib

N = 512            # a multiple of every block size (256) and of the custom groups below
PY_THREADS = 8
ROUNDS = 6


def quantizable():
    out = []
    for t in q.QuantType:
        tr = _clib.type_traits(int(t))
        if tr is not None and tr.can_quantize and t != q.QuantType.Q8_K and N % tr.block_size == 0:
            out.append(t)
    return out + [q.CustomQuant(3, 64), q.CustomQuant(5, 32, symmetric=True)]


def _matmul_ok(t, w, x):
    try:
        q.matmul(w, t, x, threads=1)
        return True
    except (q.QtkNotImplementedError, q.QtkTypeError):
        return False


def build_jobs():
    """(name, callable) pairs; each callable is deterministic."""
    rng = np.random.default_rng(42)
    x = (rng.standard_normal((12, N)) * rng.uniform(0.1, 3, (12, 1))).astype(np.float32)
    imatrix = rng.uniform(0.1, 2.0, N).astype(np.float32)
    acts = rng.standard_normal((5, N)).astype(np.float32)
    jobs = []
    for t in quantizable():
        name = t.name
        needs = not isinstance(t, q.CustomQuant) and q.type_info(t).requires_imatrix
        w = q.quantize(x, t, imatrix=imatrix if needs else None, threads=1)
        jobs.append((f"quantize {name} + imatrix", lambda t=t: q.quantize(x, t, imatrix=imatrix, threads=2)))
        if not needs:
            jobs.append((f"quantize {name}", lambda t=t: q.quantize(x, t, threads=1)))
        jobs.append((f"dequantize {name}", lambda t=t, w=w: q.dequantize(w, t, threads=2)))
        if _matmul_ok(t, w, acts):
            for th in (1, 2, None):
                jobs.append((f"matmul {name} threads={th}", lambda t=t, w=w, th=th: q.matmul(w, t, acts, threads=th)))
                jobs.append((f"gemv {name} threads={th}", lambda t=t, w=w, th=th: q.matmul(w, t, acts[0], threads=th)))
    # Mixture of Experts
    E, F, T, k = 6, 64, 7, 2
    ids = np.stack([rng.choice(E, k, replace=False) for _ in range(T)]).astype(np.int32)
    wts = rng.uniform(0.1, 1, (T, k)).astype(np.float32)
    xm = rng.standard_normal((T, N)).astype(np.float32)
    for t in ("Q4_K", "Q8_0", "IQ4_XS", "Q6_K", "F16", "Q3_K", "BF16"):
        gate = q.quantize(rng.standard_normal((E, F, N)).astype(np.float32) * 0.1, t)
        up = q.quantize(rng.standard_normal((E, F, N)).astype(np.float32) * 0.1, t)
        for th in (1, 2, None):
            jobs.append((f"moe_matmul {t} threads={th}", lambda t=t, g=gate, th=th: q.moe_matmul(g, t, xm, ids, threads=th)))
        dn = q.quantize(rng.standard_normal((E, N, F)).astype(np.float32) * 0.1, "Q8_0")
        for th in (1, 2, None):
            jobs.append((f"moe_ffn {t} threads={th}",
                         lambda t=t, g=gate, u=up, d=dn, th=th: q.moe_ffn(g, u, d, (t, t, "Q8_0"), xm, ids, wts, threads=th)))
    return jobs


@pytest.fixture(scope="module")
def jobs():
    return build_jobs()


def test_every_kernel_family_is_covered(jobs):
    names = " ".join(n for n, _ in jobs)
    for word in ("quantize IQ2_XXS", "quantize IQ1_S", "quantize IQ3_S", "quantize TQ1_0", "quantize Q4_K",
                 "dequantize IQ2_S", "matmul IQ4_XS", "matmul Q6_K", "moe_matmul", "moe_ffn",
                 f"quantize {q.CustomQuant(3, 64).name}"):
        assert word in names, word


def test_kernels_from_many_python_threads_give_the_results_they_give_alone(jobs):
    expected = [fn() for _, fn in jobs]
    failures = []
    barrier = threading.Barrier(PY_THREADS)

    def worker(seed):
        order = np.random.default_rng(seed).permutation(len(jobs))
        barrier.wait()  # start together
        for _ in range(ROUNDS):
            for i in order:
                name, fn = jobs[i]
                try:
                    got = fn()
                except Exception as exc:  # reported below, with the job's name
                    failures.append(f"{name}: {exc!r}")
                    continue
                if got.dtype != expected[i].dtype or not np.array_equal(got.view(np.uint8), expected[i].view(np.uint8)):
                    failures.append(f"{name}: differs from the single-threaded result")

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(PY_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not failures, failures[:10]
