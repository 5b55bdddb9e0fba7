"""The bit allocator: solver, loss interpolation, recipes, calibration, and convert --target-size."""

import hashlib
import itertools
import math
import os

import numpy as np
import pytest

import qtoolkit
from qtoolkit.alloc import predict_loss, recipe_lines, solve
from qtoolkit.alloc.calibration import Calibration
from qtoolkit.model.tensors import replace_tensor
from qtoolkit.alloc.candidates import candidates, parse_types
from qtoolkit.alloc.recipe import parse_recipe_text
from qtoolkit.alloc.solver import exact, hull, lagrangian
from qtoolkit.cli import main
from qtoolkit.errors import QtkValueError
from qtoolkit.quants import QuantType as Q
from qtoolkit.presets import TypeOptions, get_preset
from qtoolkit.sizing import load_shape, preset_types
from tests.support.paths import DATA


TINY_MOE = os.path.join(DATA, "tiny-moe")
CALIB = os.path.join(DATA, "calib-shakespeare.txt")
# a short calibration, probes of two layers at once and no slow IQ3 quantizer keep the tests fast
FAST = ["--calib-chunks", "2", "--calib-ctx", "128", "--max-probes", "40",
        "--alloc-types", "Q2_K,Q3_K,IQ4_XS,Q4_0,Q4_K,Q5_K,Q6_K,Q8_0,F16"]


# -- solver ------------------------------------------------------------------------------------

def _brute(options, budget):
    best = math.inf
    for ch in itertools.product(*[range(len(o)) for o in options]):
        b = sum(o[c][0] for o, c in zip(options, ch))
        if b <= budget:
            best = min(best, sum(o[c][1] for o, c in zip(options, ch)))
    return best


def _random_problem(rng, n_groups, n_opts):
    options = []
    for _ in range(n_groups):
        sizes = np.sort(rng.integers(10, 400, n_opts))
        losses = np.sort(rng.random(n_opts) * 10)[::-1]
        if rng.random() < 0.3:  # not convex, and some dominated options
            losses = rng.random(n_opts) * 10
        options.append([(int(s), float(l)) for s, l in zip(sizes, losses)])
    return options


