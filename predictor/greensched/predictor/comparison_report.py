"""Markdown of a predictor comparison (:func:`greensched.predictor.comparison.run_comparison`).

:func:`write_comparison_markdown` writes the tables (random split per size, held-out hours,
leave-one-DC-out), the calibrated p10–p90 coverage per target and DC, each calibrated
coverage with the test set's own sampling error, the transfer tests' re-calibration on the
shifted domain, a "who wins" line per table and a reading computed from the numbers
(:func:`computed_notes`), followed by any hand-written notes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from greensched.predictor.calibration import NOMINAL_COVERAGE, ideal_coverage_sd

__all__ = ["COVERAGE_TOLERANCE", "LORA_NOTE_KEYS", "computed_notes",
           "write_comparison_markdown"]

#: Training-history keys of a LoRA fit shown in the notes column when present (written by
#: :mod:`greensched.predictor.lora_train`; read defensively, older fits lack some).
LORA_NOTE_KEYS = ("beat_frozen", "frozen_val_metric", "best_val_metric", "best_val_loss",
                  "start_val_loss", "selection_metric", "restored_start")
#: The issue's acceptance band for calibrated coverage: 0.80 ± this.
COVERAGE_TOLERANCE = 0.03
_TARGET_NAMES = {"energy_kwh": "energy", "service_s": "service"}


def _pct(x: Any, digits: int = 2) -> str:
    if not isinstance(x, int | float) or not math.isfinite(x):
        return "–"
    return f"{100 * x:.{digits}f} %"


def _num(x: Any) -> str:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return str(x)
    return f"{x:.4g}" if math.isfinite(x) else "–"


def _cover(t: dict[str, Any]) -> str:
    """``raw → calibrated ± se`` of one target's result."""
    se = t.get("coverage_se", math.nan)
    tail = f" ± {se:.3f}" if isinstance(se, int | float) and math.isfinite(se) else ""
    return f"{t['coverage_raw']:.3f} → {t['coverage']:.3f}{tail}"


def _metric(r: dict[str, Any], key: str) -> str:
    """A validation selection metric: a percentage for ``"mape"`` (3 decimals, as the fit's log
    line: fine-tuned and frozen often differ in the third), else a number."""
    x = r.get(key)
    return _pct(x, 3) if r.get("selection_metric") == "mape" else _num(x)


def _lora_note(r: dict[str, Any]) -> str:
    parts = [f"best epoch {r.get('best_epoch')} of {r.get('epochs')}",
             f"adapter norm {_num(r.get('adapter_norm', 0.0))}"]
    if isinstance(r.get("beat_frozen"), bool):
        parts.append("beat frozen" if r["beat_frozen"] else "did not beat frozen")
    if r.get("best_val_metric") is not None and r.get("frozen_val_metric") is not None:
        parts.append(f"val {r.get('selection_metric') or 'metric'} "
                     f"{_metric(r, 'best_val_metric')} vs frozen "
                     f"{_metric(r, 'frozen_val_metric')}")
    if r.get("restored_start") is True:
        parts.append("frozen start restored")
    return ", ".join(parts)


def _row(name: str, r: dict[str, Any], action: bool = True) -> str:
    e, s = r["energy_kwh"], r["service_s"]
    cells = [name, str(r["n_train"]), _pct(e["mape"]), _pct(s["mape"]), f"{e['rmse']:.3g}",
             f"{s['rmse']:.3g}", _cover(e), _cover(s)]
    if action:
        cells.append(_pct(r.get("action_accuracy", math.nan)))
    cells += [f"{r['fit_seconds']:.1f}", f"{r['train_samples_per_s']:.0f}",
              f"{r['jobs_per_s']:.0f}"]
    if "best_epoch" in r and r.get("history_variant") == "lora":
        cells.append(_lora_note(r))
    elif "n_boosters" in r:
        cells.append(f"{r['n_boosters']} boosters")
    else:
        cells.append(str(r.get("history_variant", "")))
    return "| " + " | ".join(cells) + " |"


_HEAD = ("| variant | train jobs | energy MAPE | service MAPE | energy RMSE (kWh) "
         "| service RMSE (s) | energy p10–p90 cover (raw → calibrated ± test SE) "
         "| service cover (raw → calibrated ± test SE) |")


