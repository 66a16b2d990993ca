"""The one outcome record (greensched.outcomes): schema, validation, labels, writing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from greensched.outcomes import (
    FIELD_NAMES,
    REQUIRED_FIELDS,
    OutcomeLabels,
    OutcomeValidationError,
    field_table,
    validate_outcomes,
    write_outcomes,
)

ROOT = Path(__file__).resolve().parents[1]
LABELS = OutcomeLabels("tiny", frozenset({"north", "south"}), frozenset({"chat"}),
                       frozenset({"dc-a", "dc-b"}), 24)


def _record(**over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "job_id": "j1", "hour": 3, "area": "north", "query_type": "chat", "input_tokens": 120,
        "output_tokens": 40, "sla_s": 30.0, "dc": "dc-a", "policy": "model",
        "model_version": "v0001", "pred_energy_kwh": 2e-4, "pred_service_s": 1.5,
        "pred_energy_kwh_p10": 1e-4, "pred_energy_kwh_p90": 3e-4, "propensity": 0.9,
        "energy_kwh": 2.2e-4, "service_s": 1.4, "wait_s": 0.1, "carbon_kg": 5e-5,
        "water_l": 1e-4, "cost_usd": -1e-6, "sla_met": "True",
        "measured_at": "2025-03-25T03:10:00",
    }
    rec.update(over)
    return rec


def test_required_fields_are_the_measurement_next_to_a_prediction() -> None:
    assert REQUIRED_FIELDS == ("job_id", "area", "query_type", "input_tokens", "dc",
                               "model_version", "pred_energy_kwh", "pred_service_s",
                               "energy_kwh", "service_s")
    assert FIELD_NAMES[0] == "job_id" and FIELD_NAMES[-1] == "measured_at"


def test_valid_record_is_typed() -> None:
    v = validate_outcomes([_record()])
    rec = v.record(0)
    assert rec["arrival_s"] == 3 * 3600.0 and rec["hour"] == 3
    assert rec["sla_met"] is True and rec["cost_usd"] == -1e-6
    assert rec["measured_at"].tzinfo is not None and v.measured_given == [True]


def test_missing_prediction_names_the_field_and_the_fix() -> None:
    rec = _record()
    for k in ("model_version", "pred_energy_kwh", "pred_service_s"):
        rec.pop(k)
    with pytest.raises(OutcomeValidationError) as err:
        validate_outcomes([rec])
    assert [i.column for i in err.value.issues] == ["model_version", "pred_energy_kwh",
                                                    "pred_service_s"]
    assert "--policy model --model M" in str(err.value)
    # optional fields may be absent
    slim = {k: _record()[k] for k in REQUIRED_FIELDS} | {"hour": 0}
    assert validate_outcomes([slim]).n_rows == 1


def test_labels_refuse_unknown_area_dc_and_hour_all_at_once() -> None:
    bad = _record(job_id="j2", area="atlantis", dc="mars", hour=99)
    with pytest.raises(OutcomeValidationError) as err:
        validate_outcomes([_record(), bad], labels=LABELS, lines=[2, 3])
    got = {(i.line, i.column) for i in err.value.issues}
    assert got == {(3, "area"), (3, "dc"), (3, "hour")}
    assert "scenario 'tiny'" in str(err.value) and "line 3" in str(err.value)
    # without labels the same rows are valid records
    assert validate_outcomes([_record(), bad]).n_rows == 2


def test_bad_values_are_located() -> None:
    with pytest.raises(OutcomeValidationError) as err:
        validate_outcomes([_record(propensity=0.0, sla_met="maybe",
                                   pred_energy_kwh_p10=5e-4)])
    cols = [i.column for i in err.value.issues]
    assert cols == ["pred_energy_kwh_p90", "propensity", "sla_met"]


def test_unknown_column_is_refused_unless_ignored() -> None:
    with pytest.raises(OutcomeValidationError, match="only the outcome fields"):
        validate_outcomes([_record(enrgy=1.0)])
    assert validate_outcomes([_record(enrgy=1.0)], extra="ignore").n_rows == 1


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_written_file_validates_as_it_is(tmp_path: Path, suffix: str) -> None:
    df = pd.DataFrame([_record(), _record(job_id="j2", features={"x": 1.0})])
    df["junk"] = 1  # not a field: dropped by the writer
    path = write_outcomes(df, tmp_path / f"o{suffix}")
    back = pd.read_parquet(path) if suffix == ".parquet" else (
        pd.read_json(path, lines=True, dtype=False) if suffix == ".jsonl" else
        pd.read_csv(path, dtype=str, keep_default_na=False))
    assert list(back.columns) == [c for c in FIELD_NAMES if c in df.columns]
    v = validate_outcomes(back)
    assert v.record(1)["features"] == '{"x":1.0}'
    assert v.record(0)["measured_at"] == v.record(1)["measured_at"]


def test_docs_table_is_the_schema() -> None:
    doc = (ROOT / "docs" / "outcomes.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- fields -->\n(.*?)\n<!-- /fields -->", doc, re.S)
    assert m is not None, "docs/outcomes.md lost its field table markers"
    assert m.group(1).strip() == field_table()
