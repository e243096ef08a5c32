r"""Eckart–Young–Mirsky: optimal rank-r approximations and their errors.

For :math:`A` with singular values :math:`\sigma_1 \ge \sigma_2 \ge \dots`, the truncated SVD
:math:`A_r = U_r \Sigma_r V_r^H` minimises :math:`\|A - X\|` over all :math:`X` of rank at most
:math:`r`, in **every** unitarily invariant norm (Mirsky 1960), with

.. math::

    \|A - A_r\|_F = \Big(\sum_{i>r}\sigma_i^2\Big)^{1/2}, \quad
    \|A - A_r\|_2 = \sigma_{r+1}, \quad
    \|A - A_r\|_* = \sum_{i>r}\sigma_i, \quad
    \|A - A_r\|_{S_p} = \Big(\sum_{i>r}\sigma_i^p\Big)^{1/p}, \quad
    \|A - A_r\|_{(k)} = \sum_{i=r+1}^{r+k}\sigma_i .

References
----------
.. [1] C. Eckart and G. Young, "The approximation of one matrix by another of lower rank",
   Psychometrika 1(3):211–218, 1936.
.. [2] L. Mirsky, "Symmetric gauge functions and unitarily invariant norms", Quarterly
   Journal of Mathematics 11(1):50–59, 1960.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lowrank._numerics import scaled_sum_of_squares, tolerance
from lowrank._spectrum import NORMS, as_singular_values, check_norm, tail_norms
from lowrank._typing import Array, ArrayLike, NormName, RNGLike, SVDMethod
from lowrank._validation import as_matrix, as_vector, check_rank
from lowrank.errors import NonFiniteError, ShapeError
from lowrank.svd import TruncatedSVDResult, singular_values, truncated_svd

__all__ = [
    "NORMS",
    "OptimalityComparison",
    "best_approximation",
    "compare_to_optimal",
    "eym_error",
    "residual_norm",
]

# Rows of the residual formed at once by residual_norm (times n columns, in float64).
_RESIDUAL_BLOCK_ELEMENTS = 1 << 21


def _norm_of_values(s: Array, p: float, k: int | None) -> float:
    """The unitarily invariant norm of a matrix with singular values ``s`` (descending)."""
    if k is not None:
        return float(np.sum(s[:k]))
    return float(tail_norms(s, p)[0])


def eym_error(
    singular_values: ArrayLike,
    rank: int,
    *,
    norm: NormName = "fro",
    p: float | None = None,
    k: int | None = None,
) -> float:
    r"""The optimal rank-``rank`` approximation error, from the whole spectrum.

    Parameters
    ----------
    singular_values : array_like, shape (min(m, n),)
        All singular values of the matrix (any order; sorted here).
    rank : int
        ``0 <= rank <= len(singular_values)``.
    norm : {"fro", "spectral", "nuclear", "schatten", "ky_fan"}, default "fro"
        The unitarily invariant norm.
    p : float, optional
        Schatten exponent, ``p >= 1`` (``inf`` is the spectral norm); for ``norm="schatten"``.
    k : int, optional
        Number of singular values in the Ky Fan k-norm; for ``norm="ky_fan"``.

    Returns
    -------
    float
        :math:`\min_{\operatorname{rank} X \le r}\|A - X\|` (see the module docstring).

    Raises
    ------
    InputError
        Negative or non-finite values, or a missing or invalid ``p``/``k``.
    RankError
        ``rank`` out of range.

    Examples
    --------
    >>> from lowrank import eym_error
    >>> eym_error([3.0, 4.0, 12.0], 1)
    5.0
    >>> eym_error([3.0, 4.0, 12.0], 1, norm="spectral")
    4.0
    """
    s = as_singular_values(singular_values)
    r = check_rank(rank, upper=s.size, upper_text="len(singular_values)")
    exponent, kk = check_norm(norm, p, k)
    return _norm_of_values(s[r:], exponent, kk)


def best_approximation(
    A: Any,
    rank: int,
    *,
    method: SVDMethod = "exact",
    rng: RNGLike = None,
) -> TruncatedSVDResult:
    r"""The Eckart–Young–Mirsky optimal rank-``rank`` approximation, in factored form.

    A thin wrapper over :func:`lowrank.truncated_svd` whose default is the exact method, so
    that the result *is* the optimum (call ``.to_dense()`` for the m×n matrix).

    Parameters
    ----------
    A : array_like, shape (m, n)
        The matrix.
    rank : int
        Target rank, ``0 <= rank <= min(m, n)``.
    method : str, default "exact"
        Any :func:`lowrank.truncated_svd` method; only ``"exact"`` guarantees optimality.
    rng : None, int or numpy.random.Generator
        For the randomized and iterative methods.

    Returns
    -------
    TruncatedSVDResult
        ``U, S, Vh`` with ``U @ diag(S) @ Vh`` the approximation.

    Raises
    ------
    ShapeError
        If ``A`` is not a non-empty 2-D matrix.
    DTypeError
        If ``A`` has no numeric dtype.
    NonFiniteError
        If ``A`` has a NaN or infinite entry.
    RankError
        If ``rank`` is out of range.
    InputError
        If ``method`` or ``rng`` is not valid, or ``A`` is a masked array with masked
        entries.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank import best_approximation
    >>> best = best_approximation(np.diag([3.0, 2.0, 1.0]), 1)
    >>> best.to_dense()
    array([[3., 0., 0.],
           [0., 0., 0.],
           [0., 0., 0.]])
    """
    return truncated_svd(A, rank, method=method, rng=rng)


def _as_factors(candidate: Any, shape: tuple[int, int]) -> tuple[Array, Array] | Array:
    """``(L, R)`` with ``L @ R`` the candidate, or the dense candidate itself."""
    m, n = shape
    if all(hasattr(candidate, attr) for attr in ("U", "S", "Vh")):
        candidate = (candidate.U, candidate.S, candidate.Vh)
    if isinstance(candidate, tuple) and len(candidate) == 3:
        U = as_matrix(candidate[0], name="candidate U", allow_empty=True)
        S = as_vector(candidate[1], name="candidate S")
        Vh = as_matrix(candidate[2], name="candidate Vh", allow_empty=True)
        if U.shape[1] != S.size or Vh.shape[0] != S.size:
            raise ShapeError(
                "candidate (U, S, Vh) must have shapes (m, r), (r,), (r, n); got "
                f"{U.shape}, {S.shape}, {Vh.shape}"
            )
        # In the result type of U and S: casting S to U's dtype dropped a complex S's
        # imaginary part (and rounded a float64 S to float32).
        L, R = U * S, Vh
    elif isinstance(candidate, tuple) and len(candidate) == 2:
        L = as_matrix(candidate[0], name="candidate L", allow_empty=True)
        R = as_matrix(candidate[1], name="candidate R", allow_empty=True)
        if L.shape[1] != R.shape[0]:
            raise ShapeError(
                f"candidate (L, R) must have shapes (m, r) and (r, n); got {L.shape} and {R.shape}"
            )
    else:
        dense = as_matrix(candidate, name="candidate")
        if dense.shape != shape:
            raise ShapeError(f"candidate must have the shape of A, {shape}; got {dense.shape}")
        return dense
    if L.shape[0] != m or R.shape[1] != n:
        raise ShapeError(
            f"candidate factors must multiply to the shape of A, {shape}; got "
            f"{(L.shape[0], R.shape[1])}"
        )
    return L, R


def _residual_blocks(a: Array, candidate: tuple[Array, Array] | Array) -> Any:
    """Yield row blocks of ``A - candidate`` in float64 (complex128 for complex)."""
    m, n = a.shape
    complex_ = (
        a.dtype.kind == "c"
        or (isinstance(candidate, tuple) and any(x.dtype.kind == "c" for x in candidate))
        or (not isinstance(candidate, tuple) and candidate.dtype.kind == "c")
    )
    wide = np.complex128 if complex_ else np.float64
    rows = max(1, _RESIDUAL_BLOCK_ELEMENTS // max(n, 1))
    for start in range(0, m, rows):
        stop = min(m, start + rows)
        block = a[start:stop].astype(wide)
        # A and the candidate are finite (checked): overflow is refused just below, with a
        # message, rather than warned about.
        with np.errstate(over="ignore", invalid="ignore"):
            if isinstance(candidate, tuple):
                L, R = candidate
                block -= L[start:stop].astype(wide) @ R.astype(wide)
            else:
                block -= candidate[start:stop]
        if not np.all(np.isfinite(block)):
            raise NonFiniteError(
                "A - candidate is not finite in float64: the candidate (or its factors' "
                "product) overflows the float64 range (about 1.8e308)"
            )
        yield block


def residual_norm(
    A: ArrayLike,
    candidate: Any,
    *,
    norm: NormName = "fro",
    p: float | None = None,
    k: int | None = None,
) -> float:
    r"""The error :math:`\|A - X\|` of a candidate approximation :math:`X`, computed in float64.

    Parameters
    ----------
    A : array_like, shape (m, n)
        The matrix.
    candidate : array_like (m, n), ``(L, R)``, ``(U, S, Vh)`` or an object with ``U``, ``S``, ``Vh``
        The approximation, dense or factored (``X = L @ R`` or ``U diag(S) Vh``).
    norm, p, k
        As in :func:`eym_error`.

    Returns
    -------
    float
        :math:`\|A - X\|` in the norm chosen.

    Raises
    ------
    ShapeError
        If ``A`` is not a non-empty 2-D matrix, or the candidate's shape (or its factors'
        product's) is not that of ``A``.
    DTypeError
        If ``A`` or the candidate has no numeric dtype.
    NonFiniteError
        If ``A`` or the candidate (``S`` included) has a NaN or infinite entry, or
        :math:`A - X` overflows the float64 range.
    InputError
        If ``norm`` is unknown, or ``p``/``k`` is missing or invalid for it.

    Notes
    -----
    The Frobenius norm is accumulated block of rows by block of rows, so the m×n residual
    is never held whole. The other norms need its singular values, so the residual is
    formed in float64 and its values computed by LAPACK: :math:`O(mn)` memory.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank import residual_norm
    >>> A = np.diag([3.0, 2.0, 1.0])
    >>> L, R = np.array([[3.0], [0.0], [0.0]]), np.array([[1.0, 0.0, 0.0]])
    >>> round(residual_norm(A, (L, R)), 10)  # sqrt(2**2 + 1**2)
    2.2360679775
    >>> residual_norm(A, (L, R), norm="spectral")
    2.0
    """
    a = as_matrix(A)
    exponent, kk = check_norm(norm, p, k)
    factors = _as_factors(candidate, a.shape)
    if norm == "fro":
        parts = [scaled_sum_of_squares(block) for block in _residual_blocks(a, factors)]
        top = max(scale for scale, _ in parts)
        total = sum(ssq * (scale / top) ** 2 for scale, ssq in parts)
        return top * math.sqrt(total)
    residual = np.concatenate(list(_residual_blocks(a, factors)), axis=0)
    values = singular_values(residual, method="lapack")
    return _norm_of_values(values, exponent, kk)


@dataclass(frozen=True)
class OptimalityComparison:
    r"""A candidate's error against the Eckart–Young–Mirsky optimum of the same rank.

    Attributes
    ----------
    rank : int
        The rank the candidate is compared at.
    norm : str
        The norm (``"schatten"`` with ``p``, ``"ky_fan"`` with ``k``).
    candidate_error : float
        :math:`\|A - X\|`.
    optimal_error : float
        :math:`\min_{\operatorname{rank} Y \le r}\|A - Y\|`.
    ratio : float
        ``candidate_error / optimal_error`` (1.0 when both are zero to rounding, ``inf`` when
        only the optimum is). Below 1 beyond ``tolerance`` only when the candidate's rank
        exceeds ``rank`` (Eckart–Young–Mirsky): a rank-2 candidate compared at ``rank=1``
        can give 0.45, which says that the comparison is at the wrong rank.
    tolerance : float
        Absolute rounding tolerance of the two errors, :math:`16\,\varepsilon\sqrt{\max(m, n)}
        \,s` with :math:`\varepsilon` the machine epsilon of ``A``'s dtype and :math:`s` the
        norm's scale (:math:`\sigma_1`, times :math:`\sqrt{\min(m, n)}` but for the spectral
        norm).
    """

    rank: int
    norm: str
    candidate_error: float
    optimal_error: float
    ratio: float
    tolerance: float


def compare_to_optimal(
    A: ArrayLike,
    candidate: Any,
    *,
    rank: int | None = None,
    norm: NormName = "fro",
    p: float | None = None,
    k: int | None = None,
) -> OptimalityComparison:
    r"""Measure a candidate rank-r approximation against the EYM optimum.

    Parameters
    ----------
    A : array_like, shape (m, n)
        The matrix approximated.
    candidate : array_like (m, n), ``(L, R)``, ``(U, S, Vh)`` or an object with ``U``, ``S``, ``Vh``
        The approximation.
    rank : int, optional
        The rank to compare at. Default: the inner dimension of a factored candidate, or the
        numerical rank (NumPy's default tolerance) of a dense one.
    norm, p, k
        As in :func:`eym_error`.

    Returns
    -------
    OptimalityComparison
        The two errors, their ratio and the rounding tolerance.

    Raises
    ------
    ShapeError
        If ``A`` is not a non-empty 2-D matrix, or the candidate's shape (or its factors'
        product's) is not that of ``A``.
    DTypeError
        If ``A`` or the candidate has no numeric dtype.
    NonFiniteError
        If ``A`` or the candidate (``S`` included) has a NaN or infinite entry, or
        :math:`A - X` overflows the float64 range.
    RankError
        If ``rank`` is out of range.
    InputError
        If ``norm`` is unknown, or ``p``/``k`` is missing or invalid for it.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank import compare_to_optimal
    >>> A = np.diag([3.0, 2.0, 1.0])
    >>> L, R = np.array([[3.0], [0.0], [0.0]]), np.array([[1.0, 0.0, 0.0]])
    >>> compare_to_optimal(A, (L, R)).ratio
    1.0
    >>> compare_to_optimal(A, np.diag([0.0, 2.0, 0.0])).ratio  # keeps the wrong direction
    1.4142135623730951
    """
    a = as_matrix(A)
    m, n = a.shape
    factors = _as_factors(candidate, a.shape)
    if rank is None:
        if isinstance(factors, tuple):
            rank = int(factors[0].shape[1])
        else:
            rank = int(np.linalg.matrix_rank(factors))
    r = check_rank(rank, upper=min(m, n))
    check_norm(norm, p, k)
    values = singular_values(a)
    optimal = eym_error(values, r, norm=norm, p=p, k=k)
    error = residual_norm(a, factors, norm=norm, p=p, k=k)
    scale = float(values[0]) * (math.sqrt(min(m, n)) if norm != "spectral" else 1.0)
    tol = tolerance(a.dtype, size=max(m, n), scale=max(scale, 1e-300))
    if optimal <= tol:
        ratio = 1.0 if error <= tol else math.inf
    else:
        ratio = error / optimal
    return OptimalityComparison(r, norm, error, optimal, ratio, tol)
