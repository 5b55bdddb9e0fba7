"""Qwen3 dense: GGUF architecture ``qwen3`` (per-head q/k RMS norm, NEOX rope, usually tied head)."""

from . import register
from .base import DecoderArch


@register
class Qwen3(DecoderArch):
    hf_architectures = ("Qwen3ForCausalLM",)
    gguf_arch = "qwen3"
    qk_norm = True
