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


# -- what llama-imatrix would collect, through llama.cpp's own forward pass -------------------------
#
# llama-cpp-python does not ship the llama-imatrix tool, but a context accepts the same scheduler
# callback that the tool installs (cb_eval): it is asked about every graph node and then handed the
# nodes it wanted after they ran. Here it records, like the tool (ggml-formats.md §5), the input
# (src1) of every MUL_MAT whose weight is a block tensor, and for MUL_MAT_ID the input row of every
# routed (token, slot) pair with the expert ids (src[2]). Written from the tool's documented
# behaviour; nothing of its code is used.

class _GGMLTensor(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p), ("ne", ctypes.c_int64 * 4),
                ("nb", ctypes.c_size_t * 4), ("op", ctypes.c_int), ("op_params", ctypes.c_int32 * 16),
                ("flags", ctypes.c_int32), ("src", ctypes.c_void_p * 10), ("view_src", ctypes.c_void_p),
                ("view_offs", ctypes.c_size_t), ("data", ctypes.c_void_p), ("name", ctypes.c_char * 64),
                ("extra", ctypes.c_void_p), ("padding", ctypes.c_char * 8)]


def _ggml_base():
    import os

    lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so"))
    lib.ggml_op_name.restype = ctypes.c_char_p
    lib.ggml_op_name.argtypes = [ctypes.c_int]
    return lib


def _view(t: _GGMLTensor, dtype) -> np.ndarray:
    """The tensor's elements [ne3, ne2, ne1, ne0] through its byte strides (a copy)."""
    ne = [int(v) for v in t.ne]
    nb = [int(v) for v in t.nb]
    item = np.dtype(dtype).itemsize
    extent = sum((ne[i] - 1) * nb[i] for i in range(4)) + item
    raw = np.frombuffer((ctypes.c_char * extent).from_address(t.data), dtype=np.uint8)
    arr = np.lib.stride_tricks.as_strided(raw.view(dtype) if extent % item == 0 else raw[:extent // item * item].view(dtype),
                                          shape=tuple(reversed(ne)), strides=tuple(reversed(nb)))
    return np.array(arr)


def imatrix_activations(path: str, tokens: Sequence[int], ctx: int, n_chunk: int, n_threads: int = 2,
                        process_output: bool = False):
    """``(sums, counts)`` as llama-imatrix would accumulate them on ``path`` for ``n_chunk`` chunks
    of ``ctx`` tokens (each from an empty cache; every position's logits requested, as the tool
    does, so the last layer runs on every token): float64 sums ``(n_mat, n)`` and int counts.
    ``process_output``: also ``output.weight`` (the tool's ``--process-output``)."""
    base = _ggml_base()
    sums: Dict[str, np.ndarray] = {}
    counts: Dict[str, np.ndarray] = {}

    @llama_cpp.ggml_backend_sched_eval_callback
    def cb(tp, ask, user_data):
        t = _GGMLTensor.from_address(tp)
        op = base.ggml_op_name(t.op).decode()
        if op not in ("MUL_MAT", "MUL_MAT_ID"):
            return False
        w = _GGMLTensor.from_address(t.src[0])
        name = w.name.decode()
        if not (name.startswith("blk.") or (process_output and name == "output.weight")):
            return False
        if ask:
            return True
        x = _view(_GGMLTensor.from_address(t.src[1]), np.float32).astype(np.float64)   # [1, n3?, ne1, ne0]
        n = x.shape[-1]
        if op == "MUL_MAT":
            s = sums.setdefault(name, np.zeros((1, n)))
            c = counts.setdefault(name, np.zeros(1, dtype=np.int64))
            rows = x.reshape(-1, n)
            s[0] += (rows * rows).sum(axis=0)
            c[0] += rows.shape[0]
            return True
        ids = _view(_GGMLTensor.from_address(t.src[2]), np.int32)[0, 0]       # [tokens, k]
        n_as = int(w.ne[2])
        s = sums.setdefault(name, np.zeros((n_as, n)))
        c = counts.setdefault(name, np.zeros(n_as, dtype=np.int64))
        x = x[0]                                                                 # [tokens, ne1, n]
        for tok in range(ids.shape[0]):
            for j in range(ids.shape[1]):
                e = int(ids[tok, j])
                row = x[tok, j % x.shape[1]]
                s[e] += row * row
                c[e] += 1
        return True

    mparams = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(path.encode(), mparams)
    if not model:
        raise RuntimeError(f"llama.cpp cannot load {path}")
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = ctx
    cparams.n_threads = cparams.n_threads_batch = n_threads
    cparams.type_k = cparams.type_v = 0           # F32 KV cache, as qtoolkit keeps it
    cparams.flash_attn_type = 0                   # off
    cparams.cb_eval = cb
    lctx = llama_cpp.llama_init_from_model(model, cparams)
    batch = llama_cpp.llama_batch_init(ctx, 0, 1)
    try:
        for c in range(n_chunk):
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(lctx), True)
            batch.n_tokens = ctx
            for i in range(ctx):
                batch.token[i] = int(tokens[c * ctx + i])
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 1
            rc = llama_cpp.llama_decode(lctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with {rc}")
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(lctx)
        llama_cpp.llama_model_free(model)
    return sums, counts


# -- an importance-matrix file as llama-quantize loads it -------------------------------------------


class _GGUFInitParams(ctypes.Structure):
    _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.POINTER(ctypes.c_void_p))]


