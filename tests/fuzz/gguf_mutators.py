"""GGUF files for the fuzzers: a small writer that records where every field lands, valid sample
files (tiny models converted by qtoolkit, importance matrices, legacy ``.dat`` importance files),
and mutations of them.

Two kinds of mutation:

* byte-level, on the serialized file, guided by the writer's field map: bit flips (anywhere or in
  the header), truncation, extreme integers written into a count, length, dimension, type id or
  offset field, bytes inserted or deleted inside the header;
* structural, on the parsed form, written back as a *valid container*: metadata of the wrong value
  type, absurd hyper-parameters (``block_count``, ``head_count``, eps, rope base...), missing keys,
  broken tokenizer arrays, tensor shapes or types that contradict the metadata, missing, duplicated
  or renamed tensors. These get past the container checks and exercise what the model loader, the
  re-quantizer and the importance-matrix reader make of the values.
"""

from __future__ import annotations

import functools
import os
import struct
import tempfile
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

import numpy as np

from tests.fuzz.mutators import EXTREME_INTS, flip_bits

# value type id -> struct format of a scalar (None: string / array)
VFMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 8: None, 9: None,
        10: "<Q", 11: "<q", 12: "<d"}
INT_TYPES = (0, 1, 2, 3, 4, 5, 10, 11)


@dataclass
class KVItem:
    key: str
    vtype: int
    value: Any
    subtype: Optional[int] = None


@dataclass
class TensorItem:
    name: str
    ne: Tuple[int, ...]
    type_id: int
    data: bytes


@dataclass
class Doc:
    """A GGUF file in parsed form."""

    kvs: List[KVItem]
    tensors: List[TensorItem]
    alignment: int = 32
    version: int = 3

    def copy(self) -> "Doc":
        return Doc([KVItem(k.key, k.vtype, _copy(k.value), k.subtype) for k in self.kvs],
                   [TensorItem(t.name, tuple(t.ne), t.type_id, t.data) for t in self.tensors], self.alignment, self.version)

    def kv(self, key: str) -> Optional[KVItem]:
        return next((k for k in self.kvs if k.key == key), None)


def _copy(v):
    if isinstance(v, np.ndarray):
        return v.copy()
    if isinstance(v, list):
        return list(v)
    return v


@dataclass
class Field:
    offset: int
    fmt: str      # struct format
    kind: str     # "version", "count", "strlen", "vtype", "atype", "alen", "value", "ndims", "dim", "ttype", "toffset"


@dataclass
class Written:
    blob: bytes
    fields: List[Field] = field(default_factory=list)
    header_end: int = 0


def _scalar(vtype: int, v) -> bytes:
    fmt = VFMT[vtype]
    if vtype in (6, 12):
        return struct.pack(fmt, float(v))
    if vtype == 7:
        return struct.pack(fmt, 1 if v else 0)
    bits = struct.calcsize(fmt) * 8
    v = int(v)
    if fmt[1].isupper():
        v %= 1 << bits
    else:
        v = (v + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))
    return struct.pack(fmt, v)


def write(doc: Doc) -> Written:
    """Serialize ``doc`` (offsets sequential and aligned, as ggml wants) and map its fields."""
    out = bytearray()
    fields: List[Field] = []

    def put(fmt, v, kind):
        fields.append(Field(len(out), fmt, kind))
        out.extend(struct.pack(fmt, v))

    def put_str(s):
        raw = s.encode("utf-8", errors="surrogatepass") if isinstance(s, str) else bytes(s)
        put("<Q", len(raw), "strlen")
        out.extend(raw)

    def put_value(vtype, v, sub):
        if vtype == 8:
            put_str(v)
        elif vtype == 9:
            put("<I", sub, "atype")
            items = list(v)
            put("<Q", len(items), "alen")
            for x in items:
                put_value(sub, x, None)
        else:
            fields.append(Field(len(out), VFMT[vtype], "value"))
            out.extend(_scalar(vtype, v))

    out.extend(b"GGUF")
    put("<I", doc.version, "version")
    put("<Q", len(doc.tensors), "count")
    put("<Q", len(doc.kvs), "count")
    for k in doc.kvs:
        put_str(k.key)
        put("<I", k.vtype, "vtype")
        put_value(k.vtype, k.value, k.subtype)
    A = doc.alignment
    pos = 0
    for t in doc.tensors:
        put_str(t.name)
        put("<I", len(t.ne), "ndims")
        for d in t.ne:
            put("<Q", d, "dim")
        put("<I", t.type_id, "ttype")
        put("<Q", pos, "toffset")
        pos += len(t.data) + (-len(t.data)) % A
    header_end = len(out)
    out.extend(b"\0" * ((-len(out)) % A))
    for t in doc.tensors:
        out.extend(t.data)
        out.extend(b"\0" * ((-len(t.data)) % A))
    return Written(bytes(out), fields, header_end)


