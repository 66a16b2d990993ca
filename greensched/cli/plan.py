"""``greensched plan`` and ``greensched sweep``: the Green-LLM hourly allocation and its sweeps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from greensched.cli._app import (
    JsonOption,
    app,
    err_console,
    load_scenario_arg,
    parse_weights,
    print_json,
    say_console,
)
from greensched.errors import GreenSchedError, InfeasibleError
from greensched.scenario import Scenario
from greensched.scheduler.planner import PlanResult


def _summary_table(result: PlanResult, scen: Scenario) -> Table:
    table = Table(title=f"Plan of {scen.name!r} — {result.mode}, {result.solver}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    obj = result.objective
    for key in ("energy_usd", "carbon_usd", "delay_usd", "total_usd"):
        table.add_row(key.replace("_usd", " cost (USD)"), f"{obj[key]:,.2f}")
    table.add_row("carbon (kg CO2)", f"{result.carbon_kg:,.1f}")
    table.add_row("water (l)", f"{result.water_l:,.1f}")
    if scen.water_budget_l is not None:
        table.add_row("water budget (l)", f"{scen.water_budget_l:,.1f}")
    table.add_row("grid energy (kWh)", f"{result.grid_kwh:,.1f}")
    table.add_row("IT energy (kWh)", f"{result.it_kwh:,.1f}")
    if result.latency:
        lat = result.latency
        table.add_row("delay model", result.delay_model)
        table.add_row("latency (s per query)", f"{lat['latency_s_per_query']:,.4f}")
        table.add_row("queueing (s, total)", f"{lat['queueing_s']:,.1f}")
        table.add_row("decision-dependent share of delay cost", f"{lat['decision_share']:.2%}")
    table.add_row("solve time (s)", f"{result.solve_s:.3f}")
    return table


def _delay_config(
    delay_model: str | None, scenario_dir: Path | None, scen: Scenario
) -> dict[str, Any]:
    """PlanConfig fields of ``--delay-model``; pool slots from a ``fleet.csv`` beside it."""
    fields: dict[str, Any] = {"delay_model": delay_model}
    model = delay_model if delay_model is not None else scen.delay_model
    if model == "per_query" and scenario_dir is not None and (scenario_dir / "fleet.csv").is_file():
        from greensched.eval.twin import Twin
        from greensched.eval.twin_plan import twin_pool_slots

        fields["pool_slots"] = twin_pool_slots(Twin(scen))
    return fields


@app.command()
def plan(
    scenario_dir: Annotated[
        Path | None,
        typer.Argument(help="Scenario directory; omitted = the embedded default scenario."),
    ] = None,
    weights: Annotated[
        str | None, typer.Option(help="Weights E,C,D for energy, carbon, delay (e.g. 0.6,0.2,0.2).")
    ] = None,
    lexicographic: Annotated[
        str | None,
        typer.Option(help="Lexicographic priority order, e.g. energy,carbon,delay."),
    ] = None,
    epsilon: Annotated[float, typer.Option(help="Lexicographic tolerance ε.")] = 0.001,
    preset: Annotated[
        str | None, typer.Option(help="m0 (scenario weights), m1 (energy only), m2 (carbon only).")
    ] = None,
    solver: Annotated[str, typer.Option(help="highs (default) or gurobi.")] = "highs",
    coefficients: Annotated[
        Path | None, typer.Option(help="coefficients.csv with predicted energy and delay.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write plan.json, allocation.csv, dc_hourly.csv.")
    ] = None,
    tables: Annotated[
        str, typer.Option(help="Format of the --out tables: csv (default) or parquet.")
    ] = "csv",
    plot: Annotated[bool, typer.Option(help="Also write the figures into --out.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="Figure format: png, svg or pdf.")] = "png",
    time_limit: Annotated[float | None, typer.Option(help="Time limit per solve (s).")] = None,
    delay_model: Annotated[
        str | None,
        typer.Option(
            "--delay-model",
            help="letter (hour-total delay of the letter) or per_query (latency with congestion);"
            " default: the scenario's [objective] delay_model.",
        ),
    ] = None,
    decompose: Annotated[
        str | None,
        typer.Option(help="hours: solve hour by hour, coupling rows priced (see docs)."),
    ] = None,
    workers: Annotated[int, typer.Option(help="Worker processes with --decompose.")] = 1,
    ray: Annotated[
        str | None, typer.Option(help="Ray cluster ADDRESS, or 'local', with --decompose.")
    ] = None,
    equity: Annotated[
        str | None,
        typer.Option(help="q=2,mu_c=1500,mu_w=60: add the environmental Lq term (docs/equity.md)."),
    ] = None,
    rolling: Annotated[
        bool,
        typer.Option(
            help="Re-plan over a moving window, committing --step hours each (docs/rolling.md);"
            " SCENARIO may be a build config .toml."
        ),
    ] = False,
    horizon: Annotated[int | None, typer.Option(help="--rolling: hours per window (24).")] = None,
    step: Annotated[
        int | None, typer.Option(help="--rolling: hours committed per window (1).")
    ] = None,
    days: Annotated[int | None, typer.Option(help="--rolling: days committed from hour 0.")] = None,
    dc_tz: Annotated[
        str | None,
        typer.Option(
            "--dc-tz",
            help=("--rolling: DC time zones, DC=ZONE,... or ZONE or a build config .toml."),
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Solve the Green-LLM allocation of a scenario and print a summary.

    --json prints the plan.json content (status, mode, objective, carbon_kg, water_l, grid_kwh,
    it_kwh, solver, solve_seconds, phases, ...) plus scenario, out and files (docs/cli-json.md);
    on an infeasible scenario it is printed too (with the diagnosis) before the exit 3.
    """
    from greensched.cli.rolling import check_rolling_options, load_rolling_scenario, run_rolling
    from greensched.scheduler import PlanConfig
    from greensched.scheduler import plan as run_plan

    roll_cfg = check_rolling_options(rolling, horizon, step, days, dc_tz, equity)
    if equity is not None:
        if lexicographic is not None or preset is not None or decompose is not None:
            raise GreenSchedError("--equity works with --weights only (weighted mode)")
        from greensched.cli.equity import run_equity_plan

        run_equity_plan(scenario_dir, equity, weights, out, json_out=json_out)
        return

    modes = sum(v is not None for v in (weights, lexicographic, preset))
    if modes > 1:
        raise GreenSchedError("choose at most one of --weights, --lexicographic and --preset")
    if plot and out is None:
        raise GreenSchedError("--plot needs --out DIR to write the figures into")
    if tables not in ("csv", "parquet"):
        raise GreenSchedError(f"--tables {tables!r} is not known; expected csv or parquet")
    from greensched.plotstyle import parse_format

    fig_format = parse_format(fmt)
    say = say_console(json_out)
    if roll_cfg is not None:
        scen = load_rolling_scenario(scenario_dir, coefficients, days)
    else:
        scen = load_scenario_arg(scenario_dir, coefficients)
    delay = _delay_config(delay_model, scenario_dir, scen)
    if preset is not None:
        cfg = PlanConfig.preset(preset, solver=solver, time_limit_s=time_limit, **delay)
    elif lexicographic is not None:
        cfg = PlanConfig(
            mode="lexicographic",
            order=tuple(lexicographic.split(",")),
            epsilon=epsilon,
            solver=solver,
            time_limit_s=time_limit,
            **delay,
        )
    else:
        w = parse_weights(weights) if weights is not None else None
        cfg = PlanConfig(
            mode="weighted",
            weights=w,
            solver=solver,
            time_limit_s=time_limit,
            **delay,
        )
    if decompose is None and (workers != 1 or ray is not None):
        raise GreenSchedError("--workers and --ray need --decompose hours")
    if roll_cfg is not None:
        run_rolling(
            scen,
            cfg,
            roll_cfg,
            source=scenario_dir,
            decompose=decompose,
            workers=workers,
            ray=ray,
            out=out,
            plot=plot,
            json_out=json_out,
        )
        return
    result: PlanResult
    if decompose is not None:
        from greensched.scheduler.decompose import DecomposeConfig, plan_decomposed

        dcfg = DecomposeConfig(method=decompose, workers=workers, ray_address=ray)
        result = plan_decomposed(scen, cfg, dcfg)
    else:
        result = run_plan(scen, cfg)
    if out is not None:
        result.write(out, tables=tables)
    summary: dict[str, Any] = {**result.to_dict(), "scenario": scen.name, "out": out, "files": []}
    if not result.is_ok:
        if out is not None:
            err_console.print(f"[dim]wrote {out / 'plan.json'} (status and diagnosis)[/dim]")
        if json_out:
            print_json(summary)
        raise InfeasibleError(
            result.message or f"solver ended {result.status.value}", result.diagnosis
        )
    say.print(_summary_table(result, scen))
    if decompose is not None:
        summary["decomposition"] = {
            k: getattr(result, k, None)
            for k in ("method", "engine", "workers", "rounds", "gap_usd", "gap_relative")
        }
        say.print(
            f"method {getattr(result, 'method', '')} ({getattr(result, 'engine', '')}, "
            f"{getattr(result, 'workers', '')} workers, {getattr(result, 'rounds', '')} rounds): "
            f"certified gap {getattr(result, 'gap_usd', float('nan')):.3g} USD "
            f"(relative {getattr(result, 'gap_relative', float('nan')):.2g})"
        )
    if result.phases and result.mode == "lexicographic":
        ph = Table(title="Lexicographic phases")
        for col in ("phase", "objective", "energy (USD)", "carbon (USD)", "delay (USD)"):
            ph.add_column(col, justify="right")
        for p in result.phases:
            ph.add_row(
                str(p["phase"]),
                p["objective"],
                f"{p['energy_usd']:.2f}",
                f"{p['carbon_usd']:.2f}",
                f"{p['delay_usd']:.2f}",
            )
        say.print(ph)
    if out is not None:
        names = ("plan.json", *(f"{t}.{tables}" for t in ("allocation", "dc_hourly", "duals")))
        summary["files"] = [out / n for n in names if (out / n).is_file()]
        say.print(f"wrote {out}/" + ", ".join(names[:3]))
        if plot:
            from greensched.scheduler.plots import plot_plan

            for path in plot_plan(result, scen, out, fmt=fig_format):
                summary["files"].append(path)
                say.print(f"wrote {path}")
    if json_out:
        print_json(summary)


