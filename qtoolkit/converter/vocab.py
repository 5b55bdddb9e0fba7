"""A Hugging Face ``tokenizer.json`` (byte-level BPE) as llama.cpp's ``gpt2`` tokenizer metadata.

Reads the files directly (no transformers). The pre-tokenizer name that llama.cpp needs
(``tokenizer.ggml.pre``) is derived from the tokenizer's own split regex: llama.cpp implements a
fixed set of regexes under fixed names, and a tokenizer whose regex is one of them is that
pre-tokenizer, whatever its vocabulary. An unknown regex is an error that suggests
``--tokenizer-pre NAME``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..errors import QtkFileNotFoundError, QtkFormatError, QtkNotImplementedError, QtkValueError

log = logging.getLogger(__name__)

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# The split regexes of tokenizer.json pre-tokenizers, as Hugging Face writes them, and the names
# llama.cpp gives the pre-tokenizers that implement each (src/llama-vocab.cpp), with whether that
# pre-tokenizer takes a whole word from the vocabulary before applying merges (tokenizer.json's
# model.ignore_merges): Llama-3's does, the others with the same regex do not.
_CONTRACTIONS_CI = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
KNOWN_REGEXES: Dict[str, Dict[bool, str]] = {
    _CONTRACTIONS_CI + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": {False: "qwen2"},
    _CONTRACTIONS_CI + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        {True: "llama-bpe", False: "smaug-bpe"},
    _CONTRACTIONS_CI + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        {False: "qwen35"},
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+": {False: "gpt-2"},
}
GPT2_BYTELEVEL = "gpt-2"  # a ByteLevel pre-tokenizer with use_regex=true applies GPT-2's regex

# Names llama.cpp's loader accepts for tokenizer.ggml.pre (llama-cpp-python 0.3.36).
LLAMA_CPP_PRE_NAMES = frozenset("""
default minicpm5 llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano deepseek-llm
deepseek-coder deepseek-v3 spark2_5 youtu falcon mpt starcoder gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es
jina-v2-de a.x-4.0 mellum modern-bert jais-2 gemma4 granite-embed-multi-311m sarvam-moe jina-v1-en jina-v2-code
roberta-bpe whitespace refact command-r qwen2 deepseek-r1-qwen kormo f2llmv2 qwen35 stablelm2 olmo dbrx smaug-bpe
poro-chat chatglm-bpe glm4 glm5 viking jais tekken smollm codeshell bloom gpt3-finnish exaone exaone4 exaone-moe
chameleon minerva-7b megrez gpt-4o llama4 kanana2 talkie granite-embed-multi-97m tiny_aya cohere2moe superbpe
trillion granite-docling bailingmoe bailingmoe2 llada-moe seed-coder hunyuan hunyuan-dense hy_v4 joyai-llm kimi-k2
ufakzeka grok-2 afmoe laguna minimax-m2 solar-open mellum2
""".split())


@dataclass
class Vocab:
    tokens: List[str]
    token_types: List[int]
    merges: List[str]
    pre: str
    special_ids: Dict[str, int] = field(default_factory=dict)   # bos, eos, pad, unk, sep
    add_special: Dict[str, bool] = field(default_factory=dict)  # bos, eos
    chat_template: Optional[str] = None
    named_templates: List[Tuple[str, str]] = field(default_factory=list)

    def metadata(self) -> List[Tuple[str, object, int, Optional[int]]]:
        """(key, value, GGUF value type, array element type) in the order they are written."""
        md: List[Tuple[str, object, int, Optional[int]]] = [
            ("tokenizer.ggml.model", "gpt2", 8, None),
            ("tokenizer.ggml.pre", self.pre, 8, None),
            ("tokenizer.ggml.tokens", self.tokens, 9, 8),
            ("tokenizer.ggml.token_type", self.token_types, 9, 5),
            ("tokenizer.ggml.merges", self.merges, 9, 8),
        ]
        keys = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id",
                "sep": "seperator_token_id", "pad": "padding_token_id"}
        for typ, key in keys.items():
            if typ in self.special_ids:
                md.append((f"tokenizer.ggml.{key}", self.special_ids[typ], 4, None))
        for typ in ("bos", "eos"):
            if typ in self.add_special:
                md.append((f"tokenizer.ggml.add_{typ}_token", self.add_special[typ], 7, None))
        if self.chat_template:
            md.append(("tokenizer.chat_template", self.chat_template, 8, None))
        for name, tmpl in self.named_templates:
            md.append((f"tokenizer.chat_template.{name}", tmpl, 8, None))
        if self.named_templates:
            md.append(("tokenizer.chat_templates", [n for n, _ in self.named_templates], 9, 8))
        return md


def _read_json(path: str, required: bool = True) -> Optional[Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        if required:
            raise QtkFileNotFoundError(f"{path}: missing (the tokenizer is written into the GGUF file)") from None
        return None
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or UTF-8
        raise QtkFormatError(f"{path}: cannot read it as JSON: {exc}") from None


def _split_regexes(pre: Any, depth: int = 0) -> List[Tuple[str, str]]:
    """(kind, regex) of every splitting step of a pre-tokenizer definition."""
    if not isinstance(pre, dict):
        return []
    kind = pre.get("type")
    if kind == "Sequence":
        steps = pre.get("pretokenizers")
        if not isinstance(steps, list) or depth > 16:
            return [("unknown:Sequence", "")]
        out = []
        for p in steps:
            out += _split_regexes(p, depth + 1)
        return out
    if kind == "Split":
        pattern = pre.get("pattern")
        if not isinstance(pattern, dict):
            return [("unknown:Split", "")]
        if isinstance(pattern.get("Regex"), str):
            return [("regex", pattern["Regex"])]
        return [("string", str(pattern.get("String")))]
    if kind == "ByteLevel" and pre.get("use_regex", True):
        return [("bytelevel", "")]
    if kind in ("ByteLevel", "Metaspace", "Whitespace", "WhitespaceSplit", "Punctuation", "Digits"):
        return [(kind.lower(), "")] if kind != "ByteLevel" else []
    return [("unknown:" + str(kind), "")]


def detect_pre(tokenizer_json: Dict[str, Any], path: str) -> str:
    """llama.cpp's pre-tokenizer name for this tokenizer's split regex."""
    steps = _split_regexes(tokenizer_json.get("pre_tokenizer"))
    ignore_merges = bool((tokenizer_json.get("model") or {}).get("ignore_merges", False))
    if len(steps) == 1:
        kind, rx = steps[0]
        if kind == "bytelevel":
            rx, kind = next(r for r, names in KNOWN_REGEXES.items() if names.get(False) == GPT2_BYTELEVEL), "regex"
        if kind == "regex" and rx in KNOWN_REGEXES:
            names = KNOWN_REGEXES[rx]
            if ignore_merges in names:
                return names[ignore_merges]
            name = next(iter(names.values()))
            log.warning(
                "%s: model.ignore_merges is %s but llama.cpp's %r pre-tokenizer %s; a few words may be "
                "tokenized differently", path, str(ignore_merges).lower(), name,
                "applies merges to every word" if ignore_merges else "takes whole words from the vocabulary",
            )
            return name
    described = "; ".join(f"{k} {r!r}" if r else k for k, r in steps) or "none"
    raise QtkValueError(
        f"{path}: the tokenizer's pre-tokenizer ({described}) is not one llama.cpp implements under a known name. "
        "If you know which llama.cpp pre-tokenizer matches it, pass --tokenizer-pre NAME "
        "(e.g. qwen2, llama-bpe, gpt-2, deepseek-v3); the tokenizer would otherwise split text differently."
    )


def _special_id(step: Any) -> Optional[Any]:
    """The id of a TemplateProcessing step that is a special token, or None."""
    special = step.get("SpecialToken") if isinstance(step, dict) else None
    return special.get("id") if isinstance(special, dict) else None


def _token_content(entry: Any) -> Optional[str]:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict) and isinstance(entry.get("content"), str):
        return entry["content"]
    return None


def _looks_special(text: str) -> bool:
    return (text.startswith("<|") and text.endswith("|>")) or text in ("<pad>", "<mask>") or (
        text.startswith("<\uff5c") and text.endswith("\uff5c>"))


def check_merges(merges: List[str], vocab, where: str) -> None:
    """Every merge ``"A B"`` (cut at the first space after the first character, as the loader and
    llama.cpp cut it) names two tokens of ``vocab`` whose concatenation is a token too: what the
    BPE model the loader builds requires. A vocabulary that lost tokens (truncated, an id gap, a
    duplicate id) fails here, at conversion, rather than in the written file's loader."""
    for m in merges:
        cut = m.find(" ", 1)
        if cut < 0:
            raise QtkFormatError(f"{where}: merge {m!r} has no space")
        for part in (m[:cut], m[cut + 1:], m[:cut] + m[cut + 1:]):
            if part not in vocab:
                raise QtkFormatError(f"{where}: merge {m!r} uses {part!r}, which is not in the vocabulary "
                                     "(a truncated vocabulary, an id gap or a duplicate id?)")


