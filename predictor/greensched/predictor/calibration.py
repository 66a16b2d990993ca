"""Split-conformal calibration of predicted quantiles (conformalised quantile regression).

A predictor's raw p10/p90 come from pinball-loss heads (LoRA), ``reg:quantileerror`` trees or
validation-residual quantiles around a squared-error point model (XGBoost); none is guaranteed
to cover 80 % of new outcomes.  After fitting, the base class predicts a held-out
*calibration* split that took no part in training or early stopping and moves each end
separately, per target, in log space (the models work on log targets).  Two conformity scores
(:class:`CalibrationScore`):

``"pooled-scaled"`` (default)
    Scores normalised by the raw half-widths and pooled over all DCs::

        s_lo = ln q50 − ln q10,   s_hi = ln q90 − ln q50     (each ≥ a floor, see below)
        e_i = (ln q10_i − ln y_i) / s_lo_i,   f_i = (ln y_i − ln q90_i) / s_hi_i
        Q_lo, Q_hi = the ⌈(N+1)(1−α)⌉-th smallest e_i, f_i over all N (job, DC) scores
        p10' = q10 · exp(−Q_lo · s_lo),   p90' = q90 · exp(Q_hi · s_hi)

    One offset per target, so the calibration uses D times as many scores as a per-DC one
    (fewer calibration jobs suffice), and the interval still adapts to each row through its
    raw width: a DC, an hour or a DC never seen in training whose raw interval is wider gets
    a wider calibrated one (normalised conformity scores, Lei, G'Sell, Rinaldo, Tibshirani and
    Wasserman, *Distribution-Free Predictive Inference for Regression*, JASA 2018, Sec. 5.2).
``"per-dc"``
    Additive log-space offsets estimated per DC (the layout of the first calibrated models)::

        e_i = ln q10_i − ln y_i,   f_i = ln y_i − ln q90_i
        Q_lo, Q_hi per DC;  p10' = q10 · exp(−Q_lo),   p90' = q90 · exp(Q_hi)

With α = 0.1 for each tail and exchangeable rows, P(y < p10') ≤ 0.1 and P(y > p90') ≤ 0.1
(each within 1/(n+1) above that bound), i.e. [p10', p90'] covers ≥ 80 %: the asymmetric
variant of conformalised quantile regression (Romano, Patterson and Candès, *Conformalized
Quantile Regression*, NeurIPS 2019, Sec. 3 and Theorem 2).  The ⌈(n+1)(1−α)⌉-th order
statistic, not the empirical (1−α) quantile, is what makes the bound hold in finite samples
(:func:`conformal_offset`).  For the pooled score the D scores of one job are not
independent (their errors are strongly correlated), so the guarantee is per job and the
effective calibration size lies between the number of jobs and N.

The median and the point prediction are left as they are, and p10' ≤ p50 ≤ p90' is enforced
afterwards.  Half-widths below :data:`SCALE_FLOOR_SHARE` of their median over the calibration
rows are raised to that floor (stored as ``scale_floor``), so that a collapsed raw interval
cannot produce an unbounded score; when the median half-width itself is ~0 (a model without
quantiles) the scaled score falls back to additive offsets.  With fewer than
:data:`MIN_CALIBRATION_ROWS` rows the offsets are 0 (uncalibrated) and
:attr:`QuantileCalibration.calibrated` is False.

Which rows (:class:`CalibrationRows`, ``PredictorConfig.calibrate_on``)
    ``"validation+calibration"`` (default) estimates the offsets on the validation *and* the
    calibration split: twice the rows of the calibration split alone, for free (no refit).
    The order statistic of n exchangeable scores covers with sd ≈ sqrt(α(1−α)/n) per tail,
    and the D scores of one job are strongly correlated (errors at the 9 DCs of the default
    day correlate 0.83–0.87), so the effective n is close to the number of jobs: 150
    calibration jobs of a 1,500-job fit gave coverage 0.80 ± 0.03 (sd) over seeds, too loose
    for a ±0.03 target.  What the validation rows give up: they chose the early-stopping
    round/epoch (one scalar, picked on their loss) and, for XGBoost's ``"point"`` layout,
    the raw residual-quantile scale, so their scores are slightly optimistic; training itself
    never sees either split, and early stopping still sees only the validation split.  The
    measured cost of that reuse is in ``reports/predictor_calibration.md``
    (``bench/bench_calibration.py``).  Cross-conformal / CV+ (Barber, Candès, Ramdas and
    Tibshirani, *Predictive inference with the jackknife+*, Ann. Statist. 2021) would use
    every row honestly but needs K fits and K models at prediction time: cheap for XGBoost,
    prohibitive for the LoRA model on a CPU, and the predictors share one calibration path.
    ``"calibration"`` keeps the strict split-conformal guarantee (calibration split only).
    ``"out-of-fold"`` (:func:`out_of_fold_calibration`) is the K-fold compromise: the
    calibration split joins the training rows, K extra models (each trained without one fold)
    predict their held-out fold, and the offsets are estimated on those out-of-fold scores of
    *every* training row, then applied to the one model trained on all of them (no K models at
    prediction time).  Its scores come from models trained on (K−1)/K of the rows, so it is
    slightly conservative, and it carries no finite-sample guarantee (cross-conformal's is
    1 − 2α); it costs K more fits, which is seconds for XGBoost and hours for the LoRA model
    on a CPU.

Test-set sampling error (:func:`coverage_standard_error`)
    A coverage measured on a finite test set is itself an estimate: with n test jobs a
    perfectly calibrated model's per-DC coverage has sd sqrt(0.8 · 0.2 / n) (0.023 at 300
    jobs, 0.009 at 2,000), and its coverage pooled over DCs lies between that and
    sqrt(0.16 / (n · D)), depending on how correlated a job's DCs are.
    :func:`coverage_standard_error` estimates it from the test rows themselves, treating a
    job (its D DCs) as one cluster.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from greensched.errors import GreenSchedError
from greensched.predictor.dataset import TARGETS, dc_column

__all__ = ["DEFAULT_ROWS", "DEFAULT_SCORE", "MIN_CALIBRATION_ROWS", "NOMINAL_COVERAGE",
           "SCALE_FLOOR_SHARE", "TAIL", "CalibrationRows", "CalibrationScore",
           "QuantileCalibration", "calibration_rows", "conformal_offset",
           "coverage_standard_error", "ideal_coverage_sd", "out_of_fold_calibration",
           "truth_arrays"]

log = logging.getLogger(__name__)

#: Share of outcomes allowed below p10 and above p90 (each).
TAIL = 0.1
#: Fewer calibration rows than this leave the quantiles uncalibrated.
MIN_CALIBRATION_ROWS = 20
#: Half-widths are floored at this share of their median (scaled score).
SCALE_FLOOR_SHARE = 0.05
#: A median half-width below this (log space) means "no raw interval": additive offsets.
_NO_WIDTH = 1e-9


_Choice = TypeVar("_Choice", bound=StrEnum)


def _parse_choice(cls: type[_Choice], value: str | StrEnum, what: str) -> _Choice:
    """Member of ``cls`` named ``value``, or an error naming ``what`` and the choices."""
    try:
        return cls(str(value))
    except ValueError:
        raise GreenSchedError(f"{what} must be one of "
                              f"{', '.join(s.value for s in cls)}, got {value!r}") from None


class CalibrationScore(StrEnum):
    """Conformity score of the calibration (module docstring)."""

    POOLED_SCALED = "pooled-scaled"
    PER_DC = "per-dc"

    @classmethod
    def parse(cls, value: str | CalibrationScore) -> CalibrationScore:
        """The score named ``value``; :class:`~greensched.errors.GreenSchedError` otherwise."""
        return _parse_choice(cls, value, "calibration score")


DEFAULT_SCORE = CalibrationScore.POOLED_SCALED
#: Nominal p10–p90 coverage.
NOMINAL_COVERAGE = 1.0 - 2 * TAIL


class CalibrationRows(StrEnum):
    """Held-out rows the offsets are estimated on (module docstring, "Which rows")."""

    CALIBRATION = "calibration"
    VALIDATION_AND_CALIBRATION = "validation+calibration"
    OUT_OF_FOLD = "out-of-fold"

    @classmethod
    def parse(cls, value: str | CalibrationRows) -> CalibrationRows:
        """The choice named ``value``; :class:`~greensched.errors.GreenSchedError` otherwise."""
        return _parse_choice(cls, value, "calibrate_on")


DEFAULT_ROWS = CalibrationRows.VALIDATION_AND_CALIBRATION


def calibration_rows(val: pd.DataFrame | None, cal: pd.DataFrame | None,
                     rows: CalibrationRows | str = DEFAULT_ROWS) -> pd.DataFrame | None:
    """The rows to calibrate on: the calibration split, plus the validation split for
    ``"validation+calibration"``; ``None`` without a calibration split (uncalibrated)."""
    if cal is None:
        return None
    if CalibrationRows.parse(rows) is CalibrationRows.OUT_OF_FOLD:
        raise GreenSchedError("calibrate_on 'out-of-fold' has no calibration split: use "
                              "out_of_fold_calibration")
    if CalibrationRows.parse(rows) is CalibrationRows.CALIBRATION or val is None:
        return cal
    return pd.concat([val, cal], ignore_index=True)


def out_of_fold_calibration(
        rows: pd.DataFrame, dcs: Sequence[str], fit_predict: Any, *, folds: int = 5,
        seed: int = 0, what: str = "model") -> QuantileCalibration:
    """Offsets from the out-of-fold raw predictions of ``rows`` (``"out-of-fold"`` in the
    module docstring).

    ``fit_predict(rest, held)`` trains a fresh model on the rows ``rest`` and returns its raw
    prediction arrays for ``held``; it is called once per fold (rows are assigned to
    ``folds`` folds by a permutation seeded with ``seed``); each fold logs a line naming
    ``what``.
    """
    if folds < 2 or len(rows) < folds:
        raise GreenSchedError(f"calibration_folds must be >= 2 and at most the training rows "
                              f"({len(rows)}), got {folds!r}")
    which = np.random.default_rng(seed).permutation(len(rows)) % folds
    preds: list[dict[str, np.ndarray]] = []
    truths: list[dict[str, np.ndarray]] = []
    for k in range(folds):
        held = rows[which == k].reset_index(drop=True)
        preds.append(fit_predict(rows[which != k].reset_index(drop=True), held))
        truths.append(truth_arrays(held, dcs))
        log.info("%s out-of-fold calibration: fold %d of %d fitted", what, k + 1, folds)
    arrays = {v: np.concatenate([p[v] for p in preds]) for v in preds[0]}
    truth = {t: np.concatenate([x[t] for x in truths]) for t in TARGETS}
    return QuantileCalibration.fit(arrays, truth, dcs)


def truth_arrays(rows: pd.DataFrame, dcs: Sequence[str]) -> dict[str, np.ndarray]:
    """``{target: (n, D)}`` outcomes of dataset rows, DCs in ``dcs`` order."""
    return {t: np.column_stack([rows[dc_column(t, d)].to_numpy(dtype=float) for d in dcs])
            for t in TARGETS}


def coverage_standard_error(inside: np.ndarray) -> float:
    """Standard error of a coverage measured on a test set, from the set itself.

    ``inside`` is ``(n_jobs, D)``: whether each (job, DC) truth lies in its interval.  The
    coverage is the mean over jobs of each job's share c_j; jobs are independent, their DCs
    need not be, so the plug-in standard error is ``sd(c_j) / sqrt(n_jobs)`` (population sd).
    With one column it is the binomial ``sqrt(p (1 − p) / n)``.

    Examples
    --------
    >>> round(coverage_standard_error(np.array([[1], [1], [1], [0]], dtype=bool)), 4)
    0.2165
    """
    a = np.asarray(inside, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    n = a.shape[0]
    if n == 0:
        return math.nan
    return float(a.mean(axis=1).std() / math.sqrt(n))


def ideal_coverage_sd(n_jobs: int, level: float = NOMINAL_COVERAGE) -> float:
    """Sampling sd of one DC's coverage for a perfectly calibrated model on ``n_jobs`` test
    jobs: ``sqrt(level (1 − level) / n_jobs)`` (0.023 at 300 jobs)."""
    return math.sqrt(level * (1.0 - level) / n_jobs) if n_jobs > 0 else math.nan


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
    rank = math.ceil((n + 1) * (1.0 - tail) - 1e-9)  # 1e-9: (n+1)(1-tail) may be 17.999...
    return float(s[min(rank, n) - 1])


def _half_widths(arrays: dict[str, np.ndarray], t: str) -> tuple[np.ndarray, np.ndarray]:
    ln50 = np.log(arrays[f"{t}_p50"])
    return ln50 - np.log(arrays[f"{t}_p10"]), np.log(arrays[f"{t}_p90"]) - ln50


@dataclass
class QuantileCalibration:
    """Per (target, DC) log-space offsets of p10 (``lo``) and p90 (``hi``).

    Attributes
    ----------
    dcs
        DC order of the offsets.
    lo, hi
        ``{target: [offset per DC]}`` (equal over DCs for the pooled score); ``"per-dc"``:
        p10' = p10 · exp(−lo), p90' = p90 · exp(hi); ``"pooled-scaled"``: the offsets
        multiply each row's half-widths (module docstring).
    n_rows
        Calibration rows (jobs) used.
    coverage_before
        ``{target: {dc | "all": share of calibration truths in the raw [p10, p90]}}``.
    score
        The conformity score (:class:`CalibrationScore`).
    scale_floor
        ``{target: [floor of the lower, upper half-width]}`` (scaled score; 0 = additive).
    """

    dcs: list[str]
    lo: dict[str, list[float]] = field(default_factory=dict)
    hi: dict[str, list[float]] = field(default_factory=dict)
    n_rows: int = 0
    coverage_before: dict[str, dict[str, float]] = field(default_factory=dict)
    score: CalibrationScore = CalibrationScore.PER_DC
    scale_floor: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.score = CalibrationScore.parse(self.score)

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
            dcs: Sequence[str], tail: float = TAIL, *,
            score: CalibrationScore | str = DEFAULT_SCORE) -> QuantileCalibration:
        """Offsets from raw predictions ``arrays`` (``{var: (n, D)}``) and outcomes
        ``truth`` (``{target: (n, D)}``) of the calibration rows."""
        dcs = [str(d) for d in dcs]
        score = CalibrationScore.parse(score)
        n = len(next(iter(truth.values()))) if truth else 0
        if n < MIN_CALIBRATION_ROWS:
            out = cls.identity(dcs)
            out.n_rows = n
            return out
        D = len(dcs)
        lo: dict[str, list[float]] = {}
        hi: dict[str, list[float]] = {}
        floors: dict[str, list[float]] = {}
        cover: dict[str, dict[str, float]] = {}
        for t in TARGETS:
            y = np.log(truth[t])
            q10 = np.log(arrays[f"{t}_p10"])
            q90 = np.log(arrays[f"{t}_p90"])
            if score is CalibrationScore.PER_DC:
                lo[t] = [conformal_offset(q10[:, j] - y[:, j], tail) for j in range(D)]
                hi[t] = [conformal_offset(y[:, j] - q90[:, j], tail) for j in range(D)]
            else:
                s_lo, s_hi = _half_widths(arrays, t)
                floors[t] = [_floor(s_lo), _floor(s_hi)]
                e = (q10 - y) / _scale(s_lo, floors[t][0])
                f = (y - q90) / _scale(s_hi, floors[t][1])
                lo[t] = [conformal_offset(e, tail)] * D
                hi[t] = [conformal_offset(f, tail)] * D
            inside = (y >= q10) & (y <= q90)
            cover[t] = {d: float(inside[:, j].mean()) for j, d in enumerate(dcs)}
            cover[t]["all"] = float(inside.mean())
        return cls(dcs, lo, hi, n, cover, score, floors)

    def apply(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calibrated copies of the p10/p90 arrays (other variables passed through)."""
        out = dict(arrays)
        for t in TARGETS:
            lo = np.asarray(self.lo[t], dtype=float)[None, :]
            hi = np.asarray(self.hi[t], dtype=float)[None, :]
            if self.score is CalibrationScore.POOLED_SCALED and t in self.scale_floor:
                s_lo, s_hi = _half_widths(arrays, t)
                lo = lo * _scale(s_lo, self.scale_floor[t][0])
                hi = hi * _scale(s_hi, self.scale_floor[t][1])
            p50 = arrays[f"{t}_p50"]
            out[f"{t}_p10"] = np.minimum(arrays[f"{t}_p10"] * np.exp(-lo), p50)
            out[f"{t}_p90"] = np.maximum(arrays[f"{t}_p90"] * np.exp(hi), p50)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (stored in the model's ``config.json``)."""
        return {"method": "split-conformal CQR (asymmetric), log space", "tail": TAIL,
                "score": self.score.value, "scale_floor": self.scale_floor,
                "dcs": self.dcs, "lo": self.lo, "hi": self.hi, "n_rows": self.n_rows,
                "coverage_before": self.coverage_before}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantileCalibration:
        """Inverse of :meth:`to_dict` (a file without ``score`` holds per-DC offsets)."""
        return cls([str(x) for x in d["dcs"]],
                   {t: [float(v) for v in d["lo"][t]] for t in TARGETS},
                   {t: [float(v) for v in d["hi"][t]] for t in TARGETS},
                   int(d.get("n_rows", 0)),
                   {t: {k: float(v) for k, v in c.items()}
                    for t, c in d.get("coverage_before", {}).items()},
                   CalibrationScore.parse(d.get("score", CalibrationScore.PER_DC.value)),
                   {t: [float(v) for v in f] for t, f in d.get("scale_floor", {}).items()})


def _floor(width: np.ndarray) -> float:
    """The half-width floor: a share of the median (0: no usable width, additive offsets)."""
    med = float(np.median(width))
    return SCALE_FLOOR_SHARE * med if med > _NO_WIDTH else 0.0


def _scale(width: np.ndarray, floor: float) -> np.ndarray:
    """Half-widths raised to ``floor``; all ones when ``floor`` is 0 (additive offsets)."""
    if floor <= 0.0:
        return np.ones_like(width)
    return np.maximum(width, floor)
