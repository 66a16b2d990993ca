"""The standing feedback loop: drift check -> re-tune -> promote, once or every interval.

One **cycle** (:func:`run_once`):

1. **Drift check** of the promoted version (:func:`drift_check`): its latest ``window``
   outcomes against

   * *error baseline* (``baseline="auto"``): the error of the version's first outcomes (the
     *burn-in*: its earliest up to ``reference_size`` outcomes before the recent window) once
     there are as many as the window (and ``min_samples``) - production error of the same
     kind as the window's; before that, the version's recorded holdout error (``validation``
     in the registry metrics, written by :func:`~greensched.feedback.retune.retune`), else the
     ``metrics.json`` saved with the model.  A burn-in that already drifted hides that drift:
     ``baseline="validation"`` always compares with the recorded error;
   * *input reference* (PSI): the burn-in outcomes;
   * *per-DC calibration* (:func:`dc_bias_check`): the mean log residual at each DC, flagged
     when large and far beyond its noise - a DC that only exploration visits can be badly off
     while the pooled error hardly moves.

   Only outcomes predicted by the promoted version are judged, so the errors of a replaced
   model do not trigger again after a promotion.
2. **Re-tune** when the verdict is DRIFT (or WATCH with ``trigger="watch"``):
   :func:`~greensched.feedback.retune.retune` on the latest ``retune_window`` outcomes plus
   replay; it registers and promotes a candidate only when it beats the current model on the
   latest outcomes.  A service polling the registry (:class:`~greensched.feedback.registry.
   HotModel`) then swaps it in.
3. A rejected re-tune is not retried by a standing loop until ``retune_every`` new outcomes of
   the version have arrived (the :class:`LoopState` carried between cycles).

:func:`run_forever` repeats cycles every ``interval_s`` seconds until stopped (an event, a
number of cycles, or Ctrl-C in the command).  :func:`retune_command` and :func:`run_command` are
the bodies of ``greensched feedback retune`` and ``greensched feedback run``.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.errors import GreenSchedError
from greensched.feedback.drift import (
    DriftReport,
    DriftThresholds,
    Verdict,
    detect_drift,
    load_validation_metrics,
)
from greensched.feedback.registry import ModelRegistry, RegistryError
from greensched.feedback.retune import RetuneResult, RetuneStatus, retune
from greensched.feedback.store import OutcomeStore

__all__ = [
    "CycleAction",
    "DCBias",
    "LoopCycle",
    "LoopState",
    "dc_bias_check",
    "drift_check",
    "open_registry",
    "opened_store",
    "parse_interval",
    "run_forever",
    "run_once",
]

log = logging.getLogger(__name__)

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_INTERVAL = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)")
_KEEP_CYCLES = 100


def parse_interval(text: str | float | int) -> float:
    """Seconds in an interval such as ``"1h"``, ``"30m"``, ``"15s"``, ``"1h30m"``, ``"500ms"``
    or a bare number of seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text).strip().lower().replace(" ", "")
        try:
            value = float(s)
        except ValueError:
            pos, value = 0, 0.0
            for m in _INTERVAL.finditer(s):
                if m.start() != pos:
                    break
                value += float(m.group(1)) * _UNITS[m.group(2)]
                pos = m.end()
            if pos != len(s) or not s:
                raise GreenSchedError(f"interval {text!r} is not understood; expected e.g. "
                                      "'1h', '30m', '15s', '1h30m' or a number of seconds"
                                      ) from None
    if not (math.isfinite(value) and value > 0):
        raise GreenSchedError(f"interval {text!r} must be positive")
    return value


class CycleAction(StrEnum):
    """What a loop cycle did."""

    NO_DRIFT = "no_drift"
    INSUFFICIENT_DATA = "insufficient_data"
    COOLDOWN = "cooldown"
    PROMOTED = "promoted"
    REJECTED = "rejected"
    ERROR = "error"


@dataclass
class LoopState:
    """What a standing loop remembers between cycles: the last re-tune that did not promote."""

    attempted_version: str | None = None
    attempted_at_outcomes: int = -1


