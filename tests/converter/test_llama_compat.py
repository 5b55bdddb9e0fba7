"""llama.cpp itself as the judge (skipped without llama-cpp-python):

* byte identity: for every preset, each tensor of ``qtoolkit convert --type P`` equals what
  ``llama_model_quantize`` writes from our F32 conversion (same type, same bytes);
* llama.cpp loads every converted file, and the F32 file's logits match transformers' (< 1e-4
  relative, skipped without torch/transformers).
"""

import os

import numpy as np
import pytest
from tests.support.paths import ALL_ARCHS

llama_cpp = pytest.importorskip("llama_cpp")

import qtoolkit  # noqa: E402
from qtoolkit.io.gguf_reader import GGUFFile  # noqa: E402
from qtoolkit.presets import MAIN_PRESETS, PRESETS  # noqa: E402
from tests.support import llama_ref  # noqa: E402

ALL_PRESETS = [p for p in MAIN_PRESETS if p != "Q2_K_S"]  # Q2_K_S needs an imatrix (tested below)
IQ_PRESETS = [p for p in PRESETS if p not in MAIN_PRESETS]  # most need an imatrix: tested with one
# rows of 320 and 640 exercise the shape fallbacks; mixtral with 8 experts the MoE-8 rules
SHAPES = {"mixtral": dict(experts=8, ff=320), "qwen3moe": dict(moe_ff=320), "qwen2moe": dict(moe_ff=320, shared_ff=640)}
STATS = {"compared": 0, "identical": 0}


def compare(ours, ref):
    a, b = GGUFFile(ours), GGUFFile(ref)
    try:
        assert [t.name for t in a.tensors] == [t.name for t in b.tensors]
        bad = []
        for x, y in zip(a.tensors, b.tensors):
            STATS["compared"] += 1
            if x.type_id != y.type_id or not np.array_equal(a.data(x), b.data(y)):
                bad.append((x.name, x.type_name, y.type_name))
            else:
                STATS["identical"] += 1
        assert not bad, bad
        return len(a.tensors)
    finally:
        a.close()
        b.close()


@pytest.fixture(scope="module")
def f32_files(checkpoints, tmp_path_factory):
    cache = {}

    def get(arch, layers=4):
        if (arch, layers) not in cache:
            d = checkpoints(arch, layers=layers, **SHAPES.get(arch, dict(ff=640)))
            out = str(tmp_path_factory.mktemp("f32") / f"{arch}.gguf")
            qtoolkit.convert(d, out, "F32")
            cache[(arch, layers)] = (d, out)
        return cache[(arch, layers)]
    return get


def _identity(tmp_path, f32_files, arch, presets, **opts):
    d, f32 = f32_files(arch)
    for preset in presets:
        ours, ref = str(tmp_path / f"{preset}.gguf"), str(tmp_path / f"{preset}.ref.gguf")
        qtoolkit.convert(d, ours, preset, **opts)
        llama_ref.quantize_file(f32, ref, PRESETS[preset].ftype)
        compare(ours, ref)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_byte_identical_to_llama_quantize_every_preset(tmp_path, f32_files, arch):
    _identity(tmp_path, f32_files, arch, ALL_PRESETS)


def test_byte_identical_with_overrides(tmp_path, f32_files):
    d, f32 = f32_files("qwen3moe")
    cases = [
        dict(tensor_types=["ffn_down=q8_0", r"blk\.[01]\.attn_v=q6_k"], preset="Q4_K_M",
             ref=dict(tensor_types=[("ffn_down", 8), (r"blk\.[01]\.attn_v", 14)])),
        dict(output_tensor_type="q8_0", token_embedding_type="q4_0", preset="Q3_K_L",
             ref=dict(output_tensor_type=8, token_embedding_type=2)),
        dict(pure=True, preset="Q5_K_M", ref=dict(pure=True)),
    ]
    for i, c in enumerate(cases):
        ours, ref = str(tmp_path / f"{i}.gguf"), str(tmp_path / f"{i}.ref.gguf")
        preset, refopts = c.pop("preset"), c.pop("ref")
        qtoolkit.convert(d, ours, preset, **c)
        llama_ref.quantize_file(f32, ref, PRESETS[preset].ftype, **refopts)
        compare(ours, ref)