def load_vocab(model_dir: str, n_vocab: int, pre_override: Optional[str] = None,
               config: Optional[Dict[str, Any]] = None) -> Vocab:
    """The GGUF tokenizer of a model folder; ``n_vocab`` = rows of the embedding matrix."""
    tj_path = os.path.join(model_dir, "tokenizer.json")
    tj = _read_json(tj_path)
    if not isinstance(tj, dict) or not isinstance(tj.get("model"), dict):
        raise QtkFormatError(f"{tj_path}: no 'model' object")
    model = tj["model"]
    if model.get("type", "BPE") != "BPE" or model.get("byte_fallback"):
        raise QtkNotImplementedError(
            f"{tj_path}: tokenizer model {model.get('type')!r}"
            f"{' with byte_fallback (SentencePiece-style)' if model.get('byte_fallback') else ''} is not supported yet; "
            "only byte-level BPE tokenizers (Llama-3, Qwen, GPT-2 style) are"
        )
    vocab = model.get("vocab")
    if not isinstance(vocab, dict):
        raise QtkFormatError(f"{tj_path}: model.vocab is not an object")

    tokens: List[Optional[str]] = [None] * n_vocab
    types = [UNUSED] * n_vocab

    def place(tok: str, tid: Any, ttype: int, where: str) -> None:
        if isinstance(tid, bool) or not isinstance(tid, int) or tid < 0:
            raise QtkFormatError(f"{tj_path}: {where} token {tok!r} has id {tid!r}")
        if tid >= n_vocab:
            raise QtkFormatError(
                f"{tj_path}: {where} token {tok!r} has id {tid}, but the model's vocab_size (embedding rows) is {n_vocab}"
            )
        if not isinstance(tok, str) or not tok:
            raise QtkFormatError(f"{tj_path}: {where} token with id {tid} is {tok!r}, not a non-empty string")
        if tokens[tid] is not None and tokens[tid] != tok:
            raise QtkFormatError(f"{tj_path}: id {tid} is given to two tokens, {tokens[tid]!r} and {tok!r}")
        if ids.setdefault(tok, tid) != tid:
            raise QtkFormatError(f"{tj_path}: {where} token {tok!r} has two ids, {ids[tok]} and {tid}")
        tokens[tid] = tok
        types[tid] = ttype

    ids: Dict[str, int] = {}

    for tok, tid in vocab.items():
        place(tok, tid, NORMAL, "vocabulary")
    added = tj.get("added_tokens") or []
    if not isinstance(added, list):
        raise QtkFormatError(f"{tj_path}: added_tokens is not a list")
    for entry in added:
        if not isinstance(entry, dict) or not isinstance(entry.get("content"), str):
            raise QtkFormatError(f"{tj_path}: malformed added_tokens entry {entry!r}")
        text = entry["content"]
        if entry.get("special") or _looks_special(text):
            ttype = CONTROL
        else:
            ttype = USER_DEFINED
            text = text.replace("\u2581", " ")
        place(text, entry.get("id"), ttype, "added")
    for i in range(n_vocab):
        if tokens[i] is None:
            tokens[i] = f"[PAD{i}]"
            types[i] = UNUSED

    merges_raw = model.get("merges") or []
    if not isinstance(merges_raw, list):
        raise QtkFormatError(f"{tj_path}: model.merges is not a list")
    merges: List[str] = []
    for m in merges_raw:
        if isinstance(m, str):
            merges.append(m)
        elif isinstance(m, list) and len(m) == 2 and all(isinstance(s, str) for s in m):
            merges.append(" ".join(s.replace(" ", "\u0120") for s in m))
        else:
            raise QtkFormatError(f"{tj_path}: unknown merges entry {m!r}")
    if not merges:
        raise QtkFormatError(f"{tj_path}: no BPE merges (llama.cpp's gpt2 tokenizer needs them)")
    check_merges(merges, ids, tj_path)

    if pre_override:
        if pre_override not in LLAMA_CPP_PRE_NAMES:
            raise QtkValueError(
                f"--tokenizer-pre {pre_override!r} is not a pre-tokenizer llama.cpp knows; known: "
                + ", ".join(sorted(LLAMA_CPP_PRE_NAMES))
            )
        pre = pre_override
    else:
        pre = detect_pre(tj, tj_path)

    v = Vocab([t for t in tokens], types, merges, pre)  # type: ignore[misc]
    _special_tokens(v, model_dir, tj, config or {})
    return v


