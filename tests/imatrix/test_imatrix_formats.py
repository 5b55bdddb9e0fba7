"""The importance-matrix formats (qtoolkit/imatrix.py): GGUF and legacy .dat written and read
back, what the quantizer gets from each (llama-quantize's arithmetic), the uncovered-expert
policies, and the errors for broken files."""

import os
import struct

import numpy as np
import pytest

import qtoolkit
from qtoolkit.errors import (QtkError, QtkFileExistsError, QtkFileNotFoundError, QtkFormatError, QtkIOError,
                             QtkValueError)
from qtoolkit.io.gguf_reader import GGUFFile
from qtoolkit.imatrix import Imatrix, ImatrixStats, load_imatrix, read_imatrix, write_imatrix


def make_stats(seed=0, zero=((1, 2),), n=64, n_expert=4, layers=2):
    """Two layers: dense attn_q and a 4-expert stack; ``zero`` = (layer, expert) pairs never routed."""
    rng = np.random.default_rng(seed)
    sums, counts = {}, {}
    for il in range(layers):
        q = f"blk.{il}.attn_q.weight"
        sums[q] = rng.gamma(2.0, 3.0, (1, n)).astype(np.float32) * 1000
        counts[q] = np.array([1024.0])
        for stack in ("ffn_gate_exps", "ffn_down_exps"):
            name = f"blk.{il}.{stack}.weight"
            c = rng.integers(20, 600, n_expert).astype(np.float64)
            for lz, ez in zero:
                if lz == il:
                    c[ez] = 0
            s = rng.gamma(2.0, 1.0, (n_expert, n)).astype(np.float32) * c[:, None].astype(np.float32)
            sums[name], counts[name] = s, c
    return ImatrixStats(sums, counts, ["calib.txt"], chunk_count=2, chunk_size=512)


def test_gguf_round_trip_and_layout(tmp_path):
    st = make_stats()
    p = str(tmp_path / "im.gguf")
    size = write_imatrix(p, st)
    back = read_imatrix(p)
    assert not back.legacy and back.format == "gguf"
    assert back.datasets == ["calib.txt"] and back.chunk_count == 2 and back.chunk_size == 512
    assert back.names() == st.names()
    for n in st.names():
        assert np.array_equal(back.sums[n], st.sums[n])
        assert np.array_equal(back.counts[n], st.counts[n])
    with GGUFFile(p) as g:
        assert g.size == size
        assert g.get("general.type") == "imatrix" and "general.architecture" not in g.kv
        assert g.kv["imatrix.chunk_count"].type == 4 and g.kv["imatrix.chunk_size"].type == 4   # UINT32
        names = [t.name for t in g.tensors]
        # llama-imatrix's order: sorted entry names, each NAME.in_sum2 then NAME.counts
        assert names == [f"{n}{suf}" for n in sorted(st.names()) for suf in (".in_sum2", ".counts")]
        t = g.tensor("blk.0.ffn_gate_exps.weight.in_sum2")
        assert t.ne == (64, 4) and t.type_id == 0
        assert g.tensor("blk.0.ffn_gate_exps.weight.counts").ne == (1, 4)
        assert g.tensor("blk.0.attn_q.weight.in_sum2").ne == (64, 1)
    # the gguf package reads it too
    import gguf

    r = gguf.GGUFReader(p)
    assert r.fields["general.type"].contents() == "imatrix"


def test_quantizer_weights_are_llama_quantizes_arithmetic(tmp_path):
    st = make_stats()
    p = str(tmp_path / "im.gguf")
    write_imatrix(p, st)
    im = load_imatrix(p)
    name = "blk.1.ffn_gate_exps.weight"
    w = im.weights(name, 64, 4)
    c = st.counts[name].astype(np.float32)
    for e in range(4):
        want = np.ones(64, np.float32) if c[e] == 0 else st.sums[name][e] / c[e]
        assert np.array_equal(w[e], want), e
    assert im.zero_count_experts == {"blk.1.ffn_gate_exps.weight": [2], "blk.1.ffn_down_exps.weight": [2]}
    assert im.weights("blk.9.attn_q.weight", 64, 1) is None
    with pytest.raises(QtkFormatError, match="needs 32 x 4"):
        im.weights(name, 32, 4)


