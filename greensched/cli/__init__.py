"""The ``greensched`` command line. See :mod:`greensched.cli.main`."""

from greensched.cli.main import app, main

__all__ = ["app", "main"]
