"""Drift detection on stored outcomes: is the predictor still as good as when it was validated,
and do recent jobs still look like the ones it was trained on?

Two checks, each with a :class:`Verdict`:

**Prediction error per target** (``energy_kwh``, ``service_s``). Over the recent window, with
``p`` the prediction (``pred_<target>``) and ``m`` the measurement (``<target>``):

* ``MAPE = mean(|p - m| / m)`` (a fraction: 0.12 = 12 %),
* ``RMSE(log) = sqrt(mean(ln(p / m)^2))`` - scale-free, symmetric in over/under-prediction,
* ``bias(log) = mean(ln(p / m))`` (> 0: over-prediction; ``exp(bias)`` is the typical ratio).

They are compared with the model's validation error (a number = validation MAPE for both
targets, a mapping, or a metrics JSON, see :func:`load_validation_metrics`); when none is given
and the reference sample carries predictions and measurements, the reference's own error is the
baseline. ``ratio = max(recent / baseline)`` over the metrics both sides have;
``ratio < error_watch_ratio`` (default 1.25) is OK, ``< error_drift_ratio`` (default 1.5) WATCH,
above DRIFT. Fewer than ``min_samples`` outcomes give INSUFFICIENT_DATA.

**Input drift per feature** - the population stability index between a reference sample
(e.g. the training jobs) and the recent window::

    PSI = sum_b (a_b - e_b) * ln(a_b / e_b)

with ``e_b``/``a_b`` the reference/recent share of bin ``b`` (shares floored at ``1e-4`` so that
an empty bin does not give an infinite PSI). Numeric features (``input_tokens``,
``output_tokens``) use reference-quantile bins; ``query_type`` and ``area`` use their categories
(a category unseen in the reference counts fully); ``hour`` is taken modulo 24 and grouped into
equal blocks of hours, and is judged only when the recent window spans at least 24 hourly slots
(a window of the last few hours always differs in time of day from a full-day reference).

The thresholds follow the credit-scoring convention (N. Siddiqi, *Credit Risk Scorecards*,
Wiley 2006; studied in B. Yurdakul, *Statistical Properties of Population Stability Index*,
PhD thesis, Western Michigan University 2018): PSI < 0.1 no significant shift (OK),
0.1-0.25 moderate shift (WATCH), >= 0.25 significant shift (DRIFT).

Sampling noise: with no shift at all, PSI is approximately ``(1/n + 1/m) * chi2(B - 1)``
(Yurdakul 2018), i.e. about ``(B - 1) (1/n + 1/m)`` for ``B`` bins and samples of ``n`` and
``m``. Ten bins on 100 recent jobs would thus read ~0.09 from noise alone; the number of
numeric bins and hour blocks is therefore limited to about one per ``rows_per_bin`` (50) recent
outcomes, and each feature reports its noise level (``noise_psi``) beside the PSI.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from greensched.errors import GreenSchedError, LocatedError

__all__ = [
    "FEATURES",
    "TARGETS",
    "DriftReport",
    "DriftThresholds",
    "ErrorMetrics",
    "FeatureDrift",
    "TargetDrift",
    "Verdict",
    "detect_drift",
    "error_metrics",
    "load_validation_metrics",
    "psi",
]

#: Predicted quantities checked for error drift (prediction column: ``pred_<target>``).
TARGETS: tuple[str, ...] = ("energy_kwh", "service_s")
#: Input features checked for population drift, with their kind.
FEATURES: dict[str, str] = {
    "input_tokens": "numeric",
    "output_tokens": "numeric",
    "hour": "hour",
    "query_type": "categorical",
    "area": "categorical",
}
_METRICS = ("mape", "rmse_log")
_METRIC_ALIASES = {"mape": "mape", "rmse_log": "rmse_log", "rmsle": "rmse_log",
                   "log_rmse": "rmse_log", "rmse_of_log": "rmse_log"}
_PSI_FLOOR = 1e-4
_HOUR_BLOCKS = (24, 12, 8, 6, 4, 3, 2)


class Verdict(StrEnum):
    """Outcome of a drift check, in increasing order of concern (INSUFFICIENT_DATA aside)."""

    OK = "ok"
    WATCH = "watch"
    DRIFT = "drift"
    INSUFFICIENT_DATA = "insufficient_data"

    @property
    def severity(self) -> int:
        """0 OK, 1 WATCH, 2 DRIFT; -1 for INSUFFICIENT_DATA."""
        return {"ok": 0, "watch": 1, "drift": 2}.get(self.value, -1)

    @property
    def style(self) -> str:
        """rich style used to show the verdict."""
        return {"ok": "green", "watch": "yellow", "drift": "bold red"}.get(self.value, "dim")


@dataclass(frozen=True)
class DriftThresholds:
    """Thresholds of the drift checks.

    Parameters
    ----------
    psi_watch, psi_drift
        PSI from which a feature is WATCH / DRIFT (convention: 0.1 / 0.25).
    error_watch_ratio, error_drift_ratio
        Recent-to-validation error ratio from which a target is WATCH / DRIFT.
    min_samples
        Fewest recent outcomes (and reference rows) for a verdict.
    max_bins
        Most bins for a numeric feature (deciles by default).
    rows_per_bin
        Recent outcomes per bin used to size numeric bins and hour blocks (noise control).
    """

    psi_watch: float = 0.1
    psi_drift: float = 0.25
    error_watch_ratio: float = 1.25
    error_drift_ratio: float = 1.5
    min_samples: int = 100
    max_bins: int = 10
    rows_per_bin: int = 50

    def __post_init__(self) -> None:
        if not 0 < self.psi_watch < self.psi_drift:
            raise GreenSchedError(f"need 0 < psi_watch < psi_drift, got {self.psi_watch!r}, "
                                  f"{self.psi_drift!r}")
        if not 1.0 <= self.error_watch_ratio < self.error_drift_ratio:
            raise GreenSchedError("need 1 <= error_watch_ratio < error_drift_ratio, got "
                                  f"{self.error_watch_ratio!r}, {self.error_drift_ratio!r}")
        if self.min_samples < 2:
            raise GreenSchedError(f"min_samples must be >= 2, got {self.min_samples!r}")
        if self.max_bins < 2 or self.rows_per_bin < 1:
            raise GreenSchedError(f"need max_bins >= 2 and rows_per_bin >= 1, got "
                                  f"{self.max_bins!r}, {self.rows_per_bin!r}")


# ----------------------------------------------------------------------------------------------
# Prediction error
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ErrorMetrics:
    """Relative error of predictions against measurements (see the module docstring)."""

    n: int
    mape: float
    rmse_log: float
    bias_log: float


def error_metrics(predicted: Sequence[float] | np.ndarray | pd.Series,
                  measured: Sequence[float] | np.ndarray | pd.Series) -> ErrorMetrics:
    """MAPE, RMSE of the log ratio and mean log ratio over pairs with both values finite > 0."""
    p = np.asarray(pd.to_numeric(pd.Series(np.asarray(predicted, dtype=object)),
                                 errors="coerce"), dtype=float)
    m = np.asarray(pd.to_numeric(pd.Series(np.asarray(measured, dtype=object)),
                                 errors="coerce"), dtype=float)
    if p.shape != m.shape:
        raise GreenSchedError(f"predicted and measured differ in length: {p.shape} vs {m.shape}")
    ok = np.isfinite(p) & np.isfinite(m) & (p > 0) & (m > 0)
    p, m = p[ok], m[ok]
    if len(p) == 0:
        return ErrorMetrics(0, math.nan, math.nan, math.nan)
    log_ratio = np.log(p / m)
    return ErrorMetrics(
        n=len(p),
        mape=float(np.mean(np.abs(p - m) / m)),
        rmse_log=float(np.sqrt(np.mean(log_ratio**2))),
        bias_log=float(np.mean(log_ratio)),
    )


def _metric_dict(obj: Mapping[str, Any], where: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in obj.items():
        name = _METRIC_ALIASES.get(str(k).lower())
        if name is None or (isinstance(v, float) and math.isnan(v)):
            continue  # another metric, or one the validation could not compute
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                or v <= 0:
            raise GreenSchedError(f"{where}: {k!r} must be a positive number, got {v!r}")
        out[name] = float(v)
    return out


def _normalise_validation(obj: Any, where: str = "validation error") -> dict[str, dict[str, float]]:
    """Bring the accepted validation-error forms to ``{target: {metric: value}}``."""
    if obj is None:
        return {}
    if isinstance(obj, bool):
        raise GreenSchedError(f"{where}: expected a number or a mapping, got {obj!r}")
    if isinstance(obj, int | float):
        if not math.isfinite(obj) or obj <= 0:
            raise GreenSchedError(f"{where}: a validation MAPE must be a positive number, "
                                  f"got {obj!r}")
        return {t: {"mape": float(obj)} for t in TARGETS}
    if isinstance(obj, str | Path):
        return load_validation_metrics(obj)
    if not isinstance(obj, Mapping):
        raise GreenSchedError(f"{where}: expected a number, a mapping or a JSON path, "
                              f"got {obj!r}")
    for key in ("validation", "val", "metrics", "valid"):
        if isinstance(obj.get(key), Mapping):
            return _normalise_validation(obj[key], where)
    out: dict[str, dict[str, float]] = {}
    for t in TARGETS:
        v = obj.get(t)
        if isinstance(v, Mapping):
            got = _metric_dict(v, f"{where}, {t}")
        elif v is not None:
            got = _metric_dict({"mape": v}, f"{where}, {t}")
        else:
            got = {}
            for prefix in (t + "_", t.split("_")[0] + "_"):  # energy_kwh_mape, energy_mape
                got = got or _metric_dict({str(k)[len(prefix):]: val for k, val in obj.items()
                                           if str(k).startswith(prefix)}, where)
        if got:
            out[t] = got
    if not out:
        common = _metric_dict(obj, where)
        if common:
            out = {t: dict(common) for t in TARGETS}
    return out


def load_validation_metrics(path: str | Path) -> dict[str, dict[str, float]]:
    """Read a validation-metrics JSON into ``{target: {"mape": .., "rmse_log": ..}}``.

    Accepted layouts (optionally nested under ``"validation"``, ``"val"`` or ``"metrics"``, so
    the ``metrics.json`` beside a saved predictor is read as it is)::

        {"energy_kwh": {"mape": 0.12, "rmse_log": 0.15}, "service_s": {"mape": 0.2}}
        {"energy_kwh_mape": 0.12, "service_s_rmse_log": 0.25}   # or energy_mape, service_mape
        {"mape": 0.12}                        # the same for every target

    ``rmsle`` and ``log_rmse`` are read as ``rmse_log``; MAPE is a fraction (0.12 = 12 %).
    """
    p = Path(path)
    if not p.is_file():
        raise LocatedError("validation metrics file not found", file=p)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise LocatedError(f"not valid JSON ({exc})", file=p) from exc
    try:
        out = _normalise_validation(obj, str(p))
    except GreenSchedError as exc:
        raise LocatedError(str(exc).removeprefix(f"{p}: "), file=p) from exc
    if not out:
        raise LocatedError('no validation error found; expected e.g. {"energy_kwh": {"mape": '
                           '0.12, "rmse_log": 0.15}, "service_s": {"mape": 0.2}}', file=p)
    return out


@dataclass(frozen=True)
class TargetDrift:
    """Error drift of one predicted target over the recent window."""

    target: str
    n: int
    mape: float
    rmse_log: float
    bias_log: float
    baseline_mape: float | None
    baseline_rmse_log: float | None
    baseline_source: str | None
    ratio: float | None
    verdict: Verdict
    note: str = ""


def _target_drift(target: str, recent: pd.DataFrame, baseline: Mapping[str, float],
                  source: str | None, th: DriftThresholds) -> TargetDrift:
    pred_col = f"pred_{target}"
    if target not in recent.columns or pred_col not in recent.columns:
        return TargetDrift(target, 0, math.nan, math.nan, math.nan, None, None, source, None,
                           Verdict.INSUFFICIENT_DATA, f"columns {pred_col}/{target} absent")
    em = error_metrics(recent[pred_col], recent[target])
    b_mape, b_rmse = baseline.get("mape"), baseline.get("rmse_log")
    base = TargetDrift(target=target, n=em.n, mape=em.mape, rmse_log=em.rmse_log,
                       bias_log=em.bias_log, baseline_mape=b_mape, baseline_rmse_log=b_rmse,
                       baseline_source=source, ratio=None, verdict=Verdict.INSUFFICIENT_DATA)
    if em.n < th.min_samples:
        return replace(base, note=f"{em.n} outcomes < min_samples {th.min_samples}")
    ratios = [v / b for v, b in ((em.mape, b_mape), (em.rmse_log, b_rmse)) if b]
    if not ratios:
        return replace(base, note="no validation error to compare with")
    ratio = max(ratios)
    if ratio >= th.error_drift_ratio:
        verdict = Verdict.DRIFT
    elif ratio >= th.error_watch_ratio:
        verdict = Verdict.WATCH
    else:
        verdict = Verdict.OK
    note = ""
    if verdict is not Verdict.OK and abs(em.bias_log) > 0.5 * em.rmse_log:
        note = ("mostly over-predicting" if em.bias_log > 0 else "mostly under-predicting") + \
            f" (typical ratio {math.exp(em.bias_log):.2f})"
    return replace(base, ratio=ratio, verdict=verdict, note=note)


# ----------------------------------------------------------------------------------------------
# Population stability index
# ----------------------------------------------------------------------------------------------

def _psi_from_shares(e: np.ndarray, a: np.ndarray) -> float:
    e = np.maximum(e, _PSI_FLOOR)
    a = np.maximum(a, _PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def _shares(codes: np.ndarray, k: int) -> np.ndarray:
    counts = np.bincount(codes, minlength=k).astype(float)
    return counts / max(counts.sum(), 1.0)


def _numeric_bins(reference: np.ndarray, recent: np.ndarray,
                  bins: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Codes of both samples in reference-quantile bins (ties merge bins), and bin labels."""
    qs = np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1])
    inner = np.unique(qs)
    labels = []
    lo = "-inf"
    for edge in inner:
        labels.append(f"({lo}, {edge:g}]")
        lo = f"{edge:g}"
    labels.append(f"({lo}, inf)")
    return (np.searchsorted(inner, reference, side="left"),
            np.searchsorted(inner, recent, side="left"), labels)


