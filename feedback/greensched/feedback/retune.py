"""Re-tuning the predictor on measured outcomes: build a full-target training frame from logged
outcomes, refit, validate on the latest outcomes and promote only a better model.

The problem
===========
The outcome store (:mod:`greensched.feedback.store`) holds, per job, the DC that ran it, what
the predictor said and what was measured there, and the probability ``p`` the assignment
policy gave to that DC (``propensity``; exploration makes it < 1).  A predictor is fitted on
rows that carry the targets of **every** DC (``docs/dataset-format.md``), but a log reveals
only one DC per job (bandit feedback), and which one depends on the policy.  The predictor API
stays as it is (``fit(df)`` on full-target rows, no sample weights), so the estimator is built
from the data side.

The estimator (:func:`build_training_frame`)
============================================
For the outcomes of the training part of the window (the latest ``val_fraction`` are held out,
see below), with ``x_i`` the job's features, ``a_i`` the DC that ran it, ``y_i`` the measured
target and ``f`` the current model:

1. **Importance weights** (inverse propensity, Horvitz & Thompson, JASA 1952; clipped as in
   Ionides, JCGS 2008, and self-normalised)::

       w_i = min(1 / p_i, w_max) / mean_j min(1 / p_j, w_max)

   A missing propensity counts as ``p = 1`` (a deterministic policy).  Clipping bounds the
   variance at the cost of some bias; normalising to mean 1 keeps the row count.

2. **Direct-method pseudo-labels with an importance-weighted level correction.**  The target
   of job ``i`` at a DC ``d != a_i`` (never observed) is imputed by the current model, shifted
   by the drift estimated at ``d``::

       y~_i(d) = f(x_i, d) * exp(c_d),     y~_i(a_i) = y_i   (the measurement is kept)

       r_j   = ln y_j - ln f(x_j, a_j)                       (log residual of an outcome)
       c^_d  = sum_{j: a_j = d} w_j r_j / sum_{j: a_j = d} w_j   (self-normalised IPS mean)
       c_d   = c^_d * c^_d**2 / (c^_d**2 + se_d**2)          (shrunk towards 0 by its noise)

   with ``se_d**2 = s_d**2 / n_eff,d`` the squared standard error of the weighted mean
   (``s_d**2`` the weighted residual variance, ``n_eff = (sum w)**2 / sum w**2``, Kish); a DC
   with fewer than :data:`MIN_DC_OUTCOMES` outcomes gets ``c_d = 0``.  Averaged over the window,
   ``ln f + c^_d`` is the doubly robust estimate of the mean log target at ``d`` - the direct
   method plus the importance-weighted mean residual (Dudik, Langford & Li, "Doubly Robust
   Policy Evaluation and Learning", ICML 2011; Robins, Rotnitzky & Zhao, JASA 1994): it is
   unbiased when either the model or the propensities are right.  Without the correction
   (``correction="none"``) a DC that the policy rarely picks would be labelled almost only by
   the stale model, so a model fitted on the frame would keep its bias there.  The correction
   is a per-(DC, target) level (multiplicative) shift: drift that depends on the job's features
   is learnt from the measured rows, not from the pseudo-labels.

3. **Rows are weighted by resampling.**  The outcome rows are drawn ``n`` times by systematic
   resampling (Kitagawa, JCGS 1996) with probabilities ``w_i / sum w``: row ``i`` appears
   ``floor`` or ``ceil`` of ``n w_i / sum w`` times, the lowest-variance way to turn weights
   into a row multiset, so that ``fit`` without ``sample_weight`` minimises the weighted loss.

4. **Replay.**  The original training data (``replay_data``; all of it by default, a uniform
   sample of ``replay_rows`` otherwise) keeps the feature space the recent window does not
   cover, and the accuracy of a model fitted on many rows: refitted on the few hundred outcomes
   of a window alone, the candidate loses more accuracy everywhere than it gains at the
   drifted DCs.  Its targets come from the world it was recorded in, so, per DC and target, they
   are re-levelled to the recent outcomes: multiplied by ``exp(c_d - b_d)``, with ``b_d`` the
   current model's mean log residual on the replay sample (``b_d`` ~ 0 for the model that was
   trained on it; after a first re-tune it carries that re-tune's shift).

5. **Fit.**  A new predictor of the current version's kind is fitted from its saved
   configuration (``config.json``) on the frame - a refit, not a warm start: neither the
   XGBoost nor the LoRA predictor has an API to continue training, and a LoRA refit starts from
   the same base model and LoRA settings (so it costs a full fine-tuning run).

The hindsight-best DC of an outcome row (``best_dc``, needed by the format) is the current
model's prediction for it: the objective's prices are not in the log.

Validation and promotion
========================
The latest ``val_fraction`` of the window's outcomes (by measurement time) are held out.  On
them the current and the candidate model predict the DC that ran each job and are scored
against the measurement, at that DC only.  With ``holdout_weighting="ips"`` (default) each
held-out outcome counts with its importance weight (clipped, self-normalised, as above), so
the score estimates the error at a DC drawn uniformly rather than at the DCs the policy
prefers: the assigner compares predictions across all DCs, and the evidence about a DC that
only exploration visits (a handful of outcomes) would otherwise be drowned by the greedy
choices; ``"none"`` weighs outcomes equally.  ``score`` = the mean over the targets of the
(weighted) MAPE.  The candidate is registered
(:class:`~greensched.feedback.registry.ModelRegistry`) only when
``score_candidate < score_current * (1 - min_improvement)``; it is then promoted (an atomic
replace of ``CURRENT``), with lineage: parent version, the window's time range and row counts,
both models' holdout errors (the candidate's *unweighted* errors as ``validation``: the
baseline later drift checks compare the observed error with), the weights' statistics and the
corrections.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.errors import GreenSchedError
from greensched.feedback.drift import error_metrics
from greensched.feedback.registry import ModelRegistry, RegistryError
from greensched.feedback.retune_data import (
    DEFAULT_WEIGHT_CLIP,
    MAX_REPLAY_ROWS,
    MIN_DC_OUTCOMES,
    LevelCorrection,
    _aligned_replay,
    build_training_frame,
    effective_sample_size,
    importance_weights,
    level_corrections,
    observed_predictions,
    outcome_rows,
    resample_indices,
)
from greensched.feedback.store import OutcomeStore
from greensched.predictor.checkpoint import (
    load_predictor,
    predictor_class,
    read_saved_config,
)
from greensched.predictor.dataset import (
    TARGETS,
    read_dataset,
    validate_dataset,
)
from greensched.scenario import Scenario

__all__ = [
    "DEFAULT_WEIGHT_CLIP",
    "MAX_REPLAY_ROWS",
    "MIN_DC_OUTCOMES",
    "LevelCorrection",
    "RetuneResult",
    "RetuneStatus",
    "build_training_frame",
    "effective_sample_size",
    "importance_weights",
    "level_corrections",
    "observed_predictions",
    "outcome_rows",
    "resample_indices",
    "retune",
]

log = logging.getLogger(__name__)


class RetuneStatus(StrEnum):
    """What :func:`retune` did."""

    PROMOTED = "promoted"
    REGISTERED = "registered"  # better, registered, not promoted (``promote=False``)
    NOT_BETTER = "not_better"
    INSUFFICIENT_DATA = "insufficient_data"


# ----------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------

@dataclass
class RetuneResult:
    """What :func:`retune` did, with the numbers behind the decision.

    Errors are on the held-out outcomes, at the DC that ran each job: ``{target: {"mape",
    "rmse_log", "bias_log", "n", "mape_unweighted", "rmse_log_unweighted"}}`` (the first three
    importance-weighted with ``holdout_weighting="ips"``); ``score_*`` = mean MAPE over the
    targets;
    ``improvement = 1 - score_candidate / score_current``.
    """

    status: RetuneStatus
    parent: str | None
    version: str | None = None
    promoted: bool = False
    message: str = ""
    kind: str | None = None
    current_error: dict[str, dict[str, float]] = field(default_factory=dict)
    candidate_error: dict[str, dict[str, float]] = field(default_factory=dict)
    score_current: float = math.nan
    score_candidate: float = math.nan
    improvement: float = math.nan
    min_improvement: float = 0.0
    n_outcomes: int = 0
    n_train_outcomes: int = 0
    n_holdout: int = 0
    n_replay: int = 0
    n_train_rows: int = 0
    window: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    corrections: dict[str, dict[str, float]] = field(default_factory=dict)
    state_sources: dict[str, int] = field(default_factory=dict)
    fit_seconds: float = 0.0
    elapsed_s: float = 0.0

    @property
    def is_ok(self) -> bool:
        """True when a new version was registered (promoted or not)."""
        return self.status in (RetuneStatus.PROMOTED, RetuneStatus.REGISTERED)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (status as its value, NaN as None)."""
        def clean(o: Any) -> Any:
            if isinstance(o, Enum):
                return o.value
            if isinstance(o, float) and not math.isfinite(o):
                return None
            if isinstance(o, dict):
                return {k: clean(v) for k, v in o.items()}
            if isinstance(o, list | tuple):
                return [clean(v) for v in o]
            return o
        return clean(asdict(self))

    def describe(self) -> str:
        """One line: decision and numbers."""
        if self.status is RetuneStatus.INSUFFICIENT_DATA:
            return f"retune: {self.message}"
        head = {RetuneStatus.PROMOTED: f"promoted {self.version} (parent {self.parent})",
                RetuneStatus.REGISTERED: f"registered {self.version} (not promoted)",
                RetuneStatus.NOT_BETTER: f"kept {self.parent}: the candidate is not better"}
        e_cur = self.current_error.get("energy_kwh", {}).get("mape", math.nan)
        e_new = self.candidate_error.get("energy_kwh", {}).get("mape", math.nan)
        s_cur = self.current_error.get("service_s", {}).get("mape", math.nan)
        s_new = self.candidate_error.get("service_s", {}).get("mape", math.nan)
        return (f"retune: {head[self.status]}; holdout of {self.n_holdout} outcomes: energy "
                f"MAPE {e_cur:.1%} -> {e_new:.1%}, service MAPE {s_cur:.1%} -> {s_new:.1%}, "
                f"score improvement {self.improvement:+.1%} (needed >= "
                f"{self.min_improvement:.1%}); trained on {self.n_train_outcomes} outcomes "
                f"(ESS {self.weights.get('ess', math.nan):.0f}) + {self.n_replay} replay rows "
                f"in {self.fit_seconds:.1f} s")


