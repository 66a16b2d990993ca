"""The training frame of a re-tune: importance weights, per-DC level corrections and
pseudo-labels built from logged outcomes (the estimator described in
:mod:`greensched.feedback.retune`)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from greensched.errors import GreenSchedError
from greensched.jobs import DEFAULT_SLA_S
from greensched.predictor.base import (
    BasePredictor,
)
from greensched.predictor.dataset import (
    DC_FIELDS,
    TARGETS,
    dc_column,
    rows_from_jobs,
)
from greensched.scenario import Scenario

__all__ = [
    "DEFAULT_WEIGHT_CLIP",
    "MAX_REPLAY_ROWS",
    "MIN_DC_OUTCOMES",
    "LevelCorrection",
    "build_training_frame",
    "effective_sample_size",
    "importance_weights",
    "level_corrections",
    "observed_predictions",
    "outcome_rows",
    "resample_indices",
]

#: Largest importance weight ``1 / p`` before normalisation.
DEFAULT_WEIGHT_CLIP = 20.0
#: Most replay rows used by default.
MAX_REPLAY_ROWS = 20_000
#: Fewest outcomes at a DC for a level correction there.
MIN_DC_OUTCOMES = 2
_JOB_COLUMNS = ("job_id", "arrival_s", "hour", "area", "query_type", "input_tokens",
                "output_tokens", "sla_s")
_HOUR_FIELDS = tuple(f for f in DC_FIELDS if f != "rtt_s")



# ----------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------

def importance_weights(propensity: Sequence[float] | np.ndarray | pd.Series, *,
                       clip: float = DEFAULT_WEIGHT_CLIP) -> np.ndarray:
    """Clipped, self-normalised inverse-propensity weights (mean 1).

    ``w_i = min(1 / p_i, clip) / mean_j min(1 / p_j, clip)``; a missing, non-finite or
    non-positive propensity counts as ``p = 1``.

    Parameters
    ----------
    propensity
        Probability the logging policy gave to the action taken, in (0, 1].
    clip
        Largest raw weight (>= 1).
    """
    if not (math.isfinite(clip) and clip >= 1.0):
        raise GreenSchedError(f"the weight clip must be a finite number >= 1, got {clip!r}")
    p = np.asarray(pd.to_numeric(pd.Series(np.asarray(propensity, dtype=object)),
                                 errors="coerce"), dtype=float)
    if p.size == 0:
        return np.zeros(0)
    p = np.where(np.isfinite(p) & (p > 0), np.minimum(p, 1.0), 1.0)
    w = np.minimum(1.0 / p, float(clip))
    return w / w.mean()


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(sum w)**2 / sum w**2`` (0 for no weights)."""
    w = np.asarray(weights, dtype=float)
    s2 = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / s2 if s2 > 0 else 0.0


