"""Tests of the real-time LMP adapter on the gridstatus-style ISO files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greensched.data.lmp import read_lmp, read_lmp_dir
from greensched.errors import DataFileError


@pytest.fixture(scope="module")
def lmp_dir(data_dir: Path) -> Path:
    return data_dir / "green_llm" / "LMP"


def test_caiso_hourly_mean(lmp_dir: Path) -> None:
    df = read_lmp(lmp_dir / "CAISO_LMP.csv")
    assert len(df) == 48
    assert str(df.index.tz) == "UTC" and df.index.name == "time_utc"
    assert df.index[0] == pd.Timestamp("2025-03-24 07:00", tz="UTC")  # local midnight, PDT
    assert (np.diff(df.index.asi8) == 3_600 * 10**9).all()
    assert df["lmp_usd_per_kwh"].mean() == pytest.approx(0.0224, abs=2e-4)
    assert (df["n_intervals"] == 12).all()
    assert (df["location"] == "TH_NP15_GEN-APND").all()
    assert {"energy_usd_per_kwh", "congestion_usd_per_kwh", "loss_usd_per_kwh"} <= set(df.columns)
    # hourly mean of the 12 five-minute prices, $/MWh -> $/kWh
    raw = pd.read_csv(lmp_dir / "CAISO_LMP.csv")
    assert df["lmp_usd_per_kwh"].iloc[0] == pytest.approx(raw["lmp"].iloc[:12].mean() / 1000)
    # components add up to the LMP (energy + congestion + loss + ghg), except in the hour
    # 2025-03-25 15:00 UTC where three source rows (lines 394-396) carry a flat 25.79 LMP whose
    # components do not sum to it
    parts = df[
        ["energy_usd_per_kwh", "congestion_usd_per_kwh", "loss_usd_per_kwh", "ghg_usd_per_kwh"]
    ].sum(axis=1)
    off = (parts - df["lmp_usd_per_kwh"]).abs() > 1e-6
    assert off[off].index.tolist() == [pd.Timestamp("2025-03-25 15:00", tz="UTC")]


def test_ercot_minimal_columns(lmp_dir: Path) -> None:
    df = read_lmp(lmp_dir / "ERCOT_LMP.csv")
    assert list(df.columns) == ["location", "lmp_usd_per_kwh", "n_intervals", "filled"]
    assert df.index[0] == pd.Timestamp("2025-03-24 05:00", tz="UTC")  # local midnight, CDT
    assert df["lmp_usd_per_kwh"].mean() == pytest.approx(0.0348, abs=2e-4)


def test_blank_location_and_price_rows(lmp_dir: Path) -> None:
    il = read_lmp(lmp_dir / "ILLINOIS_MISO_LMP.csv")
    assert il.attrs["skipped_rows"] == [124, 357, 526]  # rows without any price
    assert sorted(il["n_intervals"].unique()) == [11, 12]
    assert (il["n_intervals"] == 11).sum() == 3
    assert il.loc[pd.Timestamp("2025-03-24 15:00", tz="UTC"), "n_intervals"] == 11
    nj = read_lmp(lmp_dir / "NJ_LMP.csv")  # blank location but a price on line 481
    assert nj.attrs["skipped_rows"] == []
    assert (nj["n_intervals"] == 12).all() and (nj["location"] == "NEW JERSEY HUB").all()


def test_directory_means(lmp_dir: Path) -> None:
    wide = read_lmp_dir(lmp_dir)
    assert sorted(wide.columns) == sorted(
        [
            "CAISO",
            "ERCOT",
            "ILLINOIS_MISO",
            "ISONE",
            "LOUISIANA",
            "NJ",
            "NYISO",
            "OHIO",
            "PJM",
            "SPP",
        ]
    )
    means = (wide.mean() * 1000).round(1)  # $/MWh, as in the data README
    assert means["CAISO"] == 22.4
    assert means["ERCOT"] == 34.8
    assert means["NYISO"] == 54.8
    assert means["SPP"] == 36.3
    assert wide.index.min() == pd.Timestamp("2025-03-24 04:00", tz="UTC")  # ISO-NE, EDT


# ------------------------------------------------------------------------ malformed files ----


@pytest.fixture
def caiso(lmp_dir: Path) -> Path:
    return lmp_dir / "CAISO_LMP.csv"


def test_wrong_header(caiso: Path, edit_csv, located) -> None:
    p = edit_csv(caiso, n_lines=40, header={"lmp": "price"})
    with pytest.raises(DataFileError, match="missing required column") as ei:
        read_lmp(p)
    located(ei.value, p, 1, "lmp")
    p = edit_csv(caiso, "noutc.csv", n_lines=40, header={"interval_start_utc": "start"})
    with pytest.raises(DataFileError) as ei:
        read_lmp(p)
    located(ei.value, p, 1, "interval_start_utc")


def test_unparsable_time(caiso: Path, edit_csv, located) -> None:
    p = edit_csv(caiso, n_lines=40, cells={(4, "interval_start_utc"): "yesterday"})
    with pytest.raises(DataFileError, match="unparsable time") as ei:
        read_lmp(p)
    located(ei.value, p, 4, "interval_start_utc")


def test_local_and_utc_disagree(caiso: Path, edit_csv, located) -> None:
    p = edit_csv(
        caiso, n_lines=40, cells={(8, "interval_start_local"): "2025-03-24T00:35:00-08:00"}
    )
    with pytest.raises(DataFileError, match="does not match") as ei:
        read_lmp(p)
    located(ei.value, p, 8, "interval_start_local")


def test_non_numeric_price(caiso: Path, edit_csv, located) -> None:
    p = edit_csv(caiso, n_lines=40, cells={(6, "lmp"): "12,3"})
    with pytest.raises(DataFileError, match="not a number") as ei:
        read_lmp(p)
    located(ei.value, p, 6, "lmp")
    assert "'12,3'" in str(ei.value)


def test_units(caiso: Path, edit_csv, located) -> None:
    p = edit_csv(caiso, n_lines=40, header={"lmp": "lmp (EUR/MWh)"})
    with pytest.raises(DataFileError, match="unknown price unit") as ei:
        read_lmp(p)
    located(ei.value, p, 1, "lmp (EUR/MWh)")
    base = read_lmp(edit_csv(caiso, "base.csv", n_lines=40))
    kwh = read_lmp(edit_csv(caiso, "kwh.csv", n_lines=40, header={"lmp": "lmp ($/kWh)"}))
    assert kwh["lmp_usd_per_kwh"].iloc[0] == pytest.approx(base["lmp_usd_per_kwh"].iloc[0] * 1000)
    arg = read_lmp(edit_csv(caiso, "arg.csv", n_lines=40), unit="$/kWh")
    assert arg["lmp_usd_per_kwh"].iloc[0] == pytest.approx(kwh["lmp_usd_per_kwh"].iloc[0])
    with pytest.raises(DataFileError, match="unit"):
        read_lmp(edit_csv(caiso, "argbad.csv", n_lines=40), unit="$/therm")


def test_gap_filling(caiso: Path, edit_csv) -> None:
    # 12 rows = 1 hour. Remove hours 2-3 (2 h, filled) and 6-10 (5 h, reported).
    drop = set(range(2 + 2 * 12, 2 + 4 * 12)) | set(range(2 + 6 * 12, 2 + 11 * 12))
    p = edit_csv(caiso, n_lines=1 + 14 * 12, drop=drop)
    df = read_lmp(p)
    assert len(df) == 14
    gaps = df.attrs["gaps"]["TH_NP15_GEN-APND"]
    assert [(g.hours, g.filled) for g in gaps] == [(2.0, True), (5.0, False)]
    assert gaps[1].start == pd.Timestamp("2025-03-24 13:00", tz="UTC")
    assert gaps[1].end == pd.Timestamp("2025-03-24 17:00", tz="UTC")
    assert df["lmp_usd_per_kwh"].isna().sum() == 5
    assert df["filled"].sum() == 2 and (df.loc[df["filled"], "n_intervals"] == 0).all()
    lo, hi = df["lmp_usd_per_kwh"].iloc[1], df["lmp_usd_per_kwh"].iloc[4]
    assert df["lmp_usd_per_kwh"].iloc[2] == pytest.approx(lo + (hi - lo) / 3)
    none = read_lmp(p, max_gap_hours=0)
    assert none["lmp_usd_per_kwh"].isna().sum() == 7

