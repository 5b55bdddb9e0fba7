"""llama-quantize's presets and per-tensor mixture rules, as one pure function.

``choose_types(tensors, preset, model, options)`` says which ggml type every tensor of a GGUF file
gets. It looks only at names, shapes (ggml ``ne`` order: ``ne[0]`` is the row length) and a few
model hyper-parameters, so the converter, ``qtoolkit plan`` and the bit allocator all share it. The rules are those of llama.cpp's ``llama-quant.cpp`` (the version vendored in
llama-cpp-python 0.3.36), restated from ``shared/docs/ggml-formats.md`` §4:

1. which tensors are quantizable at all (2-D/3-D weights that are not norms or routers);
2. ``--token-embedding-type`` / ``--output-tensor-type`` win outright;
3. otherwise, if the preset's default type is quantized: the first matching ``--tensor-type``
   pattern, else (unless ``pure``) the preset's mixture rule; then the shape fallback for rows
   that are not a multiple of the type's block.

The rules keep running counters (the n-th ``attn_v``), so tensors are visited in llama.cpp's file
order: tensors without a ``blk.N.`` prefix first, then by layer number, then by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .errors import QtkValueError
from .quants import QuantType, producible_type, type_info

Q = QuantType


@dataclass(frozen=True)
class Preset:
    name: str
    ftype: int            # llama_ftype, written as general.file_type
    default: QuantType    # the type most tensors get
    description: str


# name -> preset; the sizes are llama-quantize's own descriptions (Llama-3-8B unless noted)
PRESETS: Dict[str, Preset] = {p.name: p for p in [
    Preset("F32", 0, Q.F32, "26.00G @ 7B, no quantization"),
    Preset("F16", 1, Q.F16, "14.00G, +0.0020 ppl @ Mistral-7B"),
    Preset("BF16", 32, Q.BF16, "14.00G, -0.0050 ppl @ Mistral-7B"),
    Preset("Q8_0", 7, Q.Q8_0, "7.96G, +0.0026 ppl"),
    Preset("Q6_K", 18, Q.Q6_K, "6.14G, +0.0217 ppl"),
    Preset("Q5_K_M", 17, Q.Q5_K, "5.33G, +0.0569 ppl"),
    Preset("Q5_K_S", 16, Q.Q5_K, "5.21G, +0.1049 ppl"),
    Preset("Q5_1", 9, Q.Q5_1, "5.65G, +0.1062 ppl"),
    Preset("Q5_0", 8, Q.Q5_0, "5.21G, +0.1316 ppl"),
    Preset("Q4_K_M", 15, Q.Q4_K, "4.58G, +0.1754 ppl"),
    Preset("Q4_K_S", 14, Q.Q4_K, "4.37G, +0.2689 ppl"),
    Preset("Q4_1", 3, Q.Q4_1, "4.78G, +0.4511 ppl"),
    Preset("Q4_0", 2, Q.Q4_0, "4.34G, +0.4685 ppl"),
    Preset("IQ4_NL", 25, Q.IQ4_NL, "4.50 bpw non-linear"),
    Preset("IQ4_XS", 30, Q.IQ4_XS, "4.25 bpw non-linear"),
    Preset("Q3_K_L", 13, Q.Q3_K, "4.03G, +0.5562 ppl"),
    Preset("Q3_K_M", 12, Q.Q3_K, "3.74G, +0.6569 ppl"),
    Preset("Q3_K_S", 11, Q.Q3_K, "3.41G, +1.6321 ppl"),
    Preset("Q2_K", 10, Q.Q2_K, "2.96G, +3.5199 ppl"),
    Preset("Q2_K_S", 21, Q.Q2_K, "2.96G, +3.1836 ppl (needs an imatrix)"),
    # importance-matrix codebook types (the low-bit ones refuse to run without an imatrix)
    Preset("IQ3_M", 27, Q.IQ3_S, "3.66 bpw quantization mix"),
    Preset("IQ3_S", 26, Q.IQ3_S, "3.44 bpw quantization"),
    Preset("IQ3_XS", 22, Q.IQ3_S, "3.3 bpw quantization (needs an imatrix)"),
    Preset("IQ3_XXS", 23, Q.IQ3_XXS, "3.06 bpw quantization (needs an imatrix)"),
    Preset("IQ2_M", 29, Q.IQ2_S, "2.7 bpw quantization (needs an imatrix)"),
    Preset("IQ2_S", 28, Q.IQ2_XS, "2.5 bpw quantization (needs an imatrix)"),
    Preset("IQ2_XS", 20, Q.IQ2_XS, "2.31 bpw quantization (needs an imatrix)"),
    Preset("IQ2_XXS", 19, Q.IQ2_XXS, "2.06 bpw quantization (needs an imatrix)"),
    Preset("IQ1_M", 31, Q.IQ1_M, "1.75 bpw quantization (needs an imatrix)"),
    Preset("IQ1_S", 24, Q.IQ1_S, "1.56 bpw quantization (needs an imatrix)"),
    Preset("TQ2_0", 37, Q.TQ2_0, "2.06 bpw ternarization"),
    Preset("TQ1_0", 36, Q.TQ1_0, "1.69 bpw ternarization"),
]}
MAIN_PRESETS = [name for name in PRESETS if not name.startswith(("IQ1", "IQ2", "IQ3", "TQ"))]
_IQ_LOW = ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M")  # presets with their own rule block
ALIASES = {"Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M", "Q3_K": "Q3_K_M"}


def get_preset(name: str) -> Preset:
    key = str(name).strip().upper()
    key = ALIASES.get(key, key)
    if key not in PRESETS:
        raise QtkValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[key]


@dataclass(frozen=True)
class ModelInfo:
    """The hyper-parameters the rules look at (names as in GGUF metadata)."""

    arch: str                 # general.architecture, e.g. "llama", "qwen3moe"
    n_layer: int              # block_count
    n_head: int
    n_head_kv: int
    n_expert: int = 0         # expert_count (0 for dense models)

    @property
    def n_gqa(self) -> int:
        return self.n_head // self.n_head_kv if self.n_head_kv else 0

    @property
    def is_70b(self) -> bool:
        """llama.cpp's LLM_TYPE_70B, which bumps attn_v: a GQA llama or any qwen2 with 80 layers."""
        if self.n_layer != 80:
            return False
        if self.arch == "llama":
            return self.n_expert != 8 and self.n_head != self.n_head_kv
        return self.arch == "qwen2"


