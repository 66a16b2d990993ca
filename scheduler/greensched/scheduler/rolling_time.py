"""Time stamps of a rolling plan: UTC slot times and each data center's local time zone.

A scenario's hour slot ``t`` is the UTC hour ``start + t h`` (``scenario.toml`` ``start``).
The exchange format stores no time zone for a data center, so :func:`resolve_dc_time_zones`
finds one, first match wins (the ``source`` recorded with every zone):

``option``
    an explicit mapping (``greensched plan --dc-tz us-east4=America/New_York``, or one zone for
    every DC);
``config``
    the DC's ``tz`` (IANA name, daylight-saving time followed) or ``utc_offset`` (fixed hours)
    in the scenario's build configuration (``docs/scenario-build.md``);
``config-area``
    the ``tz`` / ``utc_offset`` of the configuration's user area in the DC's ``city``, else of
    the area nearest to the DC (great-circle distance);
``longitude``
    no configuration: the fixed solar offset round(longitude / 15) hours (``UTC-05:00``), which
    ignores daylight-saving time and political borders; an approximation, named as such.

The build configuration is the file passed as ``--dc-tz CONFIG.toml``, or the one named by the
scenario's ``build_config`` when it lies beside the scenario directory, in its parent, or in an
``examples/`` folder next to that parent (the embedded default scenario finds
``examples/letter-regions.toml`` of a source checkout this way).
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.errors import GreenSchedError
from greensched.scenario import Scenario

__all__ = [
    "DCZone",
    "local_time_strings",
    "resolve_dc_time_zones",
    "slot_times_utc",
    "utc_strings",
]

#: Where a DC's zone came from, in the order they are tried.
ZONE_SOURCES = ("option", "config", "config-area", "longitude")


@dataclass(frozen=True)
class DCZone:
    """A data center's time zone: an IANA name or a fixed offset ``UTC±HH:MM``, and its source."""

    tz: str
    source: str

    def tzinfo(self) -> dt.tzinfo:
        """The zone as a :class:`datetime.tzinfo` (``zoneinfo`` or a fixed offset)."""
        return _tzinfo(self.tz, "tz")


def _fixed_name(offset_h: float) -> str:
    sign = "+" if offset_h >= 0 else "-"
    minutes = round(abs(offset_h) * 60)
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _tzinfo(name: str, where: str) -> dt.tzinfo:
    if name.startswith("UTC") and len(name) == 9 and name[3] in "+-":
        try:
            hours, minutes = int(name[4:6]), int(name[7:9])
        except ValueError:
            hours = minutes = -1
        if 0 <= hours <= 14 and 0 <= minutes < 60 and name[6] == ":":
            sign = 1 if name[3] == "+" else -1
            return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise GreenSchedError(
            f"{where}: {name!r} is not a known time zone; expected an IANA name "
            "(e.g. 'America/New_York') or a fixed offset 'UTC-05:00'"
        ) from None


def slot_times_utc(scen: Scenario, hours: int | None = None) -> pd.DatetimeIndex | None:
    """UTC start time of every hour slot (``None`` when the scenario has no ``start``)."""
    if scen.start is None:
        return None
    t0 = pd.Timestamp(scen.start)
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    return pd.date_range(t0, periods=scen.hours if hours is None else hours, freq="h")


def utc_strings(times: pd.DatetimeIndex) -> np.ndarray:
    """ISO-8601 UTC strings ``2025-03-25T05:00:00Z``."""
    return np.asarray(times.strftime("%Y-%m-%dT%H:%M:%SZ"), dtype=object)


def local_time_strings(times: pd.DatetimeIndex, zone: DCZone) -> np.ndarray:
    """ISO-8601 local times with their offset, ``2025-03-25T01:00:00-04:00``."""
    local = times.tz_convert(zone.tzinfo())
    text = local.strftime("%Y-%m-%dT%H:%M:%S%z")
    # %z gives -0400; ISO 8601 extended form is -04:00
    return np.asarray([s[:-2] + ":" + s[-2:] for s in text], dtype=object)


