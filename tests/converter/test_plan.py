"""qtoolkit plan: sizes, parameters, memory and speed ceilings from config.json alone."""

import json
import os

import pytest

import qtoolkit
from qtoolkit.cli import main
from qtoolkit.converter.plan import ConvertOptions, build_plan
from qtoolkit.errors import QtkFileNotFoundError, QtkFormatError, QtkValueError
from qtoolkit.io.gguf_reader import GGUFFile
from qtoolkit.sizing import costs, estimate, kv_cache_bytes, load_shape, preset_types
from qtoolkit.units import parse_size
from tests.support.paths import ALL_ARCHS, DATA


QWEN3_235B = os.path.join(DATA, "configs", "Qwen3-235B-A22B", "config.json")
TINY_MOE = os.path.join(DATA, "tiny-moe")
TINY_DENSE = os.path.join(DATA, "tiny-dense")


def test_parse_size_units():
    assert parse_size("85G") == 85 << 30
    assert parse_size("85GiB") == 85 << 30
    assert parse_size("91.5GB") == 91_500_000_000
    assert parse_size("2.5M") == int(2.5 * (1 << 20))
    assert parse_size("1500") == 1500
    assert parse_size(1e6) == 1_000_000
    for bad in ("", "G", "12X", "-3G", "0"):
        with pytest.raises(QtkValueError):
            parse_size(bad)


def test_qwen3_235b_published_shape():
    """Qwen3-235B-A22B: 94 layers, 128 experts top-8, hidden 4096, expert width 1536, 64/4 heads of 128,
    vocabulary 151936, untied head. Its BF16 GGUF is published as 448.5 "GB": the byte count below
    written in units of 1000 MiB (470.29 GB = 438.0 GiB)."""
    r = estimate(QWEN3_235B, preset="BF16", ctx=8192, ram=128 << 30, bandwidth=60)
    assert (r["n_layer"], r["n_expert"], r["n_expert_used"], r["n_embd"], r["n_ff"]) == (94, 128, 8, 4096, 1536)
    assert (r["n_head"], r["n_head_kv"], r["head_dim"], r["n_vocab"], r["tied_embeddings"]) == (64, 4, 128, 151936, False)
    assert r["params_total"] == 235_093_634_560
    assert r["params_active"] == 22_190_763_520          # "A22B"
    # norms and routers stay F32, everything else BF16
    assert r["tensor_bytes"] == 470_287_431_680
    assert abs(r["file_bytes"] / (1000 * 2 ** 20) - 448.5) < 0.05
    assert not r["header_exact"] and 0 < r["header_bytes"] < 20e6
    # KV cache: 94 layers x 4 KV heads x 128 x (K and V) x 2 bytes x 8192 positions
    assert r["kv_bytes"] == 94 * 4 * 128 * 2 * 2 * 8192
    assert r["ram_bytes"] == r["file_bytes"] + r["kv_bytes"]
    assert not r["fits"]
    assert r["tok_s_ceiling"] == pytest.approx(60e9 / r["bytes_per_token"])
    rows = {p["name"]: p for p in r["presets"]}
    assert rows["Q4_K_M"]["file_bytes"] > 128 << 30 > rows["Q3_K_M"]["file_bytes"] > rows["Q2_K"]["file_bytes"]
    assert rows["Q2_K"]["fits"] and rows["Q3_K_M"]["fits"] and not rows["Q4_K_M"]["fits"]
    assert 4.0 < r["max_bpw"] < 4.6


def test_plan_tensor_bytes_equal_real_conversions(tmp_path):
    """The tensor data (and, with the tokenizer beside the config, the whole file) to the byte."""
    for model, presets in ((TINY_MOE, ("Q2_K", "Q3_K_M", "Q4_K_M", "IQ4_XS")), (TINY_DENSE, ("Q2_K", "Q3_K_M", "Q4_K_M"))):
        shape = load_shape(model)
        for preset in presets:
            out = str(tmp_path / f"{os.path.basename(model)}-{preset}.gguf")
            qtoolkit.convert(model, out, preset)
            with GGUFFile(out) as g:
                data = sum(t.nbytes for t in g.tensors)
            c = costs(shape, preset_types(shape, preset))
            assert c["tensor_bytes"] == data, (model, preset)
            assert c["header_exact"] and c["file_bytes"] == os.path.getsize(out), (model, preset)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_config_only_tensors_match_checkpoint_plan(checkpoints, arch):
    """Names and shapes from config.json alone equal those the converter finds in the checkpoint."""
    d = checkpoints(arch)
    shape = load_shape(os.path.join(d, "config.json"))
    real = build_plan(d, ConvertOptions(qtype="Q4_K_M", dry_run=True))
    assert sorted((t.name, t.ne) for t in shape.tensors) == sorted((p.out.name, p.out.ne) for p in real.tensors)
    types = preset_types(shape, "Q4_K_M")
    assert {p.out.name: p.type for p in real.tensors} == types
    real.checkpoint.close()


