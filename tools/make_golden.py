"""Make tests/data/ggml_golden.npz: ggml's own quantizer output on fixed inputs.

The compatibility tests compare qtoolkit's quantizers with these bytes on every machine, even
where llama-cpp-python is not installed. Needs the ``compat`` extra (llama-cpp-python, whose
libggml-base exports ggml_quantize_chunk). Run from the repository root:

    python tools/make_golden.py            # writes tests/data/ggml_golden.npz

The inputs are stored in the file too, so the tests never depend on a random generator.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from qtoolkit import QuantType as T
from qtoolkit import ggml_ref

TYPES = [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K,
         T.IQ4_NL, T.IQ4_XS, T.TQ1_0, T.TQ2_0]
# the codebook types; ggml asserts (kills the process) on the first three without importance weights
IQ_TYPES = [T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ3_XXS, T.IQ3_S, T.IQ1_S, T.IQ1_M]
IMATRIX_REQUIRED = {T.IQ2_XXS, T.IQ2_XS, T.IQ1_S}
# the activation formats have no ggml_quantize_chunk path; their reference is quantize_row_*_ref
ACTIVATION_TYPES = [T.Q8_0, T.Q8_1, T.Q8_K]


def inputs(rng):
    rows, n = 6, 512
    sets = {}
    sets["normal"] = rng.standard_normal((rows, n))
    sets["heavy"] = rng.standard_t(2.0, (rows, n))
    mixed = rng.standard_normal((rows, n)) * 10.0 ** rng.uniform(-6, 3, (rows, 1))
    mixed[0, :] = 0.0                       # an all-zero row
    mixed[1, :256] = 0.25                   # a constant super-block
    mixed[2, rng.random(n) < 0.85] = 0.0    # sparse
    mixed[3, :] = np.abs(mixed[3, :])       # all positive
    mixed[4, ::41] = 80.0                   # outliers
    sets["mixed"] = mixed
    sets["subnormal"] = rng.standard_normal((rows, n)) * 1e-41
    return {k: v.astype(np.float32) for k, v in sets.items()}


def iq_edge_inputs(rng):
    """Cases the IQ searches treat specially, with an importance matrix holding zeros."""
    rows, n = 8, 512
    x = rng.standard_normal((rows, n))
    x[0, 32:64] = 0.0                                        # an all-zero sub-block (IQ3_S slot quirk)
    x[0, 320:336] = 0.0                                      # an all-zero 16 (IQ2_XS/IQ2_S/IQ1_M)
    x[1] = rng.choice([-1.0, 0.0, 0.0, 0.5, 2.0], n)         # ties: the IQ1 sorts keep element order
    x[2] = np.repeat(rng.uniform(-3, 3, n // 32), 32)        # constant per 32
    x[3] = rng.standard_t(1.2, n).clip(-1e3, 1e3)            # heavy tails
    x[4] *= 3e3                                              # large, with finite fp16 scales
    x[5] *= 1e-6                                             # small
    x[6, :256] *= np.repeat(10.0 ** rng.uniform(-13, -6, 8), 32)  # around the groups' zero thresholds
    x[7, rng.random(n) < 0.9] = 0.0                          # sparse
    w = rng.uniform(0.0, 2.0, n) ** 3
    w[rng.random(n) < 0.25] = 0.0
    w[96:128] = 0.0                                          # a sub-block without importance
    return x.astype(np.float32), w.astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/data/ggml_golden.npz")
    ap.add_argument("--seed", type=int, default=20261129)
    args = ap.parse_args(argv)
    g = ggml_ref.load()
    if g is None:
        print("llama-cpp-python is not installed: pip install '.[compat]'", file=sys.stderr)
        return 1
    rng = np.random.default_rng(args.seed)
    data = {}
    for name, x in inputs(rng).items():
        imatrix = (rng.uniform(0.0, 2.0, x.shape[1]) ** 3).astype(np.float32)
        data[f"x/{name}"] = x
        data[f"imatrix/{name}"] = imatrix
        for t in TYPES + IQ_TYPES:
            if t not in IMATRIX_REQUIRED:
                data[f"q/{t.name}/{name}/plain"] = g.quantize_chunk(int(t), x, None)
            data[f"q/{t.name}/{name}/imatrix"] = g.quantize_chunk(int(t), x, imatrix)
        for t in ACTIVATION_TYPES:
            data[f"act/{t.name}/{name}"] = g.from_float_ref(int(t), x.ravel())
    x, imatrix = iq_edge_inputs(np.random.default_rng(args.seed + 1))
    data["x/iqedge"] = x
    data["imatrix/iqedge"] = imatrix
    for t in IQ_TYPES:
        if t not in IMATRIX_REQUIRED:
            data[f"q/{t.name}/iqedge/plain"] = g.quantize_chunk(int(t), x, None)
        data[f"q/{t.name}/iqedge/imatrix"] = g.quantize_chunk(int(t), x, imatrix)
    import llama_cpp

    data["meta/source"] = np.array(f"ggml from llama-cpp-python {llama_cpp.__version__}")
    np.savez_compressed(args.out, **data)
    print(f"wrote {args.out}: {len(data)} arrays")
    return 0


if __name__ == "__main__":
    sys.exit(main())
