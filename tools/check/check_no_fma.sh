#!/usr/bin/env bash
# Prove that no fused multiply-add was formed in the quantizer objects: a fused a*b+c rounds once
# instead of twice and would change output bytes. The build compiles with -ffp-contract=off; this
# compiles the quantizer sources the same way (plus the AVX2 target region they open themselves)
# and disassembles them.
#
#   bash tools/check/check_no_fma.sh [CC]     (exit 1 and list the instructions if any is found)
set -euo pipefail
cd "$(dirname "$0")/../.."
CC=${1:-gcc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for src in csrc/fastq/fastq_vec.c csrc/fastq/fastq_avx2.c csrc/ref/search.c csrc/ref/ref_kquants.c \
           csrc/ref/ref_legacy.c csrc/ref/ref_iq4.c csrc/ref/ref_ternary.c csrc/ref/ref_float.c \
           csrc/ref/iq_search.c csrc/ref/ref_iq1.c csrc/arch/x86/avx2_iq_search.c; do
  obj="$tmp/$(basename "$src" .c).o"
  "$CC" -O2 -std=c11 -ffp-contract=off -fno-strict-aliasing -Wno-psabi -DQTK_VERSION='"check"' -Icsrc/include -Icsrc -c "$src" -o "$obj"
  hits=$(objdump -d --no-show-raw-insn "$obj" | grep -E '\s(v?f(n)?m(add|sub)[0-9a-z]*|fmla|fmls|fmadd|fmsub|fnmadd|fnmsub)\s' || true)
  if [ -n "$hits" ]; then
    echo "FUSED multiply-add in $src:"
    echo "$hits" | head -20
    status=1
  else
    echo "ok: no fused multiply-add in $src"
  fi
done
exit $status