def parse(blob: bytes) -> Doc:
    """The parsed form of a valid GGUF file (through qtoolkit's reader)."""
    from qtoolkit.io.gguf_reader import GGUFFile

    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.gguf")
        with open(p, "wb") as f:
            f.write(blob)
        with GGUFFile(p) as g:
            kvs = [KVItem(k.key, k.type, _copy(k.value), k.subtype) for k in g.kv.values()]
            tensors = [TensorItem(t.name, tuple(t.ne), t.type_id, bytes(g.data(t).tobytes())) for t in g.tensors]
            return Doc(kvs, tensors, g.alignment, g.version)


# -- valid samples ---------------------------------------------------------------------------

MODEL_VARIANTS = [
    # (arch, preset, checkpoint options)
    ("llama", "F16", dict(hidden=64, layers=2, heads=4, kv_heads=2, ff=128, vocab=300)),
    ("qwen3", "Q8_0", dict(hidden=64, layers=1, heads=2, kv_heads=1, ff=96, vocab=300)),
    ("qwen3moe", "Q8_0", dict(hidden=64, layers=1, heads=2, kv_heads=1, experts=4, top_k=2, moe_ff=64, vocab=300)),
    ("qwen2moe", "Q4_0", dict(hidden=64, layers=1, heads=2, kv_heads=1, experts=4, top_k=2, moe_ff=64, shared_ff=96,
                              vocab=300)),
    ("llama", "Q4_K_M", dict(hidden=256, layers=1, heads=2, kv_heads=1, ff=256, vocab=300)),
]


@functools.lru_cache(maxsize=None)
def model_file(variant: int) -> bytes:
    """A tiny converted model (random weights) as GGUF bytes; made once per process."""
    import qtoolkit
    from tools.fixtures.synth_checkpoint import make_checkpoint

    arch, preset, kw = MODEL_VARIANTS[variant]
    with tempfile.TemporaryDirectory() as d:
        ck = make_checkpoint(os.path.join(d, "ck"), arch, dtype="f32", seed=variant, **kw)
        out = os.path.join(d, "m.gguf")
        qtoolkit.convert(ck, out, preset, threads=1)
        with open(out, "rb") as f:
            return f.read()


@functools.lru_cache(maxsize=None)
def model_doc(variant: int) -> Doc:
    return parse(model_file(variant))


def gguf_model_sample(rng: np.random.Generator) -> Doc:
    return model_doc(int(rng.integers(0, len(MODEL_VARIANTS)))).copy()


def imatrix_doc(rng: np.random.Generator) -> Doc:
    """A GGUF importance matrix: imatrix.* keys and NAME.in_sum2 / NAME.counts pairs."""
    kvs = [KVItem("general.type", 8, "imatrix"),
           KVItem("imatrix.datasets", 9, ["calib.txt"], 8),
           KVItem("imatrix.chunk_count", 4, int(rng.integers(1, 100))),
           KVItem("imatrix.chunk_size", 4, 512)]
    tensors = []
    for i in range(int(rng.integers(1, 4))):
        n = int(rng.choice([32, 64, 256]))
        n_mat = int(rng.choice([1, 1, 4]))
        base = f"blk.{i}.ffn_{'down_exps' if n_mat > 1 else 'up'}.weight"
        sums = (rng.random((n_mat, n), dtype=np.float32) * 10).astype("<f4")
        counts = rng.integers(0, 50, n_mat).astype("<f4")
        tensors.append(TensorItem(base + ".in_sum2", (n, n_mat), 0, sums.tobytes()))
        tensors.append(TensorItem(base + ".counts", (1, n_mat), 0, counts.tobytes()))
    return Doc(kvs, tensors)


