"""The layer-major runner (qtoolkit/model/runner.py): the same figures as the chunk-at-a-time forward
pass, whatever the grouping of chunks and wherever the hidden states live; its faults (a full
spill disk, a file that changes while it is read) are clear errors; nothing is left behind."""

import errno
import math
import os

import numpy as np
import pytest

import qtoolkit
from qtoolkit.errors import QtkFileNotFoundError, QtkIOError
from qtoolkit.model import runner as runner_mod
from qtoolkit.model.chunks import chunk_plan, chunk_tokens, log_softmax64
from qtoolkit.model.evaluate import compare, perplexity
from qtoolkit.model.runner import Run, StreamedModel
from tests.support.paths import DATA

FIXTURE = os.path.join(DATA, "tiny-moe")
DENSE = os.path.join(DATA, "tiny-dense")
HELDOUT = os.path.join(DATA, "heldout.txt")
CTX, CHUNKS = 128, 5


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("runner")
    out = {}
    for name, model, preset in (("q8", FIXTURE, "Q8_0"), ("q2", FIXTURE, "Q2_K"), ("f32", FIXTURE, "F32"),
                                ("dense_q4", DENSE, "Q4_K_M")):
        out[name] = str(d / f"{name}.gguf")
        qtoolkit.convert(model, out[name], preset)
    return out


@pytest.fixture(scope="module")
def text():
    with open(HELDOUT, encoding="utf-8") as f:
        return f.read()[:120_000]


def chunk_at_a_time(path, text, ctx=CTX, chunks=CHUNKS):
    """PPL and per-position log-probabilities by Model.forward, one chunk at a time (the reference)."""
    m = qtoolkit.load(path)
    tokens = m.tokenizer.encode(text)
    n = chunk_plan(len(tokens), ctx, chunks)
    first = ctx // 2
    nll, lps, experts = 0.0, [], []
    for c in range(n):
        chunk = chunk_tokens(tokens, c, ctx, m.tokenizer)
        trace = {}
        lg = m.forward(chunk, m.new_cache(ctx), logits_from=first, trace=trace)[: ctx - 1 - first]
        lp = log_softmax64(lg)
        nll -= float(lp[np.arange(lp.shape[0]), chunk[first + 1:]].sum())
        lps.append(lp)
        experts.append(trace.get("experts"))
    return math.exp(nll / (n * (ctx - 1 - first))), lps, experts


@pytest.mark.parametrize("name", ["q8", "q2", "dense_q4"])
def test_streamed_perplexity_equals_chunk_at_a_time(files, text, name):
    ref, _, _ = chunk_at_a_time(files[name], text)
    res = perplexity(files[name], text=text, ctx=CTX, chunks=CHUNKS)
    assert res["ppl"] == pytest.approx(ref, rel=1e-12)
    run = res["run"]
    assert run["streamed"] and run["layers"] == qtoolkit.load(files[name]).hp.n_layer and not run["hidden_spilled"]
    assert run["bytes_read"][0] <= 1.1 * os.path.getsize(files[name])


def test_streamed_compare_equals_chunk_at_a_time(files, text):
    _, lb, eb = chunk_at_a_time(files["q8"], text)
    _, lq, eq = chunk_at_a_time(files["q2"], text)
    kld = np.concatenate([np.sum(np.exp(b) * (b - q), axis=-1) for b, q in zip(lb, lq)])
    res = compare(files["q8"], files["q2"], text=text, ctx=CTX, chunks=CHUNKS)
    assert res["kld_mean"] == pytest.approx(float(np.maximum(kld, 0).mean()), rel=1e-9)
    agree = [np.mean([np.mean([len(set(a) & set(b)) / 2 for a, b in zip(cb[il], cq[il])]) for cb, cq in zip(eb, eq)])
             for il in range(2)]
    assert res["router_agree_layers"] == pytest.approx(agree, rel=1e-12)
    assert len(res["run"]["bytes_read"]) == 2


