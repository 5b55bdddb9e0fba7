"""Valid GGUF containers whose *contents* are hostile: metadata of the wrong type, absurd
hyper-parameters, tokenizer arrays that do not fit, tensor shapes that contradict the metadata;
importance matrices with odd values. Each must be a QtkError naming the file and the field, not
an IndexError deep in the forward pass. (The fuzzers found most of these; each is pinned here.)"""

import os
import struct
import time

import numpy as np
import pytest

import qtoolkit
from qtoolkit.errors import QtkError, QtkFormatError, QtkNotImplementedError
from qtoolkit.imatrix import load_imatrix
from qtoolkit.converter.requantize import requantize

from tests.fuzz import gguf_mutators as gm


def written(tmp_path, doc, name="m.gguf"):
    p = str(tmp_path / name)
    with open(p, "wb") as f:
        f.write(gm.write(doc).blob)
    return p


def llama(edit=None):
    doc = gm.model_doc(0)  # llama, F16, 2 blocks, 4 heads, vocab 300
    doc = doc.copy()
    if edit:
        edit(doc)
    return doc


def set_kv(key, vtype, value, subtype=None):
    def edit(doc):
        k = doc.kv(key)
        if k is None:
            doc.kvs.append(gm.KVItem(key, vtype, value, subtype))
        else:
            k.vtype, k.value, k.subtype = vtype, value, subtype
    return edit


def loads_or_refuses(path, match):
    with pytest.raises(QtkError, match=match) as e:
        qtoolkit.load(path, threads=1)
    assert path in str(e.value)
    return e.value


def test_the_unmodified_sample_loads_and_runs(tmp_path):
    p = written(tmp_path, llama())
    m = qtoolkit.load(p, threads=1)
    assert m.forward([1, 2, 3]).shape == (3, 300)


@pytest.mark.parametrize("edit, match", [
    (set_kv("llama.block_count", 4, 2**31), r"llama.block_count = 2147483648 is out of range"),
    (set_kv("llama.block_count", 4, 3), r"block_count is 3, but the file has blocks 0..1"),
    (set_kv("llama.block_count", 4, 1), r"block_count is 1, but the file has blocks 0..1"),
    (set_kv("llama.block_count", 11, -5), r"block_count = -5 is out of range"),
    (set_kv("llama.block_count", 8, "2"), r"block_count = '2' is not an integer"),
    (set_kv("llama.block_count", 6, 2.0), r"block_count = 2.0 is not an integer"),
    (set_kv("llama.block_count", 7, True), r"block_count = True is not an integer"),
    (set_kv("llama.attention.head_count", 4, 2**32 - 1), r"head_count = 4294967295 is out of range"),
    (set_kv("llama.attention.head_count", 4, 0), r"head_count = 0 is out of range"),
    (set_kv("llama.attention.head_count", 4, 8), r"attn_q.weight has dimensions \[64, 64\], expected \[64, 128\]"),
    (set_kv("llama.attention.head_count_kv", 4, 3), r"4 attention heads cannot share 3 KV heads"),
    (set_kv("llama.attention.head_count", 9, [4, 4, 4], 4), r"has 3 per-layer values; block_count is 2"),
    (set_kv("llama.attention.head_count", 9, [4, 2], 4), r"differs between layers"),
    (set_kv("llama.attention.head_count", 9, [], 4), r"has 0 per-layer values"),
    (set_kv("llama.attention.head_count", 9, ["4", "4"], 8), r"is not an integer"),
    (set_kv("llama.attention.layer_norm_rms_epsilon", 6, float("nan")), r"epsilon = nan is not finite"),
    (set_kv("llama.attention.layer_norm_rms_epsilon", 6, -1.0), r"epsilon = -1.0 is out of range"),
    (set_kv("llama.rope.freq_base", 6, 0.0), r"freq_base = 0.0 is out of range"),
    (set_kv("llama.rope.freq_base", 6, float("inf")), r"freq_base = inf is not finite"),
    (set_kv("llama.rope.dimension_count", 4, 17), r"rope.dimension_count = 17 is out of range"),
    (set_kv("llama.rope.dimension_count", 4, 7), r"rope.dimension_count 7 must be even"),
    (set_kv("llama.embedding_length", 4, 65), r"token_embd.weight has dimensions \[64, 300\], expected \[65, 300\]"),
    (set_kv("llama.attention.key_length", 4, 0), r"key_length = 0 is out of range"),
    (set_kv("general.architecture", 8, "gpt2"), r"architecture 'gpt2' is not supported"),
    (set_kv("general.architecture", 9, [1, 2], 4), r"architecture .* is not supported"),
])
def test_hostile_hyper_parameters(tmp_path, edit, match):
    loads_or_refuses(written(tmp_path, llama(edit)), match)


