"""Tests of the Google Cloud region carbon adapter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greensched.data.google_carbon import read_google_carbon, read_google_carbon_dir
from greensched.errors import DataFileError

LIFECYCLE_2019 = "Lifecycle grid carbon intensity (gCO2eq / kWh)"
GRID = "Grid carbon intensity (gCO2eq / kWh)"


@pytest.fixture(scope="module")
def google_dir(data_dir: Path) -> Path:
    return data_dir / "google_region_carbon"


def test_all_years(google_dir: Path) -> None:
    df = read_google_carbon_dir(google_dir)
    assert df.groupby("year").size().to_dict() == {
        2019: 24,
        2020: 27,
        2021: 34,
        2022: 36,
        2023: 40,
        2024: 44,
    }
    assert list(df.columns) == [
        "region",
        "location",
        "year",
        "time_utc",
        "cfe_fraction",
        "carbon_kg_per_kwh",
        "carbon_basis",
    ]
    assert set(df.loc[df["year"] <= 2020, "carbon_basis"]) == {"lifecycle"}
    assert set(df.loc[df["year"] >= 2021, "carbon_basis"]) == {"grid"}
    assert df["cfe_fraction"].dropna().between(0, 1).all()
    assert df["carbon_kg_per_kwh"].between(0, 1).all()
    assert str(df["time_utc"].dt.tz) == "UTC"
    assert (df["time_utc"].dt.year == df["year"]).all()
    assert df["cfe_fraction"].isna().sum() == 8 + 8 + 3  # regions without a published CFE


def test_2023_matches_green_llm_datacenters(google_dir: Path) -> None:
    df = read_google_carbon(google_dir / "2023.csv").set_index("region")
    # Green-LLM's datacenter_info (renewable, co2 g/kWh) equals the 2023 rows
    expected = {
        "us-central1": (0.95, 430),
        "us-east1": (0.29, 560),
        "us-east4": (0.52, 322),
        "us-west1": (0.84, 94),
        "us-west4": (0.26, 373),
    }
    for region, (cfe, co2) in expected.items():
        assert df.loc[region, "cfe_fraction"] == pytest.approx(cfe)
        assert df.loc[region, "carbon_kg_per_kwh"] == pytest.approx(co2 / 1000)
    assert df.loc["us-central1", "location"] == "Iowa"


def test_2019_lifecycle_header(google_dir: Path) -> None:
    df = read_google_carbon(google_dir / "2019.csv")
    assert len(df) == 24 and (df["year"] == 2019).all()
    assert df.loc[df["region"] == "asia-east1", "carbon_kg_per_kwh"].item() == pytest.approx(0.541)
    assert np.isnan(df.loc[df["region"] == "asia-east2", "cfe_fraction"].item())


# ------------------------------------------------------------------------ malformed files ----


@pytest.fixture
def src(google_dir: Path) -> Path:
    return google_dir / "2023.csv"


def test_wrong_header(src: Path, edit_csv, located) -> None:
    p = edit_csv(src, header={"Google CFE": "CFE"})
    with pytest.raises(DataFileError, match="missing required column") as ei:
        read_google_carbon(p)
    located(ei.value, p, 1, "Google CFE")
    p = edit_csv(src, "x_2023.csv", header={GRID: "Carbon"})
    with pytest.raises(DataFileError) as ei:
        read_google_carbon(p, year=2023)
    located(ei.value, p, 1, GRID)


def test_non_numeric_and_range(src: Path, edit_csv, located) -> None:
    p = edit_csv(src, cells={(3, GRID): "about 400"})
    with pytest.raises(DataFileError, match="not a number") as ei:
        read_google_carbon(p)
    located(ei.value, p, 3, GRID)
    p = edit_csv(src, "2022.csv", cells={(5, "Google CFE"): "95"})
    with pytest.raises(DataFileError, match="maximum") as ei:
        read_google_carbon(p)
    located(ei.value, p, 5, "Google CFE")
    p = edit_csv(src, "2021.csv", cells={(7, GRID): ""})
    with pytest.raises(DataFileError, match="missing value") as ei:
        read_google_carbon(p)
    located(ei.value, p, 7, GRID)
    p = edit_csv(src, "2020.csv", cells={(4, "Google Cloud Region"): "asia-east1"})
    with pytest.raises(DataFileError, match="duplicate region") as ei:
        read_google_carbon(p)
    located(ei.value, p, 4, "Google Cloud Region")


def test_units(src: Path, edit_csv, located) -> None:
    bad = "Grid carbon intensity (gCO2eq / therm)"
    p = edit_csv(src, header={GRID: bad})
    with pytest.raises(DataFileError, match="unknown carbon-intensity unit") as ei:
        read_google_carbon(p)
    located(ei.value, p, 1, bad)
    p = edit_csv(src, "2019.csv", header={GRID: "Grid carbon intensity (kgCO2eq / MWh)"})
    kg = read_google_carbon(p, year=2023)
    ref = read_google_carbon(src)
    pd.testing.assert_series_equal(kg["carbon_kg_per_kwh"], ref["carbon_kg_per_kwh"])
    p = edit_csv(src, "2018.csv", header={GRID: "Grid carbon intensity (gCO2eq / MWh)"})
    g_mwh = read_google_carbon(p)
    np.testing.assert_allclose(g_mwh["carbon_kg_per_kwh"], ref["carbon_kg_per_kwh"] / 1000)
    assert (g_mwh["year"] == 2018).all()


def test_year_from_name(src: Path, edit_csv) -> None:
    p = edit_csv(src, "regions.csv")
    with pytest.raises(DataFileError, match="year"):
        read_google_carbon(p)
    assert (read_google_carbon(p, year=2023)["year"] == 2023).all()
