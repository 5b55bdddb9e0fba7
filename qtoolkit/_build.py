"""cffi builder for qtoolkit._native (API / out-of-line mode).

Run by setuptools through ``cffi_modules`` in setup.py. The C sources in ``csrc/`` are compiled
with baseline flags only: no -march=native, and -ffp-contract=off so that no fused multiply-add
changes a rounding of the reference code. SIMD code sits in its own files behind compiler target
regions and is chosen at run time.
"""

import os
import re
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CSRC = os.path.join(ROOT, "csrc")

# Every .c file in csrc/ is compiled; SIMD files guard themselves with target regions / #ifdefs.
C_SOURCES = sorted(f for f in os.listdir(CSRC) if f.endswith(".c"))

# The declarations cffi sees come from the public headers csrc/qtk*.h, between the markers
# "cdef-begin" and "cdef-end" (one source of truth; preprocessor lines are dropped).
CDEF_BEGIN = "/* cdef-begin */"
CDEF_END = "/* cdef-end */"


PUBLIC_HEADERS = sorted(f for f in os.listdir(CSRC) if f.startswith("qtk") and f.endswith(".h"))


def read_cdef():
    parts = []
    for name in PUBLIC_HEADERS:
        with open(os.path.join(CSRC, name), encoding="utf-8") as f:
            text = f.read()
        pos = 0
        while True:
            a = text.find(CDEF_BEGIN, pos)
            if a < 0:
                break
            b = text.index(CDEF_END, a)
            block = text[a + len(CDEF_BEGIN):b]
            parts.append("\n".join(l for l in block.splitlines() if not l.lstrip().startswith("#")))
            pos = b
    return "\n".join(parts)


def read_version():
    with open(os.path.join(HERE, "_version.py"), encoding="utf-8") as f:
        return re.search(r'__version__ = "([^"]+)"', f.read()).group(1)


def compile_args():
    args = ["-O2", "-std=c11", "-ffp-contract=off", "-fno-strict-aliasing", "-Wall", "-pthread"]
    # fastq_vec.c uses 32-byte vectors without AVX in static functions only: no ABI is crossed
    args += ["-Wno-psabi"]
    if os.environ.get("QTK_SANITIZE") == "1":
        args += ["-fsanitize=address,undefined,float-cast-overflow", "-fno-sanitize-recover=all",
                 "-fno-omit-frame-pointer", "-O1", "-g"]
    return args


def link_args():
    args = ["-lm", "-pthread"]
    if os.environ.get("QTK_SANITIZE") == "1":
        args += ["-fsanitize=address,undefined,float-cast-overflow"]
    return args


ffibuilder = FFI()
ffibuilder.cdef(read_cdef())
PUBLIC_HEADERS = sorted(f for f in os.listdir(CSRC) if f.startswith("qtk") and f.endswith(".h"))

ffibuilder.set_source(
    "qtoolkit._native",
    "".join('#include "%s"\n' % h for h in PUBLIC_HEADERS),
    sources=[os.path.join("csrc", s) for s in C_SOURCES],
    include_dirs=[CSRC],
    # headers and the .inc bodies compiled into several objects: a change to one rebuilds them
    depends=[os.path.join("csrc", f) for f in sorted(os.listdir(CSRC)) if f.endswith((".h", ".inc"))],
    define_macros=[("QTK_VERSION", '"%s"' % read_version())],
    extra_compile_args=compile_args(),
    extra_link_args=link_args(),
)

if __name__ == "__main__":
    # a quick in-tree build for development: python qtoolkit/_build.py
    os.chdir(ROOT)
    ffibuilder.compile(verbose=True, tmpdir=ROOT)
    sys.exit(0)
