"""Qwen2 / Qwen2.5 dense: GGUF architecture ``qwen2`` (NEOX rope: no permutation; q/k/v biases)."""

from .base import DecoderArch
from .registry import register


@register
class Qwen2(DecoderArch):
    hf_architectures = ("Qwen2ForCausalLM",)
    gguf_arch = "qwen2"
    qkv_bias = True
