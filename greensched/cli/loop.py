"""``greensched loop``: the closed loop from real components on one machine.

The HTTP service (:mod:`greensched.service`, uvicorn) runs on a free loopback port in a thread
of this process, with a throw-away API key, the run's model registry (hot-swapped on promotion)
and outcome store; the loop (:mod:`greensched.feedback.closed_loop`) sends each period's jobs to
``POST /v1/assign``, runs the placed jobs on the digital twin, posts the outcomes to
``POST /v1/outcomes``, checks drift, re-tunes, promotes, and waits for the service to answer
with the new version.  The run is bounded: ``--periods`` periods, ``--max-minutes`` of wall
time, and every HTTP call times out; the service stops with the command.
"""

from __future__ import annotations

import json
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from greensched.cli._app import (
    JsonOption,
    app,
    console,
    err_console,
    load_scenario_arg,
    print_json,
)
from greensched.errors import GreenSchedError

__all__ = ["loop", "serving"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(config: Any, *, start_timeout_s: float = 60.0) -> Iterator[str]:
    """Run the service for ``config`` (a :class:`~greensched.service.ServiceConfig`) on a free
    loopback port in a thread; yields its base URL and stops it on exit."""
    import uvicorn

    from greensched.service import create_app

    application = create_app(config)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False,
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, name="greensched-loop-service", daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if not thread.is_alive() or time.monotonic() - t0 > start_timeout_s:
            server.should_exit = True
            raise GreenSchedError(f"the service did not start on 127.0.0.1:{port} within "
                                  f"{start_timeout_s:g} s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30.0)


def _parse_shift(text: str | None) -> tuple[tuple[str, float], ...]:
    if not text:
        return ()
    out = []
    for part in text.split(","):
        name, sep, w = part.partition("=")
        try:
            out.append((name.strip(), float(w)))
        except ValueError:
            raise GreenSchedError(f"--load-shift {text!r}: expected TYPE=WEIGHT[,TYPE=WEIGHT], "
                                  "e.g. conv-long=3") from None
        if not sep or not name.strip():
            raise GreenSchedError(f"--load-shift {text!r}: expected TYPE=WEIGHT pairs")
    return tuple(out)


def _command_line(scenario_dir: Path | None, cfg: Any, experiment: bool, out: Path,
                  fmt: str) -> str:
    """The command that reproduces a run (for its report)."""
    parts = ["greensched loop"] + ([str(scenario_dir)] if scenario_dir is not None else [])
    if experiment:
        parts.append("--experiment")
    else:
        parts += [f"--periods {cfg.periods}", f"--jobs {cfg.jobs_per_period}",
                  f"--train-jobs {cfg.train_jobs}"]
        if cfg.drift_period is not None:
            parts.append(f"--drift-at {cfg.drift_period}")
            if cfg.drift_dcs:
                parts += [f"--drift-dcs {','.join(cfg.drift_dcs)}",
                          f"--energy-factor {cfg.energy_factor:g}"]
            if cfg.load_shift:
                parts.append("--load-shift " + ",".join(f"{k}={w:g}" for k, w in cfg.load_shift))
    parts += [f"--seed {cfg.seed}", f"--out {out}"] + ([f"--format {fmt}"] if fmt != "png"
                                                         else [])
    return " ".join(parts)


@app.command()
def loop(
    scenario_dir: Annotated[Path | None, typer.Argument(
        help="Scenario directory (omitted: the embedded default, 9 US regions).")] = None,
    periods: Annotated[int, typer.Option(min=1, help="Periods (hours) to serve.")] = 24,
    jobs: Annotated[int, typer.Option(min=50, help="Jobs per period.")] = 300,
    train_jobs: Annotated[int, typer.Option(min=100, help="Twin jobs to train v1 on.")] = 3000,
    drift_at: Annotated[int | None, typer.Option(
        help="First period of an injected drift (omitted: no drift).")] = None,
    drift_dcs: Annotated[str, typer.Option(
        help="Comma-separated DCs whose energy changes at --drift-at.")] = "",
    energy_factor: Annotated[float, typer.Option(
        help="Energy multiplier at --drift-dcs (0.5: new GPUs halve it).")] = 0.5,
    load_shift: Annotated[str | None, typer.Option(
        help="Query-mix shift at --drift-at, TYPE=WEIGHT[,...], e.g. conv-long=3.")] = None,
    epsilon: Annotated[float, typer.Option(help="Exploration share of the service.")] = 0.15,
    min_improvement: Annotated[float, typer.Option(
        help="A re-tuned candidate must beat the current model by this share.")] = 0.05,
    experiment: Annotated[bool, typer.Option(
        help="The drift experiment's configuration (36 periods, 400 jobs, 3 DCs x0.5 at 14, "
             "conv-long x3); explicit options above are ignored.")] = False,
    seed: int = 0,
    out: Annotated[Path | None, typer.Option(help="Write loop.md, the plot and loop.json.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Plot format: png, svg or pdf.")] = "png",
    work_dir: Annotated[Path | None, typer.Option(
        help="Keep the registry and the store here (default: a temporary folder).")] = None,
    max_minutes: Annotated[float, typer.Option(help="Stop after this much wall time.")] = 30.0,
    json_out: JsonOption = False,
) -> None:
    """Serve N periods through the real HTTP service, measure on the twin, close the loop.

    Each period: POST /v1/assign, the twin runs the jobs, POST /v1/outcomes, drift check,
    re-tune and promote on DRIFT, hot swap in the service. Prints a progress bar and a summary;
    --out writes a report and a plot (error and carbon per period, drift detected, versions).
    """
    from greensched.feedback.closed_loop import (
        HttpTransport,
        LoopConfig,
        json_ready,
        prepare_loop,
        run_closed_loop,
    )
    from greensched.feedback.experiment import ExperimentConfig
    from greensched.feedback.loop_report import plot_loop, write_loop_report
    from greensched.plotstyle import FigureFormat
    from greensched.scheduler.assign import AssignConfig
    from greensched.service import ServiceConfig

    try:
        FigureFormat(fmt.lower())
    except ValueError:
        raise GreenSchedError(f"--format {fmt!r}: expected png, svg or pdf") from None
    limit_s = 60.0 * max_minutes
    if experiment:
        cfg = ExperimentConfig(seed=seed).loop_config(max_wall_s=limit_s)
    else:
        dcs = tuple(d.strip() for d in drift_dcs.split(",") if d.strip())
        cfg = LoopConfig(periods=periods, jobs_per_period=jobs, train_jobs=train_jobs,
                         drift_period=drift_at, drift_dcs=dcs, energy_factor=energy_factor,
                         load_shift=_parse_shift(load_shift), epsilon=epsilon,
                         min_improvement=min_improvement, seed=seed, max_wall_s=limit_s)
        if drift_at is not None and not dcs and not cfg.load_shift:
            raise GreenSchedError("--drift-at needs --drift-dcs DC[,DC] and/or --load-shift")
    scenario = load_scenario_arg(scenario_dir)
    say = err_console if json_out else console
    tmp = None if work_dir is not None else tempfile.TemporaryDirectory(prefix="greensched-loop-")
    work = Path(work_dir) if work_dir is not None else Path(tmp.name)  # type: ignore[union-attr]
    try:
        say.print(f"training v1 on {cfg.train_jobs} twin jobs of {scenario.name!r} ...")
        setup = prepare_loop(cfg, scenario, work)
        key = secrets.token_urlsafe(32)
        service_cfg = ServiceConfig(
            scenario=scenario, registry=setup.registry.root, store=setup.store_path,
            api_key=key, poll_interval_s=0.2,
            assign=AssignConfig(explore="epsilon", epsilon=cfg.epsilon, seed=cfg.seed))
        with serving(service_cfg) as url:
            transport = HttpTransport(url, key, post_batch=cfg.post_batch)
            say.print(f"service on {url} (registry {setup.registry.root}, store "
                      f"{setup.store_path})")
            with Progress(TextColumn("[bold]loop[/]"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
                          console=say, transient=False) as bar:
                task = bar.add_task("periods", total=cfg.periods, note="")

                def step(row: dict[str, Any]) -> None:
                    ratio = row["energy_error_ratio"]
                    note = (f"{row['version']} MAPE {100 * row['mape_energy_live']:.1f} % "
                            f"{row['verdict'] or '-'}"
                            + (f" x{ratio:.2f}" if ratio is not None else "")
                            + (f" -> {row['version_after']}" if row["action"] == "promoted"
                               else ""))
                    bar.update(task, advance=1, note=note)

                result = run_closed_loop(cfg, setup, transport, on_period=step)
        s = result.summary
        s["http_requests"] = transport.requests
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            name = "drift_experiment" if experiment else "loop"
            result.plot_path = plot_loop(result, out / f"{name}.{fmt.lower()}", fmt)
            cmd = _command_line(scenario_dir, cfg, experiment, out, fmt)
            result.report_path = write_loop_report(result, out / f"{name}.md",
                                                   plot_name=result.plot_path.name, command=cmd)
            (out / f"{name}.json").write_text(json.dumps(json_ready(
                {"config": asdict(cfg), "summary": s, "periods": result.periods.to_dict(
                    orient="records")}), indent=2, sort_keys=True, default=str) + "\n",
                encoding="utf-8")
    finally:
        if tmp is not None:
            tmp.cleanup()
    if json_out:
        print_json(json_ready(s))
        return
    keys = ("periods_served", "detected_period", "detection_delay_periods", "promotions",
            "versions_promoted", "error_before", "error_stale_after", "error_after",
            "error_reduction", "carbon_stale_g", "carbon_current_g", "carbon_oracle_g",
            "swap_s_max", "elapsed_s")
    for k in keys:
        v = s.get(k)
        console.print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    if result.report_path is not None:
        console.print(f"wrote {result.report_path} and {result.plot_path}")
