"""Bodies of the predictor commands (``greensched train``, ``predict``, ``evaluate-predictor``).

They take plain arguments, do the work, write their outputs and return what they wrote; the CLI
module registers them and prints.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from greensched.cli._app import (
    JOBS_HELP,
    JsonOption,
    app,
    console,
    print_json,
    say_console,
)
from greensched.errors import GreenSchedError
from greensched.jobs import load_jobs
from greensched.predictor.base import PRED_VARS
from greensched.predictor.checkpoint import load_predictor
from greensched.predictor.dataset import TARGETS, dataset_dcs, read_dataset
from greensched.predictor.evaluation import format_pct, write_evaluation
from greensched.predictor.factory import MODELS, make_predictor
from greensched.scenario import load_scenario, save_coefficients

__all__ = [
    "MODELS",
    "evaluate_command",
    "make_predictor",
    "predict_command",
    "train_command",
    "write_evaluation",
]

log = logging.getLogger(__name__)

def train_command(
    data: Path,
    model: str,
    base_model: str | None,
    epochs: int,
    out: Path,
    seed: int = 0,
    *,
    val_fraction: float = 0.1,
    max_rows: int | None = None,
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Train a predictor on a dataset and save it to ``out``.

    Parameters
    ----------
    data
        Dataset (Parquet or CSV, ``docs/dataset-format.md``).
    model
        ``"lora"`` or ``"xgboost"``.
    base_model
        Local Hugging Face model directory for LoRA (default: the packaged MiniLM).
    epochs
        LoRA training epochs (ignored by XGBoost, which stops early on its own).
    out
        Model directory to write.
    seed
        Seed of split, masking and training.
    val_fraction
        Held-out share for early stopping and validation metrics.
    max_rows
        Use only the first ``max_rows`` rows (quick runs).
    progress
        Show a progress bar (LoRA).
    options
        Further config fields of the chosen predictor.

    Returns
    -------
    dict
        The model's ``metrics_`` (also written to ``out/metrics.json``).
    """
    df, meta = read_dataset(data)
    if max_rows is not None:
        df = df.iloc[:max_rows]
    options = {"progress": progress, **options}
    predictor = make_predictor(model, base_model=base_model, epochs=epochs if model == "lora"
                               else None, seed=seed, val_fraction=val_fraction, **options)
    predictor.fit(df, meta=meta)
    predictor.save(out)
    log.info("saved %s model to %s", model, out)
    return predictor.metrics_


def predict_command(
    model: Path,
    scenario: Path,
    jobs: Path | None,
    out: Path | None,
    coefficients_out: Path | None,
) -> dict[str, Path]:
    """Predict jobs of a scenario (one row per job and DC) and/or the planner coefficients.

    Writes ``out`` (CSV: ``job_id, dc`` and the variables of
    :data:`~greensched.predictor.base.PRED_VARS`) when ``jobs`` and ``out`` are given, and
    ``coefficients_out`` (``coefficients.csv`` format: hour, dc, query_type,
    energy_kwh_per_query, proc_delay_s_per_query, the delay without network RTT) when given.
    Returns the written paths by name.
    """
    if out is None and coefficients_out is None:
        raise GreenSchedError("nothing to write: give --out (with --jobs) and/or "
                              "--coefficients-out")
    if out is not None and jobs is None:
        raise GreenSchedError("--out needs --jobs JOBS.csv (the jobs to predict)")
    scen = load_scenario(scenario)
    predictor = load_predictor(model, dcs=scen.dcs)
    written: dict[str, Path] = {}
    if out is not None and jobs is not None:
        table = load_jobs(jobs, scen)
        pred = predictor.predict_jobs(table, scen)
        long = pred.to_dataframe().reset_index()[["job", "dc", *PRED_VARS]]
        long = long.rename(columns={"job": "job_id"})
        out.parent.mkdir(parents=True, exist_ok=True)
        long.to_csv(out, index=False)
        written["predictions"] = out
    if coefficients_out is not None:
        written["coefficients"] = save_coefficients(predictor.coefficients(scen), coefficients_out)
    return written


