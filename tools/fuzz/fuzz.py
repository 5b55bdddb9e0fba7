"""Mutation fuzzing of qtoolkit's file readers, nightly-style.

    python tools/fuzz/fuzz.py --cases 20000 [--seed 0] [--format gguf-model ...]
    python tools/fuzz/fuzz.py --write-case gguf-model 1234 case.gguf    # reproduce one case

Formats: safetensors, gguf-model (tiny converted models: parsed, inspected, loaded, tokenized, run
and re-quantized), gguf-imatrix and imatrix-dat (importance matrices), hf-checkpoint (tiny Hugging
Face folders with one file mutated: converted, then the output and the folder loaded and run). Each case mutates a valid
sample (bit flips, truncation, extreme integers in counts, offsets, dims and lengths, swapped
types; for GGUF also valid containers with contradictory metadata, tokenizers and shapes) and
feeds it to the readers, which must parse it correctly or refuse it with a QtkError naming the
file, within an allocation bound (a multiple of the file size) and a time limit. Prints the cases
tried, how many were used and how many refused, and every failure with the seed that reproduces it.
Exit status 1 if anything failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import tracemalloc
import traceback
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from tests.fuzz.exercise import FORMATS, run_case, scratch_dir, write_case  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20000, help="cases per format")
    ap.add_argument("--seed", type=int, default=0, help="seeds are seed * 1000003 + i")
    ap.add_argument("--format", choices=sorted(FORMATS), action="append")
    ap.add_argument("--write-case", nargs=3, metavar=("FORMAT", "SEED", "PATH"),
                    help="write the file of one case and exit")
    args = ap.parse_args(argv)
    if args.write_case:
        fmt, seed, path = args.write_case
        write_case(fmt, int(seed), path)
        print(f"wrote {path}")
        return 0
    warnings.simplefilter("ignore")  # numpy overflow warnings of mutated weights: expected, not failures
    logging.disable(logging.WARNING)  # the library's warnings about odd-but-accepted inputs
    tracemalloc.start()  # the allocation bound of every case
    failures = 0
    with scratch_dir() as tmp:
        for fmt in args.format or list(FORMATS):
            counts = {"ok": 0, "refused": 0, "failed": 0}
            t0 = time.time()
            for i in range(args.cases):
                seed = args.seed * 1_000_003 + i
                try:
                    counts[run_case(fmt, seed, tmp)] += 1
                except Exception:
                    counts["failed"] += 1
                    failures += 1
                    print(f"FAIL {fmt} seed={seed} (reproduce: python tools/fuzz/fuzz.py --write-case {fmt} {seed} FILE):\n"
                          f"{traceback.format_exc()}", flush=True)
            dt = time.time() - t0
            print(f"{fmt}: {args.cases} cases in {dt:.1f} s: used {counts['ok']}, refused {counts['refused']}, "
                  f"failures {counts['failed']}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
