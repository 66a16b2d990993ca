"""HiGHS and Gurobi agree on instances inside Gurobi's size-limited pip licence."""

from __future__ import annotations

import pytest

from greensched.errors import SolverUnavailableError
from greensched.scheduler import PlanConfig, plan
from greensched.scheduler.backends import GUROBI_SIZE_LIMIT
from greensched.scheduler.greenllm import build_model
from greensched.synth import synthesize

gurobipy = pytest.importorskip("gurobipy", reason="gurobipy is not installed (extra 'gurobi')")


def _small_instances(paper):  # type: ignore[no-untyped-def]
    yield (
        "paper-3dc-3area-4h",
        paper.subset(
            hours=[9, 10, 11, 12],
            dc=["us-central1", "us-east1", "us-west2"],
            area=["des-moines", "charlotte", "los-angeles"],
        ),
    )
    yield "synth-4-3-3-6", synthesize(4, 3, 3, 6, seed=11)
    yield "synth-2-5-2-10", synthesize(2, 5, 2, 10, seed=3)


CONFIGS = [
    PlanConfig(),
    PlanConfig(weights=(0.6, 0.2, 0.2)),
    PlanConfig.preset("m2"),
    PlanConfig(mode="lexicographic", order=("energy", "carbon", "delay")),
    PlanConfig(mode="lexicographic", order=("delay", "carbon", "energy"), epsilon=0.01),
]


def test_highs_and_gurobi_agree(paper) -> None:  # type: ignore[no-untyped-def]
    for name, scen in _small_instances(paper):
        m = build_model(scen).model
        assert m.nvars <= GUROBI_SIZE_LIMIT and m.ncons <= GUROBI_SIZE_LIMIT, name
        for cfg in CONFIGS:
            h = plan(scen, cfg)
            cfg_g = PlanConfig(**{**cfg.__dict__, "solver": "gurobi"})
            g = plan(scen, cfg_g)
            assert h.is_ok and g.is_ok, name
            # the optimised quantity of each phase is unique (green-llm-model.md, note 3)
            for ph, pg in zip(h.phases, g.phases, strict=True):
                assert ph["value_usd"] == pytest.approx(pg["value_usd"], rel=1e-6, abs=1e-9), (
                    name,
                    cfg,
                )


def test_gurobi_duals_match_highs(paper) -> None:  # type: ignore[no-untyped-def]
    scen = synthesize(3, 2, 2, 4, seed=5)
    scen.water_budget_l = 0.9 * plan(scen).water_l  # make the water row bind
    h = plan(scen)
    g = plan(scen, PlanConfig(solver="gurobi"))
    assert h.duals["water"].item() == pytest.approx(g.duals["water"].item(), rel=1e-5)
    assert h.duals["water"].item() < 0


def test_gurobi_licence_limit_is_explained(paper) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SolverUnavailableError, match="at most 2000 variables"):
        plan(paper, PlanConfig(solver="gurobi"))
