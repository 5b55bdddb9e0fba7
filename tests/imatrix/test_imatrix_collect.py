"""Collecting an importance matrix (qtoolkit/imatrix/collect.py, qtoolkit/model/taps.py) against two independent
computations of the same statistics on the same tokens:

* transformers with forward hooks on the Hugging Face model of the fixture (float64 sums);
* llama.cpp's own forward pass with the scheduler callback llama-imatrix installs
  (tests/llama_ref.imatrix_activations): what llama-imatrix would have collected.

Per-column sums agree within float tolerance and per-expert token counts exactly."""

import os

import numpy as np
import pytest

import qtoolkit
from qtoolkit.imatrix.collect import MIN_DENSE_TOKENS, ImatrixCollector, collect_imatrix
from qtoolkit.model.taps import ObservedExperts, ObservedLinear, observe
from tests.support.paths import DATA

FIXTURE = os.path.join(DATA, "tiny-moe")
CALIB = os.path.join(DATA, "calibration.txt")


@pytest.fixture(scope="module")
def fixture_model():
    return qtoolkit.load(FIXTURE)


@pytest.fixture(scope="module")
def calib_tokens(fixture_model):
    with open(CALIB, encoding="utf-8") as f:
        return fixture_model.tokenizer.encode(f.read())


def assert_same_stats(stats, sums, counts, rtol):
    assert sorted(sums) == stats.names()
    for name in stats.names():
        assert np.array_equal(np.rint(stats.counts[name]).astype(np.int64), np.asarray(counts[name])), name
        ref = np.asarray(sums[name], dtype=np.float64)
        err = np.abs(stats.sums[name] - ref).max() / np.abs(ref).max()
        assert err < rtol, (name, err)


