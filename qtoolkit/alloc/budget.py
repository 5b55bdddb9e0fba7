"""A conversion to a size or bits-per-weight target (``qtoolkit convert --target-size /
--target-bpw``): the allocator chooses every tensor's type, then the converter writes exactly
that file.

One planning pass: the model is opened and planned once (:func:`~.allocate.base_plan`), the
allocation works on that plan, and the plan is retyped with the chosen types and written
(:func:`qtoolkit.converter.write_plan`). The recipe file (``REGEX=TYPE`` lines, checked to
reproduce the same types through ``--tensor-type-file``) is written beside the output.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, Optional

from ..converter.convert import run_plan
from ..converter.plan import ConvertOptions
from ..errors import QtkValueError
from ..io.output import check_output
from ..model.chunks import read_file
from ..units import parse_size
from .allocate import AllocOptions, Allocation, Target, allocate_plan, base_plan, check_request
from .cost import allocation_cost
from .candidates import parse_types
from .recipe import write_recipe


def recipe_path(out_path: str) -> str:
    """``OUT.gguf`` -> ``OUT.recipe``: where an allocation's recipe goes by default."""
    base = out_path[:-5] if out_path.lower().endswith(".gguf") else out_path
    return base + ".recipe"


def parse_anchors(anchors: Any) -> tuple:
    """``"auto,recipe:Q2_K"`` or a sequence of such names -> a tuple of anchor names (empty: none)."""
    if anchors is None:
        return ()
    items = anchors.split(",") if isinstance(anchors, str) else list(anchors)
    return tuple(a.strip() for a in items if a.strip() and a.strip().lower() != "none")


def read_text(path: str) -> str:
    """A calibration text file."""
    return read_file(path, "calibration text")


