"""``greensched scenario validate|show|synth|build``."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from greensched.cli._app import (
    EXIT_INPUT,
    JsonOption,
    console,
    err_console,
    load_scenario_arg,
    print_json,
    scenario_app,
)


@scenario_app.command("validate")
def scenario_validate(
    directory: Path,
    max_errors: Annotated[int, typer.Option(min=1, help="Report at most this many problems.")]
    = 20,
    json_out: JsonOption = False,
) -> None:
    """Check a scenario directory against the exchange format; report every problem found
    (file, line, column, value, expected), up to --max-errors. Exit 2 when there is one."""
    from greensched.scenario_check import check_scenario_dir

    problems = check_scenario_dir(directory, limit=max_errors)
    if json_out:
        print_json({"directory": str(directory), "ok": not problems,
                    "problems": [str(p) for p in problems]})
    if problems:
        for p in problems:
            err_console.print(f"error: {p}", markup=False, highlight=False, soft_wrap=True)
        if len(problems) > 1:  # one problem stays one line (exit-code contract)
            more = " (the limit; there may be more)" if len(problems) >= max_errors else ""
            err_console.print(f"{len(problems)} problem(s) in {directory}{more}", markup=False)
        raise typer.Exit(EXIT_INPUT)
    if json_out:
        return
    scen = load_scenario_arg(directory)
    sizes = ", ".join(f"{k}={v}" for k, v in scen.sizes().items())
    console.print(f"[green]ok[/green] {directory}: {scen.name!r} ({sizes})")


@scenario_app.command("show")
def scenario_show(
    directory: Annotated[
        Path | None, typer.Argument(help="Omitted = the embedded default.")
    ] = None,
) -> None:
    """Print a scenario's sizes, data centers and demand."""
    scen = load_scenario_arg(directory)
    ds = scen.ds
    desc = textwrap.TextWrapper(width=300, max_lines=1, placeholder=" ...",
                                break_on_hyphens=False, break_long_words=False).fill(
        " ".join(scen.description.split()))
    console.print(f"[bold]{scen.name}[/bold] — {desc}")
    console.print(
        ", ".join(f"{k}: {v}" for k, v in scen.sizes().items())
        + f"; start {scen.start or '-'}; water budget "
        + (f"{scen.water_budget_l:,.0f} l" if scen.water_budget_l is not None else "none")
    )
    t = Table(title="Data centers")
    for col in (
        "dc",
        "name",
        "PUE",
        "price USD/kWh (mean)",
        "carbon kg/kWh (mean)",
        "renewable kW (mean)",
        "grid cap kW (mean)",
    ):
        t.add_column(col, overflow="fold")
    for dc in scen.dcs:
        sel = ds.sel(dc=dc)
        t.add_row(
            dc,
            str(sel["dc_name"].item()),
            f"{float(sel['pue']):.3f}",
            f"{float(sel['price_usd_per_kwh'].mean()):.4f}",
            f"{float(sel['carbon_kg_per_kwh'].mean()):.3f}",
            f"{float(sel['renewable_kw'].mean()):.1f}",
            f"{float(sel['grid_cap_kw'].mean()):.0f}",
        )
    console.print(t)
    q = Table(title="Query types")
    for col in ("query_type", "input tokens", "output tokens", "queries (total)", "Wh/query"):
        q.add_column(col)
    e = scen.energy_kwh_per_query().mean(["dc", "hour"])
    for k in scen.query_types:
        q.add_row(
            k,
            f"{float(ds['input_tokens'].sel(query_type=k)):.0f}",
            f"{float(ds['output_tokens'].sel(query_type=k)):.0f}",
            f"{float(ds['queries'].sel(query_type=k).sum()):,.0f}",
            f"{1000 * float(e.sel(query_type=k)):.3f}",
        )
    console.print(q)


@scenario_app.command("synth")
def scenario_synth(
    out: Annotated[Path, typer.Option(help="Directory to write the scenario into.")],
    dcs: Annotated[int, typer.Option(min=1)] = 4,
    areas: Annotated[int, typer.Option(min=1)] = 3,
    types: Annotated[int, typer.Option(min=1)] = 3,
    hours: Annotated[int, typer.Option(min=1)] = 24,
    seed: int = 0,
) -> None:
    """Write a seeded synthetic scenario of any size."""
    from greensched.synth import synthesize

    scen = synthesize(dcs, areas, types, hours, seed)
    scen.save(out)
    console.print(f"wrote {out} ({scen.name})")


@scenario_app.command("build")
def scenario_build(
    config: Annotated[
        Path, typer.Argument(help="Build configuration (TOML); see docs/scenario-build.md.")
    ],
    out: Annotated[Path, typer.Option(help="Directory to write the scenario into.")],
    days: Annotated[int | None, typer.Option(help="Override the number of days.")] = None,
    start: Annotated[str | None, typer.Option(help="Override the start date (YYYY-MM-DD).")] = None,
) -> None:
    """Build a scenario from real data files described by a TOML config."""
    from greensched.builder import build_from_config

    path = build_from_config(config, out, days=days, start=start)
    console.print(f"wrote {path}")

