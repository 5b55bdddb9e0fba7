"""Held-out perplexity and expert-routing statistics of the tiny MoE fixture, from the committed files.

Usage (from the repository root; needs torch, transformers and tokenizers, not qtoolkit itself)::

    HF_HUB_OFFLINE=1 python tools/eval_tiny_moe.py \
        [--model tests/data/tiny-moe] [--text tests/data/heldout.txt] [--ctx 512] [--chunks N] [--json FILE]

Perplexity follows docs/METHODS.md (llama-perplexity's method) exactly:

1. the whole text is tokenized once with ``tokenizer.json``; a BOS token is put in front only when
   ``tokenizer_config.json`` says ``add_bos_token: true`` (the fixture says false);
2. the tokens are cut into ``min(--chunks, len // ctx)`` non-overlapping chunks of ``ctx`` tokens (texts
   shorter than ``2 * ctx`` tokens are refused);
3. every chunk is evaluated from an empty cache; with BOS, the chunk's first token is replaced by BOS;
4. only the second half is scored: positions ``ctx/2 .. ctx-2`` predict the token after them;
5. PPL = exp(mean negative log-likelihood), accumulated in float64.

The bf16 weights are loaded into float32 (an exact widening) and run in float32, which is also what
llama.cpp does with bf16 weights on a CPU. Routing statistics count, per MoE layer, how many of the
``tokens * top_k`` routing slots each expert receives over every position of the evaluated chunks.
One thread; about 30 s for the 390 KB held-out text on one core.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(REPO_ROOT, "tests", "data", "tiny-moe")
DEFAULT_TEXT = os.path.join(REPO_ROOT, "tests", "data", "heldout.txt")


def tokenize_for_perplexity(model_dir: str, text: str) -> tuple[list[int], int | None]:
    """Token ids of ``text`` under the model's own BOS rule, and the BOS id if BOS is added (else None)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    with open(os.path.join(model_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        tok_cfg = json.load(f)
    ids = tok.encode(text, add_special_tokens=False).ids
    bos_id = None
    if tok_cfg.get("add_bos_token") is True:
        bos_id = tok.token_to_id(tok_cfg["bos_token"])
        if bos_id is None:
            raise ValueError(f"bos_token {tok_cfg['bos_token']!r} is not in tokenizer.json")
        ids = [bos_id] + ids
    return ids, bos_id


def load_model(model_dir: str):
    """The checkpoint as a float32 Qwen3MoeForCausalLM in eval mode."""
    from transformers import Qwen3MoeForCausalLM

    model = Qwen3MoeForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    return model


@torch.no_grad()
def evaluate(model, tokens: list[int], bos_id: int | None, ctx: int = 512, max_chunks: int | None = None,
             progress: bool = True) -> dict:
    """Perplexity (METHODS.md) and per-layer routing counts of ``model`` over ``tokens``."""
    if ctx < 4 or ctx % 2:
        raise ValueError(f"ctx must be an even number >= 4, got {ctx}")
    if len(tokens) < 2 * ctx:
        raise ValueError(f"the text has {len(tokens)} tokens; perplexity at ctx {ctx} needs at least {2 * ctx}")
    n_chunk = len(tokens) // ctx
    if max_chunks is not None:
        n_chunk = min(n_chunk, max_chunks)
    cfg = model.config
    n_exp, top_k = cfg.num_experts, cfg.num_experts_per_tok
    counts = np.zeros((cfg.num_hidden_layers, n_exp), dtype=np.int64)
    nll_sum = 0.0
    n_scored = 0
    first = ctx // 2
    t0 = time.time()
    for c in range(n_chunk):
        chunk = list(tokens[c * ctx:(c + 1) * ctx])
        if bos_id is not None:
            chunk[0] = bos_id
        ids = torch.tensor([chunk], dtype=torch.long)
        out = model(input_ids=ids, output_router_logits=True, use_cache=False)
        logp = torch.log_softmax(out.logits[0].double(), dim=-1)
        # positions first .. ctx-2 predict tokens first+1 .. ctx-1
        targets = ids[0, first + 1:]
        nll = -logp[first:ctx - 1].gather(1, targets[:, None])[:, 0]
        nll_sum += float(nll.sum())
        n_scored += int(nll.numel())
        for layer, logits in enumerate(out.router_logits):
            top = torch.topk(torch.softmax(logits.float(), dim=-1), top_k, dim=-1).indices
            counts[layer] += np.bincount(top.reshape(-1).numpy(), minlength=n_exp)
        if progress and sys.stderr.isatty():
            print(f"\r  chunk {c + 1}/{n_chunk}  ppl so far {math.exp(nll_sum / n_scored):.3f}",
                  end="", file=sys.stderr, flush=True)
    if progress and sys.stderr.isatty():
        print(file=sys.stderr)
    shares = counts / counts.sum(axis=1, keepdims=True)
    return {
        "ctx": ctx,
        "n_tokens": len(tokens),
        "n_chunks": n_chunk,
        "n_scored": n_scored,
        "ppl": math.exp(nll_sum / n_scored),
        "mean_nll": nll_sum / n_scored,
        "routing_counts": counts.tolist(),
        "routing_shares": shares.tolist(),
        "seconds": time.time() - t0,
    }


def format_routing(result: dict) -> str:
    """A per-layer table of expert shares (percent of routed slots)."""
    shares = np.asarray(result["routing_shares"])
    n_exp = shares.shape[1]
    head = "layer " + " ".join(f"  e{e:<3d}" for e in range(n_exp)) + "    min"
    lines = [head]
    for layer, row in enumerate(shares):
        cells = " ".join(f"{100 * s:5.1f}%" for s in row)
        lines.append(f"{layer:5d} {cells} {100 * row.min():5.1f}%")
    return "\n".join(lines)


def check_routing(result: dict, min_share: float) -> list[str]:
    """Messages for every (layer, expert) whose share of routed slots is below ``min_share``."""
    bad = []
    for layer, row in enumerate(result["routing_shares"]):
        for e, s in enumerate(row):
            if s < min_share:
                bad.append(f"layer {layer} expert {e}: {100 * s:.2f}% of routed tokens (< {100 * min_share:.1f}%)")
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="checkpoint folder (default: tests/data/tiny-moe)")
    ap.add_argument("--text", default=DEFAULT_TEXT, help="held-out text (default: tests/data/heldout.txt)")
    ap.add_argument("--ctx", type=int, default=512, help="context length of a chunk (default 512)")
    ap.add_argument("--chunks", type=int, default=None, help="evaluate at most this many chunks")
    ap.add_argument("--min-expert-share", type=float, default=0.02,
                    help="fail when an expert of a layer gets less than this share of routed tokens (default 0.02)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    tokens, bos_id = tokenize_for_perplexity(args.model, text)
    model = load_model(args.model)
    result = evaluate(model, tokens, bos_id, ctx=args.ctx, max_chunks=args.chunks)
    print(f"held-out text: {len(text.encode('utf-8'))} bytes, {result['n_tokens']} tokens "
          f"(BOS {'added' if bos_id is not None else 'not added'})")
    print(f"perplexity (ctx {result['ctx']}, {result['n_chunks']} chunks, {result['n_scored']} scored tokens): "
          f"{result['ppl']:.4f}")
    print("expert routing shares per layer (share of tokens x top_k routed slots):")
    print(format_routing(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    bad = check_routing(result, args.min_expert_share)
    for msg in bad:
        print(f"error: under-used expert: {msg}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
