"""The greedy assigner (plain, plan-guided, exploring, plan-following) and its shortcuts."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from greensched.scenario import Scenario
from greensched.scheduler.assign.config import (
    _OBJECTIVES,
    AssignConfig,
    AssignError,
    _normalise_weights,
)
from greensched.scheduler.assign.congestion import PoolCongestion
from greensched.scheduler.assign.engine import _allowed_at_turn, _chunks, _engine_hour
from greensched.scheduler.assign.guide import PlanGuide, _as_guide
from greensched.scheduler.assign.inputs import _ensure_valid, _job_codes, _prediction_arrays
from greensched.scheduler.assign.ledger import CapacityLedger
from greensched.scheduler.assign.results import (
    Assignment,
    JobDecision,
    PreparedBatch,
    _assignment_frame,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from greensched.scheduler.planner import PlanResult


class GreedyAssigner:
    """Greedy (optionally plan-guided, exploring or plan-following) assignment of jobs.

    Holds the scenario's per-(hour, dc) cost coefficients and the masks, so that many batches —
    or single jobs from a service — are scored without re-reading the scenario.

    Parameters
    ----------
    scenario
        The scenario the jobs belong to.
    config
        Scoring and masking options (:class:`AssignConfig`).
    guide
        Plan signals; with duals, their shadow prices enter the score (plan-guided mode).
    ledger
        Shared capacity ledger; a fresh one from the scenario when ``None``.
    """

    def __init__(
        self,
        scenario: Scenario,
        config: AssignConfig | None = None,
        *,
        guide: PlanGuide | None = None,
        ledger: CapacityLedger | None = None,
    ) -> None:
        self.scenario = scenario
        self.config = config or AssignConfig()
        self.guide = guide
        self.ledger = ledger if ledger is not None else CapacityLedger.from_scenario(scenario)
        self.dcs = scenario.dcs
        if self.ledger.dcs != self.dcs or self.ledger.resources != scenario.resources:
            raise AssignError("the ledger's dcs/resources differ from the scenario's")
        if self.ledger.hours != scenario.hours:
            raise AssignError(
                f"the ledger has {self.ledger.hours} hours, the scenario {scenario.hours}"
            )
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(self.config.seed)
        self._build()

    # -- coefficients ------------------------------------------------------------------------
    def _build(self) -> None:
        scen, cfg = self.scenario, self.config
        ds = scen.ds
        weights = cfg.weights
        if weights is None and self.guide is not None and self.guide.weights:
            weights = self.guide.weights
        if weights is None:
            weights = scen.weights
        self.weights = _normalise_weights(weights)
        se, sc, sd = (self.weights[k] for k in _OBJECTIVES)
        pue = ds["pue"].sel(dc=self.dcs).values.astype(float)
        price = ds["price_usd_per_kwh"].transpose("hour", "dc").values.astype(float)
        theta = ds["carbon_kg_per_kwh"].transpose("hour", "dc").values.astype(float)
        delta = ds["carbon_price_usd_per_kg"].values.astype(float)
        water_f = (
            ds["wue_l_per_kwh"].transpose("hour", "dc").values / pue[None, :]
            + ds["ewif_l_per_kwh"].transpose("hour", "dc").values
        )
        water_price = float(cfg.water_price_usd_per_l)
        if self.guide is not None:
            water_price += float(self.guide.water_price_usd_per_l)
        self.water_price_usd_per_l = water_price
        # per (hour, 1): a rolling plan prices each hour as the window that committed it
        water_h = np.full((scen.hours, 1), water_price)
        if self.guide is not None and self.guide.water_price_by_hour is not None:
            water_h += self.guide.water_price_by_hour.reindex(
                hour=np.arange(scen.hours), fill_value=0.0
            ).values.astype(float)[:, None]
        # per IT kWh, shape (hour, dc)
        self.energy_usd_per_kwh = price * pue[None, :]
        self.carbon_kg_per_kwh = theta * pue[None, :]
        self.carbon_usd_per_kwh = self.carbon_kg_per_kwh * delta[None, :]
        self.water_l_per_kwh = water_f * pue[None, :]
        self.score_per_kwh = (
            se * self.energy_usd_per_kwh
            + sc * self.carbon_usd_per_kwh
            + water_h * self.water_l_per_kwh
        )
        if cfg.plan_energy_prices:
            if self.guide is None or self.guide.energy_price is None:
                raise AssignError(
                    "plan_energy_prices needs a plan with power-balance duals (PlanGuide)"
                )
            marginal = (
                self.guide.energy_price.reindex(
                    dc=self.dcs, hour=np.arange(scen.hours), fill_value=0.0
                )
                .transpose("hour", "dc")
                .values
            )
            self.score_per_kwh = marginal * pue[None, :] + water_h * self.water_l_per_kwh
        types = scen.query_types
        rho = ds["delay_penalty_usd_per_s"].values.astype(float)
        a = cfg.delay_penalty_usd_per_s
        if a is None:
            alpha = rho
        elif isinstance(a, Mapping):
            unknown = set(a) - set(types)
            if unknown:
                raise AssignError(
                    f"delay_penalty_usd_per_s names unknown query type(s) {sorted(unknown)!r}"
                )
            alpha = np.array([float(a.get(k, r)) for k, r in zip(types, rho, strict=True)])
        else:
            alpha = np.full(len(types), float(a))
        if not np.all(np.isfinite(alpha)) or (alpha < 0).any():
            raise AssignError("delay penalties must be finite and >= 0")
        self.alpha = alpha
        self.delay_weight = sd
        # per_query scenarios: pool congestion (same wait model as planner and twin)
        self.pools = PoolCongestion(scen, self.dcs) if scen.delay_model == "per_query" else None
        self.units_per_token = ds["units_per_token"].transpose("query_type", "resource").values
        self.mean_output_tokens = ds["output_tokens"].values.astype(float)
        # plan-guided: per token shadow cost G[h, k, d] = Σ_r π[d,r,h] · units_per_token[k,r]
        self.guide_per_token: np.ndarray | None = None
        if self.guide is not None and self.guide.resource_price is not None:
            pi = (
                self.guide.resource_price.reindex(
                    dc=self.dcs, resource=scen.resources, hour=np.arange(scen.hours), fill_value=0.0
                )
                .transpose("hour", "resource", "dc")
                .values
            )
            self.guide_per_token = np.einsum("hrd,kr->hkd", pi, self.units_per_token)
        # sovereignty: allowed[a, d]
        allowed = np.ones((len(scen.areas), len(self.dcs)), dtype=bool)
        if cfg.sovereignty:
            area_pos = {a: i for i, a in enumerate(scen.areas)}
            dc_pos = {d: i for i, d in enumerate(self.dcs)}
            for area, dcs in cfg.sovereignty.items():
                if area not in area_pos:
                    raise AssignError(
                        f"sovereignty names unknown area {area!r}; the scenario has "
                        f"{', '.join(scen.areas[:8])}"
                    )
                if isinstance(dcs, str):
                    dcs = [dcs]
                row = np.zeros(len(self.dcs), dtype=bool)
                for d in dcs:
                    if d not in dc_pos:
                        raise AssignError(
                            f"sovereignty for area {area!r} names unknown dc {d!r}; the scenario "
                            f"has {', '.join(self.dcs[:8])}"
                        )
                    row[dc_pos[d]] = True
                allowed[area_pos[area]] = row
        self.area_allowed = allowed
        self._area_pos = {x: i for i, x in enumerate(scen.areas)}
        self._type_pos = {x: i for i, x in enumerate(types)}
        self.follow_shares: np.ndarray | None = None
        if self.guide is not None and self.guide.allocation is not None:
            alloc = self.guide.allocation.reindex(
                area=scen.areas,
                dc=self.dcs,
                query_type=types,
                hour=np.arange(scen.hours),
                fill_value=0.0,
            ).fillna(0.0)
            self.follow_shares = np.clip(
                alloc.transpose("hour", "area", "query_type", "dc").values, 0.0, None
            )

    # -- scoring -----------------------------------------------------------------------------
    def _scores(
        self,
        hour: np.ndarray,
        qtype: np.ndarray,
        tokens: np.ndarray,
        sla: np.ndarray,
        energy: np.ndarray,
        service: np.ndarray,
    ) -> np.ndarray:
        score = np.take(self.score_per_kwh, hour, axis=0)
        score *= energy
        w_alpha = (self.delay_weight * self.alpha)[qtype]
        if w_alpha.any():
            if self.config.delay_cost == "excess":
                delay = np.subtract(service, sla[:, None])
                np.maximum(delay, 0.0, out=delay)
            else:
                delay = service.copy()
            delay *= w_alpha[:, None]
            score += delay
        if self.guide_per_token is not None:
            extra = self.guide_per_token[hour, qtype]
            extra *= tokens[:, None]
            score += extra
        return score

    def _masks(
        self, area: np.ndarray, sla: np.ndarray, service: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        sov = self.area_allowed[area]
        if self.config.sla_hard:
            return sov, sov & (service <= sla[:, None])
        return sov, sov

    # -- batch assignment ------------------------------------------------------------------------
    def assign(
        self, jobs: pd.DataFrame, predictions: xr.Dataset, *, follow: bool = False
    ) -> Assignment:
        """Assign a batch of jobs, reserving their capacity in :attr:`ledger`.

        ``follow=True`` samples DCs in proportion to the plan's shares for the job's (area,
        type, hour) among the allowed DCs (exponential race, seeded); jobs whose allowed DCs
        all have share 0 fall back to the greedy score (propensity 1).
        """
        batch = self.prepare(jobs, predictions)
        codes = batch.codes
        choice, propensity, score = self.assign_arrays(
            hour=codes["hour"],
            area=codes["area"],
            qtype=codes["qtype"],
            tokens=codes["tokens"],
            sla=codes["sla"],
            energy=batch.energy,
            service=batch.service,
            usage_ticks=batch.usage_ticks,
            arrival=codes["arrival"],
            follow=follow,
        )
        return self.result(batch, choice, score, propensity, "follow" if follow else self.mode)

    @property
    def mode(self) -> str:
        """``plan`` (as ``--mode plan``) when plan shadow prices enter the score, else
        ``greedy``."""
        return "plan" if self.guide_per_token is not None else "greedy"

    def prepare(self, jobs: pd.DataFrame, predictions: xr.Dataset) -> PreparedBatch:
        """Validate and encode a batch: integer codes, aligned predictions, usage in ticks."""
        jobs = _ensure_valid(self.scenario, jobs)
        codes = _job_codes(self.scenario, jobs)
        preds = _prediction_arrays(
            predictions, pd.Index(jobs["job_id"]), self.dcs, self.config.risk
        )
        units = self.units_per_token[codes["qtype"]] * codes["tokens"][:, None]
        return PreparedBatch(
            jobs=jobs,
            codes=codes,
            preds=preds,
            usage_ticks=self.ledger.to_ticks(units),
            energy=preds["energy_kwh_p90"] if self.config.risk else preds["energy_kwh"],
            service=preds["service_s_p90"] if self.config.risk else preds["service_s"],
        )

    def score_matrix(self, batch: PreparedBatch) -> tuple[np.ndarray, np.ndarray]:
        """Scores (n, D) and the static mask (SLA if hard, sovereignty) of a prepared batch."""
        c = batch.codes
        score = self._scores(
            c["hour"], c["qtype"], c["tokens"], c["sla"], batch.energy, batch.service
        )
        _, ok = self._masks(c["area"], c["sla"], batch.service)
        return score, ok

    def result(
        self,
        batch: PreparedBatch,
        choice: np.ndarray,
        score: np.ndarray,
        propensity: np.ndarray,
        mode: str,
        **info: Any,
    ) -> Assignment:
        """Wrap per-job choices (input order) into an :class:`Assignment`."""
        frame = self._frame(
            batch.jobs, batch.codes, batch.preds, choice, score, propensity, batch.service
        )
        return Assignment(
            frame=frame,
            mode=mode,
            ledger=self.ledger,
            info={
                "weights": dict(self.weights),
                "water_price_usd_per_l": self.water_price_usd_per_l,
                **info,
            },
        )

    def assign_arrays(
        self,
        *,
        hour: np.ndarray,
        area: np.ndarray,
        qtype: np.ndarray,
        tokens: np.ndarray,
        sla: np.ndarray,
        energy: np.ndarray,
        service: np.ndarray,
        usage_ticks: np.ndarray,
        arrival: np.ndarray | None = None,
        follow: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The vectorised core on integer-coded jobs (input order kept).

        Parameters are per job: hour, area and query-type positions, total tokens, SLA (s),
        energy (kWh) and service time (s) per DC (shape (n, D), used for scoring), usage ticks
        (n, R) and arrival time (s; ties and missing → table order).

        Returns
        -------
        choice, propensity, score
            DC position per job (-1 when none), the chosen DC's probability under the policy
            (1 for plain greedy; NaN when unplaced) and its score (NaN when unplaced).
        """
        n = energy.shape[0]
        if arrival is None:
            order = np.lexsort((np.arange(n), hour))
        else:
            order = np.lexsort((np.arange(n), arrival, hour))
        identity = bool(np.array_equal(order, np.arange(n)))
        explore = self.config.explore if not follow else None
        if follow and self.follow_shares is None:
            raise AssignError("plan-following needs a plan allocation (PlanGuide.allocation)")
        need_turn = explore is not None or follow
        # results in arrival order
        choice = np.full(n, -1, dtype=np.int64)
        propensity = np.full(n, np.nan)
        chosen_score = np.full(n, np.nan)
        hour_sorted = hour if identity else hour[order]
        hours_present, starts = np.unique(hour_sorted, return_index=True)
        ends = np.append(starts[1:], n)
        busy = set()
        if self.pools is not None:  # loads are re-read between chunks of a busy hour's jobs
            pools = self.pools
            busy = {int(x) for x in hours_present if pools.can_queue(int(x), qtype[hour == x])}
            hours_present, starts, ends = _chunks(hours_present, starts, ends, busy)
        for h_, s, e in zip(hours_present, starts, ends, strict=True):
            h = int(h_)
            idx: slice | np.ndarray = slice(s, e) if identity else order[s:e]
            hb, ab, kb = hour[idx], area[idx], qtype[idx]
            sla_b, ub = sla[idx], usage_ticks[idx]
            score = self._scores(hb, kb, tokens[idx], sla_b, energy[idx], service[idx])
            _, ok = self._masks(ab, sla_b, service[idx])
            if h in busy:
                score = self._congested(h, kb, score)
            shares = self.follow_shares[h, ab, kb] if follow else None  # type: ignore[index]
            key, fallback = self._keys(score, shares, explore)
            with self.ledger.lock:
                rem = self.ledger.capacity_ticks[h] - self.ledger.used_ticks[h]
                rem_start = rem.copy() if need_turn else rem
                c = _engine_hour(key, fallback, ok, ub, rem)
                self.ledger.used_ticks[h] = self.ledger.capacity_ticks[h] - rem
            choice[s:e] = c
            placed = np.flatnonzero(c >= 0)
            if self.pools is not None:
                self.pools.commit(h, c[placed], kb[placed])
            chosen_score[s + placed] = score[placed, c[placed]]
            if need_turn:
                allowed = _allowed_at_turn(c, ok, ub, rem_start)
                propensity[s:e] = self._propensity(c, allowed, score, shares, explore)
            else:
                propensity[s + placed] = 1.0
        if not identity:
            inv = np.empty(n, dtype=np.int64)
            inv[order] = np.arange(n)
            choice, propensity, chosen_score = choice[inv], propensity[inv], chosen_score[inv]
        return choice, propensity, chosen_score

    def _congested(self, h: int, k: np.ndarray, score: np.ndarray) -> np.ndarray:
        """Score + σ_d ρ_k W'(load_{d,k}) s_{d,k} (see the ``congestion`` module)."""
        w_alpha = (self.delay_weight * self.alpha)[k]
        if not w_alpha.any() or self.pools is None:
            return score
        return score + w_alpha[:, None] * self.pools.extra_s(h, k)

    def _keys(
        self, score: np.ndarray, shares: np.ndarray | None, explore: str | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The key each job minimises over its allowed DCs (and a fallback key)."""
        m, D = score.shape
        if shares is not None:
            # exponential race: argmin Exp(1)/share is distributed ∝ share on any subset
            with self._lock:
                race = self._rng.exponential(1.0, size=(m, D))
            positive = shares > 0
            key = np.full((m, D), np.inf)
            np.divide(race, shares, out=key, where=positive)
            return key, score
        if explore == "epsilon":
            # with probability ε a uniform random key: argmin is uniform on any subset
            with self._lock:
                flip = np.asarray(self._rng.random(m) < self.config.epsilon)
                keys = self._rng.random((m, D))
            return np.where(flip[:, None], keys, score), None
        if explore == "softmax":
            # Gumbel-max: argmin (score − T·G) follows the Boltzmann law on any subset
            with self._lock:
                noise = self._rng.gumbel(size=(m, D))
            return score - self.config.temperature * noise, None
        return score, None

    def _propensity(
        self,
        c: np.ndarray,
        allowed: np.ndarray,
        score: np.ndarray,
        shares: np.ndarray | None,
        explore: str | None,
    ) -> np.ndarray:
        m = len(c)
        out = np.full(m, np.nan)
        placed = c >= 0
        if not placed.any():
            return out
        rows = np.flatnonzero(placed)
        cc = c[placed]
        al = allowed[placed]
        sc = np.where(al, score[placed], np.inf)
        if shares is not None:
            sh = np.where(al, shares[placed], 0.0)
            tot = sh.sum(axis=1)
            p = np.where(tot > 0, sh[np.arange(len(cc)), cc] / np.where(tot > 0, tot, 1.0), 1.0)
        elif explore == "epsilon":
            eps = float(self.config.epsilon)
            greedy = sc.argmin(axis=1)
            size = al.sum(axis=1)
            p = eps / size + np.where(greedy == cc, 1.0 - eps, 0.0)
        else:
            t = float(self.config.temperature)
            z = -(sc - sc.min(axis=1, keepdims=True)) / t
            w = np.exp(z)
            p = w[np.arange(len(cc)), cc] / w.sum(axis=1)
        out[rows] = p
        return out

    def _frame(
        self,
        jobs: pd.DataFrame,
        codes: dict[str, np.ndarray],
        preds: dict[str, np.ndarray],
        choice: np.ndarray,
        score: np.ndarray,
        propensity: np.ndarray,
        service_scored: np.ndarray,
    ) -> pd.DataFrame:
        return _assignment_frame(
            self, jobs, codes, preds, choice, score, propensity, service_scored
        )

    # -- one job at a time (service) -----------------------------------------------------------
    def assign_one(
        self,
        *,
        hour: int,
        area: str,
        query_type: str,
        input_tokens: float,
        energy_kwh: Sequence[float] | np.ndarray,
        service_s: Sequence[float] | np.ndarray,
        output_tokens: float | None = None,
        sla_s: float = 30.0,
    ) -> JobDecision:
        """Place one job now (reserving its capacity), for a service answering one request.

        ``energy_kwh`` and ``service_s`` hold one prediction per DC in scenario order (use the
        p90 values for risk-aware placement).  Exploration follows :attr:`config`; the
        assigner's own seeded generator makes a sequence of calls reproducible.
        """
        try:
            a = self._area_pos[area]
            k = self._type_pos[query_type]
        except KeyError as exc:
            raise AssignError(
                f"unknown area or query type {exc.args[0]!r} for scenario {self.scenario.name!r}"
            ) from exc
        h = self.ledger._hour(hour)
        e = np.asarray(energy_kwh, dtype=float)
        s = np.asarray(service_s, dtype=float)
        D = len(self.dcs)
        if e.shape != (D,) or s.shape != (D,):
            raise AssignError(f"energy_kwh and service_s need one value per dc ({D})")
        out_tok = self.mean_output_tokens[k] if output_tokens is None else float(output_tokens)
        tokens = float(input_tokens) + out_tok
        score = self.score_per_kwh[h] * e
        w_alpha = self.delay_weight * self.alpha[k]
        if self.config.delay_cost == "excess":
            score = score + w_alpha * np.maximum(s - sla_s, 0.0)
        else:
            score = score + w_alpha * s
        if self.guide_per_token is not None:
            score = score + self.guide_per_token[h, k] * tokens
        if self.pools is not None and self.pools.can_queue(h, np.array([k])):
            score = score + w_alpha * self.pools.extra_s(h, np.array([k]))[0]
        ok = self.area_allowed[a]
        sla_ok = ok & (s <= sla_s) if self.config.sla_hard else ok
        ticks = self.ledger.to_ticks(self.units_per_token[k] * tokens)
        explore = self.config.explore
        with self.ledger.lock:
            used, cap = self.ledger.used_ticks[h], self.ledger.capacity_ticks[h]
            allowed = sla_ok & (used + ticks[None, :] <= cap).all(axis=1)
            if not allowed.any():
                reason = (
                    "sovereignty" if not ok.any() else ("sla" if not sla_ok.any() else "capacity")
                )
                return JobDecision(None, -1, h, float("nan"), float("nan"), reason, ticks)
            if explore is None:
                masked = np.where(allowed, score, np.inf)
                d = int(masked.argmin())
                prop = 1.0
            else:
                with self._lock:
                    if explore == "epsilon":
                        flip = self._rng.random() < self.config.epsilon
                        keys = self._rng.random(D) if flip else score
                    else:
                        keys = score - self.config.temperature * self._rng.gumbel(size=D)
                d = int(np.where(allowed, keys, np.inf).argmin())
                prop = float(
                    self._propensity(
                        np.array([d]), allowed[None, :], score[None, :], None, explore
                    )[0]
                )
            used[d] += ticks
            if self.pools is not None:
                self.pools.commit(h, np.array([d]), np.array([k]))
        energy_usd = float(self.energy_usd_per_kwh[h, d] * e[d])
        carbon_kg = float(self.carbon_kg_per_kwh[h, d] * e[d])
        delay = max(s[d] - sla_s, 0.0) if self.config.delay_cost == "excess" else s[d]
        cost = energy_usd + float(self.carbon_usd_per_kwh[h, d] * e[d]) + self.alpha[k] * delay
        return JobDecision(
            self.dcs[d], d, h, float(score[d]), prop, "", ticks, energy_usd, carbon_kg, float(cost)
        )


def assign_greedy(
    scenario: Scenario,
    jobs: pd.DataFrame,
    predictions: xr.Dataset,
    config: AssignConfig | None = None,
    *,
    guide: PlanGuide | PlanResult | None = None,
    ledger: CapacityLedger | None = None,
) -> Assignment:
    """Greedy assignment (plan-guided when ``guide`` carries duals); see the module docs."""
    return GreedyAssigner(scenario, config, guide=_as_guide(guide), ledger=ledger).assign(
        jobs, predictions
    )


def assign_plan_following(
    scenario: Scenario,
    jobs: pd.DataFrame,
    predictions: xr.Dataset,
    plan: PlanGuide | PlanResult | str | Path,
    config: AssignConfig | None = None,
    *,
    ledger: CapacityLedger | None = None,
) -> Assignment:
    """Assign each job to a DC drawn with the plan's shares for its (area, type, hour).

    Draws are seeded (``config.seed``) and restricted to the allowed DCs (capacity, SLA if
    hard, sovereignty), renormalised; jobs whose allowed DCs all have plan share 0 take the
    greedy choice.  The plan's duals are not added to the fallback score.
    """
    guide = _as_guide(plan)
    assert guide is not None
    follow_guide = PlanGuide(
        allocation=guide.allocation, weights=guide.weights, source=guide.source
    )
    return GreedyAssigner(scenario, config, guide=follow_guide, ledger=ledger).assign(
        jobs, predictions, follow=True
    )
