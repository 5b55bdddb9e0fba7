"""The layering of the C core, read from the #include "..." lines of every file under csrc/.

    include/     the public API (what cffi reads); includes only include/
    ref/         the portable reference, the specification; includes only ref/ and include/
    fastq/       the fast quantizers (byte-identical to ref/); includes only fastq/, ref/ and include/
    arch/<cpu>/  SIMD kernels; include only their own folder, ref/ and include/
    csrc/        the core (isa.c, quant.c, matmul.c, ...) that ties them together; may include anything

One exception: fastq/fastq_avx2.c opens and closes the AVX2 target region with
arch/x86/avx2_begin.h / avx2_end.h (pragmas only, no declarations), so that the fast quantizers'
AVX2 variant is compiled for exactly the extensions isa.c checks before choosing it.

Headers are included by their path under csrc/ ("ref/common.h"), public ones by name ("qtk.h"),
core ones by name from the core ("pool.h"). One file, isa.c, detects the CPU and reads QTK_ISA.
"""

import os
import re

import pytest
from tests.support.paths import ROOT

CSRC = os.path.join(ROOT, "csrc")

if not os.path.isdir(os.path.join(CSRC, "include")):
    pytest.skip("not a source checkout", allow_module_level=True)

INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
ALLOWED = {
    "include": {"include"},
    "ref": {"ref", "include"},
    "fastq": {"fastq", "ref", "include"},
    "arch/x86": {"arch/x86", "ref", "include"},
    "arch/arm": {"arch/arm", "ref", "include"},
}
EXCEPTIONS = {
    ("fastq/fastq_avx2.c", "arch/x86/avx2_begin.h"),
    ("fastq/fastq_avx2.c", "arch/x86/avx2_end.h"),
}


def source_files():
    """Paths under csrc/ of every C source, header and included body."""
    out = []
    for d, _, files in os.walk(CSRC):
        out += [os.path.relpath(os.path.join(d, f), CSRC).replace(os.sep, "/")
                for f in files if f.endswith((".c", ".h", ".inc"))]
    return sorted(out)


def folder(path):
    """The layer of a csrc/ path: include, ref, fastq, arch/x86, arch/arm, or "" for the core."""
    parts = path.split("/")
    if parts[0] == "arch":
        return "/".join(parts[:2])
    return parts[0] if len(parts) > 1 else ""


def read(path):
    with open(os.path.join(CSRC, path), encoding="utf-8") as f:
        return f.read()


def resolve(name):
    """The csrc/ path an include line names: a public header by name, anything else by its path."""
    for candidate in ("include/" + name, name):
        if os.path.isfile(os.path.join(CSRC, candidate)):
            return candidate
    return None


def includes():
    """(file, written name, resolved path) for every quoted include under csrc/."""
    return [(f, name, resolve(name)) for f in source_files() for name in INCLUDE_RE.findall(read(f))]


def code_only(text):
    """The text without its comments."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def test_the_folders_exist():
    for d in ("include", "ref", "fastq", "arch/x86", "arch/arm"):
        assert os.path.isdir(os.path.join(CSRC, d)), d
    assert all(f.startswith("qtk") and f.endswith(".h") for f in os.listdir(os.path.join(CSRC, "include")))


def test_every_include_names_a_file_by_the_house_convention():
    bad = []
    for f, name, path in includes():
        if path is None:
            bad.append(f"{f}: \"{name}\" is no file under csrc/include/ or csrc/")
        elif "/" not in name and folder(path) not in ("include", ""):
            bad.append(f"{f}: \"{name}\" must be written as \"{path}\"")
        elif "/" not in name and folder(path) == "" and folder(f) != "":
            bad.append(f"{f}: includes the core header {path}")
        elif name.startswith("include/") or ".." in name or name.startswith("./"):
            bad.append(f"{f}: \"{name}\": public headers by name, the others by their path under csrc/")
    assert not bad, "\n".join(bad)


def test_no_folder_includes_a_layer_above_it():
    bad = []
    for f, name, path in includes():
        if path is None:
            continue
        src, dst = folder(f), folder(path)
        if src == "" or (f, path) in EXCEPTIONS:
            continue   # the core ties everything together
        if dst not in ALLOWED[src]:
            bad.append(f"{f} includes {path}: {src}/ may include only {', '.join(sorted(d + '/' for d in ALLOWED[src]))}")
    assert not bad, "\n".join(bad)


def test_the_exceptions_are_only_target_region_pragmas():
    for _, header in EXCEPTIONS:
        lines = [line.strip() for line in code_only(read(header)).splitlines() if line.strip()]
        assert lines and all(line.startswith("#") for line in lines), header
        assert not INCLUDE_RE.search(read(header)), header


def test_the_reference_is_portable_c():
    """No target region, intrinsics header or target attribute in ref/ (the AVX2 lanes of the IQ
    searches live in arch/x86 behind ref/iq_search.h's ops table)."""
    bad = []
    for f in source_files():
        if folder(f) != "ref":
            continue
        code = code_only(read(f))
        for pattern in (r"#\s*pragma\s+(GCC|clang)\s+(target|attribute)", r"__attribute__\s*\(\(\s*target",
                        r"#\s*include\s*<(immintrin|x86intrin|arm_neon|cpuid)\.h>", r"\b_mm(256)?_\w+"):
            if re.search(pattern, code):
                bad.append(f"{f}: {pattern}")
    assert not bad, "\n".join(bad)


def test_one_file_detects_the_cpu_and_reads_QTK_ISA():
    cpuid, env = [], []
    for f in source_files():
        code = code_only(read(f))
        if re.search(r"\b__get_cpuid\w*|\b__cpuid\w*|<cpuid\.h>|\bxgetbv\b", code):
            cpuid.append(f)
        if re.search(r'getenv\s*\(\s*"QTK_ISA"\s*\)', code):
            env.append(f)
    assert cpuid == ["isa.c"] and env == ["isa.c"], (cpuid, env)
