"""Hugging Face checkpoint -> GGUF conversion: :mod:`.source` (the folder as GGUF tensors),
:mod:`.plan` (types, importance weights, metadata), :mod:`.convert` (writing the plan),
:mod:`.importance` (what the quantizer makes of an importance matrix)."""

from .convert import convert, write_plan  # noqa: F401
from .plan import ConvertOptions, Plan, assign_types, build_plan  # noqa: F401
from .source import ModelSource, open_model  # noqa: F401

__all__ = ["convert", "write_plan", "build_plan", "assign_types", "ConvertOptions", "Plan", "ModelSource", "open_model"]
