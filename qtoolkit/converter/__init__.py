"""Hugging Face checkpoint -> GGUF conversion (see core.py for the design)."""

from .core import ConvertOptions, build_plan, convert  # noqa: F401

__all__ = ["convert", "build_plan", "ConvertOptions"]
