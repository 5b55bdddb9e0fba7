"""Writers that never destroy a user's file, and readers of text that refuse what they cannot read
(issue 20): a link planted at ``OUT.partial``, an output that is one of the inputs, a file that
appears at the output path during a run, recipes and reports through the same output path; texts
that are folders, pipes, devices, binary or not UTF-8; convert inputs that its own loader would
refuse; tracebacks that became ``qtoolkit COMMAND: error:`` lines. Each case of the issue is
pinned here by name."""

import json
import os
import shutil

import numpy as np
import pytest

import qtoolkit
from qtoolkit.cli import main
from qtoolkit.errors import QtkError, QtkFileExistsError, QtkFormatError, QtkIOError, QtkValueError
from qtoolkit.io.output import ReplaceOnSuccess, write_text

HERE = os.path.dirname(os.path.abspath(__file__))
TINY_MOE = os.path.join(HERE, "..", "data", "tiny-moe")
CALIB = os.path.join(HERE, "..", "data", "calibration.txt")


@pytest.fixture
def base(tmp_path):
    d = str(tmp_path / "base")
    shutil.copytree(TINY_MOE, d)
    return d


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def _victim(tmp_path):
    v = tmp_path / "victim.txt"
    v.write_text("data\n")
    return v


# -- the output path ------------------------------------------------------------------------


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_link_at_the_partial_name_is_never_followed(tmp_path, base, capsys, link):
    victim = _victim(tmp_path)
    out = tmp_path / "c.gguf"
    (os.symlink if link == "symlink" else os.link)(str(victim), str(out) + ".partial")
    rc, err = cli(capsys, "convert", base, "-o", out, "--type", "Q8_0", "--quiet")
    assert rc == 1 and "c.gguf.partial is not a file qtoolkit left" in err and err.startswith("qtoolkit convert: error:")
    assert victim.read_text() == "data\n" and not out.exists()


def test_a_link_at_the_partial_name_of_imatrix_and_recipe_writers(tmp_path):
    victim = _victim(tmp_path)
    for name in ("im.gguf", "r.recipe"):
        os.symlink(str(victim), str(tmp_path / name) + ".partial")
    from qtoolkit.io.imatrix_file import ImatrixStats, write_imatrix

    stats = ImatrixStats({"blk.0.attn_q.weight": np.ones((1, 8))}, {"blk.0.attn_q.weight": np.ones(1)}, ["x"], 1, 8)
    with pytest.raises(QtkFileExistsError, match="symbolic link"):
        write_imatrix(str(tmp_path / "im.gguf"), stats, force=True)
    with pytest.raises(QtkFileExistsError, match="symbolic link"):
        write_text(str(tmp_path / "r.recipe"), "x\n", True, "the recipe")
    assert victim.read_text() == "data\n"


def test_a_stale_partial_of_a_killed_run_is_replaced(tmp_path):
    out = str(tmp_path / "o.txt")
    with open(out + ".partial", "w") as f:
        f.write("half of an old run")
    assert write_text(out, "new\n", False, "the file") == 4
    assert open(out).read() == "new\n" and not os.path.exists(out + ".partial")


def test_the_partial_is_written_through_its_descriptor(tmp_path):
    """Renaming the partial away mid-write is noticed: nothing is published under a name the
    writer did not create."""
    out = str(tmp_path / "o.bin")
    with pytest.raises(QtkIOError, match="was replaced while it was written"):
        with ReplaceOnSuccess(out, False, "the file") as w:
            with w.file() as f:
                f.write(b"abc")
            os.rename(w.partial, str(tmp_path / "moved"))
            with open(w.partial, "w") as f:
                f.write("someone else's")
    assert not os.path.exists(out)
    assert open(str(tmp_path / "moved"), "rb").read() == b"abc"


