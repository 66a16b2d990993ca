"""Command body of ``greensched simulate``.

``greensched simulate SCENARIO_DIR (--jobs N | --trace FILE) --policy plan|greedy|nearest|random
--out DIR [--seed S] [--no-noise] [--dataset OUT.parquet] [--fleet FLEET.csv]`` runs jobs through
the digital twin (:mod:`greensched.eval.simulate`) and writes

* ``DIR/outcomes.csv`` — one row per job (:data:`~greensched.eval.simulate.OUTCOME_COLUMNS`);
* ``DIR/totals.json`` — the totals (sorted keys);
* ``DIR/fleet.csv`` — the fleet used, with ``auto`` replicas resolved;
* with ``--dataset``, the predictor training table of ``docs/dataset-format.md``.

Jobs: ``--jobs N`` draws N jobs from the scenario's demand (:func:`~greensched.eval.traces.
jobs_from_demand`); ``--trace FILE`` turns an Azure trace (a ``..._code.csv`` / ``..._conv.csv``
file or a directory holding both) into a stream following the scenario's demand
(:func:`~greensched.eval.traces.jobs_from_traces`), or reads a jobs table when the file has a
``job_id`` column.  The same inputs and seed give byte-identical files.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from greensched.cli._app import (
    JsonOption,
    app,
    console,
    err_console,
    print_json,
)
from greensched.errors import GreenSchedError
from greensched.eval.fleet import fleet_for
from greensched.eval.simulate import (
    MODEL_POLICY,
    POLICIES,
    build_dataset,
    run_simulation,
    write_dataset,
)
from greensched.eval.traces import jobs_from_demand, jobs_from_traces, load_traces
from greensched.eval.twin import Twin
from greensched.util import jsonable

__all__ = ["simulate_command"]


def _scenario(scenario_dir: Path | None):  # type: ignore[no-untyped-def]
    if scenario_dir is None:
        from greensched.defaults import default_scenario

        return default_scenario()
    from greensched.scenario import load_scenario

    return load_scenario(scenario_dir)


def _is_jobs_table(path: Path) -> bool:
    if not path.is_file() or path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        return False
    if path.suffix.lower() != ".csv":
        return True
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
    return "job_id" in [c.strip() for c in header.split(",")]




def _load_model(path: Path) -> tuple[Any, str]:
    """A saved predictor (or a registry's promoted version) and the version name to record."""
    from greensched.predictor.checkpoint import load_predictor

    path = Path(path)
    if (path / "versions").is_dir() and not (path / "config.json").is_file():
        from greensched.feedback.models import require_current
        from greensched.feedback.registry import ModelRegistry

        reg = ModelRegistry(path)
        version = require_current(reg)
        return load_predictor(reg.path(version)), version
    info = path / "registry.json"
    version = json.loads(info.read_text(encoding="utf-8"))["version"] if info.is_file() \
        else path.name
    return load_predictor(path), str(version)


def simulate_command(
    scenario_dir: Path | None,
    jobs: int | None,
    trace: Path | None,
    policy: str,
    out: Path | None,
    dataset: Path | None,
    seed: int,
    noise: bool,
    fleet: Path | None,
    *,
    model: Path | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run ``greensched simulate``; returns the totals.

    ``model`` (policy ``model``): a saved predictor directory or a model registry root (its
    promoted version); the jobs are placed greedily on its predictions, which the outcomes
    record with the version name.

    Raises
    ------
    GreenSchedError
        Neither or both of ``jobs`` / ``trace``, an unknown policy, a bad scenario
        (:class:`~greensched.errors.ScenarioError`), fleet table (``ScenarioError`` with file,
        line, column) or trace file (:class:`~greensched.errors.DataFileError` with file, line,
        column), or an infeasible plan (:class:`~greensched.errors.InfeasibleError`).
    """
    console = console or Console()
    if (jobs is None) == (trace is None):
        raise GreenSchedError("give exactly one of --jobs N and --trace FILE")
    if policy not in (*POLICIES, MODEL_POLICY):
        raise GreenSchedError(f"--policy {policy!r} is not known; expected one of "
                              f"{', '.join((*POLICIES, MODEL_POLICY))}")
    if (policy == MODEL_POLICY) != (model is not None):
        raise GreenSchedError("--policy model places jobs on a trained predictor's predictions: "
                              "give it with --model DIR (a saved model or a registry), and "
                              "--model only with --policy model")
    if jobs is not None and (isinstance(jobs, bool) or jobs < 1):
        raise GreenSchedError(f"--jobs must be an integer >= 1, got {jobs!r}")
    if isinstance(seed, bool) or seed < 0:
        raise GreenSchedError(f"--seed must be an integer >= 0, got {seed!r}")
    t0 = time.perf_counter()
    scen = _scenario(scenario_dir)
    fl = fleet_for(scen, fleet)
    twin = Twin(scen, fl)
    if jobs is not None:
        table = jobs_from_demand(scen, int(jobs), seed=seed)
        source = f"{jobs} jobs drawn from the demand"
    else:
        assert trace is not None
        if _is_jobs_table(Path(trace)):
            from greensched.jobs import load_jobs

            table = load_jobs(trace, scen)
            source = f"jobs table {trace}"
        else:
            table = jobs_from_traces(scen, load_traces(trace), seed=seed)
            source = f"trace {trace}"
    t_jobs = time.perf_counter()
    predictor, version = _load_model(model) if model is not None else (None, None)
    sim = run_simulation(scen, table, policy, seed, noise, twin=twin, all_dcs=dataset is not None,
                         predictor=predictor, model_version=version)
    t_sim = time.perf_counter()
    totals = dict(sim.totals)
    written: list[Path] = []
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        sim.outcomes.to_csv(out / "outcomes.csv", index=False, lineterminator="\n")
        (out / "totals.json").write_text(
            json.dumps(jsonable(totals), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        twin.fleet_.save(out / "fleet.csv")
        written += [out / "outcomes.csv", out / "totals.json", out / "fleet.csv"]
    if dataset is not None:
        df = build_dataset(scen, table, seed, noise, simulation=sim)
        written.append(write_dataset(df, dataset))
    console.print(_summary(scen.name, source, totals, t_jobs - t0, t_sim - t_jobs))
    for path in written:
        console.print(f"wrote {path}")
    return totals


def _summary(name: str, source: str, totals: dict[str, Any], gen_s: float,
             sim_s: float) -> Table:
    table = Table(title=f"Twin simulation of {name!r} — policy {totals['policy']}, "
                        f"seed {totals['seed']}, noise {'on' if totals['noise'] else 'off'}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rate = totals["jobs"] / sim_s if sim_s > 0 else float("nan")
    rows = [
        ("jobs", f"{totals['jobs']:,} ({source})"),
        ("IT energy (kWh)", f"{totals['it_kwh']:,.3f}"),
        ("grid energy (kWh)", f"{totals['grid_kwh']:,.3f}"),
        ("grid shortfall (kWh)", f"{totals['grid_shortfall_kwh']:,.3f}"),
        ("carbon (kg CO2)", f"{totals['carbon_kg']:,.3f}"),
        ("water (l)", f"{totals['water_l']:,.2f}"),
        ("energy cost (USD)", f"{totals['energy_usd']:,.4f}"),
        ("carbon cost (USD)", f"{totals['carbon_usd']:,.4f}"),
        ("latency (s per query)", f"{totals['latency_s_per_query']:,.3f}"),
        ("delay cost (USD)", f"{totals['delay_cost_usd']:,.2f}"),
        ("SLA penalty (USD)", f"{totals['sla_penalty_usd']:,.2f}"),
        ("SLA met", f"{100 * totals['sla_met_fraction']:.2f} %"),
        ("service time mean / p95 / p99 (s)",
         f"{totals['service_s_mean']:.2f} / {totals['service_s_p95']:.2f} / "
         f"{totals['service_s_p99']:.2f}"),
        ("queueing wait mean (s)", f"{totals['wait_s_mean']:.3f}"),
    ]
    if "slot_utilization_max" in totals:
        rows.append(("peak slot utilisation", f"{totals['slot_utilization_max']:.3f}"))
    rows.append(("job generation / simulation (s)", f"{gen_s:.2f} / {sim_s:.2f} "
                                                     f"({rate:,.0f} jobs/s)"))
    for key, value in rows:
        table.add_row(key, value)
    return table


# ----------------------------------------------------------------------------------------------
# typer commands
# ----------------------------------------------------------------------------------------------

@app.command()
def simulate(
    scenario_dir: Annotated[
        Path | None, typer.Argument(help="Omitted = the embedded default.")
    ] = None,
    jobs: Annotated[
        int | None, typer.Option(help="Draw N jobs from the scenario's demand.")
    ] = None,
    trace: Annotated[
        Path | None, typer.Option(help="Azure trace file or directory, or a jobs table.")
    ] = None,
    policy: Annotated[str, typer.Option(
        help="plan | greedy | nearest | random | model (greedy on --model's predictions)")
    ] = "plan",
    model: Annotated[Path | None, typer.Option(
        help="For --policy model: a saved predictor or a model registry (its current version)."
    )] = None,
    out: Annotated[Path | None, typer.Option(help="Write outcomes.csv and totals.json.")] = None,
    dataset: Annotated[
        Path | None, typer.Option(help="Also write the predictor's training set (Parquet).")
    ] = None,
    seed: int = 0,
    noise: Annotated[bool, typer.Option(help="Seeded measurement noise (--no-noise: off).")] = True,
    fleet: Annotated[
        Path | None, typer.Option(help="fleet.csv (model, GPU, replicas per DC).")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Run jobs through a policy on the digital twin; per-job outcomes and totals."""

    totals = simulate_command(scenario_dir, jobs, trace, policy, out, dataset, seed, noise,
                              fleet, model=model, console=err_console if json_out else console)
    if json_out:
        print_json(jsonable(totals))

