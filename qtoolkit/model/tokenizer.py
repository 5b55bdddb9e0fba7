"""Byte-level BPE tokenization that gives llama.cpp's token ids, built on the ``tokenizers`` library.

* From a Hugging Face folder: ``tokenizer.json`` as the ``tokenizers`` library reads it.
* From a GGUF file (``tokenizer.ggml.model = gpt2``): the vocabulary and merges of the metadata,
  and the split regex of the pre-tokenizer named by ``tokenizer.ggml.pre`` (the converter's table of
  the regexes llama.cpp implements, :data:`qtoolkit.converter.vocab.KNOWN_REGEXES`). No
  normalizer: llama.cpp's gpt2 tokenizer applies none.

Special tokens written in the text are *not* parsed as special tokens by :meth:`Tokenizer.encode`
unless ``parse_special=True``: llama-perplexity tokenizes its text that way.
"""

from __future__ import annotations

import os
from typing import Any, List, Mapping, Optional

import numpy as np

from ..errors import QtkFormatError, QtkNotImplementedError

# token types of tokenizer.ggml.token_type
_CONTROL, _USER_DEFINED = 3, 4
# llama.cpp pre-tokenizer names that select the same pre-tokenizer as another name (llama-vocab.cpp)
_ALIASES = {
    **{n: "llama-bpe" for n in ("llama3", "llama-v3", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                               "jina-v5-nano")},
    **{n: "qwen2" for n in ("deepseek-r1-qwen", "kormo", "f2llmv2")},
    **{n: "gpt-2" for n in ("phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
                            "modern-bert")},
}
_ADDS_BOS = {"llama-bpe"}       # llama.cpp adds BOS for these when tokenizer.ggml.add_bos_token is absent


def _strings(md: Mapping[str, Any], key: str, where: str) -> List[str]:
    v = md.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(t, str) for t in v):
        raise QtkFormatError(f"{where}: {key} must be an array of strings")
    return v


def _int_array(v: Any) -> bool:
    if isinstance(v, np.ndarray):
        return v.ndim == 1 and v.dtype.kind in "iu"
    return isinstance(v, list) and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in v)


def _require_tokenizers():
    try:
        import tokenizers
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise QtkNotImplementedError("the 'tokenizers' package is needed for tokenization: pip install tokenizers") from exc
    return tokenizers