def _tensor(doc, name):
    return next(t for t in doc.tensors if t.name == name)


def _reshape(name, ne, type_id=None):
    def edit(doc):
        t = _tensor(doc, name)
        t.ne = tuple(ne)
        if type_id is not None:
            t.type_id = type_id
        t.data = bytes(gm._nbytes(t.ne, t.type_id))
    return edit


@pytest.mark.parametrize("edit, match", [
    (_reshape("token_embd.weight", (64 * 300,)), r"token_embd.weight has dimensions \[19200\], expected a matrix"),
    (_reshape("blk.0.ffn_gate.weight", (64 * 128,)), r"blk.0.ffn_gate.weight has dimensions \[8192\], expected a matrix"),
    (_reshape("blk.1.attn_q.weight", (64, 64, 1, 2)), r"attn_q.weight has dimensions \[64, 64, 1, 2\], expected \[64, 64\]"),
    (_reshape("output_norm.weight", (32,)), r"output_norm.weight has 32 elements, expected 64"),
    (_reshape("blk.0.attn_norm.weight", (64,), type_id=24), r"blk.0.attn_norm.weight has type I8, which qtoolkit cannot run"),
    (lambda d: [_reshape(n, (64, 299))(d) for n in ("token_embd.weight", "output.weight")],
     r"tokenizer.ggml.tokens has 300 tokens, token_embd.weight has 299 rows"),
    (lambda d: d.tensors.remove(_tensor(d, "blk.1.ffn_up.weight")), r"the model has no tensor blk.1.ffn_up.weight"),
    (lambda d: setattr(_tensor(d, "blk.1.ffn_up.weight"), "name", "blk.7.ffn_up.weight"),
     r"block_count is 2, but the file has blocks 0..7"),
])
def test_tensors_contradicting_the_metadata(tmp_path, edit, match):
    loads_or_refuses(written(tmp_path, llama(edit)), match)


def _tok(key, vtype, value, subtype=None):
    return set_kv(key, vtype, value, subtype)


@pytest.mark.parametrize("edit, match", [
    (_tok("tokenizer.ggml.tokens", 9, list(range(300)), 5), r"tokenizer.ggml.tokens must be an array of strings"),
    (_tok("tokenizer.ggml.merges", 9, ["t h", "zz qq"], 8), r"do not form a BPE vocabulary"),
    (_tok("tokenizer.ggml.merges", 9, ["nospace"], 8), r"merge 'nospace' has no space"),
    (_tok("tokenizer.ggml.token_type", 9, [1] * 299, 5), r"token_type must be 300 integers"),
    (_tok("tokenizer.ggml.token_type", 9, ["1"] * 300, 8), r"token_type must be 300 integers"),
    (_tok("tokenizer.ggml.bos_token_id", 4, 300), r"bos_token_id = 300 is not a token id in \[0, 300\)"),
    (_tok("tokenizer.ggml.eos_token_id", 11, -1), r"eos_token_id = -1 is not a token id"),
    (_tok("tokenizer.ggml.pre", 4, 7), r"tokenizer.ggml.pre = 7 is not a string"),
    (_tok("tokenizer.ggml.add_bos_token", 8, "yes"), r"add_bos_token = 'yes' is not a BOOL"),
    (_tok("tokenizer.ggml.model", 8, "llama"), r"only byte-level BPE"),
])
def test_hostile_tokenizer_metadata(tmp_path, edit, match):
    loads_or_refuses(written(tmp_path, llama(edit)), match)


