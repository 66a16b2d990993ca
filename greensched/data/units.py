"""Units written in data-file headers (``gCO₂eq/kWh``, ``$/MWh``, ``ms`` …) and their factors to
the package's canonical units (kg CO₂-eq/kWh, USD/kWh, seconds)."""

from __future__ import annotations

import re

__all__ = ["carbon_factor", "duration_factor", "price_factor", "split_unit"]


# --------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------

_MASS_KG = {
    "mg": 1e-6,
    "g": 1e-3,
    "kg": 1.0,
    "t": 1e3,
    "tonne": 1e3,
    "tonnes": 1e3,
    "lb": 0.45359237,
    "lbs": 0.45359237,
}
_ENERGY_KWH = {"wh": 1e-3, "kwh": 1.0, "mwh": 1e3, "gwh": 1e6}
_CURRENCY_USD = {
    "$": 1.0,
    "usd": 1.0,
    "us$": 1.0,
    "¢": 0.01,
    "c": 0.01,
    "cent": 0.01,
    "cents": 0.01,
}
_DURATION_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "min": 60.0,
    "h": 3600.0,
}
_GAS_RE = re.compile(r"co(?:2|₂)(?:[-_ ]?eq|e)?\.?", re.IGNORECASE)


def _norm_unit(unit: str) -> str:
    return re.sub(r"\s+", "", unit).strip().lower()


def _ratio(unit: str) -> tuple[str, str]:
    parts = _norm_unit(unit).split("/")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ValueError(f"unit {unit!r} is not of the form <numerator>/<denominator>")
    return parts[0], parts[1]


def carbon_factor(unit: str) -> float:
    """Factor converting a carbon-intensity unit to kg CO₂-eq per kWh.

    Parameters
    ----------
    unit
        Unit text such as ``"gCO₂eq/kWh"``, ``"gCO2eq / kWh"``, ``"kgCO2/MWh"``, ``"lb/MWh"``.
        The gas label (CO2, CO₂, CO2eq, CO2e) is optional.

    Returns
    -------
    float
        Multiply values in ``unit`` by this factor to get kg/kWh.

    Raises
    ------
    ValueError
        If the mass or the energy part is not recognised.
    """
    num, den = _ratio(unit)
    mass = _GAS_RE.sub("", num)
    if mass not in _MASS_KG or den not in _ENERGY_KWH:
        raise ValueError(f"unknown carbon-intensity unit {unit!r}; expected e.g. 'gCO2eq/kWh'")
    return _MASS_KG[mass] / _ENERGY_KWH[den]


def price_factor(unit: str) -> float:
    """Factor converting an electricity-price unit (``$/MWh``, ``USD/kWh``, ``¢/kWh``) to $/kWh.

    Raises
    ------
    ValueError
        If the currency or the energy part is not recognised (only US dollars and cents are).
    """
    num, den = _ratio(unit)
    if num not in _CURRENCY_USD or den not in _ENERGY_KWH:
        raise ValueError(f"unknown price unit {unit!r}; expected e.g. '$/MWh' or '$/kWh'")
    return _CURRENCY_USD[num] / _ENERGY_KWH[den]


def duration_factor(unit: str) -> float:
    """Factor converting a duration unit (``ms``, ``s``, ``us``, ``min`` …) to seconds.

    Raises
    ------
    ValueError
        If the unit is not recognised.
    """
    key = _norm_unit(unit)
    if key not in _DURATION_S:
        raise ValueError(f"unknown duration unit {unit!r}; expected e.g. 'ms' or 's'")
    return _DURATION_S[key]


def split_unit(header: str) -> tuple[str, str | None]:
    """Split ``"name (unit)"`` or ``"name [unit]"`` into ``(name, unit)``.

    A trailing bracket group is taken as the unit; ``(name, None)`` is returned when the header
    has none.
    """
    m = re.match(r"^(?P<name>.*?)\s*[(\[](?P<unit>[^()\[\]]*)[)\]]\s*$", header)
    if m is None:
        return header.strip(), None
    return m.group("name").strip(), m.group("unit").strip()
