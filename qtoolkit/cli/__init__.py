"""The ``qtoolkit`` command line. The only module that prints.

Each subcommand lives in a module that defines ``add_arguments(parser)`` and ``run(args) -> int``;
the table below maps names to modules, imported only when the command runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from typing import List, Optional

from .._version import __version__
from ..errors import QtkError

# name -> (module, one-line help)
COMMANDS = {
    "info": ("qtoolkit.cli.info", "version, supported types and the machine's kernels"),
    "errors": ("qtoolkit.cli.error_table", "quantize a tensor to every type and print the error table"),
    "convert": ("qtoolkit.cli.convert", "convert a Hugging Face checkpoint to a GGUF file in one streaming pass"),
    "quantize": ("qtoolkit.cli.quantize", "re-quantize an F32/F16/BF16 GGUF file with a llama-quantize preset"),
    "plan": ("qtoolkit.cli.plan", "file size of each preset, parameters, RAM and decode-speed ceiling from config.json alone"),
    "inspect": ("qtoolkit.cli.inspect", "show a GGUF file's metadata, tensors, types and bits per weight (or an imatrix's coverage)"),
    "imatrix": ("qtoolkit.cli.imatrix", "compute an importance matrix on a calibration text (per expert for MoE models)"),
    "perplexity": ("qtoolkit.cli.perplexity", "perplexity of a GGUF file or HF folder on a text (llama-perplexity's method)"),
    "compare": ("qtoolkit.cli.compare", "PPL, KL divergence, top-token and router agreement of a quant vs its base"),
    "generate": ("qtoolkit.cli.generate", "greedy generation from a prompt (smoke test; prints tok/s)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qtoolkit", description="Quantize LLM checkpoints to llama.cpp GGUF files.")
    parser.add_argument("--version", action="version", version=f"qtoolkit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    old_term = _catch_sigterm()
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except QtkError as exc:
        print(f"qtoolkit {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `qtoolkit inspect x.gguf | head`: the reader left
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        except OSError:  # pragma: no cover
            pass
        return 141
    except _Terminated:
        print(f"qtoolkit {args.command}: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"qtoolkit {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that unfinished outputs are cleaned up the same way."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def _catch_sigterm():
    """Route SIGTERM through _Terminated while a command runs (only when nobody else handles it)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
