"""What the quantizer makes of an importance-matrix file (docs/imatrix.md).

* :class:`Imatrix` (:func:`load_imatrix`) turns a file into the quantizer's per-matrix weights,
  ``sums / count``, as llama-quantize derives them, and says what to do with experts that
  calibration did not reach (fewer than ``min_tokens`` tokens): ``uniform`` (all ones, what
  llama-quantize does for count 0), ``layer-mean`` (the mean of the covered experts' weights in
  that tensor) or ``error``.
* :func:`tensor_importance` gives one planned tensor its weights and refuses, naming the tensor, a
  type that cannot be made without them; :func:`imatrix_report` / :func:`check_coverage` /
  :func:`imatrix_metadata` are the report, the refusal and the ``quantize.imatrix.*`` keys that a
  convert or quantize run derives from the same work.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import QtkFormatError, QtkImatrixCoverageError, QtkImatrixRequiredError, QtkValueError
from ..quants import QuantType, type_info
from ..io.files import unicode_name
from ..io.imatrix_file import ImatrixStats, read_imatrix
from ..presets import requires_imatrix

log = logging.getLogger(__name__)

POLICIES = ("uniform", "layer-mean", "error")
DEFAULT_UNCOVERED_POLICY = "uniform"  # experts calibration never reached: llama-quantize's all-ones weights


@dataclass
class Coverage:
    """What to do with experts an importance matrix left (nearly) without data."""

    policy: str = DEFAULT_UNCOVERED_POLICY   # uniform, layer-mean or error
    min_tokens: int = 1                      # an expert below this many tokens counts as uncovered


@dataclass
class TensorWeights:
    """Weights for one tensor: ``w`` ``(n_mat, n)`` float32, the experts below the threshold
    (``uncovered``) and what was put in their place (``filled``: "", "uniform" or "layer-mean")."""

    w: np.ndarray
    uncovered: List[int]
    counts: Optional[List[int]]
    filled: str = ""


class Imatrix:
    """An importance-matrix file as the quantizer's per-matrix weights (:func:`load_imatrix`)."""

    def __init__(self, stats: ImatrixStats):
        self.stats = stats
        self.path = stats.path
        self.format = stats.format
        self.datasets = stats.datasets
        self.chunk_count = stats.chunk_count
        self.entries: Dict[str, np.ndarray] = {name: stats.means(name) for name in stats.sums}
        self.zero_count_experts: Dict[str, List[int]] = {}
        if not stats.legacy:
            for name in stats.sums:
                zero = np.nonzero(stats.expert_counts(name) == 0)[0]
                if zero.size:
                    self.zero_count_experts[name] = [int(e) for e in zero]

    def weights(self, name: str, n: int, n_mat: int) -> Optional[np.ndarray]:
        """``(n_mat, n)`` weights exactly as llama-quantize derives them (count-0 experts all
        ones), or None when the file has no entry for the tensor."""
        tw = self.tensor_weights(name, n, n_mat, policy="uniform")
        return None if tw is None else tw.w

    def tensor_weights(self, name: str, n: int, n_mat: int, policy: str = "uniform",
                       min_tokens: int = 1) -> Optional[TensorWeights]:
        """The tensor's weights with experts that saw fewer than ``min_tokens`` tokens handled by
        ``policy`` ("uniform", "layer-mean"; "error" returns them untouched and listed, for the
        caller to refuse after looking at every tensor). None when the file has no entry."""
        if policy not in POLICIES:
            raise QtkValueError(f"uncovered-experts policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        if name not in self.stats.sums:
            return None
        size = self.stats.sums[name].size
        if size != n * n_mat:
            raise QtkFormatError(
                f"{self.path}: importance entry for {name} has {size} values, the tensor needs {n} x {n_mat} = {n * n_mat}"
            )
        if not self.stats.legacy and self.stats.n_mat(name) != n_mat:
            raise QtkFormatError(
                f"{self.path}: importance entry for {name} has {self.stats.n_mat(name)} matrices, the tensor has {n_mat}"
            )
        w = np.ascontiguousarray(self.entries[name], dtype=np.float32).reshape(n_mat, n).copy()
        counts = self.stats.expert_counts(name)
        if n_mat == 1:
            return TensorWeights(w, [], None if counts is None else [int(c) for c in counts])
        if counts is not None:
            low = np.nonzero(counts < max(1, int(min_tokens)))[0]
        else:
            # a legacy file keeps no per-expert counts; its writer stores an unused expert as all ones
            low = np.nonzero(np.all(w == 1.0, axis=1))[0]
        uncovered = [int(e) for e in low]
        tw = TensorWeights(w, uncovered, None if counts is None else [int(c) for c in counts])
        if not uncovered or policy == "error":
            return tw
        covered = np.setdiff1d(np.arange(n_mat), low)
        if policy == "layer-mean" and covered.size:
            w[low] = w[covered].mean(axis=0, dtype=np.float64).astype(np.float32)
            tw.filled = "layer-mean"
        else:
            if policy == "layer-mean":
                log.warning("%s: no expert reached %d tokens; its experts get uniform weights", name, min_tokens)
            w[low] = 1.0
            tw.filled = "uniform"
        return tw


def load_imatrix(path: str) -> Imatrix:
    """An importance-matrix file (GGUF or legacy ``.dat``) as the quantizer's weights."""
    return Imatrix(read_imatrix(path))


def imatrix_report(path: str, im: "Imatrix", cov: Coverage) -> Dict[str, Any]:
    """The ``imatrix`` part of a convert/quantize report, filled in by :func:`tensor_importance`."""
    return {"file": path, "format": im.format, "entries": len(im.entries), "used": 0, "missing": [],
            "zero_count_experts": {k: len(v) for k, v in im.zero_count_experts.items()},
            "policy": cov.policy, "min_expert_tokens": cov.min_tokens, "uncovered": {}}


def tensor_importance(im, iminfo: Dict[str, Any], name: str, t: QuantType, n: int, n_mat: int, preset,
                      cov: Coverage) -> Optional[np.ndarray]:
    """The ``(n_mat, n)`` importance weights for tensor ``name`` quantized to ``t`` (None: none),
    with experts below ``cov.min_tokens`` handled by ``cov.policy``; refuses,
    naming the tensor, a type that cannot be made without importance data (llama-quantize's rule
    for the low-bit presets, and ggml's own for IQ2_XXS, IQ2_XS and IQ1_S whatever the tensor)."""
    tw = None
    if im is not None:
        try:
            tw = im.tensor_weights(name, n, n_mat, policy=cov.policy, min_tokens=cov.min_tokens)
        except QtkFormatError:
            if name != "token_embd.weight":
                raise
            log.warning("importance entry for token_embd.weight has the wrong size; ignored")
        if tw is None:
            iminfo["missing"].append(name)
            log.info("no importance data for %s", name)
        else:
            iminfo["used"] += 1
            if tw.uncovered and type_info(t).uses_imatrix:
                iminfo["uncovered"][name] = {"experts": tw.uncovered, "filled": tw.filled,
                                             "tokens": [tw.counts[e] for e in tw.uncovered] if tw.counts else None}
    if tw is None and (requires_imatrix(name, t, preset) or type_info(t).requires_imatrix):
        if name == "token_embd.weight":
            why = ("no importance matrix has an entry for it (the embedding is a row lookup, not a matrix "
                   "product); choose another --token-embedding-type")
        elif im is not None:
            why = (f"{im.path} has no entry for it (an older llama-imatrix left out tensors whose experts were not "
                   "all reached; 'qtoolkit imatrix' keeps them)")
        else:
            why = "none was given (--imatrix FILE; compute one with 'qtoolkit imatrix')"
        raise QtkImatrixRequiredError(
            f"tensor {name} would be {t.name} in a {preset.name} file, which needs an importance matrix; {why}",
            qtype=t.name)
    return None if tw is None else tw.w


def check_coverage(iminfo: Dict[str, Any], cov: Coverage) -> None:
    """With ``uncovered_experts="error"``, refuse when any tensor that uses importance weights has
    experts below the threshold, naming each tensor and its experts."""
    bad = iminfo.get("uncovered") if iminfo else None
    if not bad or cov.policy != "error":
        return
    parts = [f"{name}: experts {', '.join(map(str, v['experts']))}" for name, v in bad.items()]
    n = sum(len(v["experts"]) for v in bad.values())
    raise QtkImatrixCoverageError(
        f"{iminfo['file']}: {n} expert matrices in {len(bad)} tensors saw fewer than {cov.min_tokens} "
        f"calibration tokens: {'; '.join(parts)}. Calibrate on more or broader text, or choose "
        "--uncovered-experts layer-mean (the mean of the layer's covered experts) or uniform (llama-quantize's choice)",
        uncovered={name: v["experts"] for name, v in bad.items()})


def uncovered_metadata(iminfo: Dict[str, Any]) -> List[Tuple[str, object, int, Optional[int]]]:
    """``quantize.imatrix.uncovered_experts``: how many expert matrices got substitute weights and
    which ones (only when some did; llama-quantize writes no such key)."""
    bad = iminfo.get("uncovered") or {}
    if not bad:
        return []
    n = sum(len(v["experts"]) for v in bad.values())
    filled = sorted({v["filled"] for v in bad.values()})
    return [("quantize.imatrix.uncovered_experts",
             f"{n} expert matrices in {len(bad)} tensors below {iminfo['min_expert_tokens']} tokens: {'/'.join(filled)}",
             8, None)]


def imatrix_metadata(im: "Imatrix", iminfo: Dict[str, Any]) -> List[Tuple[str, object, int, Optional[int]]]:
    """The ``quantize.imatrix.*`` keys of a file quantized with ``im``, in llama-quantize's order."""
    md: List[Tuple[str, object, int, Optional[int]]] = [("quantize.imatrix.file", unicode_name(os.path.basename(im.path)), 8, None)]
    if im.datasets:
        md.append(("quantize.imatrix.dataset", im.datasets[0], 8, None))
    md.append(("quantize.imatrix.entries_count", len(im.entries), 4, None))
    md.append(("quantize.imatrix.chunks_count", int(im.chunk_count), 4, None))
    return md + uncovered_metadata(iminfo)
