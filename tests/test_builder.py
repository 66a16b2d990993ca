"""The scenario builder: real-data builds, reload, time alignment, located config errors, the
embedded default scenario, the European example and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from greensched.builder import build_from_config, build_scenario
from greensched.defaults import default_scenario_path
from greensched.errors import ScenarioError
from greensched.scenario import load_scenario
from greensched.scheduler import plan
from tests.cli_inprocess import run_cli
from tests.conftest import REPO, SHARED_DATA, require_shared_data

LETTER = REPO / "examples" / "letter-regions.toml"
EUROPE = REPO / "examples" / "europe-lwa.toml"


@pytest.fixture(scope="module")
def data() -> Path:
    return require_shared_data(SHARED_DATA)


@pytest.fixture(scope="module")
def letter_day(data: Path):  # type: ignore[no-untyped-def]
    """The letter-regions example for its configured day (2025-03-25)."""
    return build_scenario(LETTER, data_dir=data)


def _em_direct(data: Path, zone: str, day: str) -> np.ndarray:
    """The 24 direct intensities (g/kWh) of one UTC day, read straight from the export."""
    df = pd.read_csv(data / "green_llm" / "Carbon" / f"{zone}_2024_hourly.csv", encoding="utf-8")
    times = pd.to_datetime(df["Datetime (UTC)"], utc=True)
    col = next(c for c in df.columns if c.startswith("Carbon intensity") and "(direct)" in c)
    sel = (times >= pd.Timestamp(day, tz="UTC")) & (
        times < pd.Timestamp(day, tz="UTC") + pd.Timedelta(days=1)
    )
    return df.loc[sel.to_numpy(), col].to_numpy(dtype=float)


# -- real-data builds --------------------------------------------------------------------------


def test_one_day_builds_saves_and_plans(data: Path, tmp_path: Path) -> None:
    out = build_from_config(LETTER, tmp_path / "day", data_dir=data)
    scen = load_scenario(out)
    assert scen.hours == 24 and scen.start == "2025-03-25T00:00:00Z"
    assert scen.sizes() == {"area": 9, "dc": 9, "query_type": 3, "hour": 24, "resource": 1}
    result = plan(scen)
    assert result.is_ok, result.message
    assert scen.water_budget_l is not None and result.water_l < scen.water_budget_l


def test_seven_days_plan_optimal(data: Path, tmp_path: Path) -> None:
    out = build_from_config(LETTER, tmp_path / "week", days=7, start="2024-07-01", data_dir=data)
    scen = load_scenario(out)
    assert scen.hours == 168 and scen.start == "2024-07-01T00:00:00Z"
    result = plan(scen)
    assert result.is_ok, result.message


def test_reload_is_identical(letter_day, data: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = build_from_config(LETTER, tmp_path / "s", data_dir=data)
    back = load_scenario(out)
    assert back.ds.identical(letter_day.ds)
    for attr in ("name", "description", "hours", "start", "water_budget_l", "weights"):
        assert getattr(back, attr) == getattr(letter_day, attr), attr


def test_demand_follows_local_time(letter_day) -> None:  # type: ignore[no-untyped-def]
    q = letter_day.ds["queries"].sum("query_type")
    peak_la = int(np.argmax(q.sel(area="los-angeles").to_numpy()))
    peak_clt = int(np.argmax(q.sel(area="charlotte").to_numpy()))
    # busiest at 14:00 local: PDT = UTC-7, EDT = UTC-4 on 2025-03-25
    assert (peak_la, peak_clt) == (21, 18)
    # population weighting: LA has ~5x Charlotte's people
    ratio = float(q.sel(area="los-angeles").sum() / q.sel(area="charlotte").sum())
    assert ratio == pytest.approx(13200998 / 2660329, rel=0.01)


def test_carbon_equals_electricity_maps_hour(data: Path) -> None:
    scen = build_scenario(LETTER, start="2024-07-01", data_dir=data)
    expected = _em_direct(data, "US-MIDW-MISO", "2024-07-01") / 1000.0
    got = scen.ds["carbon_kg_per_kwh"].sel(dc="us-central1").to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    expected = _em_direct(data, "US-TEX-ERCO", "2024-07-01") / 1000.0
    got = scen.ds["carbon_kg_per_kwh"].sel(dc="us-south1").to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_date_mapping_keeps_the_weekday(letter_day, data: Path) -> None:  # type: ignore[no-untyped-def]
    # 2025-03-25 is a Tuesday; the 2024 Tuesday nearest to 2024-03-25 is 2024-03-26.
    expected = _em_direct(data, "US-NW-PGE", "2024-03-26") / 1000.0
    got = letter_day.ds["carbon_kg_per_kwh"].sel(dc="us-west1").to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert "2024-03-26" in letter_day.description


def test_lifecycle_basis_and_same_date_mapping(data: Path, tmp_path: Path) -> None:
    path = _edit(tmp_path, 'carbon_basis = "direct"', 'carbon_basis = "lifecycle"')
    text = path.read_text(encoding="utf-8").replace('date_mapping = "same_weekday"',
                                                    'date_mapping = "same_date"')
    path.write_text(text, encoding="utf-8")
    scen = build_scenario(path, data_dir=data)
    df = pd.read_csv(data / "green_llm" / "Carbon" / "US-NW-PGE_2024_hourly.csv", encoding="utf-8")
    times = pd.to_datetime(df["Datetime (UTC)"], utc=True)
    col = next(c for c in df.columns if c.startswith("Carbon intensity") and "Life cycle" in c)
    day = (times >= pd.Timestamp("2024-03-25", tz="UTC")) & (
        times < pd.Timestamp("2024-03-26", tz="UTC")
    )
    expected = df.loc[day.to_numpy(), col].to_numpy(dtype=float) / 1000.0
    got = scen.ds["carbon_kg_per_kwh"].sel(dc="us-west1").to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_prices_are_hourly_lmp_means(letter_day, data: Path) -> None:  # type: ignore[no-untyped-def]
    raw = pd.read_csv(data / "green_llm" / "LMP" / "ERCOT_LMP.csv")
    start = pd.to_datetime(raw["interval_start_utc"], utc=True)
    in_hour = (start >= pd.Timestamp("2025-03-25 05:00", tz="UTC")) & (
        start < pd.Timestamp("2025-03-25 06:00", tz="UTC")
    )
    expected = raw.loc[in_hour.to_numpy(), "lmp"].mean() / 1000.0
    got = float(letter_day.ds["price_usd_per_kwh"].sel(dc="us-south1", hour=5))
    assert got == pytest.approx(expected, rel=1e-6)


def test_measured_rtt_and_derived_quantities(letter_day) -> None:  # type: ignore[no-untyped-def]
    ds = letter_day.ds
    rtt = ds["rtt_s"]
    assert float(rtt.sel(area="los-angeles", dc="us-west4")) == pytest.approx(0.0093, abs=5e-4)
    assert float(rtt.sel(area="charlotte", dc="us-east1")) == pytest.approx(0.002)
    # energy per query from the measurements: a few kJ (single-request runs on one A100)
    e = letter_day.energy_kwh_per_query().isel(dc=0, hour=0) * 3.6e6
    assert ((e > 500) & (e < 20000)).all()
    assert float(e.sel(query_type="conv-long")) > float(e.sel(query_type="conv-short"))
    assert set(map(str, ds.indexes["query_type"])) == {"code", "conv-short", "conv-long"}


def test_full_year_builds(data: Path) -> None:
    # The speed target (10 s) is measured by bench/bench_builder.py, not here.
    scen = build_scenario(LETTER, days=366, start="2024-01-01", data_dir=data)
    assert scen.hours == 8784
    assert "8784 h as measured" in scen.description


# -- the embedded default and the European example ------------------------------------------


def test_default_scenario_loads_and_plans() -> None:
    path = default_scenario_path()
    assert path is not None
    root = Path(path)
    size = sum(p.stat().st_size for p in root.iterdir() if p.is_file())
    assert size < 200_000
    assert (root / "README.md").is_file()
    scen = load_scenario(root)
    assert scen.sizes()["dc"] == 9 and scen.hours == 24
    result = plan(scen)
    assert result.is_ok, result.message


def test_default_scenario_is_what_the_example_builds(letter_day) -> None:  # type: ignore[no-untyped-def]
    path = default_scenario_path()
    assert path is not None
    embedded = load_scenario(path)
    xr.testing.assert_allclose(embedded.ds, letter_day.ds)
    assert embedded.start == letter_day.start


def test_europe_example_builds_and_plans(data: Path) -> None:
    scen = build_scenario(EUROPE, data_dir=data)
    assert scen.sizes()["dc"] == 3 and scen.sizes()["area"] == 3
    assert "assumed tariffs" in scen.description  # the prices are labelled as assumptions
    result = plan(scen)
    assert result.is_ok, result.message
    # the GB tariff is in London time: 16:00 BST on 2020-06-15 is 15:00 UTC
    gb = scen.ds["price_usd_per_kwh"].sel(dc="eu-gb").to_numpy()
    assert gb[15] == pytest.approx(0.24) and gb[14] == pytest.approx(0.16)


# -- errors name the configuration file and the field -----------------------------------------


def _edit(tmp_path: Path, old: str, new: str, source: Path = LETTER) -> Path:
    text = source.read_text(encoding="utf-8")
    assert old in text, old
    path = tmp_path / "config.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


BAD_FIELDS = [
    ('id = "us-east4"\n', 'id = "us-east4"\npue = 0.9\n', "datacenter[2].pue"),
    ("pue = 1.10", "pue = 0.5", "datacenter_defaults.pue"),
    ('id = "us-central1"\n', 'id = "us-central1"\npuee = 1.2\n', "datacenter[0].puee"),
    ("population = 2660329\n", "", "area[1].population"),
    ('tz = "America/Denver"', 'tz = "Mars/Olympus"', "area[7].tz"),
    ("US-SE-SEPA_2024_hourly.csv", "US-XX-NONE_2024_hourly.csv", "datacenter[1].carbon_file"),
    ('source = "trace"', 'source = "census"', "demand.source"),
    ("latency_limit_s = 15.0", "latency_limit_s = 0.5", "query_type[1].latency_limit_s"),
    ("days = 1 ", "days = 400 ", "scenario.days"),
    ("capacity_headroom = 2.0", "capacity_headroom = 0.5", "datacenter[*].capacity.gpu"),
    ('output_tokens_min = 129', 'output_tokens_min = 100', "query_type[2].trace"),
    ('model = "Llama-2 (7B)"', 'model = "GPT-9"', "energy.model"),
    ("water_budget_factor = 1.2", "water_budget_factor = 0.5", "scenario.water_budget_factor"),
]


@pytest.mark.parametrize(("old", "new", "column"), BAD_FIELDS)
def test_bad_field_names_file_and_field(
    data: Path, tmp_path: Path, old: str, new: str, column: str
) -> None:
    path = _edit(tmp_path, old, new)
    with pytest.raises(ScenarioError) as info:
        build_scenario(path, data_dir=data)
    assert info.value.file == str(path)
    assert info.value.column == column
    assert column in str(info.value)


def test_bad_toml_and_overrides(data: Path, tmp_path: Path) -> None:
    path = _edit(tmp_path, "\n[scenario]\n", "\n[scenario\n")
    with pytest.raises(ScenarioError, match="invalid TOML") as info:
        build_scenario(path, data_dir=data)
    assert info.value.file == str(path)
    with pytest.raises(ScenarioError) as info:
        build_scenario(LETTER, days=0, data_dir=data)
    assert info.value.column == "--days"
    with pytest.raises(ScenarioError) as info:
        build_scenario(LETTER, start="2024-13-45", data_dir=data)
    assert info.value.column == "--start"


def test_missing_data_dir_is_located(tmp_path: Path) -> None:
    text = LETTER.read_text(encoding="utf-8").replace(
        'data_dir = "../../shared/data"', 'data_dir = "nowhere"'
    )
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        build_scenario(path)
    assert info.value.column == "scenario.data_dir"


# -- a configuration that needs no data files ---------------------------------------------------

SYNTHETIC = """
[scenario]
name = "tiny"
start = "2024-06-01T06:00:00Z"
days = 2
water_budget_l = 1e9
data_dir = "."
resources = ["gpu", "memory"]

