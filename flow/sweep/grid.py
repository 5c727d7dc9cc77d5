"""The co-design sweep's grid of encoder designs and its Pareto front.

A *point* is one encoder design: an :class:`~flow.core.encoder.EncoderArch` (conv filters,
weight bits, conv-activation bits) and a latent width.  :func:`expand` turns the grid of the
config (one list of values per axis) into points in a fixed order with stable ids
(``f8_w6_a8_l9``); :data:`ECONT_POINT` is the ECON-T's own design.  :func:`pareto_front`
returns the points no other point beats in every objective (all minimised: e.g. median EMD,
electron resolution, area).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from flow.core.encoder import ECONT_ARCH, EncoderArch
from flow.runner.errors import ConfigError

#: the grid's axes, in id order
AXES = ("filters", "weight_bits", "act_bits", "latent_bits")
LATENT_RANGE = (2, 16)


@dataclass(frozen=True)
class Point:
    """One encoder design of the sweep."""

    arch: EncoderArch
    latent_bits: int

    @property
    def id(self) -> str:
        a = self.arch
        return f"f{a.filters}_w{a.weight_bits}_a{a.act_bits}_l{self.latent_bits}"

    @property
    def is_econt(self) -> bool:
        """The ECON-T's own design (8 filters, 6-bit weights, 8-bit activations, 9-bit latents)."""
        return self == ECONT_POINT

    def to_dict(self) -> dict:
        return {"id": self.id, **self.arch.to_dict(), "latent_bits": self.latent_bits,
                "econt": self.is_econt}


ECONT_POINT = Point(ECONT_ARCH, 9)


def expand(grid: dict[str, list[int]]) -> list[Point]:
    """Every combination of the grid's values (an axis left out takes the ECON-T's value), in
    the order of :data:`AXES` and of each list, duplicates dropped.  Errors name the axis and
    the value."""
    unknown = sorted(set(grid) - set(AXES))
    if unknown:
        raise ConfigError(f"sweep grid: expected axes among {list(AXES)}, got also {unknown}")
    values = []
    for axis in AXES:
        default = ECONT_POINT.latent_bits if axis == "latent_bits" else getattr(ECONT_ARCH, axis)
        vals = grid.get(axis, [default])
        if isinstance(vals, int | str) or not vals:
            raise ConfigError(f"sweep grid {axis}: expected a non-empty list of integers, got {vals!r}")
        values.append(list(dict.fromkeys(vals)))
    points = []
    for f, w, a, lb in itertools.product(*values):
        lo, hi = LATENT_RANGE
        if isinstance(lb, bool) or not isinstance(lb, int) or not lo <= lb <= hi:
            raise ConfigError(f"sweep grid latent_bits: expected integers in [{lo}, {hi}], got {lb!r}")
        try:
            arch = EncoderArch(filters=f, weight_bits=w, act_bits=a)
        except ConfigError as err:
            raise ConfigError(str(err).replace("encoder architecture", "sweep grid", 1)) from None
        points.append(Point(arch, lb))
    return points


def pareto_front(rows: list[dict], objectives: tuple[str, ...], id_key: str = "id") -> list[str]:
    """Ids of the rows on the Pareto front of ``objectives`` (every one minimised): the rows
    no other row matches or beats in every objective while beating it in one.  Rows missing
    an objective (a failed point) or with a non-finite value take no part.  Ties: two rows
    with equal values are both on the front.  Order: as in ``rows``."""
    if not objectives:
        raise ConfigError("pareto_front: expected at least one objective")
    ok = []
    for r in rows:
        vals = [r.get(k) for k in objectives]
        if all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in vals):
            ok.append((r[id_key], vals))

    def beats(u, v) -> bool:
        pairs = list(zip(u, v, strict=True))
        return all(a <= b for a, b in pairs) and any(a < b for a, b in pairs)

    return [rid for rid, v in ok if not any(beats(u, v) for _, u in ok)]
