"""Drift experiment: does the feedback loop notice a changed world, re-tune, and win back the
carbon the stale model loses?

The experiment is one configuration of the closed loop (:mod:`greensched.feedback.closed_loop`,
``greensched loop``): reproduce with ``greensched feedback experiment --out reports/`` (writes
``drift_experiment.md`` and ``drift_experiment.png``) or :func:`run_drift_experiment`; by default
the service runs in process (:class:`~greensched.feedback.closed_loop.LocalTransport`),
``greensched loop --experiment`` runs the same configuration through the HTTP service.

Setup (all seeded)
==================
* **World**: the digital twin (:mod:`greensched.eval.twin`, noise on) of the embedded default
  scenario (:func:`greensched.defaults.default_scenario`: nine US regions, real hourly carbon
  and prices), default fleet.
* **Initial model v1**: an XGBoost predictor (:class:`~greensched.predictor.xgb.
  XGBoostPredictor`, one thread) trained on a twin dataset (:func:`~greensched.eval.simulate.
  build_dataset`, random placement, every DC's ground truth), registered and promoted.
* **Periods**: period ``p`` serves ``jobs_per_period`` jobs of scenario hour ``p mod 24``
  (:func:`~greensched.eval.traces.jobs_from_demand`).  The current model predicts every job at
  every DC (output lengths known, as in its training data; the DC state it is given is the
  scenario's prices and carbon with the training data's utilisation of that hour), the greedy
  assigner (:class:`~greensched.scheduler.assign.GreedyAssigner`, the scenario's objective
  weights) places the jobs with epsilon-greedy exploration, logging propensities; the twin
  measures them; the outcomes (with the per-DC state the model saw, as ``features``) go into an
  :class:`~greensched.feedback.store.OutcomeStore`; then one cycle of the loop
  (:func:`greensched.feedback.loop.run_once`) checks drift and re-tunes on drift.
* **Change** at period ``change_period``: three DCs get new GPUs that halve the energy per job -
  a documented multiplier ``energy_factor`` on the twin's per-pass energy coefficients
  (``a0, a1, a2, c0`` of :class:`~greensched.eval.twin.Twin`) of those DCs; their time
  coefficients, hence queues and latency, are unchanged - and a **load shift**: the share of
  ``conv-long`` queries triples (jobs drawn with a per-type weight).
* **Comparisons on the same jobs and noise** (common random numbers), greedy without
  exploration: *stale* (v1 for ever), *current* (the loop's promoted model), *oracle* (the
  twin's true noise-free energy and service time of each job at every DC in the current
  world).  Carbon per job is location-based, ``theta[h, d] * PUE[d] * E`` (grid-average carbon
  of the hour, the valuation the assigner scores; on-site renewables would absorb a sample this
  small entirely).
* **Error**: MAPE of a model's predictions at the DC that ran each job, against the twin's
  measurement (``|p - m| / m``), pooled over a period's outcomes.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from greensched.errors import GreenSchedError
from greensched.feedback.closed_loop import (
    LocalTransport,
    LoopConfig,
    LoopResult,
    LoopSetup,
    RunResult,
    Transport,
    prepare_loop,
    run_closed_loop,
)
from greensched.feedback.loop_report import num as _num
from greensched.feedback.loop_report import pct as _pct
from greensched.feedback.loop_report import plot_loop
from greensched.feedback.store import OutcomeStore
from greensched.feedback.world import (
    ENERGY_COEFFICIENTS,
    FAST_XGB,
    T0,
    ServedPeriod,
    _utilization_table,
    changed_twin,
    outcome_records,
    period_jobs,
    prediction_rows,
    serve_period,
    train_initial_model,
)
from greensched.scenario import Scenario

__all__ = [
    "ENERGY_COEFFICIENTS",
    "T0",
    "ExperimentConfig",
    "ExperimentResult",
    "ServedPeriod",
    "_utilization_table",
    "changed_twin",
    "outcome_records",
    "period_jobs",
    "prediction_rows",
    "run_drift_experiment",
    "serve_period",
    "train_initial_model",
]


@dataclass(frozen=True)
class ExperimentConfig:
    """Settings of the drift experiment (see the module docstring).

    ``window`` defaults to two periods of jobs (the drift check judges the latest two periods'
    outcomes of the promoted version), ``retune_window`` to one (the re-tune learns from the
    latest period's outcomes plus the replay data); a candidate must beat the current model's
    holdout score by ``min_improvement``.
    """

    periods: int = 36
    change_period: int = 14
    jobs_per_period: int = 400
    train_jobs: int = 4000
    changed_dcs: tuple[str, ...] = ("us-east1", "us-east4", "us-south1")
    energy_factor: float = 0.5
    load_shift: tuple[tuple[str, float], ...] = (("conv-long", 3.0),)
    epsilon: float = 0.15
    window: int | None = None
    retune_window: int | None = None
    min_improvement: float = 0.05
    xgb: tuple[tuple[str, Any], ...] = FAST_XGB
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.change_period < self.periods:
            raise GreenSchedError(f"need 1 <= change_period < periods, got "
                                  f"{self.change_period!r}, {self.periods!r}")
        self.loop_config()  # the remaining checks

    @classmethod
    def quick(cls, seed: int = 0) -> ExperimentConfig:
        """A small run for tests (about 15-25 s on 2 cores)."""
        return cls(periods=12, change_period=4, jobs_per_period=300, train_jobs=1500,
                   seed=seed)

    @property
    def drift_window(self) -> int:
        return self.window or 2 * self.jobs_per_period

    @property
    def tune_window(self) -> int:
        return self.retune_window or self.jobs_per_period

    def loop_config(self, **over: Any) -> LoopConfig:
        """The closed-loop configuration this experiment is."""
        return LoopConfig(
            periods=self.periods, jobs_per_period=self.jobs_per_period,
            train_jobs=self.train_jobs, drift_period=self.change_period,
            drift_dcs=self.changed_dcs, energy_factor=self.energy_factor,
            load_shift=self.load_shift, epsilon=self.epsilon, window=self.window,
            retune_window=self.retune_window, min_improvement=self.min_improvement,
            xgb=self.xgb, seed=self.seed, **over)


@dataclass
class ExperimentResult(RunResult[ExperimentConfig]):
    """Numbers of the drift experiment; ``loop`` is the closed-loop run it configured."""

    loop: LoopResult | None = None


#: Builds the service a run talks to: (set-up, open store) -> transport.
TransportFactory = Callable[[LoopSetup, OutcomeStore], Transport]


def run_drift_experiment(out_dir: str | Path | None, seed: int = 0, quick: bool = False, *,
                         config: ExperimentConfig | None = None,
                         scenario: Scenario | None = None,
                         work_dir: str | Path | None = None,
                         extra_seeds: Sequence[int] | None = None,
                         transport: TransportFactory | None = None) -> ExperimentResult:
    """Run the drift experiment and (with ``out_dir``) write ``drift_experiment.md`` and
    ``drift_experiment.png`` there.

    Parameters
    ----------
    out_dir
        Folder of the report and plot (created); ``None`` writes nothing.
    seed
        Seed of every draw of the main run (the plot and the per-period table).
    quick
        The small :meth:`ExperimentConfig.quick` run (for tests).
    config
        Explicit settings (overrides ``quick``; its seed is replaced by ``seed``).
    scenario
        Default: :func:`greensched.defaults.default_scenario`.
    work_dir
        Where the outcome store and the registry live (default: a temporary folder, removed).
    extra_seeds
        Seeds of repeat runs summarised in the report's robustness table; default
        ``(seed + 1, seed + 2)`` for the full configuration, none for ``quick`` or a ``config``.
    transport
        How the main run reaches the service (default: in process); repeats run in process.
    """
    t_start = time.perf_counter()
    cfg = config or (ExperimentConfig.quick(seed) if quick else ExperimentConfig(seed=seed))
    cfg = replace(cfg, seed=seed)
    if scenario is None:
        from greensched.defaults import default_scenario

        scenario = default_scenario()
    result = _run(cfg, scenario, work_dir, transport)
    if extra_seeds is None:
        extra_seeds = () if quick or config is not None else (seed + 1, seed + 2)
    for other in extra_seeds:
        rep = _run(replace(cfg, seed=int(other)), scenario, None, None)
        result.robustness.append({"seed": int(other), **rep.summary})
    result.summary["elapsed_total_s"] = time.perf_counter() - t_start
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        assert result.loop is not None
        result.plot_path = plot_loop(result.loop, out / "drift_experiment.png")
        result.report_path = _write_report(result, out / "drift_experiment.md")
    return result


def _run(cfg: ExperimentConfig, scenario: Scenario, work_dir: str | Path | None,
         transport: TransportFactory | None) -> ExperimentResult:
    """One run of the experiment (no files written)."""
    lcfg = cfg.loop_config()
    tmp = Path(tempfile.mkdtemp(prefix="greensched-drift-")) if work_dir is None \
        else Path(work_dir)
    try:
        setup = prepare_loop(lcfg, scenario, tmp)
        with OutcomeStore.open(setup.store_path) as store:
            tr = transport(setup, store) if transport is not None else LocalTransport(
                scenario, setup.registry, store, epsilon=cfg.epsilon, seed=cfg.seed)
            res = run_closed_loop(lcfg, setup, tr)
        return ExperimentResult(cfg, res.periods, res.summary, res.cycles, loop=res)
    finally:
        if work_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------

def _robustness_lines(result: ExperimentResult) -> list[str]:
    if not result.robustness:
        return []
    lines = [
        "## Robustness: the same experiment with other seeds",
        "",
        "New jobs, noise, exploration draws and training data; same world and change.",
        "",
        "| seed | detection delay (periods) | false DRIFT before | promoted at | energy MAPE "
        "stale -> re-tuned (after promotion) | reduction | carbon g/job stale / re-tuned / "
        "oracle | excess recovered |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in [{"seed": result.config.seed, **result.summary}, *result.robustness]:
        lines.append(
            f"| {s['seed']} | {s['detection_delay_periods']} | "
            f"{s['false_alarms_before_change']} | {s['promotions']} | "
            f"{_pct(s.get('error_stale_after'))} -> {_pct(s.get('error_after'))} | "
            f"{_pct(s.get('error_reduction'))} | {_num(s.get('carbon_stale_g'))} / "
            f"{_num(s.get('carbon_current_g'))} / {_num(s.get('carbon_oracle_g'))} | "
            f"{_pct(s.get('carbon_recovered'))} |")
    lines.append("")
    return lines


def _write_report(result: ExperimentResult, path: Path) -> Path:
    s, cfg, per = result.summary, result.config, result.periods
    red = s.get("error_reduction", math.nan)
    claim = "met" if isinstance(red, float) and math.isfinite(red) and red >= 0.10 else \
        "**missed**"
    rec = s.get("carbon_recovered", math.nan)
    args = "--quick " if cfg == replace(ExperimentConfig.quick(cfg.seed)) else ""
    lines = [
        "# Drift experiment: detect, re-tune, recover",
        "",
        f"Reproduce: `greensched feedback experiment {args}--seed {cfg.seed} "
        "--out reports/` (a configuration of `greensched loop`: `feedback/closed_loop.py`; the "
        "loop cycle: `feedback/loop.py`, `feedback/retune.py`). Runtime on the shared 2-core "
        "machine: "
        f"{s['elapsed_s']:.0f} s for the main run, "
        f"{s.get('elapsed_total_s', s['elapsed_s']):.0f} s with the "
        f"{len(result.robustness)} repeat(s) of the robustness table.",
        "",
        "## Setup",
        "",
        f"* World: digital twin of the embedded default scenario (9 US regions), noise on. "
        f"Initial model v1: XGBoost on {cfg.train_jobs} twin jobs (random placement, every "
        f"DC's ground truth); validation MAPE energy {_pct(s['v1_validation_energy_mape'])}, "
        f"service {_pct(s['v1_validation_service_mape'])}.",
        f"* {cfg.periods} periods of {cfg.jobs_per_period} jobs (period p = scenario hour "
        "p mod 24). Each period: the promoted model predicts every job at every DC, the greedy "
        f"assigner places the jobs with epsilon-greedy exploration (epsilon = {cfg.epsilon}), "
        "logging propensities; the twin measures; outcomes are stored; one loop cycle runs "
        f"(drift window: the latest {cfg.drift_window} outcomes of the promoted version; "
        f"re-tune on the latest {cfg.tune_window} outcomes, 20 % of them held out, plus the "
        f"{cfg.train_jobs} rows of v1's training data as replay; a candidate must beat the "
        f"current model's holdout score by {cfg.min_improvement:.0%}; a rejected re-tune is "
        "retried after a window of new outcomes).",
        f"* Change before period {cfg.change_period}: new GPUs at "
        f"{', '.join(cfg.changed_dcs)} multiply the energy of every job there by "
        f"{cfg.energy_factor:g} (the twin's per-pass energy coefficients; latency unchanged), "
        "and the share of "
        + ", ".join(f"`{k}` queries x{v:g}" for k, v in cfg.load_shift) + " (load shift).",
        "* Error: MAPE of a model's energy prediction at the DC that ran each job, pooled over "
        "the outcomes of the periods named. Carbon per job: grid-average (location-based) "
        "theta * PUE * measured energy, for greedy placement without exploration on the same "
        "jobs and noise with the stale v1, the loop's current model, and an oracle that knows "
        "each job's true energy and service time in the changed world.",
        "",
        "## Results",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| energy MAPE of v1 before the change (observed outcomes) | "
        f"{_pct(s['pre_change_energy_mape'])} |",
        f"| drift detected (first DRIFT verdict after the change) | period "
        f"{s['detected_period']} |",
        f"| detection delay | {s['detection_delay_periods']} period(s) = "
        f"{s['detection_delay_jobs']} jobs after the change |",
        f"| false DRIFT verdicts before the change | {s['false_alarms_before_change']} |",
        f"| re-tuned model promoted | period(s) {s['promotions']} |",
        f"| rejected re-tunes (candidate not better) | period(s) {s['rejected_retunes']} |",
        f"| energy MAPE, stale v1, drifted periods (change .. first promotion) | "
        f"{_pct(s.get('error_before'))} |",
        f"| energy MAPE, stale v1, on the outcomes after the promotion | "
        f"{_pct(s.get('error_stale_after'))} |",
        f"| energy MAPE, re-tuned model, same outcomes | {_pct(s.get('error_after'))} |",
        f"| **error reduction by re-tuning** (same outcomes) | **{_pct(red)}** "
        f"(claim >= 10 %: {claim}) |",
        f"| error reduction vs the stale model's error in the drifted periods "
        f"({_pct(s.get('error_before'))} -> {_pct(s.get('error_after'))}; different jobs and "
        f"DCs) | {_pct(s.get('error_reduction_vs_drifted'))} |",
        f"| service-time MAPE stale -> re-tuned (same outcomes) | "
        f"{_pct(s.get('service_error_stale_after'))} -> {_pct(s.get('service_error_after'))} |",
        f"| carbon per job after the promotion: stale greedy | "
        f"{_num(s.get('carbon_stale_g'))} g |",
        f"| carbon per job: re-tuned greedy | {_num(s.get('carbon_current_g'))} g |",
        f"| carbon per job: oracle greedy | {_num(s.get('carbon_oracle_g'))} g |",
        f"| carbon per job: the loop's exploring policy | {_num(s.get('carbon_live_g'))} g |",
        f"| stale model's carbon excess over the oracle | "
        f"{_pct(s.get('carbon_gap_stale_vs_oracle'))} |",
        f"| share of that excess recovered by re-tuning | {_pct(rec)} |",
        "",
        "![error and carbon per period](drift_experiment.png)",
        "",
        *_robustness_lines(result),
        "## Per period",
        "",
        "| period | hour | version | energy MAPE (loop) | energy MAPE (stale) | "
        "error ratio | verdict | DRIFT from | action | carbon g stale / current / oracle |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in per.itertuples(index=False):
        ratio = "-" if r.energy_error_ratio is None or (
            isinstance(r.energy_error_ratio, float) and math.isnan(r.energy_error_ratio)) \
            else f"x{r.energy_error_ratio:.2f}"
        lines.append(
            f"| {r.period}{' *' if r.period == cfg.change_period else ''} | {r.hour} | "
            f"{r.version} | {_pct(r.mape_energy_live)} | {_pct(r.mape_energy_stale)} | "
            f"{ratio} | {r.verdict} | {r.reasons or '-'} | {r.action} | "
            f"{1000 * r.carbon_stale_kg:.4f} / "
            f"{1000 * r.carbon_current_kg:.4f} / {1000 * r.carbon_oracle_kg:.4f} |")
    lines += [
        "",
        "`*` first period of the changed world. Error ratio: the drift check's ratio of the "
        "window's energy error to the baseline (the version's burn-in outcomes once there are "
        "a window of them, else its recorded validation error); DRIFT from x1.5. "
        "\"DRIFT from\" lists the checks that fired: pooled error ratio, PSI of an input "
        "feature, or a DC whose mean measured/predicted ratio is off by >= 20 % far beyond "
        "noise (per-DC calibration check).",
        "",
        "## Reading and limits",
        "",
        "* The stale model over-predicts the changed DCs' energy by 1/"
        f"{cfg.energy_factor:g}; the observed error grows only where jobs actually ran there "
        "(its greedy choices plus exploration), so detection depends on exploration and on "
        "how often the greedy policy already used those DCs.",
        "* The re-tune sees one DC per job. Unobserved DCs get the current model's prediction "
        "shifted by the importance-weighted mean log residual at that DC (direct method plus "
        "an IPS correction, doubly-robust style; `feedback/retune.py`); the measured rows are "
        "resampled by clipped, self-normalised 1/propensity weights.",
        "* In the first changed period the greedy policy of v1 sends no job to the changed DCs; "
        "only exploration (epsilon/9 per DC) reaches them, so a re-tune right at detection "
        "has a handful of outcomes per changed DC and may not beat the current model on the "
        "holdout; the loop retries after a window of new outcomes.",
        "* The greedy objective is the scenario's weighted cost (energy price, carbon price, "
        "SLA excess), not carbon alone: the oracle's carbon is the carbon of the cost-optimal "
        "placement, which in a few hours is higher than the stale placement's.",
        "* Low load: the sample per period is far below the scenario's demand, so queues are "
        "short and effective batches are 1 everywhere; the latency part of the objective "
        "rarely binds. On-site renewables are ignored in the per-job carbon (they would cover "
        "a sample this small).",
        "* The hindsight-best-DC classifier of the re-tuned model is trained on the current "
        "model's own best-DC predictions (the log lacks the objective's prices); the greedy "
        "assigner does not use it.",
        "* The plot and the per-period table are one seed; the numbers move with the seed "
        "(noise, exploration draws, training data) - see the robustness table when present.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
