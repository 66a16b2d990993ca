"""Command bodies of ``greensched feedback ingest`` and ``greensched feedback status``.

The CLI module registers them; they print with rich and raise
:class:`~greensched.errors.GreenSchedError` on user errors (bad file, missing store, bad option).
The store is a path (SQLite) or a ``postgresql://`` URL; when not given it is the environment
variable ``GREENSCHED_STORE`` or ``./greensched-outcomes.sqlite``.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from greensched.cli._app import (
    JsonOption,
    console,
    err_console,
    feedback_app,
    print_json,
)
from greensched.errors import GreenSchedError
from greensched.feedback.drift import (
    DriftReport,
    DriftThresholds,
    Verdict,
    detect_drift,
    load_validation_metrics,
)
from greensched.feedback.loop import (
    LoopCycle,
    open_registry,
    opened_store,
    parse_interval,
    run_forever,
    run_once,
)
from greensched.feedback.models import require_current
from greensched.feedback.retune import RetuneResult, RetuneStatus, retune
from greensched.feedback.store import (
    DEFAULT_STORE,
    STORE_ENV,
    IngestReport,
    OutcomeLabels,
    OutcomeStore,
    default_store,
)
from greensched.jobs import load_jobs

__all__ = [
    "DEFAULT_STORE",
    "STORE_ENV",
    "default_store",
    "ingest_command",
    "status_command",
]

#: Exit status of ``feedback status`` on a DRIFT verdict.
EXIT_DRIFT = 1


#: The reference drawn from the store itself spans this many windows before the recent one.
REFERENCE_WINDOWS = 5
_SHOW_CONFLICTS = 20


def ingest_command(file: Path, store: str | None = None, *, console: Console | None = None,
                   fail_on_conflict: bool = False,
                   scenario: Path | None = None) -> IngestReport:
    """Ingest an outcomes file (CSV, JSON lines or Parquet) into the store, as one batch.

    Identical re-sends are no-ops; job_ids already stored with different values are listed and
    kept as stored. With ``fail_on_conflict`` such conflicts raise after the rest is stored.
    With ``scenario`` (a scenario directory) areas, query types, DCs and hours must be that
    scenario's, as ``POST /v1/outcomes`` checks them.
    """
    console = console or Console()
    store = store or default_store()
    labels = None
    if scenario is not None:
        from greensched.scenario import load_scenario

        labels = OutcomeLabels.from_scenario(load_scenario(scenario))
    with OutcomeStore.open(store) as s:
        report = s.ingest_file(Path(file), labels=labels)
        total = s.count()
        where = s.url
    rate = report.rows / report.elapsed_s if report.elapsed_s > 0 else float("nan")
    console.print(
        f"[bold]{file}[/] -> {where}: [green]{report.inserted} new[/], "
        f"{report.duplicates_identical} identical duplicate(s) skipped, "
        f"[{'red' if report.conflicts else 'green'}]{len(report.conflicts)} conflict(s)[/] "
        f"({report.rows} rows in {report.elapsed_s:.2f} s, {rate:,.0f} rows/s); "
        f"the store holds {total} outcome(s)."
    )
    if report.conflicts:
        table = Table(title="Conflicting outcomes (stored values kept)")
        table.add_column("job_id")
        table.add_column("differing columns")
        for jid in report.conflicts[:_SHOW_CONFLICTS]:
            table.add_row(jid, ", ".join(report.conflict_columns.get(jid, ())))
        if len(report.conflicts) > _SHOW_CONFLICTS:
            table.caption = f"... and {len(report.conflicts) - _SHOW_CONFLICTS} more"
        console.print(table)
        if fail_on_conflict:
            raise GreenSchedError(f"{len(report.conflicts)} outcome(s) in {file} conflict with "
                                  "stored ones (first: {report.conflicts[0]!r}); the stored "
                                  "values were kept")
    return report


def status_command(
    store: str | None = None,
    reference: Path | None = None,
    validation_metrics: Path | None = None,
    window: int = 1000,
    min_samples: int = 100,
    *,
    model_version: str | None = None,
    console: Console | None = None,
) -> DriftReport:
    """Check the latest ``window`` outcomes for drift and print the report table.

    Parameters
    ----------
    store
        Store path or URL (default: :func:`default_store`).
    reference
        Jobs table (CSV/Parquet) the model was trained on; without it, the up to
        ``5 * window`` outcomes stored before the recent window serve as reference.
    validation_metrics
        Metrics JSON of the model (see :func:`~greensched.feedback.drift.load_validation_metrics`);
        without it, the reference's own prediction error (if any) is the baseline.
    window
        Number of most recent outcomes checked.
    min_samples
        Fewest outcomes for a verdict.
    model_version
        Only outcomes predicted by this model version.
    """
    console = console or Console()
    if window < 1:
        raise GreenSchedError(f"--window must be >= 1, got {window!r}")
    if min_samples < 2:
        raise GreenSchedError(f"--min-samples must be >= 2, got {min_samples!r}")
    thresholds = DriftThresholds(min_samples=min_samples)
    validation = load_validation_metrics(validation_metrics) if validation_metrics else None
    ref_df = load_jobs(reference) if reference is not None else None
    store = store or default_store()
    with OutcomeStore.open(store, create=False) as s:
        if model_version is None:
            recent = s.window(window)
            if ref_df is None:
                ref_df = s.window(REFERENCE_WINDOWS * window, skip=len(recent))
        else:
            rows = s.query(model_version=model_version)
            recent = rows.tail(window).reset_index(drop=True)
            if ref_df is None:
                ref_df = rows.iloc[:-window].tail(REFERENCE_WINDOWS * window) if len(rows) > \
                    window else rows.iloc[:0]
        where = s.url
    ref_note = (str(reference) if reference is not None
                else f"the {len(ref_df)} outcomes stored before the window")
    report = detect_drift(recent, ref_df if len(ref_df) else None, validation,
                          thresholds=thresholds)
    console.print(f"Outcome store {where}; reference: {ref_note}; validation error: "
                  f"{validation_metrics if validation_metrics else 'not given'}.")
    console.print(report.render_table())
    return report


# ----------------------------------------------------------------------------------------------
# Command bodies
# ----------------------------------------------------------------------------------------------

def _retune_table(res: RetuneResult) -> Table:
    table = Table(title=f"Re-tune of {res.parent}: [bold]{res.status.value}[/]"
                  + (f" -> {res.version}" if res.version else ""),
                  caption=res.message)
    for name in ("target", "current MAPE", "candidate MAPE", "current RMSE(log)",
                 "candidate RMSE(log)"):
        table.add_column(name, justify="left" if name == "target" else "right")
    for t, cur in res.current_error.items():
        new = res.candidate_error.get(t, {})
        table.add_row(t, f"{cur.get('mape', math.nan):.2%}", f"{new.get('mape', math.nan):.2%}",
                      f"{cur.get('rmse_log', math.nan):.3f}",
                      f"{new.get('rmse_log', math.nan):.3f}")
    return table


def retune_command(
    store: str | None = None,
    registry: str | Path = "models",
    replay: str | Path | None = None,
    *,
    window: int = 5000,
    val_fraction: float = 0.2,
    min_improvement: float = 0.0,
    seed: int = 0,
    replay_rows: int | None = None,
    promote: bool = True,
    json_out: Path | None = None,
    console: Console | None = None,
) -> RetuneResult:
    """``greensched feedback retune --store S --registry DIR --replay DATA``: one re-tune.

    Parameters
    ----------
    store
        Outcome store path or URL (default: ``$GREENSCHED_STORE`` or
        ``./greensched-outcomes.sqlite``).
    registry
        Model registry directory (a version must be promoted).
    replay
        The original training dataset (Parquet/CSV, ``docs/dataset-format.md``).
    window, val_fraction, min_improvement, seed, replay_rows, promote
        See :func:`~greensched.feedback.retune.retune`.
    json_out
        Also write the result as JSON there.
    """
    console = console or Console()
    if replay is None:
        raise GreenSchedError("--replay is required: the original training dataset "
                              "(docs/dataset-format.md) sampled for replay")
    replay_path = Path(replay)
    if not replay_path.is_file():
        raise GreenSchedError(f"replay dataset {str(replay_path)!r} does not exist")
    reg = open_registry(registry)
    require_current(reg)
    with OutcomeStore.open(store or default_store(), create=False) as s:
        res = retune(s, reg, replay_data=replay_path, window=window, val_fraction=val_fraction,
                     min_improvement=min_improvement, seed=seed, replay_rows=replay_rows,
                     promote=promote)
    if res.status is RetuneStatus.INSUFFICIENT_DATA:
        console.print(f"[yellow]{res.message}[/]")
    else:
        console.print(_retune_table(res))
    if json_out is not None:
        Path(json_out).write_text(json.dumps(res.to_dict(), indent=2, sort_keys=True) + "\n",
                                  encoding="utf-8")
    return res


def run_command(
    interval: str = "1h",
    once: bool = False,
    *,
    store: str | None = None,
    registry: str | Path = "models",
    replay: str | Path | None = None,
    window: int = 1000,
    min_samples: int = 100,
    retune_window: int | None = None,
    val_fraction: float = 0.2,
    min_improvement: float = 0.0,
    trigger: str = "drift",
    seed: int = 0,
    max_cycles: int | None = None,
    console: Console | None = None,
) -> list[LoopCycle]:
    """``greensched feedback run --interval 1h [--once]``: the standing loop.

    Every ``interval`` (``"1h"``, ``"30m"``, ``"15s"``, ...) one cycle of :func:`run_once`;
    ``once`` runs a single cycle and returns.  Ctrl-C stops the loop after the running cycle's
    output.  Options as in :func:`run_once` and :func:`retune_command`.
    """
    console = console or Console()
    seconds = parse_interval(interval)
    if replay is None:
        raise GreenSchedError("--replay is required: the original training dataset "
                              "(docs/dataset-format.md) sampled for replay")
    replay_path = Path(replay)
    if not replay_path.is_file():
        raise GreenSchedError(f"replay dataset {str(replay_path)!r} does not exist")
    reg = open_registry(registry)
    require_current(reg)
    where = store or default_store()

    def show(cycle: LoopCycle) -> None:
        style = {"promoted": "green", "error": "red", "rejected": "yellow"}.get(
            cycle.action.value, "")
        console.print(f"[{style}]{cycle.describe()}[/]" if style else cycle.describe())
        if cycle.drift is not None and cycle.verdict not in (None, Verdict.OK):
            console.print(cycle.drift.render_table())

    options: dict[str, Any] = dict(window=window, min_samples=min_samples,
                                   retune_window=retune_window, val_fraction=val_fraction,
                                   min_improvement=min_improvement, trigger=trigger, seed=seed)
    if once:
        with opened_store(where) as s:
            cycle = run_once(s, reg, replay_data=replay_path, **options)
        show(cycle)
        return [cycle]
    console.print(f"Feedback loop on {where} and {reg.root}: a cycle every {interval} "
                  f"({seconds:g} s); Ctrl-C stops.")
    stop = threading.Event()
    try:
        return run_forever(seconds, where, reg, replay_data=replay_path, max_cycles=max_cycles,
                           stop=stop, on_cycle=show, **options)
    except KeyboardInterrupt:
        stop.set()
        console.print("stopped")
        return []


# ----------------------------------------------------------------------------------------------
# typer commands
# ----------------------------------------------------------------------------------------------

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
    scenario: Annotated[Path | None, typer.Option(
        help="Scenario directory: refuse areas, query types, DCs and hours it lacks.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Store measured outcomes (idempotent: a job_id is stored once; conflicts are listed).

    The file holds outcome records (docs/outcomes.md), e.g. the outcomes.csv of
    greensched simulate --policy model|greedy: it is ingested as it is.
    """
    rep = ingest_command(file, store, console=err_console if json_out else console,
                         fail_on_conflict=fail_on_conflict, scenario=scenario)
    if json_out:
        print_json({"file": str(file), "rows": rep.rows, "inserted": rep.inserted,
                     "duplicates_identical": rep.duplicates_identical,
                     "conflicts": rep.conflicts, "ingest_id": rep.ingest_id})