def _winners(title: str, by: dict[str, dict[str, Any]]) -> str:
    """One line naming the best variant per metric of a table."""
    if len(by) < 2:
        return ""

    def best(score: Callable[[dict[str, Any]], float]) -> str:
        """The lowest-scoring variant; exact ties (e.g. a fine-tuned model that kept its
        frozen start) are all named, joined by ' = '."""
        vals = {v: float(score(r)) for v, r in by.items()}
        low = min(vals.values())
        return " = ".join(v for v, x in vals.items() if x == low)

    picks = {
        "energy MAPE": best(lambda r: r["energy_kwh"]["mape"]),
        "service MAPE": best(lambda r: r["service_s"]["mape"]),
        "calibrated coverage closest to 0.80": best(lambda r: abs(
            r["energy_kwh"]["coverage"] - 0.8) + abs(r["service_s"]["coverage"] - 0.8)),
        "training time": min(by, key=lambda v: by[v]["fit_seconds"]),
        "inference speed": max(by, key=lambda v: by[v]["jobs_per_s"]),
    }
    return f"- {title}: " + "; ".join(f"{k}: **{v}**" for k, v in picks.items()) + "."


def _per_dc_table(results: dict[str, Any]) -> list[str]:
    """Calibrated coverage per (variant, size, target) and DC, random split and hours."""
    dcs = [str(d) for d in results["dcs"]]
    rows: list[tuple[str, dict[str, Any]]] = [
        (f"{v} | {n}", r) for n, by in results["random"].items() for v, r in by.items()]
    if "hours" in results:
        a, b = results["hours"]["range"]
        rows += [(f"{v} (hours {a}–{b - 1} held out) | {r['n_train']}", r)
                 for v, r in results["hours"]["results"].items()]
    if not rows:
        return []
    n = int(results["config"]["test_jobs"])
    sd = ideal_coverage_sd(n)
    lines = ["", "## Calibrated p10–p90 coverage per target and DC", "",
             f"Test set of the random split: {n} jobs, so each DC's coverage of a perfectly "
             f"calibrated model has sd {sd:.3f} (95 % within ±{1.96 * sd:.3f} of "
             f"{NOMINAL_COVERAGE:.2f}); cells outside 0.80 ± {COVERAGE_TOLERANCE:.2f} are bold.",
             "", "| variant | train jobs | target | " + " | ".join(dcs) + " | all |",
             "|" + "---|" * (len(dcs) + 4)]
    for label, r in rows:
        for t, name in _TARGET_NAMES.items():
            by = r[t].get("coverage_by_dc", {})
            cells = [_flag(by.get(d, math.nan)) for d in dcs] + [_flag(r[t]["coverage"])]
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
    return lines


def _flag(x: Any) -> str:
    if not isinstance(x, int | float) or not math.isfinite(x):
        return "–"
    txt = f"{x:.3f}"
    return f"**{txt}**" if abs(x - NOMINAL_COVERAGE) > COVERAGE_TOLERANCE + 1e-12 else txt


def _recal_table(by: dict[str, dict[str, Any]]) -> list[str]:
    recs = {v: r["recalibrated"] for v, r in by.items() if r.get("recalibrated")}
    if not recs:
        return []
    first = next(iter(recs.values()))
    k = first["n_recalibrate"]
    lines = ["", f"Re-calibrated on the shifted domain: {k} of its test jobs re-estimate the "
             "conformal offsets of each model's raw quantiles, scored on the other "
             f"{first['n_scored']}: the first {k} in time order (what an online "
             f"re-calibration has) or {k} drawn at random (exchangeable with the rest: the "
             "best case).  Coverage ± test SE; \"training domain\" is the model's own "
             "calibration on the same remaining jobs.  A calibration on "
             f"{k} jobs is itself uncertain: sd ≈ {ideal_coverage_sd(k):.3f} between draws.",
             "",
             "| variant | target | training domain | first in time | training domain "
             "| random |", "|---|---|---|---|---|---|"]

    def cell(c: dict[str, float], key: str) -> str:
        return f"{c[key]:.3f} ± {c[key + '_se']:.3f}"

    for v, rc in recs.items():
        for t, name in _TARGET_NAMES.items():
            rnd = rc.get("random", {}).get(t)
            tail = [cell(rnd, "before"), cell(rnd, "after")] if rnd else ["–", "–"]
            lines.append(f"| {v} | {name} | {cell(rc[t], 'before')} | "
                         f"{cell(rc[t], 'after')} | " + " | ".join(tail) + " |")
    return lines


