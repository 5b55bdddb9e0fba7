"""Mutation fuzzing of the file readers (a few hundred cases here; tools/fuzz.py runs thousands).

A reader must parse a mutated file correctly or refuse it with a QtkError; anything else (another
exception type, a crash, an array whose size disagrees with its header) is a failure.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qtoolkit.errors import QtkError
from qtoolkit.safetensors_io import SafetensorsFile

from .mutators import mutate_safetensors, safetensors_sample


def exercise_safetensors(path) -> str:
    """Open and read every tensor; returns 'ok' or 'refused'. Other exceptions propagate."""
    try:
        f = SafetensorsFile(str(path))
        for name, info in f.tensors.items():
            raw = f.raw(name)
            assert raw.nbytes == info.end - info.start
            assert info.end <= f.size
            if info.dtype in ("F32", "F16", "BF16"):
                assert f.read(name).shape == info.shape
        f.close()
        return "ok"
    except QtkError as exc:
        assert str(path) in str(exc), f"the error does not name the file: {exc}"
        return "refused"


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_mutated_safetensors_are_parsed_or_refused(tmp_path_factory, seed):
    rng = np.random.default_rng(seed)
    blob = mutate_safetensors(safetensors_sample(rng), rng)
    path = tmp_path_factory.mktemp("fz") / "m.safetensors"
    path.write_bytes(blob)
    exercise_safetensors(path)


def test_valid_samples_read_back(tmp_path):
    for seed in range(20):
        path = tmp_path / f"{seed}.safetensors"
        path.write_bytes(safetensors_sample(np.random.default_rng(seed)))
        assert exercise_safetensors(path) == "ok"


@pytest.mark.parametrize("size", [0, 3, 8, 9])
def test_tiny_files_are_refused(tmp_path, size):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"\x10" * size)
    assert exercise_safetensors(path) == "refused"
