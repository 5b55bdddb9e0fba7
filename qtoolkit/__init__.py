"""qtoolkit: quantize LLM checkpoints into llama.cpp's GGUF formats with fast C kernels.

The public API is small; everything it offers is listed in ``__all__``.
"""

from ._version import __version__
from .errors import (
    QtkError,
    QtkFileExistsError,
    QtkFileNotFoundError,
    QtkFormatError,
    QtkImatrixCoverageError,
    QtkImatrixRequiredError,
    QtkIOError,
    QtkMemoryError,
    QtkNotImplementedError,
    QtkTypeError,
    QtkValueError,
)
from .formats import CustomQuant, QuantType, TypeInfo, dequantize, quantize, row_bytes, type_info
from .matmul import active_isa, available_isas, matmul, memory_read_bandwidth, moe_ffn, moe_matmul, set_isa
from . import imatrix  # noqa: E402  a callable module: qtoolkit.imatrix(model, file=..., output=...)


def convert(model_dir, out_path, qtype=None, **options):
    """Convert a Hugging Face model folder to a llama.cpp GGUF file (``qtype`` default Q4_K_M, or a
    bit allocation with ``target_size=`` / ``target_bpw=`` and ``calib=``); see :mod:`qtoolkit.converter`."""
    from .converter.core import convert as _convert

    return _convert(model_dir, out_path, qtype, **options)


def load(path, threads=None):
    """A GGUF file or a Hugging Face folder as a runnable model; see :mod:`qtoolkit.model`."""
    from .model.loader import load as _load

    return _load(path, threads=threads)


def perplexity(model, file=None, text=None, ctx=512, chunks=None, threads=None, progress=None):
    """Perplexity by llama-perplexity's method (docs/METHODS.md); returns the ``--json`` dict."""
    from .model.evaluate import perplexity as _ppl

    return _ppl(model, file=file, text=text, ctx=ctx, chunks=chunks, threads=threads, progress=progress)


def compare(base, quant, file=None, text=None, ctx=512, chunks=None, threads=None, progress=None, report=None):
    """PPL of both models, KL divergence, top-token and router agreement (docs/METHODS.md)."""
    from .model.evaluate import compare as _compare

    return _compare(base, quant, file=file, text=text, ctx=ctx, chunks=chunks, threads=threads,
                    progress=progress, report=report)


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
    "load",
    "perplexity",
    "compare",
    "imatrix",
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
    "QtkImatrixCoverageError",
    "QtkMemoryError",
    "QtkNotImplementedError",
    "QtkFileExistsError",
    "QtkFileNotFoundError",
    "QtkIOError",
]
