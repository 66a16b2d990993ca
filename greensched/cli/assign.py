"""``greensched assign``: place a jobs table with the greedy, plan-guided, plan-following or
batch-IP assigner and write one row per job.

The command line (registered in :mod:`greensched.cli`) calls :func:`assign_command`::

    greensched assign --scenario S --jobs JOBS.csv (--model MODEL_DIR | --coefficients FILE)
                      [--mode greedy|plan|follow|batch] [--plan PLAN_DIR] --out ASSIGN.csv
                      [--explore epsilon|softmax --epsilon E --temperature T] [--seed N]

Output columns: ``job_id, dc, predicted_energy_kwh, predicted_service_s, carbon_kg, cost_usd,
score, propensity, reason`` (``dc`` empty and ``reason`` one of capacity / sla / sovereignty when
a job could not be placed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
import xarray as xr
from rich.table import Table

from greensched.cli._app import (
    JOBS_HELP,
    JsonOption,
    app,
    console,
    native_stdout_to_stderr,
    print_json,
)
from greensched.errors import GreenSchedError
from greensched.jobs import load_jobs
from greensched.scenario import Scenario, load_scenario
from greensched.scheduler.assign import (
    AssignConfig,
    Assignment,
    AssignMode,
    GreedyAssigner,
    PlanGuide,
    predictions_from_coefficients,
)
from greensched.scheduler.plan_loader import plan_guide_for

__all__ = ["MODES", "OUTPUT_COLUMNS", "assign_command", "load_sovereignty"]

#: Modes and what they do.
MODES = {
    AssignMode.GREEDY: "cheapest allowed DC per job, in arrival order",
    AssignMode.PLAN: "greedy plus the plan's shadow prices of capacity and water (needs --plan)",
    AssignMode.FOLLOW: "DCs drawn in proportion to the plan's shares (needs --plan)",
    AssignMode.BATCH: "all jobs placed jointly by a MILP (HiGHS); --plan adds its shadow prices",
}

OUTPUT_COLUMNS = (
    "job_id",
    "dc",
    "predicted_energy_kwh",
    "predicted_service_s",
    "carbon_kg",
    "cost_usd",
    "score",
    "propensity",
    "reason",
)


def assign_command(
    scenario: Path,
    jobs: Path,
    model: Path | None = None,
    coefficients: Path | None = None,
    mode: str = "greedy",
    plan_dir: Path | None = None,
    out: Path = Path("assignment.csv"),
    explore: str | None = None,
    epsilon: float = 0.1,
    temperature: float = 1e-3,
    seed: int = 0,
    *,
    sla_hard: bool = False,
    sovereignty: Path | None = None,
    risk: bool = False,
    time_limit_s: float = 1.0,
) -> Assignment:
    """Assign the jobs of ``jobs`` to data centers of ``scenario`` and write ``out``.

    Parameters
    ----------
    scenario
        Scenario directory (exchange format).
    jobs
        Jobs table (CSV or Parquet; see :mod:`greensched.jobs`).
    model
        Predictor directory: predictions come from
        ``greensched.predictor.load_predictor(model).predict_jobs(jobs, scenario)``.
    coefficients
        A ``coefficients.csv`` to predict from instead (per-query coefficients scaled by the
        jobs' tokens, see :func:`~greensched.scheduler.assign.predictions_from_coefficients`).
        With neither, the scenario's own coefficients (or per-token model) are used.
    mode
        ``greedy``, ``plan`` (plan-guided), ``follow`` (plan-following) or ``batch`` (MILP).
    plan_dir
        Plan directory written by ``greensched plan --out`` (plan.json, allocation.csv and
        duals.csv, which ``PlanResult.write`` adds).  Without duals, plan-guided mode
        re-solves the scenario with the plan's settings to obtain them.
    out
        Output CSV path (written atomically).
    explore, epsilon, temperature, seed
        Exploration for the greedy and plan-guided modes (``epsilon`` or ``softmax``); the seed
        also drives plan-following draws.
    sla_hard, sovereignty, risk
        Hard SLA mask; a JSON file {area: [dc, ...]} or CSV (area, dc) of allowed DCs per
        area; score with p90 predictions.
    time_limit_s
        Batch mode: time budget of the MILP.

    Returns
    -------
    Assignment
        The result (its ``summary()`` gives totals for printing).
    """
    mode_key = AssignMode.parse(mode)
    if model is not None and coefficients is not None:
        raise GreenSchedError("give either --model or --coefficients, not both")
    if mode_key in ("plan", "follow") and plan_dir is None:
        raise GreenSchedError(f"mode {mode_key!r} needs --plan PLAN_DIR (a directory written "
                              "by 'greensched plan --out')")
    if mode_key == "greedy" and plan_dir is not None:
        raise GreenSchedError("--plan is used by --mode plan, follow or batch; with --mode "
                              "greedy it would be ignored")
    if explore is not None and str(explore).lower() not in ("", "none") and mode_key in (
        "follow", "batch"
    ):
        raise GreenSchedError(f"--explore applies to --mode greedy or plan, not {mode_key!r}")
    scen = load_scenario(scenario, coefficients=coefficients)
    table = load_jobs(jobs, scen)
    predictions = _predictions(scen, table, model)
    cfg = AssignConfig(
        sla_hard=sla_hard,
        sovereignty=load_sovereignty(sovereignty) if sovereignty is not None else None,
        risk=risk,
        explore=explore,
        epsilon=epsilon,
        temperature=temperature,
        seed=seed,
    )
    guide = None
    if plan_dir is not None:
        guide = plan_guide_for(scen, plan_dir, need_duals=mode_key in ("plan", "batch"))
    if mode_key == "batch":
        from greensched.scheduler.batch_ip import assign_batch_ip

        result = assign_batch_ip(scen, table, predictions, cfg, guide=guide,
                                 time_limit_s=time_limit_s)
    elif mode_key == "follow":
        assert guide is not None
        if guide.allocation is None:
            raise GreenSchedError(f"{plan_dir}: allocation.csv not found; plan-following needs "
                                  "the plan's shares")
        follow_guide = PlanGuide(allocation=guide.allocation, weights=guide.weights,
                                 source=guide.source)
        result = GreedyAssigner(scen, cfg, guide=follow_guide).assign(table, predictions,
                                                                      follow=True)
    else:
        result = GreedyAssigner(scen, cfg, guide=guide).assign(table, predictions)
    write_assignment(result, out)
    return result


def write_assignment(result: Assignment, out: Path) -> Path:
    """Write :data:`OUTPUT_COLUMNS` of an assignment as CSV (temporary file, then rename)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = result.frame.loc[:, list(OUTPUT_COLUMNS)]
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False, lineterminator="\n")
    tmp.replace(path)
    return path


