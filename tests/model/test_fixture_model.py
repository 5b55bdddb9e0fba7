"""The trained tiny Qwen3-MoE fixture (tests/data/tiny-moe, bf16, 2048-token byte-level BPE):
it converts, llama.cpp loads it, its F32 logits match transformers' and llama.cpp tokenizes text
exactly as the Hugging Face tokenizer does (the pre-tokenizer was detected from the regex)."""

import os

import numpy as np
import pytest

import qtoolkit
from tests.support.paths import DATA

FIXTURE = os.environ.get("QTK_TINY_MOE", os.path.join(DATA, "tiny-moe"))
pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(FIXTURE, "config.json")),
                                reason="tests/data/tiny-moe has not landed")
TEXT = ("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
        "The slings and arrows of outrageous fortune, 1603 times... <|endoftext|> Ay, there's the rub!")


def test_fixture_converts_with_every_main_preset(tmp_path):
    for preset in ("Q4_K_M", "Q8_0", "IQ4_XS"):
        rep = qtoolkit.convert(FIXTURE, str(tmp_path / f"{preset}.gguf"), preset)
        assert rep["architecture"] == "qwen3moe" and rep["tokenizer_pre"] == "qwen2"


def test_llama_cpp_runs_the_fixture(tmp_path):
    pytest.importorskip("llama_cpp")
    from tests.support import llama_ref

    out = str(tmp_path / "tiny.gguf")
    qtoolkit.convert(FIXTURE, out, "Q4_K_M")
    lg = llama_ref.logits(out, [10, 200, 300, 45, 1000, 7])
    assert np.isfinite(lg).all() and lg.shape == (6, 2048)


def test_logits_and_tokens_match_hugging_face(tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    from tests.support import llama_ref

    out = str(tmp_path / "f32.gguf")
    qtoolkit.convert(FIXTURE, out, "F32")
    hf_tok = tokenizers.Tokenizer.from_file(os.path.join(FIXTURE, "tokenizer.json"))
    ids = hf_tok.encode(TEXT, add_special_tokens=False).ids
    llm = llama_cpp.Llama(model_path=out, n_ctx=256, verbose=False, vocab_only=True)
    try:
        ours = llm.tokenize(TEXT.encode(), add_bos=False, special=True)
    finally:
        llm.close()
    assert ours == ids
    ref = llama_ref.logits(out, ids[:48])
    torch.set_num_threads(1)
    model = transformers.AutoModelForCausalLM.from_pretrained(FIXTURE, dtype=torch.float32).eval()
    with torch.no_grad():
        hf = model(torch.tensor([ids[:48]])).logits[0].float().numpy()
    rel = float(np.abs(ref - hf).max() / np.abs(hf).max())
    assert rel < 1e-4, rel