def _parse_option(spec: str, dcs: list[str]) -> dict[str, str]:
    text = spec.strip()
    if not text:
        raise GreenSchedError("--dc-tz is empty; expected DC=ZONE[,DC=ZONE...], ZONE or a .toml")
    if "=" not in text:
        _tzinfo(text, "--dc-tz")
        return {d: text for d in dcs}
    out: dict[str, str] = {}
    for part in text.split(","):
        dc, sep, zone = part.partition("=")
        dc, zone = dc.strip(), zone.strip()
        if not sep or not dc or not zone:
            raise GreenSchedError(f"--dc-tz entry {part!r}: expected DC=ZONE")
        if dc not in dcs:
            raise GreenSchedError(
                f"--dc-tz names dc {dc!r}, which the scenario does not have; expected one of "
                f"{', '.join(dcs)}"
            )
        _tzinfo(zone, f"--dc-tz {dc}")
        out[dc] = zone
    return out


def _config_candidates(scen: Scenario) -> list[Path]:
    name = scen.extra_meta.get("build_config")
    if not isinstance(name, str) or scen.source is None:
        return []
    root = Path(scen.source)
    return [root / name, root.parent / name, root.parent.parent / "examples" / name]


def _zone_of(node: Mapping[str, Any], defaults: Mapping[str, Any]) -> str | None:
    for src in (node, defaults):
        if "tz" in src:
            return str(src["tz"])
        if "utc_offset" in src:
            return _fixed_name(float(src["utc_offset"]))
    return None


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(a)))


def _zones_from_config(path: Path, dcs: list[str]) -> dict[str, DCZone]:
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise GreenSchedError(
            f"--dc-tz {path}: cannot read the build configuration ({exc})"
        ) from exc
    dc_defaults = doc.get("datacenter_defaults", {})
    area_defaults = doc.get("area_defaults", {})
    areas = [a for a in doc.get("area", []) if isinstance(a, dict)]
    out: dict[str, DCZone] = {}
    for node in doc.get("datacenter", []):
        if not isinstance(node, dict) or str(node.get("id")) not in dcs:
            continue
        dc = str(node["id"])
        zone = _zone_of(node, dc_defaults)
        if zone is not None:
            out[dc] = DCZone(zone, "config")
            continue
        same_city = [a for a in areas if node.get("city") and a.get("city") == node.get("city")]
        pool = same_city
        if not pool and "latitude" in node and "longitude" in node:
            located = [a for a in areas if "latitude" in a and "longitude" in a]
            pool = sorted(
                located,
                key=lambda a: _km(
                    float(node["latitude"]),
                    float(node["longitude"]),
                    float(a["latitude"]),
                    float(a["longitude"]),
                ),
            )[:1]
        for area in pool:
            zone = _zone_of(area, area_defaults)
            if zone is not None:
                out[dc] = DCZone(zone, "config-area")
                break
    for found in out.values():
        _tzinfo(found.tz, f"{path}: time zone")
    return out


def resolve_dc_time_zones(
    scen: Scenario, spec: str | Path | Mapping[str, str] | None = None
) -> dict[str, DCZone]:
    """The time zone of every DC of ``scen`` (module docs for the order of sources).

    Parameters
    ----------
    scen
        The scenario.
    spec
        ``None``; a mapping ``{dc: zone}``; a string ``DC=ZONE[,DC=ZONE...]`` or one ``ZONE`` for
        every DC; or the path of a build configuration (``.toml``).

    Raises
    ------
    GreenSchedError
        An unknown zone or DC, naming ``--dc-tz`` and the entry.
    """
    dcs = scen.dcs
    explicit: dict[str, str] = {}
    config: Path | None = None
    if isinstance(spec, Mapping):
        explicit = _parse_option(",".join(f"{k}={v}" for k, v in spec.items()), dcs) if spec else {}
    elif spec is not None:
        text = str(spec)
        if text.endswith(".toml"):
            config = Path(text)
            if not config.is_file():
                raise GreenSchedError(f"--dc-tz {text}: build configuration not found")
        else:
            explicit = _parse_option(text, dcs)
    if config is None:
        config = next((p for p in _config_candidates(scen) if p.is_file()), None)
    zones = {d: DCZone(z, "option") for d, z in explicit.items()}
    if config is not None:
        for dc, zone in _zones_from_config(config, dcs).items():
            zones.setdefault(dc, zone)
    lon = scen.ds["dc_longitude"].values
    for i, dc in enumerate(dcs):
        if dc not in zones:
            zones[dc] = DCZone(_fixed_name(float(round(float(lon[i]) / 15.0))), "longitude")
    return {d: zones[d] for d in dcs}
