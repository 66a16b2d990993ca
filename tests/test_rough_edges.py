"""The rough edges a new user met (issue 12, item 5), each as the command that now behaves."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from greensched.cli.main import app
from greensched.extras import missing_extra_message
from greensched.synth import synthesize

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    code = "import sys; from greensched.cli.main import main; sys.argv[0] = 'greensched'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def scen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(dcs=3, areas=2, types=2, hours=4, seed=1).save(
        tmp_path_factory.mktemp("s") / "s")


def test_highs_banner_only_with_verbose(scen_dir: Path) -> None:
    quiet = _cli("plan", str(scen_dir))
    assert quiet.returncode == 0, quiet.stderr
    assert "HiGHS" not in quiet.stdout and "Copyright" not in quiet.stdout
    loud = _cli("--verbose", "plan", str(scen_dir))
    assert loud.returncode == 0 and "Running HiGHS" in loud.stdout


def test_missing_extra_is_one_line_naming_it(tmp_path: Path) -> None:
    hide = textwrap.dedent("""
        import sys
        class Hide:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "xgboost":
                    raise ModuleNotFoundError("No module named 'xgboost'", name="xgboost")
        sys.meta_path.insert(0, Hide())
        sys.argv = ["greensched", "train", "--data", DATA, "--model", "xgboost",
                    "--out", "m"]
        from greensched.cli.main import main
        main()
    """)
    from greensched.eval.simulate import build_dataset, write_dataset
    from greensched.eval.traces import jobs_from_demand

    scen = synthesize(dcs=2, areas=1, types=1, hours=2, seed=0)
    data = write_dataset(build_dataset(scen, jobs_from_demand(scen, 60, seed=0)),
                         tmp_path / "d.parquet")
    hide = hide.replace("DATA", repr(str(data)))
    r = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: this needs the optional module 'xgboost', which is not installed: "
        "pip install 'greensched[ml]'"]
    assert missing_extra_message(ModuleNotFoundError("x", name="some_bug")) is None


def test_scenario_validate_reports_every_problem(scen_dir: Path, tmp_path: Path) -> None:
    import shutil

    import pandas as pd

    bad = tmp_path / "bad"
    shutil.copytree(scen_dir, bad)
    dc = pd.read_csv(bad / "datacenters.csv", dtype=str, keep_default_na=False)
    dc.loc[0, "pue"], dc.loc[1, "pue"] = "0.5", "abc"
    dc.to_csv(bad / "datacenters.csv", index=False)
    h = pd.read_csv(bad / "hourly_dc.csv", dtype=str, keep_default_na=False)
    h.loc[3, "hour"], h.loc[5, "dc"], h.loc[7, "carbon_kg_per_kwh"] = "99", "mars", "-5"
    h.to_csv(bad / "hourly_dc.csv", index=False)
    res = runner.invoke(app, ["scenario", "validate", str(bad), "--json"])
    assert res.exit_code == 2
    problems = json.loads(res.stdout)["problems"]
    where = {re.search(r"(\w+\.csv), line (\d+), column '(\w+)'", p).groups()  # type: ignore[union-attr]
             for p in problems}
    assert where == {("datacenters.csv", "2", "pue"), ("datacenters.csv", "3", "pue"),
                     ("hourly_dc.csv", "5", "hour"), ("hourly_dc.csv", "7", "dc"),
                     ("hourly_dc.csv", "9", "carbon_kg_per_kwh")}
    res = runner.invoke(app, ["scenario", "validate", str(bad), "--max-errors", "2", "--json"])
    assert len(json.loads(res.stdout)["problems"]) == 2
    ok = runner.invoke(app, ["scenario", "validate", str(scen_dir)])
    assert ok.exit_code == 0 and "ok" in ok.stdout


def test_scenario_show_cuts_at_word_boundaries(tmp_path: Path) -> None:
    scen = synthesize(dcs=2, areas=1, types=1, hours=2, seed=0)
    scen.description = "alpha-beta " * 60 + "omega"
    d = scen.save(tmp_path / "long")
    res = runner.invoke(app, ["scenario", "show", str(d)], terminal_width=400)
    desc = " ".join(res.stdout.split("\narea:")[0].split())
    assert desc.endswith("alpha-beta ...") and "omega" not in desc
    assert all(w in ("alpha-beta", "...", "—") or w.startswith("synth") for w in desc.split())


def test_version() -> None:
    from greensched.version import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"greensched {__version__}"


def _doc_json(marker: str) -> dict[str, object]:
    doc = (ROOT / "docs" / "service.md").read_text(encoding="utf-8")
    block = doc.split(f"<!-- {marker} -->", 1)[1].split("```", 2)[1]
    body = block.split("-d '", 1)[1].rsplit("'", 1)[0]
    return json.loads(body)


def test_service_doc_bodies_validate_against_a_shipped_scenario() -> None:
    pytest.importorskip("pydantic")
    from greensched.defaults import default_scenario
    from greensched.service.schemas import request_models

    scen = default_scenario()
    models = request_models(scen, 10)
    job = models["AssignJob"].model_validate(_doc_json("assign-body"))
    out = models["Outcome"].model_validate(_doc_json("outcome-body"))
    assert job.area in scen.areas and out.dc in scen.dcs
    assert set(_doc_json("outcome-body")) >= {
        "job_id", "area", "query_type", "input_tokens", "dc", "model_version",
        "pred_energy_kwh", "pred_service_s", "energy_kwh", "service_s"}


def test_simulate_json_summary_on_stdout(scen_dir: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["simulate", str(scen_dir), "--jobs", "200", "--policy", "greedy",
                              "--out", str(tmp_path / "sim"), "--json"])
    assert res.exit_code == 0, res.output
    totals = json.loads(res.stdout)
    assert totals["jobs"] == 200 and totals["policy"] == "greedy" and totals["carbon_kg"] > 0