def resample_indices(weights: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` row indices drawn by systematic resampling with probabilities ``w / sum w``.

    Row ``i`` appears ``floor`` or ``ceil`` of ``n * w_i / sum w`` times (one uniform draw
    shifts an evenly spaced comb over the cumulative weights); indices come out sorted.
    """
    w = np.asarray(weights, dtype=float)
    if n < 0:
        raise GreenSchedError(f"the number of resampled rows must be >= 0, got {n!r}")
    if w.size == 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    if not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
        raise GreenSchedError("resampling weights must be finite, >= 0 and not all zero")
    cum = np.cumsum(w / w.sum()) * n
    u = np.random.default_rng(seed).random()
    idx = np.searchsorted(cum, u + np.arange(n), side="right")
    return np.minimum(idx, w.size - 1).astype(np.int64)


@dataclass(frozen=True)
class LevelCorrection:
    """Estimated log-level drift of one target at one DC (see the module docstring).

    ``log_shift`` is the shrunk ``c_d`` applied to the pseudo-labels (``exp(log_shift)`` is the
    factor); ``raw`` the unshrunk IPS mean ``c^_d``, ``se`` its standard error, ``n`` the
    outcomes at the DC and ``n_eff`` their effective sample size.
    """

    log_shift: float
    raw: float
    se: float
    n: int
    n_eff: float

    @property
    def factor(self) -> float:
        """``exp(log_shift)``: the multiplier of the model's predictions at the DC."""
        return math.exp(self.log_shift)


def level_corrections(residual_log: np.ndarray, dc_index: np.ndarray, weights: np.ndarray,
                      n_dcs: int) -> list[LevelCorrection]:
    """Per-DC importance-weighted mean log residual, shrunk by its standard error.

    Parameters
    ----------
    residual_log
        ``ln(measured / predicted)`` of each outcome at the DC that ran it.
    dc_index
        Position of that DC (0 .. ``n_dcs`` - 1).
    weights
        Importance weights of the outcomes.
    n_dcs
        Number of DCs.
    """
    r = np.asarray(residual_log, dtype=float)
    d = np.asarray(dc_index, dtype=np.int64)
    w = np.asarray(weights, dtype=float)
    out = []
    for j in range(n_dcs):
        sel = (d == j) & np.isfinite(r)
        n = int(sel.sum())
        if n < MIN_DC_OUTCOMES:
            out.append(LevelCorrection(0.0, math.nan, math.nan, n, float(n)))
            continue
        wj, rj = w[sel], r[sel]
        mean = float(np.sum(wj * rj) / np.sum(wj))
        var = float(np.sum(wj * (rj - mean) ** 2) / np.sum(wj))
        n_eff = effective_sample_size(wj)
        se = math.sqrt(var / n_eff) if n_eff > 0 else math.inf
        denom = mean * mean + se * se
        shift = mean * (mean * mean / denom) if denom > 0 else 0.0
        out.append(LevelCorrection(shift, mean, se, n, n_eff))
    return out


# ----------------------------------------------------------------------------------------------
# Feature rows of stored outcomes
# ----------------------------------------------------------------------------------------------

def _state_from_features(outcomes: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """Per-DC state from the ``features_json`` column (rows lacking any column stay NaN)."""
    out = np.full((len(outcomes), len(cols)), np.nan)
    if "features_json" not in outcomes.columns:
        return out
    for i, raw in enumerate(outcomes["features_json"].to_numpy(dtype=object)):
        if raw is None or (isinstance(raw, float) and math.isnan(raw)):
            continue
        try:
            feats = json.loads(raw) if isinstance(raw, str) else dict(raw)
        except (ValueError, TypeError):
            continue
        if all(c in feats for c in cols):
            out[i] = [float(feats[c]) for c in cols]
    return out


def _state_from_replay(outcomes: pd.DataFrame, replay: pd.DataFrame, dcs: Sequence[str],
                       cols: list[str]) -> np.ndarray:
    """Per-DC state looked up in the replay data: hour fields by hour (then hour of day, then
    the overall mean), RTTs by area (then the mean)."""
    out = np.full((len(outcomes), len(cols)), np.nan)
    pos = {c: k for k, c in enumerate(cols)}
    hour_cols = [dc_column(f, d) for d in dcs for f in _HOUR_FIELDS]
    rtt_cols = [dc_column("rtt_s", d) for d in dcs]
    hours = outcomes["hour"].to_numpy(dtype=np.int64)
    rh = pd.to_numeric(replay["hour"], errors="coerce")
    by_hour = replay[hour_cols].groupby(rh.to_numpy()).mean()
    by_hod = replay[hour_cols].groupby(np.mod(rh.to_numpy(), 24)).mean()
    overall = replay[hour_cols].mean()
    exact = by_hour.reindex(hours).to_numpy()
    hod = by_hod.reindex(np.mod(hours, 24)).to_numpy()
    vals = np.where(np.isfinite(exact), exact, hod)
    vals = np.where(np.isfinite(vals), vals, overall.to_numpy()[None, :])
    for k, c in enumerate(hour_cols):
        out[:, pos[c]] = vals[:, k]
    by_area = replay[rtt_cols].groupby(replay["area"].astype(str).to_numpy()).mean()
    rtt = by_area.reindex(outcomes["area"].astype(str).to_numpy()).to_numpy()
    rtt = np.where(np.isfinite(rtt), rtt, replay[rtt_cols].mean().to_numpy()[None, :])
    for k, c in enumerate(rtt_cols):
        out[:, pos[c]] = rtt[:, k]
    return out


def outcome_rows(outcomes: pd.DataFrame, dcs: Sequence[str], *,
                 replay: pd.DataFrame | None = None,
                 scenario: Scenario | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Dataset-format feature rows (no targets) for stored outcomes.

    The job fields come from the outcome; the per-DC state (``<field>__<dc>`` of
    :data:`~greensched.predictor.dataset.DC_FIELDS`) from, in this order:

    1. the outcome's ``features`` JSON when it holds every state column (what the predictor
       was given when it made the logged prediction - the faithful source);
    2. the ``scenario`` (:func:`~greensched.predictor.dataset.rows_from_jobs`, expected
       utilisation);
    3. the replay data: hour fields by the outcome's hour (else hour of day, else the mean),
       RTTs by area.

    Returns the rows and how many rows each source supplied. A missing ``sla_s`` takes
    :data:`greensched.jobs.DEFAULT_SLA_S`.

    Raises
    ------
    GreenSchedError
        Some rows get no state from any source.
    """
    dcs = [str(d) for d in dcs]
    n = len(outcomes)
    cols = [dc_column(f, d) for d in dcs for f in DC_FIELDS]
    sla = pd.to_numeric(outcomes.get("sla_s", pd.Series(np.nan, index=outcomes.index)),
                        errors="coerce").to_numpy(dtype=float)
    frame: dict[str, Any] = {
        "job_id": outcomes["job_id"].astype(str).to_numpy(dtype=object),
        "arrival_s": pd.to_numeric(outcomes.get("arrival_s", pd.Series(np.nan,
                                   index=outcomes.index)), errors="coerce").to_numpy(float),
        "hour": outcomes["hour"].to_numpy(dtype=np.int64),
        "area": outcomes["area"].astype(str).to_numpy(dtype=object),
        "query_type": outcomes["query_type"].astype(str).to_numpy(dtype=object),
        "input_tokens": pd.to_numeric(outcomes["input_tokens"]).to_numpy(dtype=float),
        "output_tokens": pd.to_numeric(outcomes["output_tokens"], errors="coerce")
        .to_numpy(dtype=float) if "output_tokens" in outcomes.columns else np.full(n, np.nan),
        "sla_s": np.where(np.isfinite(sla) & (sla > 0), sla, DEFAULT_SLA_S),
    }
    state = _state_from_features(outcomes, cols)
    counts = {"features": int(np.isfinite(state).all(axis=1).sum()), "scenario": 0, "replay": 0}
    missing = ~np.isfinite(state).all(axis=1)
    if missing.any() and scenario is not None:
        sub = outcomes.loc[missing]
        jobs = pd.DataFrame({c: frame[c][missing] for c in _JOB_COLUMNS})
        if not np.isfinite(jobs["arrival_s"]).all():
            jobs = jobs.drop(columns="arrival_s")
        rows = rows_from_jobs(jobs, scenario)
        state[missing] = rows[cols].to_numpy(dtype=float)
        counts["scenario"] = len(sub)
        missing = ~np.isfinite(state).all(axis=1)
    if missing.any() and replay is not None:
        looked = _state_from_replay(outcomes.loc[missing], replay, dcs, cols)
        state[missing] = looked
        counts["replay"] = int(missing.sum())
        missing = ~np.isfinite(state).all(axis=1)
    if missing.any():
        first = int(np.flatnonzero(missing)[0])
        raise GreenSchedError(
            f"{int(missing.sum())} outcome(s) (first: job_id {frame['job_id'][first]!r}) carry "
            "no per-DC state: log it in the outcome's 'features' (keys such as "
            f"{cols[0]!r}), or give a scenario or replay data to look it up")
    for k, c in enumerate(cols):
        frame[c] = state[:, k]
    return pd.DataFrame(frame), counts


def observed_predictions(pred: pd.DataFrame, dc_index: np.ndarray, dcs: Sequence[str],
                         target: str) -> np.ndarray:
    """The prediction of ``target`` at each row's own DC from a
    :meth:`~greensched.predictor.base.BasePredictor.predict_frame` output."""
    arr = pred[[dc_column(target, d) for d in dcs]].to_numpy(dtype=float)
    return arr[np.arange(len(arr)), np.asarray(dc_index, dtype=np.int64)]


# ----------------------------------------------------------------------------------------------
# Training frame
# ----------------------------------------------------------------------------------------------

def build_training_frame(
    rows: pd.DataFrame,
    dc_index: np.ndarray,
    measured: Mapping[str, np.ndarray],
    predicted: pd.DataFrame,
    dcs: Sequence[str],
    weights: np.ndarray,
    *,
    correction: str = "dr",
) -> tuple[pd.DataFrame, dict[str, list[LevelCorrection]]]:
    """Full-target rows for outcomes: measurements at the DC that ran the job, pseudo-labels
    elsewhere (see the module docstring, steps 1-2).

    Parameters
    ----------
    rows
        Feature rows of the outcomes (:func:`outcome_rows`).
    dc_index
        Position in ``dcs`` of the DC that ran each job.
    measured
        Measured ``energy_kwh`` and ``service_s`` per row (at that DC).
    predicted
        The current model's :meth:`~greensched.predictor.base.BasePredictor.predict_frame`
        of ``rows`` (same order).
    dcs
        DC order of the model.
    weights
        Importance weights of the rows (:func:`importance_weights`).
    correction
        ``"dr"`` (importance-weighted level correction of the pseudo-labels) or ``"none"``
        (plain direct method).

    Returns
    -------
    frame, corrections
        The rows with ``energy_kwh__<dc>``, ``service_s__<dc>`` and ``best_dc`` (the model's
        predicted best DC), and the per-target list of :class:`LevelCorrection` (DC order).
    """
    if correction not in ("dr", "none"):
        raise GreenSchedError(f"correction must be 'dr' or 'none', got {correction!r}")
    dcs = [str(d) for d in dcs]
    n, D = len(rows), len(dcs)
    di = np.asarray(dc_index, dtype=np.int64)
    if len(di) != n or len(predicted) != n:
        raise GreenSchedError(f"rows ({n}), DC indices ({len(di)}) and predictions "
                              f"({len(predicted)}) differ in length")
    frame = rows.copy().reset_index(drop=True)
    corrections: dict[str, list[LevelCorrection]] = {}
    for t in TARGETS:
        pred = predicted[[dc_column(t, d) for d in dcs]].to_numpy(dtype=float)
        meas = np.asarray(measured[t], dtype=float)
        obs_pred = pred[np.arange(n), di]
        with np.errstate(divide="ignore", invalid="ignore"):
            resid = np.log(meas / obs_pred)
        if correction == "dr":
            corr = level_corrections(resid, di, weights, D)
        else:
            corr = [LevelCorrection(0.0, math.nan, math.nan, int((di == j).sum()),
                                    float((di == j).sum())) for j in range(D)]
        corrections[t] = corr
        shift = np.exp(np.array([c.log_shift for c in corr]))
        full = pred * shift[None, :]
        full[np.arange(n), di] = meas
        for j, d in enumerate(dcs):
            frame[dc_column(t, d)] = full[:, j]
    frame["best_dc"] = predicted["best_dc"].astype(str).to_numpy(dtype=object)
    return frame, corrections


def _aligned_replay(replay: pd.DataFrame, model: BasePredictor, dcs: list[str],
                    corrections: Mapping[str, list[LevelCorrection]] | None
                    ) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Replay rows re-levelled per (DC, target) by ``exp(c_d - b_d)`` (module docstring, 4)."""
    out = replay.copy().reset_index(drop=True)
    shifts: dict[str, dict[str, float]] = {}
    if corrections is None:
        return out, shifts
    pred = model.predict_frame(out)
    for t in TARGETS:
        shifts[t] = {}
        for j, d in enumerate(dcs):
            col = dc_column(t, d)
            y = out[col].to_numpy(dtype=float)
            b = float(np.mean(np.log(y / pred[col].to_numpy(dtype=float))))
            s = corrections[t][j].log_shift - b
            out[col] = y * math.exp(s)
            shifts[t][d] = s
    return out, shifts
