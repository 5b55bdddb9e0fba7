"""Shared test fixtures: the ggml oracle (when llama-cpp-python is installed) and the golden file."""

import os

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.register_profile("thorough", max_examples=400, deadline=None)
settings.load_profile(os.environ.get("QTK_HYPOTHESIS_PROFILE", "ci"))

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.fixture(scope="session")
def ggml():
    """ggml's own quantizers from llama-cpp-python; skips the test when it is not installed."""
    from qtoolkit import ggml_ref

    g = ggml_ref.load()
    if g is None:
        pytest.skip("llama-cpp-python (the compat extra) is not installed")
    return g


@pytest.fixture(scope="session")
def golden():
    path = os.path.join(DATA, "ggml_golden.npz")
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


# -- instruction sets ------------------------------------------------------------------------

import qtoolkit  # noqa: E402
from qtoolkit import _clib  # noqa: E402

ALL_ISAS = _clib.isa_names()


@pytest.fixture(params=ALL_ISAS)
def isa(request):
    """Runs a test once per ISA this build knows (ref, avx2, neon), with that ISA's kernels active;
    skips, with the reason, those the CPU, the build or QTK_ISA rule out."""
    name = request.param
    if name not in qtoolkit.available_isas():
        if name in _clib.supported_isas():
            pytest.skip(f"{name} is capped by QTK_ISA={os.environ.get('QTK_ISA')}")
        pytest.skip(f"{name} is not supported by this CPU or build")
    before = qtoolkit.active_isa()
    qtoolkit.set_isa(name)
    try:
        yield name
    finally:
        qtoolkit.set_isa(before)
