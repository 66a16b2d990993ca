"""The ``greensched`` command line (typer + rich).

User errors (bad input files, bad options, infeasible scenarios, an unavailable solver) print one
line on stderr and exit non-zero without a traceback:

* 2 — bad input or option (the message names file, line, column and value);
* 3 — the scenario is infeasible or the solver stopped early (the message names the family);
* 4 — the requested solver is not installed or not licensed for the model's size.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from greensched.errors import GreenSchedError, InfeasibleError, SolverUnavailableError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="GreenSched: place LLM inference across data centers for low cost, carbon, water, delay.",
)
scenario_app = typer.Typer(no_args_is_help=True, help="Validate, inspect and make scenarios.")
app.add_typer(scenario_app, name="scenario")
feedback_app = typer.Typer(
    no_args_is_help=True, help="Outcome store, drift checks, re-tuning and the model registry."
)
app.add_typer(feedback_app, name="feedback")

# Piped output (files, CI logs) gets a wide console so tables are not truncated.
console = Console() if sys.stdout.isatty() else Console(width=160)
err_console = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=160)

EXIT_INPUT = 2
EXIT_INFEASIBLE = 3
EXIT_SOLVER = 4


def _parse_weights(text: str) -> tuple[float, float, float]:
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError as exc:
        raise GreenSchedError(
            f"--weights {text!r}: expected three numbers E,C,D such as 0.6,0.2,0.2"
        ) from exc
    if len(values) != 3:
        raise GreenSchedError(f"--weights {text!r}: expected three numbers E,C,D")
    return values[0], values[1], values[2]


def _load(path: Path | None, coefficients: Path | None = None):  # type: ignore[no-untyped-def]
    from greensched.defaults import default_scenario
    from greensched.scenario import load_scenario

    if path is None:
        scen = default_scenario()
        if coefficients is not None:
            from greensched.scenario import load_coefficients

            scen.coefficients = load_coefficients(coefficients, scen)
        return scen
    return load_scenario(path, coefficients=coefficients)


def _summary_table(result, scen) -> Table:  # type: ignore[no-untyped-def]
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
    table.add_row("solve time (s)", f"{result.solve_seconds:.3f}")
    return table


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
    plot: Annotated[bool, typer.Option(help="Also write PNG figures into --out.")] = False,
    time_limit: Annotated[float | None, typer.Option(help="Time limit per solve (s).")] = None,
) -> None:
    """Solve the Green-LLM allocation of a scenario and print a summary."""
    from greensched.scheduler import PlanConfig
    from greensched.scheduler import plan as run_plan

    modes = sum(v is not None for v in (weights, lexicographic, preset))
    if modes > 1:
        raise GreenSchedError("choose at most one of --weights, --lexicographic and --preset")
    if plot and out is None:
        raise GreenSchedError("--plot needs --out DIR to write the figures into")
    scen = _load(scenario_dir, coefficients)
    if preset is not None:
        cfg = PlanConfig.preset(preset, solver=solver, time_limit_s=time_limit)
    elif lexicographic is not None:
        cfg = PlanConfig(
            mode="lexicographic",
            order=tuple(lexicographic.split(",")),
            epsilon=epsilon,
            solver=solver,
            time_limit_s=time_limit,
        )
    else:
        w = _parse_weights(weights) if weights is not None else None
        cfg = PlanConfig(mode="weighted", weights=w, solver=solver, time_limit_s=time_limit)
    result = run_plan(scen, cfg)
    if out is not None:
        result.write(out)
    if not result.is_ok:
        if out is not None:
            err_console.print(f"[dim]wrote {out / 'plan.json'} (status and diagnosis)[/dim]")
        raise InfeasibleError(
            result.message or f"solver ended {result.status.value}", result.diagnosis
        )
    console.print(_summary_table(result, scen))
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
        console.print(ph)
    if out is not None:
        console.print(f"wrote {out}/plan.json, allocation.csv, dc_hourly.csv")
        if plot:
            from greensched.scheduler.plots import plot_plan

            for path in plot_plan(result, scen, out):
                console.print(f"wrote {path}")


@scenario_app.command("validate")
def scenario_validate(directory: Path) -> None:
    """Check a scenario directory against the exchange format."""
    scen = _load(directory)
    sizes = ", ".join(f"{k}={v}" for k, v in scen.sizes().items())
    console.print(f"[green]ok[/green] {directory}: {scen.name!r} ({sizes})")


@scenario_app.command("show")
def scenario_show(
    directory: Annotated[
        Path | None, typer.Argument(help="Omitted = the embedded default.")
    ] = None,
) -> None:
    """Print a scenario's sizes, data centers and demand."""
    scen = _load(directory)
    ds = scen.ds
    console.print(f"[bold]{scen.name}[/bold] — {scen.description[:300]}")
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
        t.add_column(col)
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
) -> None:
    """Sensitivity sweeps and the letter's tables (Section III of Green-LLM)."""
    from greensched.scheduler import sweep as sw

    scen = _load(scenario_dir)
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
        console.print(t)
        console.print(f"wrote {path}")
        return
    scales = sw.parse_scale(scale)
    names = [p.strip() for p in presets.split(",") if p.strip()]
    frame = sw.run_sweep(scen, param, scales, names, solver=solver, workers=workers)
    path = out / f"sweep_{param}.csv"
    frame.to_csv(path, index=False)
    console.print(f"wrote {path} ({len(frame)} rows)")
    if plot:
        console.print(f"wrote {sw.plot_sweep(frame, param, out)}")


