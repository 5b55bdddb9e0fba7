"""Mutation fuzzing of qtoolkit's file readers, nightly-style.

    python tools/fuzz.py --cases 20000 [--seed 0] [--format safetensors]

Each case mutates a valid sample file (bit flips, truncation, extreme integers in counts, offsets,
dims and lengths, swapped types) and feeds it to the reader, which must parse it correctly or
refuse it with a QtkError naming the file. Prints the cases tried, how many parsed and how many
were refused, and every failure (an unexpected exception) with the seed that reproduces it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests.fuzz.mutators import mutate_safetensors, safetensors_sample  # noqa: E402
from tests.fuzz.test_fuzz_readers import exercise_safetensors  # noqa: E402

FORMATS = {
    "safetensors": (safetensors_sample, mutate_safetensors, exercise_safetensors, ".safetensors"),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", choices=sorted(FORMATS), action="append")
    args = ap.parse_args(argv)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.format or sorted(FORMATS):
            make, mutate, exercise, suffix = FORMATS[fmt]
            counts = {"ok": 0, "refused": 0}
            t0 = time.time()
            path = os.path.join(tmp, "case" + suffix)
            for i in range(args.cases):
                seed = args.seed * 1_000_003 + i
                rng = np.random.default_rng(seed)
                blob = mutate(make(rng), rng)
                with open(path, "wb") as f:
                    f.write(blob)
                try:
                    counts[exercise(path)] += 1
                except Exception:
                    failures += 1
                    print(f"FAIL {fmt} seed={seed}:\n{traceback.format_exc()}")
            dt = time.time() - t0
            print(f"{fmt}: {args.cases} cases in {dt:.1f} s: parsed {counts['ok']}, refused {counts['refused']}, "
                  f"failures {args.cases - counts['ok'] - counts['refused']}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
