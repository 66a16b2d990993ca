"""Console-script entry point: import only the command module a command line needs.

Importing every command module (``greensched.cli.main``) pulls in the evaluation, feedback,
service and experiment stacks (scipy.stats, SQLAlchemy, …): measured 9.5 s of the 10 s a
paper-scale ``greensched plan`` took on this machine.  :func:`main` looks at the command name
and, for the commands in :data:`FAST_COMMANDS`, imports only their module; every other command
line (``--help``, groups, unknown names) imports them all, as before.  Both paths run the app
through :func:`run`, which turns user errors into one-line messages and exit codes.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["FAST_COMMANDS", "command_of", "main", "run"]

#: Command name -> the command modules (under ``greensched.cli``) that register it and what it
#: calls.  ``tests/test_cli_launch.py`` checks each against the full application.
FAST_COMMANDS: dict[str, tuple[str, ...]] = {
    "plan": ("plan",),
    "sweep": ("plan",),
}


def command_of(argv: list[str]) -> str | None:
    """The command name of a command line: its first argument that is not an option."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def run(app: Any) -> None:
    """Run the typer ``app``; user errors print one ``error: ...`` line and exit non-zero.

    Exit codes: 2 bad input or option, 3 infeasible or stopped early, 4 solver unavailable
    (:mod:`greensched.cli._app`).
    """
    import typer

    from greensched.cli._app import EXIT_INFEASIBLE, EXIT_INPUT, EXIT_SOLVER
    from greensched.errors import GreenSchedError, InfeasibleError, SolverUnavailableError

    def fail(exc: BaseException | str) -> None:
        print(f"error: {exc}", file=sys.stderr, flush=True)

    try:
        rc = app(standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except SolverUnavailableError as exc:
        fail(exc)
        sys.exit(EXIT_SOLVER)
    except InfeasibleError as exc:
        fail(exc)
        sys.exit(EXIT_INFEASIBLE)
    except GreenSchedError as exc:
        fail(exc)
        sys.exit(EXIT_INPUT)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        fail(exc)
        sys.exit(EXIT_INPUT)
    except ImportError as exc:  # an optional extra is not installed: name it, no traceback
        from greensched.extras import missing_extra_message

        msg = missing_extra_message(exc)
        if msg is None:
            raise
        fail(msg)
        sys.exit(EXIT_INPUT)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # usage errors of the command-line parser
        show = getattr(exc, "show", None)
        code = getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            sys.exit(code)
        raise


def main() -> None:
    """``greensched``: the command's own module for :data:`FAST_COMMANDS`, else every module."""
    modules = FAST_COMMANDS.get(command_of(sys.argv[1:]) or "")
    if modules is None:
        from greensched.cli.main import app
    else:
        for name in modules:
            importlib.import_module(f"greensched.cli.{name}")
        from greensched.cli._app import app
    run(app)
