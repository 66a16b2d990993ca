"""``greensched experiment run|report``: GreenSched against the published baselines.

``greensched experiment run EXP.toml --out DIR [--seeds N] [--workers N | --ray ADDRESS|local]
[--quick] [--report MD] [--scenario SPEC] [--variants A,B]`` runs every seed × variant of an
experiment file
(:mod:`greensched.eval.experiment`) with a progress bar and writes ``DIR/results.parquet``
(one row per seed × variant × metric), ``DIR/hourly.parquet`` and ``DIR/experiment.json``;
``--report MD`` also writes the Markdown report there.  ``greensched experiment report DIR
[--out MD]`` writes the report (default ``DIR/report.md``) with its figures beside it.
A ``kind = "sweep"`` file runs the Green-LLM letter's sensitivity sweeps and hourly profiles
instead (:mod:`greensched.eval.experiment.sweeps`; ``--workers`` spreads the sweep points).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from greensched.cli._app import app, native_stdout_to_stderr, print_json, say_console
from greensched.eval.experiment import (
    ExperimentError,
    experiment_kind,
    load_experiment,
    load_sweep_experiment,
    run_experiment,
    run_sweep_experiment,
    summarize,
    write_report,
    write_sweep_report,
)

__all__ = ["experiment_app"]

experiment_app = typer.Typer(
    no_args_is_help=True,
    help="Run experiments (seeds x policies, statistics) and write their reports.",
)
app.add_typer(experiment_app, name="experiment")


def _bar(console: Console) -> Progress:
    """The progress bar of the experiment commands (description, bar, done/total, time)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def _command_line() -> str | None:
    """The ``greensched experiment ...`` command being run (None when not from a shell)."""
    argv = sys.argv
    if "experiment" not in argv or Path(argv[0]).name not in ("greensched", "main.py"):
        return None
    return "greensched " + shlex.join(argv[argv.index("experiment"):])


@experiment_app.command("run")
def run_command(
    experiment: Annotated[Path, typer.Argument(help="Experiment file (TOML).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    seeds: Annotated[int | None, typer.Option("--seeds", help="Override the seed count.")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Local worker processes.")] = 1,
    ray: Annotated[str | None, typer.Option(
        "--ray", help="Ray cluster address, or 'local' for a local Ray instance.")] = None,
    quick: Annotated[bool, typer.Option(
        "--quick", help="The file's [quick] preset: few seeds, few jobs.")] = False,
    report: Annotated[Path | None, typer.Option(
        "--report", help="Also write the Markdown report to this file.")] = None,
    scenario: Annotated[str | None, typer.Option(
        "--scenario", help="Override the file's scenario (default, DIR, synth:..., "
        "build:BUILD.toml@YYYY-MM-DD).")] = None,
    variants: Annotated[str | None, typer.Option(
        "--variants", help="Run only these variant labels (comma-separated; they must "
        "include the GreenSched and reference variants).")] = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print a machine-readable summary on stdout (progress on stderr).")] = False,
) -> None:
    """Run an experiment file's seeds x variants (or, kind = "sweep", its sweeps).

    ``--json`` keys: ``kind`` ("experiment" or "sweep"), ``out``, ``report`` (path or null),
    ``meta`` (the run's experiment.json: seeds, variants, engine, wall_s, ...).
    """
    console = say_console(json_out)
    if experiment_kind(experiment) == "sweep":
        meta, path = _run_sweep(experiment, out, workers, report, json_out)
        if json_out:
            print_json({"kind": "sweep", "out": out, "report": path, "meta": meta})
        return
    cfg = load_experiment(experiment)
    if scenario is not None:
        cfg.scenario = scenario
    if quick:
        cfg = cfg.quick_preset()
    if variants is not None:
        cfg = cfg.select([x.strip() for x in variants.split(",") if x.strip()])
    if seeds is not None:
        if seeds < 1:
            raise ExperimentError(f"--seeds {seeds!r} must be >= 1")
        cfg.seeds = seeds
    with _bar(console) as bar:
        task = bar.add_task(f"{cfg.name}", total=cfg.seeds * len(cfg.variants))

        def progress(done: int, total: int, what: str) -> None:
            if total == len(cfg.variants) * cfg.seeds:
                bar.update(task, completed=done, description=f"{cfg.name}: {what}")
            else:
                bar.update(task, description=f"{cfg.name}: {what}")

        with native_stdout_to_stderr(json_out):
            meta = run_experiment(cfg, out, workers=workers, ray_address=ray,
                                  progress=progress, command=_command_line())
    console.print(f"{cfg.seeds} seeds x {len(cfg.variants)} variants in {meta['wall_s']:.1f} s "
                  f"({meta['engine']}); results in {out}/results.parquet")
    path = None
    if report is not None:
        path = write_report(out, report)
        console.print(f"report: {path}")
    if json_out:
        print_json({"kind": "experiment", "out": out, "report": path, "meta": meta})


