"""llama.cpp as the oracle of the quality figures (skipped without llama-cpp-python): on GGUF files of
the trained fixture, our perplexity equals llama.cpp's within 0.5 % and our mean KL divergence from
the F32 file within 5 %, for F32, Q8_0, Q4_K_M and Q2_K. llama.cpp's figures are computed here
through llama-cpp-python with the same tokens and the same chunking (METHODS.md)."""

import math
import os

import numpy as np
import pytest
from tests.support.paths import DATA

llama_cpp = pytest.importorskip("llama_cpp")

import qtoolkit  # noqa: E402
from tests.support import llama_ref  # noqa: E402
from qtoolkit.model.chunks import log_softmax64  # noqa: E402

FIXTURE = os.path.join(DATA, "tiny-moe")
CTX, CHUNKS = 512, 4
TYPES = ["F32", "Q8_0", "Q4_K_M", "Q2_K"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("oracle")
    out = {}
    for t in TYPES:
        out[t] = str(d / f"tiny-{t}.gguf")
        qtoolkit.convert(FIXTURE, out[t], t)
    return out


@pytest.fixture(scope="module")
def tokens(files):
    with open(os.path.join(DATA, "heldout.txt"), encoding="utf-8") as f:
        text = f.read()
    ours = qtoolkit.load(files["F32"]).tokenizer.encode(text[:40000])
    llm = llama_cpp.Llama(model_path=files["F32"], vocab_only=True, verbose=False)
    try:
        assert llm.tokenize(text[:40000].encode(), add_bos=False, special=False) == ours
    finally:
        llm.close()
    return ours, text[:40000]


@pytest.fixture(scope="module")
def llama_base(files, tokens):
    return list(llama_ref.scored_logits(files["F32"], tokens[0], CTX, CHUNKS))


def _figures(base_logits, logits, toks):
    first = CTX // 2
    nll, kld, n = 0.0, [], 0
    for c, (lb, lq) in enumerate(zip(base_logits, logits)):
        tgt = np.asarray(toks[c * CTX + first + 1:(c + 1) * CTX])
        pb, pq = log_softmax64(lb), log_softmax64(lq)
        nll -= pq[np.arange(tgt.size), tgt].sum()
        kld.append((np.exp(pb) * (pb - pq)).sum(-1))
        n += tgt.size
    return math.exp(nll / n), float(np.concatenate(kld).mean()), n


@pytest.mark.parametrize("ftype", TYPES)
def test_perplexity_and_kld_equal_llama_cpp(ftype, files, tokens, llama_base):
    toks, text = tokens
    ref = list(llama_ref.scored_logits(files[ftype], toks, CTX, CHUNKS))
    ppl_ref, kld_ref, n = _figures(llama_base, ref, toks)
    ours = qtoolkit.perplexity(files[ftype], text=text, ctx=CTX, chunks=CHUNKS)
    assert ours["scored"] == n
    assert abs(ours["ppl"] / ppl_ref - 1) < 0.005, (ours["ppl"], ppl_ref)
    if ftype == "F32":
        assert abs(ours["ppl"] / ppl_ref - 1) < 1e-4
        return
    cmp = qtoolkit.compare(files["F32"], files[ftype], text=text, ctx=CTX, chunks=CHUNKS)
    assert cmp["ppl_quant"] == pytest.approx(ours["ppl"], rel=1e-9)
    assert abs(cmp["kld_mean"] / kld_ref - 1) < 0.05, (cmp["kld_mean"], kld_ref)


def test_runs_a_file_made_by_llama_cpp(files, tokens, tmp_path):
    """A GGUF written by llama.cpp's own quantizer (llama_model_quantize from our F32 file) loads and
    evaluates like our conversion of the same preset (the bytes are the same, so the figures are)."""
    toks, text = tokens
    theirs = str(tmp_path / "llama-Q4_K_M.gguf")
    llama_ref.quantize_file(files["F32"], theirs, 15)  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    a = qtoolkit.perplexity(theirs, text=text, ctx=256, chunks=2)
    b = qtoolkit.perplexity(files["Q4_K_M"], text=text, ctx=256, chunks=2)
    assert a["file_type"] == "Q4_K_M" and a["ppl"] == b["ppl"]
