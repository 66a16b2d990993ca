"""Tests of the Azure LLM inference trace adapter."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from greensched.data.azure_trace import read_azure_trace, read_azure_traces
from greensched.errors import DataFileError


@pytest.fixture(scope="module")
def azure_dir(data_dir: Path) -> Path:
    return data_dir / "azure_llm_inference"


@pytest.fixture(scope="module")
def code(azure_dir: Path) -> pd.DataFrame:
    return read_azure_trace(azure_dir / "AzureLLMInferenceTrace_code.csv")


@pytest.fixture(scope="module")
def conv(azure_dir: Path) -> pd.DataFrame:
    return read_azure_trace(azure_dir / "AzureLLMInferenceTrace_conv.csv")


def test_row_counts_and_columns(code: pd.DataFrame, conv: pd.DataFrame) -> None:
    assert len(code) == 8819 and len(conv) == 19366
    assert list(code.columns) == ["time_utc", "input_tokens", "output_tokens", "query_type"]
    assert str(code["time_utc"].dtype) == "datetime64[ns, UTC]"
    assert code["input_tokens"].dtype == "int64" and code["output_tokens"].dtype == "int64"
    assert set(code["query_type"]) == {"code"} and set(conv["query_type"]) == {"conv"}
    assert code["time_utc"].is_monotonic_increasing


def test_token_statistics(code: pd.DataFrame, conv: pd.DataFrame) -> None:
    assert code["input_tokens"].mean() == pytest.approx(2048, abs=1)
    assert code["input_tokens"].median() == 1469 and code["input_tokens"].max() == 7437
    assert code["output_tokens"].mean() == pytest.approx(28, abs=0.5)
    assert conv["input_tokens"].mean() == pytest.approx(1155, abs=1)
    assert conv["output_tokens"].mean() == pytest.approx(211, abs=0.5)
    assert conv["output_tokens"].max() == 1000


def test_timestamps_exact(code: pd.DataFrame, conv: pd.DataFrame) -> None:
    # 7-digit fraction parsed to the nanosecond, naive values taken as UTC
    assert code["time_utc"].iloc[0] == pd.Timestamp("2023-11-16 18:17:03.9799600", tz="UTC")
    assert code["time_utc"].iloc[0].value % 1_000 == 0
    assert code["time_utc"].iloc[-1].floor("min") == pd.Timestamp("2023-11-16 19:14", tz="UTC")
    span = conv["time_utc"].iloc[-1] - conv["time_utc"].iloc[0]
    assert pd.Timedelta(minutes=55) < span < pd.Timedelta(minutes=65)


def test_seventh_digit_kept(tmp_path: Path) -> None:
    p = tmp_path / "trace_code.csv"
    p.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:17:04.0319601,10,2\n"
        "2023-11-16 18:17:04.0319602,11,3\n"
    )
    df = read_azure_trace(p)
    t = df["time_utc"]
    assert t.iloc[0].nanosecond == 100 and (t.iloc[1] - t.iloc[0]) == pd.Timedelta(100, "ns")


def test_explicit_time_zone(azure_dir: Path, code: pd.DataFrame) -> None:
    pst = read_azure_trace(azure_dir / "AzureLLMInferenceTrace_code.csv", tz="America/Los_Angeles")
    assert (pst["time_utc"] - code["time_utc"] == pd.Timedelta(hours=8)).all()  # PST in Nov
    assert pst.attrs["tz_assumed"] == "America/Los_Angeles"


def test_combined_traces(azure_dir: Path) -> None:
    both = read_azure_traces(azure_dir)
    assert len(both) == 8819 + 19366
    assert both["time_utc"].is_monotonic_increasing
    assert both["query_type"].value_counts().to_dict() == {"conv": 19366, "code": 8819}
    assert list(both["query_type"].cat.categories) == ["code", "conv"]




# ------------------------------------------------------------------------ malformed files ----


@pytest.fixture
def src(azure_dir: Path) -> Path:
    return azure_dir / "AzureLLMInferenceTrace_code.csv"


def test_wrong_header(src: Path, edit_csv, located) -> None:
    p = edit_csv(src, n_lines=50, header={"ContextTokens": "PromptTokens"})
    with pytest.raises(DataFileError, match="missing required column") as ei:
        read_azure_trace(p)
    located(ei.value, p, 1, "ContextTokens")


def test_unparsable_time(src: Path, edit_csv, located) -> None:
    p = edit_csv(src, n_lines=50, cells={(17, "TIMESTAMP"): "2023-11-16 18:17:xx.0000000"})
    with pytest.raises(DataFileError, match="unparsable time") as ei:
        read_azure_trace(p)
    located(ei.value, p, 17, "TIMESTAMP")


def test_bad_token_counts(src: Path, edit_csv, located) -> None:
    p = edit_csv(src, n_lines=50, cells={(9, "GeneratedTokens"): "ten"})
    with pytest.raises(DataFileError, match="not a number") as ei:
        read_azure_trace(p)
    located(ei.value, p, 9, "GeneratedTokens")
    p = edit_csv(src, "frac_code.csv", n_lines=50, cells={(4, "ContextTokens"): "12.5"})
    with pytest.raises(DataFileError, match="not an integer") as ei:
        read_azure_trace(p)
    located(ei.value, p, 4, "ContextTokens")
    p = edit_csv(src, "neg_code.csv", n_lines=50, cells={(5, "ContextTokens"): "-3"})
    with pytest.raises(DataFileError, match="minimum") as ei:
        read_azure_trace(p)
    located(ei.value, p, 5, "ContextTokens")
    p = edit_csv(src, "blank_code.csv", n_lines=50, cells={(6, "GeneratedTokens"): ""})
    with pytest.raises(DataFileError, match="missing value") as ei:
        read_azure_trace(p)
    located(ei.value, p, 6, "GeneratedTokens")


def test_query_type_from_name(src: Path, edit_csv) -> None:
    p = edit_csv(src, "trace.csv", n_lines=5)
    with pytest.raises(DataFileError, match="query type") as ei:
        read_azure_trace(p)
    assert str(p) in str(ei.value)
    assert set(read_azure_trace(p, query_type="code")["query_type"]) == {"code"}