def write_gguf_imatrix(path, entries, counts):
    """A llama-imatrix GGUF file: NAME.in_sum2 (n_mat, n) and NAME.counts (n_mat, 1)."""
    import gguf

    w = gguf.GGUFWriter(path, arch="")
    w.kv_data[0].pop("general.architecture", None)
    w.add_string("general.type", "imatrix")
    w.add_array("imatrix.datasets", ["synthetic"])
    w.add_uint32("imatrix.chunk_count", 10)
    w.add_uint32("imatrix.chunk_size", 512)
    for name in sorted(entries):
        w.add_tensor(name + ".counts", np.asarray(counts[name], dtype=np.float32).reshape(-1, 1))
        w.add_tensor(name + ".in_sum2", np.asarray(entries[name], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _imatrix_for(d, tmp_path):
    """A GGUF imatrix for every weight matrix of the model in ``d`` (expert 1 never routed to),
    and the mean weights llama-quantize should receive."""
    plan = qtoolkit.convert(d, None, "F32", dry_run=True)
    rng = np.random.default_rng(3)
    sums, counts, means = {}, {}, {}
    for t in plan["tensors"]:
        if len(t["ne"]) < 2 or "norm" in t["name"] or "gate_inp" in t["name"] or t["name"] == "token_embd.weight":
            continue
        n, n_mat = t["ne"][0], (t["ne"][2] if len(t["ne"]) > 2 else 1)
        s = rng.gamma(2.0, 1.0, size=(n_mat, n)).astype(np.float32) * 40
        c = np.full(n_mat, 40.0, dtype=np.float32)
        if n_mat > 1:
            c[1] = 0.0
        sums[t["name"]], counts[t["name"]] = s, c
        m = s / np.maximum(c, 1)[:, None]
        m[c == 0] = 1.0
        means[t["name"]] = m
    imf = str(tmp_path / "imatrix.gguf")
    write_gguf_imatrix(imf, sums, counts)
    return imf, means


@pytest.mark.parametrize("preset", ["Q4_K_M", "Q4_0", "IQ4_XS", "Q2_K_S", "Q5_1", "Q6_K"] + IQ_PRESETS)
def test_byte_identical_with_an_importance_matrix(tmp_path, f32_files, preset):
    """Per-expert slices, an expert with count 0 (uniform weights), the imatrix-dependent rules,
    and the IQ1/IQ2/IQ3 presets (which need an imatrix)."""
    d, f32 = f32_files("qwen3moe", layers=8) if preset in IQ_PRESETS else f32_files("qwen3moe")
    imf, means = _imatrix_for(d, tmp_path)
    ours, ref = str(tmp_path / "o.gguf"), str(tmp_path / "r.gguf")
    rep = qtoolkit.convert(d, ours, preset, imatrix=imf)
    assert rep["imatrix"]["used"] == len(means) and rep["imatrix"]["zero_count_experts"]
    llama_ref.quantize_file(f32, ref, PRESETS[preset].ftype, imatrix=means)
    compare(ours, ref)


@pytest.mark.parametrize("preset", ["IQ3_S", "IQ3_M", "TQ1_0", "TQ2_0"])
def test_byte_identical_iq_presets_without_imatrix(tmp_path, f32_files, preset):
    _identity(tmp_path, f32_files, "llama", [preset])


def test_legacy_dat_imatrix_equals_gguf_imatrix(tmp_path, f32_files):
    import struct

    d, _ = f32_files("qwen3moe")
    plan = qtoolkit.convert(d, None, "F32", dry_run=True)
    rng = np.random.default_rng(5)
    sums, counts = {}, {}
    blob = b""
    names = [t for t in plan["tensors"] if len(t["ne"]) >= 2 and "norm" not in t["name"] and "gate_inp" not in t["name"]]
    for t in names:
        n, n_mat = t["ne"][0], (t["ne"][2] if len(t["ne"]) > 2 else 1)
        s = rng.gamma(2.0, 1.0, size=(n_mat, n)).astype(np.float32)
        sums[t["name"]], counts[t["name"]] = s * 7, np.full(n_mat, 7.0, np.float32)
        nb = t["name"].encode()
        blob += struct.pack("<i", len(nb)) + nb + struct.pack("<ii", 7, s.size) + (s * 7).astype("<f4").tobytes()
    dat = str(tmp_path / "imatrix.dat")
    with open(dat, "wb") as f:
        f.write(struct.pack("<i", len(names)) + blob + struct.pack("<i", 7) + struct.pack("<i", 4) + b"text")
    g = str(tmp_path / "imatrix.gguf")
    write_gguf_imatrix(g, sums, counts)
    a, b = str(tmp_path / "a.gguf"), str(tmp_path / "b.gguf")
    qtoolkit.convert(d, a, "IQ4_NL", imatrix=dat)
    qtoolkit.convert(d, b, "IQ4_NL", imatrix=g)
    ga, gb = GGUFFile(a), GGUFFile(b)
    for x, y in zip(ga.tensors, gb.tensors):
        assert np.array_equal(ga.data(x), gb.data(y)), x.name


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_llama_cpp_loads_and_logits_match_transformers(tmp_path, checkpoints, arch):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    d = checkpoints(arch, dtype="f32", experts=8 if arch == "mixtral" else 4)
    f32 = str(tmp_path / "f32.gguf")
    qtoolkit.convert(d, f32, "F32")
    toks = [int(t) for t in np.random.default_rng(1).integers(0, 300, 24)]
    ref = llama_ref.logits(f32, toks)
    torch.set_num_threads(1)
    model = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    with torch.no_grad():
        hf = model(torch.tensor([toks])).logits[0].float().numpy()
    rel = float(np.abs(ref - hf).max() / np.abs(hf).max())
    assert rel < 1e-4, rel
    # and a quantized file of the same model loads and stays close
    q = str(tmp_path / "q.gguf")
    qtoolkit.convert(d, q, "Q8_0")
    lq = llama_ref.logits(q, toks)
    assert np.isfinite(lq).all()
    # Q8_0 weights and activations; random routers flip some expert choices, hence the MoE margin
    limit = 0.3 if arch in ("mixtral", "qwen3moe", "qwen2moe") else 0.05
    assert float(np.sqrt(np.mean((lq - hf) ** 2) / np.mean(hf ** 2))) < limit


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_llama_cpp_loads_every_main_preset(tmp_path, checkpoints, arch):
    d = checkpoints(arch, experts=8 if arch == "mixtral" else 4)
    toks = [3, 17, 100, 250, 5]
    base = None
    for preset in ["BF16", "Q4_K_M", "Q3_K_S", "IQ4_XS"]:
        out = str(tmp_path / f"{preset}.gguf")
        qtoolkit.convert(d, out, preset)
        lg = llama_ref.logits(out, toks)
        assert lg.shape == (5, 320) and np.isfinite(lg).all()
        if base is None:
            base = lg
        else:
            assert np.corrcoef(lg.ravel(), base.ravel())[0, 1] > 0.5, preset  # tiny random models: a sanity bound


def test_report_byte_identity_count():
    print(f"\nbyte identity: {STATS['identical']} of {STATS['compared']} tensors identical")


HF_CONFIGS = {
    "llama": ("LlamaConfig", dict(intermediate_size=512)),
    "mixtral": ("MixtralConfig", dict(intermediate_size=256, num_local_experts=4, num_experts_per_tok=2)),
    "qwen2moe": ("Qwen2MoeConfig", dict(intermediate_size=512, moe_intermediate_size=256, num_experts=4,
                                        shared_expert_intermediate_size=512, num_experts_per_tok=2)),
    "qwen3moe": ("Qwen3MoeConfig", dict(intermediate_size=512, moe_intermediate_size=256, num_experts=4,
                                        num_experts_per_tok=2, head_dim=64, norm_topk_prob=True)),
}


@pytest.mark.parametrize("arch", sorted(HF_CONFIGS))
def test_checkpoints_saved_by_transformers(tmp_path, arch):
    """What transformers itself writes (its current names and config spellings) converts, and the
    F32 file's logits match the model that wrote it."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tools.fixtures.synth_checkpoint import make_tokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    cls, extra = HF_CONFIGS[arch]
    cfg = getattr(transformers, cls)(hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2, vocab_size=320, **extra)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    d = str(tmp_path / "hf")
    model.save_pretrained(d)
    make_tokenizer(d, 320)
    out = str(tmp_path / "f32.gguf")
    qtoolkit.convert(d, out, "F32")
    toks = [int(t) for t in np.random.default_rng(2).integers(0, 300, 16)]
    ref = llama_ref.logits(out, toks)
    torch.set_num_threads(1)
    with torch.no_grad():
        hf = model(torch.tensor([toks])).logits[0].float().numpy()
    assert float(np.abs(ref - hf).max() / np.abs(hf).max()) < 1e-4


@pytest.mark.parametrize("style", ["qwen2", "llama-bpe", "smaug-bpe", "gpt-2"])
def test_llama_cpp_tokenizes_like_hugging_face(tmp_path, style):
    """The pre-tokenizer name derived from the split regex makes llama.cpp split text exactly as
    the tokenizers library does."""
    tokenizers = pytest.importorskip("tokenizers")
    from tools.fixtures.synth_checkpoint import make_checkpoint

    d = make_checkpoint(str(tmp_path / "m"), "qwen3", layers=1, tokenizer_style=style)
    out = str(tmp_path / "m.gguf")
    rep = qtoolkit.convert(d, out, "Q8_0")
    assert rep["tokenizer_pre"] == style
    text = ("The theater's 12345 tickets... and then\n\n  it rained: 'Ve the END!  <|im_end|>\tin 2024, "
            "at the inn on the hill; he said THE answer is 42 ")
    ref = tokenizers.Tokenizer.from_file(f"{d}/tokenizer.json").encode(text, add_special_tokens=False).ids
    llm = llama_cpp.Llama(model_path=out, n_ctx=256, verbose=False, vocab_only=True)
    try:
        ours = llm.tokenize(text.encode(), add_bos=False, special=True)
    finally:
        llm.close()
    assert ours == ref
