"""Shared test fixtures: the ggml oracle (when llama-cpp-python is installed), the golden file, and
small random Hugging Face checkpoints for the converter."""

import os
import sys

import numpy as np
import pytest
from hypothesis import settings

from tools.fixtures.synth_checkpoint import make_checkpoint  # noqa: E402
from tests.support.paths import DATA

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.register_profile("thorough", max_examples=400, deadline=None)
settings.load_profile(os.environ.get("QTK_HYPOTHESIS_PROFILE", "ci"))



def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running (run with -m slow or RUN_SLOW=1)")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("RUN_SLOW") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow test: set RUN_SLOW=1 or use -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ggml():
    """ggml's own quantizers from llama-cpp-python; skips the test when it is not installed."""
    from tests.support import ggml_ref

    g = ggml_ref.load()
    if g is None:
        pytest.skip("llama-cpp-python (the compat extra) is not installed")
    return g


@pytest.fixture(scope="session")
def golden():
    path = os.path.join(DATA, "ggml_golden.npz")
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """(arch, **shape) -> a small random checkpoint folder (built once per session)."""
    cache = {}

    def get(arch, **kw):
        key = (arch, repr(sorted(kw.items())))
        if key not in cache:
            d = tmp_path_factory.mktemp(arch)
            cache[key] = make_checkpoint(str(d), arch, **kw)
        return cache[key]

    return get


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