@app.command()
def sweep(
    scenario_dir: Annotated[
        Path | None, typer.Argument(help="Omitted = the embedded default.")
    ] = None,
    param: Annotated[
        str, typer.Option(help="theta | renewables | tau | rho | demand | price")
    ] = "theta",
    scale: Annotated[str, typer.Option(help="START:STOP:STEP (inclusive) or a list a,b,c.")] = (
        "0.1:1.9:0.2"
    ),
    presets: Annotated[str, typer.Option(help="Comma-separated presets (m0,m1,m2).")] = "m0,m1,m2",
    table: Annotated[
        str | None, typer.Option(help="lexicographic | weights: the letter's Tables I / II.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("sweep-out"),
    solver: str = "highs",
    workers: Annotated[int, typer.Option(help="Parallel worker processes (1 = in-process).")] = 1,
    plot: Annotated[bool, typer.Option(help="Write the figures.")] = True,
    delay_model: Annotated[
        str | None,
        typer.Option("--delay-model", help="letter or per_query; default: the scenario's."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="Figure format: png, svg or pdf.")] = "png",
    json_out: JsonOption = False,
) -> None:
    """Sensitivity sweeps and the letter's tables (Section III of Green-LLM).

    --json: {scenario, param (or table), rows (one record per point and preset, or table
    row: the CSV's columns), out, files} (docs/cli-json.md).
    """
    from greensched.plotstyle import parse_format
    from greensched.scenario import DELAY_MODELS
    from greensched.scheduler import sweep as sw

    fig_format = parse_format(fmt)
    say = say_console(json_out)
    scen = load_scenario_arg(scenario_dir)
    if delay_model is not None:
        if delay_model not in DELAY_MODELS:
            raise GreenSchedError(
                f"--delay-model {delay_model!r} is not known; expected one of {DELAY_MODELS}"
            )
        scen.delay_model = delay_model
    out.mkdir(parents=True, exist_ok=True)
    if table is not None:
        frame = sw.run_table(scen, table, solver=solver)
        path = out / f"table_{table}.csv"
        frame.to_csv(path, index=False)
        t = Table(title=f"{table} table (USD; carbon in kg)")
        keys = ["order"] if table == "lexicographic" else ["w_energy", "w_carbon", "w_delay"]
        shown = keys + ["energy_usd", "carbon_usd", "delay_usd", "total_usd", "carbon_kg"]
        for col in shown:
            t.add_column(col.replace("_usd", "").replace("w_", "σ_"), justify="right")
        for row in frame[shown].itertuples(index=False):
            t.add_row(*[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row])
        say.print(t)
        say.print(f"wrote {path}")
        if json_out:
            print_json(
                {"scenario": scen.name, "table": table, "rows": frame, "out": out, "files": [path]}
            )
        return
    scales = sw.parse_scale(scale)
    names = [p.strip() for p in presets.split(",") if p.strip()]
    frame = sw.run_sweep(scen, param, scales, names, solver=solver, workers=workers)
    path = out / f"sweep_{param}.csv"
    frame.to_csv(path, index=False)
    say.print(f"wrote {path} ({len(frame)} rows)")
    files = [path]
    if plot:
        files.append(sw.plot_sweep(frame, param, out, fig_format))
        say.print(f"wrote {files[-1]}")
    if json_out:
        print_json(
            {"scenario": scen.name, "param": param, "rows": frame, "out": out, "files": files}
        )
