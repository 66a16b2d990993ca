"""The ``greensched`` command line. See :mod:`greensched.cli.main` and :mod:`greensched.cli.launch`.

``app`` (every command registered) is imported on first use: the console script
(:func:`main`) imports only the command module its command line needs.
"""

from typing import Any

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point (:func:`greensched.cli.launch.main`)."""
    from greensched.cli.launch import main as launch

    launch()


def __getattr__(name: str) -> Any:
    if name == "app":
        from greensched.cli.main import app

        return app
    raise AttributeError(f"module 'greensched.cli' has no attribute {name!r}")
