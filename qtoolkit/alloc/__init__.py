"""Budgeted, MoE-aware bit allocation (``qtoolkit convert --target-size / --target-bpw``).

See :mod:`qtoolkit.alloc.allocate` for the method and docs/allocation.md for the measurements."""

from .allocate import Allocation, allocate, predict_loss, read_text  # noqa: F401
from .recipe import read_recipe, recipe_lines, write_recipe  # noqa: F401
from .solver import solve  # noqa: F401

__all__ = ["allocate", "Allocation", "predict_loss", "read_text", "read_recipe", "recipe_lines", "write_recipe", "solve"]
