"""Floating-point facts used across the package: epsilons, the one tolerance helper, and
sums of squares that neither overflow nor underflow.

Tolerances in the library *and* in the tests come from :func:`tolerance`, so that "close
enough" means the same thing everywhere.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lowrank._typing import Array

__all__ = [
    "STORAGE_EPS",
    "compute_eps",
    "frobenius_norm",
    "power_of_two_scale",
    "scaled_sum_of_squares",
    "storage_eps",
    "tolerance",
]

# Machine epsilon (spacing of 1.0) of the narrow float types NumPy knows only through
# ml_dtypes; keyed by dtype name so the core never imports ml_dtypes.
STORAGE_EPS: dict[str, float] = {
    "bfloat16": 2.0**-7,
    "float8_e4m3fn": 2.0**-3,
    "float8_e4m3fnuz": 2.0**-3,
    "float8_e4m3b11fnuz": 2.0**-3,
    "float8_e5m2": 2.0**-2,
    "float8_e5m2fnuz": 2.0**-2,
}

# Chunk of a matrix converted to float64 at once when summing squares (elements).
_CHUNK = 1 << 20


def storage_eps(dtype: Any) -> float:
    """Machine epsilon of the dtype the data was *stored* in.

    ``float16`` gives ``2**-10`` and ``bfloat16`` ``2**-7``: values stored in them carry
    relative rounding noise of half that (the unit roundoff), whatever dtype they are
    computed in later. Integers are exact (0.0).
    """
    dt = np.dtype(dtype)
    if dt.name in STORAGE_EPS:
        return STORAGE_EPS[dt.name]
    if dt.kind in "iub":
        return 0.0
    return float(np.finfo(dt).eps)


def compute_eps(dtype: Any) -> float:
    """Machine epsilon of the dtype a computation runs in (``float32`` for ``complex64``)."""
    return float(np.finfo(np.dtype(dtype)).eps)


def tolerance(dtype: Any, *, size: int, scale: float = 1.0, factor: float = 16.0) -> float:
    r"""The one tolerance for results computed by backward-stable algorithms.

    .. math:: \tau = c \, \varepsilon \, \sqrt{n} \, s

    with :math:`\varepsilon` the machine epsilon of ``dtype``, :math:`n` = ``size`` the
    dimension over which rounding errors accumulate (``max(A.shape)`` for an SVD), :math:`s`
    = ``scale`` the magnitude of the quantity (``S[0]`` for singular values) and :math:`c` =
    ``factor`` the constant of the algorithm. Rounding errors of independent operations grow
    like a random walk, :math:`\sqrt{n}\varepsilon`; the worst-case bound :math:`n\varepsilon`
    is rarely approached, and ``factor`` absorbs the constants of LAPACK's error bounds.
    """
    return factor * compute_eps(dtype) * math.sqrt(max(int(size), 1)) * float(scale)


def power_of_two_scale(value: float) -> float:
    """A power of two close to ``value`` (1.0 for 0, inf or NaN); dividing by it is exact."""
    if not math.isfinite(value) or value <= 0.0:
        return 1.0
    return math.ldexp(1.0, math.frexp(value)[1] - 1)


def scaled_sum_of_squares(x: Array) -> tuple[float, float]:
    r"""Sum of squared magnitudes of ``x`` as ``(scale, ssq)`` with :math:`\sum|x|^2 = s^2 q`.

    Accumulated in float64 (chunk by chunk, so a float32 matrix is never copied whole)
    after dividing by a power of two near :math:`\max|x|`, so that entries of size
    :math:`10^{\pm 300}` neither overflow nor underflow. This is LAPACK's ``lassq`` idea
    with a single pass for the maximum.
    """
    flat = np.ravel(x)
    if flat.size == 0:
        return 1.0, 0.0
    if flat.dtype.kind == "c":
        peak = max(float(np.max(np.abs(flat[i : i + _CHUNK]))) for i in range(0, flat.size, _CHUNK))
    else:
        # max(x.max(), -x.min()) finds max |x| without an |x| copy of the whole matrix.
        peak = max(float(np.max(flat)), -float(np.min(flat)))
    scale = power_of_two_scale(peak)
    ssq = 0.0
    for start in range(0, flat.size, _CHUNK):
        block = flat[start : start + _CHUNK]
        if block.dtype.kind == "c":
            block = np.abs(block.astype(np.complex128, copy=False))
        else:
            block = block.astype(np.float64, copy=False)
        block = block / scale
        ssq += float(np.dot(block, block))
    return scale, ssq


def frobenius_norm(x: Array) -> float:
    """Frobenius (or Euclidean) norm accumulated in float64 without overflow or underflow."""
    scale, ssq = scaled_sum_of_squares(x)
    return scale * math.sqrt(ssq)
