"""The architecture registry: one small file per architecture, registered by decorator.

``get_arch(cfg)`` picks the class named by ``config.json``'s ``architectures`` and refuses
anything else with the list of what is supported. To add an architecture, write a file here with
a :class:`~.base.DecoderArch` subclass decorated with ``@register`` (:mod:`.registry`) and
import it below.
"""

from __future__ import annotations

from . import llama, qwen2, qwen2moe, qwen3, qwen3moe  # noqa: F401  (each registers itself)
from .base import ArchPlan, DecoderArch, OutTensor, Part  # noqa: F401
from .registry import get_arch, register, supported  # noqa: F401
