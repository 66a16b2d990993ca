"""Loading, validating and saving the scenario exchange format."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greensched.errors import ScenarioError
from greensched.scenario import TABLES, load_coefficients, load_scenario, save_coefficients
from greensched.synth import synthesize


def test_paper_scenario_dimensions(paper) -> None:
    assert paper.sizes() == {"area": 9, "dc": 9, "query_type": 5, "hour": 24, "resource": 3}
    assert paper.dcs[0] == "us-central1"
    assert paper.water_budget_l == pytest.approx(5820.012629119356)
    assert float(paper.ds["queries"].sum()) == 692248  # README of green_llm/model: total demand


def test_paper_round_trip_is_byte_identical(paper, paper_dir: Path, tmp_path: Path) -> None:
    paper.save(tmp_path)
    again = load_scenario(tmp_path)
    assert again.equals(paper)
    for spec in TABLES:
        assert (tmp_path / spec.file).read_bytes() == (paper_dir / spec.file).read_bytes(), (
            spec.file
        )


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    dcs=st.integers(1, 5),
    areas=st.integers(1, 4),
    types=st.integers(1, 4),
    hours=st.integers(1, 30),
    seed=st.integers(0, 10_000),
)
def test_synthetic_round_trip(tmp_path_factory, dcs, areas, types, hours, seed) -> None:  # type: ignore[no-untyped-def]
    scen = synthesize(dcs, areas, types, hours, seed)
    out = tmp_path_factory.mktemp("synth")
    scen.save(out)
    again = load_scenario(out)
    assert again.equals(scen)
    again.save(out)
    assert load_scenario(out).equals(scen)


def test_synth_is_seeded() -> None:
    a, b, c = synthesize(3, 2, 2, 5, 7), synthesize(3, 2, 2, 5, 7), synthesize(3, 2, 2, 5, 8)
    assert a.equals(b)
    assert not a.equals(c)


# -- bad inputs: every error names file, line, column ---------------------------------------------


@pytest.fixture()
def scen_dir(tmp_path: Path) -> Path:
    synthesize(3, 2, 2, 4, 1).save(tmp_path / "s")
    return tmp_path / "s"


def _edit(path: Path, line: int, column: str, value: str) -> None:
    rows = path.read_text().splitlines()
    header = rows[0].split(",")
    cells = rows[line - 1].split(",")
    cells[header.index(column)] = value
    rows[line - 1] = ",".join(cells)
    path.write_text("\n".join(rows) + "\n")


def _error(directory: Path) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(directory)
    assert isinstance(info.value, ValueError)
    return str(info.value)


@pytest.mark.parametrize(
    ("file", "line", "column", "value", "expected"),
    [
        ("hourly_dc.csv", 3, "price_usd_per_kwh", "abc", "not a finite number"),
        ("hourly_dc.csv", 4, "carbon_kg_per_kwh", "nan", "not a finite number"),
        ("hourly_dc.csv", 5, "renewable_kw", "", "empty value"),
        ("hourly_dc.csv", 2, "grid_cap_kw", "-5", ">= 0"),
        ("datacenters.csv", 3, "pue", "0.95", ">= 1"),
        ("network.csv", 2, "bandwidth", "0", "> 0"),
        ("demand.csv", 6, "queries", "-1", ">= 0"),
        ("hourly_dc.csv", 7, "hour", "4", "0..3"),
        ("demand.csv", 2, "hour", "1.5", "integer slot"),
        ("hourly_dc.csv", 4, "dc", "dc999", "not defined in datacenters.csv"),
        ("network.csv", 3, "area", "atlantis", "not defined in areas.csv"),
        ("resource_use.csv", 2, "resource", "quantum", "not defined in resources.csv"),
    ],
)
def test_bad_value_names_file_line_column(
    scen_dir: Path, file: str, line: int, column: str, value: str, expected: str
) -> None:
    _edit(scen_dir / file, line, column, value)
    msg = _error(scen_dir)
    assert file in msg
    assert f"line {line}" in msg
    assert f"column {column!r}" in msg
    assert expected in msg
    if value:
        assert repr(value) in msg


def test_negative_price_is_allowed(scen_dir: Path) -> None:
    _edit(scen_dir / "hourly_dc.csv", 2, "price_usd_per_kwh", "-0.02")
    scen = load_scenario(scen_dir)
    assert float(scen.ds["price_usd_per_kwh"].isel(hour=0, dc=0)) == -0.02


def test_missing_file(scen_dir: Path) -> None:
    (scen_dir / "network.csv").unlink()
    msg = _error(scen_dir)
    assert "network.csv" in msg and "missing" in msg


def test_missing_directory(tmp_path: Path) -> None:
    msg = _error(tmp_path / "nope")
    assert "nope" in msg and "not found" in msg


def test_missing_column(scen_dir: Path) -> None:
    path = scen_dir / "network.csv"
    text = path.read_text().replace("rtt_s", "rtt_ms", 1)
    path.write_text(text)
    msg = _error(scen_dir)
    assert "network.csv" in msg and "line 1" in msg and "'rtt_s'" in msg


def test_duplicated_key(scen_dir: Path) -> None:
    path = scen_dir / "hourly_dc.csv"
    rows = path.read_text().splitlines()
    rows[3] = rows[2]  # line 4 repeats line 3's (hour, dc)
    path.write_text("\n".join(rows) + "\n")
    msg = _error(scen_dir)
    assert "hourly_dc.csv" in msg and "line 4" in msg and "duplicated key" in msg


def test_missing_row(scen_dir: Path) -> None:
    path = scen_dir / "demand.csv"
    rows = path.read_text().splitlines()
    del rows[5]
    path.write_text("\n".join(rows) + "\n")
    msg = _error(scen_dir)
    assert "demand.csv" in msg and "missing row for hour=" in msg


def test_duplicated_dc_definition(scen_dir: Path) -> None:
    path = scen_dir / "datacenters.csv"
    rows = path.read_text().splitlines()
    rows.append(rows[1])
    path.write_text("\n".join(rows) + "\n")
    msg = _error(scen_dir)
    assert "datacenters.csv" in msg and f"line {len(rows)}" in msg and "duplicated dc" in msg


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ('name = "x"\nhours = 0\n[objective]\nenergy = 1\ncarbon = 0\ndelay = 0\n', "hours"),
        (
            'name = "x"\nhours = 4\nwater_budget_l = -1\n'
            '[objective]\nenergy = 1\ncarbon = 0\ndelay = 0\n',
            "water_budget_l",
        ),
        ('name = "x"\nhours = 4\n[objective]\nenergy = 1\ncarbon = 0\n', "objective.delay"),
        ('name = "x"\nhours = 4\n[objective]\nenergy = -1\ncarbon = 0\ndelay = 0\n', "energy"),
    ],
)
def test_bad_toml(scen_dir: Path, text: str, column: str) -> None:
    (scen_dir / "scenario.toml").write_text(text)
    msg = _error(scen_dir)
    assert "scenario.toml" in msg and repr(column) in msg


def test_hours_mismatch(scen_dir: Path) -> None:
    path = scen_dir / "scenario.toml"
    path.write_text(path.read_text().replace("hours = 4", "hours = 5"))
    msg = _error(scen_dir)
    assert "missing row for hour=4" in msg


def test_failed_load_leaves_files_intact(scen_dir: Path) -> None:
    before = {p.name: p.read_bytes() for p in scen_dir.iterdir()}
    _edit(scen_dir / "hourly_dc.csv", 3, "price_usd_per_kwh", "oops")
    before["hourly_dc.csv"] = (scen_dir / "hourly_dc.csv").read_bytes()
    _error(scen_dir)
    assert {p.name: p.read_bytes() for p in scen_dir.iterdir()} == before


def test_unknown_columns_are_ignored(scen_dir: Path) -> None:
    ref = load_scenario(scen_dir)
    path = scen_dir / "datacenters.csv"
    rows = path.read_text().splitlines()
    rows = [rows[0] + ",operator"] + [r + ",acme" for r in rows[1:]]
    path.write_text("\n".join(rows) + "\n")
    assert load_scenario(scen_dir).equals(ref)


def test_coefficients_round_trip_and_validation(scen_dir: Path, tmp_path: Path) -> None:
    scen = load_scenario(scen_dir)
    coef = (
        scen.energy_kwh_per_query()
        .rename("energy_kwh_per_query")
        .to_dataset()
        .assign(proc_delay_s_per_query=scen.proc_delay_s_per_query())
        .transpose("hour", "dc", "query_type")
    )
    path = save_coefficients(coef * 1.1, tmp_path / "coefficients.csv")
    loaded = load_coefficients(path, scen)
    np.testing.assert_array_equal(
        loaded["energy_kwh_per_query"].values,
        (coef["energy_kwh_per_query"] * 1.1).transpose("hour", "dc", "query_type").values,
    )
    with_coef = load_scenario(scen_dir, coefficients=path)
    assert with_coef.coefficients is not None
    _edit(path, 3, "dc", "elsewhere")
    with pytest.raises(ScenarioError, match=r"coefficients.csv, line 3, column 'dc'"):
        load_coefficients(path, scen)


def test_coefficients_in_directory_are_used(scen_dir: Path, tmp_path: Path) -> None:
    scen = load_scenario(scen_dir)
    coef = (
        scen.energy_kwh_per_query()
        .rename("energy_kwh_per_query")
        .to_dataset()
        .assign(proc_delay_s_per_query=scen.proc_delay_s_per_query() * 0 + 0.5)
    )
    save_coefficients(coef, scen_dir / "coefficients.csv")
    loaded = load_scenario(scen_dir)
    assert float(loaded.proc_delay_s_per_query().max()) == 0.5
    out = tmp_path / "copy"
    loaded.save(out)
    assert load_scenario(out).equals(loaded)
    shutil.rmtree(out)


def test_subset(paper) -> None:
    sub = paper.subset(hours=[5, 6], dc=["us-east1", "us-west1"])
    assert sub.sizes()["hour"] == 2 and sub.dcs == ["us-east1", "us-west1"]
    assert float(sub.ds["queries"].sel(hour=0).sum()) == float(
        paper.ds["queries"].sel(hour=5).sum()
    )
    with pytest.raises(ScenarioError, match="unknown dc"):
        paper.subset(dc=["mars-1"])
