"""``qtoolkit generate MODEL --prompt TEXT [-n N]``: greedy generation, a smoke test with tok/s."""

from __future__ import annotations

import json
import sys


def add_arguments(parser) -> None:
    parser.add_argument("model", help="GGUF file or Hugging Face model folder")
    parser.add_argument("--prompt", "-p", required=True, help="the prompt text")
    parser.add_argument("-n", "--n-predict", type=int, default=64, help="tokens to generate (default 64)")
    parser.add_argument("--threads", "-t", type=int, default=None, help="matmul threads (default: all cores)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run(args) -> int:
    from .options import one_blas_thread_for_gguf
    from ..model.generate import generate

    one_blas_thread_for_gguf(args.model)

    def echo(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    res = generate(args.model, args.prompt, n_predict=args.n_predict, threads=args.threads,
                   on_text=None if args.json else echo)
    if args.json:
        print(json.dumps(res))
        return 0
    print()
    print(f"prompt: {res['prompt_tokens']} tokens in {res['prompt_seconds']:.3f} s ({res['prompt_tok_per_s']:.1f} tok/s); "
          f"generated: {res['generated_tokens']} tokens in {res['decode_seconds']:.3f} s "
          f"({res['decode_tok_per_s']:.1f} tok/s)", file=sys.stderr)
    return 0
