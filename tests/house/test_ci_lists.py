"""The CI script's sanitizer pass: every test file is either run under ASan + UBSan or listed,
with a reason in .ci/run, as left out, so a new test that calls the C core cannot be forgotten."""

import os
import re
from tests.support.paths import ROOT



def _list(script, name):
    m = re.search(name + r'="([^"]*)"', script)
    assert m, f".ci/run has no {name}"
    return m.group(1).split()


def test_every_test_file_is_run_under_the_sanitizers_or_left_out_on_purpose():
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        script = f.read()
    run, skipped = _list(script, "SAN_TESTS"), _list(script, "SAN_SKIPPED")
    assert not set(run) & set(skipped)
    for entry in run + skipped:
        assert os.path.exists(os.path.join(ROOT, entry)), f".ci/run names {entry}, which does not exist"
    files = []
    for d, _, names in os.walk(os.path.join(ROOT, "tests")):
        files += [os.path.relpath(os.path.join(d, n), ROOT) for n in names if n.startswith("test_") and n.endswith(".py")]
    for f in sorted(files):
        covered = [e for e in run + skipped if f == e or f.startswith(e.rstrip("/") + os.sep)]
        assert covered, f"{f} is neither in SAN_TESTS nor in SAN_SKIPPED of .ci/run"