# -- legacy .dat importance matrices -------------------------------------------------------

def dat_write(entries, trailer=(10, "calib.txt")) -> Written:
    """entries: [(name, ncall, float32 values)] -> a legacy .dat file with its field map."""
    out = bytearray()
    fields: List[Field] = []

    def put(fmt, v, kind):
        fields.append(Field(len(out), fmt, kind))
        out.extend(struct.pack(fmt, v))

    put("<i", len(entries), "count")
    for name, ncall, vals in entries:
        raw = name.encode("utf-8", "surrogateescape")  # "\udcff" writes the byte 0xff
        put("<i", len(raw), "strlen")
        out.extend(raw)
        put("<i", ncall, "value")
        put("<i", len(vals), "alen")
        out.extend(np.asarray(vals, dtype="<f4").tobytes())
    if trailer is not None:
        put("<i", trailer[0], "value")
        raw = trailer[1].encode()
        put("<i", len(raw), "strlen")
        out.extend(raw)
    return Written(bytes(out), fields, len(out))


def dat_entries(rng: np.random.Generator):
    """[(name, ncall, values)] of a random legacy importance file."""
    entries = []
    for i in range(int(rng.integers(1, 4))):
        n = int(rng.choice([32, 64, 256])) * int(rng.choice([1, 1, 4]))
        entries.append((f"blk.{i}.ffn_up.weight", int(rng.integers(0, 20)), rng.random(n, dtype=np.float32) * 10))
    return entries


def dat_sample(rng: np.random.Generator) -> Written:
    return dat_write(dat_entries(rng), None if rng.random() < 0.3 else (int(rng.integers(0, 50)), "calib.txt"))


# -- byte-level mutation ---------------------------------------------------------------------

def _extreme(fmt: str, rng) -> int:
    bits = struct.calcsize(fmt) * 8
    v = int(EXTREME_INTS[int(rng.integers(0, len(EXTREME_INTS)))])
    if rng.random() < 0.3:
        v = int(rng.integers(0, 1 << 20)) * int(rng.choice([1, 8, 32, 4096]))
    if fmt[1].isupper():
        return v % (1 << bits)
    return (v + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))


def mutate_bytes(w: Written, rng: np.random.Generator) -> bytes:
    blob = w.blob
    kind = int(rng.integers(0, 7))
    if kind == 0:  # bit flips anywhere
        return flip_bits(blob, rng, 8)
    if kind == 1:  # bit flips in the header
        return flip_bits(blob, rng, 4, within=max(1, w.header_end))
    if kind == 2:  # truncation, mostly inside the header
        end = w.header_end if rng.random() < 0.7 else len(blob)
        return blob[: int(rng.integers(0, max(1, end)))]
    if kind == 3:  # bytes inserted or deleted inside the header
        i = int(rng.integers(0, max(1, w.header_end)))
        if rng.random() < 0.5:
            return blob[:i] + rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes() + blob[i:]
        return blob[:i] + blob[i + int(rng.integers(1, 9)):]
    # an extreme integer in one field (kind 4: any field; 5: counts/lengths; 6: dims/types/offsets)
    groups = {4: None, 5: ("count", "strlen", "alen"), 6: ("dim", "ndims", "ttype", "toffset", "vtype", "atype")}
    cand = [f for f in w.fields if groups[kind] is None or f.kind in groups[kind]] or w.fields
    f = cand[int(rng.integers(0, len(cand)))]
    b = bytearray(blob)
    if f.kind in ("vtype", "atype", "ttype") and rng.random() < 0.6:
        v = int(rng.integers(0, 45))  # another (maybe unknown) type id
    else:
        v = _extreme(f.fmt, rng)
    struct.pack_into(f.fmt, b, f.offset, v)
    return bytes(b)


# -- structural mutation ---------------------------------------------------------------------