def evaluate_command(model: Path, data: Path, out: Path) -> dict[str, Any]:
    """Evaluate a saved model on a test dataset; writes ``out/report.md``, ``out/metrics.json``
    and ``out/pred_vs_actual_<target>.png``; returns the metrics (see
    :mod:`greensched.predictor.metrics`)."""
    df, meta = read_dataset(data)
    predictor = load_predictor(model, dcs=dataset_dcs(df, meta))
    return write_evaluation(predictor, df, out, name=str(model))


def fleet_descriptors(scenario_dir: Path | None) -> Any:
    """Per (dc, query_type) descriptors of the twin's serving fleet (GPU memory, model size,
    GPUs per replica) for :func:`greensched.predictor.comparison.add_dc_descriptors`."""
    from greensched.defaults import default_scenario
    from greensched.eval.fleet import GPU_MEMORY_GB, fleet_for

    scen = load_scenario(scenario_dir) if scenario_dir is not None else default_scenario()
    t = fleet_for(scen).table
    return t.assign(gpu_memory_gb=[GPU_MEMORY_GB[g] for g in t["gpu"]],
                    model_params_b=t["params_b"].astype(float),
                    gpus_per_replica=t["gpus_per_replica"].astype(float))


#: Built-in values of the ``--compare`` options (``None`` in the signature means "not given":
#: the preset's value, else this).
COMPARE_DEFAULTS: dict[str, Any] = {
    "sizes": "1500,5000,20000", "max_rows": "", "test_jobs": None, "transfer_jobs": 1500,
    "hours": "18-24", "lora_epochs": 1, "lora_max_steps": None, "recalibrate_jobs": 200,
    "threads": None,
}


def compare_settings(preset: str | None, given: dict[str, Any]) -> dict[str, Any]:
    """The ``--compare`` settings: ``given`` (options set on the command line; ``None`` =
    not given) over the preset's values over :data:`COMPARE_DEFAULTS`."""
    from greensched.predictor.comparison import PRESETS

    if preset is not None and preset not in PRESETS:
        raise GreenSchedError(f"--preset {preset!r} is not known; choose one of "
                              f"{', '.join(PRESETS)}")
    base = {**COMPARE_DEFAULTS, **(PRESETS[preset] if preset else {})}
    return {k: (given[k] if given.get(k) is not None else v) for k, v in base.items()}


def compare_command_line(variants: str, data: Path, out: Path, preset: str | None,
                         given: dict[str, Any], extra: str = "") -> str:
    """The command line that regenerates a comparison: the preset plus the options given
    explicitly, or (without a preset) every setting."""
    import shlex

    head = (f"greensched evaluate-predictor --compare {variants} --data {data} --out {out}"
            + (f" --preset {preset}" if preset else ""))
    shown = ({k: v for k, v in given.items() if v is not None} if preset
             else compare_settings(None, given))
    for k, v in shown.items():
        if v is not None:
            head += f" --{k.replace('_', '-')} {shlex.quote(str(v))}"
    return head + extra