def hf_activations(model_dir, tokens, ctx, n_chunk):
    """Sums and counts from transformers' Qwen3-MoE with forward pre-hooks (float64 accumulation;
    the expert hidden state recomputed in float64 from the module's own weights)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    F = torch.nn.functional
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    sums, counts = {}, {}

    def add(name, e, n_mat, rows):
        s = sums.setdefault(name, np.zeros((n_mat, rows.shape[1])))
        c = counts.setdefault(name, np.zeros(n_mat, dtype=np.int64))
        s[e] += (rows * rows).sum(0).numpy()
        c[e] += rows.shape[0]

    def dense(name):
        def hook(mod, args):
            add(name, 0, 1, args[0].reshape(-1, args[0].shape[-1]).double())
        return hook

    def experts(i):
        def hook(mod, args):
            x, idx = args[0].double(), args[1]
            for e in range(mod.num_experts):
                tok, _slot = torch.where(idx == e)
                xe = x[tok]
                g, u = F.linear(xe, mod.gate_up_proj[e].double()).chunk(2, dim=-1)
                h = F.silu(g) * u
                add(f"blk.{i}.ffn_gate_exps.weight", e, mod.num_experts, xe)
                add(f"blk.{i}.ffn_up_exps.weight", e, mod.num_experts, xe)
                add(f"blk.{i}.ffn_down_exps.weight", e, mod.num_experts, h)
        return hook

    for i, layer in enumerate(model.model.layers):
        a = layer.self_attn
        for mod, short in ((a.q_proj, "attn_q"), (a.k_proj, "attn_k"), (a.v_proj, "attn_v"),
                           (a.o_proj, "attn_output"), (layer.mlp.gate, "ffn_gate_inp")):
            mod.register_forward_pre_hook(dense(f"blk.{i}.{short}.weight"))
        layer.mlp.experts.register_forward_pre_hook(experts(i))
    with torch.no_grad():
        for c in range(n_chunk):
            model(torch.tensor([list(tokens[c * ctx:(c + 1) * ctx])]))
    return sums, counts


def test_fixture_matches_transformers_hooks(fixture_model, calib_tokens):
    ctx, n_chunk = 128, 3
    sums, counts = hf_activations(FIXTURE, calib_tokens, ctx, n_chunk)
    stats, info = collect_imatrix(fixture_model, file=CALIB, ctx=ctx, chunks=n_chunk)
    assert info["chunks"] == n_chunk and info["tokens"] == ctx * n_chunk
    assert stats.chunk_count == n_chunk and stats.chunk_size == ctx and stats.datasets == [CALIB]
    assert_same_stats(stats, sums, counts, rtol=2e-5)
    # the expert counts add up to tokens x experts per token
    for il in range(2):
        assert int(stats.counts[f"blk.{il}.ffn_gate_exps.weight"].sum()) == ctx * n_chunk * 2


def test_fixture_matches_llama_cpp(tmp_path, fixture_model, calib_tokens):
    """What llama-imatrix would collect on the F32 conversion, from the HF folder and from the F32
    GGUF file (the same model run through the kernels)."""
    pytest.importorskip("llama_cpp")
    from tests.support import llama_ref

    f32 = str(tmp_path / "f32.gguf")
    qtoolkit.convert(FIXTURE, f32, "F32")
    ctx, n_chunk = 256, 4
    sums, counts = llama_ref.imatrix_activations(f32, calib_tokens, ctx, n_chunk)
    for model in (fixture_model, f32):
        stats, _ = collect_imatrix(model, file=CALIB, ctx=ctx, chunks=n_chunk)
        assert_same_stats(stats, sums, counts, rtol=1e-5)


@pytest.mark.parametrize("arch", ["qwen2moe", "llama", "mixtral"])
def test_other_architectures_match_llama_cpp(tmp_path, checkpoints, arch):
    """Shared experts (and Qwen2-MoE's ffn_gate_inp_shexp vector), dense FFNs, 8 experts, and the
    output projection with process_output (untied models)."""
    pytest.importorskip("llama_cpp")
    from tests.support import llama_ref

    d = checkpoints(arch, experts=8 if arch == "mixtral" else 4)
    f32 = str(tmp_path / "f32.gguf")
    qtoolkit.convert(d, f32, "F32")
    m = qtoolkit.load(d)
    with open(CALIB, encoding="utf-8") as f:
        text = f.read()[:20000]
    toks = m.tokenizer.encode(text)
    sums, counts = llama_ref.imatrix_activations(f32, toks, 64, 3, process_output=True)
    stats, _ = collect_imatrix(m, text=text, ctx=64, chunks=3, process_output=True)
    assert "output.weight" in stats.names()
    if arch == "qwen2moe":
        assert "blk.0.ffn_gate_inp_shexp.weight" in stats.names() and "blk.1.ffn_down_shexp.weight" in stats.names()
    assert_same_stats(stats, sums, counts, rtol=1e-5)


def test_tied_model_has_no_output_entry(fixture_model):
    stats, _ = collect_imatrix(fixture_model, file=CALIB, ctx=64, chunks=2, process_output=True)
    assert "output.weight" not in stats.names() and "token_embd.weight" not in stats.names()


def test_observing_changes_nothing_and_cleans_up(tmp_path, calib_tokens):
    q = str(tmp_path / "q4.gguf")
    qtoolkit.convert(FIXTURE, q, "Q4_K_M")
    m = qtoolkit.load(q)
    toks = calib_tokens[:96]
    before = m.forward(toks)
    layer0 = [m.layers[0].wq, m.layers[0].experts]
    col = ImatrixCollector()
    with observe(m, col):
        assert isinstance(m.layers[0].wq, ObservedLinear) and isinstance(m.layers[1].experts, ObservedExperts)
        during = m.forward(toks)
    assert [m.layers[0].wq, m.layers[0].experts] == layer0
    # the unfused expert path runs the fused kernel's dot products; SiLU's exp is correctly rounded
    # where the C library's expf may be one ulp off, so allow a rounding-level difference
    np.testing.assert_allclose(during, before, rtol=0, atol=1e-4 * np.abs(before).max())
    assert np.array_equal(m.forward(toks), before)
    assert col.counts["blk.0.attn_q.weight"][0] == 96
    with pytest.raises(RuntimeError):
        with observe(m, col):
            raise RuntimeError("boom")
    assert [m.layers[0].wq, m.layers[0].experts] == layer0


def test_quantized_model_collects_close_to_the_reference(tmp_path, fixture_model):
    q = str(tmp_path / "q8.gguf")
    qtoolkit.convert(FIXTURE, q, "Q8_0")
    ref, _ = collect_imatrix(fixture_model, file=CALIB, ctx=128, chunks=2)
    got, _ = collect_imatrix(q, file=CALIB, ctx=128, chunks=2)
    assert got.names() == ref.names()
    for n in ref.names():
        w_ref, w_got = ref.means(n), got.means(n)
        rel = np.abs(w_got - w_ref).max() / np.abs(w_ref).max()
        assert rel < 0.1, (n, rel)


def test_dense_products_of_few_tokens_are_ignored(fixture_model):
    assert MIN_DENSE_TOKENS == 16
    stats, _ = collect_imatrix(fixture_model, file=CALIB, ctx=8, chunks=3)
    assert all("_exps" in n for n in stats.names()), stats.names()      # experts always count
    assert int(stats.counts["blk.0.ffn_down_exps.weight"].sum()) == 8 * 3 * 2


def test_non_finite_activations_are_refused():
    col = ImatrixCollector()
    x = np.ones((20, 4), np.float32)
    x[3, 1] = np.inf
    col.dense("blk.0.attn_q.weight", x)
    with pytest.raises(qtoolkit.QtkValueError, match="blk.0.attn_q.weight"):
        col.check_finite("chunk 0")
