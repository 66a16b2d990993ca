"""Adapter for the Wilkins et al. energy measurements (greensched.data.energy_inference)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from greensched.data.energy_inference import (
    TIDY_COLUMNS,
    gpu_of_system,
    params_of_model,
    read_energy_inference,
)
from greensched.errors import DataFileError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EI = DATA / "energy_inference"


@pytest.fixture(scope="module")
def ei_dir() -> Path:
    if not EI.is_dir():
        pytest.skip(f"reference data {EI} not found: needs ../shared/data beside the repository")
    return EI


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


def _copy(src: Path, dst: Path, n_lines: int = 30) -> list[list[str]]:
    rows = _rows(src)[:n_lines]
    _write(dst, rows)
    return rows


# ---------------------------------------------------------------------------- real files


def test_directory_read_is_tidy_and_deduplicated(ei_dir: Path) -> None:
    df = read_energy_inference(ei_dir)
    assert list(df.columns) == list(TIDY_COLUMNS)
    assert len(df) == 2176  # inference runs of the two sweeps; all-stats.csv repeats them
    assert set(df["kind"]) == {"inference"}
    assert set(df["system"]) == {
        "Palmetto Intel+A100",
        "Palmetto Intel+V100",
        "Swing AMD+A100",
        "M1-Pro",
    }
    assert set(df["gpu"]) == {"A100", "V100", "M1-Pro"}
    assert set(df["model"]) == {"Llama-2 (7B)", "Mistral (7B)", "Falcon (7B)"}
    assert (df["model_params_b"] == 7.0).all()
    np.testing.assert_allclose(df["energy_j"], df["cpu_energy_j"] + df["gpu_energy_j"])
    np.testing.assert_allclose(df["energy_kwh"], df["energy_j"] / 3.6e6)
    assert (df["runtime_s"] > 0).all()
    assert df["source_file"].isin(["all-input-stats.csv", "all-output-stats.csv"]).all()
    for col in ("input_tokens", "output_tokens", "iteration", "num_gpus", "batch_size"):
        assert df[col].dtype == np.int64


def test_union_file_equals_the_two_sweeps(ei_dir: Path) -> None:
    union = read_energy_inference(ei_dir / "all-stats.csv")
    both = read_energy_inference(ei_dir)
    key = ["system", "model", "phase", "iteration", "input_tokens", "output_tokens"]
    a = union.sort_values(key).reset_index(drop=True)
    b = both.sort_values(key).reset_index(drop=True)
    assert len(a) == len(b)
    np.testing.assert_allclose(a["energy_j"], b["energy_j"], rtol=1e-9)


def test_startup_rows_optional_and_m1_inference_kept(ei_dir: Path) -> None:
    df = read_energy_inference(ei_dir / "all-output-stats.csv", include_startup=True)
    assert set(df["kind"]) == {"inference", "startup"}
    startup = df.loc[df["kind"] == "startup", "phase"].str.lower()
    assert startup.isin(["tokenizer", "model load", "load model"]).all()
    m1 = df.loc[(df["system"] == "M1-Pro") & (df["kind"] == "inference")]
    assert len(m1) > 0 and m1["phase"].str.startswith("inference-").all()


def test_input_sweep_output_limit_column(ei_dir: Path) -> None:
    df = read_energy_inference(ei_dir / "all-input-stats.csv")
    assert (df["output_tokens"] == 32).all()
    assert sorted(df["input_tokens"].unique())[:3] == [8, 16, 32]


def test_readme_observation_llama_a100(ei_dir: Path) -> None:
    df = read_energy_inference(ei_dir / "all-output-stats.csv")
    sel = df.loc[(df["model"] == "Llama-2 (7B)") & (df["system"] == "Palmetto Intel+A100")]
    med = sel.groupby("output_tokens")["energy_j"].median()
    assert med[512] == pytest.approx(5.2e3, rel=0.02)
    assert med[4096] == pytest.approx(289e3, rel=0.01)


def test_unit_conversion_in_header(ei_dir: Path, tmp_path: Path) -> None:
    rows = _copy(ei_dir / "all-output-stats.csv", tmp_path / "a.csv", 20)
    i_rt = rows[0].index("Runtime (s)")
    i_ge = rows[0].index("GPU Energy (J)")
    rows[0][i_rt] = "Runtime (ms)"
    rows[0][i_ge] = "GPU Energy (kJ)"
    for r in rows[1:]:
        r[i_rt] = repr(float(r[i_rt]) * 1000.0)
        r[i_ge] = repr(float(r[i_ge]) / 1000.0)
    conv = read_energy_inference(_write(tmp_path / "b.csv", rows))
    orig = read_energy_inference(tmp_path / "a.csv")
    np.testing.assert_allclose(conv["runtime_s"], orig["runtime_s"], rtol=1e-12)
    np.testing.assert_allclose(conv["gpu_energy_j"], orig["gpu_energy_j"], rtol=1e-12)


# ---------------------------------------------------------------------------- malformed


def _expect(path: Path, line: int, column: str, match: str) -> DataFileError:
    with pytest.raises(DataFileError, match=match) as info:
        read_energy_inference(path)
    err = info.value
    assert err.file == str(path)
    assert err.line == line
    assert err.column == column
    assert path.name in str(err) and f"line {line}" in str(err)
    return err


def test_missing_column(ei_dir: Path, tmp_path: Path) -> None:
    rows = _copy(ei_dir / "all-output-stats.csv", tmp_path / "x.csv")
    j = rows[0].index("GPU Energy (J)")
    bad = _write(tmp_path / "missing.csv", [r[:j] + r[j + 1 :] for r in rows])
    _expect(bad, 1, "GPU Energy (J)", "missing column")


def test_non_numeric_value(ei_dir: Path, tmp_path: Path) -> None:
    rows = _copy(ei_dir / "all-output-stats.csv", tmp_path / "x.csv")
    rows[7][rows[0].index("CPU Energy (J)")] = "12,5J"
    bad = _write(tmp_path / "nonnum.csv", rows)
    err = _expect(bad, 8, "CPU Energy (J)", "non-numeric")
    assert err.value == "12,5J"


def test_empty_value(ei_dir: Path, tmp_path: Path) -> None:
    rows = _copy(ei_dir / "all-input-stats.csv", tmp_path / "x.csv")
    rows[12][rows[0].index("Output Token Limit")] = ""
    _expect(_write(tmp_path / "empty.csv", rows), 13, "Output Token Limit", "missing value")


def test_non_integer_token_count(ei_dir: Path, tmp_path: Path) -> None:
    rows = _copy(ei_dir / "all-output-stats.csv", tmp_path / "x.csv")
    rows[5][rows[0].index("Number of Input Tokens")] = "38.5"
    _expect(_write(tmp_path / "frac.csv", rows), 6, "Number of Input Tokens", "integer")


def test_unknown_unit(ei_dir: Path, tmp_path: Path) -> None:
    rows = _copy(ei_dir / "all-output-stats.csv", tmp_path / "x.csv")
    rows[0][rows[0].index("CPU Energy (J)")] = "CPU Energy (cal)"
    err = _expect(_write(tmp_path / "unit.csv", rows), 1, "CPU Energy (cal)", "unknown unit")
    assert err.value == "cal"


def test_unit_missing_from_header(ei_dir: Path, tmp_path: Path) -> None:
    rows = _copy(ei_dir / "all-output-stats.csv", tmp_path / "x.csv")
    rows[0][rows[0].index("Runtime (s)")] = "Runtime"
    _expect(_write(tmp_path / "nounit.csv", rows), 1, "Runtime", "no unit")


def test_unknown_phase_and_negative_runtime(ei_dir: Path, tmp_path: Path) -> None:
    rows = _copy(ei_dir / "all-output-stats.csv", tmp_path / "x.csv")
    phase = [list(r) for r in rows]
    phase[10][0] = "warmup-8-0"
    _expect(_write(tmp_path / "phase.csv", phase), 11, "Phase", "unknown phase")
    neg = [list(r) for r in rows]
    neg[4][rows[0].index("Runtime (s)")] = "-0.5"
    _expect(_write(tmp_path / "neg.csv", neg), 5, "Runtime (s)", "negative")


def test_missing_file_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="not found"):
        read_energy_inference(tmp_path / "nope.csv")
    with pytest.raises(DataFileError, match="no \\*.csv"):
        read_energy_inference(tmp_path)


def test_error_in_second_file_of_directory_names_that_file(ei_dir: Path, tmp_path: Path) -> None:
    _copy(ei_dir / "all-input-stats.csv", tmp_path / "a.csv")
    rows = _copy(ei_dir / "all-output-stats.csv", tmp_path / "b.csv")
    rows[3][rows[0].index("GPU Energy (J)")] = "n/a"
    _write(tmp_path / "b.csv", rows)
    _expect(tmp_path / "b.csv", 4, "GPU Energy (J)", "non-numeric")
    with pytest.raises(DataFileError) as info:
        read_energy_inference(tmp_path)
    assert info.value.file == str(tmp_path / "b.csv") and info.value.line == 4


# ---------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("system", "gpu"),
    [
        ("Palmetto Intel+A100", "A100"),
        ("Swing AMD+A100", "A100"),
        ("Palmetto Intel+V100", "V100"),
        ("M1-Pro", "M1-Pro"),
        ("Some H100 box", "H100"),
        ("unknown", "unknown"),
    ],
)
def test_gpu_of_system(system: str, gpu: str) -> None:
    assert gpu_of_system(system) == gpu


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("Llama-2 (7B)", 7.0),
        ("Llama-2 (70B)", 70.0),
        ("Mixtral (8x7B)", 46.7),
        ("Falcon (40B)", 40.0),
    ],
)
def test_params_of_model(model: str, params: float) -> None:
    assert params_of_model(model) == pytest.approx(params)


def test_params_of_model_without_size() -> None:
    assert np.isnan(params_of_model("mystery"))
