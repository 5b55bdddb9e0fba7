"""``qtoolkit info``: version, the machine's kernels (instruction sets) and the types this build handles."""

from __future__ import annotations

import json
import os

from .._version import __version__
from ..quants import QuantType, type_info
from ..matmul import active_isa, available_isas, supported_isas


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def collect() -> dict:
    types = []
    for q in QuantType:
        info = type_info(q)
        types.append({
            "name": q.name, "id": int(q), "block_size": info.block_size, "type_size": info.type_size,
            "bits_per_weight": round(info.bits_per_weight, 4), "quantize": info.can_quantize,
            "dequantize": info.can_dequantize, "uses_imatrix": info.uses_imatrix,
            "requires_imatrix": info.requires_imatrix,
        })
    return {
        "version": __version__,
        "isa": {
            "active": active_isa(),
            "available": available_isas(),
            "supported": supported_isas(),
            "env_QTK_ISA": os.environ.get("QTK_ISA"),
        },
        "types": types,
    }


def run(args) -> int:
    data = collect()
    if args.json:
        print(json.dumps(data))
        return 0
    print(f"qtoolkit {data['version']}")
    isa = data["isa"]
    print(f"kernels: {isa['active']} (available: {', '.join(isa['available'])}; "
          f"CPU and build support: {', '.join(isa['supported'])}"
          + (f"; QTK_ISA={isa['env_QTK_ISA']}" if isa["env_QTK_ISA"] else "") + ")")
    print(f"{'type':8s} {'id':>3s} {'block':>5s} {'bytes':>5s} {'bpw':>7s}  quantize  dequantize  imatrix")
    for t in data["types"]:
        print(
            f"{t['name']:8s} {t['id']:3d} {t['block_size']:5d} {t['type_size']:5d} {t['bits_per_weight']:7.4f}  "
            f"{'yes' if t['quantize'] else '-':8s}  {'yes' if t['dequantize'] else '-':10s}  {'required' if t['requires_imatrix'] else 'yes' if t['uses_imatrix'] else '-'}"
        )
    return 0