def test_kv_cache_types():
    shape = load_shape(TINY_MOE)
    assert kv_cache_bytes(shape, 512) == 2 * 2 * 64 * 2 * 2 * 512
    assert kv_cache_bytes(shape, 512, "Q8_0") == 2 * 2 * 64 * 2 * 512 // 32 * 34


def test_cli_plan_json_and_text(capsys):
    assert main(["plan", QWEN3_235B, "--type", "Q2_K", "--ram", "128G", "--bandwidth", "60", "--ctx", "8192", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    for k in ("file_bytes", "params_total", "params_active", "kv_bytes", "ram_bytes", "fits", "tok_s_ceiling"):
        assert k in r
    assert r["selected"] == "Q2_K" and r["fits"]
    assert main(["plan", TINY_MOE, "--target-bpw", "3.5", "--ctx", "512"]) == 0
    text = capsys.readouterr().out
    assert "bpw 3.5" in text and "active per token" in text
    assert main(["plan", "/nonexistent/config.json"]) == 1


def test_plan_errors():
    with pytest.raises(QtkFileNotFoundError):
        estimate("/nonexistent")
    with pytest.raises(QtkValueError):
        estimate(TINY_MOE, preset="Q2_K", target_bpw=3.0)
    with pytest.raises(QtkValueError):
        estimate(TINY_MOE, target_bpw=0.5)


def test_plan_refuses_an_absurd_layer_count_from_config_alone(tmp_path):
    """A config claiming 10^9 layers must be refused by name, not build a plan of 10^9 layers."""
    with open(QWEN3_235B) as f:
        cfg = json.load(f)
    cfg["num_hidden_layers"] = 10 ** 9
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(QtkFormatError, match="num_hidden_layers 1000000000"):
        estimate(str(path), preset="Q4_K_M")


def test_run_estimates_of_the_layer_major_runner():
    """--disk adds compare / imatrix / perplexity estimates: two layers of each model read, the
    hidden states, the files read once, compute measured on a layer of the model's widths."""
    r = estimate(TINY_MOE, disk=1.0, eval_chunks=2, eval_ctx=64, threads=1)
    runs = r["runs"]
    shape = load_shape(TINY_MOE)
    n_elem = sum(t.n_elements for t in shape.tensors)
    assert runs["checkpoint_bytes"] == 2 * n_elem               # bf16
    cmp, im, ppl = runs["compare"], runs["imatrix"], runs["perplexity"]
    assert cmp["bytes_read"] == runs["checkpoint_bytes"] + r["file_bytes"] == im["bytes_read"] + ppl["bytes_read"]
    assert cmp["read_seconds"] == pytest.approx(cmp["bytes_read"] / 1e9)
    assert cmp["peak_memory_bytes"] > im["peak_memory_bytes"] > ppl["peak_memory_bytes"] > 1 << 30
    assert cmp["hidden_bytes"] == 2 * im["hidden_bytes"] == 2 * 2 * 64 * 256 * 4
    for e in (cmp, im, ppl):
        assert e["compute_seconds"] > 0 and e["seconds"] == pytest.approx(e["compute_seconds"] + e["read_seconds"])
    # another machine's speed
    given = estimate(TINY_MOE, disk=1.0, eval_chunks=2, eval_ctx=64, gflops=100.0)["runs"]
    assert given["compare"]["compute_seconds"] == pytest.approx(2 * given["imatrix"]["compute_seconds"])
    # the 235B model: about 15 GB to compare its bf16 checkpoint with its Q4_K_M file
    big = estimate(QWEN3_235B, disk=2.0, eval_chunks=40, gflops=100.0, ram=128 << 30)["runs"]["compare"]
    assert 10e9 < big["peak_memory_bytes"] < 20e9 and not big["hidden_spilled"]
    with pytest.raises(QtkValueError, match="disk"):
        estimate(TINY_MOE, disk=0)


def test_cli_plan_prints_the_runs(capsys):
    assert main(["plan", TINY_MOE, "--disk", "1", "--eval-chunks", "2", "--eval-ctx", "64", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "layer-major runs, 2 chunks of 64 tokens" in out and "compare checkpoint vs Q4_K_M" in out
