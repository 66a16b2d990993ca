"""The bodies of ``greensched feedback ingest`` and ``greensched feedback status``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("sqlalchemy", reason="sqlalchemy is not installed: the outcome store "
                    "needs it (pip install 'sqlalchemy>=2.0')")

from outcome_factory import make_outcomes
from rich.console import Console

from greensched.cli.feedback import ingest_command, status_command
from greensched.errors import GreenSchedError, LocatedError
from greensched.feedback.drift import Verdict
from greensched.feedback.store import (
    DEFAULT_STORE,
    STORE_ENV,
    OutcomeStore,
    OutcomeValidationError,
    default_store,
)


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200, color_system=None), buf


def test_default_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STORE_ENV, raising=False)
    assert default_store() == DEFAULT_STORE == "./greensched-outcomes.sqlite"
    monkeypatch.setenv(STORE_ENV, "postgresql://u@h/d")
    assert default_store() == "postgresql://u@h/d"


def test_ingest_command_reports_counts_and_conflicts(tmp_path: Path) -> None:
    store = str(tmp_path / "o.sqlite")
    recs = make_outcomes(30)
    f = tmp_path / "outcomes.csv"
    pd.DataFrame(recs).to_csv(f, index=False)
    console, buf = _console()
    rep = ingest_command(f, store, console=console)
    assert rep.inserted == 30
    assert "30 new" in buf.getvalue() and "the store holds 30 outcome(s)" in buf.getvalue()

    recs[4]["energy_kwh"] *= 2
    pd.DataFrame(recs).to_csv(f, index=False)
    console, buf = _console()
    rep = ingest_command(f, store, console=console)
    out = buf.getvalue()
    assert (rep.inserted, rep.duplicates_identical, rep.conflicts) == (0, 29, [recs[4]["job_id"]])
    assert "1 conflict(s)" in out and recs[4]["job_id"] in out and "energy_kwh" in out
    with pytest.raises(GreenSchedError, match="conflict with stored ones"):
        ingest_command(f, store, console=_console()[0], fail_on_conflict=True)


def test_ingest_command_user_errors(tmp_path: Path) -> None:
    store = str(tmp_path / "o.sqlite")
    with pytest.raises(LocatedError, match="not found"):
        ingest_command(tmp_path / "nope.csv", store, console=_console()[0])
    bad = tmp_path / "bad.csv"
    pd.DataFrame(make_outcomes(3)).assign(dc=["a", "", "c"]).to_csv(bad, index=False)
    with pytest.raises(OutcomeValidationError, match=r"bad.csv, line 3, column 'dc'"):
        ingest_command(bad, store, console=_console()[0])


def test_ingest_command_uses_the_environment_store(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "env.sqlite"
    monkeypatch.setenv(STORE_ENV, str(target))
    f = tmp_path / "o.csv"
    pd.DataFrame(make_outcomes(3)).to_csv(f, index=False)
    ingest_command(f, None, console=_console()[0])
    with OutcomeStore.open(target, create=False) as s:
        assert s.count() == 3


def test_status_command(tmp_path: Path) -> None:
    store = str(tmp_path / "o.sqlite")
    with OutcomeStore.open(store) as s:
        s.ingest(make_outcomes(1500, seed=1, prefix="old"))
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"energy_kwh": {"mape": 0.13}, "service_s": {"mape": 0.13}}))
    console, buf = _console()
    rep = status_command(store, None, metrics, window=300, min_samples=100, console=console)
    assert rep.verdict is Verdict.OK and rep.n_recent == 300 and rep.n_reference == 1200
    out = buf.getvalue()
    assert "Drift check: OK" in out and "the 1200 outcomes stored before the window" in out

    # new outcomes whose measured energy moved, measured after the old ones
    with OutcomeStore.open(store) as s:
        s.ingest(make_outcomes(300, seed=3, prefix="new", energy_scale=1.7,
                               start=pd.Timestamp("2025-02-01", tz="UTC").to_pydatetime()))
    console, buf = _console()
    rep = status_command(store, None, metrics, window=300, min_samples=100, console=console)
    assert rep.verdict is Verdict.DRIFT
    assert rep.target("energy_kwh").verdict is Verdict.DRIFT
    assert "Drift check: DRIFT" in buf.getvalue()

    # an explicit reference jobs table; no validation metrics -> error checks undecided
    ref = tmp_path / "train_jobs.csv"
    pd.DataFrame(make_outcomes(1000, seed=9))[
        ["job_id", "arrival_s", "area", "query_type", "input_tokens", "output_tokens"]
    ].to_csv(ref, index=False)
    rep = status_command(store, ref, None, window=300, min_samples=100,
                         console=_console()[0])
    assert rep.n_reference == 1000 and rep.verdict is Verdict.OK
    assert rep.target("energy_kwh").verdict is Verdict.INSUFFICIENT_DATA

    rep = status_command(store, None, metrics, window=300, min_samples=500,
                         console=_console()[0])
    assert rep.verdict is Verdict.INSUFFICIENT_DATA
    rep = status_command(store, None, metrics, window=200, min_samples=100,
                         model_version="v1", console=_console()[0])
    assert rep.n_recent == 200


def test_status_command_user_errors(tmp_path: Path) -> None:
    with pytest.raises(GreenSchedError, match="no outcome store"):
        status_command(str(tmp_path / "absent.sqlite"), None, None, 100, 50,
                       console=_console()[0])
    assert not (tmp_path / "absent.sqlite").exists()
    with pytest.raises(GreenSchedError, match="--window"):
        status_command(str(tmp_path / "x.sqlite"), None, None, 0, 50, console=_console()[0])
    with pytest.raises(GreenSchedError, match="--min-samples"):
        status_command(str(tmp_path / "x.sqlite"), None, None, 10, 1, console=_console()[0])
    with pytest.raises(LocatedError, match="validation metrics file not found"):
        status_command(str(tmp_path / "x.sqlite"), None, tmp_path / "m.json", 10, 5,
                       console=_console()[0])
