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

__all__ = [
    "__version__",
    "QuantType",
    "CustomQuant",
    "TypeInfo",
    "type_info",
    "row_bytes",
    "quantize",
    "dequantize",
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
