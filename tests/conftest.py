import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # llama_ref

from tools.synth_checkpoint import make_checkpoint  # noqa: E402

ALL_ARCHS = ["llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3moe", "qwen2moe"]


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running (run with -m slow or RUN_SLOW=1)")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("RUN_SLOW") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow test: set RUN_SLOW=1 or use -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """arch -> a small random bf16 checkpoint (built once per session)."""
    cache = {}

    def get(arch, **kw):
        key = (arch, repr(sorted(kw.items())))
        if key not in cache:
            d = tmp_path_factory.mktemp(arch)
            cache[key] = make_checkpoint(str(d), arch, **kw)
        return cache[key]

    return get
