#!/usr/bin/env bash
# Cross-compile the C core for arm64 and run tools/check/test_neon.c (NEON kernels vs the reference)
# under qemu-user. Needs: apt-get install gcc-aarch64-linux-gnu qemu-user (or qemu-user-static).
# Exits 0 when every check passes; 77 (skip) when the cross compiler or qemu is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
CC=${CC_AARCH64:-aarch64-linux-gnu-gcc}
QEMU=$(command -v qemu-aarch64 || command -v qemu-aarch64-static || true)
if ! command -v "$CC" >/dev/null || [ -z "$QEMU" ]; then
    echo "test_neon: skipped (need $CC and qemu-aarch64; apt-get install gcc-aarch64-linux-gnu qemu-user)"
    exit 77
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
VERSION=$(python3 -c "import re;print(re.search(r'__version__ = \"([^\"]+)\"', open('qtoolkit/_version.py').read()).group(1))")
# the package's baseline flags; -static so qemu needs no arm64 sysroot
"$CC" -O2 -std=c11 -ffp-contract=off -fno-strict-aliasing -Wall -pthread -static \
    -DQTK_VERSION="\"$VERSION\"" -Icsrc/include -Icsrc $(find csrc -name '*.c' | sort) tools/check/test_neon.c -o "$OUT/test_neon" -lm
"$QEMU" "$OUT/test_neon"
