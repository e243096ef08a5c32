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


def tail_norms(s: Array, p: float) -> Array:
    r"""``e[k] = (\sum_{i>=k} s_i^p)^{1/p}`` for k = 0..len(s), without overflow.

    ``p = inf`` gives ``s[k]`` (0 past the end). Each sum is scaled by its own largest term.
    """
    out = np.zeros(s.size + 1)
    if s.size == 0:
        return out
    if math.isinf(p):
        out[:-1] = s
        return out
    top = float(s[0])
    if top == 0.0:
        return out
    scaled = (s / top) ** p
    sums = np.cumsum(scaled[::-1])[::-1]
    out[:-1] = top * sums ** (1.0 / p)
    return out


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
