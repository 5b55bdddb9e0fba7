"""The NEON kernels, cross-compiled for arm64 and run under qemu-user (tools/check/test_neon.sh). Skipped
where the cross compiler or qemu is not installed (apt-get install gcc-aarch64-linux-gnu qemu-user)."""

import os
import shutil
import subprocess

import pytest
from tests.support.paths import ROOT



@pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-gcc") is None
    or (shutil.which("qemu-aarch64") is None and shutil.which("qemu-aarch64-static") is None),
    reason="needs aarch64-linux-gnu-gcc and qemu-aarch64 (apt-get install gcc-aarch64-linux-gnu qemu-user)",
)
def test_neon_kernels_under_qemu():
    proc = subprocess.run(["bash", os.path.join(ROOT, "tools", "check", "test_neon.sh")], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " 0 failed" in proc.stdout