@app.command()
def simulate(
    scenario_dir: Annotated[Path | None, typer.Argument(help="Omitted = the embedded default.")] = None,
    jobs: Annotated[int | None, typer.Option(help="Draw N jobs from the scenario's demand.")] = None,
    trace: Annotated[
        Path | None, typer.Option(help="Azure trace file or directory, or a jobs table.")
    ] = None,
    policy: Annotated[str, typer.Option(help="plan | greedy | nearest | random")] = "plan",
    out: Annotated[Path | None, typer.Option(help="Write outcomes.csv and totals.json.")] = None,
    dataset: Annotated[
        Path | None, typer.Option(help="Also write the predictor's training set (Parquet).")
    ] = None,
    seed: int = 0,
    noise: Annotated[bool, typer.Option(help="Seeded measurement noise (--no-noise: off).")] = True,
    fleet: Annotated[Path | None, typer.Option(help="fleet.csv (model, GPU, replicas per DC).")] = None,
) -> None:
    """Run jobs through a policy on the digital twin; per-job outcomes and totals."""
    from greensched.eval.simulate_cli import simulate_command

    simulate_command(scenario_dir, jobs, trace, policy, out, dataset, seed, noise, fleet,
                     console=console)


@app.command()
def assign(
    scenario: Annotated[Path, typer.Option(help="Scenario directory.")],
    jobs: Annotated[Path, typer.Option(help="Jobs table (CSV or Parquet).")],
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
) -> None:
    """Assign jobs to data centers online: greedy, plan-guided, plan-following or batch IP."""
    from greensched.scheduler.assign_cli import assign_command

    if (model is None) == (coefficients is None):
        raise GreenSchedError("give exactly one of --model and --coefficients")
    result = assign_command(scenario, jobs, model, coefficients, mode, plan_dir, out, explore,
                            epsilon, temperature, seed, sla_hard=sla_hard,
                            sovereignty=sovereignty, risk=risk, time_limit_s=time_limit)
    summary = result.summary()
    console.print(", ".join(f"{k}: {v}" for k, v in summary.items() if not isinstance(v, dict)))
    console.print(f"wrote {out}")


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="Training dataset (greensched simulate --dataset).")],
    out: Annotated[Path, typer.Option(help="Model directory to write.")],
    model: Annotated[str, typer.Option(help="lora | xgboost")] = "xgboost",
    base_model: Annotated[
        str | None, typer.Option(help="Hugging Face model path (default: all-MiniLM-L6-v2).")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 3,
    seed: int = 0,
    val_fraction: Annotated[float, typer.Option(help="Validation share for early stopping.")] = 0.1,
    max_rows: Annotated[int | None, typer.Option(help="Use at most this many rows.")] = None,
) -> None:
    """Train an energy and service-time predictor (LoRA transformer or XGBoost)."""
    from greensched.predictor.predictor_cli import summary_line, train_command

    metrics = train_command(data, model, base_model, epochs, out, seed,
                            val_fraction=val_fraction, max_rows=max_rows)
    console.print(summary_line(metrics))
    console.print(f"wrote {out}")