def _predictions(scen: Scenario, jobs: pd.DataFrame, model: Path | None) -> xr.Dataset:
    if model is None:
        return predictions_from_coefficients(scen, jobs)
    try:
        from greensched.predictor.checkpoint import load_predictor
    except ImportError as exc:
        raise GreenSchedError(
            f"--model {str(model)!r} needs greensched.predictor.load_predictor, which cannot be "
            f"imported here ({exc}); install the predictor (pip install 'greensched[ml]') or "
            "use --coefficients FILE"
        ) from exc
    try:
        predictor = load_predictor(model)
    except GreenSchedError:
        raise
    except (OSError, ValueError) as exc:
        raise GreenSchedError(f"--model {str(model)!r}: cannot load the predictor ({exc})") from exc
    predictions = predictor.predict_jobs(jobs, scen)
    if not isinstance(predictions, xr.Dataset):
        raise GreenSchedError(
            f"the predictor in {str(model)!r} returned {type(predictions).__name__}; expected an "
            "xarray Dataset with dims (job, dc) and variables energy_kwh, service_s"
        )
    return predictions


def load_sovereignty(path: Path) -> dict[str, list[str]]:
    """Allowed DCs per area from JSON ({area: [dc, ...]}) or CSV (columns area, dc).

    In CSV form an area listed with an empty ``dc`` may use no DC at all.
    """
    p = Path(path)
    if not p.is_file():
        raise GreenSchedError(f"{p}: sovereignty file not found")
    if p.suffix.lower() == ".json":
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise GreenSchedError(f"{p}: invalid JSON ({exc})") from exc
        if not isinstance(raw, dict) or not all(
            isinstance(v, list) and all(isinstance(d, str) for d in v) for v in raw.values()
        ):
            raise GreenSchedError(f"{p}: expected an object {{area: [dc, ...]}}")
        return {str(k): list(v) for k, v in raw.items()}
    df = pd.read_csv(p, dtype=str, keep_default_na=False)
    if not {"area", "dc"} <= set(df.columns):
        raise GreenSchedError(f"{p}: a sovereignty CSV needs columns area, dc")
    out: dict[str, list[str]] = {}
    for area, dc in zip(df["area"].str.strip(), df["dc"].str.strip(), strict=True):
        out.setdefault(area, [])
        if dc:
            out[area].append(dc)
    return out


# ----------------------------------------------------------------------------------------------
# typer commands
# ----------------------------------------------------------------------------------------------

@app.command()
def assign(
    scenario: Annotated[Path, typer.Option(help="Scenario directory.")],
    jobs: Annotated[Path, typer.Option(help=JOBS_HELP)],
    out: Annotated[Path, typer.Option(help="Assignment CSV to write.")],
    model: Annotated[Path | None, typer.Option(help="Predictor directory.")] = None,
    coefficients: Annotated[
        Path | None, typer.Option(help="coefficients.csv instead of a predictor.")
    ] = None,
    mode: Annotated[str, typer.Option(help="greedy | plan | follow | batch")] = "greedy",
    plan_dir: Annotated[
        Path | None, typer.Option("--plan", help="Plan directory (greensched plan --out).")
    ] = None,
    explore: Annotated[str | None, typer.Option(help="epsilon | softmax exploration.")] = None,
    epsilon: float = 0.1,
    temperature: float = 1e-3,
    seed: int = 0,
    sla_hard: Annotated[bool, typer.Option(help="Never pick a DC predicted to miss the SLA.")] = (
        False
    ),
    sovereignty: Annotated[
        Path | None, typer.Option(help="Allowed DCs per area (JSON or CSV).")
    ] = None,
    risk: Annotated[bool, typer.Option(help="Score with p90 predictions.")] = False,
    time_limit: Annotated[float, typer.Option(help="Batch IP time limit (s).")] = 1.0,
    json_out: JsonOption = False,
) -> None:
    """Assign jobs to data centers online: greedy, plan-guided, plan-following or batch IP."""

    if (model is None) == (coefficients is None):
        raise GreenSchedError("give exactly one of --model and --coefficients")
    with native_stdout_to_stderr(json_out):
        result = assign_command(scenario, jobs, model, coefficients, mode, plan_dir, out,
                                explore, epsilon, temperature, seed, sla_hard=sla_hard,
                                sovereignty=sovereignty, risk=risk, time_limit_s=time_limit)
    summary = result.summary()
    if json_out:
        print_json({**summary, "out": str(out)})
        return
    table = Table(title=f"Assignment of {summary['jobs']} jobs, mode {summary['mode']}",
                  show_header=False)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4g}")
        elif not isinstance(value, dict):
            table.add_row(key, str(value))
    console.print(table)
    console.print(f"wrote {out}")

