"""Byte identity with the real llama-quantize tool, given an importance matrix made by qtoolkit.

    bash tools/check/build_llama_quantize.sh LLAMA_CPP_SRC            # once: .bench/llama-quantize
    python tools/quality/imatrix_identity.py [--model tests/data/tiny-moe] [--imatrix FILE | --calibrate TEXT]
        [--presets Q4_K_M,IQ2_XXS,...] [--exe .bench/llama-quantize] [--workdir DIR]

For every preset: ``llama-quantize --imatrix FILE MODEL-F32.gguf OUT PRESET`` (the F32 file written
by ``qtoolkit convert``), then ``qtoolkit convert MODEL --type PRESET --imatrix FILE``, and the two
files compared tensor by tensor (name, type, bytes). Prints one line per preset and the totals.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

PRESETS = ["Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K_M", "Q5_0", "Q5_1",
           "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS", "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M",
           "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(REPO, "tests", "data", "tiny-moe"))
    ap.add_argument("--imatrix", default=None)
    ap.add_argument("--calibrate", default=os.path.join(REPO, "tests", "data", "calibration.txt"))
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--exe", default=os.path.join(REPO, ".bench", "llama-quantize"))
    ap.add_argument("--workdir", default=os.path.join(REPO, ".bench", "identity"))
    args = ap.parse_args(argv)

    import numpy as np

    import qtoolkit
    from qtoolkit.io.gguf_reader import GGUFFile

    if not os.path.isfile(args.exe):
        raise SystemExit(f"error: {args.exe} not found (bash tools/check/build_llama_quantize.sh LLAMA_CPP_SRC)")
    os.makedirs(args.workdir, exist_ok=True)
    im = args.imatrix
    if im is None:
        im = os.path.join(args.workdir, "imatrix.gguf")
        qtoolkit.compute_imatrix(args.model, file=args.calibrate, output=im, force=True)
    f32 = os.path.join(args.workdir, "f32.gguf")
    qtoolkit.convert(args.model, f32, "F32", force=True)
    total = same = 0
    for preset in args.presets.split(","):
        ref, ours = os.path.join(args.workdir, f"lq-{preset}.gguf"), os.path.join(args.workdir, f"q-{preset}.gguf")
        proc = subprocess.run([args.exe, "--imatrix", im, f32, ref, preset, "2"], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{preset:8s} llama-quantize failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-300:]}")
            continue
        loaded = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "loaded" in ln and "importance" in ln]
        qtoolkit.convert(args.model, ours, preset, imatrix=im, force=True)
        a, b = GGUFFile(ours), GGUFFile(ref)
        n = len(a.tensors)
        ok = sum(1 for x, y in zip(a.tensors, b.tensors)
                 if x.name == y.name and x.type_id == y.type_id and np.array_equal(a.data(x), b.data(y)))
        a.close()
        b.close()
        total += n
        same += ok
        print(f"{preset:8s} {ok}/{n} tensors identical   [{loaded[0].strip() if loaded else 'no load line'}]")
    print(f"total: {same} of {total} tensors identical")
    return 0 if same == total else 1


if __name__ == "__main__":
    raise SystemExit(main())
