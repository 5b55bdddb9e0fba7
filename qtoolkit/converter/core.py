"""``qtoolkit.convert``: a Hugging Face checkpoint to a llama.cpp GGUF file in one streaming pass.

1. :func:`build_plan` reads ``config.json``, the safetensors headers and the tokenizer, picks the
   architecture, checks every checkpoint tensor's name, dtype and shape against what the config
   implies, and chooses every output tensor's type with :func:`qtoolkit.presets.plan_types`.
   Nothing but headers is read, so ``--dry-run`` is this step plus a report.
2. :func:`convert` writes the plan: tensors in llama.cpp's file order, each produced matrix by
   matrix (one expert at a time for stacked experts, in row slabs for big matrices) from the
   memory-mapped checkpoint: widen to float32, check for NaN/Inf, quantize on a thread pool,
   write, release the source pages.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import QtkFormatError, QtkNotImplementedError, QtkValueError
from ..formats import QuantType, dequantize, quantize, resolve, type_info
from ..gguf_stream import Progress, TensorOut, check_metadata, check_output, write_gguf
from ..pipeline import quantize_stream
from ..presets import ModelInfo, PlanOptions, Preset, TensorSpec, file_order, get_preset, plan_types, requires_imatrix
from ..safetensors_io import FLOAT_DTYPES, Checkpoint
from .archs import get_arch
from .archs.base import OutTensor
from .archs.base import OutTensor, Part, permute_rows
from .hfconfig import HFConfig
from .tokenizer import load_vocab

log = logging.getLogger(__name__)

QUANTIZATION_VERSION = 2
SLAB_ELEMENTS = 1 << 20  # rows are converted and quantized in slabs of about this many weights (4 MB of f32)
DEFAULT_UNCOVERED_POLICY = "uniform"  # experts calibration never reached: llama-quantize's all-ones weights


@dataclass
class ConvertOptions:
    qtype: Optional[str] = "Q4_K_M"
    imatrix: Optional[str] = None
    uncovered_experts: str = DEFAULT_UNCOVERED_POLICY
    min_expert_tokens: int = 1
    tensor_types: Sequence[Tuple[str, Any]] = ()
    output_tensor_type: Optional[Any] = None
    token_embedding_type: Optional[Any] = None
    pure: bool = False
    dry_run: bool = False
    threads: Optional[int] = None
    force: bool = False
    tokenizer_pre: Optional[str] = None
    progress: Optional[Progress] = None
    # budgeted bit allocation (qtoolkit.alloc): a target and a calibration text
    target_size: Optional[Any] = None      # bytes of the whole file (int, or "85G" / "91GB")
    target_bpw: Optional[float] = None     # bits per weight of the tensor data
    calib: Optional[str] = None            # calibration text file
    calib_chunks: Optional[int] = 16
    calib_ctx: int = 512
    recipe: Optional[str] = None           # where to write the recipe (default: next to the output)
    alloc_types: Optional[Any] = None      # the types to choose from (default: all llama.cpp runs)
    alloc_progress: Optional[Any] = None   # callback(phase, done, total)
    calib_reference: Optional[str] = None  # a GGUF of the same model to calibrate against (big models)
    max_probes: int = 256


@dataclass
class PlannedTensor:
    out: OutTensor
    type: QuantType
    imatrix: Optional[np.ndarray] = None   # (n_mat, ne0) weights for the quantizer

    @property
    def nbytes(self) -> int:
        info = type_info(self.type)
        return self.out.n_elements // info.block_size * info.type_size


@dataclass
class Plan:
    model_dir: str
    arch: Any
    preset: Preset
    tensors: List[PlannedTensor]
    metadata: List[Tuple[str, object, int, Optional[int]]]
    checkpoint: Checkpoint
    vocab: Any
    imatrix_info: Dict[str, Any] = field(default_factory=dict)


def _as_type(value, what: str) -> QuantType:
    q = resolve(value)
    if not isinstance(q, QuantType):
        raise QtkValueError(f"{what}: {value!r} is not a ggml type")
    if not _clib_can(q):
        raise QtkNotImplementedError(f"{what}: qtoolkit cannot produce {q.name} yet")
    return q


def parse_tensor_types(items: Sequence[Union[str, Tuple[str, Any]]]) -> List[Tuple[str, QuantType]]:
    """``["attn_v=q8_0", ...]`` or ``[(regex, type), ...]`` -> [(regex, QuantType)], regexes checked."""
    import re

    out = []
    for item in items or ():
        if isinstance(item, str):
            if "=" not in item:
                raise QtkValueError(f"--tensor-type {item!r}: expected REGEX=TYPE, e.g. 'attn_v=q8_0'")
            pat, typ = item.rsplit("=", 1)
        else:
            pat, typ = item
        try:
            re.compile(pat)
        except re.error as exc:
            raise QtkValueError(f"--tensor-type {pat!r}: not a valid regular expression: {exc}") from None
        out.append((pat, _as_type(typ, f"--tensor-type {pat}")))
    return out


# -- planning --------------------------------------------------------------------------------


def build_plan(model_dir: str, opts: ConvertOptions) -> Plan:
    preset = get_preset(opts.qtype)
    cfg = HFConfig.load(model_dir)
    arch = get_arch(cfg)
    ckpt = Checkpoint(model_dir)
    shapes = ckpt.shapes
    ap = arch.plan(shapes)

    # every tensor the architecture needs, with the dtype and shape config.json implies
    for name, shape in ap.expected.items():
        if name not in shapes:
            raise QtkFormatError(f"{model_dir}: the checkpoint has no tensor {name!r}, which {cfg.architecture} needs")
        info = ckpt.info(name)
        if info.dtype not in FLOAT_DTYPES:
            if info.dtype.startswith("F8"):
                raise QtkNotImplementedError(
                    f"{info_path(ckpt, name)}: tensor {name!r} is {info.dtype} (FP8); FP8 checkpoints are not yet supported"
                )
            raise QtkNotImplementedError(
                f"{info_path(ckpt, name)}: tensor {name!r} has dtype {info.dtype}; only F32, F16 and BF16 weights are supported"
            )
        if tuple(info.shape) != tuple(shape):
            raise QtkFormatError(
                f"{info_path(ckpt, name)}: tensor {name!r} has shape {list(info.shape)}, but {cfg.path} implies "
                f"{list(shape)} (hidden_size={arch.n_embd}, heads={arch.n_head}/{arch.n_head_kv}, head_dim={arch.head_dim}, "
                f"vocab_size={arch.n_vocab})"
            )
    unused = sorted(set(shapes) - set(ap.expected) - set(ap.ignored))
    if unused:
        more = f" and {len(unused) - 5} more" if len(unused) > 5 else ""
        raise QtkFormatError(
            f"{model_dir}: checkpoint tensors that {cfg.architecture} does not use: {', '.join(unused[:5])}{more} "
            "(a different architecture, or layers beyond num_hidden_layers?)"
        )

    vocab = load_vocab(model_dir, arch.n_vocab, opts.tokenizer_pre, cfg.raw)

    # types
    popts = PlanOptions(
        output_tensor_type=_as_type(opts.output_tensor_type, "--output-tensor-type") if opts.output_tensor_type else None,
        token_embedding_type=_as_type(opts.token_embedding_type, "--token-embedding-type") if opts.token_embedding_type else None,
        tensor_types=parse_tensor_types(opts.tensor_types),
        pure=opts.pure,
        has_imatrix=opts.imatrix is not None,
    )
    if popts.tensor_types and not type_info(preset.default).is_quantized:
        log.warning("--tensor-type is ignored with the %s preset (as llama-quantize does)", preset.name)
    by_name = {t.name: t for t in ap.tensors}
    types = tensor_types(arch, ap.tensors, preset, popts)
    for name, t in types.items():
        if not _clib_can(t):
            raise QtkNotImplementedError(f"tensor {name}: qtoolkit cannot produce {t.name} yet")

    im = None
    iminfo: Dict[str, Any] = {}
    if opts.imatrix:
        from ..imatrix import load_imatrix

        im = load_imatrix(opts.imatrix)
        iminfo = imatrix_report(opts.imatrix, im, opts)

    planned: List[PlannedTensor] = []
    for name in file_order(types):
        t = types[name]
        out = by_name[name]
        pt = PlannedTensor(out, t)
        info = type_info(t)
        if info.is_quantized and len(out.shape) >= 2:
            n_mat = out.shape[0] if len(out.shape) == 3 else 1
            pt.imatrix = tensor_importance(im, iminfo, name, t, out.shape[-1], n_mat, preset, opts)
        planned.append(pt)
    check_coverage(iminfo, opts)

    metadata = _metadata(model_dir, cfg, arch, preset, vocab, iminfo, im)
    check_metadata(metadata, f"{cfg.path} (or the tokenizer files)")
    return Plan(model_dir, arch, preset, planned, metadata, ckpt, vocab, iminfo)


def model_info(arch) -> ModelInfo:
    """The hyper-parameters the mixture rules look at, from an architecture object."""
    return ModelInfo(arch.gguf_arch, arch.n_layer, arch.n_head, arch.n_head_kv, arch.n_expert)


def tensor_types(arch, tensors: Sequence[OutTensor], preset, popts: Optional[PlanOptions] = None) -> Dict[str, QuantType]:
    """Every output tensor's type under ``preset`` (and overrides): the one place where the converter,
    ``qtoolkit plan`` and the bit allocator turn shapes into types. Source tensors are F32 as far as
    the rules are concerned (what "keep the input type" means for norms and routers)."""
    specs = [TensorSpec(t.name, t.ne, QuantType.F32) for t in tensors]
    return plan_types(specs, preset, model_info(arch), popts)


def imatrix_report(path: str, im, opts) -> Dict[str, Any]:
    """The ``imatrix`` part of a convert/quantize report, filled in by :func:`tensor_importance`."""
    return {"file": path, "format": im.format, "entries": len(im.entries), "used": 0, "missing": [],
            "zero_count_experts": {k: len(v) for k, v in im.zero_count_experts.items()},
            "policy": opts.uncovered_experts, "min_expert_tokens": opts.min_expert_tokens, "uncovered": {}}


def tensor_importance(im, iminfo: Dict[str, Any], name: str, t: QuantType, n: int, n_mat: int, preset,
                      opts) -> Optional[np.ndarray]:
    """The ``(n_mat, n)`` importance weights for tensor ``name`` quantized to ``t`` (None: none),
    with experts below ``opts.min_expert_tokens`` handled by ``opts.uncovered_experts``; refuses,
    naming the tensor, a type that cannot be made without importance data (llama-quantize's rule
    for the low-bit presets, and ggml's own for IQ2_XXS, IQ2_XS and IQ1_S whatever the tensor)."""
    from ..errors import QtkImatrixRequiredError

    tw = None
    if im is not None:
        try:
            tw = im.tensor_weights(name, n, n_mat, policy=opts.uncovered_experts, min_tokens=opts.min_expert_tokens)
        except QtkFormatError:
            if name != "token_embd.weight":
                raise
            log.warning("importance entry for token_embd.weight has the wrong size; ignored")
        if tw is None:
            iminfo["missing"].append(name)
            log.info("no importance data for %s", name)
        else:
            iminfo["used"] += 1
            if tw.uncovered and type_info(t).uses_imatrix:
                iminfo["uncovered"][name] = {"experts": tw.uncovered, "filled": tw.filled,
                                             "tokens": [tw.counts[e] for e in tw.uncovered] if tw.counts else None}
    if tw is None and (requires_imatrix(name, t, preset) or type_info(t).requires_imatrix):
        if name == "token_embd.weight":
            why = ("no importance matrix has an entry for it (the embedding is a row lookup, not a matrix "
                   "product); choose another --token-embedding-type")
        elif im is not None:
            why = (f"{im.path} has no entry for it (an older llama-imatrix left out tensors whose experts were not "
                   "all reached; 'qtoolkit imatrix' keeps them)")
        else:
            why = "none was given (--imatrix FILE; compute one with 'qtoolkit imatrix')"
        raise QtkImatrixRequiredError(
            f"tensor {name} would be {t.name} in a {preset.name} file, which needs an importance matrix; {why}",
            qtype=t.name)
    return None if tw is None else tw.w


def check_coverage(iminfo: Dict[str, Any], opts) -> None:
    """With ``uncovered_experts="error"``, refuse when any tensor that uses importance weights has
    experts below the threshold, naming each tensor and its experts."""
    from ..errors import QtkImatrixCoverageError

    bad = iminfo.get("uncovered") if iminfo else None
    if not bad or opts.uncovered_experts != "error":
        return
    parts = [f"{name}: experts {', '.join(map(str, v['experts']))}" for name, v in bad.items()]
    n = sum(len(v["experts"]) for v in bad.values())
    raise QtkImatrixCoverageError(
        f"{iminfo['file']}: {n} expert matrices in {len(bad)} tensors saw fewer than {opts.min_expert_tokens} "
        f"calibration tokens: {'; '.join(parts)}. Calibrate on more or broader text, or choose "
        "--uncovered-experts layer-mean (the mean of the layer's covered experts) or uniform (llama-quantize's choice)",
        uncovered={name: v["experts"] for name, v in bad.items()})


def _clib_can(t: QuantType) -> bool:
    from .. import _clib

    tr = _clib.type_traits(int(t))
    return tr is not None and tr.can_quantize


def info_path(ckpt: Checkpoint, name: str) -> str:
    return ckpt.file_of(name)


def _metadata(model_dir, cfg, arch, preset, vocab, iminfo, im) -> List[Tuple[str, object, int, Optional[int]]]:
    name = os.path.basename(os.path.normpath(model_dir)) or "model"
    md: List[Tuple[str, object, int, Optional[int]]] = [
        ("general.type", "model", 8, None),
        ("general.name", name, 8, None),
        ("general.file_type", preset.ftype, 4, None),
        ("general.quantization_version", QUANTIZATION_VERSION, 4, None),
    ]
    md += [(k, v, t, None) for k, v, t in arch.metadata()]
    md += vocab.metadata()
    if im is not None:
        md.append(("quantize.imatrix.file", os.path.basename(im.path), 8, None))
        if im.datasets:
            md.append(("quantize.imatrix.dataset", im.datasets[0], 8, None))
        md.append(("quantize.imatrix.entries_count", len(im.entries), 4, None))
        md.append(("quantize.imatrix.chunks_count", int(im.chunk_count), 4, None))
        md += uncovered_metadata(iminfo)
    return md


def uncovered_metadata(iminfo: Dict[str, Any]) -> List[Tuple[str, object, int, Optional[int]]]:
    """``quantize.imatrix.uncovered_experts``: how many expert matrices got substitute weights and
    which ones (only when some did; llama-quantize writes no such key)."""
    bad = iminfo.get("uncovered") or {}
    if not bad:
        return []
    n = sum(len(v["experts"]) for v in bad.values())
    filled = sorted({v["filled"] for v in bad.values()})
    return [("quantize.imatrix.uncovered_experts",
             f"{n} expert matrices in {len(bad)} tensors below {iminfo['min_expert_tokens']} tokens: {'/'.join(filled)}",
             8, None)]


# -- producing tensor data -------------------------------------------------------------------


def _rows_f32(ckpt: Checkpoint, part: Part, out_name: str) -> Iterator[np.ndarray]:
    """The part's rows as float32 slabs (2-D), or the whole 1-D tensor."""
    raw = ckpt.raw(part.source)
    dtype = ckpt.info(part.source).dtype
    if part.index is not None:
        raw = raw[part.index]
    if part.rows is not None:
        raw = raw[part.rows[0]:part.rows[1]]
    if part.reshape_1d:
        raw = raw.reshape(-1)
    perm = None
    if raw.ndim == 1:
        slabs = [(0, raw)]
    else:
        n_rows, n_cols = raw.shape
        perm = permute_rows(n_rows, part.permute_heads) if part.permute_heads else None
        step = max(1, SLAB_ELEMENTS // max(1, n_cols))
        if perm is not None:
            hd = n_rows // part.permute_heads
            step = max(hd, step // hd * hd)  # whole heads per slab
        slabs = ((r, raw[perm[r:r + step]] if perm is not None else raw[r:r + step]) for r in range(0, n_rows, step))
    for r0, block in slabs:
        block = np.ascontiguousarray(block)
        if dtype == "F32":
            x = block.astype(np.float32, copy=False)
        else:
            qt = QuantType.BF16 if dtype == "BF16" else QuantType.F16
            x = dequantize(block.view(np.uint8), qt, threads=1)  # memory-bound: one thread is as fast
        if not np.isfinite(x).all():
            bad = np.argwhere(~np.isfinite(x))[0]
            if x.ndim == 2:
                row = r0 + int(bad[0])
                row = int(perm[row]) if perm is not None else row  # the checkpoint's row, not ours
                row += part.rows[0] if part.rows is not None else 0
                where = f"row {row}, column {int(bad[1])}"
            else:
                where = f"element {int(bad[0])}"
            expert = f" (expert {part.index})" if part.index is not None else ""
            raise QtkValueError(
                f"{ckpt.file_of(part.source)}: tensor {part.source!r}{expert} has a NaN or Inf at {where}; "
                f"refusing to write {out_name}"
            )
        yield x


def _slabs(plan: Plan, pt: PlannedTensor) -> Iterator[Tuple[int, np.ndarray]]:
    """(matrix index, float32 slab) in output order."""
    for e, part in enumerate(pt.out.parts):
        for x in _rows_f32(plan.checkpoint, part, pt.out.name):
            yield e, x


def tensor_f32(plan: Plan, out: OutTensor) -> np.ndarray:
    """One output tensor of the plan as float32, exactly as an F32 conversion writes it (names,
    llama's Q/K row permutation and expert stacking applied). `out` is a planned tensor's `.out`.
    Used by the inference loop to run a Hugging Face folder as the full-precision reference."""
    if out.const is not None:
        return np.ascontiguousarray(out.const, dtype=np.float32)
    mats = []
    for part in out.parts:
        slabs = list(_rows_f32(plan.checkpoint, part, out.name))
        mats.append(slabs[0] if len(slabs) == 1 else np.concatenate(slabs, axis=0))
        plan.checkpoint.release(part.source)
    arr = mats[0] if len(out.shape) < 3 else np.stack(mats)
    return np.ascontiguousarray(arr.reshape(out.shape), dtype=np.float32)


def _producer(plan: Plan, pt: PlannedTensor, pool, threads: int):
    def produce() -> Iterator[np.ndarray]:
        out = pt.out
        if out.const is not None:
            yield quantize(np.ascontiguousarray(out.const, dtype=np.float32), pt.type, threads=1)
            return

        def jobs():
            for e, x in _slabs(plan, pt):
                yield x, (pt.imatrix[e] if pt.imatrix is not None else None), e

        def done(e):
            plan.checkpoint.release(out.parts[e].source)  # keep mapped pages from piling up

        try:
            yield from quantize_stream(jobs(), pt.type, pool, threads, done)
        except QtkValueError as exc:  # the quantizer's errors (values too large for a scale) know no tensor
            if plan.checkpoint.file_of(out.parts[0].source) in str(exc):
                raise
            srcs = sorted({p.source for p in out.parts})
            sources = srcs[0] + (f" (and {len(srcs) - 1} more)" if len(srcs) > 1 else "")
            raise type(exc)(f"{plan.checkpoint.file_of(out.parts[0].source)}: tensor {sources} -> {out.name} "
                            f"({pt.type.name}): {exc}") from None
        for part in out.parts:
            plan.checkpoint.release(part.source)
    return produce


# -- the report ------------------------------------------------------------------------------


def _report(plan: Plan, out_path: Optional[str], dry_run: bool) -> Dict[str, Any]:
    rows = []
    by_type: Dict[str, Dict[str, int]] = {}
    total_bytes = total_elems = 0
    for pt in plan.tensors:
        n, b = pt.out.n_elements, pt.nbytes
        rows.append({"name": pt.out.name, "ne": list(pt.out.ne), "type": pt.type.name, "bytes": b, "elements": n})
        agg = by_type.setdefault(pt.type.name, {"tensors": 0, "elements": 0, "bytes": 0})
        agg["tensors"] += 1
        agg["elements"] += n
        agg["bytes"] += b
        total_bytes += b
        total_elems += n
    for agg in by_type.values():
        agg["bpw"] = round(8.0 * agg["bytes"] / agg["elements"], 4) if agg["elements"] else 0.0
    return {
        "model_dir": plan.model_dir,
        "output": out_path,
        "dry_run": dry_run,
        "architecture": plan.arch.gguf_arch,
        "hf_architecture": plan.arch.cfg.architecture,
        "preset": plan.preset.name,
        "file_type": plan.preset.ftype,
        "tokenizer_pre": plan.vocab.pre,
        "n_vocab": len(plan.vocab.tokens),
        "tensors": rows,
        "by_type": by_type,
        "totals": {
            "tensors": len(rows),
            "elements": total_elems,
            "bytes": total_bytes,
            "bpw": round(8.0 * total_bytes / total_elems, 4) if total_elems else 0.0,
        },
        "imatrix": plan.imatrix_info or None,
    }


def recipe_path(out_path: str) -> str:
    """``OUT.gguf`` -> ``OUT.recipe``: where an allocation's recipe goes by default."""
    base = out_path[:-5] if out_path.lower().endswith(".gguf") else out_path
    return base + ".recipe"


def _allocate(model_dir: str, out_path: Optional[str], opts: ConvertOptions):
    """Run the bit allocator and turn its answer into this conversion's preset and overrides."""
    from ..alloc import allocate, read_text, write_recipe
    from ..alloc.candidates import parse_types
    from ..sizing import parse_size

    if opts.target_size is not None and opts.target_bpw is not None:
        raise QtkValueError("give --target-size or --target-bpw, not both")
    if opts.pure:
        raise QtkValueError("--pure and a target size do not go together: the allocator chooses every type")
    if not opts.calib:
        raise QtkValueError("a bit allocation needs a calibration text (--calib FILE); it must not be the text you "
                            "evaluate on")
    size = parse_size(opts.target_size, "--target-size") if opts.target_size is not None else None
    alloc = allocate(model_dir, read_text(opts.calib), target_size=size, target_bpw=opts.target_bpw,
                     imatrix=opts.imatrix, types=parse_types(opts.alloc_types), base_preset=opts.qtype,
                     tensor_types=opts.tensor_types, output_tensor_type=opts.output_tensor_type,
                     token_embedding_type=opts.token_embedding_type, calib_ctx=opts.calib_ctx,
                     calib_chunks=opts.calib_chunks, threads=opts.threads, progress=opts.alloc_progress,
                     tokenizer_pre=opts.tokenizer_pre, reference=opts.calib_reference, max_probes=opts.max_probes,
                     uncovered_experts=opts.uncovered_experts, min_expert_tokens=opts.min_expert_tokens)
    path = opts.recipe or (recipe_path(out_path) if out_path and not opts.dry_run else None)
    if path:
        target = f"{size:,} bytes (whole file)" if size is not None else f"{opts.target_bpw:g} bits per weight"
        im = f" --imatrix {os.path.basename(opts.imatrix)}" if opts.imatrix else ""
        write_recipe(path, alloc.types_quantized(), header=[
            "qtoolkit bit-allocation recipe: REGEX=TYPE lines for --tensor-type-file",
            f"model: {os.path.basename(os.path.normpath(model_dir))}",
            f"base-preset: {alloc.base_preset}",
            f"target: {target}",
            f"file-bytes: {alloc.file_bytes}",
            f"tensor-bytes: {alloc.tensor_bytes}",
            f"bpw: {alloc.bpw:.4f}",
            f"predicted-kld: {alloc.predicted_kld:.6g}",
            f"calibration: {os.path.basename(opts.calib)}, {alloc.calibration['chunks']} chunks of {alloc.calibration['ctx']} tokens",
            f"imatrix: {os.path.basename(opts.imatrix) if opts.imatrix else 'none'}",
            f"reproduce: qtoolkit convert MODEL -o OUT.gguf --type {alloc.base_preset} --tensor-type-file "
            f"{os.path.basename(path)}{im}",
        ])
    opts.qtype = alloc.base_preset
    opts.tensor_types = list(alloc.recipe)
    opts.output_tensor_type = opts.token_embedding_type = None   # the recipe names those tensors too
    return alloc, path


def convert(model_dir: str, out_path: Optional[str], qtype: Optional[str] = None, **options) -> Dict[str, Any]:
    """Convert a Hugging Face model folder to a GGUF file; returns the report (a JSON-ready dict).

    Options: ``imatrix`` (path), ``tensor_types`` (["REGEX=TYPE", ...]), ``output_tensor_type``,
    ``token_embedding_type``, ``pure``, ``dry_run``, ``threads``, ``force``, ``tokenizer_pre``,
    ``progress`` (a :class:`qtoolkit.gguf_stream.Progress`).

    Bit allocation: ``target_size`` (bytes of the file, or a string such as ``"85G"``) or
    ``target_bpw``, with ``calib`` (a calibration text file); ``qtype`` then only names the preset
    written as the file type (default: the preset nearest in size). ``recipe``: where to write the
    recipe (default ``OUT.recipe``); ``alloc_types``: the types to choose from. The report gains an
    ``allocation`` entry. Without a target, ``qtype`` defaults to Q4_K_M.
    """
    opts = ConvertOptions(qtype=qtype, **options)
    if not opts.dry_run:
        if not out_path:
            raise QtkValueError("an output path is needed (or dry_run=True)")
        check_output(out_path, opts.force)
    t0 = time.perf_counter()
    alloc = recipe = None
    if opts.target_size is not None or opts.target_bpw is not None:
        alloc, recipe = _allocate(model_dir, out_path, opts)
    elif opts.qtype is None:
        opts.qtype = "Q4_K_M"
    plan = build_plan(model_dir, opts)
    try:
        report = _report(plan, out_path, opts.dry_run)
        if alloc is not None:
            report["allocation"] = alloc.report()
            report["allocation"]["recipe_file"] = recipe
        if opts.dry_run:
            return report
        from concurrent.futures import ThreadPoolExecutor

        from ..formats import default_threads

        threads = opts.threads if opts.threads is not None else default_threads()
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise QtkValueError(f"threads must be a positive integer, got {threads!r}")
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="qtk-convert") as pool:
            outs = [TensorOut(pt.out.name, pt.out.ne, pt.type, _producer(plan, pt, pool, threads))
                    for pt in plan.tensors]
            size = write_gguf(out_path, plan.arch.gguf_arch, plan.metadata, outs, force=opts.force,
                              progress=opts.progress)
        report["file_bytes"] = size
        report["seconds"] = round(time.perf_counter() - t0, 3)
        return report
    finally:
        plan.checkpoint.close()