[datacenter_defaults]
pue = 1.2
wue_l_per_kwh = 0.5
ewif_l_per_kwh = 2.0
carbon_price_usd_per_kg = 0.05
grid_cap_kw = 500
capacity = { gpu = 1e7, memory = 1e7 }
delay_s_per_token = 0.001
renewable_kw = 20
renewable_profile = "flat"

[[datacenter]]
id = "a"
latitude = 40.0
longitude = -75.0
carbon_kg_per_kwh = 0.4
price_usd_per_kwh = 0.1

[[datacenter]]
id = "b"
latitude = 47.0
longitude = -122.0
carbon_kg_per_kwh = 0.1
utc_offset = -8
price_usd_per_kwh = [0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.08, 0.08, 0.08, 0.08, 0.08,
                     0.08, 0.08, 0.08, 0.08, 0.08, 0.12, 0.12, 0.12, 0.08, 0.08, 0.05, 0.05]
delay_s_per_token = { chat = 0.002 }

[[area]]
id = "east"
latitude = 40.7
longitude = -74.0
population = 1000
utc_offset = -5

[[area]]
id = "west"
latitude = 47.6
longitude = -122.3
population = 3000
utc_offset = -8

[[query_type]]
id = "chat"
input_tokens = 100
output_tokens = 200
energy_in_kwh_per_token = 1e-7
energy_out_kwh_per_token = 1e-6
delay_penalty_usd_per_s = 0.01
resource_use_per_token = { gpu = 0.01, memory = 0.5 }
latency_limit_s = 5
share = 3

