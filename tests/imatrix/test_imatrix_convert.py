"""An importance matrix made by qtoolkit in convert and quantize: the uncovered-expert policies,
the refusals where a type cannot be made without importance data, the command line and the API.
(llama.cpp's verdict on the same files: test_imatrix_llama.py.)"""

import json
import os

import numpy as np
import pytest

import qtoolkit
from qtoolkit.cli import main
from qtoolkit.errors import QtkImatrixCoverageError, QtkImatrixRequiredError, QtkValueError
from qtoolkit.io.gguf_reader import GGUFFile
from qtoolkit.imatrix import load_imatrix, read_imatrix, write_imatrix
from tests.support.imatrix_fixtures import CALIB, FIXTURE, holed, ours, same_tensors  # noqa: F401  (fixtures)


def test_quantize_command_uses_it_like_convert(ours, tmp_path):
    a, b = str(tmp_path / "a.gguf"), str(tmp_path / "b.gguf")
    qtoolkit.convert(FIXTURE, a, "IQ2_M", imatrix=ours["gguf"])
    from qtoolkit.converter.requantize import requantize

    rep = requantize(ours["f32"], b, "IQ2_M", imatrix=ours["gguf"])
    assert rep["imatrix"]["used"] == 14          # the quantized matrices; token_embd has no entry
    assert same_tensors(a, b) == []


# -- uncovered experts ---------------------------------------------------------------------------


def test_layer_mean_policy_changes_only_the_uncovered_experts(holed, tmp_path):
    uni, lm = str(tmp_path / "u.gguf"), str(tmp_path / "m.gguf")
    qtoolkit.convert(FIXTURE, uni, "IQ2_XXS", imatrix=holed, uncovered_experts="uniform")
    rep = qtoolkit.convert(FIXTURE, lm, "IQ2_XXS", imatrix=holed, uncovered_experts="layer-mean")
    assert {v["filled"] for v in rep["imatrix"]["uncovered"].values()} == {"layer-mean"}
    diff = same_tensors(uni, lm)
    assert sorted(diff) == [f"blk.1.{s}.weight" for s in ("ffn_down_exps", "ffn_gate_exps", "ffn_up_exps")]
    im = load_imatrix(holed)
    a, b = GGUFFile(uni), GGUFFile(lm)
    ck = qtoolkit.load(FIXTURE)  # the checkpoint's experts, to quantize expert 3 by hand
    name = "blk.1.ffn_gate_exps.weight"
    w = im.weights(name, 256, 8)
    mean = w[[0, 1, 2, 4, 5, 7]].mean(axis=0, dtype=np.float64).astype(np.float32)
    x = ck.layers[1].experts.expert_f32(3, 0)
    assert np.array_equal(b.data(name)[3], qtoolkit.quantize(x, "IQ2_XXS", imatrix=mean))
    assert np.array_equal(a.data(name)[3], qtoolkit.quantize(x, "IQ2_XXS", imatrix=np.ones(256, np.float32)))
    for e in (0, 1, 2, 4, 5, 7):
        assert np.array_equal(a.data(name)[e], b.data(name)[e])
    assert b.get("quantize.imatrix.uncovered_experts").startswith("6 expert matrices in 3 tensors below 1 tokens")
    assert a.get("quantize.imatrix.uncovered_experts") is not None and "uniform" in a.get("quantize.imatrix.uncovered_experts")
    a.close()
    b.close()


def test_error_policy_names_tensors_and_experts(holed, tmp_path):
    out = str(tmp_path / "e.gguf")
    with pytest.raises(QtkImatrixCoverageError) as info:
        qtoolkit.convert(FIXTURE, out, "IQ2_XXS", imatrix=holed, uncovered_experts="error")
    msg = str(info.value)
    assert holed in msg and "blk.1.ffn_down_exps.weight: experts 3, 6" in msg and "6 expert matrices in 3 tensors" in msg
    assert info.value.uncovered["blk.1.ffn_up_exps.weight"] == [3, 6]
    assert isinstance(info.value, QtkValueError) and not os.path.exists(out)
    # a type that ignores importance weights (Q8_0) has nothing to refuse
    qtoolkit.convert(FIXTURE, out, "Q8_0", imatrix=holed, uncovered_experts="error")


