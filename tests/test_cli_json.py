"""``--json`` on every command: stdout is one JSON document with the documented keys.

The commands run in process through typer's CliRunner (stdout and stderr apart) on a tiny
synthetic scenario or the embedded default; ``serve --json`` must answer at the address it
printed.  docs/cli-json.md lists the keys checked here.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from greensched.cli.main import app

runner = CliRunner()

#: Command groups whose leaves may lack ``--json``, and why.
NO_JSON: dict[str, str] = {}
#: Commands whose ``--json`` is checked through ``--help`` only here (too slow for a unit
#: test: model training, the relocation frontier sweep, the SE-GLB experiment, scenario
#: builds from the raw data, the closed loop, the registry/outcome commands tested elsewhere).
HELP_ONLY = ("train", "relocation", "equity experiment", "scenario build", "loop",
             "feedback retune", "feedback run", "feedback experiment", "experiment run",
             "experiment report", "experiment ablations")


def leaf_commands() -> dict[str, Any]:
    """Every leaf command of the app by its full name (``scenario show``), from click's tree."""
    found: dict[str, Any] = {}

    def walk(cmd: Any, path: list[str]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        else:
            found[" ".join(path)] = cmd

    walk(typer.main.get_command(app), [])
    return found


def has_json(cmd: Any) -> bool:
    return any("--json" in getattr(p, "opts", ()) for p in cmd.params)


def run_json(*args: str | Path, raises: type[Exception] | None = None) -> Any:
    """Run ``greensched ARGS --json`` in process; stdout must parse as JSON.  ``raises``: the
    user error expected (main() turns it into its exit code)."""
    res = runner.invoke(app, [*map(str, args), "--json"])
    if raises is None:
        assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
    else:
        assert isinstance(res.exception, raises), (res.stdout, res.stderr, res.exception)
    try:
        return json.loads(res.stdout)
    except json.JSONDecodeError as exc:  # pragma: no cover - the failure message
        raise AssertionError(f"stdout is not JSON: {res.stdout[:400]!r}") from exc


def keys_of(doc: Any, *keys: str) -> None:
    assert isinstance(doc, dict), doc
    missing = [k for k in keys if k not in doc]
    assert not missing, f"missing keys {missing}; got {sorted(doc)}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("json") / "tiny"
    doc = run_json("scenario", "synth", "--out", out, "--dcs", "2", "--areas", "2",
                   "--types", "2", "--hours", "3")
    keys_of(doc, "out", "name", "sizes", "seed")
    assert doc["sizes"]["dc"] == 2 and Path(doc["out"]) == out
    return out


def test_every_leaf_command_has_json() -> None:
    leaves = leaf_commands()
    assert len(leaves) >= 25, sorted(leaves)
    groups = {n.split()[0] for n in leaves}
    stale = sorted(set(NO_JSON) - groups)
    assert not stale, f"allow-list names groups that no longer exist: {stale}"
    missing = sorted(n for n, c in leaves.items()
                     if not has_json(c) and n.split()[0] not in NO_JSON)
    assert not missing, f"commands without --json: {missing}"


@pytest.mark.parametrize("name", HELP_ONLY)
def test_slow_commands_list_json_in_help(name: str) -> None:
    res = runner.invoke(app, [*name.split(), "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.stderr
    assert "--json" in res.stdout


def test_version() -> None:
    from greensched.version import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"greensched {__version__}"


def test_scenario_show_validate(tiny: Path) -> None:
    doc = run_json("scenario", "show")
    keys_of(doc, "name", "description", "hours", "start", "water_budget_l", "sizes", "dcs",
            "query_types")
    assert len(doc["dcs"]) == doc["sizes"]["dc"] == 9 and doc["start"] is not None
    keys_of(doc["dcs"][0], "dc", "name", "pue", "price_usd_per_kwh_mean",
            "carbon_kg_per_kwh_mean", "renewable_kw_mean", "grid_cap_kw_mean")
    keys_of(doc["query_types"][0], "query_type", "input_tokens", "output_tokens",
            "queries_total", "wh_per_query")
    ok = run_json("scenario", "validate", tiny)
    assert ok["ok"] is True and ok["problems"] == []


def test_plan_and_its_infeasible_exit(tiny: Path, tmp_path: Path) -> None:
    doc = run_json("plan", tiny, "--out", tmp_path / "p")
    keys_of(doc, "status", "mode", "objective", "carbon_kg", "water_l", "grid_kwh", "it_kwh",
            "solver", "solve_seconds", "phases", "scenario", "out", "files")
    on_disk = json.loads((tmp_path / "p" / "plan.json").read_text())
    assert doc["status"] == "optimal"
    assert doc["objective"]["total_usd"] == pytest.approx(on_disk["objective"]["total_usd"])
    assert {Path(f).name for f in doc["files"]} >= {"plan.json", "allocation.csv"}
    # an infeasible scenario: the JSON (with the diagnosis) on stdout, then exit 3
    from greensched.errors import InfeasibleError
    from greensched.scenario import load_scenario

    scen = load_scenario(tiny)
    scen.ds["capacity"] = scen.ds["capacity"] * 1e-6
    scen.save(tmp_path / "bad")
    bad = run_json("plan", tmp_path / "bad", raises=InfeasibleError)
    assert bad["status"] == "infeasible" and bad["diagnosis"]


def test_sweep_and_table(tiny: Path, tmp_path: Path) -> None:
    doc = run_json("sweep", tiny, "--scale", "1,2", "--presets", "m0", "--no-plot",
                   "--out", tmp_path)
    keys_of(doc, "scenario", "param", "rows", "out", "files")
    assert [r["scale"] for r in doc["rows"]] == [1.0, 2.0]
    assert doc["rows"][0]["model"] == "m0" and "carbon_kg" in doc["rows"][0]
    assert len(pd.read_csv(doc["files"][0])) == len(doc["rows"])


def test_equity_commands(tiny: Path) -> None:
    doc = run_json("equity", "plan", tiny, "--equity", "q=1")
    keys_of(doc, "scenario", "status", "q", "weights", "solver", "solve_s", "objective",
            "per_dc", "out")
    assert doc["status"] == "optimal" and len(doc["per_dc"]) == 2
    sol = run_json("equity", "solve", tiny, "--algorithm", "cost-glb")
    keys_of(sol, "hours", "locations", "regions", "q", "results", "table1", "files")
    assert sol["results"]["Cost-GLB"]["status"] == "optimal"  # keyed by the paper's names
    assert sol["table1"][0]["algorithm"] == "Cost-GLB"
    onl = run_json("equity", "online", tiny)
    keys_of(onl, "hours", "q", "eta", "components", "offline_objective_usd", "regret_usd",
            "regret_ratio", "solve_s")
    assert onl["regret_usd"] >= -1e-6 * abs(onl["offline_objective_usd"])


def test_simulate_predict_evaluate(tiny: Path, tmp_path: Path) -> None:
    data = tmp_path / "ds.parquet"
    sim = run_json("simulate", tiny, "--jobs", "300", "--policy", "greedy", "--dataset", data)
    keys_of(sim, "jobs", "carbon_kg", "energy_usd")
    assert sim["jobs"] == 300
    # a small XGBoost model (the train command's own fit takes too long for a unit test)
    from greensched.predictor.dataset import read_dataset
    from greensched.predictor.factory import make_predictor

    df, meta = read_dataset(data)
    model = make_predictor("xgboost", n_estimators=8, quantile_n_estimators=4,
                           action_n_estimators=4, n_jobs=1, progress=False)
    model.fit(df, meta=meta)
    model.save(tmp_path / "m")
    pred = run_json("predict", "--model", tmp_path / "m", "--scenario", tiny,
                    "--coefficients-out", tmp_path / "c.csv")
    keys_of(pred, "model", "scenario", "files")
    assert Path(pred["files"]["coefficients"]).is_file()
    ev = run_json("evaluate-predictor", "--model", tmp_path / "m", "--data", data,
                  "--out", tmp_path / "ev")
    keys_of(ev, "model", "data", "out", "report", "metrics")
    assert Path(ev["report"]).is_file() and "energy_kwh" in json.dumps(ev["metrics"])


def test_serve_prints_its_bound_address_then_serves(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """In process: uvicorn's Server.run is wrapped so that it serves in a thread, answers one
    /healthz at the address printed, then stops (the real socket, app and server)."""
    import threading

    import uvicorn
    import xarray as xr

    from greensched.defaults import default_scenario
    from greensched.scenario import save_coefficients

    scen = default_scenario()
    coef = save_coefficients(xr.Dataset({
        "energy_kwh_per_query": scen.energy_kwh_per_query(),
        "proc_delay_s_per_query": scen.proc_delay_s_per_query()}), tmp_path / "c.csv")
    seen: dict[str, Any] = {}
    real_run = uvicorn.Server.run

    def run_once(self: uvicorn.Server, sockets: list[Any] | None = None) -> None:
        assert sockets is not None
        seen["port"] = sockets[0].getsockname()[1]
        t = threading.Thread(target=real_run, args=(self,), kwargs={"sockets": sockets},
                             daemon=True)
        t.start()
        deadline = time.monotonic() + 30
        while not self.started and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            url = f"http://127.0.0.1:{seen['port']}/healthz"
            with urllib.request.urlopen(url, timeout=10) as resp:
                seen["healthz"] = resp.status
        finally:
            self.should_exit = True
            t.join(timeout=15)

    monkeypatch.setattr(uvicorn.Server, "run", run_once)
    monkeypatch.setenv("GREENSCHED_API_KEY", "k" * 32)
    info = run_json("serve", "--coefficients", coef, "--port", "0")
    keys_of(info, "url", "host", "port", "pid", "mode", "scenario", "coefficients", "store",
            "ledger", "endpoints")
    assert info["port"] == seen["port"] > 0 and info["url"].endswith(f":{seen['port']}")
    assert info["pid"] == os.getpid() and "/v1/assign" in info["endpoints"]
    assert seen["healthz"] == 200
    assert "k" * 32 not in json.dumps(info)


def test_native_stdout_goes_to_stderr_under_json(capfd: pytest.CaptureFixture[str]) -> None:
    # HiGHS's MIP solver writes a line to descriptor 1 itself when given a start solution;
    # under --json that would corrupt the document (seen in `experiment run --json`)
    from greensched.cli._app import native_stdout_to_stderr

    with native_stdout_to_stderr(True):
        os.write(1, b"native line\n")
    os.write(1, b"after\n")
    out, err = capfd.readouterr()
    assert "native line" in err and "native line" not in out
    assert "after" in out
