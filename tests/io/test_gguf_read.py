"""The validating GGUF reader: good files read like gguf-py reads them; bad ones are refused with
the field and offset, before anything big is allocated."""

import struct

import gguf
import numpy as np
import pytest

from qtoolkit.errors import QtkFileNotFoundError, QtkFormatError
from qtoolkit.io.gguf_reader import GGUFFile


def small_file(path, n_tensors=2):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint32("llama.block_count", 1)
    w.add_array("tokenizer.ggml.tokens", ["a", "b", "c"])
    w.add_array("tokenizer.ggml.token_type", [1, 1, 3])
    w.add_float32("llama.rope.freq_base", 10000.0)
    for i in range(n_tensors):
        w.add_tensor(f"t{i}.weight", np.arange(64 * (i + 1), dtype=np.float32).reshape(i + 1, 64))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


def test_reads_what_gguf_py_reads(tmp_path):
    p = small_file(tmp_path / "a.gguf")
    g = GGUFFile(p)
    r = gguf.GGUFReader(p)
    assert [t.name for t in g.tensors] == [t.name for t in r.tensors]
    for a, b in zip(g.tensors, r.tensors):
        assert list(a.ne) == [int(x) for x in b.shape] and a.data_offset == b.data_offset and a.nbytes == b.n_bytes
        assert np.array_equal(g.data(a).view(np.float32).reshape(-1), np.asarray(b.data).reshape(-1))
    assert g.get("tokenizer.ggml.tokens") == ["a", "b", "c"]
    assert list(g.get("tokenizer.ggml.token_type")) == [1, 1, 3] and g.kv["tokenizer.ggml.token_type"].subtype == 5
    assert g.get("general.architecture") == "llama"
    g.close()


def patch(path, offset, fmt, value):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, value))


def kv_offset(path, key):
    g = GGUFFile(path)
    off = g.kv[key].offset
    g.close()
    return off


@pytest.mark.parametrize("case", ["magic", "version", "tensor_count", "kv_count", "string_len", "array_len",
                                  "value_type", "truncated_data", "truncated_header", "tensor_type", "dims",
                                  "offset", "name_len"])
def test_corrupt_files_are_refused_with_field_and_offset(tmp_path, case):
    p = small_file(tmp_path / "a.gguf")
    g = GGUFFile(p)
    t0, t1 = g.tensors
    size = g.size
    g.close()
    expect = {
        "magic": "not a GGUF file", "version": "version", "tensor_count": "tensor count", "kv_count": "metadata count",
        "string_len": "claims", "array_len": "token_type. data at offset [0-9]+ needs", "value_type": "unknown value type",
        "truncated_data": "runs past the end", "truncated_header": "truncated or corrupt",
        "tensor_type": "unknown ggml type", "dims": "dimension", "offset": "expected 0", "name_len": "longer than",
    }[case]
    if case == "magic":
        patch(p, 0, "<4s", b"GGUX")
    elif case == "version":
        patch(p, 4, "<I", 7)
    elif case == "tensor_count":
        patch(p, 8, "<Q", 1 << 40)
    elif case == "kv_count":
        patch(p, 16, "<Q", 1 << 50)
    elif case == "string_len":
        patch(p, kv_offset(p, "general.architecture"), "<Q", 1 << 40)
    elif case == "array_len":
        off = kv_offset(p, "tokenizer.ggml.token_type") + 8 + len("tokenizer.ggml.token_type") + 4 + 4
        patch(p, off, "<Q", 1 << 29)
    elif case == "value_type":
        patch(p, kv_offset(p, "llama.block_count") + 8 + len("llama.block_count"), "<I", 99)
    elif case == "truncated_data":
        with open(p, "r+b") as f:
            f.truncate(size - 100)
    elif case == "truncated_header":
        with open(p, "r+b") as f:
            f.truncate(t0.info_offset + 10)
    elif case == "tensor_type":
        patch(p, t0.info_offset + 8 + len(t0.name) + 4 + 8 * 2, "<I", 31)
    elif case == "dims":
        patch(p, t0.info_offset + 8 + len(t0.name), "<I", 9)
    elif case == "offset":
        patch(p, t0.info_offset + 8 + len(t0.name) + 4 + 8 * 2 + 4, "<Q", 64)
    elif case == "name_len":
        patch(p, t0.info_offset, "<Q", 70)
    with pytest.raises(QtkFormatError, match=expect) as e:
        GGUFFile(p)
    assert p in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(QtkFileNotFoundError):
        GGUFFile(str(tmp_path / "none.gguf"))
