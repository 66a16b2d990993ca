"""Result types of an assignment and the per-job result table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from greensched.scheduler.assign.config import REASONS
from greensched.scheduler.assign.ledger import CapacityLedger

if TYPE_CHECKING:  # pragma: no cover - typing only
    from greensched.scheduler.assign.greedy import GreedyAssigner


@dataclass
class Assignment:
    """Assignment of a batch of jobs.

    Attributes
    ----------
    frame
        One row per job in the jobs table's order, columns :data:`ASSIGNMENT_COLUMNS`:
        ``dc`` ("" when unplaced, see ``reason``), the predictions used, cost components of the
        chosen DC at the mean predictions (``energy_usd`` = price · PUE · E, ``carbon_kg`` =
        θ · PUE · E, ``carbon_usd`` = δ · carbon_kg, ``water_l``, ``delay_usd`` = α · excess
        (or α · s), ``cost_usd`` = energy + carbon + delay, unweighted), ``score`` (weighted, as
        minimised) and ``propensity``.
    mode
        ``greedy``, ``guided``, ``follow`` or ``batch``.
    ledger
        The ledger the jobs were reserved in.
    """

    frame: pd.DataFrame
    mode: str
    ledger: CapacityLedger
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def assigned(self) -> np.ndarray:
        """Boolean mask of placed jobs."""
        return (self.frame["dc"] != "").to_numpy()

    def summary(self) -> dict[str, Any]:
        """Totals over placed jobs and counts of unplaced jobs by reason."""
        f = self.frame[self.assigned]
        out: dict[str, Any] = {
            "mode": self.mode,
            "jobs": len(self.frame),
            "assigned": len(f),
        }
        for col in (
            "energy_usd",
            "carbon_kg",
            "carbon_usd",
            "water_l",
            "delay_usd",
            "cost_usd",
            "score",
            "predicted_energy_kwh",
        ):
            out[col] = float(f[col].sum())
        for r in REASONS:
            out[f"unassigned_{r}"] = int((self.frame["reason"] == r).sum())
        return out


@dataclass
class PreparedBatch:
    """A validated, integer-coded batch of jobs with aligned predictions (input order)."""

    jobs: pd.DataFrame
    codes: dict[str, np.ndarray]
    preds: dict[str, np.ndarray]
    usage_ticks: np.ndarray
    energy: np.ndarray
    service: np.ndarray


@dataclass
class JobDecision:
    """Outcome of :meth:`GreedyAssigner.assign_one`."""

    dc: str | None
    dc_index: int
    hour: int
    score: float
    propensity: float
    reason: str
    usage_ticks: np.ndarray
    energy_usd: float = float("nan")
    carbon_kg: float = float("nan")
    cost_usd: float = float("nan")


def reason_codes(
    assigner: GreedyAssigner, codes: dict[str, np.ndarray], service: np.ndarray, choice: np.ndarray
) -> np.ndarray:
    """Why each job was not placed, as a code into ``["", *REASONS]`` (0: placed), tested in
    :data:`REASONS` order (sovereignty, then SLA, then capacity)."""
    code = np.zeros(len(choice), dtype=np.int8)
    rows = np.flatnonzero(choice < 0)
    if rows.size:
        sov, ok = assigner._masks(codes["area"][rows], codes["sla"][rows], service[rows])
        code[rows] = np.where(~sov.any(axis=1), 1, np.where(~ok.any(axis=1), 2, 3))
    return code


def _reasons(
    assigner: GreedyAssigner, codes: dict[str, np.ndarray], service: np.ndarray, choice: np.ndarray
) -> pd.Categorical:
    """Why each unplaced job was not placed ("" if placed), tested in :data:`REASONS` order."""
    return pd.Categorical.from_codes(reason_codes(assigner, codes, service, choice),
                                     categories=["", *REASONS])


def assignment_columns(
    assigner: GreedyAssigner,
    codes: dict[str, np.ndarray],
    preds: dict[str, np.ndarray],
    choice: np.ndarray,
    score: np.ndarray,
    propensity: np.ndarray,
    service_scored: np.ndarray,
) -> dict[str, np.ndarray]:
    """The per-job result columns as arrays (input order; NaN where unplaced): predictions
    and cost components at the chosen DC at the mean predictions, ``score``, ``propensity``
    and ``reason_code`` (:func:`reason_codes`).  :class:`Assignment`'s frame and the HTTP
    service's answers are both built from these."""
    n = len(choice)
    placed = choice >= 0
    rows = np.flatnonzero(placed)
    cc = choice[placed]
    hh = codes["hour"][placed]

    def pick(arr: np.ndarray) -> np.ndarray:
        out = np.full(n, np.nan)
        out[rows] = arr[rows, cc]
        return out

    e = pick(preds["energy_kwh"])
    s = pick(preds["service_s"])
    energy_usd = np.full(n, np.nan)
    carbon_kg = np.full(n, np.nan)
    carbon_usd = np.full(n, np.nan)
    water_l = np.full(n, np.nan)
    energy_usd[rows] = assigner.energy_usd_per_kwh[hh, cc] * e[rows]
    carbon_kg[rows] = assigner.carbon_kg_per_kwh[hh, cc] * e[rows]
    carbon_usd[rows] = assigner.carbon_usd_per_kwh[hh, cc] * e[rows]
    water_l[rows] = assigner.water_l_per_kwh[hh, cc] * e[rows]
    alpha = assigner.alpha[codes["qtype"]]
    if assigner.config.delay_cost == "excess":
        delay_usd = alpha * np.maximum(s - codes["sla"], 0.0)
    else:
        delay_usd = alpha * s
    return {
        "predicted_energy_kwh": e,
        "predicted_service_s": s,
        "energy_usd": energy_usd,
        "carbon_kg": carbon_kg,
        "carbon_usd": carbon_usd,
        "water_l": water_l,
        "delay_usd": delay_usd,
        "cost_usd": energy_usd + carbon_usd + delay_usd,
        "score": score,
        "propensity": propensity,
        "reason_code": reason_codes(assigner, codes, service_scored, choice),
    }


def _assignment_frame(
    assigner: GreedyAssigner,
    jobs: pd.DataFrame,
    codes: dict[str, np.ndarray],
    preds: dict[str, np.ndarray],
    choice: np.ndarray,
    score: np.ndarray,
    propensity: np.ndarray,
    service_scored: np.ndarray,
) -> pd.DataFrame:
    """The per-job result table (input order); cost columns at the mean predictions."""
    cols = assignment_columns(assigner, codes, preds, choice, score, propensity,
                              service_scored)
    reason = pd.Categorical.from_codes(cols.pop("reason_code"), categories=["", *REASONS])
    placed = choice >= 0
    return pd.DataFrame(
        {
            "job_id": jobs["job_id"].reset_index(drop=True),
            "dc": pd.Categorical.from_codes(
                np.where(placed, choice, len(assigner.dcs)), categories=[*assigner.dcs, ""]
            ),
            "hour": codes["hour"],
            **cols,
            "reason": reason,
        }
    )
