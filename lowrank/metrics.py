r"""How low-rank is a matrix: effective ranks, norms and conditioning from its singular values.

Every function takes the singular values (computed once, e.g. by
:func:`lowrank.singular_values`); :func:`spectrum_summary` computes them and all the metrics
for a matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from lowrank._numerics import compute_eps, frobenius_norm, power_of_two_scale
from lowrank._spectrum import as_singular_values
from lowrank._storage_noise import check_side_limit, storage_margin, storage_noise_level_of
from lowrank._typing import ArrayLike
from lowrank._validation import (
    as_array,
    as_dtype,
    as_matrix,
    as_storage_dtype,
    check_matrix_shape,
    check_positive_float,
    compute_dtype,
)
from lowrank.errors import InputError, ShapeError
from lowrank.svd import singular_values as _singular_values

__all__ = [
    "SpectrumAnalysis",
    "SpectrumSummary",
    "condition_number",
    "entropy_effective_rank",
    "nuclear_norm",
    "numerical_rank",
    "spectral_norm",
    "spectrum_summary",
    "stable_rank",
    "storage_noise_level",
]


def spectral_norm(singular_values: ArrayLike) -> float:
    r"""The spectral norm :math:`\|A\|_2 = \sigma_1` (0 for an empty spectrum).

    Parameters
    ----------
    singular_values : array_like, shape (k,)
        Singular values of ``A`` (any order; sorted descending here).

    Returns
    -------
    float
        The largest singular value.

    Raises
    ------
    ShapeError
        If ``singular_values`` is not 1-D.
    InputError
        If a value is negative, or the values are complex.
    NonFiniteError
        If a value is NaN or infinite.

    Examples
    --------
    >>> spectral_norm([1.0, 5.0])
    5.0
    """
    s = as_singular_values(singular_values)
    return float(s[0]) if s.size else 0.0


def nuclear_norm(singular_values: ArrayLike) -> float:
    r"""The nuclear norm :math:`\|A\|_* = \sum_i \sigma_i`, summed smallest first.

    Parameters
    ----------
    singular_values : array_like, shape (k,)
        Singular values of ``A`` (any order; sorted descending here).

    Returns
    -------
    float
        The sum of the singular values (0 for an empty spectrum); ``inf``, without a
        warning, if it exceeds float64's range.

    Raises
    ------
    ShapeError
        If ``singular_values`` is not 1-D.
    InputError
        If a value is negative, or the values are complex.
    NonFiniteError
        If a value is NaN or infinite.

    Examples
    --------
    >>> nuclear_norm([1.0, 5.0])
    6.0
    """
    s = as_singular_values(singular_values)
    # A sum beyond float64's range is inf: the exact value cannot be represented, and that
    # is the answer, not an event worth NumPy's RuntimeWarning.
    with np.errstate(over="ignore"):
        return float(np.sum(s[::-1]))


def stable_rank(singular_values: ArrayLike) -> float:
    r"""Stable rank :math:`\|A\|_F^2/\|A\|_2^2 = \sum_i \sigma_i^2/\sigma_1^2` (0 for A = 0).

    It never exceeds the rank and, unlike it, does not jump under small perturbations.

    Parameters
    ----------
    singular_values : array_like, shape (k,)
        Singular values of ``A`` (any order; sorted descending here).

    Returns
    -------
    float
        :math:`\sum_i \sigma_i^2/\sigma_1^2`, between 1 and the rank (0 for the zero matrix
        or an empty spectrum).

    Raises
    ------
    ShapeError
        If ``singular_values`` is not 1-D.
    InputError
        If a value is negative, or the values are complex.
    NonFiniteError
        If a value is NaN or infinite.

    Examples
    --------
    >>> stable_rank([2.0, 2.0, 0.0])
    2.0
    """
    s = as_singular_values(singular_values)
    if s.size == 0 or s[0] == 0.0:
        return 0.0
    ratios = s[::-1] / s[0]
    return float(np.dot(ratios, ratios))


def entropy_effective_rank(singular_values: ArrayLike) -> float:
    r"""Roy and Vetterli's effective rank :math:`\exp(-\sum_k p_k \ln p_k)`,
    :math:`p_k = \sigma_k/\sum_i\sigma_i`.

    It satisfies :math:`1 \le \operatorname{erank} \le \operatorname{rank}` (the result is
    clamped to these bounds, which rounding could otherwise cross by an ulp), is exactly
    ``r`` for ``r`` equal non-zero singular values, and is 0 for the zero matrix (by
    convention).
    Note the normalisation by the *sum* of singular values (not of their squares).

    Parameters
    ----------
    singular_values : array_like, shape (k,)
        Singular values of ``A`` (any order; sorted descending here).

    Returns
    -------
    float
        The effective rank, between 1 and the rank, the number of non-zero values (0 for
        the zero matrix).

    Raises
    ------
    ShapeError
        If ``singular_values`` is not 1-D.
    InputError
        If a value is negative, or the values are complex.
    NonFiniteError
        If a value is NaN or infinite.

    References
    ----------
    .. [1] O. Roy and M. Vetterli, "The effective rank: a measure of effective
       dimensionality", EUSIPCO 2007.

    Examples
    --------
    >>> round(entropy_effective_rank([1.0, 1.0, 1.0, 0.0]), 12)
    3.0
    """
    s = as_singular_values(singular_values)
    if s.size == 0 or s[0] == 0.0:
        return 0.0
    # In units of sigma_1 (a power of two near it: exact), so that the sum cannot overflow
    # ([1e308, 1e308] gave inf, every p 0, and a rank of 1).
    unit = s / power_of_two_scale(float(s[0]))
    p = unit / float(np.sum(unit[::-1]))
    rank = int(np.count_nonzero(s))
    if s[rank - 1] == s[0]:
        return float(rank)  # r equal values: p_k = 1/r, exactly r (the sum rounds otherwise)
    p = p[p > 0]  # a subnormal sigma can underflow to p = 0, whose term is 0 in the limit
    erank = math.exp(-float(np.sum(p * np.log(p))))
    # The bounds of the exact value, which rounding can cross by an ulp or so.
    return float(min(max(erank, 1.0), float(rank)))


def condition_number(singular_values: ArrayLike) -> float:
    r"""The condition number :math:`\kappa_2 = \sigma_1/\sigma_{\min}` of the whole spectrum.

    Parameters
    ----------
    singular_values : array_like, shape (k,)
        All singular values of ``A`` (any order; sorted descending here).

    Returns
    -------
    float
        :math:`\sigma_1/\sigma_{\min}` in float64 whatever the input's dtype; ``inf`` if
        the smallest value is 0 or the ratio exceeds float64's range.

    Raises
    ------
    ShapeError
        If ``singular_values`` is not 1-D.
    InputError
        If a value is negative, the values are complex, or there are none.
    NonFiniteError
        If a value is NaN or infinite.

    Examples
    --------
    >>> condition_number([4.0, 2.0])
    2.0
    """
    s = as_singular_values(singular_values)
    if s.size == 0:
        raise InputError("singular_values must hold at least one value; got none")
    if s[-1] == 0.0:
        return math.inf
    # In Python floats: a float32 spectrum's ratio may exceed float32's range, and a ratio
    # beyond float64's is inf without NumPy's overflow warning.
    return float(s[0]) / float(s[-1])


def storage_noise_level(*, shape: tuple[int, int], norm_fro: float, storage_dtype: Any) -> float:
    r"""Spectral-norm scale of the rounding noise of storing a matrix in ``storage_dtype``.

    The singular-value edge of an m×n noise matrix with independent entries of the rounding
    errors' mean square. :func:`numerical_rank` multiplies it by a margin before using it as
    a threshold (the actual noise is not homogeneous; see there).

    Parameters
    ----------
    shape : tuple of int
        ``(m, n)`` of the matrix.
    norm_fro : float
        :math:`\|A\|_F`; that of the stored matrix does as well (they differ by a factor
        :math:`1 \pm u`).
    storage_dtype : dtype
        The format the entries were rounded to (``"bfloat16"``, ``"float16"``, ...).

    Returns
    -------
    float
        The noise level

        .. math::

            L = \Bigl(\frac{1}{\sqrt m} + \frac{1}{\sqrt n}\Bigr)\,\nu, \qquad
            \nu^2 = \frac{u^2}{3}\,\|A\|_F^2 + p\,mn\,\frac{\Delta^2}{12},

        0 for an empty shape; :math:`u = \varepsilon/2` is the unit roundoff (bfloat16
        :math:`2^{-8}`, float16 :math:`2^{-11}`, float32 :math:`2^{-24}`, integers 0),
        :math:`\Delta` the spacing of the subnormal numbers (float16 :math:`2^{-24}`,
        bfloat16 :math:`2^{-133}`) and :math:`p` = 2 for complex, 1 for real formats.

    Raises
    ------
    ShapeError
        If ``shape`` is not a pair of non-negative integers, or a side exceeds the largest
        array dimension (``2**63 - 1`` on 64-bit platforms).
    InputError
        If ``norm_fro`` is negative or not a finite number.
    DTypeError
        If ``storage_dtype`` is not a numeric dtype.

    Notes
    -----
    Round to nearest maps an entry :math:`a = f\,2^e`, :math:`f \in [1, 2)`, to a grid of
    spacing :math:`2^{e+1}u`. For entries smooth on the scale of that grid, the error is
    uniform on :math:`\pm 2^e u`, with variance :math:`4^e u^2/3 = (u^2/3)\,a^2/f^2 \le
    u^2a^2/3`. The bound is attained by significands near 1; log-uniform significands give
    :math:`(2\ln 2/9)\,u^2a^2 \approx 0.154\,u^2a^2` and Gaussian entries
    :math:`0.181\,u^2a^2` (measured), so :math:`\nu` overestimates the noise of Gaussian data
    by a factor 1.36. Summed over the entries, :math:`\mathrm E\|E\|_F^2 \le \nu^2`.
    Below the smallest normal number (float16: :math:`2^{-14}`) the spacing stays
    :math:`\Delta`, and an entry's error variance is at most :math:`\max(u^2a^2/3,
    \Delta^2/12)`: the second term of :math:`\nu^2`. Overflow is not modelled (entries
    beyond the largest finite number, 65504 for float16, are stored as ``inf``).

    An m×n matrix of i.i.d. entries with variance :math:`\nu^2/(mn)` has
    :math:`\|E\|_2 \approx (\sqrt m + \sqrt n)\,\nu/\sqrt{mn} = L`, the edge of the
    Marchenko–Pastur law [1]_. The rounding errors' variances are proportional to
    :math:`a_{ij}^2` instead, which can push :math:`\|E\|_2` above :math:`L`.

    References
    ----------
    .. [1] S. Geman, "A limit theorem for the norm of random matrices", Ann. Probab. 8
       (1980) 252-261.
    .. [2] N. J. Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., SIAM
       2002, §2.1-2.2.

    Examples
    --------
    >>> round(storage_noise_level(shape=(100, 100), norm_fro=100.0, storage_dtype="float16"), 6)
    0.005638
    """
    shape = check_matrix_shape(shape)
    norm_fro = check_positive_float(norm_fro, name="norm_fro", allow_zero=True)
    storage_dtype = as_storage_dtype(storage_dtype)
    m, n = _check_shape(shape)
    if m == 0 or n == 0:
        return 0.0
    return storage_noise_level_of(m, n, norm_fro, storage_dtype)


def numerical_rank(
    singular_values: ArrayLike,
    *,
    shape: tuple[int, int],
    dtype: Any = np.float64,
    tol: float | None = None,
    storage_dtype: Any = None,
) -> int:
    r"""The number of singular values above a tolerance.

    Parameters
    ----------
    singular_values : array_like
        All singular values of ``A``.
    shape : tuple of int
        ``(m, n)`` of ``A``.
    dtype : dtype, default float64
        The dtype the singular values were computed in (NumPy's rule uses its epsilon).
    tol : float, optional
        An explicit absolute threshold.
    storage_dtype : dtype, optional
        The dtype ``A`` was stored in (e.g. ``ml_dtypes.bfloat16`` or ``"bfloat16"``): the
        threshold becomes :math:`\tau_s = \sqrt{2\ln(m+n)}\,L`, with :math:`L` the
        :func:`storage_noise_level` of that format, when it exceeds NumPy's (see Notes).

    Returns
    -------
    int
        :math:`\#\{\sigma_i > \tau\}` with, by default, NumPy's
        :math:`\tau = \sigma_1 \max(m, n)\,\varepsilon` (the rule of
        :func:`numpy.linalg.matrix_rank` and MATLAB).

    Raises
    ------
    ShapeError
        If ``singular_values`` is not 1-D, holds more than ``min(shape)`` values, or
        ``shape`` is not a pair of non-negative integers (a side at most the largest array
        dimension, ``2**63 - 1`` on 64-bit platforms).
    InputError
        If a value is negative or complex, or ``tol`` is negative or not a number.
    NonFiniteError
        If a singular value is NaN or infinite.
    DTypeError
        If ``dtype`` or ``storage_dtype`` is not a numeric dtype.

    Notes
    -----
    **The storage-aware rank.** Stored in a format with unit roundoff :math:`u`, ``A``
    becomes :math:`\tilde A = A + E` with :math:`E_{ij} = a_{ij}\delta_{ij}`,
    :math:`|\delta_{ij}| \le u`, and the singular values given are those of :math:`\tilde A`.
    If ``A`` has rank :math:`k`, then by Weyl's inequality
    :math:`\sigma_{k+1}(\tilde A) \le \|E\|_2` and :math:`\sigma_k(\tilde A) \ge
    \sigma_k(A) - \|E\|_2`, so any threshold above :math:`\|E\|_2` and below
    :math:`\sigma_k(A) - \|E\|_2` gives :math:`k`. The rule is

    .. math::

        \operatorname{rank}^* = \#\{\, i : \sigma_i(\tilde A) > \tau_s \,\}, \qquad
        \tau_s = c\,L, \qquad c = \sqrt{2\ln(m+n)},

    (or NumPy's :math:`\tau` if larger) with :math:`L = (m^{-1/2} + n^{-1/2})\,
    u\|\tilde A\|_F/\sqrt3` (:func:`storage_noise_level`), the norm of a noise matrix with
    *equal* entry variances: ``c`` is the margin for unequal ones. The variance of
    :math:`E_{ij}` is at most :math:`u^2a_{ij}^2/3`, so a row (column) of ``A`` carrying
    more energy carries more noise, and the noise norm follows the largest rows and
    columns: :math:`\mathrm E\|E\|_2 \lesssim \max_i \|E_{i,:}\|_2 + \max_j \|E_{:,j}\|_2`
    up to a logarithmic term [1]_. If the largest row energy is :math:`\mu\,\|A\|_F^2/m`
    (and the largest column energy :math:`\mu\,\|A\|_F^2/n`), this is :math:`\sqrt\mu\,L`.
    For singular vectors that are spread out like random unit vectors, the worst case is
    rank 1, :math:`a_{ij} = \sigma x_i y_j`, where :math:`\mu = \max_i m x_i^2 \approx
    2\ln m` (the largest of m squared Gaussians); more terms average the rows towards
    :math:`\mu = 1`. Hence :math:`c = \sqrt{2\ln(m+n)}`: 2.7 for 20×20, 3.6 for 300×300,
    4.4 for 4096×11008.

    Measured on :math:`\tilde A` of exact rank :math:`k`: the noise singular value
    :math:`\sigma_{k+1}(\tilde A)` is about :math:`0.9\,L` for :math:`k = 8`, up to
    :math:`2.1\,L` for :math:`k = 1` at 300×300 and :math:`2.2\,L` at 2000×2000. Over
    10 000 random matrices (5000 each in bfloat16 and float16; shapes 20 to 300 per side,
    :math:`k \le \min(m, n)/4`, random singular vectors, geometric spectra with the
    condition numbers below, entries of root mean square :math:`10^{-3}` to :math:`10^3`)
    it stayed below :math:`0.6\,\tau_s`, :math:`\sigma_k(\tilde A)` above
    :math:`3.7\,\tau_s`, and the rank was :math:`k` in all of them; without the margin
    (:math:`\tau_s = L`, the rule before) it was :math:`k + 1` to :math:`k + 10` in a
    third (bfloat16) to two fifths (float16) of them.

    **What is supported.** A singular value above :math:`\tau_s` always counts, so a
    matrix whose smallest singular value exceeds :math:`\tau_s` is reported full rank. The
    exact rank :math:`k` is recovered when :math:`\sigma_k(A) \ge 2\tau_s` (Weyl, with
    :math:`\|E\|_2 < \tau_s`); for shapes of 20 to 300 per side and :math:`k \le
    \min(m, n)/4` this covers condition numbers :math:`\sigma_1/\sigma_k` up to 100 in
    bfloat16 and 1000 in float16. Below that, the limit is fundamental: a singular value
    under the rounding noise cannot be told apart from it, and a singular value between
    about :math:`L` and :math:`\tau_s` is given up as the price of the margin. The entries
    must be within the format's range (subnormals are accounted for, overflow is not).
    The margin assumes spread-out singular vectors: if ``A``'s energy sits in a few rows or
    columns (:math:`\mu > 2\ln(m+n)`, e.g. a few outlier channels), the noise can exceed
    :math:`\tau_s` and the rank is over-reported. The bound that always holds is
    :math:`\|E\|_2 \le \|E\|_F \le u\|A\|_F`; pass ``tol=u * norm_fro`` to use it.

    References
    ----------
    .. [1] A. S. Bandeira and R. van Handel, "Sharp nonasymptotic bounds on the norm of
       random matrices with independent entries", Ann. Probab. 44 (2016) 2479-2506.

    Examples
    --------
    >>> numerical_rank([1.0, 1e-3, 1e-17], shape=(3, 3))
    2
    >>> numerical_rank([1.0, 1e-3, 1e-17], shape=(3, 3), storage_dtype="float16")
    2
    """
    shape = check_matrix_shape(shape)
    dtype = as_dtype(dtype, name="dtype")
    if storage_dtype is not None:
        storage_dtype = as_storage_dtype(storage_dtype)
    if tol is not None:
        tol = check_positive_float(tol, name="tol", allow_zero=True)
    count = as_singular_values(singular_values).size
    if count > min(shape):
        raise ShapeError(
            f"singular_values must hold at most min(shape) = {min(shape)} values for "
            f"shape={shape}; got {count}"
        )
    s = as_singular_values(singular_values)
    m, n = _check_shape(shape)
    if s.size == 0:
        return 0
    if tol is not None:
        return int(np.count_nonzero(s > tol))
    # In units of a power of two near sigma_1 (exact), so that neither sigma_1 * max(m, n)
    # nor ||A||_F overflows: 1e308 * 2 was inf, and every value fell below it (rank 0).
    unit = power_of_two_scale(float(s[0]))
    rel = s / unit
    threshold = float(rel[0]) * (max(m, n) * compute_eps(compute_dtype(dtype, name="dtype")))
    if storage_dtype is not None:
        norm = float(np.sqrt(np.sum(rel[::-1] ** 2)))
        level = storage_noise_level_of(m, n, norm, storage_dtype, unit=unit)
        threshold = max(threshold, storage_margin(m, n) * level)
    return int(np.count_nonzero(rel > threshold))


def _check_shape(shape: object) -> tuple[int, int]:
    if (
        not isinstance(shape, tuple)
        or len(shape) != 2
        or not all(isinstance(d, (int, np.integer)) and d >= 0 for d in shape)
    ):
        raise ShapeError(f"shape must be a tuple of two non-negative ints; got {shape!r}")
    m, n = int(shape[0]), int(shape[1])
    check_side_limit(m, n)
    return m, n


@dataclass(frozen=True)
class SpectrumSummary:
    r"""Every metric of :mod:`lowrank.metrics` for one matrix.

    Attributes
    ----------
    shape : tuple of int
        ``(m, n)``.
    dtype : str
        The dtype of the matrix given.
    norm_fro : float
        :math:`\|A\|_F`.
    spectral_norm : float
        :func:`spectral_norm`.
    nuclear_norm : float
        :func:`nuclear_norm`.
    stable_rank : float
        :func:`stable_rank`.
    entropy_effective_rank : float
        :func:`entropy_effective_rank`.
    numerical_rank : int
        :func:`numerical_rank` with NumPy's threshold.
    numerical_rank_storage : int
        :func:`numerical_rank` with the threshold of the storage dtype's rounding noise.
    condition_number : float
        :func:`condition_number`.
    """

    shape: tuple[int, int]
    dtype: str
    norm_fro: float
    spectral_norm: float
    nuclear_norm: float
    stable_rank: float
    entropy_effective_rank: float
    numerical_rank: int
    numerical_rank_storage: int
    condition_number: float


class SpectrumAnalysis(NamedTuple):
    """The result of :func:`spectrum_summary`: the metrics and the singular values.

    Attributes
    ----------
    summary : SpectrumSummary
        All metrics of the matrix.
    singular_values : ndarray of float64, shape (min(m, n),)
        Its singular values, descending.
    """

    summary: SpectrumSummary
    """All metrics of the matrix."""
    singular_values: np.ndarray[Any, np.dtype[np.float64]]
    """Its singular values, float64, descending."""


def spectrum_summary(A: ArrayLike, *, storage_dtype: Any = None) -> SpectrumAnalysis:
    """All metrics of ``A`` and its singular values (float64, descending).

    Parameters
    ----------
    A : array_like, shape (m, n)
        The matrix.
    storage_dtype : dtype, optional
        The format ``A``'s entries were rounded to, for ``numerical_rank_storage``. Defaults
        to the dtype of ``A`` itself (so a bfloat16 array gets the bfloat16 noise level).

    Returns
    -------
    SpectrumAnalysis
        ``(summary, singular_values)``: a :class:`SpectrumSummary` and the singular values.

    Raises
    ------
    ShapeError
        If ``A`` is not a non-empty 2-D matrix.
    DTypeError
        If ``A`` or ``storage_dtype`` has no numeric dtype.
    NonFiniteError
        If ``A`` has a NaN or infinite entry.

    Examples
    --------
    >>> import numpy as np
    >>> result = spectrum_summary(np.diag([2.0, 1.0]))
    >>> result.summary.stable_rank, result.summary.condition_number
    (1.25, 2.0)
    >>> result.singular_values
    array([2., 1.])
    """
    if storage_dtype is not None:
        storage_dtype = as_storage_dtype(storage_dtype)
    raw = as_array(A, name="A")
    stored = raw.dtype if storage_dtype is None else np.dtype(storage_dtype)
    a = as_matrix(raw)
    s = _singular_values(a)
    summary = SpectrumSummary(
        shape=(int(a.shape[0]), int(a.shape[1])),
        dtype=str(raw.dtype),
        norm_fro=frobenius_norm(a),
        spectral_norm=spectral_norm(s),
        nuclear_norm=nuclear_norm(s),
        stable_rank=stable_rank(s),
        entropy_effective_rank=entropy_effective_rank(s),
        numerical_rank=numerical_rank(s, shape=a.shape, dtype=a.dtype),
        numerical_rank_storage=numerical_rank(
            s, shape=a.shape, dtype=a.dtype, storage_dtype=stored
        ),
        condition_number=condition_number(s),
    )
    return SpectrumAnalysis(summary, s)