@dataclass
class TypeOptions:
    output_tensor_type: Optional[QuantType] = None
    token_embedding_type: Optional[QuantType] = None
    tensor_types: Sequence[Tuple[str, QuantType]] = field(default_factory=list)  # (regex, type); first match wins
    pure: bool = False
    has_imatrix: bool = False
    quantize_output: bool = True   # False: keep output.weight in its input type (--leave-output-tensor)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    ne: Tuple[int, ...]       # ggml order: ne[0] = row length; experts are ne[2]
    type: QuantType = Q.F32   # the type it has before planning (what "keep" means)


# -- helpers ---------------------------------------------------------------------------------

_LAYER = re.compile(r"^blk\.(\d+)\.")


def layer_of(name: str) -> int:
    """The N of a ``blk.N.`` name, or -1."""
    m = _LAYER.match(name)
    return int(m.group(1)) if m else -1


def file_order(names: Iterable[str]) -> List[str]:
    """llama.cpp's tensor order: non-layer tensors first, then by layer number, then by name (bytes)."""
    return sorted(names, key=lambda n: (layer_of(n), n.encode()))


def n_dims(ne: Sequence[int]) -> int:
    """ggml_n_dims: the number of dimensions up to the last one that is not 1 (at least 1)."""
    n = len(ne)
    while n > 1 and ne[n - 1] == 1:
        n -= 1
    return max(n, 1)


def is_quantizable(name: str, ne: Sequence[int], quantize_output: bool = True) -> bool:
    """Whether llama-quantize would change this tensor's type (§4.3), for the tensors of the
    architectures we write."""
    if n_dims(ne) < 2 or not name.endswith("weight"):
        return False
    if "_norm.weight" in name or "ffn_gate_inp.weight" in name:
        return False
    if name == "output.weight" and not quantize_output:
        return False
    return True


