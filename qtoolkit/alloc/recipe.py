"""Recipes: an allocation as ``REGEX=TYPE`` lines that ``--tensor-type`` reproduces.

A recipe names every quantizable tensor the allocator chose, grouped by tensor kind and type into
one anchored regular expression each (``^blk\\.(0|3|17)\\.ffn_down_exps\\.weight$=q4_K``), so a
94-layer model needs a few dozen lines rather than hundreds. Lines starting with ``#`` are
comments; the header says which preset the file was converted with (it sets ``general.file_type``
and decides nothing else, because every quantizable tensor is named) and the predicted KL
divergence. The same lines work as llama-quantize's ``--tensor-type-file`` entries (lower-case
names, ECMAScript-compatible regexes); :func:`read_recipe` reads both.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..errors import QtkValueError
from ..io.files import SMALL_TEXT_LIMIT, read_text_file
from ..io.output import write_text
from ..quants import QuantType

_LAYER = re.compile(r"^blk\.(\d+)\.(.+)$")


def type_token(t: QuantType) -> str:
    """ggml's own spelling (``q4_K``, ``iq4_xs``), which both qtoolkit and llama-quantize accept."""
    from ..quants import type_info

    return type_info(t).name.lower().replace("_k", "_K")


def recipe_lines(types: Dict[str, QuantType]) -> List[str]:
    """``REGEX=TYPE`` lines that give exactly ``types`` (each name matched by exactly one line)."""
    groups: Dict[Tuple[str, QuantType], List[int]] = defaultdict(list)
    lines = []
    for name in sorted(types, key=lambda n: (_LAYER.match(n) is not None, n)):
        m = _LAYER.match(name)
        if m is None:
            lines.append(f"^{re.escape(name)}$={type_token(types[name])}")
        else:
            groups[(m.group(2), types[name])].append(int(m.group(1)))
    for (suffix, t), layers in sorted(groups.items(), key=lambda kv: (kv[0][0], min(kv[1]))):
        alt = "|".join(str(i) for i in sorted(layers))
        layer_re = alt if len(layers) == 1 else f"({alt})"
        lines.append(f"^blk\\.{layer_re}\\.{re.escape(suffix)}$={type_token(t)}")
    return lines


def write_recipe(path: str, types: Dict[str, QuantType], header: Sequence[str] = (), force: bool = False,
                 inputs: Sequence[Optional[str]] = ()) -> List[str]:
    """Write the recipe of ``types`` (with ``# header`` lines) through the package's one output
    path (:class:`qtoolkit.io.output.ReplaceOnSuccess`: atomic, an existing file only with
    ``force``, never one of ``inputs``); returns its ``REGEX=TYPE`` lines."""
    lines = recipe_lines(types)
    text = "".join(f"# {h}\n" if h else "#\n" for h in header) + "".join(line + "\n" for line in lines)
    write_text(path, text, force, "the recipe", inputs)
    return lines


def parse_recipe_text(text: str, where: str = "recipe") -> List[str]:
    """The ``REGEX=TYPE`` entries of a recipe / tensor-type file: whitespace-separated, ``#`` comments."""
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        for item in line.split():
            if "=" not in item:
                raise QtkValueError(f"{where}:{no}: {item!r} is not REGEX=TYPE")
            out.append(item)
    return out


def read_recipe(path: str) -> List[str]:
    """The entries of a tensor-type file (:func:`qtoolkit.io.files.read_text_file`: a regular
    UTF-8 file of at most 16 MiB)."""
    return parse_recipe_text(read_text_file(path, "tensor-type file", SMALL_TEXT_LIMIT), path)


def recipe_header(path: Optional[str]) -> Dict[str, str]:
    """``key: value`` pairs of a recipe's comment header (``base-preset``, ``predicted-kld`` ...)."""
    out: Dict[str, str] = {}
    if not path:
        return out
    for line in read_text_file(path, "recipe", SMALL_TEXT_LIMIT).splitlines():
        if not line.startswith("#"):
            break
        body = line[1:].strip()
        if ":" in body:
            k, v = body.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def check_reproduces(types: Dict[str, QuantType], lines: Iterable[str], apply) -> None:
    """Raise unless ``apply(lines)`` (the converter's planning with these overrides) gives ``types``."""
    got = apply(list(lines))
    bad = [n for n, t in types.items() if got.get(n) != t]
    if bad:
        n = bad[0]
        raise QtkValueError(f"internal error: the recipe gives {n} type {got.get(n)}, the allocation chose {types[n].name}")
