"""Adapter for the ML.ENERGY leaderboard v3 configurations (greensched.data.mlenergy)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from greensched.data.mlenergy import TIDY_COLUMNS, read_mlenergy_configs, read_mlenergy_json
from greensched.errors import DataFileError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ML = DATA / "mlenergy_leaderboard"
CSV = ML / "mlenergy_llm_configs_extract.csv"
ONE = "meta-llama__Llama-3.1-8B-Instruct__lm-arena-chat.json"


@pytest.fixture(scope="module")
def ml_dir() -> Path:
    if not ML.is_dir():
        pytest.skip(f"reference data {ML} not found: needs ../shared/data beside the repository")
    return ML


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


# ---------------------------------------------------------------------------- real files


def test_csv_and_json_agree(ml_dir: Path) -> None:
    a = read_mlenergy_configs(ml_dir / CSV.name)
    b = read_mlenergy_json(ml_dir)
    assert list(a.columns) == list(TIDY_COLUMNS) == list(b.columns)
    assert len(a) == len(b) == 565
    assert set(a["gpu_model"]) == {"H100", "B200"}
    cols = [c for c in TIDY_COLUMNS if c != "source_file"]
    x = a[cols].sort_values(cols).reset_index(drop=True)
    y = b[cols].sort_values(cols).reset_index(drop=True)
    num = x.select_dtypes("number").columns
    np.testing.assert_allclose(x[num].to_numpy(), y[num].to_numpy(), rtol=1e-12)
    assert (x["model"] == y["model"]).all()


def test_values_and_types(ml_dir: Path) -> None:
    df = read_mlenergy_configs(ml_dir / CSV.name)
    assert df["num_gpus"].dtype == np.int64 and df["batch_size"].dtype == np.int64
    assert df["energy_per_token_j"].between(0.025, 35).all()  # README: 0.03-34 J
    row = df.loc[
        (df["model"] == "meta-llama/Llama-3.1-8B-Instruct")
        & (df["gpu_model"] == "B200")
        & (df["batch_size"] == 8)
    ].iloc[0]
    assert row["energy_per_token_j"] == pytest.approx(0.3905, rel=1e-3)
    assert row["active_params_b"] == 8.0
    assert row["median_itl_ms"] == pytest.approx(4.574, rel=1e-3)


def test_json_single_file_and_models_dir(ml_dir: Path) -> None:
    one = read_mlenergy_json(ml_dir / "models" / ONE)
    assert len(one) == 20 and set(one["source_file"]) == {ONE}
    assert len(read_mlenergy_json(ml_dir / "models")) == 565


def test_unit_suffix_conversion(ml_dir: Path, tmp_path: Path) -> None:
    rows = _rows(ml_dir / CSV.name)[:12]
    i = rows[0].index("energy_per_token_joules")
    j = rows[0].index("median_itl_ms")
    rows[0][i] = "energy_per_token_kwh"
    rows[0][j] = "median_itl_s"
    for r in rows[1:]:
        r[i] = repr(float(r[i]) / 3.6e6)
        r[j] = repr(float(r[j]) / 1e3)
    conv = read_mlenergy_configs(_write(tmp_path / "conv.csv", rows))
    orig = read_mlenergy_configs(ml_dir / CSV.name).iloc[:11]
    np.testing.assert_allclose(conv["energy_per_token_j"], orig["energy_per_token_j"], rtol=1e-12)
    np.testing.assert_allclose(conv["median_itl_ms"], orig["median_itl_ms"], rtol=1e-12)


# ---------------------------------------------------------------------------- malformed CSV


def _expect_csv(path: Path, line: int, column: str, match: str) -> DataFileError:
    with pytest.raises(DataFileError, match=match) as info:
        read_mlenergy_configs(path)
    err = info.value
    assert (err.file, err.line, err.column) == (str(path), line, column)
    return err


def test_csv_missing_column(ml_dir: Path, tmp_path: Path) -> None:
    rows = _rows(ml_dir / CSV.name)[:10]
    j = rows[0].index("max_num_seqs")
    bad = _write(tmp_path / "m.csv", [r[:j] + r[j + 1 :] for r in rows])
    _expect_csv(bad, 1, "max_num_seqs", "missing column")


def test_csv_non_numeric(ml_dir: Path, tmp_path: Path) -> None:
    rows = _rows(ml_dir / CSV.name)[:10]
    rows[6][rows[0].index("energy_per_token_joules")] = "fast"
    err = _expect_csv(_write(tmp_path / "n.csv", rows), 7, "energy_per_token_joules", "non-numeric")
    assert err.value == "fast"


def test_csv_unknown_unit(ml_dir: Path, tmp_path: Path) -> None:
    rows = _rows(ml_dir / CSV.name)[:10]
    rows[0][rows[0].index("avg_power_watts")] = "avg_power_horsepower"
    err = _expect_csv(_write(tmp_path / "u.csv", rows), 1, "avg_power_horsepower", "unknown unit")
    assert err.value == "horsepower"


# ---------------------------------------------------------------------------- malformed JSON


def _json_copy(ml_dir: Path, tmp_path: Path) -> tuple[Path, dict]:
    dst = tmp_path / "models"
    dst.mkdir()
    path = dst / ONE
    shutil.copyfile(ml_dir / "models" / ONE, path)
    return path, json.loads(path.read_text(encoding="utf-8"))


def _dump(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")


def _line_of(path: Path, needle: str, nth: int = 0) -> int:
    hits = [i + 1 for i, ln in enumerate(path.read_text().splitlines()) if needle in ln]
    return hits[nth]


def test_json_syntax_error_line(ml_dir: Path, tmp_path: Path) -> None:
    path, _ = _json_copy(ml_dir, tmp_path)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[9] = lines[9] + " oops"
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataFileError, match="invalid JSON") as info:
        read_mlenergy_json(tmp_path)
    assert info.value.file == str(path) and info.value.line == 10


def test_json_non_numeric_config_value(ml_dir: Path, tmp_path: Path) -> None:
    path, doc = _json_copy(ml_dir, tmp_path)
    doc["configurations"][2]["energy_per_token_joules"] = "lots"
    _dump(path, doc)
    with pytest.raises(DataFileError, match="non-numeric") as info:
        read_mlenergy_json(tmp_path)
    err = info.value
    assert err.file == str(path)
    assert err.column == "configurations[2].energy_per_token_joules"
    assert err.line == _line_of(path, '"energy_per_token_joules": "lots"')
    assert err.value == "lots"


def test_json_missing_config_field(ml_dir: Path, tmp_path: Path) -> None:
    path, doc = _json_copy(ml_dir, tmp_path)
    del doc["configurations"][1]["num_gpus"]
    _dump(path, doc)
    with pytest.raises(DataFileError, match="missing field") as info:
        read_mlenergy_json(tmp_path)
    err = info.value
    assert err.column == "configurations[1].num_gpus"
    # the line of the configuration's opening brace: the second '{' opening a configuration
    text = path.read_text().splitlines()
    start = _line_of(path, '"configurations": [')
    braces = [i + 1 for i, ln in enumerate(text) if ln.strip() == "{" and i + 1 > start]
    assert err.line in braces


def test_json_unknown_unit_and_missing_model_id(ml_dir: Path, tmp_path: Path) -> None:
    path, doc = _json_copy(ml_dir, tmp_path)
    cfg = doc["configurations"][0]
    cfg["p90_itl_fortnights"] = cfg.pop("p90_itl_ms")
    _dump(path, doc)
    with pytest.raises(DataFileError, match="unknown unit") as info:
        read_mlenergy_json(tmp_path)
    assert info.value.column == "configurations[0].p90_itl_fortnights"
    assert info.value.line == _line_of(path, '"p90_itl_fortnights"')

    del doc["model_id"]
    _dump(path, doc)
    with pytest.raises(DataFileError, match="model_id") as info:
        read_mlenergy_json(tmp_path)
    assert info.value.column == "model_id"


def test_json_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="not found"):
        read_mlenergy_json(tmp_path / "absent")
    with pytest.raises(DataFileError, match="no \\*.json"):
        read_mlenergy_json(tmp_path)
