"""What the fuzzers do with a (mutated) file: every reader that qtoolkit applies to such a file in
real use, end to end. Each ``exercise_*`` returns ``"ok"`` (parsed and used) or ``"refused"`` (a
QtkError naming the file); any other exception, a QtkError that does not name the file, an
allocation larger than the file allows, or a hang is a failure and propagates.

The case generators (``*_case(rng) -> bytes``) and exercisers are shared by the pytest fuzz tests
(a few hundred cases) and ``tools/fuzz/fuzz.py`` (tens of thousands).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import tracemalloc

import numpy as np

from qtoolkit.errors import QtkError

from tests.fuzz import gguf_mutators as gm
from tests.fuzz.mutators import mutate_safetensors, safetensors_sample

# a reader may hold the file's fields as Python objects (a list of strings for a vocabulary costs
# more than its bytes on disk), so the bound is a multiple of the file size plus a constant
ALLOC_FACTOR = 32
ALLOC_SLACK = 4 << 20
CASE_SECONDS = 60


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int = CASE_SECONDS):
    """SIGALRM after ``seconds`` (main thread only; elsewhere no limit)."""
    try:
        old = signal.signal(signal.SIGALRM, _on_alarm)
    except ValueError:  # not the main thread
        yield
        return
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _on_alarm(signum, frame):
    raise Hang(f"a case ran longer than {CASE_SECONDS} s")


@contextlib.contextmanager
def allocation_bound(path: str):
    """Fails when the block's peak traced allocation exceeds ALLOC_FACTOR x the file size + slack
    (numpy's buffers are traced too, so an array sized from a corrupt count is caught even when
    the OS would have let it be allocated lazily)."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1] - base
        if started:
            tracemalloc.stop()
    limit = ALLOC_FACTOR * os.path.getsize(path) + ALLOC_SLACK
    assert peak <= limit, f"reading {path} allocated {peak} bytes (bound {limit})"


def _refused(path: str, exc: QtkError) -> str:
    assert str(path) in str(exc), f"the error does not name the file: {exc!r}"
    return "refused"


# -- safetensors -----------------------------------------------------------------------------

def exercise_safetensors(path) -> str:
    """Open and read every tensor."""
    from qtoolkit.io.safetensors_reader import SafetensorsFile

    try:
        with allocation_bound(str(path)):
            f = SafetensorsFile(str(path))
            infos = list(f.tensors.items())
        for name, info in infos:
            raw = f.raw(name)
            assert raw.nbytes == info.end - info.start
            assert info.end <= f.size
            if info.dtype in ("F32", "F16", "BF16"):
                assert f.read(name).shape == info.shape
        f.close()
        return "ok"
    except QtkError as exc:
        return _refused(path, exc)


def safetensors_case(rng) -> bytes:
    return mutate_safetensors(safetensors_sample(rng), rng)


# -- GGUF model files --------------------------------------------------------------------------

def exercise_gguf_model(path, deep: bool = True) -> str:
    """Parse, read every tensor, inspect; then (``deep``) load the model, tokenize and run a few
    tokens through it, and re-quantize the file to Q4_0 (the output must be a valid GGUF)."""
    from qtoolkit.cli.inspect import inspect_file
    from qtoolkit.io.gguf_reader import GGUFFile

    path = str(path)
    try:
        with allocation_bound(path):
            with GGUFFile(path) as g:
                for t in g.tensors:
                    d = g.data(t)
                    assert d.nbytes == t.nbytes and t.data_offset + t.nbytes <= g.size
                    if d.size:
                        int(d.reshape(-1)[-1])  # touch the last byte
                    del d  # (inside the loop: a file may have no tensors)
            info = inspect_file(path)
            assert info["file_bytes"] == os.path.getsize(path)
        if not deep:
            return "ok"
        _load_and_run(path)
        _requantize(path)
        return "ok"
    except QtkError as exc:
        return _refused(path, exc)


def _load_and_run(path: str) -> None:
    import qtoolkit

    m = qtoolkit.load(path, threads=1)
    ids = m.tokenizer.encode("the cat and the hat", add_bos=False)[:6] or [0]
    assert all(0 <= i < m.n_vocab for i in ids), f"the tokenizer gives ids outside the {m.n_vocab}-token vocabulary"
    logits = m.forward(ids)
    assert logits.shape == (len(ids), m.n_vocab) and logits.dtype == np.float32
    m.tokenizer.decode(ids)


def _requantize(path: str) -> None:
    from qtoolkit.io.gguf_reader import GGUFFile
    from qtoolkit.converter.requantize import requantize

    out = os.path.join(os.path.dirname(path), "requantized-output.gguf")  # a name that does not contain the input's
    try:
        requantize(path, out, "Q4_0", allow_requantize=True, threads=1, force=True)
        try:
            with GGUFFile(out) as g:  # what we write must be valid, whatever we read
                assert g.tensors
        except QtkError as exc:
            raise AssertionError(f"re-quantizing {path} wrote an invalid file: {exc}") from None
    finally:
        if os.path.exists(out):
            os.remove(out)
        assert not os.path.exists(out + ".partial")