def test_legacy_dat_round_trip(tmp_path):
    st = make_stats()
    st.counts["blk.0.attn_q.weight"] = np.array([0.0])          # no data at all: left out, as llama-imatrix does
    g, d = str(tmp_path / "im.gguf"), str(tmp_path / "im.dat")
    write_imatrix(g, st)
    write_imatrix(d, st)                                        # the suffix picks the legacy format
    with open(d, "rb") as f:
        raw = f.read()
    assert raw[:4] != b"GGUF" and struct.unpack_from("<i", raw)[0] == len(st.names()) - 1
    assert raw.endswith(struct.pack("<i", 2) + struct.pack("<i", 9) + b"calib.txt")   # chunk count, dataset
    back = read_imatrix(d)
    assert back.legacy and back.datasets == ["calib.txt"] and back.chunk_count == 2
    assert "blk.0.attn_q.weight" not in back.sums
    ig, idat = load_imatrix(g), load_imatrix(d)
    for n in back.names():
        n_mat = st.counts[n].size
        a, b = ig.weights(n, 64, n_mat), idat.weights(n, 64, n_mat)
        np.testing.assert_allclose(b, a, rtol=2e-7, atol=0)
    # ncall = ceil(max count / chunk size); an expert with count 0 is stored as 1 x ncall
    name = "blk.1.ffn_down_exps.weight"
    ncall = int(-(-st.counts[name].max() // 512))
    assert back.counts[name][0] == ncall
    assert np.all(idat.weights(name, 64, 4)[2] == 1.0)


def test_legacy_files_cannot_be_rewritten(tmp_path):
    d = str(tmp_path / "im.dat")
    write_imatrix(d, make_stats())
    with pytest.raises(QtkValueError, match="per-expert counts"):
        write_imatrix(str(tmp_path / "again.gguf"), read_imatrix(d))


def test_output_exists_and_force(tmp_path):
    p = str(tmp_path / "im.gguf")
    write_imatrix(p, make_stats())
    with pytest.raises(QtkFileExistsError):
        write_imatrix(p, make_stats(1))
    write_imatrix(p, make_stats(1), force=True)
    assert np.array_equal(read_imatrix(p).sums["blk.0.attn_q.weight"], make_stats(1).sums["blk.0.attn_q.weight"])
    assert not (tmp_path / "im.gguf.partial").exists()
    with pytest.raises(QtkValueError, match="format"):
        write_imatrix(str(tmp_path / "x.bin"), make_stats(), fmt="npz")


def test_a_second_writer_and_a_full_disk_lose_nothing(tmp_path, monkeypatch):
    import errno

    from qtoolkit.io import imatrix_file as imx
    from qtoolkit.io.output import lock_partial

    p = str(tmp_path / "im.gguf")
    write_imatrix(p, make_stats())
    before = open(p, "rb").read()
    held = lock_partial(p, p + ".partial")  # another writer of the same output, still running
    try:
        with pytest.raises(QtkFileExistsError, match="another process is writing it"):
            write_imatrix(p, make_stats(1), force=True)
    finally:
        os.close(held)
    assert open(p, "rb").read() == before

    def full_disk(fout, stats):
        with fout as f:
            f.write(b"GGUF half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(imx, "_write_gguf", full_disk)
    with pytest.raises(QtkIOError, match="disk is full.*nothing was written"):
        write_imatrix(p, make_stats(1), force=True)
    assert open(p, "rb").read() == before  # the old file untouched
    assert not os.path.exists(p + ".partial")


# -- uncovered experts --------------------------------------------------------------------------


def test_policies(tmp_path):
    st = make_stats(zero=((0, 1), (0, 3)))
    p = str(tmp_path / "im.gguf")
    write_imatrix(p, st)
    im = load_imatrix(p)
    name = "blk.0.ffn_down_exps.weight"
    base = im.weights(name, 64, 4)
    uni = im.tensor_weights(name, 64, 4, policy="uniform")
    assert uni.uncovered == [1, 3] and uni.filled == "uniform" and np.array_equal(uni.w, base)
    lm = im.tensor_weights(name, 64, 4, policy="layer-mean")
    assert lm.uncovered == [1, 3] and lm.filled == "layer-mean"
    want = ((base[0].astype(np.float64) + base[2]) / 2).astype(np.float32)
    assert np.array_equal(lm.w[1], want) and np.array_equal(lm.w[3], want)
    assert np.array_equal(lm.w[[0, 2]], base[[0, 2]])
    err = im.tensor_weights(name, 64, 4, policy="error")
    assert err.uncovered == [1, 3] and err.filled == ""
    # a higher threshold also takes experts that saw a few tokens
    c = st.counts[name]
    thr = int(sorted(c[c > 0])[0]) + 1
    more = im.tensor_weights(name, 64, 4, policy="layer-mean", min_tokens=thr)
    assert len(more.uncovered) == 3
    # dense tensors have no experts to cover
    assert im.tensor_weights("blk.0.attn_q.weight", 64, 1, policy="error").uncovered == []
    with pytest.raises(QtkValueError, match="policy"):
        im.tensor_weights(name, 64, 4, policy="mean")


def test_layer_mean_with_no_covered_expert_falls_back_to_uniform(tmp_path):
    st = make_stats(zero=((0, 0), (0, 1), (0, 2), (0, 3)))
    p = str(tmp_path / "im.gguf")
    write_imatrix(p, st)
    tw = load_imatrix(p).tensor_weights("blk.0.ffn_gate_exps.weight", 64, 4, policy="layer-mean")
    assert tw.filled == "uniform" and np.all(tw.w == 1.0)


def test_legacy_unused_experts_are_detected_by_their_all_ones_slice(tmp_path):
    d = str(tmp_path / "im.dat")
    write_imatrix(d, make_stats(zero=((1, 2),)))
    tw = load_imatrix(d).tensor_weights("blk.1.ffn_gate_exps.weight", 64, 4, policy="layer-mean")
    assert tw.uncovered == [2] and tw.counts is None and tw.filled == "layer-mean"


# -- broken files -------------------------------------------------------------------------------


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(QtkFileNotFoundError):
        read_imatrix(str(tmp_path / "nope.gguf"))
    with pytest.raises(QtkFormatError, match="directory"):
        read_imatrix(str(tmp_path))


def test_pipes_and_unreadable_files_are_io_errors(tmp_path, monkeypatch):
    fifo = str(tmp_path / "pipe.gguf")
    os.mkfifo(fifo)
    with pytest.raises(QtkIOError, match="not a regular file"):  # never blocks waiting for a writer
        read_imatrix(fifo)
    path = str(tmp_path / "im.gguf")
    write_imatrix(path, ImatrixStats({"blk.0.attn_q.weight": np.ones((1, 8))}, {"blk.0.attn_q.weight": np.ones(1)},
                                     ["x"], 1, 8))
    real_open = os.open  # the readers open through os.open (non-blocking, then checked by fstat)

    def refusing_open(file, *a, **k):
        if os.fspath(file) == path:
            raise PermissionError(13, "Permission denied")
        return real_open(file, *a, **k)

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(QtkIOError, match=r"im\.gguf: cannot read it: .*Permission denied"):
        read_imatrix(path)


def test_model_file_is_not_an_imatrix(tmp_path):
    import gguf

    p = str(tmp_path / "model.gguf")
    w = gguf.GGUFWriter(p, "llama")
    w.add_tensor("blk.0.attn_q.weight", np.zeros((4, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(QtkFormatError, match="model file, not an importance matrix"):
        read_imatrix(p)


def _raw_gguf(path, tensors, keys=True):
    import gguf

    w = gguf.GGUFWriter(path, "")
    w.kv_data[0].pop("general.architecture", None)
    if keys:
        w.add_array("imatrix.datasets", ["x"])
        w.add_uint32("imatrix.chunk_count", 1)
        w.add_uint32("imatrix.chunk_size", 512)
    for name, arr in tensors.items():
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("case", ["no_counts", "no_sums", "bad_count_len", "nan", "negative", "f16", "no_keys"])
def test_broken_gguf_imatrix(tmp_path, case):
    p = str(tmp_path / f"{case}.gguf")
    s = np.ones((2, 32), np.float32)
    c = np.full((2, 1), 5.0, np.float32)
    t = {"a.weight.in_sum2": s, "a.weight.counts": c}
    if case == "no_counts":
        del t["a.weight.counts"]
    elif case == "no_sums":
        del t["a.weight.in_sum2"]
    elif case == "bad_count_len":
        t["a.weight.counts"] = np.ones((3, 1), np.float32)
    elif case == "nan":
        s[1, 3] = np.nan
    elif case == "negative":
        c[0] = -1
    elif case == "f16":
        t["a.weight.in_sum2"] = s.astype(np.float16)
    _raw_gguf(p, t, keys=case != "no_keys")
    with pytest.raises(QtkFormatError) as info:
        read_imatrix(p)
    assert p in str(info.value)


@pytest.mark.parametrize("cut", [2, 6, 20, 40])
def test_truncated_dat(tmp_path, cut):
    d = str(tmp_path / "im.dat")
    write_imatrix(d, make_stats())
    raw = open(d, "rb").read()
    with open(d, "wb") as f:
        f.write(raw[:cut])
    with pytest.raises(QtkFormatError):
        read_imatrix(d)


def test_imatrix_is_a_plain_package_and_compute_imatrix_the_entry_point():
    import qtoolkit.imatrix as pkg
    from qtoolkit.imatrix.collect import compute_imatrix

    assert not callable(pkg) and hasattr(pkg, "__path__")
    assert "compute_imatrix" in qtoolkit.__all__ and "imatrix" not in qtoolkit.__all__
    assert pkg.compute_imatrix is compute_imatrix
    assert pkg.load_imatrix is load_imatrix and isinstance(Imatrix, type)
    assert issubclass(QtkFormatError, QtkError)
