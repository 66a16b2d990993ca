"""Sweep experiments (kind = "sweep"): file errors, one tiny run through the CLI and its report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from greensched.eval.experiment import (
    SWEEP_SECTIONS,
    ExperimentError,
    experiment_kind,
    load_experiment,
    load_sweep_experiment,
)

REPO = Path(__file__).resolve().parents[2]
SECTION3 = REPO / "examples" / "experiments" / "letter-section3.toml"

TINY = """
name = "tiny-sweep"
kind = "sweep"
scenario = "synth:3,2,2,4,1"
presets = ["m0", "m2"]
[[sweep]]
param = "theta"
scales = [1.0, 1.2]
[profile]
param = "theta"
scale = 1.2
"""


def _write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "sweep.toml"
    p.write_text(body, encoding="utf-8")
    return p


def test_letter_section3_file_parses() -> None:
    exp = load_sweep_experiment(SECTION3)
    assert experiment_kind(SECTION3) == "sweep"
    assert [s.param for s in exp.sweeps] == ["theta", "renewables", "tau", "rho"]
    assert exp.profile is not None and (exp.profile.param, exp.profile.scale) == ("theta", 1.2)
    for s in exp.sweeps:  # every sweep passes through the letter's reference point
        assert 1.0 in s.scales
    with pytest.raises(ExperimentError, match="not a policy experiment"):
        load_experiment(SECTION3)


def test_sweep_file_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match="sweep param 'carbon' is not known.*theta"):
        load_sweep_experiment(_write(tmp_path, TINY.replace('"theta"\nscales', '"carbon"\nscales')))
    with pytest.raises(ExperimentError, match="sweep 0: .*STEP"):
        load_sweep_experiment(_write(tmp_path, TINY.replace("[1.0, 1.2]", '"2:1:0.5"')))
    with pytest.raises(ExperimentError, match="presets"):
        load_sweep_experiment(_write(tmp_path, TINY.replace('["m0", "m2"]', '["m7"]')))
    with pytest.raises(ExperimentError, match="kind 'sweeps' is not known"):
        experiment_kind(_write(tmp_path, TINY.replace('"sweep"', '"sweeps"')))


def test_tiny_sweep_experiment_run_and_report(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from greensched.cli.main import app

    exp = _write(tmp_path, TINY)
    out = tmp_path / "run"
    md = tmp_path / "report.md"
    r = CliRunner().invoke(
        app, ["experiment", "run", str(exp), "--out", str(out), "--report", str(md)]
    )
    assert r.exit_code == 0, r.output
    sweeps = pd.read_parquet(out / "sweeps.parquet")
    assert len(sweeps) == 2 * 2 and set(sweeps["status"]) == {"optimal"}
    # M2 minimises the carbon cost alone: scaling every θ by 1.2 scales its optimum by 1.2
    m2 = sweeps[sweeps["model"] == "m2"].set_index("scale")
    assert m2.loc[1.2, "carbon_usd"] == pytest.approx(1.2 * m2.loc[1.0, "carbon_usd"], rel=1e-6)
    # the hourly profiles at θ × 1.2 add up to the sweep's plans at 1.2
    prof = pd.read_parquet(out / "profiles.parquet")
    assert sorted(prof["hour"].unique()) == [0, 1, 2, 3]
    day = prof.groupby("model")[["carbon_kg", "energy_usd", "carbon_usd", "delay_usd"]].sum()
    at = sweeps[sweeps["scale"] == 1.2].set_index("model")
    for col in day.columns:
        assert day[col].to_numpy() == pytest.approx(
            at.loc[day.index, col].to_numpy(), rel=1e-6, abs=1e-9
        )
    text = md.read_text(encoding="utf-8")
    pos = [text.index(s) for s in SWEEP_SECTIONS]
    assert pos == sorted(pos)
    for fig in ("sweep_theta.png", "hourly_profiles.png"):
        assert (tmp_path / "report_figures" / fig).stat().st_size > 1000
    again = CliRunner().invoke(
        app, ["experiment", "report", str(out), "--out", str(tmp_path / "again.md")]
    )
    assert again.exit_code == 0, again.output
    assert (tmp_path / "again.md").read_text(encoding="utf-8").split("## Figures")[0] == text.split(
        "## Figures"
    )[0]


def test_shipped_experiment_files_parse() -> None:
    """Every experiment file in examples/experiments loads, and build: scenarios name a file."""
    files = sorted((REPO / "examples" / "experiments").glob("*.toml"))
    assert {"main.toml", "seasons.toml", "global-10dc.toml", "letter-section3.toml"} <= {
        f.name for f in files
    }
    for f in files:
        if experiment_kind(f) == "sweep":
            continue
        cfg = load_experiment(f)
        if cfg.scenario.startswith("build:"):
            assert Path(cfg.scenario[6:].partition("@")[0]).is_file(), f
    ten = load_experiment(REPO / "examples" / "experiments" / "global-10dc.toml")
    assert ten.scenario.endswith("global-10dc.toml@2024-07-15")