def _special_tokens(v: Vocab, model_dir: str, tj: Dict[str, Any], config: Dict[str, Any]) -> None:
    tc_path = os.path.join(model_dir, "tokenizer_config.json")
    tc = _read_json(tc_path, required=False) or {}
    if not isinstance(tc, dict):
        raise QtkFormatError(f"{tc_path}: not a JSON object")
    by_content: Dict[str, int] = {}
    for entry in tj.get("added_tokens") or []:
        by_content.setdefault(entry["content"], entry["id"])
    vocab = tj["model"]["vocab"]
    n_vocab = len(v.tokens)
    for typ in ("bos", "eos", "unk", "sep", "pad"):
        content = _token_content(tc.get(f"{typ}_token"))
        tid = None
        if content is not None:
            tid = by_content.get(content, vocab.get(content))
        if tid is None:
            cid = config.get(f"{typ}_token_id")
            if isinstance(cid, list) and cid:
                cid = cid[0]
            if isinstance(cid, int) and not isinstance(cid, bool) and cid >= 0:
                tid = cid
        if tid is not None:
            if not 0 <= tid < n_vocab:
                log.warning("%s token id %d is outside the vocabulary (%d); not written", typ, tid, n_vocab)
                continue
            v.special_ids[typ] = tid
    # add_bos/add_eos: tokenizer_config's booleans, else what the post-processor template adds
    post = tj.get("post_processor") or {}
    procs = (post.get("processors") or [post]) if isinstance(post, dict) else []
    for proc in procs if isinstance(procs, list) else []:
        if isinstance(proc, dict) and proc.get("type") == "TemplateProcessing":
            single = proc.get("single") or []
            if isinstance(single, list) and len(single) > 1:
                first, last = (_special_id(single[0]), _special_id(single[-1]))
                bos = _token_content(tc.get("bos_token"))
                eos = _token_content(tc.get("eos_token"))
                if first is not None:
                    v.add_special["bos"] = first == bos or bos is None
                if last is not None:
                    v.add_special["eos"] = last == eos or eos is None
    for typ in ("bos", "eos"):
        if isinstance(tc.get(f"add_{typ}_token"), bool):
            v.add_special[typ] = tc[f"add_{typ}_token"]
    # chat template: tokenizer_config, else chat_template.jinja, else chat_template.json
    tmpl = tc.get("chat_template")
    if tmpl is None:
        jinja = os.path.join(model_dir, "chat_template.jinja")
        js = os.path.join(model_dir, "chat_template.json")
        if os.path.isfile(jinja):
            try:
                with open(jinja, encoding="utf-8") as f:
                    tmpl = f.read()
            except (OSError, ValueError) as exc:  # ValueError: not UTF-8
                raise QtkFormatError(f"{jinja}: cannot read the chat template: {exc}") from None
        elif os.path.isfile(js):
            doc = _read_json(js)
            tmpl = doc.get("chat_template") if isinstance(doc, dict) else None
    if isinstance(tmpl, str):
        v.chat_template = tmpl
    elif isinstance(tmpl, list):
        for item in tmpl:
            if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("template"), str):
                if item["name"] == "default":
                    v.chat_template = item["template"]
                else:
                    v.named_templates.append((item["name"], item["template"]))
    elif tmpl is not None:
        log.warning("%s: chat_template has an unexpected type; not written", tc_path)
