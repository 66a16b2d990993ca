"""Sweep experiments (``kind = "sweep"``): the Green-LLM letter's Section III from one file.

An experiment file with ``kind = "sweep"`` names a scenario, the presets solved at every point
(m0 = the scenario's weights, m1 = energy only, m2 = carbon only), one ``[[sweep]]`` table per
sensitivity sweep and a ``[profile]`` table for the hourly carbon and cost profiles at one
scale (the letter's Ψθ = 1.2)::

    name = "letter-section3"
    kind = "sweep"
    scenario = "../../../shared/data/paper_scenario"
    presets = ["m0", "m1", "m2"]
    workers = 1                      # points in parallel (a local process pool)

    [[sweep]]
    param = "theta"                  # theta | renewables | tau | rho | demand | price
    scales = "0.2:2.0:0.2"           # START:STOP:STEP (inclusive) or a list [0.5, 1.0, 1.5]
    figure = "Fig. 2"                # the letter's figure (a label in the report)

    [profile]
    param = "theta"
    scale = 1.2

The sweeps are solved by :func:`greensched.scheduler.sweep.run_sweep` (the code behind
``greensched sweep``); this module only reads the file, runs every sweep, solves the profile
plans and writes the tables.  Outputs in ``DIR``: ``sweeps.parquet`` (one row per param ×
scale × preset: status, energy/carbon/delay/total USD, carbon kg, water l, grid and IT kWh),
``profiles.parquet`` (per preset × hour: carbon kg, energy/carbon/delay USD, grid kWh) and
``experiment.json`` (``kind = "sweep"``).  :func:`write_sweep_report` writes the Markdown
report and its figures (house style, :mod:`greensched.plotstyle`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.eval.experiment.config import ExperimentError, read_experiment_file

__all__ = [
    "LETTER_REFERENCE",
    "SWEEP_SECTIONS",
    "ProfileSpec",
    "SweepExperiment",
    "SweepSpec",
    "experiment_kind",
    "load_sweep_experiment",
    "profile_frame",
    "run_sweep_experiment",
    "write_sweep_report",
]

#: Section headings of a sweep report, in order (the tests check them).
SWEEP_SECTIONS = (
    "## Run",
    "## Reference point (scale 1) against the letter",
    "## Sweeps",
    "## Hourly profiles",
    "## Figures",
)

#: The letter's reference results on its own scenario (../shared/spec/green-llm-model.md):
#: (preset, objective component) → USD for one day.
LETTER_REFERENCE: dict[tuple[str, str], float] = {
    ("m0", "total_usd"): 392.08,
    ("m0", "energy_usd"): 197.63,
    ("m0", "carbon_usd"): 5.46,
    ("m0", "delay_usd"): 189.00,
    ("m1", "energy_usd"): 193.94,
    ("m2", "carbon_usd"): 2.09,
}

_TOP = {"name", "kind", "scenario", "presets", "workers", "solver", "sweep", "profile", "notes"}


@dataclass
class SweepSpec:
    """One sensitivity sweep: a parameter group and its scale factors."""

    param: str
    scales: list[float]
    figure: str = ""

    def __post_init__(self) -> None:
        from greensched.scheduler.sweep import PARAMS

        if self.param not in PARAMS:
            raise ExperimentError(
                f"sweep param {self.param!r} is not known; expected one of {', '.join(PARAMS)}"
            )
        if not self.scales:
            raise ExperimentError(f"sweep {self.param!r}: scales must not be empty")


@dataclass
class ProfileSpec:
    """The scale at which the hourly carbon and cost profiles are drawn."""

    param: str = "theta"
    scale: float = 1.2

    def __post_init__(self) -> None:
        SweepSpec(self.param, [self.scale])
        if not (np.isfinite(self.scale) and self.scale >= 0):
            raise ExperimentError(f"profile scale {self.scale!r} must be a number >= 0")


@dataclass
class SweepExperiment:
    """A parsed sweep experiment (see the module docstring)."""

    name: str
    scenario: str
    sweeps: list[SweepSpec]
    presets: list[str] = field(default_factory=lambda: ["m0", "m1", "m2"])
    profile: ProfileSpec | None = field(default_factory=ProfileSpec)
    workers: int = 1
    solver: str = "highs"
    source: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        from greensched.scheduler.planner import PRESETS

        self.presets = [str(p).lower() for p in self.presets]
        bad = [p for p in self.presets if p not in PRESETS]
        if bad or not self.presets:
            raise ExperimentError(
                f"presets {self.presets!r}: expected a non-empty list of {', '.join(PRESETS)}"
            )
        if not self.sweeps and self.profile is None:
            raise ExperimentError("a sweep experiment needs at least one [[sweep]] or a [profile]")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ExperimentError(f"workers {self.workers!r} must be an integer >= 1")


def experiment_kind(path: str | Path) -> str:
    """``"sweep"`` or ``"policies"`` (the default) of an experiment file."""
    return _kind_of(Path(path), read_experiment_file(path))


def _kind_of(p: Path, raw: dict[str, Any]) -> str:
    kind = str(raw.get("kind", "policies"))
    if kind not in ("policies", "sweep"):
        raise ExperimentError(f"{p}: kind {kind!r} is not known; expected 'policies' or 'sweep'")
    return kind


def _scales(value: Any, where: str) -> list[float]:
    from greensched.scheduler.sweep import parse_scale

    if isinstance(value, str):
        try:
            return parse_scale(value)
        except ValueError as exc:
            raise ExperimentError(f"{where}: {exc}") from exc
    if isinstance(value, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        return [float(v) for v in value]
    raise ExperimentError(
        f"{where}: scales {value!r}: expected 'START:STOP:STEP' or a list of numbers"
    )


def load_sweep_experiment(path: str | Path) -> SweepExperiment:
    """Read and validate a ``kind = "sweep"`` experiment file (errors name file and field)."""
    from greensched.eval.experiment.config import _resolve

    p = Path(path)
    raw = read_experiment_file(p)
    if _kind_of(p, raw) != "sweep":
        raise ExperimentError(f"{p}: not a sweep experiment (kind = 'sweep' expected)")
    unknown = set(raw) - _TOP
    if unknown:
        raise ExperimentError(f"{p}: unknown key(s) {sorted(unknown)!r}; expected {sorted(_TOP)}")
    try:
        sweeps = []
        for i, s in enumerate(raw.get("sweep", [])):
            extra = set(s) - {"param", "scales", "figure"}
            if extra:
                raise ExperimentError(f"sweep {i}: unknown key(s) {sorted(extra)!r}")
            sweeps.append(
                SweepSpec(
                    param=str(s.get("param")),
                    scales=_scales(s.get("scales"), f"sweep {i}"),
                    figure=str(s.get("figure", "")),
                )
            )
        prof = raw.get("profile")
        profile = (
            None
            if prof is None
            else ProfileSpec(
                param=str(prof.get("param", "theta")), scale=float(prof.get("scale", 1.2))
            )
        )
        return SweepExperiment(
            name=str(raw.get("name", p.stem)),
            scenario=str(_resolve(str(raw.get("scenario", "default")), p.parent)),
            sweeps=sweeps,
            presets=list(raw.get("presets", ["m0", "m1", "m2"])),
            profile=profile,
            workers=raw.get("workers", 1),
            solver=str(raw.get("solver", "highs")),
            source=str(p),
            notes=str(raw.get("notes", "")),
        )
    except ExperimentError as exc:
        raise ExperimentError(f"{p}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ExperimentError(f"{p}: {exc}") from exc


def profile_frame(scen: Any, result: Any, model: str) -> pd.DataFrame:
    """Per hour of a solved plan: carbon kg, grid kWh and energy / carbon / delay cost USD."""
    ds = scen.ds
    grid = result.dc_hourly.set_index(["hour", "dc"])["grid_kw"]

    def per_kwh(var: Any) -> np.ndarray:
        series = var.to_series().reorder_levels(["hour", "dc"])
        return np.asarray(series.reindex(grid.index).to_numpy(), dtype=float)

    theta = per_kwh(ds["carbon_kg_per_kwh"])
    frame = (
        pd.DataFrame(
            {
                "grid_kwh": grid.to_numpy(),
                "carbon_kg": grid.to_numpy() * theta,
                "energy_usd": grid.to_numpy() * per_kwh(ds["price_usd_per_kwh"]),
                "carbon_usd": grid.to_numpy()
                * per_kwh(ds["carbon_kg_per_kwh"] * ds["carbon_price_usd_per_kg"]),
            },
            index=grid.index,
        )
        .groupby("hour")
        .sum()
    )
    delay = (result.delay_s * ds["delay_penalty_usd_per_s"]).sum(["area", "query_type"])
    frame["delay_usd"] = delay.to_series().reindex(frame.index).to_numpy()
    frame = frame.reset_index()
    frame.insert(0, "model", model)
    return frame


def _profiles(exp: SweepExperiment, scen: Any) -> pd.DataFrame:
    from greensched.scheduler.planner import PlanConfig, PlanSession
    from greensched.scheduler.sweep import scaled_scenario

    assert exp.profile is not None
    scaled = scaled_scenario(scen, exp.profile.param, exp.profile.scale)
    session = PlanSession(scaled, exp.solver)
    parts = []
    for name in exp.presets:
        result = session.solve(PlanConfig.preset(name, diagnose=False))
        if not result.is_ok:
            raise ExperimentError(
                f"profile plan {name} at {exp.profile.param} × "
                f"{exp.profile.scale}: {result.status.value}"
            )
        parts.append(profile_frame(scaled, result, name))
    out = pd.concat(parts, ignore_index=True)
    out.insert(0, "scale", exp.profile.scale)
    out.insert(0, "param", exp.profile.param)
    return out


def run_sweep_experiment(
    exp: SweepExperiment,
    out_dir: str | Path,
    *,
    workers: int | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run every sweep and the profile plans; write the tables (module docstring)."""
    from greensched.eval.experiment.run import load_experiment_scenario
    from greensched.scheduler.sweep import run_sweep

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_workers = workers or exp.workers
    t0 = time.perf_counter()
    scen = load_experiment_scenario(exp.scenario)
    total = len(exp.sweeps) + (exp.profile is not None)
    frames = []
    for i, spec in enumerate(exp.sweeps):
        if progress:
            progress(i, total, f"sweep {spec.param} ({len(spec.scales)} points)")
        frames.append(
            run_sweep(
                scen,
                spec.param,
                spec.scales,
                exp.presets,
                solver=exp.solver,
                workers=n_workers,
                progress=False,
            )
        )
    sweeps = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    sweeps.to_parquet(out / "sweeps.parquet", index=False)
    if exp.profile is not None:
        if progress:
            progress(
                len(exp.sweeps), total, f"profiles at {exp.profile.param} × {exp.profile.scale}"
            )
        _profiles(exp, scen).to_parquet(out / "profiles.parquet", index=False)
    if progress:
        progress(total, total, "done")
    meta = {
        "kind": "sweep",
        "experiment": exp.name,
        "source": exp.source,
        "scenario": exp.scenario,
        "scenario_name": scen.name,
        "presets": exp.presets,
        "sweeps": [asdict(s) for s in exp.sweeps],
        "profile": None if exp.profile is None else asdict(exp.profile),
        "solver": exp.solver,
        "workers": n_workers,
        "wall_s": time.perf_counter() - t0,
        "notes": exp.notes,
        "command": command,
    }
    (out / "experiment.json").write_text(
        json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return meta


_PANELS = (
    ("energy_usd", "energy cost (USD)"),
    ("carbon_usd", "carbon cost (USD)"),
    ("delay_usd", "delay cost (USD)"),
    ("carbon_kg", "CO$_2$ (kg)"),
)
_LABELS = {
    "theta": "carbon-intensity scale Ψθ",
    "renewables": "renewable scale Ψw",
    "tau": "token-energy scale Ψτ",
    "rho": "delay-penalty scale Ψρ",
    "demand": "demand scale Ψλ",
    "price": "price scale Ψc",
}


def _sweep_figure(frame: pd.DataFrame, param: str, path: Path) -> Path:
    from greensched.plotstyle import figure, legend_below, save_figure, series_style

    fig, axes = figure(1, 4, width="page", aspect=0.24)
    ok = frame[frame["status"] == "optimal"]
    for ax, (col, label) in zip(axes, _PANELS, strict=True):
        for i, (model, part) in enumerate(ok.groupby("model", sort=True)):
            ax.plot(part["scale"], part[col], label=str(model).upper(), **series_style(i))
        ax.set_xlabel(_LABELS.get(param, param))
        ax.set_ylabel(label)
    legend_below(fig, axes, ncol=4)
    return save_figure(fig, path)


def _profile_figure(prof: pd.DataFrame, path: Path, title: str) -> Path:
    from greensched.plotstyle import figure, legend_below, save_figure, series_style

    fig, axes = figure(1, 3, width="page", aspect=0.3)
    for i, (model, part) in enumerate(prof.groupby("model", sort=True)):
        style = series_style(i)
        axes[0].plot(part["hour"], part["carbon_kg"], label=str(model).upper(), **style)
        axes[1].plot(part["hour"], part["energy_usd"] + part["carbon_usd"],
                     label=str(model).upper(), **style)
        axes[2].plot(part["hour"], part["delay_usd"], label=str(model).upper(), **style)
    for ax, label in zip(axes, ("CO$_2$ (kg/h)", "energy+carbon (USD/h)",
                                "delay (USD/h)"), strict=True):
        ax.set_ylabel(label)
        ax.set_xlabel("hour of the horizon")
    fig.suptitle(title)
    legend_below(fig, axes, ncol=4)
    return save_figure(fig, path)


def _num(x: float) -> str:
    return f"{x:.2f}" if np.isfinite(x) else "–"


def write_sweep_report(run_dir: str | Path, markdown: str | Path | None = None) -> Path:
    """Write the report of a sweep run (default ``run_dir/report.md``); figures beside it."""
    run = Path(run_dir)
    meta = json.loads((run / "experiment.json").read_text(encoding="utf-8"))
    sweeps = pd.read_parquet(run / "sweeps.parquet")
    prof_path = run / "profiles.parquet"
    prof = pd.read_parquet(prof_path) if prof_path.is_file() else None
    md = Path(markdown) if markdown is not None else run / "report.md"
    md.parent.mkdir(parents=True, exist_ok=True)
    fig_dir = md.parent / f"{md.stem}_figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Sweep experiment `{meta['experiment']}`",
        "",
        SWEEP_SECTIONS[0],
        "",
        f"- scenario: `{meta['scenario']}` ({meta['scenario_name']}); presets "
        f"{', '.join(p.upper() for p in meta['presets'])}; solver {meta['solver']}",
        f"- {len(sweeps)} plans in {len(meta['sweeps'])} sweeps, {meta['workers']} "
        f"worker(s), wall time {meta['wall_s']:.1f} s",
    ]
    if meta.get("command"):
        lines.append(f"- regenerate: `{meta['command']}`")
    if meta.get("notes"):
        lines += ["", str(meta["notes"]).strip()]
    lines += [
        "",
        SWEEP_SECTIONS[1],
        "",
        "| preset | component | this run (USD) | letter (USD) | difference % |",
        "|---|---|---|---|---|",
    ]
    base = sweeps[(sweeps["scale"] == 1.0) & (sweeps["status"] == "optimal")]
    base = base.drop_duplicates("model").set_index("model") if len(base) else base
    for (model, col), ref in LETTER_REFERENCE.items():
        if len(base) and model in base.index:
            got = float(base.loc[model, col])
            lines.append(
                f"| {model.upper()} | {col} | {_num(got)} | {ref:.2f} | "
                f"{100 * (got / ref - 1):+.2f} |"
            )
    lines.append("")
    lines.append(
        "The letter's numbers are for its own scenario (the authors' generator, seed "
        "42: `../shared/data/paper_scenario`); on another scenario the difference "
        "column only shows how far that scenario is from the letter's."
    )
    lines += ["", SWEEP_SECTIONS[2], ""]
    figs: list[tuple[str, Path]] = []
    for spec in meta["sweeps"]:
        part = sweeps[sweeps["param"] == spec["param"]]
        lo, hi = min(spec["scales"]), max(spec["scales"])
        label = f"{spec['figure']}: " if spec.get("figure") else ""
        lines += [
            f"### {label}{_LABELS.get(spec['param'], spec['param'])}, {lo:g}–{hi:g}",
            "",
            "Each cell: the value at the lowest → the highest scale with an optimal plan.",
            "",
            "| preset | energy USD | carbon USD | delay USD | CO2 kg |",
            "|---|---|---|---|---|",
        ]
        ok = part[part["status"] == "optimal"]
        for model, g in ok.groupby("model", sort=True):
            a, b = g.loc[g["scale"].idxmin()], g.loc[g["scale"].idxmax()]
            lines.append(
                f"| {str(model).upper()} | {_num(a['energy_usd'])} → {_num(b['energy_usd'])} | "
                f"{_num(a['carbon_usd'])} → {_num(b['carbon_usd'])} | "
                f"{_num(a['delay_usd'])} → {_num(b['delay_usd'])} | "
                f"{_num(a['carbon_kg'])} → {_num(b['carbon_kg'])} |"
            )
        bad = part[part["status"] != "optimal"]
        if len(bad):
            lines.append("")
            lines.append(
                f"Not optimal: {len(bad)} plans ("
                + ", ".join(f"{r.model} × {r.scale:g}: {r.status}" for r in bad.itertuples())
                + ")"
            )
        lines.append("")
        figs.append(
            (
                f"{label}sweep of {spec['param']}",
                _sweep_figure(part, spec["param"], fig_dir / f"sweep_{spec['param']}.png"),
            )
        )
    lines += [SWEEP_SECTIONS[3], ""]
    if prof is not None and len(prof):
        p0, s0 = str(prof["param"].iloc[0]), float(prof["scale"].iloc[0])
        lines += [
            f"At {_LABELS.get(p0, p0)} = {s0:g}: per preset, the day's totals and the "
            "peak hour of CO2.",
            "",
            "| preset | CO2 kg | energy USD | carbon USD | delay USD | peak CO2 hour (kg) |",
            "|---|---|---|---|---|---|",
        ]
        for model, g in prof.groupby("model", sort=True):
            peak = g.loc[g["carbon_kg"].idxmax()]
            lines.append(
                f"| {str(model).upper()} | {_num(g['carbon_kg'].sum())} | "
                f"{_num(g['energy_usd'].sum())} | {_num(g['carbon_usd'].sum())} | "
                f"{_num(g['delay_usd'].sum())} | {int(peak['hour'])} "
                f"({_num(peak['carbon_kg'])}) |"
            )
        figs.append(
            (
                f"hourly CO2 and cost at {p0} × {s0:g}",
                _profile_figure(
                    prof, fig_dir / "hourly_profiles.png", f"{_LABELS.get(p0, p0)} = {s0:g}"
                ),
            )
        )
    else:
        lines.append("- no [profile] in this experiment")
    lines += ["", SWEEP_SECTIONS[4], ""]
    for caption, path in figs:
        lines += [f"![{caption}]({fig_dir.name}/{path.name})", ""]
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md