def test_threshold_counts_experts_with_few_tokens(ours, tmp_path):
    st = read_imatrix(ours["gguf"])
    c = st.expert_counts("blk.0.ffn_gate_exps.weight")
    thr = int(np.sort(c)[2])          # the two least-routed experts of layer 0 fall below it
    rep = qtoolkit.convert(FIXTURE, None, "IQ2_XXS", imatrix=ours["gguf"], dry_run=True,
                           uncovered_experts="layer-mean", min_expert_tokens=thr)
    got = rep["imatrix"]["uncovered"]["blk.0.ffn_gate_exps.weight"]
    assert sorted(got["experts"]) == sorted(int(e) for e in np.argsort(c, kind="stable")[:2])
    assert all(t < thr for t in got["tokens"])


# -- types that cannot be made without importance data --------------------------------------------


def test_missing_imatrix_refused_naming_the_tensor(tmp_path):
    out = str(tmp_path / "x.gguf")
    with pytest.raises(QtkImatrixRequiredError, match=r"tensor blk\.0\.\w+\.weight would be IQ2_XXS in a IQ2_XXS file"):
        qtoolkit.convert(FIXTURE, out, "IQ2_XXS")
    assert not os.path.exists(out)


def test_embedding_override_to_an_imatrix_only_type_is_refused(ours, tmp_path):
    """ggml would abort on this (no importance data exists for a lookup table); we refuse up front."""
    out = str(tmp_path / "x.gguf")
    for im in (None, ours["gguf"]):
        with pytest.raises(QtkImatrixRequiredError, match="tensor token_embd.weight would be IQ1_S.*row lookup") as info:
            qtoolkit.convert(FIXTURE, out, "Q4_K_M", imatrix=im, token_embedding_type="iq1_s")
        assert info.value.qtype == "IQ1_S"
    assert not os.path.exists(out)
    with pytest.raises(QtkImatrixRequiredError, match="tensor blk.0.ffn_down_exps.weight would be IQ2_XS in a Q4_K_M"):
        qtoolkit.convert(FIXTURE, out, "Q4_K_M", tensor_types=["ffn_down=iq2_xs"])


def test_entry_missing_from_the_file_is_refused_naming_both(ours, tmp_path):
    st = read_imatrix(ours["gguf"])
    del st.sums["blk.1.attn_q.weight"], st.counts["blk.1.attn_q.weight"]
    partial = str(tmp_path / "partial.gguf")
    write_imatrix(partial, st)
    with pytest.raises(QtkImatrixRequiredError) as info:
        qtoolkit.convert(FIXTURE, str(tmp_path / "x.gguf"), "IQ1_M", imatrix=partial)
    assert "blk.1.attn_q.weight" in str(info.value) and partial in str(info.value)
    from qtoolkit.converter.requantize import requantize

    with pytest.raises(QtkImatrixRequiredError, match="blk.1.attn_q.weight"):
        requantize(ours["f32"], str(tmp_path / "y.gguf"), "IQ1_M", imatrix=partial)


# -- the command line ------------------------------------------------------------------------------


