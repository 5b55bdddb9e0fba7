"""Mutation fuzzing of the file readers: a few hundred cases per format here, tens of thousands
with ``tools/fuzz/fuzz.py --cases N`` (docs/reliability.md).

A reader must parse a mutated file correctly or refuse it with a QtkError naming the file;
anything else (another exception type, a crash, an array whose size disagrees with its header, an
allocation beyond a multiple of the file size, a hang) is a failure. GGUF model files go all the
way: parsed, inspected, loaded, tokenized, run for a few tokens and re-quantized; Hugging Face
folders (a mutated config.json, tokenizer file or safetensors shard) are converted, and the
output and the folder loaded and run.
"""

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz import gguf_mutators as gm
from tests.fuzz.exercise import FORMATS, exercise_gguf_model, exercise_safetensors, run_case
from tests.fuzz.gguf_mutators import MODEL_VARIANTS, model_file
from tests.fuzz.mutators import EXTREME_INTS, safetensors_sample

# cases per format in the default run (CI); tools/fuzz/fuzz.py runs the same cases by the thousand
CI_CASES = {"safetensors": 300, "gguf-model": 200, "gguf-imatrix": 150, "imatrix-dat": 150, "hf-checkpoint": 100}


def _fuzz(fmt):
    @pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow in the forward pass of mutated weights
    @settings(max_examples=CI_CASES[fmt], deadline=None, derandomize=True, database=None)
    @given(st.integers(0, 2**32 - 1))
    def run(tmp_path_factory, seed):
        run_case(fmt, seed, str(tmp_path_factory.mktemp("fz")))
    return run


test_fuzz_safetensors = _fuzz("safetensors")
test_fuzz_gguf_model = _fuzz("gguf-model")
test_fuzz_gguf_imatrix = _fuzz("gguf-imatrix")
test_fuzz_imatrix_dat = _fuzz("imatrix-dat")
test_fuzz_hf_checkpoint = _fuzz("hf-checkpoint")


def test_every_format_has_a_ci_budget():
    assert set(CI_CASES) == set(FORMATS)


def test_valid_samples_read_back(tmp_path):
    for seed in range(20):
        path = tmp_path / f"{seed}.safetensors"
        path.write_bytes(safetensors_sample(np.random.default_rng(seed)))
        assert exercise_safetensors(path) == "ok"
    for v in range(len(MODEL_VARIANTS)):
        path = tmp_path / f"{v}.gguf"
        path.write_bytes(model_file(v))
        assert exercise_gguf_model(path) == "ok"


@pytest.mark.parametrize("size", [0, 3, 8, 9])
def test_tiny_files_are_refused(tmp_path, size):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"\x10" * size)
    assert exercise_safetensors(path) == "refused"
    path = tmp_path / "x.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00"[:size] + b"\x00" * max(0, size - 8))
    assert exercise_gguf_model(path) == "refused"


# -- mutations drawn by hypothesis itself (so that a failure shrinks to the smallest mutation) -----

def _written(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("hz") / "m.gguf"
    path.write_bytes(blob)
    return path


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@settings(max_examples=120, deadline=None, derandomize=True, database=None)
@given(variant=st.integers(0, len(MODEL_VARIANTS) - 1), field=st.integers(0, 10**6),
       value=st.one_of(st.sampled_from(EXTREME_INTS), st.integers(0, 2**64 - 1)))
def test_gguf_any_field_any_value(tmp_path_factory, variant, field, value):
    w = gm.write(gm.model_doc(variant))
    f = w.fields[field % len(w.fields)]
    bits = struct.calcsize(f.fmt) * 8
    blob = bytearray(w.blob)
    v = value % (1 << bits)
    struct.pack_into(f.fmt, blob, f.offset, v if f.fmt[1].isupper() else v - (1 << bits) * (v >> (bits - 1)))
    exercise_gguf_model(_written(tmp_path_factory, bytes(blob)))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(variant=st.integers(0, len(MODEL_VARIANTS) - 1), cut=st.integers(0, 10**7),
       flips=st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 7)), max_size=6))
def test_gguf_truncated_and_flipped(tmp_path_factory, variant, cut, flips):
    w = gm.write(gm.model_doc(variant))
    blob = bytearray(w.blob)
    for pos, bit in flips:
        blob[pos % w.header_end] ^= 1 << bit  # mostly header: that is where the structure is
    blob = bytes(blob[: cut % (len(blob) + 1)])
    exercise_gguf_model(_written(tmp_path_factory, blob), deep=len(blob) == len(w.blob))
