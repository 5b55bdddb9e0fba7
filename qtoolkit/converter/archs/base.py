"""What every architecture file builds on: the output-tensor plan types and a decoder-only base.

An architecture says, from ``config.json`` alone, which GGUF tensors llama.cpp expects, with
which shapes, and where each one's rows come from in the checkpoint (:class:`Part`). It also
lists its GGUF metadata. Nothing here reads tensor data.

Shapes are numpy order (outermost first): a ``(rows, cols)`` matrix is GGUF ``ne = [cols, rows]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ...errors import QtkFormatError, QtkNotImplementedError
from ..hfconfig import HFConfig

MAX_EXPERTS = 4096  # a sanity bound on a config value that sizes the plan
MAX_ASSUMED_LAYERS = 4096  # the same for the layer count when only config.json is known (largest models today: ~130)

# GGUF metadata value types (gguf.GGUFValueType values)
U32, I32, F32, BOOL, STR, ARR = 4, 5, 6, 7, 8, 9


@dataclass(frozen=True)
class Part:
    """Rows of one checkpoint tensor that become consecutive rows of an output tensor."""

    source: str                           # checkpoint tensor name
    index: Optional[int] = None           # pick this entry of axis 0 first (one expert of a fused tensor)
    rows: Optional[Tuple[int, int]] = None  # then keep rows [a, b)
    permute_heads: int = 0                # llama Q/K: per head, interleave the two rotary halves
    reshape_1d: bool = False              # a (1, n) tensor written as (n,)


@dataclass
class OutTensor:
    name: str                             # GGUF tensor name
    shape: Tuple[int, ...]                # numpy order of the float tensor
    parts: List[Part] = field(default_factory=list)  # one per 2-D matrix (per expert for 3-D), in order
    const: Optional[np.ndarray] = None    # a generated tensor (rope_freqs)

    @property
    def ne(self) -> Tuple[int, ...]:
        return tuple(reversed(self.shape))

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class ArchPlan:
    tensors: List[OutTensor]
    expected: Dict[str, Tuple[int, ...]]  # checkpoint name -> shape config.json implies
    ignored: List[str]                    # checkpoint tensors deliberately not written


def permute_rows(n_rows: int, n_heads: int) -> np.ndarray:
    """Row order llama.cpp's NORM rope needs: within each head, new row 2i = old row i and
    new row 2i+1 = old row i + head_dim/2 (HF rotates halves, ggml adjacent pairs)."""
    hd = n_rows // n_heads
    half = hd // 2
    i = np.arange(half)
    within = np.empty(hd, dtype=np.int64)
    within[0::2] = i
    within[1::2] = i + half
    return (np.arange(n_heads)[:, None] * hd + within[None, :]).reshape(-1)


class DecoderArch:
    """A Llama-like decoder: embeddings, N blocks of attention + (dense or MoE) SwiGLU FFN, norm,
    head. Subclasses flip the switches below and add their metadata."""

    hf_architectures: Tuple[str, ...] = ()
    gguf_arch: str = ""
    permute_qk = False          # llama: rows of q/k reordered for NORM rope
    qk_norm = False             # qwen3: per-head RMS norm of q and k
    output_required = False     # qwen2moe: llama.cpp has no tied-embedding fallback
    moe_style: Optional[str] = None   # None (dense), "qwen" (mlp.experts.E.*_proj) or "mixtral" (block_sparse_moe)
    shared_expert = False       # qwen2moe: one always-on expert with a sigmoid gate
    write_vocab_size = False    # llama writes {arch}.vocab_size

    def __init__(self, cfg: HFConfig):
        self.cfg = cfg
        self.n_layer = cfg.int("num_hidden_layers")
        self.n_embd = cfg.int("hidden_size")
        self.n_head = cfg.n_head
        self.n_head_kv = cfg.n_head_kv
        self.head_dim = cfg.head_dim
        self.n_vocab = cfg.int("vocab_size")
        self.n_ff = cfg.int("intermediate_size")
        if self.n_head % self.n_head_kv:
            raise QtkFormatError(f"{cfg.path}: num_attention_heads {self.n_head} is not a multiple of num_key_value_heads {self.n_head_kv}")
        self.n_expert = 0
        self.n_expert_used = 0
        self.n_ff_exp = 0
        if self.moe_style:
            self.n_expert = cfg.int("num_experts")
            self.n_expert_used = cfg.int("num_experts_per_tok")
            if self.n_expert_used > self.n_expert:
                raise QtkFormatError(f"{cfg.path}: num_experts_per_tok {self.n_expert_used} > num_experts {self.n_expert}")
            self.n_ff_exp = cfg.int("moe_intermediate_size") if self.moe_style == "qwen" else self.n_ff
        self.tied = bool(cfg.find("tie_word_embeddings", False))
        self.check_config()

    # -- planning from config.json alone ---------------------------------------------------
    qkv_bias: Optional[bool] = None   # True: q/k/v always have biases (Qwen2); None: config's attention_bias

    def assumed_present(self, name: str) -> bool:
        """Whether a checkpoint written for this config holds tensor ``name``: the optional tensors
        (biases, an untied head) follow the config's switches; fused expert tensors and rotary
        buffers are assumed absent (they give the same output tensors either way)."""
        if name == "lm_head.weight":
            return not self.tied
        if name.endswith(".bias"):
            if ".self_attn." in name:
                if self.qkv_bias is not None:
                    return self.qkv_bias and not name.endswith("o_proj.bias")
                return self.cfg.find("attention_bias", False) is True
            if ".mlp." in name:
                return self.cfg.find("mlp_bias", False) is True
            return False
        return not name.endswith(("rotary_emb.inv_freq", "mlp.experts.gate_up_proj", "mlp.experts.down_proj"))

    def plan_from_config(self) -> ArchPlan:
        """The output tensors (names, shapes) of a checkpoint of this config, without reading one."""
        return self.plan(_AssumedCheckpoint(self))

    # -- hooks for subclasses --------------------------------------------------------------
    def check_config(self) -> None:
        """Refuse configurations llama.cpp cannot represent."""

    def extra_metadata(self) -> List[Tuple[str, object, int]]:
        return []

    def extra_tensors(self) -> List[OutTensor]:
        return []

    # -- metadata --------------------------------------------------------------------------
    def rope_metadata(self) -> List[Tuple[str, object, int]]:
        a = self.gguf_arch
        rope = self.cfg.rope
        rtype = str(rope.get("rope_type") or "default").lower()
        factor = rope.get("factor")
        if factor is not None:
            factor = self.cfg.number(factor, "rope factor", positive=True)
        if rtype in ("default", "none"):
            return []
        if rtype == "linear" and factor is not None:
            return [(f"{a}.rope.scaling.type", "linear", STR), (f"{a}.rope.scaling.factor", float(factor), F32)]
        if rtype == "yarn" and factor is not None:
            out = [(f"{a}.rope.scaling.type", "yarn", STR), (f"{a}.rope.scaling.factor", float(factor), F32)]
            if "original_max_position_embeddings" in rope:
                orig = rope["original_max_position_embeddings"]
                if isinstance(orig, bool) or not isinstance(orig, int) or orig < 1:
                    raise QtkFormatError(f"{self.cfg.path}: original_max_position_embeddings must be a positive integer, "
                                         f"got {orig!r}")
                out.append((f"{a}.rope.scaling.original_context_length", orig, U32))
            return out
        if rtype == "llama3" and self.gguf_arch == "llama":
            return []  # expressed as the rope_freqs tensor
        raise QtkNotImplementedError(f"{self.cfg.path}: rope scaling {rtype!r} is not supported for {self.gguf_arch} yet")

    def metadata(self) -> List[Tuple[str, object, int]]:
        a = self.gguf_arch
        cfg = self.cfg
        md: List[Tuple[str, object, int]] = [
            (f"{a}.block_count", self.n_layer, U32),
            (f"{a}.context_length", cfg.int("max_position_embeddings", 4096), U32),
            (f"{a}.embedding_length", self.n_embd, U32),
            (f"{a}.feed_forward_length", self.n_ff, U32),
            (f"{a}.attention.head_count", self.n_head, U32),
            (f"{a}.attention.head_count_kv", self.n_head_kv, U32),
            (f"{a}.rope.freq_base", cfg.rope_theta, F32),
            (f"{a}.attention.layer_norm_rms_epsilon", cfg.float("rms_norm_eps", 1e-6, minimum=0.0), F32),
            (f"{a}.attention.key_length", self.head_dim, U32),
            (f"{a}.attention.value_length", self.head_dim, U32),
        ]
        if self.write_vocab_size:
            md.append((f"{a}.vocab_size", self.n_vocab, U32))
        if self.moe_style:
            md.append((f"{a}.expert_count", self.n_expert, U32))
            md.append((f"{a}.expert_used_count", self.n_expert_used, U32))
        md += self.rope_metadata()
        md += self.extra_metadata()
        return md

    # -- tensors ---------------------------------------------------------------------------
    def plan(self, available: Mapping[str, Tuple[int, ...]]) -> ArchPlan:
        """The output tensors, given the checkpoint's tensor names and shapes."""
        # counts that size the plan itself, checked before it is built (a config claiming 10^9
        # layers must not make a list of 10^9 layers): every layer has tensors of its own, and
        # there are at most MAX_EXPERTS experts
        if isinstance(available, _AssumedCheckpoint):  # sized from config.json alone (qtoolkit plan)
            if self.n_layer > MAX_ASSUMED_LAYERS:
                raise QtkFormatError(f"{self.cfg.path}: num_hidden_layers {self.n_layer} is more than qtoolkit's "
                                     f"limit of {MAX_ASSUMED_LAYERS} for a model described only by its config")
        elif self.n_layer > len(available):
            raise QtkFormatError(f"{self.cfg.path}: num_hidden_layers {self.n_layer} is more than the checkpoint's "
                                 f"{len(available)} tensors")
        if self.n_expert > MAX_EXPERTS:
            raise QtkFormatError(f"{self.cfg.path}: num_experts {self.n_expert} is more than qtoolkit's limit of "
                                 f"{MAX_EXPERTS} (llama.cpp's LLAMA_MAX_EXPERTS is 512)")
        D, V, hd = self.n_embd, self.n_vocab, self.head_dim
        H, Hkv = self.n_head, self.n_head_kv
        out: List[OutTensor] = []
        expected: Dict[str, Tuple[int, ...]] = {}
        ignored: List[str] = []

        def direct(gguf_name: str, src: str, shape, permute: int = 0, optional: bool = False, reshape_1d=False):
            if optional and src not in available:
                return
            expected[src] = (1, shape[0]) if reshape_1d else tuple(shape)
            out.append(OutTensor(gguf_name, tuple(shape), [Part(src, permute_heads=permute, reshape_1d=reshape_1d)]))

        direct("token_embd.weight", "model.embed_tokens.weight", (V, D))
        direct("output_norm.weight", "model.norm.weight", (D,))
        if "lm_head.weight" in available and not self.tied:
            direct("output.weight", "lm_head.weight", (V, D))
        else:
            if "lm_head.weight" in available:
                ignored.append("lm_head.weight")  # tied: the same matrix as the embeddings
            elif not self.tied:
                raise QtkFormatError(
                    f"{self.cfg.path}: tie_word_embeddings is false but the checkpoint has no lm_head.weight"
                )
            if self.output_required:
                out.append(OutTensor("output.weight", (V, D), [Part("model.embed_tokens.weight")]))

        for i in range(self.n_layer):
            p, b = f"model.layers.{i}.", f"blk.{i}."
            direct(b + "attn_norm.weight", p + "input_layernorm.weight", (D,))
            direct(b + "ffn_norm.weight", p + "post_attention_layernorm.weight", (D,))
            perm_q, perm_k = (H, Hkv) if self.permute_qk else (0, 0)
            for proj, rows, perm in (("q", H * hd, perm_q), ("k", Hkv * hd, perm_k), ("v", Hkv * hd, 0)):
                direct(b + f"attn_{proj}.weight", p + f"self_attn.{proj}_proj.weight", (rows, D), perm)
                direct(b + f"attn_{proj}.bias", p + f"self_attn.{proj}_proj.bias", (rows,), perm, optional=True)
            direct(b + "attn_output.weight", p + "self_attn.o_proj.weight", (D, H * hd))
            direct(b + "attn_output.bias", p + "self_attn.o_proj.bias", (D,), optional=True)
            if self.qk_norm:
                direct(b + "attn_q_norm.weight", p + "self_attn.q_norm.weight", (hd,))
                direct(b + "attn_k_norm.weight", p + "self_attn.k_norm.weight", (hd,))
            if self.moe_style is None:
                F = self.n_ff
                for proj, shape in (("gate", (F, D)), ("up", (F, D)), ("down", (D, F))):
                    direct(b + f"ffn_{proj}.weight", p + f"mlp.{proj}_proj.weight", shape)
                    direct(b + f"ffn_{proj}.bias", p + f"mlp.{proj}_proj.bias", (shape[0],), optional=True)
            else:
                self._moe_tensors(i, available, direct, out, expected)
            for name in (p + "self_attn.rotary_emb.inv_freq",):
                if name in available:
                    ignored.append(name)
        out += self.extra_tensors()
        return ArchPlan(out, expected, ignored)

    def _moe_tensors(self, i, available, direct, out, expected) -> None:
        D, E, Fe = self.n_embd, self.n_expert, self.n_ff_exp
        p, b = f"model.layers.{i}.", f"blk.{i}."
        if self.moe_style == "mixtral":
            router = p + "block_sparse_moe.gate.weight"
            names = {"gate": "w1", "up": "w3", "down": "w2"}
            expert = lambda e, proj: f"{p}block_sparse_moe.experts.{e}.{names[proj]}.weight"  # noqa: E731
        else:
            router = p + "mlp.gate.weight"
            expert = lambda e, proj: f"{p}mlp.experts.{e}.{proj}_proj.weight"  # noqa: E731
        direct(b + "ffn_gate_inp.weight", router, (E, D))
        shapes = {"gate": (Fe, D), "up": (Fe, D), "down": (D, Fe)}
        fused_gu, fused_down = p + "mlp.experts.gate_up_proj", p + "mlp.experts.down_proj"
        for proj in ("gate", "up", "down"):
            rows, cols = shapes[proj]
            t = OutTensor(b + f"ffn_{proj}_exps.weight", (E, rows, cols))
            if proj in ("gate", "up") and fused_gu in available:
                expected[fused_gu] = (E, 2 * Fe, D)
                r0 = 0 if proj == "gate" else Fe
                t.parts = [Part(fused_gu, index=e, rows=(r0, r0 + Fe)) for e in range(E)]
            elif proj == "down" and fused_down in available:
                expected[fused_down] = (E, D, Fe)
                t.parts = [Part(fused_down, index=e) for e in range(E)]
            else:
                for e in range(E):
                    expected[expert(e, proj)] = (rows, cols)
                    t.parts.append(Part(expert(e, proj)))
            out.append(t)
        if self.shared_expert:
            Fs = self.cfg.int("shared_expert_intermediate_size")
            for proj, shape in (("gate", (Fs, D)), ("up", (Fs, D)), ("down", (D, Fs))):
                direct(b + f"ffn_{proj}_shexp.weight", p + f"mlp.shared_expert.{proj}_proj.weight", shape)
            direct(b + "ffn_gate_inp_shexp.weight", p + "mlp.shared_expert_gate.weight", (D,), reshape_1d=True)


