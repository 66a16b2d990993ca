"""Tests of the Electricity Maps adapter on the real 2024 zone exports."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greensched.data.electricity_maps import (
    read_consolidated_carbon,
    read_electricity_maps,
    read_electricity_maps_dir,
)
from greensched.errors import DataFileError

DIRECT = "Carbon intensity gCO₂eq/kWh (direct)"
LIFECYCLE = "Carbon intensity gCO₂eq/kWh (Life cycle)"


@pytest.fixture(scope="module")
def carbon_dir(data_dir: Path) -> Path:
    return data_dir / "green_llm" / "Carbon"


@pytest.fixture(scope="module")
def miso(carbon_dir: Path) -> pd.DataFrame:
    return read_electricity_maps(carbon_dir / "US-MIDW-MISO_2024_hourly.csv")


def test_miso_known_facts(miso: pd.DataFrame) -> None:
    assert len(miso) == 8784
    assert isinstance(miso.index, pd.DatetimeIndex)
    assert str(miso.index.tz) == "UTC" and miso.index.name == "time_utc"
    assert miso.index[0] == pd.Timestamp("2024-01-01 00:00", tz="UTC")
    assert miso.index[-1] == pd.Timestamp("2024-12-31 23:00", tz="UTC")
    assert (np.diff(miso.index.asi8) == 3_600 * 10**9).all()
    assert miso["carbon_kg_per_kwh"].mean() == pytest.approx(0.412, abs=0.001)
    assert miso["carbon_kg_per_kwh"].quantile(0.05) == pytest.approx(0.312, abs=0.002)
    assert miso["carbon_kg_per_kwh"].iloc[0] == pytest.approx(0.49767)
    assert miso["cfe_fraction"].iloc[0] == pytest.approx(0.2602)
    assert miso["re_fraction"].iloc[0] == pytest.approx(0.13)
    assert miso["cfe_fraction"].between(0, 1).all() and miso["re_fraction"].between(0, 1).all()
    assert miso["estimated"].dtype == "boolean"
    assert int(miso["estimated"].sum()) == 19  # 8784 - 8765 rows with an estimation method
    assert (miso["zone_id"] == "US-MIDW-MISO").all()
    assert not miso["filled"].any()
    assert miso.attrs["gaps"] == [] and miso.attrs["basis"] == "direct"


def test_lifecycle_basis(carbon_dir: Path, miso: pd.DataFrame) -> None:
    lc = read_electricity_maps(carbon_dir / "US-MIDW-MISO_2024_hourly.csv", basis="lifecycle")
    assert lc["carbon_kg_per_kwh"].iloc[0] == pytest.approx(0.57106)
    assert (lc["carbon_kg_per_kwh"] > miso["carbon_kg_per_kwh"]).mean() > 0.99
    with pytest.raises(ValueError, match="basis"):
        read_electricity_maps(carbon_dir / "US-MIDW-MISO_2024_hourly.csv", basis="scope3")  # type: ignore[arg-type]


def test_every_zone_file_has_8784_hours(carbon_dir: Path) -> None:
    files = sorted(carbon_dir.glob("US-*_2024_hourly.csv"))
    assert len(files) == 14
    wide = read_electricity_maps_dir(carbon_dir)
    assert wide.shape == (8784, 14)
    assert wide.index.tz is not None and str(wide.index.tz) == "UTC"
    means_g = (wide.mean() * 1000).round(0)
    assert means_g["US-MIDW-MISO"] == 412
    assert means_g["US-MIDW-LGEE"] == 756
    assert means_g["US-CAL-CISO"] == 168
    assert set(wide.attrs["gaps"]) == set(wide.columns)


def test_sepa_gaps_short_filled_long_reported(carbon_dir: Path) -> None:
    path = carbon_dir / "US-SE-SEPA_2024_hourly.csv"
    raw = read_electricity_maps(path, max_gap_hours=0)
    assert raw["carbon_kg_per_kwh"].isna().sum() == 412  # blank hours in the source
    gaps = raw.attrs["gaps"]
    assert sum(g.hours for g in gaps) == 412 and not any(g.filled for g in gaps)

    df = read_electricity_maps(path)  # default: fill gaps of at most 3 h
    gaps = df.attrs["gaps"]
    assert len(gaps) == 348
    long_gaps = [g for g in gaps if g.hours > 3]
    assert all(not g.filled for g in long_gaps) and all(g.filled for g in gaps if g.hours <= 3)
    assert max(g.hours for g in gaps) == 12
    assert df["carbon_kg_per_kwh"].isna().sum() == sum(g.hours for g in long_gaps) == 48
    assert df["filled"].sum() == 412 - 48
    # filled values are linear between the neighbours
    g = next(g for g in gaps if g.filled and g.hours == 1)
    before, after = g.start - pd.Timedelta(hours=1), g.end + pd.Timedelta(hours=1)
    c = df["carbon_kg_per_kwh"]
    assert c[g.start] == pytest.approx((c[before] + c[after]) / 2)
    assert df.loc[g.start, "cfe_fraction"] == pytest.approx(
        (df.loc[before, "cfe_fraction"] + df.loc[after, "cfe_fraction"]) / 2
    )
    assert pd.isna(df.loc[g.start, "estimated"])  # flag not invented for blank source rows




def _timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def test_consolidated_march24(carbon_dir: Path) -> None:
    df = read_consolidated_carbon(carbon_dir / "consolidated_carbon_intensity_march24.csv")
    assert df.shape == (24, 12)
    assert df.index[0] == pd.Timestamp("2024-03-24 00:00", tz="UTC")
    assert df.loc[df.index[0], "Midcontinent ISO"] == pytest.approx(0.49515)
    assert "CAISO" in df.columns and not any("gCO" in c for c in df.columns)
    filled = read_consolidated_carbon(
        carbon_dir / "consolidated_carbon_intensity_march24_filled.csv"
    )
    pd.testing.assert_frame_equal(df, filled)
    two = read_consolidated_carbon(
        carbon_dir / "consolidated_carbon_intensity_march24_25.csv", zone_ids=True
    )
    assert two.shape == (48, 12)
    assert two.attrs["basis"] == "lifecycle"
    # every column equals the per-zone export's *life-cycle* intensity of the same hours
    # (not the direct one, contrary to what the data README says)
    lc = read_electricity_maps_dir(carbon_dir, "lifecycle")
    direct = read_electricity_maps_dir(carbon_dir, "direct")
    for zone in two.columns:
        np.testing.assert_allclose(two[zone].to_numpy(), lc.loc[two.index, zone].to_numpy())
        assert not np.allclose(two[zone].to_numpy(), direct.loc[two.index, zone].to_numpy())


# ------------------------------------------------------------------------ malformed files ----


@pytest.fixture
def miso_src(carbon_dir: Path) -> Path:
    return carbon_dir / "US-MIDW-MISO_2024_hourly.csv"


def test_consolidated_malformed(carbon_dir: Path, edit_csv, located) -> None:
    src = carbon_dir / "consolidated_carbon_intensity_march24.csv"
    col = "CAISO (gCO₂eq/kWh)"
    p = edit_csv(src, header={col: "CAISO (gCO₂eq/therm)"})
    with pytest.raises(DataFileError, match="unit") as ei:
        read_consolidated_carbon(p)
    located(ei.value, p, 1, "CAISO (gCO₂eq/therm)")
    p = edit_csv(src, "nounit.csv", header={col: "CAISO"})
    with pytest.raises(DataFileError, match="no unit") as ei:
        read_consolidated_carbon(p)
    located(ei.value, p, 1, "CAISO")
    p = edit_csv(src, "num.csv", cells={(6, col): "n/a?"})
    with pytest.raises(DataFileError, match="not a number") as ei:
        read_consolidated_carbon(p)
    located(ei.value, p, 6, col)
    p = edit_csv(src, "time.csv", cells={(3, "Datetime (UTC)"): "24/03/2024 01:00"})
    with pytest.raises(DataFileError, match="unparsable") as ei:
        read_consolidated_carbon(p)
    located(ei.value, p, 3, "Datetime (UTC)")


def test_wrong_header(miso_src: Path, edit_csv, located) -> None:
    p = edit_csv(miso_src, n_lines=20, header={"Datetime (UTC)": "Datetime"})
    with pytest.raises(DataFileError) as ei:
        read_electricity_maps(p)
    located(ei.value, p, 1, "Datetime (UTC)")
    p = edit_csv(miso_src, "nodirect.csv", n_lines=20, header={DIRECT: "Carbon intensity"})
    with pytest.raises(DataFileError) as ei:
        read_electricity_maps(p)
    located(ei.value, p, 1, DIRECT)


def test_unparsable_time(miso_src: Path, edit_csv, located) -> None:
    p = edit_csv(miso_src, n_lines=20, cells={(5, "Datetime (UTC)"): "2024-01-01 25:00:00"})
    with pytest.raises(DataFileError, match="unparsable time") as ei:
        read_electricity_maps(p)
    located(ei.value, p, 5, "Datetime (UTC)")
    assert "'2024-01-01 25:00:00'" in str(ei.value)


def test_non_numeric_value(miso_src: Path, edit_csv, located) -> None:
    p = edit_csv(miso_src, n_lines=20, cells={(7, DIRECT): "4x7.1"})
    with pytest.raises(DataFileError, match="not a number") as ei:
        read_electricity_maps(p)
    located(ei.value, p, 7, DIRECT)
    p = edit_csv(
        miso_src, "pct.csv", n_lines=20, cells={(9, "Carbon-free energy percentage (CFE%)"): "130"}
    )
    with pytest.raises(DataFileError, match="maximum") as ei:
        read_electricity_maps(p)
    located(ei.value, p, 9, "Carbon-free energy percentage (CFE%)")
    p = edit_csv(miso_src, "flag.csv", n_lines=20, cells={(11, "Data estimated"): "perhaps"})
    with pytest.raises(DataFileError) as ei:
        read_electricity_maps(p)
    located(ei.value, p, 11, "Data estimated")


def test_unit_in_header(miso_src: Path, edit_csv, located, miso: pd.DataFrame) -> None:
    bad = "Carbon intensity gCO₂eq/furlong (direct)"
    p = edit_csv(miso_src, n_lines=20, header={DIRECT: bad})
    with pytest.raises(DataFileError, match="unknown carbon-intensity unit") as ei:
        read_electricity_maps(p)
    located(ei.value, p, 1, bad)
    # kg per MWh is recognised and converted (numerically the same as g/kWh)
    p = edit_csv(
        miso_src, "kg_mwh.csv", n_lines=20, header={DIRECT: "Carbon intensity kgCO₂eq/MWh (direct)"}
    )
    assert read_electricity_maps(p)["carbon_kg_per_kwh"].iloc[0] == pytest.approx(0.49767)
    # g per MWh would be 1000 times smaller
    p = edit_csv(
        miso_src, "g_mwh.csv", n_lines=20, header={DIRECT: "Carbon intensity gCO₂eq/MWh (direct)"}
    )
    assert read_electricity_maps(p)["carbon_kg_per_kwh"].iloc[0] == pytest.approx(0.49767e-3)


def test_duplicate_hour_and_mixed_zone(miso_src: Path, edit_csv, located) -> None:
    p = edit_csv(miso_src, n_lines=20, cells={(4, "Datetime (UTC)"): "2024-01-01 01:00:00"})
    with pytest.raises(DataFileError, match="duplicate") as ei:
        read_electricity_maps(p)
    located(ei.value, p, 4, "Datetime (UTC)")
    p = edit_csv(miso_src, "zones.csv", n_lines=20, cells={(6, "Zone id"): "US-CAL-CISO"})
    with pytest.raises(DataFileError, match="mixes zones") as ei:
        read_electricity_maps(p)
    located(ei.value, p, 6, "Zone id")


def test_missing_rows_restored_and_filled(miso_src: Path, edit_csv) -> None:
    # lines 4-5 (2 h) and 10-14 (5 h) removed from the file altogether
    p = edit_csv(miso_src, n_lines=30, drop={4, 5, 10, 11, 12, 13, 14})
    df = read_electricity_maps(p)
    assert len(df) == 29
    gaps = df.attrs["gaps"]
    assert [(g.hours, g.filled) for g in gaps] == [(2.0, True), (5.0, False)]
    assert gaps[1].start == pd.Timestamp("2024-01-01 08:00", tz="UTC")
    assert df["carbon_kg_per_kwh"].isna().sum() == 5
    assert (df["zone_id"] == "US-MIDW-MISO").all()
