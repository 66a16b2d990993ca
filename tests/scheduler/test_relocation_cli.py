"""``greensched relocation`` end to end, and the shipped class files on real scenarios."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from greensched.scheduler.relocation import (
    PlacementModel,
    RelocationError,
    class_inputs,
    feasibility_masks,
    load_classes,
)
from tests.conftest import REPO, require_shared_data
from tests.scheduler.test_relocation import tiny

CLASSES = (
    "[relocation]\negress_default_usd_per_gb = 0.05\n"
    '[[class]]\nid = "c"\nquery_type = "q"\nlatency_budget_ms = 1020\nstate_gb = 1\n'
)


def _invoke(argv: list[str]) -> Result:
    """Run the command in-process (only the relocation command module is imported)."""
    import greensched.cli.relocation  # noqa: F401  (registers the command)
    from greensched.cli._app import app

    return CliRunner().invoke(app, argv)


def test_command_writes_tables(tmp_path: Path) -> None:
    scen_dir = tiny().save(tmp_path / "tiny")
    classes = tmp_path / "classes.toml"
    classes.write_text(CLASSES)
    out = tmp_path / "out"
    res = _invoke(
        ["relocation", str(scen_dir), "--classes", str(classes), "--out", str(out), "--no-plot"]
    )
    assert res.exit_code == 0, res.output
    assert "RID 100.0 % of demand" in res.output
    m = pd.read_csv(out / "metrics.csv").set_index("workload").loc["c"]
    assert m["saving_usd"] == pytest.approx(0.20, abs=1e-6)
    assert m["break_even_state_gb"] == pytest.approx(4.8, abs=1e-6)
    f = pd.read_csv(out / "frontier.csv")
    assert f["budget_ms"].round(6).tolist() == [1005.0, 1020.0, 1100.0]
    masks = pd.read_csv(out / "masks.csv")
    assert masks["feasible"].tolist() == [True, True, False]


def test_bad_classes_file_names_the_field(tmp_path: Path) -> None:
    # greensched.cli.main turns this GreenSchedError into one line on stderr and exit code 2.
    scen_dir = tiny().save(tmp_path / "tiny")
    classes = tmp_path / "classes.toml"
    classes.write_text(CLASSES.replace("state_gb", "state_size"))
    res = _invoke(
        ["relocation", str(scen_dir), "--classes", str(classes), "--out", str(tmp_path / "o")]
    )
    assert isinstance(res.exception, RelocationError)
    assert "classes.toml: class[0].state_size is not a known field" in str(res.exception)


def test_us_classes_on_the_embedded_default() -> None:
    from greensched.defaults import default_scenario

    scen = default_scenario()
    cfg = load_classes(REPO / "examples/relocation/classes-us.toml")
    inp = class_inputs(scen, cfg)
    masks = feasibility_masks(scen, cfg, inputs=inp)
    assert masks["feasible"].attrs["empty"] == []
    # code-assist (7600 ms) from Los Angeles: home us-west2 (2 ms) and Las Vegas (9.3 ms) only.
    la = masks["feasible"].sel(workload="code-assist", area="los-angeles")
    assert sorted(str(d) for d in la["dc"].values[la.values]) == ["us-west2", "us-west4"]
    # the accredited chat class may not leave its allow-list
    acc = masks["feasible"].sel(workload="chat-accredited", area="washington")
    allowed = {"us-central1", "us-east1", "us-east4", "us-east5"}
    assert {str(d) for d in acc["dc"].values[acc.values]} <= allowed
    model = PlacementModel(scen, cfg, inp)
    res = model.solve(masks["feasible"])
    assert res.is_ok and res.x is not None
    np.testing.assert_allclose(res.x.sum("dc").values, 1.0, atol=1e-7)
    assert float(res.x.where(~masks["feasible"], 0.0).max()) <= 1e-9


def test_global_example_builds_and_eu_residency_holds() -> None:
    require_shared_data()
    from greensched.builder import build_scenario

    scen = build_scenario(REPO / "examples/relocation/global.toml")
    assert len(scen.dcs) == 9 and len(scen.areas) == 9
    cfg = load_classes(REPO / "examples/relocation/classes-global.toml")
    masks = feasibility_masks(scen, cfg)
    eu = {"europe-west2", "europe-west3", "europe-west9"}
    for area in ("paris", "london", "frankfurt"):
        f = masks["feasible"].sel(workload="chat-eu-resident", area=area)
        assert {str(d) for d in f["dc"].values[f.values]} <= eu
    # batch-long (16 s) reaches every region from every city: a global layer.
    assert bool(masks["feasible"].sel(workload="batch-long").all())
    assert cfg.egress_usd_per_gb("us-east4", "europe-west3") == 0.05
    assert cfg.egress_usd_per_gb("asia-south1", "us-east4") == 0.08
