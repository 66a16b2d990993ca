"""``greensched loop``: the HTTP service on loopback, the twin, outcomes posted, the loop cycle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="greensched loop runs the HTTP service (FastAPI)")
pytest.importorskip("xgboost", reason="the loop trains an XGBoost predictor")

from typer.testing import CliRunner

from greensched.cli.main import app
from greensched.errors import GreenSchedError
from greensched.feedback.closed_loop import LoopConfig
from greensched.feedback.store import OutcomeStore
from greensched.synth import synthesize

runner = CliRunner()


def test_loop_over_http_stores_every_placed_job(tmp_path: Path) -> None:
    scen = synthesize(dcs=3, areas=2, types=2, hours=4, seed=2)
    sdir = scen.save(tmp_path / "s")
    work, out = tmp_path / "work", tmp_path / "out"
    res = runner.invoke(app, ["loop", str(sdir), "--periods", "3", "--jobs", "60",
                              "--train-jobs", "300", "--work-dir", str(work), "--out", str(out),
                              "--format", "svg", "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["periods_served"] == 3 and s["change_period"] is None
    assert s["current_version"] == "v0001" or s["promotions"]
    # 3 x (one /v1/assign + one /v1/outcomes) at least, plus a /healthz per hot swap
    assert s["http_requests"] >= 6 + len(s["promotions"])
    per = json.loads((out / "loop.json").read_text())["periods"]
    placed = sum(p["n_jobs"] for p in per)
    assert placed == sum(p["stored"] for p in per) == 180 - sum(p["n_unplaced"] for p in per)
    with OutcomeStore.open(work / "outcomes.sqlite", create=False) as store:
        rows = store.query()
    assert len(rows) == placed and set(rows["policy"]) == {"service-greedy-epsilon"}
    assert rows["carbon_kg"].notna().all() and (rows["propensity"] > 0).all()
    assert (out / "loop.md").is_file() and (out / "loop.svg").read_text().startswith("<?xml")


def test_loop_options_are_checked(tmp_path: Path) -> None:
    res = runner.invoke(app, ["loop", "--drift-at", "2", "--periods", "4"])
    assert "--drift-dcs" in str(res.exception)
    res = runner.invoke(app, ["loop", "--format", "gif"])
    assert "png, svg or pdf" in str(res.exception)
    with pytest.raises(GreenSchedError, match="drift period"):
        LoopConfig(periods=4, drift_period=4, drift_dcs=("a",))
    with pytest.raises(GreenSchedError, match="load shift weight"):
        LoopConfig(load_shift=(("chat", 0.0),))
