"""Qwen1.5-MoE / Qwen2-MoE: GGUF architecture ``qwen2moe``.

Routed experts plus one shared expert gated by ``sigmoid(shared_expert_gate · h)``; q/k/v biases;
llama.cpp does not renormalize the top-k weights and needs an explicit ``output.weight``.
"""

import logging

from .base import U32, DecoderArch, require_all_layers_moe
from .registry import register

log = logging.getLogger(__name__)


@register
class Qwen2Moe(DecoderArch):
    hf_architectures = ("Qwen2MoeForCausalLM",)
    gguf_arch = "qwen2moe"
    qkv_bias = True
    moe_style = "qwen"
    shared_expert = True
    output_required = True

    def check_config(self) -> None:
        require_all_layers_moe(self.cfg)
        if self.cfg.find("norm_topk_prob", False) is True:
            log.warning(
                "%s: norm_topk_prob is true, but llama.cpp's qwen2moe never renormalizes the top-k "
                "router weights; the converted model will route slightly differently", self.cfg.path
            )

    def extra_metadata(self):
        a = self.gguf_arch
        return [
            (f"{a}.expert_feed_forward_length", self.n_ff_exp, U32),
            (f"{a}.expert_shared_feed_forward_length", self.cfg.int("shared_expert_intermediate_size"), U32),
        ]