@pytest.mark.parametrize("args, match", [
    (["-o", "{base}/model.safetensors", "--force"], r"model.safetensors: is one of the inputs"),
    (["-o", "{base}/config.json", "--force"], r"config.json: is one of the inputs"),
    (["-o", "{tmp}/link.gguf", "--force"], r"link.gguf: is one of the inputs \(.*model.safetensors\)"),
    (["-o", "-"], r"-: writing to standard output is not supported"),
    (["-o", "{tmp}/x.gguf", "--tensor-type-file", "{tmp}/x.gguf", "--force"], r"x.gguf: is one of the inputs"),
])
def test_convert_never_replaces_its_input(tmp_path, base, capsys, args, match):
    os.symlink(os.path.join(base, "model.safetensors"), str(tmp_path / "link.gguf"))
    (tmp_path / "x.gguf").write_text("^nothing$=q8_0\n")
    before = open(os.path.join(base, "model.safetensors"), "rb").read()
    rc, err = cli(capsys, "convert", base, *[a.format(base=base, tmp=tmp_path) for a in args], "--type", "Q8_0", "--quiet")
    assert rc == 1 and err.startswith("qtoolkit convert: error:")
    import re
    assert re.search(match, err), err
    assert open(os.path.join(base, "model.safetensors"), "rb").read() == before
    assert not os.path.exists(os.path.join(tmp_path, "-"))
    assert "force=True" not in err


def test_quantize_and_imatrix_never_replace_their_input(tmp_path, base, capsys):
    g = str(tmp_path / "f16.gguf")
    qtoolkit.convert(base, g, "F16", threads=1)
    os.link(g, str(tmp_path / "hard.gguf"))
    rc, err = cli(capsys, "quantize", g, tmp_path / "hard.gguf", "Q8_0", "--force", "--quiet")
    assert rc == 1 and "hard.gguf: is one of the inputs" in err
    rc, err = cli(capsys, "imatrix", base, "-f", CALIB, "-o", os.path.join(base, "model.safetensors"), "--force",
                  "--quiet", "-c", "64", "--chunks", "1")
    assert rc == 1 and "model.safetensors: is one of the inputs" in err
    rc, err = cli(capsys, "imatrix", base, "-f", CALIB, "-o", CALIB, "--force", "--quiet", "-c", "64", "--chunks", "1")
    assert rc == 1 and "calibration.txt: is one of the inputs" in err


def test_a_file_that_appears_during_the_run_is_not_replaced(tmp_path, base):
    out = str(tmp_path / "c.gguf")

    class Appear(qtoolkit.io.gguf_writer.Progress):
        def tensor_done(self, name):
            if not os.path.exists(out):
                with open(out, "w") as f:
                    f.write("theirs")

    with pytest.raises(QtkFileExistsError, match="a file appeared there"):
        qtoolkit.convert(base, out, "Q8_0", threads=1, progress=Appear())
    assert open(out).read() == "theirs" and not os.path.exists(out + ".partial")
    # with force the run replaces it, as asked
    qtoolkit.convert(base, out, "Q8_0", threads=1, force=True, progress=Appear())
    assert open(out, "rb").read(4) == b"GGUF"


def test_the_no_replace_publish_without_hard_links(tmp_path, monkeypatch):
    """A file system without hard links: renameat2(RENAME_NOREPLACE) keeps the guarantee."""
    import errno

    def no_links(*a, **k):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    out = str(tmp_path / "o.txt")
    with pytest.raises(QtkFileExistsError, match="a file appeared there"):
        with ReplaceOnSuccess(out, False, "the file") as w:
            with w.file() as f:
                f.write(b"mine")
            with open(out, "w") as f:
                f.write("theirs")
    assert open(out).read() == "theirs"
    write_text(str(tmp_path / "p.txt"), "mine", False, "the file")
    assert open(str(tmp_path / "p.txt")).read() == "mine"