def compare_command(data: Path, out: Path, variants: str, *, sizes: str = "1500,5000,20000",
                    max_rows: str = "", test_jobs: int | None = None,
                    transfer_jobs: int = 1500,
                    hours: str = "18-24", leave_out_dc: str | None = None,
                    describe_dcs: bool = True, scenario: Path | None = None,
                    lora_epochs: int = 1, lora_max_steps: int | None = None,
                    base_model: str | None = None, seed: int = 0, threads: int | None = None,
                    recalibrate_jobs: int = 200, calibrate_on: str | None = None,
                    notes: Path | None = None, command: str = "", say: Any = None) -> Path:
    """``evaluate-predictor --compare``: :func:`greensched.predictor.comparison.run_comparison`
    on a dataset; writes ``out/predictor_comparison.md`` and ``.json``; returns the report.
    ``notes``: a Markdown file appended verbatim to the report's reading."""
    import json

    from greensched.predictor.calibration import CalibrationRows
    from greensched.predictor.comparison import (
        ComparisonConfig,
        add_dc_descriptors,
        run_comparison,
        write_comparison_markdown,
    )

    def ints(text: str, what: str) -> tuple[int, ...]:
        try:
            return tuple(int(x) for x in text.split(",") if x.strip())
        except ValueError as exc:
            raise GreenSchedError(f"{what} must be comma-separated integers, got {text!r}"
                                  ) from exc

    caps: dict[str, int] = {}
    for item in filter(None, (x.strip() for x in max_rows.split(","))):
        name, _, n = item.partition("=")
        caps[name.strip()] = ints(n, "--max-rows values")[0]
    a, _, b = hours.partition("-")
    try:
        hour_range = (int(a), int(b)) if hours else None
    except ValueError as exc:
        raise GreenSchedError(f"--hours must be START-STOP (e.g. 18-24) or '', got {hours!r}"
                              ) from exc
    note_lines: list[str] = []
    if notes is not None:
        if not notes.is_file():
            raise GreenSchedError(f"--notes {str(notes)!r}: no such file")
        note_lines = notes.read_text("utf-8").rstrip("\n").splitlines()
    df, meta = read_dataset(data)
    if describe_dcs:
        df = add_dc_descriptors(df, fleet_descriptors(scenario))
    common = ({"calibrate_on": CalibrationRows.parse(calibrate_on).value}
              if calibrate_on else {})
    lora = {"epochs": lora_epochs, "progress": False, "base_model": base_model,
            **({"max_steps": lora_max_steps} if lora_max_steps else {}),
            **({"num_threads": threads} if threads else {}), **common}
    xgb = {**({"n_jobs": threads} if threads else {}), **common}
    cfg = ComparisonConfig(
        variants=tuple(v.strip() for v in variants.split(",") if v.strip()),
        sizes=ints(sizes, "--sizes"), max_rows=caps, test_jobs=test_jobs,
        transfer_train_jobs=transfer_jobs, hour_range=hour_range, leave_out_dc=leave_out_dc,
        recalibrate_jobs=recalibrate_jobs,
        options={"lora": lora, "lora-frozen": dict(lora), "xgboost": xgb}, seed=seed)
    say = say if say is not None else console
    results = run_comparison(df, cfg, report=lambda line: say.print(line))
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictor_comparison.json").write_text(
        json.dumps(results, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    about = ", ".join(f"{k} {meta[k]}" for k in ("scenario", "seed") if k in meta)
    given = {"sizes": sizes, "max_rows": max_rows, "test_jobs": test_jobs,
             "transfer_jobs": transfer_jobs, "hours": hours, "lora_epochs": lora_epochs,
             "lora_max_steps": lora_max_steps, "recalibrate_jobs": recalibrate_jobs,
             "threads": threads}
    return write_comparison_markdown(
        results, out / "predictor_comparison.md",
        command=command or compare_command_line(variants, data, out, None, given),
        dataset=f"{data}" + (f" ({about})" if about else ""), notes=note_lines)


def summary_line(metrics: dict[str, Any]) -> str:
    """One line with the pooled energy/service MAPE and action accuracy of a metrics dict."""
    parts = []
    src = metrics.get("validation", metrics)
    for t in TARGETS:
        m = src.get(t, {})
        m = m.get("all", m)
        if "mape" in m:
            parts.append(f"{t} MAPE {format_pct(float(m['mape']))}")
    acc = src.get("action_accuracy")
    if acc is not None and np.isfinite(acc):
        parts.append(f"action accuracy {format_pct(float(acc))}")
    return ", ".join(parts)


# ----------------------------------------------------------------------------------------------
# typer commands
# ----------------------------------------------------------------------------------------------

@app.command()
def train(
    data: Annotated[Path, typer.Option(help="Training dataset (greensched simulate --dataset).")],
    out: Annotated[Path, typer.Option(help="Model directory to write.")],
    model: Annotated[str, typer.Option(help="lora | xgboost")] = "xgboost",
    base_model: Annotated[
        str | None, typer.Option(help="Hugging Face model path (default: all-MiniLM-L6-v2).")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 3,
    seed: int = 0,
    val_fraction: Annotated[float, typer.Option(help="Validation share for early stopping.")] = 0.1,
    max_rows: Annotated[int | None, typer.Option(help="Use at most this many rows.")] = None,
    freeze_base: Annotated[bool, typer.Option(
        "--freeze-base", help="LoRA: keep the base model frozen, train the heads only "
        "(variant 'frozen'; default: adapters fine-tuned with the heads).")] = False,
    lora_layers: Annotated[int | None, typer.Option(
        min=1, help="LoRA: adapt the top N transformer layers (default 2).")] = None,
    json_out: JsonOption = False,
) -> None:
    """Train an energy and service-time predictor (LoRA transformer or XGBoost).

    --json: {model, data, out, variant, metrics} (metrics: the model's metrics.json:
    validation errors per target, history, ...); progress bars go to stderr.
    """

    extra: dict[str, Any] = {}
    if model == "lora":
        extra["freeze_base"] = freeze_base
        if lora_layers is not None:
            extra["lora_layers"] = lora_layers
    elif freeze_base or lora_layers is not None:
        raise GreenSchedError("--freeze-base and --lora-layers apply to --model lora only")
    metrics = train_command(data, model, base_model, epochs, out, seed,
                            val_fraction=val_fraction, max_rows=max_rows, **extra)
    variant = metrics.get("history", {}).get("variant")
    if json_out:
        print_json({"model": model, "data": data, "out": out, "variant": variant,
                    "metrics": metrics})
        return
    if variant:
        console.print(f"LoRA variant: {variant}")
    console.print(summary_line(metrics))
    console.print(f"wrote {out}")


@app.command()
def predict(
    model: Annotated[Path, typer.Option(help="Model directory (greensched train --out).")],
    scenario: Annotated[Path, typer.Option(help="Scenario directory.")],
    jobs: Annotated[Path | None, typer.Option(help=JOBS_HELP)] = None,
    out: Annotated[Path | None, typer.Option(help="Predictions CSV (one row per job and DC).")] = (
        None
    ),
    coefficients_out: Annotated[
        Path | None, typer.Option(help="Write planner coefficients (coefficients.csv).")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Predict per-job energy and service time, or the planner's coefficients.

    --json: {model, scenario, files: {predictions, coefficients}} (the paths written).
    """

    written = predict_command(model, scenario, jobs, out, coefficients_out)
    if json_out:
        print_json({"model": model, "scenario": scenario, "files": written})
        return
    for name, path in written.items():
        console.print(f"wrote {name}: {path}")


@app.command("evaluate-predictor")
def evaluate_predictor(
    data: Annotated[Path, typer.Option(help="Test dataset (with --compare: all the data).")],
    out: Annotated[Path, typer.Option(help="Report directory.")],
    model: Annotated[Path | None, typer.Option(help="Model directory.")] = None,
    compare: Annotated[str | None, typer.Option(
        help="Train and compare variants on one split instead, e.g. lora,lora-frozen,xgboost."
    )] = None,
    preset: Annotated[str | None, typer.Option(
        help="--compare: named settings; 'report' = those of reports/predictor_comparison.md "
        "(sizes 1500,5000,20000 for every variant, 2000 test jobs, 1500 transfer jobs, "
        "hours 18-24, 6 LoRA epochs capped at 1000 steps, 2 threads); options given "
        "explicitly override it.")] = None,
    sizes: Annotated[str | None, typer.Option(
        help="--compare: training sizes [1500,5000,20000].")] = None,
    max_rows: Annotated[str | None, typer.Option(
        help="--compare: largest size per variant, e.g. lora=5000,lora-frozen=5000.")] = None,
    test_jobs: Annotated[int | None, typer.Option(
        min=10, help="--compare: test jobs [2000, at most a fifth of the data].")] = None,
    transfer_jobs: Annotated[int | None, typer.Option(
        min=10, help="--compare: training jobs of the transfer tests [1500].")] = None,
    hours: Annotated[str | None, typer.Option(
        help="--compare: held-out test hours START-STOP (stop exclusive) [18-24]; '' skips."
    )] = None,
    leave_out_dc: Annotated[str | None, typer.Option(
        help="--compare: the DC left out (default the last; '' skips).")] = None,
    describe_dcs: Annotated[bool, typer.Option(
        help="--compare: add the fleet's DC descriptors (GPU memory, model size, GPUs per "
        "replica) from --scenario (default: the embedded one).")] = True,
    scenario: Annotated[Path | None, typer.Option(help="--compare: scenario of the data.")] = None,
    lora_epochs: Annotated[int | None, typer.Option(
        min=1, help="--compare: LoRA epochs [1].")] = None,
    lora_max_steps: Annotated[int | None, typer.Option(
        min=1, help="--compare: cap on LoRA fine-tuning steps (per fit).")] = None,
    base_model: Annotated[str | None, typer.Option(help="--compare: LoRA base model.")] = None,
    threads: Annotated[int | None, typer.Option(
        min=1, help="--compare: torch and XGBoost threads (default: their own).")] = None,
    recalibrate_jobs: Annotated[int | None, typer.Option(
        min=0, help="--compare: transfer tests also re-calibrate on the first N shifted jobs "
        "[200]; 0 skips.")] = None,
    calibrate_on: Annotated[str | None, typer.Option(
        help="--compare: calibration rows of every model: validation+calibration (default) "
        "| calibration | out-of-fold (5 more fits per model).")] = None,
    notes: Annotated[Path | None, typer.Option(
        help="--compare: Markdown file appended to the report's reading.")] = None,
    seed: int = 0,
    json_out: JsonOption = False,
) -> None:
    """RMSE, MAPE, R², quantile coverage and action accuracy on a test set, with plots; or,
    with --compare, a fair side-by-side of predictor variants (reports/predictor_comparison.md).

    --json: {model, data, out, report, metrics} (metrics.json); with --compare {data, out,
    report, results} (results: predictor_comparison.json).
    """

    if compare:
        given = {"sizes": sizes, "max_rows": max_rows, "test_jobs": test_jobs,
                 "transfer_jobs": transfer_jobs, "hours": hours, "lora_epochs": lora_epochs,
                 "lora_max_steps": lora_max_steps, "recalibrate_jobs": recalibrate_jobs,
                 "threads": threads}
        opts = compare_settings(preset, given)
        extra = "".join(f" --{k.replace('_', '-')} {v}" for k, v in (
            ("leave-out-dc", leave_out_dc), ("base-model", base_model),
            ("calibrate-on", calibrate_on), ("notes", notes), ("scenario", scenario))
            if v is not None)
        extra += (" --no-describe-dcs" if not describe_dcs else "") + (
            f" --seed {seed}" if seed else "")
        path = compare_command(data, out, compare, **opts, leave_out_dc=leave_out_dc,
                               describe_dcs=describe_dcs, scenario=scenario,
                               base_model=base_model, seed=seed,
                               calibrate_on=calibrate_on, notes=notes,
                               command=compare_command_line(compare, data, out, preset, given,
                                                            extra),
                               say=say_console(json_out))
        if json_out:
            import json

            results = json.loads((out / "predictor_comparison.json").read_text("utf-8"))
            print_json({"data": data, "out": out, "report": path, "results": results})
            return
        console.print(f"wrote {path}")
        return
    if preset is not None:
        raise GreenSchedError("--preset applies to --compare only")
    if model is None:
        raise GreenSchedError("give --model DIR (or --compare VARIANTS)")
    metrics = evaluate_command(model, data, out)
    if json_out:
        print_json({"model": model, "data": data, "out": out, "report": out / "report.md",
                    "metrics": metrics})
        return
    console.print(summary_line(metrics))
    console.print(f"wrote {out}/report.md")
