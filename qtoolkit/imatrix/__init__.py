"""Importance matrices (docs/imatrix.md): computing one from a calibration text
(:func:`compute_imatrix`, :mod:`.collect`) and its per-expert coverage report (:mod:`.coverage`).
The file formats are :mod:`qtoolkit.io.imatrix_file`; what the quantizer makes of a file is
:mod:`qtoolkit.converter.importance`. Their main names are re-exported here."""

from ..converter.importance import POLICIES, Imatrix, TensorWeights, load_imatrix  # noqa: F401
from ..io.imatrix_file import FORMATS, ImatrixStats, read_imatrix, write_imatrix  # noqa: F401
from .collect import ImatrixCollector, collect_imatrix, compute_imatrix  # noqa: F401
from .coverage import coverage, format_coverage  # noqa: F401

__all__ = ["compute_imatrix", "collect_imatrix", "ImatrixCollector", "coverage", "format_coverage", "ImatrixStats",
           "read_imatrix", "write_imatrix", "Imatrix", "TensorWeights", "load_imatrix", "POLICIES", "FORMATS"]
