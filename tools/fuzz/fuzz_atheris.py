"""Coverage-guided fuzzing of qtoolkit's file readers with atheris (libFuzzer for Python).

    pip install atheris
    python tools/fuzz/fuzz_atheris.py gguf CORPUS_DIR -max_total_time=600
    python tools/fuzz/fuzz_atheris.py gguf-model CORPUS_DIR -runs=20000     # + load, run, re-quantize
    python tools/fuzz/fuzz_atheris.py safetensors CORPUS_DIR ...
    python tools/fuzz/fuzz_atheris.py imatrix CORPUS_DIR ...                 # GGUF and legacy .dat

An empty CORPUS_DIR is seeded with valid sample files (tiny converted models, importance matrices,
safetensors files). Each input is written to a file and given to the same exerciser as
tools/fuzz/fuzz.py (tests/fuzz/exercise.py): the reader must use the file or refuse it with a QtkError
naming it, within the allocation bound; anything else is reported by libFuzzer as a crash, with the
input saved as crash-<sha1> (replay: python tools/fuzz/fuzz_atheris.py TARGET crash-<sha1>).
The qtoolkit modules are instrumented for coverage; options after CORPUS_DIR go to libFuzzer.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

TARGETS = ("gguf", "gguf-model", "safetensors", "imatrix")


def seed_corpus(target: str, directory: str) -> None:
    from tests.fuzz import gguf_mutators as gm
    from tests.fuzz.mutators import safetensors_sample

    rng = np.random.default_rng(0)
    blobs = []
    if target in ("gguf", "gguf-model"):
        blobs = [gm.model_file(v) for v in range(len(gm.MODEL_VARIANTS))]
    elif target == "safetensors":
        blobs = [safetensors_sample(rng) for _ in range(8)]
    else:
        blobs = [gm.write(gm.imatrix_doc(rng)).blob for _ in range(4)] + [gm.dat_sample(rng).blob for _ in range(4)]
    for i, b in enumerate(blobs):
        with open(os.path.join(directory, f"seed-{i}"), "wb") as f:
            f.write(b)


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[1] not in TARGETS:
        print(__doc__)
        return 2
    target = sys.argv.pop(1)
    import atheris

    with atheris.instrument_imports(include=["qtoolkit"]):
        import qtoolkit.cli.inspect  # noqa: F401
        import qtoolkit.io.gguf_reader  # noqa: F401
        import qtoolkit.imatrix  # noqa: F401
        import qtoolkit.model.loader  # noqa: F401
        import qtoolkit.model.tokenizer  # noqa: F401
        import qtoolkit.converter.requantize  # noqa: F401
        import qtoolkit.io.safetensors_reader  # noqa: F401
    from tests.fuzz import exercise as ex

    corpus = sys.argv[1]
    if os.path.isdir(corpus) and not os.listdir(corpus):
        seed_corpus(target, corpus)
    warnings.simplefilter("ignore")
    scratch = tempfile.mkdtemp(prefix="qtk-atheris-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    if target == "imatrix":  # load_imatrix tells GGUF from .dat by the magic
        run, suffix = ex.exercise_imatrix, ".imatrix"
    elif target == "safetensors":
        run, suffix = ex.exercise_safetensors, ".safetensors"
    else:
        deep = target == "gguf-model"

        def run(path):
            return ex.exercise_gguf_model(path, deep=deep)
        suffix = ".gguf"
    path = os.path.join(scratch, "input" + suffix)

    def one_input(data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data)
        run(path)  # hangs: libFuzzer's -timeout

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
