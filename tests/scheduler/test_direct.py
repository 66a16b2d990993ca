"""The numpy-built letter LP (direct.py) equals the linopy build: same optimum, outputs, duals."""

from __future__ import annotations

import numpy as np
import pytest

from greensched.scheduler import PlanConfig, PlanSession, plan
from greensched.scheduler.decompose.hourly import direct_hour_lp, split_by_hour
from greensched.scheduler.direct import build_direct
from greensched.scheduler.direct_session import DirectPlanSession
from greensched.scheduler.greenllm import build_model
from greensched.synth import synthesize


def _scenario(budget_share: float | None = 0.95):  # type: ignore[no-untyped-def]
    scen = synthesize(4, 3, 2, 3, seed=5)
    scen.water_budget_l = None
    if budget_share is not None:
        free = PlanSession(scen).solve(PlanConfig())
        scen.water_budget_l = budget_share * free.water_l
    return scen


def test_matrix_matches_linopy_build() -> None:
    scen = _scenario()
    d = build_direct(scen)
    gm = build_model(scen)
    mat = gm.model.matrices
    assert mat.A is not None and mat.ub is not None
    assert d.A.shape == mat.A.shape and d.A.nnz == mat.A.nnz
    # same multiset of coefficients and of row bounds (the layouts differ only by permutation)
    assert np.allclose(np.sort(d.A.data), np.sort(np.asarray(mat.A.tocsc().data)))
    assert np.allclose(np.sort(d.ub), np.sort(np.asarray(mat.ub, dtype=float)))


@pytest.mark.parametrize("mode", ["weighted", "lexicographic"])
def test_direct_session_equals_linopy_session(mode: str) -> None:
    scen = _scenario()
    cfg = PlanConfig(mode=mode)
    ref = PlanSession(scen).solve(cfg)
    got = DirectPlanSession(scen).solve(cfg)
    assert ref.is_ok and got.is_ok
    for a, b in zip(ref.phases, got.phases, strict=True):
        assert b["value_usd"] == pytest.approx(a["value_usd"], rel=1e-9)
    for key, value in ref.objective.items():
        assert got.objective[key] == pytest.approx(value, rel=1e-9, abs=1e-9)
    assert got.water_l == pytest.approx(ref.water_l, rel=1e-9)
    assert scen.water_budget_l is not None
    assert got.water_l <= scen.water_budget_l * (1 + 1e-9)
    assert ref.dc_hourly is not None and got.dc_hourly is not None
    assert ref.delay_s is not None and got.delay_s is not None and ref.allocation is not None
    num = ref.dc_hourly.select_dtypes("number").to_numpy()
    assert np.allclose(got.dc_hourly.select_dtypes("number").to_numpy(), num, atol=1e-7)
    assert list(got.dc_hourly.columns) == list(ref.dc_hourly.columns)
    assert set(got.duals) == set(ref.duals)
    for name, da in ref.duals.items():
        assert got.duals[name].dims == da.dims, name
    if mode == "weighted":  # the budget binds: its price is the same in both builds
        assert float(got.duals["water"]) == pytest.approx(float(ref.duals["water"]), rel=1e-6)
        assert float(got.duals["water"]) < 0
        assert np.allclose(got.delay_s.values, ref.delay_s.values, atol=1e-7)
    assert got.delay_s.dims == ref.delay_s.dims
    assert got.allocation is not None and got.allocation.dims == ref.allocation.dims


def test_plan_uses_the_direct_build_for_letter_only() -> None:
    scen = _scenario(None)
    letter = plan(scen, PlanConfig())
    assert letter.is_ok and letter.delay_model == "letter"
    per_query = plan(scen, PlanConfig(delay_model="per_query"))
    assert per_query.is_ok and per_query.latency  # the linopy session's summary
    with pytest.raises(ValueError, match="letter"):
        DirectPlanSession(scen, delay=PlanConfig(delay_model="per_query").delay_options())


def test_hour_lp_equals_split_of_linopy_hour() -> None:
    scen = _scenario(None)
    got = direct_hour_lp(scen, 1)
    sub = scen.subset(hours=[1])
    ref = split_by_hour(build_model(sub), 0)[0]
    assert got.A.shape == ref.A.shape and got.A.nnz == ref.A.nnz
    # same functionals per share column: compare through the x column maps
    assert np.allclose(
        got.functionals[:, got.x_cols.ravel()], ref.functionals[:, ref.x_cols.ravel()]
    )
    assert np.allclose(got.functionals[:, got.grid_cols], ref.functionals[:, ref.grid_cols])
