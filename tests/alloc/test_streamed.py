"""The streamed pass of the bit allocator (qtoolkit/alloc/streamed.py): on every calibration chunk
it measures exactly what the in-memory probes measure, and it reads the checkpoint once."""

import os

import pytest

from qtoolkit.alloc.allocate import allocate

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
MOE = os.path.join(DATA, "tiny-moe")


@pytest.fixture(scope="module")
def text():
    with open(os.path.join(DATA, "calib-shakespeare.txt"), encoding="utf-8") as f:
        return f.read()


def _run(text, chunks=4, **kw):
    return allocate(MOE, text, target_size=2_289_504, calib_chunks=chunks, threads=2, **kw)


def test_streamed_on_every_chunk_equals_full_probes(text):
    anchors = ("Q3_K_M", "recipe:Q2_K")
    full = _run(text, probes="full", anchors=anchors)
    streamed = _run(text, probes="streamed", probe_chunks=4, anchors=anchors)
    assert streamed.types == full.types
    assert streamed.predicted_kld == pytest.approx(full.predicted_kld, rel=1e-9)
    # the anchors (whole files on every chunk) and the chosen file itself measure the same in both
    fa, sa = full.calibration["anchors"], streamed.calibration["anchors"]
    assert set(fa) == set(sa) == set(anchors)
    for label in anchors:
        assert sa[label]["kld"] == pytest.approx(fa[label]["kld"], rel=1e-9)
        assert sa[label]["predicted_kld"] == pytest.approx(fa[label]["predicted_kld"], rel=1e-9)
        assert sa[label]["kld"] > 0
    assert streamed.calibration["scale"] == pytest.approx(full.calibration["scale"], rel=1e-9)
    assert streamed.calibration["measured_kld"] == pytest.approx(full.calibration["measured_kld"], rel=1e-9)
    by_name = {t.name: t for t in full.tensors}
    n = 0
    for tp in streamed.tensors:
        if tp.fixed is not None:
            continue
        ref = by_name[tp.name]
        assert tp.error == pytest.approx(ref.error, rel=1e-9)
        assert set(tp.probes) == set(ref.probes)
        for k, v in ref.probes.items():
            assert tp.probes[k] == pytest.approx(v, rel=1e-9, abs=1e-15)
            n += 1
        assert tp.act == pytest.approx(ref.act, rel=1e-9, abs=1e-15)
    assert n >= 30


def test_streamed_reads_the_checkpoint_once_and_reports_its_cost(text):
    a = _run(text, chunks=16, probes="streamed", verify=False)   # (on 4 chunks even one probe chunk would exceed the budget)
    run = a.calibration["run"]
    assert a.calibration["method"] == "streamed"
    assert run["passes"] == 1
    assert run["reads_of_checkpoint"] == pytest.approx(1.0, abs=0.01)
    assert 1 <= run["probe_chunks"] < 16
    assert run["streams"] == a.calibration["probes"]
    assert run["estimated_stream_ratio"] <= 9.0 - 1 + 1e-9   # one anchor (auto) takes one pass of the budget
    assert list(a.calibration["anchors"]) == ["Q3_K_M"]     # the preset nearest the target
    assert a.calibration["measured_kld"] is None
    assert a.file_bytes <= 2_289_504


def test_the_estimate_before_starting_is_what_the_run_does(text):
    from qtoolkit.alloc.allocate import AllocOptions, Target, base_plan
    from qtoolkit.alloc.cost import allocation_cost

    plan = base_plan(MOE)
    try:
        cost = allocation_cost(plan, text, Target(2_289_504), AllocOptions(calib_chunks=16))
    finally:
        plan.close()
    a = _run(text, chunks=16)
    run = a.calibration["run"]
    assert (cost["streams"], cost["probe_chunks"], cost["probe_layers"]) == \
        (run["streams"], run["probe_chunks"], run["probe_layers"])
    assert cost["compute_passes"] <= 10.0
    assert cost["anchor_files"] == list(a.calibration["anchors"])
    # with the check of the chosen file: two reads of the checkpoint, within the target of three
    assert run["passes"] == 2 and run["reads_of_checkpoint"] == pytest.approx(2.0, abs=0.01)
    assert cost["checkpoint_bytes"] == run["checkpoint_bytes"]
    assert run["peak_rss_bytes"] <= cost["peak_memory_bytes"]


