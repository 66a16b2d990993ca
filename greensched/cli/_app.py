"""The ``greensched`` application object, shared options and helpers of every command module.

User errors (bad input files, bad options, infeasible scenarios, an unavailable solver) print one
line on stderr and exit non-zero without a traceback:

* 2 — bad input or option (the message names file, line, column and value);
* 3 — the scenario is infeasible or the solver stopped early (the message names the family);
* 4 — the requested solver is not installed or not licensed for the model's size.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from greensched.errors import GreenSchedError
from greensched.scenario import Scenario
from greensched.weights import Weights, WeightsError

__all__ = [
    "EXIT_INFEASIBLE",
    "JOBS_HELP",
    "JsonOption",
    "print_json",
    "EXIT_INPUT",
    "EXIT_SOLVER",
    "app",
    "console",
    "err_console",
    "feedback_app",
    "load_scenario_arg",
    "parse_weights",
    "scenario_app",
]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="GreenSched: place LLM inference across data centers for low cost, carbon, water, delay.",
)
scenario_app = typer.Typer(no_args_is_help=True, help="Validate, inspect and make scenarios.")
app.add_typer(scenario_app, name="scenario")
feedback_app = typer.Typer(
    no_args_is_help=True, help="Outcome store, drift checks, re-tuning and the model registry."
)
app.add_typer(feedback_app, name="feedback")

# Piped output (files, CI logs) gets a wide console so tables are not truncated.
console = Console() if sys.stdout.isatty() else Console(width=160)
err_console = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=160)

EXIT_INPUT = 2
EXIT_INFEASIBLE = 3
EXIT_SOLVER = 4

#: ``--jobs`` help of the commands that read a jobs table (docs/jobs-format.md).
JOBS_HELP = ("Jobs table, CSV or Parquet, one row per job: job_id, area, query_type, "
             "input_tokens, and hour (0..T-1) or arrival_s (s since hour 0); optional "
             "output_tokens, sla_s (default 30). See docs/jobs-format.md.")

#: ``--json`` of a command: a machine-readable summary on stdout (messages go to stderr).
JsonOption = Annotated[bool, typer.Option(
    "--json", help="Print a machine-readable JSON summary on stdout (messages on stderr).")]


def print_json(obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON on stdout (NaN and inf as null)."""
    import math

    def clean(x: Any) -> Any:
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if hasattr(x, "item") and callable(x.item):  # NumPy scalars
            return clean(x.item())
        return x

    typer.echo(json.dumps(clean(obj), indent=2, sort_keys=True, default=str))


def _show_version(value: bool) -> None:
    if value:
        from greensched.version import __version__

        typer.echo(f"greensched {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True,
        help="Print the installed GreenSched version and exit.")] = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", help="Let the solvers print their banners and logs (HiGHS).")] = False,
) -> None:
    """GreenSched: place LLM inference across data centers for low cost, carbon, water, delay."""
    if verbose:
        os.environ["GREENSCHED_VERBOSE"] = "1"



def parse_weights(text: str) -> tuple[float, float, float]:
    """``--weights E,C,D`` as three floats, validated by :class:`~greensched.weights.Weights`."""
    try:
        return Weights.parse(text).as_tuple()
    except WeightsError as exc:
        raise GreenSchedError(f"--{exc}") from exc


def load_scenario_arg(path: Path | None, coefficients: Path | None = None) -> Scenario:
    """The scenario a command names: a directory, or the embedded default when omitted."""
    from greensched.defaults import default_scenario
    from greensched.scenario import load_scenario

    if path is None:
        scen = default_scenario()
        if coefficients is not None:
            from greensched.scenario import load_coefficients

            scen.coefficients = load_coefficients(coefficients, scen)
        return scen
    return load_scenario(path, coefficients=coefficients)
