"""qtoolkit: quantize LLM checkpoints into llama.cpp's GGUF formats with fast C kernels.

The public API is small; everything it offers is listed in ``__all__``.
"""

from ._version import __version__
from .errors import (
    QtkError,
    QtkFileExistsError,
    QtkFileNotFoundError,
    QtkFormatError,
    QtkMemoryError,
    QtkNotImplementedError,
    QtkTypeError,
    QtkValueError,
)
from .formats import CustomQuant, QuantType, TypeInfo, dequantize, quantize, row_bytes, type_info


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
    "QtkError",
    "QtkValueError",
    "QtkTypeError",
    "QtkFormatError",
    "QtkMemoryError",
    "QtkNotImplementedError",
    "QtkFileExistsError",
    "QtkFileNotFoundError",
]
