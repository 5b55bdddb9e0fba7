"""Where things are, for every test: the repository, the fixtures, the architectures the
converter tests run over."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data")
ALL_ARCHS = ["llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3moe", "qwen2moe"]
