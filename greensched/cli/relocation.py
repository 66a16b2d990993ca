"""``greensched relocation``: feasibility masks, the energy–latency frontier and its metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from greensched.cli._app import (
    JsonOption,
    app,
    err_console,
    load_scenario_arg,
    print_json,
    say_console,
)
from greensched.errors import GreenSchedError
from greensched.scenario import Scenario


def _scenario(path: Path | None, coefficients: Path | None) -> Scenario:
    """A scenario directory, a build configuration (``.toml``), or the embedded default."""
    if path is not None and path.suffix == ".toml" and path.is_file():
        from greensched.builder import build_scenario

        if coefficients is not None:
            raise GreenSchedError(
                f"--coefficients needs a scenario directory, not the build configuration {path}"
            )
        return build_scenario(path)
    return load_scenario_arg(path, coefficients)


def _fmt(v: object, digits: int = 3) -> str:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(v)
    if f != f:
        return "–"
    if f == float("inf"):
        return "∞"
    return f"{f:,.{digits}f}"


@app.command("relocation")
def relocation(
    classes: Annotated[
        Path, typer.Option("--classes", help="Workload classes TOML (docs/relocation.md).")
    ],
    out: Annotated[Path, typer.Option(help="Directory for the tables and figures.")],
    coefficients: Annotated[
        Path | None,
        typer.Option(help="coefficients.csv with predicted energy and service time per query."),
    ] = None,
    scenario_dir: Annotated[
        Path | None,
        typer.Argument(
            help="Scenario directory or build configuration (.toml); omitted = the embedded "
            "default scenario."
        ),
    ] = None,
    plot: Annotated[bool, typer.Option(help="Write the frontier and layers figures.")] = True,
    fmt: Annotated[str, typer.Option("--format", help="Figure format: png, svg or pdf.")] = "png",
    json_out: JsonOption = False,
) -> None:
    """Where each workload class may run, what relaxing its latency budget saves, and when
    moving stops paying (masks, frontier, EROL, CROL, RID, break-even, layers).

    --json: {scenario, classes, summary (summary.json: rid_all, layer_share_all, declared,
    sweep, ...), metrics: [one record per class, the metrics.csv columns], out, files}.
    """
    from greensched.plotstyle import parse_format
    from greensched.scheduler.relocation import analyse, load_classes

    fig_format = parse_format(fmt)
    say = say_console(json_out)
    scen = _scenario(scenario_dir, coefficients)
    cfg = load_classes(classes)
    with Progress(
        TextColumn("frontier"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("sweep", total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = analyse(scen, cfg, progress=tick)
    paths = report.write(out, plot=plot, fmt=fig_format)
    m = report.metrics
    if json_out:
        print_json({"scenario": scen.name, "classes": classes, "summary": report.summary,
                    "metrics": m, "out": out, "files": paths})
        return
    t = Table(title=f"Relocation of {scen.name!r} — classes {classes.name}")
    for col in (
        "class",
        "demand %",
        "layer",
        "RID %",
        "budget ms",
        "moved %",
        "saved USD",
        "saved kg",
        "EROL USD/ms",
        "CROL kg/ms",
        "80 % C at +ms",
        "break-even GB",
        "break-even ms",
    ):
        t.add_column(col, justify="left" if col in ("class", "layer") else "right")
    for _, r in m.iterrows():
        t.add_row(
            str(r["workload"]),
            _fmt(100 * r["demand_share"], 1),
            str(r["layer"]),
            _fmt(100 * r["rid"], 1),
            _fmt(r["budget_ms"], 0),
            _fmt(100 * r["moved_share"], 1),
            _fmt(r.get("saving_usd"), 3),
            _fmt(r.get("saving_kg"), 2),
            _fmt(r.get("erol_usd_per_ms"), 4),
            _fmt(r.get("crol_kg_per_ms"), 4),
            _fmt(r.get("relax_80pct_carbon_ms"), 1),
            _fmt(r["break_even_state_gb"], 1),
            _fmt(r["break_even_budget_ms"], 0),
        )
    say.print(t)
    s = report.summary
    layers = ", ".join(f"{k} {100 * v:.1f} %" for k, v in s["layer_share_all"].items())
    d = s["declared"]
    say.print(
        f"RID {100 * s['rid_all']:.1f} % of demand; layers: {layers}. Declared budgets: "
        f"energy {d['energy_usd']:,.2f} USD, carbon {d['carbon_kg']:,.1f} kg, friction "
        f"{d['friction_usd']:,.2f} USD, {100 * d['moved_share']:.1f} % of energy moved. "
        f"{s['sweep']['solves']} solves in {s['sweep']['seconds']:.1f} s."
    )
    say.print(f"wrote {len(paths)} files to {out}")