def test_file_type_of_another_type_is_only_reported(tmp_path):
    p = written(tmp_path, llama(set_kv("general.file_type", 9, [1, 2], 4)))
    assert qtoolkit.load(p, threads=1).file_type.startswith("ftype")


def test_requantize_names_the_file_and_tensor(tmp_path):
    def nan_weight(doc):
        t = _tensor(doc, "blk.0.ffn_up.weight")
        a = np.frombuffer(t.data, dtype="<u2").copy()
        a[77] = 0x7E00  # an F16 NaN
        t.data = a.tobytes()
    p = written(tmp_path, llama(nan_weight))
    out = str(tmp_path / "o.gguf")
    with pytest.raises(QtkError, match=r"m.gguf: tensor blk.0.ffn_up.weight has NaN or Inf values") as e:
        requantize(p, out, "Q8_0", threads=1)
    assert not os.path.exists(out) and not os.path.exists(out + ".partial")

    def huge(doc):  # F16 max: Q4_0's F16 scale (max / -8) still fits, but the I8 path of Q8_0... any type's error is named
        t = _tensor(doc, "blk.0.ffn_up.weight")
        t.type_id, t.data = 0, np.full(64 * 128, 3.0e38, dtype="<f4").tobytes()
    p = written(tmp_path, llama(huge), "h.gguf")
    with pytest.raises(QtkError, match=r"h.gguf: tensor blk.0.ffn_up.weight"):
        requantize(p, out, "Q4_0", threads=1)
    assert not os.path.exists(out) and not os.path.exists(out + ".partial")


def test_requantize_refuses_absurd_metadata(tmp_path):
    p = written(tmp_path, llama(set_kv("llama.block_count", 8, "many")))
    with pytest.raises(QtkFormatError, match=r"m.gguf: llama.block_count"):
        requantize(p, str(tmp_path / "o.gguf"), "Q4_0", threads=1)


# -- importance matrices ---------------------------------------------------------------------

def imatrix_written(tmp_path, edit=None):
    doc = gm.imatrix_doc(np.random.default_rng(1))
    if edit:
        edit(doc)
    return written(tmp_path, doc, "imatrix.gguf")


@pytest.mark.parametrize("edit, match", [
    (set_kv("imatrix.chunk_count", 9, [1, 2], 4), r"imatrix.chunk_count \(offset \d+\) = .* is not a non-negative integer"),
    (set_kv("imatrix.chunk_size", 8, "512"), r"imatrix.chunk_size \(offset \d+\) = '512'"),
    (set_kv("imatrix.datasets", 9, [1, 2], 5), r"imatrix.datasets \(offset \d+\) is not an array of strings"),
    (lambda d: d.kvs.remove(d.kv("imatrix.chunk_size")), r"without the 'imatrix.chunk_size' key"),
])
def test_hostile_imatrix_metadata(tmp_path, edit, match):
    p = imatrix_written(tmp_path, edit)
    with pytest.raises(QtkFormatError, match=match) as e:
        load_imatrix(p)
    assert p in str(e.value)


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), 1e30])
def test_imatrix_counts_must_be_counts(tmp_path, value):
    """(1e30 is finite, but its int64 view, which the expert coverage uses, overflows.)"""
    def edit(doc):
        t = next(t for t in doc.tensors if t.name.endswith(".counts"))
        a = np.frombuffer(t.data, dtype="<f4").copy()
        a[0] = value
        t.data = a.tobytes()
    with pytest.raises(QtkFormatError, match=r"counts \(data at offset \d+\) has negative, NaN, Inf or impossibly large"):
        load_imatrix(imatrix_written(tmp_path, edit))


def test_legacy_imatrix_with_a_repeated_name(tmp_path):
    e = ("blk.0.ffn_up.weight", 3, np.ones(64, np.float32))
    p = str(tmp_path / "i.dat")
    with open(p, "wb") as f:
        f.write(gm.dat_write([e, e]).blob)
    with pytest.raises(QtkFormatError, match=r"entry 1 at offset \d+ repeats the name 'blk.0.ffn_up.weight'"):
        load_imatrix(p)


