"""Budgeted, MoE-aware bit allocation (``qtoolkit convert --target-size / --target-bpw``).

See :mod:`qtoolkit.alloc.allocate` for the method, :mod:`qtoolkit.alloc.budget` for the
conversion to a target, and docs/allocation.md for the measurements."""

from .allocate import AllocOptions, Allocation, Target, allocate, allocate_plan, predict_loss  # noqa: F401
from .budget import convert_to_budget, read_text, recipe_path  # noqa: F401
from .recipe import read_recipe, recipe_lines, write_recipe  # noqa: F401
from .solver import solve  # noqa: F401

__all__ = ["allocate", "allocate_plan", "convert_to_budget", "Allocation", "AllocOptions", "Target", "predict_loss",
           "read_text", "recipe_path", "read_recipe", "recipe_lines", "write_recipe", "solve"]
