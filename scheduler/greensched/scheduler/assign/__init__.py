"""Online assignment of individual jobs to data centers: greedy, plan-guided and plan-following.

Every job j (arrival hour h, area a, query type k, tokens n_j = input + output, latency objective
SLA_j) goes to one data center.  The greedy assigner picks, among the DCs allowed for the job, the
one with the lowest score (weighted USD)::

    score(d) = σ_e · c[h,d] · PUE[d] · E[j,d]                     energy bought (USD)
             + σ_c · δ[d] · θ[h,d] · PUE[d] · E[j,d]              carbon priced (USD)
             + σ_d · α_k · max(0, s[j,d] − SLA_j)                 SLA excess (USD)
             + w · (WUE[h,d] / PUE[d] + EWIF[h,d]) · PUE[d] · E[j,d]   water (USD), w ≥ 0
             + Σ_r π[d,r,h] · u[j,r]                               plan-guided only

with E the predicted IT energy (kWh) and s the predicted end-to-end service time (s) of the job at
d, σ the objective weights normalised to sum 1 as in the planner (default: the scenario's), α_k the
query type's ``delay_penalty_usd_per_s`` (configurable), w a water price in USD per litre
(:attr:`AssignConfig.water_price_usd_per_l`, plus the plan's water shadow price in plan-guided
mode), u[j,r] = units_per_token[k,r] · n_j the job's resource units and π[d,r,h] = −dual ≥ 0 the
plan's shadow price of the capacity row (USD per unit; planner duals are ∂objective/∂rhs, ≤ 0 when
binding).  Energy is valued as if bought from the grid: on-site renewables are a plan-level effect.

A DC is *allowed* for a job when

* it has room this hour: u[j,r] ≤ remaining[h,d,r] for every resource r (exact bookkeeping in
  integer ticks, see :class:`CapacityLedger`);
* with ``sla_hard``, s[j,d] ≤ SLA_j;
* the job's area lists it in the data-sovereignty map (areas not in the map may use every DC).

Jobs that no DC can take get ``dc = ""`` and a ``reason``: ``"sovereignty"`` (the area's list is
empty of usable DCs), ``"sla"`` (no allowed DC meets the SLA in hard mode) or ``"capacity"``.

Semantics are those of a sequential loop over jobs in arrival order (ties broken by table order):
each job takes its best allowed DC given what earlier jobs of the same hour reserved.  The
implementation is vectorised and exact: per hour it scores all jobs at once, lets every job take
its best DC, finds the first job whose DC would overflow (per-DC cumulative sums), commits the
jobs before it, re-decides that job alone, and repeats on a window that adapts to how far the
previous round got.  Remaining capacity only shrinks within an hour, so a DC too full for a job at
the start of a round stays too full; and the chosen DC is the minimum of a key over the allowed
set, which does not change when DCs other than the chosen one drop out.  Exploration and
plan-following are written as such "argmin of a key" rules too (ε-greedy: a random key with
probability ε; softmax: score − T·Gumbel noise; plan-following: an exponential race
Exp(1)/fraction), so the same exact engine serves them.  Propensities (the probability of the
chosen DC under the policy, given the DCs allowed at the job's turn) are recorded per job.

Predictions are an :class:`xarray.Dataset` with dims ``(job, dc)`` and variables ``energy_kwh``
and ``service_s`` (optionally ``energy_kwh_p90``, ``service_s_p90`` for the risk-aware mode, which
scores and checks SLAs with the p90 values); ``job`` labels are the jobs' ``job_id``.
:func:`predictions_from_coefficients` builds them from the scenario's per-query coefficients.
"""

from __future__ import annotations

# Every name of the former single module, private helpers included (the batch IP, benchmarks
# and tests import them), is importable from here, so importers need no change.
from greensched.scheduler.assign.config import _EXPLORE as _EXPLORE
from greensched.scheduler.assign.config import _OBJECTIVES as _OBJECTIVES
from greensched.scheduler.assign.config import (
    ASSIGNMENT_COLUMNS,
    REASONS,
    AssignConfig,
    AssignError,
    AssignMode,
)
from greensched.scheduler.assign.config import _normalise_weights as _normalise_weights
from greensched.scheduler.assign.engine import _allowed_at_turn as _allowed_at_turn
from greensched.scheduler.assign.engine import _choose as _choose
from greensched.scheduler.assign.engine import _commit_prefix as _commit_prefix
from greensched.scheduler.assign.engine import _engine_hour as _engine_hour
from greensched.scheduler.assign.evaluation import _model_costs as _model_costs
from greensched.scheduler.assign.evaluation import evaluate_assignment, sample_jobs_from_demand
from greensched.scheduler.assign.greedy import (
    GreedyAssigner,
    assign_greedy,
    assign_plan_following,
)
from greensched.scheduler.assign.guide import PlanGuide, write_plan_duals
from greensched.scheduler.assign.guide import _as_guide as _as_guide
from greensched.scheduler.assign.inputs import (
    CoefficientTable,
    job_usage_units,
    predictions_from_coefficients,
)
from greensched.scheduler.assign.inputs import _ensure_valid as _ensure_valid
from greensched.scheduler.assign.inputs import _job_codes as _job_codes
from greensched.scheduler.assign.inputs import _prediction_arrays as _prediction_arrays
from greensched.scheduler.assign.inputs import _type_tokens as _type_tokens
from greensched.scheduler.assign.ledger import CapacityLedger
from greensched.scheduler.assign.results import (
    Assignment,
    JobDecision,
    PreparedBatch,
    assignment_columns,
    reason_codes,
)
from greensched.scheduler.assign.results import _assignment_frame as _assignment_frame
from greensched.scheduler.assign.results import _reasons as _reasons

__all__ = [
    "ASSIGNMENT_COLUMNS",
    "REASONS",
    "AssignConfig",
    "AssignError",
    "AssignMode",
    "Assignment",
    "CapacityLedger",
    "CoefficientTable",
    "GreedyAssigner",
    "JobDecision",
    "PlanGuide",
    "PreparedBatch",
    "assign_greedy",
    "assign_plan_following",
    "assignment_columns",
    "evaluate_assignment",
    "job_usage_units",
    "predictions_from_coefficients",
    "reason_codes",
    "sample_jobs_from_demand",
    "write_plan_duals",
]
