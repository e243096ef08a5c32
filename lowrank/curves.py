r"""Rank–error curves and rank selection.

The curve of a matrix is the Eckart–Young–Mirsky error of its best rank-r approximation for
every :math:`r = 0, 1, \dots`: in the Frobenius norm
:math:`e_r = (\sum_{i>r}\sigma_i^2)^{1/2}`, with relative error :math:`e_r/\|A\|_F` and
captured energy :math:`1 - e_r^2/\|A\|_F^2`.

When only the top :math:`k` singular values are known (a truncated or randomized SVD), the
Frobenius curve up to rank :math:`k` is still exact, because :math:`\|A\|_F^2 = \sum_{i,j}
|a_{ij}|^2` is cheap and exact: :math:`e_r^2 = \|A\|_F^2 - \sum_{i\le r}\sigma_i^2`. Energy and
tolerances are always measured against that exact total, never against the truncated sum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lowrank._numerics import compute_eps, power_of_two_scale
from lowrank._spectrum import (
    as_singular_values,
    check_norm,
    ky_fan_tails,
    reverse_cumulative_sum_of_squares,
    tail_norms,
)
from lowrank._typing import Array, ArrayLike, NormName
from lowrank._validation import check_fraction, check_positive_float
from lowrank.errors import InputError, RankError

__all__ = ["RankErrorCurve", "rank_error_curve", "select_rank"]


@dataclass(frozen=True, eq=False)
class RankErrorCurve:
    r"""Optimal approximation error for each rank.

    Attributes
    ----------
    ranks : ndarray of int, shape (K + 1,)
        ``0, 1, ..., K``.
    absolute : ndarray, shape (K + 1,)
        The optimal error at each rank in ``norm`` (0 at full rank).
    relative : ndarray, shape (K + 1,)
        ``absolute / absolute[0]`` (the error of the zero matrix is the norm of ``A``);
        all zeros for the zero matrix.
    energy : ndarray or None, shape (K + 1,)
        Frobenius curves only: captured energy :math:`\sum_{i\le r}\sigma_i^2/\|A\|_F^2`.
    norm : str
        The norm of the curve.
    complete : bool
        True when the curve reaches full rank (the whole spectrum was known).
    max_abs_error : float
        Bound on the rounding error of ``absolute`` (from cancellation when the curve was
        completed from :math:`\|A\|_F`; else a few ulps of :math:`\sigma_1`).
    """

    ranks: Array
    absolute: Array
    relative: Array
    energy: Array | None
    norm: str
    complete: bool
    max_abs_error: float


def rank_error_curve(
    singular_values: ArrayLike,
    *,
    norm: NormName = "fro",
    p: float | None = None,
    k: int | None = None,
    norm_fro: float | None = None,
) -> RankErrorCurve:
    r"""The optimal error at every rank, from singular values.

    Parameters
    ----------
    singular_values : array_like
        All singular values of ``A``, or only the leading ones when ``norm_fro`` is given.
    norm : {"fro", "spectral", "nuclear", "schatten", "ky_fan"}, default "fro"
        The norm of the error; see :func:`lowrank.eym_error`.
    p, k : optional
        Schatten exponent and Ky Fan order.
    norm_fro : float, optional
        :math:`\|A\|_F` when ``singular_values`` holds only the top :math:`k` values. Then the
        Frobenius curve is given for ranks ``0..k`` (exact, from the total), the spectral
        curve for ``0..k-1``; other norms need the whole spectrum.

    Returns
    -------
    RankErrorCurve

    Raises
    ------
    InputError
        Invalid values, ``norm_fro`` smaller than the values allow, or a norm that the
        partial spectrum cannot give.

    Notes
    -----
    Tail sums are accumulated from the smallest value up after scaling by :math:`\sigma_1`
    (or a power of two near :math:`\|A\|_F`), so entries of size :math:`10^{\pm150}` neither
    overflow nor underflow. Completing a partial spectrum subtracts
    :math:`\sum_{i\le r}\sigma_i^2` from :math:`\|A\|_F^2`: the absolute error of :math:`e_r^2`
    is then about :math:`r\,\varepsilon\,\|A\|_F^2`, reported in ``max_abs_error`` as a
    bound on :math:`e_r`.

    Examples
    --------
    >>> from lowrank import rank_error_curve
    >>> curve = rank_error_curve([4.0, 3.0])
    >>> curve.absolute
    array([5., 3., 0.])
    >>> curve.energy
    array([0.  , 0.64, 1.  ])
    """
    s = as_singular_values(singular_values)
    exponent, kk = check_norm(norm, p, k)
    if norm_fro is not None:
        total = check_positive_float(norm_fro, name="norm_fro", allow_zero=True)
        return _partial_curve(s, norm, total)
    if norm == "fro":
        return _fro_curve(s)
    if kk is not None:
        absolute = ky_fan_tails(s, kk)
    else:
        absolute = tail_norms(s, exponent)
    return _finish(absolute, None, norm, True, 4.0 * compute_eps(np.float64) * float(absolute[0]))


def _finish(
    absolute: Array, energy: Array | None, norm: str, complete: bool, error: float
) -> RankErrorCurve:
    base = float(absolute[0])
    relative = absolute / base if base > 0 else np.zeros_like(absolute)
    return RankErrorCurve(
        ranks=np.arange(absolute.size),
        absolute=absolute,
        relative=relative,
        energy=energy,
        norm=norm,
        complete=complete,
        max_abs_error=error,
    )


def _fro_curve(s: Array) -> RankErrorCurve:
    top = float(s[0]) if s.size else 0.0
    if top == 0.0:
        zeros = np.zeros(s.size + 1)
        return _finish(zeros, np.ones(s.size + 1), "fro", True, 0.0)
    tails = reverse_cumulative_sum_of_squares(s, top)
    # The errors from the tails' own scales: those in units of sigma_1**2 underflow for
    # values below 1e-154 sigma_1 (which changes no energy, but does the errors).
    absolute = tail_norms(s, 2.0)
    energy = 1.0 - tails / tails[0]
    energy[-1] = 1.0
    error = 4.0 * compute_eps(np.float64) * math.sqrt(s.size) * float(absolute[0])
    return _finish(absolute, energy, "fro", True, error)


def _partial_curve(s: Array, norm: str, norm_fro: float) -> RankErrorCurve:
    if norm == "spectral" and not s.size and norm_fro > 0.0:
        # ||A||_2 is unknown without sigma_1: a curve of [0] would call A the zero matrix.
        raise InputError(
            "norm='spectral' with norm_fro needs at least the largest singular value; got none"
        )
    if norm == "spectral":
        absolute = np.concatenate([[s[0] if s.size else 0.0], s[1:]]) if s.size else np.zeros(1)
        return _finish(
            absolute, None, "spectral", False, 4.0 * compute_eps(np.float64) * float(absolute[0])
        )
    if norm != "fro":
        raise InputError(
            f"norm={norm!r} needs the whole spectrum; with norm_fro (a partial spectrum) "
            "only 'fro' and 'spectral' curves are known"
        )
    scale = power_of_two_scale(max(norm_fro, float(s[0]) if s.size else 0.0))
    total = (norm_fro / scale) ** 2
    captured = np.concatenate([[0.0], np.cumsum((s / scale) ** 2)])
    slack = 8.0 * compute_eps(np.float64) * (s.size + 1) * max(total, float(captured[-1]))
    if float(captured[-1]) > total + slack:
        raise InputError(
            f"norm_fro = {norm_fro!r} is smaller than the norm of the given singular values, "
            f"{scale * math.sqrt(float(captured[-1]))!r}; they cannot come from one matrix"
        )
    tails = np.maximum(total - captured, 0.0)
    absolute = scale * np.sqrt(tails)
    energy = captured / total if total > 0 else np.ones_like(captured)
    error = scale * math.sqrt(slack)
    return _finish(absolute, np.minimum(energy, 1.0), "fro", False, error)


def select_rank(
    singular_values: ArrayLike,
    *,
    rel_tol: float | None = None,
    energy: float | None = None,
    norm: NormName = "fro",
    p: float | None = None,
    k: int | None = None,
    norm_fro: float | None = None,
) -> int:
    r"""The smallest rank meeting a relative-error tolerance or an energy fraction.

    Parameters
    ----------
    singular_values : array_like
        All singular values, or the leading ones with ``norm_fro``.
    rel_tol : float, optional
        Smallest ``r`` with :math:`\|A - A_r\| \le` ``rel_tol`` :math:`\cdot\|A\|` in ``norm``
        (``0 <= rel_tol <= 1``).
    energy : float, optional
        Smallest ``r`` with :math:`\sum_{i\le r}\sigma_i^2 \ge` ``energy`` :math:`\cdot
        \|A\|_F^2` (``0 <= energy <= 1``). Equivalent to ``rel_tol = sqrt(1 - energy)`` in
        the Frobenius norm.
    norm : {"fro", "spectral", "nuclear", "schatten", "ky_fan"}, default "fro"
        The norm for ``rel_tol`` (``"fro"`` only with ``energy``).
    p : float, optional
        Schatten exponent, for ``norm="schatten"``.
    k : int, optional
        Number of singular values in the Ky Fan k-norm, for ``norm="ky_fan"``.
    norm_fro : float, optional
        :math:`\|A\|_F` for a partial spectrum (see :func:`rank_error_curve`).

    Returns
    -------
    int

    Raises
    ------
    InputError
        Neither or both of ``rel_tol`` and ``energy`` given, or out of range, or ``energy``
        with a ``norm`` other than ``"fro"``.
    RankError
        The target is not reached within the known part of a partial spectrum.

    Examples
    --------
    >>> from lowrank import select_rank
    >>> select_rank([4.0, 3.0, 0.1], energy=0.9)
    2
    >>> select_rank([4.0, 3.0, 0.1], rel_tol=0.7)
    1
    >>> select_rank([4.0, 3.0, 0.1], rel_tol=0.5, norm="ky_fan", k=2)
    1
    """
    check_norm(norm, p, k)
    if (rel_tol is None) == (energy is None):
        raise InputError(
            f"give exactly one of rel_tol and energy; got rel_tol={rel_tol!r}, energy={energy!r}"
        )
    if energy is not None:
        if norm != "fro":
            # Energy is a share of ||A||_F^2; with another norm it was silently ignored.
            raise InputError(
                f"energy is a fraction of ||A||_F^2 and applies to the Frobenius norm only; "
                f"got norm={norm!r} (use rel_tol with that norm)"
            )
        fraction = check_fraction(energy, name="energy", low_inclusive=True)
        target = math.sqrt(max(1.0 - fraction, 0.0))
    else:
        target = check_fraction(rel_tol, name="rel_tol", low_inclusive=True)
    curve = rank_error_curve(singular_values, norm=norm, p=p, k=k, norm_fro=norm_fro)
    # A rank whose error is within rounding of the target meets it.
    slack = curve.max_abs_error / curve.absolute[0] if curve.absolute[0] > 0 else 0.0
    meets = np.flatnonzero(curve.relative <= target + slack)
    if meets.size == 0:
        raise RankError(
            f"the target is not reached with the {curve.ranks[-1]} known singular values "
            f"(relative error there: {float(curve.relative[-1]):.3g}; target {target:.3g}); "
            "compute more of the spectrum"
        )
    return int(meets[0])
