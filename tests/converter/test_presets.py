"""choose_types: llama-quantize's mixture rules as a pure function (shared/docs/ggml-formats.md §4)."""

import pytest

from qtoolkit.errors import QtkValueError
from qtoolkit.quants import QuantType as Q
from qtoolkit.presets import (
    MAIN_PRESETS, PRESETS, ModelInfo, TypeOptions, TensorSpec, file_order, get_preset, choose_types, use_more_bits,
)


def dense(n_layer=8, D=4096, F=14336, V=32000, Hkv_dim=1024, tied=False, attn_qkv=False):
    t = [TensorSpec("token_embd.weight", (D, V)), TensorSpec("output_norm.weight", (D,))]
    if not tied:
        t.append(TensorSpec("output.weight", (D, V)))
    for i in range(n_layer):
        b = f"blk.{i}."
        t += [TensorSpec(b + "attn_norm.weight", (D,)), TensorSpec(b + "ffn_norm.weight", (D,)),
              TensorSpec(b + "attn_q.weight", (D, D)), TensorSpec(b + "attn_k.weight", (D, Hkv_dim)),
              TensorSpec(b + "attn_v.weight", (D, Hkv_dim)), TensorSpec(b + "attn_output.weight", (D, D)),
              TensorSpec(b + "ffn_gate.weight", (D, F)), TensorSpec(b + "ffn_up.weight", (D, F)),
              TensorSpec(b + "ffn_down.weight", (F, D))]
    return t


def moe(n_layer=8, D=2048, Fe=768, E=128, V=1000):
    t = [TensorSpec("token_embd.weight", (D, V)), TensorSpec("output_norm.weight", (D,)), TensorSpec("output.weight", (D, V))]
    for i in range(n_layer):
        b = f"blk.{i}."
        t += [TensorSpec(b + "attn_q.weight", (D, 4096)), TensorSpec(b + "attn_k.weight", (D, 512)),
              TensorSpec(b + "attn_v.weight", (D, 512)), TensorSpec(b + "attn_output.weight", (4096, D)),
              TensorSpec(b + "ffn_gate_inp.weight", (D, E)), TensorSpec(b + "ffn_gate_exps.weight", (D, Fe, E)),
              TensorSpec(b + "ffn_up_exps.weight", (D, Fe, E)), TensorSpec(b + "ffn_down_exps.weight", (Fe, D, E)),
              TensorSpec(b + "attn_q_norm.weight", (128,))]
    return t


LLAMA8B = ModelInfo("llama", 8, 32, 8)


def test_use_more_bits_matches_the_formula():
    n = 32
    picked = [i for i in range(n) if use_more_bits(i, n)]
    assert picked[:4] == [0, 1, 2, 3] and 31 in picked and 6 in picked and 5 not in picked


def test_file_order_is_llama_cpps():
    names = ["blk.10.attn_k.weight", "blk.2.ffn_up.weight", "token_embd.weight", "blk.2.attn_q.weight", "output.weight"]
    assert file_order(names) == ["output.weight", "token_embd.weight", "blk.2.attn_q.weight", "blk.2.ffn_up.weight",
                                 "blk.10.attn_k.weight"]


def test_q4_k_m_dense_summary_table():
    types = choose_types(dense(), "Q4_K_M", LLAMA8B)
    assert types["token_embd.weight"] == Q.Q4_K
    assert types["output.weight"] == Q.Q6_K
    assert types["output_norm.weight"] == Q.F32
    n = 8
    for i in range(n):
        expect = Q.Q6_K if use_more_bits(i, n) else Q.Q4_K
        assert types[f"blk.{i}.attn_v.weight"] == expect
        assert types[f"blk.{i}.ffn_down.weight"] == expect
        assert types[f"blk.{i}.attn_q.weight"] == Q.Q4_K
        assert types[f"blk.{i}.ffn_gate.weight"] == Q.Q4_K