HPARAM_KEYS = ["block_count", "embedding_length", "attention.head_count", "attention.head_count_kv",
               "feed_forward_length", "context_length", "attention.layer_norm_rms_epsilon", "rope.freq_base",
               "rope.dimension_count", "attention.key_length", "attention.value_length", "expert_count",
               "expert_used_count", "expert_feed_forward_length", "attention.scale", "rope.scaling.factor"]
ODD_FLOATS = [0.0, -0.0, -1.0, float("nan"), float("inf"), float("-inf"), 1e-45, 3.4e38, -3.4e38]


def _retype(k: KVItem, rng) -> None:
    """Give a key a value of another type (keeping something of its meaning where possible)."""
    num = None
    if k.vtype in VFMT and VFMT[k.vtype] is not None:
        num = k.value
    choice = int(rng.integers(0, 7))
    if choice == 0:
        k.vtype, k.value, k.subtype = 8, str(num if num is not None else "x"), None
    elif choice == 1:
        k.vtype, k.value, k.subtype = 6, float(num) if isinstance(num, (int, float)) else 1.5, None
    elif choice == 2:
        k.vtype, k.value, k.subtype = 7, True, None
    elif choice == 3:  # an array (per-layer form) of random length
        n = int(rng.integers(0, 4))
        k.vtype, k.subtype = 9, int(rng.choice([4, 5, 6, 8]))
        k.value = ["7"] * n if k.subtype == 8 else [int(num) if isinstance(num, (int, float)) and num == num else 1] * n
    elif choice == 4:
        k.vtype, k.value, k.subtype = 11, -int(rng.integers(1, 1 << 40)), None
    elif choice == 5:
        k.vtype, k.value, k.subtype = 10, _extreme("<Q", rng), None
    else:
        k.vtype, k.value, k.subtype = 5, int(_extreme("<i", rng)), None


def _extreme_value(k: KVItem, rng) -> None:
    if k.vtype in (6, 12):
        k.value = float(ODD_FLOATS[int(rng.integers(0, len(ODD_FLOATS)))])
    elif k.vtype in INT_TYPES:
        k.value = _extreme(VFMT[k.vtype], rng)
    elif k.vtype == 9 and k.subtype in INT_TYPES:
        arr = np.array(k.value).copy()
        if arr.size:
            arr[int(rng.integers(0, arr.size))] = _extreme(VFMT[k.subtype], rng) % 2**31
        k.value = arr.tolist()
    else:
        _retype(k, rng)


def _tokenizer_mutation(doc: Doc, rng) -> None:
    tok = doc.kv("tokenizer.ggml.tokens")
    merges = doc.kv("tokenizer.ggml.merges")
    types = doc.kv("tokenizer.ggml.token_type")
    choice = int(rng.integers(0, 9))
    if choice == 0 and tok:          # tokens as numbers
        tok.subtype, tok.value = 5, list(range(len(tok.value)))
    elif choice == 1 and merges:     # a merge without a space, or of unknown tokens
        m = list(merges.value)
        if m:
            m[int(rng.integers(0, len(m)))] = ["nospace", "zz qq", " ", "", "a  b"][int(rng.integers(0, 5))]
        merges.value = m
    elif choice == 2 and types:      # token types of the wrong length
        v = list(np.asarray(types.value).tolist())
        types.value = v[: int(rng.integers(0, len(v) + 1))] + ([3] * int(rng.integers(0, 3)))
    elif choice == 3:                # a special token id out of range
        for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
            k = doc.kv(key)
            if k:
                k.value = _extreme(VFMT[k.vtype], rng) if k.vtype in INT_TYPES else 10**6
    elif choice == 4 and tok:        # fewer or more tokens than the embedding has rows
        v = list(tok.value)
        tok.value = v[: int(rng.integers(1, len(v) + 1))] if rng.random() < 0.5 else v + [f"extra{i}" for i in range(50)]
    elif choice == 5 and tok:        # duplicate tokens
        v = list(tok.value)
        v[int(rng.integers(0, len(v)))] = v[0]
        tok.value = v
    elif choice == 6:
        k = doc.kv("tokenizer.ggml.pre") or doc.kv("tokenizer.ggml.model")
        if k:
            if rng.random() < 0.5:
                _retype(k, rng)
            else:
                k.vtype, k.value, k.subtype = 8, "unknown-thing", None
    elif choice == 7:
        k = doc.kv("tokenizer.ggml.add_bos_token")
        if k:
            _retype(k, rng)
    elif types:                      # odd token type values
        v = np.asarray(types.value).astype(np.int64)
        v[int(rng.integers(0, v.size))] = _extreme("<i", rng)
        types.value = v.tolist()