def test_solver_matches_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(40):
        options = _random_problem(rng, int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        least = sum(min(b for b, _ in o) for o in options)
        most = sum(max(b for b, _ in o) for o in options)
        budget = int(rng.integers(least, most + 1))
        opt = _brute(options, budget)
        lag = lagrangian(options, budget)
        dp = exact(options, budget, resolution=budget)   # unit of one byte: exact
        best = solve(options, budget, resolution=budget)
        for s in (lag, dp, best):
            assert s.bytes <= budget
            assert sum(o[c][0] for o, c in zip(options, s.choice)) == s.bytes
        assert dp.loss == pytest.approx(opt)
        assert best.loss == pytest.approx(opt)
        assert lag.lower_bound <= opt + 1e-9 and lag.loss >= opt - 1e-9


def test_solver_budget_too_small():
    with pytest.raises(QtkValueError, match="below the smallest"):
        solve([[(100, 1.0), (200, 0.5)], [(50, 1.0)]], 120)


def test_hull_drops_dominated_and_concave_points():
    opts = [(10, 5.0), (20, 5.0), (30, 1.0), (15, 4.9), (25, 3.5), (40, 0.9)]
    h = hull(opts)
    assert [opts[i][0] for i in h] == [10, 30, 40]


# -- loss interpolation ---------------------------------------------------------------------------

def test_predict_loss_interpolates_and_extrapolates():
    pts = [(100.0, 1e-2), (10.0, 1e-3), (1.0, 3e-4)]
    for e, k in pts:
        assert predict_loss(pts, e) == pytest.approx(k)
    assert predict_loss(pts, 0.0) == 0.0
    mid = predict_loss(pts, math.sqrt(10.0))
    assert 3e-4 < mid < 1e-3
    # below the last probe: slope of the last segment (0.52), clipped to >= 0.5
    assert predict_loss(pts, 0.1) == pytest.approx(3e-4 * 0.1 ** (math.log(1e-3 / 3e-4) / math.log(10)))
    # above: slope 1 of the first segment
    assert predict_loss(pts, 1000.0) == pytest.approx(0.1)
    # noisy probes are made monotone: more error never predicts less loss
    noisy = [(1.0, 5e-4), (10.0, 2e-4), (100.0, 1e-2)]
    xs = np.logspace(-1, 3, 40)
    ys = [predict_loss(noisy, x) for x in xs]
    assert all(b >= a for a, b in zip(ys, ys[1:]))


# -- candidates and recipes ----------------------------------------------------------------------

def test_candidates_respect_rows_and_imatrix():
    c = candidates(256, has_imatrix=False)
    assert Q.Q2_K in c and Q.IQ3_S in c and Q.IQ2_XXS not in c and Q.IQ3_XXS not in c
    assert Q.IQ2_XXS in candidates(256, has_imatrix=True)
    c = candidates(1408, has_imatrix=True)
    assert all(1408 % qtoolkit.type_info(t).block_size == 0 for t in c) and Q.Q4_K not in c and Q.Q5_0 in c
    assert parse_types("q2_k, Q4_K") == [Q.Q2_K, Q.Q4_K]
    with pytest.raises(QtkValueError):
        parse_types("Q8_K")


def test_recipe_lines_reproduce_types_through_the_planner():
    shape = load_shape(TINY_MOE)
    base = preset_types(shape, "Q4_K_M")
    rng = np.random.default_rng(0)
    choice = [Q.Q2_K, Q.Q3_K, Q.IQ4_XS, Q.Q5_K, Q.Q8_0, Q.BF16]
    want = {n: choice[int(rng.integers(len(choice)))] for n, t in base.items() if t != Q.F32}
    want["blk.0.ffn_up_exps.weight"] = want["blk.1.ffn_up_exps.weight"] = Q.Q2_K
    lines = recipe_lines(want)
    assert r"^blk\.(0|1)\.ffn_up_exps\.weight$=q2_K" in lines
    assert len(lines) < len(want)   # grouped
    text = "# a comment\n\n" + "\n".join(lines[:3]) + "\n" + " ".join(lines[3:]) + "\n"
    from qtoolkit.converter.plan import tensor_types
    from qtoolkit.presets import parse_tensor_types

    got = tensor_types(shape.arch, shape.tensors, get_preset("Q2_K"),
                       TypeOptions(tensor_types=parse_tensor_types(parse_recipe_text(text))))
    for n, t in want.items():
        assert got[n] == t
    with pytest.raises(QtkValueError):
        parse_recipe_text("attn_v")


# -- calibration ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def calib():
    model = qtoolkit.load(TINY_MOE, threads=1)
    with open(CALIB, encoding="utf-8") as f:
        text = f.read()
    return Calibration(model, text, ctx=256, chunks=2)


def test_calibration_statistics(calib):
    m = calib.model
    counts = calib.expert_counts()
    assert set(counts) == {0, 1}
    for c in counts.values():
        assert c.sum() == calib.n_tokens * m.hp.n_expert_used
    col, row = calib.error_weights("blk.1.ffn_down_exps.weight", 256, 8, 256)
    assert col.shape == (8, 256) and row is None and (col > 0).all()
    col, row = calib.error_weights("blk.0.attn_q.weight", 256, 1, 256)
    assert col.shape == (1, 256)
    col, _ = calib.error_weights("token_embd.weight", 256, 1, 2048)   # tied: the head's inputs
    assert col.shape == (1, 256)
    # the unmodified model is at distance 0 whatever layer a probe starts from
    for start in (-1, 0, 1, 2):
        assert calib.kld(start) == pytest.approx(0.0, abs=1e-9)


def test_probe_changes_and_undo_restores(calib):
    m = calib.model
    ex = m.layers[1].experts
    w = np.stack([ex.expert_f32(e, 2) for e in range(ex.n_expert)])   # float32, the tensor's numpy shape
    undo = replace_tensor(m, "blk.1.ffn_down_exps.weight", np.zeros_like(w))
    assert calib.kld(1) > 1e-3
    undo()
    assert calib.kld(1) == pytest.approx(0.0, abs=1e-9)
    emb = m.tok_embd
    undo = replace_tensor(m, "token_embd.weight", emb.rows_f32(np.arange(emb.rows)) * 1.5)
    assert m.output is m.tok_embd is not emb   # tied: both roles change
    assert calib.kld(-1) > 0
    undo()
    assert m.tok_embd is emb and m.output is emb


# -- convert --target-size ------------------------------------------------------------------------

def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_convert_target_size_recipe_reproduces_bytes(tmp_path, capsys):
    ref = str(tmp_path / "q3km.gguf")
    qtoolkit.convert(TINY_MOE, ref, "Q3_K_M")
    target = os.path.getsize(ref)
    out = str(tmp_path / "alloc.gguf")
    assert main(["convert", TINY_MOE, "-o", out, "--target-size", str(target), "--calib", CALIB, "--quiet", *FAST]) == 0
    size = os.path.getsize(out)
    assert 0.99 * target <= size <= target
    recipe = str(tmp_path / "alloc.recipe")
    with open(recipe, encoding="utf-8") as f:
        text = f.read()
    header = dict(line[2:].split(": ", 1) for line in text.splitlines() if line.startswith("# ") and ": " in line)
    assert int(header["file-bytes"]) == size
    again = str(tmp_path / "again.gguf")
    assert main(["convert", TINY_MOE, "-o", again, "--type", header["base-preset"], "--tensor-type-file", recipe,
                 "--quiet"]) == 0
    assert _sha(again) == _sha(out)
    # --dry-run shows what the allocation will cost, calibrates nothing and writes nothing
    dry = str(tmp_path / "dry.gguf")
    capsys.readouterr()
    assert main(["convert", TINY_MOE, "-o", dry, "--target-size", str(target), "--calib", CALIB, "--dry-run", *FAST]) == 0
    shown = capsys.readouterr().out
    assert "allocation cost (estimated before starting): 1 pass over the checkpoint" in shown
    assert "calibration passes" in shown and "peak memory" in shown and "GB to read" in shown
    assert "predicted KL divergence" not in shown
    assert not os.path.exists(dry) and not os.path.exists(str(tmp_path / "dry.recipe"))


def test_convert_target_bpw(tmp_path):
    out = str(tmp_path / "b.gguf")
    rep = qtoolkit.convert(TINY_MOE, out, None, target_bpw=4.0, calib=CALIB, calib_chunks=2, calib_ctx=128,
                           max_probes=40, alloc_types="Q2_K,Q3_K,Q4_K,Q6_K,Q8_0", tensor_types=["attn_v=q8_0"])
    a = rep["allocation"]
    assert 3.95 <= a["bpw"] <= 4.0
    assert rep["totals"]["bpw"] == pytest.approx(a["bpw"], abs=1e-3)
    types = {t["name"]: t["type"] for t in rep["tensors"]}
    assert types["blk.0.attn_v.weight"] == types["blk.1.attn_v.weight"] == "Q8_0"   # pinned by the user
    assert {t for n, t in types.items() if "norm" not in n and "gate_inp" not in n} <= {"Q2_K", "Q3_K", "Q4_K", "Q6_K", "Q8_0"}


def test_convert_target_errors(tmp_path):
    out = str(tmp_path / "x.gguf")
    with pytest.raises(QtkValueError, match="calibration text"):
        qtoolkit.convert(TINY_MOE, out, None, target_size="2M")
    with pytest.raises(QtkValueError, match="not both"):
        qtoolkit.convert(TINY_MOE, out, None, target_size="2M", target_bpw=4, calib=CALIB)
    with pytest.raises(QtkValueError, match="smallest file"):
        qtoolkit.convert(TINY_MOE, out, None, target_size=200_000, calib=CALIB, calib_chunks=2, calib_ctx=256)
    assert main(["convert", TINY_MOE, "-o", out, "--calib", CALIB]) == 1   # --calib without a target
    assert not os.path.exists(out)


def test_probe_bands_share_a_measurement():
    from qtoolkit.alloc import allocate, read_text

    a = allocate(TINY_MOE, read_text(CALIB), target_bpw=4.5, calib_chunks=2, calib_ctx=128, probe_layers=2,
                 types=parse_types("Q2_K,Q4_K,Q6_K,Q8_0"))
    free = [t for t in a.tensors if t.types]
    banded = [t for t in free if t.name.startswith("blk.")]
    assert all(len(t.band) == 2 for t in banded)
    # 7 kinds x 2 layers, + token_embd; per band 3 weight probes and 2 kernel probes (Q8_K and Q8_0 activations)
    assert a.calibration["probe_bands"] == 8 and a.calibration["probes"] == 8 * 5
    # members of a band split its KLD in proportion to their errors
    g0, g1 = (next(t for t in free if t.name == f"blk.{i}.ffn_down_exps.weight") for i in (0, 1))
    j = g0.types.index(Q.Q2_K)
    assert g0.probes["Q2_K"] / g1.probes["Q2_K"] == pytest.approx(g0.error[j] / g1.error[j])
    assert a.bpw <= 4.5


def test_gguf_reference_calibration(tmp_path, monkeypatch):
    """Big models calibrate against a Q8_0 (or BF16) conversion instead of float32 weights; the
    answer is close to the float32 one."""
    import importlib

    alloc_mod = importlib.import_module("qtoolkit.alloc.allocate")
    from qtoolkit.alloc import allocate, read_text
    from qtoolkit.errors import QtkMemoryError

    ref = str(tmp_path / "ref-q8.gguf")
    qtoolkit.convert(TINY_MOE, ref, "Q8_0")
    kw = dict(target_bpw=4.0, calib_chunks=2, calib_ctx=256, types=parse_types("Q2_K,Q3_K,Q4_K,Q6_K,Q8_0"),
              probe_layers=2)
    a = allocate(TINY_MOE, read_text(CALIB), **kw)
    b = allocate(TINY_MOE, read_text(CALIB), reference=ref, **kw)
    assert b.bpw <= 4.0
    assert b.predicted_kld == pytest.approx(a.predicted_kld, rel=0.25)
    # judged by the float32 calibration's own loss table, the reference's choice is nearly as good
    # as the float32 optimum
    table = {t.name: t for t in a.tensors if t.types}
    cross = sum(t.loss[t.types.index(b.types[n])] for n, t in table.items())
    assert 0.99 * a.predicted_kld <= cross <= 1.3 * a.predicted_kld
    # the in-memory probes refuse a model whose weights do not fit, before loading it; the streamed
    # pass (the default) holds two layers and goes ahead
    monkeypatch.setattr(alloc_mod, "available_memory", lambda: 1_000_000)
    with pytest.raises(QtkMemoryError, match="calib-reference"):
        allocate(TINY_MOE, read_text(CALIB), probes="full", **kw)


def test_allocation_with_qtoolkit_imatrix(tmp_path):
    """With an importance matrix from qtoolkit.imatrix, the types that need one become candidates
    exactly for the tensors it covers (not the embedding, which it has no entry for), and the
    converter accepts the allocation."""
    im = str(tmp_path / "im.gguf")
    qtoolkit.compute_imatrix(TINY_MOE, file=CALIB, output=im, ctx=128, chunks=4, compute_ppl=False)
    out = str(tmp_path / "a.gguf")
    rep = qtoolkit.convert(TINY_MOE, out, None, target_bpw=2.6, calib=CALIB, calib_chunks=2, calib_ctx=128,
                           max_probes=40, imatrix=im, alloc_types="IQ2_XXS,IQ2_XS,Q2_K,Q4_K,Q8_0")
    a = rep["allocation"]
    assert a["bpw"] <= 2.6
    cands = {t["name"]: t["options"] for t in a["tensors"] if not t["fixed"]}
    assert "IQ2_XXS" not in cands["token_embd.weight"]
    assert all("IQ2_XXS" in c for n, c in cands.items() if n.startswith("blk."))
    types = {t["name"]: t["type"] for t in rep["tensors"]}
    assert types["token_embd.weight"] in ("Q2_K", "Q4_K", "Q8_0")
    assert rep["imatrix"]["used"] > 0


def test_uncovered_experts_error_refuses_before_the_calibration(tmp_path, monkeypatch):
    """With --uncovered-experts error, an importance matrix that never reached some experts is
    refused up front, naming them, instead of after the calibration run and the probes."""
    import importlib

    from qtoolkit.errors import QtkImatrixCoverageError
    from qtoolkit.imatrix import ImatrixStats, read_imatrix, write_imatrix

    full = str(tmp_path / "im.gguf")
    qtoolkit.compute_imatrix(TINY_MOE, file=CALIB, output=full, ctx=128, chunks=2, compute_ppl=False)
    st = read_imatrix(full)
    sums = {k: v.copy() for k, v in st.sums.items()}
    counts = {k: v.copy() for k, v in st.counts.items()}
    for stack in ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"):
        sums[f"blk.0.{stack}.weight"][5] = 0
        counts[f"blk.0.{stack}.weight"][5] = 0
    holed = str(tmp_path / "holed.gguf")
    write_imatrix(holed, ImatrixStats(sums, counts, st.datasets, st.chunk_count, st.chunk_size))

    def no_calibration(*a, **k):
        raise AssertionError("the calibration ran before the coverage check")

    alloc_mod = importlib.import_module("qtoolkit.alloc.allocate")  # the module, not the function of that name
    monkeypatch.setattr(alloc_mod, "Calibration", no_calibration)
    with pytest.raises(QtkImatrixCoverageError) as info:
        qtoolkit.convert(TINY_MOE, str(tmp_path / "a.gguf"), None, target_bpw=3.0, calib=CALIB, calib_chunks=2,
                         calib_ctx=128, imatrix=holed, uncovered_experts="error")
    assert info.value.uncovered["blk.0.ffn_up_exps.weight"] == [5]
    assert not os.path.exists(tmp_path / "a.gguf")
