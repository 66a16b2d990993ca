"""``greensched scenario validate|show|synth|build``."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from greensched.cli._app import (
    EXIT_INPUT,
    JsonOption,
    console,
    err_console,
    load_scenario_arg,
    print_json,
    say_console,
    scenario_app,
)

if TYPE_CHECKING:
    from greensched.scenario import Scenario


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
    json_out: JsonOption = False,
) -> None:
    """Print a scenario's sizes, data centers and demand.

    --json: {name, description, hours, start, water_budget_l, sizes, dcs: [{dc, name, pue,
    price_usd_per_kwh_mean, carbon_kg_per_kwh_mean, renewable_kw_mean, grid_cap_kw_mean}],
    query_types: [{query_type, input_tokens, output_tokens, queries_total, wh_per_query}]}.
    """
    scen = load_scenario_arg(directory)
    if json_out:
        print_json(_show_summary(scen))
        return
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


def _show_summary(scen: Scenario) -> dict[str, Any]:
    """``scenario show --json``: the scenario's metadata, per-DC means and query types."""
    ds = scen.ds
    e = scen.energy_kwh_per_query().mean(["dc", "hour"])
    dcs = [{"dc": dc, "name": str(ds["dc_name"].sel(dc=dc).item()),
            "pue": float(ds["pue"].sel(dc=dc)),
            **{f"{v}_mean": float(ds[v].sel(dc=dc).mean()) for v in (
                "price_usd_per_kwh", "carbon_kg_per_kwh", "renewable_kw", "grid_cap_kw")}}
           for dc in scen.dcs]
    types = [{"query_type": k, "input_tokens": float(ds["input_tokens"].sel(query_type=k)),
              "output_tokens": float(ds["output_tokens"].sel(query_type=k)),
              "queries_total": float(ds["queries"].sel(query_type=k).sum()),
              "wh_per_query": 1000 * float(e.sel(query_type=k))} for k in scen.query_types]
    return {"name": scen.name, "description": " ".join(scen.description.split()),
            "hours": scen.hours, "start": scen.start, "water_budget_l": scen.water_budget_l,
            "sizes": scen.sizes(), "dcs": dcs, "query_types": types}


@scenario_app.command("synth")
def scenario_synth(
    out: Annotated[Path, typer.Option(help="Directory to write the scenario into.")],
    dcs: Annotated[int, typer.Option(min=1)] = 4,
    areas: Annotated[int, typer.Option(min=1)] = 3,
    types: Annotated[int, typer.Option(min=1)] = 3,
    hours: Annotated[int, typer.Option(min=1)] = 24,
    seed: int = 0,
    json_out: JsonOption = False,
) -> None:
    """Write a seeded synthetic scenario of any size.

    --json: {out, name, sizes, seed}.
    """
    from greensched.synth import synthesize

    scen = synthesize(dcs, areas, types, hours, seed)
    scen.save(out)
    if json_out:
        print_json({"out": out, "name": scen.name, "sizes": scen.sizes(), "seed": seed})
        return
    console.print(f"wrote {out} ({scen.name})")


@scenario_app.command("build")
def scenario_build(
    config: Annotated[
        Path, typer.Argument(help="Build configuration (TOML); see docs/scenario-build.md.")
    ],
    out: Annotated[Path, typer.Option(help="Directory to write the scenario into.")],
    days: Annotated[int | None, typer.Option(help="Override the number of days.")] = None,
    start: Annotated[str | None, typer.Option(help="Override the start date (YYYY-MM-DD).")] = None,
    json_out: JsonOption = False,
) -> None:
    """Build a scenario from real data files described by a TOML config.

    --json: {config, out, name, sizes, start, hours} of the scenario written.
    """
    from greensched.builder import build_from_config

    say = say_console(json_out)
    with say.status(f"building {config}"):
        path = build_from_config(config, out, days=days, start=start)
    if json_out:
        scen = load_scenario_arg(Path(path))
        print_json({"config": config, "out": path, "name": scen.name, "sizes": scen.sizes(),
                    "start": scen.start, "hours": scen.hours})
        return
    console.print(f"wrote {path}")