def _output_unknown_table(random: dict[Any, dict[str, Any]]) -> list[str]:
    """The random split's models scored again with every test job's output length hidden."""
    rows = [(n, v, r) for n, by in random.items() for v, r in by.items() if "output_unknown" in r]
    if not rows:
        return []
    lines = ["", "### Output length unknown (what the online assigner knows on arrival)", "",
             "The same models and test jobs, with every job's `output_tokens` hidden (the "
             "models trained with 20 % of outputs hidden for this case; the truths keep the "
             "realised lengths, so the error includes what the length alone decides).", "",
             "| variant | train jobs | energy MAPE | service MAPE | energy cover (± SE) "
             "| service cover (± SE) | action acc. |", "|" + "---|" * 7]
    for n, v, r in rows:
        u = r["output_unknown"]
        e, s = u["energy_kwh"], u["service_s"]
        lines.append(f"| {v} | {n} | {_pct(e['mape'])} | {_pct(s['mape'])} | "
                     f"{e['coverage']:.3f} ± {e['coverage_se']:.3f} | "
                     f"{s['coverage']:.3f} ± {s['coverage_se']:.3f} | "
                     f"{_pct(u.get('action_accuracy', math.nan))} |")
    return lines


def _off(t: dict[str, Any]) -> bool:
    return abs(float(t["coverage"]) - NOMINAL_COVERAGE) > COVERAGE_TOLERANCE + 1e-12


def computed_notes(results: dict[str, Any]) -> list[str]:
    """The reading of a comparison, computed from its numbers (calibration, coverage band,
    transfer, LoRA fine-tuning)."""
    notes: list[str] = []
    cells = [(v, n, t, r[t]) for n, by in results["random"].items() for v, r in by.items()
             for t in _TARGET_NAMES]
    on = {r.get("calibrated_on", {}).get("rows") for by in results["random"].values()
          for r in by.values()} - {None}
    if on:
        notes.append(f"- **Calibration rows**: `{', '.join(sorted(on))}` "
                     "(`PredictorConfig.calibrate_on`; `docs/predictor-training.md`).")
    if cells:
        inside = [c for c in cells if not _off(c[3])]
        outside = "; ".join(f"{v} at {n} jobs, {_TARGET_NAMES[t]}: {c['coverage']:.3f}"
                            for v, n, t, c in cells if _off(c))
        n = int(results["config"]["test_jobs"])
        per_dc = [float(x) for *_, c in cells for x in c.get("coverage_by_dc", {}).values()]
        dc_in = sum(abs(x - NOMINAL_COVERAGE) <= COVERAGE_TOLERANCE + 1e-12 for x in per_dc)
        notes.append(
            f"- **Random split coverage**: {len(inside)} of {len(cells)} calibrated p10–p90 "
            f"coverages (pooled over DCs) lie within 0.80 ± {COVERAGE_TOLERANCE:.2f}"
            + (f" (outside: {outside})" if outside else "")
            + f"; per DC, {dc_in} of {len(per_dc)}.  On {n} test jobs the per-DC sampling "
            f"sd of a perfectly calibrated model is {ideal_coverage_sd(n):.3f} (it was 0.023 "
            "with the old 300-job test set).")
    for key, title in (("hours", "held-out hours"), ("leave_one_dc_out", "unseen DC")):
        if key not in results:
            continue
        by = results[key]["results"]
        covs = ", ".join(f"{v} {r['energy_kwh']['coverage']:.3f} / "
                         f"{r['service_s']['coverage']:.3f}" for v, r in by.items())
        missed = [v for v, r in by.items() if _off(r["energy_kwh"]) or _off(r["service_s"])]
        line = (f"- **Transfer, {title}** (energy / service calibrated coverage): {covs}.  "
                "Split-conformal calibration holds for test rows exchangeable with the "
                "calibration rows; a shifted domain is not, so it carries no guarantee there")
        line += (f", and it misses 0.80 ± {COVERAGE_TOLERANCE:.2f} for {', '.join(missed)}."
                 if missed else "; here it happened to stay within the band.")
        recs = {v: r["recalibrated"] for v, r in by.items() if r.get("recalibrated")}
        if recs:
            k = next(iter(recs.values()))["n_recalibrate"]
            line += (f"  Re-calibrating on the first {k} shifted jobs in time: " + ", ".join(
                f"{v} {rc['energy_kwh']['after']:.3f} / {rc['service_s']['after']:.3f}"
                for v, rc in recs.items()) + " on the rest")
            rnd = {v: rc["random"] for v, rc in recs.items() if rc.get("random")}
            if rnd:
                line += (f"; on {k} random ones: " + ", ".join(
                    f"{v} {rc['energy_kwh']['after']:.3f} / {rc['service_s']['after']:.3f}"
                    for v, rc in rnd.items()))
            line += (f" (a {k}-job calibration has sd ≈ {ideal_coverage_sd(k):.3f} by "
                     "itself).  A few labelled rows of the new domain help only when they are "
                     "representative of it, and the first hours of a shift need not be.")
        notes.append(line)
    for n, by in results["random"].items():
        for v, r in by.items():
            if r.get("history_variant") != "lora" or not isinstance(r.get("beat_frozen"), bool):
                continue
            verdict = "beat" if r["beat_frozen"] else "did **not** beat"
            notes.append(f"- **{v} at {n} jobs** {verdict} its frozen start on validation "
                         f"{r.get('selection_metric') or 'metric'} "
                         f"({_metric(r, 'best_val_metric')} vs "
                         f"{_metric(r, 'frozen_val_metric')}; best epoch "
                         f"{r.get('best_epoch')}).")
    return notes


