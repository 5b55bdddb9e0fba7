"""A conversion's plan: every output tensor of a :class:`~.source.ModelSource` with its ggml type,
its importance weights, and the file's metadata. Nothing but headers is read, so ``--dry-run`` is
this step plus a report.

* :func:`build_plan`: the types from a llama-quantize preset and the user's overrides
  (:func:`qtoolkit.presets.choose_types`), then :func:`assign_types`;
* :func:`assign_types`: any given types (a preset's, or a bit allocation's) turned into a plan:
  importance weights per tensor (:mod:`.importance`), the coverage check, the metadata. The bit
  allocator plans once and calls this again with its own types (:meth:`Plan.retyped`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import QtkNotImplementedError
from ..quants import QuantType, producible_type, type_info
from ..io.gguf_writer import Progress, check_metadata
from ..presets import ModelInfo, Preset, TensorSpec, TypeOptions, choose_types, file_order, get_preset, parse_tensor_types
from .archs.base import OutTensor
from .importance import (DEFAULT_UNCOVERED_POLICY, Coverage, Imatrix, check_coverage, imatrix_metadata,
                         imatrix_report, load_imatrix, tensor_importance)
from .source import Metadata, ModelSource, model_metadata, open_model

log = logging.getLogger(__name__)


@dataclass
class ConvertOptions:
    """What a conversion is asked for: the preset and overrides (planning), then how to write."""

    qtype: Optional[str] = "Q4_K_M"
    imatrix: Optional[str] = None
    uncovered_experts: str = DEFAULT_UNCOVERED_POLICY
    min_expert_tokens: int = 1
    tensor_types: Sequence[Tuple[str, Any]] = ()
    output_tensor_type: Optional[Any] = None
    token_embedding_type: Optional[Any] = None
    pure: bool = False
    tokenizer_pre: Optional[str] = None
    dry_run: bool = False
    threads: Optional[int] = None
    force: bool = False
    progress: Optional[Progress] = None
    inputs: Sequence[str] = ()  # more files the output must not be (a tensor-type file...); the folder and imatrix always

    @property
    def coverage(self) -> Coverage:
        return Coverage(self.uncovered_experts, self.min_expert_tokens)


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
    source: ModelSource
    preset: Preset
    tensors: List[PlannedTensor]           # llama.cpp's file order
    metadata: Metadata
    imatrix_info: Dict[str, Any] = field(default_factory=dict)
    imatrix: Optional[Imatrix] = None
    coverage: Coverage = field(default_factory=Coverage)

    @property
    def model_dir(self) -> str:
        return self.source.model_dir

    @property
    def arch(self):
        return self.source.arch

    @property
    def checkpoint(self):
        return self.source.checkpoint

    @property
    def vocab(self):
        return self.source.vocab

    def types(self) -> Dict[str, QuantType]:
        return {pt.out.name: pt.type for pt in self.tensors}

    def retyped(self, types: Dict[str, QuantType], preset: Union[str, Preset]) -> "Plan":
        """The same model, importance matrix and coverage policy with other types (and the preset
        written as ``general.file_type``)."""
        preset = preset if isinstance(preset, Preset) else get_preset(preset)
        return assign_types(self.source, types, preset, self.imatrix, self.coverage)

    def close(self) -> None:
        self.source.close()


def model_info(arch) -> ModelInfo:
    """The hyper-parameters the mixture rules look at, from an architecture object."""
    return ModelInfo(arch.gguf_arch, arch.n_layer, arch.n_head, arch.n_head_kv, arch.n_expert)


def tensor_types(arch, tensors: Sequence[OutTensor], preset, options: Optional[TypeOptions] = None) -> Dict[str, QuantType]:
    """Every output tensor's type under ``preset`` (and overrides): the one place where the converter,
    ``qtoolkit plan`` and the bit allocator turn shapes into types. Source tensors are F32 as far as
    the rules are concerned (what "keep the input type" means for norms and routers)."""
    specs = [TensorSpec(t.name, t.ne, QuantType.F32) for t in tensors]
    return choose_types(specs, preset, model_info(arch), options)


def type_options(opts: ConvertOptions) -> TypeOptions:
    """The overrides of ``opts`` as the mixture rules take them, every type checked."""
    return TypeOptions(
        output_tensor_type=producible_type(opts.output_tensor_type, "--output-tensor-type") if opts.output_tensor_type else None,
        token_embedding_type=producible_type(opts.token_embedding_type, "--token-embedding-type") if opts.token_embedding_type else None,
        tensor_types=parse_tensor_types(opts.tensor_types),
        pure=opts.pure,
        has_imatrix=opts.imatrix is not None,
    )


def build_plan(model: Union[str, ModelSource], opts: ConvertOptions) -> Plan:
    """The plan of converting ``model`` (a folder, opened here, or an opened source) with ``opts``."""
    preset = get_preset(opts.qtype)
    src = model if isinstance(model, ModelSource) else open_model(model, opts.tokenizer_pre)
    try:
        popts = type_options(opts)
        if popts.tensor_types and not type_info(preset.default).is_quantized:
            log.warning("--tensor-type is ignored with the %s preset (as llama-quantize does)", preset.name)
        types = tensor_types(src.arch, src.tensors, preset, popts)
        im = load_imatrix(opts.imatrix) if opts.imatrix else None
        return assign_types(src, types, preset, im, opts.coverage)
    except BaseException:
        if src is not model:
            src.close()
        raise


def assign_types(src: ModelSource, types: Dict[str, QuantType], preset: Preset, im: Optional[Imatrix],
                 coverage: Coverage) -> Plan:
    """A plan with exactly ``types`` (every output tensor of ``src`` named): importance weights per
    tensor, the coverage policy applied, the metadata."""
    for name, t in types.items():
        if not type_info(t).can_quantize:
            raise QtkNotImplementedError(f"tensor {name}: qtoolkit cannot produce {t.name} yet")
    iminfo: Dict[str, Any] = imatrix_report(im.path, im, coverage) if im is not None else {}
    by_name = {t.name: t for t in src.tensors}
    planned: List[PlannedTensor] = []
    for name in file_order(types):
        t, out = types[name], by_name[name]
        pt = PlannedTensor(out, t)
        if type_info(t).is_quantized and len(out.shape) >= 2:
            n_mat = out.shape[0] if len(out.shape) == 3 else 1
            pt.imatrix = tensor_importance(im, iminfo, name, t, out.shape[-1], n_mat, preset, coverage)
        planned.append(pt)
    check_coverage(iminfo, coverage)
    metadata = model_metadata(src.name, src.arch, src.vocab, preset.ftype)
    if im is not None:
        metadata += imatrix_metadata(im, iminfo)
    check_metadata(metadata, f"{src.cfg.path} (or the tokenizer files)")
    return Plan(src, preset, planned, metadata, iminfo, im, coverage)


def plan_report(plan: Plan, out_path: Optional[str], dry_run: bool) -> Dict[str, Any]:
    """The JSON-ready report of a conversion: every tensor's type and bytes, totals by type."""
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