def test_the_measured_kld_is_what_compare_measures_on_the_file(text, tmp_path):
    import qtoolkit

    calib = os.path.join(DATA, "calib-shakespeare.txt")
    out = str(tmp_path / "a.gguf")
    rep = qtoolkit.convert(MOE, out, None, target_size=2_289_504, calib=calib, calib_chunks=4, threads=2)
    a = rep["allocation"]
    r = qtoolkit.compare(qtoolkit.load(MOE), qtoolkit.load(out), file=calib, ctx=512, chunks=4, threads=2)
    assert a["calibration"]["measured_kld"] == pytest.approx(r["kld_mean"], rel=1e-4)
    assert a["calibration"]["measured_kld"] > 0


def test_recipe_anchor_types():
    from qtoolkit.alloc.allocate import base_plan
    from qtoolkit.alloc.anchors import anchor_file_types
    from qtoolkit.quants import QuantType

    plan = base_plan(MOE)
    try:
        outs = [pt.out for pt in plan.tensors]
        types = anchor_file_types(plan, outs, "recipe:Q2_K", False)
    finally:
        plan.close()
    exps = {n: t for n, t in types.items() if n.endswith("_exps.weight")}
    assert exps and set(exps.values()) == {QuantType.Q2_K}
    rest = {t for n, t in types.items() if not n.endswith("_exps.weight") and t not in (QuantType.F32,)}
    assert rest == {QuantType.Q8_0}


def test_unreached_experts_are_reported_with_their_share():
    from types import SimpleNamespace

    from qtoolkit.alloc.calibration import StatsObserver, _ExpertStats, unreached_experts
    from qtoolkit.quants import QuantType

    stats = StatsObserver()
    st = _ExpertStats(SimpleNamespace(n_expert=4, n_embd=8, n_ff=16))
    st.sum_in[:] = 1.0
    st.sum_in[3] = 0.0
    st.count[:] = [5, 3, 2, 0]
    st.n_tokens = 10
    stats.expert_stats["0"] = st
    tp = SimpleNamespace(name="blk.0.ffn_up_exps.weight", chosen=QuantType.Q4_K, types=[QuantType.Q4_K], loss=[0.2])
    rep = unreached_experts(stats, [tp])
    (row,) = rep["tensors"]
    assert row["experts"] == [3] and row["of"] == 4
    # the floor: 1 % of the average of the four experts' weights (0.075), against 0.1 + 0.0075 for the others
    mean = 0.075
    expect = 0.01 * mean / (3 * (0.1 + 0.01 * mean) + 0.01 * mean)
    assert row["weight_share"] == pytest.approx(expect, rel=1e-6)   # (float32 weights)
    assert rep["predicted_kld"] == pytest.approx(0.2 * expect, rel=1e-6)


def test_unknown_probe_mode_is_refused(text):
    from qtoolkit.errors import QtkValueError

    with pytest.raises(QtkValueError, match="probes must be"):
        _run(text, probes="sometimes")


def test_plan_curve_after_one_calibration(tmp_path, capsys):
    """``qtoolkit plan MODEL --calib TEXT --curve out.png --json``: the solver's answers along the
    size range, never increasing with size, each within its budget; presets and anchors marked."""
    import json

    from qtoolkit.cli import main

    calib = os.path.join(DATA, "calib-shakespeare.txt")
    png = str(tmp_path / "curve.png")
    args = ["plan", MOE, "--calib", calib, "--calib-chunks", "2", "--calib-ctx", "256", "--anchors", "auto,recipe:Q2_K",
            "--curve-points", "12", "--threads", "2", "--json"]
    try:
        import matplotlib  # noqa: F401
        args += ["--curve", png]
    except ImportError:
        png = None
    capsys.readouterr()
    assert main(args) == 0
    q = json.loads(capsys.readouterr().out)["quality"]
    pts = q["curve"]
    assert len(pts) >= 12
    sizes = [p["file_bytes"] for p in pts]
    assert sizes == sorted(sizes)
    for p in pts:
        assert p["file_bytes"] <= p["budget_bytes"]
        assert p["gap"] >= -1e-12
    klds = [p["predicted_kld"] for p in pts]
    assert all(b <= a * (1 + 1e-9) for a, b in zip(klds, klds[1:]))
    assert klds[0] > 10 * klds[-1]
    assert {a["name"] for a in q["anchors"]} == {"Q4_K_M", "recipe:Q2_K"}   # auto: --type's default Q4_K_M
    assert all(a["measured_kld"] > 0 for a in q["anchors"])
    assert q["allocated"]["measured_kld"] > 0
    assert len(q["presets"]) == 10
    if png:
        with open(png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        # an existing curve file is not replaced without --force (refused before calibrating)
        assert main(args) != 0
        assert "already exists; pass --force" in capsys.readouterr().err