def test_legacy_imatrix_overflowing_values_are_refused_quietly(tmp_path, recwarn):
    p = str(tmp_path / "i.dat")
    with open(p, "wb") as f:
        f.write(gm.dat_write([("blk.0.ffn_up.weight", 0, np.full(32, np.inf, np.float32))]).blob)
    with pytest.raises(QtkFormatError, match="NaN or Inf"):
        load_imatrix(p)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_serializer_round_trips_every_sample():
    for v in range(len(gm.MODEL_VARIANTS)):
        assert gm.write(gm.model_doc(v)).blob == gm.model_file(v)
    blob = gm.write(gm.imatrix_doc(np.random.default_rng(0))).blob
    assert gm.write(gm.parse(blob)).blob == blob
    assert struct.unpack_from("<I", blob, 4)[0] == 3


# -- safetensors and the files around them -------------------------------------------------

def test_safetensors_header_naming_a_tensor_twice(tmp_path):
    from qtoolkit.io.safetensors_reader import SafetensorsFile

    raw = b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}}'
    p = tmp_path / "d.safetensors"
    p.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 4)
    with pytest.raises(QtkFormatError, match=r"d.safetensors: header .* names 'a' twice"):
        SafetensorsFile(str(p))


def test_deeply_nested_json_is_refused_not_a_recursion_error(tmp_path):
    from qtoolkit.io.safetensors_reader import SafetensorsFile

    raw = b"[" * 200_000
    p = tmp_path / "n.safetensors"
    p.write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(QtkFormatError, match="not valid JSON"):
        SafetensorsFile(str(p))
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_bytes(b"[" * 200_000)
    with pytest.raises(QtkFormatError, match=r"config.json: cannot read it as JSON"):
        qtoolkit.convert(str(d), None, dry_run=True)


@pytest.mark.parametrize("index, match", [
    (b"[1, 2]", "no weight_map object"),
    (b"\xff\xfe{}", "cannot read the shard index"),
    (b'{"weight_map": {"model.norm.weight": "../outside.safetensors"}}', "not a file name in the model folder"),
    (b'{"weight_map": {"model.norm.weight": "/etc/passwd"}}', "not a file name in the model folder"),
    (b'{"weight_map": {"model.norm.weight": 7}}', "not a file name in the model folder"),
])
def test_hostile_shard_index(tmp_path, index, match):
    from qtoolkit.io.safetensors_reader import open_model_tensors

    (tmp_path / "model.safetensors.index.json").write_bytes(index)
    with pytest.raises(QtkFormatError, match=match):
        open_model_tensors(str(tmp_path))


def test_a_config_with_infinite_values(tmp_path, checkpoints):
    import json
    import shutil

    d = str(tmp_path / "ck")
    shutil.copytree(checkpoints("llama", hidden=64, heads=2, kv_heads=1, ff=128, layers=1), d)
    cfg = json.load(open(os.path.join(d, "config.json")))
    cfg["rms_norm_eps"] = float("inf")
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)  # writes Infinity, which Python's json reads back
    with pytest.raises(QtkFormatError, match=r"rms_norm_eps.*finite number, got inf"):
        qtoolkit.convert(d, None, dry_run=True)


def test_unreadable_files_are_io_errors(tmp_path):
    from qtoolkit.errors import QtkIOError
    from qtoolkit.io.gguf_reader import GGUFFile

    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    with pytest.raises(QtkError, match="pipe.gguf"):
        GGUFFile(str(fifo))
    p = tmp_path / "locked.gguf"
    p.write_bytes(gm.model_file(1))
    os.chmod(p, 0)
    if os.access(p, os.R_OK):  # root reads anything
        pytest.skip("running as root: permissions do not stop reads")
    with pytest.raises(QtkIOError, match="locked.gguf: cannot read it"):
        GGUFFile(str(p))


# -- found by tools/fuzz/fuzz.py in valid-but-unusual files ------------------------------------------

