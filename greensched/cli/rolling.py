"""``greensched plan --rolling``: re-plan over a moving forecast window (docs/rolling.md).

The ``plan`` command parses the options and dispatches here; the library is
:mod:`greensched.scheduler.rolling`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from greensched.cli._app import err_console, load_scenario_arg, print_json, say_console
from greensched.errors import GreenSchedError, InfeasibleError
from greensched.scenario import Scenario

if TYPE_CHECKING:  # the rolling library is imported only on the --rolling path
    from greensched.scheduler.planner import PlanConfig
    from greensched.scheduler.rolling import RollingConfig, RollingResult, RollingWindow

__all__ = ["check_rolling_options", "load_rolling_scenario", "run_rolling"]


def check_rolling_options(
    rolling: bool,
    horizon: int | None,
    step: int | None,
    days: int | None,
    dc_tz: str | None,
    equity: str | None = None,
) -> RollingConfig | None:
    """The rolling configuration of ``plan``'s options, checked before any data is read.

    Options of the rolling path without ``--rolling`` are errors, as is ``--equity`` with it.
    """
    if not rolling:
        given = [
            flag
            for flag, v in (
                ("--horizon", horizon),
                ("--step", step),
                ("--days", days),
                ("--dc-tz", dc_tz),
            )
            if v is not None
        ]
        if given:
            raise GreenSchedError(f"{', '.join(given)} need(s) --rolling")
        return None
    if equity is not None:
        raise GreenSchedError("--equity does not work with --rolling (weighted plans only)")
    from greensched.scheduler.rolling import RollingConfig

    return RollingConfig(
        horizon_h=24 if horizon is None else horizon,
        step_h=1 if step is None else step,
        days=days,
        dc_tz=dc_tz,
    )


def load_rolling_scenario(
    path: Path | None, coefficients: Path | None, days: int | None
) -> Scenario:
    """The scenario to roll over: a scenario directory (or the embedded default), or a build
    configuration (``.toml``) built in memory for ``days`` days (its own ``days`` if None)."""
    if path is not None and path.suffix == ".toml" and path.is_file():
        from greensched.builder import build_scenario

        scen = build_scenario(path, days=days)
        if coefficients is not None:
            from greensched.scenario import load_coefficients

            scen.coefficients = load_coefficients(coefficients, scen)
        return scen
    return load_scenario_arg(path, coefficients)


def _table(roll: RollingResult) -> Table:
    summary = roll.summary()
    table = Table(
        title=f"Rolling plan of {roll.scenario!r} — horizon {roll.config.horizon_h} h, "
        f"step {roll.config.step_h} h, {summary['method']}"
    )
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("committed span (h)", f"{roll.span_h}")
    if roll.start_utc:
        table.add_row("from (UTC)", roll.start_utc)
    table.add_row("windows", f"{len(roll.windows)}")
    obj = summary["objective"]
    for key in ("energy_usd", "carbon_usd", "delay_usd", "total_usd"):
        table.add_row(key.replace("_usd", " cost (USD)"), f"{obj[key]:,.2f}")
    if roll.weights:
        table.add_row("weighted objective (USD)", f"{summary['weighted_usd']:,.4f}")
    table.add_row("carbon (kg CO2)", f"{summary['carbon_kg']:,.1f}")
    table.add_row("water committed (l)", f"{summary['water_l']:,.1f}")
    if roll.water_budget_l is not None:
        met = "met" if summary["budget_met"] else "EXCEEDED"
        table.add_row("water budget of the span (l)", f"{roll.water_budget_l:,.1f} ({met})")
    table.add_row(
        "solve time per window (s), mean / max",
        f"{summary['solve_seconds_mean']:.3f} / {summary['solve_seconds_max']:.3f}",
    )
    table.add_row("build time, all windows (s)", f"{summary['build_seconds_total']:.2f}")
    table.add_row("wall time (s)", f"{summary['wall_seconds']:.2f}")
    return table


def run_rolling(
    scen: Scenario,
    cfg: PlanConfig,
    rolling: RollingConfig,
    *,
    source: Path | None,
    decompose: str | None,
    workers: int,
    ray: str | None,
    out: Path | None,
    plot: bool,
    json_out: bool,
) -> RollingResult:
    """Run, print (progress bar over windows, summary table or JSON) and write a rolling plan."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from greensched.scheduler.rolling import plan_rolling

    if plot:
        raise GreenSchedError("--plot is not available with --rolling; read committed_*.csv")
    if rolling.dc_tz is None and source is not None and source.suffix == ".toml":
        rolling.dc_tz = str(source)
    if decompose is not None:
        from greensched.scheduler.decompose import DecomposeConfig

        rolling.decompose = DecomposeConfig(method=decompose, workers=workers, ray_address=ray)
    rolling.span_hours(scen)  # a --days longer than the scenario fails before any solve
    say = say_console(json_out)
    n_windows = -(-rolling.span_hours(scen) // rolling.step_h)
    with Progress(
        TextColumn("[bold]rolling[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=say,
        transient=False,
    ) as bar:
        task = bar.add_task("windows", total=n_windows, note="")

        def progress(done: int, total: int, window: RollingWindow) -> None:
            note = f"{window.start_utc or f'hour {window.start_hour}'} {window.solve_s:.2f} s"
            bar.update(task, completed=done, total=total, note=note)

        roll = plan_rolling(scen, cfg, rolling, progress=progress)
    files: list[str] = []
    if out is not None:
        roll.write(out)
        names = ["rolling.json", "plan.json", "windows.csv"]
        if roll.windows:
            names += ["committed_allocation.csv", "committed_dc_hourly.csv", "committed_duals.csv"]
        files = [str(out / n) for n in names]
    summary: dict[str, Any] = {**roll.summary(), "out": out, "files": files}
    if json_out:
        print_json(summary)
    if not roll.is_ok:
        if out is not None:
            err_console.print(f"[dim]wrote {out / 'rolling.json'} (status of every window)[/dim]")
        raise InfeasibleError(roll.message or f"rolling plan ended {roll.status}")
    say.print(_table(roll))
    if out is not None:
        say.print(f"wrote {', '.join(files)}")
    return roll
