"""Model registry: versions, atomic promotion, rollback, lineage, hot reload under load."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from greensched.feedback.registry import HotModel, ModelRegistry, RegistryError, wait_for_version


def make_model(path: Path, scale: float) -> Path:
    """A stand-in model directory."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.json").write_text(json.dumps({"scale": scale}))
    return path


def test_register_promote_rollback(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    assert reg.current() is None and reg.versions() == []
    v1 = reg.register(
        make_model(tmp_path / "m1", 1.0),
        kind="xgboost",
        metrics={"energy_mape": 0.07},
        data_window={"from": 0, "to": 100},
    )
    v2 = reg.register(make_model(tmp_path / "m2", 2.0), parent=v1, kind="xgboost")
    v3 = reg.register(make_model(tmp_path / "m3", 3.0), parent=v2)
    assert (v1, v2, v3) == ("v0001", "v0002", "v0003")
    assert reg.lineage(v3) == [v3, v2, v1]
    assert reg.info(v1).metrics == {"energy_mape": 0.07}
    with pytest.raises(RegistryError, match="no model version has been promoted"):
        reg.current_path()
    reg.promote(v1)
    reg.promote(v2)
    reg.promote(v3)
    assert reg.current() == v3
    assert reg.rollback() == v2
    assert reg.rollback() == v1
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        reg.rollback()
    events = [e["event"] for e in reg.history()]
    assert events == ["promote", "promote", "promote", "rollback", "rollback"]
    with pytest.raises(RegistryError, match="unknown model version 'v0042'"):
        reg.promote("v0042")


def test_register_missing_dir_leaves_registry_unchanged(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    with pytest.raises(RegistryError, match="does not exist"):
        reg.register(tmp_path / "nope")
    assert reg.versions() == []
    assert [p.name for p in (tmp_path / "reg" / "versions").iterdir()] == []


def _load(path: Path) -> float:
    return float(json.loads((path / "model.json").read_text())["scale"])


def test_hot_swap_under_load_never_fails(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    reg.promote(reg.register(make_model(tmp_path / "m1", 1.0)))
    hot = HotModel(reg, _load)
    hot.start(interval_s=0.005)
    errors: list[BaseException] = []
    seen: set[float] = set()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                obj, version = hot.get()
                assert obj in (1.0, 2.0, 3.0)
                seen.add(obj)
            except BaseException as exc:  # noqa: BLE001 - any failure counts
                errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for scale in (2.0, 3.0):
        v = reg.register(make_model(tmp_path / f"m{scale}", scale))
        reg.promote(v)
        assert wait_for_version(hot, v)
    stop.set()
    for t in threads:
        t.join()
    hot.stop()
    assert not errors
    assert seen == {1.0, 2.0, 3.0}


def test_broken_version_keeps_old_one_serving(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    reg.promote(reg.register(make_model(tmp_path / "m1", 1.0)))
    hot = HotModel(reg, _load)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text("{not json")
    reg.promote(reg.register(broken))
    assert hot.refresh() is False
    assert hot.get() == (1.0, "v0001")
    assert "v0002" in hot.failed
