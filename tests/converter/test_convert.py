"""qtoolkit convert on small random checkpoints of every architecture: names, shapes, types,
metadata (read back with gguf-py's own reader) and values."""

import json
import os

import gguf
import numpy as np
import pytest

import qtoolkit
from qtoolkit import QuantType as Q
from qtoolkit.cli import main
from qtoolkit.converter.archs.base import permute_rows
from qtoolkit.io.safetensors_reader import Checkpoint
from tests.support.paths import ALL_ARCHS

# relative squared error ceilings on Gaussian-like weights, per type
CEILING = {"F32": 0.0, "F16": 1e-6, "BF16": 2e-5, "Q8_0": 1e-4, "Q6_K": 1e-3, "Q5_K": 3e-3, "Q5_0": 4e-3,
           "Q5_1": 3e-3, "Q4_K": 1.2e-2, "Q4_0": 1.6e-2, "Q4_1": 1.2e-2, "IQ4_NL": 1.2e-2, "IQ4_XS": 1.2e-2,
           "Q3_K": 5e-2, "Q2_K": 1.5e-1}

EXPECTED_KEYS = {
    "general.architecture": gguf.GGUFValueType.STRING, "general.file_type": gguf.GGUFValueType.UINT32,
    "general.quantization_version": gguf.GGUFValueType.UINT32,
    "{a}.block_count": gguf.GGUFValueType.UINT32, "{a}.context_length": gguf.GGUFValueType.UINT32,
    "{a}.embedding_length": gguf.GGUFValueType.UINT32, "{a}.feed_forward_length": gguf.GGUFValueType.UINT32,
    "{a}.attention.head_count": gguf.GGUFValueType.UINT32, "{a}.attention.head_count_kv": gguf.GGUFValueType.UINT32,
    "{a}.rope.freq_base": gguf.GGUFValueType.FLOAT32,
    "{a}.attention.layer_norm_rms_epsilon": gguf.GGUFValueType.FLOAT32,
    "{a}.attention.key_length": gguf.GGUFValueType.UINT32,
    "tokenizer.ggml.model": gguf.GGUFValueType.STRING, "tokenizer.ggml.pre": gguf.GGUFValueType.STRING,
    "tokenizer.ggml.tokens": gguf.GGUFValueType.ARRAY, "tokenizer.ggml.token_type": gguf.GGUFValueType.ARRAY,
    "tokenizer.ggml.merges": gguf.GGUFValueType.ARRAY, "tokenizer.ggml.eos_token_id": gguf.GGUFValueType.UINT32,
}
GGUF_ARCH = {"llama": "llama", "mistral": "llama", "mixtral": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
             "qwen3moe": "qwen3moe", "qwen2moe": "qwen2moe"}


def expected_names(arch, layers=2):
    names = {"token_embd.weight", "output_norm.weight"}
    if arch not in ("qwen3", "qwen3moe"):
        names.add("output.weight")
    for i in range(layers):
        b = f"blk.{i}."
        names |= {b + n for n in ("attn_norm.weight", "ffn_norm.weight", "attn_q.weight", "attn_k.weight",
                                  "attn_v.weight", "attn_output.weight")}
        if arch in ("qwen2", "qwen2moe"):
            names |= {b + "attn_q.bias", b + "attn_k.bias", b + "attn_v.bias"}
        if arch in ("qwen3", "qwen3moe"):
            names |= {b + "attn_q_norm.weight", b + "attn_k_norm.weight"}
        if arch in ("mixtral", "qwen3moe", "qwen2moe"):
            names |= {b + "ffn_gate_inp.weight", b + "ffn_gate_exps.weight", b + "ffn_up_exps.weight",
                      b + "ffn_down_exps.weight"}
        else:
            names |= {b + "ffn_gate.weight", b + "ffn_up.weight", b + "ffn_down.weight"}
        if arch == "qwen2moe":
            names |= {b + "ffn_gate_shexp.weight", b + "ffn_up_shexp.weight", b + "ffn_down_shexp.weight",
                      b + "ffn_gate_inp_shexp.weight"}
    return names


