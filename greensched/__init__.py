"""GreenSched: where and when LLM inference runs across geo-distributed data centers."""

from greensched.errors import DataFileError, GreenSchedError, InfeasibleError, ScenarioError

__version__ = "0.1.0"

__all__ = ["DataFileError", "GreenSchedError", "InfeasibleError", "ScenarioError", "__version__"]
