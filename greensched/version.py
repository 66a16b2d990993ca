"""The installed GreenSched version (``greensched --version``)."""

from importlib import metadata

try:
    __version__ = metadata.version("greensched")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
