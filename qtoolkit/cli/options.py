"""Argument groups and their readers shared by several commands."""

from __future__ import annotations

import argparse

from ..alloc.recipe import read_recipe
from ..model.blas import set_blas_threads
from ..quants import MAX_THREADS
from ..units import parse_size


def thread_count(value: str) -> int:
    """``--threads``: an integer from 1 to MAX_THREADS (argparse prints the error)."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if not 1 <= n <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"{value} is not a thread count from 1 to {MAX_THREADS}")
    return n


def add_text_errors(parser) -> None:
    parser.add_argument("--utf8-errors", choices=("strict", "replace"), default="strict",
                        help="a text that is not valid UTF-8: refuse it (strict, the default) or replace the "
                             "invalid bytes with U+FFFD and warn")


def read_eval_text(args):
    """``(file, text)`` for the library: the file name, or with --utf8-errors replace the text
    read here (invalid bytes replaced) and no file."""
    from ..model.chunks import read_file

    if getattr(args, "utf8_errors", "strict") == "replace":
        return None, read_file(args.file, "evaluation text", errors="replace")
    return args.file, None


def add_quant_options(parser) -> None:
    """The quantization options of 'qtoolkit convert' and 'qtoolkit quantize'."""
    parser.add_argument("--imatrix", metavar="FILE",
                        help="importance matrix from 'qtoolkit imatrix' or llama-imatrix (GGUF or legacy .dat)")
    parser.add_argument("--uncovered-experts", choices=("uniform", "layer-mean", "error"), default=None,
                        help="experts the imatrix calibration did not reach: uniform weights (llama-quantize's "
                             "choice, the default), the mean of the layer's covered experts, or refuse")
    parser.add_argument("--min-expert-tokens", type=int, default=1, metavar="N",
                        help="an expert that fewer than N calibration tokens reached counts as uncovered (default 1)")
    parser.add_argument("--tensor-type", action="append", default=[], metavar="REGEX=TYPE",
                        help="type for tensors whose name matches REGEX (repeatable; first match wins)")
    parser.add_argument("--tensor-type-file", metavar="FILE",
                        help="REGEX=TYPE entries, whitespace or newline separated, # comments (a recipe); "
                             "after any --tensor-type")
    parser.add_argument("--output-tensor-type", metavar="TYPE", help="type of output.weight")
    parser.add_argument("--token-embedding-type", metavar="TYPE", help="type of token_embd.weight")
    parser.add_argument("--pure", action="store_true", help="no mixture rules: the preset's type for every quantizable tensor")
    parser.add_argument("--threads", type=thread_count, default=None, help="quantization threads (default: all cores)")
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def tensor_type_args(args) -> list:
    """--tensor-type entries, then those of --tensor-type-file."""
    items = list(args.tensor_type or [])
    if getattr(args, "tensor_type_file", None):
        items += read_recipe(args.tensor_type_file)
    return items


def uncovered_options(args) -> dict:
    """The imatrix coverage options, and the tensor-type file as an input the output must not be."""
    opts = {"min_expert_tokens": args.min_expert_tokens, "inputs": [f for f in [args.tensor_type_file] if f]}
    if args.uncovered_experts:
        opts["uncovered_experts"] = args.uncovered_experts
    return opts


def add_eval_arguments(parser) -> None:
    parser.add_argument("--file", "-f", required=True, help="UTF-8 text to evaluate (at least 2 × ctx tokens)")
    parser.add_argument("--ctx", "-c", type=int, default=512, help="tokens per chunk (default 512, as llama-perplexity)")
    parser.add_argument("--chunks", type=int, default=None, help="evaluate at most this many chunks")
    parser.add_argument("--threads", "-t", type=thread_count, default=None, help="matmul threads (default: all cores)")
    add_text_errors(parser)
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object (last line)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_run_arguments(parser)


def add_run_arguments(parser) -> None:
    """The layer-major runner's memory options (docs/inference.md)."""
    g = parser.add_argument_group("memory (the layer-major runner)")
    g.add_argument("--max-memory", metavar="SIZE",
                   help="memory the hidden states of all chunks may take (default: half of the available memory); "
                        "above it they go to a file in --spill-dir")
    g.add_argument("--spill-dir", metavar="DIR", help="folder for the hidden-state file (default: the system's temp folder)")


def run_options(args) -> dict:
    """``max_memory`` and ``spill_dir`` from the runner's options."""
    return {"max_memory": parse_size(args.max_memory, "--max-memory") if args.max_memory else None,
            "spill_dir": args.spill_dir}


def format_run(run: dict) -> str:
    """One line: what a run read and spent."""
    gb = sum(run["bytes_read"]) / 1e9
    line = (f"run: {run['layers']} layers, read {gb:.2f} GB ({run['read_seconds']:.1f} s reading), "
            f"{run['compute_seconds']:.1f} s computing, peak memory {run['peak_rss_bytes'] / 1e9:.2f} GB")
    if run.get("hidden_spilled"):
        line += f"; hidden states ({run['hidden_bytes'] / 1e9:.2f} GB) spilled to disk"
    return line


def one_blas_thread_for_gguf(*paths) -> None:
    """Every matrix runs on the kernels' pool (GGUF files, and checkpoints in their stored dtype),
    so numpy's OpenBLAS (attention only) gets one thread instead of competing with it (see
    qtoolkit/model/blas.py)."""
    set_blas_threads(1)
