"""Fitted energy / runtime model (greensched.eval.energy_model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greensched.data.energy_inference import read_energy_inference
from greensched.data.mlenergy import read_mlenergy_configs
from greensched.errors import GreenSchedError
from greensched.eval.energy_holdout import holdout_predictions, summarize_errors
from greensched.eval.energy_model import (
    DEFAULT_MLENERGY_FACTORS,
    FORMS,
    EnergyModel,
    EnergyModelNotFittedError,
    design_matrix,
    mlenergy_scale_factors,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
COEFFICIENTS = (Path(__file__).resolve().parents[2] / "eval" / "greensched" / "eval"
                / "energy_coefficients.json")

# Held-out MAPE (%) of the context form per (model, system), random 20 % split, seed 0, as
# measured when the form was chosen (reports/twin_energy_fit.md), and the bound asserted here
# (measured, rounded up, + 2 points).
MEASURED_RANDOM_MAPE = {
    # (model, system): (energy, runtime)
    ("Falcon (7B)", "Palmetto Intel+A100"): (6.0, 5.5),
    ("Falcon (7B)", "Palmetto Intel+V100"): (2.5, 2.6),
    ("Falcon (7B)", "Swing AMD+A100"): (3.6, 2.1),
    ("Llama-2 (7B)", "M1-Pro"): (4.4, 5.6),
    ("Llama-2 (7B)", "Palmetto Intel+A100"): (4.4, 4.1),
    ("Llama-2 (7B)", "Palmetto Intel+V100"): (3.5, 2.6),
    ("Llama-2 (7B)", "Swing AMD+A100"): (3.9, 3.9),
    ("Mistral (7B)", "M1-Pro"): (3.4, 4.9),
    ("Mistral (7B)", "Palmetto Intel+A100"): (3.1, 2.9),
    ("Mistral (7B)", "Palmetto Intel+V100"): (2.7, 3.8),
    ("Mistral (7B)", "Swing AMD+A100"): (3.8, 3.2),
}
BOUND_RANDOM = {
    k: (np.ceil(e) + 2.0, np.ceil(t) + 2.0) for k, (e, t) in MEASURED_RANDOM_MAPE.items()
}
# Leave-one-system-out between the two A100 hosts (measured: energy 13-23 %, runtime 7-12 %).
BOUND_LOSO_A100 = (28.0, 16.0)


def _skip_without_data() -> None:
    if not (DATA / "energy_inference").is_dir() or not (DATA / "mlenergy_leaderboard").is_dir():
        pytest.skip(f"reference data {DATA} not found: needs ../shared/data beside the repository")


@pytest.fixture(scope="module")
def meas() -> pd.DataFrame:
    _skip_without_data()
    return read_energy_inference(DATA / "energy_inference")


@pytest.fixture(scope="module")
def cfg() -> pd.DataFrame:
    _skip_without_data()
    return read_mlenergy_configs(DATA / "mlenergy_leaderboard" / "mlenergy_llm_configs_extract.csv")


@pytest.fixture(scope="module")
def model(meas: pd.DataFrame, cfg: pd.DataFrame) -> EnergyModel:
    return EnergyModel().fit(meas, cfg)


# ---------------------------------------------------------------------------- synthetic


def _synthetic(coef_e: list[float], coef_t: list[float], noise: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    tin = np.repeat([8, 32, 128, 512, 2048, 33, 33, 33, 33, 33], 6)
    tout = np.repeat([32, 32, 32, 32, 32, 8, 64, 256, 1024, 4096], 6)
    x = design_matrix(tin, tout, "context")
    e = x @ np.asarray(coef_e) * (1 + noise * rng.standard_normal(len(tin)))
    t = x @ np.asarray(coef_t) * (1 + noise * rng.standard_normal(len(tin)))
    return pd.DataFrame(
        {
            "model": "Toy (7B)",
            "system": "Lab A100",
            "model_params_b": 7.0,
            "input_tokens": tin,
            "output_tokens": tout,
            "energy_j": e,
            "runtime_s": t,
            "cpu_energy_j": 0.0,
            "iteration": np.tile(np.arange(1, 7), 10),
            "kind": "inference",
        }
    )


def test_context_form_recovers_synthetic_coefficients() -> None:
    ce, ct = [5.0, 3.5, 0.02, 1e-5], [0.01, 0.025, 4e-5, 5e-8]
    m = EnergyModel().fit(_synthetic(ce, ct))
    (curve,) = m.curves_
    np.testing.assert_allclose(curve["energy_coef"], ce, rtol=1e-6)
    np.testing.assert_allclose(curve["runtime_coef"], ct, rtol=1e-6)
    assert curve["gpu"] == "A100"


def test_design_matrix_sums_match_loops() -> None:
    tin, tout = np.array([0, 5, 38]), np.array([1, 7, 300])
    x = design_matrix(tin, tout, "context")
    for row, a, n in zip(x, tin, tout, strict=True):
        ctx = a + np.arange(n, dtype=float)
        np.testing.assert_allclose(row, [1.0, n, ctx.sum(), (ctx**2).sum()])
    assert design_matrix(tin, tout, "wilkins").shape == (3, len(FORMS["wilkins"]))
    with pytest.raises(GreenSchedError, match="unknown form"):
        design_matrix(tin, tout, "cubic")


def test_predict_before_fit_raises() -> None:
    m = EnergyModel()
    with pytest.raises(EnergyModelNotFittedError, match="not fitted"):
        m.predict_energy_kwh(10, 10)
    with pytest.raises(EnergyModelNotFittedError):
        m.predict_runtime_s([1, 2], [3, 4])
    with pytest.raises(EnergyModelNotFittedError):
        m.to_json()


def test_bad_inputs_raise() -> None:
    m = EnergyModel().fit(_synthetic([5.0, 3.5, 0.02, 1e-5], [0.01, 0.025, 4e-5, 5e-8]))
    with pytest.raises(GreenSchedError, match="output_tokens"):
        m.predict_energy_kwh(10, -1)
    with pytest.raises(GreenSchedError, match="input_tokens"):
        m.predict_energy_kwh(np.nan, 1)
    with pytest.raises(GreenSchedError, match="batch_size"):
        m.predict_energy_kwh(10, 10, batch_size=0)
    with pytest.raises(GreenSchedError, match="unknown gpu"):
        m.predict_energy_kwh(10, 10, gpu="TPUv5")
    with pytest.raises(GreenSchedError, match="unknown model"):
        m.predict_energy_kwh(10, 10, model="mystery")
    with pytest.raises(GreenSchedError, match="unknown form"):
        EnergyModel(form="cubic").fit(_synthetic([1, 1, 0, 0], [1, 1, 0, 0]))


# ---------------------------------------------------------------------------- fitted on data


def test_random_split_within_measured_bounds(meas: pd.DataFrame, cfg: pd.DataFrame) -> None:
    pred = holdout_predictions(
        meas, split="random", seed=0, forms=("wilkins", "context"), mlenergy=cfg
    )
    s = summarize_errors(pred).set_index(["form", "target", "model", "system"])["mape_pct"]
    assert set(MEASURED_RANDOM_MAPE) == {(m, sy) for _, _, m, sy in s.index}
    for (mdl, system), (b_e, b_t) in BOUND_RANDOM.items():
        e = s[("context", "energy_j", mdl, system)]
        t = s[("context", "runtime_s", mdl, system)]
        assert e <= b_e, f"energy MAPE {e:.1f} % > {b_e} % for {mdl} on {system}"
        assert t <= b_t, f"runtime MAPE {t:.1f} % > {b_t} % for {mdl} on {system}"
        # the linear form of Wilkins et al. is far worse on every pair
        assert s[("wilkins", "energy_j", mdl, system)] > max(15.0, 3 * e)


def test_random_split_other_seed(meas: pd.DataFrame, cfg: pd.DataFrame) -> None:
    pred = holdout_predictions(meas, split="random", seed=3, forms=("context",), mlenergy=cfg)
    s = summarize_errors(pred)
    assert s["mape_pct"].max() <= 10.0  # measured: 7.3 % (energy), 6.3 % (runtime)


def test_leave_one_system_out_between_a100_hosts(meas: pd.DataFrame, cfg: pd.DataFrame) -> None:
    sub = meas.loc[meas["gpu"] == "A100"]
    pred = holdout_predictions(sub, split="loso", forms=("context",), mlenergy=cfg)
    s = summarize_errors(pred).set_index(["target", "model", "system"])["mape_pct"]
    assert len(s) == 12
    assert s.loc["energy_j"].max() <= BOUND_LOSO_A100[0]
    assert s.loc["runtime_s"].max() <= BOUND_LOSO_A100[1]


def test_reproduces_readme_medians(model: EnergyModel) -> None:
    # Llama-2 7B, Palmetto A100, 38 input tokens: 5.2 kJ at 512, 16.9 kJ at 1024, 61 kJ at 2048
    e = model.predict_energy_kwh(
        38, [512, 1024, 2048], model="Llama-2 (7B)", gpu="Palmetto Intel+A100"
    )
    np.testing.assert_allclose(e * 3.6e6, [5.2e3, 16.9e3, 61e3], rtol=0.05)


@pytest.mark.parametrize("gpu", [None, "A100", "V100", "H100", "B200", "M1-Pro", "Swing AMD+A100"])
@pytest.mark.parametrize("mdl", [None, "Mistral (7B)", 70.0, "Llama-2 (13B)"])
def test_positive_and_monotone(model: EnergyModel, gpu: str | None, mdl: object) -> None:
    tout = np.arange(0, 8193, 7)
    for batch in (1, 8, 256):
        for tin in (0, 40, 3000):
            e = model.predict_energy_kwh(tin, tout, model=mdl, gpu=gpu, batch_size=batch)
            t = model.predict_runtime_s(tin, tout, model=mdl, gpu=gpu, batch_size=batch)
            assert np.all(e[1:] > 0) and np.all(t[1:] > 0)
            assert np.all(np.diff(e) > 0), "energy must increase with output tokens"
            assert np.all(np.diff(t) > 0), "runtime must increase with output tokens"
    tin = np.arange(0, 8193, 64)
    assert np.all(np.diff(model.predict_energy_kwh(tin, 100, model=mdl, gpu=gpu)) >= 0)


def test_scaling_directions(model: EnergyModel) -> None:
    e = lambda **kw: float(model.predict_energy_kwh(500, 300, **kw))  # noqa: E731
    r = lambda **kw: float(model.predict_runtime_s(500, 300, **kw))  # noqa: E731
    assert e(model=70.0) > 5 * e(model=7.0)
    assert e(gpu="V100") > e(gpu="A100") > e(gpu="H100") > e(gpu="B200")
    assert r(gpu="B200") < r(gpu="H100") < r(gpu="A100") < r(gpu="V100")
    assert e(batch_size=64) < e(batch_size=8) < e(batch_size=1)
    assert r(batch_size=64) > r(batch_size=8) > r(batch_size=1)
    # a fitted system is used as is; its GPU type averages the systems with that GPU
    a = e(gpu="Palmetto Intel+A100")
    b = e(gpu="Swing AMD+A100")
    assert min(a, b) <= e(gpu="A100") <= max(a, b)
    table = model.scale_table().set_index("gpu")
    assert table.loc["A100", "energy_factor"] == 1.0
    assert table.loc["V100", "source"].startswith("fitted")
    assert table.loc["H100", "source"].startswith("datasheet")
    assert "ML.ENERGY" in table.loc["B200", "source"]


def test_vectorised_categories_match_scalar_calls(model: EnergyModel) -> None:
    rng = np.random.default_rng(0)
    n = 500
    tin = rng.integers(0, 4000, n)
    tout = rng.integers(1, 2000, n)
    gpus = rng.choice(np.array(["A100", "H100", "V100", "Swing AMD+A100"], dtype=object), n)
    models = rng.choice(np.array(["Llama-2 (7B)", "Falcon (7B)"], dtype=object), n)
    batch = rng.choice([1, 4, 32, 100], n)
    vec = model.predict_energy_kwh(tin, tout, model=models, gpu=gpus, batch_size=batch)
    vec_t = model.predict_runtime_s(tin, tout, model=models, gpu=gpus, batch_size=batch)
    for i in range(0, n, 37):
        one = model.predict_energy_kwh(
            tin[i], tout[i], model=models[i], gpu=gpus[i], batch_size=batch[i]
        )
        assert vec[i] == pytest.approx(float(one), rel=1e-12)
        one_t = model.predict_runtime_s(
            tin[i], tout[i], model=models[i], gpu=gpus[i], batch_size=batch[i]
        )
        assert vec_t[i] == pytest.approx(float(one_t), rel=1e-12)


def test_vectorised_predictions_cover_a_million_jobs(model: EnergyModel) -> None:
    # Throughput (target >= 1e6 predictions/s) is measured by bench/bench_twin.py, not here.
    rng = np.random.default_rng(1)
    n = 1_000_000
    tin = rng.integers(1, 8000, n)
    tout = rng.integers(1, 2000, n)
    out = model.predict_energy_kwh(tin, tout, model="Llama-2 (7B)", gpu="H100", batch_size=8)
    assert out.shape == (n,) and np.all(out > 0)


def test_json_round_trip_identical(model: EnergyModel, tmp_path: Path) -> None:
    text = model.to_json()
    again = EnergyModel.from_json(text)
    assert again.to_json() == text
    path = tmp_path / "coef.json"
    model.to_json(path)
    from_file = EnergyModel.from_json(path)
    assert from_file.to_json() == text
    tin, tout = np.array([0, 38, 2000]), np.array([1, 512, 4096])
    for m in (again, from_file):
        for kw in ({}, {"gpu": "B200", "batch_size": 16}, {"model": 70.0, "gpu": "V100"}):
            np.testing.assert_array_equal(
                m.predict_energy_kwh(tin, tout, **kw), model.predict_energy_kwh(tin, tout, **kw)
            )
            np.testing.assert_array_equal(
                m.predict_runtime_s(tin, tout, **kw), model.predict_runtime_s(tin, tout, **kw)
            )
    state = json.loads(text)
    assert "2407.04014" in state["citation"]
    with pytest.raises(GreenSchedError, match="schema"):
        EnergyModel.from_dict({**state, "schema": "other"})


def test_shipped_coefficients_match_a_refit(model: EnergyModel) -> None:
    shipped = EnergyModel.load_default()
    assert json.loads(COEFFICIENTS.read_text())["schema"] == shipped.to_dict()["schema"]
    assert shipped.form == "context"
    assert [(c["model"], c["system"]) for c in shipped.curves_] == [
        (c["model"], c["system"]) for c in model.curves_
    ]
    for a, b in zip(shipped.curves_, model.curves_, strict=True):
        np.testing.assert_allclose(a["energy_coef"], b["energy_coef"], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(a["runtime_coef"], b["runtime_coef"], rtol=1e-6, atol=1e-12)


def test_default_mlenergy_factors_match_recomputation(cfg: pd.DataFrame) -> None:
    got = mlenergy_scale_factors(cfg)
    for key, val in DEFAULT_MLENERGY_FACTORS.items():
        if isinstance(val, list):
            np.testing.assert_allclose(got[key], val, rtol=1e-3)
        else:
            assert got[key] == pytest.approx(val, rel=1e-3), key
    # the batch factors are monotone: energy per token falls, latency rises
    assert np.all(np.diff(got["batch_energy_factor"]) <= 0)
    assert np.all(np.diff(got["batch_itl_factor"]) >= 0)


def test_fit_without_mlenergy_uses_defaults(meas: pd.DataFrame, model: EnergyModel) -> None:
    m = EnergyModel().fit(meas)
    assert m.size_energy_exponent_ == DEFAULT_MLENERGY_FACTORS["size_energy_exponent"]
    assert m.size_energy_exponent_ == pytest.approx(model.size_energy_exponent_, rel=1e-3)


def test_warmup_rows_excluded_by_default(meas: pd.DataFrame) -> None:
    with_warm = EnergyModel(drop_warmup=False).fit(meas)
    without = EnergyModel().fit(meas)
    assert with_warm.n_rows_ > without.n_rows_
    assert (meas["iteration"] > 0).sum() >= without.n_rows_
