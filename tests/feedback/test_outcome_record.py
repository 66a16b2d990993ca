"""The twin's outcomes are the store's records: simulate -> file -> ingest, as they are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sqlalchemy", reason="the outcome store needs sqlalchemy")

import sqlalchemy as sa

from greensched.eval.simulate import OUTCOME_COLUMNS, run_simulation
from greensched.eval.traces import jobs_from_demand
from greensched.feedback.store import SCHEMA_VERSION, OutcomeStore, OutcomeValidationError
from greensched.outcomes import FIELD_NAMES, OutcomeLabels
from greensched.synth import synthesize


@pytest.fixture(scope="module")
def scen():  # type: ignore[no-untyped-def]
    s = synthesize(dcs=3, areas=2, types=2, hours=4, seed=3)
    s.start = "2025-03-25T00:00:00Z"
    return s


@pytest.fixture(scope="module")
def jobs(scen) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    return jobs_from_demand(scen, 200, seed=2)


def _csv(sim_outcomes: pd.DataFrame, path: Path) -> Path:
    sim_outcomes.to_csv(path, index=False, lineterminator="\n")
    return path


def test_outcome_columns_are_record_fields_in_order() -> None:
    assert list(OUTCOME_COLUMNS) == [c for c in FIELD_NAMES if c in OUTCOME_COLUMNS]


def test_greedy_outcomes_ingest_as_they_are(scen, jobs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sim = run_simulation(scen, jobs, "greedy", seed=1)
    out = sim.outcomes
    assert (out["model_version"] == "twin-expected").all()
    assert (out["propensity"] == 1.0).all() and (out["pred_energy_kwh"] > 0).all()
    f = _csv(out, tmp_path / "outcomes.csv")
    with OutcomeStore.open(tmp_path / "o.sqlite") as store:
        rep = store.ingest_file(f, labels=OutcomeLabels.from_scenario(scen))
        back = store.query()
    assert rep.inserted == len(jobs)
    back = back.set_index("job_id").loc[out["job_id"]]
    np.testing.assert_allclose(back["energy_kwh"], out["energy_kwh"], rtol=1e-12)
    np.testing.assert_allclose(back["carbon_kg"], out["carbon_kg"], rtol=1e-12)
    assert back["sla_met"].astype(bool).tolist() == out["sla_met"].tolist()
    want = pd.Timestamp("2025-03-25T00:00:00Z") + pd.to_timedelta(
        out["arrival_s"] + out["service_s"], unit="s")
    got = pd.to_datetime(back["measured_at"], utc=True).to_numpy()
    assert np.abs((got - want.to_numpy()) / np.timedelta64(1, "ms")).max() <= 1.0


def test_model_outcomes_carry_the_models_prediction(scen, jobs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("xgboost")
    from greensched.eval.simulate import build_dataset
    from greensched.predictor.xgb import XGBoostPredictor

    data = build_dataset(scen, jobs_from_demand(scen, 300, seed=9), seed=9)
    model = XGBoostPredictor(seed=0, n_jobs=1, n_estimators=20, quantile_n_estimators=5,
                             action_n_estimators=5).fit(data)
    sim = run_simulation(scen, jobs, "model", seed=1, predictor=model, model_version="v0001")
    out = sim.outcomes
    pred = model.predict_jobs(jobs, scen)
    dc = pd.Index(scen.dcs).get_indexer(out["dc"].astype(str))
    np.testing.assert_allclose(out["pred_energy_kwh"],
                               pred["energy_kwh"].values[np.arange(len(jobs)), dc])
    assert (out["pred_energy_kwh_p10"] <= out["pred_energy_kwh_p90"]).all()
    with OutcomeStore.open(tmp_path / "o.sqlite") as store:
        assert store.ingest_file(_csv(out, tmp_path / "m.csv")).inserted == len(jobs)
        assert set(store.query()["model_version"]) == {"v0001"}


def test_outcomes_without_predictions_are_refused(scen, jobs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = run_simulation(scen, jobs, "random", seed=1).outcomes
    assert np.allclose(out["propensity"], 1 / 3)
    with OutcomeStore.open(tmp_path / "o.sqlite") as store:
        with pytest.raises(OutcomeValidationError, match="column 'model_version'.*required"):
            store.ingest_file(_csv(out, tmp_path / "r.csv"))
        assert store.count() == 0


def test_labels_refuse_rows_outside_the_scenario(scen, jobs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = run_simulation(scen, jobs, "greedy", seed=1).outcomes.astype({"dc": object})
    out.loc[5, "dc"] = "mars"
    out.loc[6, ["hour", "arrival_s"]] = [99, 99 * 3600.0]
    with OutcomeStore.open(tmp_path / "o.sqlite") as store:
        with pytest.raises(OutcomeValidationError) as err:
            store.ingest_file(_csv(out, tmp_path / "b.csv"),
                              labels=OutcomeLabels.from_scenario(scen))
        assert store.count() == 0
        assert store.ingest_file(tmp_path / "b.csv").inserted == len(jobs)  # no scenario given
    assert {(i.line, i.column) for i in err.value.issues} == {(7, "dc"), (8, "hour")}


def test_version1_store_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    eng = sa.create_engine(f"sqlite:///{path}")
    with eng.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE outcomes (job_id VARCHAR PRIMARY KEY, arrival_s FLOAT, hour BIGINT, "
            "area VARCHAR, query_type VARCHAR, input_tokens BIGINT, output_tokens BIGINT, "
            "sla_s FLOAT, prompt TEXT, features_json TEXT, dc VARCHAR, model_version VARCHAR, "
            "pred_energy_kwh FLOAT, pred_service_s FLOAT, pred_energy_kwh_p10 FLOAT, "
            "pred_energy_kwh_p90 FLOAT, pred_service_s_p10 FLOAT, pred_service_s_p90 FLOAT, "
            "propensity FLOAT, energy_kwh FLOAT, service_s FLOAT, measured_at DATETIME, "
            "created_at DATETIME, ingest_id VARCHAR)")
        conn.exec_driver_sql("CREATE TABLE greensched_meta (key VARCHAR PRIMARY KEY, "
                             "value VARCHAR)")
        conn.exec_driver_sql("INSERT INTO greensched_meta VALUES ('schema_version', '1')")
        conn.exec_driver_sql(
            "INSERT INTO outcomes VALUES ('old1', 0, 0, 'a', 'q', 10, 5, 30, NULL, NULL, 'd', "
            "'v1', 1e-4, 1.0, NULL, NULL, NULL, NULL, 1.0, 1e-4, 1.0, '2025-01-01 00:00:00', "
            "'2025-01-01 00:00:00', 'x')")
    eng.dispose()
    with OutcomeStore.open(path) as store:
        df = store.query()
        assert df["job_id"].tolist() == ["old1"] and df["carbon_kg"].isna().all()
        store.ingest([{"job_id": "new1", "hour": 1, "area": "a", "query_type": "q",
                       "input_tokens": 1, "dc": "d", "model_version": "v1",
                       "pred_energy_kwh": 1e-4, "pred_service_s": 1.0, "energy_kwh": 1e-4,
                       "service_s": 1.0, "carbon_kg": 2e-5, "sla_met": True}])
        assert store.count() == 2
    eng = sa.create_engine(f"sqlite:///{path}")
    with eng.connect() as conn:
        v = conn.exec_driver_sql("SELECT value FROM greensched_meta").scalar_one()
    eng.dispose()
    assert v == str(SCHEMA_VERSION) == "2"


def test_service_outcome_body_is_the_record() -> None:
    pytest.importorskip("fastapi")
    from greensched.service.schemas import request_models

    scen = synthesize(dcs=2, areas=1, types=1, hours=2, seed=0)
    body = request_models(scen, 10)["Outcome"]
    assert set(body.model_fields) == set(FIELD_NAMES)
