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
