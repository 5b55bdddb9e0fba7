#!/usr/bin/env bash
# Build llama.cpp's llama-quantize command-line tool against the library that llama-cpp-python
# installed, so that importance-matrix files can be checked with the real tool:
#
#   bash tools/check/build_llama_quantize.sh LLAMA_CPP_SOURCE_DIR [OUT]     (OUT default: .bench/llama-quantize)
#   .bench/llama-quantize --imatrix imatrix.gguf model-f32.gguf out.gguf IQ2_XXS
#
# LLAMA_CPP_SOURCE_DIR is the llama.cpp tree that llama-cpp-python was built from (its sdist has it
# under vendor/llama.cpp). Only the tool's own sources are compiled (tools/quantize/*.cpp and
# common/imatrix-loader.cpp); the handful of libcommon helpers they call are replaced by the small
# stand-ins below (logging to stderr, a string splitter; --override-kv is not supported). The
# tests use the result when QTK_LLAMA_QUANTIZE points at it or it sits at .bench/llama-quantize.
set -euo pipefail
SRC=${1:?usage: build_llama_quantize.sh LLAMA_CPP_SOURCE_DIR [OUT]}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${2:-$REPO/.bench/llama-quantize}
LIB=$(python -c "import llama_cpp, os; print(os.path.join(os.path.dirname(llama_cpp.__file__), 'lib'))")
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cat > "$TMP/stand_ins.cpp" <<'CPP'
#include <cstdarg>
#include <cstdio>
#include <string>
#include <vector>
#include "llama.h"
#include "ggml.h"
struct common_log { int unused; };
static common_log qtk_log;
common_log * common_log_main() { return &qtk_log; }
int common_log_get_verbosity_thold() { return 0; }
void common_log_add(common_log *, enum ggml_log_level, const char * fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}
std::vector<std::string> string_split(const std::string & s, const std::string & sep) {
    std::vector<std::string> parts;
    size_t at = 0;
    for (size_t hit; (hit = s.find(sep, at)) != std::string::npos; at = hit + sep.size()) {
        parts.push_back(s.substr(at, hit - at));
    }
    parts.push_back(s.substr(at));
    return parts;
}
bool string_parse_kv_override(const char *, std::vector<llama_model_kv_override> &) { return false; }
int LLAMA_BUILD_NUMBER = 0;
char const * LLAMA_COMMIT = "llama-cpp-python";
char const * LLAMA_COMPILER = "c++";
char const * LLAMA_BUILD_TARGET = "host";
int llama_build_number(void) { return LLAMA_BUILD_NUMBER; }
const char * llama_commit(void) { return LLAMA_COMMIT; }
const char * llama_compiler(void) { return LLAMA_COMPILER; }
const char * llama_build_target(void) { return LLAMA_BUILD_TARGET; }
const char * llama_build_info(void) { return LLAMA_COMMIT; }
void llama_print_build_info(const char *, FILE *) {}
CPP
mkdir -p "$(dirname "$OUT")"
${CXX:-g++} -std=c++17 -O1 -I"$SRC/common" -I"$SRC/include" -I"$SRC/ggml/include" -o "$OUT" \
    "$SRC/tools/quantize/main.cpp" "$SRC/tools/quantize/quantize.cpp" "$SRC/common/imatrix-loader.cpp" \
    "$TMP/stand_ins.cpp" -L"$LIB" -lllama -lggml -lggml-base -Wl,-rpath,"$LIB"
echo "built $OUT"
