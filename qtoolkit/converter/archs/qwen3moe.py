"""Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B): GGUF architecture ``qwen3moe``.

Every layer is MoE (softmax router over all experts, top-k, always renormalized by llama.cpp),
no shared expert, q/k norm as Qwen3.
"""

import logging

from .base import U32, DecoderArch, require_all_layers_moe
from .registry import register

log = logging.getLogger(__name__)


@register
class Qwen3Moe(DecoderArch):
    hf_architectures = ("Qwen3MoeForCausalLM",)
    gguf_arch = "qwen3moe"
    qk_norm = True
    moe_style = "qwen"

    def check_config(self) -> None:
        require_all_layers_moe(self.cfg)
        if self.cfg.find("norm_topk_prob", True) is False:
            log.warning(
                "%s: norm_topk_prob is false, but llama.cpp's qwen3moe always renormalizes the top-k "
                "router weights; the converted model will route slightly differently", self.cfg.path
            )

    def extra_metadata(self):
        return [(f"{self.gguf_arch}.expert_feed_forward_length", self.n_ff_exp, U32)]
