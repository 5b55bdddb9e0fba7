#!/usr/bin/env bash
# Cross-compile the quantizer self-test for arm64 and run it under qemu: the "vec" variant (the lane
# code, which becomes NEON there) must write the reference's bytes, and the per-type hashes of the
# reference must equal those of this machine (the reference is portable C).
#
# Needs: apt-get install gcc-aarch64-linux-gnu qemu-user
#   bash tools/check/check_arm64.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
flags=(-O2 -std=c11 -ffp-contract=off -fno-strict-aliasing -Wno-psabi -Icsrc/include -Icsrc -DQTK_VERSION='"selftest"')
mapfile -t csrcs < <(find csrc -name '*.c' | sort)
srcs=(tests/c/fastq_selftest.c "${csrcs[@]}")
gcc "${flags[@]}" "${srcs[@]}" -lm -lpthread -o "$tmp/host"
aarch64-linux-gnu-gcc "${flags[@]}" "${srcs[@]}" -lm -lpthread -static -o "$tmp/arm64"
if aarch64-linux-gnu-objdump -d "$tmp/arm64" | awk '/<fq_|<lane_|<fastq/,/^$/' | grep -qE '\s(fmla|fmls|fmadd|fmsub|fnmadd|fnmsub)\s'; then
  echo "FUSED multiply-add in the arm64 quantizers"; exit 1
fi
"$tmp/host" > "$tmp/host.out"
qemu-aarch64 "$tmp/arm64" > "$tmp/arm64.out"
cat "$tmp/arm64.out"
# the reference hashes must agree across architectures
if ! diff <(grep -E '^[a-z0-9_]+K?\s+[0-9a-f]{16}' "$tmp/host.out" | awk '{print $1, $2}') \
          <(grep -E '^[a-z0-9_]+K?\s+[0-9a-f]{16}' "$tmp/arm64.out" | awk '{print $1, $2}'); then
  echo "reference bytes differ between $(uname -m) and arm64"; exit 1
fi
echo "arm64: every variant byte-identical to the reference, reference identical to $(uname -m)"
