"""Run ``greensched ARGS`` through the console-script entry point inside the test process.

The entry point, exit codes, stdout and stderr are those of the installed command, without the
cost of a fresh interpreter per call (seconds each on a loaded 2-core machine).  Output that C
libraries write straight to file descriptor 1 (the HiGHS banner) is not captured; tests about it
run a real process.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``greensched ARGS`` in-process; returns what :func:`subprocess.run` would."""
    from greensched.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = ["greensched", *args]
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
        os.chdir(old_cwd)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
