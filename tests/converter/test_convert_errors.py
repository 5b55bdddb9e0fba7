"""Nothing lost, nothing half-written: every bad input is a clear error naming the file and the
tensor, and no output (not even OUT.partial) is left behind."""

import json
import os
import struct

import numpy as np
import pytest

import qtoolkit
from qtoolkit.errors import (
    QtkError, QtkFileExistsError, QtkFileNotFoundError, QtkFormatError, QtkNotImplementedError, QtkValueError,
)
from qtoolkit.io.gguf_writer import Progress
from tools.fixtures.synth_checkpoint import make_checkpoint


def fresh(tmp_path, arch="qwen3moe", **kw):
    return make_checkpoint(str(tmp_path / "model"), arch, **kw)


def nothing_written(tmp_path, out):
    assert not os.path.exists(out)
    assert not os.path.exists(out + ".partial")


def rewrite_header(path, edit):
    """Apply edit(header_dict) to a safetensors file's JSON header (keeping the data)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    edit(header)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def test_missing_shard(tmp_path):
    d = fresh(tmp_path, shards=3)
    os.remove(os.path.join(d, "model-00002-of-00003.safetensors"))
    out = str(tmp_path / "o.gguf")
    with pytest.raises(QtkFileNotFoundError, match="model-00002-of-00003.safetensors.*missing"):
        qtoolkit.convert(d, out, "Q4_K_M")
    nothing_written(tmp_path, out)


def test_truncated_safetensors(tmp_path):
    d = fresh(tmp_path)
    p = os.path.join(d, "model.safetensors")
    with open(p, "r+b") as f:
        f.truncate(os.path.getsize(p) - 1000)
    out = str(tmp_path / "o.gguf")
    with pytest.raises(QtkFormatError, match=r"model.safetensors.*truncated or corrupt"):
        qtoolkit.convert(d, out, "Q4_K_M")
    nothing_written(tmp_path, out)


def test_corrupt_safetensors_header(tmp_path):
    d = fresh(tmp_path)
    p = os.path.join(d, "model.safetensors")
    with open(p, "r+b") as f:
        f.seek(10)
        f.write(b"\xff\xfe{{{")
    with pytest.raises(QtkFormatError, match="not valid JSON"):
        qtoolkit.convert(d, str(tmp_path / "o.gguf"), "Q4_K_M")


def test_nan_weight_names_tensor_and_leaves_nothing(tmp_path):
    d = fresh(tmp_path, dtype="f32")
    p = os.path.join(d, "model.safetensors")
    from safetensors.numpy import load_file, save_file

    t = load_file(p)
    t["model.layers.1.mlp.experts.2.down_proj.weight"][5, 7] = np.nan
    save_file(t, p)
    out = str(tmp_path / "o.gguf")
    with pytest.raises(QtkValueError, match=r"model.layers.1.mlp.experts.2.down_proj.weight.*row 5, column 7.*blk.1.ffn_down_exps"):
        qtoolkit.convert(d, out, "Q4_K_M")
    nothing_written(tmp_path, out)


def test_inf_in_a_norm(tmp_path):
    d = fresh(tmp_path, arch="llama", dtype="f16")
    p = os.path.join(d, "model.safetensors")
    from safetensors.numpy import load_file, save_file

    t = load_file(p)
    t["model.norm.weight"][3] = np.inf
    save_file(t, p)
    with pytest.raises(QtkValueError, match=r"model.norm.weight.*element 3"):
        qtoolkit.convert(d, str(tmp_path / "o.gguf"), "Q8_0")


def test_shape_contradicting_config(tmp_path):
    d = fresh(tmp_path, arch="llama")
    cfg = json.load(open(os.path.join(d, "config.json")))
    cfg["intermediate_size"] = 768
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    with pytest.raises(QtkFormatError, match=r"model.layers.0.mlp.gate_proj.weight.*shape \[512, 256\].*\[768, 256\]"):
        qtoolkit.convert(d, str(tmp_path / "o.gguf"), "Q4_K_M")


def test_fp8_and_other_dtypes(tmp_path):
    d = fresh(tmp_path, arch="qwen3", dtype="f16")
    p = os.path.join(d, "model.safetensors")

    def to_fp8(h):  # the same byte count: F16 (2 bytes) -> a [rows, 2*cols] F8 tensor
        e = h["model.layers.0.mlp.up_proj.weight"]
        e["dtype"] = "F8_E4M3"
        e["shape"] = [e["shape"][0], e["shape"][1] * 2]
    rewrite_header(p, to_fp8)
    with pytest.raises(QtkNotImplementedError, match="FP8.*not yet supported"):
        qtoolkit.convert(d, str(tmp_path / "o.gguf"), "Q4_K_M")

    def to_i16(h):
        h["model.layers.0.mlp.up_proj.weight"]["dtype"] = "I16"
        h["model.layers.0.mlp.up_proj.weight"]["shape"][1] //= 2
    rewrite_header(p, to_i16)
    with pytest.raises(QtkNotImplementedError, match="dtype I16"):
        qtoolkit.convert(d, str(tmp_path / "o.gguf"), "Q4_K_M")


def test_unknown_architecture_lists_supported(tmp_path):
    d = fresh(tmp_path, arch="llama")
    cfg = json.load(open(os.path.join(d, "config.json")))
    cfg["architectures"] = ["GPTNeoXForCausalLM"]
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    with pytest.raises(QtkNotImplementedError, match=r"GPTNeoXForCausalLM.*supported:.*Qwen3MoeForCausalLM"):
        qtoolkit.convert(d, str(tmp_path / "o.gguf"), "Q4_K_M")


def test_missing_and_unexpected_tensors(tmp_path):
    d = fresh(tmp_path, arch="qwen3", dtype="f32")
    p = os.path.join(d, "model.safetensors")
    from safetensors.numpy import load_file, save_file

    t = load_file(p)
    extra = dict(t)
    extra["model.layers.7.mlp.up_proj.weight"] = t["model.layers.0.mlp.up_proj.weight"]
    save_file(extra, p)
    with pytest.raises(QtkFormatError, match="does not use: model.layers.7.mlp.up_proj.weight"):
        qtoolkit.convert(d, str(tmp_path / "o.gguf"), "Q4_K_M")
    del t["model.layers.1.self_attn.k_norm.weight"]
    save_file(t, p)
    with pytest.raises(QtkFormatError, match="no tensor 'model.layers.1.self_attn.k_norm.weight'"):
        qtoolkit.convert(d, str(tmp_path / "o.gguf"), "Q4_K_M")


def test_existing_output_needs_force(tmp_path):
    d = fresh(tmp_path, arch="qwen3")
    out = str(tmp_path / "o.gguf")
    with open(out, "w") as f:
        f.write("precious")
    with pytest.raises(QtkFileExistsError, match="already exists"):
        qtoolkit.convert(d, out, "Q4_K_M")
    assert open(out).read() == "precious"
    qtoolkit.convert(d, out, "Q4_K_M", force=True)
    assert open(out, "rb").read(4) == b"GGUF"


class Interrupt(Progress):
    def __init__(self, after):
        self.after, self.n = after, 0

    def tensor_done(self, name):
        self.n += 1
        if self.n == self.after:
            raise KeyboardInterrupt


def test_ctrl_c_removes_the_partial_file_and_keeps_the_old_output(tmp_path):
    d = fresh(tmp_path)
    out = str(tmp_path / "o.gguf")
    with open(out, "w") as f:
        f.write("old")
    with pytest.raises(KeyboardInterrupt):
        qtoolkit.convert(d, out, "Q4_K_M", force=True, progress=Interrupt(5))
    assert open(out).read() == "old"
    assert not os.path.exists(out + ".partial")


def test_unknown_pre_tokenizer_suggests_the_option(tmp_path):
    d = fresh(tmp_path, arch="qwen3")
    tj = json.load(open(os.path.join(d, "tokenizer.json"), encoding="utf-8"))
    tj["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{L}+|\p{N}+|\s+"
    json.dump(tj, open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8"))
    with pytest.raises(QtkValueError, match="--tokenizer-pre NAME"):
        qtoolkit.convert(d, None, "Q4_K_M", dry_run=True)
    rep = qtoolkit.convert(d, None, "Q4_K_M", dry_run=True, tokenizer_pre="qwen2")
    assert rep["tokenizer_pre"] == "qwen2"
    with pytest.raises(QtkValueError, match="not a pre-tokenizer llama.cpp knows"):
        qtoolkit.convert(d, None, "Q4_K_M", dry_run=True, tokenizer_pre="my-own")


def test_pre_tokenizer_detection(tmp_path):
    from tools.fixtures.synth_checkpoint import make_tokenizer
    from qtoolkit.converter.vocab import load_vocab

    for style, name in (("qwen2", "qwen2"), ("llama-bpe", "llama-bpe"), ("gpt-2", "gpt-2")):
        d = tmp_path / style
        d.mkdir()
        make_tokenizer(str(d), 320, style, merges_as_pairs=(style == "gpt-2"))
        v = load_vocab(str(d), 320)
        assert v.pre == name
        assert v.token_types[-1] == 5 and v.tokens[-1] == "[PAD319]"
        assert v.token_types[v.special_ids["eos"]] == 3
    with pytest.raises(QtkFormatError, match="vocab_size"):
        load_vocab(str(tmp_path / "qwen2"), 200)


def test_missing_config_and_bad_options(tmp_path):
    with pytest.raises(QtkFileNotFoundError):
        qtoolkit.convert(str(tmp_path / "nope"), str(tmp_path / "o.gguf"))
    d = fresh(tmp_path, arch="qwen3")
    with pytest.raises(QtkValueError, match="unknown preset"):
        qtoolkit.convert(d, str(tmp_path / "o.gguf"), "Q9_K")
    with pytest.raises(QtkValueError, match="REGEX=TYPE"):
        qtoolkit.convert(d, str(tmp_path / "o.gguf"), tensor_types=["attn_v"])
    with pytest.raises(QtkValueError, match="regular expression"):
        qtoolkit.convert(d, str(tmp_path / "o.gguf"), tensor_types=["attn_v(=q8_0"])
    with pytest.raises(QtkNotImplementedError, match="MXFP4"):
        qtoolkit.convert(d, str(tmp_path / "o.gguf"), tensor_types=["attn_v=mxfp4"])
    with pytest.raises(QtkValueError, match="IQ2_XXS.*needs an importance matrix"):
        qtoolkit.convert(d, str(tmp_path / "o.gguf"), tensor_types=["attn_v=iq2_xxs"])
    nothing_written(tmp_path, str(tmp_path / "o.gguf"))
    assert issubclass(QtkNotImplementedError, QtkError)


def test_nan_position_is_the_checkpoints_even_after_the_rope_permutation(tmp_path):
    d = fresh(tmp_path, arch="llama", dtype="f32")
    p = os.path.join(d, "model.safetensors")
    from safetensors.numpy import load_file, save_file

    t = load_file(p)
    t["model.layers.0.self_attn.q_proj.weight"][40, 3] = np.inf  # head 0, second half
    save_file(t, p)
    with pytest.raises(QtkValueError, match=r"q_proj.weight.*row 40, column 3"):
        qtoolkit.convert(d, str(tmp_path / "o.gguf"), "Q8_0")


def test_values_too_large_for_the_format_name_the_tensor(tmp_path):
    d = fresh(tmp_path, arch="qwen3", dtype="f32")
    p = os.path.join(d, "model.safetensors")
    from safetensors.numpy import load_file, save_file

    t = load_file(p)
    t["model.layers.1.mlp.up_proj.weight"][3, :] = 3.0e38  # finite, but Q4_0's fp16 scale would be Inf
    save_file(t, p)
    out = str(tmp_path / "o.gguf")
    with pytest.raises(QtkValueError, match=r"model.safetensors: tensor model.layers.1.mlp.up_proj.weight -> "
                                            r"blk.1.ffn_up.weight \(Q4_0\): .*too large"):
        qtoolkit.convert(d, out, "Q4_0", pure=True)
    nothing_written(tmp_path, out)