def source_of(ck, arch, name):
    """The float32 array our output tensor should hold (numpy order), from the checkpoint."""
    m = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
         "output.weight": "lm_head.weight"}
    def read(n):
        x = ck.raw(n)
        if x.dtype == np.uint16:
            return (x.astype(np.uint32) << 16).view(np.float32)
        return x.astype(np.float32)
    if name in m:
        return read(m[name])
    _, i, rest = name.split(".", 2)
    p = f"model.layers.{i}."
    simple = {"attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
              "attn_output.weight": "self_attn.o_proj.weight", "attn_q_norm.weight": "self_attn.q_norm.weight",
              "attn_k_norm.weight": "self_attn.k_norm.weight", "ffn_gate.weight": "mlp.gate_proj.weight",
              "ffn_up.weight": "mlp.up_proj.weight", "ffn_down.weight": "mlp.down_proj.weight",
              "ffn_gate_shexp.weight": "mlp.shared_expert.gate_proj.weight",
              "ffn_up_shexp.weight": "mlp.shared_expert.up_proj.weight",
              "ffn_down_shexp.weight": "mlp.shared_expert.down_proj.weight"}
    if rest in simple:
        return read(p + simple[rest])
    if rest == "ffn_gate_inp_shexp.weight":
        return read(p + "mlp.shared_expert_gate.weight").reshape(-1)
    if rest == "ffn_gate_inp.weight":
        return read(p + ("block_sparse_moe.gate.weight" if arch == "mixtral" else "mlp.gate.weight"))
    if rest.startswith("attn_"):
        proj, kind = rest[5], rest.split(".")[1]
        x = read(p + f"self_attn.{proj}_proj.{kind}")
        if arch in ("llama", "mistral", "mixtral") and proj in "qk":
            heads = 4 if proj == "q" else 2
            x = x[permute_rows(x.shape[0], heads)]
        return x
    proj = rest.split("_")[1]
    E = 8 if arch == "mixtral" else 4
    if arch == "mixtral":
        w = {"gate": "w1", "up": "w3", "down": "w2"}[proj]
        return np.stack([read(f"{p}block_sparse_moe.experts.{e}.{w}.weight") for e in range(E)])
    return np.stack([read(f"{p}mlp.experts.{e}.{proj}_proj.weight") for e in range(E)])


def values(reader_tensor):
    t = reader_tensor
    qt = Q(int(t.tensor_type))
    data = np.ascontiguousarray(t.data)
    if qt == Q.F32:
        return data.astype(np.float32)
    if qt == Q.F16:
        return data.astype(np.float32)
    return qtoolkit.dequantize(data.view(np.uint8), qt)


@pytest.mark.parametrize("arch", ALL_ARCHS)
@pytest.mark.parametrize("preset", ["Q4_K_M", "F32"])
def test_every_architecture_converts_and_reads_back(tmp_path, checkpoints, arch, preset):
    kw = {"experts": 8} if arch == "mixtral" else {}
    d = checkpoints(arch, **kw)
    out = str(tmp_path / "m.gguf")
    rep = qtoolkit.convert(d, out, preset)
    r = gguf.GGUFReader(out)
    names = [t.name for t in r.tensors]
    assert set(names) == expected_names(arch)
    a = GGUF_ARCH[arch]
    for key, vt in EXPECTED_KEYS.items():
        f = r.fields[key.format(a=a)]
        assert f.types[0] == vt, key
    assert r.fields["general.architecture"].contents() == a
    assert r.fields["general.file_type"].contents() == qtoolkit.presets.get_preset(preset).ftype
    assert r.fields["tokenizer.ggml.token_type"].types[1] == gguf.GGUFValueType.INT32
    assert len(r.fields["tokenizer.ggml.tokens"].contents()) == 320
    if arch in ("mixtral", "qwen3moe", "qwen2moe"):
        assert r.fields[f"{a}.expert_count"].contents() == (8 if arch == "mixtral" else 4)
        assert r.fields[f"{a}.expert_used_count"].types[0] == gguf.GGUFValueType.UINT32
    ck = Checkpoint(d)
    by_name = {t["name"]: t for t in rep["tensors"]}
    for t in r.tensors:
        src = source_of(ck, arch, t.name)
        assert tuple(int(x) for x in t.shape) == tuple(reversed(src.shape)), t.name
        assert Q(int(t.tensor_type)).name == by_name[t.name]["type"]
        y = values(t).reshape(src.shape)
        err = float(np.sum((y.astype(np.float64) - src) ** 2) / max(np.sum(src.astype(np.float64) ** 2), 1e-30))
        assert err <= CEILING[Q(int(t.tensor_type)).name] + 1e-12, (t.name, Q(int(t.tensor_type)).name, err)
        if t.name.endswith("_norm.weight") or "ffn_gate_inp" in t.name:
            assert Q(int(t.tensor_type)) == Q.F32
    # tensor data total = report total; tensors in llama.cpp's order
    assert sum(int(t.n_bytes) for t in r.tensors) == rep["totals"]["bytes"]
    assert names == qtoolkit.presets.file_order(names)
    ck.close()


