"""Plan tables as CSV or Parquet (PlanResult.write(tables=...)); the plan guide reads both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greensched.errors import GreenSchedError
from greensched.scheduler import PlanConfig, plan
from greensched.scheduler.assign.guide import PlanGuide
from greensched.synth import synthesize


def test_parquet_tables_equal_csv_tables_and_guide_reads_them(tmp_path: Path) -> None:
    scen = synthesize(4, 3, 2, 3, seed=4)
    result = plan(scen, PlanConfig())
    assert result.is_ok
    result.write(tmp_path / "csv")
    result.write(tmp_path / "pq", tables="parquet")
    for name in ("allocation", "dc_hourly", "duals"):
        a = pd.read_csv(tmp_path / "csv" / f"{name}.csv")
        b = pd.read_parquet(tmp_path / "pq" / f"{name}.parquet")
        assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
        num = a.select_dtypes("number").columns
        assert np.allclose(a[num].to_numpy(float), b[num].to_numpy(float), equal_nan=True)
    assert not (tmp_path / "pq" / "allocation.csv").exists()
    # shares of each (hour, area, query_type) sum to 1 (the demand rows)
    alloc = pd.read_parquet(tmp_path / "pq" / "allocation.parquet")
    assert np.allclose(alloc.groupby(["hour", "area", "query_type"])["fraction"].sum(), 1.0)
    g_csv = PlanGuide.from_directory(tmp_path / "csv")
    g_pq = PlanGuide.from_directory(tmp_path / "pq")
    assert g_pq.allocation is not None and g_csv.allocation is not None
    assert np.allclose(g_pq.allocation.values, g_csv.allocation.values, equal_nan=True)
    assert g_pq.resource_price is not None and g_csv.resource_price is not None
    assert np.allclose(g_pq.resource_price.values, g_csv.resource_price.values, equal_nan=True)


def test_unknown_table_format_is_refused(tmp_path: Path) -> None:
    result = plan(synthesize(3, 2, 1, 2, seed=1), PlanConfig())
    with pytest.raises(GreenSchedError, match="xlsx"):
        result.write(tmp_path, tables="xlsx")
