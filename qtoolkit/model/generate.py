"""Greedy generation: the prompt in one batched pass (gemm), then one token at a time (gemv)."""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Optional, Union

import numpy as np

from ..errors import QtkValueError
from .forward import Model
from .loader import as_model


def generate(model: Union[str, Model], prompt: str, n_predict: int = 64, threads: Optional[int] = None,
             on_text: Optional[Callable[[str], None]] = None, stop_at_eos: bool = True) -> Dict[str, Any]:
    """Greedy continuation of ``prompt``; ``on_text`` receives the text as it is produced.
    Returns the text, token ids and the prompt / decode speeds."""
    model = as_model(model, threads)
    tok = model.tokenizer
    ids = tok.encode(prompt)
    if not ids:
        raise QtkValueError("the prompt has no tokens")
    if n_predict < 0:
        raise QtkValueError(f"n_predict must be >= 0, got {n_predict}")
    cache = model.new_cache(len(ids) + n_predict)
    t0 = time.perf_counter()
    logits = model.forward(ids, cache, logits_from=len(ids) - 1)
    t1 = time.perf_counter()
    out = []
    shown = ""
    for _ in range(n_predict):
        nxt = int(np.argmax(logits[-1]))
        if stop_at_eos and tok.eos_id is not None and nxt == tok.eos_id:
            break
        out.append(nxt)
        if on_text is not None:
            text = tok.decode(out)
            if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
                on_text(text[len(shown):])
                shown = text
        if len(out) == n_predict:
            break
        logits = model.forward([nxt], cache)
    t2 = time.perf_counter()
    n_dec = max(len(out) - 1, 0)  # the first new token came from the prompt pass
    return {
        "model": model.path, "prompt_tokens": len(ids), "generated_tokens": len(out), "tokens": out,
        "text": tok.decode(out), "prompt_seconds": round(t1 - t0, 4), "decode_seconds": round(t2 - t1, 4),
        "prompt_tok_per_s": len(ids) / (t1 - t0) if t1 > t0 else None,
        "decode_tok_per_s": n_dec / (t2 - t1) if n_dec and t2 > t1 else None,
    }