def test_the_recipe_goes_through_the_output_path(tmp_path, base, capsys):
    from qtoolkit.alloc.recipe import write_recipe
    from qtoolkit.quants import QuantType

    cfg = os.path.join(base, "config.json")
    before = open(cfg).read()
    (tmp_path / "mine.recipe").write_text("mine")
    rc, err = cli(capsys, "convert", base, "-o", tmp_path / "o.gguf", "--target-bpw", "6", "--calib", CALIB,
                  "--recipe", tmp_path / "mine.recipe", "--quiet")
    assert rc == 1 and "mine.recipe: already exists; pass --force" in err
    assert (tmp_path / "mine.recipe").read_text() == "mine"
    rc, err = cli(capsys, "convert", base, "-o", tmp_path / "o.gguf", "--target-bpw", "6", "--calib", CALIB,
                  "--recipe", cfg, "--force", "--quiet")
    assert rc == 1 and "config.json: is one of the inputs" in err
    assert open(cfg).read() == before
    r = str(tmp_path / "r.recipe")
    write_recipe(r, {"blk.0.attn_q.weight": QuantType.Q8_0})
    with pytest.raises(QtkFileExistsError, match="already exists"):
        write_recipe(r, {"blk.0.attn_q.weight": QuantType.Q4_K})
    write_recipe(r, {"blk.0.attn_q.weight": QuantType.Q4_K}, force=True)
    assert "q4_K" in open(r).read() and not os.path.exists(r + ".partial")