def test_q3_k_m_and_q2_k_bumps():
    t = choose_types(dense(n_layer=16), "Q3_K_M", ModelInfo("llama", 16, 32, 8))
    assert [t[f"blk.{i}.attn_v.weight"] for i in range(3)] == [Q.Q5_K, Q.Q5_K, Q.Q4_K]
    assert t["blk.0.ffn_down.weight"] == Q.Q5_K and t["blk.1.ffn_down.weight"] == Q.Q4_K
    assert t["blk.3.attn_output.weight"] == Q.Q4_K
    t = choose_types(dense(), "Q2_K", LLAMA8B)
    assert t["blk.0.attn_v.weight"] == Q.Q4_K and t["blk.0.ffn_down.weight"] == Q.Q3_K
    t = choose_types(dense(), "Q2_K", ModelInfo("llama", 8, 32, 32))  # no GQA
    assert t["blk.0.attn_v.weight"] == Q.Q3_K


def test_tied_embeddings_take_the_output_rule():
    t = choose_types(dense(tied=True), "Q4_K_M", LLAMA8B)
    assert t["token_embd.weight"] == Q.Q6_K
    t = choose_types(dense(tied=True), "Q8_0", LLAMA8B)
    assert t["token_embd.weight"] == Q.Q8_0


def test_moe_rules_use_layer_numbers_and_keep_router_f32():
    m = ModelInfo("qwen3moe", 8, 32, 4, 128)
    t = choose_types(moe(), "Q4_K_M", m)
    for i in range(8):
        assert t[f"blk.{i}.ffn_gate_inp.weight"] == Q.F32
        assert t[f"blk.{i}.ffn_down_exps.weight"] == (Q.Q6_K if use_more_bits(i, 8) else Q.Q4_K)
        assert t[f"blk.{i}.ffn_gate_exps.weight"] == Q.Q4_K
    # Fe = 768 is 3 x 256: fine; 1408 (Qwen2-57B) is not: Q4_K -> Q5_0, Q6_K -> Q8_0
    t = choose_types(moe(Fe=1408), "Q4_K_M", m)
    assert t["blk.0.ffn_down_exps.weight"] == Q.Q8_0 and t["blk.2.ffn_down_exps.weight"] == Q.Q5_0
    assert t["blk.0.ffn_gate_exps.weight"] == Q.Q4_K  # ne0 = D


def test_moe8_bumps_attention():
    m = ModelInfo("llama", 8, 32, 8, 8)
    t = choose_types(moe(E=8), "Q4_K_M", m)
    assert t["blk.0.attn_v.weight"] == Q.Q8_0 and t["blk.0.attn_k.weight"] == Q.Q8_0
    assert t["blk.0.attn_output.weight"] == Q.Q5_K


def test_70b_bumps_attn_v():
    m = ModelInfo("llama", 80, 64, 8)
    t = choose_types(dense(n_layer=80, D=256, F=512, V=300, Hkv_dim=256), "Q3_K_S", m)
    assert t["blk.40.attn_v.weight"] == Q.Q5_K
    assert m.is_70b and not ModelInfo("llama", 80, 64, 64).is_70b and ModelInfo("qwen2", 80, 64, 8).is_70b


def test_fallbacks_for_rows_not_a_multiple_of_256():
    t = choose_types([TensorSpec("blk.0.ffn_down.weight", (1408, 64)), TensorSpec("blk.0.ffn_up.weight", (48, 64)),
                    TensorSpec("blk.0.ffn_gate.weight", (40, 64))], "Q2_K", ModelInfo("llama", 1, 4, 4))
    assert t["blk.0.ffn_down.weight"] == Q.Q4_0          # Q3_K -> Q4_0
    assert t["blk.0.ffn_up.weight"] == Q.F16             # not even a multiple of 32
    t = choose_types([TensorSpec("output.weight", (1408, 64)), TensorSpec("blk.0.attn_q.weight", (1408, 64))],
                   "Q5_K_S", ModelInfo("llama", 1, 4, 4))
    assert t["output.weight"] == Q.Q8_0 and t["blk.0.attn_q.weight"] == Q.Q5_1