def _random_data(nbytes: int, rng) -> bytes:
    return rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes()


def _nbytes(ne, type_id) -> Optional[int]:
    from qtoolkit.io.gguf_reader import ggml_type

    t = ggml_type(type_id)
    if t is None:
        return None
    _, blck, tsize = t
    if ne[0] % blck:
        return None
    n = 1
    for d in ne:
        n *= d
    return n // blck * tsize


def _tensor_mutation(doc: Doc, rng) -> None:
    if not doc.tensors:
        return
    i = int(rng.integers(0, len(doc.tensors)))
    t = doc.tensors[i]
    choice = int(rng.integers(0, 8))
    if choice == 0:      # dims that contradict the metadata, data resized to match (the container stays valid)
        ne = list(t.ne)
        j = int(rng.integers(0, len(ne)))
        ne[j] = max(0, ne[j] + int(rng.choice([-ne[j], -1, 1, 32, ne[j]])))
        if _nbytes(ne, t.type_id) is None:
            ne[0] = t.ne[0]
        t.ne = tuple(ne)
        t.data = _random_data(_nbytes(t.ne, t.type_id), rng)
    elif choice == 1:    # another type with matching random data
        for _ in range(10):
            tid = int(rng.choice([0, 1, 2, 3, 6, 7, 8, 10, 12, 14, 20, 24, 26, 28, 30, 39, 41]))
            nb = _nbytes(t.ne, tid)
            if nb is not None and nb < 1 << 24:
                t.type_id, t.data = tid, _random_data(nb, rng)
                break
    elif choice == 2:    # a tensor removed
        del doc.tensors[i]
    elif choice == 3:    # a tensor renamed: a duplicate, an unknown name, odd block numbers, empty
        other = doc.tensors[int(rng.integers(0, len(doc.tensors)))].name
        t.name = [other, t.name + ".x", t.name.replace("blk.0.", "blk.\u00b2.").replace("blk.1.", "blk.\u0663."),
                  t.name.replace("blk.0.", "blk.99999999999999999999."), "", t.name.upper()][int(rng.integers(0, 6))]
    elif choice == 4:    # flattened or given an extra dimension
        n = 1
        for d in t.ne:
            n *= d
        t.ne = (n,) if len(t.ne) > 1 else (t.ne[0], 1, 1)
    elif choice == 5:    # floats that are NaN / Inf
        if t.type_id == 0 and len(t.data) >= 4:
            a = np.frombuffer(t.data, dtype="<f4").copy()
            a[int(rng.integers(0, a.size))] = [np.nan, np.inf, -np.inf][int(rng.integers(0, 3))]
            t.data = a.tobytes()
        elif t.type_id == 1 and len(t.data) >= 2:
            a = np.frombuffer(t.data, dtype="<u2").copy()
            a[int(rng.integers(0, a.size))] = [0x7E00, 0x7C00, 0xFC00][int(rng.integers(0, 3))]
            t.data = a.tobytes()
    elif choice == 6:    # tensors in another order
        rng.shuffle(doc.tensors)
    else:                # an experts tensor with a different expert count
        if len(t.ne) == 3:
            ne = (t.ne[0], t.ne[1], max(1, t.ne[2] + int(rng.choice([-1, 1, 4]))))
            t.ne, t.data = ne, _random_data(_nbytes(ne, t.type_id), rng)