def category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name == "token_embd.weight":
        return "token_embd"
    for key, cat in (("attn_qkv.weight", "attn_v"), ("attn_kv_b.weight", "attn_v"), ("attn_v.weight", "attn_v"),
                     ("attn_k.weight", "attn_k"), ("attn_q.weight", "attn_q"), ("attn_output.weight", "attn_output"),
                     ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"), ("ffn_down", "ffn_down")):
        if key in name:
            return cat
    return "other"


def use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _fallback(ne0: int, t: QuantType) -> QuantType:
    """Types whose block does not divide the row length fall back to a smaller block (§4.5)."""
    if ne0 % type_info(t).block_size == 0:
        return t
    table = {
        Q.IQ1_S: Q.IQ4_NL, Q.IQ1_M: Q.IQ4_NL, Q.IQ2_XXS: Q.IQ4_NL, Q.IQ2_XS: Q.IQ4_NL, Q.IQ2_S: Q.IQ4_NL,
        Q.IQ3_XXS: Q.IQ4_NL, Q.IQ3_S: Q.IQ4_NL, Q.IQ4_XS: Q.IQ4_NL,
        Q.Q2_K: Q.Q4_0, Q.Q3_K: Q.Q4_0, Q.TQ1_0: Q.Q4_0, Q.TQ2_0: Q.Q4_0,
        Q.Q4_K: Q.Q5_0, Q.Q5_K: Q.Q5_1, Q.Q6_K: Q.Q8_0,
    }
    new = table.get(t, t)
    if ne0 % type_info(new).block_size:
        new = Q.F16
    return new


# -- the mixture rules -----------------------------------------------------------------------


class _State:
    def __init__(self, n_attention_wv: int, n_layer: int):
        self.n_attention_wv = n_attention_wv
        self.i_attention_wv = 0
        self.n_layer = n_layer
        self.i_ffn = {"ffn_down": 0, "ffn_gate": 0, "ffn_up": 0}


@dataclass(frozen=True)
class _Ctx:
    """What every rule looks at besides the tensor: the preset's name and the model."""

    p: str
    model: ModelInfo
    opts: TypeOptions

    @property
    def falcon(self) -> bool:
        return self.model.arch == "falcon"

    @property
    def moe8(self) -> bool:
        return self.model.n_expert == 8


def _mixture(st: _State, t: QuantType, name: str, ne, preset: Preset, model: ModelInfo, opts: TypeOptions,
             cat: str, tied: bool) -> QuantType:
    """llama-quantize's type for one quantizable tensor of category ``cat`` (llama-quant.cpp's
    ``llama_tensor_get_type``), starting from the preset's default ``t``."""
    c = _Ctx(preset.name, model, opts)
    if cat == "output" or (tied and cat == "token_embd"):
        return _output_rule(c, t, ne)
    if cat == "token_embd":
        return _token_embd_rule(c, t)
    if c.p in _IQ_LOW:
        return _iq_low_rule(c, st, t, cat)
    if cat == "attn_v":
        return _attn_v_rule(c, st, t)
    if cat == "attn_k":
        return Q.Q8_0 if c.moe8 else {"IQ3_XS": Q.IQ3_XXS, "IQ3_XXS": Q.IQ2_S}.get(c.p, t)
    if cat == "attn_q":
        return {"IQ3_XS": Q.IQ3_XXS, "IQ3_XXS": Q.IQ2_S}.get(c.p, t)
    if cat in ("ffn_down", "ffn_gate", "ffn_up"):
        return _ffn_rule(c, st, t, name, cat)
    if cat == "attn_output":
        return _attn_output_rule(c, t)
    return t


def _output_rule(c: _Ctx, t: QuantType, ne) -> QuantType:
    if c.opts.output_tensor_type is not None:
        return c.opts.output_tensor_type
    if c.falcon or ne[0] % type_info(t).block_size:
        return Q.Q8_0
    if c.p in ("IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"):
        return Q.Q5_K
    return t if t == Q.Q8_0 else Q.Q6_K


def _token_embd_rule(c: _Ctx, t: QuantType) -> QuantType:
    if c.opts.token_embedding_type is not None:
        return c.opts.token_embedding_type
    if c.p in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
        return Q.Q2_K
    if c.p in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
        return Q.IQ3_S
    if c.p in ("TQ1_0", "TQ2_0"):
        return Q.Q4_K
    return t


def _iq_low_rule(c: _Ctx, st: _State, t: QuantType, cat: str) -> QuantType:
    """The lowest-bit presets have a rule block of their own; note that it counts ffn_down
    tensors (not layers) even for MoE models, and counts no ffn_gate/ffn_up."""
    iq2s = c.p in ("IQ2_S", "IQ2_M")
    if cat == "attn_v":
        st.i_attention_wv += 1
        if c.model.n_gqa >= 4 or c.model.n_expert >= 4:
            return Q.Q4_K
        return Q.IQ3_S if iq2s else Q.Q2_K
    if c.moe8 and cat == "attn_k":
        return Q.Q4_K
    if cat == "ffn_down":
        i = st.i_ffn["ffn_down"]
        st.i_ffn["ffn_down"] += 1
        if i < st.n_layer // 8:
            return Q.IQ3_S if iq2s else Q.Q2_K
        return t
    if cat == "attn_output":
        if c.moe8:
            return Q.Q5_K
        if c.p in ("IQ1_S", "IQ1_M"):
            return Q.IQ2_XXS
        if iq2s:
            return Q.IQ3_S
    return t


def _attn_v_rule(c: _Ctx, st: _State, t: QuantType) -> QuantType:
    p, model = c.p, c.model
    if p == "Q2_K":
        t = Q.Q4_K if model.n_gqa >= 4 else Q.Q3_K
    elif p == "Q2_K_S" and model.n_gqa >= 4:
        t = Q.Q4_K
    elif p == "IQ3_XXS":
        t = Q.Q4_K if model.n_gqa >= 4 else (Q.IQ3_S if not c.opts.has_imatrix else Q.IQ3_XXS)
    elif p in ("IQ3_XS", "IQ3_S") and model.n_gqa >= 4:
        t = Q.Q4_K
    elif p == "IQ3_M":
        t = Q.Q4_K
    elif p == "Q3_K_M":
        t = Q.Q5_K if st.i_attention_wv < 2 else Q.Q4_K
    elif p == "Q3_K_L":
        t = Q.Q5_K
    elif p in ("IQ4_NL", "IQ4_XS") and model.n_gqa >= 4:
        t = Q.Q5_K
    elif p in ("Q4_K_M", "Q5_K_M") and use_more_bits(st.i_attention_wv, st.n_attention_wv):
        t = Q.Q6_K
    elif p == "Q4_K_S" and st.i_attention_wv < 4:
        t = Q.Q5_K
    if model.is_70b and t in (Q.Q3_K, Q.Q4_K):
        t = Q.Q5_K
    if c.moe8:
        t = Q.Q8_0
    st.i_attention_wv += 1
    return t


def _ffn_rule(c: _Ctx, st: _State, t: QuantType, name: str, cat: str) -> QuantType:
    p, model, falcon = c.p, c.model, c.falcon
    # dense models: a running count per category; MoE: the layer number in the name
    i = layer_of(name) if model.n_expert > 1 else st.i_ffn[cat]
    if model.n_expert > 1 and not 0 <= i < st.n_layer:
        raise QtkValueError(f"tensor {name}: layer {i} outside [0, {st.n_layer})")
    n = st.n_layer
    st.i_ffn[cat] += 1
    if cat != "ffn_down":
        if p == "IQ3_XS" and n // 8 <= i < 7 * n // 8:
            t = Q.IQ3_XXS
        return t
    if p == "Q2_K":
        t = Q.Q3_K
    elif p == "Q2_K_S":
        if i < n // 8:
            t = Q.Q4_K
    elif p == "IQ3_XXS" and not c.opts.has_imatrix:
        t = Q.Q4_K if i < n // 8 else Q.Q3_K
    elif p == "Q3_K_M":
        t = Q.Q5_K if i < n // 16 else (Q.Q4_K if not falcon or use_more_bits(i, n) else Q.Q3_K)
    elif p == "IQ3_M" and (i < n // 8 or (c.moe8 and use_more_bits(i, n))):
        t = Q.Q4_K
    elif p == "Q3_K_L":
        t = Q.Q4_K if falcon else Q.Q5_K
    elif p == "Q4_K_M":
        if falcon:
            t = Q.Q6_K if i < n // 16 else (Q.Q5_K if use_more_bits(i, n) else Q.Q4_K)
        elif use_more_bits(i, n):
            t = Q.Q6_K
    elif i < n // 8 and p in ("IQ4_NL", "IQ4_XS") and not c.opts.has_imatrix:
        t = Q.Q5_K
    elif p == "Q5_K_M" and use_more_bits(i, n):
        t = Q.Q6_K
    elif p == "Q4_K_S" and not falcon and i < n // 8:
        t = Q.Q5_K
    elif p in ("Q4_0", "Q5_0") and c.opts.has_imatrix and i < n // 8:
        t = Q.Q4_1 if p == "Q4_0" else Q.Q5_1
    return t


def _attn_output_rule(c: _Ctx, t: QuantType) -> QuantType:
    p = c.p
    if not c.falcon:
        if c.moe8:
            if p in ("Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ3_S",
                     "IQ3_M", "IQ4_XS"):
                t = Q.Q5_K
        else:
            t = {"Q2_K": Q.Q3_K, "IQ3_XXS": Q.IQ3_S, "Q3_K_M": Q.Q4_K, "Q3_K_L": Q.Q5_K, "IQ3_M": Q.Q4_K}.get(p, t)
    elif p == "Q3_K_L":
        t = Q.Q4_K
    return t


def choose_types(tensors: Sequence[TensorSpec], preset, model: ModelInfo,
               options: Optional[TypeOptions] = None) -> Dict[str, QuantType]:
    """The ggml type of every tensor, as llama-quantize would choose it from an F32/F16 input.

    ``tensors``: the file's tensors (any order; they are visited in llama.cpp's file order).
    Tensors that are not quantizable keep their ``type``. Pure: no I/O, no global state.
    """
    preset = preset if isinstance(preset, Preset) else get_preset(preset)
    opts = options or TypeOptions()
    patterns = [(re.compile(pat), typ) for pat, typ in opts.tensor_types]
    by_name = {t.name: t for t in tensors}
    if len(by_name) != len(tensors):
        raise QtkValueError("duplicate tensor names in the plan")
    order = file_order(by_name)
    tied = "output.weight" not in by_name
    n_wv = sum(1 for n in order if category(n) == "attn_v")
    st = _State(n_wv, model.n_layer)
    default = preset.default
    default_quantized = type_info(default).is_quantized
    result: Dict[str, QuantType] = {}
    for name in order:
        spec = by_name[name]
        ne = tuple(int(d) for d in spec.ne)
        if not is_quantizable(name, ne, opts.quantize_output):
            result[name] = spec.type
            continue
        cat = category(name)
        if opts.token_embedding_type is not None and cat == "token_embd":
            result[name] = opts.token_embedding_type
            continue
        if opts.output_tensor_type is not None and cat == "output":
            result[name] = opts.output_tensor_type
            continue
        t = default
        if default_quantized:
            manual = False
            for rx, typ in patterns:
                if rx.search(name):
                    t, manual = typ, True
                    break
            if not manual and not opts.pure:
                t = _mixture(st, t, name, ne, preset, model, opts, cat, tied)
            t = _fallback(ne[0], t)
        result[name] = t
    return result


def parse_tensor_types(items: Sequence[Union[str, Tuple[str, Any]]]) -> List[Tuple[str, QuantType]]:
    """``["attn_v=q8_0", ...]`` (``--tensor-type`` / recipe lines) or ``[(regex, type), ...]`` ->
    [(regex, QuantType)], every regex compiled and every type one this build can produce."""
    out = []
    for item in items or ():
        if isinstance(item, str):
            if "=" not in item:
                raise QtkValueError(f"--tensor-type {item!r}: expected REGEX=TYPE, e.g. 'attn_v=q8_0'")
            pat, typ = item.rsplit("=", 1)
        else:
            pat, typ = item
        try:
            re.compile(pat)
        except re.error as exc:
            raise QtkValueError(f"--tensor-type {pat!r}: not a valid regular expression: {exc}") from None
        out.append((pat, producible_type(typ, f"--tensor-type {pat}")))
    return out


def requires_imatrix(name: str, t: QuantType, preset) -> bool:
    """llama-quantize refuses these tensors without importance data (§4.5)."""
    preset = preset if isinstance(preset, Preset) else get_preset(preset)
    if name in ("token_embd.weight", "output.weight"):
        return False
    if t in (Q.IQ3_XXS, Q.IQ2_XXS, Q.IQ2_XS, Q.IQ2_S, Q.IQ1_M, Q.IQ1_S):
        return True
    return t == Q.Q2_K and preset.name == "Q2_K_S"