@app.command()
def predict(
    model: Annotated[Path, typer.Option(help="Model directory (greensched train --out).")],
    scenario: Annotated[Path, typer.Option(help="Scenario directory.")],
    jobs: Annotated[Path | None, typer.Option(help="Jobs table to predict.")] = None,
    out: Annotated[Path | None, typer.Option(help="Predictions CSV (one row per job and DC).")] = (
        None
    ),
    coefficients_out: Annotated[
        Path | None, typer.Option(help="Write planner coefficients (coefficients.csv).")
    ] = None,
) -> None:
    """Predict per-job energy and service time, or the planner's coefficients."""
    from greensched.predictor.predictor_cli import predict_command

    for name, path in predict_command(model, scenario, jobs, out, coefficients_out).items():
        console.print(f"wrote {name}: {path}")


@app.command("evaluate-predictor")
def evaluate_predictor(
    model: Annotated[Path, typer.Option(help="Model directory.")],
    data: Annotated[Path, typer.Option(help="Test dataset.")],
    out: Annotated[Path, typer.Option(help="Report directory.")],
) -> None:
    """RMSE, MAPE, R², quantile coverage and action accuracy on a test set, with plots."""
    from greensched.predictor.predictor_cli import evaluate_command, summary_line

    metrics = evaluate_command(model, data, out)
    console.print(summary_line(metrics))
    console.print(f"wrote {out}/report.md")


@app.command()
def serve(
    scenario: Annotated[Path | None, typer.Option(help="Scenario directory (default: embedded).")] = (
        None
    ),
    model: Annotated[
        Path | None, typer.Option(help="Predictor directory or model registry root (hot swap).")
    ] = None,
    coefficients: Annotated[
        Path | None, typer.Option(help="coefficients.csv instead of a model.")
    ] = None,
    plan: Annotated[Path | None, typer.Option(help="Plan directory for plan-guided mode.")] = None,
    store: Annotated[str | None, typer.Option(help="Outcome store path or URL.")] = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key_file: Annotated[
        Path | None, typer.Option(help="File holding the API key (else $GREENSCHED_API_KEY).")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="greedy | plan | follow")] = None,
) -> None:
    """Serve online assignment over HTTP (FastAPI): /v1/assign, /v1/outcomes, /metrics ..."""
    from greensched.service import serve_command

    serve_command(scenario, model, coefficients, plan, store, host, port, api_key_file,
                  mode=mode)


StoreOption = Annotated[
    str | None,
    typer.Option(help="Outcome store: a SQLite path or postgresql:// URL "
                 "(default $GREENSCHED_STORE or ./greensched-outcomes.sqlite)."),
]


@feedback_app.command("ingest")
def feedback_ingest(
    file: Annotated[Path, typer.Argument(help="Outcomes file: CSV, JSON lines or Parquet.")],
    store: StoreOption = None,
    fail_on_conflict: Annotated[bool, typer.Option(help="Exit non-zero on conflicts.")] = False,
) -> None:
    """Store measured outcomes (idempotent: a job_id is stored once; conflicts are listed)."""
    from greensched.feedback.feedback_cli import ingest_command

    ingest_command(file, store, console=console, fail_on_conflict=fail_on_conflict)