def test_experts_of_mixed_types_load_and_run(tmp_path):
    """An F32 ffn_gate_exps beside quantized up/down (what --tensor-type ffn_gate_exps=f32 makes)."""
    base = written(tmp_path, gm.model_doc(2).copy(), "moe.gguf")  # qwen3moe, Q8_0
    mixed = str(tmp_path / "mixed.gguf")
    requantize(base, mixed, "Q8_0", tensor_types=["ffn_gate_exps=f32"], allow_requantize=True, threads=1)
    ref = qtoolkit.load(base, threads=1)
    m = qtoolkit.load(mixed, threads=1)
    assert m.layers[0].experts.qtypes[0] == qtoolkit.QuantType.F32
    a, b = ref.forward([5, 6, 7]), m.forward([5, 6, 7])
    assert np.abs(a - b).max() < 0.1 * np.abs(a).max()


def test_requantize_drops_empty_metadata_arrays_with_a_warning(tmp_path, caplog):
    p = written(tmp_path, llama(set_kv("general.tags", 9, [], 8)))
    out = str(tmp_path / "o.gguf")
    rep = requantize(p, out, "Q8_0", threads=1)
    assert rep["dropped_keys"] == ["general.tags"]
    assert "empty metadata arrays are not copied: general.tags" in caplog.text
    from qtoolkit.io.gguf_reader import GGUFFile

    with GGUFFile(out) as g:
        assert "general.tags" not in g.kv and len(g.tensors) == len(gm.model_doc(0).tensors)


def test_expert_stacks_without_rows(tmp_path):
    def edit(doc):
        for proj in ("gate", "up"):
            t = _tensor(doc, f"blk.0.ffn_{proj}_exps.weight")
            t.ne, t.data = (t.ne[0], 0, t.ne[2]), b""
    p = written(tmp_path, _edited(gm.model_doc(2), edit))
    loads_or_refuses(p, r"blk.0.ffn_gate_exps.weight has dimensions \[64, 0, 4\]: no expert rows")


def test_a_file_without_tensors(tmp_path):
    """A GGUF with metadata and no tensors (a vocabulary-only file; found by the sanitizer pass's
    fuzz test, where the tensor count was set to 0 and the tensor records became padding) is a valid
    container; loading it as a model is refused by name, and re-quantizing it writes a valid file."""
    from qtoolkit.cli.inspect import inspect_file
    from qtoolkit.io.gguf_reader import GGUFFile

    for zeroed in (False, True):
        if zeroed:  # the original case: the count set to 0, the tensor records left in the file
            w = gm.write(gm.model_doc(0))
            count = next(f for f in w.fields if f.offset == 8)
            blob = bytearray(w.blob)
            struct.pack_into(count.fmt, blob, count.offset, 0)
            p = str(tmp_path / "zeroed.gguf")
            with open(p, "wb") as f:
                f.write(blob)
        else:
            p = written(tmp_path, llama(lambda d: d.tensors.clear()), "vocab-only.gguf")
        with GGUFFile(p) as g:
            assert g.tensors == [] and len(g.kv["tokenizer.ggml.tokens"].value) == 300
        info = inspect_file(p)
        assert info["totals"]["tensors"] == 0 and info["file_bytes"] == os.path.getsize(p)
        loads_or_refuses(p, r"llama.block_count is 2, but the file has no blk.N tensors")
        out = str(tmp_path / "out.gguf")
        report = requantize(p, out, "Q4_0", allow_requantize=True, threads=1, force=True)
        assert report["totals"]["tensors"] == 0
        with GGUFFile(out) as g:
            assert g.tensors == [] and g.kv["general.architecture"].value == "llama"


def _edited(doc, edit):
    doc = doc.copy()
    edit(doc)
    return doc


