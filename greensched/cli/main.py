"""The ``greensched`` command line (typer + rich): one module per command group.
User errors (bad input files, bad options, infeasible scenarios, an unavailable solver) print one
line on stderr and exit non-zero without a traceback:

* 2 — bad input or option (the message names file, line, column and value);
* 3 — the scenario is infeasible or the solver stopped early (the message names the family);
* 4 — the requested solver is not installed or not licensed for the model's size.
"""

from __future__ import annotations

import sys

import typer

# Every command module registers its commands on the shared app when imported.
from greensched.cli import (  # noqa: F401
    assign,
    equity,
    experiment,
    feedback,
    loop,
    model,
    plan,
    predictor,
    relocation,
    scenario,
    serve,
    simulate,
)
from greensched.cli._app import EXIT_INFEASIBLE, EXIT_INPUT, EXIT_SOLVER, app
from greensched.errors import GreenSchedError, InfeasibleError, SolverUnavailableError

__all__ = ["app", "main"]


def _fail(exc: BaseException | str) -> None:
    """Print a user error as one unwrapped line on stderr."""
    print(f"error: {exc}", file=sys.stderr, flush=True)


def main() -> None:
    """Console-script entry point: runs the app and turns user errors into one-line messages."""
    try:
        rc = app(standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except SolverUnavailableError as exc:
        _fail(exc)
        sys.exit(EXIT_SOLVER)
    except InfeasibleError as exc:
        _fail(exc)
        sys.exit(EXIT_INFEASIBLE)
    except GreenSchedError as exc:
        _fail(exc)
        sys.exit(EXIT_INPUT)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        _fail(exc)
        sys.exit(EXIT_INPUT)
    except ImportError as exc:  # an optional extra is not installed: name it, no traceback
        from greensched.extras import missing_extra_message

        msg = missing_extra_message(exc)
        if msg is None:
            raise
        _fail(msg)
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


if __name__ == "__main__":  # pragma: no cover
    main()