@feedback_app.command("status")
def feedback_status(
    store: StoreOption = None,
    reference: Annotated[Path | None, typer.Option(help="Reference outcomes for input drift.")] = None,
    validation_metrics: Annotated[
        Path | None, typer.Option(help="The model's metrics.json (validation error).")
    ] = None,
    window: Annotated[int, typer.Option(min=1, help="Latest outcomes to check.")] = 1000,
    min_samples: Annotated[int, typer.Option(min=1)] = 100,
    model_version: Annotated[str | None, typer.Option(help="Only this model version.")] = None,
) -> None:
    """Prediction-error and input drift of the latest outcomes, with a verdict."""
    from greensched.feedback.feedback_cli import status_command

    status_command(store, reference, validation_metrics, window, min_samples,
                   model_version=model_version, console=console)


RegistryOption = Annotated[
    Path, typer.Option(help="Model registry root (versions/, CURRENT).")
]


@feedback_app.command("retune")
def feedback_retune(
    replay: Annotated[Path, typer.Option(help="Original training data to replay (Parquet).")],
    store: StoreOption = None,
    registry: RegistryOption = Path("models"),
    window: Annotated[int, typer.Option(min=1, help="Latest outcomes to learn from.")] = 5000,
    val_fraction: Annotated[float, typer.Option(help="Held-out share of recent outcomes.")] = 0.2,
    min_improvement: Annotated[
        float, typer.Option(help="Register only if the held-out error drops by this much.")
    ] = 0.0,
    seed: int = 0,
    promote: Annotated[bool, typer.Option(help="Promote a better version at once.")] = True,
) -> None:
    """Re-tune the current model on stored outcomes (+ replay); register it only if better."""
    from greensched.feedback.loop import retune_command

    retune_command(store, registry, replay, window=window, val_fraction=val_fraction,
                   min_improvement=min_improvement, seed=seed, promote=promote,
                   console=console)


@feedback_app.command("run")
def feedback_run(
    replay: Annotated[Path, typer.Option(help="Original training data to replay (Parquet).")],
    interval: Annotated[str, typer.Option(help="Time between cycles, e.g. 1h, 30m, 15s.")] = "1h",
    once: Annotated[bool, typer.Option(help="One cycle (for cron).")] = False,
    store: StoreOption = None,
    registry: RegistryOption = Path("models"),
    window: Annotated[int, typer.Option(min=1)] = 1000,
    min_samples: Annotated[int, typer.Option(min=1)] = 100,
    seed: int = 0,
) -> None:
    """The standing loop: drift check → re-tune when drifting → promote."""
    from greensched.feedback.loop import run_command

    run_command(interval, once, store=store, registry=registry, replay=replay, window=window,
                min_samples=min_samples, seed=seed, console=console)


@feedback_app.command("experiment")
def feedback_experiment(
    out: Annotated[Path, typer.Option(help="Report directory.")] = Path("reports"),
    seed: int = 0,
    quick: Annotated[bool, typer.Option(help="Small, fast version.")] = False,
) -> None:
    """Reproduce the drift experiment (world changes mid-run; the loop detects and re-tunes)."""
    from greensched.feedback.experiment import run_drift_experiment

    result = run_drift_experiment(out, seed=seed, quick=quick)
    for key, value in result.summary.items():
        if not isinstance(value, dict | list):
            console.print(f"{key}: {value}")
    console.print(f"wrote {result.report_path} and {result.plot_path}")


def _fail(exc: BaseException) -> None:
    """Print a user error as one unwrapped line on stderr."""
    print(f"error: {exc}", file=sys.stderr, flush=True)


def main() -> None:
    """Console-script entry point: runs the app and turns user errors into one-line messages."""
    try:
        rc = app(standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except SolverUnavailableError as exc:
        _fail(exc)
        sys.exit(EXIT_SOLVER)
    except InfeasibleError as exc:
        _fail(exc)
        sys.exit(EXIT_INFEASIBLE)
    except GreenSchedError as exc:
        _fail(exc)
        sys.exit(EXIT_INPUT)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        _fail(exc)
        sys.exit(EXIT_INPUT)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # usage errors of the command-line parser
        show = getattr(exc, "show", None)
        code = getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            sys.exit(code)
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
