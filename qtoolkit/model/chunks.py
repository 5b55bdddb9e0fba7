"""The evaluation text cut as llama-perplexity cuts it (docs/METHODS.md), shared by perplexity,
compare, the importance-matrix collection and the bit allocator's calibration:

* :func:`read_text`: the text, from a string or a UTF-8 file;
* :func:`chunk_plan`: how many chunks of ``ctx`` tokens (refusing texts shorter than 2 x ctx);
* :func:`chunk_tokens`: chunk ``c`` of the token list, its first token replaced by BOS when the
  model adds one;
* :func:`log_softmax64`: log-probabilities in float64, the precision every figure is summed in;
* ``ROWS_PER_BLOCK``: how many scored positions are widened to float64 at a time.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..errors import QtkValueError
from ..io.files import read_text_file

ROWS_PER_BLOCK = 64  # scored positions turned into float64 log-probabilities at a time


def read_file(path: str, what: str = "text", errors: str = "strict") -> str:
    """A UTF-8 text file through the package's one text reader
    (:func:`qtoolkit.io.files.read_text_file`: a regular file, a size limit, invalid UTF-8 an
    error unless ``errors="replace"``, a warning for binary data)."""
    return read_text_file(path, what, errors=errors)


def read_text(text: Optional[str], file: Optional[str]) -> str:
    """Exactly one of ``text`` (the text itself) and ``file`` (a UTF-8 file)."""
    if (text is None) == (file is None):
        raise QtkValueError("give exactly one of text= or file=")
    if file is not None:
        return read_file(file, "evaluation text")
    return text  # type: ignore[return-value]


def chunk_plan(n_tokens: int, ctx: int, chunks: Optional[int]) -> int:
    """Number of chunks (METHODS.md step 2); refuses texts shorter than 2 × ctx tokens."""
    if not isinstance(ctx, int) or ctx < 4 or ctx % 2:
        raise QtkValueError(f"ctx must be an even integer >= 4, got {ctx!r}")
    if n_tokens < 2 * ctx:
        raise QtkValueError(
            f"the text has {n_tokens} tokens; perplexity at ctx {ctx} needs at least 2 × ctx = {2 * ctx} tokens "
            "(use a longer text or a smaller --ctx)"
        )
    n = n_tokens // ctx
    if chunks is not None:
        if chunks < 1:
            raise QtkValueError(f"chunks must be >= 1, got {chunks}")
        n = min(n, chunks)
    return n


def chunk_tokens(tokens: Sequence[int], c: int, ctx: int, tokenizer) -> np.ndarray:
    """Tokens ``c * ctx .. (c + 1) * ctx`` as int64; the first is BOS when ``tokenizer`` adds BOS
    (METHODS.md step 3). ``tokenizer`` may be None (no BOS rule)."""
    chunk = np.asarray(tokens[c * ctx:(c + 1) * ctx], dtype=np.int64)
    if tokenizer is not None and tokenizer.add_bos:
        chunk = chunk.copy()
        chunk[0] = tokenizer.bos_id
    return chunk


def log_softmax64(logits: np.ndarray) -> np.ndarray:
    """``log softmax`` over the last axis, computed in float64."""
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return z