def test_a_checkpoint_in_its_stored_dtype_equals_its_float32_conversion(files, text):
    """The folder runs its bf16 weights with float32 activations; its F32 GGUF conversion runs the
    widened weights (the float32 in-RAM reference): the same model up to the order of float32 sums."""
    ref, lf, _ = chunk_at_a_time(files["f32"], text)
    res = perplexity(FIXTURE, text=text, ctx=CTX, chunks=CHUNKS)
    assert res["ppl"] == pytest.approx(ref, rel=1e-5)
    assert res["file_type"] == "BF16" and res["run"]["streamed"]
    _, lq, _ = chunk_at_a_time(files["q2"], text)
    kld = float(np.maximum(np.concatenate([np.sum(np.exp(b) * (b - q), axis=-1) for b, q in zip(lf, lq)]), 0).mean())
    cmp = compare(FIXTURE, files["q2"], text=text, ctx=CTX, chunks=CHUNKS)
    assert cmp["kld_mean"] == pytest.approx(kld, rel=0.01)
    assert cmp["ppl_base"] == pytest.approx(ref, rel=1e-5)
    size = sum(os.path.getsize(os.path.join(FIXTURE, f)) for f in os.listdir(FIXTURE) if f.endswith(".safetensors"))
    assert cmp["run"]["bytes_read"][0] <= 1.1 * size


def test_grouping_spilling_and_loaded_models_give_the_same_numbers(files, text, tmp_path, monkeypatch):
    base = compare(files["q8"], files["q2"], text=text, ctx=CTX, chunks=CHUNKS)
    monkeypatch.setattr(runner_mod, "GROUP_TOKENS", CTX)            # one chunk per group
    monkeypatch.setattr(runner_mod, "MOE_BYTES", 1)                 # one chunk of tokens per expert call
    spill = tmp_path / "spill"
    spill.mkdir()
    res = compare(files["q8"], files["q2"], text=text, ctx=CTX, chunks=CHUNKS, max_memory=0, spill_dir=str(spill))
    assert res["run"]["hidden_spilled"]
    assert list(spill.iterdir()) == []                               # the hidden-state file is gone
    loaded = compare(qtoolkit.load(files["q8"]), qtoolkit.load(files["q2"]), text=text, ctx=CTX, chunks=CHUNKS)
    assert not loaded["run"]["streamed"]
    for r in (res, loaded):
        for k in ("ppl_base", "ppl_quant", "kld_mean", "kld_max", "top1_agree", "rms_dp", "router_agree"):
            assert r[k] == base[k], k


def test_a_full_spill_disk_is_an_error_naming_the_folder(files, text, tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runner_mod.os, "posix_fallocate", full)
    with pytest.raises(QtkIOError, match=f"{tmp_path}: no room for the .* bytes of hidden states"):
        perplexity(files["q8"], text=text, ctx=CTX, chunks=CHUNKS, max_memory=0, spill_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(QtkFileNotFoundError, match="no such folder"):
        perplexity(files["q8"], text=text, ctx=CTX, chunks=CHUNKS, max_memory=0, spill_dir=str(tmp_path / "nope"))


def test_a_file_that_changes_while_it_is_read_is_refused(files, text, tmp_path):
    path = str(tmp_path / "m.gguf")
    with open(files["q8"], "rb") as f, open(path, "wb") as g:
        g.write(f.read())
    sm = StreamedModel(path)
    tokens = sm.model.tokenizer.encode(text)
    chunks = [chunk_tokens(tokens, c, CTX, sm.model.tokenizer) for c in range(2)]

    def touch(il):
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))

    with Run([sm], chunks) as run:
        with pytest.raises(QtkIOError, match="changed while it was being read"):
            run.layers(on_layer=touch)
    sm.close()


def test_cli_reports_the_run(files, capsys):
    from qtoolkit.cli import main

    assert main(["perplexity", files["q8"], "-f", HELDOUT, "--ctx", str(CTX), "--chunks", "2", "--quiet",
                 "--max-memory", "1K"]) == 0
    out = capsys.readouterr().out
    assert "run: 2 layers, read" in out and "peak memory" in out and "spilled to disk" in out
