"""Let's-Wait-Awhile grid carbon-intensity series (France, Great Britain, Germany, 2020).

Source: dos-group/lets-wait-awhile, ``data/{fr,gb,ger}_ci.csv``; P. Wiesner, I. Behnke,
D. Scheinert, K. Gontarska, L. Thamsen, "Let's Wait Awhile: How Temporal Workload Shifting Can
Reduce Carbon Emissions in the Cloud", Middleware'21. Derived from ENTSO-E production data ×
IPCC emission factors (no licence file; the authors ask to cite the paper).

Columns: ``Time`` (naive timestamp, 15- or 30-minute steps; the source does not state its time
zone) and ``Carbon Intensity`` (gCO₂/kWh). :func:`read_lets_wait_awhile` averages the samples
per UTC hour and returns kg/kWh.

Time zone: the caller states the zone of the naive timestamps with ``tz``. The default
``"UTC"`` is an assumption. Observation supporting it: the published files have a regular grid
across the 2020 European DST changes (no missing 02:00–02:45 on 29 March, no repeated hour on
25 October), which a local-time series would not have. With ``tz="Europe/Berlin"`` (or
``"Europe/Paris"``, ``"Europe/London"``) those hours are nonexistent/ambiguous and the reader
raises unless ``ambiguous``/``nonexistent`` policies are given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from greensched.data._common import AmbiguousPolicy, NonexistentPolicy, read_raw
from greensched.data.gaps import fill_frame
from greensched.data.units import carbon_factor, split_unit

__all__ = ["read_lets_wait_awhile"]

_SOURCE = "dos-group/lets-wait-awhile (Wiesner et al., Middleware'21), from ENTSO-E"
TIME = "Time"


def read_lets_wait_awhile(
    path: str | Path,
    *,
    tz: str = "UTC",
    ambiguous: AmbiguousPolicy = "raise",
    nonexistent: NonexistentPolicy = "raise",
    unit: str = "gCO2/kWh",
    max_gap_hours: float = 3,
) -> pd.DataFrame:
    """Read a Let's-Wait-Awhile ``*_ci.csv`` file as hourly mean carbon intensity.

    Parameters
    ----------
    path
        CSV with ``Time`` and ``Carbon Intensity``.
    tz
        Time zone of the naive ``Time`` cells, e.g. ``"UTC"`` or ``"Europe/Berlin"``. Default
        ``"UTC"`` (an assumption, see the module docstring).
    ambiguous
        Local times that occur twice at the end of DST: ``"raise"`` (default), ``"infer"``
        (needs the repeated times in order), ``"earliest"`` (DST), ``"latest"`` (standard time)
        or ``"NaT"`` (drop the sample; listed in ``attrs["dropped_rows"]``).
    nonexistent
        Local times skipped at the start of DST: ``"raise"`` (default), ``"NaT"`` (drop),
        ``"shift_forward"`` or ``"shift_backward"``.
    unit
        Unit of the ``Carbon Intensity`` header when it carries none (the source's is
        gCO₂/kWh). A unit in the header (``Carbon Intensity (kgCO2/kWh)``) takes precedence.
    max_gap_hours
        Hours without a sample, in runs no longer than this, are filled by linear interpolation.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``time_utc`` (UTC hour start, ``datetime64[ns, UTC]``), columns
        ``carbon_kg_per_kwh`` (mean of the samples whose UTC time falls in the hour),
        ``n_samples`` and ``filled``. ``df.attrs``: ``gaps``, ``dropped_rows`` (line numbers),
        ``tz_assumed``, ``region`` (file stem without ``_ci``), ``unit`` and ``source``.

    Raises
    ------
    greensched.errors.DataFileError
        Missing column, unknown unit, unparsable time, ambiguous or nonexistent local time under
        the ``"raise"`` policy, duplicate instant, non-numeric or negative intensity.
    """
    raw = read_raw(path, required=(TIME,))
    column = next((c for c in raw.header if split_unit(c)[0].lower() == "carbon intensity"), None)
    if column is None:
        raise raw.header_error(
            f"missing required column (header has {raw.header})", column="Carbon Intensity"
        )
    text_unit = split_unit(column)[1] or unit
    try:
        factor = carbon_factor(text_unit)
    except ValueError as exc:
        raise raw.header_error(str(exc), column=column, value=text_unit) from exc

    times, keep = raw.times(TIME, tz=tz, ambiguous=ambiguous, nonexistent=nonexistent)
    dropped = raw.lines[~keep].tolist()
    if not keep.all():
        raw = raw.subset(keep)
    if times.has_duplicates:
        i = int(np.argmax(times.duplicated()))
        raise raw.error(
            "duplicate instant (after conversion to UTC)",
            row=i,
            column=TIME,
            value=raw.text(TIME).iloc[i],
        )
    values = raw.numeric(column, min_value=0.0) * factor
    samples = pd.Series(values, index=times.floor("h"))
    samples = samples[~np.isnan(values)]
    grouped = samples.groupby(level=0, sort=True)
    hourly = pd.DataFrame(
        {"carbon_kg_per_kwh": grouped.mean(), "n_samples": grouped.size().astype(np.int64)}
    )
    hourly.index = pd.DatetimeIndex(hourly.index, name="time_utc")
    out, gaps = fill_frame(hourly, [], primary="carbon_kg_per_kwh", max_gap_hours=max_gap_hours)
    out["n_samples"] = out["n_samples"].fillna(0).astype(np.int64)
    stem = Path(path).stem
    out.attrs.update(
        gaps=gaps,
        dropped_rows=dropped,
        tz_assumed=tz,
        region=stem[:-3] if stem.endswith("_ci") else stem,
        unit="kg CO2eq/kWh",
        source=_SOURCE,
    )
    return out
