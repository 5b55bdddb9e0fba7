"""The architecture registry: one small file per architecture, registered by decorator.

``get_arch(cfg)`` picks the class named by ``config.json``'s ``architectures`` and refuses
anything else with the list of what is supported. To add an architecture, write a file here with
a :class:`~.base.DecoderArch` subclass decorated with ``@register`` and import it below.
"""

from __future__ import annotations

from typing import Dict, List, Type

from ...errors import QtkNotImplementedError
from ..hfconfig import HFConfig
from .base import ArchPlan, DecoderArch, OutTensor, Part  # noqa: F401

_REGISTRY: Dict[str, Type[DecoderArch]] = {}


def register(cls: Type[DecoderArch]) -> Type[DecoderArch]:
    for name in cls.hf_architectures:
        _REGISTRY[name] = cls
    return cls


def supported() -> List[str]:
    return sorted(_REGISTRY)


def get_arch(cfg: HFConfig) -> DecoderArch:
    name = cfg.architecture
    cls = _REGISTRY.get(name)
    if cls is None:
        raise QtkNotImplementedError(
            f"{cfg.path}: architecture {name!r} is not supported; supported: {', '.join(supported())}"
        )
    return cls(cfg)


from . import llama, qwen2, qwen2moe, qwen3, qwen3moe  # noqa: E402,F401  (registration)