def gguf_model_case(rng) -> bytes:
    doc = gm.gguf_model_sample(rng)
    r = rng.random()
    if r < 0.45:
        return gm.write(gm.mutate_model_doc(doc, rng)).blob
    if r < 0.9:
        return gm.mutate_bytes(gm.write(doc), rng)
    return gm.mutate_bytes(gm.write(gm.mutate_model_doc(doc, rng)), rng)


# -- importance matrices (GGUF and legacy .dat) ------------------------------------------------

def exercise_imatrix(path) -> str:
    """Load, then ask for every entry's weights at the size it claims."""
    from qtoolkit.imatrix import load_imatrix

    path = str(path)
    try:
        with allocation_bound(path):
            im = load_imatrix(path)
        for name, w in im.entries.items():
            w = np.asarray(w)
            n_mat = w.shape[0] if w.ndim == 2 else 1
            n = w.size // max(1, n_mat)
            got = im.weights(name, n, n_mat)
            assert got.shape == (n_mat, n) and np.isfinite(got).all() and (got >= 0).all()
        return "ok"
    except QtkError as exc:
        return _refused(path, exc)


def gguf_imatrix_case(rng) -> bytes:
    doc = gm.imatrix_doc(rng)
    r = rng.random()
    if r < 0.5:
        return gm.write(gm.mutate_imatrix_doc(doc, rng)).blob
    return gm.mutate_bytes(gm.write(doc), rng)


def dat_case(rng) -> bytes:
    return gm.mutate_dat(rng)


# -- Hugging Face checkpoint folders -----------------------------------------------------------

def exercise_checkpoint(model_dir) -> str:
    """Convert the folder (the preset the case chose); the output must read back; then load and run
    both the output and the folder itself."""
    import qtoolkit
    from qtoolkit.io.gguf_reader import GGUFFile

    model_dir = str(model_dir)
    with open(os.path.join(model_dir, ".preset")) as f:
        preset = f.read()
    out = os.path.join(os.path.dirname(model_dir), "converted-output.gguf")
    try:
        try:
            qtoolkit.convert(model_dir, out, preset, threads=1, force=True)
        except QtkError as exc:
            return _refused(model_dir, exc)
        try:
            with GGUFFile(out) as g:
                assert g.tensors
        except QtkError as exc:
            raise AssertionError(f"converting {model_dir} wrote an invalid file: {exc}") from None
        for path in (out, model_dir):
            try:
                m = qtoolkit.load(path, threads=1)
                assert m.forward([1, 2]).shape == (2, m.n_vocab)
            except QtkError as exc:
                _refused(path, exc)
        return "ok"
    finally:
        if os.path.exists(out):
            os.remove(out)
        assert not os.path.exists(out + ".partial")


def checkpoint_case(rng):
    from tests.fuzz.hf_mutators import checkpoint_case as make

    return make(rng)


# name -> (case generator, exerciser, file suffix)
FORMATS = {
    "safetensors": (safetensors_case, exercise_safetensors, ".safetensors"),
    "gguf-model": (gguf_model_case, exercise_gguf_model, ".gguf"),
    "gguf-imatrix": (gguf_imatrix_case, exercise_imatrix, ".gguf"),
    "imatrix-dat": (dat_case, exercise_imatrix, ".dat"),
    "hf-checkpoint": (checkpoint_case, exercise_checkpoint, ""),  # a folder of files
}


def run_case(fmt: str, seed: int, directory: str) -> str:
    """One fuzz case: the mutated file for ``seed`` written into ``directory`` and exercised."""
    make, exercise, suffix = FORMATS[fmt]
    path = os.path.join(directory, f"case{suffix}")
    _write(make(np.random.default_rng(seed)), path)
    with time_limit():
        return exercise(path)


def _write(blob, path: str) -> None:
    """bytes -> a file; {name: bytes} -> a folder of files (replacing what was there)."""
    if isinstance(blob, dict):
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.makedirs(path)
        for name, data in blob.items():
            with open(os.path.join(path, name), "wb") as f:
                f.write(data)
        return
    with open(path, "wb") as f:
        f.write(blob)


def write_case(fmt: str, seed: int, path: str) -> None:
    """Write the file (or folder) of one case, to reproduce a failure outside the fuzzer."""
    make, _, _ = FORMATS[fmt]
    _write(make(np.random.default_rng(seed)), path)


@contextlib.contextmanager
def scratch_dir():
    with tempfile.TemporaryDirectory(prefix="qtk-fuzz-") as d:
        yield d