def convert_to_budget(model_dir: str, out_path: Optional[str], qtype: Optional[str] = None, *,
                      target_size: Any = None, target_bpw: Optional[float] = None, calib: Optional[str] = None,
                      calib_chunks: Optional[int] = 16, calib_ctx: int = 512, recipe: Optional[str] = None,
                      alloc_types: Any = None, alloc_progress=None, calib_reference: Optional[str] = None,
                      max_probes: int = 256, probes: str = AllocOptions.probes,
                      probe_chunks: Optional[int] = None, compute_budget: float = AllocOptions.compute_budget,
                      anchors: Any = AllocOptions.anchors, max_memory: Any = None, spill_dir: Optional[str] = None,
                      verify: bool = True, **options) -> Dict[str, Any]:
    """Convert ``model_dir`` to a GGUF file of at most ``target_size`` bytes (an int, or ``"85G"``
    / ``"91GB"``) or ``target_bpw`` bits per weight of tensor data, every tensor's type chosen from
    a calibration run on ``calib`` (a text file, not the text you evaluate on). ``qtype``: the
    preset written as the file type (default: the preset nearest in size). ``recipe``: where to
    write the recipe (default ``OUT.recipe``); ``alloc_types``: the types to choose from;
    ``calib_reference``: a GGUF of the same model to calibrate against; ``probes``, ``probe_chunks``,
    ``compute_budget``, ``anchors``, ``verify``, ``max_memory``, ``spill_dir``: as
    :class:`AllocOptions` (``anchors`` also as a comma-separated string); ``options``: those of
    :func:`qtoolkit.converter.convert`. Returns the converter's report with an ``allocation`` entry;
    with ``dry_run=True`` only what the allocation would cost (``allocation_cost``, alloc/cost.py),
    nothing calibrated."""
    opts = ConvertOptions(qtype=qtype, **options)
    if not opts.dry_run:
        if not out_path:
            raise QtkValueError("an output path is needed (or dry_run=True)")
        check_output(out_path, opts.force, [model_dir, opts.imatrix, calib, calib_reference, *opts.inputs])
    inputs = [model_dir, opts.imatrix, calib, calib_reference, *opts.inputs]
    if recipe is not None:
        if out_path and os.path.abspath(recipe) == os.path.abspath(out_path):
            raise QtkValueError(f"{recipe}: the recipe and the output must be two files")
        check_output(recipe, opts.force, inputs)
    elif out_path and not opts.dry_run:
        check_output(recipe_path(out_path), opts.force, inputs)
    if target_size is not None and target_bpw is not None:
        raise QtkValueError("give --target-size or --target-bpw, not both")
    if opts.pure:
        raise QtkValueError("--pure and a target size do not go together: the allocator chooses every type")
    if not calib:
        raise QtkValueError("a bit allocation needs a calibration text (--calib FILE); it must not be the text you "
                            "evaluate on")
    t0 = time.perf_counter()
    size = parse_size(target_size, "--target-size") if target_size is not None else None
    target = Target(size, target_bpw)
    aopts = AllocOptions(types=parse_types(alloc_types), base_preset=qtype, tensor_types=opts.tensor_types,
                         output_tensor_type=opts.output_tensor_type, token_embedding_type=opts.token_embedding_type,
                         calib_ctx=calib_ctx, calib_chunks=calib_chunks, reference=calib_reference,
                         max_probes=max_probes, threads=opts.threads, progress=alloc_progress, probes=probes,
                         probe_chunks=probe_chunks, compute_budget=compute_budget,
                         anchors=parse_anchors(anchors),
                         max_memory=parse_size(max_memory, "--max-memory") if max_memory is not None else None,
                         spill_dir=spill_dir, verify=verify)
    check_request(target, aopts)
    text = read_text(calib)
    base = base_plan(model_dir, opts.imatrix, opts.tokenizer_pre, opts.uncovered_experts, opts.min_expert_tokens)
    try:
        if opts.dry_run:
            return {"dry_run": True, "allocation_cost": allocation_cost(base, text, target, aopts)}
        alloc = allocate_plan(base, text, target, aopts)
        path = recipe or (recipe_path(out_path) if out_path and not opts.dry_run else None)
        if path:
            _write_recipe(path, alloc, model_dir, size, target_bpw, calib, opts.imatrix, opts.force, inputs)
        plan = base.retyped(alloc.types, alloc.base_preset)
        return run_plan(plan, out_path, opts, t0, {"allocation": {**alloc.report(), "recipe_file": path}},
                        [calib, calib_reference])
    finally:
        base.close()


def _write_recipe(path: str, alloc: Allocation, model_dir: str, size: Optional[int], bpw: Optional[float],
                  calib: str, imatrix: Optional[str], force: bool, inputs) -> None:
    target = f"{size:,} bytes (whole file)" if size is not None else f"{bpw:g} bits per weight"
    im = f" --imatrix {os.path.basename(imatrix)}" if imatrix else ""
    write_recipe(path, alloc.types_quantized(), header=[
        "qtoolkit bit-allocation recipe: REGEX=TYPE lines for --tensor-type-file",
        f"model: {os.path.basename(os.path.normpath(model_dir))}",
        f"base-preset: {alloc.base_preset}",
        f"target: {target}",
        f"file-bytes: {alloc.file_bytes}",
        f"tensor-bytes: {alloc.tensor_bytes}",
        f"bpw: {alloc.bpw:.4f}",
        f"predicted-kld: {alloc.predicted_kld:.6g}",
        *([f"measured-kld: {alloc.calibration['measured_kld']:.6g} (the file on the calibration chunks)"]
          if alloc.calibration.get("measured_kld") is not None else []),
        f"calibration: {os.path.basename(calib)}, {alloc.calibration['chunks']} chunks of {alloc.calibration['ctx']} tokens",
        f"imatrix: {os.path.basename(imatrix) if imatrix else 'none'}",
        f"reproduce: qtoolkit convert MODEL -o OUT.gguf --type {alloc.base_preset} --tensor-type-file "
        f"{os.path.basename(path)}{im}",
    ], force=force, inputs=inputs)
