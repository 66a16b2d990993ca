"""``greensched equity``: equity-aware load balancing (SE-GLB), its online form and experiment.

Subcommands: ``solve`` (the four algorithms and the Table 1 layout), ``online`` (dual mirror
descent vs the offline optimum), ``plan`` (the Green-LLM plan with the environmental Lq term,
the same as ``greensched plan --equity``) and ``experiment`` (the report's runs).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from greensched.cli._app import (
    JsonOption,
    app,
    console,
    load_scenario_arg,
    parse_weights,
    print_json,
    say_console,
)
from greensched.errors import GreenSchedError, InfeasibleError

equity_app = typer.Typer(
    no_args_is_help=True,
    help="Equity-aware load balancing (SE-GLB): Table 1, online regret, equity plans.",
)
app.add_typer(equity_app, name="equity")

TEN = "ten-locations"
DATA = Path("../shared/data")


def _problem(scenario: str, data: Path, hours: int, start: str, base: float) -> Any:
    """``ten-locations`` (built from the shared data), ``default`` or a scenario directory."""
    if scenario == TEN:
        from greensched.eval.equity_scenario import ten_location_problem

        if not data.is_dir():
            raise GreenSchedError(f"--data {str(data)!r}: not a directory (../shared/data)")
        return ten_location_problem(data, hours=hours, start=start, base_requests_per_h=base)
    from greensched.scheduler.equity.plan_equity import problem_from_scenario

    path = None if scenario == "default" else Path(scenario)
    return problem_from_scenario(load_scenario_arg(path))


def _fmt(v: object) -> str:
    f = float(v)  # type: ignore[arg-type]
    if math.isnan(f):
        return "–"
    return f"{f:,.3f}"


def _print_table(df: Any, title: str, say: Any = console) -> None:
    table = Table(title=title)
    table.add_column("algorithm")
    for col in df.columns:
        table.add_column(str(col), justify="right")
    for idx, row in df.iterrows():
        table.add_row(str(idx), *(_fmt(v) for v in row))
    say.print(table)


ScenarioArg = Annotated[
    str,
    typer.Argument(
        help="'ten-locations' (the paper's 10 locations, built from --data), 'default' (the "
        "embedded Green-LLM day) or a scenario directory."
    ),
]


@equity_app.command("solve")
def solve(
    scenario: ScenarioArg = TEN,
    algorithm: Annotated[
        str, typer.Option(help="cost-glb, all-glb, e-glb, se-glb or all (comma list allowed).")
    ] = "all",
    q: Annotated[
        str, typer.Option(help="Lq exponent of E-GLB / SE-GLB: number >= 1 or inf.")
    ] = "2",
    mu_s: Annotated[float, typer.Option(help="Social-term weight μ_s (USD).")] = 5000.0,
    mu_c: Annotated[float, typer.Option(help="Carbon price μ_c (USD per t).")] = 1500.0,
    mu_w: Annotated[float, typer.Option(help="Water price μ_w (USD per m³).")] = 60.0,
    env_form: Annotated[str, typer.Option(help="separate (eGLB) or combined (eq. 3).")] = (
        "separate"
    ),
    mean_scaled: Annotated[
        bool, typer.Option(help="Power-mean Lq terms (q = 1 average, q = ∞ max).")
    ] = True,
    hours: Annotated[int, typer.Option(help="Horizon (ten-locations).")] = 24,
    start: Annotated[str, typer.Option(help="First hour, UTC (ten-locations).")] = "2024-03-24",
    base: Annotated[float, typer.Option(help="Requests per hour per region.")] = 100_000.0,
    data: Annotated[Path, typer.Option(help="Shared data directory.")] = DATA,
    out: Annotated[
        Path | None, typer.Option(help="Write table1.csv, results.json (and --plot figures).")
    ] = None,
    plot: Annotated[bool, typer.Option(help="Write the per_region figure into --out.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="Figure format: png, svg or pdf.")] = "png",
    json_out: JsonOption = False,
) -> None:
    """Solve the four algorithms and print the Table 1 layout.

    --json: {hours, locations, regions, q, results: {algorithm: {status, solver, solve_s,
    components, ...}}, table1: [{algorithm, ...Table 1 columns}], out, files}.
    """
    from greensched.scheduler.equity.algorithms import ALGORITHMS, run_algorithms, table1
    from greensched.scheduler.equity.problem import parse_q

    parse_q(q)  # a bad --q fails before the data are read
    if plot and out is None:
        raise GreenSchedError("--plot needs --out DIR to write the figures into")
    algs = (
        ALGORITHMS
        if algorithm == "all"
        else tuple(a.strip() for a in algorithm.split(",") if a.strip())
    )
    from greensched.plotstyle import parse_format

    fig_format = parse_format(fmt)
    say = say_console(json_out)
    prob = _problem(scenario, data, hours, start, base)
    res = run_algorithms(
        prob,
        algs,
        q=q,
        mu_s_usd=mu_s,
        mu_c_usd_per_t=mu_c,
        mu_w_usd_per_m3=mu_w,
        env_form=env_form,
        mean_scaled=mean_scaled,
    )
    bad = [f"{k}: {r.status}" for k, r in res.items() if not r.is_ok]
    if bad:
        raise InfeasibleError("SE-GLB solve failed (" + "; ".join(bad) + ")")
    t1 = table1(prob, res)
    _print_table(t1, f"Table 1 layout — {len(prob.hours)} h, q = {q}", say)
    timing = Table(title="Objective (USD) and solve time")
    for col in ("algorithm", "solver", "energy", "social", "environmental", "moving", "total", "s"):
        timing.add_column(col, justify="right")
    for name, r in res.items():
        c = r.components
        timing.add_row(
            name,
            r.solver,
            *(
                f"{c[k]:,.1f}"
                for k in (
                    "energy_usd",
                    "social_usd",
                    "environmental_usd",
                    "moving_usd",
                    "objective_usd",
                )
            ),
            f"{r.solve_s:.2f}",
        )
    say.print(timing)
    files: list[Path] = []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        t1.to_csv(out / "table1.csv")
        body = {"notes": prob.notes, "results": {k: r.to_dict() for k, r in res.items()}}
        (out / "results.json").write_text(json.dumps(body, indent=1, sort_keys=True), "utf-8")
        files += [out / "table1.csv", out / "results.json"]
        say.print(f"wrote {out / 'table1.csv'}, {out / 'results.json'}")
        if plot:
            from greensched.scheduler.equity.plots import plot_per_region

            files.append(plot_per_region(prob, res, out / "per_region", fmt=fig_format))
            say.print(f"wrote {files[-1]}")
    if json_out:
        print_json({"hours": len(prob.hours), "locations": list(prob.dcs),
                    "regions": list(prob.regions), "q": q,
                    "results": {k: r.to_dict() for k, r in res.items()},
                    "table1": t1.rename_axis("algorithm"), "out": out, "files": files})


@equity_app.command("online")
def online(
    scenario: ScenarioArg = TEN,
    q: Annotated[str, typer.Option(help="Lq exponent (social and environmental).")] = "2",
    eta: Annotated[float, typer.Option(help="Dual step scale (0 = no duals).")] = 1.0,
    mu_s: Annotated[float, typer.Option(help="Social-term weight μ_s (USD).")] = 5000.0,
    mu_c: Annotated[float, typer.Option(help="Carbon price μ_c (USD per t).")] = 1500.0,
    mu_w: Annotated[float, typer.Option(help="Water price μ_w (USD per m³).")] = 60.0,
    hours: Annotated[int, typer.Option(help="Horizon (ten-locations).")] = 24,
    start: Annotated[str, typer.Option(help="First hour, UTC (ten-locations).")] = "2024-03-24",
    base: Annotated[float, typer.Option(help="Requests per hour per region.")] = 100_000.0,
    data: Annotated[Path, typer.Option(help="Shared data directory.")] = DATA,
    json_out: JsonOption = False,
) -> None:
    """Run online SE-GLB (dual mirror descent) hour by hour and compare with the offline optimum.

    --json: {hours, q, eta, components, offline_objective_usd, regret_usd, regret_ratio,
    solve_s, config}.
    """
    from greensched.scheduler.equity.algorithms import algorithm_config
    from greensched.scheduler.equity.online import solve_online
    from greensched.scheduler.equity.problem import parse_q

    parse_q(q)
    prob = _problem(scenario, data, hours, start, base)
    cfg = algorithm_config(
        "se-glb",
        q=q,
        mu_s_usd=mu_s,
        mu_c_usd_per_t=mu_c,
        mu_w_usd_per_m3=mu_w,
        env_form="separate",
    )
    say = say_console(json_out)
    with say.status(f"online SE-GLB over {len(prob.hours)} hours"):
        res = solve_online(prob, cfg, eta=eta)
    if json_out:
        print_json({**res.to_dict(), "hours": len(prob.hours), "q": q})
        return
    table = Table(title=f"Online SE-GLB (q = {q}, η = {eta:g}) vs offline")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("online objective (USD)", f"{res.components['objective_usd']:,.2f}")
    if res.offline is not None and res.offline.is_ok:
        table.add_row("offline optimum (USD)", f"{res.offline.objective_usd:,.2f}")
    table.add_row("regret (USD)", f"{res.regret_usd:,.2f}")
    table.add_row("regret (%)", f"{100 * res.regret_ratio:.3f}")
    table.add_row("seconds", f"{res.solve_s:.1f}")
    say.print(table)


@equity_app.command("plan")
def equity_plan(
    scenario_dir: Annotated[
        Path | None, typer.Argument(help="Scenario directory; omitted = the embedded default.")
    ] = None,
    equity: Annotated[str, typer.Option(help="q=2,mu_c=1500,mu_w=60 (any subset).")] = "q=2",
    weights: Annotated[
        str | None, typer.Option(help="Weights E,C,D (default: the scenario's).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write plan.json, allocation.csv, equity_by_dc.csv.")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """The Green-LLM plan with the environmental Lq term over data centers.

    --json: {scenario, status, q, weights, solver, solve_s, objective, per_dc: [{dc, ...}],
    message, out}.
    """
    run_equity_plan(scenario_dir, equity, weights, out, json_out=json_out)


def run_equity_plan(
    scenario_dir: Path | None, equity: str, weights: str | None, out: Path | None,
    *, json_out: bool = False,
) -> None:
    """Run, print and write an equity plan (``greensched equity plan`` and ``plan --equity``)."""
    from greensched.scheduler.equity.plan_equity import parse_equity_option, plan_with_equity

    option = parse_equity_option(equity)
    scen = load_scenario_arg(scenario_dir)
    w = parse_weights(weights) if weights is not None else None
    res = plan_with_equity(scen, option, w)
    if out is not None:
        res.write(out)
    say = say_console(json_out)
    if json_out:
        print_json({"scenario": scen.name, "status": res.status, "q": option.q,
                    "weights": list(res.weights), "solver": res.solver, "solve_s": res.solve_s,
                    "objective": res.objective, "message": res.message, "out": out,
                    "per_dc": res.per_dc.rename_axis("dc") if res.per_dc is not None else None})
    if not res.is_ok:
        raise InfeasibleError(res.message or f"solver ended {res.status}")
    table = Table(title=f"Equity plan of {scen.name!r} — q = {option.q:g}, {res.solver}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, value in res.objective.items():
        table.add_row(key.replace("_usd", " (USD)"), f"{value:,.3f}")
    table.add_row("solve time (s)", f"{res.solve_s:.2f}")
    say.print(table)
    if res.per_dc is not None:
        per = Table(title="Per data center")
        per.add_column("dc")
        for col in res.per_dc.columns:
            per.add_column(col, justify="right")
        for dc, row in res.per_dc.iterrows():
            per.add_row(str(dc), *(f"{v:,.4f}" for v in row))
        say.print(per)
    if out is not None:
        say.print(f"wrote {out}/plan.json, allocation.csv, equity_by_dc.csv")


@equity_app.command("experiment")
def experiment(
    out: Annotated[Path, typer.Option(help="Report directory.")] = Path("reports"),
    days: Annotated[int, typer.Option(help="Length of the long runs.")] = 18,
    quick: Annotated[bool, typer.Option(help="24 h parts only (about a minute).")] = False,
    json_out: JsonOption = False,
) -> None:
    """Run the report's experiment (Table 1, frontier, online regret, solve times).

    --json: {out, report, summary} (summary: the numbers of equity_results.json).
    """
    from greensched.eval.equity_experiment import run_experiment

    say = say_console(json_out)
    with say.status("SE-GLB experiment"):
        summary = run_experiment(out, days=days, quick=quick)
    report = out / "equity_results.md"
    if json_out:
        print_json({"out": out, "report": report, "summary": summary})
        return
    say.print(f"wrote {report} and figures")
