"""The registry of architectures: ``@register`` on a :class:`~.base.DecoderArch` subclass names
the ``config.json`` architectures it converts; :func:`get_arch` picks one."""

from __future__ import annotations

from typing import Dict, List, Type

from ...errors import QtkNotImplementedError
from ..hfconfig import HFConfig
from .base import DecoderArch

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
