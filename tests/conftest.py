"""Shared fixtures: the reference data in ../shared/data (skipped with a clear reason if absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
PAPER = SHARED_DATA / "paper_scenario"


def require_shared_data(path: Path = SHARED_DATA) -> Path:
    """Return ``path`` or skip the test when the shared reference data is not beside the repo."""
    if not path.exists():
        pytest.skip(
            f"reference data {path} not found: these tests need ../shared/data beside the repo"
        )
    return path


@pytest.fixture(scope="session")
def paper_dir() -> Path:
    """The Green-LLM letter's scenario directory."""
    return require_shared_data(PAPER)


@pytest.fixture(scope="session")
def paper(paper_dir: Path):  # type: ignore[no-untyped-def]
    """The loaded paper scenario (do not modify: use .copy())."""
    from greensched.scenario import load_scenario

    return load_scenario(paper_dir)
