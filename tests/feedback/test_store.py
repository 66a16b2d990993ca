"""Outcome store: idempotent, validated, atomic ingest on SQLite and PostgreSQL; kill -9 safety."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sqlalchemy", reason="sqlalchemy is not installed: the outcome store "
                    "needs it (pip install 'sqlalchemy>=2.0')")

from outcome_factory import make_outcomes

from greensched.errors import GreenSchedError, LocatedError
from greensched.feedback.store import (
    STORED_COLUMNS,
    OutcomeStore,
    OutcomeValidationError,
    store_url,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _stored(store: OutcomeStore) -> pd.DataFrame:
    return store.query().sort_values("job_id").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# Idempotency and conflicts
# ----------------------------------------------------------------------------------------------

def test_ingest_round_trip(store_url: str) -> None:
    recs = make_outcomes(40)
    recs[0]["prompt"] = "Summarise:\nthe report, \"quoted\""
    recs[0]["features"] = {"b": 2, "a": [1, 2.5]}
    del recs[1]["measured_at"]
    with OutcomeStore.open(store_url) as store:
        before = datetime.now(UTC)
        rep = store.ingest(recs)
        assert (rep.inserted, rep.duplicates_identical, rep.conflicts, rep.rows) == (40, 0, [], 40)
        assert rep.is_ok and rep.ingest_id
        assert store.count() == 40
        df = _stored(store)
    assert list(df.columns) == list(STORED_COLUMNS)
    assert df["job_id"].tolist() == [r["job_id"] for r in recs]
    np.testing.assert_array_equal(df["energy_kwh"], [r["energy_kwh"] for r in recs])
    np.testing.assert_array_equal(df["pred_service_s"], [r["pred_service_s"] for r in recs])
    assert df["hour"].tolist() == [int(r["arrival_s"] // 3600) for r in recs]
    assert df.loc[0, "prompt"] == recs[0]["prompt"]
    assert json.loads(df.loc[0, "features_json"]) == {"a": [1, 2.5], "b": 2}
    assert df.loc[0, "measured_at"] == pd.Timestamp("2025-01-01T00:00:00Z")
    assert str(df["measured_at"].dt.tz) == "UTC"
    # measured_at defaults to the ingest time, as does created_at
    assert df.loc[1, "measured_at"] >= pd.Timestamp(before).floor("s")
    assert (df["created_at"] >= pd.Timestamp(before).floor("s")).all()
    assert df["ingest_id"].nunique() == 1


def test_identical_resend_is_a_noop(store_url: str) -> None:
    recs = make_outcomes(30)
    with OutcomeStore.open(store_url) as store:
        store.ingest(recs)
        first = _stored(store)
        # same content, other container and types (strings, as from a CSV)
        again = pd.DataFrame(recs).astype({"input_tokens": str, "energy_kwh": str})
        rep = store.ingest(again)
        assert (rep.inserted, rep.duplicates_identical, rep.conflicts) == (0, 30, [])
        assert rep.ingest_id is None
        pd.testing.assert_frame_equal(_stored(store), first)
    # and across a reopen
    with OutcomeStore.open(store_url) as store:
        rep = store.ingest(recs)
        assert (rep.inserted, rep.duplicates_identical) == (0, 30)
        assert store.count() == 30


def test_conflicting_duplicates_are_reported_not_overwritten(store_url: str) -> None:
    recs = make_outcomes(20)
    with OutcomeStore.open(store_url) as store:
        store.ingest(recs)
        before = _stored(store)
        changed = [dict(r) for r in recs] + make_outcomes(5, prefix="new")
        changed[3]["energy_kwh"] *= 1.5
        changed[7]["dc"] = "dc-z"
        changed[7]["service_s"] += 1.0
        changed[9]["measured_at"] = "2030-01-01T00:00:00Z"
        rep = store.ingest(changed)
        assert rep.inserted == 5
        assert rep.duplicates_identical == 17
        assert rep.conflicts == [recs[3]["job_id"], recs[7]["job_id"], recs[9]["job_id"]]
        assert rep.conflict_columns[recs[3]["job_id"]] == ("energy_kwh",)
        assert rep.conflict_columns[recs[7]["job_id"]] == ("dc", "service_s")
        assert rep.conflict_columns[recs[9]["job_id"]] == ("measured_at",)
        assert not rep.is_ok
        after = _stored(store)
    kept = after[after["job_id"].isin(before["job_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, before)


def test_repeats_within_one_batch(store_url: str) -> None:
    recs = make_outcomes(5)
    with OutcomeStore.open(store_url) as store:
        rep = store.ingest(recs + [dict(recs[2])])
        assert (rep.inserted, rep.duplicates_identical) == (5, 1)
        clash = make_outcomes(3, prefix="c")
        clash.append(dict(clash[0], energy_kwh=clash[0]["energy_kwh"] * 2))
        with pytest.raises(OutcomeValidationError) as ei:
            store.ingest(clash)
        assert ei.value.row == 3 and ei.value.column == "job_id"
        assert "energy_kwh" in str(ei.value)
        assert store.count() == 5


def test_concurrent_writers_store_each_job_once(store_url: str) -> None:
    recs = make_outcomes(300)
    reports = []
    errors: list[BaseException] = []

    def work(order: int) -> None:
        try:
            with OutcomeStore.open(store_url) as store:
                batches = [recs[i:i + 50] for i in range(0, len(recs), 50)]
                for b in batches[::order]:
                    reports.append(store.ingest(b))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    with OutcomeStore.open(store_url):
        pass  # create the schema first
    threads = [threading.Thread(target=work, args=(o,)) for o in (1, -1, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(r.inserted for r in reports) == 300
    assert sum(r.duplicates_identical for r in reports) == 600
    assert not any(r.conflicts for r in reports)
    with OutcomeStore.open(store_url) as store:
        assert store.count() == 300


# ----------------------------------------------------------------------------------------------
# Validation: named errors, nothing written
# ----------------------------------------------------------------------------------------------

BAD_ROWS: list[tuple[str, dict[str, Any], str, Any, str]] = [
    # (case, change to row 2, column, value, text in the expected part)
    ("negative tokens", {"input_tokens": -3}, "input_tokens", -3, "integer >= 0"),
    ("fractional tokens", {"output_tokens": 2.5}, "output_tokens", 2.5, "integer"),
    ("text energy", {"energy_kwh": "lots"}, "energy_kwh", "lots", "number > 0"),
    ("zero service", {"service_s": 0.0}, "service_s", 0.0, "number > 0"),
    ("infinite prediction", {"pred_energy_kwh": float("inf")}, "pred_energy_kwh",
     float("inf"), "finite number"),
    ("missing dc", {"dc": None}, "dc", None, "required"),
    ("blank model version", {"model_version": "  "}, "model_version", "  ", "non-empty"),
    ("propensity above 1", {"propensity": 1.5}, "propensity", 1.5, "<= 1"),
    ("quantiles crossed", {"pred_energy_kwh_p10": 9.0, "pred_energy_kwh_p90": 1.0},
     "pred_energy_kwh_p90", 1.0, "pred_energy_kwh_p10"),
    ("hour disagrees", {"hour": 30}, "hour", 30, "arrival_s // 3600"),
    ("bad timestamp", {"measured_at": "yesterday-ish"}, "measured_at", "yesterday-ish",
     "ISO 8601"),
    ("features not an object", {"features": "[1, 2]"}, "features", "[1, 2]", "JSON object"),
    ("no arrival", {"arrival_s": None}, "arrival_s", None, "arrival_s"),
]


@pytest.mark.parametrize(("change", "column", "value", "expected"),
                         [c[1:] for c in BAD_ROWS], ids=[c[0] for c in BAD_ROWS])
def test_bad_row_is_named_and_nothing_is_written(store_url: str, change: dict[str, Any],
                                                 column: str, value: Any,
                                                 expected: str) -> None:
    with OutcomeStore.open(store_url) as store:
        store.ingest(make_outcomes(10))
        before = _stored(store)
        recs = make_outcomes(6, prefix="x")
        recs[2].update(change)
        with pytest.raises(OutcomeValidationError) as ei:
            store.ingest(recs)
        err = ei.value
        assert issubclass(type(err), LocatedError) and issubclass(type(err), ValueError)
        assert (err.row, err.column) == (2, column)
        if isinstance(value, float) and np.isnan(value):
            assert np.isnan(err.value)
        elif value is not None:
            assert err.value == value
        assert expected in err.issues[0].expected
        assert f"row 2, column {column!r}" in str(err)
        assert "Nothing was stored" in str(err)
        pd.testing.assert_frame_equal(_stored(store), before)
        assert store.count() == 10


def test_every_problem_is_listed(tmp_path: Path) -> None:
    recs = make_outcomes(8)
    recs[1]["input_tokens"] = "many"
    recs[5]["energy_kwh"] = -1
    recs[5]["area"] = ""
    with OutcomeStore.open(tmp_path / "s.sqlite") as store:
        with pytest.raises(OutcomeValidationError) as ei:
            store.ingest(recs)
        assert [(i.row, i.column) for i in ei.value.issues] == [
            (1, "input_tokens"), (5, "area"), (5, "energy_kwh")]
        assert "2 more problem(s)" in str(ei.value)
        assert store.count() == 0


def test_columns_are_checked(tmp_path: Path) -> None:
    df = pd.DataFrame(make_outcomes(4))
    with OutcomeStore.open(tmp_path / "s.sqlite") as store:
        with pytest.raises(OutcomeValidationError, match="column 'energy_kwh'.*required"):
            store.ingest(df.drop(columns="energy_kwh"))
        with pytest.raises(OutcomeValidationError, match="column 'enrgy'.*only the outcome"):
            store.ingest(df.assign(enrgy=1.0))
        assert store.ingest(df.assign(enrgy=1.0), extra="ignore").inserted == 4
        both = df.drop(columns="arrival_s").assign(hour=3)
        assert store.ingest(both.assign(job_id=both["job_id"] + "h")).inserted == 4
        assert store.count() == 8
        assert store.ingest([]).inserted == 0


def test_timestamps_and_value_forms(tmp_path: Path) -> None:
    from datetime import timedelta, timezone

    recs = make_outcomes(6)
    recs[0]["measured_at"] = datetime(2025, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    recs[1]["measured_at"] = pd.Timestamp("2025-03-01 12:00:00.1234567", tz="UTC")
    recs[2]["measured_at"] = "2025-03-01 12:00:00"  # naive = UTC
    recs[3]["measured_at"] = np.datetime64("2025-03-01T12:00:00")
    recs[4]["features_json"] = '{"z": 1, "a": null}'
    recs[5]["input_tokens"] = " 7 "
    with OutcomeStore.open(tmp_path / "s.sqlite") as store:
        assert store.ingest(recs).inserted == 6
        df = _stored(store)
        noon = pd.Timestamp("2025-03-01 12:00:00", tz="UTC")
        assert df.loc[0:3, "measured_at"].tolist() == [
            noon, noon + pd.Timedelta(microseconds=123456), noon, noon]
        assert df.loc[4, "features_json"] == '{"a":null,"z":1}'
        assert df.loc[5, "input_tokens"] == 7
        for bad_value in ("now", 1735689600, "2025-13-01"):
            with pytest.raises(OutcomeValidationError, match="ISO 8601"):
                store.ingest([dict(recs[0], job_id="t", measured_at=bad_value)])
        with pytest.raises(OutcomeValidationError, match="integer"):
            store.ingest([dict(recs[0], job_id="t", input_tokens=True)])
        with pytest.raises(OutcomeValidationError, match="each column once"):
            store.ingest(pd.DataFrame(recs[:1]).assign(features_json="{}", features="{}"))
        with pytest.raises(OutcomeValidationError, match="mapping"):
            store.ingest([recs[0], ["not", "a", "record"]])  # type: ignore[list-item]
        assert store.count() == 6


def test_atomic_batch_when_the_database_fails_mid_way(store_url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with OutcomeStore.open(store_url) as store:
        store.ingest(make_outcomes(7, prefix="keep"))
        real = OutcomeStore._insert_chunk
        calls = {"n": 0}

        def failing(self: OutcomeStore, conn: Any, rows: list[dict[str, Any]]) -> None:
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("disk on fire")
            real(self, conn, rows)

        monkeypatch.setattr(OutcomeStore, "_insert_chunk", failing)
        with pytest.raises(RuntimeError, match="disk on fire"):
            store.ingest(make_outcomes(1200, prefix="lost"))
        assert calls["n"] == 3  # two chunks of 500 were written, then rolled back
        assert store.count() == 7
        monkeypatch.setattr(OutcomeStore, "_insert_chunk", real)
        assert store.ingest(make_outcomes(1200, prefix="lost")).inserted == 1200


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------

def test_ingest_csv_file_names_file_line_and_column(tmp_path: Path) -> None:
    df = pd.DataFrame(make_outcomes(6))
    df["prompt"] = ["one line", "two\nlines", "x", "three\nlines\nhere", "y", "z"]
    good = tmp_path / "good.csv"
    df.to_csv(good, index=False)
    with OutcomeStore.open(tmp_path / "s.sqlite") as store:
        rep = store.ingest_file(good)
        assert rep.inserted == 6
        assert _stored(store)["prompt"].tolist() == df["prompt"].tolist()
        bad = tmp_path / "bad.csv"
        df.assign(job_id=df["job_id"] + "b", service_s=["1", "2", "3", "4", "slow", "6"]) \
            .to_csv(bad, index=False)
        with pytest.raises(OutcomeValidationError) as ei:
            store.ingest_file(bad)
        # header = line 1; rows 0..3 take 1, 2, 1, 3 lines, so row 4 starts on line 9
        assert (ei.value.file, ei.value.line, ei.value.column) == (str(bad), 9, "service_s")
        assert str(ei.value).startswith(f"{bad}, line 9, column 'service_s'")
        assert store.count() == 6
        ragged = tmp_path / "ragged.csv"
        ragged.write_text(good.read_text().splitlines()[0] + "\na,b\n")
        with pytest.raises(LocatedError, match="line 2.*fields"):
            store.ingest_file(ragged)
        with pytest.raises(LocatedError, match="not found"):
            store.ingest_file(tmp_path / "absent.csv")
        (tmp_path / "empty.csv").write_text("")
        with pytest.raises(LocatedError, match="empty file"):
            store.ingest_file(tmp_path / "empty.csv")


def test_ingest_parquet_and_jsonl(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="pyarrow not installed: Parquet input untested")
    recs = make_outcomes(10)
    pq = tmp_path / "o.parquet"
    pd.DataFrame(recs[:5]).to_parquet(pq)
    jl = tmp_path / "o.jsonl"
    jl.write_text("".join(json.dumps(r) + "\n" for r in recs[5:]) + "\n")
    with OutcomeStore.open(tmp_path / "s.sqlite") as store:
        assert store.ingest_file(pq).inserted == 5
        assert store.ingest_file(jl).inserted == 5
        assert store.ingest_file(pq).duplicates_identical == 5
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps(dict(recs[0], job_id="q", input_tokens=-1)) + "\n{oops\n")
        with pytest.raises(LocatedError, match="line 2"):
            store.ingest_file(bad)
        bad.write_text("\n" + json.dumps(dict(recs[0], job_id="q", input_tokens=-1)) + "\n")
        with pytest.raises(OutcomeValidationError) as ei:
            store.ingest_file(bad)
        assert (ei.value.line, ei.value.column) == (2, "input_tokens")
        assert store.count() == 10


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------

def test_query_filters_and_window(store_url: str) -> None:
    a = make_outcomes(30, prefix="a", model_version="v1")
    b = make_outcomes(20, prefix="b", model_version="v2",
                      start=datetime(2025, 1, 2, tzinfo=UTC))
    with OutcomeStore.open(store_url) as store:
        store.ingest(a)
        store.ingest(b)
        assert len(store.query()) == 50
        assert set(store.query(model_version="v2")["job_id"]) == {r["job_id"] for r in b}
        dc_a = store.query(dc="dc-a")
        assert len(dc_a) == sum(r["dc"] == "dc-a" for r in a + b) and (dc_a["dc"] == "dc-a").all()
        since = store.query(since="2025-01-01T00:00:10Z", until=datetime(2025, 1, 2, 0, 0, 5))
        assert since["job_id"].tolist() == [r["job_id"] for r in a[10:]] + \
            [r["job_id"] for r in b[:5]]
        with pytest.raises(GreenSchedError, match="timestamp"):
            store.query(since="not a time")
        win = store.window(8)
        assert win["job_id"].tolist() == [r["job_id"] for r in b[-8:]]
        assert win["measured_at"].is_monotonic_increasing
        assert store.window(5, skip=20)["job_id"].tolist() == [r["job_id"] for r in a[-5:]]
        assert len(store.window(0)) == 0
        empty = store.query(model_version="v9")
        assert len(empty) == 0 and list(empty.columns) == list(STORED_COLUMNS)


def test_open_paths_urls_and_sqlite_settings(tmp_path: Path) -> None:
    assert store_url("postgresql://u@h:5/d") == "postgresql+psycopg://u@h:5/d"
    assert store_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert store_url(tmp_path / "x.sqlite") == f"sqlite:///{tmp_path / 'x.sqlite'}"
    with pytest.raises(GreenSchedError, match="unsupported"):
        OutcomeStore.open("mysql://u@h/d")
    with pytest.raises(GreenSchedError, match="no outcome store"):
        OutcomeStore.open(tmp_path / "absent.sqlite", create=False)
    with pytest.raises(GreenSchedError, match="does not exist"):
        OutcomeStore.open(tmp_path / "no" / "dir.sqlite")
    with pytest.raises(GreenSchedError, match="in-memory"):
        OutcomeStore.open("sqlite://")
    path = tmp_path / "s.sqlite"
    with OutcomeStore.open(f"sqlite:///{path}") as store:
        assert store.dialect == "sqlite"
        with store._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    with OutcomeStore.open(path, create=False) as store:
        assert store.count() == 0


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    OutcomeStore.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE greensched_meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(GreenSchedError, match="schema version '99'"):
        OutcomeStore.open(path)


# ----------------------------------------------------------------------------------------------
# kill -9 in the middle of ingesting
# ----------------------------------------------------------------------------------------------

def _run_and_kill(url: str, first: int, size: int, acks_before_kill: int, delay_s: float,
                  pause_batch: int | None = None) -> tuple[list[int], int]:
    """Start the ingest loop, SIGKILL it after some acknowledged batches; return the acks.

    With ``pause_batch`` the kill comes while that batch is paused inside its transaction
    (after one insert chunk); otherwise ``delay_s`` after the last awaited acknowledgement.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")]))
    args = [sys.executable, str(HERE / "ingest_loop.py"), url, str(first), "100000", str(size)]
    if pause_batch is not None:
        args.append(str(pause_batch))
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)
    assert proc.stdout is not None and proc.stderr is not None
    acked: list[int] = []
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", line + proc.stderr.read()
        while True:
            line = proc.stdout.readline()
            if not line:
                pytest.fail("ingest loop died: " + proc.stderr.read())
            if line.startswith("inflight"):
                break
            acked.append(int(line))
            if pause_batch is None and len(acked) >= acks_before_kill:
                time.sleep(delay_s)  # land somewhere in the next batch
                break
        proc.send_signal(signal.SIGKILL)
        rc = proc.wait(timeout=30)
        acked += [int(x) for x in proc.stdout.read().split()]  # acked before the kill
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return acked, rc


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_loses_no_acknowledged_batch(backend: str, tmp_path: Path,
                                            request: pytest.FixtureRequest) -> None:
    """SIGKILL the writer mid-ingest: every acknowledged batch is there, no batch is partial,
    and (SQLite) the file passes ``PRAGMA integrity_check``. Round 0 is killed while a batch
    sits inside its open transaction with rows already inserted; the others at random times."""
    if backend == "sqlite":
        path = tmp_path / "killed.sqlite"
        url = str(path)
    else:
        server = request.getfixturevalue("pg_server")
        name, url = server.create_schema()
        request.addfinalizer(lambda: server.drop_schema(name))
    size = 600  # two insert chunks per batch
    rng = np.random.default_rng(7)
    acked: list[int] = []
    rounds = 3 if backend == "sqlite" else 2
    for r in range(rounds):
        first = 1000 * r
        got, rc = _run_and_kill(url, first=first, size=size,
                                acks_before_kill=int(rng.integers(2, 5)),
                                delay_s=float(rng.uniform(0.0, 0.05)),
                                pause_batch=first + 2 if r == 0 else None)
        assert rc == -signal.SIGKILL, f"the ingest loop ended by itself (rc={rc})"
        acked += got
        if backend == "sqlite":
            with sqlite3.connect(path) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            conn.close()
        with OutcomeStore.open(url) as store:
            ids = store.query()["job_id"]
        per_batch = Counter(int(j[1:6]) for j in ids)
        missing = sorted(set(acked) - set(per_batch))
        assert not missing, f"acknowledged batches lost after kill -9: {missing}"
        partial = {b: n for b, n in per_batch.items() if n != size}
        assert not partial, f"partially stored batches: {partial}"
        if r == 0:
            assert sorted(got) == [first, first + 1] and first + 2 not in per_batch
        # at most the batch in flight was committed without its acknowledgement
        assert len(set(per_batch) - set(acked)) <= r
    assert len(acked) >= 2 * rounds
    with OutcomeStore.open(url) as store:  # the store is still writable
        assert store.ingest(make_outcomes(3, prefix="after")).inserted == 3
