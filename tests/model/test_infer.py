"""Inference API and CLI on the trained fixture and tiny random checkpoints: tokenizer identity
(Hugging Face ``tokenizers`` and llama.cpp), perplexity's chunking rules, compare's figures on
known cases, generate, and the CLI's --json contract."""

import json
import math
import os

import numpy as np
import pytest

import qtoolkit
from qtoolkit.cli import main
from tests.support.paths import DATA

FIXTURE = os.path.join(DATA, "tiny-moe")
HELDOUT = os.path.join(DATA, "heldout.txt")
TEXTS = [
    "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer",
    "  leading spaces,\ttabs\t\tand\n\n\nnewlines \r\n  trailing   ",
    "Numbers 1603, 3.14159 and 1234567890; I'LL, you've, she'd, WE'RE, it's DON'T",
    "Ünïcödé: naïve café, Straße, Ελληνικά, русский, 中文字符, 日本語, 한국어, emoji 🤖🎉 ¿¡ – — … ©",
    "<|endoftext|> special text inside <|endoftext|>text",
    "!!!???... ((brackets)) [x] {y} <z> @#$%^&*_+=~`|\\/",
]


@pytest.fixture(scope="module")
def fixture_gguf(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("fx") / "tiny-q8_0.gguf")
    qtoolkit.convert(FIXTURE, out, "Q8_0")
    return out


@pytest.fixture(scope="module")
def heldout():
    with open(HELDOUT, encoding="utf-8") as f:
        return f.read()


# -- tokenizer -------------------------------------------------------------------------------

def _styles(checkpoints):
    from tools.fixtures.synth_checkpoint import make_tokenizer

    yield "fixture", FIXTURE
    for style in ("qwen2", "llama-bpe", "smaug-bpe", "gpt-2"):
        d = checkpoints("qwen3", tokenizer_style=style, vocab=400)
        make_tokenizer(d, 400, style)
        yield style, d


