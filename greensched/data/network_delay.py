"""Round-trip network delay (ping RTT) between data-center cities.

Source: hourly ping measurements between the 9 US data-center cities of the Green-LLM study,
JJmingcc/Green_LLM ``Dataset/Network_delay/<CityA>_<CityB>_delay.csv`` (no licence stated;
origin-attributed reference data). Each file has ``Average_delay, Minimum_delay,
Maximum_delay, Medium_dev`` in milliseconds ("Medium_dev" is most likely ping's mean
deviation, ``mdev``) and a naive ``Timestamp`` (local time of the recording host, zone not
stated).

:func:`read_network_delay` reads one pair as an hourly series in seconds;
:func:`read_rtt_stats` summarises every pair of a directory and :func:`read_rtt_matrix` turns
that into a symmetric city × city matrix in seconds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from greensched.data._common import AmbiguousPolicy, NonexistentPolicy, read_raw
from greensched.data.gaps import fill_frame
from greensched.data.units import duration_factor, split_unit

__all__ = ["read_network_delay", "read_rtt_stats", "read_rtt_matrix", "pair_from_filename"]

_SOURCE = "Hourly ping RTT between DC cities, JJmingcc/Green_LLM Dataset/Network_delay"
_FIELDS = {
    "average_delay": "rtt_avg_s",
    "minimum_delay": "rtt_min_s",
    "maximum_delay": "rtt_max_s",
    "medium_dev": "rtt_mdev_s",
}
_HEADERS = {
    "average_delay": "Average_delay",
    "minimum_delay": "Minimum_delay",
    "maximum_delay": "Maximum_delay",
    "medium_dev": "Medium_dev",
}
_NAME_RE = re.compile(r"^(?P<a>[^_]+)_(?P<b>[^_]+)_delay$", re.IGNORECASE)
Stat = Literal["mean", "median", "min", "max", "p95"]


def pair_from_filename(path: str | Path) -> tuple[str, str]:
    """Return ``(city_a, city_b)`` from a ``<CityA>_<CityB>_delay.csv`` file name.

    Raises
    ------
    ValueError
        If the name does not follow that pattern (city names must not contain ``_``).
    """
    m = _NAME_RE.match(Path(path).stem)
    if m is None:
        raise ValueError(f"{Path(path).name!r} is not named <CityA>_<CityB>_delay.csv")
    return m.group("a"), m.group("b")


def read_network_delay(
    path: str | Path,
    *,
    tz: str = "UTC",
    unit: str = "ms",
    ambiguous: AmbiguousPolicy = "raise",
    nonexistent: NonexistentPolicy = "raise",
    max_gap_hours: float = 3,
) -> pd.DataFrame:
    """Read one ping file as an hourly RTT series in seconds.

    Parameters
    ----------
    path
        CSV with ``Average_delay, Minimum_delay, Maximum_delay, Medium_dev, Timestamp``.
    tz
        Time zone of the naive ``Timestamp`` cells. The source does not state it; the default
        ``"UTC"`` is an *assumption*. Pass the recording host's zone (e.g.
        ``"America/Chicago"``) if known; it only affects the time index, not RTT statistics.
    unit
        Unit of delay headers that carry none (``"ms"`` in the source). A unit in a header, e.g.
        ``Average_delay (s)``, takes precedence; unknown units are an error.
    ambiguous, nonexistent
        Policies for local times repeated or skipped at a daylight-saving change, see
        :meth:`greensched.data._common.RawTable.times`. Default: error.
    max_gap_hours
        Missing hours in runs no longer than this are filled linearly (``filled``).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``time_utc`` (the UTC hour containing the measurement; several measurements in
        one hour are averaged), columns ``rtt_avg_s``, ``rtt_min_s``, ``rtt_max_s``,
        ``rtt_mdev_s`` (seconds), ``measured_at_utc`` (exact measurement time, NaT on restored
        hours), ``n_samples`` and ``filled``. ``df.attrs``: ``city_a``, ``city_b`` (from the
        file name, ``None`` if it does not follow ``<A>_<B>_delay.csv``), ``gaps``,
        ``dropped_rows``, ``tz_assumed``, ``unit`` and ``source``.

    Raises
    ------
    greensched.errors.DataFileError
        Missing column, unknown unit, unparsable or missing time, non-numeric or negative delay.
    """
    raw = read_raw(path, required=("Timestamp",))
    found: dict[str, tuple[str, float]] = {}
    for name in raw.header:
        base, header_unit = split_unit(name)
        key = base.lower()
        if key in _FIELDS:
            text = header_unit or unit
            try:
                found[key] = (name, duration_factor(text))
            except ValueError as exc:
                raise raw.header_error(str(exc), column=name, value=text) from exc
    for key in _FIELDS:
        if key not in found:
            raise raw.header_error(
                f"missing required column (header has {raw.header})",
                column=_HEADERS[key],
            )
    times, keep = raw.times("Timestamp", tz=tz, ambiguous=ambiguous, nonexistent=nonexistent)
    dropped = raw.lines[~keep].tolist()
    raw = raw.subset(keep) if not keep.all() else raw
    data = {_FIELDS[k]: raw.numeric(name, min_value=0.0) * f for k, (name, f) in found.items()}
    table = pd.DataFrame(data)
    table["measured_at_utc"] = times
    table["time_utc"] = times.floor("h")
    grouped = table.groupby("time_utc", sort=True)
    hourly = grouped[list(_FIELDS.values())].mean()
    hourly["measured_at_utc"] = grouped["measured_at_utc"].min()
    hourly["n_samples"] = grouped.size().astype(np.int64)
    value_cols = list(_FIELDS.values())
    out, gaps = fill_frame(hourly, value_cols[1:], primary="rtt_avg_s", max_gap_hours=max_gap_hours)
    out["n_samples"] = out["n_samples"].fillna(0).astype(np.int64)
    out.index.name = "time_utc"
    city_a: str | None
    city_b: str | None
    try:
        city_a, city_b = pair_from_filename(path)
    except ValueError:
        city_a = city_b = None
    out.attrs.update(
        city_a=city_a,
        city_b=city_b,
        gaps=gaps,
        dropped_rows=dropped,
        tz_assumed=tz,
        unit="s",
        source=_SOURCE,
    )
    return out


def read_rtt_stats(
    directory: str | Path,
    *,
    pattern: str = "*_delay.csv",
    unit: str = "ms",
) -> pd.DataFrame:
    """Summarise every ping file of a directory, one row per file (city pair).

    Parameters
    ----------
    directory
        Folder holding ``<CityA>_<CityB>_delay.csv`` files.
    pattern
        Glob selecting the files.
    unit
        Unit of delay headers without one (see :func:`read_network_delay`).

    Returns
    -------
    pandas.DataFrame
        Columns ``city_a``, ``city_b``, ``n_samples``, ``mean_s`` / ``median_s`` / ``p95_s`` /
        ``std_s`` (of the per-measurement ``Average_delay``), ``min_s`` (smallest
        ``Minimum_delay``), ``max_s`` (largest ``Maximum_delay``), ``mdev_mean_s``; seconds.
        Sorted by ``city_a, city_b``. Statistics are over the measurements as recorded (no gap
        filling).
    """
    files = sorted(Path(directory).glob(pattern))
    if not files:
        raise FileNotFoundError(f"no files matching {pattern!r} in {directory}")
    rows = []
    for f in files:
        a, b = pair_from_filename(f)
        df = read_network_delay(f, unit=unit, max_gap_hours=0)
        measured = df[df["n_samples"] > 0]
        avg = measured["rtt_avg_s"].to_numpy()
        rows.append(
            {
                "city_a": a,
                "city_b": b,
                "n_samples": int(measured["n_samples"].sum()),
                "mean_s": float(np.mean(avg)) if len(avg) else np.nan,
                "median_s": float(np.median(avg)) if len(avg) else np.nan,
                "p95_s": float(np.percentile(avg, 95)) if len(avg) else np.nan,
                "std_s": float(np.std(avg, ddof=1)) if len(avg) > 1 else np.nan,
                "min_s": float(measured["rtt_min_s"].min()),
                "max_s": float(measured["rtt_max_s"].max()),
                "mdev_mean_s": float(measured["rtt_mdev_s"].mean()),
            }
        )
    out = pd.DataFrame(rows).sort_values(["city_a", "city_b"], ignore_index=True)
    out.attrs.update(unit="s", source=_SOURCE)
    return out


def read_rtt_matrix(
    directory: str | Path,
    *,
    stat: Stat = "mean",
    pattern: str = "*_delay.csv",
    unit: str = "ms",
) -> pd.DataFrame:
    """Symmetric city × city round-trip-time matrix in seconds.

    Parameters
    ----------
    directory
        Folder holding ``<CityA>_<CityB>_delay.csv`` files (one per unordered pair is enough).
    stat
        Statistic of each pair: ``"mean"`` (default), ``"median"``, ``"p95"``, ``"min"`` or
        ``"max"`` (see :func:`read_rtt_stats`).
    pattern, unit
        As in :func:`read_rtt_stats`.

    Returns
    -------
    pandas.DataFrame
        Square table, index and columns = sorted city names, ``0.0`` on the diagonal, the pair
        statistic in seconds elsewhere (``M[a, b] == M[b, a]``). When both ``A_B`` and ``B_A``
        files exist, their statistics are averaged. Pairs without a file are NaN and listed in
        ``df.attrs["missing_pairs"]``.
    """
    column = {
        "mean": "mean_s",
        "median": "median_s",
        "p95": "p95_s",
        "min": "min_s",
        "max": "max_s",
    }.get(stat)
    if column is None:
        raise ValueError(f"stat must be mean, median, p95, min or max, got {stat!r}")
    stats = read_rtt_stats(directory, pattern=pattern, unit=unit)
    cities = sorted(set(stats["city_a"]) | set(stats["city_b"]))
    pos = {c: i for i, c in enumerate(cities)}
    k = len(cities)
    total = np.zeros((k, k))
    count = np.zeros((k, k))
    ia = stats["city_a"].map(pos).to_numpy(dtype=np.int64)
    ib = stats["city_b"].map(pos).to_numpy(dtype=np.int64)
    v = stats[column].to_numpy(dtype=np.float64)
    np.add.at(total, (ia, ib), v)
    np.add.at(total, (ib, ia), v)
    np.add.at(count, (ia, ib), 1)
    np.add.at(count, (ib, ia), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)
    np.fill_diagonal(matrix, 0.0)
    missing = [
        (cities[i], cities[j]) for i in range(k) for j in range(i + 1, k) if count[i, j] == 0
    ]
    out = pd.DataFrame(
        matrix, index=pd.Index(cities, name="city"), columns=pd.Index(cities, name="city")
    )
    out.attrs.update(stat=stat, missing_pairs=missing, unit="s", source=_SOURCE)
    return out
