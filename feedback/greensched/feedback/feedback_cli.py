"""Command bodies of ``greensched feedback ingest`` and ``greensched feedback status``.

The CLI module registers them; they print with rich and raise
:class:`~greensched.errors.GreenSchedError` on user errors (bad file, missing store, bad option).
The store is a path (SQLite) or a ``postgresql://`` URL; when not given it is the environment
variable ``GREENSCHED_STORE`` or ``./greensched-outcomes.sqlite``.
"""

from __future__ import annotations

import os
from pathlib import Path

from greensched.feedback.drift import (
    DriftReport,
    DriftThresholds,
    detect_drift,
    load_validation_metrics,
)
from greensched.feedback.store import IngestReport, OutcomeStore
from rich.console import Console
from rich.table import Table

from greensched.errors import GreenSchedError
from greensched.jobs import load_jobs

__all__ = [
    "DEFAULT_STORE",
    "STORE_ENV",
    "default_store",
    "ingest_command",
    "status_command",
]

#: Store used when neither ``--store`` nor ``GREENSCHED_STORE`` is given.
DEFAULT_STORE = "./greensched-outcomes.sqlite"
#: Environment variable naming the default store.
STORE_ENV = "GREENSCHED_STORE"
#: The reference drawn from the store itself spans this many windows before the recent one.
REFERENCE_WINDOWS = 5
_SHOW_CONFLICTS = 20


def default_store() -> str:
    """``$GREENSCHED_STORE`` if set, else :data:`DEFAULT_STORE`."""
    return os.environ.get(STORE_ENV) or DEFAULT_STORE


def ingest_command(file: Path, store: str | None = None, *, console: Console | None = None,
                   fail_on_conflict: bool = False) -> IngestReport:
    """Ingest an outcomes file (CSV, JSON lines or Parquet) into the store, as one batch.

    Identical re-sends are no-ops; job_ids already stored with different values are listed and
    kept as stored. With ``fail_on_conflict`` such conflicts raise after the rest is stored.
    """
    console = console or Console()
    store = store or default_store()
    with OutcomeStore.open(store) as s:
        report = s.ingest_file(Path(file))
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