def _errors(pred: np.ndarray, meas: np.ndarray, weights: np.ndarray | None) -> dict[str, float]:
    """Unweighted metrics (:func:`~greensched.feedback.drift.error_metrics`) and, with
    ``weights``, their weighted versions as ``mape``/``rmse_log``/``bias_log``."""
    em = error_metrics(pred, meas)
    out = {"mape": em.mape, "rmse_log": em.rmse_log, "bias_log": em.bias_log, "n": em.n,
           "mape_unweighted": em.mape, "rmse_log_unweighted": em.rmse_log}
    if weights is None:
        return out
    ok = np.isfinite(pred) & np.isfinite(meas) & (pred > 0) & (meas > 0)
    w, p, m = weights[ok], pred[ok], meas[ok]
    if w.sum() <= 0:
        return out
    lr = np.log(p / m)
    out["mape"] = float(np.sum(w * np.abs(p - m) / m) / w.sum())
    out["rmse_log"] = float(math.sqrt(np.sum(w * lr * lr) / w.sum()))
    out["bias_log"] = float(np.sum(w * lr) / w.sum())
    return out


def _iso(ts: Any) -> str | None:
    if ts is None or (isinstance(ts, float) and math.isnan(ts)) or pd.isna(ts):
        return None
    return pd.Timestamp(ts).isoformat()


