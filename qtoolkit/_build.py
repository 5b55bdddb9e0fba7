"""cffi builder for qtoolkit._native (API / out-of-line mode).

Run by setuptools through ``cffi_modules`` in setup.py. The C sources under ``csrc/`` are compiled
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

# The public headers (what cffi reads) are in csrc/include/; everything else is included by its path
# under csrc/ ("ref/common.h", "arch/x86/simd_x86.h"), so both directories are on the include path.
INCLUDE = os.path.join(CSRC, "include")


def csrc_files(*suffixes):
    """Paths relative to ROOT of the files under csrc/ (any depth) ending in one of `suffixes`, sorted."""
    found = []
    for d, dirs, files in os.walk(CSRC):
        dirs.sort()
        found += [os.path.relpath(os.path.join(d, f), ROOT) for f in files if f.endswith(suffixes)]
    return sorted(found)


# Every .c file under csrc/ is compiled; SIMD files guard themselves with target regions / #ifdefs.
C_SOURCES = csrc_files(".c")

# The declarations cffi sees come from the public headers csrc/include/qtk*.h, between the markers
# "cdef-begin" and "cdef-end" (one source of truth; preprocessor lines are dropped).
CDEF_BEGIN = "/* cdef-begin */"
CDEF_END = "/* cdef-end */"


PUBLIC_HEADERS = sorted(f for f in os.listdir(INCLUDE) if f.startswith("qtk") and f.endswith(".h"))


def read_cdef():
    parts = []
    for name in PUBLIC_HEADERS:
        with open(os.path.join(INCLUDE, name), encoding="utf-8") as f:
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

ffibuilder.set_source(
    "qtoolkit._native",
    "".join('#include "%s"\n' % h for h in PUBLIC_HEADERS),
    sources=C_SOURCES,
    include_dirs=[INCLUDE, CSRC],
    # headers and the .inc bodies compiled into several objects: a change to one rebuilds them
    depends=csrc_files(".h", ".inc"),
    define_macros=[("QTK_VERSION", '"%s"' % read_version())],
    extra_compile_args=compile_args(),
    extra_link_args=link_args(),
)

if __name__ == "__main__":
    # a quick in-tree build for development: python qtoolkit/_build.py
    os.chdir(ROOT)
    ffibuilder.compile(verbose=True, tmpdir=ROOT)
    sys.exit(0)
