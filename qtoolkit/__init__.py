"""qtoolkit: quantize LLM checkpoints into llama.cpp's GGUF formats with fast C kernels.

The public API is small; everything it offers is listed in ``__all__``.
"""

from ._version import __version__
from .errors import (
    QtkError,
    QtkFileExistsError,
    QtkFileNotFoundError,
    QtkFormatError,
    QtkImatrixRequiredError,
    QtkMemoryError,
    QtkNotImplementedError,
    QtkTypeError,
    QtkValueError,
)
from .formats import CustomQuant, QuantType, TypeInfo, dequantize, quantize, row_bytes, type_info
from .matmul import active_isa, available_isas, matmul, memory_read_bandwidth, moe_ffn, moe_matmul, set_isa


def convert(model_dir, out_path, qtype="Q4_K_M", **options):
    """Convert a Hugging Face model folder to a llama.cpp GGUF file; see :mod:`qtoolkit.converter`."""
    from .converter.core import convert as _convert

    return _convert(model_dir, out_path, qtype, **options)


__all__ = [
    "__version__",
    "QuantType",
    "CustomQuant",
    "TypeInfo",
    "type_info",
    "row_bytes",
    "quantize",
    "dequantize",
    "convert",
    "matmul",
    "moe_matmul",
    "moe_ffn",
    "active_isa",
    "available_isas",
    "set_isa",
    "memory_read_bandwidth",
    "QtkError",
    "QtkValueError",
    "QtkTypeError",
    "QtkFormatError",
    "QtkImatrixRequiredError",
    "QtkMemoryError",
    "QtkNotImplementedError",
    "QtkFileExistsError",
    "QtkFileNotFoundError",
]
