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

C_SOURCES = [
    "quant.c",
    "search.c",
    "ref_float.c",
    "ref_legacy.c",
    "ref_kquants.c",
    "ref_iq4.c",
    "ref_ternary.c",
    "custom.c",
]

CDEF = """
enum {
    QTK_OK = 0, QTK_E_ARG = 1, QTK_E_TYPE = 2, QTK_E_SHAPE = 3, QTK_E_NONFINITE = 4,
    QTK_E_NOMEM = 5, QTK_E_IMATRIX = 6, QTK_E_UNSUPPORTED = 7, QTK_E_OVERFLOW = 8,
};
enum { QTK_TYPE_COUNT = 43 };

typedef struct {
    const char *name;
    int64_t blck_size;
    int64_t type_size;
    int is_quantized;
    int uses_imatrix;
    int can_quantize;
    int can_dequantize;
} qtk_type_traits;

const char *qtk_version(void);
const char *qtk_strerror(int status);
int qtk_get_type_traits(int type, qtk_type_traits *out);
int qtk_quantize(int type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                 const float *imatrix, int64_t *bad_row);
int qtk_dequantize(int type, const void *src, float *dst, int64_t nrows, int64_t n_per_row);
int qtk_custom_block_bytes(int bits, int group, int symmetric, int64_t *out);
int qtk_custom_quantize(int bits, int group, int symmetric, const float *src, void *dst,
                        int64_t nrows, int64_t n_per_row, const float *imatrix, int64_t *bad_row);
int qtk_custom_dequantize(int bits, int group, int symmetric, const void *src, float *dst,
                          int64_t nrows, int64_t n_per_row);
"""


def read_version():
    with open(os.path.join(HERE, "_version.py"), encoding="utf-8") as f:
        return re.search(r'__version__ = "([^"]+)"', f.read()).group(1)


def compile_args():
    args = ["-O2", "-std=c11", "-ffp-contract=off", "-fno-strict-aliasing", "-Wall"]
    if os.environ.get("QTK_SANITIZE") == "1":
        args += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"]
    return args


def link_args():
    args = ["-lm"]
    if os.environ.get("QTK_SANITIZE") == "1":
        args += ["-fsanitize=address,undefined"]
    return args


ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "qtoolkit._native",
    '#include "qtk.h"\n',
    sources=[os.path.join("csrc", s) for s in C_SOURCES],
    include_dirs=[CSRC],
    define_macros=[("QTK_VERSION", '"%s"' % read_version())],
    extra_compile_args=compile_args(),
    extra_link_args=link_args(),
)

if __name__ == "__main__":
    # a quick in-tree build for development: python qtoolkit/_build.py
    os.chdir(ROOT)
    ffibuilder.compile(verbose=True, tmpdir=ROOT)
    sys.exit(0)
