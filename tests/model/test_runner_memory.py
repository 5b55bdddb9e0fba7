"""The layer-major runner's peak memory: `qtoolkit compare` and `qtoolkit imatrix` in a child process
on a multi-layer checkpoint stay within two layers of each model they read, the hidden states and
the interpreter's own footprint (measured on the same child running the bundled tiny model), on a
checkpoint whose weights in float32 (the in-memory design) would not fit that bound."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import qtoolkit
from qtoolkit.io.gguf_reader import GGUFFile
from qtoolkit.model.sources import HFSource
from tests.support.paths import DATA, ROOT
from tools.fixtures.synth_checkpoint import make_checkpoint

CHILD = textwrap.dedent("""
    import json, sys
    from qtoolkit.cli import main
    rc = main(sys.argv[1:])
    # VmHWM (sampled by the kernel from this process's own pages), not getrusage's ru_maxrss, which
    # Linux carries over from the forking parent
    hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    print(json.dumps({"rc": rc, "hwm": hwm * 1024}))
""")
SHAPE = dict(hidden=512, layers=6, heads=8, kv_heads=2, head_dim=64, experts=32, top_k=4, moe_ff=512, vocab=512)
CTX, CHUNKS = 128, 4
HELDOUT = os.path.join(DATA, "heldout.txt")
SLACK = 96 << 20


def child(args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", CHILD] + args, capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["rc"] == 0
    return res["hwm"]


def largest_layer(src_names_bytes):
    per = {}
    for name, n in src_names_bytes:
        if name.startswith("blk."):
            il = int(name.split(".")[1])
            per[il] = per.get(il, 0) + n
    return max(per.values()), sum(per.values())


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("runner-mem")
    hf = make_checkpoint(str(d / "hf"), "qwen3moe", **SHAPE)
    q4 = str(d / "q4.gguf")
    qtoolkit.convert(hf, q4, "Q4_K_M")
    tiny = str(d / "tiny.gguf")
    qtoolkit.convert(os.path.join(DATA, "tiny-moe"), tiny, "Q8_0")
    src = HFSource(hf)
    hf_layer, hf_layers = largest_layer((n, src.nbytes(n)) for n in src.names())
    src.close()
    with GGUFFile(q4) as g:
        q_layer, _ = largest_layer((t.name, t.nbytes) for t in g.tensors)
    # the interpreter, numpy, the C core and the tokenizer, running a model of a few MB the same way
    base = child(["compare", tiny, tiny, "-f", HELDOUT, "--ctx", str(CTX), "--chunks", "1", "--json"])
    return {"hf": hf, "q4": q4, "hf_layer": hf_layer, "q_layer": q_layer, "hf_f32": 2 * hf_layers, "base": base}


def test_compare_holds_two_layers_of_each_model(model, tmp_path):
    hidden = 2 * CHUNKS * CTX * SHAPE["hidden"] * 4
    bound = 2 * (model["hf_layer"] + model["q_layer"]) + hidden + model["base"] + SLACK
    assert model["hf_f32"] + model["base"] > bound      # the float32 model alone would not fit the bound
    peak = child(["compare", model["hf"], model["q4"], "-f", HELDOUT, "--ctx", str(CTX), "--chunks", str(CHUNKS),
                  "--json"])
    print(f"\ncompare: peak {peak / 2**20:.0f} MiB, bound {bound / 2**20:.0f} MiB (layers {model['hf_layer'] / 2**20:.0f} "
          f"+ {model['q_layer'] / 2**20:.0f} MiB, base {model['base'] / 2**20:.0f} MiB, the checkpoint in float32 "
          f"{model['hf_f32'] / 2**20:.0f} MiB)")
    assert peak <= bound


def test_imatrix_holds_two_layers(model, tmp_path):
    hidden = CHUNKS * CTX * SHAPE["hidden"] * 4
    bound = 2 * model["hf_layer"] + hidden + model["base"] + SLACK
    assert model["hf_f32"] + model["base"] > bound
    out = str(tmp_path / "im.gguf")
    peak = child(["imatrix", model["hf"], "-f", HELDOUT, "--ctx", str(CTX), "--chunks", str(CHUNKS), "-o", out,
                  "--json"])
    print(f"\nimatrix: peak {peak / 2**20:.0f} MiB, bound {bound / 2**20:.0f} MiB")
    assert peak <= bound and os.path.getsize(out) > 0
