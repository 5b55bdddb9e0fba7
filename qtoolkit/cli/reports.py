"""Printing the reports of ``convert`` and ``quantize`` (the library returns them as dicts)."""

from __future__ import annotations


def print_allocation(a: dict) -> None:
    print(f"{'tensor':32s} {'type':8s} {'bytes':>10s} {'predicted KLD':>14s}   probes (type: measured KLD)")
    for t in a["tensors"]:
        if t["fixed"]:
            continue
        probes = ", ".join(f"{k} {v:.2e}" for k, v in t["probes"].items())
        print(f"{t['name']:32s} {t['type']:8s} {t['bytes']:10,d} {t['predicted_kld']:14.3e}   {probes}")
    fixed = [t for t in a["tensors"] if t["fixed"]]
    if fixed:
        print(f"  + {len(fixed)} fixed tensors (norms, routers, pinned): {sum(t['bytes'] for t in fixed):,} bytes")
    s = a["solver"]
    print(f"predicted KL divergence {a['predicted_kld']:.5f} (solver {s['method']}, lower bound {s['lower_bound']:.5f}); "
          f"file {a['file_bytes']:,} bytes, tensor data {a['tensor_bytes']:,} bytes, {a['bpw']:.3f} bits per weight; "
          f"target {a['budget_bytes']:,} bytes ({'file' if a['budget_kind'] == 'file' else 'tensor data'})")
    near = sorted(a["preset_predictions"].items(), key=lambda kv: abs(kv[1]["file_bytes"] - a["file_bytes"]))[:3]
    print("presets by the same prediction: " + "; ".join(
        f"{p} {v['file_bytes']:,} bytes, KLD {v['predicted_kld']:.5f}" for p, v in sorted(near, key=lambda kv: kv[1]["file_bytes"])))
    c = a["calibration"]
    sec = a["seconds"]
    if c.get("measured_kld") is not None:
        print(f"measured on the {c['chunks']} calibration chunks: KL divergence {c['measured_kld']:.5f} "
              f"(predicted {a['predicted_kld']:.5f})")
    for label, r in c.get("anchors", {}).items():
        if r.get("kld") is not None:
            print(f"anchor {label}: {r['bytes']:,} bytes, measured KLD {r['kld']:.5f}, sum of its tensors' predictions "
                  f"{r['predicted_kld']:.5f}" + (f" (predictions scaled by {c['scale']:.3f})" if r.get("scales") else ""))
    un = c.get("unreached_experts") or {}
    if un.get("tensors"):
        n = sum(len(t["experts"]) for t in un["tensors"])
        print(f"experts the calibration never reached: {n} in {len(un['tensors'])} stacks, predicted KLD share "
              f"{un['predicted_kld']:.2e} ({un['policy']})")
    print(f"calibration: {c['chunks']} chunks x {c['ctx']} tokens, {c['probes']} probes ({c.get('method', 'full')}); "
          f"{sec.get('total', 0):.1f} s (errors {sec.get('errors', 0):.1f} s, probes {sec.get('probes', 0):.1f} s)")
    run = c.get("run")
    if run:
        print(f"spent: {run['passes']} pass(es), {run['bytes_read'] / 1e9:.2f} GB read ({run['reads_of_checkpoint']} x the "
              f"checkpoint), probe streams {run['stream_compute_ratio']} x the calibration pass's compute, "
              f"peak memory {run['peak_rss_bytes'] / 1e9:.2f} GB")
    print(f"file type {a['base_preset']}" + (f"; recipe: {a['recipe_file']}" if a.get("recipe_file") else ""))


def print_report(report: dict, plan: bool) -> None:
    if plan:
        print(f"{'tensor':40s} {'dims (ggml order)':24s} {'type':8s} {'bytes':>14s}")
        for t in report["tensors"]:
            dims = "x".join(str(d) for d in t["ne"])
            print(f"{t['name']:40s} {dims:24s} {t['type']:8s} {t['bytes']:14,d}")
        print()
    for name, agg in sorted(report["by_type"].items(), key=lambda kv: -kv[1]["bytes"]):
        print(f"  {name:8s} {agg['tensors']:5d} tensors {agg['elements']:15,d} weights {agg['bytes']:15,d} bytes {agg['bpw']:7.3f} bpw")
    tot = report["totals"]
    line = f"total: {tot['tensors']} tensors, {tot['elements']:,} weights, {tot['bytes']:,} bytes of tensor data, {tot['bpw']:.3f} bits per weight"
    print(line)
    if report.get("file_bytes"):
        print(f"wrote {report['output']} ({report['file_bytes']:,} bytes) in {report['seconds']:.1f} s")
    if report.get("allocation"):
        print()
        print_allocation(report["allocation"])
    im = report.get("imatrix")
    if im and im.get("missing"):
        print(f"importance matrix: no data for {len(im['missing'])} tensors (quantized without): {', '.join(im['missing'][:5])}")
    if im and im.get("uncovered"):
        bad = im["uncovered"]
        n = sum(len(v["experts"]) for v in bad.values())
        filled = "/".join(sorted({v["filled"] for v in bad.values()}))
        first = "; ".join(f"{k}: {', '.join(map(str, v['experts']))}" for k, v in list(bad.items())[:3])
        print(f"importance matrix: {n} expert matrices in {len(bad)} tensors below {im['min_expert_tokens']} "
              f"calibration tokens got {filled} weights ({first}{' ...' if len(bad) > 3 else ''})")
