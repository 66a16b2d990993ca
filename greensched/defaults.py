"""The scenario planned when no directory is given."""

from __future__ import annotations

from pathlib import Path

from greensched.scenario import Scenario, load_scenario

__all__ = ["default_scenario", "default_scenario_path"]


def default_scenario_path() -> str | None:
    """Path of the embedded real-data default scenario inside the package, if shipped."""
    # A plain path: `greensched` is a namespace package, which importlib.resources cannot read.
    root = Path(__file__).resolve().parent / "default_scenario"
    if root.is_dir() and (root / "scenario.toml").is_file():
        return str(root)
    return None


def default_scenario() -> Scenario:
    """The embedded default scenario (real-data day when shipped, else a small synthetic one)."""
    path = default_scenario_path()
    if path is not None:
        return load_scenario(path)
    from greensched.synth import synthesize

    return synthesize(dcs=4, areas=3, types=3, hours=24, seed=0, name="default-synthetic")