def test_gguf_tokenizer_equals_hugging_face(checkpoints, tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    for name, d in _styles(checkpoints):
        gguf = str(tmp_path / f"{name}.gguf")
        qtoolkit.convert(d, gguf, "F16")
        ours = qtoolkit.load(gguf).tokenizer
        hf = tokenizers.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        for text in TEXTS:
            want = hf.encode(text, add_special_tokens=False).ids
            assert ours.encode(text, parse_special=True) == want, (name, text)
            assert ours.decode(want) == text
        assert ours.add_bos is False


def test_gguf_tokenizer_equals_llama_cpp(checkpoints, tmp_path, heldout):
    llama_cpp = pytest.importorskip("llama_cpp")
    for name, d in _styles(checkpoints):
        gguf = str(tmp_path / f"{name}.gguf")
        qtoolkit.convert(d, gguf, "F16")
        ours = qtoolkit.load(gguf).tokenizer
        llm = llama_cpp.Llama(model_path=gguf, vocab_only=True, verbose=False)
        try:
            for text in TEXTS + [heldout[:30000]]:
                for special in (False, True):
                    want = llm.tokenize(text.encode(), add_bos=False, special=special)
                    assert ours.encode(text, parse_special=special) == want, (name, special, text[:60])
        finally:
            llm.close()


def test_special_tokens_in_text_are_plain_text_by_default():
    tok = qtoolkit.load(FIXTURE).tokenizer
    assert 0 not in tok.encode("a <|endoftext|> b")
    assert 0 in tok.encode("a <|endoftext|> b", parse_special=True)


# -- perplexity --------------------------------------------------------------------------------

def test_perplexity_refuses_short_text_and_bad_ctx():
    with pytest.raises(qtoolkit.QtkValueError, match="at least 2 × ctx"):
        qtoolkit.perplexity(FIXTURE, text="To be or not to be " * 20, ctx=512)
    with pytest.raises(qtoolkit.QtkValueError, match="even"):
        qtoolkit.perplexity(FIXTURE, text="x" * 100, ctx=33)
    with pytest.raises(qtoolkit.QtkFileNotFoundError):
        qtoolkit.perplexity(FIXTURE, file="/nonexistent/text.txt")


def test_perplexity_chunking(heldout):
    m = qtoolkit.load(FIXTURE)
    text = heldout[:6000]
    n_tok = len(m.tokenizer.encode(text))
    res = qtoolkit.perplexity(m, text=text, ctx=128)
    assert res["chunks"] == n_tok // 128 and res["scored"] == res["chunks"] * 63
    assert res["tokens"] == res["chunks"] * 128 and res["text_tokens"] == n_tok
    assert 20 < res["ppl"] < 400 and res["add_bos"] is False
    two = qtoolkit.perplexity(m, text=text, ctx=128, chunks=2)
    assert two["chunks"] == 2 and two["scored"] == 126


def test_perplexity_by_hand(heldout):
    """The METHODS.md recipe written out with the model's logits = perplexity()."""
    m = qtoolkit.load(FIXTURE)
    text = heldout[:5000]
    ids = m.tokenizer.encode(text)
    nll, n = 0.0, 0
    for c in range(2):
        chunk = ids[c * 64:(c + 1) * 64]
        lg = m.forward(chunk).astype(np.float64)
        lp = lg - np.log(np.exp(lg - lg.max(-1, keepdims=True)).sum(-1, keepdims=True)) - lg.max(-1, keepdims=True)
        for p in range(32, 63):
            nll -= lp[p, chunk[p + 1]]
            n += 1
    res = qtoolkit.perplexity(m, text=text, ctx=64, chunks=2)
    assert res["scored"] == n
    assert res["ppl"] == pytest.approx(math.exp(nll / n), rel=1e-6)  # the output matmul runs on fewer rows


def test_bos_substitution(checkpoints, tmp_path, heldout):
    """A vocabulary that adds BOS: BOS in front of the text and as each chunk's first token."""
    from qtoolkit.model.chunks import chunk_tokens

    m = qtoolkit.load(checkpoints("llama"))
    m.tokenizer.add_bos, m.tokenizer.bos_id = True, 7
    ids = m.tokenizer.encode("the and to of")
    assert ids[0] == 7
    chunk = chunk_tokens(list(range(100, 300)), 1, 64, m.tokenizer)
    assert chunk[0] == 7 and list(chunk[1:]) == list(range(165, 228))


# -- compare -------------------------------------------------------------------------------------

def test_compare_with_itself_is_zero(heldout):
    m = qtoolkit.load(FIXTURE)
    res = qtoolkit.compare(m, m, text=heldout[:8000], ctx=128, chunks=2)
    assert res["kld_mean"] == pytest.approx(0, abs=1e-12) and res["kld_max"] == pytest.approx(0, abs=1e-12)
    assert res["top1_agree"] == 1.0 and res["rms_dp"] == 0.0 and res["ppl_ratio"] == pytest.approx(1.0)
    assert res["router_agree"] == 1.0 and res["router_agree_layers"] == [1.0, 1.0]


def test_compare_quantized(fixture_gguf, heldout):
    res = qtoolkit.compare(FIXTURE, fixture_gguf, text=heldout[:20000], ctx=256, chunks=3)
    for key in ("ppl_base", "ppl_quant", "kld_mean", "kld_p99", "top1_agree"):
        assert key in res
    assert 0 < res["kld_mean"] < 0.01 and res["kld_median"] <= res["kld_p99"] <= res["kld_p999"] <= res["kld_max"]
    assert 0.95 < res["top1_agree"] < 1.0 and 0.99 < res["ppl_ratio"] < 1.01
    assert 0.95 < res["router_agree"] < 1.0 and len(res["router_agree_layers"]) == 2
    assert res["scored"] == 3 * 127


def test_router_agreement_counts_set_overlap():
    from qtoolkit.model.evaluate import router_overlap

    eb = np.array([[0, 1], [2, 3], [4, 5], [1, 6]])
    eq = np.array([[1, 0], [2, 7], [6, 7], [1, 6]])
    assert router_overlap(eb, eq).tolist() == [1.0, 0.5, 0.0, 1.0]
    top8 = np.arange(8)[None, :]
    assert router_overlap(top8, top8[:, ::-1]).tolist() == [1.0]


# -- generate and CLI ----------------------------------------------------------------------------

def test_generate_is_greedy_and_stops():
    from qtoolkit.model.generate import generate

    m = qtoolkit.load(FIXTURE)
    res = generate(m, "HAMLET. To be, or not to be", n_predict=12, stop_at_eos=False)
    assert res["generated_tokens"] == 12
    ids = m.tokenizer.encode("HAMLET. To be, or not to be")
    for t in res["tokens"]:
        assert t == int(np.argmax(m.forward(ids)[-1]))
        ids.append(t)


def test_cli_perplexity_json(capsys, fixture_gguf):
    assert main(["perplexity", fixture_gguf, "--file", HELDOUT, "--ctx", "128", "--chunks", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"ppl", "tokens", "seconds"} <= set(res) and res["chunks"] == 2


def test_cli_compare_json_and_text(capsys, fixture_gguf):
    assert main(["compare", FIXTURE, fixture_gguf, "-f", HELDOUT, "-c", "128", "--chunks", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"ppl_base", "ppl_quant", "kld_mean", "kld_p99", "top1_agree", "router_agree"} <= set(res)
    assert main(["compare", FIXTURE, fixture_gguf, "-f", HELDOUT, "-c", "128", "--chunks", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "KLD" in out and "router agreement" in out


def test_cli_report(tmp_path, fixture_gguf):
    pytest.importorskip("matplotlib")
    d = str(tmp_path / "rep")
    assert main(["compare", FIXTURE, fixture_gguf, "-f", HELDOUT, "-c", "128", "--chunks", "2", "--quiet",
                 "--report", d]) == 0
    for name in ("report.md", "kld_hist.png", "router_agreement.png", "compare.json"):
        assert os.path.getsize(os.path.join(d, name)) > 100
    with open(os.path.join(d, "kld_hist.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_cli_report_without_matplotlib(monkeypatch, capsys, fixture_gguf, tmp_path):
    import builtins

    real = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    assert main(["compare", FIXTURE, fixture_gguf, "-f", HELDOUT, "--report", str(tmp_path / "r")]) == 1
    assert "pip install 'qtoolkit[report]'" in capsys.readouterr().err


def test_cli_generate(capsys):
    assert main(["generate", FIXTURE, "--prompt", "To be, or not to be", "-n", "8"]) == 0
    cap = capsys.readouterr()
    assert "tok/s" in cap.err and len(cap.out.strip()) > 0


def test_cli_errors_are_clean(capsys, tmp_path):
    assert main(["perplexity", str(tmp_path / "missing.gguf"), "-f", HELDOUT]) == 1
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOTGGUF" + b"\0" * 100)
    assert main(["perplexity", str(bad), "-f", HELDOUT]) == 1
    assert "not a GGUF file" in capsys.readouterr().err


# -- the linear-layer abstraction on the kernels --------------------------------------------------

@pytest.mark.parametrize("qtype", ["Q4_K", "Q8_0", "Q6_K", "IQ4_XS", "F16"])
def test_linear_is_the_kernel(qtype):
    """Linear on quantized bytes = qtoolkit.matmul bit for bit (gemm and gemv), weights never decoded."""
    from qtoolkit.model.linear import Linear

    rng = np.random.default_rng(1)
    W = rng.standard_normal((96, 512)).astype(np.float32)
    w = qtoolkit.quantize(W, qtype)
    lin = Linear(w, qtoolkit.QuantType[qtype], 512, threads=1)
    x = rng.standard_normal((7, 512)).astype(np.float32)
    assert np.array_equal(lin(x), qtoolkit.matmul(w, qtype, x, threads=1))
    assert np.array_equal(lin(x[3:4])[0], qtoolkit.matmul(w, qtype, x[3], threads=1))
    assert lin.qtype != qtoolkit.QuantType.F32 and lin.data is not None
    with pytest.raises(qtoolkit.QtkValueError):
        lin(x[:, :256])


def test_experts_are_the_fused_kernel():
    from qtoolkit.model.linear import Experts

    rng = np.random.default_rng(2)
    E, D, F = 6, 256, 512
    gate = qtoolkit.quantize(rng.standard_normal((E, F, D)).astype(np.float32) * 0.1, "Q4_K")
    up = qtoolkit.quantize(rng.standard_normal((E, F, D)).astype(np.float32) * 0.1, "Q4_K")
    down = qtoolkit.quantize(rng.standard_normal((E, D, F)).astype(np.float32) * 0.1, "Q6_K")
    types = [qtoolkit.QuantType.Q4_K, qtoolkit.QuantType.Q4_K, qtoolkit.QuantType.Q6_K]
    ex = Experts(gate, up, down, types, D, F, threads=1)
    x = rng.standard_normal((5, D)).astype(np.float32)
    ids = rng.integers(0, E, (5, 2)).astype(np.int32)
    ids[:, 1] = (ids[:, 0] + 1) % E
    wts = rng.random((5, 2)).astype(np.float32)
    want = qtoolkit.moe_ffn(gate, up, down, ("Q4_K", "Q4_K", "Q6_K"), x, ids, wts, threads=1)
    assert np.array_equal(ex(x, ids, wts), want)
    with pytest.raises(qtoolkit.QtkValueError):
        ex(x, ids + E, wts)


def test_attention_in_query_blocks_equals_one_block(monkeypatch, heldout):
    """Long prompts compute attention scores per block of queries; the result does not change."""
    from qtoolkit.model import forward

    m = qtoolkit.load(FIXTURE)
    ids = m.tokenizer.encode(heldout[:3000])[:300]
    whole = m.forward(ids)
    monkeypatch.setattr(forward, "ATTN_BLOCK_ELEMENTS", 4 * 300 * 37)  # blocks of 37 queries
    blocked = m.forward(ids)
    assert np.abs(blocked - whole).max() / np.abs(whole).max() < 1e-5


def test_blas_threads_can_be_limited():
    from qtoolkit.model.blas import set_blas_threads

    assert set_blas_threads(1) in (True, False)  # False only where numpy's BLAS is not OpenBLAS


def test_gguf_tokenizer_defaults_follow_llama_cpp(tmp_path):
    """Without tokenizer.ggml.add_bos_token, llama.cpp adds BOS for the llama-bpe family only; an
    unknown or missing pre-tokenizer is refused rather than guessed."""
    from qtoolkit.io.gguf_reader import GGUFFile
    from qtoolkit.model.tokenizer import Tokenizer

    gguf = str(tmp_path / "t.gguf")
    qtoolkit.convert(FIXTURE, gguf, "Q8_0")
    with GGUFFile(gguf) as f:
        md = {k: kv.value for k, kv in f.kv.items()}
    md.pop("tokenizer.ggml.add_bos_token", None)
    assert Tokenizer.from_gguf_metadata(md, "x").add_bos is False                      # qwen2
    assert Tokenizer.from_gguf_metadata(dict(md, **{"tokenizer.ggml.pre": "llama3"}), "x").add_bos is True
    for pre in ("default", "no-such-pre"):
        with pytest.raises(qtoolkit.QtkNotImplementedError, match="pre-tokenizer"):
            Tokenizer.from_gguf_metadata(dict(md, **{"tokenizer.ggml.pre": pre}), "x")