def _run_sweep(experiment: Path, out: Path, workers: int, report: Path | None,
               json_out: bool) -> tuple[dict[str, Any], Path | None]:
    console = say_console(json_out)
    exp = load_sweep_experiment(experiment)
    with _bar(console) as bar:
        task = bar.add_task(exp.name, total=len(exp.sweeps) + (exp.profile is not None))

        def progress(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, description=f"{exp.name}: {what}")

        meta = run_sweep_experiment(exp, out, workers=workers if workers > 1 else None,
                                    progress=progress, command=_command_line())
    console.print(f"{len(exp.sweeps)} sweeps in {meta['wall_s']:.1f} s; results in "
                  f"{out}/sweeps.parquet")
    path = None
    if report is not None:
        path = write_sweep_report(out, report)
        console.print(f"report: {path}")
    return meta, path


@experiment_app.command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A directory written by 'experiment run'.")],
    out: Annotated[Path | None, typer.Option("--out", help="Markdown file to write.")] = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print a machine-readable summary on stdout (progress on stderr).")] = False,
) -> None:
    """Write the Markdown report and figures of an experiment run.

    ``--json`` keys: ``kind``, ``report`` (path), ``carbon_kg`` (per variant: mean, ci95;
    empty for sweep runs).
    """
    console = say_console(json_out)
    meta_path = run_dir / "experiment.json"
    if meta_path.is_file() and '"kind": "sweep"' in meta_path.read_text(encoding="utf-8"):
        spath = write_sweep_report(run_dir, out)
        console.print(f"report: {spath}")
        if json_out:
            print_json({"kind": "sweep", "report": spath, "carbon_kg": {}})
        return
    if not (run_dir / "results.parquet").is_file():
        raise ExperimentError(f"{run_dir}: results.parquet not found; run 'experiment run' first")
    path = write_report(run_dir, out)
    import pandas as pd

    s = summarize(pd.read_parquet(run_dir / "results.parquet"))
    carbon = s[s["metric"] == "carbon_kg"][["variant", "mean", "ci95"]]
    for r in carbon.itertuples():
        console.print(f"{r.variant:24s} carbon {r.mean:.5g} ± {r.ci95:.2g} kg")
    console.print(f"report: {path}")
    if json_out:
        print_json({"kind": "experiment", "report": path,
                    "carbon_kg": {str(r.variant): {"mean": r.mean, "ci95": r.ci95}
                                  for r in carbon.itertuples()}})


_PROMPT_NOTE = """Per seed: a twin dataset of the embedded default scenario ({n} jobs,
random placement, every DC's ground truth; {t} held out), the transformer predictor trained
twice on the same rows and tested on the same held-out jobs (every job at every DC): the
**full** prompt (carbon, price, renewable share, PUE, utilisation per DC) vs the **short**
prompt (carbon and price only). Model: frozen all-MiniLM-L6-v2 + trained heads (LoRA variant
`frozen`), `numeric_features = false` so that the prompt is the model's only view of the DC
state; one torch thread. This is the cheapest real configuration of the transformer predictor
(adapting LoRA layers per seed does not fit the 2-core budget), not the fine-tuned model."""

