"""The report's document model: cells (NA, Status, Code), tables, figures,
paragraphs and sections, and the number formatting every section uses.

A section builder (:mod:`flow.report.sections`) returns a :class:`Section` of
blocks; :mod:`flow.report.render` turns the sections into HTML and Markdown.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


# ------------------------------------------------------------------ content model
@dataclass(frozen=True)
class NA:
    """An explicit "not available" cell."""

    reason: str

    def __str__(self) -> str:
        return f"not available: {self.reason}"


@dataclass(frozen=True)
class Status:
    """A PASS/FAIL cell."""

    ok: bool
    detail: str = ""

    def __str__(self) -> str:
        return ("PASS" if self.ok else "FAIL") + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class Code:
    """A hash, path or revision: monospace in HTML, backticks in Markdown."""

    text: str

    def __str__(self) -> str:
        return self.text


Cell = Any  # str | int | float | NA | Status | Code | None


@dataclass
class Table:
    id: str
    caption: str
    header: list[str]
    rows: list[list[Cell]]
    note: str = ""


@dataclass
class Figure:
    id: str
    caption: str
    file: str            # relative to the report directory: figures/<stage>_<name>.png
    source: str          # where it came from, e.g. data/plots/eta.png
    data: bytes


@dataclass
class Para:
    text: str
    na: bool = False


@dataclass
class Section:
    id: str
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> Section:
        self.blocks.extend(blocks)
        return self


# ------------------------------------------------------------------ formatting
def is_num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def num(v, fmt: str = ",", reason: str = "not recorded", scale: float = 1.0, unit: str = "") -> Cell:
    """Format a number from an artifact; None (or a non-number) becomes an NA cell."""
    if isinstance(v, NA):
        return v
    if not is_num(v) or v != v:  # None, str, NaN
        return NA(reason)
    if scale != 1.0:
        v = v * scale
    return f"{v:{fmt}}{unit}"


def pct(v, digits: int = 2, reason: str = "not recorded", signed: bool = True) -> Cell:
    """A fraction as percent (signed for biases, unsigned for spreads)."""
    return num(v, f"{'+' if signed else ''}.{digits}f", reason, scale=100.0, unit=" %")


def dig(d, *keys, default=None):
    """``d[k0][k1]...`` or ``default`` when any level is missing."""
    for k in keys:
        if isinstance(d, dict) and k in d:
            d = d[k]
        elif isinstance(d, list) and isinstance(k, int) and -len(d) <= k < len(d):
            d = d[k]
        else:
            return default
    return d


def bin_label(b: dict) -> str:
    lo, hi = b.get("lo"), b.get("hi")
    return f"[{lo:g}, {hi:g})" if is_num(lo) and is_num(hi) else "?"

