"""``greensched equity``: bad input is one line and exit 2; the equity plan writes its files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from greensched.synth import synthesize
from tests.cli_inprocess import run_cli

pytest.importorskip("cvxpy", reason="the q = 2 equity plan needs cvxpy + clarabel")


run = run_cli


def test_bad_q_is_one_line_exit_2() -> None:
    proc = run("equity", "solve", "--q", "0.5")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: q='0.5': expected a number >= 1 or 'inf'"


def test_plan_equity_option_writes_files(tmp_path: Path) -> None:
    # `greensched plan --equity ...` (the same code path as `greensched equity plan`)
    scen = synthesize(dcs=3, areas=2, types=2, hours=3, seed=11, name="cli-equity")
    scen.save(tmp_path / "s")
    proc = run(
        "plan", str(tmp_path / "s"), "--equity", "q=inf,mu_c=1500", "--out", str(tmp_path / "o")
    )
    assert proc.returncode == 0, proc.stderr
    body = json.loads((tmp_path / "o" / "plan.json").read_text())
    assert body["status"] == "optimal" and body["equity"]["q"] == "inf"
    assert (tmp_path / "o" / "allocation.csv").is_file()
    assert (tmp_path / "o" / "equity_by_dc.csv").is_file()