def test_dry_run_totals_equal_the_real_file(tmp_path, checkpoints):
    d = checkpoints("qwen3moe")
    dry = qtoolkit.convert(d, None, "Q3_K_M", dry_run=True)
    out = str(tmp_path / "m.gguf")
    real = qtoolkit.convert(d, out, "Q3_K_M")
    assert dry["totals"] == real["totals"] and dry["tensors"] == real["tensors"]
    assert not os.path.exists(str(tmp_path / "none.gguf"))
    r = gguf.GGUFReader(out)
    assert sum(int(t.n_bytes) for t in r.tensors) == dry["totals"]["bytes"]
    assert sum(int(t.n_elements) for t in r.tensors) == dry["totals"]["elements"]


@pytest.mark.parametrize("variant", [
    dict(fused_experts=True), dict(shards=3), dict(dtype="f16"), dict(dtype="f32"), dict(spell_new=True),
])
def test_checkpoint_variants_give_identical_files(tmp_path, checkpoints, variant):
    """Fused expert tensors, shards, dtypes and newer config spellings all land on the same GGUF."""
    base = checkpoints("qwen3moe", dtype=variant.get("dtype", "bf16"))
    other = checkpoints("qwen3moe", **variant)
    a, b = str(tmp_path / "a.gguf"), str(tmp_path / "b.gguf")
    qtoolkit.convert(base, a, "Q4_K_M")
    qtoolkit.convert(other, b, "Q4_K_M")
    ra, rb = gguf.GGUFReader(a), gguf.GGUFReader(b)
    if variant.get("fused_experts"):
        # the fused checkpoint draws its experts in another order: compare layout, not values
        assert [(t.name, list(t.shape), t.tensor_type) for t in ra.tensors] == \
               [(t.name, list(t.shape), t.tensor_type) for t in rb.tensors]
        ck = Checkpoint(other)
        gu = ck.raw("model.layers.1.mlp.experts.gate_up_proj")
        gu = (gu.astype(np.uint32) << 16).view(np.float32)
        up = {t.name: t for t in rb.tensors}["blk.1.ffn_up_exps.weight"]
        y = values(up).reshape(4, 256, 256)
        assert np.sum((y - gu[:, 256:]) ** 2) / np.sum(gu[:, 256:] ** 2) < 1.2e-2
        ck.close()
        return
    for x, y in zip(ra.tensors, rb.tensors):
        assert x.name == y.name and np.array_equal(x.data, y.data), x.name


