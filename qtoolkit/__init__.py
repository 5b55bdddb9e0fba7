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
from .quants import CustomQuant, QuantType, TypeInfo, dequantize, quantize, row_bytes, type_info
from .matmul import active_isa, available_isas, matmul, memory_read_bandwidth, moe_ffn, moe_matmul, set_isa

_BUDGET_OPTIONS = ("target_size", "target_bpw", "calib", "calib_chunks", "calib_ctx", "recipe", "alloc_types",
                  "alloc_progress", "calib_reference", "max_probes")


def convert(model_dir, out_path, qtype=None, **options):
    """Convert a Hugging Face model folder to a llama.cpp GGUF file: with a llama-quantize preset
    ``qtype`` (default Q4_K_M; see :func:`qtoolkit.converter.convert`), or a bit allocation with
    ``target_size=`` / ``target_bpw=`` and ``calib=`` (see :func:`qtoolkit.alloc.convert_to_budget`)."""
    if options.get("target_size") is not None or options.get("target_bpw") is not None:
        from .alloc.budget import convert_to_budget

        return convert_to_budget(model_dir, out_path, qtype, **options)
    given = [k for k in _BUDGET_OPTIONS if options.get(k) is not None]
    if given:
        raise QtkValueError(f"{', '.join(given)} only go with target_size= or target_bpw=")
    from .converter.convert import convert as _convert

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


def compute_imatrix(model, file=None, text=None, output=None, **options):
    """An importance matrix from a calibration text, written to ``output`` (GGUF, or ``.dat``);
    returns the report. See :func:`qtoolkit.imatrix.compute_imatrix` (``qtoolkit.imatrix`` is the
    package: file formats, coverage, collection)."""
    from .imatrix.collect import compute_imatrix as _compute

    return _compute(model, file=file, text=text, output=output, **options)


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
    "compute_imatrix",
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
