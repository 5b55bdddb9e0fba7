"""Qwen3 dense: GGUF architecture ``qwen3`` (per-head q/k RMS norm, NEOX rope, usually tied head)."""

from .base import DecoderArch
from .registry import register


@register
class Qwen3(DecoderArch):
    hf_architectures = ("Qwen3ForCausalLM",)
    gguf_arch = "qwen3"
    qk_norm = True
