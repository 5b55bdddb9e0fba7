"""Inference: load a GGUF file or a Hugging Face folder and run it (perplexity, KL divergence,
generation). See docs/inference.md."""

from .forward import KVCache, Model
from .loader import load
from .tokenizer import Tokenizer

__all__ = ["load", "Model", "KVCache", "Tokenizer"]
