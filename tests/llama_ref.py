"""llama.cpp (through llama-cpp-python) as the reference consumer of our files: its quantizer
(``llama_model_quantize``) and its loader/evaluator. Tests import this only when llama_cpp is
installed."""

from __future__ import annotations

import ctypes
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

import llama_cpp


@llama_cpp.llama_log_callback
def _silent(level, text, user_data):  # llama.cpp logs every tensor it quantizes; tests want quiet
    pass


llama_cpp.llama_log_set(_silent, ctypes.c_void_p())


def quantize_file(src: str, dst: str, ftype: int, nthread: int = 2, imatrix: Optional[Dict[str, np.ndarray]] = None,
                  tensor_types: Sequence[Tuple[str, int]] = (), output_tensor_type: Optional[int] = None,
                  token_embedding_type: Optional[int] = None, pure: bool = False) -> None:
    """llama-quantize's library call on ``src``; raises on failure."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = nthread
    params.ftype = ftype
    params.pure = pure
    if output_tensor_type is not None:
        params.output_tensor_type = output_tensor_type
    if token_embedding_type is not None:
        params.token_embedding_type = token_embedding_type
    keep = []
    if imatrix:
        arr = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()
        for i, (name, vals) in enumerate(imatrix.items()):
            v = np.ascontiguousarray(vals, dtype=np.float32).ravel()
            nb = name.encode()
            keep += [v, nb]
            arr[i].name = nb
            arr[i].data = v.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            arr[i].size = v.size
        arr[len(imatrix)].name = None
        keep.append(arr)
        params.imatrix = arr
    if tensor_types:
        tt = (llama_cpp.llama_model_tensor_override * (len(tensor_types) + 1))()
        for i, (pat, typ) in enumerate(tensor_types):
            pb = pat.encode()
            keep.append(pb)
            tt[i].pattern = pb
            tt[i].type = typ
        tt[len(tensor_types)].pattern = None
        keep.append(tt)
        params.tt_overrides = tt
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src}) failed with {rc}")


def logits(path: str, tokens: Sequence[int], n_threads: int = 2) -> np.ndarray:
    """llama.cpp's logits for every position of ``tokens`` (n_tokens x n_vocab)."""
    llm = llama_cpp.Llama(model_path=path, n_ctx=max(64, len(tokens)), n_batch=max(64, len(tokens)),
                          logits_all=True, verbose=False, n_threads=n_threads,
                          type_k=0, type_v=0, flash_attn=False)  # F32 KV cache: no F16 rounding
    try:
        llm.eval(list(tokens))
        return np.array(llm.scores[:len(tokens)], dtype=np.float32)
    finally:
        llm.close()


def scored_logits(path: str, tokens: Sequence[int], ctx: int, n_chunk: int, n_threads: int = 2):
    """llama-perplexity's evaluation through llama.cpp: for each of ``n_chunk`` non-overlapping
    chunks of ``ctx`` tokens, from an empty KV cache, the logits of positions ctx/2 .. ctx-2
    (float32 [ctx/2 - 1, n_vocab]). Yields one array per chunk. (BOS is not substituted: the
    fixture's vocabulary adds none.)"""
    # F32 KV cache without flash attention, as qtoolkit keeps it (llama-perplexity's default F16
    # cache rounds keys, values and queries to half precision: a KLD floor of ~1.5e-5 on the fixture)
    llm = llama_cpp.Llama(model_path=path, n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, logits_all=True, verbose=False,
                          n_threads=n_threads, n_threads_batch=n_threads, type_k=0, type_v=0, flash_attn=False)
    try:
        first = ctx // 2
        for c in range(n_chunk):
            llm.reset()  # n_tokens = 0: eval() drops every cached position first
            llm.eval(list(tokens[c * ctx:(c + 1) * ctx]))
            yield np.array(llm.scores[first:ctx - 1], dtype=np.float32)
    finally:
        llm.close()