class Tokenizer:
    """Text <-> token ids. ``add_bos``: the model puts BOS in front of a text (METHODS.md)."""

    def __init__(self, tk, add_bos: bool, bos_id: Optional[int], eos_id: Optional[int]):
        self._tk = tk
        self.add_bos = bool(add_bos and bos_id is not None)
        self.bos_id = bos_id
        self.eos_id = eos_id

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_hf(cls, model_dir: str, add_bos: bool = False, bos_id: Optional[int] = None,
                eos_id: Optional[int] = None) -> "Tokenizer":
        tokenizers = _require_tokenizers()
        path = os.path.join(model_dir, "tokenizer.json")
        try:
            tk = tokenizers.Tokenizer.from_file(path)
        except Exception as exc:  # tokenizers raises its own Exception type
            raise QtkFormatError(f"{path}: the tokenizers library cannot read it: {exc}") from None
        return cls(tk, add_bos, bos_id, eos_id)

    @classmethod
    def from_gguf_metadata(cls, md: Mapping[str, Any], where: str, n_vocab: Optional[int] = None) -> "Tokenizer":
        """The tokenizer of GGUF metadata; ``n_vocab`` (the embedding's rows), when given, must be
        the number of tokens, as llama.cpp requires."""
        tokenizers = _require_tokenizers()
        from tokenizers import decoders, models, pre_tokenizers

        from ..converter.vocab import KNOWN_REGEXES

        kind = md.get("tokenizer.ggml.model")
        if kind != "gpt2":
            raise QtkNotImplementedError(
                f"{where}: tokenizer.ggml.model is {kind!r}; only byte-level BPE ('gpt2') vocabularies are supported"
            )
        tokens = _strings(md, "tokenizer.ggml.tokens", where)
        merges_raw = _strings(md, "tokenizer.ggml.merges", where)
        if not tokens or not merges_raw:
            raise QtkFormatError(f"{where}: tokenizer.ggml.tokens / tokenizer.ggml.merges are missing or empty")
        if n_vocab is not None and len(tokens) != n_vocab:
            raise QtkFormatError(f"{where}: tokenizer.ggml.tokens has {len(tokens)} tokens, token_embd.weight has {n_vocab} rows")
        types = md.get("tokenizer.ggml.token_type")
        if types is None:
            types = [1] * len(tokens)
        else:
            if not _int_array(types) or len(types) != len(tokens):
                raise QtkFormatError(
                    f"{where}: tokenizer.ggml.token_type must be {len(tokens)} integers, one per token"
                )
            types = [int(t) for t in types]
        pre = md.get("tokenizer.ggml.pre", "default")  # llama.cpp's name for a missing key
        if not isinstance(pre, str):
            raise QtkFormatError(f"{where}: tokenizer.ggml.pre = {pre!r} is not a string")
        pre = _ALIASES.get(pre, pre)
        # name -> (split regex, whether llama.cpp takes whole words from the vocabulary before merging)
        by_name = {name: (rx, ignore) for rx, names in KNOWN_REGEXES.items() for ignore, name in names.items()}
        if pre not in by_name:
            raise QtkNotImplementedError(
                f"{where}: pre-tokenizer {pre!r} is not supported for tokenization; supported: {', '.join(sorted(by_name))}"
            )
        vocab = {}
        for i, t in enumerate(tokens):
            vocab.setdefault(t, i)
        merges = []
        for m in merges_raw:
            cut = m.find(" ", 1)
            if cut < 0:
                raise QtkFormatError(f"{where}: merge {m!r} has no space")
            merges.append((m[:cut], m[cut + 1:]))
        regex, ignore_merges = by_name[pre]
        try:
            bpe = models.BPE(vocab, merges, ignore_merges=ignore_merges)
        except Exception as exc:  # tokenizers raises its own Exception type (e.g. a merge of unknown tokens)
            raise QtkFormatError(f"{where}: tokenizer.ggml.tokens / merges do not form a BPE vocabulary: {exc}") from None
        tk = tokenizers.Tokenizer(bpe)
        if pre == "gpt-2":
            tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        else:
            tk.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(tokenizers.Regex(regex), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ])
        tk.decoder = decoders.ByteLevel()
        special = [tokenizers.AddedToken(t, special=True, normalized=False)
                   for t, ty in zip(tokens, types) if ty == _CONTROL]
        user = [tokenizers.AddedToken(t, special=False, normalized=False)
                for t, ty in zip(tokens, types) if ty == _USER_DEFINED]
        if special:
            tk.add_special_tokens(special)
        if user:
            tk.add_tokens(user)
        ids = []
        for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
            v = md.get(key)
            if v is not None and (isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))
                                  or not 0 <= v < len(tokens)):
                raise QtkFormatError(f"{where}: {key} = {v!r} is not a token id in [0, {len(tokens)})")
            ids.append(None if v is None else int(v))
        add_bos = md.get("tokenizer.ggml.add_bos_token", pre in _ADDS_BOS)  # llama.cpp's default otherwise
        if not isinstance(add_bos, (bool, np.bool_)):
            raise QtkFormatError(f"{where}: tokenizer.ggml.add_bos_token = {add_bos!r} is not a BOOL")
        return cls(tk, bool(add_bos), ids[0], ids[1])

    # -- use -----------------------------------------------------------------------------------
    def encode(self, text: str, add_bos: Optional[bool] = None, parse_special: bool = False) -> List[int]:
        """Token ids of ``text``; BOS in front when the model adds it (or ``add_bos=True``)."""
        self._tk.encode_special_tokens = not parse_special
        try:
            ids = self._tk.encode(text, add_special_tokens=False).ids
        finally:
            self._tk.encode_special_tokens = False
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            ids = [self.bos_id] + ids
        return ids

    def decode(self, ids) -> str:
        return self._tk.decode([int(i) for i in ids], skip_special_tokens=False)

    @property
    def vocab_size(self) -> int:
        return self._tk.get_vocab_size(with_added_tokens=True)

