"""Workload classes and relocation settings, read from a classes TOML file beside a scenario.

A classes file declares *what* may move and at what price; the scenario says *where* it could go.
Three layers: clients (the scenario's areas, where demand originates), service nodes (each area's
entry point, its *home* DC, where the class's state lives) and compute nodes (the scenario's DCs).

Example (every field is documented in ``docs/relocation.md``)::

    [relocation]
    transfer_gbps = 10.0            # DC-to-DC bandwidth for moving state
    migration_setup_s = 300         # fixed time of one move (provisioning, warm-up)
    regional_rtt_ms = 30.0          # "regional" layer radius when no [zones] are given

    [zones]                         # dc -> price geography / continent (optional)
    us-east4 = "north-america"

    [[egress]]                      # USD per GB of state leaving a zone towards a zone
    from = "north-america"
    to = "*"
    usd_per_gb = 0.05

    [[class]]
    id = "chat"
    query_type = "conv-short"
    demand_share = 1.0
    latency_budget_ms = 6500
    state_gb = 0.5
    allow = ["*"]

Allow-list entries name DCs, provider regions (``[regions]``), zones (``[zones]``) or ``"*"``.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greensched.errors import GreenSchedError
from greensched.scenario import Scenario

__all__ = [
    "EgressRule",
    "RelocationConfig",
    "RelocationError",
    "WorkloadClass",
    "load_classes",
]


class RelocationError(GreenSchedError):
    """A classes file or relocation setting is wrong; the message names file and field."""


def _where(file: str | None, key: str) -> str:
    return f"{file}: {key}" if file else key


def _number(
    value: Any,
    key: str,
    file: str | None,
    *,
    minimum: float | None = 0.0,
    strict: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RelocationError(f"{_where(file, key)} must be a number (got {value!r})")
    v = float(value)
    if not math.isfinite(v):
        raise RelocationError(f"{_where(file, key)} must be finite (got {value!r})")
    if minimum is not None and (v <= minimum if strict else v < minimum):
        op = ">" if strict else ">="
        raise RelocationError(f"{_where(file, key)} must be {op} {minimum:g} (got {value!r})")
    return v


@dataclass
class WorkloadClass:
    """One workload class.

    Parameters
    ----------
    id
        Identifier (the ``workload`` coordinate of masks and results).
    query_type
        Scenario query type whose demand, energy and service time the class uses.
    latency_budget_ms
        End-to-end budget per request: RTT + transmission + service time, milliseconds.
    demand_share
        Share of the query type's demand that belongs to this class (0..1).
    state_gb
        State (data, KV cache, model adapters) that must move with the class's demand of one
        area when that demand is served away from its home region, GB (whole demand; a share y
        moved needs y × state_gb).
    allow
        Allowed compute nodes: DC ids, region labels, zone labels or ``"*"`` (every DC).
    allow_by_area
        Per-area allow-lists that replace ``allow`` for that area (data sovereignty).
    capacity_need
        Resource units a DC must have (``capacity`` of the scenario) to host the class.
    latency_penalty_usd_per_s
        Cost of one second of extra latency per query, USD (0: the budget is the only limit).
    migration_usd_per_h
        Cost of one hour of migration (state in transit, dual running), USD per hour.
    """

    id: str
    query_type: str
    latency_budget_ms: float
    demand_share: float = 1.0
    state_gb: float = 0.0
    allow: tuple[str, ...] = ("*",)
    allow_by_area: dict[str, tuple[str, ...]] = field(default_factory=dict)
    capacity_need: dict[str, float] = field(default_factory=dict)
    latency_penalty_usd_per_s: float = 0.0
    migration_usd_per_h: float = 0.0

    def __post_init__(self) -> None:
        key = f"class {self.id!r}"
        if not isinstance(self.id, str) or not self.id:
            raise RelocationError(f"class id must be a non-empty string (got {self.id!r})")
        self.latency_budget_ms = _number(
            self.latency_budget_ms, f"{key}.latency_budget_ms", None, strict=True
        )
        self.demand_share = _number(self.demand_share, f"{key}.demand_share", None)
        if self.demand_share > 1.0:
            raise RelocationError(
                f"{key}.demand_share must be in [0, 1] (got {self.demand_share!r})"
            )
        self.state_gb = _number(self.state_gb, f"{key}.state_gb", None)
        self.latency_penalty_usd_per_s = _number(
            self.latency_penalty_usd_per_s, f"{key}.latency_penalty_usd_per_s", None
        )
        self.migration_usd_per_h = _number(
            self.migration_usd_per_h, f"{key}.migration_usd_per_h", None
        )
        self.allow = tuple(str(a) for a in self.allow)
        if not self.allow:
            raise RelocationError(f"{key}.allow must name at least one DC, region or zone")
        self.allow_by_area = {
            str(k): tuple(str(a) for a in v) for k, v in self.allow_by_area.items()
        }
        self.capacity_need = {
            str(r): _number(v, f"{key}.capacity_need.{r}", None)
            for r, v in self.capacity_need.items()
        }


@dataclass
class EgressRule:
    """Egress price of state leaving zone (or region, or DC) ``source`` towards ``target``.

    ``"*"`` matches anything. The most specific matching rule wins (both named > source named >
    target named > both ``"*"``).
    """

    source: str
    target: str
    usd_per_gb: float

    def __post_init__(self) -> None:
        self.usd_per_gb = _number(self.usd_per_gb, f"egress {self.source}->{self.target}", None)


@dataclass
class RelocationConfig:
    """Workload classes plus the relocation settings of one study.

    Parameters
    ----------
    classes
        The workload classes (ids unique).
    zones
        DC → zone (continent, price geography). Empty: layers use ``regional_rtt_ms``.
    regions
        DC → provider region (default: every DC its own region). "Home region" = region of
        the area's home DC.
    homes
        Area → home DC (service node). Default: the DC with the least RTT from the area.
    egress
        Egress price rules (USD/GB) between zones; ``egress_default_usd_per_gb`` where none
        matches; state moved inside the home region is free.
    egress_source
        Where the egress prices come from (printed with the results).
    transfer_gbps
        DC-to-DC bandwidth available for moving state, Gbit/s.
    migration_setup_s
        Fixed time of one move, seconds (provisioning, warm-up).
    regional_rtt_ms
        Without zones: a class-area pair is *regional* when every feasible node lies within
        this RTT of the client.
    carbon_price_usd_per_kg
        Carbon price of the placement objective; ``None`` uses each DC's scenario value.
    capacity_share
        Share of each DC's scenario capacity available to the classes (0..1].
    max_sweep_points
        Most budgets evaluated per class on the frontier (the breakpoints are subsampled).
    file
        The file the configuration came from (for messages).
    """

    classes: list[WorkloadClass]
    zones: dict[str, str] = field(default_factory=dict)
    regions: dict[str, str] = field(default_factory=dict)
    homes: dict[str, str] = field(default_factory=dict)
    egress: list[EgressRule] = field(default_factory=list)
    egress_default_usd_per_gb: float = 0.0
    egress_source: str = ""
    transfer_gbps: float = 10.0
    migration_setup_s: float = 0.0
    regional_rtt_ms: float = 30.0
    carbon_price_usd_per_kg: float | None = None
    capacity_share: float = 1.0
    max_sweep_points: int = 60
    file: str | None = None

    def __post_init__(self) -> None:
        f = self.file
        if not self.classes:
            raise RelocationError(f"{_where(f, 'class')}: at least one [[class]] is needed")
        ids = [c.id for c in self.classes]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise RelocationError(f"{_where(f, 'class.id')}: duplicated class ids {dup}")
        self.transfer_gbps = _number(self.transfer_gbps, "relocation.transfer_gbps", f, strict=True)
        self.migration_setup_s = _number(self.migration_setup_s, "relocation.migration_setup_s", f)
        self.regional_rtt_ms = _number(self.regional_rtt_ms, "relocation.regional_rtt_ms", f)
        self.egress_default_usd_per_gb = _number(
            self.egress_default_usd_per_gb, "egress_default_usd_per_gb", f
        )
        if self.carbon_price_usd_per_kg is not None:
            self.carbon_price_usd_per_kg = _number(
                self.carbon_price_usd_per_kg, "relocation.carbon_price_usd_per_kg", f
            )
        self.capacity_share = _number(
            self.capacity_share, "relocation.capacity_share", f, strict=True
        )
        if self.capacity_share > 1.0:
            raise RelocationError(
                f"{_where(f, 'relocation.capacity_share')} must be in (0, 1] "
                f"(got {self.capacity_share!r})"
            )
        if int(self.max_sweep_points) < 2:
            raise RelocationError(
                f"{_where(f, 'relocation.max_sweep_points')} must be >= 2 "
                f"(got {self.max_sweep_points!r})"
            )
        self.max_sweep_points = int(self.max_sweep_points)

    @property
    def class_ids(self) -> list[str]:
        """Class ids in file order."""
        return [c.id for c in self.classes]

    def region_of(self, dc: str) -> str:
        """Provider region of a DC (the DC id when none is declared)."""
        return self.regions.get(dc, dc)

    def zone_of(self, dc: str) -> str | None:
        """Zone of a DC, or ``None`` without zones."""
        return self.zones.get(dc)

    def egress_usd_per_gb(self, source_dc: str, target_dc: str) -> float:
        """USD per GB of state moved from ``source_dc`` to ``target_dc`` (0 inside one region)."""
        if self.region_of(source_dc) == self.region_of(target_dc):
            return 0.0

        def names(dc: str) -> set[str]:
            out = {dc, self.region_of(dc)}
            z = self.zone_of(dc)
            if z is not None:
                out.add(z)
            return out

        src, dst = names(source_dc), names(target_dc)
        best: tuple[int, float] | None = None
        for rule in self.egress:
            s_ok = rule.source == "*" or rule.source in src
            t_ok = rule.target == "*" or rule.target in dst
            if not (s_ok and t_ok):
                continue
            rank = 2 * (rule.source != "*") + (rule.target != "*")
            if best is None or rank > best[0]:
                best = (rank, rule.usd_per_gb)
        return best[1] if best is not None else self.egress_default_usd_per_gb

    def check(self, scenario: Scenario) -> None:
        """Raise :class:`RelocationError` where the file names what the scenario lacks."""
        f = self.file
        dcs, areas = set(scenario.dcs), set(scenario.areas)
        types, resources = set(scenario.query_types), set(scenario.resources)
        for section, mapping in (("zones", self.zones), ("regions", self.regions)):
            for dc in mapping:
                if dc not in dcs:
                    raise RelocationError(
                        f"{_where(f, f'{section}.{dc}')}: unknown dc {dc!r}; the scenario has "
                        f"{sorted(dcs)}"
                    )
        for area, dc in self.homes.items():
            if area not in areas:
                raise RelocationError(
                    f"{_where(f, f'homes.{area}')}: unknown area {area!r}; the scenario has "
                    f"{sorted(areas)}"
                )
            if dc not in dcs:
                raise RelocationError(
                    f"{_where(f, f'homes.{area}')}: unknown dc {dc!r}; the scenario has "
                    f"{sorted(dcs)}"
                )
        labels = dcs | {self.region_of(d) for d in dcs} | set(self.zones.values()) | {"*"}
        share: dict[str, float] = {}
        for i, c in enumerate(self.classes):
            key = f"class[{i}]"
            if c.query_type not in types:
                raise RelocationError(
                    f"{_where(f, key + '.query_type')}: unknown query type {c.query_type!r}; "
                    f"the scenario has {sorted(types)}"
                )
            share[c.query_type] = share.get(c.query_type, 0.0) + c.demand_share
            for entry in c.allow:
                if entry not in labels:
                    raise RelocationError(
                        f"{_where(f, key + '.allow')}: {entry!r} is no DC, region or zone of "
                        f"the scenario (expected one of {sorted(labels)})"
                    )
            for area, lst in c.allow_by_area.items():
                if area not in areas:
                    raise RelocationError(
                        f"{_where(f, key + '.allow_by_area')}: unknown area {area!r}; the "
                        f"scenario has {sorted(areas)}"
                    )
                for entry in lst:
                    if entry not in labels:
                        raise RelocationError(
                            f"{_where(f, f'{key}.allow_by_area.{area}')}: {entry!r} is no DC, "
                            f"region or zone of the scenario"
                        )
            for r in c.capacity_need:
                if r not in resources:
                    raise RelocationError(
                        f"{_where(f, key + '.capacity_need')}: unknown resource {r!r}; the "
                        f"scenario has {sorted(resources)}"
                    )
        for qt, total in share.items():
            if total > 1.0 + 1e-9:
                raise RelocationError(
                    f"{_where(f, 'class.demand_share')}: the classes of query type {qt!r} take "
                    f"{total:g} of its demand; expected at most 1"
                )

    def allowed_dcs(self, c: WorkloadClass, area: str, dcs: Sequence[str]) -> list[str]:
        """DCs the law allows for class ``c`` from ``area`` (order of ``dcs``)."""
        entries = c.allow_by_area.get(area, c.allow)
        if "*" in entries:
            return list(dcs)
        keep = set(entries)
        return [d for d in dcs if d in keep or self.region_of(d) in keep or self.zone_of(d) in keep]


_CLASS_FIELDS = {
    "id",
    "query_type",
    "latency_budget_ms",
    "demand_share",
    "state_gb",
    "allow",
    "allow_by_area",
    "capacity_need",
    "latency_penalty_usd_per_s",
    "migration_usd_per_h",
}
_SETTINGS = {
    "transfer_gbps",
    "migration_setup_s",
    "regional_rtt_ms",
    "carbon_price_usd_per_kg",
    "capacity_share",
    "max_sweep_points",
    "egress_default_usd_per_gb",
    "egress_source",
}
_TOP = {"relocation", "zones", "regions", "homes", "egress", "class"}


def _table(value: Any, key: str, file: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RelocationError(f"{file}: {key} must be a table (got {value!r})")
    return value


def _strings(value: Any, key: str, file: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RelocationError(f"{file}: {key} must be a list of strings (got {value!r})")
    return tuple(value)


def load_classes(path: str | Path) -> RelocationConfig:
    """Read a classes TOML file (format in the module docstring and ``docs/relocation.md``).

    Raises
    ------
    RelocationError
        Unknown or mistyped fields, naming the file and the field (``class[1].state_gb``).
    """
    p = Path(path)
    file = str(p)
    try:
        with p.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise RelocationError(f"{file}: classes file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RelocationError(f"{file}: not valid TOML ({exc})") from exc
    unknown = sorted(set(doc) - _TOP)
    if unknown:
        raise RelocationError(f"{file}: unknown section(s) {unknown}; expected {sorted(_TOP)}")
    settings = dict(_table(doc.get("relocation", {}), "[relocation]", file))
    bad = sorted(set(settings) - _SETTINGS)
    if bad:
        raise RelocationError(
            f"{file}: relocation.{bad[0]} is not a known field; expected one of {sorted(_SETTINGS)}"
        )
    maps: dict[str, dict[str, str]] = {}
    for name in ("zones", "regions", "homes"):
        tab = _table(doc.get(name, {}), f"[{name}]", file)
        for k, v in tab.items():
            if not isinstance(v, str):
                raise RelocationError(f"{file}: {name}.{k} must be a string (got {v!r})")
        maps[name] = {str(k): str(v) for k, v in tab.items()}
    rules = []
    raw_egress = doc.get("egress", [])
    if not isinstance(raw_egress, list):
        raise RelocationError(f"{file}: egress must be an array of tables ([[egress]])")
    for i, r in enumerate(raw_egress):
        r = _table(r, f"egress[{i}]", file)
        extra = sorted(set(r) - {"from", "to", "usd_per_gb"})
        if extra or "usd_per_gb" not in r:
            raise RelocationError(
                f"{file}: egress[{i}] needs from, to, usd_per_gb (unknown: {extra})"
            )
        rules.append(
            EgressRule(
                str(r.get("from", "*")),
                str(r.get("to", "*")),
                _number(r["usd_per_gb"], f"egress[{i}].usd_per_gb", file),
            )
        )
    classes = []
    raw_classes = doc.get("class", [])
    if not isinstance(raw_classes, list):
        raise RelocationError(f"{file}: class must be an array of tables ([[class]])")
    for i, c in enumerate(raw_classes):
        c = dict(_table(c, f"class[{i}]", file))
        key = f"class[{i}]"
        extra = sorted(set(c) - _CLASS_FIELDS)
        if extra:
            raise RelocationError(
                f"{file}: {key}.{extra[0]} is not a known field; expected one of "
                f"{sorted(_CLASS_FIELDS)}"
            )
        for req in ("id", "query_type", "latency_budget_ms"):
            if req not in c:
                raise RelocationError(f"{file}: {key}.{req} is required")
        for num in (
            "latency_budget_ms",
            "demand_share",
            "state_gb",
            "latency_penalty_usd_per_s",
            "migration_usd_per_h",
        ):
            if num in c:
                c[num] = _number(c[num], f"{key}.{num}", file, strict=num == "latency_budget_ms")
        if "allow" in c:
            c["allow"] = _strings(c["allow"], f"{key}.allow", file)
        if "allow_by_area" in c:
            tab = _table(c["allow_by_area"], f"{key}.allow_by_area", file)
            c["allow_by_area"] = {
                str(a): _strings(v, f"{key}.allow_by_area.{a}", file) for a, v in tab.items()
            }
        if "capacity_need" in c:
            tab = _table(c["capacity_need"], f"{key}.capacity_need", file)
            c["capacity_need"] = {
                str(r): _number(v, f"{key}.capacity_need.{r}", file) for r, v in tab.items()
            }
        if not isinstance(c["id"], str) or not isinstance(c["query_type"], str):
            raise RelocationError(f"{file}: {key}.id and {key}.query_type must be strings")
        if "demand_share" in c and c["demand_share"] > 1.0:
            raise RelocationError(
                f"{file}: {key}.demand_share must be in [0, 1] (got {c['demand_share']!r})"
            )
        classes.append(WorkloadClass(**c))
    kwargs: dict[str, Any] = {}
    for k, v in settings.items():
        if k == "egress_source":
            kwargs[k] = str(v)
        elif k == "max_sweep_points":
            if not isinstance(v, int) or isinstance(v, bool):
                raise RelocationError(f"{file}: relocation.max_sweep_points must be an integer")
            kwargs[k] = v
        else:
            kwargs[k] = _number(v, f"relocation.{k}", file)
    return RelocationConfig(
        classes=classes,
        zones=maps["zones"],
        regions=maps["regions"],
        homes=maps["homes"],
        egress=rules,
        file=file,
        **kwargs,
    )
