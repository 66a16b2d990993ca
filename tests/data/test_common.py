"""Tests of the shared CSV, time-zone, unit and gap helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greensched.data._common import read_raw
from greensched.data.gaps import Gap, fill_gaps, gaps_frame
from greensched.data.units import carbon_factor, duration_factor, price_factor, split_unit
from greensched.errors import DataFileError


def hourly(values: list[float | None], start: str = "2024-01-01") -> pd.Series:
    idx = pd.date_range(start, periods=len(values), freq="h", tz="UTC")
    return pd.Series([np.nan if v is None else v for v in values], index=idx, dtype=float)


# ---------------------------------------------------------------------------------- gaps ----


def test_fill_gaps_short_filled_long_reported() -> None:
    # 3-hour gap (filled), then a 5-hour gap (kept), values on a line so the fill is checkable
    vals: list[float | None] = [float(i) for i in range(20)]
    for i in (2, 3, 4):
        vals[i] = None
    for i in (8, 9, 10, 11, 12):
        vals[i] = None
    s, gaps = fill_gaps(hourly(vals), max_gap_hours=3)
    assert s.iloc[2:5].tolist() == pytest.approx([2.0, 3.0, 4.0])
    assert s.iloc[8:13].isna().all()
    assert s.drop(s.index[8:13]).notna().all()
    t0 = s.index[0]
    assert gaps == [
        Gap(t0 + pd.Timedelta(hours=2), t0 + pd.Timedelta(hours=4), 3.0, True),
        Gap(t0 + pd.Timedelta(hours=8), t0 + pd.Timedelta(hours=12), 5.0, False),
    ]
    frame = gaps_frame(gaps)
    assert list(frame.columns) == ["start", "end", "hours", "filled"]
    assert frame["hours"].tolist() == [3.0, 5.0]


def test_fill_gaps_linear_between_unequal_values() -> None:
    s, gaps = fill_gaps(hourly([10.0, None, None, 40.0]))
    assert s.tolist() == pytest.approx([10.0, 20.0, 30.0, 40.0])
    assert gaps[0].hours == 2.0 and gaps[0].filled


def test_fill_gaps_restores_missing_timestamps() -> None:
    s = hourly([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    s = s.drop(s.index[[2, 3]])  # rows absent, not NaN
    out, gaps = fill_gaps(s, max_gap_hours=3)
    assert len(out) == 6
    assert out.tolist() == pytest.approx([1, 2, 3, 4, 5, 6])
    assert gaps[0].hours == 2.0 and gaps[0].filled


def test_fill_gaps_edges_never_filled_and_zero_disables() -> None:
    s, gaps = fill_gaps(hourly([None, 1.0, None, 3.0, None]))
    assert np.isnan(s.iloc[0]) and np.isnan(s.iloc[-1])
    assert s.iloc[2] == pytest.approx(2.0)
    assert [g.filled for g in gaps] == [False, True, False]
    s0, gaps0 = fill_gaps(hourly([1.0, None, 3.0]), max_gap_hours=0)
    assert np.isnan(s0.iloc[1]) and gaps0[0].filled is False


def test_fill_gaps_no_gap_and_bad_index() -> None:
    s, gaps = fill_gaps(hourly([1.0, 2.0]))
    assert gaps == [] and s.tolist() == [1.0, 2.0]
    dup = pd.concat([hourly([1.0]), hourly([2.0])])
    with pytest.raises(ValueError, match="duplicate"):
        fill_gaps(dup)
    off = hourly([1.0, 2.0])
    off.index = off.index + pd.to_timedelta([0, 90], unit="min")
    with pytest.raises(ValueError, match="grid"):
        fill_gaps(off)


def test_fill_gaps_fast_on_a_year() -> None:
    rng = np.random.default_rng(0)
    values = rng.random(8784)
    values[rng.random(8784) < 0.05] = np.nan
    s = pd.Series(values, index=pd.date_range("2024-01-01", periods=8784, freq="h", tz="UTC"))
    out, gaps = fill_gaps(s)
    assert len(out) == 8784 and gaps
    assert out.isna().sum() == sum(g.hours for g in gaps if not g.filled)


# --------------------------------------------------------------------------------- units ----


@pytest.mark.parametrize(
    ("unit", "factor"),
    [
        ("gCO₂eq/kWh", 1e-3),
        ("gCO2eq / kWh", 1e-3),
        ("g/kWh", 1e-3),
        ("kgCO2/MWh", 1e-3),
        ("kgCO2e/kWh", 1.0),
        ("tCO2/MWh", 1.0),
        ("lb/MWh", 0.45359237e-3),
    ],
)
def test_carbon_factor(unit: str, factor: float) -> None:
    assert carbon_factor(unit) == pytest.approx(factor)


@pytest.mark.parametrize("unit", ["gCO2/furlong", "ozCO2/kWh", "g", "kWh", "g/kWh/h"])
def test_carbon_factor_unknown(unit: str) -> None:
    with pytest.raises(ValueError, match="unit"):
        carbon_factor(unit)


def test_price_and_duration_factors() -> None:
    assert price_factor("$/MWh") == pytest.approx(1e-3)
    assert price_factor("USD/kWh") == 1.0
    assert price_factor("¢/kWh") == pytest.approx(0.01)
    with pytest.raises(ValueError):
        price_factor("EUR/MWh")
    assert duration_factor("ms") == pytest.approx(1e-3)
    assert duration_factor("s") == 1.0
    assert duration_factor("µs") == pytest.approx(1e-6)
    with pytest.raises(ValueError):
        duration_factor("fortnight")


def test_split_unit() -> None:
    assert split_unit("Grid carbon intensity (gCO2eq / kWh)") == (
        "Grid carbon intensity",
        "gCO2eq / kWh",
    )
    assert split_unit("lmp [$/MWh]") == ("lmp", "$/MWh")
    assert split_unit("Average_delay") == ("Average_delay", None)


# ------------------------------------------------------------------------------- reading ----


def write(tmp_path: Path, text: str, name: str = "f.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_read_raw_line_numbers_with_blank_lines(tmp_path: Path, located) -> None:
    p = write(tmp_path, "t,v\n2024-01-01 00:00,1\n\n2024-01-01 01:00,x\n")
    raw = read_raw(p, required=("t", "v"))
    assert raw.lines.tolist() == [2, 4]
    with pytest.raises(DataFileError) as ei:
        raw.numeric("v")
    located(ei.value, p, 4, "v")
    assert "'x'" in str(ei.value)


def test_read_raw_missing_column(tmp_path: Path, located) -> None:
    p = write(tmp_path, "time,value\n2024-01-01,1\n")
    with pytest.raises(DataFileError) as ei:
        read_raw(p, required=("time", "v"))
    located(ei.value, p, 1, "v")


def test_read_raw_file_problems(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="no such file"):
        read_raw(tmp_path / "absent.csv")
    with pytest.raises(DataFileError, match="empty"):
        read_raw(write(tmp_path, "", "empty.csv"))
    with pytest.raises(DataFileError, match="duplicate column"):
        read_raw(write(tmp_path, "a,a\n1,2\n", "dup.csv"))
    p = write(tmp_path, "a,b\n1,2\n3,4,5\n", "ragged.csv")
    with pytest.raises(DataFileError) as ei:
        read_raw(p)
    assert ei.value.line == 3
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("a,b\n1,\xe9\n".encode("latin-1"))
    with pytest.raises(DataFileError, match="utf-8"):
        read_raw(bad)


def test_numeric_checks(tmp_path: Path, located) -> None:
    p = write(tmp_path, "a,b,c,d\n1,2.5,,1\n2,inf,4,2.5\n-1,3,5,3\n")
    raw = read_raw(p)
    assert raw.numeric("a", integer=True).dtype == np.int64
    with pytest.raises(DataFileError) as ei:
        raw.numeric("b")
    located(ei.value, p, 3, "b")
    with pytest.raises(DataFileError, match="not an integer") as ei:
        raw.numeric("d", integer=True)
    located(ei.value, p, 3, "d")
    with pytest.raises(DataFileError, match="missing") as ei:
        raw.numeric("c", allow_missing=False)
    located(ei.value, p, 2, "c")
    with pytest.raises(DataFileError, match="minimum") as ei:
        raw.numeric("a", min_value=0)
    located(ei.value, p, 4, "a")


def test_times_parse_errors(tmp_path: Path, located) -> None:
    p = write(tmp_path, "t\n2024-01-01 00:00:00\n2024-13-01 00:00:00\n")
    with pytest.raises(DataFileError, match="unparsable time") as ei:
        read_raw(p).times("t")
    located(ei.value, p, 3, "t")
    p = write(tmp_path, "t,v\n2024-01-01 00:00:00,1\n\n,\n", "blank.csv")
    # a line of empty cells is blank like an empty line: skipped, not a missing time
    times, _ = read_raw(p).times("t")
    assert len(times) == 1
    p = write(tmp_path, "t,v\n2024-01-01 00:00:00,1\n,2\n", "missing.csv")
    with pytest.raises(DataFileError, match="missing time") as ei:
        read_raw(p).times("t")
    located(ei.value, p, 3, "t")


def test_times_offsets_and_naive(tmp_path: Path) -> None:
    p = write(tmp_path, "t\n2025-03-24T00:00:00-07:00\n2025-03-24T01:00:00-07:00\n")
    times, keep = read_raw(p).times("t", tz=None)
    assert str(times.tz) == "UTC" and keep.all()
    assert times[0] == pd.Timestamp("2025-03-24 07:00", tz="UTC")
    p = write(tmp_path, "t\n2025-03-24T00:00:00-07:00\n2025-03-24T01:00:00\n", "mixed.csv")
    with pytest.raises(DataFileError, match="offset") as ei:
        read_raw(p).times("t", tz="UTC")
    assert ei.value.line == 3
    p = write(tmp_path, "t\n2025-03-24 01:00:00\n", "naive.csv")
    with pytest.raises(DataFileError, match="no time zone"):
        read_raw(p).times("t", tz=None)
    times, _ = read_raw(p).times("t", tz="America/New_York")
    assert times[0] == pd.Timestamp("2025-03-24 05:00", tz="UTC")
    assert times.dtype == "datetime64[ns, UTC]"


def test_times_dst_policies(tmp_path: Path, located) -> None:
    spring = write(tmp_path, "t\n2020-03-29 01:30:00\n2020-03-29 02:30:00\n2020-03-29 03:30:00\n")
    raw = read_raw(spring)
    with pytest.raises(DataFileError, match="does not exist") as ei:
        raw.times("t", tz="Europe/Berlin")
    located(ei.value, spring, 3, "t")
    times, keep = raw.times("t", tz="Europe/Berlin", nonexistent="NaT")
    assert keep.tolist() == [True, False, True]
    assert times.tolist() == [
        pd.Timestamp("2020-03-29 00:30", tz="UTC"),
        pd.Timestamp("2020-03-29 01:30", tz="UTC"),
    ]
    times, _ = raw.times("t", tz="Europe/Berlin", nonexistent="shift_forward")
    assert times[1] == pd.Timestamp("2020-03-29 01:00", tz="UTC")

    autumn = write(
        tmp_path,
        "t\n2020-10-25 01:30:00\n2020-10-25 02:30:00\n2020-10-25 02:30:00\n2020-10-25 03:30:00\n",
        "autumn.csv",
    )
    raw = read_raw(autumn)
    with pytest.raises(DataFileError, match="ambiguous") as ei:
        raw.times("t", tz="Europe/Berlin")
    located(ei.value, autumn, 3, "t")
    times, _ = raw.times("t", tz="Europe/Berlin", ambiguous="infer")
    assert times.tolist() == [
        pd.Timestamp("2020-10-24 23:30", tz="UTC"),
        pd.Timestamp("2020-10-25 00:30", tz="UTC"),
        pd.Timestamp("2020-10-25 01:30", tz="UTC"),
        pd.Timestamp("2020-10-25 02:30", tz="UTC"),
    ]
    times, _ = raw.times("t", tz="Europe/Berlin", ambiguous="earliest")
    assert times[2] == pd.Timestamp("2020-10-25 00:30", tz="UTC")
    times, _ = raw.times("t", tz="Europe/Berlin", ambiguous="latest")
    assert times[1] == pd.Timestamp("2020-10-25 01:30", tz="UTC")
    times, keep = raw.times("t", tz="Europe/Berlin", ambiguous="NaT")
    assert keep.tolist() == [True, False, False, True]
    with pytest.raises(ValueError, match="ambiguous must be"):
        raw.times("t", tz="Europe/Berlin", ambiguous="guess")  # type: ignore[arg-type]


def test_booleans(tmp_path: Path, located) -> None:
    p = write(tmp_path, "e\ntrue\nFALSE\n\nmaybe\n")
    raw = read_raw(p)
    with pytest.raises(DataFileError, match="true or false") as ei:
        raw.booleans("e")
    located(ei.value, p, 5, "e")
    ok = read_raw(write(tmp_path, "e,x\ntrue,1\nFALSE,2\n,3\n", "ok.csv")).booleans("e")
    assert ok.dtype == "boolean"
    assert ok.iloc[0] is np.True_ or bool(ok.iloc[0]) is True
    assert bool(ok.iloc[1]) is False and ok.isna().iloc[2]