def imatrix_file_weights(path: str) -> Dict[str, np.ndarray]:
    """The weights llama-quantize derives from an importance-matrix file (ggml-formats.md §4.5/§5):
    a GGUF file is parsed by ggml's own C reader (libggml-base's ``gguf_init_from_file``) with the
    loader's checks (the three imatrix.* keys, an F32 NAME.in_sum2 / NAME.counts pair per entry),
    then ``sums / count`` per matrix with count-0 matrices all ones; any other file is read as the
    legacy format and divided by its call count. Raises ValueError where llama-quantize refuses."""
    import struct

    lib = _ggml_base()
    lib.gguf_init_from_file.restype = ctypes.c_void_p
    lib.gguf_init_from_file.argtypes = [ctypes.c_char_p, _GGUFInitParams]
    lib.gguf_find_key.restype = ctypes.c_int64
    lib.gguf_find_key.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.gguf_get_kv_type.restype = ctypes.c_int
    lib.gguf_get_kv_type.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    lib.gguf_get_arr_type.restype = ctypes.c_int
    lib.gguf_get_arr_type.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    lib.gguf_free.argtypes = [ctypes.c_void_p]
    lib.ggml_free.argtypes = [ctypes.c_void_p]
    lib.ggml_get_first_tensor.restype = ctypes.c_void_p
    lib.ggml_get_first_tensor.argtypes = [ctypes.c_void_p]
    lib.ggml_get_next_tensor.restype = ctypes.c_void_p
    lib.ggml_get_next_tensor.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.ggml_nelements.restype = ctypes.c_int64
    lib.ggml_nelements.argtypes = [ctypes.c_void_p]

    ctx = ctypes.c_void_p()
    with open(path, "rb") as f:
        is_gguf = f.read(4) == b"GGUF"      # (llama.cpp tries GGUF first; checked here to keep its log quiet)
    g = lib.gguf_init_from_file(path.encode(), _GGUFInitParams(False, ctypes.pointer(ctx))) if is_gguf else None
    if is_gguf and not g:
        raise ValueError(f"{path}: ggml cannot parse this GGUF file")
    if not g:
        with open(path, "rb") as f:
            raw = f.read()
        n, pos, out = struct.unpack_from("<i", raw)[0], 4, {}
        if n < 1:
            raise ValueError(f"{path}: no data")
        for _ in range(n):
            ln = struct.unpack_from("<i", raw, pos)[0]
            name = raw[pos + 4:pos + 4 + ln].decode()
            pos += 4 + ln
            ncall, nval = struct.unpack_from("<ii", raw, pos)
            pos += 8
            vals = np.frombuffer(raw, dtype="<f4", count=nval, offset=pos).astype(np.float32)
            pos += 4 * nval
            out[name] = vals / np.float32(ncall) if ncall > 0 else vals
        return out
    try:
        for key in (b"imatrix.datasets", b"imatrix.chunk_count", b"imatrix.chunk_size"):
            if lib.gguf_find_key(g, key) < 0:
                raise ValueError(f"{path}: missing imatrix metadata ({key.decode()})")
        pairs: Dict[str, list] = {}
        t = lib.ggml_get_first_tensor(ctx)
        while t:
            tt = _GGMLTensor.from_address(t)
            name = tt.name.decode()
            for suffix, slot in ((".in_sum2", 0), (".counts", 1)):
                if name.endswith(suffix):
                    if tt.type != 0:
                        raise ValueError(f"{path}: {name} is not F32")
                    n = int(lib.ggml_nelements(t))
                    data = np.ctypeslib.as_array((ctypes.c_float * n).from_address(tt.data)).copy()
                    pairs.setdefault(name[: -len(suffix)], [None, None])[slot] = data
            t = lib.ggml_get_next_tensor(ctx, t)
        out = {}
        for name, (sums, counts) in pairs.items():
            if sums is None or counts is None:
                raise ValueError(f"{path}: mismatched sums and counts for {name}")
            c = np.array([float(round(float(v))) for v in counts], dtype=np.float32)
            sums = sums.reshape(c.size, -1)
            w = np.ones_like(sums)
            w[c > 0] = sums[c > 0] / c[c > 0, None]
            out[name] = w.ravel()
        return out
    finally:
        lib.gguf_free(g)
        if ctx:
            lib.ggml_free(ctx)