@dataclass(frozen=True)
class DCBias:
    """Calibration of one target at one DC over the recent window (see :func:`dc_bias_check`)."""

    dc: str
    target: str
    n: int
    mean_log: float
    se: float
    flagged: bool

    @property
    def factor(self) -> float:
        """``exp(mean_log)``: typical measured / predicted ratio."""
        return math.exp(self.mean_log)


def dc_bias_check(recent: pd.DataFrame, *, min_outcomes: int = 5, tolerance: float = 0.2,
                  z: float = 4.0) -> tuple[Verdict, list[DCBias]]:
    """Per-DC calibration: is the predictor systematically off at one DC?

    The pooled error of :func:`~greensched.feedback.drift.detect_drift` is dominated by the
    DCs the policy prefers; a DC that only exploration visits can be off by 2x and move the
    pooled MAPE by a few points.  Per (DC, target) with at least ``min_outcomes`` outcomes in
    the window: the mean log residual ``m = mean ln(measured / predicted)`` and its standard
    error ``se = sd / sqrt(n)``; the DC is flagged when ``|m| >= tolerance`` (0.2: about 20 %)
    and ``|m| >= z * se`` (4: far beyond noise, also across the 2 x D tests).  Verdict: DRIFT
    when a DC is flagged, OK when at least one could be checked, else INSUFFICIENT_DATA.
    """
    out: list[DCBias] = []
    if len(recent) == 0 or "dc" not in recent.columns:
        return Verdict.INSUFFICIENT_DATA, out
    dcs = recent["dc"].astype(str).to_numpy()
    for t in ("energy_kwh", "service_s"):
        if t not in recent.columns or f"pred_{t}" not in recent.columns:
            continue
        m = pd.to_numeric(recent[t], errors="coerce").to_numpy(dtype=float)
        p = pd.to_numeric(recent[f"pred_{t}"], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(m) & np.isfinite(p) & (m > 0) & (p > 0)
        r = np.full(len(m), np.nan)
        r[ok] = np.log(m[ok] / p[ok])
        for d in sorted(set(dcs[ok])):
            rd = r[(dcs == d) & ok]
            if len(rd) < min_outcomes:
                continue
            mean = float(rd.mean())
            se = float(rd.std(ddof=1) / math.sqrt(len(rd)))
            flagged = abs(mean) >= tolerance and abs(mean) >= z * se
            out.append(DCBias(d, t, len(rd), mean, se, flagged))
    if not out:
        return Verdict.INSUFFICIENT_DATA, out
    return (Verdict.DRIFT if any(b.flagged for b in out) else Verdict.OK), out


@dataclass
class LoopCycle:
    """One cycle of the loop (see the module docstring)."""

    started_at: str
    version_before: str | None
    version_after: str | None
    action: CycleAction
    verdict: Verdict | None = None
    drift: DriftReport | None = None
    dc_bias: list[DCBias] = field(default_factory=list)
    retune: RetuneResult | None = None
    baseline: str = ""
    n_version_outcomes: int = 0
    message: str = ""
    elapsed_s: float = 0.0

    @property
    def is_ok(self) -> bool:
        """False only when the cycle failed with an error."""
        return self.action is not CycleAction.ERROR

    @property
    def promoted(self) -> bool:
        """True when the cycle promoted a new version."""
        return self.action is CycleAction.PROMOTED

    def reasons(self) -> list[str]:
        """The checks that said DRIFT, e.g. ``["error energy_kwh x2.31", "PSI query_type 0.27",
        "us-east1 energy_kwh x0.50"]``."""
        out: list[str] = []
        if self.drift is not None:
            out += [f"error {t.target} x{t.ratio:.2f}" for t in self.drift.targets
                    if t.verdict is Verdict.DRIFT and t.ratio is not None]
            out += [f"PSI {f.feature} {f.psi:.2f}" for f in self.drift.features
                    if f.verdict is Verdict.DRIFT]
        out += [f"{b.dc} {b.target} x{b.factor:.2f}" for b in self.dc_bias if b.flagged]
        return out

    def describe(self) -> str:
        """One line for logs and the console."""
        v = self.verdict.value if self.verdict is not None else "-"
        head = f"[{self.started_at}] {self.version_before}: drift {v}"
        if self.drift is not None:
            e = self.drift.target("energy_kwh")
            if e.ratio is not None:
                head += f" (energy MAPE {e.mape:.1%}, x{e.ratio:.2f} of the {self.baseline})"
        off = [f"{b.dc} {b.target} x{b.factor:.2f}" for b in self.dc_bias if b.flagged]
        if off:
            head += f"; miscalibrated at {', '.join(off)}"
        return f"{head} -> {self.action.value}" + (f"; {self.message}" if self.message else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "started_at": self.started_at, "version_before": self.version_before,
            "version_after": self.version_after, "action": self.action.value,
            "verdict": None if self.verdict is None else self.verdict.value,
            "baseline": self.baseline, "n_version_outcomes": self.n_version_outcomes,
            "message": self.message, "elapsed_s": self.elapsed_s, "reasons": self.reasons(),
            "drift": None if self.drift is None else self.drift.to_dict(),
            "dc_bias": [asdict(b) for b in self.dc_bias],
            "retune": None if self.retune is None else self.retune.to_dict(),
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@contextmanager
def opened_store(store: OutcomeStore | str | Path,
                 create: bool = False) -> Iterator[OutcomeStore]:
    """The store itself, or one opened from a path/URL for the ``with`` block."""
    if isinstance(store, OutcomeStore):
        yield store
        return
    s = OutcomeStore.open(store, create=create)
    try:
        yield s
    finally:
        s.close()


def open_registry(registry: ModelRegistry | str | Path) -> ModelRegistry:
    """The registry itself, or one opened at a root directory."""
    return registry if isinstance(registry, ModelRegistry) else ModelRegistry(registry)


def drift_check(
    store: OutcomeStore,
    registry: ModelRegistry,
    *,
    window: int = 1000,
    min_samples: int = 100,
    reference_size: int | None = None,
    thresholds: DriftThresholds | None = None,
    baseline: str = "auto",
) -> tuple[DriftReport, str, pd.DataFrame]:
    """Drift report of the promoted version's latest ``window`` outcomes.

    Parameters
    ----------
    store, registry
        The outcome store and the registry.
    window
        Latest outcomes of the promoted version that are judged.
    min_samples
        Fewest outcomes for a verdict (and for a burn-in baseline).
    reference_size
        Burn-in size: the version's earliest outcomes before the window (default
        ``2 * window``); the PSI reference, and the error baseline when ``baseline`` allows.
    thresholds
        Drift thresholds (default :class:`DriftThresholds` with ``min_samples``).
    baseline
        Error baseline: ``"auto"`` (the burn-in's own error when it has at least
        ``min_samples`` outcomes and as many as the window, else the version's recorded
        validation error, else its ``metrics.json``),
        ``"burn-in"`` or ``"validation"`` (the recorded error, else ``metrics.json``).

    Returns
    -------
    report, source, recent
        The report, the source of the error baseline (``"burn-in outcomes"``, ``"registry
        validation"``, ``"metrics.json"`` or ``"none"``) and the window's outcomes;
        ``report.n_recent`` of them, out of ``recent.attrs["n_version"]`` outcomes the version
        has predicted.
    """
    if baseline not in ("auto", "burn-in", "validation"):
        raise GreenSchedError(f"baseline must be 'auto', 'burn-in' or 'validation', got "
                              f"{baseline!r}")
    version = registry.current()
    if version is None:
        raise RegistryError(f"no model version has been promoted in {registry.root}")
    th = thresholds or DriftThresholds(min_samples=min_samples)
    rows = store.query(model_version=version)
    recent = rows.tail(window).reset_index(drop=True)
    recent.attrs["n_version"] = len(rows)
    older = rows.iloc[: len(rows) - len(recent)]
    reference = older.head(reference_size or 2 * window).reset_index(drop=True)
    validation: Any = None
    source = "none"
    metrics = registry.info(version).metrics
    saved = registry.path(version) / "metrics.json"
    if baseline != "validation" and len(reference) >= max(th.min_samples, len(recent)):
        source = "burn-in outcomes"  # detect_drift takes the reference's own error
    elif baseline != "burn-in":
        if isinstance(metrics.get("validation"), Mapping) and metrics["validation"]:
            validation, source = {"validation": metrics["validation"]}, "registry validation"
        elif saved.is_file():
            try:
                validation, source = load_validation_metrics(saved), "metrics.json"
            except GreenSchedError:
                validation = None
    report = detect_drift(recent, reference if len(reference) else None, validation,
                          thresholds=th)
    return report, source, recent


def run_once(
    store: OutcomeStore | str | Path,
    registry: ModelRegistry | str | Path,
    *,
    replay_data: str | Path | pd.DataFrame,
    window: int = 1000,
    min_samples: int = 100,
    reference_size: int | None = None,
    thresholds: DriftThresholds | None = None,
    trigger: str = "drift",
    baseline: str = "auto",
    dc_check: bool = True,
    dc_check_options: Mapping[str, Any] | None = None,
    retune_window: int | None = None,
    retune_every: int | None = None,
    val_fraction: float = 0.2,
    min_improvement: float = 0.0,
    seed: int = 0,
    retune_options: Mapping[str, Any] | None = None,
    state: LoopState | None = None,
) -> LoopCycle:
    """One cycle: drift check of the promoted version, re-tune and promote on drift.

    Parameters
    ----------
    store, registry
        The outcome store and the model registry (objects, or a store path/URL and a registry
        directory).
    replay_data
        The original training data (path or frame) for :func:`~greensched.feedback.retune.
        retune`.
    window
        Outcomes of the promoted version checked for drift.
    min_samples
        Fewest outcomes for a drift verdict.
    reference_size
        Burn-in outcomes used as reference (default ``2 * window``): the version's earliest
        outcomes, a fixed sample, so that outcomes of a slow drift do not move the baseline.
    thresholds
        Drift thresholds (default: :class:`DriftThresholds` with ``min_samples``).
    trigger
        ``"drift"``: re-tune on DRIFT; ``"watch"``: on WATCH or DRIFT.
    baseline
        Error baseline of the drift check (see :func:`drift_check`).
    dc_check, dc_check_options
        Also run the per-DC calibration check (:func:`dc_bias_check`, keyword options); a
        flagged DC makes the verdict DRIFT.
    retune_window
        Latest outcomes (any version) the re-tune uses (default ``window``).
    retune_every
        With a ``state``: new outcomes of the version needed before a rejected re-tune is tried
        again (default ``window``).
    val_fraction, min_improvement, seed
        Passed to :func:`~greensched.feedback.retune.retune`.
    retune_options
        Further keyword arguments of :func:`~greensched.feedback.retune.retune`.
    state
        Loop memory (cool-down after a rejected re-tune); ``None`` for a one-off cycle.
    """
    t0 = time.perf_counter()
    started = _now()
    if trigger not in ("drift", "watch"):
        raise GreenSchedError(f"trigger must be 'drift' or 'watch', got {trigger!r}")
    reg = open_registry(registry)
    with opened_store(store) as s:
        version = reg.current()
        cycle = LoopCycle(started_at=started, version_before=version, version_after=version,
                          action=CycleAction.NO_DRIFT)
        report, source, recent = drift_check(s, reg, window=window, min_samples=min_samples,
                                             reference_size=reference_size,
                                             thresholds=thresholds, baseline=baseline)
        n_version = int(recent.attrs.get("n_version", len(recent)))
        verdict = report.verdict
        if dc_check and verdict is not Verdict.INSUFFICIENT_DATA:
            dc_verdict, cycle.dc_bias = dc_bias_check(recent, **dict(dc_check_options or {}))
            if dc_verdict.severity > verdict.severity:
                verdict = dc_verdict
        cycle.drift, cycle.verdict, cycle.baseline = report, verdict, source
        cycle.n_version_outcomes = n_version
        fire = verdict is Verdict.DRIFT or (trigger == "watch" and verdict is Verdict.WATCH)
        if verdict is Verdict.INSUFFICIENT_DATA:
            cycle.action = CycleAction.INSUFFICIENT_DATA
            cycle.message = (f"{report.n_recent} outcome(s) of {version}; a verdict needs "
                             f"{report.thresholds.min_samples}")
        elif not fire:
            cycle.action = CycleAction.NO_DRIFT
        elif (state is not None and state.attempted_version == version
              and n_version - state.attempted_at_outcomes < (retune_every or window)):
            cycle.action = CycleAction.COOLDOWN
            cycle.message = (f"a re-tune was rejected {n_version - state.attempted_at_outcomes}"
                             f" outcome(s) ago; next try after {retune_every or window}")
        else:
            res = retune(s, reg, replay_data=replay_data, window=retune_window or window,
                         val_fraction=val_fraction, min_improvement=min_improvement, seed=seed,
                         **dict(retune_options or {}))
            cycle.retune = res
            cycle.version_after = reg.current()
            cycle.message = res.describe()
            if res.status is RetuneStatus.PROMOTED:
                cycle.action = CycleAction.PROMOTED
                if state is not None:
                    state.attempted_version, state.attempted_at_outcomes = None, -1
            else:
                cycle.action = CycleAction.REJECTED
                if state is not None:
                    state.attempted_version, state.attempted_at_outcomes = version, n_version
    cycle.elapsed_s = time.perf_counter() - t0
    log.info(cycle.describe())
    return cycle


def run_forever(
    interval_s: float,
    store: OutcomeStore | str | Path,
    registry: ModelRegistry | str | Path,
    *,
    replay_data: str | Path | pd.DataFrame,
    max_cycles: int | None = None,
    stop: threading.Event | None = None,
    on_cycle: Callable[[LoopCycle], None] | None = None,
    **options: Any,
) -> list[LoopCycle]:
    """Run :func:`run_once` every ``interval_s`` seconds until ``stop`` is set or
    ``max_cycles`` cycles have run.

    A cycle that raises is logged and recorded (action ERROR); the loop goes on.  The store is
    opened once (when given as a path) and closed at the end.  Returns the last 100 cycles.

    Parameters
    ----------
    interval_s
        Seconds between the starts of two cycles (> 0).
    store, registry, replay_data
        As in :func:`run_once`.
    max_cycles
        Stop after this many cycles (``None``: until stopped).
    stop
        Event that ends the loop (checked while waiting).
    on_cycle
        Called with each finished cycle.
    options
        Further keyword arguments of :func:`run_once`.
    """
    if not (math.isfinite(interval_s) and interval_s > 0):
        raise GreenSchedError(f"interval_s must be positive, got {interval_s!r}")
    if max_cycles is not None and max_cycles < 1:
        raise GreenSchedError(f"max_cycles must be >= 1, got {max_cycles!r}")
    stop = stop or threading.Event()
    state = LoopState()
    cycles: list[LoopCycle] = []
    reg = open_registry(registry)
    with opened_store(store) as s:
        n = 0
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                cycle = run_once(s, reg, replay_data=replay_data, state=state, **options)
            except Exception as exc:  # a standing loop survives one bad cycle
                log.exception("feedback cycle failed")
                cycle = LoopCycle(started_at=_now(), version_before=reg.current(),
                                  version_after=reg.current(), action=CycleAction.ERROR,
                                  message=f"{type(exc).__name__}: {exc}")
            cycles.append(cycle)
            del cycles[:-_KEEP_CYCLES]
            if on_cycle is not None:
                on_cycle(cycle)
            n += 1
            if max_cycles is not None and n >= max_cycles:
                break
            stop.wait(max(0.0, interval_s - (time.monotonic() - t0)))
    return cycles
