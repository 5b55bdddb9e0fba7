"""The validating safetensors reader: values, BF16 without torch, shards, and clear errors."""

import json
import struct

import numpy as np
import pytest
import safetensors.numpy

from qtoolkit.errors import QtkFileNotFoundError, QtkFormatError, QtkNotImplementedError
from qtoolkit.io.safetensors_reader import SafetensorsFile, open_model_tensors

from tests.fuzz.mutators import pack_safetensors


def write_bf16(path, name, x):
    bits = (np.asarray(x, np.float32).view(np.uint32) >> 16).astype(np.uint16)
    header = {name: {"dtype": "BF16", "shape": list(x.shape), "data_offsets": [0, bits.nbytes]}}
    path.write_bytes(pack_safetensors(header, bits.tobytes()))


def test_reads_what_the_safetensors_package_writes(tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    h = np.arange(12, dtype=np.float16).reshape(4, 3)
    safetensors.numpy.save_file({"x": x, "h": h}, str(tmp_path / "m.safetensors"), metadata={"format": "pt"})
    f = SafetensorsFile(str(tmp_path / "m.safetensors"))
    assert np.array_equal(f.read("x"), x)
    assert np.array_equal(f.read("h"), h.astype(np.float32))
    assert f.metadata == {"format": "pt"}


def test_bf16_is_widened_exactly(tmp_path):
    x = np.array([[1.0, -2.5, 3.140625, 1e-3]], np.float32)
    write_bf16(tmp_path / "b.safetensors", "w", x)
    y = SafetensorsFile(str(tmp_path / "b.safetensors")).read("w")
    expected = ((x.view(np.uint32) >> 16) << 16).view(np.float32)
    assert np.array_equal(y, expected)


def test_truncated_file_names_file_and_tensor(tmp_path):
    x = np.ones((64, 64), np.float32)
    safetensors.numpy.save_file({"layer.weight": x}, str(tmp_path / "t.safetensors"))
    blob = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(blob[:-100])
    with pytest.raises(QtkFormatError, match=r"t\.safetensors: tensor 'layer\.weight'.*truncated"):
        SafetensorsFile(str(tmp_path / "t.safetensors"))


def test_header_length_beyond_file(tmp_path):
    (tmp_path / "h.safetensors").write_bytes(struct.pack("<Q", 10**6) + b"{}")
    with pytest.raises(QtkFormatError, match="header length"):
        SafetensorsFile(str(tmp_path / "h.safetensors"))


def test_overlapping_tensors(tmp_path):
    header = {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
              "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}
    (tmp_path / "o.safetensors").write_bytes(pack_safetensors(header, bytes(8)))
    with pytest.raises(QtkFormatError, match="overlap"):
        SafetensorsFile(str(tmp_path / "o.safetensors"))


def test_size_mismatch(tmp_path):
    header = {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}
    (tmp_path / "s.safetensors").write_bytes(pack_safetensors(header, bytes(8)))
    with pytest.raises(QtkFormatError, match="needs 12 bytes"):
        SafetensorsFile(str(tmp_path / "s.safetensors"))


def test_fp8_is_named_as_not_yet_supported(tmp_path):
    header = {"w": {"dtype": "F8_E4M3", "shape": [2, 2], "data_offsets": [0, 4]}}
    (tmp_path / "f.safetensors").write_bytes(pack_safetensors(header, bytes(4)))
    f = SafetensorsFile(str(tmp_path / "f.safetensors"))
    with pytest.raises(QtkNotImplementedError, match="FP8"):
        f.read("w")


def test_shards_and_missing_shard(tmp_path):
    safetensors.numpy.save_file({"a": np.ones(2, np.float32)}, str(tmp_path / "s1.safetensors"))
    safetensors.numpy.save_file({"b": np.zeros(2, np.float32)}, str(tmp_path / "s2.safetensors"))
    index = {"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    files = open_model_tensors(str(tmp_path))
    assert sorted(t for f in files.values() for t in f.tensors) == ["a", "b"]
    (tmp_path / "s2.safetensors").unlink()
    with pytest.raises(QtkFileNotFoundError, match=r"s2\.safetensors.*missing"):
        open_model_tensors(str(tmp_path))


def test_no_weights_at_all(tmp_path):
    with pytest.raises(QtkFileNotFoundError, match="no model.safetensors"):
        open_model_tensors(str(tmp_path))
