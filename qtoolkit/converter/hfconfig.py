"""Reading a Hugging Face ``config.json`` whatever transformers version wrote it.

Field names drift between versions (``num_experts`` / ``num_local_experts``, ``rope_theta`` /
``rope_parameters``, ``torch_dtype`` / ``dtype``): :class:`HFConfig` accepts every spelling and
checks types, so the architecture files can ask for ``cfg.int("hidden_size")`` and get either a
positive integer or an error that names the file and the field.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, Optional

from ..errors import QtkFileNotFoundError, QtkFormatError

_MISSING = object()

# one meaning, several spellings (first found wins)
SPELLINGS = {
    "num_experts": ("num_experts", "num_local_experts", "n_routed_experts"),
    "num_experts_per_tok": ("num_experts_per_tok", "num_experts_per_token", "top_k_experts"),
    "dtype": ("torch_dtype", "dtype"),
    "max_position_embeddings": ("max_position_embeddings", "n_ctx", "n_positions", "max_sequence_length"),
}


class HFConfig:
    def __init__(self, raw: Dict[str, Any], path: str):
        self.raw = raw
        self.path = path

    @classmethod
    def load(cls, model_dir: str) -> "HFConfig":
        path = os.path.join(model_dir, "config.json")
        if not os.path.isdir(model_dir):
            raise QtkFileNotFoundError(f"{model_dir}: not a directory (expected a Hugging Face model folder)")
        return cls.load_file(path)

    @classmethod
    def load_file(cls, path: str) -> "HFConfig":
        """A ``config.json`` given by its own path (any file name)."""
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
        except FileNotFoundError:
            raise QtkFileNotFoundError(f"{path}: missing (every Hugging Face model folder has a config.json)") from None
        except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or UTF-8
            raise QtkFormatError(f"{path}: cannot read it as JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise QtkFormatError(f"{path}: not a JSON object")
        # multimodal wrappers keep the language model in text_config
        if isinstance(raw.get("text_config"), dict) and "hidden_size" not in raw:
            merged = dict(raw["text_config"])
            merged.setdefault("architectures", raw.get("architectures"))
            raw = merged
        return cls(raw, path)

    # -- lookups ---------------------------------------------------------------------------
    def find(self, name: str, default: Any = _MISSING) -> Any:
        for key in SPELLINGS.get(name, (name,)):
            if key in self.raw and self.raw[key] is not None:
                return self.raw[key]
        if default is _MISSING:
            spell = " / ".join(SPELLINGS.get(name, (name,)))
            raise QtkFormatError(f"{self.path}: required field {spell!r} is missing")
        return default

    def has(self, name: str) -> bool:
        return self.find(name, None) is not None

    def int(self, name: str, default: Any = _MISSING, minimum: int = 1) -> int:
        v = self.find(name, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise QtkFormatError(f"{self.path}: field {name!r} must be an integer >= {minimum}, got {v!r}")
        return v

    def float(self, name: str, default: Any = _MISSING, minimum: Optional[float] = None,
              positive: bool = False) -> float:
        """A finite number; at least ``minimum`` / above 0 with ``positive`` (the loader's ranges,
        so that what convert writes, the loader reads)."""
        v = self.find(name, default)
        return self.number(v, name, minimum, positive)

    def number(self, v: Any, name: str, minimum: Optional[float] = None, positive: bool = False) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise QtkFormatError(f"{self.path}: field {name!r} must be a finite number, got {v!r}")
        if minimum is not None and v < minimum:
            raise QtkFormatError(f"{self.path}: field {name!r} must be at least {minimum}, got {v!r}")
        if positive and not v > 0:
            raise QtkFormatError(f"{self.path}: field {name!r} must be a positive number, got {v!r}")
        return float(v)

    def bool(self, name: str, default: Any = _MISSING) -> bool:
        v = self.find(name, default)
        if not isinstance(v, bool):
            raise QtkFormatError(f"{self.path}: field {name!r} must be true or false, got {v!r}")
        return v

    # -- derived values --------------------------------------------------------------------
    @property
    def architecture(self) -> str:
        archs = self.raw.get("architectures")
        if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
            raise QtkFormatError(f"{self.path}: no 'architectures' list naming the model class")
        return archs[0]

    @property
    def rope(self) -> Dict[str, Any]:
        """rope_scaling and rope_parameters merged (newer transformers moved rope_theta inside)."""
        out: Dict[str, Any] = {}
        for key in ("rope_scaling", "rope_parameters"):
            v = self.raw.get(key)
            if v is not None and not isinstance(v, dict):
                raise QtkFormatError(f"{self.path}: {key} must be an object (or null), got {v!r}"[:300])
            if isinstance(v, dict):
                if "full_attention" in v and isinstance(v["full_attention"], dict):
                    v = v["full_attention"]
                out.update(v)
        if "type" in out and "rope_type" not in out:
            out["rope_type"] = out["type"]
        return out

    @property
    def rope_theta(self) -> float:
        theta = self.rope.get("rope_theta", self.raw.get("rope_theta", 10000.0))
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not 0 < theta < math.inf:
            raise QtkFormatError(f"{self.path}: rope_theta must be a positive number, got {theta!r}")
        return float(theta)

    @property
    def n_head(self) -> int:
        return self.int("num_attention_heads")

    @property
    def n_head_kv(self) -> int:
        return self.int("num_key_value_heads", self.n_head)

    @property
    def head_dim(self) -> int:
        hd = self.raw.get("head_dim")
        if hd is None:
            hidden, heads = self.int("hidden_size"), self.n_head
            if hidden % heads:
                raise QtkFormatError(f"{self.path}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
            return hidden // heads
        return self.int("head_dim")

    @property
    def dtype(self) -> Optional[str]:
        v = self.find("dtype", None)
        return str(v) if v is not None else None
