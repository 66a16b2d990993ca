"""Tests of the Let's-Wait-Awhile carbon-intensity adapter, including DST handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greensched.data.lets_wait_awhile import read_lets_wait_awhile
from greensched.errors import DataFileError

CI = "Carbon Intensity"


@pytest.fixture(scope="module")
def lwa_dir(data_dir: Path) -> Path:
    return data_dir / "lets_wait_awhile"


@pytest.mark.parametrize(
    ("region", "mean_g", "samples"),
    [("fr", 57, 18574), ("gb", 218, 21980), ("ger", 315, 37147)],
)
def test_means(lwa_dir: Path, region: str, mean_g: float, samples: int) -> None:
    df = read_lets_wait_awhile(lwa_dir / f"{region}_ci.csv")
    assert str(df.index.tz) == "UTC" and df.index.name == "time_utc"
    assert (np.diff(df.index.asi8) == 3_600 * 10**9).all()
    assert df.index[0] == pd.Timestamp("2019-12-20 00:00", tz="UTC")
    assert df["n_samples"].sum() == samples
    assert df.attrs["gaps"] == [] and df.attrs["region"] == region
    # sample-weighted mean = mean of the raw series (README value)
    weighted = (df["carbon_kg_per_kwh"] * df["n_samples"]).sum() / df["n_samples"].sum()
    assert weighted * 1000 == pytest.approx(mean_g, abs=1)
    # mean of hourly means is close (gb mixes 15- and 30-minute steps)
    assert df["carbon_kg_per_kwh"].mean() * 1000 == pytest.approx(mean_g, rel=0.02)


def test_hourly_mean_of_quarter_hours(lwa_dir: Path) -> None:
    df = read_lets_wait_awhile(lwa_dir / "ger_ci.csv")
    raw = pd.read_csv(lwa_dir / "ger_ci.csv", nrows=4)
    assert df["carbon_kg_per_kwh"].iloc[0] == pytest.approx(raw[CI].mean() / 1000)
    assert df["n_samples"].iloc[0] == 4




def test_real_file_as_berlin_time_needs_policies(lwa_dir: Path, located) -> None:
    path = lwa_dir / "ger_ci.csv"
    # the file has 02:00-02:45 on 2020-03-29, which does not exist in Berlin local time
    with pytest.raises(DataFileError, match="does not exist") as ei:
        read_lets_wait_awhile(path, tz="Europe/Berlin")
    located(ei.value, path, 9610, "Time")
    # ... and 02:00-02:45 on 2020-10-25 only once, so it cannot be inferred
    with pytest.raises(DataFileError, match="ambiguous") as ei:
        read_lets_wait_awhile(path, tz="Europe/Berlin", nonexistent="NaT")
    located(ei.value, path, 29770, "Time")
    with pytest.raises(DataFileError, match="cannot infer"):
        read_lets_wait_awhile(path, tz="Europe/Berlin", nonexistent="NaT", ambiguous="infer")
    df = read_lets_wait_awhile(path, tz="Europe/Berlin", nonexistent="NaT", ambiguous="earliest")
    assert df.attrs["dropped_rows"] == [9610, 9611, 9612, 9613]
    assert df.index[0] == pd.Timestamp("2019-12-19 23:00", tz="UTC")  # CET = UTC+1
    # 02:xx CEST -> 00:xx UTC, so UTC hour 01:00 on 2020-10-25 is empty and filled
    assert [(g.start, g.hours, g.filled) for g in df.attrs["gaps"]] == [
        (pd.Timestamp("2020-10-25 01:00", tz="UTC"), 1.0, True)
    ]


# ------------------------------------------------------------------- synthetic DST files ----


def local_series(tmp_path: Path, name: str, stamps: list[str], values: list[float]) -> Path:
    p = tmp_path / name
    lines = ["Time,Carbon Intensity", *(f"{t},{v}" for t, v in zip(stamps, values, strict=True))]
    p.write_text("\n".join(lines) + "\n")
    return p


def test_spring_forward_local_series(tmp_path: Path) -> None:
    """A true Berlin local 15-min series on 2020-03-29 skips 02:00-02:45 and maps gap-free."""
    utc = pd.date_range("2020-03-28 22:00", "2020-03-29 03:45", freq="15min", tz="UTC")
    local = utc.tz_convert("Europe/Berlin").tz_localize(None)
    assert not any(t.hour == 2 and t.day == 29 for t in local)
    values = [float(t.hour) for t in utc]  # value = UTC hour, to check the mapping
    p = local_series(tmp_path, "de_ci.csv", [str(t) for t in local], values)
    df = read_lets_wait_awhile(p, tz="Europe/Berlin")
    assert df.index[0] == pd.Timestamp("2020-03-28 22:00", tz="UTC")
    assert len(df) == 6 and df.attrs["gaps"] == []
    assert (df["n_samples"] == 4).all()
    np.testing.assert_allclose(df["carbon_kg_per_kwh"] * 1000, df.index.hour)


def test_fall_back_local_series(tmp_path: Path, located) -> None:
    """On 2020-10-25 Berlin local 02:00-02:45 occurs twice; 'infer' resolves it by order."""
    utc = pd.date_range("2020-10-24 23:00", "2020-10-25 02:45", freq="15min", tz="UTC")
    local = utc.tz_convert("Europe/Berlin").tz_localize(None)
    stamps = [str(t) for t in local]
    assert stamps.count("2020-10-25 02:00:00") == 2
    values = [float(t.hour) for t in utc]
    p = local_series(tmp_path, "de_ci.csv", stamps, values)
    with pytest.raises(DataFileError, match="ambiguous") as ei:
        read_lets_wait_awhile(p, tz="Europe/Berlin")
    first = stamps.index("2020-10-25 02:00:00") + 2  # 1-based line, header = 1
    located(ei.value, p, first, "Time")
    df = read_lets_wait_awhile(p, tz="Europe/Berlin", ambiguous="infer")
    assert len(df) == 4 and (df["n_samples"] == 4).all() and df.attrs["gaps"] == []
    np.testing.assert_allclose(df["carbon_kg_per_kwh"] * 1000, df.index.hour)
    # forcing one reading of both copies makes two samples the same instant: an error
    with pytest.raises(DataFileError, match="duplicate instant"):
        read_lets_wait_awhile(p, tz="Europe/Berlin", ambiguous="earliest")
    dropped = read_lets_wait_awhile(p, tz="Europe/Berlin", ambiguous="NaT")
    assert len(dropped.attrs["dropped_rows"]) == 8


def test_nonexistent_shift_is_explicit(tmp_path: Path) -> None:
    p = local_series(tmp_path, "x_ci.csv", ["2020-03-29 01:30:00", "2020-03-29 02:30:00"], [1, 2])
    df = read_lets_wait_awhile(p, tz="Europe/Berlin", nonexistent="shift_forward")
    # 01:30 CET = 00:30 UTC; 02:30 does not exist -> 03:00 CEST = 01:00 UTC
    assert df.index.tolist() == [
        pd.Timestamp("2020-03-29 00:00", tz="UTC"),
        pd.Timestamp("2020-03-29 01:00", tz="UTC"),
    ]


# ---------------------------------------------------------------------------- gap filling ----


def test_gap_filling(lwa_dir: Path, edit_csv) -> None:
    # fr is 30-minute: remove 3 hours (6 rows, filled) and 5 hours (10 rows, reported)
    src = lwa_dir / "fr_ci.csv"
    drop = set(range(2 + 2 * 2, 2 + 5 * 2)) | set(range(2 + 10 * 2, 2 + 15 * 2))
    p = edit_csv(src, n_lines=1 + 24 * 2, drop=drop)
    df = read_lets_wait_awhile(p)
    assert len(df) == 24
    gaps = df.attrs["gaps"]
    assert [(g.start.hour, g.end.hour, g.hours, g.filled) for g in gaps] == [
        (2, 4, 3.0, True),
        (10, 14, 5.0, False),
    ]
    c = df["carbon_kg_per_kwh"]
    assert c.iloc[10:15].isna().all() and c.drop(c.index[10:15]).notna().all()
    step = (c.iloc[5] - c.iloc[1]) / 4
    np.testing.assert_allclose(c.iloc[2:5], c.iloc[1] + step * np.arange(1, 4))
    assert df["filled"].tolist().count(True) == 3
    strict = read_lets_wait_awhile(p, max_gap_hours=2)
    assert strict["carbon_kg_per_kwh"].isna().sum() == 8


# ------------------------------------------------------------------------ malformed files ----


@pytest.fixture
def src(lwa_dir: Path) -> Path:
    return lwa_dir / "gb_ci.csv"


def test_wrong_header(src: Path, edit_csv, located) -> None:
    p = edit_csv(src, n_lines=30, header={"Time": "Timestamp"})
    with pytest.raises(DataFileError, match="missing required column") as ei:
        read_lets_wait_awhile(p)
    located(ei.value, p, 1, "Time")
    p = edit_csv(src, "ci.csv", n_lines=30, header={CI: "CI"})
    with pytest.raises(DataFileError) as ei:
        read_lets_wait_awhile(p)
    located(ei.value, p, 1, CI)


def test_unparsable_time(src: Path, edit_csv, located) -> None:
    p = edit_csv(src, n_lines=30, cells={(13, "Time"): "2019-12-20 25:00:00"})
    with pytest.raises(DataFileError, match="unparsable time") as ei:
        read_lets_wait_awhile(p)
    located(ei.value, p, 13, "Time")


def test_non_numeric(src: Path, edit_csv, located) -> None:
    p = edit_csv(src, n_lines=30, cells={(21, CI): "high"})
    with pytest.raises(DataFileError, match="not a number") as ei:
        read_lets_wait_awhile(p)
    located(ei.value, p, 21, CI)


def test_units(src: Path, edit_csv, located) -> None:
    bad = "Carbon Intensity (gCO2/furlong)"
    p = edit_csv(src, n_lines=30, header={CI: bad})
    with pytest.raises(DataFileError, match="unknown carbon-intensity unit") as ei:
        read_lets_wait_awhile(p)
    located(ei.value, p, 1, bad)
    base = read_lets_wait_awhile(edit_csv(src, "base.csv", n_lines=30))
    kg = read_lets_wait_awhile(
        edit_csv(src, "kg.csv", n_lines=30, header={CI: "Carbon Intensity (kgCO2/kWh)"})
    )
    np.testing.assert_allclose(kg["carbon_kg_per_kwh"], base["carbon_kg_per_kwh"] * 1000)
    with pytest.raises(DataFileError, match="unit"):
        read_lets_wait_awhile(edit_csv(src, "arg.csv", n_lines=30), unit="g/therm")


def test_duplicate_instant(src: Path, edit_csv, located) -> None:
    p = edit_csv(src, n_lines=30, cells={(6, "Time"): "2019-12-20 01:30:00"})
    with pytest.raises(DataFileError, match="duplicate instant") as ei:
        read_lets_wait_awhile(p)
    located(ei.value, p, 6, "Time")
