"""The standing feedback loop: intervals, per-DC calibration, drift -> re-tune -> promote, the
bounded loop, the command bodies, and the drift experiment's claim (quick configuration)."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from test_retune import CHANGED, World, ingest_period, new_registry, world  # noqa: F401

from greensched.cli.feedback import retune_command, run_command
from greensched.errors import GreenSchedError
from greensched.eval.simulate import write_dataset
from greensched.feedback.drift import Verdict
from greensched.feedback.experiment import run_drift_experiment
from greensched.feedback.loop import (
    CycleAction,
    LoopState,
    dc_bias_check,
    parse_interval,
    run_forever,
    run_once,
)
from greensched.feedback.registry import HotModel, ModelRegistry, wait_for_version
from greensched.feedback.retune import RetuneStatus
from greensched.feedback.store import OutcomeStore
from greensched.predictor.checkpoint import load_predictor


def test_parse_interval() -> None:
    assert parse_interval("1h") == 3600.0
    assert parse_interval("30m") == 1800.0
    assert parse_interval("15s") == 15.0
    assert parse_interval("1h30m") == 5400.0
    assert parse_interval("500ms") == 0.5
    assert parse_interval("90") == 90.0
    assert parse_interval(2.5) == 2.5
    assert parse_interval(" 2D ") == 2 * 86400.0
    for bad in ("", "1x", "h", "1h-2m", "0s", "-5", "1h 2q"):
        with pytest.raises(GreenSchedError):
            parse_interval(bad)


def _recent(n_ok: int, n_off: int, factor: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pred = rng.uniform(1e-4, 1e-3, n_ok + n_off)
    noise = np.exp(rng.normal(0, 0.03, n_ok + n_off))
    meas = pred * noise * np.r_[np.ones(n_ok), np.full(n_off, factor)]
    return pd.DataFrame({"dc": ["a"] * n_ok + ["b"] * n_off, "pred_energy_kwh": pred,
                         "energy_kwh": meas, "pred_service_s": 1.0, "service_s": noise})


def test_dc_bias_check_flags_a_miscalibrated_dc() -> None:
    verdict, biases = dc_bias_check(_recent(200, 8, 0.5))
    assert verdict is Verdict.DRIFT
    flagged = {(b.dc, b.target) for b in biases if b.flagged}
    assert flagged == {("b", "energy_kwh")}
    b = next(x for x in biases if x.dc == "b" and x.target == "energy_kwh")
    assert b.factor == pytest.approx(0.5, rel=0.05) and b.n == 8
    # a small bias (5 %) is within tolerance; too few outcomes are not judged
    assert dc_bias_check(_recent(200, 8, 0.95))[0] is Verdict.OK
    verdict, biases = dc_bias_check(_recent(200, 3, 0.5))
    assert verdict is Verdict.OK and all(b.dc == "a" for b in biases)
    assert dc_bias_check(_recent(0, 0, 1.0))[0] is Verdict.INSUFFICIENT_DATA


def test_loop_detects_drift_and_promotes(world: World, tmp_path: Path,  # noqa: F811
                                         store_url: str) -> None:
    reg = new_registry(world, tmp_path / "reg")
    hot = HotModel(reg, load_predictor)
    state = LoopState()
    with OutcomeStore.open(store_url) as store:
        # too few outcomes: no verdict
        ingest_period(world, store, reg, 0, changed=False, jobs=60)
        c0 = run_once(store, reg, replay_data=world.train, window=300, state=state)
        assert c0.action is CycleAction.INSUFFICIENT_DATA and c0.retune is None
        # the unchanged world: no drift
        ingest_period(world, store, reg, 1, changed=False)
        c1 = run_once(store, reg, replay_data=world.train, window=300, state=state)
        assert c1.verdict in (Verdict.OK, Verdict.WATCH), c1.describe()
        assert c1.action is CycleAction.NO_DRIFT and reg.current() == "v0001"
        # new GPUs halve the energy at three DCs: drift, re-tune, promote
        ingest_period(world, store, reg, 2, changed=True)
        c2 = run_once(store, reg, replay_data=world.train, window=300, state=state,
                      min_improvement=0.05)
        assert c2.verdict is Verdict.DRIFT, c2.describe()
        assert c2.action is CycleAction.PROMOTED and c2.promoted and c2.is_ok
        assert c2.retune is not None and c2.retune.status is RetuneStatus.PROMOTED
        assert c2.version_before == "v0001" and c2.version_after == reg.current() == "v0002"
        assert c2.retune.improvement >= 0.05
        assert any(b.flagged and b.dc in CHANGED for b in c2.dc_bias) or \
            c2.drift is not None and c2.drift.target("energy_kwh").ratio >= 1.5
        assert "promoted v0002" in c2.describe()
        # a service polling the registry swaps the new version in
        assert wait_for_version(hot, "v0002", timeout_s=5)
        # the new version starts with no outcomes of its own
        c3 = run_once(store, reg, replay_data=world.train, window=300, state=state)
        assert c3.action is CycleAction.INSUFFICIENT_DATA
        assert c3.to_dict()["version_before"] == "v0002"


def test_rejected_retune_cools_down(world: World, tmp_path: Path) -> None:  # noqa: F811
    reg = new_registry(world, tmp_path / "reg")
    state = LoopState()
    with OutcomeStore.open(tmp_path / "o.sqlite") as store:
        ingest_period(world, store, reg, 0, changed=True)
        # an improvement of 99 % is out of reach: rejected, then cooling down
        c1 = run_once(store, reg, replay_data=world.train, window=300, state=state,
                      min_improvement=0.99)
        assert c1.action is CycleAction.REJECTED and reg.current() == "v0001"
        assert state.attempted_version == "v0001"
        c2 = run_once(store, reg, replay_data=world.train, window=300, state=state,
                      min_improvement=0.99)
        assert c2.action is CycleAction.COOLDOWN and c2.retune is None
        # without state (a one-off cycle) it tries again
        c3 = run_once(store, reg, replay_data=world.train, window=300, min_improvement=0.99)
        assert c3.action is CycleAction.REJECTED
        with pytest.raises(GreenSchedError, match="trigger"):
            run_once(store, reg, replay_data=world.train, trigger="always")


def test_run_forever_is_bounded_and_stoppable(world: World, tmp_path: Path) -> None:  # noqa: F811
    reg = new_registry(world, tmp_path / "reg")
    path = tmp_path / "o.sqlite"
    with OutcomeStore.open(path) as store:
        ingest_period(world, store, reg, 0, changed=False)
    seen: list[CycleAction] = []
    cycles = run_forever(0.01, str(path), reg, replay_data=world.train, max_cycles=3,
                         window=300, on_cycle=lambda c: seen.append(c.action))
    assert len(cycles) == 3 and len(seen) == 3
    assert all(c.is_ok for c in cycles)
    # a stop event ends a long-interval loop promptly
    stop = threading.Event()
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(run_forever(
        3600.0, str(path), reg, replay_data=world.train, stop=stop, window=300)))
    t0 = time.monotonic()
    t.start()
    time.sleep(0.5)
    stop.set()
    t.join(timeout=30)
    assert not t.is_alive() and time.monotonic() - t0 < 30
    assert len(out[0]) == 1  # type: ignore[arg-type]
    # a failing cycle is recorded and the loop goes on
    empty = ModelRegistry(tmp_path / "empty")
    bad = run_forever(0.01, str(path), empty, replay_data=world.train, max_cycles=2)
    assert [c.action for c in bad] == [CycleAction.ERROR, CycleAction.ERROR]
    assert "promoted" in bad[0].message
    with pytest.raises(GreenSchedError):
        run_forever(0.0, str(path), reg, replay_data=world.train)


def test_commands(world: World, tmp_path: Path) -> None:  # noqa: F811
    reg = new_registry(world, tmp_path / "reg")
    replay = write_dataset(world.train, tmp_path / "train.parquet")
    store = tmp_path / "o.sqlite"
    with OutcomeStore.open(store) as s:
        ingest_period(world, s, reg, 0, changed=True)
    buf = io.StringIO()
    console = Console(file=buf, width=160)
    cycles = run_command("1h", once=True, store=str(store), registry=tmp_path / "reg",
                         replay=replay, window=300, console=console)
    assert len(cycles) == 1 and cycles[0].action is CycleAction.PROMOTED
    assert "promoted" in buf.getvalue()
    # a direct re-tune on the same outcomes: the promoted model is not beaten by 50 %
    res = retune_command(str(store), tmp_path / "reg", replay, window=300,
                         min_improvement=0.5, json_out=tmp_path / "r.json", console=console)
    assert res.status is RetuneStatus.NOT_BETTER
    assert (tmp_path / "r.json").is_file() and "Re-tune of v0002" in buf.getvalue()
    with pytest.raises(GreenSchedError, match="replay"):
        retune_command(str(store), tmp_path / "reg", None, console=console)
    with pytest.raises(GreenSchedError, match="interval"):
        run_command("soon", once=True, store=str(store), registry=tmp_path / "reg",
                    replay=replay, console=console)
    with pytest.raises(GreenSchedError, match="promoted"):
        run_command("1h", once=True, store=str(store), registry=tmp_path / "none",
                    replay=replay, console=console)


def test_drift_experiment_quick_cuts_the_error(tmp_path: Path) -> None:
    t0 = time.process_time()  # CPU seconds: wall time depends on the other load of the machine
    res = run_drift_experiment(tmp_path, seed=0, quick=True)
    elapsed = time.process_time() - t0
    s = res.summary
    assert res.is_ok
    assert s["detection_delay_periods"] is not None and s["detection_delay_periods"] <= 3
    assert s["promoted_period"] is not None and s["promoted_period"] >= res.config.change_period
    assert s["error_reduction"] >= 0.10  # the proposal's claim
    assert s["error_after"] < s["error_stale_after"]
    assert s["carbon_current_g"] < s["carbon_stale_g"]
    assert s["carbon_current_g"] == pytest.approx(s["carbon_oracle_g"], rel=0.25)
    assert res.report_path is not None and res.report_path.is_file()
    assert res.plot_path is not None and res.plot_path.stat().st_size > 10_000
    text = res.report_path.read_text()
    assert "error reduction by re-tuning" in text and "claim >= 10 %: met" in text
    assert elapsed < 60.0