def test_compare_report_files_are_not_replaced_without_force(tmp_path):
    pytest.importorskip("matplotlib")
    from qtoolkit.model.report import check_report

    d = tmp_path / "rep"
    d.mkdir()
    (d / "report.md").write_text("mine")
    with pytest.raises(QtkFileExistsError, match="report.md: already exists"):
        check_report(str(d), False)
    check_report(str(d), True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(QtkFileExistsError, match="is not a folder"):
        check_report(str(tmp_path / "file"), True)


# -- text inputs ----------------------------------------------------------------------------


@pytest.fixture
def texts(tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    rng = np.random.default_rng(0)
    (tmp_path / "random.bin").write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 400)
    return {"dir": str(tmp_path), "fifo": fifo, "zero": "/dev/zero",
            "random": str(tmp_path / "random.bin"), "latin1": str(tmp_path / "latin1.txt")}


@pytest.mark.parametrize("cmd", ["perplexity", "imatrix", "tensor-type-file"])
@pytest.mark.parametrize("kind, match", [
    ("dir", "is a directory, not an? "), ("fifo", "not a regular file"), ("zero", "not a regular file"),
    ("random", "is not valid UTF-8"), ("latin1", r"is not valid UTF-8 \(byte 0xe9 at offset 3\)"),
])
def test_text_inputs_that_cannot_be_read(tmp_path, base, capsys, texts, cmd, kind, match):
    f = texts[kind]
    if cmd == "perplexity":
        argv = ["perplexity", base, "-f", f, "--quiet"]
    elif cmd == "imatrix":
        argv = ["imatrix", base, "-f", f, "-o", tmp_path / "im.gguf", "--quiet"]
    else:
        argv = ["convert", base, "-o", tmp_path / "o.gguf", "--tensor-type-file", f, "--quiet"]
    rc, err = cli(capsys, *argv)
    prog = "convert" if cmd == "tensor-type-file" else cmd
    assert rc == 1 and err.startswith(f"qtoolkit {prog}: error: {f}:"), err
    import re
    assert re.search(match, err), err
    assert "Traceback" not in err


def test_size_limit_and_binary_warning(tmp_path, caplog):
    from qtoolkit.io.files import read_text_file

    p = tmp_path / "t.txt"
    p.write_bytes(b"x" * 2000)
    with pytest.raises(QtkValueError, match="the limit is 1000 bytes"):
        read_text_file(str(p), "text", limit=1000)
    p.write_bytes(b"a\0b\r\nc\rd")
    with caplog.at_level("WARNING"):
        assert read_text_file(str(p), "text") == "a\0b\nc\nd"  # line ends as Python's text mode
    assert "looks like binary data" in caplog.text
    p.write_bytes(b"ok \xff text")
    with caplog.at_level("WARNING"):
        assert read_text_file(str(p), "text", errors="replace") == "ok \ufffd text"
    assert "1 invalid sequences were replaced" in caplog.text


def test_invalid_utf8_is_scored_only_when_asked(tmp_path, base, capsys, caplog):
    text = open(CALIB, encoding="utf-8").read()
    p = tmp_path / "t.txt"
    p.write_bytes(text.encode() + b"\xff\xfe")
    rc, err = cli(capsys, "perplexity", base, "-f", p, "-c", "64", "--chunks", "1", "--quiet", "--json")
    assert rc == 1 and "not valid UTF-8" in err
    with caplog.at_level("WARNING"):
        rc, err = cli(capsys, "perplexity", base, "-f", p, "-c", "64", "--chunks", "1", "--json", "--utf8-errors",
                      "replace")
    assert rc == 0 and "2 invalid sequences were replaced" in caplog.text


def test_thread_counts_out_of_range(base, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["convert", base, "-o", str(tmp_path / "o.gguf"), "--threads", "99999999999"])
    assert e.value.code == 2 and "is not a thread count from 1 to" in capsys.readouterr().err
    with pytest.raises(QtkValueError, match="threads must be an integer from 1 to"):
        qtoolkit.perplexity(base, text="hello " * 400, ctx=64, chunks=1, threads=99999999999)


# -- convert writes only what its loader reads ----------------------------------------------


def _edit(base, name, edit):
    p = os.path.join(base, name)
    with open(p, encoding="utf-8") as f:
        doc = json.load(f)
    edit(doc)
    with open(p, "w", encoding="utf-8") as f:
        json.dump(doc, f)


def _vocab(doc):
    return doc["model"]["vocab"]


def _drop_last(doc):
    v = _vocab(doc)
    del v[max(v, key=v.get)]


def _gap(doc):
    v = _vocab(doc)
    tok = next(t for t in sorted(v, key=v.get, reverse=True) if len(t) > 1)
    del v[tok]


def _dup_id(doc):
    v = _vocab(doc)
    ks = sorted(v, key=v.get)
    v[ks[5]] = v[ks[6]]


def _unknown_merge(doc):
    m = doc["model"]["merges"]
    m.append("zzqq xxyy" if isinstance(m[0], str) else ["zzqq", "xxyy"])


def _dup_added(doc):  # the same content at a second id (every id of this vocabulary is taken)
    a = doc["added_tokens"]
    a.append(dict(a[0], id=a[0]["id"] + 1))


def _surrogate_added(doc):
    a, v = doc["added_tokens"], _vocab(doc)
    new = "<|end\ud800|>"
    v[new] = v.pop(a[0]["content"])
    a[0]["content"] = new


@pytest.mark.parametrize("name, edit, match", [
    ("tokenizer.json", _drop_last, r"merge .* uses .*, which is not in the vocabulary"),
    ("tokenizer.json", _gap, r"merge .* uses .*, which is not in the vocabulary"),
    ("tokenizer.json", _dup_id, r"id 6 is given to two tokens"),
    ("tokenizer.json", _unknown_merge, r"merge 'zzqq xxyy' uses 'zzqq'"),
    ("tokenizer.json", _dup_added, r"id 1 is given to two tokens, '!' and '<\|endoftext\|>'"),
    ("tokenizer.json", _surrogate_added, r"not valid Unicode text"),
    ("config.json", lambda c: c.__setitem__("rms_norm_eps", -1), r"rms_norm_eps' must be at least 0.0"),
    ("config.json", lambda c: c.__setitem__("rope_scaling", {"rope_type": "yarn", "factor": -4.0}),
     r"rope factor' must be a positive number, got -4.0"),
    ("config.json", lambda c: c.__setitem__("rope_parameters", "hello"), r"rope_parameters must be an object"),
    ("tokenizer_config.json", lambda c: c.__setitem__("chat_template", "{{ x }}\ud800"), r"chat_template .* not valid Unicode"),
])
def test_convert_refuses_what_its_loader_would(tmp_path, base, name, edit, match):
    _edit(base, name, edit)
    out = str(tmp_path / "o.gguf")
    with pytest.raises(QtkError, match=match) as e:
        qtoolkit.convert(base, out, "Q8_0", threads=1)
    assert base in str(e.value)
    assert not os.path.exists(out) and not os.path.exists(out + ".partial")


def test_a_non_utf8_folder_name_is_converted(tmp_path):
    d = os.path.join(os.fsencode(str(tmp_path)), b"caf\xe9")
    shutil.copytree(os.fsencode(TINY_MOE), d)
    out = str(tmp_path / "o.gguf")
    qtoolkit.convert(os.fsdecode(d), out, "Q8_0", threads=1)
    m = qtoolkit.load(out, threads=1)
    assert m.n_vocab > 0


# -- GGUF tensor names ----------------------------------------------------------------------


@pytest.mark.parametrize("name, match", [
    ("", "is empty"), ("blk.0.x\0y", "control character"), ("../evil", "path separator"),
    ("a/b", "path separator"),
])
def test_tensor_names_refused_on_read_and_write(tmp_path, name, match):
    from qtoolkit.io.gguf_reader import GGUFFile
    from qtoolkit.io.gguf_writer import TensorOut, write_gguf
    from qtoolkit.quants import QuantType

    import gguf

    p = str(tmp_path / "t.gguf")
    w = gguf.GGUFWriter(p, "llama")
    w.add_tensor(name, np.zeros(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(QtkFormatError, match=match):
        GGUFFile(p)
    with pytest.raises(QtkValueError, match=match):
        write_gguf(str(tmp_path / "o.gguf"), "llama", [], [TensorOut(name, (4,), QuantType.F32, lambda: iter(()))])
    assert not os.path.exists(str(tmp_path / "o.gguf.partial"))


# -- fuzzing the text reader and the output path ---------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.binary(max_size=600), st.sampled_from(["strict", "replace"]))
def test_fuzz_text_reader(tmp_path_factory, data, errors):
    from qtoolkit.alloc.recipe import parse_recipe_text
    from qtoolkit.io.files import read_text_file

    p = str(tmp_path_factory.mktemp("t") / "t.txt")
    with open(p, "wb") as f:
        f.write(data)
    try:
        text = read_text_file(p, "text", limit=500, errors=errors)
    except QtkError as exc:
        assert str(exc).startswith(p + ":")
        assert len(data) > 500 or (errors == "strict" and "not valid UTF-8" in str(exc))
        return
    assert isinstance(text, str) and "\r" not in text
    try:
        parse_recipe_text(text, p)
    except QtkValueError as exc:
        assert str(exc).startswith(p + ":")


_STATES = ["none", "file", "symlink-victim", "hardlink-victim", "dir", "fifo", "dangling"]


def _make(path, state, victim):
    if state == "file":
        with open(path, "w") as f:
            f.write("old")
    elif state == "symlink-victim":
        os.symlink(victim, path)
    elif state == "hardlink-victim":
        os.link(victim, path)
    elif state == "dir":
        os.mkdir(path)
    elif state == "fifo":
        os.mkfifo(path)
    elif state == "dangling":
        os.symlink(path + ".nowhere", path)


@settings(max_examples=120, deadline=None, derandomize=True)
@given(st.sampled_from(_STATES), st.sampled_from(_STATES), st.booleans(), st.booleans())
def test_fuzz_output_path(tmp_path_factory, out_state, partial_state, force, victim_is_input):
    """Whatever sits at OUT and OUT.partial, the victim file is never changed, and the run either
    publishes the complete new file or is refused with a QtkError naming the output."""
    d = tmp_path_factory.mktemp("o")
    victim = str(d / "victim.txt")
    with open(victim, "w") as f:
        f.write("data")
    out = str(d / "out.bin")
    _make(out, out_state, victim)
    _make(out + ".partial", partial_state, victim)
    try:
        write_text(out, "new", force, "the file", [victim] if victim_is_input else [])
    except QtkError as exc:
        assert out in str(exc)
    else:
        assert not os.path.islink(out) and open(out).read() == "new"
        assert not os.path.lexists(out + ".partial")
        assert force or out_state == "none"
        assert partial_state in ("none", "file")
    assert open(victim).read() == "data"
