"""llama.cpp as the judge of importance matrices made by qtoolkit (skipped without
llama-cpp-python): its GGUF parser and the real llama-quantize tool read our files, and
``convert --imatrix`` gives the bytes ``llama_model_quantize`` gives from our F32 file with the
weights llama.cpp reads from our imatrix file. (Like test_llama_compat.py, these do not depend on
the kernels' ISA; CI's QTK_ISA=ref pass leaves them out.)"""

import os
import subprocess

import numpy as np
import pytest
from tests.support.paths import ROOT as REPO

pytest.importorskip("llama_cpp")

import qtoolkit  # noqa: E402
from qtoolkit.imatrix import load_imatrix  # noqa: E402
from qtoolkit.presets import PRESETS  # noqa: E402
from tests.support import llama_ref  # noqa: E402
from tests.support.imatrix_fixtures import FIXTURE, holed, ours, same_tensors  # noqa: E402,F401

K_PRESETS = ["Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_S", "Q6_K", "Q4_0", "IQ4_XS"]
IQ_PRESETS = ["IQ2_XXS", "IQ2_XS", "IQ2_M", "IQ1_S", "IQ1_M", "IQ3_XXS", "IQ3_M", "Q2_K_S"]


# -- llama.cpp reads our files ------------------------------------------------------------------


def test_ggml_parses_our_files_as_llama_quantize_does(ours):
    for fmt in ("gguf", "dat"):
        theirs = llama_ref.imatrix_file_weights(ours[fmt])
        mine = load_imatrix(ours[fmt]).entries
        assert sorted(theirs) == sorted(mine)
        for name, w in theirs.items():
            assert np.array_equal(w, mine[name].ravel()), (fmt, name)


def _llama_quantize_binary():
    path = os.environ.get("QTK_LLAMA_QUANTIZE") or os.path.join(REPO, ".bench", "llama-quantize")
    if not os.path.isfile(path):
        pytest.skip("the llama-quantize tool is not built (bash tools/check/build_llama_quantize.sh LLAMA_CPP_SRC)")
    return path


@pytest.mark.parametrize("fmt", ["gguf", "dat"])
def test_the_real_llama_quantize_accepts_our_file(ours, fmt):
    exe = _llama_quantize_binary()
    out = str(ours["dir"] / f"lq-{fmt}.gguf")
    proc = subprocess.run([exe, "--imatrix", ours[fmt], ours["f32"], out, "IQ2_XXS", "2"],
                          capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-2000:]
    assert f"loaded 16 importance matrix entries from {ours[fmt]}" in log
    mine = str(ours["dir"] / f"q-{fmt}.gguf")
    qtoolkit.convert(FIXTURE, mine, "IQ2_XXS", imatrix=ours[fmt])
    assert same_tensors(mine, out) == []


# -- byte identity with our imatrix --------------------------------------------------------------


@pytest.mark.parametrize("preset", K_PRESETS + IQ_PRESETS)
def test_byte_identical_to_llama_quantize_with_our_imatrix(ours, tmp_path, preset):
    mine, ref = str(tmp_path / "q.gguf"), str(tmp_path / "r.gguf")
    rep = qtoolkit.convert(FIXTURE, mine, preset, imatrix=ours["gguf"])
    assert rep["imatrix"]["missing"] == ["token_embd.weight"] and rep["imatrix"]["uncovered"] == {}
    llama_ref.quantize_file(ours["f32"], ref, PRESETS[preset].ftype, imatrix=llama_ref.imatrix_file_weights(ours["gguf"]))
    assert same_tensors(mine, ref) == []


def test_legacy_file_gives_llama_quantizes_bytes_too(ours, tmp_path):
    mine, ref = str(tmp_path / "q.gguf"), str(tmp_path / "r.gguf")
    qtoolkit.convert(FIXTURE, mine, "IQ2_XS", imatrix=ours["dat"])
    llama_ref.quantize_file(ours["f32"], ref, PRESETS["IQ2_XS"].ftype, imatrix=llama_ref.imatrix_file_weights(ours["dat"]))
    assert same_tensors(mine, ref) == []


def test_uniform_policy_is_llama_quantizes_choice(ours, holed, tmp_path):
    mine, ref = str(tmp_path / "q.gguf"), str(tmp_path / "r.gguf")
    rep = qtoolkit.convert(FIXTURE, mine, "IQ2_XXS", imatrix=holed)      # uniform is the default
    unc = rep["imatrix"]["uncovered"]
    assert sorted(unc) == [f"blk.1.{s}.weight" for s in ("ffn_down_exps", "ffn_gate_exps", "ffn_up_exps")]
    assert all(v["experts"] == [3, 6] and v["filled"] == "uniform" and v["tokens"] == [0, 0] for v in unc.values())
    llama_ref.quantize_file(ours["f32"], ref, PRESETS["IQ2_XXS"].ftype, imatrix=llama_ref.imatrix_file_weights(holed))
    assert same_tensors(mine, ref) == []