def test_cli_imatrix_and_inspect(tmp_path, capsys):
    out = str(tmp_path / "im.gguf")
    assert main(["imatrix", FIXTURE, "-f", CALIB, "-o", out, "--ctx", "64", "--chunks", "3", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["chunks"] == 3 and rep["tokens"] == 192 and rep["format"] == "gguf" and rep["entries"] == 16
    assert rep["coverage"]["n_experts"] == 16 and len(rep["coverage"]["layers"]) == 2
    assert sum(rep["coverage"]["layers"][0]["counts"]) == 192 * 2
    assert main(["imatrix", FIXTURE, "-f", CALIB, "-o", out, "--ctx", "64", "--chunks", "3"]) == 1   # exists
    assert "already exists" in capsys.readouterr().err
    assert main(["imatrix", FIXTURE, "-f", CALIB, "-o", out, "--ctx", "64", "--chunks", "2", "--force",
                 "--quiet", "--min-tokens", "40"]) == 0
    text = capsys.readouterr().out
    assert "expert coverage" in text and "layer   0: 8 experts" in text and "under 40 tokens" in text
    assert main(["inspect", out, "--json", "--min-tokens", "40"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "imatrix" and info["chunk_count"] == 2 and info["chunk_size"] == 64
    assert info["coverage"]["n_uncovered"] > 0 and info["coverage"]["min_tokens"] == 40
    assert {e["name"] for e in info["entries"] if e.get("n_mat") == 8} >= {"blk.0.ffn_gate_exps.weight"}
    assert main(["inspect", out]) == 0
    text = capsys.readouterr().out
    assert "importance matrix (GGUF)" in text and "blk.0.ffn_down_exps.weight" in text
    dat = str(tmp_path / "im.dat")
    assert main(["imatrix", FIXTURE, "-f", CALIB, "-o", dat, "--ctx", "64", "--chunks", "2", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["inspect", dat]) == 0
    assert "legacy .dat" in capsys.readouterr().out


def test_cli_convert_policy_flags(holed, tmp_path, capsys):
    out = str(tmp_path / "x.gguf")
    assert main(["convert", FIXTURE, "-o", out, "--type", "IQ2_XXS", "--imatrix", holed, "--uncovered-experts",
                 "error"]) == 1
    err = capsys.readouterr().err
    assert "blk.1.ffn_gate_exps.weight: experts 3, 6" in err and "Traceback" not in err
    assert main(["convert", FIXTURE, "-o", out, "--type", "IQ2_XXS", "--imatrix", holed, "--uncovered-experts",
                 "layer-mean", "--quiet", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["imatrix"]["policy"] == "layer-mean" and len(rep["imatrix"]["uncovered"]) == 3
    assert main(["convert", FIXTURE, "-o", out, "--type", "IQ2_XXS", "--force", "--imatrix", holed]) == 0
    assert "got uniform weights" in capsys.readouterr().out


def test_api_report_is_json_ready(tmp_path):
    rep = qtoolkit.compute_imatrix(FIXTURE, file=CALIB, output=str(tmp_path / "x.gguf"), ctx=64, chunks=2)
    json.dumps(rep)
    assert rep["file_bytes"] == os.path.getsize(str(tmp_path / "x.gguf"))
    rep = qtoolkit.compute_imatrix(FIXTURE, file=CALIB, ctx=64, chunks=2, compute_ppl=False)     # nothing written
    assert rep["output"] is None and rep["ppl"] is None
    with pytest.raises(QtkValueError, match="format"):
        qtoolkit.compute_imatrix(FIXTURE, file=CALIB, output=str(tmp_path / "y.gguf"), output_format="bin")
    with pytest.raises(QtkValueError, match="needs at least"):
        qtoolkit.compute_imatrix(FIXTURE, text="too short", ctx=64)


def test_low_bit_files_run_through_their_kernels_and_without_them(ours, tmp_path, monkeypatch, caplog):
    """An IQ2_XXS file runs through the IQ2_XXS matmul kernels (Q8_K activations, as llama.cpp). A
    type without a matmul kernel in a build (forced here for IQ2_XXS) is decoded to float32 at load,
    with a warning, so such a file can still be measured; it then differs only by the activations'
    rounding."""
    import qtoolkit.model.linear as linear
    from qtoolkit.errors import QtkNotImplementedError

    out = str(tmp_path / "iq2.gguf")
    qtoolkit.convert(FIXTURE, out, "IQ2_XXS", imatrix=ours["gguf"])
    toks = qtoolkit.load(FIXTURE).tokenizer.encode("Full fathom five thy father lies; of his bones are coral made.")
    ref = qtoolkit.load(FIXTURE).forward(toks)
    widened = "runs dequantized to float32"

    with caplog.at_level("WARNING"):
        lg = qtoolkit.load(out).forward(toks)
    assert not [r for r in caplog.records if widened in r.getMessage()]
    assert lg.shape == (len(toks), 2048) and np.isfinite(lg).all()
    assert np.corrcoef(lg.ravel(), ref.ravel())[0, 1] > 0.9

    iq2 = int(qtoolkit.QuantType.IQ2_XXS)
    bound_mm, bound_ffn = linear.BoundMatmul, linear.BoundMoeFFN

    def no_iq2_mm(type_id, *a, **k):
        if type_id == iq2:
            raise QtkNotImplementedError("no IQ2_XXS kernel in this (pretended) build")
        return bound_mm(type_id, *a, **k)

    def no_iq2_ffn(type_ids, *a, **k):
        if iq2 in type_ids:
            raise QtkNotImplementedError("no IQ2_XXS kernel in this (pretended) build")
        return bound_ffn(type_ids, *a, **k)

    monkeypatch.setattr(linear, "BoundMatmul", no_iq2_mm)
    monkeypatch.setattr(linear, "BoundMoeFFN", no_iq2_ffn)
    caplog.clear()
    with caplog.at_level("WARNING"):
        wide = qtoolkit.load(out).forward(toks)
    assert [r for r in caplog.records if widened in r.getMessage()]
    assert wide.shape == lg.shape and np.isfinite(wide).all()
    assert not np.array_equal(wide, lg)                      # float32 activations instead of Q8_K
    assert np.corrcoef(wide.ravel(), lg.ravel())[0, 1] > 0.999
