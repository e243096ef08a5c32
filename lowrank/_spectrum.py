"""Validation and scaled arithmetic on vectors of singular values (shared by layer 2)."""

from __future__ import annotations

import math

import numpy as np

from lowrank._typing import Array, ArrayLike
from lowrank._validation import as_vector, check_choice, check_int, check_positive_float
from lowrank.errors import InputError

__all__ = [
    "NORMS",
    "as_singular_values",
    "check_norm",
    "check_schatten_p",
    "ky_fan_tails",
    "reverse_cumulative_sum_of_squares",
    "tail_norms",
]


def as_singular_values(S: ArrayLike, *, name: str = "singular_values") -> Array:
    """Return ``S`` as a float64 vector sorted descending; reject negative or non-finite."""
    s = as_vector(S, name=name)
    if s.dtype.kind == "c":
        raise InputError(f"{name} must be real; got dtype {s.dtype.name}")
    s = np.asarray(s, dtype=np.float64)
    if s.size and float(s.min()) < 0.0:
        raise InputError(f"{name} must be non-negative; got minimum {float(s.min())!r}")
    ordered: Array = np.sort(s)[::-1].copy()
    return ordered


def reverse_cumulative_sum_of_squares(s: Array, scale: float) -> Array:
    r"""``t[k] = \sum_{i>=k} (s_i/scale)^2`` for k = 0..len(s), summed smallest first."""
    squares = (s / scale) ** 2
    tails = np.zeros(s.size + 1)
    tails[:-1] = np.cumsum(squares[::-1])[::-1]
    return tails


# Terms of one Schatten sum span at most this many binary orders of magnitude, so that
# none of them is subnormal: tail_norms scales each run of such terms by its largest.
_SEGMENT_BITS = 600.0


def tail_norms(s: Array, p: float) -> Array:
    r"""``e[k] = (\sum_{i>=k} s_i^p)^{1/p}`` for k = 0..len(s) (``s`` descending), without
    overflow or underflow.

    ``p = inf`` gives ``s[k]`` (0 past the end). The values are cut into runs that span at
    most :math:`2^{600}` in :math:`s_i^p`; each run's terms are scaled by its largest and
    summed smallest first, and what follows a run is carried into it in its scale. So every
    term is a normal float64, each tail is accurate to a few epsilons times the number of
    terms whatever ``p``, and a tail that is tiny next to :math:`s_0` (``[1, 1e-3]`` with
    ``p = 200``, ``[1e150, 1e-150]`` with ``p = 2``) is not lost to underflow, as it is
    when every term is scaled by :math:`s_0`.
    """
    out = np.zeros(s.size + 1)
    if s.size == 0:
        return out
    if math.isinf(p):
        out[:-1] = s
        return out
    positive = int(np.count_nonzero(s > 0.0))
    if positive == 0:
        return out
    levels = p * np.log2(s[:positive])  # descending
    ascending = levels[::-1]
    starts = [0]
    while True:
        # The first index whose level is more than _SEGMENT_BITS below the run's start.
        below = positive - int(np.searchsorted(ascending, levels[starts[-1]] - _SEGMENT_BITS))
        if below >= positive:
            break
        starts.append(max(below, starts[-1] + 1))
    carry = 0.0  # the sum of every term after the current run, in units of its top**p
    bounds = [*starts, positive]
    for run in range(len(starts) - 1, -1, -1):
        a, b = bounds[run], bounds[run + 1]
        top = float(s[a])
        sums = np.cumsum(((s[a:b] / top) ** p)[::-1])[::-1] + carry
        out[a:b] = top * sums ** (1.0 / p)
        if run:
            # Below the rounding of the run before when it underflows.
            carry = float(sums[0]) * (top / float(s[bounds[run - 1]])) ** p
    return out


def ky_fan_tails(s: Array, k: int) -> Array:
    r"""``w[r] = \sum_{i=r}^{r+k-1} s_i`` for r = 0..len(s) (zeros past the end), the
    Ky Fan k-norm of the tail after rank ``r``, by additions only.

    Differences of cumulative sums would cancel: ``[1e20, 1, 1]`` with ``k = 1`` gives 0
    at rank 1. Here the values are cut into blocks of ``k``; a window is the sum of a
    block's values from its start index to the block's end (summed smallest first) and of
    the next block's values up to its end index.
    """
    n = s.size
    blocks_count = n // k + 2
    padded = np.zeros(blocks_count * k)
    padded[:n] = s
    blocks = padded.reshape(blocks_count, k)
    suffix = np.cumsum(blocks[:, ::-1], axis=1)[:, ::-1]
    prefix = np.cumsum(blocks, axis=1)
    block, offset = np.divmod(np.arange(n + 1), k)
    following = np.where(offset > 0, prefix[block + 1, np.maximum(offset - 1, 0)], 0.0)
    windows: Array = suffix[block, offset] + following
    return windows


def check_schatten_p(p: object) -> float:
    """Validate the Schatten exponent: ``p >= 1`` (``inf`` allowed)."""
    if isinstance(p, (int, float)) and not isinstance(p, bool) and math.isinf(float(p)) and p > 0:
        return math.inf
    value = check_positive_float(p, name="p")
    if value < 1.0:
        raise InputError(f"p must be >= 1 for a Schatten norm; got {p!r}")
    return value


NORMS: tuple[str, ...] = ("fro", "spectral", "nuclear", "schatten", "ky_fan")
"""The unitarily invariant norms: Frobenius, spectral, nuclear, Schatten-p, Ky Fan-k."""


def check_norm(norm: object, p: object, k: object) -> tuple[float, int | None]:
    """Check ``norm`` and its parameters once; return the Schatten exponent equivalent to
    ``norm`` (2, inf, 1 or ``p``) and the Ky Fan ``k`` (``None`` for the other norms).

    ``p`` and ``k`` are checked whenever given, even for a norm that does not use them;
    ``"schatten"`` needs ``p`` (``>= 1``) and ``"ky_fan"`` needs ``k`` (``>= 1``).
    """
    check_choice(norm, name="norm", choices=NORMS)
    exponent = check_schatten_p(p) if p is not None else None
    kk = check_int(k, name="k", minimum=1) if k is not None else None
    if norm == "fro":
        return 2.0, None
    if norm == "spectral":
        return math.inf, None
    if norm == "nuclear":
        return 1.0, None
    if norm == "schatten":
        if exponent is None:
            raise InputError("norm='schatten' needs the exponent p (p >= 1); got p=None")
        return exponent, None
    if kk is None:
        raise InputError("norm='ky_fan' needs k, the number of singular values summed; got k=None")
    return 1.0, kk