@pytest.mark.parametrize("alignment", [64, 4096, 8])
def test_requantize_keeps_a_custom_alignment_consistent(tmp_path, alignment):
    from qtoolkit.io.gguf_reader import GGUFFile

    def edit(doc):
        doc.alignment = alignment
        doc.kvs.append(gm.KVItem("general.alignment", 4, alignment))
    p = written(tmp_path, llama(edit))
    out = str(tmp_path / "o.gguf")
    requantize(p, out, "Q4_0", threads=1)
    with GGUFFile(out) as g:  # offsets padded to the alignment the file declares
        assert g.alignment == alignment and all(t.offset % alignment == 0 for t in g.tensors)
    assert qtoolkit.load(out, threads=1).forward([1, 2]).shape == (2, 300)


def test_block_numbers_in_other_scripts(tmp_path):
    def edit(doc):  # '²' is a digit to str.isdigit() but not to int()
        _tensor(doc, "blk.1.ffn_up.weight").name = "blk.².ffn_up.weight"
    loads_or_refuses(written(tmp_path, llama(edit)), r"the model has no tensor blk.1.ffn_up.weight")


# -- Hugging Face folders whose config or tokenizer lie (found by the hf-checkpoint fuzzer) --------

@pytest.fixture
def folder(tmp_path, checkpoints):
    import shutil

    d = str(tmp_path / "ck")
    shutil.copytree(checkpoints("qwen3moe", hidden=64, heads=2, kv_heads=1, experts=4, moe_ff=64, layers=1), d)
    return d


def _edit_json(path, edit):
    import json

    with open(path) as f:
        doc = json.load(f)
    edit(doc)
    with open(path, "w") as f:
        json.dump(doc, f)


@pytest.mark.parametrize("field, value, match", [
    ("num_hidden_layers", 10**9, r"num_hidden_layers 1000000000 is more than the checkpoint's \d+ tensors"),
    ("num_experts", 10**9, r"num_experts 1000000000 is more than qtoolkit's limit"),
    ("max_position_embeddings", 2**40, r"config.json .*: metadata qwen3moe.context_length = 1099511627776 does not fit a GGUF UINT32"),
])
def test_config_counts_that_would_hang_or_overflow(folder, field, value, match):
    _edit_json(os.path.join(folder, "config.json"), lambda c: c.__setitem__(field, value))
    t0 = time.monotonic()
    with pytest.raises(QtkError, match=match):
        qtoolkit.convert(folder, str(os.path.join(folder, "..", "o.gguf")), "Q8_0")
    assert time.monotonic() - t0 < 30
    assert not os.path.exists(os.path.join(folder, "..", "o.gguf.partial"))


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.__setitem__("added_tokens", 7), "added_tokens is not a list"),
    (lambda t: t["model"].__setitem__("merges", {"a": "b"}), "model.merges is not a list"),
    (lambda t: t.__setitem__("pre_tokenizer", {"type": "Split", "pattern": 5}), "--tokenizer-pre NAME"),
    (lambda t: t.__setitem__("pre_tokenizer", {"type": "Sequence", "pretokenizers": 5}), "--tokenizer-pre NAME"),
    (lambda t: t.__setitem__("post_processor", {"type": "TemplateProcessing", "single": ["x", 3]}), None),
    (lambda t: t.__setitem__("post_processor", {"processors": 5}), None),
])
def test_hostile_tokenizer_json(folder, edit, match):
    _edit_json(os.path.join(folder, "tokenizer.json"), edit)
    if match is None:  # odd but harmless: converted
        assert qtoolkit.convert(folder, None, "Q8_0", dry_run=True)["n_vocab"] > 0
        return
    with pytest.raises(QtkError, match=match):
        qtoolkit.convert(folder, None, "Q8_0", dry_run=True)


def test_odd_chat_template_files(folder):
    os.remove(os.path.join(folder, "tokenizer_config.json"))
    with open(os.path.join(folder, "chat_template.json"), "w") as f:
        f.write("[1, 2]")
    assert qtoolkit.convert(folder, None, "Q8_0", dry_run=True)
    with open(os.path.join(folder, "chat_template.jinja"), "wb") as f:
        f.write(b"\xff\xfe{{ x }}")
    with pytest.raises(QtkFormatError, match=r"chat_template.jinja: cannot read the chat template"):
        qtoolkit.convert(folder, None, "Q8_0", dry_run=True)
