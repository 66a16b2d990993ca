"""Input bounds of the scenario format (issue 17, items 2, 3 and 8): magnitudes the LP cannot
handle, the horizon maximum (checked before any allocation), a table of labels with only a
header, and a water budget of 0 reported as 0 l."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from greensched.errors import ScenarioError
from greensched.scenario import MAX_HOURS, load_scenario
from greensched.scenario_tables import MAGNITUDE_BOUNDS
from greensched.synth import synthesize


@pytest.fixture
def scen_dir(tmp_path: Path) -> Path:
    return synthesize(3, 2, 2, 4, seed=2, name="bounds").save(tmp_path / "s")


def _set_cell(path: Path, column: str, value: str, row: int = 0) -> None:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.loc[row, column] = value
    df.to_csv(path, index=False)


@pytest.mark.parametrize(("file", "column", "value"), [
    ("demand.csv", "queries", "1e308"),
    ("query_types.csv", "energy_in_kwh_per_token", "1e308"),  # tau
    ("query_types.csv", "delay_penalty_usd_per_s", "1e308"),  # rho
    ("datacenters.csv", "pue", "1e308"),
    ("network.csv", "rtt_s", "1e308"),
    ("resource_use.csv", "units_per_token", "1e308"),  # alpha
    ("network.csv", "bandwidth", "1e-308"),
])
def test_huge_or_tiny_values_are_refused_naming_the_cell(scen_dir: Path, file: str, column: str,
                                                         value: str) -> None:
    _set_cell(scen_dir / file, column, value)
    with pytest.raises(ScenarioError) as info:
        load_scenario(scen_dir)
    msg = str(info.value)
    low, high = MAGNITUDE_BOUNDS[column]
    assert file in msg and "line 2" in msg and repr(column) in msg and value in msg
    assert f"{high:g}" in msg and "docs/scenario-bounds.md" in msg


def test_values_at_the_bound_load(scen_dir: Path) -> None:
    _set_cell(scen_dir / "demand.csv", "queries", f"{MAGNITUDE_BOUNDS['queries'][1]:.0f}")
    assert float(load_scenario(scen_dir).ds["queries"].max()) == 1e12


def test_horizon_maximum_is_checked_before_allocating(scen_dir: Path) -> None:
    toml = scen_dir / "scenario.toml"
    text = toml.read_text()
    toml.write_text(text.replace("hours = 4", "hours = 100000000000"))
    t0 = time.perf_counter()
    with pytest.raises(ScenarioError, match=f"at most {MAX_HOURS}") as info:
        load_scenario(scen_dir)
    assert time.perf_counter() - t0 < 5.0  # no per-hour allocation happened
    assert "scenario.toml" in str(info.value) and "'hours'" in str(info.value)


def test_a_label_table_with_only_a_header_is_named(scen_dir: Path) -> None:
    path = scen_dir / "areas.csv"
    path.write_text(path.read_text().splitlines()[0] + "\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(scen_dir)
    msg = str(info.value)
    assert "areas.csv" in msg and "network.csv" not in msg and "no rows" in msg


def test_water_budget_zero_is_reported_as_zero() -> None:
    from greensched.scheduler import plan

    scen = synthesize(3, 2, 2, 4, seed=2)
    scen.water_budget_l = 0.0
    r = plan(scen)
    assert not r.is_ok
    water = [d for d in r.diagnosis if d["family"] == "water"]
    assert water and water[0]["limit"] == 0.0
    assert "limit 0 l" in r.message