def write_comparison_markdown(results: dict[str, Any], path: str | Path, *,
                              command: str, dataset: str, notes: Sequence[str] = ()) -> Path:
    """Write the comparison of :func:`~greensched.predictor.comparison.run_comparison` as
    Markdown to ``path``: tables, per-DC coverage, who wins, the computed reading and then
    ``notes`` (hand-written lines, verbatim)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    cfg = results["config"]
    load = results.get("load_average", {})
    load_txt = (f"; load average (1/5/15 min) {load['start']} at the start, {load['end']} at "
                "the end" if load.get("start") and load.get("end") else "")
    acc = results.get("accelerator", "none")
    lines = [
        "# Predictor comparison: fine-tuned LoRA, frozen base + head, XGBoost",
        "",
        f"Regenerate: `{command}`",
        "",
        f"Data: `{dataset}` ({results['n_rows']} jobs, {len(results['dcs'])} DCs).  One random "
        f"split (seed {cfg['seed']}): {cfg['test_jobs']} test jobs, training sets are nested "
        "prefixes of the rest, so every variant trains on the same rows and is tested on the "
        "same rows.  Each model holds out 10 % of its training rows for early stopping and "
        "10 % for calibration; the split-conformal p10/p90 offsets are estimated on the rows "
        "named in the reading.  Coverage is the share of test truths inside [p10, p90] "
        "(nominal 0.80), raw → calibrated, ± the test set's own standard error (jobs as "
        f"clusters of their DCs).  Machine: {results['machine']}, accelerator: {acc}; wall "
        f"time {results['total_seconds']:.0f} s{load_txt}.",
        "",
        "## Random split",
        "",
        _HEAD + " action acc. | fit s | train samples/s | infer jobs/s | notes |",
        "|" + "---|" * 13,
    ]
    for by in results["random"].values():
        for v, r in by.items():
            lines.append(_row(v, r))
    if results.get("skipped"):
        lines += ["", "Not run: " + "; ".join(results["skipped"]) + "."]
    lines += _output_unknown_table(results["random"])
    if "hours" in results:
        a, b = results["hours"]["range"]
        by = results["hours"]["results"]
        n_test = next(iter(by.values()))["n_test"] if by else 0
        lines += ["", f"## Held-out hours {a}–{b - 1}", "",
                  f"Trained on {cfg['transfer_train_jobs']} jobs of the other hours; tested on "
                  f"{n_test} jobs of hours {a}–{b - 1}.", "",
                  _HEAD + " action acc. | fit s | train samples/s | infer jobs/s | notes |",
                  "|" + "---|" * 13]
        lines += [_row(v, r) for v, r in by.items()]
        lines += _recal_table(by)
    if "leave_one_dc_out" in results:
        lo = results["leave_one_dc_out"]
        desc = ", ".join(lo["descriptors"]) or "none"
        lines += ["", f"## Leave one DC out: {lo['dc']}", "",
                  f"Trained on {cfg['transfer_train_jobs']} jobs without any column of "
                  f"`{lo['dc']}`, with `dc_identity=False` (no DC one-hot, pooled target "
                  f"scaling); scored on `{lo['dc']}` only, so the errors below are each "
                  f"predictor's error on the unseen DC.  DC descriptors in the features and "
                  f"the prompt: {desc}.", "",
                  _HEAD + " fit s | train samples/s | infer jobs/s | notes |",
                  "|" + "---|" * 12]
        lines += [_row(v, r, action=False) for v, r in lo["results"].items()]
        lines += _recal_table(lo["results"])
    lines += _per_dc_table(results)
    wins = [_winners(f"random split, {n} jobs", by) for n, by in results["random"].items()]
    if "hours" in results:
        wins.append(_winners("held-out hours", results["hours"]["results"]))
    if "leave_one_dc_out" in results:
        wins.append(_winners("leave one DC out", results["leave_one_dc_out"]["results"]))
    lines += ["", "## Who wins (computed from the tables above)", "", *filter(None, wins)]
    lines += ["", "## Reading", "", "Computed from the numbers above:", "",
              *computed_notes(results)]
    if notes:
        lines += ["", *notes]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p
