"""Tests of the ping-RTT adapter on the Green-LLM network-delay files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greensched.data.network_delay import (
    pair_from_filename,
    read_network_delay,
    read_rtt_matrix,
    read_rtt_stats,
)
from greensched.errors import DataFileError

CITIES = [
    "Charlotte",
    "Columbus",
    "Dallas",
    "DesMoines",
    "LA",
    "Portland",
    "SaltLakeCity",
    "Vegas",
    "Washington",
]


@pytest.fixture(scope="module")
def delay_dir(data_dir: Path) -> Path:
    return data_dir / "green_llm" / "Network_delay"


def test_vegas_la(delay_dir: Path) -> None:
    df = read_network_delay(delay_dir / "Vegas_LA_delay.csv")
    assert len(df) == 48
    assert str(df.index.tz) == "UTC" and df.index.name == "time_utc"
    assert df.index[0] == pd.Timestamp("2025-03-24 00:00", tz="UTC")
    assert df["measured_at_utc"].iloc[0] == pd.Timestamp("2025-03-24 00:29:05", tz="UTC")
    assert df["rtt_avg_s"].mean() == pytest.approx(0.0093, abs=5e-5)
    assert df["rtt_avg_s"].iloc[0] == pytest.approx(0.0093)
    assert df["rtt_min_s"].iloc[0] == pytest.approx(0.009121)
    assert (df["rtt_min_s"] <= df["rtt_avg_s"]).all() and (df["rtt_avg_s"] <= df["rtt_max_s"]).all()
    assert df.attrs["city_a"] == "Vegas" and df.attrs["city_b"] == "LA"
    assert df.attrs["gaps"] == [] and df.attrs["tz_assumed"] == "UTC"


def test_tz_parameter_shifts_explicitly(delay_dir: Path) -> None:
    utc = read_network_delay(delay_dir / "Vegas_LA_delay.csv")
    chicago = read_network_delay(delay_dir / "Vegas_LA_delay.csv", tz="America/Chicago")
    assert chicago.index[0] - utc.index[0] == pd.Timedelta(hours=5)  # CDT = UTC-5 in March
    np.testing.assert_allclose(chicago["rtt_avg_s"], utc["rtt_avg_s"])


def test_stats_and_matrix(delay_dir: Path) -> None:
    stats = read_rtt_stats(delay_dir)
    assert len(stats) == 36
    assert sorted(stats["n_samples"].unique().tolist()) == [45, 47, 48]
    m = read_rtt_matrix(delay_dir)
    assert list(m.index) == CITIES and list(m.columns) == CITIES
    values = m.to_numpy()
    np.testing.assert_array_equal(values, values.T)
    assert (np.diag(values) == 0).all()
    off = values[~np.eye(len(CITIES), dtype=bool)]
    assert np.isfinite(off).all() and (off > 0).all()
    assert m.loc["Vegas", "LA"] == pytest.approx(0.0093, abs=5e-5)
    assert m.loc["LA", "Vegas"] == m.loc["Vegas", "LA"]
    assert m.loc["Charlotte", "Washington"] == pytest.approx(0.0097, abs=5e-5)
    assert m.loc["Portland", "Washington"] == pytest.approx(0.0915, abs=5e-5)
    assert off.min() == m.loc["Vegas", "LA"] and off.max() == m.loc["Portland", "Washington"]
    assert m.attrs["missing_pairs"] == [] and m.attrs["unit"] == "s"
    p95 = read_rtt_matrix(delay_dir, stat="p95")
    assert (p95.to_numpy() >= values - 1e-12).all()
    with pytest.raises(ValueError, match="stat"):
        read_rtt_matrix(delay_dir, stat="mode")  # type: ignore[arg-type]


def test_matrix_both_directions_and_missing_pair(delay_dir: Path, tmp_path: Path) -> None:
    for name in ("Vegas_LA_delay.csv", "Dallas_LA_delay.csv"):
        shutil.copy(delay_dir / name, tmp_path / name)
    # reverse direction with every RTT doubled -> averaged with the forward file
    src = pd.read_csv(delay_dir / "Vegas_LA_delay.csv")
    for c in ("Average_delay", "Minimum_delay", "Maximum_delay"):
        src[c] = src[c] * 2
    src.to_csv(tmp_path / "LA_Vegas_delay.csv", index=False)
    m = read_rtt_matrix(tmp_path)
    fwd = pd.read_csv(delay_dir / "Vegas_LA_delay.csv")["Average_delay"].mean() / 1000
    assert m.loc["LA", "Vegas"] == pytest.approx(1.5 * fwd)
    assert m.loc["Vegas", "LA"] == m.loc["LA", "Vegas"]
    assert np.isnan(m.loc["Dallas", "Vegas"]) and np.isnan(m.loc["Vegas", "Dallas"])
    assert m.attrs["missing_pairs"] == [("Dallas", "Vegas")]


def test_pair_from_filename() -> None:
    assert pair_from_filename("x/SaltLakeCity_DesMoines_delay.csv") == ("SaltLakeCity", "DesMoines")
    with pytest.raises(ValueError, match="not named"):
        pair_from_filename("Salt_Lake_City_LA_delay.csv")


def test_bad_file_name_in_directory(delay_dir: Path, tmp_path: Path) -> None:
    shutil.copy(delay_dir / "Vegas_LA_delay.csv", tmp_path / "Las_Vegas_LA_delay.csv")
    with pytest.raises(ValueError, match="not named"):
        read_rtt_matrix(tmp_path)


# ------------------------------------------------------------------------ malformed files ----


@pytest.fixture
def vegas(delay_dir: Path) -> Path:
    return delay_dir / "Vegas_LA_delay.csv"


def test_wrong_header(vegas: Path, edit_csv, located) -> None:
    p = edit_csv(vegas, header={"Average_delay": "Avg"})
    with pytest.raises(DataFileError, match="missing required column") as ei:
        read_network_delay(p)
    located(ei.value, p, 1, "Average_delay")
    p = edit_csv(vegas, "Vegas_Dallas_delay.csv", header={"Timestamp": "Time"})
    with pytest.raises(DataFileError) as ei:
        read_network_delay(p)
    located(ei.value, p, 1, "Timestamp")


def test_unparsable_time(vegas: Path, edit_csv, located) -> None:
    p = edit_csv(vegas, cells={(10, "Timestamp"): "2025-03-24 09:61:00"})
    with pytest.raises(DataFileError, match="unparsable time") as ei:
        read_network_delay(p)
    located(ei.value, p, 10, "Timestamp")


def test_non_numeric_and_negative(vegas: Path, edit_csv, located) -> None:
    p = edit_csv(vegas, cells={(12, "Maximum_delay"): "timeout"})
    with pytest.raises(DataFileError, match="not a number") as ei:
        read_network_delay(p)
    located(ei.value, p, 12, "Maximum_delay")
    p = edit_csv(vegas, "neg.csv", cells={(3, "Average_delay"): "-1"})
    with pytest.raises(DataFileError, match="minimum") as ei:
        read_network_delay(p)
    located(ei.value, p, 3, "Average_delay")


def test_units(vegas: Path, edit_csv, located) -> None:
    p = edit_csv(vegas, header={"Minimum_delay": "Minimum_delay (furlongs)"})
    with pytest.raises(DataFileError, match="unknown duration unit") as ei:
        read_network_delay(p)
    located(ei.value, p, 1, "Minimum_delay (furlongs)")
    secs = read_network_delay(
        edit_csv(vegas, "secs.csv", header={"Average_delay": "Average_delay (s)"})
    )
    assert secs["rtt_avg_s"].iloc[0] == pytest.approx(9.3)
    assert secs["rtt_min_s"].iloc[0] == pytest.approx(0.009121)


def test_gap_filling(vegas: Path, edit_csv) -> None:
    # drop 2 hours (lines 5-6) and 5 hours (lines 12-16)
    p = edit_csv(vegas, drop={5, 6, 12, 13, 14, 15, 16})
    df = read_network_delay(p)
    assert len(df) == 48
    assert [(g.hours, g.filled) for g in df.attrs["gaps"]] == [(2.0, True), (5.0, False)]
    assert df["rtt_avg_s"].isna().sum() == 5
    assert df["filled"].sum() == 2 and (df.loc[df["filled"], "n_samples"] == 0).all()
    assert df.loc[df["filled"], "measured_at_utc"].isna().all()
