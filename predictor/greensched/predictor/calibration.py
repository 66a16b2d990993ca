"""Split-conformal calibration of predicted quantiles (conformalised quantile regression).

A predictor's raw p10/p90 come from pinball-loss heads (LoRA) or ``reg:quantileerror`` trees
(XGBoost); neither is guaranteed to cover 80 % of new outcomes.  After fitting, the base class
predicts a held-out *calibration* split that took no part in training or early stopping and
shifts each end separately, per target and DC, in log space (the models work on log targets)::

    lower score  e_i = ln q10_i − ln y_i        upper score  f_i = ln y_i − ln q90_i
    Q_lo = the ⌈(n+1)(1−α)⌉-th smallest e_i,    Q_hi = the same order statistic of f_i
    p10' = q10 · exp(−Q_lo)                     p90' = q90 · exp(Q_hi)

with α = 0.1 for each tail, so that for exchangeable rows P(y < p10') ≤ 0.1 and
P(y > p90') ≤ 0.1 (each within 1/(n+1) above that bound), i.e. [p10', p90'] covers ≥ 80 %.
This is the asymmetric variant of conformalised quantile regression (Romano, Patterson and
Candès, *Conformalized Quantile Regression*, NeurIPS 2019, Sec. 3 and the asymmetric
Theorem 2); the median and the point prediction are left as they are, and p10' ≤ p50 ≤ p90' is
enforced afterwards.  With fewer than :data:`MIN_CALIBRATION_ROWS` rows the offsets are 0
(uncalibrated) and :attr:`QuantileCalibration.calibrated` is False.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from greensched.predictor.dataset import TARGETS

__all__ = ["MIN_CALIBRATION_ROWS", "TAIL", "QuantileCalibration", "conformal_offset"]

#: Share of outcomes allowed below p10 and above p90 (each).
TAIL = 0.1
#: Fewer calibration rows than this leave the quantiles uncalibrated.
MIN_CALIBRATION_ROWS = 20


def conformal_offset(scores: np.ndarray, tail: float = TAIL) -> float:
    """The split-conformal quantile of ``scores``: the ⌈(n+1)(1−tail)⌉-th smallest value
    (the largest score when that rank exceeds n).

    Examples
    --------
    >>> conformal_offset(np.arange(1.0, 10.0))  # n = 9: rank ceil(10 * 0.9) = 9
    9.0
    >>> conformal_offset(np.arange(1.0, 20.0))  # n = 19: rank 18
    18.0
    """
    s = np.sort(np.asarray(scores, dtype=float).ravel())
    n = s.size
    if n == 0:
        return 0.0
    rank = math.ceil((n + 1) * (1.0 - tail))
    return float(s[min(rank, n) - 1])


@dataclass
class QuantileCalibration:
    """Per (target, DC) log-space offsets of p10 (``lo``) and p90 (``hi``).

    Attributes
    ----------
    dcs
        DC order of the offsets.
    lo, hi
        ``{target: [offset per DC]}``; p10' = p10 · exp(−lo), p90' = p90 · exp(hi).
    n_rows
        Calibration rows (jobs) used.
    coverage_before
        ``{target: {dc | "all": share of calibration truths in the raw [p10, p90]}}``.
    """

    dcs: list[str]
    lo: dict[str, list[float]] = field(default_factory=dict)
    hi: dict[str, list[float]] = field(default_factory=dict)
    n_rows: int = 0
    coverage_before: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def calibrated(self) -> bool:
        """Whether offsets were estimated (enough calibration rows)."""
        return self.n_rows >= MIN_CALIBRATION_ROWS

    @classmethod
    def identity(cls, dcs: Sequence[str]) -> QuantileCalibration:
        """No adjustment (zero offsets)."""
        dcs = [str(d) for d in dcs]
        zeros = {t: [0.0] * len(dcs) for t in TARGETS}
        return cls(dcs, {t: list(v) for t, v in zeros.items()},
                   {t: list(v) for t, v in zeros.items()})

    @classmethod
    def fit(cls, arrays: dict[str, np.ndarray], truth: dict[str, np.ndarray],
            dcs: Sequence[str], tail: float = TAIL) -> QuantileCalibration:
        """Offsets from raw predictions ``arrays`` (``{var: (n, D)}``) and outcomes
        ``truth`` (``{target: (n, D)}``) of the calibration rows."""
        dcs = [str(d) for d in dcs]
        n = len(next(iter(truth.values()))) if truth else 0
        if n < MIN_CALIBRATION_ROWS:
            out = cls.identity(dcs)
            out.n_rows = n
            return out
        lo: dict[str, list[float]] = {}
        hi: dict[str, list[float]] = {}
        cover: dict[str, dict[str, float]] = {}
        for t in TARGETS:
            y = np.log(truth[t])
            q10 = np.log(arrays[f"{t}_p10"])
            q90 = np.log(arrays[f"{t}_p90"])
            lo[t] = [conformal_offset(q10[:, j] - y[:, j], tail) for j in range(len(dcs))]
            hi[t] = [conformal_offset(y[:, j] - q90[:, j], tail) for j in range(len(dcs))]
            inside = (y >= q10) & (y <= q90)
            cover[t] = {d: float(inside[:, j].mean()) for j, d in enumerate(dcs)}
            cover[t]["all"] = float(inside.mean())
        return cls(dcs, lo, hi, n, cover)

    def apply(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calibrated copies of the p10/p90 arrays (other variables passed through)."""
        out = dict(arrays)
        for t in TARGETS:
            lo = np.exp(-np.asarray(self.lo[t], dtype=float))[None, :]
            hi = np.exp(np.asarray(self.hi[t], dtype=float))[None, :]
            p50 = arrays[f"{t}_p50"]
            out[f"{t}_p10"] = np.minimum(arrays[f"{t}_p10"] * lo, p50)
            out[f"{t}_p90"] = np.maximum(arrays[f"{t}_p90"] * hi, p50)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (stored in the model's ``config.json``)."""
        return {"method": "split-conformal CQR (asymmetric), log space", "tail": TAIL,
                "dcs": self.dcs, "lo": self.lo, "hi": self.hi, "n_rows": self.n_rows,
                "coverage_before": self.coverage_before}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantileCalibration:
        """Inverse of :meth:`to_dict`."""
        return cls([str(x) for x in d["dcs"]],
                   {t: [float(v) for v in d["lo"][t]] for t in TARGETS},
                   {t: [float(v) for v in d["hi"][t]] for t in TARGETS},
                   int(d.get("n_rows", 0)),
                   {t: {k: float(v) for k, v in c.items()}
                    for t, c in d.get("coverage_before", {}).items()})
