"""``greensched model ...``, ``feedback status`` exit codes and ``feedback ingest --scenario``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("sqlalchemy", reason="the outcome store needs sqlalchemy")

from outcome_factory import make_outcomes
from typer.testing import CliRunner

from greensched.cli.main import app
from greensched.errors import GreenSchedError
from greensched.feedback.store import OutcomeStore

runner = CliRunner()


def _fake_model(path: Path, mape: float) -> Path:
    """A directory that reads as a saved XGBoost predictor (config.json + metrics.json)."""
    from greensched.predictor.base import FORMAT_VERSION

    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"format": FORMAT_VERSION, "kind": "xgboost"}))
    (path / "metrics.json").write_text(json.dumps({"validation": {
        "energy_kwh": {"mape": mape, "rmse_log": 0.1}, "service_s": {"mape": 0.02}}}))
    return path


def _json(args: list[str]) -> object:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_register_promote_rollback_list_show(tmp_path: Path) -> None:
    reg = str(tmp_path / "reg")
    a, b = _fake_model(tmp_path / "a", 0.05), _fake_model(tmp_path / "b", 0.03)
    first = _json(["model", "register", str(a), "--registry", reg, "--promote"])
    assert first["version"] == "v0001" and first["kind"] == "xgboost" and first["promoted"]
    assert first["metrics"]["validation"]["energy_kwh"]["mape"] == 0.05
    second = _json(["model", "register", str(b), "--registry", reg])
    assert second["version"] == "v0002" and second["parent"] == "v0001"
    rows = _json(["model", "list", "--registry", reg])
    assert [(r["version"], r["current"]) for r in rows] == [("v0001", True), ("v0002", False)]
    assert _json(["model", "promote", "v0002", "--registry", reg]) == {
        "current": "v0002", "previous": "v0001"}
    shown = _json(["model", "show", "--registry", reg])
    assert shown["version"] == "v0002" and shown["lineage"] == ["v0002", "v0001"]
    assert _json(["model", "rollback", "--registry", reg]) == {
        "current": "v0001", "previous": "v0002"}
    res = runner.invoke(app, ["model", "list", "--registry", reg])
    assert res.exit_code == 0 and "v0002" in res.stdout and "5.0%" in res.stdout


def test_register_refuses_what_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    res = runner.invoke(app, ["model", "register", str(tmp_path / "junk"), "--registry",
                              str(tmp_path / "reg")])
    assert isinstance(res.exception, GreenSchedError) and "config.json" in str(res.exception)
    res = runner.invoke(app, ["model", "list", "--registry", str(tmp_path / "none")])
    assert "greensched model register" in str(res.exception)


def test_retune_with_nothing_promoted_names_the_command(tmp_path: Path) -> None:
    (tmp_path / "reg").mkdir()
    replay = tmp_path / "train.parquet"
    replay.write_bytes(b"")
    res = runner.invoke(app, ["feedback", "retune", "--registry", str(tmp_path / "reg"),
                              "--replay", str(replay), "--store", str(tmp_path / "o.sqlite")])
    msg = str(res.exception)
    assert "no model version has been promoted" in msg
    assert f"greensched model register MODEL_DIR --registry {tmp_path / 'reg'} --promote" in msg


def test_status_exits_1_on_drift_only(tmp_path: Path) -> None:
    store = str(tmp_path / "o.sqlite")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"energy_kwh": {"mape": 0.13}, "service_s": {"mape": 0.13}}))
    with OutcomeStore.open(store) as s:
        s.ingest(make_outcomes(600, seed=1, prefix="old"))
    args = ["feedback", "status", "--store", store, "--validation-metrics", str(metrics),
            "--window", "300"]
    ok = runner.invoke(app, [*args, "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["verdict"] == "ok"
    with OutcomeStore.open(store) as s:
        s.ingest(make_outcomes(300, seed=3, prefix="new", energy_scale=1.7,
                               start=pd.Timestamp("2025-02-01", tz="UTC").to_pydatetime()))
    drift = runner.invoke(app, [*args, "--json"])
    assert drift.exit_code == 1 and json.loads(drift.stdout)["verdict"] == "drift"


def test_ingest_with_scenario_refuses_foreign_labels(tmp_path: Path) -> None:
    from greensched.synth import synthesize

    scen = synthesize(dcs=2, areas=2, types=1, hours=4, seed=0)
    sdir = scen.save(tmp_path / "s")
    rec = make_outcomes(2)
    for r in rec:
        r.update(area=scen.areas[0], query_type=scen.query_types[0], dc=scen.dcs[0],
                 arrival_s=10.0)
    rec[1].update(area="atlantis", dc="mars", arrival_s=99 * 3600.0)
    f = tmp_path / "o.csv"
    pd.DataFrame(rec).to_csv(f, index=False)
    store = str(tmp_path / "o.sqlite")
    res = runner.invoke(app, ["feedback", "ingest", str(f), "--store", store, "--scenario",
                              str(sdir)])
    msg = str(res.exception)
    assert "line 3, column 'area'" in msg and "'mars'" in msg and "hour slot in 0..3" in msg
    res = runner.invoke(app, ["feedback", "ingest", str(f), "--store", store, "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["inserted"] == 2