@feedback_app.command("status")
def feedback_status(
    store: StoreOption = None,
    reference: Annotated[
        Path | None, typer.Option(help="Reference outcomes for input drift.")
    ] = None,
    validation_metrics: Annotated[
        Path | None, typer.Option(help="The model's metrics.json (validation error).")
    ] = None,
    window: Annotated[int, typer.Option(min=1, help="Latest outcomes to check.")] = 1000,
    min_samples: Annotated[int, typer.Option(min=1)] = 100,
    model_version: Annotated[str | None, typer.Option(help="Only this model version.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Prediction-error and input drift of the latest outcomes, with a verdict.

    Exit status: 0 for OK, WATCH or INSUFFICIENT_DATA, 1 for DRIFT (so that cron or CI can act
    on it), 2 for bad input.
    """
    report = status_command(store, reference, validation_metrics, window, min_samples,
                            model_version=model_version,
                            console=err_console if json_out else console)
    if json_out:
        print_json(report.to_dict())
    if report.verdict is Verdict.DRIFT:
        raise typer.Exit(EXIT_DRIFT)


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
    json_out: JsonOption = False,
) -> None:
    """Re-tune the current model on stored outcomes (+ replay); register it only if better."""
    res = retune_command(store, registry, replay, window=window, val_fraction=val_fraction,
                         min_improvement=min_improvement, seed=seed, promote=promote,
                         console=err_console if json_out else console)
    if json_out:
        print_json(res.to_dict())


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
    json_out: JsonOption = False,
) -> None:
    """The standing loop: drift check → re-tune when drifting → promote."""
    cycles = run_command(interval, once, store=store, registry=registry, replay=replay,
                         window=window, min_samples=min_samples, seed=seed,
                         console=err_console if json_out else console)
    if json_out:
        print_json([c.to_dict() for c in cycles])


@feedback_app.command("experiment")
def feedback_experiment(
    out: Annotated[Path, typer.Option(help="Report directory.")] = Path("reports"),
    seed: int = 0,
    quick: Annotated[bool, typer.Option(help="Small, fast version.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Reproduce the drift experiment (world changes mid-run; the loop detects and re-tunes).

    The experiment is one configuration of the closed loop; greensched loop --experiment runs
    the same configuration through the HTTP service.
    """
    from greensched.feedback.experiment import run_drift_experiment

    result = run_drift_experiment(out, seed=seed, quick=quick)
    if json_out:
        print_json({**result.summary, "report": str(result.report_path),
                     "plot": str(result.plot_path)})
        return
    for key, value in result.summary.items():
        if not isinstance(value, dict | list):
            console.print(f"{key}: {value}")
    console.print(f"wrote {result.report_path} and {result.plot_path}")

