"""The command line as a user runs it: outputs, exit codes, one-line errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.cli_inprocess import run_cli

run = run_cli


def test_console_script_as_a_process(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "greensched.cli", "plan", "/nonexistent/dir"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "not found" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def synth_via_cli(out: Path) -> subprocess.CompletedProcess[str]:
    """A small synthetic scenario written by ``greensched scenario synth``."""
    return run("scenario", "synth", "--out", str(out), "--dcs", "2", "--areas", "2",
               "--types", "2", "--hours", "3")


def test_plan_paper_scenario(paper_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = run("plan", str(paper_dir), "--out", str(out), "--plot")
    assert p.returncode == 0, p.stderr
    assert "392.08" in p.stdout
    doc = json.loads((out / "plan.json").read_text())
    assert doc["objective"]["total_usd"] == pytest.approx(392.08, abs=0.01)
    for name in (
        "allocation.csv",
        "dc_hourly.csv",
        "hourly_costs.png",
        "energy_by_dc.png",
        "allocation_heatmap.png",
    ):
        assert (out / name).stat().st_size > 0, name


def test_plan_lexicographic_and_preset(paper_dir: Path, tmp_path: Path) -> None:
    p = run(
        "plan",
        str(paper_dir),
        "--lexicographic",
        "carbon,delay,energy",
        "--out",
        str(tmp_path / "lex"),
    )
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "lex" / "plan.json").read_text())
    assert doc["mode"] == "lexicographic" and doc["order"] == ["carbon", "delay", "energy"]
    assert doc["objective"]["energy_usd"] == pytest.approx(207.11, abs=0.01)
    assert len(doc["phases"]) == 3
    p = run("plan", str(paper_dir), "--preset", "m1", "--out", str(tmp_path / "m1"))
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "m1" / "plan.json").read_text())
    assert doc["objective"]["energy_usd"] == pytest.approx(193.94, abs=0.01)


def test_plan_default_scenario_runs() -> None:
    p = run("plan")
    assert p.returncode == 0, p.stderr
    assert "total cost (USD)" in p.stdout


def test_bad_input_is_one_line_without_traceback(tmp_path: Path) -> None:
    scen = tmp_path / "s"
    assert synth_via_cli(scen).returncode == 0
    path = scen / "network.csv"
    lines = path.read_text().splitlines()
    cells = lines[2].split(",")
    cells[3] = "0"
    lines[2] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    for cmd in (("plan", str(scen)), ("scenario", "validate", str(scen))):
        p = run(*cmd)
        assert p.returncode == 2
        assert "Traceback" not in p.stderr
        err = p.stderr.strip().splitlines()
        assert len(err) == 1
        assert "network.csv, line 3, column 'bandwidth'" in err[0] and "'0'" in err[0]


def test_infeasible_exit_code(tmp_path: Path) -> None:
    from greensched.scenario import load_scenario

    scen = tmp_path / "s"
    synth_via_cli(scen)
    s = load_scenario(scen)
    s.water_budget_l = 0.001
    s.save(scen)
    p = run("plan", str(scen), "--out", str(tmp_path / "o"))
    assert p.returncode == 3
    assert "Traceback" not in p.stderr
    assert "water budget" in p.stderr
    doc = json.loads((tmp_path / "o" / "plan.json").read_text())
    assert doc["status"] == "infeasible" and doc["diagnosis"][0]["family"] == "water"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("plan", "--weights", "1,x,1"), "--weights"),
        (("plan", "--lexicographic", "energy,carbon"), "permutation"),
        (("plan", "--preset", "m7"), "m7"),
        (("plan", "--weights", "1,0,0", "--preset", "m1"), "at most one"),
        (("plan", "/nonexistent/dir"), "not found"),
        (("sweep", "--param", "wind"), "wind"),
        (("sweep", "--scale", "1:0:0.1"), "--scale"),
    ],
)
def test_option_errors(args: tuple[str, ...], needle: str) -> None:
    p = run(*args)
    assert p.returncode == 2, p.stdout
    assert needle in p.stderr and "Traceback" not in p.stderr


def test_gurobi_too_large_message(paper_dir: Path) -> None:
    pytest.importorskip("gurobipy", reason="gurobipy is not installed")
    p = run("plan", str(paper_dir), "--solver", "gurobi")
    assert p.returncode == 4
    assert "2000" in p.stderr and "Traceback" not in p.stderr


def test_scenario_show_and_sweep(paper_dir: Path, tmp_path: Path) -> None:
    p = run("scenario", "show", str(paper_dir))
    assert p.returncode == 0 and "us-central1" in p.stdout
    p = run(
        "sweep",
        str(paper_dir),
        "--param",
        "theta",
        "--scale",
        "0.5,1.0",
        "--presets",
        "m0,m2",
        "--out",
        str(tmp_path),
    )
    assert p.returncode == 0, p.stderr
    df = pd.read_csv(tmp_path / "sweep_theta.csv")
    assert len(df) == 4 and set(df["model"]) == {"m0", "m2"}
    at_one = df[(df["scale"] == 1.0) & (df["model"] == "m0")]
    assert at_one["total_usd"].item() == pytest.approx(392.08, abs=0.01)
    assert (tmp_path / "sweep_theta.png").stat().st_size > 0
