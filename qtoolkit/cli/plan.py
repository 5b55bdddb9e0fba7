"""``qtoolkit plan MODEL_DIR|config.json``: file size of every preset, parameters, RAM and a decode
speed ceiling, from the config alone (no weights are read); with ``--calib`` also the predicted
KL divergence against file size from one streamed calibration (``--curve out.png``)."""

from __future__ import annotations

import json

from ..units import human, parse_size


def add_arguments(parser) -> None:
    parser.add_argument("model", help="Hugging Face model folder or a config.json file (weights are not needed)")
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--type", metavar="PRESET", help="the preset reported in detail (default Q4_K_M)")
    g.add_argument("--target-bpw", type=float, metavar="B", help="report a bit-allocated file of B bits per weight instead")
    parser.add_argument("--ram", metavar="SIZE", help="memory of the machine, e.g. 128G (GiB) or 96GB (10^9 bytes)")
    parser.add_argument("--headroom", metavar="SIZE", help="memory kept free for the OS and compute buffers (default 5%% of --ram)")
    parser.add_argument("--bandwidth", type=float, metavar="GB/S", help="memory bandwidth in GB/s, for the decode-speed ceiling")
    parser.add_argument("--ctx", type=int, help="context length of the KV cache (default: the model's maximum)")
    parser.add_argument("--kv-type", default="F16", choices=["F32", "F16", "BF16", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0"],
                        help="KV cache type (llama.cpp's --cache-type-k/v; default F16)")
    parser.add_argument("--presets", help="comma-separated presets for the table (default: the common ones)")
    g2 = parser.add_argument_group("compare / imatrix / perplexity runs (the layer-major runner)")
    g2.add_argument("--disk", type=float, metavar="GB/S", help="disk read speed in GB/s: the time and memory of the runs")
    g2.add_argument("--eval-chunks", type=int, metavar="N", help="chunks of the runs (default 40)")
    g2.add_argument("--eval-ctx", type=int, default=512, metavar="N", help="tokens per chunk of the runs (default 512)")
    g2.add_argument("--threads", type=int, metavar="N", help="threads the runs compute on (default: all cores)")
    g2.add_argument("--gflops", type=float, metavar="G",
                    help="the machine's matmul speed in GFLOP/s (default: measured here on --threads)")
    g3 = parser.add_argument_group("predicted quality against size (one calibration of the model's weights; "
                                   "docs/allocation.md)")
    g3.add_argument("--calib", metavar="FILE", help="calibration text: run the allocator's streamed calibration once and "
                                                   "report the predicted KL divergence across the whole size range")
    g3.add_argument("--target-size", metavar="SIZE",
                    help="the size the allocator's anchor and the marked file are chosen for (default: --type's file)")
    g3.add_argument("--calib-chunks", type=int, default=16, metavar="N", help="chunks of calibration text (default 16)")
    g3.add_argument("--calib-ctx", type=int, default=512, metavar="N", help="tokens per calibration chunk (default 512)")
    g3.add_argument("--imatrix", metavar="FILE", help="importance matrix the quantizer will use")
    g3.add_argument("--anchors", default="auto", metavar="LIST",
                    help="files measured on every chunk (presets, recipe:TYPE, auto), marked on the curve")
    g3.add_argument("--curve", metavar="PNG", help="write the curve as a PNG (needs matplotlib: qtoolkit[report])")
    g3.add_argument("--curve-points", type=int, default=40, metavar="N", help="solver answers along the range (default 40)")
    g3.add_argument("--force", action="store_true", help="replace an existing --curve file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _gb(n: float) -> str:
    return human(n)


def run(args) -> int:
    from ..sizing import estimate

    ram = parse_size(args.ram, "--ram") if args.ram else None
    headroom = parse_size(args.headroom, "--headroom") if args.headroom else None
    presets = [p.strip() for p in args.presets.split(",") if p.strip()] if args.presets else None
    r = estimate(args.model, preset=args.type, target_bpw=args.target_bpw, ram=ram, bandwidth=args.bandwidth,
                 ctx=args.ctx, kv_type=args.kv_type, headroom=headroom, presets=presets, disk=args.disk,
                 eval_chunks=args.eval_chunks, eval_ctx=args.eval_ctx, threads=args.threads, gflops=args.gflops)
    if args.calib:
        r["quality"] = _quality(args, r, ram)
    if args.json:
        print(json.dumps(r))
        return 0
    moe = f", {r['n_expert']} experts (top-{r['n_expert_used']}) of width {r['n_ff']}" if r["n_expert"] else f", FFN width {r['n_ff']}"
    print(f"{r['model']}: {r['hf_architecture']} (GGUF {r['architecture']}), {r['n_layer']} layers, hidden {r['n_embd']}"
          f"{moe}, {r['n_head']}/{r['n_head_kv']} heads of {r['head_dim']}, vocabulary {r['n_vocab']:,}"
          f"{', tied embeddings' if r['tied_embeddings'] else ''}")
    share = 100.0 * r["params_active"] / r["params_total"]
    print(f"parameters: {r['params_total']:,} total, {r['params_active']:,} active per token ({share:.1f} %)")
    print(f"KV cache at ctx {r['ctx']:,} ({r['kv_type']}): {_gb(r['kv_bytes'])} ({human(r['kv_bytes'], True)})")
    if not r["header_exact"]:
        print("(no tokenizer.json beside the config: the metadata part of each file size is an estimate of a few MB)")
    print()
    head = f"{'preset':10s} {'bpw':>6s} {'file':>12s} {'file':>12s} {'RAM at ctx':>12s}"
    if r["ram"] is not None:
        head += f" {'fits':>5s}"
    if r["bandwidth_gb_s"] is not None:
        head += f" {'tok/s ceiling':>14s}"
    print(head)
    for p in r["presets"]:
        line = (f"{p['name'] + ('*' if p.get('needs_imatrix') else ''):10s} {p['bpw']:6.3f} {_gb(p['file_bytes']):>12s} "
                f"{human(p['file_bytes'], True):>12s} {_gb(p['ram_bytes']):>12s}")
        if r["ram"] is not None:
            line += f" {'yes' if p['fits'] else 'no':>5s}"
        if r["bandwidth_gb_s"] is not None:
            line += f" {p['tok_s_ceiling']:14.2f}"
        print(line)
    print("(* needs an importance matrix)")
    print()
    print(f"{r['selected']}: {r['file_bytes']:,} bytes ({_gb(r['file_bytes'])}, {human(r['file_bytes'], True)}), "
          f"tensor data {r['tensor_bytes']:,} bytes, {r['bpw']:.3f} bits per weight")
    print(f"  RAM for weights + KV cache at ctx {r['ctx']:,}: {_gb(r['ram_bytes'])} ({human(r['ram_bytes'], True)})")
    if r["bandwidth_gb_s"] is not None:
        print(f"  decode ceiling at {r['bandwidth_gb_s']:g} GB/s: {r['tok_s_ceiling']:.2f} tok/s "
              f"({_gb(r['bytes_per_token'])} of weights read per token); {r['tok_s_ceiling_full_ctx']:.2f} tok/s "
              f"with a full {r['ctx']:,}-token KV cache")
    if r["ram"] is not None:
        line = f"  with {human(r['ram'], True)} of RAM ({human(r['headroom'], True)} kept free): {'fits' if r['fits'] else 'does not fit'}"
        if r["max_bpw"] < 16:
            line += (f"; the largest file that fits is {_gb(r['max_file_bytes'])} = {r['max_bpw']:.2f} bits per weight "
                     f"(qtoolkit convert --target-size {r['max_file_bytes'] // 10**7 / 100:.2f}GB)")
        print(line)
    if "runs" in r:
        print_runs(r["runs"], r["selected"])
    if "quality" in r:
        print_quality(r["quality"])
    return 0


def _quality(args, r: dict, ram) -> dict:
    """One streamed calibration, then the solver at many sizes (alloc/curve.py)."""
    import os

    from ..alloc.allocate import allocate
    from ..alloc.budget import parse_anchors, read_text
    from ..alloc.curve import curve_table, plot_curve
    from ..errors import QtkValueError

    if not os.path.isdir(args.model):
        raise QtkValueError(f"{args.model}: --calib needs the model folder with its weights, not a config.json")
    size = parse_size(args.target_size, "--target-size") if args.target_size else int(r["file_bytes"])
    if args.curve:   # refuse an existing file before the calibration, not after
        from ..io.output import check_output

        check_output(args.curve, args.force, [args.model, args.calib, args.imatrix])
    a = allocate(args.model, read_text(args.calib), target_size=size, imatrix=args.imatrix,
                 calib_chunks=args.calib_chunks, calib_ctx=args.calib_ctx, anchors=parse_anchors(args.anchors),
                 threads=args.threads)
    table = curve_table(a, args.curve_points)
    if args.curve:
        plot_curve(table, args.curve, f"{os.path.basename(os.path.normpath(args.model))}: predicted KL divergence "
                   "against file size", ram=ram, force=args.force, inputs=[args.model, args.calib, args.imatrix])
        table["curve_file"] = args.curve
    return table


def print_quality(q: dict) -> None:
    c = q["calibration"]
    print()
    print(f"predicted KL divergence against size ({c['chunks']} calibration chunks of {c['ctx']} tokens):")
    print(f"  {'file':>12s} {'bpw':>7s} {'KLD':>10s}")
    for p in q["curve"]:
        print(f"  {_gb(p['file_bytes']):>12s} {p['bpw']:7.3f} {p['predicted_kld']:10.5f}")
    for p in q["presets"]:
        print(f"  preset {p['name']:8s} {_gb(p['file_bytes']):>12s} predicted {p['predicted_kld']:.5f}")
    for p in q["anchors"]:
        print(f"  anchor {p['name']:8s} {_gb(p['file_bytes']):>12s} measured {p['measured_kld']:.5f}")
    a = q["allocated"]
    meas = f", measured {a['measured_kld']:.5f}" if a.get("measured_kld") is not None else ""
    print(f"  allocated   {_gb(a['file_bytes']):>12s} predicted {a['predicted_kld']:.5f}{meas}")
    if q.get("curve_file"):
        print(f"curve: {q['curve_file']}")


def print_runs(runs: dict, quant: str) -> None:
    disk = f"{runs['disk_gb_s']:g} GB/s disk" if runs["disk_gb_s"] else "no --disk given: reading not timed"
    if runs["gflops"]:
        how = f"compute at {runs['gflops']:g} GFLOP/s (given)"
    else:
        how = (f"compute measured here on {runs['threads'] or 'all'} threads with the model's widths "
               f"({runs['quant_kernel']} for {quant})")
    print()
    print(f"layer-major runs, {runs['chunks']} chunks of {runs['ctx']} tokens ({disk}; {how}):")
    for key, what in (("compare", f"compare checkpoint vs {quant}"), ("imatrix", "imatrix on the checkpoint"),
                      ("perplexity", f"perplexity of {quant}")):
        e = runs[key]
        read = f", reading {e['read_seconds'] / 60:.1f} min" if e["read_seconds"] is not None else ""
        spill = f" (hidden states {_gb(e['hidden_bytes'])} spilled to disk)" if e["hidden_spilled"] else ""
        print(f"  {what:32s} peak memory {_gb(e['peak_memory_bytes']):>10s}{spill}, reads {_gb(e['bytes_read'])}"
              f"{read}, computing {e['compute_seconds'] / 60:.1f} min: at most {e['seconds'] / 3600:.2f} h")