class _AssumedCheckpoint:
    """``name in ckpt`` for a checkpoint that is only described by its config (see assumed_present)."""

    def __init__(self, arch: DecoderArch):
        self.arch = arch

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.arch.assumed_present(name)


def llama3_rope_factors(cfg: HFConfig, head_dim: int) -> np.ndarray:
    """Per-frequency divisors of llama3 rope scaling, written as ``rope_freqs.weight``."""
    rope = cfg.rope
    base = cfg.rope_theta
    factor = float(rope.get("factor", 8.0))
    low = float(rope.get("low_freq_factor", 1.0))
    high = float(rope.get("high_freq_factor", 4.0))
    old_ctx = float(rope.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    low_wl, high_wl = old_ctx / low, old_ctx / high
    out = []
    for f in freqs.astype(np.float64):
        wavelen = 2 * math.pi / f
        if wavelen < high_wl:
            out.append(1.0)
        elif wavelen > low_wl:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def require_all_layers_moe(cfg: HFConfig) -> None:
    """Qwen MoE configs that make some layers dense cannot be represented by llama.cpp's loader."""
    step = cfg.find("decoder_sparse_step", 1)
    only = cfg.find("mlp_only_layers", [])
    if step not in (1, None) or (isinstance(only, Sequence) and len(only) > 0):
        raise QtkNotImplementedError(
            f"{cfg.path}: decoder_sparse_step={step!r}, mlp_only_layers={only!r}: checkpoints with dense layers "
            "between MoE layers cannot be represented in llama.cpp's format for this architecture"
        )
