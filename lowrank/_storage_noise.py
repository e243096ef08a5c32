"""Rounding noise of stored matrices and the limits of a shape: shared by
:mod:`lowrank.metrics` (the storage-aware numerical rank) and :mod:`lowrank.rmt` (the floor
below which values are not fitted)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lowrank._numerics import storage_eps
from lowrank.errors import ShapeError

__all__ = ["check_side_limit", "storage_margin", "storage_noise_level_of"]


# Spacing of the subnormal numbers (= the smallest one) of the narrow float types that
# numpy.finfo does not know, from ml_dtypes.finfo(...).smallest_subnormal.
_SUBNORMAL_SPACING: dict[str, float] = {
    "bfloat16": 2.0**-133,
    "float8_e4m3fn": 2.0**-9,
    "float8_e4m3fnuz": 2.0**-10,
    "float8_e4m3b11fnuz": 2.0**-13,
    "float8_e5m2": 2.0**-16,
    "float8_e5m2fnuz": 2.0**-17,
}


def _subnormal_spacing(dt: np.dtype[Any]) -> float:
    """The absolute rounding grid below the smallest normal number (0 for integers)."""
    if dt.name in _SUBNORMAL_SPACING:
        return _SUBNORMAL_SPACING[dt.name]
    if dt.kind in "fc":
        return float(np.finfo(dt).smallest_subnormal)
    return 0.0


def storage_noise_level_of(
    m: int, n: int, norm_fro: float, dt: np.dtype[Any], *, unit: float = 1.0
) -> float:
    """Body of :func:`lowrank.metrics.storage_noise_level` for checked arguments.

    With ``unit`` (a power of two), ``norm_fro`` and the result are in units of it, so that
    a norm beyond float64's range can be handled (the subnormal spacing is divided by it).
    """
    if m == 0 or n == 0:
        return 0.0
    u = storage_eps(dt) / 2.0
    parts = 2 if dt.kind == "c" else 1
    # hypot: nu**2 = u**2 |A|_F**2 / 3 + parts * m * n * spacing**2 / 12 without overflow
    nu = math.hypot(
        u * norm_fro / math.sqrt(3.0),
        _subnormal_spacing(dt) / unit * math.sqrt(parts * m * n / 12.0),
    )
    return (1.0 / math.sqrt(m) + 1.0 / math.sqrt(n)) * nu


def storage_margin(m: int, n: int) -> float:
    """The margin ``c = sqrt(2 ln(m + n))`` of the storage-aware rank (m, n >= 1)."""
    return math.sqrt(2.0 * math.log(m + n))


_MAX_SIDE = int(np.iinfo(np.intp).max)
"""The largest side a shape may have: the largest array dimension NumPy allows."""


def check_side_limit(m: int, n: int) -> None:
    """Refuse a side above ``_MAX_SIDE`` (no array has one; ``math.sqrt(10**400)``
    raised a bare ``OverflowError``) with a :class:`~lowrank.errors.ShapeError`."""
    side = max(m, n)
    if side > _MAX_SIDE:
        shown = f"a side of {len(str(side))} digits" if side > 10**30 else f"a side {side}"
        raise ShapeError(
            f"shape must have sides of at most {_MAX_SIDE} (the largest array dimension); "
            f"got {shown}"
        )