def mutate_model_doc(doc: Doc, rng: np.random.Generator) -> Doc:
    """A structural mutation of a model file: a valid container with contradictory content."""
    arch = doc.kv("general.architecture")
    arch = arch.value if arch and isinstance(arch.value, str) else "llama"
    for _ in range(int(rng.integers(1, 3))):
        choice = int(rng.integers(0, 7))
        if choice in (0, 1):           # an hyper-parameter gets an extreme value or another type
            key = f"{arch}.{HPARAM_KEYS[int(rng.integers(0, len(HPARAM_KEYS)))]}"
            k = doc.kv(key)
            if k is None:
                k = KVItem(key, int(rng.choice([4, 5, 6, 10])), 0)
                doc.kvs.append(k)
            _extreme_value(k, rng) if choice == 0 else _retype(k, rng)
        elif choice == 2:              # a key removed
            if doc.kvs:
                del doc.kvs[int(rng.integers(0, len(doc.kvs)))]
        elif choice == 3:
            _tokenizer_mutation(doc, rng)
        elif choice == 4 or choice == 5:
            _tensor_mutation(doc, rng)
        else:                          # architecture, alignment, file type
            sub = int(rng.integers(0, 3))
            if sub == 0 and doc.kv("general.architecture"):
                doc.kv("general.architecture").value = str(rng.choice(["llama", "qwen3moe", "qwen2", "gpt2", ""]))
            elif sub == 1:
                doc.alignment = int(rng.choice([8, 16, 64, 4096]))
                doc.kvs = [k for k in doc.kvs if k.key != "general.alignment"] + [KVItem("general.alignment", 4, doc.alignment)]
            elif doc.kv("general.file_type"):
                _retype(doc.kv("general.file_type"), rng)
    return doc


def mutate_imatrix_doc(doc: Doc, rng: np.random.Generator) -> Doc:
    choice = int(rng.integers(0, 7))
    if choice == 0:    # counts negative, zero, NaN or huge
        ts = [t for t in doc.tensors if t.name.endswith(".counts")]
        if ts:
            t = ts[int(rng.integers(0, len(ts)))]
            a = np.frombuffer(t.data, dtype="<f4").copy()
            a[int(rng.integers(0, a.size))] = ODD_FLOATS[int(rng.integers(0, len(ODD_FLOATS)))]
            t.data = a.tobytes()
    elif choice == 1:  # sums with NaN / Inf / negative values
        ts = [t for t in doc.tensors if t.name.endswith(".in_sum2")]
        if ts:
            t = ts[int(rng.integers(0, len(ts)))]
            a = np.frombuffer(t.data, dtype="<f4").copy()
            a[int(rng.integers(0, a.size))] = ODD_FLOATS[int(rng.integers(0, len(ODD_FLOATS)))]
            t.data = a.tobytes()
    elif choice == 2:  # imatrix.* keys missing or of the wrong type
        k = doc.kvs[int(rng.integers(0, len(doc.kvs)))]
        if rng.random() < 0.5:
            doc.kvs.remove(k)
        else:
            _retype(k, rng)
    else:
        _tensor_mutation(doc, rng)
    return doc


def mutate_dat(rng: np.random.Generator) -> bytes:
    """A mutated legacy importance file: byte-level mutations, or entries with odd contents."""
    entries = dat_entries(rng)
    trailer = None if rng.random() < 0.3 else (int(rng.integers(0, 50)), "calib.txt")
    choice = int(rng.integers(0, 8))
    if choice == 0:    # a name repeated
        entries.append(entries[0])
    elif choice == 1:  # odd call counts
        name, _, vals = entries[-1]
        entries[-1] = (name, int(_extreme("<i", rng)), vals)
    elif choice == 2:  # NaN / Inf / negative values
        vals = entries[0][2].copy()
        vals[int(rng.integers(0, vals.size))] = ODD_FLOATS[int(rng.integers(0, len(ODD_FLOATS)))]
        entries[0] = (entries[0][0], entries[0][1], vals)
    elif choice == 3:  # names that are not UTF-8 or empty
        entries[0] = (["", "\udcff\udcfe", "x" * 300][int(rng.integers(0, 3))], entries[0][1], entries[0][2])
    else:
        return mutate_bytes(dat_write(entries, trailer), rng)
    return dat_write(entries, trailer).blob