def test_overrides_pure_and_forced_types():
    opts = TypeOptions(tensor_types=[(r"attn_v", Q.Q8_0), (r"attn", Q.Q5_K)], output_tensor_type=Q.Q8_0,
                       token_embedding_type=Q.Q6_K)
    t = choose_types(dense(), "Q4_K_M", LLAMA8B, opts)
    assert t["blk.1.attn_v.weight"] == Q.Q8_0 and t["blk.1.attn_q.weight"] == Q.Q5_K
    assert t["output.weight"] == Q.Q8_0 and t["token_embd.weight"] == Q.Q6_K
    t = choose_types(dense(), "Q4_K_M", LLAMA8B, TypeOptions(pure=True))
    assert t["output.weight"] == Q.Q4_K and t["blk.0.attn_v.weight"] == Q.Q4_K and t["blk.0.attn_norm.weight"] == Q.F32
    # float presets run no rules, and --tensor-type does not apply to them (as in llama-quantize)
    t = choose_types(dense(), "F16", LLAMA8B, TypeOptions(tensor_types=[("attn", Q.Q8_0)]))
    assert t["blk.0.attn_q.weight"] == Q.F16 and t["output.weight"] == Q.F16


def test_imatrix_changes_q4_0_ffn_down():
    m = ModelInfo("llama", 16, 32, 8)
    a = choose_types(dense(n_layer=16), "Q4_0", m)
    b = choose_types(dense(n_layer=16), "Q4_0", m, TypeOptions(has_imatrix=True))
    assert a["blk.0.ffn_down.weight"] == Q.Q4_0 and b["blk.0.ffn_down.weight"] == Q.Q4_1
    assert b["blk.2.ffn_down.weight"] == Q.Q4_0


def test_presets_table_and_aliases():
    assert len(PRESETS) == 32 and len(MAIN_PRESETS) == 20
    assert get_preset("q4_k").name == "Q4_K_M" and get_preset("Q4_K_M").ftype == 15
    with pytest.raises(QtkValueError, match="unknown preset"):
        get_preset("Q7_K")


def test_low_bit_iq_presets():
    t = choose_types(dense(n_layer=16), "IQ2_XXS", ModelInfo("llama", 16, 32, 8))
    assert t["output.weight"] == Q.Q5_K and t["token_embd.weight"] == Q.Q2_K
    assert t["blk.0.attn_v.weight"] == Q.Q4_K and t["blk.0.ffn_down.weight"] == Q.Q2_K
    assert t["blk.2.ffn_down.weight"] == Q.IQ2_XXS and t["blk.2.attn_q.weight"] == Q.IQ2_XXS
    t = choose_types(dense(n_layer=16), "IQ2_M", ModelInfo("llama", 16, 32, 32))
    assert t["blk.0.attn_v.weight"] == Q.IQ3_S and t["blk.5.attn_output.weight"] == Q.IQ3_S
    assert t["token_embd.weight"] == Q.IQ3_S and t["blk.5.ffn_up.weight"] == Q.IQ2_S
    t = choose_types(dense(n_layer=16), "IQ3_XS", ModelInfo("llama", 16, 32, 8), TypeOptions(has_imatrix=True))
    assert t["blk.0.ffn_up.weight"] == Q.IQ3_S and t["blk.2.ffn_up.weight"] == Q.IQ3_XXS
    assert t["blk.15.ffn_gate.weight"] == Q.IQ3_S and t["blk.3.attn_k.weight"] == Q.IQ3_XXS
    t = choose_types(dense(n_layer=16), "TQ1_0", ModelInfo("llama", 16, 32, 8))
    assert t["token_embd.weight"] == Q.Q4_K and t["output.weight"] == Q.Q6_K and t["blk.1.ffn_up.weight"] == Q.TQ1_0
    # MoE: the IQ2 block counts ffn_down tensors, not layers
    m = ModelInfo("qwen2moe", 16, 16, 16, 60)
    specs = []
    for i in range(16):
        specs += [TensorSpec(f"blk.{i}.ffn_down_exps.weight", (1536, 1024, 60)),
                  TensorSpec(f"blk.{i}.ffn_down_shexp.weight", (1536, 1024))]
    t = choose_types(specs, "IQ2_XS", m)
    assert t["blk.0.ffn_down_exps.weight"] == Q.Q2_K and t["blk.0.ffn_down_shexp.weight"] == Q.Q2_K
    assert t["blk.1.ffn_down_exps.weight"] == Q.IQ2_XS
