"""Error types of the flow.

Every error says what was expected and what arrived.  The CLI turns a
:class:`FlowError` into a one-paragraph message and exit code 2 (no
traceback); anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class FlowError(Exception):
    """Base class of the errors a user can act on."""


class ConfigError(FlowError, ValueError):
    """A configuration file has an unknown key, a wrong type or a bad value."""


class ShapeError(FlowError, ValueError):
    """An array does not have the shape a function expects."""


class InputRangeError(FlowError, ValueError):
    """Input values outside the range the hardware accepts."""


class StageInputError(FlowError):
    """A stage's input (a previous stage's output) is missing or stale."""


class NotBuiltError(FlowError):
    """The stage exists in the flow's plan but is not implemented yet."""


class DataFormatError(FlowError, ValueError):
    """A data file does not have the layout the reader expects."""


class MismatchError(FlowError):
    """A bit-exactness comparison found mismatches."""


def describe_values(a, limit: int = 5) -> str:
    """Short description of offending values for error messages."""
    import numpy as np

    a = np.asarray(a).ravel()
    shown = ", ".join(repr(x.item() if hasattr(x, "item") else x) for x in a[:limit])
    more = f", ... ({a.size} in all)" if a.size > limit else ""
    return f"[{shown}{more}]"
