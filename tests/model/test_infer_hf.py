"""Our float32 forward pass against transformers (the oracle): tiny random checkpoints of every
architecture, loaded both from the Hugging Face folder and from its F32 GGUF conversion, give the
same logits (max relative error < 1e-4). Skipped without torch + transformers."""

import os

import numpy as np
import pytest

import qtoolkit
from tests.support.paths import DATA

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
FIXTURE = os.path.join(DATA, "tiny-moe")
TOKENS = [5, 17, 200, 3, 99, 250, 31, 8, 77, 140, 2, 60, 300, 45, 12, 7, 88, 190, 240, 19]

CASES = {
    "llama": dict(),
    "mistral": dict(),
    "mixtral": dict(experts=4, top_k=2, ff=256),
    "qwen2": dict(),
    "qwen3": dict(head_dim=96),           # head_dim != hidden / heads, as in real Qwen3
    "qwen3moe": dict(experts=8, top_k=3),
    "qwen2moe": dict(experts=4, top_k=2),
    "llama-rope-linear": dict(arch="llama", rope_scaling={"rope_type": "linear", "factor": 2.0}),
    "llama-rope-llama3": dict(arch="llama", rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                          "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
    "qwen3-untied": dict(arch="qwen3", tied=False),
    "qwen3moe-fused-experts": dict(arch="qwen3moe", fused_experts=True),
    "llama-2-shards-f16": dict(arch="llama", shards=2, dtype="f16"),
}


def hf_logits(model_dir, tokens):
    torch.set_num_threads(1)
    m = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return m(torch.tensor([tokens])).logits[0].float().numpy()


def rel_err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("case", list(CASES))
def test_f32_logits_match_transformers(case, checkpoints, tmp_path):
    kw = dict(CASES[case])
    arch = kw.pop("arch", case)
    d = checkpoints(arch, **kw)
    ref = hf_logits(d, TOKENS)
    ours_hf = qtoolkit.load(d).forward(TOKENS)
    assert ours_hf.shape == ref.shape
    assert rel_err(ours_hf, ref) < 1e-4
    gguf = str(tmp_path / "f32.gguf")
    qtoolkit.convert(d, gguf, "F32")
    ours_gguf = qtoolkit.load(gguf).forward(TOKENS)
    assert rel_err(ours_gguf, ref) < 1e-4


@pytest.mark.parametrize("arch", ["qwen3moe", "llama", "qwen2moe"])
def test_incremental_decode_equals_one_pass(arch, checkpoints):
    """Prompt in one gemm pass then token by token through the KV cache = the whole sequence at once."""
    m = qtoolkit.load(checkpoints(arch))
    whole = m.forward(TOKENS)
    cache = m.new_cache(len(TOKENS))
    parts = [m.forward(TOKENS[:7], cache)]
    parts += [m.forward([t], cache) for t in TOKENS[7:12]]
    parts.append(m.forward(TOKENS[12:], cache))
    assert rel_err(np.concatenate(parts), whole) < 1e-5


def test_fixture_matches_transformers():
    tok = qtoolkit.load(FIXTURE)
    ids = tok.tokenizer.encode("HAMLET. To be, or not to be, that is the question: whether 'tis nobler in the mind")
    assert rel_err(tok.forward(ids), hf_logits(FIXTURE, ids)) < 1e-4


def test_fixture_perplexity_matches_transformers():
    """Two chunks of 256 by METHODS.md: our perplexity of the HF folder = transformers' exactly computed one."""
    import math

    with open(os.path.join(DATA, "heldout.txt"), encoding="utf-8") as f:
        text = f.read()[:20000]
    res = qtoolkit.perplexity(FIXTURE, text=text, ctx=256, chunks=2)
    ids = qtoolkit.load(FIXTURE).tokenizer.encode(text)
    nll, n = 0.0, 0
    for c in range(2):
        chunk = ids[c * 256:(c + 1) * 256]
        lg = torch.log_softmax(torch.tensor(hf_logits(FIXTURE, chunk)).double(), -1)
        for p in range(128, 255):
            nll -= float(lg[p, chunk[p + 1]])
            n += 1
    assert res["scored"] == n == 2 * 127
    assert abs(res["ppl"] / math.exp(nll / n) - 1) < 1e-4
