"""Choosing one option per tensor to minimise the summed predicted loss within a byte budget.

A multiple-choice knapsack: tensor ``g`` has options ``(bytes, loss)``; pick one per tensor with
``sum bytes <= budget`` and the smallest ``sum loss``. Two solvers:

* :func:`lagrangian`: for a price ``lam`` per byte every tensor independently takes the option
  minimising ``loss + lam * bytes``, which is a vertex of that tensor's lower convex hull; the
  price is bisected to the cheapest one that fits, then the leftover bytes buy the best remaining
  hull steps (largest loss drop per byte first). Its dual value ``min_x L(x, lam) - lam * budget``
  is a lower bound on the optimum, so the gap it reports is an honest optimality certificate.
* :func:`exact`: dynamic programming over bytes in units of ``ceil(budget / resolution)`` bytes,
  every option's size rounded *up* to whole units (so the result always fits the real budget). It
  is exact for options that are not on a hull too, and optimal up to that rounding.

:func:`solve` runs both and keeps the better feasible answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import QtkValueError

Option = Tuple[int, float]   # (bytes, loss)


@dataclass
class Solution:
    choice: List[int]          # index of the chosen option, per tensor
    bytes: int
    loss: float
    lower_bound: float         # no assignment within the budget has a smaller loss
    method: str
    lam: float = 0.0

    @property
    def gap(self) -> float:
        return self.loss - self.lower_bound


def _check(options: Sequence[Sequence[Option]], budget: int) -> None:
    if not options:
        raise QtkValueError("nothing to allocate")
    for i, opts in enumerate(options):
        if not opts:
            raise QtkValueError(f"tensor {i} has no option")
    need = sum(min(b for b, _ in opts) for opts in options)
    if need > budget:
        raise QtkValueError(f"the budget of {budget:,} bytes is below the smallest possible size, {need:,} bytes")


def hull(opts: Sequence[Option]) -> List[int]:
    """Indices of the lower convex hull of (bytes, loss), by increasing bytes (dominated options removed)."""
    order = sorted(range(len(opts)), key=lambda i: (opts[i][0], opts[i][1]))
    pts: List[int] = []
    for i in order:
        b, l = opts[i]
        if pts and l >= opts[pts[-1]][1]:
            continue  # more bytes, no less loss
        while pts and opts[pts[-1]][0] == b:
            pts.pop()
        while len(pts) >= 2:
            (b1, l1), (b2, l2) = opts[pts[-2]], opts[pts[-1]]
            # drop the middle point when it lies on or above the segment from pts[-2] to i
            if (l2 - l1) * (b - b1) >= (l - l1) * (b2 - b1):
                pts.pop()
            else:
                break
        pts.append(i)
    return pts


def _pick(opts: Sequence[Option], h: List[int], lam: float) -> int:
    best, val = h[0], math.inf
    for i in h:
        v = opts[i][1] + lam * opts[i][0]
        if v < val - 1e-300:
            best, val = i, v
    return best


def lagrangian(options: Sequence[Sequence[Option]], budget: int) -> Solution:
    _check(options, budget)
    hulls = [hull(o) for o in options]

    def at(lam):
        ch = [_pick(o, h, lam) for o, h in zip(options, hulls)]
        return ch, sum(o[c][0] for o, c in zip(options, ch))

    # every slope on any hull is a candidate break point; bisect on them
    slopes = {0.0}
    for o, h in zip(options, hulls):
        for a, b in zip(h, h[1:]):
            slopes.add((o[a][1] - o[b][1]) / (o[b][0] - o[a][0]))
    slopes = sorted(slopes)
    lo, hi = 0, len(slopes) - 1
    ch, used = at(slopes[0])
    if used > budget:
        # the smallest price whose choice fits
        big = slopes[-1] * 2 + 1.0
        ch, used = at(big)
        while lo < hi:
            mid = (lo + hi) // 2
            c, u = at(slopes[mid] * (1 + 1e-12) + 1e-300)
            if u <= budget:
                hi = mid
            else:
                lo = mid + 1
        lam = slopes[lo] * (1 + 1e-12) + 1e-300
        ch, used = at(lam)
    else:
        lam = 0.0
    dual = sum(min(o[i][1] + lam * o[i][0] for i in h) for o, h in zip(options, hulls)) - lam * budget
    # spend what is left on single hull steps, best loss drop per byte first
    pos = [h.index(c) for h, c in zip(hulls, ch)]
    while True:
        best, best_rate = -1, 0.0
        for g, (o, h) in enumerate(zip(options, hulls)):
            if pos[g] + 1 < len(h):
                a, b = h[pos[g]], h[pos[g] + 1]
                db = o[b][0] - o[a][0]
                if used + db <= budget:
                    rate = (o[a][1] - o[b][1]) / db
                    if rate > best_rate:
                        best, best_rate = g, rate
        if best < 0:
            break
        h, o = hulls[best], options[best]
        used += o[h[pos[best] + 1]][0] - o[h[pos[best]]][0]
        pos[best] += 1
    ch = [h[p] for h, p in zip(hulls, pos)]
    loss = sum(o[c][1] for o, c in zip(options, ch))
    return Solution(ch, used, loss, min(dual, loss), "lagrangian", lam)


def exact(options: Sequence[Sequence[Option]], budget: int, resolution: int = 20000) -> Solution:
    _check(options, budget)
    unit = max(1, -(-budget // resolution))
    cap = budget // unit
    INF = np.inf
    best = np.zeros(cap + 1)          # best[u] = least loss of the tensors so far within u units
    back = []
    for opts in options:
        h = [i for i in range(len(opts))]
        new = np.full(cap + 1, INF)
        arg = np.full(cap + 1, -1, dtype=np.int32)
        for i in h:
            b, l = opts[i]
            u = -(-b // unit)
            if u > cap:
                continue
            cand = np.full(cap + 1, INF)
            cand[u:] = best[:cap + 1 - u] + l
            better = cand < new
            new[better] = cand[better]
            arg[better] = i
        best = new
        back.append(arg)
    if not np.isfinite(best[cap]):
        raise QtkValueError("no assignment fits the budget once sizes are rounded; raise the budget slightly")
    ch = [0] * len(options)
    u = cap
    for g in range(len(options) - 1, -1, -1):
        i = int(back[g][u])
        ch[g] = i
        u -= -(-options[g][i][0] // unit)
    used = sum(o[c][0] for o, c in zip(options, ch))
    loss = sum(o[c][1] for o, c in zip(options, ch))
    return Solution(ch, used, loss, -math.inf, f"dp (unit {unit} B)")


def solve(options: Sequence[Sequence[Option]], budget: int, resolution: int = 20000,
          dp_limit: Optional[int] = 50_000_000) -> Solution:
    """The better of :func:`lagrangian` and (when small enough) :func:`exact`, with the Lagrangian
    lower bound attached."""
    lag = lagrangian(options, budget)
    work = sum(len(o) for o in options) * resolution
    if dp_limit is not None and work > dp_limit:
        return lag
    dp = exact(options, budget, resolution)
    if dp.loss < lag.loss:
        dp.lower_bound = lag.lower_bound
        dp.lam = lag.lam
        return dp
    return lag