[[query_type]]
id = "batch"
input_tokens = 1000
output_tokens = 50
energy_in_kwh_per_token = 1e-7
energy_out_kwh_per_token = 1e-6
delay_penalty_usd_per_s = 0.001
resource_use_per_token = { gpu = 0.01, memory = 0.5 }
delay_limit_s = { east = 1e6, west = 1e6 }
share = 1

[demand]
source = "synthetic"
queries_per_hour = 1000
profile = "hourly"
hourly_profile = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 5]
weekend_factor = 0.5

[network]
fallback = "model"
bandwidth_bps = 1e8
"""


def test_configuration_without_data_files(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(SYNTHETIC, encoding="utf-8")
    out = build_from_config(path, tmp_path / "out")
    scen = load_scenario(out)
    ds = scen.ds
    assert scen.hours == 48 and scen.start == "2024-06-01T06:00:00Z"
    # mix 3:1, population 1:3, hour-of-day weights (mean 28/24) in local time; 2024-06-01 is a
    # Saturday (weekend factor 0.5) in the east (01:00 local at slot 0) but the west is still
    # on Friday 22:00
    chat = ds["queries"].sel(query_type="chat")
    assert float(chat.sel(area="west", hour=0)) == round(1000 * 0.75 * 0.75 * 24 / 28)
    assert float(chat.sel(area="west", hour=1)) == round(1000 * 0.75 * 0.75 * 5 * 24 / 28)
    assert float(chat.sel(area="east", hour=0)) == round(1000 * 0.25 * 0.75 * 0.5 * 24 / 28)
    # TOU list in UTC-8: slot 0 = 22:00 local; 17:00 local = 01:00 UTC = slot 19
    price_b = ds["price_usd_per_kwh"].sel(dc="b").to_numpy()
    assert price_b[19] == pytest.approx(0.12) and price_b[0] == pytest.approx(0.05)
    assert float(ds["delay_s_per_token"].sel(dc="b", query_type="chat")) == 0.002
    assert float(ds["delay_s_per_token"].sel(dc="b", query_type="batch")) == 0.001
    # distance model: 2 ms + 2 x 1.5 x great-circle km / 200000 km/s
    p1, p2 = np.radians(40.7), np.radians(40.0)
    hav = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(-1.0) / 2) ** 2
    km = 2 * 6371.0 * np.arcsin(np.sqrt(hav))
    assert float(ds["rtt_s"].sel(area="east", dc="a")) == pytest.approx(
        0.002 + 3 * km / 200000, abs=2e-6
    )
    assert (ds["renewable_kw"] == 20).all()
    assert plan(scen).is_ok


def test_trace_profile_needs_a_day_of_trace(data: Path, tmp_path: Path) -> None:
    path = _edit(tmp_path, 'profile = "diurnal"', 'profile = "trace"')
    with pytest.raises(ScenarioError, match=">= 24 h") as info:
        build_scenario(path, data_dir=data)
    assert info.value.column == "demand.profile"


# -- the command line ---------------------------------------------------------------------------


def test_cli_build_then_plan(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "built"
    p = run_cli("scenario", "build", str(LETTER), "--out", str(out), cwd=REPO)
    assert p.returncode == 0, p.stderr
    assert (out / "scenario.toml").is_file()
    p = run_cli("plan", str(out), cwd=REPO)
    assert p.returncode == 0, p.stderr
    assert "total cost (USD)" in p.stdout