def _categorical_codes(reference: Sequence[Any], recent: Sequence[Any]
                       ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    cats = sorted({str(v) for v in reference} | {str(v) for v in recent})
    index = {c: i for i, c in enumerate(cats)}
    return (np.array([index[str(v)] for v in reference], dtype=np.int64),
            np.array([index[str(v)] for v in recent], dtype=np.int64), cats)


def psi(reference: Sequence[Any] | np.ndarray | pd.Series,
        recent: Sequence[Any] | np.ndarray | pd.Series, *,
        categorical: bool = False, bins: int = 10) -> float:
    """Population stability index of ``recent`` against ``reference``.

    Numeric samples are binned at the reference's quantiles (``bins`` of them; ties merge bins);
    categorical ones by value. Shares are floored at 1e-4. Identical samples give 0.
    """
    ref = np.asarray(reference, dtype=object if categorical else float)
    rec = np.asarray(recent, dtype=object if categorical else float)
    if len(ref) == 0 or len(rec) == 0:
        raise GreenSchedError("PSI needs two non-empty samples")
    if categorical:
        ce, ca, labels = _categorical_codes(list(ref), list(rec))
    else:
        if not (np.isfinite(ref).all() and np.isfinite(rec).all()):
            raise GreenSchedError("PSI of a numeric feature needs finite values")
        ce, ca, labels = _numeric_bins(ref, rec, bins)
    k = len(labels)
    return _psi_from_shares(_shares(ce, k), _shares(ca, k))


@dataclass(frozen=True)
class FeatureDrift:
    """Input drift of one feature: PSI of the recent window against the reference sample."""

    feature: str
    kind: str
    psi: float
    n_reference: int
    n_recent: int
    bins: int
    noise_psi: float
    verdict: Verdict
    largest_shift: str = ""
    note: str = ""


def _clean(values: pd.Series, kind: str) -> pd.Series:
    if kind == "categorical":
        v = values[values.notna()].astype(str)
        return v[v.str.strip() != ""]
    num = pd.to_numeric(values, errors="coerce")
    return num[np.isfinite(num.to_numpy(dtype=float, na_value=np.nan))].astype(float)


def _feature_column(df: pd.DataFrame, name: str) -> pd.Series | None:
    """The feature's column; ``hour`` falls back to ``arrival_s // 3600``."""
    if name in df.columns:
        return df[name]
    if name == "hour" and "arrival_s" in df.columns:
        return np.floor(pd.to_numeric(df["arrival_s"], errors="coerce") / 3600.0)
    return None


def _feature_drift(name: str, kind: str, reference: pd.DataFrame | None, recent: pd.DataFrame,
                   th: DriftThresholds) -> FeatureDrift:
    def insufficient(note: str, n_ref: int = 0, n_rec: int = 0) -> FeatureDrift:
        return FeatureDrift(name, kind, math.nan, n_ref, n_rec, 0, math.nan,
                            Verdict.INSUFFICIENT_DATA, note=note)

    if reference is None:
        return insufficient("no reference sample")
    ref_col, rec_col = _feature_column(reference, name), _feature_column(recent, name)
    if ref_col is None or rec_col is None:
        side = "reference" if ref_col is None else "recent window"
        return insufficient(f"column absent from the {side}")
    ref = _clean(ref_col, kind)
    rec = _clean(rec_col, kind)
    if len(ref) < th.min_samples or len(rec) < th.min_samples:
        return insufficient(f"{len(ref)} reference / {len(rec)} recent values; need "
                            f"{th.min_samples} each", len(ref), len(rec))
    if kind == "hour":
        span = int(rec.max() - rec.min()) + 1
        if span < 24:
            return insufficient(f"the window spans {span} h of arrivals (< 24 h): its "
                                "time-of-day mix is not comparable", len(ref), len(rec))
    budget = max(2, min(len(rec), len(ref)) // th.rows_per_bin)
    if kind == "numeric":
        ce, ca, labels = _numeric_bins(ref.to_numpy(), rec.to_numpy(), min(th.max_bins, budget))
    elif kind == "hour":
        blocks = next((b for b in _HOUR_BLOCKS if b <= budget), 2)
        width = 24 // blocks
        hod_ref = np.mod(ref.to_numpy().astype(np.int64), 24) // width
        hod_rec = np.mod(rec.to_numpy().astype(np.int64), 24) // width
        ce, ca = hod_ref, hod_rec
        labels = [f"h{b * width:02d}-{(b + 1) * width - 1:02d}" for b in range(blocks)]
    else:
        ce, ca, labels = _categorical_codes(list(ref), list(rec))
    k = len(labels)
    e, a = _shares(ce, k), _shares(ca, k)
    value = _psi_from_shares(e, a)
    noise = (k - 1) * (1.0 / len(ref) + 1.0 / len(rec))
    if value >= th.psi_drift:
        verdict = Verdict.DRIFT
    elif value >= th.psi_watch:
        verdict = Verdict.WATCH
    else:
        verdict = Verdict.OK
    j = int(np.argmax(np.abs(a - e)))
    shift = f"{labels[j]}: {e[j]:.0%} -> {a[j]:.0%}"
    note = "window too small for a reliable PSI" if noise >= th.psi_watch else ""
    return FeatureDrift(name, kind, value, len(ref), len(rec), k, noise, verdict, shift, note)


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------

def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.1%}" if pct else f"{x:.3f}"


@dataclass(frozen=True)
class DriftReport:
    """Result of :func:`detect_drift`: per-target error drift, per-feature PSI and a verdict.

    ``verdict`` is INSUFFICIENT_DATA when the recent window has fewer than ``min_samples``
    outcomes, else the most severe verdict among the checks that could be made
    (INSUFFICIENT_DATA if none could).
    """

    verdict: Verdict
    n_recent: int
    n_reference: int
    thresholds: DriftThresholds
    targets: tuple[TargetDrift, ...]
    features: tuple[FeatureDrift, ...]
    model_versions: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def is_ok(self) -> bool:
        """True when the verdict is OK."""
        return self.verdict is Verdict.OK

    def target(self, name: str) -> TargetDrift:
        """The error check of target ``name``."""
        for t in self.targets:
            if t.target == name:
                return t
        raise KeyError(name)

    def feature(self, name: str) -> FeatureDrift:
        """The PSI check of feature ``name``."""
        for f in self.features:
            if f.feature == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (verdicts as their string values, NaN as None)."""
        def clean(obj: Any) -> Any:
            if isinstance(obj, Verdict):
                return obj.value
            if isinstance(obj, float) and math.isnan(obj):
                return None
            if isinstance(obj, dict):
                return {k: clean(v) for k, v in obj.items()}
            if isinstance(obj, list | tuple):
                return [clean(v) for v in obj]
            return obj
        return clean(asdict(self))

    def render_table(self) -> Table:
        """A rich table: one row per target and per feature, with numbers and verdicts."""
        th = self.thresholds
        v = self.verdict
        table = Table(title=f"Drift check: [{v.style}]{v.value.upper()}[/]",
                      caption=(f"{self.n_recent} recent outcomes, {self.n_reference} reference "
                               f"rows; model version(s): {', '.join(self.model_versions) or '-'}"
                               + "".join(f"\n{n}" for n in self.notes)))
        for name, justify in (("check", "left"), ("n", "right"), ("recent", "right"),
                              ("baseline / thresholds", "right"), ("ratio / noise", "right"),
                              ("verdict", "left"), ("note", "left")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for t in self.targets:
            base = (f"MAPE {_fmt(t.baseline_mape, True)}, RMSE(log) "
                    f"{_fmt(t.baseline_rmse_log)}") if t.baseline_source else "-"
            table.add_row(
                f"error {t.target}", str(t.n),
                f"MAPE {_fmt(t.mape, True)}, RMSE(log) {_fmt(t.rmse_log)}",
                base, "-" if t.ratio is None else f"x{t.ratio:.2f}",
                f"[{t.verdict.style}]{t.verdict.value}[/]",
                t.note or (f"baseline: {t.baseline_source}" if t.baseline_source else ""),
            )
        table.add_section()
        for f in self.features:
            table.add_row(
                f"PSI {f.feature}", f"{f.n_recent} vs {f.n_reference}", _fmt(f.psi),
                f"watch {th.psi_watch:g}, drift {th.psi_drift:g}",
                "-" if math.isnan(f.noise_psi) else f"~{f.noise_psi:.3f}",
                f"[{f.verdict.style}]{f.verdict.value}[/]",
                "; ".join(x for x in (f.largest_shift, f.note) if x),
            )
        return table


def detect_drift(
    recent: pd.DataFrame,
    reference: pd.DataFrame | None = None,
    validation: float | Mapping[str, Any] | str | Path | None = None,
    *,
    thresholds: DriftThresholds | None = None,
) -> DriftReport:
    """Check the recent outcomes for prediction-error and input drift.

    Parameters
    ----------
    recent
        The recent window of outcomes (e.g. :meth:`OutcomeStore.window`): feature columns,
        ``pred_<target>`` and ``<target>`` columns.
    reference
        A reference sample of jobs (e.g. the training data) with the feature columns; when it
        also has predictions and measurements, its error is the baseline if ``validation`` is
        not given.
    validation
        The model's validation error: a number (MAPE for every target), a mapping, or the path
        of a metrics JSON (see :func:`load_validation_metrics`).
    thresholds
        :class:`DriftThresholds` (defaults: PSI 0.1/0.25, error ratio 1.25/1.5, 100 samples).
    """
    th = thresholds or DriftThresholds()
    baseline = _normalise_validation(validation)
    source = "validation" if baseline else None
    notes: list[str] = []
    if not baseline and reference is not None:
        for t in TARGETS:
            if t in reference.columns and f"pred_{t}" in reference.columns:
                em = error_metrics(reference[f"pred_{t}"], reference[t])
                if em.n >= th.min_samples:
                    baseline[t] = {"mape": em.mape, "rmse_log": em.rmse_log}
        if baseline:
            source = "reference sample"
    targets = tuple(_target_drift(t, recent, baseline.get(t, {}),
                                  source if t in baseline else None, th) for t in TARGETS)
    features = tuple(_feature_drift(name, kind, reference, recent, th)
                     for name, kind in FEATURES.items())
    n_recent = len(recent)
    versions: tuple[str, ...] = ()
    if "model_version" in recent.columns:
        versions = tuple(sorted({str(v) for v in recent["model_version"].dropna()}))
        if len(versions) > 1:
            notes.append(f"the window mixes {len(versions)} model versions; their errors are "
                         "pooled")
    if n_recent < th.min_samples:
        verdict = Verdict.INSUFFICIENT_DATA
        notes.append(f"{n_recent} recent outcomes < min_samples {th.min_samples}")
    else:
        judged = [v for v in (*(t.verdict for t in targets), *(f.verdict for f in features))
                  if v is not Verdict.INSUFFICIENT_DATA]
        verdict = max(judged, key=lambda x: x.severity) if judged else Verdict.INSUFFICIENT_DATA
    return DriftReport(verdict=verdict, n_recent=n_recent,
                       n_reference=0 if reference is None else len(reference),
                       thresholds=th, targets=targets, features=features,
                       model_versions=versions, notes=tuple(notes))