def test_llama3_rope_scaling_writes_rope_freqs(tmp_path, checkpoints):
    d = checkpoints("llama", rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    out = str(tmp_path / "m.gguf")
    qtoolkit.convert(d, out, "Q8_0")
    r = gguf.GGUFReader(out)
    f = {t.name: t for t in r.tensors}["rope_freqs.weight"]
    assert Q(int(f.tensor_type)) == Q.F32 and list(f.shape) == [32]
    v = np.asarray(f.data)
    assert v[0] == 1.0 and v[-1] == 8.0


def test_cli_convert_inspect_quantize(tmp_path, checkpoints, capsys):
    d = checkpoints("llama")
    out = str(tmp_path / "m.gguf")
    assert main(["convert", d, "-o", out, "--type", "F16", "--quiet"]) == 0
    assert main(["convert", d, "-o", out, "--type", "Q8_0", "--json"]) == 1  # exists, no --force
    assert "already exists" in capsys.readouterr().err
    assert main(["inspect", out, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["by_type"]["F16"]["bpw"] == 16.0 and info["totals"]["tensors"] == 21
    q = str(tmp_path / "q.gguf")
    assert main(["quantize", out, q, "Q4_K_M", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    direct = qtoolkit.convert(d, None, "Q4_K_M", dry_run=True)
    assert [t["type"] for t in rep["tensors"]] == [t["type"] for t in direct["tensors"]]
    assert main(["quantize", q, str(tmp_path / "q2.gguf"), "Q2_K"]) == 1
    assert "already Q" in capsys.readouterr().err
    assert main(["quantize", q, str(tmp_path / "q2.gguf"), "Q2_K", "--allow-requantize", "--quiet"]) == 0
    assert main(["convert", d, "--dry-run", "--type", "Q5_K_M"]) == 0
    text = capsys.readouterr().out
    assert "blk.1.ffn_down.weight" in text and "bits per weight" in text


def test_quantize_command_matches_direct_conversion(tmp_path, checkpoints):
    d = checkpoints("qwen2moe")
    f32, a, b = (str(tmp_path / n) for n in ("f32.gguf", "a.gguf", "b.gguf"))
    qtoolkit.convert(d, f32, "F32")
    qtoolkit.convert(d, a, "IQ4_XS")
    from qtoolkit.converter.requantize import requantize

    requantize(f32, b, "IQ4_XS")
    ra, rb = gguf.GGUFReader(a), gguf.GGUFReader(b)
    assert [t.name for t in ra.tensors] == [t.name for t in rb.tensors]
    for x, y in zip(ra.tensors, rb.tensors):
        assert x.tensor_type == y.tensor_type and np.array_equal(x.data, y.data), x.name
    keys_a = {k: f.types for k, f in ra.fields.items() if not k.startswith("GGUF.")}
    keys_b = {k: f.types for k, f in rb.fields.items() if not k.startswith("GGUF.")}
    assert keys_a == keys_b


def test_rope_scaling_metadata_and_new_spellings(tmp_path, checkpoints):
    d = checkpoints("qwen2", spell_new=True, rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                           "original_max_position_embeddings": 1024})
    out = str(tmp_path / "m.gguf")
    qtoolkit.convert(d, out, "Q8_0")
    r = gguf.GGUFReader(out)
    assert r.fields["qwen2.rope.scaling.type"].contents() == "yarn"
    assert r.fields["qwen2.rope.scaling.factor"].contents() == 4.0
    assert r.fields["qwen2.rope.scaling.original_context_length"].contents() == 1024
    assert r.fields["qwen2.rope.freq_base"].contents() == 10000.0


def test_quantize_command_with_an_imatrix_matches_convert(tmp_path, checkpoints):
    import struct

    d = checkpoints("llama", layers=8)
    plan = qtoolkit.convert(d, None, "F32", dry_run=True)
    rng = np.random.default_rng(0)
    blob, n = b"", 0
    for t in plan["tensors"]:
        if t["name"].startswith("blk.") and len(t["ne"]) == 2:
            v = rng.gamma(2.0, 1.0, t["ne"][0]).astype("<f4")
            nb = t["name"].encode()
            blob += struct.pack("<i", len(nb)) + nb + struct.pack("<ii", 1, v.size) + v.tobytes()
            n += 1
    im = str(tmp_path / "im.dat")
    with open(im, "wb") as f:
        f.write(struct.pack("<i", n) + blob)
    f32, a, b = (str(tmp_path / x) for x in ("f32.gguf", "a.gguf", "b.gguf"))
    qtoolkit.convert(d, f32, "F32")
    rep = qtoolkit.convert(d, a, "Q4_0", imatrix=im)
    from qtoolkit.converter.requantize import requantize

    requantize(f32, b, "Q4_0", imatrix=im)
    ra, rb = gguf.GGUFReader(a), gguf.GGUFReader(b)
    types = {t.name: Q(int(t.tensor_type)).name for t in ra.tensors}
    assert types["blk.0.ffn_down.weight"] == "Q4_1" and types["blk.1.ffn_down.weight"] == "Q4_0"  # imatrix rule
    assert rep["imatrix"]["missing"] == ["output.weight", "token_embd.weight"]
    for x, y in zip(ra.tensors, rb.tensors):
        assert x.name == y.name and x.tensor_type == y.tensor_type and np.array_equal(x.data, y.data), x.name
    assert ra.fields["quantize.imatrix.entries_count"].contents() == n


def test_qwen3_235b_plan_from_headers_only(tmp_path):
    """Qwen3-235B-A22B's real shapes (94 layers x 128 experts, 36,945 checkpoint tensors, 470 GB of
    bf16) in a sparse file: --dry-run plans it from the header alone, quickly."""
    import struct
    import time

    from tools.fixtures.synth_checkpoint import make_tokenizer

    L, D, E, Fe, H, Hkv, hd, V = 94, 4096, 128, 1536, 64, 4, 128, 151936
    d = tmp_path / "q235"
    d.mkdir()
    cfg = {"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": D, "intermediate_size": 12288,
           "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": Hkv, "head_dim": hd,
           "rms_norm_eps": 1e-6, "max_position_embeddings": 40960, "vocab_size": V, "tie_word_embeddings": False,
           "rope_theta": 1000000.0, "num_experts": E, "num_experts_per_tok": 8, "moe_intermediate_size": Fe,
           "norm_topk_prob": True}
    (d / "config.json").write_text(json.dumps(cfg))
    make_tokenizer(str(d), V, "qwen2")
    shapes = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,), "lm_head.weight": (V, D)}
    for i in range(L):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (D,), p + "post_attention_layernorm.weight": (D,),
                       p + "self_attn.q_proj.weight": (H * hd, D), p + "self_attn.k_proj.weight": (Hkv * hd, D),
                       p + "self_attn.v_proj.weight": (Hkv * hd, D), p + "self_attn.o_proj.weight": (D, H * hd),
                       p + "self_attn.q_norm.weight": (hd,), p + "self_attn.k_norm.weight": (hd,),
                       p + "mlp.gate.weight": (E, D)})
        for e in range(E):
            q = f"{p}mlp.experts.{e}."
            shapes.update({q + "gate_proj.weight": (Fe, D), q + "up_proj.weight": (Fe, D), q + "down_proj.weight": (D, Fe)})
    header, off = {}, 0
    for n, s in shapes.items():
        nb = 2 * int(np.prod(s))
        header[n] = {"dtype": "BF16", "shape": list(s), "data_offsets": [off, off + nb]}
        off += nb
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(d / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        f.truncate(8 + len(h) + off)
    t = time.perf_counter()
    rep = qtoolkit.convert(str(d), None, "Q4_K_M", dry_run=True)
    assert time.perf_counter() - t < 30
    tot = rep["totals"]
    assert tot["tensors"] == 1131 and tot["elements"] == 235_093_634_560
    types = {r["name"]: r["type"] for r in rep["tensors"]}
    assert types["blk.0.ffn_down_exps.weight"] == "Q6_K" and types["blk.12.ffn_down_exps.weight"] == "Q4_K"
    assert types["blk.50.ffn_gate_inp.weight"] == "F32" and types["output.weight"] == "Q6_K"
    assert abs(tot["bpw"] - 4.837) < 0.001   # 142.1 GB of tensor data
