r"""Every tolerance used by :mod:`lowrank.testing`, in one place, derived from one formula.

All of them are :func:`lowrank._numerics.tolerance`,

.. math:: \tau(\text{dtype}, n, s) = c\,\varepsilon\,\sqrt{n}\,s ,

with :math:`\varepsilon` the machine epsilon of the *coarsest* dtype involved, :math:`n` the
dimension over which rounding errors accumulate, :math:`s` the magnitude of the quantity
and :math:`c` = ``factor`` (16 by default, LAPACK's constants). What changes from check to
check is only :math:`n`, :math:`s`, and how conditioning enters:

=============================  ===============================================================
quantity                       tolerance (and why)
=============================  ===============================================================
singular values                :func:`svd_tolerance`: :math:`\tau(\max(m,n), \sigma_1)`. A
                               backward-stable SVD is exact for :math:`A + E` with
                               :math:`\|E\|_2 \lesssim \varepsilon\sqrt{\max(m,n)}\,\|A\|_2`,
                               and by Weyl each :math:`\sigma_i` moves by at most
                               :math:`\|E\|_2`: an *absolute* error, whatever
                               :math:`\sigma_i` is.
singular-triplet residuals     the same :math:`\tau`: :math:`\|Av - \sigma u\|` and
                               :math:`\|A^H u - \sigma v\|` are at most :math:`\|E\|_2`.
singular vectors / subspaces   :func:`subspace_tolerance`: :math:`2\sqrt{2c}\,\tau/\delta`
                               (Wedin's :math:`\sin\Theta` theorem, for the candidate and the
                               reference), with :math:`\delta` the gap between a cluster of
                               :math:`c` values and the rest of the spectrum. Ill-conditioned
                               (nearly repeated) values have *no* well-defined vectors, only a
                               well-defined subspace; vectors are compared cluster by cluster.
norms of an error              :func:`norm_tolerance`: :math:`\tau` times the norm of a
                               vector of :math:`\min(m,n)` ones, :math:`\|E\|\le \|E\|_2
                               \cdot \|(1,\dots,1)\|` (1 spectral, :math:`\sqrt{k}`
                               Frobenius, :math:`k` nuclear, :math:`k^{1/p}` Schatten-p).
orthonormality                 :math:`\max|Q^HQ - I| \le \tau(m, 1)`: each entry of the Gram
                               matrix is a length-:math:`m` inner product of unit vectors.
sums and products (LoRA)       :func:`tolerance_for` with :math:`n` the longest accumulation
                               and :math:`s` the sum of the magnitudes of the terms, so
                               that cancellation is accounted for.
=============================  ===============================================================

"Coarsest dtype" means the largest epsilon among the arrays that took part, using the
*storage* epsilon for narrow types (``bfloat16`` :math:`2^{-7}`, ``float16``
:math:`2^{-10}`) and the compute epsilon otherwise (``complex64`` is ``float32``). That is
the one extension of :func:`lowrank._numerics.tolerance`, which knows LAPACK dtypes only:
:func:`tolerance_for` substitutes the storage epsilon and otherwise calls it unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lowrank._numerics import compute_eps, storage_eps, tolerance
from lowrank._validation import compute_dtype

__all__ = [
    "DEFAULT_FACTOR",
    "coarsest_eps",
    "norm_tolerance",
    "subspace_tolerance",
    "svd_tolerance",
    "tolerance_for",
]

DEFAULT_FACTOR = 16.0
"""The constant :math:`c` of every tolerance unless a caller passes ``factor``."""

_LAPACK = (np.float32, np.float64, np.complex64, np.complex128)


def _eps_of(dtype: Any) -> float:
    dt = np.dtype(dtype)
    return max(storage_eps(dt), compute_eps(compute_dtype(dt, name="array")))


def coarsest_eps(*dtypes: Any) -> float:
    r"""The largest machine epsilon among ``dtypes``: the precision a result can be trusted to.

    Narrow storage types count with their storage epsilon (``bfloat16`` :math:`2^{-7}`,
    ``float16`` :math:`2^{-10}`); integers with that of ``float64``, the dtype they are
    computed in.

    Examples
    --------
    >>> import numpy as np
    >>> coarsest_eps(np.float64, np.float32) == float(np.finfo(np.float32).eps)
    True
    >>> coarsest_eps(np.int64)
    2.220446049250313e-16
    """
    if not dtypes:
        raise ValueError("coarsest_eps needs at least one dtype")
    return max(_eps_of(d) for d in dtypes)


def tolerance_for(
    *dtypes: Any, size: int, scale: float = 1.0, factor: float = DEFAULT_FACTOR
) -> float:
    r""":func:`lowrank._numerics.tolerance` for the coarsest of several dtypes.

    .. math:: \tau = c\,\varepsilon_{\max}\,\sqrt{n}\,s

    with :math:`\varepsilon_{\max}` = :func:`coarsest_eps` of ``dtypes``. For LAPACK dtypes
    this *is* ``tolerance(dtype, size=size, scale=scale, factor=factor)``; for narrow
    storage types (``float16``, ``bfloat16``, float8) the storage epsilon replaces the
    compute epsilon, since rounding to storage dominates.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank._numerics import tolerance
    >>> tolerance_for(np.float64, np.float32, size=100) == tolerance(np.float32, size=100)
    True
    """
    if not dtypes:
        raise ValueError("tolerance_for needs at least one dtype")
    worst = max(dtypes, key=_eps_of)
    dt = np.dtype(worst)
    if dt in _LAPACK:
        return tolerance(dt, size=size, scale=scale, factor=factor)
    # Same formula, epsilon of the storage type: rescale the float64 tolerance.
    ratio = _eps_of(dt) / compute_eps(np.float64)
    return tolerance(np.float64, size=size, scale=scale * ratio, factor=factor)


def svd_tolerance(
    dtype: Any, shape: tuple[int, int], sigma_1: float, *, factor: float = DEFAULT_FACTOR
) -> float:
    r"""Absolute error of singular values and triplet residuals of a backward-stable SVD.

    .. math:: \tau = c\,\varepsilon\,\sqrt{\max(m, n)}\,\sigma_1

    Examples
    --------
    >>> import numpy as np
    >>> float(svd_tolerance(np.float64, (100, 4), 2.0) / np.finfo(np.float64).eps)
    320.0
    """
    return tolerance_for(dtype, size=max(shape), scale=sigma_1, factor=factor)


def norm_tolerance(
    dtype: Any,
    shape: tuple[int, int],
    sigma_1: float,
    *,
    norm: str = "fro",
    p: float | None = None,
    k: int | None = None,
    factor: float = DEFAULT_FACTOR,
) -> float:
    r"""Absolute rounding error of a unitarily invariant norm of an approximation error.

    A perturbation with :math:`\|E\|_2 \le \tau` (= :func:`svd_tolerance`) changes an
    m×n matrix's norm by at most :math:`\|E\| \le \tau\,\|\mathbf{1}_q\|`, the norm of a
    vector of :math:`q = \min(m, n)` ones: 1 (spectral), :math:`\sqrt q` (Frobenius),
    :math:`q` (nuclear), :math:`q^{1/p}` (Schatten-p), :math:`\min(k, q)` (Ky Fan k).

    Examples
    --------
    >>> import numpy as np
    >>> t = svd_tolerance(np.float64, (9, 4), 1.0)
    >>> norm_tolerance(np.float64, (9, 4), 1.0, norm="fro") == 2 * t
    True
    """
    q = max(min(shape), 1)
    if norm == "spectral":
        mult = 1.0
    elif norm == "fro":
        mult = math.sqrt(q)
    elif norm == "nuclear":
        mult = float(q)
    elif norm == "schatten":
        mult = 1.0 if p is None or math.isinf(p) else q ** (1.0 / p)
    elif norm == "ky_fan":
        mult = float(min(k or 1, q))
    else:
        raise ValueError(f"unknown norm {norm!r}")
    return mult * svd_tolerance(dtype, shape, sigma_1, factor=factor)


def subspace_tolerance(residual_tolerance: float, gap: float, *, cluster_size: int = 1) -> float:
    r"""Largest :math:`\sin` of the angle between computed and reference singular subspaces.

    Wedin's theorem: if the :math:`c` computed triplets have residuals
    :math:`\|AV - U\Sigma\|_2, \|A^HU - V\Sigma\|_2 \le \sqrt{c}\,\tau` and their values are
    separated from the rest of the spectrum by :math:`\delta`, the sine of the largest
    principal angle to the exact subspace is at most :math:`\sqrt{2c}\,\tau/\delta`. The
    reference carries the same error, hence

    .. math:: \sin\Theta \le 2\sqrt{2c}\,\tau/\delta .

    Returns ``inf`` when ``gap <= 0`` (the vectors are not determined).

    Examples
    --------
    >>> subspace_tolerance(1e-14, 0.5)
    5.6568542494923806e-14
    """
    if gap <= 0.0:
        return math.inf
    return 2.0 * math.sqrt(2.0 * max(cluster_size, 1)) * residual_tolerance / gap
