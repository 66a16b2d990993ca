"""The ``greensched`` command line (typer + rich): one module per command group.
User errors (bad input files, bad options, infeasible scenarios, an unavailable solver) print one
line on stderr and exit non-zero without a traceback:

* 2 — bad input or option (the message names file, line, column and value);
* 3 — the scenario is infeasible or the solver stopped early (the message names the family);
* 4 — the requested solver is not installed or not licensed for the model's size.
"""

from __future__ import annotations

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
from greensched.cli._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point: runs the app and turns user errors into one-line messages.

    Every command module is imported here; the ``greensched`` script itself starts at
    :func:`greensched.cli.launch.main`, which imports only what the command line needs.
    """
    from greensched.cli.launch import run

    run(app)


if __name__ == "__main__":  # pragma: no cover
    main()
