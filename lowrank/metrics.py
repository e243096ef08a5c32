r"""How low-rank is a matrix: effective ranks, norms and conditioning from its singular values.

Every function takes the singular values (computed once, e.g. by
:func:`lowrank.singular_values`); :func:`spectrum_summary` computes them and all the metrics
for a matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lowrank._numerics import compute_eps, frobenius_norm, storage_eps
from lowrank._spectrum import as_singular_values
from lowrank._typing import ArrayLike
from lowrank._validation import (
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
    r""":math:`\|A\|_2 = \sigma_1` (0 for an empty spectrum).

    >>> spectral_norm([1.0, 5.0])
    5.0
    """
    s = as_singular_values(singular_values)
    return float(s[0]) if s.size else 0.0


def nuclear_norm(singular_values: ArrayLike) -> float:
    r""":math:`\|A\|_* = \sum_i \sigma_i`, summed smallest first.

    >>> nuclear_norm([1.0, 5.0])
    6.0
    """
    s = as_singular_values(singular_values)
    return float(np.sum(s[::-1]))


def stable_rank(singular_values: ArrayLike) -> float:
    r"""Stable rank :math:`\|A\|_F^2/\|A\|_2^2 = \sum_i \sigma_i^2/\sigma_1^2` (0 for A = 0).

    It never exceeds the rank and, unlike it, does not jump under small perturbations.

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

    It satisfies :math:`1 \le \operatorname{erank} \le \operatorname{rank}`, equals ``r``
    for ``r`` equal non-zero singular values, and is 0 for the zero matrix (by convention).
    Note the normalisation by the *sum* of singular values (not of their squares).

    References
    ----------
    .. [1] O. Roy and M. Vetterli, "The effective rank: a measure of effective
       dimensionality", EUSIPCO 2007.

    >>> round(entropy_effective_rank([1.0, 1.0, 1.0, 0.0]), 12)
    3.0
    """
    s = as_singular_values(singular_values)
    total = float(np.sum(s[::-1]))
    if total == 0.0:
        return 0.0
    p = s / total
    p = p[p > 0]  # a subnormal sigma can underflow to p = 0, whose term is 0 in the limit
    return float(math.exp(-float(np.sum(p * np.log(p)))))


def condition_number(singular_values: ArrayLike) -> float:
    r""":math:`\kappa_2 = \sigma_1/\sigma_{\min}` over the whole spectrum (``inf`` if singular).

    >>> condition_number([4.0, 2.0])
    2.0
    """
    s = as_singular_values(singular_values)
    if s.size == 0:
        raise InputError("singular_values must hold at least one value; got none")
    if s[-1] == 0.0:
        return math.inf
    return float(s[0] / s[-1])


def storage_noise_level(*, shape: tuple[int, int], norm_fro: float, storage_dtype: Any) -> float:
    r"""Expected spectral norm of the rounding noise of storing a matrix in ``storage_dtype``.

    Rounding each entry to a format with unit roundoff :math:`u = \varepsilon/2` perturbs it
    by a relative error of at most :math:`u`; modelled as independent and uniform, the
    noise :math:`E` has entries of standard deviation :math:`u\,|a_{ij}|/\sqrt3`, and a random
    m×n matrix of that size has :math:`\|E\|_2 \approx (\sqrt m + \sqrt n)\,u\,
    \|A\|_F/\sqrt{3mn}`. Singular values below this level cannot be told apart from the
    rounding of the stored values (Weyl: :math:`|\sigma_i(A+E) - \sigma_i(A)| \le \|E\|_2`).
    bfloat16 has :math:`u = 2^{-8}`, float16 :math:`2^{-11}`, float32 :math:`2^{-24}`.
    """
    shape = check_matrix_shape(shape)
    norm_fro = check_positive_float(norm_fro, name="norm_fro", allow_zero=True)
    storage_dtype = as_storage_dtype(storage_dtype)
    if 0 in shape:
        return 0.0
    m, n = shape
    u = storage_eps(storage_dtype) / 2.0
    return (math.sqrt(m) + math.sqrt(n)) * u * norm_fro / math.sqrt(3.0 * m * n)


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
        threshold becomes :func:`storage_noise_level`, the size of that format's rounding
        noise, when it exceeds NumPy's.

    Returns
    -------
    int
        :math:`\#\{\sigma_i > \tau\}` with, by default, NumPy's
        :math:`\tau = \sigma_1 \max(m, n)\,\varepsilon` (the rule of
        :func:`numpy.linalg.matrix_rank` and MATLAB).

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
        threshold = check_positive_float(tol, name="tol", allow_zero=True)
    else:
        threshold = float(s[0]) * max(m, n) * compute_eps(compute_dtype(dtype, name="dtype"))
        if storage_dtype is not None:
            norm = float(np.sqrt(np.sum((s[::-1] / s[0]) ** 2))) * float(s[0]) if s[0] > 0 else 0.0
            threshold = max(
                threshold,
                storage_noise_level(shape=(m, n), norm_fro=norm, storage_dtype=storage_dtype),
            )
    return int(np.count_nonzero(s > threshold))


def _check_shape(shape: object) -> tuple[int, int]:
    if (
        not isinstance(shape, tuple)
        or len(shape) != 2
        or not all(isinstance(d, (int, np.integer)) and d >= 0 for d in shape)
    ):
        raise ShapeError(f"shape must be a tuple of two non-negative ints; got {shape!r}")
    return int(shape[0]), int(shape[1])


@dataclass(frozen=True)
class SpectrumSummary:
    """Every metric of :mod:`lowrank.metrics` for one matrix."""

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


def spectrum_summary(
    A: ArrayLike, *, storage_dtype: Any = None
) -> tuple[SpectrumSummary, np.ndarray[Any, np.dtype[np.float64]]]:
    """All metrics of ``A`` and its singular values (float64, descending).

    ``storage_dtype`` defaults to the dtype of ``A`` itself (so a bfloat16 array gets the
    bfloat16 noise level in ``numerical_rank_storage``).

    >>> import numpy as np
    >>> summary, s = spectrum_summary(np.diag([2.0, 1.0]))
    >>> summary.stable_rank, summary.condition_number
    (1.25, 2.0)
    """
    if storage_dtype is not None:
        storage_dtype = as_storage_dtype(storage_dtype)
    raw = np.asarray(A)
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
    return summary, s