_LEARNING_NOTE = """Per seed: the feedback drift experiment's quick configuration (`greensched
feedback experiment --quick --seed S`: XGBoost v1, 12 periods of 300 jobs, new GPUs halve the
energy at three DCs and the `conv-long` share triples before period 4). **On**: the closed loop
detects the drift and promotes a re-tuned model; **off**: the initial model is never re-tuned.
Both arms are scored on the same outcomes (those after the first promotion): MAPE at the DC
that ran each job, and carbon per job of greedy placement with that arm's predictions."""


@experiment_app.command("ablations")
def ablations_command(
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    report: Annotated[Path | None, typer.Option(
        "--report", help="Markdown report (default OUT/report.md).")] = None,
    seeds: Annotated[int, typer.Option(
        "--seeds", help="Seeds of the continuous-learning ablation.")] = 8,
    prompt_seeds: Annotated[int, typer.Option(
        "--prompt-seeds", help="Seeds of the prompt-context ablation.")] = 5,
    n_train: Annotated[int, typer.Option(
        "--n-train", help="Training jobs of the prompt ablation.")] = 600,
    n_test: Annotated[int, typer.Option(
        "--n-test", help="Held-out jobs of the prompt ablation.")] = 200,
    only: Annotated[str | None, typer.Option(
        "--only", help="'prompt' or 'learning' (default both); the other is read from OUT if "
        "it is there.")] = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print a machine-readable summary on stdout (progress on stderr).")] = False,
) -> None:
    """Ablations: shorter prompt context, continuous learning off (paired over seeds).

    ``--json`` keys: ``report`` (path), ``out``, ``tables`` (the parquet files written).
    """
    console = say_console(json_out)
    import pandas as pd

    from greensched.eval.experiment.ablations import (
        prompt_context_ablation,
        write_ablation_report,
    )
    from greensched.feedback.ablation import continuous_learning_ablation

    if only not in (None, "prompt", "learning"):
        raise ExperimentError(f"--only {only!r}: expected 'prompt' or 'learning'")
    out.mkdir(parents=True, exist_ok=True)
    with _bar(console) as bar:
        task = bar.add_task("ablations", total=None)

        def progress(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, description=what)

        if only in (None, "prompt"):
            frame = prompt_context_ablation(range(prompt_seeds), n_train=n_train, n_test=n_test,
                                            progress=progress)
            frame.to_parquet(out / "prompt.parquet", index=False)
        if only in (None, "learning"):
            frame = continuous_learning_ablation(range(seeds), progress=progress)
            frame.to_parquet(out / "learning.parquet", index=False)
            missing = frame.attrs.get("seeds_without_promotion", [])
            (out / "learning_seeds.json").write_text(
                pd.DataFrame(frame.attrs.get("per_seed", [])).to_json(orient="records") + "\n",
                encoding="utf-8")
            if missing:
                console.print(f"seeds without a promoted re-tune (left out): {missing}")
    frames = {k: pd.read_parquet(out / f"{k}.parquet") if (out / f"{k}.parquet").is_file()
              else None for k in ("prompt", "learning")}
    n_prompt = frames["prompt"]["seed"].nunique() if frames["prompt"] is not None else 0
    notes = {"prompt": _PROMPT_NOTE.format(n=n_train + n_test, t=n_test) +
             f" {n_prompt} seeds.", "learning": _LEARNING_NOTE}
    path = write_ablation_report(report or out / "report.md", prompt=frames["prompt"],
                                 learning=frames["learning"], notes=notes,
                                 command=_command_line())
    console.print(f"report: {path}")
    if json_out:
        print_json({"report": path, "out": out,
                    "tables": sorted(str(p) for p in out.glob("*.parquet"))})
