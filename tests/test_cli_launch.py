"""The console script imports only the command module a fast command needs (cli/launch.py)."""

from __future__ import annotations

import subprocess
import sys

from greensched.cli.launch import FAST_COMMANDS, command_of


def test_command_of_skips_global_options() -> None:
    assert command_of(["--verbose", "plan", "scen", "--workers", "2"]) == "plan"
    assert command_of(["--help"]) is None
    assert command_of([]) is None


def test_fast_commands_are_registered_by_the_modules_named() -> None:
    from greensched.cli.main import app

    names = {(c.name or c.callback.__name__): c for c in app.registered_commands if c.callback}
    for command, modules in FAST_COMMANDS.items():
        assert command in names, command
        assert names[command].callback.__module__ in {f"greensched.cli.{m}" for m in modules}


def test_plan_command_line_imports_no_other_command_stack() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['greensched', 'plan', '--help']\n"
        "from greensched.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "heavy = ('greensched.cli.experiment', 'greensched.eval', 'greensched.feedback',"
        " 'sqlalchemy', 'linopy', 'scipy.stats')\n"
        "print('LOADED', [m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "--decompose" in out  # the plan command's own help
    assert "LOADED []" in out