def _load_replay(replay_data: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    if isinstance(replay_data, pd.DataFrame):
        return replay_data, "<DataFrame>"
    df, _ = read_dataset(replay_data)
    return df, str(replay_data)


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------

def retune(
    store: OutcomeStore,
    registry: ModelRegistry,
    *,
    replay_data: str | Path | pd.DataFrame,
    window: int = 5000,
    val_fraction: float = 0.2,
    min_improvement: float = 0.0,
    seed: int = 0,
    replay_rows: int | None = None,
    outcome_copies: float = 1.0,
    weight_clip: float = DEFAULT_WEIGHT_CLIP,
    correction: str = "dr",
    holdout_weighting: str = "ips",
    min_outcomes: int = 100,
    scenario: Scenario | None = None,
    config_overrides: Mapping[str, Any] | None = None,
    promote: bool = True,
    notes: str = "",
) -> RetuneResult:
    """Refit the current predictor on recent outcomes plus replay; register and promote it only
    when it beats the current one on the latest outcomes (see the module docstring).

    Parameters
    ----------
    store
        The outcome store.
    registry
        The model registry; its current (promoted) version is the parent.
    replay_data
        The original training data (dataset Parquet/CSV path, or a frame), sampled for replay
        and used to look up DC state that outcomes do not carry.
    window
        The latest ``window`` outcomes (any model version) are used.
    val_fraction
        Share of the window's latest outcomes held out for the comparison (0 < f < 1).
    min_improvement
        Relative score improvement required (0.05: the candidate's mean MAPE must be at least
        5 % below the current model's); with 0 it must simply be lower.
    seed
        Seed of the resampling and the replay sample.
    replay_rows
        Rows of the replay data used (a uniform sample); ``None``: all of it, up to
        :data:`MAX_REPLAY_ROWS`; 0 disables replay.
    outcome_copies
        The training outcomes are resampled to ``outcome_copies`` times their number (>= 1
        gives the recent outcomes more say next to a large replay set).
    weight_clip
        Largest raw importance weight ``1 / p``.
    correction
        ``"dr"`` or ``"none"`` (see :func:`build_training_frame`).
    holdout_weighting
        ``"ips"`` (importance-weighted holdout errors) or ``"none"`` (see the module
        docstring).
    min_outcomes
        Fewest outcomes in the window for a re-tune.
    scenario
        Supplies DC state for outcomes logged without it (else the replay data does).
    config_overrides
        Changes to the saved estimator configuration (e.g. ``{"n_jobs": 1}``).
    promote
        Promote a better candidate (else only register it).
    notes
        Stored with the new version.

    Returns
    -------
    RetuneResult

    Raises
    ------
    RegistryError
        No version is promoted in the registry.
    """
    t0 = time.perf_counter()
    if not 0.0 < float(val_fraction) < 1.0:
        raise GreenSchedError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    if not (math.isfinite(min_improvement) and 0.0 <= min_improvement < 1.0):
        raise GreenSchedError(f"min_improvement must lie in [0, 1), got {min_improvement!r}")
    if holdout_weighting not in ("ips", "none"):
        raise GreenSchedError(f"holdout_weighting must be 'ips' or 'none', got "
                              f"{holdout_weighting!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise GreenSchedError(f"window must be an integer >= 2, got {window!r}")
    if replay_rows is not None and (isinstance(replay_rows, bool) or replay_rows < 0):
        raise GreenSchedError(f"replay_rows must be None or >= 0, got {replay_rows!r}")
    if not (math.isfinite(outcome_copies) and outcome_copies > 0):
        raise GreenSchedError(f"outcome_copies must be > 0, got {outcome_copies!r}")
    parent = registry.current()
    if parent is None:
        raise RegistryError(f"no model version has been promoted in {registry.root}; register "
                            "and promote a trained model first")
    parent_dir = registry.path(parent)
    current = load_predictor(parent_dir)
    dcs = list(current.dcs_)
    result = RetuneResult(status=RetuneStatus.INSUFFICIENT_DATA, parent=parent,
                          kind=current.kind, min_improvement=float(min_improvement))

    outcomes = store.window(window)
    known = outcomes["dc"].astype(str).isin(dcs).to_numpy()
    outcomes = outcomes.loc[known].reset_index(drop=True)
    result.n_outcomes = len(outcomes)
    n_hold = int(round(len(outcomes) * float(val_fraction)))
    if len(outcomes) < max(min_outcomes, 4) or n_hold < 1 or len(outcomes) - n_hold < 2:
        result.message = (f"{len(outcomes)} outcome(s) at the model's DCs in the window, fewer "
                          f"than min_outcomes={min_outcomes}: nothing re-tuned")
        result.elapsed_s = time.perf_counter() - t0
        return result
    replay, replay_name = _load_replay(replay_data)
    rows, sources = outcome_rows(outcomes, dcs, replay=replay, scenario=scenario)
    result.state_sources = sources
    dc_index = pd.Index(dcs).get_indexer(outcomes["dc"].astype(str))
    measured = {t: outcomes[t].to_numpy(dtype=float) for t in TARGETS}

    # split: the latest n_hold outcomes (the store returns them oldest first) are held out
    n_train = len(outcomes) - n_hold
    tr, ho = slice(0, n_train), slice(n_train, None)
    pred_all = current.predict_frame(rows)
    w = importance_weights(outcomes["propensity"].to_numpy(dtype=float)[tr], clip=weight_clip)
    raw_p = outcomes["propensity"].to_numpy(dtype=float)[tr]
    frame, corr = build_training_frame(
        rows.iloc[tr], dc_index[tr], {t: m[tr] for t, m in measured.items()},
        pred_all.iloc[tr].reset_index(drop=True), dcs, w, correction=correction)
    picks = resample_indices(w, max(1, int(round(outcome_copies * n_train))), seed)
    train_out = frame.iloc[picks].reset_index(drop=True)
    dup = pd.Series(train_out["job_id"]).groupby(train_out["job_id"]).cumcount().to_numpy()
    train_out["job_id"] = [f"{j}#{k}" if k else j for j, k in zip(train_out["job_id"], dup,
                                                                   strict=True)]
    n_replay = min(len(replay), MAX_REPLAY_ROWS if replay_rows is None else int(replay_rows))
    parts = [train_out]
    replay_shift: dict[str, dict[str, float]] = {}
    if n_replay > 0:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5245504C]))
        sample = replay.iloc[np.sort(rng.choice(len(replay), n_replay, replace=False))]
        sample = validate_dataset(sample, dcs, targets=True)
        aligned, replay_shift = _aligned_replay(sample, current, dcs,
                                                corr if correction == "dr" else None)
        aligned["job_id"] = "replay-" + aligned["job_id"].astype(str)
        parts.append(aligned[[c for c in train_out.columns if c in aligned.columns]])
    train = pd.concat(parts, ignore_index=True)

    result.n_train_outcomes = n_train
    result.n_holdout = n_hold
    result.n_replay = n_replay
    result.n_train_rows = len(train)
    measured_at = outcomes["measured_at"]
    result.window = {
        "from": _iso(measured_at.iloc[0]), "to": _iso(measured_at.iloc[-1]),
        "holdout_from": _iso(measured_at.iloc[n_train]),
        "n_outcomes": len(outcomes), "n_train_outcomes": n_train, "n_holdout": n_hold,
        "n_replay": n_replay, "n_train_rows": len(train), "replay_data": replay_name,
        "model_versions": sorted({str(v) for v in outcomes["model_version"]}),
    }
    result.weights = {
        "ess": effective_sample_size(w), "max": float(w.max()), "min": float(w.min()),
        "clip": float(weight_clip),
        "clipped_fraction": float(np.mean(1.0 / np.where(np.isfinite(raw_p) & (raw_p > 0),
                                                          raw_p, 1.0) > weight_clip)),
        "missing_propensity_fraction": float(np.mean(~(np.isfinite(raw_p) & (raw_p > 0)))),
    }
    result.corrections = {t: {d: c.factor for d, c in zip(dcs, corr[t], strict=True)}
                          for t in TARGETS}

    # candidate: the current kind, refitted from its saved configuration
    saved = read_saved_config(parent_dir)
    cls = predictor_class(saved["kind"])
    cfg_dict = dict(saved.get("config", {}))
    cfg_dict.update(config_overrides or {})
    candidate = cls(cls.config_class.from_dict(cfg_dict))
    tf = time.perf_counter()
    candidate.fit(train, dcs=dcs)
    result.fit_seconds = time.perf_counter() - tf

    # compare on the held-out outcomes, at the DC that ran each job
    hold_rows = rows.iloc[ho].reset_index(drop=True)
    pred_new = candidate.predict_frame(hold_rows)
    pred_cur = pred_all.iloc[ho].reset_index(drop=True)
    w_hold = None
    if holdout_weighting == "ips":
        w_hold = importance_weights(outcomes["propensity"].to_numpy(dtype=float)[ho],
                                    clip=weight_clip)
    for t in TARGETS:
        m = measured[t][ho]
        result.current_error[t] = _errors(observed_predictions(pred_cur, dc_index[ho], dcs, t),
                                          m, w_hold)
        result.candidate_error[t] = _errors(observed_predictions(pred_new, dc_index[ho], dcs,
                                                                 t), m, w_hold)
    result.score_current = float(np.mean([result.current_error[t]["mape"] for t in TARGETS]))
    result.score_candidate = float(np.mean([result.candidate_error[t]["mape"]
                                            for t in TARGETS]))
    result.improvement = (1.0 - result.score_candidate / result.score_current
                          if result.score_current > 0 else math.nan)
    better = (result.score_candidate < result.score_current
              and result.score_candidate <= result.score_current * (1.0 - min_improvement))
    if not better:
        result.status = RetuneStatus.NOT_BETTER
        result.message = (f"candidate score {result.score_candidate:.4f} vs current "
                          f"{result.score_current:.4f}: not better by {min_improvement:.1%}; "
                          "no version registered")
        result.elapsed_s = time.perf_counter() - t0
        log.info(result.describe())
        return result

    tmp = Path(tempfile.mkdtemp(prefix="greensched-retune-"))
    try:
        candidate.save(tmp / "model")
        metrics = {
            "validation": {t: {"mape": result.candidate_error[t]["mape_unweighted"],
                               "rmse_log": result.candidate_error[t]["rmse_log_unweighted"]}
                           for t in TARGETS},
            "validation_on": f"the latest {n_hold} outcomes, at the DC that ran each job "
                             "(unweighted)",
            "holdout_weighting": holdout_weighting,
            "holdout_current": result.current_error,
            "holdout_candidate": result.candidate_error,
            "score_current": result.score_current,
            "score_candidate": result.score_candidate,
            "improvement": result.improvement,
            "min_improvement": float(min_improvement),
            "weights": result.weights,
            "corrections": result.corrections,
            "replay_shift": replay_shift,
            "correction": correction,
            "state_sources": sources,
            "fit_seconds": result.fit_seconds,
        }
        version = registry.register(
            tmp / "model", parent=parent, kind=candidate.kind, data_window=result.window,
            metrics=json.loads(json.dumps(metrics, default=float)),
            notes=notes or f"retuned on {n_train} outcomes + {n_replay} replay rows")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.version = version
    if promote:
        registry.promote(version, reason=f"retune: holdout score {result.score_current:.4f} -> "
                                         f"{result.score_candidate:.4f}")
        result.promoted = True
        result.status = RetuneStatus.PROMOTED
    else:
        result.status = RetuneStatus.REGISTERED
    result.message = result.describe()
    result.elapsed_s = time.perf_counter() - t0
    log.info(result.message)
    return result
