"""Llama, Mistral and Mixtral: GGUF architecture ``llama`` (Mixtral adds the MoE tensors).

llama.cpp runs llama with NORM rope (adjacent pairs), so q/k rows are permuted per head.
llama3 rope scaling becomes a ``rope_freqs.weight`` tensor.
"""

from __future__ import annotations

from ...errors import QtkNotImplementedError
from .base import DecoderArch, OutTensor, llama3_rope_factors
from .registry import register


@register
class Llama(DecoderArch):
    hf_architectures = ("LlamaForCausalLM", "MistralForCausalLM")
    gguf_arch = "llama"
    permute_qk = True
    write_vocab_size = True

    def check_config(self) -> None:
        if self.cfg.find("sliding_window", None) and self.cfg.architecture == "MistralForCausalLM":
            # Mistral v0.1 used a 4096-token sliding window; llama.cpp's llama arch ignores it,
            # which only matters beyond 4096 tokens of context.
            pass
        if self.head_dim % 2:
            raise QtkNotImplementedError(f"{self.cfg.path}: odd head_dim {self.head_dim} cannot be rotated")

    def extra_metadata(self):
        return [(f"{self.gguf_arch}.rope.dimension_count", self.head_dim, 4)]

    def extra_tensors(self):
        rtype = str(self.cfg.rope.get("rope_type") or "").lower()
        if rtype == "llama3":
            f = llama3_rope_factors(self.cfg, self.head_dim)
            return [OutTensor("rope_freqs.weight", f.shape, [], const=f)]
        return []


@register
class Mixtral(Llama):
    hf_architectures = ("MixtralForCausalLM",)
    moe_style = "mixtral"
