"""Reading the raw data files, cached on (path, size, mtime)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from greensched.builder.config import _Node
from greensched.errors import GreenSchedError


def _stamp(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _cached_electricity_maps(stamp: tuple[str, int, int], basis: str) -> pd.Series:
    from greensched.data.electricity_maps import read_electricity_maps

    df = read_electricity_maps(stamp[0], basis)  # type: ignore[arg-type]
    series = df["carbon_kg_per_kwh"].copy()
    series.attrs = {"zone": df.attrs.get("zone_id", ""), "basis": basis}
    return series


@functools.lru_cache(maxsize=16)
def _cached_lets_wait_awhile(stamp: tuple[str, int, int], tz: str) -> pd.Series:
    from greensched.data.lets_wait_awhile import read_lets_wait_awhile

    df = read_lets_wait_awhile(stamp[0], tz=tz)
    series = df["carbon_kg_per_kwh"].copy()
    series.attrs = {"zone": df.attrs.get("region", ""), "basis": "source"}
    return series


@functools.lru_cache(maxsize=32)
def _cached_lmp(stamp: tuple[str, int, int]) -> pd.DataFrame:
    from greensched.data.lmp import read_lmp

    return read_lmp(stamp[0])


@functools.lru_cache(maxsize=8)
def _cached_rtt(
    directory: str, stamps: tuple[tuple[str, int, int], ...], stat: str
) -> pd.DataFrame:
    from greensched.data.network_delay import read_rtt_matrix

    return read_rtt_matrix(directory, stat=stat)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=16)
def _cached_trace(stamp: tuple[str, int, int], tz: str) -> pd.DataFrame:
    from greensched.data.azure_trace import read_azure_trace

    return read_azure_trace(stamp[0], tz=tz)


@functools.lru_cache(maxsize=4)
def _cached_energy(stamps: tuple[tuple[str, int, int], ...], target: str) -> pd.DataFrame:
    from greensched.data.energy_inference import read_energy_inference

    return read_energy_inference(target)


def clear_cache() -> None:
    """Forget every data file read so far (the next build reads them again)."""
    for fn in (
        _cached_electricity_maps,
        _cached_lets_wait_awhile,
        _cached_lmp,
        _cached_rtt,
        _cached_trace,
        _cached_energy,
    ):
        fn.cache_clear()


def _read_data(node: _Node, key: str, reader: Callable[[], Any]) -> Any:
    """Run an adapter; any failure becomes a ScenarioError at the config field naming the file."""
    try:
        return reader()
    except (GreenSchedError, OSError, ValueError, KeyError, IndexError) as exc:
        raise node.error(key, f"cannot read the data it names: {exc}", node.raw(key)) from exc


def _data_path(node: _Node, key: str, data_dir: Path, *, directory: bool = False) -> Path:
    rel = node.text(key)
    path = Path(rel)
    if not path.is_absolute():
        path = data_dir / path
    if directory and not path.is_dir():
        raise node.error(key, f"directory not found ({path})", rel)
    if not directory and not path.is_file():
        raise node.error(key, f"file not found ({path})", rel)
    return path
