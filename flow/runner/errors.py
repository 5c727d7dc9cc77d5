"""Error types of the flow.

Every error class of the flow lives here.  Every error says what was
expected and what arrived.  The CLI turns a :class:`FlowError` into a
one-paragraph message and exit code 2 (no traceback); anything else is a bug
and keeps its traceback.  Classes that also derive from ``ValueError`` or
``RuntimeError`` keep working with code that catches those.
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


class DataFormatError(FlowError, ValueError):
    """A data file does not have the layout the reader expects."""


class MismatchError(FlowError):
    """A bit-exactness comparison found mismatches."""


class ArgumentError(FlowError, ValueError):
    """A function got an argument outside its documented choices."""


class GeneratorError(FlowError, RuntimeError):
    """A generator (RTL, HLS, models) produced something other than its contract says:
    a bug or an unsupported input of the generator, never a user's data problem."""


class ToolError(FlowError):
    """An external tool (Verilator, Yosys, Chromium) is missing or rejected its input."""


class SimError(FlowError):
    """The simulator could not be built or the testbench crashed."""


class SynthError(FlowError):
    """Yosys failed on the generated RTL."""


class CellLibraryError(FlowError):
    """The sky130 standard-cell files are missing or not what the area model expects."""


class SelfCheckError(FlowError):
    """The handoff archive's own testbench could not run (not a DUT mismatch)."""


class EmptyWaferError(FlowError, ValueError):
    """An all-zero wafer was given to the EMD (which is undefined for it)."""


class SolverError(FlowError, RuntimeError):
    """POT's network simplex did not reach an optimal solution."""


class TrainingInterrupted(RuntimeError):
    """Raised by ``emd_cnn.train_cnn(..., stop_after=k)`` (tests: simulate a killed run).
    Not a :class:`FlowError`: it is a test hook, not a user-facing failure."""


def describe_values(a, limit: int = 5) -> str:
    """Short description of offending values for error messages."""
    import numpy as np

    a = np.asarray(a).ravel()
    shown = ", ".join(repr(x.item() if hasattr(x, "item") else x) for x in a[:limit])
    more = f", ... ({a.size} in all)" if a.size > limit else ""
    return f"[{shown}{more}]"


def checked_int_codes(values, what: str, n_cols: int, limit: int, *, limit_text: str | None = None,
                      dtype_text: str = "integer codes"):
    """``values`` as an int64 array of shape ``(n, n_cols)`` holding integers in
    ``[0, limit)`` (messages write ``[0, limit - 1]``, or ``[0, limit_text)``); otherwise a
    :class:`ShapeError` or :class:`InputRangeError` naming ``what`` and saying what was
    expected and what arrived."""
    import numpy as np

    a = np.asarray(values)
    if a.ndim != 2 or a.shape[1] != n_cols:
        raise ShapeError(f"{what}: expected shape (N, {n_cols}), got {a.shape}")
    if a.dtype.kind not in "iu":
        raise InputRangeError(f"{what}: expected {dtype_text}, got dtype {a.dtype}")
    a = a.astype(np.int64)
    bad = (a < 0) | (a >= limit)
    if bad.any():
        span = f"[0, {limit_text})" if limit_text else f"[0, {limit - 1}]"
        raise InputRangeError(f"{what}: expected integers in {span}, got {describe_values(a[bad])}")
    return a
