"""The ``greensched`` application object, shared options and helpers of every command module.

User errors (bad input files, bad options, infeasible scenarios, an unavailable solver) print one
line on stderr and exit non-zero without a traceback:

* 2 — bad input or option (the message names file, line, column and value);
* 3 — the scenario is infeasible or the solver stopped early (the message names the family);
* 4 — the requested solver is not installed or not licensed for the model's size.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
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
    "json_value",
    "print_json",
    "say_console",
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


def json_value(obj: Any) -> Any:
    """``obj`` as plain JSON values: NumPy scalars and arrays, pandas frames (a list of row
    records), series (a dict) and timestamps (ISO 8601), paths, enums, dataclasses, sets and
    datetimes become lists, dicts, strings and numbers; NaN and inf become ``null``."""
    import dataclasses
    import datetime as dt
    import enum
    import math

    import numpy as np
    import pandas as pd

    if isinstance(obj, dict):
        return {str(k): json_value(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [json_value(v) for v in obj]
    if isinstance(obj, bool | str | int) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, enum.Enum):
        return json_value(obj.value)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, pd.DataFrame):
        rows = obj if isinstance(obj.index, pd.RangeIndex) else obj.reset_index()
        return json_value(rows.to_dict(orient="records"))
    if isinstance(obj, pd.Series):
        return json_value(obj.to_dict())
    if obj is pd.NaT:
        return None
    if isinstance(obj, pd.Timestamp | dt.datetime | dt.date):
        return obj.isoformat()
    if isinstance(obj, pd.Timedelta | dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, np.ndarray):
        return json_value(obj.tolist())
    if isinstance(obj, np.generic):
        return json_value(obj.item())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return json_value(dataclasses.asdict(obj))
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return json_value(to_dict())
    return str(obj)


def print_json(obj: Any) -> None:
    """The one ``--json`` writer of every command: ``obj`` (made plain by :func:`json_value`)
    as indented, key-sorted JSON on stdout, and nothing else there."""
    typer.echo(json.dumps(json_value(obj), indent=2, sort_keys=True, allow_nan=False))


@contextlib.contextmanager
def native_stdout_to_stderr(active: bool = True) -> Iterator[None]:
    """While active, file descriptor 1 points at stderr, so that text which native libraries
    print straight to it (HiGHS's MIP solver prints a line when given a starting solution,
    whatever its output options) cannot get into a ``--json`` document; worker processes
    started inside inherit the redirection.  Python-level output (``sys.stdout``) is left
    alone."""
    if not active:
        yield
        return
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no real descriptor 1 (embedded interpreters): nothing to guard
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def say_console(json_out: bool) -> Console:
    """Where a command's human output goes: stderr under ``--json`` (stdout is the JSON)."""
    return err_console if json_out else console


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
