"""A GGUF importance matrix from the bit allocator's calibration pass (a stand-in for
``qtoolkit imatrix`` until that command is on main; same statistics as llama-imatrix).

    python tools/calib_imatrix.py MODEL_DIR --file CALIB.txt -o IMATRIX.gguf [--chunks 16] [--ctx 512]

Per ``blk.*`` weight: ``NAME.in_sum2`` (raw sums of squared inputs per column, one row per expert
for stacked experts) and ``NAME.counts`` (tokens, or routed token slots per expert), plus the keys
``imatrix.datasets``, ``imatrix.chunk_count`` and ``imatrix.chunk_size`` (shared/docs/ggml-formats.md
§5.2). The model runs in float32 on qtoolkit's inference loop.
"""

from __future__ import annotations

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--file", required=True, help="calibration text")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--chunks", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=512)
    args = ap.parse_args(argv)

    import gguf
    import numpy as np

    import qtoolkit
    from qtoolkit.alloc import read_text
    from qtoolkit.alloc.calibrate import Calibration

    cal = Calibration(qtoolkit.load(args.model), read_text(args.file), ctx=args.ctx, chunks=args.chunks)
    w = gguf.GGUFWriter(args.output, arch="", endianess=gguf.GGUFEndian.LITTLE)
    w.kv_data[0].pop("general.architecture", None)   # an imatrix file has no architecture
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", [os.path.basename(args.file)])
    w.add_uint32("imatrix.chunk_count", len(cal.chunks))
    w.add_uint32("imatrix.chunk_size", args.ctx)
    for name, (sums, counts) in sorted(cal.imatrix_sums().items()):
        w.add_tensor(name + ".in_sum2", sums.astype(np.float32))
        w.add_tensor(name + ".counts", counts.astype(np.float32).reshape(-1, 1))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {args.output}: {len(cal.imatrix_sums())} entries from {len(cal.chunks)} chunks of {args.ctx} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
